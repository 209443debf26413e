/// The bytes a connection has received and not yet parsed, in memory it
/// owns so receives land in it directly (``SocketStream/read(into:file:line:function:)``).
/// Kernel-thread only, like the connection that owns it.
final class ReadBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    private(set) var start = 0
    private(set) var end = 0
    /// The most bytes the buffer grows to.
    let maxCapacity: Int

    init(initialCapacity: Int, maxCapacity: Int) {
        self.maxCapacity = Swift.max(initialCapacity, maxCapacity)
        storage = .allocate(byteCount: Swift.max(initialCapacity, 256), alignment: 16)
    }

    deinit { storage.deallocate() }

    var count: Int { end - start }
    var isEmpty: Bool { end == start }

    /// The unread bytes; valid until the next mutation.
    var unread: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

    func consume(_ n: Int) {
        precondition(n <= count)
        start += n
        if start == end {
            start = 0
            end = 0
        }
    }

    /// The first `n` unread bytes as an array, consumed.
    func take(_ n: Int) -> [UInt8] {
        let bytes = [UInt8](UnsafeRawBufferPointer(rebasing: storage[start..<(start + n)]))
        consume(n)
        return bytes
    }

    /// Free space at the end for one receive: the unread bytes are moved to
    /// the front when that frees enough, and the buffer doubles (up to
    /// `maxCapacity`) when it is full of unread bytes. Nil when it holds
    /// `maxCapacity` unread bytes already.
    func spaceForReceive(wanted: Int) -> UnsafeMutableRawBufferPointer? {
        if storage.count - end < Swift.min(wanted, 2048) || end == storage.count {
            if start > 0 {
                let n = count
                if n > 0 {
                    storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: n)
                }
                start = 0
                end = n
            }
            if end == storage.count {
                guard storage.count < maxCapacity else { return nil }
                let bigger = UnsafeMutableRawBufferPointer.allocate(
                    byteCount: Swift.min(maxCapacity, storage.count * 2), alignment: 16)
                bigger.baseAddress!.copyMemory(from: storage.baseAddress!, byteCount: end)
                storage.deallocate()
                storage = bigger
            }
        }
        let free = storage.count - end
        return UnsafeMutableRawBufferPointer(rebasing: storage[end..<(end + Swift.min(free, Swift.max(wanted, 1)))])
    }

    /// Records `n` bytes received into the space ``spaceForReceive(wanted:)`` gave.
    func received(_ n: Int) { end += n }
}

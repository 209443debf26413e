/// Memory that the system (io_uring, or a worker thread on epoll) reads or
/// writes while a request is in flight, owned by the socket, pipe or file
/// that makes the request: its address never changes while a request uses
/// it, because only the task that has claimed that direction may resize
/// it, and `performIO` returns only once the request has completed (a
/// cancelled request is waited for). So no pointer into a Swift array ever
/// crosses a suspension.
///
/// It grows on demand up to ``limit`` and then stays: a socket receiving
/// or sending through it allocates once, not per call, and never keeps
/// more than ``limit`` bytes however much one call asks for.
struct PinnedBuffer: ~Copyable {
    /// The most a buffer keeps (and so the most one request moves).
    static let limit = 1 << 16
    private var storage: UnsafeMutableRawBufferPointer?

    init() {}

    /// Bytes allocated now (0 before the first use).
    var capacity: Int { storage?.count ?? 0 }
    /// Where the memory is (nil before the first use): it changes only
    /// when the buffer grows.
    var address: UnsafeMutableRawPointer? { storage?.baseAddress }

    deinit { storage?.deallocate() }

    /// At least `min(count, limit)` bytes (one byte at least), valid until
    /// the next call.
    mutating func region(_ count: Int) -> UnsafeMutableRawBufferPointer {
        let wanted = Swift.min(Swift.max(count, 1), PinnedBuffer.limit)
        if let storage, storage.count >= wanted { return storage }
        storage?.deallocate()
        let fresh = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(wanted, 4096), alignment: 16)
        storage = fresh
        return fresh
    }

    /// Copies `bytes[from...]`, as much as fits (at most ``limit`` bytes),
    /// into the buffer → the region holding them and how many were copied.
    mutating func load(_ bytes: [UInt8], from start: Int) -> (UnsafeMutableRawBufferPointer, Int) {
        let n = Swift.min(bytes.count - start, PinnedBuffer.limit)
        let buf = region(n)
        if n > 0 {
            bytes.withUnsafeBytes { src in
                buf.baseAddress!.copyMemory(from: src.baseAddress! + start, byteCount: n)
            }
        }
        return (buf, n)
    }
}

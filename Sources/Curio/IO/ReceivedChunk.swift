
/// One chunk of a streaming receive (``Socket/receiveChunks(maxHeld:)``):
/// the bytes as they arrived, read in place from a buffer of the kernel's
/// receive pool.
///
/// A chunk is valid until its iteration moves on (the next `next()`) or
/// it is dropped; its buffer then goes back to the pool. Every access
/// checks that: reading a chunk after it was given back stops the program
/// with a message, it never reads reused memory. `Array(chunk)` copies
/// the bytes out to keep them.
///
/// Not `Sendable`: a chunk stays with the task that received it.
public final class ReceivedChunk: RandomAccessCollection {
    /// Positions are byte offsets from 0.
    public typealias Index = Int
    /// The chunk's bytes.
    public typealias Element = UInt8

    let receiver: ChunkReceiver
    // No run-time exclusivity checks on the fields every read and send of
    // a chunk touches: a chunk is not Sendable, so one task at a time uses
    // it, and every access is a plain read or store that spans no call.
    @exclusivity(unchecked) private var buffer: UInt32
    @exclusivity(unchecked) private var base: UnsafeRawPointer
    /// The number of bytes.
    @exclusivity(unchecked) public private(set) var count: Int
    /// True once the buffer went back to the pool; the chunk cannot be read then.
    @exclusivity(unchecked) public private(set) var isReleased = false

    init(receiver: ChunkReceiver, buffer: UInt32, base: UnsafeRawPointer, count: Int) {
        self.receiver = receiver
        self.buffer = buffer
        self.base = base
        self.count = count
    }

    /// Takes another buffer's place (the consumer reuses the object when
    /// nobody else holds it, so a stream allocates no chunk per receive).
    func reuse(buffer: UInt32, base: UnsafeRawPointer, count: Int) {
        self.buffer = buffer
        self.base = base
        self.count = count
        isReleased = false
    }

    deinit { release() }

    /// Gives the buffer back to the pool now, before the iteration moves
    /// on (nothing happens if it already went back).
    public func release() {
        if isReleased { return }
        isReleased = true
        receiver.release(buffer)
    }

    @inline(__always)
    private func checkValid() {
        precondition(!isReleased, "curio: a ReceivedChunk was read after its buffer went back to the pool (the iteration moved on, or release() was called); copy it with Array(chunk) to keep its bytes")
    }

    /// 0.
    public var startIndex: Int { 0 }
    /// ``count``.
    public var endIndex: Int { count }

    /// The byte at `position` (0..<count).
    public subscript(position: Int) -> UInt8 {
        checkValid()
        precondition(position >= 0 && position < count, "ReceivedChunk: index \(position) is out of 0..<\(count)")
        return base.load(fromByteOffset: position, as: UInt8.self)
    }

    /// Calls `body` with the bytes in place; the pointer is valid only
    /// inside `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        checkValid()
        return try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// The bytes in place, for the standard library's fast paths
    /// (`Array(chunk)`, `append(contentsOf:)`); valid only inside `body`.
    public func withContiguousStorageIfAvailable<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R? {
        checkValid()
        return try body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: count))
    }

    /// The start of the bytes for a send from this module, which holds the
    /// chunk for the send's whole duration.
    var unsafeBytes: UnsafeRawBufferPointer {
        checkValid()
        return UnsafeRawBufferPointer(start: base, count: count)
    }
}

extension Socket {
    /// Sends all of `chunk` straight from its receive buffer (no copy), as
    /// ``sendAll(_:file:line:function:)-([UInt8],_,_,_)`` does: an
    /// interrupted send says how much went out in `bytesSent`.
    public func sendAll(_ chunk: ReceivedChunk, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        // The chunk is this call's argument: it is not released before the
        // call returns (its iteration cannot move on meanwhile).
        defer { withExtendedLifetime(chunk) {} }
        try await sendAll(chunk.unsafeBytes, file: file, line: line, function: function)
    }
}

/// What a kernel's receive pool holds and has done (``Kernel/receivePoolStatistics()``).
public struct ReceivePoolStatistics: Sendable, Equatable {
    /// Buffers in the pool (0 before the kernel's first streaming receive).
    public var buffers: Int
    /// Bytes per buffer.
    public var bufferSize: Int
    /// Buffers handed out in chunks and not given back yet (taken or waiting to be taken).
    public var held: Int
    /// Streaming receives running.
    public var streams: Int
    /// True when io_uring receives with a multishot `recv` from a
    /// provided-buffer ring; false on epoll and on io_uring without them.
    public var usesBufferRing: Bool
    /// Chunks delivered.
    public var chunks: Int
    /// Times a stream stopped because the pool was empty (io_uring's `ENOBUFS`).
    public var exhausted: Int
    /// Times a stream stopped at its own bound (a slow consumer).
    public var paused: Int
    /// Times a stopped stream started receiving again.
    public var rearmed: Int
}

extension Kernel {
    /// The receive pool of the calling task's kernel: how many buffers it
    /// has and holds, and how often streams stopped and started again.
    /// Throws ``CurioUsageError`` outside a kernel's task.
    public static func receivePoolStatistics() throws -> ReceivePoolStatistics {
        try Kernel.currentTask("receivePoolStatistics").kernel.receivePoolCounts()
    }
}

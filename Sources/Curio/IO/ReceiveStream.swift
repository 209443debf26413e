#if canImport(Glibc)
import Glibc
#endif

extension Socket {
    /// The socket's incoming bytes as a sequence of chunks, each a view of
    /// a buffer of the kernel's receive pool — no copy and no array per
    /// receive:
    ///
    /// ```swift
    /// for try await chunk in client.receiveChunks() {
    ///     try await client.sendAll(chunk)      // echo, straight from the buffer
    /// }
    /// ```
    ///
    /// On io_uring one multishot `recv` from a provided-buffer ring keeps
    /// receiving while the consumer works; on epoll (and on kernels before
    /// Linux 6.0) each chunk is a `recv` into a pool buffer on readiness.
    /// The sequence ends (`nil`) at end of file and throws ``SocketError``
    /// on a connection error (`ECONNRESET`) or when the socket is closed
    /// meanwhile.
    ///
    /// A chunk is valid until the iteration moves on (the next `next()`)
    /// or the chunk is dropped, whichever comes first; its buffer then goes
    /// back to the pool. Reading a chunk after that stops the program with
    /// a message saying so: copy it (`Array(chunk)`) to keep it.
    ///
    /// Back-pressure: the stream holds at most about `maxHeld` buffers
    /// (chunks received but not yet taken, and the one being looked at);
    /// at that bound it stops receiving until the consumer moves on, and
    /// the bytes wait in the socket (TCP's window stops the sender), so a
    /// slow consumer costs no memory. On io_uring the kernel may hand over
    /// a few chunks it had already received when the stream stops; the
    /// pool (``Kernel/Configuration/receiveBufferCount``) bounds them.
    /// When the pool is empty, streams wait for a buffer to come back.
    ///
    /// While the sequence's iterator exists it holds the socket's receiving
    /// direction: another receive on the socket throws ``ResourceBusy``.
    /// A cancellation or timeout of the consuming task ends the stream: it
    /// is thrown by `next()`; chunks that had already arrived are still
    /// returned by later calls of `next()` on the same iterator, then it
    /// ends. Dropping the iterator ends the stream and returns its buffers.
    ///
    /// The first `next()` throws ``CurioUsageError`` for a `maxHeld` below
    /// 1, an invalid pool shape in the kernel's configuration, or a
    /// datagram socket (its datagrams would be cut to the buffer size).
    ///
    /// - Parameter maxHeld: the most buffers the stream holds at once (1 or
    ///   more; clamped to the pool's size).
    public func receiveChunks(maxHeld: Int = 4) -> ReceivedChunks {
        ReceivedChunks(socket: self, maxHeld: maxHeld)
    }
}

extension Socket {
    /// Claims the receiving direction and starts the kernel's streaming
    /// receive of this socket (a multishot `recv` from the buffer ring on
    /// io_uring, receives on readiness on epoll) → its receiver and the
    /// calling task. For ``receiveChunks(maxHeld:)`` and
    /// ``handleChunks(maxHeld:file:line:function:_:)``.
    func startChunkStream(maxHeld: Int, _ what: StaticString) throws -> (ChunkReceiver, AnyCurioTask) {
        guard maxHeld >= 1 else {
            throw CurioUsageError(.invalidArgument, "\(what): maxHeld must be at least 1, got \(maxHeld)")
        }
        // A datagram socket has no byte stream to cut into chunks: a
        // datagram larger than a pool buffer would lose its tail silently,
        // and an empty one would read as the end of the stream.
        guard kind == .stream else {
            throw CurioUsageError(.invalidArgument, "\(what): needs a stream socket (TCP or Unix stream); use recvFrom on a datagram socket")
        }
        let t = try beginStreamReceiving(what)
        let kernel = t.kernel
        let c = kernel.configuration
        if !kernel.configureReceivePool(buffers: c.receiveBufferCount, size: c.receiveBufferSize) {
            endStreamReceiving()
            throw CurioUsageError(.invalidArgument, "\(what): Kernel.Configuration.receiveBufferCount must be 1...32768 and receiveBufferSize 64...1048576, got \(c.receiveBufferCount) and \(c.receiveBufferSize)")
        }
        let r = ChunkReceiver(kernel: kernel)
        // The C request holds the receiver until its end is dispatched.
        let token = Unmanaged.passRetained(r).toOpaque()
        switch kernel.startRequest(.receiveStream(fd, maxHeld: maxHeld), token: token) {
        case .pending(let handle):
            r.handle = handle
        case .finished(let res):  // refused at once
            Unmanaged<ChunkReceiver>.fromOpaque(token).release()
            endStreamReceiving()
            throw SocketError(errno: Int32(-res), operation: String(describing: what))
        }
        return (r, t)
    }
}

/// A socket's incoming bytes as chunks (``Socket/receiveChunks(maxHeld:)``).
/// Iterate it once, in one task.
public struct ReceivedChunks: AsyncSequence {
    /// Each element is one chunk of bytes as it arrived.
    public typealias Element = ReceivedChunk
    /// What the iteration throws: ``SocketError``, cancellation or timeout errors.
    public typealias Failure = any Error

    let socket: Socket
    let maxHeld: Int

    /// The iterator that receives; the stream starts with its first `next()`.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: ChunkConsumer

        /// The next chunk, waiting for one if none has arrived; `nil` at end
        /// of file (or after a cancellation, once what arrived is taken).
        public mutating func next() async throws -> ReceivedChunk? {
            try await consumer.next()
        }
    }

    /// Starts nothing yet: the first `next()` claims the socket and starts receiving.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: ChunkConsumer(socket: socket, maxHeld: maxHeld))
    }
}

/// The consuming side of one streaming receive: owned by its iterator only,
/// so its `deinit` is where a dropped iteration ends the stream.
final class ChunkConsumer {
    let socket: Socket
    let maxHeld: Int
    // Read and written on every chunk, without run-time exclusivity checks
    // (`@exclusivity(unchecked)`; seven checks cost about 400 instructions
    // per chunk): only the one task that iterates touches them, each access
    // is a plain read or store (the uniqueness test's inout access of
    // `last` spans no call), and none spans an `await`, so no two overlap.
    @exclusivity(unchecked) private var receiver: ChunkReceiver?
    /// The chunk handed out last; released when the consumer moves on, and
    /// reused for the next chunk when nobody else holds it.
    @exclusivity(unchecked) private var last: ReceivedChunk?
    @exclusivity(unchecked) private var done = false

    init(socket: Socket, maxHeld: Int) {
        self.socket = socket
        self.maxHeld = maxHeld
    }

    deinit {
        last?.release()
        guard let r = receiver else { return }
        let socket = socket
        r.onKernel { r in
            r.abandon()
            socket.endStreamReceiving()
        }
    }

    func next(file: StaticString = #filePath, line: UInt = #line,
              function: StaticString = #function) async throws -> ReceivedChunk? {
        last?.release()
        if done { return nil }
        let r: ChunkReceiver
        let t: AnyCurioTask
        if let have = receiver {
            r = have
            t = try Kernel.currentTask("receiveChunks")
            guard t.kernel === r.kernel else {
                throw CurioUsageError(.wrongKernel, "receiveChunks: the stream belongs to another kernel's task; iterate it where it started")
            }
        } else {
            (r, t) = try start()
        }
        let site = CallSite(file: file, line: line, function: function)
        while true {
            if let (buffer, length) = r.popFirst() {
                return chunk(r, buffer, length)
            }
            if let end = r.end {
                finish(r)
                if end == 0 || r.cancelledByConsumer { return nil }
                if end == -Int(ECANCELED) {
                    throw SocketError(errno: EBADF, operation: "receiveChunks (the socket was closed)")
                }
                throw SocketError(errno: Int32(-end), operation: "receiveChunks")
            }
            do {
                _ = try await r.kernel.block(t, .readWait, on: r.waiters, deadline: .max, site: site)
            } catch {
                // Cancelled or timed out: the stream stops; what already
                // arrived stays for a later next().
                r.cancel()
                throw error
            }
        }
    }

    private func start() throws -> (ChunkReceiver, AnyCurioTask) {
        let (r, t) = try socket.startChunkStream(maxHeld: maxHeld, "receiveChunks")
        receiver = r
        return (r, t)
    }

    private func chunk(_ r: ChunkReceiver, _ buffer: UInt32, _ length: Int) -> ReceivedChunk {
        let base = r.kernel.receivePoolBuffer(buffer)
        // Uniqueness is asked of the stored reference itself: a `let`
        // binding of it first would be a second reference, and the check
        // would never pass (one allocation per chunk).
        if last != nil, isKnownUniquelyReferenced(&last!), last!.receiver === r {
            last!.reuse(buffer: buffer, base: base, count: length)
            return last!
        }
        let c = ReceivedChunk(receiver: r, buffer: buffer, base: base, count: length)
        last = c
        return c
    }

    private func finish(_ r: ChunkReceiver) {
        done = true
        receiver = nil
        socket.endStreamReceiving()
    }
}

/// The kernel side of one streaming receive: the chunks (buffer ids and
/// lengths, about maxHeld of them, bounded by the pool) that arrived and
/// were not taken yet, the end, and the consumer waiting for either.
///
/// @unchecked Sendable: as its base class; other threads only send it
/// back to its kernel (``onKernel(_:)``).
final class ChunkReceiver: MultishotReceiver<(UInt32, Int)>, @unchecked Sendable {
    /// The consumer stopped the stream (cancellation, timeout).
    private(set) var cancelledByConsumer = false
    /// The chunk handler this stream feeds directly, if it has one
    /// (ChunkHandler.swift); nil for a `receiveChunks()` iteration.
    // Kernel-thread only, set before the first chunk and cleared when the
    // handler ends; read once per chunk in an access that calls nothing.
    @exclusivity(unchecked) var handler: ChunkHandling?

    /// Stops the C request; its end (and chunks already on their way) still come.
    func cancel() {
        guard end == nil, handle != 0, !cancelledByConsumer else { return }
        cancelledByConsumer = true
        kernel.cancelRequest(handle)
    }

    func abandon() {
        cancel()
        discardAll()
    }

    /// A chunk nobody will take: its buffer goes straight back to the pool.
    override func discard(_ chunk: (UInt32, Int)) { kernel.releaseReceivePoolBuffer(chunk.0) }

    /// Gives a chunk's buffer back, from whichever thread drops the chunk.
    func release(_ buffer: UInt32) {
        if kernel.isOnKernelThread {
            kernel.releaseReceivePoolBuffer(buffer)
        } else {
            kernel.postMessage { k in k.releaseReceivePoolBuffer(buffer) }
        }
    }

    /// Runs `body` on the kernel's thread: now if this is it, else posted.
    func onKernel(_ body: @escaping @Sendable (ChunkReceiver) -> Void) {
        if kernel.isOnKernelThread {
            body(self)
        } else {
            kernel.postMessage { _ in body(self) }
        }
    }

    static func chunkArrived(_ token: UnsafeMutableRawPointer?, buffer: UInt32, length: Int) {
        let r = Unmanaged<ChunkReceiver>.fromOpaque(token!).takeUnretainedValue()
        if let h = r.handler, !r.abandoned {
            h.arrived(buffer, length)
        } else {
            r.arrived((buffer, length))
        }
    }

    static func streamEnded(_ token: UnsafeMutableRawPointer?, result: Int) {
        Unmanaged<ChunkReceiver>.fromOpaque(token!).takeRetainedValue().ended(result)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Socket {
    /// Runs `handler` on every chunk of the socket's incoming bytes as it
    /// arrives, on the kernel's thread, without waking the calling task per
    /// chunk; returns at end of file.
    ///
    /// ```swift
    /// try await client.handleChunks { chunk, output in
    ///     try output.send(chunk)               // echo, straight from the buffer
    /// }
    /// ```
    ///
    /// Why: ``receiveChunks(maxHeld:)`` and ``recv(into:flags:file:line:function:)``
    /// suspend and resume the task's Swift task once per message, which is
    /// most of a small round trip's user-space work (about 4,500
    /// instructions per echo round trip under callgrind). Here the kernel
    /// calls `handler` from the completion of the receive itself, and the
    /// replies go out with the loop's next submission: about 1,300
    /// instructions per round trip, and the echo benchmark's server passes
    /// the raw C io_uring server (README "Echo"). The task wakes only to
    /// send what the socket could not take at once.
    ///
    /// The handler is synchronous: it cannot wait, and it must not take
    /// long, since the kernel's other tasks wait while it runs. It gets the
    /// chunk (valid during the call; `Array(chunk)` keeps a copy) and the
    /// socket's ``ChunkOutput``, whose `send` copies the bytes and hands
    /// them to the system without waiting.
    ///
    /// Back-pressure: when the socket cannot take a reply at once, the
    /// reply waits in the output, the stream stops handing chunks to the
    /// handler, and the calling task sends what waits (suspending as
    /// `sendAll` does). Meanwhile at most about `maxHeld` chunks are held,
    /// and then the stream stops receiving, so the peer's further bytes
    /// wait in the socket (TCP's window stops the sender): a peer that
    /// sends without reading costs no memory beyond the replies to the
    /// chunks already handled.
    ///
    /// How it ends:
    /// - end of file: every reply is sent, then it returns;
    /// - ``ChunkOutput/stopReceiving()`` from the handler: no further chunk
    ///   is handled (bytes that already arrived stay unread), every reply is
    ///   sent, then it returns;
    /// - the handler throws: no further chunk is handled, every reply
    ///   handed over before is sent, then the handler's error is thrown;
    /// - the connection fails (`ECONNRESET`) or the socket is closed
    ///   meanwhile: ``SocketError`` (replies not yet sent are dropped:
    ///   nobody can receive them);
    /// - the calling task is cancelled or times out: the stream stops,
    ///   replies not yet taken by the system are dropped, and the
    ///   cancellation or timeout is thrown.
    ///
    /// While it runs it holds both directions of the socket: another
    /// receive or send throws ``ResourceBusy``. It throws
    /// ``CurioUsageError`` at once for a `maxHeld` below 1, a datagram
    /// socket, or an invalid receive-pool shape in the kernel's
    /// configuration. Both backends run it: io_uring with a multishot
    /// `recv` from the kernel's provided-buffer ring and sends queued for
    /// the next submission, epoll with a receive on readiness and a
    /// `send(2)` per reply.
    ///
    /// - Parameters:
    ///   - maxHeld: the most buffers the stream holds while the handler is
    ///     held up by back-pressure (1 or more; clamped to the pool's size).
    ///   - handler: called once per chunk, in order, on the kernel's thread.
    public func handleChunks(maxHeld: Int = 4, file: StaticString = #filePath, line: UInt = #line,
                             function: StaticString = #function,
                             _ handler: @escaping (ReceivedChunk, ChunkOutput) throws -> Void) async throws {
        try beginHandlerSending("handleChunks")
        let r: ChunkReceiver
        let t: AnyCurioTask
        do {
            (r, t) = try startChunkStream(maxHeld: maxHeld, "handleChunks")
        } catch {
            endHandlerSending()
            throw error
        }
        let handling = ChunkHandling(socket: self, receiver: r, handler: handler)
        r.handler = handling
        defer {
            handling.end()
            endHandlerSending()
            endStreamReceiving()
        }
        try await handling.run(t, site: CallSite(file: file, line: line, function: function))
    }
}

/// Where a chunk handler's replies go (``Socket/handleChunks(maxHeld:file:line:function:_:)``).
///
/// Valid only inside the handler's call: a `send` from anywhere else
/// throws ``CurioUsageError``. Not `Sendable`: it belongs to the kernel's
/// thread, as the handler does.
public final class ChunkOutput {
    // Strong: an output kept past the handler's call keeps its state, so
    // its `send` can say what went wrong instead of trapping.
    let handling: ChunkHandling

    init(handling: ChunkHandling) { self.handling = handling }

    /// Bytes handed to ``send(_:)-(UnsafeRawBufferPointer)`` that wait for
    /// the calling task to send them (the socket could not take them at once).
    public var waitingCount: Int { handling.waiting.count }

    /// Sends all of `bytes`: copied and handed to the system now, or, when
    /// the socket cannot take them at once, kept in order and sent by the
    /// calling task before any later chunk is handled. Throws
    /// ``SocketError`` when the connection has failed (an earlier reply's
    /// failure is reported here), and ``CurioUsageError`` outside the
    /// handler's call.
    public func send(_ bytes: UnsafeRawBufferPointer) throws {
        try handling.send(bytes)
    }

    /// Sends all of `bytes`; see ``send(_:)-(UnsafeRawBufferPointer)``.
    public func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try handling.send($0) }
    }

    /// Sends all of `chunk`; see ``send(_:)-(UnsafeRawBufferPointer)``.
    public func send(_ chunk: ReceivedChunk) throws {
        try chunk.withUnsafeBytes { try handling.send($0) }
    }

    /// Handles no further chunk: ``Socket/handleChunks(maxHeld:file:line:function:_:)``
    /// sends what waits and returns. Bytes that arrived after this chunk
    /// stay unread.
    public func stopReceiving() throws {
        try handling.checkInHandler("stopReceiving")
        handling.stop()
    }
}

/// The state of one running chunk handler: the kernel's side of
/// ``Socket/handleChunks(maxHeld:file:line:function:_:)``.
///
/// Kernel-thread only: the stream's chunks are dispatched on the kernel's
/// thread, and the calling task runs there too. Its fields are touched per
/// chunk in accesses that never overlap (none spans the handler's call or
/// a suspension), so they go without run-time exclusivity checks.
final class ChunkHandling {
    let socket: Socket
    let receiver: ChunkReceiver
    let kernel: Kernel
    @exclusivity(unchecked) private var handler: ((ReceivedChunk, ChunkOutput) throws -> Void)?
    /// Cleared by end(), which breaks the output's reference back.
    @exclusivity(unchecked) private var output: ChunkOutput?
    /// The chunk object handed to the handler, reused while nobody keeps it.
    @exclusivity(unchecked) private var chunk: ReceivedChunk?
    /// Replies the socket could not take at once, for the task to send.
    @exclusivity(unchecked) private(set) var waiting: [UInt8] = []
    /// The handler is running (its output may send).
    @exclusivity(unchecked) private var inHandler = false
    /// Chunks wait for the task: replies wait, or the handler stopped or failed.
    @exclusivity(unchecked) private var held = false
    /// The handler asked to stop, or threw.
    @exclusivity(unchecked) private var stopped = false
    @exclusivity(unchecked) private var failure: (any Error)?

    init(socket: Socket, receiver: ChunkReceiver, handler: @escaping (ReceivedChunk, ChunkOutput) throws -> Void) {
        self.socket = socket
        self.receiver = receiver
        self.kernel = receiver.kernel
        self.handler = handler
        self.output = ChunkOutput(handling: self)
    }

    /// A chunk arrived (kernel thread, from dispatch): handled now unless
    /// chunks are held or earlier ones still wait to be handled.
    func arrived(_ buffer: UInt32, _ length: Int) {
        if stopped {
            kernel.releaseReceivePoolBuffer(buffer)
            return
        }
        if held || receiver.waitingCount > 0 {
            receiver.arrived((buffer, length))  // kept, and the task woken
            return
        }
        handle(buffer, length)
        if held { _ = kernel.wakeFirst(receiver.waiters) }
    }

    /// The calling task's part: hands over held chunks, sends what waits,
    /// and waits for the stream's end.
    func run(_ t: AnyCurioTask, site: CallSite) async throws {
        while true {
            if !waiting.isEmpty {
                do {
                    try await flush(t, site: site)
                } catch {
                    // A reply that cannot go out after the handler failed:
                    // the handler's error is the one to report.
                    throw failure ?? error
                }
            }
            if let failure { throw failure }
            if stopped {
                // Wait for the end of the stopped request, so the socket's
                // receiving direction is free when this returns.
                discardHeld()
                if receiver.end != nil { return }
            } else {
                held = false
                while !held, let (buffer, length) = receiver.popFirst() {
                    handle(buffer, length)
                }
                if held { continue }
                if let end = receiver.end {
                    if end == 0 { return }
                    if end == -Int(ECANCELED) {
                        throw SocketError(errno: EBADF, operation: "handleChunks (the socket was closed)")
                    }
                    throw SocketError(errno: Int32(-end), operation: "handleChunks")
                }
            }
            // A cancellation or timeout is thrown from here; the caller's
            // end() stops the stream and drops what is held and still comes.
            _ = try await kernel.block(t, .readWait, on: receiver.waiters, deadline: .max, site: site)
        }
    }

    /// Calls the handler with one chunk, then gives its buffer back.
    private func handle(_ buffer: UInt32, _ length: Int) {
        guard let handler else {
            kernel.releaseReceivePoolBuffer(buffer)
            return
        }
        let c = chunkObject(buffer, length)
        inHandler = true
        do {
            try handler(c, output!)
        } catch {
            if failure == nil { failure = error }
            stop()
        }
        inHandler = false
        c.release()
        if !waiting.isEmpty { held = true }
    }

    private func chunkObject(_ buffer: UInt32, _ length: Int) -> ReceivedChunk {
        let base = kernel.receivePoolBuffer(buffer)
        // Asked of the stored reference itself (see ChunkConsumer.chunk).
        if chunk != nil, isKnownUniquelyReferenced(&chunk!) {
            chunk!.reuse(buffer: buffer, base: base, count: length)
            return chunk!
        }
        let c = ReceivedChunk(receiver: receiver, buffer: buffer, base: base, count: length)
        chunk = c
        return c
    }

    func checkInHandler(_ what: StaticString) throws {
        guard inHandler else {
            throw CurioUsageError(.invalidArgument, "ChunkOutput.\(what): only inside the handler's call of handleChunks (the output cannot be kept and used later)")
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        try checkInHandler("send")
        guard bytes.count > 0 else { return }
        if !waiting.isEmpty {
            waiting.append(contentsOf: bytes)
            return
        }
        let taken = try socket.sendWithoutWaiting(bytes, kernel: kernel)
        if taken < bytes.count {
            waiting.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[taken...]))
        }
    }

    /// No further chunk is handled; the stream's request is cancelled.
    func stop() {
        stopped = true
        held = true
        stopStream()
    }

    private func stopStream() {
        receiver.cancel()
        discardHeld()
    }

    private func discardHeld() {
        while let (buffer, _) = receiver.popFirst() { kernel.releaseReceivePoolBuffer(buffer) }
    }

    /// Sends what waits, as `sendAll` would (the task holds the direction).
    private func flush(_ t: AnyCurioTask, site: CallSite) async throws {
        // Nothing appends while this waits: chunks are held, and the
        // output sends only inside the handler's call.
        try await socket.sendAllClaimed(t, waiting, site: site)
        waiting.removeAll(keepingCapacity: true)
    }

    /// The handler's call has ended, however: chunks held and still to
    /// come go back to the pool, and the handler (with whatever it
    /// captured) is let go.
    func end() {
        handler = nil
        receiver.handler = nil
        receiver.abandon()
        chunk = nil
        output = nil
        waiting = []
    }
}

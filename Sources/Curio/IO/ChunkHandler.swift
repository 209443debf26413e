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
    /// replies go out with the loop's next submission: about 1,500
    /// instructions per round trip at 100 connections, a third of
    /// `recv(into:)` + `sendAll`, and server CPU near the raw C io_uring
    /// server's (README "Echo"). The task wakes only for the end, or to
    /// send what the socket could not take.
    ///
    /// The handler is synchronous: it cannot wait, and it must not take
    /// long, since the kernel's other tasks wait while it runs. It gets the
    /// chunk (valid during the call; `Array(chunk)` keeps a copy) and the
    /// socket's ``ChunkOutput``, whose `send` copies the bytes and hands
    /// them to the system without waiting. It runs outside any task, so
    /// Curio calls that need the calling task (spawning, blocking calls,
    /// ``Kernel/receivePoolStatistics()``) are not for it; work that must
    /// wait goes to a task, through an unbounded ``UniversalQueue``'s
    /// `put` or a ``UniversalEvent``.
    ///
    /// Back-pressure: a reply the socket cannot take at once waits in the
    /// output, in order. On io_uring the send behind in flight hands the
    /// next part over when it ends, without the task; when no send can go
    /// (epoll with a full socket, or a reply larger than a send behind)
    /// the calling task sends what waits, suspending as `sendAll` does.
    /// While more than 64 KiB wait, or the task is sending, chunks are not
    /// handed to the handler: the stream holds at most about `maxHeld` of
    /// them (on io_uring up to the pool, as with ``receiveChunks(maxHeld:)``)
    /// and then stops receiving, so the peer's further bytes wait in the
    /// socket (TCP's window stops the sender). A peer that sends without
    /// reading costs 64 KiB of replies and the held chunks, no more.
    ///
    /// How it ends:
    /// - end of file: every reply is sent, then it returns;
    /// - ``ChunkOutput/stopReceiving()`` from the handler: no further chunk
    ///   is handled, every reply is sent, then it returns the bytes that had
    ///   already arrived after the stopping chunk (the stream may have
    ///   received them before it stopped), so the caller can go on reading
    ///   the socket without losing any;
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
    ///   - file: where the call is, for the monitor (defaulted).
    ///   - line: where the call is, for the monitor (defaulted).
    ///   - function: where the call is, for the monitor (defaulted).
    ///   - handler: called once per chunk, in order, on the kernel's thread.
    /// - Returns: after ``ChunkOutput/stopReceiving()``, the bytes received
    ///   but not handled; empty at end of file.
    @discardableResult
    public func handleChunks(maxHeld: Int = 4, file: StaticString = #filePath, line: UInt = #line,
                             function: StaticString = #function,
                             _ handler: @escaping (ReceivedChunk, ChunkOutput) throws -> Void) async throws -> [UInt8] {
        try beginHandlerSending()
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
        chunkHandling = handling
        defer {
            handling.end()
            endHandlerSending()
            endStreamReceiving()
        }
        return try await handling.run(t, site: CallSite(file: file, line: line, function: function))
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

    /// Bytes handed to ``send(_:)-(UnsafeRawBufferPointer)`` that the
    /// system has not taken yet (they wait in order behind a send in
    /// flight, or for room in the socket).
    public var waitingCount: Int { handling.waiting.count }

    /// Sends all of `bytes`: copied and handed to the system now, or, when
    /// the socket cannot take them at once, kept and handed over as soon
    /// as it can, in order with everything sent before and after. Throws
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
    /// sends what waits and returns the bytes that arrived after this chunk.
    public func stopReceiving() throws {
        try handling.checkInHandler("stopReceiving")
        handling.stop()
    }
}

/// The state of one running chunk handler: the kernel's side of
/// ``Socket/handleChunks(maxHeld:file:line:function:_:)``.
///
/// Replies go out without the task where they can: a reply the socket's
/// send behind cannot take yet (one is in flight) waits here, and the
/// send behind's completion hands the next part over (io_uring). Only a
/// socket that has no room (epoll, or a send larger than a send behind)
/// needs the task, which waits for room as `sendAll` does.
///
/// Kernel-thread only: the stream's chunks and the sends' completions are
/// dispatched on the kernel's thread, and the calling task runs there too.
/// Its fields are touched in accesses that never overlap (none spans the
/// handler's call or a suspension), so they go without run-time
/// exclusivity checks.
final class ChunkHandling {
    /// Replies waiting beyond this many bytes hold the stream back.
    static let waitingLimit = 64 * 1024

    let socket: Socket
    let receiver: ChunkReceiver
    let kernel: Kernel
    @exclusivity(unchecked) private var handler: ((ReceivedChunk, ChunkOutput) throws -> Void)?
    /// Cleared by end(), which breaks the output's reference back.
    @exclusivity(unchecked) private var output: ChunkOutput?
    /// The chunk object handed to the handler, reused while nobody keeps it.
    @exclusivity(unchecked) private var chunk: ReceivedChunk?
    /// Replies not handed to the system yet, in order.
    @exclusivity(unchecked) private(set) var waiting: [UInt8] = []
    /// The handler is running (its output may send).
    @exclusivity(unchecked) private var inHandler = false
    /// The socket had no room for what waits: the task sends it.
    @exclusivity(unchecked) private var needsTask = false
    /// The task is sending what waits; nothing else sends meanwhile.
    @exclusivity(unchecked) private var flushing = false
    /// The handler asked to stop, or failed.
    @exclusivity(unchecked) private var stopped = false
    @exclusivity(unchecked) private var failure: (any Error)?
    /// Bytes that arrived after a stop, for the caller.
    @exclusivity(unchecked) private var unhandled: [UInt8] = []

    init(socket: Socket, receiver: ChunkReceiver, handler: @escaping (ReceivedChunk, ChunkOutput) throws -> Void) {
        self.socket = socket
        self.receiver = receiver
        self.kernel = receiver.kernel
        self.handler = handler
        self.output = ChunkOutput(handling: self)
    }

    /// Chunks wait instead of going to the handler.
    private var held: Bool {
        stopped || needsTask || flushing || waiting.count > ChunkHandling.waitingLimit
    }

    private func wakeTask() { _ = kernel.wakeFirst(receiver.waiters) }

    /// A chunk arrived (kernel thread, from dispatch): handled now unless
    /// chunks are held or earlier ones still wait to be handled.
    func arrived(_ buffer: UInt32, _ length: Int) {
        if stopped {
            keep(buffer, length)
            return
        }
        if held || receiver.waitingCount > 0 {
            receiver.arrived((buffer, length))  // kept, and the task woken
            return
        }
        handle(buffer, length)
    }

    /// The socket's send behind ended (kernel thread, from dispatch): the
    /// next part of what waits goes, and held chunks go to the handler
    /// once the replies fit again.
    func sendBehindEnded() {
        // The common case, a reply that went out with nothing behind it.
        if waiting.isEmpty && !stopped && !needsTask && receiver.waitingCount == 0 && receiver.end == nil { return }
        guard handler != nil, !flushing else { return }
        do {
            try pump()
        } catch {
            fail(error)
            wakeTask()
            return
        }
        while !held, let (buffer, length) = receiver.popFirst() {
            handle(buffer, length)
        }
        if receiver.end != nil || stopped || needsTask { wakeTask() }
    }

    /// The calling task's part: sends what waits when only it can, hands
    /// over held chunks, and waits for the stream's end.
    func run(_ t: AnyCurioTask, site: CallSite) async throws -> [UInt8] {
        while true {
            // At the end (however it comes) every reply goes out first.
            if !waiting.isEmpty && (needsTask || stopped || receiver.end != nil) {
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
                if receiver.end != nil { return unhandled }
            } else {
                while !held, let (buffer, length) = receiver.popFirst() {
                    handle(buffer, length)
                }
                if needsTask || stopped { continue }
                // Not held: the loop above has taken every held chunk.
                if let end = receiver.end, !held {
                    if !waiting.isEmpty { continue }
                    if end == 0 { return [] }
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
            fail(error)
            wakeTask()
        }
        inHandler = false
        c.release()
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
            // Behind earlier replies: whoever sends those sends this next.
            waiting.append(contentsOf: bytes)
            return
        }
        let taken = try socket.sendWithoutWaiting(bytes, kernel: kernel)
        if taken == bytes.count { return }
        waiting.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[taken...]))
        noteNoRoomUnlessBehind()
    }

    /// Hands what waits to the system, one send behind at a time, until
    /// the socket takes no more now.
    private func pump() throws {
        while !waiting.isEmpty {
            let n = Swift.min(waiting.count, SendBehind.limit)
            let taken = try waiting.withUnsafeBytes {
                try socket.sendWithoutWaiting(UnsafeRawBufferPointer(rebasing: $0[0..<n]), kernel: kernel)
            }
            if taken == 0 { break }
            waiting.removeFirst(taken)
            if socket.sendBehindInFlight { return }  // its completion goes on
        }
        if !waiting.isEmpty { noteNoRoomUnlessBehind() }
    }

    /// Nothing more could go now: a send behind in flight will take the
    /// rest when it ends; without one the socket is full, and the task
    /// waits for room.
    private func noteNoRoomUnlessBehind() {
        guard !socket.sendBehindInFlight, !needsTask else { return }
        needsTask = true
        wakeTask()
    }

    /// No further chunk is handled; the stream's request is cancelled.
    func stop() {
        stopped = true
        receiver.cancel()
        // Chunks that wait come before any that still arrive (which
        // arrived() keeps at once from now on).
        while let (buffer, length) = receiver.popFirst() { keep(buffer, length) }
    }

    private func fail(_ error: any Error) {
        if failure == nil { failure = error }
        stop()
    }

    /// Keeps a chunk that arrived after a stop (unless the handler failed:
    /// then nobody takes it) and gives its buffer back.
    private func keep(_ buffer: UInt32, _ length: Int) {
        if failure == nil {
            unhandled.append(contentsOf: UnsafeRawBufferPointer(start: kernel.receivePoolBuffer(buffer), count: length))
        }
        kernel.releaseReceivePoolBuffer(buffer)
    }

    /// Sends what waits, as `sendAll` would (the task holds the direction):
    /// first the send behind in flight, then the rest.
    private func flush(_ t: AnyCurioTask, site: CallSite) async throws {
        flushing = true
        defer { flushing = false }
        // Nothing appends while this waits: chunks are held, and the
        // output sends only inside the handler's call.
        try await socket.sendAllClaimed(t, waiting, site: site)
        waiting.removeAll(keepingCapacity: true)
        needsTask = false
    }

    /// The handler's call has ended, however: chunks held and still to
    /// come go back to the pool, and the handler (with whatever it
    /// captured) is let go.
    func end() {
        handler = nil
        receiver.handler = nil
        socket.chunkHandling = nil
        receiver.abandon()
        chunk = nil
        output = nil
        waiting = []
        unhandled = []
    }
}

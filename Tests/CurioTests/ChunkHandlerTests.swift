// Chunk handlers (Socket.handleChunks): an echo of a megabyte intact and
// in order, back-pressure from a peer that sends without reading, the
// ways a handler ends (end of file, stopReceiving, a thrown error, a
// reset, a close, a cancellation), buffers going back to the pool on
// every path, and misuse. Each test runs on the path the build takes
// (io_uring's multishot recv from a provided-buffer ring, or recv on
// readiness with the Epoll trait) and checks the pool's statistics.
// Steps are ordered by what the kernel reports (a task blocked, a
// counter moved), never by sleeping.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ChunkHandlerTests {
    struct Boom: Error {}

    /// An echo handler; the peer sends a megabyte and reads the echo as
    /// it comes, then ends its side: every byte comes back in order, the
    /// handler sees no empty chunk, and nothing is held afterwards.
    @Test(.timeLimit(.minutes(1)))
    func anEchoedMegabyteComesBackIntactAndInOrder() async throws {
        let payload = IOTest.pattern(1 << 20, seed: 11)
        let r = try await StreamTest.run(count: 16, size: 4096) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            let reader = try await spawn { try await IOTest.receiveAll(client) }
            var chunks = 0, empty = 0
            try await server.handleChunks { chunk, output in
                chunks += 1
                if chunk.isEmpty { empty += 1 }
                try output.send(chunk)
            }
            try server.shutdown(.write)
            _ = try await producer.join()
            let echoed = try await reader.join() ?? []
            let s = try StreamTest.stats()
            return [
                StreamTest.path(kernel, s),
                StreamTest.summary(echoed),
                "many chunks \(chunks >= payload.count / 4096) empty \(empty)",
                "after: held \(s.held) streams \(s.streams)",
            ]
        }
        #expect(r == [
            StreamTest.expectedPath,
            StreamTest.summary(payload),
            "many chunks true empty 0",
            "after: held 0 streams 0",
        ])
    }

    /// The peer sends four megabytes and reads nothing until its own sends
    /// wait: the replies that did not fit wait in the output
    /// (at most one chunk's worth beyond ChunkHandling.waitingLimit), the stream
    /// stops receiving (held within maxHeld; on io_uring within the pool,
    /// as the ring may have filled a few more before it stopped), the
    /// peer's sends wait in the sockets, and once the peer reads, every
    /// byte comes back in order.
    @Test(.timeLimit(.minutes(1)))
    func aPeerThatDoesNotReadHoldsTheHandlerBack() async throws {
        let payload = IOTest.pattern(4 << 20, seed: 12)
        let r = try await StreamTest.run(count: 16, size: 4096) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 64 * 1024, sendBuffer: 64 * 1024)
            defer { client.close(); server.close() }
            try server.setOption(.sendBufferSize, 64 * 1024)
            let producer = try await StreamTest.sendThenEnd(client, payload)
            let handlerTask = try await spawn { () async throws -> (Int, Int) in
                var mostWaiting = 0, mostHeld = 0
                try await server.handleChunks(maxHeld: 2) { chunk, output in
                    try output.send(chunk)
                    mostWaiting = max(mostWaiting, output.waitingCount)
                    // The handler runs outside any task: the kernel's own
                    // counters, not the task-facing statistics call.
                    mostHeld = max(mostHeld, kernel.receivePoolCounts().held)
                }
                try server.shutdown(.write)
                return (mostWaiting, mostHeld)
            }
            // The peer's sends wait once the stream has stopped receiving
            // (the handler's task waits to send on epoll; on io_uring the
            // replies wait for their send behind, and the task for the end).
            try await IOTest.waitUntil("the stream stops receiving") {
                let s = try StreamTest.stats()
                return s.paused + s.exhausted > 0
            }
            try await IOTest.waitBlocked(producer, .writeWait)
            try await IOTest.waitUntil("the handler's task waits") {
                IOTest.isBlocked(handlerTask, .writeWait) || IOTest.isBlocked(handlerTask, .readWait)
            }
            let stalled = try StreamTest.stats()
            let bound = stalled.usesBufferRing ? stalled.buffers : 2
            let echoed = try await IOTest.receiveAll(client)
            let (mostWaiting, mostHeld) = try await handlerTask.join() ?? (-1, -1)
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return [
                StreamTest.path(kernel, s),
                "held while stalled \(stalled.held <= bound)",
                "most waiting within the limit \(mostWaiting <= ChunkHandling.waitingLimit + 4096)",
                "most held \(mostHeld <= bound)",
                StreamTest.summary(echoed),
                "after: held \(s.held) streams \(s.streams)",
            ]
        }
        #expect(r == [
            StreamTest.expectedPath,
            "held while stalled true",
            "most waiting within the limit true",
            "most held true",
            StreamTest.summary(payload),
            "after: held 0 streams 0",
        ])
    }

    /// Replies larger than a send behind go to the socket at once, and
    /// when it has no room the handler's task sends the rest (it waits for
    /// room as sendAll does) before any later chunk is handled: six times
    /// the bytes come back, none lost, none extra.
    @Test(.timeLimit(.minutes(1)))
    func repliesTheSocketCannotTakeAreSentByTheTask() async throws {
        let payload = [UInt8](repeating: 0x5A, count: 1 << 20)
        let r = try await StreamTest.run(count: 16, size: 4096) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 64 * 1024, sendBuffer: 64 * 1024)
            defer { client.close(); server.close() }
            try server.setOption(.sendBufferSize, 64 * 1024)
            let producer = try await StreamTest.sendThenEnd(client, payload)
            let reader = try await spawn { try await IOTest.receiveAll(client) }
            var reply: [UInt8] = []
            try await server.handleChunks { chunk, output in
                reply.removeAll(keepingCapacity: true)
                for _ in 0..<6 { reply.append(contentsOf: chunk) }
                try output.send(reply)
            }
            try server.shutdown(.write)
            _ = try await producer.join()
            let echoed = try await reader.join() ?? []
            let s = try StreamTest.stats()
            return [StreamTest.path(kernel, s), "count \(echoed.count)", "all 0x5A \(echoed.allSatisfy { $0 == 0x5A })",
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == [StreamTest.expectedPath, "count \(6 << 20)", "all 0x5A true", "after: held 0 streams 0"])
    }

    // MARK: How a handler ends

    /// stopReceiving() ends the call normally after the reply of the
    /// chunk that asked for it went out; no later chunk is handled.
    @Test(.timeLimit(.minutes(1)))
    func stopReceivingReturnsAfterTheLastReplyWentOut() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let handlerTask = try await spawn { () async throws -> [String] in
                var handled: [String] = []
                try await server.handleChunks { chunk, output in
                    let text = IOTest.text(Array(chunk))
                    handled.append(text)
                    try output.send(IOTest.bytes("ok \(text)"))
                    if text == "quit" { try output.stopReceiving() }
                }
                return handled
            }
            try await client.sendAll(IOTest.bytes("hello"))
            let first = IOTest.text(try await IOTest.receive(client, count: 8))
            try await client.sendAll(IOTest.bytes("quit"))
            let second = IOTest.text(try await IOTest.receive(client, count: 7))
            let handled = try await handlerTask.join() ?? []
            // The socket's directions are free again (nothing had arrived
            // after "quit", so nothing was returned).
            try await client.sendAll(IOTest.bytes("after"))
            let later = IOTest.text(try await IOTest.receive(server, count: 5))
            let s = try StreamTest.stats()
            return [first, second, "handled \(handled)", "later \(later)",
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["ok hello", "ok quit", "handled [\"hello\", \"quit\"]", "later after",
                      "after: held 0 streams 0"])
    }

    /// Bytes the stream had received past the stopping chunk are returned,
    /// so none is lost: what the handler saw, what the call returned and
    /// what a later recv reads make up exactly what the peer sent, however
    /// the bytes were cut into chunks.
    @Test(.timeLimit(.minutes(1)))
    func bytesReceivedAfterTheStopAreReturnedNotLost() async throws {
        let payload = IOTest.pattern(256 << 10, seed: 14)
        let r = try await StreamTest.run(count: 16, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            var handled: [UInt8] = []
            let unhandled = try await server.handleChunks(maxHeld: 8) { chunk, output in
                handled.append(contentsOf: chunk)
                if handled.count >= 64 << 10 { try output.stopReceiving() }
            }
            let rest = try await IOTest.receiveAll(server)
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return [StreamTest.summary(handled + unhandled + rest), "handled at least 64 KiB \(handled.count >= 64 << 10)",
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == [StreamTest.summary(payload), "handled at least 64 KiB true", "after: held 0 streams 0"])
    }

    /// A handler that throws ends the call with its error, after the
    /// replies it had handed over went out.
    @Test(.timeLimit(.minutes(1)))
    func aThrowingHandlerEndsTheCallWithItsErrorAfterItsReplies() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let handlerTask = try await spawn { () async -> String in
                IOTest.kind(await IOTest.error {
                    try await server.handleChunks { chunk, output in
                        try output.send(IOTest.bytes("bye"))
                        if IOTest.text(Array(chunk)) == "boom" { throw Boom() }
                    }
                })
            }
            try await client.sendAll(IOTest.bytes("boom"))
            let reply = IOTest.text(try await IOTest.receive(client, count: 3))
            let outcome = try await handlerTask.join() ?? "none"
            let s = try StreamTest.stats()
            return [reply, outcome, "after: held \(s.held)"]
        }
        #expect(r == ["bye", "Boom", "after: held 0"])
    }

    /// A reset mid-stream ends the call with ECONNRESET; a close of the
    /// socket by another task, or by the handler itself after its reply,
    /// ends it with EBADF (and a send after the handler's own close throws
    /// EBADF at once rather than queueing bytes for a closed descriptor). Either way nothing stays held and no stream
    /// keeps running.
    @Test(.timeLimit(.minutes(1)), arguments: ["reset", "close", "close in handler"])
    func aResetOrACloseEndsTheCallWithASocketError(how: String) async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let handlerTask = try await spawn { () async -> [String] in
                var handled = 0
                var sendAfterClose = "none"
                let error = await IOTest.error {
                    try await server.handleChunks { chunk, output in
                        handled += 1
                        try output.send(chunk)
                        if how == "close in handler" && handled == 2 {
                            server.close()
                            do {
                                try output.send(chunk)
                                sendAfterClose = "no error"
                            } catch {
                                sendAfterClose = IOTest.kind(error)
                            }
                        }
                    }
                }
                return ["handled \(handled)", "send after close \(sendAfterClose)", StreamTest.kind(error)]
            }
            try await client.sendAll(IOTest.bytes("ping"))
            _ = try await IOTest.receive(client, count: 4)
            try await IOTest.waitBlocked(handlerTask, .readWait)
            switch how {
            case "reset": IOTest.resetClose(client)
            case "close": server.close()
            default:
                try await client.sendAll(IOTest.bytes("last"))
                // The reply went out before the close.
                _ = try await IOTest.receive(client, count: 4)
            }
            let outcome = try await handlerTask.join() ?? []
            let s = try StreamTest.stats()
            return outcome + ["after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == [how == "close in handler" ? "handled 2" : "handled 1",
                      how == "close in handler" ? "send after close SocketError(EBADF)" : "send after close none",
                      how == "reset" ? "SocketError(ECONNRESET)" : "SocketError(EBADF)",
                      "after: held 0 streams 0"])
    }

    /// Cancelling the handler's task ends the call with the cancellation
    /// and the stream with it: buffers held by back-pressure go back, and
    /// no send is left in flight.
    @Test(.timeLimit(.minutes(1)))
    func cancellingTheTaskStopsTheStreamAndReturnsItsBuffers() async throws {
        let payload = IOTest.pattern(2 << 20, seed: 13)
        let r = try await StreamTest.run(count: 8, size: 4096) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 64 * 1024, sendBuffer: 64 * 1024)
            defer { client.close(); server.close() }
            try server.setOption(.sendBufferSize, 64 * 1024)
            let producer = try await spawn { () async throws -> Void in
                _ = try? await client.sendAll(payload)
            }
            let handlerTask = try await spawn { () async -> String in
                StreamTest.kind(await IOTest.error {
                    try await server.handleChunks(maxHeld: 4) { chunk, output in try output.send(chunk) }
                })
            }
            // The peer reads nothing: the replies fill the sockets, the
            // stream stops receiving and the peer's sends wait.
            try await IOTest.waitUntil("the stream stops receiving") {
                let s = try StreamTest.stats()
                return s.paused + s.exhausted > 0 && s.held > 0
            }
            try await IOTest.waitBlocked(producer, .writeWait)
            try await handlerTask.cancel()
            let outcome = try await handlerTask.join() ?? "none"
            try await IOTest.waitUntil("the stream ends") { try StreamTest.stats().streams == 0 }
            let s = try StreamTest.stats()
            client.close()
            try await producer.cancel()
            return [outcome, "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["CancelledError", "after: held 0 streams 0"])
    }

    /// A timeout around the call ends it at the deadline (on the virtual
    /// clock, moved by hand), with the block's TaskTimeout, and the stream
    /// with it; the handler had served the peer until then.
    @Test(.timeLimit(.minutes(1)))
    func aTimeoutEndsTheCallAtItsDeadline() async throws {
        let r = try await KernelHarness.runVirtual(limit: 40, autojump: nil) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let handlerTask = try await spawn { () async -> String in
                let error = await IOTest.error {
                    _ = try await timeoutAfter(5) {
                        try await server.handleChunks { chunk, output in try output.send(chunk) }
                    }
                }
                return error is TaskTimeout ? "TaskTimeout" : StreamTest.kind(error)
            }
            try await client.sendAll(IOTest.bytes("ping"))
            let reply = IOTest.text(try await IOTest.receive(client, count: 4))
            try await IOTest.waitBlocked(handlerTask, .readWait)
            try kernel.advanceClock(by: .seconds(4))
            let before = IOTest.isBlocked(handlerTask, .readWait)
            try kernel.advanceClock(by: .seconds(2))
            let outcome = try await handlerTask.join() ?? "none"
            try await IOTest.waitUntil("the stream ends") { try StreamTest.stats().streams == 0 }
            let s = try StreamTest.stats()
            return [reply, "waiting before the deadline \(before)", outcome, "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["ping", "waiting before the deadline true", "TaskTimeout", "after: held 0 streams 0"])
    }

    // MARK: Chunks and outputs outside the call, misuse

    /// A chunk kept past the handler's call is released (reading it would
    /// stop the program), and an output kept past it refuses to send with
    /// an error that says why.
    @Test(.timeLimit(.minutes(1)))
    func chunksAndOutputsKeptPastTheCallCannotBeUsed() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var keptChunk: ReceivedChunk?
            var keptOutput: ChunkOutput?
            try await client.sendAll(IOTest.bytes("keep"))
            try client.shutdown(.write)
            try await server.handleChunks { chunk, output in
                keptChunk = chunk
                keptOutput = output
            }
            let sendError = await IOTest.error { try keptOutput?.send(IOTest.bytes("late")) }
            let message = (sendError as? CurioUsageError)?.message ?? "none"
            return ["released \(keptChunk?.isReleased == true)", IOTest.kind(sendError),
                    "names the mistake \(message.contains("only inside the handler"))"]
        }
        #expect(r == ["released true", "CurioUsageError.invalidArgument", "names the mistake true"])
    }

    /// While a handler runs it holds both directions; a bad maxHeld and a
    /// datagram socket are refused at once with a message.
    @Test(.timeLimit(.minutes(1)))
    func misuseIsRefusedWithAClearError() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var out: [String] = []
            out.append(StreamTest.kind(await IOTest.error { try await server.handleChunks(maxHeld: 0) { _, _ in } }))
            let udp = try Socket(.inet, .datagram)
            defer { udp.close() }
            out.append(StreamTest.kind(await IOTest.error { try await udp.handleChunks { _, _ in } }))
            let handlerTask = try await spawn { () async throws -> Void in
                try await server.handleChunks { chunk, output in try output.send(chunk) }
            }
            try await IOTest.waitBlocked(handlerTask, .readWait)
            out.append(StreamTest.kind(await IOTest.error { _ = try await server.recv(10) }))
            out.append(StreamTest.kind(await IOTest.error { try await server.sendAll(IOTest.bytes("x")) }))
            out.append(StreamTest.kind(await IOTest.error { try await server.handleChunks { _, _ in } }))
            try client.shutdown(.write)
            out.append(IOTest.kind(await IOTest.error { _ = try await handlerTask.join() }))
            let s = try StreamTest.stats()
            out.append("after: held \(s.held) streams \(s.streams)")
            return out
        }
        #expect(r == ["CurioUsageError.invalidArgument", "CurioUsageError.invalidArgument",
                      "ResourceBusy", "ResourceBusy", "ResourceBusy", "no error",
                      "after: held 0 streams 0"])
    }
}

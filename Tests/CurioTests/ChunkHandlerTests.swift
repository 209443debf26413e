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
            let producer = try await spawn { () async throws -> Void in
                try await client.sendAll(payload)
                try client.shutdown(.write)
            }
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

    /// The peer sends four megabytes and reads nothing until the handler's
    /// task waits to send: the replies that did not fit wait in the output
    /// (at most one chunk's worth beyond what the socket took), the stream
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
            let producer = try await spawn { () async throws -> Void in
                try await client.sendAll(payload)
                try client.shutdown(.write)
            }
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
            try await IOTest.waitBlocked(handlerTask, .writeWait)
            try await IOTest.waitBlocked(producer, .writeWait)
            let stalled = try StreamTest.stats()
            let bound = stalled.usesBufferRing ? stalled.buffers : 2
            let echoed = try await IOTest.receiveAll(client)
            let (mostWaiting, mostHeld) = try await handlerTask.join() ?? (-1, -1)
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return [
                StreamTest.path(kernel, s),
                "held while stalled \(stalled.held <= bound) stopped \(stalled.paused + stalled.exhausted > 0)",
                "most waiting within a chunk \(mostWaiting <= 4096)",
                "most held \(mostHeld <= bound)",
                StreamTest.summary(echoed),
                "after: held \(s.held) streams \(s.streams)",
            ]
        }
        #expect(r == [
            StreamTest.expectedPath,
            "held while stalled true stopped true",
            "most waiting within a chunk true",
            "most held true",
            StreamTest.summary(payload),
            "after: held 0 streams 0",
        ])
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
            // The socket's directions are free again.
            try await client.sendAll(IOTest.bytes("after"))
            let later = IOTest.text(try await IOTest.receive(server, count: 5))
            let s = try StreamTest.stats()
            return [first, second, "handled \(handled)", "later \(later)",
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["ok hello", "ok quit", "handled [\"hello\", \"quit\"]", "later after",
                      "after: held 0 streams 0"])
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
    /// socket by another task ends it with EBADF. Either way nothing stays
    /// held and no stream keeps running.
    @Test(.timeLimit(.minutes(1)), arguments: ["reset", "close"])
    func aResetOrACloseEndsTheCallWithASocketError(how: String) async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let handlerTask = try await spawn { () async -> [String] in
                var handled = 0
                let error = await IOTest.error {
                    try await server.handleChunks { chunk, output in
                        handled += 1
                        try output.send(chunk)
                    }
                }
                return ["handled \(handled)", StreamTest.kind(error)]
            }
            try await client.sendAll(IOTest.bytes("ping"))
            _ = try await IOTest.receive(client, count: 4)
            try await IOTest.waitBlocked(handlerTask, .readWait)
            if how == "reset" { IOTest.resetClose(client) } else { server.close() }
            let outcome = try await handlerTask.join() ?? []
            let s = try StreamTest.stats()
            return outcome + ["after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["handled 1", how == "reset" ? "SocketError(ECONNRESET)" : "SocketError(EBADF)",
                      "after: held 0 streams 0"])
    }

    /// Cancelling the handler's task ends the call with the cancellation
    /// and the stream with it: buffers held by back-pressure go back.
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
            // The peer reads nothing: the task ends up waiting to send.
            try await IOTest.waitBlocked(handlerTask, .writeWait)
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

// Streaming receive (Socket.receiveChunks): bytes intact and in order,
// the end of a stream and a reset, back-pressure with a slow consumer and
// an empty pool, buffers going back (release, moving on, dropping the
// iterator), cancellation and close of a waiting next(), two consumers,
// misuse, and an echo with sendAll(chunk). Every test runs on the path
// the build takes (io_uring's multishot recv from a provided-buffer ring,
// or recv on readiness with the Epoll trait) and checks the pool's
// statistics that show it. Steps are ordered by what the kernel reports
// (a task blocked, buffers held, a counter moved), never by sleeping.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ReceiveStreamTests {
    // MARK: Bytes, end, reset

    @Test(.timeLimit(.minutes(1)))
    func aMegabyteArrivesIntactAndInOrder() async throws {
        let payload = IOTest.pattern(1 << 20, seed: 1)
        let r = try await StreamTest.run(count: 16, size: 4096) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            var got: [UInt8] = []
            got.reserveCapacity(payload.count)
            var chunks = 0, oversize = 0, empty = 0, streamsWhileRunning = -1
            for try await chunk in server.receiveChunks() {
                chunks += 1
                if chunk.count > 4096 { oversize += 1 }
                if chunk.isEmpty { empty += 1 }
                got.append(contentsOf: chunk)
                if chunks == 1 { streamsWhileRunning = try StreamTest.stats().streams }
            }
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return [
                StreamTest.path(kernel, s),
                "buffers \(s.buffers) of \(s.bufferSize)",
                StreamTest.summary(got),
                "intact \(got == payload)",
                "oversize \(oversize) empty \(empty)",
                "many chunks \(chunks >= payload.count / 4096)",
                "chunks counted \(s.chunks == chunks)",
                "streams while running \(streamsWhileRunning)",
                "after: held \(s.held) streams \(s.streams)",
            ]
        }
        #expect(r == [
            StreamTest.expectedPath,
            "buffers 16 of 4096",
            StreamTest.summary(payload),
            "intact true",
            "oversize 0 empty 0",
            "many chunks true",
            "chunks counted true",
            "streams while running 1",
            "after: held 0 streams 0",
        ])
    }

    /// A consumer that lets each chunk go before asking for the next gets
    /// the same chunk object every time (no allocation per chunk); one
    /// that keeps its chunks gets a new object each time, and each kept
    /// chunk is released, never pointed at a later buffer.
    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func chunkObjectsAreReusedOnlyWhenNobodyKeepsThem(keep: Bool) async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let received = Queue<String>()
            // One message at a time: the next goes out only once the
            // consumer has taken the last, so every chunk is one message.
            let producer = try await spawn { () async throws -> Void in
                for i in 0..<10 {
                    try await client.sendAll(Array("message \(i)".utf8))
                    _ = try await received.get()
                }
                try client.shutdown(.write)
            }
            var identities: [ObjectIdentifier] = []
            var kept: [ReceivedChunk] = []
            var texts: [String] = []
            for try await chunk in server.receiveChunks() {
                identities.append(ObjectIdentifier(chunk))
                texts.append(IOTest.text(Array(chunk)))
                if keep { kept.append(chunk) }
                try await received.put(texts.last!)
            }
            _ = try await producer.join()
            return [
                "texts \(texts == (0..<10).map { "message \($0)" })",
                "objects \(Set(identities).count)",
                "kept released \(kept.allSatisfy { $0.isReleased })",
            ]
        }
        #expect(r == ["texts true", "objects \(keep ? 10 : 1)", "kept released true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func thePeerClosingEndsTheSequence() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            // The consumer waits in next() before anything arrives: the
            // bytes and then the end must wake it.
            let consumer = try await spawn { () async throws -> [String] in
                var it = server.receiveChunks().makeAsyncIterator()
                var got: [UInt8] = []
                while let c = try await it.next() { got.append(contentsOf: c) }
                let again = try await it.next()
                return ["got \(IOTest.text(got))", "again \(again == nil ? "nil" : "a chunk")"]
            }
            try await IOTest.waitBlocked(consumer, .readWait)
            try await client.sendAll(IOTest.bytes("hello"))
            client.close()
            var out = try await consumer.join() ?? ["consumer cancelled"]
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            out.append("after: held \(s.held) streams \(s.streams)")
            // The receiving direction is free again: a recv sees the end
            // instead of ResourceBusy, and so does a new stream.
            out.append("recv \(IOTest.kind(await IOTest.error { _ = try await server.recv(10) })) \(try await server.recv(10).count)")
            var n = 0
            for try await _ in server.receiveChunks() { n += 1 }
            out.append("a new stream at the end: \(n) chunks")
            return out
        }
        #expect(r == ["got hello", "again nil", StreamTest.expectedPath, "after: held 0 streams 0",
                      "recv no error 0", "a new stream at the end: 0 chunks"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aResetMidStreamThrowsECONNRESETAfterTheBytesBeforeIt() async throws {
        let part1 = IOTest.pattern(4096, seed: 3)
        let part2 = IOTest.pattern(2048, seed: 4)
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let firstPartIn = Curio.Event()
            let consumer = try await spawn { () async throws -> [String] in
                var got: [UInt8] = []
                var told = false
                do {
                    for try await chunk in server.receiveChunks() {
                        got.append(contentsOf: chunk)
                        if !told && got.count >= part1.count {
                            told = true
                            await firstPartIn.set()
                        }
                    }
                    return ["ended without an error", StreamTest.summary(got)]
                } catch {
                    return [StreamTest.kind(error), StreamTest.summary(got)]
                }
            }
            try await client.sendAll(part1)
            try await firstPartIn.wait()
            // The second part is in the receiver's queue before the reset
            // (loopback delivers in order), so it must come out first.
            try await client.sendAll(part2)
            IOTest.resetClose(client)
            var out = try await consumer.join() ?? ["consumer cancelled"]
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            out.append("after: held \(s.held) streams \(s.streams)")
            return out
        }
        #expect(r == ["SocketError(ECONNRESET)", StreamTest.summary(part1 + part2), StreamTest.expectedPath,
                      "after: held 0 streams 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func bytesQueuedBeforeAResetComeOutBeforeTheError() async throws {
        let part = IOTest.pattern(6000, seed: 5)
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(part)
            try await IOTest.waitUntil("the bytes are queued") { IOTest.queued(server.fd) == part.count }
            IOTest.resetClose(client)
            try await IOTest.waitUntil("the reset arrived") { StreamTest.hasErrorOrHangUp(server.fd) }
            var got: [UInt8] = []
            var failure: (any Error)?
            do {
                for try await chunk in server.receiveChunks() { got.append(contentsOf: chunk) }
            } catch {
                failure = error
            }
            let s = try StreamTest.stats()
            return [StreamTest.kind(failure), StreamTest.summary(got), StreamTest.path(kernel, s),
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["SocketError(ECONNRESET)", StreamTest.summary(part), StreamTest.expectedPath,
                      "after: held 0 streams 0"])
    }

    // MARK: Back-pressure

    /// A consumer that stops now and then while far more than the pool is
    /// still to come: the stream stops at its bound (the sender then
    /// waits on TCP's window), starts again when the consumer moves on,
    /// and loses nothing. With maxHeld 2 the stream's own bound stops it;
    /// with maxHeld 8 (the whole pool) on io_uring the ring runs dry
    /// (ENOBUFS, `exhausted`), while the readiness path stops at the bound
    /// before it takes the last buffer.
    @Test(.timeLimit(.minutes(1)), arguments: [2, 8])
    func aSlowConsumerStopsTheStreamAndLosesNothing(maxHeld: Int) async throws {
        let payload = IOTest.pattern(256 << 10, seed: maxHeld)
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 16384, sendBuffer: 16384)
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            var got: [UInt8] = []
            got.reserveCapacity(payload.count)
            var maxSeen = 0, stalls = 0, index = 0
            var producerWaited = false
            // The pool ran dry this many times when the last stop ended: a
            // stop with the pool empty counts one more (the consumer gives
            // nothing back meanwhile, so the stream cannot have restarted).
            var exhaustedBefore = 0
            for try await chunk in server.receiveChunks(maxHeld: maxHeld) {
                got.append(contentsOf: chunk)
                var s = try StreamTest.stats()
                maxSeen = max(maxSeen, s.held)
                if got.count < payload.count / 2 && index % 16 == 0 {
                    let poolStops = s.usesBufferRing && maxHeld >= s.buffers
                    try await IOTest.waitUntil("the stream stops (held \(s.held), maxHeld \(maxHeld))") {
                        s = try StreamTest.stats()
                        maxSeen = max(maxSeen, s.held)
                        return poolStops ? s.exhausted > exhaustedBefore : s.held >= min(maxHeld, s.buffers)
                    }
                    if stalls == 0 {
                        // The bytes wait in the sockets, not in memory: the
                        // sender blocks while the stream holds its bound.
                        try await IOTest.waitBlocked(producer, .writeWait)
                        s = try StreamTest.stats()
                        maxSeen = max(maxSeen, s.held)
                        producerWaited = true
                    }
                    stalls += 1
                    exhaustedBefore = s.exhausted
                }
                index += 1
            }
            _ = try await producer.join()
            let s = try StreamTest.stats()
            // io_uring may hand over a few chunks it had received when the
            // stream stops: the pool bounds them. The readiness path stops
            // exactly at maxHeld.
            let bound = s.usesBufferRing ? s.buffers : min(maxHeld, s.buffers)
            return [
                StreamTest.path(kernel, s),
                StreamTest.summary(got),
                "intact \(got == payload)",
                "stalls \(stalls >= 4) producer waited \(producerWaited)",
                "held within \(bound): \(maxSeen <= bound), reached \(min(maxHeld, s.buffers)): \(maxSeen >= min(maxHeld, s.buffers))",
                "paused \(s.paused > 0) rearmed \(s.rearmed > 0)",
                // Each stop at the bound is counted once and followed by one
                // restart (the stream ended at EOF, not while stopped).
                "stops counted once \(s.paused <= s.rearmed)",
                // Below the pool's size on io_uring the ring may or may
                // not run dry before the stream's pause lands.
                s.usesBufferRing && maxHeld < s.buffers ? "exhausted (either)" : "exhausted \(s.exhausted > 0)",
                "after: held \(s.held) streams \(s.streams)",
                "\(s)",
            ]
        }
        let ring = StreamTest.expectedPath.hasSuffix("ring true")
        #expect(Array(r.dropLast()) == [
            StreamTest.expectedPath,
            StreamTest.summary(payload),
            "intact true",
            "stalls true producer waited true",
            "held within \(ring ? 8 : maxHeld): true, reached \(maxHeld): true",
            "paused true rearmed true",
            "stops counted once true",
            ring && maxHeld < 8 ? "exhausted (either)" : "exhausted \(ring)",
            "after: held 0 streams 0",
        ], "\(r.last ?? "")")
    }

    /// One stream holds the whole pool; a second stream on another socket
    /// stalls for want of a buffer (`exhausted`: ENOBUFS on io_uring, an
    /// empty free list on readiness) and starts again once the first gives
    /// buffers back (`rearmed`). Both get their bytes intact.
    @Test(.timeLimit(.minutes(1)))
    func anEmptyPoolStallsAStreamUntilABufferComesBack() async throws {
        let bytesA = IOTest.pattern(8192, seed: 6)
        let bytesB = IOTest.pattern(3000, seed: 7)
        let r = try await StreamTest.run(count: 4, size: 1024) { kernel -> [String] in
            let (clientA, serverA) = try await IOTest.tcpPair()
            let (clientB, serverB) = try await IOTest.tcpPair()
            defer { clientA.close(); serverA.close(); clientB.close(); serverB.close() }
            try await clientA.sendAll(bytesA)
            clientA.close()
            try await clientB.sendAll(bytesB)
            clientB.close()
            var out: [String] = []
            var itA = serverA.receiveChunks(maxHeld: 4).makeAsyncIterator()
            var gotA: [UInt8] = []
            guard let first = try await itA.next() else { return ["A ended at once"] }
            gotA.append(contentsOf: first)
            try await IOTest.waitUntil("A holds the whole pool") { try StreamTest.stats().held == 4 }
            let before = try StreamTest.stats()
            let consumerB = try await spawn { () async throws -> [UInt8] in
                var got: [UInt8] = []
                for try await chunk in serverB.receiveChunks() { got.append(contentsOf: chunk) }
                return got
            }
            try await IOTest.waitUntil("B stalls for a buffer") { try StreamTest.stats().exhausted > before.exhausted }
            try await IOTest.waitBlocked(consumerB, .readWait)
            let stalled = try StreamTest.stats()
            out.append("while B stalls: held \(stalled.held) streams \(stalled.streams)")
            while let c = try await itA.next() { gotA.append(contentsOf: c) }
            let gotB = try await consumerB.join() ?? []
            let s = try StreamTest.stats()
            out += [
                StreamTest.path(kernel, s),
                "A \(StreamTest.summary(gotA))", "B \(StreamTest.summary(gotB))",
                "rearmed \(s.rearmed > before.rearmed)",
                "after: held \(s.held) streams \(s.streams)",
            ]
            return out
        }
        #expect(r == [
            "while B stalls: held 4 streams 2",
            StreamTest.expectedPath,
            "A \(StreamTest.summary(bytesA))", "B \(StreamTest.summary(bytesB))",
            "rearmed true",
            "after: held 0 streams 0",
        ])
    }

    // MARK: Buffers going back

    @Test(.timeLimit(.minutes(1)))
    func releasingMovingOnAndDroppingTheIteratorReturnBuffers() async throws {
        let payload = IOTest.pattern(3000 + (64 << 10), seed: 8)
        let head = Array(payload[0..<3000])
        let tail = Array(payload[3000...])
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var out: [String] = []
            var consumed: [UInt8] = []
            // The iteration lives in this function: returning drops the iterator.
            func someChunks() async throws -> ReceivedChunk? {
                // Three chunks' worth and nothing more for now: a release
                // cannot be followed at once by a new chunk.
                try await client.sendAll(head)
                try await IOTest.waitUntil("the bytes are queued") { IOTest.queued(server.fd) == head.count }
                var it = server.receiveChunks(maxHeld: 4).makeAsyncIterator()
                guard let a = try await it.next() else { return nil }
                consumed.append(contentsOf: a)
                try await IOTest.waitUntil("every byte is in a chunk") { IOTest.queued(server.fd) == 0 }
                let held0 = try StreamTest.stats().held
                a.release()
                let held1 = try StreamTest.stats().held
                a.release()
                let held2 = try StreamTest.stats().held
                out.append("release gives one back \(held0 >= 3 && held1 == held0 - 1), twice is harmless \(held2 == held1), released \(a.isReleased)")
                guard let b = try await it.next() else { return nil }
                consumed.append(contentsOf: b)
                guard let c = try await it.next() else { return nil }
                out.append("moving on released the kept chunk \(b.isReleased), new chunk \(c !== b) readable \(!c.isReleased)")
                consumed.append(contentsOf: c)
                // More than the stream may hold: chunks wait untaken when
                // the iterator goes.
                _ = try await spawn { () async throws -> Void in
                    try await client.sendAll(tail)
                    try client.shutdown(.write)
                }
                try await IOTest.waitUntil("the stream holds its bound") { try StreamTest.stats().held >= 4 }
                return c
            }
            guard let kept = try await someChunks() else { return ["the stream ended early"] }
            out.append("dropping the iterator released its last chunk \(kept.isReleased)")
            // Chunks received but never taken go back too, and the C
            // request ends: the socket's receiving direction is free.
            try await IOTest.waitUntil("the dropped stream is gone") {
                let s = try StreamTest.stats()
                return s.held == 0 && s.streams == 0
            }
            let rest = try await IOTest.receiveAll(server)
            // What the dropped stream had received and nobody took is gone;
            // what follows it is the rest of the bytes, in order.
            out.append("prefix \(payload.starts(with: consumed)) suffix \(rest.count <= payload.count - consumed.count && Array(payload.suffix(rest.count)) == rest) rest \(!rest.isEmpty)")
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            return out
        }
        #expect(r == [
            "release gives one back true, twice is harmless true, released true",
            "moving on released the kept chunk true, new chunk true readable true",
            "dropping the iterator released its last chunk true",
            "prefix true suffix true rest true",
            StreamTest.expectedPath,
        ])
    }

    // MARK: Cancellation and close

    @Test(.timeLimit(.minutes(1)))
    func cancellingAWaitingNextEndsTheStreamAndFreesTheSocket() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let consumer = try await spawn { () async throws -> [String] in
                var it = server.receiveChunks().makeAsyncIterator()
                var out: [String] = []
                do {
                    _ = try await it.next()
                    out.append("next returned")
                } catch {
                    out.append(StreamTest.kind(error))
                }
                // The stream is over: the same iterator ends (nil), it does not hang.
                out.append("then \(try await it.next() == nil ? "nil" : "a chunk")")
                return out
            }
            try await IOTest.waitBlocked(consumer, .readWait)
            var out = ["streams while waiting \(try StreamTest.stats().streams)"]
            try await consumer.cancel()
            out += try await consumer.join() ?? ["consumer ended by the cancellation"]
            try await IOTest.waitUntil("the stream is gone") {
                let s = try StreamTest.stats()
                return s.held == 0 && s.streams == 0
            }
            // The socket is usable: a recv, then a new stream, get the bytes.
            try await client.sendAll(IOTest.bytes("after"))
            out.append("recv \(IOTest.text(try await IOTest.receive(server, count: 5)))")
            try await client.sendAll(IOTest.bytes("again"))
            client.close()
            var got: [UInt8] = []
            for try await chunk in server.receiveChunks() { got.append(contentsOf: chunk) }
            out.append("new stream \(IOTest.text(got))")
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            out.append("after: held \(s.held) streams \(s.streams)")
            return out
        }
        #expect(r == ["streams while waiting 1", "CancelledError", "then nil", "recv after", "new stream again",
                      StreamTest.expectedPath, "after: held 0 streams 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimeoutOfNextEndsTheStreamLikeACancellation() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var it = server.receiveChunks().makeAsyncIterator()
            var out: [String] = []
            // Nothing is ever sent before the deadline: the timeout is certain.
            let e = await IOTest.error { _ = try await timeoutAfter(0.02) { try await it.next() } }
            out.append("\(StreamTest.kind(e)) timeout \(e is TimeoutError)")
            out.append("then \(try await it.next() == nil ? "nil" : "a chunk")")
            try await client.sendAll(IOTest.bytes("later"))
            out.append("recv \(IOTest.text(try await IOTest.receive(server, count: 5)))")
            let s = try StreamTest.stats()
            out.append("after: held \(s.held) streams \(s.streams)")
            return out
        }
        #expect(r == ["CancelledError timeout true", "then nil", "recv later", "after: held 0 streams 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closingTheSocketEndsAPendingNextWithAnError() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let consumer = try await spawn { () async throws -> [String] in
                var n = 0
                do {
                    for try await _ in server.receiveChunks() { n += 1 }
                    return ["ended without an error after \(n) chunks"]
                } catch let e as SocketError {
                    return [StreamTest.kind(e), "says closed \(String(describing: e).contains("closed"))"]
                }
            }
            try await IOTest.waitBlocked(consumer, .readWait)
            server.close()
            var out = try await consumer.join() ?? ["consumer cancelled"]
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            out.append("after: held \(s.held) streams \(s.streams)")
            return out
        }
        #expect(r == ["SocketError(EBADF)", "says closed true", StreamTest.expectedPath, "after: held 0 streams 0"])
    }

    /// Closing the socket while chunks wait: the chunk in hand stays
    /// readable, the ones that arrived come out, then the error.
    @Test(.timeLimit(.minutes(1)))
    func closingTheSocketDeliversWhatArrivedThenTheError() async throws {
        let payload = IOTest.pattern(3000, seed: 9)
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(payload)
            var it = server.receiveChunks(maxHeld: 8).makeAsyncIterator()
            guard let first = try await it.next() else { return ["ended at once"] }
            try await IOTest.waitUntil("every byte is in a chunk") { IOTest.queued(server.fd) == 0 }
            let heldBefore = try StreamTest.stats().held
            server.close()
            var got = Array(first)
            var failure: (any Error)?
            do {
                while let c = try await it.next() { got.append(contentsOf: c) }
            } catch {
                failure = error
            }
            let s = try StreamTest.stats()
            return ["held before close \(heldBefore >= 3)",
                    StreamTest.summary(got), StreamTest.kind(failure), StreamTest.path(kernel, s),
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == ["held before close true", StreamTest.summary(payload), "SocketError(EBADF)",
                      StreamTest.expectedPath, "after: held 0 streams 0"])
    }

    // MARK: Misuse

    @Test(.timeLimit(.minutes(1)))
    func twoConsumersOfOneSocketIsResourceBusy() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let first = try await spawn { () async throws -> String in
                var got: [UInt8] = []
                for try await chunk in server.receiveChunks() { got.append(contentsOf: chunk) }
                return IOTest.text(got)
            }
            try await IOTest.waitBlocked(first, .readWait)
            var out: [String] = []
            var second = server.receiveChunks().makeAsyncIterator()
            let e1 = await IOTest.error { _ = try await second.next() }
            out.append("second stream: \(StreamTest.kind(e1)) \(String(describing: e1 ?? IOTest.Failure("")).contains("receiving"))")
            out.append("recv: \(StreamTest.kind(await IOTest.error { _ = try await server.recv(10) }))")
            out.append("streams \(try StreamTest.stats().streams)")
            try await client.sendAll(IOTest.bytes("one"))
            client.close()
            out.append("first got \(try await first.join() ?? "nil")")
            // Free again once the first stream has ended.
            out.append("then recv \(IOTest.kind(await IOTest.error { _ = try await server.recv(10) }))")
            let s = try StreamTest.stats()
            out.append(StreamTest.path(kernel, s))
            return out
        }
        #expect(r == ["second stream: ResourceBusy true", "recv: ResourceBusy", "streams 1", "first got one",
                      "then recv no error", StreamTest.expectedPath])
    }

    @Test(.timeLimit(.minutes(1)), arguments: [0, -1, Int.min])
    func maxHeldBelowOneIsAUsageError(maxHeld: Int) async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var it = server.receiveChunks(maxHeld: maxHeld).makeAsyncIterator()
            let e = await IOTest.error { _ = try await it.next() }
            let says = String(describing: e ?? IOTest.Failure("")).contains("maxHeld")
            // The failed start claimed nothing: the socket receives as before.
            try await client.sendAll(IOTest.bytes("ok"))
            let got = IOTest.text(try await IOTest.receive(server, count: 2))
            let s = try StreamTest.stats()
            return [StreamTest.kind(e), "names maxHeld \(says)", "recv \(got)", "streams \(s.streams)"]
        }
        #expect(r == ["CurioUsageError.invalidArgument", "names maxHeld true", "recv ok", "streams 0"])
    }

    /// A datagram socket has no byte stream to cut into chunks: a datagram
    /// larger than a buffer would lose its tail without a word, and an
    /// empty one would look like the end. receiveChunks refuses it.
    @Test(.timeLimit(.minutes(1)))
    func aDatagramSocketIsAUsageError() async throws {
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let a = try Socket(.inet, .datagram)
            let b = try Socket(.inet, .datagram)
            defer { a.close(); b.close() }
            try a.bind(("127.0.0.1", 0))
            try b.bind(("127.0.0.1", 0))
            let bAddr = try b.localAddress
            try await a.sendTo(IOTest.pattern(2000), bAddr)
            try await a.sendTo([], bAddr)
            try await a.sendTo(IOTest.bytes("after"), bAddr)
            var out: [String] = []
            var sizes: [Int] = []
            let e = await IOTest.error {
                for try await chunk in b.receiveChunks() { sizes.append(chunk.count) }
            }
            out.append("\(StreamTest.kind(e)) names stream \(String(describing: e ?? IOTest.Failure("")).contains("stream socket")) chunks \(sizes)")
            // Nothing was claimed or taken: the datagrams are all still there.
            out.append("recvFrom \(try await b.recvFrom(4096).0.count) \(try await b.recvFrom(4096).0.count) \(IOTest.text(try await b.recvFrom(4096).0))")
            let s = try StreamTest.stats()
            out.append("streams \(s.streams)")
            return out
        }
        #expect(r == ["CurioUsageError.invalidArgument names stream true chunks []", "recvFrom 2000 0 after", "streams 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func statisticsOutsideATaskAndAStreamFromAnotherKernelAreUsageErrors() async throws {
        let outside = await IOTest.error { _ = try Kernel.receivePoolStatistics() }
        #expect(StreamTest.kind(outside) == "CurioUsageError.notInKernel")
        let r = try await StreamTest.run(count: 8, size: 1024) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            // A first use binds a socket to its kernel; a second kernel on
            // a thread of its own then tries to stream from it.
            try await client.sendAll([1])
            _ = try await server.recv(1)
            let seen = try await runInThread { () throws -> String in
                try Kernel().run { () async throws -> String in
                    var it = server.receiveChunks().makeAsyncIterator()
                    return StreamTest.kind(await IOTest.error { _ = try await it.next() })
                }
            }
            // Still usable here.
            try await client.sendAll(IOTest.bytes("ok"))
            client.close()
            var got: [UInt8] = []
            for try await chunk in server.receiveChunks() { got.append(contentsOf: chunk) }
            return [seen, IOTest.text(got)]
        }
        #expect(r == ["CurioUsageError.wrongKernel", "ok"])
    }

    /// A maxHeld beyond the pool is clamped to it; the stream still works.
    @Test(.timeLimit(.minutes(1)))
    func maxHeldBeyondThePoolIsClamped() async throws {
        let payload = IOTest.pattern(32 << 10, seed: 10)
        let r = try await StreamTest.run(count: 4, size: 1024) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            var got: [UInt8] = []
            var maxSeen = 0
            for try await chunk in server.receiveChunks(maxHeld: 1000) {
                got.append(contentsOf: chunk)
                maxSeen = max(maxSeen, try StreamTest.stats().held)
            }
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return [StreamTest.summary(got), "held within the pool \(maxSeen <= 4)", StreamTest.path(kernel, s),
                    "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == [StreamTest.summary(payload), "held within the pool true", StreamTest.expectedPath,
                      "after: held 0 streams 0"])
    }

    /// A pool shape outside 1...32768 buffers of 64...1 MiB: every
    /// receiveChunks says so, and nothing is allocated or claimed.
    @Test(.timeLimit(.minutes(1)), arguments: [
        (0, 1024), (-1, 1024), (32769, 1024), (Int.max, 1024),
        (8, 63), (8, 0), (8, -4096), (8, (1 << 20) + 1),
    ])
    func anInvalidPoolIsAUsageError(count: Int, size: Int) async throws {
        let r = try await StreamTest.run(count: count, size: size) { _ -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var out: [String] = []
            for _ in 0..<2 {
                var it = server.receiveChunks().makeAsyncIterator()
                let e = await IOTest.error { _ = try await it.next() }
                let text = String(describing: e ?? IOTest.Failure(""))
                out.append("\(StreamTest.kind(e)) names both \(text.contains("receiveBufferCount") && text.contains("receiveBufferSize"))")
            }
            try await client.sendAll(IOTest.bytes("ok"))
            out.append("recv \(IOTest.text(try await IOTest.receive(server, count: 2)))")
            let s = try StreamTest.stats()
            out.append("buffers \(s.buffers) streams \(s.streams)")
            return out
        }
        #expect(r == ["CurioUsageError.invalidArgument names both true", "CurioUsageError.invalidArgument names both true",
                      "recv ok", "buffers 0 streams 0"])
    }

    /// The edges of the valid shapes; the count is rounded up to a power
    /// of two, and no chunk is larger than a buffer.
    @Test(.timeLimit(.minutes(1)), arguments: [(5, 64), (1, 1 << 20), (3, 100)])
    func validPoolEdges(count: Int, size: Int) async throws {
        let payload = IOTest.pattern(20000, seed: count)
        let r = try await StreamTest.run(count: count, size: size) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            var got: [UInt8] = []
            var largest = 0
            for try await chunk in server.receiveChunks() {
                largest = max(largest, chunk.count)
                got.append(contentsOf: chunk)
            }
            _ = try await producer.join()
            let s = try StreamTest.stats()
            return ["buffers \(s.buffers) of \(s.bufferSize)", "largest within \(largest <= size)",
                    StreamTest.summary(got), StreamTest.path(kernel, s)]
        }
        var pow2 = 1
        while pow2 < count { pow2 <<= 1 }
        #expect(r == ["buffers \(pow2) of \(size)", "largest within true", StreamTest.summary(payload),
                      StreamTest.expectedPath])
    }

    // MARK: Echo

    @Test(.timeLimit(.minutes(1)))
    func anEchoWithSendAllChunkReturnsTheSameBytes() async throws {
        let payload = IOTest.pattern(1 << 20, seed: 11)
        let r = try await StreamTest.run(count: 8, size: 2048) { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let echo = try await spawn { () async throws -> Int in
                var n = 0
                for try await chunk in server.receiveChunks() {
                    try await server.sendAll(chunk)
                    n += chunk.count
                }
                try server.shutdown(.write)
                return n
            }
            let producer = try await StreamTest.sendThenEnd(client, payload)
            let back = try await IOTest.receiveAll(client)
            _ = try await producer.join()
            let echoed = try await echo.join() ?? -1
            let s = try StreamTest.stats()
            return [StreamTest.summary(back), "intact \(back == payload)", "echoed \(echoed)",
                    StreamTest.path(kernel, s), "after: held \(s.held) streams \(s.streams)"]
        }
        #expect(r == [StreamTest.summary(payload), "intact true", "echoed \(payload.count)", StreamTest.expectedPath,
                      "after: held 0 streams 0"])
    }
}

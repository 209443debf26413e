// Sends behind the caller (IO/SendBehind.swift): on io_uring a small
// sendAll copies its bytes and returns, leaving them to the loop's next
// submission. Nothing a caller could see may change but the moment an error
// is reported: bytes arrive whole and in order, also across other kinds of
// send, a close or a shutdown right after the sendAll, a full socket, and a
// socket dropped while its bytes are on their way. On epoll every send goes
// out at once, and the same tests hold.
import CCurioKernel
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct SendBehindTests {
    /// Fills `sock`'s send path (its buffer and the peer's window) with
    /// direct non-blocking sends until the system refuses → the bytes sent.
    private static func fill(_ sock: Socket, seed: UInt8) -> [UInt8] {
        var sent: [UInt8] = []
        let chunk = [UInt8](repeating: seed, count: 4096)
        while true {
            let n = chunk.withUnsafeBytes { Glibc.send(sock.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return sent }
            sent += chunk[0..<n]
        }
    }

    private static var onIOUring: Bool { (try? Kernel.currentTask().kernel.backend) == .ioUring }

    /// Small sendAlls (behind on io_uring), a large one (sent as before), a
    /// partial send and a sendTo-free mix: the peer gets every byte in the
    /// order the calls were made, and on io_uring the small ones went behind.
    @Test func bytesArriveInTheOrderTheyWereHandedOver() async throws {
        let r = try await IOTest.run { () -> (Bool, Int, Bool) in
            let (client, server) = try await IOTest.tcpPair()
            defer { server.close() }
            let before = try Kernel.backendStatistics()
            var expected: [UInt8] = []
            let reader = try await spawn { try await IOTest.receiveAll(server) }
            for round in 0..<50 {
                let small = IOTest.pattern(100 + round, seed: round)
                try await client.sendAll(small)
                expected += small
                if round % 10 == 3 {
                    let large = IOTest.pattern(SendBehind.limit * 3 + 5, seed: 100 + round)
                    try await client.sendAll(large)
                    expected += large
                }
                if round % 10 == 7 {
                    let some = IOTest.pattern(300, seed: 200 + round)
                    var at = 0
                    while at < some.count { at += try await client.send(Array(some[at...])) }
                    expected += some
                }
            }
            client.close()
            let got = try await reader.join()
            let after = try Kernel.backendStatistics()
            return (got == expected, after.sendsBehind - before.sendsBehind, Self.onIOUring)
        }
        #expect(r.0, "the bytes arrived out of order or incomplete")
        if r.2 { #expect(r.1 >= 50) } else { #expect(r.1 == 0) }
    }

    /// A close right after a sendAll (the HTTP `Connection: close` case):
    /// the bytes still on their way are handed to the system before the
    /// descriptor goes, and the peer sees them, then the end.
    @Test(arguments: ["close", "shutDownAndClose"])
    func closeRightAfterSendAllDeliversEveryByte(_ how: String) async throws {
        let r = try await IOTest.run { () -> [String] in
            var out: [String] = []
            for i in 0..<20 {
                let (client, server) = try await IOTest.tcpPair()
                defer { server.close() }
                let message = IOTest.pattern(1000 + i, seed: i)
                try await client.sendAll(message)
                if how == "close" { client.close() } else { client.shutDownAndClose() }
                let got = try await IOTest.receiveAll(server)
                if got != message { out.append("connection \(i): \(got.count) of \(message.count) bytes") }
            }
            return out
        }
        #expect(r == [])
    }

    /// A sendAll into a full socket goes behind and waits for room inside
    /// the system; a shutdown(.write) asked for meanwhile waits for it, so
    /// the peer reads every byte before the end of the stream.
    @Test func aShutdownWaitsForTheBytesStillOnTheirWay() async throws {
        let r = try await IOTest.run { () -> (Bool, Bool, Bool) in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 8192, sendBuffer: 8192)
            defer { client.close(); server.close() }
            let go = Event()
            let reader = try await spawn { () -> [UInt8] in
                try await go.wait()
                return try await IOTest.receiveAll(server)
            }
            let filled = Self.fill(client, seed: 0xAB)
            let last = IOTest.pattern(777, seed: 3)
            await go.set()
            // io_uring: the reader has not run yet (this task has not
            // suspended), so the bytes cannot have gone: they wait behind.
            // epoll: this sendAll waits until the reader makes room.
            try await client.sendAll(last)
            let wasBehind = client.hasSendInFlight
            try client.shutdown(.write)
            let got = try await reader.join()
            return (got == filled + last, wasBehind, Self.onIOUring)
        }
        #expect(r.0, "bytes were lost or reordered around the shutdown")
        #expect(r.1 == r.2, "on io_uring the send should have gone behind, on epoll not")
    }

    /// A send behind that fails (the peer reset the connection) is
    /// reported by the socket's next send, with the system's error.
    @Test func aFailureBehindIsReportedByTheNextSend() async throws {
        let r = try await IOTest.run { () -> (String, String, Bool) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close() }
            IOTest.resetClose(server)
            // Wait for the reset to arrive.
            let seen = IOTest.kind(await IOTest.error { _ = try await client.recv(10) })
            let first = IOTest.kind(await IOTest.error { try await client.sendAll([1, 2, 3]) })
            let second = IOTest.kind(await IOTest.error { try await client.sendAll([4, 5, 6]) })
            return (seen, first == "no error" ? second : first, Self.onIOUring && first == "no error")
        }
        #expect(r.0 == "SocketError(ECONNRESET)")
        #expect(r.1 == "SocketError(EPIPE)" || r.1 == "SocketError(ECONNRESET)", "got \(r.1)")
    }

    /// A socket dropped (no close) while its bytes are behind: the send
    /// keeps it alive until they are out; then it is closed and forgotten.
    @Test func aSocketDroppedWithBytesOnTheirWayDeliversThem() async throws {
        let r = try await IOTest.run { () -> Bool in
            let listener = try Socket(.inet, .stream)
            defer { listener.close() }
            try listener.bind(("127.0.0.1", 0))
            try listener.listen(1)
            let message = IOTest.pattern(5000, seed: 9)
            do {
                let client = try Socket(.inet, .stream)
                try await client.connect(try listener.localAddress)
                try await client.sendAll(message)
            }
            let (server, _) = try await listener.accept()
            defer { server.close() }
            return try await IOTest.receiveAll(server) == message
        }
        #expect(r)
    }

    /// A task that waits for a send in flight (the socket is full) can be
    /// cancelled: it sent nothing, and the bytes already handed over still
    /// arrive once the peer reads.
    @Test func cancellingASendThatWaitsForOneBehindLosesNothingHandedOver() async throws {
        let r = try await IOTest.run { () -> (String, Int?, Bool) in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 8192, sendBuffer: 8192)
            defer { server.close() }
            let filled = Self.fill(client, seed: 0x5C)
            let first = IOTest.pattern(500, seed: 1)
            let waiter = try await spawn { () -> (String, Int?) in
                do {
                    // io_uring: goes behind at once and waits for room in the
                    // system; epoll: waits here for room.
                    try await client.sendAll(first)
                    try await client.sendAll(IOTest.pattern(600, seed: 2))
                    return ("no error", nil)
                } catch let e as TaskCancelled {
                    return ("cancelled", e.bytesSent)
                }
            }
            try await IOTest.waitUntil("the second sendAll waits") { IOTest.isBlocked(waiter, .writeWait) }
            try await waiter.cancel()
            let (what, sent) = try await waiter.join() ?? ("join gave nothing", nil)
            client.close()
            let got = try await IOTest.receiveAll(server)
            // On io_uring the first sendAll's bytes were handed over before
            // the cancel; on epoll the cancelled call was the first one.
            let expected = Self.onIOUring ? filled + first : filled + first.prefix(sent ?? 0)
            if Self.onIOUring && sent != 0 { return ("cancelled with bytesSent \(String(describing: sent)), not 0", sent, false) }
            return (what, sent, got == expected)
        }
        #expect(r.0 == "cancelled")
        #expect(r.2, "bytes handed over were lost, or bytes not handed over arrived")
        #expect(r.1 != nil, "a cancelled sendAll says how much of it went out")
    }

    /// Many connections that each send behind and close: no descriptor and
    /// no request stays behind. Sockets are told apart by their inode (the
    /// `socket:[n]` link), which stays unique while the socket lives, so
    /// descriptors other tests open and close meanwhile do not count.
    @Test func noDescriptorOrRequestOutlivesItsConnection() async throws {
        let r = try await IOTest.run { () -> (Int, [String], UInt32) in
            var sockets: Set<String> = []
            for i in 0..<200 {
                let (client, server) = try await IOTest.tcpPair()
                let open = IOTest.openDescriptors()
                for fd in [client.fd, server.fd] { if let link = open[fd] { sockets.insert(link) } }
                try await client.sendAll(IOTest.pattern(64, seed: i))
                client.close()
                _ = try await IOTest.receiveAll(server)
                server.close()
            }
            let k = try Kernel.currentTask().kernel
            // Let the loop collect the last completions.
            try await Curio.sleep(0)
            let left = IOTest.openDescriptors().values.filter { sockets.contains($0) }
            return (sockets.count, Array(left), UInt32(k.statistics.pendingRequests))
        }
        #expect(r.0 == 400, "every socket should have had its own inode")
        #expect(r.1 == [], "sockets still open")
        #expect(r.2 == 0)
    }
}

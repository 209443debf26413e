// Faults: a client gone in the middle of a message, a peer that resets the
// connection, a half-close, a server gone mid-message, and descriptor
// leaks: 1,000 connections (some reset, some cut mid-message) against an
// in-process server leave /proc/self/fd as it was. The leak check runs in a
// child process of its own, so no other test's descriptors come and go
// while it counts, and counts inside one kernel run so the kernel's own
// descriptors are in both counts.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct FaultTests {
    /// Starts a tcpServer on a free port whose handler runs `handler` and
    /// puts what it saw in the queue → (port, server task, queue).
    private static func server(
        _ handler: @escaping @Sendable (SocketStream) async throws -> String
    ) async throws -> (port: Int, task: CurioTask<Void>, seen: Queue<String>) {
        let ready = TCPListener()
        let seen = Queue<String>()
        let task = try await spawn {
            try await tcpServer(host: "127.0.0.1", port: 0, ready: ready) { client, _ in
                let note: String
                do {
                    note = try await handler(client)
                } catch {
                    note = "handler: \(IOTest.kind(error))"
                }
                try await seen.put(note)
            }
        }
        return (try await ready.wait().port, task, seen)
    }

    @Test(.timeLimit(.minutes(1)))
    func clientGoneMidMessage() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (port, server, seen) = try await Self.server { client in
                do {
                    _ = try await client.readExactly(100)
                    return "read 100"
                } catch let e as IncompleteRead {
                    // What did arrive is there, then the stream is at its end.
                    return "IncompleteRead \(e.bytesRead) of \(e.expected), then \(try await client.read(10).count)"
                }
            }
            var out: [String] = []
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            try await conn.write(IOTest.pattern(40))
            conn.close()
            out.append(try await seen.get())
            // A line cut short: readLine hands over the piece, then the end.
            let (port2, server2, seen2) = try await Self.server { client in
                let a = IOTest.text(try await client.readLine())
                let b = IOTest.text(try await client.readLine())
                return "\(a.debugDescription) \(b.debugDescription)"
            }
            let conn2 = try await openConnection(host: "127.0.0.1", port: port2)
            try await conn2.write("half a li")
            conn2.close()
            out.append(try await seen2.get())
            // The server serves the next client.
            let conn3 = try await openConnection(host: "127.0.0.1", port: port)
            try await conn3.write(IOTest.pattern(100))
            out.append(try await seen.get())
            conn3.close()
            try await server.cancel()
            try await server2.cancel()
            return out
        }
        #expect(r == ["IncompleteRead 40 of 100, then 0", "\"half a li\" \"\"", "read 100"])
    }

    @Test(.timeLimit(.minutes(1)))
    func resetByPeer() async throws {
        let r = try await IOTest.run { () -> [String] in
            let waiting = Event()
            let (port, server, seen) = try await Self.server { client in
                try await client.write("ready\n")
                await waiting.set()
                let e = await IOTest.error { _ = try await client.readLine() }
                // Writing to a reset connection fails too (and raises no SIGPIPE).
                let w = await IOTest.error { try await client.write(IOTest.pattern(100_000)) }
                return "read: \(IOTest.kind(e)), write: \(IOTest.kind(w))"
            }
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            _ = try await conn.readLine()
            try await waiting.wait()
            IOTest.resetClose(conn.socket!)
            let note = try await seen.get()
            // The server takes the next client as if nothing happened.
            let next = try await openConnection(host: "127.0.0.1", port: port)
            defer { next.close() }
            let hello = IOTest.text(try await next.readLine())
            try await server.cancel()
            return [note, hello]
        }
        #expect(r.count == 2)
        #expect(r.first == "read: SocketError(ECONNRESET), write: SocketError(EPIPE)"
                || r.first == "read: SocketError(ECONNRESET), write: SocketError(ECONNRESET)", "\(r)")
        #expect(r.last == "ready\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func resetWithDataInFlight() async throws {
        let r = try await IOTest.run { () -> [String] in
            // The handler reads slowly; the client writes a lot and resets.
            let (port, server, seen) = try await Self.server { client in
                var total = 0
                do {
                    while true {
                        let chunk = try await client.read(1000)
                        if chunk.isEmpty { return "end after \(total)" }
                        total += chunk.count
                    }
                } catch let e as SocketError {
                    return IOTest.errnoName(e.errno)
                }
            }
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            try await conn.write(IOTest.pattern(200_000))
            IOTest.resetClose(conn.socket!)
            let note = try await seen.get()
            try await server.cancel()
            return [note]
        }
        #expect(r == ["ECONNRESET"])
    }

    @Test(.timeLimit(.minutes(1)))
    func halfCloseThenReply() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (port, server, seen) = try await Self.server { client in
                var lines = 0
                for try await _ in client { lines += 1 }
                // The client's side is closed; ours still works.
                try await client.write("got \(lines) lines\n")
                return "server saw \(lines) lines"
            }
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            defer { conn.close() }
            try await conn.write("one\ntwo\nthree\n")
            try conn.socket!.shutdown(.write)
            let reply = IOTest.text(try await conn.readAll())
            let note = try await seen.get()
            try await server.cancel()
            return [reply, note]
        }
        #expect(r == ["got 3 lines\n", "server saw 3 lines"])
    }

    @Test(.timeLimit(.minutes(1)))
    func serverGoneMidMessage() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (port, server, seen) = try await Self.server { client in
                try await client.write(IOTest.pattern(40))
                return "sent 40"
            }
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            defer { conn.close() }
            var out = [try await seen.get()]
            do {
                _ = try await conn.readExactly(100)
            } catch let e as IncompleteRead {
                out.append("IncompleteRead \(e.partial == IOTest.pattern(40)) \(e.expected)")
            }
            try await server.cancel()
            return out
        }
        #expect(r == ["sent 40", "IncompleteRead true 100"])
    }

    @Test(.timeLimit(.minutes(1)))
    func noDescriptorLeaksAfterAThousandConnections() throws {
        let r = try IOTest.runScenario("fd-leak")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines == [
            "connections 1000, handlers ended 1000",
            "descriptors while serving: more",
            "descriptors after: same as before",
        ], "stderr: \(r.stderr)")
    }

    /// When accept fails for lack of descriptors (EMFILE), the server says
    /// so once on stderr, backs off and accepts again once clients leave:
    /// every client is served. In a child process: the limit is per process.
    @Test(.timeLimit(.minutes(1)))
    func acceptKeepsGoingWhenDescriptorsRunOut() throws {
        let r = try IOTest.runScenario("emfile")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines == ["served 30 of 30", "accepted 30"], "stderr: \(r.stderr)")
        let reports = r.stderr.split(separator: "\n").filter { $0.hasPrefix("curio: accept failed") }
        #expect(!reports.isEmpty && reports.allSatisfy { $0.contains("errno \(EMFILE)") && $0.contains("retrying") },
                "stderr: \(r.stderr)")
    }

    /// The child side of ``acceptKeepsGoingWhenDescriptorsRunOut()``.
    static func descriptorExhaustionScenario() async throws -> [String] {
        try await IOTest.run(limit: 40) { () -> [String] in
            let ready = TCPListener()
            let accepted = IOTest.Box(0)
            // The first clients hold their descriptors until accept has
            // run out and backs off (its task sleeps).
            let release = Event()
            // Every client socket exists before the limit drops; then only
            // a few descriptors are left: one for the listener, three for
            // the server's accepts. The limit drops before the server
            // starts, because io_uring reads RLIMIT_NOFILE when an accept
            // is armed, not when it installs each descriptor (a multishot
            // accept armed earlier would accept past a lower limit).
            let clients = try (0..<30).map { _ in try Socket(.inet, .stream) }
            // New descriptors take the lowest free numbers: the limit goes
            // where exactly four numbers are still free below it.
            let open = Set(IOTest.openDescriptors().keys)
            var limit: Int32 = 0, free = 0
            while free < 4 {
                if !open.contains(limit) { free += 1 }
                limit += 1
            }
            var saved = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
            var low = saved
            low.rlim_cur = rlim_t(limit)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
            defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) }
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: ready) { client, _ in
                    accepted.value += 1
                    try await release.wait()
                    let line = try await client.readLine()
                    try await client.write(line)
                }
            }
            let port = try await ready.wait().port
            try await spawn {
                try await IOTest.waitUntil("accept backs off") { IOTest.isBlocked(server, .timeSleep) }
                await release.set()
            }
            var tasks: [CurioTask<Bool>] = []
            for (i, c) in clients.enumerated() {
                tasks.append(try await spawn { () async throws -> Bool in
                    try await c.connect(("127.0.0.1", port))
                    let stream = SocketStream(c)
                    defer { stream.close() }
                    try await stream.write("client \(i)\n")
                    return try await stream.readLine() == Array("client \(i)\n".utf8)
                })
            }
            var served = 0
            for t in tasks where try await t.join() == true { served += 1 }
            try await server.cancel()
            return ["served \(served) of \(clients.count)", "accepted \(accepted.value)"]
        }
    }

    /// The child side of ``noDescriptorLeaksAfterAThousandConnections()``.
    static func descriptorLeakScenario() async throws -> [String] {
        // libdispatch (the test runner's timers) opens its timerfd lazily,
        // possibly while this runs, and keeps it; Curio never opens one.
        @Sendable func descriptors() -> [Int32: String] {
            IOTest.openDescriptors().filter { $0.value != "anon_inode:[timerfd]" }
        }
        return try await IOTest.run(limit: 50) { () -> [String] in
            let before = descriptors()
            let ready = TCPListener()
            let ended = IOTest.Box(0)
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: ready) { client, _ in
                    defer { ended.value += 1 }
                    while true {
                        let line = try await client.readLine()
                        if line.isEmpty { return }
                        try await client.write(line)
                    }
                }
            }
            let port = try await ready.wait().port
            let during = IOTest.Box(0)
            var done = 0
            for batch in 0..<40 {
                var tasks: [CurioTask<Void>] = []
                for i in 0..<25 {
                    let n = batch * 25 + i
                    tasks.append(try await spawn {
                        let conn = try await openConnection(host: "127.0.0.1", port: port)
                        try await conn.write("ping \(n)\n")
                        let reply = IOTest.text(try await conn.readLine())
                        guard reply == "ping \(n)\n" else { throw IOTest.Failure("connection \(n) got \(reply)") }
                        if n == 500 { during.value = descriptors().count }
                        switch n % 10 {
                        case 0, 5: IOTest.resetClose(conn.socket!)          // reset by peer
                        case 3: try await conn.write("cut mid-li"); conn.close()  // gone mid-message
                        case 7: try conn.socket!.shutdown(.write)           // half-close, then read the end
                            _ = try await conn.readAll()
                            conn.close()
                        default: conn.close()
                        }
                    })
                }
                for t in tasks {
                    try await t.join()
                    done += 1
                }
            }
            try await IOTest.waitUntil("every handler ended") { ended.value == 1000 }
            try await server.cancel()
            var out = ["connections \(done), handlers ended \(ended.value)"]
            out.append("descriptors while serving: \(during.value > before.count ? "more" : "\(during.value) vs \(before.count)")")
            // Closing is immediate; allow the kernel a few turns to finish.
            var after = descriptors()
            for _ in 0..<100 where after.count != before.count {
                try await Curio.sleep(0.01)
                after = descriptors()
            }
            if after.count == before.count {
                out.append("descriptors after: same as before")
            } else {
                let extra = after.filter { before[$0.key] != $0.value }.map { "\($0.key) -> \($0.value)" }.sorted()
                out.append("descriptors after: \(after.count) vs \(before.count); new: \(extra)")
            }
            return out
        }
    }
}

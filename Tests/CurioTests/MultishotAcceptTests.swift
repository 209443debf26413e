// Servers accept with one multishot request (ConnectionAcceptor.swift):
// on io_uring one submission serves every connection, on epoll the C
// kernel accepts until EAGAIN; on both, connections accepted but not yet
// taken are closed when the accept loop ends, never leaked.
import Glibc
import Testing

@testable import Curio

/// A blocking client on a plain thread: connects, reads until the server
/// closes, returns what it read (or the errno that ended the read).
private func plainClient(port: Int) -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return "socket: errno \(errno)" }
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = in_port_t(UInt16(port).bigEndian)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    let r = withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard r == 0 else { return "connect: errno \(errno)" }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 64)
    while true {
        let n = read(fd, &buf, buf.count)
        if n == 0 { return String(decoding: out, as: UTF8.self) }
        if n < 0 { return errno == ECONNRESET ? "reset" : "read: errno \(errno)" }
        out += buf[0..<n]
    }
}

@Suite(.timeLimit(.minutes(1)))
struct MultishotAcceptTests {
    /// Connections that come one after the other are served by one accept
    /// request: on io_uring the server submits nothing per connection.
    @Test(.timeLimit(.minutes(1)))
    func oneAcceptRequestServesEveryConnection() async throws {
        let r = try await IOTest.run { () -> [String] in
            let ready = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: ready) { client, _ in
                    try await client.write("hi\n")
                }
            }
            let port = try await ready.wait().port
            // The first connection arms the accept; count from the second.
            let first = UniversalResult<String>()
            KernelHarness.startThread { try? first.set(plainClient(port: port)) }
            #expect(try await first.get() == "hi\n")
            let before = try Kernel.backendStatistics()
            let clients = 20
            let replies = UniversalResult<[String]>()
            // One at a time: each accept finds no connection waiting, so
            // single accepts would each wait in the backend.
            KernelHarness.startThread { try? replies.set((0..<clients).map { _ in plainClient(port: port) }) }
            let got = try await replies.get()
            let after = try Kernel.backendStatistics()
            try await server.cancel()
            // Each handler's reply is a send behind: one submission that is not an accept's.
            let submitted = (after.submitted - before.submitted) - (after.sendsBehind - before.sendsBehind)
            let backend = try Kernel.currentTask().kernel.backend
            var out = ["served \(got.filter { $0 == "hi\n" }.count) of \(clients)"]
            if backend == .ioUring {
                out.append(submitted < clients / 2 ? "few submissions" : "\(submitted) submissions for \(clients) connections")
            }
            return out
        }
        #expect(r.first == "served 20 of 20")
        if r.count > 1 { #expect(r[1] == "few submissions") }
    }

    /// Connections already waiting when the server starts, and a burst
    /// while it runs, are all served, each once.
    @Test(.timeLimit(.minutes(1)))
    func aBurstOfConnectionsIsServedInFull() async throws {
        let r = try await IOTest.run { () -> String in
            let listener = try Socket(.inet, .stream)
            try listener.bind(SocketAddress(host: "127.0.0.1", port: 0))
            try listener.listen(128)
            let port = try listener.localAddress.port
            let clients = 60
            let replies = UniversalResult<[String]>()
            let served = IOTest.Box(0)
            KernelHarness.startThread {
                // All connect (into the backlog) before any reads a reply.
                let group = (0..<clients).map { i -> UniversalResult<String> in
                    let one = UniversalResult<String>()
                    KernelHarness.startThread { try? one.set(plainClient(port: port)) }
                    _ = i
                    return one
                }
                try? replies.set(group.map { (try? $0.blockingGet()) ?? "lost" })
            }
            let server = try await spawn {
                try await serveClients(listener, ready: nil) { client, _ in
                    served.value += 1
                    try await client.write("hi\n")
                }
            }
            let got = try await replies.get()
            try await server.cancel()
            listener.close()
            return "\(got.filter { $0 == "hi\n" }.count) replies, \(served.value) handlers"
        }
        #expect(r == "60 replies, 60 handlers")
    }

    /// Connections the kernel accepted that the loop never took are closed
    /// when the loop ends: their clients see the end, not a hang.
    @Test(.timeLimit(.minutes(1)))
    func connectionsAcceptedButNotTakenAreClosedWhenTheLoopEnds() async throws {
        let r = try await IOTest.run { () -> [String] in
            let listener = try Socket(.inet, .stream)
            defer { listener.close() }
            try listener.bind(SocketAddress(host: "127.0.0.1", port: 0))
            try listener.listen(16)
            let port = try listener.localAddress.port
            let site = CallSite(file: #filePath, line: #line, function: #function)
            var acceptor: ConnectionAcceptor? = ConnectionAcceptor(socket: listener)
            let first = UniversalResult<String>()
            KernelHarness.startThread { try? first.set(plainClient(port: port)) }
            let (c, _) = try await acceptor!.next(site: site)
            c.close()
            #expect(try await first.get().isEmpty)
            let ends = (0..<3).map { _ in UniversalResult<String>() }
            for e in ends { KernelHarness.startThread { try? e.set(plainClient(port: port)) } }
            // Accepted by the running request while nobody asks for them.
            try await IOTest.waitUntil("three connections wait in the acceptor") { acceptor!.waitingCount == 3 }
            let busy = IOTest.kind(await IOTest.error { _ = try await listener.accept() })
            acceptor = nil
            var out = ["a second accept: \(busy)"]
            for e in ends { out.append("client sees: \(try await e.get().isEmpty ? "end" : "data")") }
            // The listener is free again and accepts as before.
            let again = UniversalResult<String>()
            KernelHarness.startThread { try? again.set(plainClient(port: port)) }
            let (d, _) = try await listener.accept()
            try await SocketStream(d).write("ok\n")
            d.close()
            out.append("after: \(try await again.get())")
            return out
        }
        #expect(r == ["a second accept: ResourceBusy", "client sees: end", "client sees: end", "client sees: end", "after: ok\n"])
    }

    /// A request that ends with EINVAL before any connection (what Linux
    /// before 5.19 answers to a multishot accept) makes the acceptor fall
    /// back to single accepts; on a socket that is not listening those
    /// throw EINVAL too, so the caller still gets the error, not a hang.
    @Test(.timeLimit(.minutes(1)))
    func anAcceptRefusedWithEINVALFallsBackToSingleAccepts() async throws {
        let r = try await IOTest.run { () -> String in
            let notListening = try Socket(.inet, .stream)
            defer { notListening.close() }
            try notListening.bind(SocketAddress(host: "127.0.0.1", port: 0))
            let acceptor = ConnectionAcceptor(socket: notListening)
            let site = CallSite(file: #filePath, line: #line, function: #function)
            let e = await IOTest.error { _ = try await acceptor.next(site: site) }
            guard let s = e as? SocketError else { return "\(String(describing: e))" }
            let mode = acceptor.usesMultishot ? "multishot" : "single accepts"
            // Listening now, the single accepts serve.
            try notListening.listen(4)
            let port = try notListening.localAddress.port
            let reply = UniversalResult<String>()
            KernelHarness.startThread { try? reply.set(plainClient(port: port)) }
            let (c, _) = try await acceptor.next(site: site)
            try await SocketStream(c).write("ok\n")
            c.close()
            return "SocketError errno \(s.errno == EINVAL ? "EINVAL" : "\(s.errno)"), then \(mode): \(try await reply.get())"
        }
        #expect(r == "SocketError errno EINVAL, then single accepts: ok\n")
    }
}

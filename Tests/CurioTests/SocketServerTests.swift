// The seed's socketserver in Swift: TCPServer with a StreamRequestHandler
// (port 0, several concurrent clients, setup/handle/finish), UDPServer with
// a DatagramRequestHandler that replies, UnixStreamServer, a handler that
// throws (reported on stderr, the server keeps serving; checked in a child
// process that owns fd 2), shutdown() ending serveForever, and a client
// that resets its connection.
import Glibc
import Testing

@testable import Curio

/// Greets with the client's address, echoes lines upper-cased, throws on
/// "boom"; setup and finish announce themselves to the client.
final class IOServerUpperHandler: StreamRequestHandler {
    override func setup() async throws {
        try await wfile.write("setup\n")
    }

    override func handle() async throws {
        try await wfile.write("hello \(clientAddress)\n")
        for try await line in rfile {
            if line == Array("boom\n".utf8) { throw IOServerBoom() }
            try await wfile.write(String(decoding: line, as: UTF8.self).uppercased())
        }
    }

    override func finish() async throws {
        try await wfile.write("finish\n")
    }
}

struct IOServerBoom: Error, CustomStringConvertible {
    var description: String { "IOServerBoom: the handler blew up on purpose" }
}

/// Replies to each datagram with its bytes reversed.
final class IOServerReverseHandler: DatagramRequestHandler {
    override func handle() async throws {
        try await reply(packet.reversed())
    }
}

@Suite(.timeLimit(.minutes(1)))
struct SocketServerTests {
    /// Reads the two greeting lines ("setup", "hello <client address>").
    private static func greet(_ conn: SocketStream) async throws -> [String] {
        [IOTest.text(try await conn.readLine()), IOTest.text(try await conn.readLine())]
    }

    /// One client session: greeting, `count` lines upper-cased, half-close,
    /// "finish", end of stream. Returns what differed from the expectation.
    private static func session(port: Int, client: Int, count: Int) async throws -> [String] {
        let conn = try await openConnection(host: "127.0.0.1", port: port)
        defer { conn.close() }
        var problems: [String] = []
        let me = try conn.socket!.localAddress
        let greeting = try await greet(conn)
        if greeting != ["setup\n", "hello \(me)\n"] { problems.append("client \(client) greeting \(greeting)") }
        for i in 0..<count {
            try await conn.write("client \(client) line \(i)\n")
            let reply = IOTest.text(try await conn.readLine())
            if reply != "CLIENT \(client) LINE \(i)\n" { problems.append("client \(client) got \(reply)") }
            if i % 3 == 0 { try await Curio.sleep(0) }
        }
        try conn.socket!.shutdown(.write)
        let tail = IOTest.text(try await conn.readAll())
        if tail != "finish\n" { problems.append("client \(client) tail \(tail)") }
        return problems
    }

    @Test(.timeLimit(.minutes(1)))
    func tcpServerServesSeveralConcurrentClients() async throws {
        let r = try await IOTest.run { () -> [String] in
            let server = try TCPServer(("127.0.0.1", 0), IOServerUpperHandler.self)
            let addr = try server.serverAddress
            var out = ["\(addr.host) \(addr.port > 0)"]
            let serving = try await spawn { try await server.serveForever() }
            var clients: [CurioTask<[String]>] = []
            for c in 0..<8 {
                clients.append(try await spawn { try await Self.session(port: addr.port, client: c, count: 25) })
            }
            var problems: [String] = []
            for c in clients { problems += try await c.join() ?? ["a client was cancelled"] }
            out.append("problems \(problems)")
            try await server.shutdown()
            out.append("served to the end: \(serving.terminated)")
            try await serving.join()
            return out
        }
        #expect(r == ["127.0.0.1 true", "problems []", "served to the end: true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func shutdownStopsServeForeverAndClosesTheListener() async throws {
        let r = try await IOTest.run { () -> [String] in
            let server = try TCPServer(("127.0.0.1", 0), IOServerUpperHandler.self)
            let port = try server.serverAddress.port
            let serving = try await spawn { try await server.serveForever() }
            // A client in the middle of its session when the server stops.
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            defer { conn.close() }
            _ = try await Self.greet(conn)
            try await IOTest.waitBlocked(serving, .readWait)
            try await server.shutdown()
            var out = ["ended \(serving.terminated)"]
            out.append("join: \(IOTest.kind(await IOTest.error { try await serving.join() }))")
            // Running handlers were cancelled (their finish() ran) and their
            // connections closed; new connections are refused.
            out.append(IOTest.text(try await conn.readLine()))
            out.append(IOTest.text(try await conn.readLine()))
            out.append(await IOTest.connectAfterListenerClosed(port: port))
            // A second shutdown does nothing.
            try await server.shutdown()
            return out
        }
        #expect(r == ["ended true", "join: no error", "finish\n", "", "SocketError(ECONNREFUSED)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingServeForeverStopsItToo() async throws {
        let r = try await IOTest.run { () -> String in
            let server = try TCPServer(("127.0.0.1", 0), IOServerUpperHandler.self)
            let port = try server.serverAddress.port
            let serving = try await spawn { try await server.serveForever() }
            try await IOTest.waitBlocked(serving, .readWait)
            try await serving.cancel()
            return await IOTest.connectAfterListenerClosed(port: port)
        }
        #expect(r == "SocketError(ECONNREFUSED)")
    }

    @Test(.timeLimit(.minutes(1)))
    func udpServerRepliesToEachDatagram() async throws {
        let r = try await IOTest.run { () -> [String] in
            let server = try UDPServer(("127.0.0.1", 0), IOServerReverseHandler.self)
            let addr = try server.serverAddress
            let serving = try await spawn { try await server.serveForever() }
            let client = try Socket(.inet, .datagram)
            defer { client.close() }
            try client.bind(("127.0.0.1", 0))
            // One at a time, then a burst of datagrams handled concurrently.
            var out: [String] = []
            try await client.sendTo(IOTest.bytes("abc"), addr)
            let (one, from) = try await client.recvFrom(100)
            out.append("\(IOTest.text(one)) from server \(from == addr)")
            let sent = (0..<20).map { "datagram \($0)" }
            for d in sent { try await client.sendTo(IOTest.bytes(d), addr) }
            var got: [String] = []
            for _ in sent {
                guard let (d, _) = try await ignoreAfter(10, { try await client.recvFrom(100) }) else { break }
                got.append(String(IOTest.text(d).reversed()))
            }
            out.append("burst \(got.sorted() == sent.sorted()) (\(got.count) of \(sent.count))")
            try await server.shutdown()
            try await serving.join()
            return out
        }
        #expect(r == ["cba from server true", "burst true (20 of 20)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func unixStreamServer() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let path = dir + "/server.sock"
        // A stale socket file at the path is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        _ = try SocketAddress(unixPath: path).withSockaddr { Glibc.bind(stale, $0, $1) }
        Glibc.close(stale)
        let r = try await IOTest.run { () -> [String] in
            let server = try UnixStreamServer(path, IOServerUpperHandler.self)
            let serving = try await spawn { try await server.serveForever() }
            var out = ["\(try server.serverAddress.host == path)"]
            var clients: [CurioTask<String>] = []
            for i in 0..<3 {
                clients.append(try await spawn { () async throws -> String in
                    let conn = try await openUnixConnection(path: path)
                    defer { conn.close() }
                    let greeting = try await Self.greet(conn)
                    try await conn.write("unix \(i)\n")
                    let reply = IOTest.text(try await conn.readLine())
                    return "\(greeting[0])\(greeting[1])\(reply)"
                })
            }
            for c in clients { out.append(try await c.join() ?? "nil") }
            try await server.shutdown()
            try await serving.join()
            return out
        }
        #expect(r == ["true"] + (0..<3).map { "setup\nhello ''\nUNIX \($0)\n" })
    }

    @Test(.timeLimit(.minutes(1)))
    func aClientThatResetsItsConnectionDoesNotHurtTheServer() async throws {
        let r = try await IOTest.run { () -> [String] in
            let server = try TCPServer(("127.0.0.1", 0), IOServerUpperHandler.self)
            let port = try server.serverAddress.port
            let serving = try await spawn { try await server.serveForever() }
            var out: [String] = []
            for round in 0..<5 {
                // Reset while the handler waits for a line...
                let a = try await openConnection(host: "127.0.0.1", port: port)
                _ = try await Self.greet(a)
                IOTest.resetClose(a.socket!)
                // ...and with unread replies queued at the client.
                let b = try await openConnection(host: "127.0.0.1", port: port)
                try await b.write("x\ny\nz\n")
                let expected = "setup\nhello \(try b.socket!.localAddress)\nX\nY\nZ\n".utf8.count
                try await IOTest.waitUntil("replies queued at the client") { IOTest.queued(b.socket!.fd) >= expected }
                IOTest.resetClose(b.socket!)
                if round == 4 { out.append("server alive: \(!serving.terminated)") }
            }
            out += try await Self.session(port: port, client: 99, count: 3)
            out.append("still serving: \(!serving.terminated)")
            try await server.shutdown()
            try await serving.join()
            return out
        }
        #expect(r == ["server alive: true", "still serving: true"])
    }

    /// A handler that throws is reported on stderr (fd 2, captured with a
    /// pipe) and the server keeps serving. Runs in a child process: fd 2 is
    /// process-wide, and other tests may swap it meanwhile.
    @Test(.timeLimit(.minutes(1)))
    func aHandlerThatThrowsIsReportedAndTheServerKeepsServing() throws {
        let r = try IOTest.runScenario("handler-crash")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines == [
            "boom client got: setup|hello|finish|<end>",
            "report: 1 line(s) naming IOServerUpperHandler, the client and the error",
            "reset client reported: false",
            "next client: []",
            "server alive: true",
        ], "stderr: \(r.stderr)")
        // What the scenario captured was passed on to the real stderr.
        #expect(r.stderr.contains("IOServerBoom"))
    }

    /// The child side of ``aHandlerThatThrowsIsReportedAndTheServerKeepsServing()``.
    static func handlerCrashScenario() async throws -> [String] {
        let capture = try IOTest.StderrCapture()
        defer { capture.stop() }
        /// Everything written to fd 2 so far has reached the capture.
        @Sendable func captured() async throws -> String {
            let mark = "IO-STDERR-MARK-\(Int.random(in: 0..<Int.max))"
            writeStderr(mark + "\n")
            try await IOTest.waitUntil("the capture catches up") { capture.captured.contains(mark) }
            return capture.captured
        }
        return try await IOTest.run { () -> [String] in
            let server = try TCPServer(("127.0.0.1", 0), IOServerUpperHandler.self)
            let port = try server.serverAddress.port
            let serving = try await spawn { try await server.serveForever() }
            var out: [String] = []
            // The handler throws: the client still sees finish, then the end.
            let conn = try await openConnection(host: "127.0.0.1", port: port)
            let me = try conn.socket!.localAddress
            var seen: [String] = []
            try await conn.write("boom\n")
            while true {
                let line = IOTest.text(try await conn.readLine())
                if line.isEmpty { break }
                seen.append(line.hasPrefix("hello") ? "hello" : String(line.dropLast()))
            }
            conn.close()
            out.append("boom client got: \((seen + ["<end>"]).joined(separator: "|"))")
            // The report was written before the socket was closed.
            let report = try await captured().split(separator: "\n").filter {
                $0.contains("IOServerUpperHandler") && $0.contains("\(me)") && $0.contains("IOServerBoom")
            }
            out.append("report: \(report.count) line(s) naming IOServerUpperHandler, the client and the error")
            // A client reset is no failure: nothing is reported.
            let resetter = try await openConnection(host: "127.0.0.1", port: port)
            let resetterAddress = try resetter.socket!.localAddress
            _ = try await Self.greet(resetter)
            IOTest.resetClose(resetter.socket!)
            try await IOTest.waitUntil("the reset client's handler ended") {
                IOTest.liveTasks(named: "IOServerUpperHandler") == 0
            }
            out.append("reset client reported: \(try await captured().contains("\(resetterAddress)"))")
            // And the server goes on serving.
            out.append("next client: \(try await Self.session(port: port, client: 1, count: 3))")
            out.append("server alive: \(!serving.terminated)")
            try await server.shutdown()
            try await serving.join()
            return out
        }
    }
}


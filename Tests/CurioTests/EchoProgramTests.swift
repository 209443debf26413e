// The seed's two echo servers end to end: the example executables
// `echo-server` (plain sockets) and `echo-socketserver` (the socketserver
// classes), built beside this test binary, run as child processes with
// their output on a pty (line-buffered, as on the seed author's terminal)
// and port 0. Several clients connect at once (the server prints a
// "Connection from" line for each before any of them talks), echo the
// seed's "Hello" and "Is anyone there?", one of them a 1 MiB payload, and
// each "Connection closed" is printed when they leave. Then SIGTERM; the
// child is reaped.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct EchoProgramTests {
    static let clients = 5
    static let prefix = "Server listening at ('0.0.0.0', "

    static func executable(_ name: String) throws -> String {
        let path = try IOTest.binaryDirectory() + "/" + name
        guard access(path, X_OK) == 0 else {
            throw IOTest.Failure("\(path) is missing: build the package (swift build) before running this test")
        }
        return path
    }

    static func listeningPort(_ lines: [String]) -> Int? {
        for l in lines where l.hasPrefix(prefix) && l.hasSuffix(")") {
            return Int(l.dropFirst(prefix.count).dropLast())
        }
        return nil
    }

    /// One client's conversation; the first also echoes a 1 MiB payload.
    static func converse(_ conn: SocketStream, index: Int, lineBased: Bool) async throws -> [String] {
        var problems: [String] = []
        for message in ["Hello\n", "Is anyone there?\n"] {
            try await conn.write(message)
            let got = IOTest.text(try await conn.readLine())
            if got != message { problems.append("client \(index) sent \(message.debugDescription), got \(got.debugDescription)") }
        }
        if index == 0 {
            let payload = lineBased ? IOTest.linePayload(1 << 20, lineLength: 64, seed: 9) : IOTest.pattern(1 << 20, seed: 9)
            // Write and read at once: the echo comes back while we send.
            let writer = try await spawn { try await conn.write(payload) }
            let echoed = try await conn.readExactly(payload.count)
            try await writer.join()
            if echoed != payload {
                let firstDiff = zip(echoed, payload).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                problems.append("1 MiB payload differs (first at \(firstDiff.map(String.init) ?? "?"))")
            }
        }
        return problems
    }

    static func exercise(_ name: String, lineBased: Bool) async throws -> (notes: [String], output: [String], status: String) {
        let child = try IOTest.Child(path: try executable(name), arguments: ["0"], terminal: true)
        defer { child.terminate(SIGKILL) }
        let notes = try await IOTest.run { () -> [String] in
            try await child.waitForOutput("its address") { Self.listeningPort($0) != nil }
            let port = Self.listeningPort(child.stdoutLines)!
            var notes = ["listening on a port of its own: \(port > 0)"]

            // Everybody connects first: the server serves them all at once.
            var conns: [SocketStream] = []
            for _ in 0..<clients { conns.append(try await openConnection(host: "127.0.0.1", port: port)) }
            let ports = try conns.map { try $0.socket!.localAddress.port }
            try await child.waitForOutput("a Connection from line per client") { lines in
                ports.allSatisfy { lines.contains("Connection from ('127.0.0.1', \($0))") }
            }
            notes.append("Connection from printed for each client")

            var talks: [CurioTask<[String]>] = []
            for (i, conn) in conns.enumerated() {
                talks.append(try await spawn { try await Self.converse(conn, index: i, lineBased: lineBased) })
            }
            var problems: [String] = []
            for t in talks { problems += try await t.join() ?? ["a client was cancelled"] }
            notes.append("problems: \(problems)")
            for c in conns { c.close() }

            try await child.waitForOutput("a Connection closed line per client") { lines in
                lines.filter { $0 == "Connection closed" }.count == clients
            }
            notes.append("Connection closed printed for each client")
            return notes
        }
        let status = child.terminate(SIGTERM, limit: 10)
        child.waitForOutputEnd()
        return (notes, child.stdoutLines, IOTest.describeStatus(status))
    }

    static func check(_ r: (notes: [String], output: [String], status: String)) {
        #expect(r.notes == [
            "listening on a port of its own: true",
            "Connection from printed for each client",
            "problems: []",
            "Connection closed printed for each client",
        ], "output:\n\(r.output.joined(separator: "\n"))")
        // Nothing else than the seed's lines (and the one-line note of a
        // kernel falling back from io_uring to epoll).
        let unexpected = r.output.filter {
            !$0.hasPrefix(prefix) && !$0.hasPrefix("Connection from ('127.0.0.1', ") && $0 != "Connection closed"
                && !$0.contains("io_uring")
        }
        #expect(unexpected.isEmpty, "output:\n\(r.output.joined(separator: "\n"))")
        #expect(r.output.first?.hasPrefix(prefix) == true)
        #expect(r.output.filter { $0.hasPrefix("Connection from") }.count == clients)
        #expect(r.status == "signal \(SIGTERM)")
    }

    @Test(.timeLimit(.minutes(1)))
    func echoServerWithSockets() async throws {
        Self.check(try await Self.exercise("echo-server", lineBased: false))
    }

    @Test(.timeLimit(.minutes(1)))
    func echoServerWithSocketserver() async throws {
        Self.check(try await Self.exercise("echo-socketserver", lineBased: true))
    }
}

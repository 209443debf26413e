// The harness of the CurioHTTP tests: each test runs a kernel on a thread
// of its own (never on Swift's cooperative pool), starts an HTTPServer on
// port 0 in it, and runs the client side as another task of that kernel —
// real clients (curl, python3, wrk) as subprocesses, or raw sockets. Every
// wait is bounded so a hang fails instead of hanging; steps are ordered by
// what the server or the client reports, never by sleeping. Kernel tasks
// do not call #expect: they return what they saw and the test checks it.
import Curio
import CurioTestSupport
import CurioHTTP
import Glibc
import HTTPTypes
import Synchronization
import Testing

enum HTTPTest {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs `body` on a new thread → its value; fails after `limit` seconds.
    static func onThread<T: Sendable>(limit: Double, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await TestThreads.onThread(limit: limit, body)
    }

    /// Runs `main` as the main task of a new kernel on its own thread.
    static func kernel<T: Sendable>(limit: Double = 40, _ main: @escaping @Sendable () async throws -> T) async throws -> T {
        try await onThread(limit: limit + 5) {
            let kernel = Kernel()
            let result = Result { try kernel.run { try await timeoutAfter(limit) { try await main() } } }
            try kernel.shutdown()
            return try result.get()
        }
    }

    /// Starts an HTTPServer on 127.0.0.1 port 0 with `handler`, runs
    /// `client(port, server)`, then drains the server → what the client returned.
    static func withServer<T: Sendable>(_ configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                                        limit: Double = 40,
                                        handler: @escaping HTTPHandler,
                                        _ client: @escaping @Sendable (Int, HTTPServer) async throws -> T) async throws -> T {
        try await kernel(limit: limit) {
            let server = HTTPServer(host: "127.0.0.1", port: 0, configuration: configuration, handler: handler)
            let serving = try await spawn(name: "test server") { try await server.run() }
            let port = try await server.localAddress().port
            let result: T
            do {
                result = try await client(port, server)
            } catch {
                try await serving.cancel()
                throw error
            }
            try await server.drain(timeout: 5)
            _ = try await serving.join()
            return result
        }
    }

    /// A configuration with small timeouts for tests that reach them.
    static func quickTimeouts() -> HTTPServerConfiguration {
        var c = HTTPServerConfiguration()
        c.idleTimeout = 0.3
        c.headerTimeout = 0.3
        c.bodyReadTimeout = 0.3
        c.lingerTimeout = 0.3
        return c
    }

    // MARK: Subprocess clients

    struct Output: Sendable {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs a command to its end (inside a kernel task).
    static func command(_ arguments: [String], input: [UInt8]? = nil) async throws -> Output {
        let p = try Subprocess(arguments, stdin: input == nil ? .devNull : .pipe, stdout: .pipe, stderr: .pipe)
        let (out, err) = try await p.communicate(input: input)
        return Output(status: p.status?.returnCode ?? -1,
                      stdout: String(decoding: out, as: UTF8.self),
                      stderr: String(decoding: err, as: UTF8.self))
    }

    static func available(_ program: String) -> Bool {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
    }

    // MARK: Raw sockets

    /// A plain TCP connection to the server.
    static func connect(_ port: Int) async throws -> SocketStream {
        try await openConnection(host: "127.0.0.1", port: port)
    }

    /// A response as a raw client reads it.
    struct RawResponse: Sendable {
        let status: Int
        let headers: [(String, String)]
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    /// Reads one response (Content-Length, chunked, or until close).
    static func readResponse(_ s: SocketStream, head: Bool = false) async throws -> RawResponse {
        let statusLine = String(decoding: try await s.readLine(), as: UTF8.self)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
            throw Failure("not a status line: \(statusLine.debugDescription)")
        }
        var headers: [(String, String)] = []
        while true {
            let line = String(decoding: try await s.readLine(), as: UTF8.self)
            if line == "\r\n" { break }
            guard line.hasSuffix("\r\n"), let colon = line.firstIndex(of: ":") else {
                throw Failure("bad header line: \(line.debugDescription)")
            }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...].dropFirst().dropLast(1))))
        }
        let r = RawResponse(status: status, headers: headers, body: [])
        if head || status < 200 || status == 204 || status == 304 { return r }
        var body: [UInt8] = []
        if let n = r.header("Content-Length").flatMap({ Int($0) }) {
            body = try await s.readExactly(n)
        } else if r.header("Transfer-Encoding")?.lowercased() == "chunked" {
            while true {
                let sizeLine = String(decoding: try await s.readLine(), as: UTF8.self)
                guard let size = Int(sizeLine.trimmingCharacters(), radix: 16) else {
                    throw Failure("bad chunk size line \(sizeLine.debugDescription)")
                }
                if size == 0 {
                    while try await s.readLine() != Array("\r\n".utf8) {}
                    break
                }
                body += try await s.readExactly(size)
                _ = try await s.readExactly(2)
            }
        } else {
            body = try await s.readAll()
        }
        return RawResponse(status: status, headers: headers, body: body)
    }

    /// Sends `request` on a new connection and reads the one response, then
    /// whether the server closed the connection after it.
    static func exchange(_ port: Int, _ request: String) async throws -> (RawResponse, closed: Bool) {
        let s = try await connect(port)
        defer { s.close() }
        try await s.write(request)
        let r = try await readResponse(s)
        let rest = try await timeoutAfter(10) { try await s.read(1) }
        return (r, rest.isEmpty)
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        // "\r\n" is one Character in Swift.
        let blank: Set<Character> = [" ", "\r", "\n", "\r\n"]
        while let f = s.first, blank.contains(f) { s = s.dropFirst() }
        while let l = s.last, blank.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

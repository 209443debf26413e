// HTTPS: CurioHTTP served over CurioTLS connections, with real clients —
// curl (HTTP/1.1 over TLS, keep-alive across two URLs, a POST body) and
// Python's http.client over ssl — trusting the CA the tests made. This is
// how a service gets HTTPS: `tcpServer(..., tls:)` hands each client's
// TLS stream to `serveHTTP`.
import Curio
import CurioHTTP
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct HTTPSTests {
    /// Answers `GET /x` with "path /x" and a POST with the body's size.
    static let handler: HTTPHandler = { request in
        let body = try await request.body.collect(upTo: 1 << 20)
        let text = request.method == .post ? "got \(body.count) bytes\n" : "path \(request.path)\n"
        return HTTPServerResponse(body: .string(text))
    }

    /// Starts an HTTPS server (ALPN http/1.1) → its port.
    static func startHTTPS() async throws -> TLSTest.Server {
        try await TLSTest.startServer(try TLSTest.server(alpn: ["http/1.1"])) { stream, _ in
            await serveHTTP(stream, configuration: HTTPServerConfiguration(), handler: handler)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func curlOverTLSWithKeepAliveAndABody() async throws {
        let r = try await TLSTest.run { () -> String in
            let c = try TLSTest.certificates()
            let server = try await Self.startHTTPS()
            let base = "https://localhost:\(server.port)"
            let out = try await checkOutput([
                "curl", "-sS", "--http1.1", "--cacert", c.path("ca.pem"),
                "--resolve", "localhost:\(server.port):127.0.0.1",
                "\(base)/one", "\(base)/two",
                "-w", "%{num_connects} %{http_code}\\n",
            ])
            let post = try await checkOutput([
                "curl", "-sS", "--http1.1", "--cacert", c.path("ca.pem"),
                "--resolve", "localhost:\(server.port):127.0.0.1",
                "--data-binary", "@-", "\(base)/upload",
            ], input: Array(repeating: UInt8(ascii: "x"), count: 5000))
            try await server.stop()
            return TLSTest.text(out) + TLSTest.text(post)
        }
        // Two URLs over one TLS connection (the second reuses it: 0 new connects).
        #expect(r == "path /one\n1 200\npath /two\n0 200\ngot 5000 bytes\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func pythonHTTPClientOverSSL() async throws {
        let r = try await TLSTest.run { () -> String in
            let c = try TLSTest.certificates()
            let server = try await Self.startHTTPS()
            let script = """
            import http.client, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[2])
            conn = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx)
            for path in ("/a", "/b"):
                conn.request("GET", path)
                r = conn.getresponse()
                print(r.status, r.read().decode().strip(), conn.sock.version())
            conn.close()
            """
            let out = try await checkOutput(["python3", "-c", script, "\(server.port)", c.path("ca.pem")])
            try await server.stop()
            return TLSTest.text(out)
        }
        #expect(r == "200 path /a TLSv1.3\n200 path /b TLSv1.3\n")
    }
}

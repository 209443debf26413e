// HTTPServer(tls:) — CurioHTTPS's one-call HTTPS server — with real
// clients: curl (ALPN, keep-alive across two URLs, a POST body) and
// Python's http.client over ssl (ALPN offered and checked), the scheme
// handlers see, configurations it refuses, a plaintext client refused while
// others are served, and a drain that does not wait for a client stuck
// before its handshake.
import Curio
import CurioHTTP
import CurioHTTPS
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct HTTPSServerTests {
    /// Answers a POST with the body's size, anything else with the scheme and path.
    static let handler: HTTPHandler = { request in
        let body = try await request.body.collect(upTo: 1 << 20)
        let text = request.method == .post
            ? "got \(body.count) bytes\n" : "\(request.head.scheme ?? "-") \(request.path)\n"
        return HTTPServerResponse(body: .string(text))
    }

    /// A running HTTPS server on 127.0.0.1, its port, its failed handshakes.
    struct Running {
        let server: HTTPServer
        let task: CurioTask<Void>
        let port: Int
        let failures: Queue<any Error>
    }

    /// Starts `HTTPServer(tls:)` with the test server certificate and no
    /// ALPN of its own (the server adds http/1.1).
    static func start(handshakeTimeout: Double? = 10) async throws -> Running {
        let c = try TLSTest.certificates()
        let failures = Queue<any Error>()
        let server = try HTTPServer(host: "127.0.0.1", port: 0,
                                    tls: .server(certificateChain: c.chain("server"), privateKey: c.key("server")),
                                    handshakeTimeout: handshakeTimeout,
                                    onHandshakeFailure: { error, _ in try? await failures.put(error) },
                                    handler: handler)
        let task = try await spawn(name: "https server") { try await server.run() }
        let port = try await server.localAddress().port
        return Running(server: server, task: task, port: port, failures: failures)
    }

    @Test(.timeLimit(.minutes(1)))
    func curlNegotiatesHTTP11WithKeepAliveAndABody() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let s = try await Self.start()
            let base = "https://localhost:\(s.port)"
            let resolve = ["--resolve", "localhost:\(s.port):127.0.0.1", "--cacert", c.path("ca.pem")]
            // -v prints the ALPN outcome on stderr: kept apart from the bodies so
            // the two streams' buffering cannot reorder them.
            let out = try await checkOutput(["/bin/sh", "-c", """
                err=$(mktemp) && trap 'rm -f "$err"' EXIT
                curl -sS -v --http1.1 \(resolve.joined(separator: " ")) \(base)/one \(base)/two \
                  -w '%{num_connects} %{http_code}\\n' 2>"$err" && grep -m1 '^\\* ALPN: server' "$err"
                """])
            let post = try await checkOutput(["curl", "-sS", "--http1.1"] + resolve
                                             + ["--data-binary", "@-", "\(base)/upload"],
                                             input: Array(repeating: UInt8(ascii: "x"), count: 5000))
            try await s.server.drain()
            try await s.task.join()
            return TLSTest.text(out + post).split(separator: "\n").map(String.init)
        }
        // One TLS connection for both URLs (the second: 0 new connects).
        #expect(r == ["https /one", "1 200", "https /two", "0 200", "* ALPN: server accepted http/1.1",
                      "got 5000 bytes"])
    }

    @Test(.timeLimit(.minutes(1)))
    func pythonHTTPClientOverSSLWithALPN() async throws {
        let r = try await TLSTest.run { () -> String in
            let c = try TLSTest.certificates()
            let s = try await Self.start()
            let script = """
            import http.client, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[2])
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            conn = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx)
            for path in ("/a", "/b"):
                conn.request("GET", path)
                r = conn.getresponse()
                print(r.status, r.read().decode().strip(), conn.sock.version(), conn.sock.selected_alpn_protocol())
            conn.request("POST", "/up", body=b"y" * 70000)
            r = conn.getresponse()
            print(r.status, r.read().decode().strip())
            conn.close()
            """
            let out = try await checkOutput(["python3", "-c", script, "\(s.port)", c.path("ca.pem")])
            try await s.server.drain()
            try await s.task.join()
            return TLSTest.text(out)
        }
        #expect(r == "200 https /a TLSv1.3 http/1.1\n200 https /b TLSv1.3 http/1.1\n200 got 70000 bytes\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func aPlaintextClientIsRefusedAndOthersAreServed() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let s = try await Self.start()
            let raw = try await TLSTest.plainConnect(s.port)
            defer { raw.close() }
            try await raw.sendAll(TLSTest.bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            let e = try TLSTest.tlsError(try await s.failures.get())
            // The server closed the plaintext client: whatever it sent first
            // (an alert, if any), the client then reads the end or a reset.
            var closed = false
            while !closed {
                guard let chunk = try? await raw.recv(100) else { closed = true; break }
                closed = chunk.isEmpty
            }
            let out = try await checkOutput(["curl", "-sS", "--resolve", "localhost:\(s.port):127.0.0.1",
                                             "--cacert", c.path("ca.pem"), "https://localhost:\(s.port)/ok"])
            try await s.server.drain()
            try await s.task.join()
            return [e.message, "\(closed)", TLSTest.text(out)]
        }
        #expect(r == ["the peer does not speak TLS (http request); its first bytes are not a TLS record (a plaintext client on a TLS port?)",
                      "true", "https /ok\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func drainDoesNotWaitForAClientStuckBeforeItsHandshake() async throws {
        let r = try await TLSTest.run { () -> [String] in
            // Handshake timeout and drain grace far beyond the test's limit:
            // only the drain cancelling the handshake lets this end.
            let s = try await Self.start(handshakeTimeout: 3600)
            let silent = try await TLSTest.plainConnect(s.port)
            defer { silent.close() }
            while s.server.openConnections == 0 { try await Curio.sleep(0) }  // accepted: in its handshake
            let during = s.server.openConnections
            try await s.server.drain(timeout: 3600)
            try await s.task.join()
            let end = try await silent.recv(10)
            return ["\(during)", "\(s.server.openConnections)", "\(end.count)"]
        }
        #expect(r == ["1", "0", "0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func configurationsAnHTTPSServerCannotHonourAreRefused() throws {
        let c = try TLSTest.certificates()
        func message(_ tls: TLSConfiguration) -> String {
            do {
                _ = try HTTPServer(port: 0, tls: tls) { _ in HTTPServerResponse() }
                return "accepted"
            } catch let e as TLSError {
                return e.message
            } catch {
                return "\(error)"
            }
        }
        let h2 = TLSConfiguration.server(certificateChain: c.chain("server"), privateKey: c.key("server"),
                                         alpnProtocols: ["h2", "http/1.1"])
        let client = TLSConfiguration.client(trustRoots: .file(c.path("ca.pem")))
        let fine = TLSConfiguration.server(certificateChain: c.chain("server"), privateKey: c.key("server"),
                                           alpnProtocols: ["http/1.1"])
        #expect(message(h2).hasPrefix("CurioHTTP speaks HTTP/1.1 only, but the ALPN list offers h2"))
        #expect(message(client).hasPrefix("an HTTPS server needs a server configuration"))
        #expect(message(fine) == "accepted")
    }
}

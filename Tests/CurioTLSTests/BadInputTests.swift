// Bad peers and bad certificates: each failure is a TLSError that names
// it, and the server goes on serving the next client.
import Curio
import CurioTLS
import Glibc
import Logging
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(2)))
struct BadInputTests {
    /// A good client still gets its echo from `server`.
    static func stillServes(_ server: TLSTest.Server) async throws -> String {
        let conn = try await TLSTest.connect(server.port, try TLSTest.client())
        defer { conn.close() }
        try await conn.write("still here\n")
        return TLSTest.text(try await conn.readLine())
    }

    /// A real ClientHello, as a Curio TLS client sends it: a plain
    /// listener takes it and closes.
    static func captureClientHello() async throws -> [UInt8] {
        let listener = try Socket(.inet, .stream)
        defer { listener.close() }
        try listener.bind(("127.0.0.1", 0))
        try listener.listen(1)
        let port = try listener.localAddress.port
        let client = try TLSTest.client()
        let attempt = try await spawn { _ = await TLSTest.error { _ = try await TLSTest.connect(port, client) } }
        let (peer, _) = try await listener.accept()
        defer { peer.close() }
        // The record header says how long the hello is.
        var hello: [UInt8] = []
        while hello.count < 5 || hello.count < 5 + (Int(hello[3]) << 8 | Int(hello[4])) {
            let chunk = try await peer.recv(4096)
            if chunk.isEmpty { throw TLSTest.Failure("the client hung up before its ClientHello") }
            hello += chunk
        }
        peer.close()
        try await attempt.join()
        return hello
    }

    @Test(.timeLimit(.minutes(1)))
    func serverCertificateFromAnUntrustedCA() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(server.port, try TLSTest.client(ca: "other-ca"))
            })
            let s = try TLSTest.tlsError(try await server.nextFailure())
            let next = try await Self.stillServes(server)
            try await server.stop()
            return ["\(e.kind)", e.message, "\(e.verifyResult ?? 0)", "server: \(s.message)", next]
        }
        #expect(r == ["certificateVerificationFailed",
                      "certificate verification failed: unable to get local issuer certificate", "20",
                      "server: tlsv1 alert unknown ca", "still here\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func expiredServerCertificate() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server("expired"))
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(server.port, try TLSTest.client())
            })
            _ = try await server.nextFailure()
            try await server.stop()
            return ["\(e.kind)", e.message]
        }
        #expect(r == ["certificateVerificationFailed", "certificate verification failed: certificate has expired"])
    }

    @Test(.timeLimit(.minutes(1)))
    func hostnameAndAddressMismatch() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server("wronghost"))
            var out: [String] = []
            for name in ["localhost", "127.0.0.1"] {
                let e = try TLSTest.tlsError(await TLSTest.error {
                    _ = try await TLSTest.connect(server.port, try TLSTest.client(), serverName: name)
                })
                out.append(e.message)
                _ = try await server.nextFailure()
            }
            // Without hostname verification the chain alone is checked.
            let lax = try await TLSTest.connect(server.port, try TLSTest.client { $0.certificateVerification = .noHostnameVerification })
            try await lax.write("lax\n")
            out.append(TLSTest.text(try await lax.readLine()))
            lax.close()
            try await server.stop()
            return out
        }
        #expect(r == ["certificate verification failed: hostname mismatch",
                      "certificate verification failed: IP address mismatch", "lax\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func plaintextClientOnTheTLSPort() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let raw = try await TLSTest.plainConnect(server.port)
            defer { raw.close() }
            try await raw.sendAll(TLSTest.bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
            let s = try TLSTest.tlsError(try await server.nextFailure())
            // The server hung up on it (after an alert, if it had room).
            var rest: [UInt8] = []
            while true {
                let chunk = try await raw.recv(1024)
                if chunk.isEmpty { break }
                rest += chunk
            }
            let next = try await Self.stillServes(server)
            try await server.stop()
            return ["\(s.kind)", s.message, "closed", next]
        }
        #expect(r == ["notTLS",
                      "the peer does not speak TLS (http request); its first bytes are not a TLS record (a plaintext client on a TLS port?)",
                      "closed", "still here\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func plaintextServer() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let listener = TCPListener()
            let plain = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    try await client.write("HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                }
            }
            let port = try await listener.wait().port
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(port, try TLSTest.client())
            })
            try await plain.cancel()
            return ["\(e.kind)", e.message]
        }
        #expect(r == ["notTLS",
                      "the peer does not speak TLS (wrong version number); its first bytes are not a TLS record (a plaintext server?)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func clientHangsUpMidHandshake() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let hello = try await Self.captureClientHello()
            let server = try await TLSTest.startServer(try TLSTest.server())
            let raw = try await TLSTest.plainConnect(server.port)
            try await raw.sendAll(Array(hello[0..<(hello.count / 2)]))
            raw.close()
            let s = try TLSTest.tlsError(try await server.nextFailure())
            let next = try await Self.stillServes(server)
            try await server.stop()
            return ["\(s.kind)", s.message, next]
        }
        #expect(r == ["unexpectedEOF", "the peer closed the connection in the middle of the handshake (truncated handshake)",
                      "still here\n"])
    }

    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func serverHangsUpMidHandshake(reset: Bool) async throws {
        let r = try await TLSTest.run { () -> [String] in
            let listener = try Socket(.inet, .stream)
            defer { listener.close() }
            try listener.bind(("127.0.0.1", 0))
            try listener.listen(1)
            let port = try listener.localAddress.port
            let client = try TLSTest.client()
            let attempt = try await spawn { await TLSTest.error { _ = try await TLSTest.connect(port, client) } }
            let (peer, _) = try await listener.accept()
            // The whole hello is read (a plain close is then a FIN), or the
            // peer resets the connection (SO_LINGER 0).
            var hello: [UInt8] = []
            while hello.count < 5 || hello.count < 5 + (Int(hello[3]) << 8 | Int(hello[4])) {
                hello += try await peer.recv(4096)
            }
            if reset {
                var l = linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(peer.fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            }
            peer.close()
            let e = try TLSTest.tlsError(try await attempt.join() ?? nil)
            return ["\(e.kind)", e.operation, String(e.message.prefix { $0 != "(" }.dropLast())]
        }
        #expect(r == ["unexpectedEOF", "handshake with localhost",
                      reset ? "the peer reset the connection in the middle of the handshake"
                            : "the peer closed the connection in the middle of the handshake"])
    }

    @Test(.timeLimit(.minutes(1)), arguments: [
        ("record with a bad MAC", [0x17, 0x03, 0x03, 0x00, 0x20] + [UInt8](repeating: 0xAB, count: 32)),
        ("not a record at all", Array("this is not TLS at all\n".utf8)),
    ])
    func garbageAfterTheHandshake(what: String, garbage: [UInt8]) async throws {
        let r = try await TLSTest.run { () -> [String] in
            let seen = Queue<String>()
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                do {
                    for try await line in client { try await client.write(line) }
                    try await seen.put("no error")
                } catch let e as TLSError {
                    try await seen.put("\(e.kind)")
                }
            }
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            try await conn.write("fine\n")
            let first = TLSTest.text(try await conn.readLine())
            try await conn.tls!.socket.sendAll(garbage)
            let serverSaw = try await seen.get()
            // The server's alert (or its hang-up) ends the client's stream.
            let clientSaw = await TLSTest.error { _ = try await conn.readLine() }
            let next = try await Self.stillServes(server)
            try await server.stop()
            return [first, serverSaw, "\((clientSaw as? TLSError)?.kind == .protocolError)", next]
        }
        #expect(r == ["fine\n", "protocolError", "true", "still here\n"], "\(what)")
    }

    @Test(.timeLimit(.minutes(1)))
    func configurationMistakesNameTheMistake() async throws {
        // On a thread of its own (the certificates may still be in the
        // making), never blocking Swift's cooperative pool.
        let r = try await TLSTest.run { () -> [String] in
            try Self.configurationMessages()
        }
        #expect(r[0].hasPrefix("configuration: cannot load the certificate chain from '/nonexistent/cert.pem'"))
        #expect(r[1] == "configuration: the private key does not match the certificate: key values mismatch")
        #expect(r[2].hasPrefix("configuration: cannot load the certificate chain from PEM text"))
        #expect(r[3] == "configuration: ALPN protocol names must be 1...255 bytes, got \"\"")
        #expect(r[4] == "configuration: minimumVersion v1_3 is above maximumVersion v1_2")
        #expect(r[5] == "configuration: a server needs certificateChain and privateKey")
    }

    static func configurationMessages() throws -> [String] {
        let c = try TLSTest.certificates()
        func message(_ config: TLSConfiguration) -> String {
            do {
                _ = try TLSContext(config)
                return "no error"
            } catch let e as TLSError {
                return "\(e.kind): \(e.message)"
            } catch {
                return "\(error)"
            }
        }
        let missing = message(.server(certificateChain: .file("/nonexistent/cert.pem"), privateKey: c.key("server")))
        let mismatch = message(.server(certificateChain: c.chain("server"), privateKey: c.key("client")))
        let garbage = message(.server(certificateChain: .text("not a certificate"), privateKey: c.key("server")))
        let alpn = message(.client(alpnProtocols: [""]))
        let versions = message({ var x = TLSConfiguration.client(); x.minimumVersion = .v1_3; x.maximumVersion = .v1_2; return x }())
        let noKey = message({ var x = TLSConfiguration(role: .server); x.certificateChain = c.chain("server"); return x }())
        return [missing, mismatch, garbage, alpn, versions, noKey]
    }
    /// Lines a kernel logged.
    final class LogLines: Sendable {
        let lines = Mutex<[String]>([])
    }

    /// Records what a kernel logs.
    struct RecordingLogHandler: LogHandler {
        let sink: LogLines
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.lines.withLock { $0.append("\(event.level): \(event.message)") }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutAFailureHandlerTheKernelsLoggerHearsOfIt() async throws {
        let recorded = LogLines()
        var config = Kernel.Configuration.builtIn
        config.logger = Logger(label: "test") { _ in RecordingLogHandler(sink: recorded) }
        let kernel = Kernel(configuration: config)
        let r = try await TLSTest.run(kernel: kernel) { () -> String in
            let context = try TLSTest.server()
            let listener = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, tls: context, ready: listener, handler: TLSTest.echo)
            }
            let port = try await listener.wait().port
            let raw = try await TLSTest.plainConnect(port)
            try await raw.sendAll(TLSTest.bytes("GET / HTTP/1.1\r\n\r\n"))
            while try await !raw.recv(1024).isEmpty {}  // the server hung up: it has logged by now
            raw.close()
            let next = try await TLSTest.connect(port, try TLSTest.client())
            try await next.write("after\n")
            let line = TLSTest.text(try await next.readLine())
            next.close()
            try await server.cancel()
            return line
        }
        let lines = recorded.lines.withLock { $0 }
        #expect(r == "after\n")
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.hasPrefix("notice: TLS handshake with ('127.0.0.1', ") == true, "\(lines)")
        #expect(lines.first?.hasSuffix("failed: TLSError.notTLS: handshake with a client: the peer does not speak TLS (http request); its first bytes are not a TLS record (a plaintext client on a TLS port?)") == true)
    }
}

// Curio TLS client against Curio TLS server: the stream contract (lines,
// exact reads, iteration, large transfers both ways at once), what gets
// negotiated (versions, ALPN, SNI, client certificates, resumed sessions)
// and how a connection ends (close_notify, shutdown, truncation).
import Curio
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct CurioPeerTests {
    @Test(.timeLimit(.minutes(1)))
    func linesExactReadsAndIterationOverTLS() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            var out: [String] = []
            try await conn.write("hello\nworld\n")
            out.append(TLSTest.text(try await conn.readLine()))
            out.append(TLSTest.text(try await conn.readExactly(3)))
            out.append(TLSTest.text(try await conn.readLine()))
            try await conn.write("a\nb\n")
            var lines: [String] = []
            for try await line in conn {
                lines.append(TLSTest.text(line))
                if lines.count == 2 { break }
            }
            out.append(lines.joined())
            out.append(conn.tls?.protocolVersion ?? "no TLS")
            out.append(conn.tls?.cipherSuite == nil ? "no cipher" : "cipher")
            out.append(conn.tls?.serverName ?? "no name")
            try await server.stop()
            return out
        }
        #expect(r == ["hello\n", "wor", "ld\n", "a\nb\n", "TLSv1.3", "cipher", "localhost"])
    }

    @Test(.timeLimit(.minutes(1)))
    func megabytesBothWaysAtOnce() async throws {
        let r = try await TLSTest.run { () -> [Bool] in
            // Made before the server runs: it takes a moment in a debug
            // build, and the kernel's thread runs nothing else meanwhile.
            let payload = TLSTest.pattern(3 << 20)
            // The server echoes raw chunks as they come.
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                while true {
                    let chunk = try await client.read(100_000)
                    if chunk.isEmpty { return }
                    try await client.write(chunk)
                }
            }
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            // One task writes while this one reads: the socket's buffers
            // cannot hold it all, so both directions must move together.
            let writer = try await spawn {
                try await conn.write(payload)
                try await conn.tls!.shutdown()
            }
            let echoed = try await conn.read()  // until the server's close_notify
            try await writer.join()
            try await server.stop()
            return [echoed.count == payload.count, echoed == payload]
        }
        #expect(r == [true, true])
    }

    @Test(.timeLimit(.minutes(1)))
    func tls12WhenTheClientAsksForIt() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let conn = try await TLSTest.connect(server.port, try TLSTest.client { $0.maximumVersion = .v1_2 })
            defer { conn.close() }
            try await conn.write("twelve\n")
            let line = TLSTest.text(try await conn.readLine())
            try await server.stop()
            return [line, conn.tls!.protocolVersion]
        }
        #expect(r == ["twelve\n", "TLSv1.2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func alpnPicksTheServersFirstChoiceTheClientOffers() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server(alpn: ["h2", "http/1.1"])) { client, _ in
                try await client.write((client.tls!.negotiatedProtocol ?? "none") + "\n")
            }
            var out: [String] = []
            let both = try await TLSTest.connect(server.port, try TLSTest.client(alpn: ["http/1.1", "h2"]))
            out.append(TLSTest.text(try await both.readLine()) + (both.tls!.negotiatedProtocol ?? "none"))
            both.close()
            let one = try await TLSTest.connect(server.port, try TLSTest.client(alpn: ["http/1.1"]))
            out.append(TLSTest.text(try await one.readLine()) + (one.tls!.negotiatedProtocol ?? "none"))
            one.close()
            let without = try await TLSTest.connect(server.port, try TLSTest.client())
            out.append(TLSTest.text(try await without.readLine()) + (without.tls!.negotiatedProtocol ?? "none"))
            without.close()
            // No overlap: refused with no_application_protocol (RFC 7301).
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(server.port, try TLSTest.client(alpn: ["spdy/3"]))
            })
            out.append("\(e.kind): \(e.message)")
            let s = try TLSTest.tlsError(try await server.nextFailure())
            out.append("server \(s.kind): \(s.message)")
            try await server.stop()
            return out
        }
        #expect(r == ["h2\nh2", "http/1.1\nhttp/1.1", "none\nnone",
                      "handshakeFailed: tlsv1 alert no application protocol",
                      "server handshakeFailed: no application protocol"])
    }

    @Test(.timeLimit(.minutes(1)))
    func sniChoosesTheCertificateForTheNameAsked() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let sni = TLSConfiguration.SNICertificate(serverNames: ["alt.example", "*.wild.example"],
                                                      certificateChain: c.chain("alt"), privateKey: c.key("alt"))
            let server = try await TLSTest.startServer(try TLSTest.server(sni: [sni])) { client, _ in
                try await client.write((client.tls!.requestedServerName ?? "no SNI") + "\n")
            }
            let client = try TLSTest.client()
            var out: [String] = []
            // Each name verifies only against the certificate made for it.
            for name in ["alt.example", "x.wild.example", "localhost"] {
                let conn = try await TLSTest.connect(server.port, client, serverName: name)
                out.append(TLSTest.text(try await conn.readLine()).trimmingTrailingNewline)
                conn.close()
            }
            // A name no certificate has: the default one, which does not match.
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(server.port, client, serverName: "a.b.wild.example")
            })
            out.append(e.message)
            try await server.stop()
            return out
        }
        #expect(r == ["alt.example", "x.wild.example", "localhost",
                      "certificate verification failed: hostname mismatch"])
    }

    @Test(.timeLimit(.minutes(1)))
    func requiredClientCertificates() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server(clientCertificates: .required)) { client, _ in
                try await client.write((client.tls!.peerCertificateSubject ?? "anonymous") + "\n")
            }
            var out: [String] = []
            let with = try await TLSTest.connect(server.port, try TLSTest.client(cert: "client"))
            out.append(TLSTest.text(try await with.readLine()).trimmingTrailingNewline)
            with.close()
            // TLS 1.3: the client's handshake ends before the server has
            // judged its (missing) certificate; the refusal is an alert the
            // client reads.
            let e = try TLSTest.tlsError(await TLSTest.error {
                let without = try await TLSTest.connect(server.port, try TLSTest.client())
                defer { without.close() }
                _ = try await without.readLine()
            })
            out.append("\(e.kind): \(e.message)")
            let s = try TLSTest.tlsError(try await server.nextFailure())
            out.append("server \(s.kind): \(s.message)")
            // A certificate from a CA the server does not trust.
            _ = await TLSTest.error {
                let stranger = try await TLSTest.connect(server.port, try TLSTest.client(cert: "stranger"))
                defer { stranger.close() }
                _ = try await stranger.readLine()
            }
            let s2 = try TLSTest.tlsError(try await server.nextFailure())
            out.append("server \(s2.kind): \(s2.message)")
            try await server.stop()
            return out
        }
        #expect(r == ["CN=curio-client",
                      "protocolError: tlsv13 alert certificate required",
                      "server handshakeFailed: peer did not return a certificate",
                      "server certificateVerificationFailed: certificate verification failed: unable to get local issuer certificate"])
    }

    @Test(.timeLimit(.minutes(1)))
    func optionalClientCertificates() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server(clientCertificates: .optional)) { client, _ in
                try await client.write((client.tls!.peerCertificateSubject ?? "anonymous") + "\n")
            }
            var out: [String] = []
            for cert in ["client", nil] {
                let conn = try await TLSTest.connect(server.port, try TLSTest.client(cert: cert))
                out.append(TLSTest.text(try await conn.readLine()).trimmingTrailingNewline)
                conn.close()
            }
            try await server.stop()
            return out
        }
        #expect(r == ["CN=curio-client", "anonymous"])
    }

    @Test(.timeLimit(.minutes(1)), arguments: [TLSConfiguration.Version.v1_3, .v1_2])
    func secondConnectionResumesTheSession(version: TLSConfiguration.Version) async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                try await client.write(client.tls!.sessionReused ? "resumed\n" : "full\n")
            }
            let client = try TLSTest.client { $0.maximumVersion = version }
            var out: [String] = []
            for _ in 0..<3 {
                let conn = try await TLSTest.connect(server.port, client)
                // Reading the reply also takes in TLS 1.3's session tickets.
                let line = TLSTest.text(try await conn.readLine()).trimmingTrailingNewline
                out.append("\(line) \(conn.tls!.sessionReused)")
                conn.close()
            }
            out.append("cached \(client.cachedSessionCount)")
            // Another context has sessions of its own: none yet.
            let other = try await TLSTest.connect(server.port, try TLSTest.client { $0.maximumVersion = version })
            out.append(TLSTest.text(try await other.readLine()).trimmingTrailingNewline)
            other.close()
            try await server.stop()
            return out
        }
        #expect(r == ["full false", "resumed true", "resumed true", "cached 1", "full"])
    }

    @Test(.timeLimit(.minutes(1)))
    func resumptionOffMeansFullHandshakes() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                try await client.write(client.tls!.sessionReused ? "resumed\n" : "full\n")
            }
            let client = try TLSTest.client { $0.sessionResumption = false }
            var out: [String] = []
            for _ in 0..<2 {
                let conn = try await TLSTest.connect(server.port, client)
                out.append(TLSTest.text(try await conn.readLine()).trimmingTrailingNewline)
                conn.close()
            }
            try await server.stop()
            return out
        }
        #expect(r == ["full", "full"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closeSendsCloseNotifyAndShutdownHalfCloses() async throws {
        let r = try await TLSTest.run { () -> [String] in
            // The server reads to the client's close_notify, then answers
            // with the count and closes (close_notify again).
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                let all = try await client.read()
                try await client.write("got \(all.count)\n")
            }
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            try await conn.write("12345")
            try await conn.tls!.shutdown()
            var out: [String] = []
            out.append(TLSTest.text(try await conn.readLine()))
            out.append("eof \(try await conn.read(10).count) \(conn.tls!.peerHasClosed)")
            let e = try TLSTest.tlsError(await TLSTest.error { try await conn.write("late") })
            out.append("\(e.kind)")
            try await server.stop()
            return out
        }
        #expect(r == ["got 5\n", "eof 0 true", "closed"])
    }

    @Test(.timeLimit(.minutes(1)))
    func anEndWithoutCloseNotifyIsATruncation() async throws {
        let r = try await TLSTest.run { () -> [String] in
            // The server writes a line, then drops the TCP connection
            // without close_notify.
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                try await client.write("partial\n")
                client.tls!.socket.close()
            }
            var out: [String] = []
            let strict = try await TLSTest.connect(server.port, try TLSTest.client())
            out.append(TLSTest.text(try await strict.readLine()))
            let e = try TLSTest.tlsError(await TLSTest.error { _ = try await strict.readLine() })
            out.append("\(e.kind): \(e.message)")
            strict.close()
            let lenient = try await TLSTest.connect(server.port, try TLSTest.client { $0.allowsEOFWithoutCloseNotify = true })
            out.append(TLSTest.text(try await lenient.readLine()))
            out.append("eof \(try await lenient.read(10).count)")
            lenient.close()
            try await server.stop()
            return out
        }
        #expect(r == ["partial\n",
                      "unexpectedEOF: the peer closed the TCP connection without a TLS close_notify (the data may be truncated)",
                      "partial\n", "eof 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func pemTextInMemoryAndTLSConnectionOverAPlainSocket() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let serverContext = try TLSContext(.server(certificateChain: .text(try c.text("server.pem")),
                                                       privateKey: .text(try c.text("server.key"))))
            let server = try await TLSTest.startServer(serverContext)
            let clientContext = try TLSContext(.client(trustRoots: .pem(try c.text("ca.pem"))))
            // The lower-level path: a Curio socket, then the handshake.
            let sock = try await TLSTest.plainConnect(server.port)
            let tls = try await TLSConnection.connect(over: sock, context: clientContext, serverName: "127.0.0.1")
            let stream = SocketStream(tls)
            defer { stream.close() }
            try await stream.write("by address\n")
            let line = TLSTest.text(try await stream.readLine())
            try await server.stop()
            return [line]
        }
        #expect(r == ["by address\n"])
    }
    @Test(.timeLimit(.minutes(1)))
    func manyClientsAtOnce() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let client = try TLSTest.client()
            let clients = 40
            let done = Queue<String>()
            for i in 0..<clients {
                try await spawn {
                    let conn = try await TLSTest.connect(server.port, client)
                    defer { conn.close() }
                    var replies = ""
                    for j in 0..<5 {
                        try await conn.write("client \(i) line \(j)\n")
                        replies += TLSTest.text(try await conn.readLine())
                    }
                    let want = (0..<5).map { "client \(i) line \($0)\n" }.joined()
                    try await done.put(replies == want ? "ok" : "client \(i) got \(replies)")
                }
            }
            var results: [String] = []
            for _ in 0..<clients { results.append(try await done.get()) }
            try await server.stop()
            return Array(Set(results))
        }
        #expect(r == ["ok"])
    }
    @Test(.timeLimit(.minutes(1)))
    func oneContextSharedByKernelsOnSeveralThreads() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                for try await line in client {
                    try await client.write((client.tls!.sessionReused ? "resumed " : "full ") + TLSTest.text(line))
                }
            }
            let shared = try TLSTest.client()
            let port = server.port
            // Three kernels on worker threads connect through one context
            // (one SSL_CTX, one session cache) at the same time.
            var workers: [CurioTask<[String]>] = []
            for k in 0..<3 {
                workers.append(try await spawn {
                    try await runInThread {
                        try Curio.run { () -> [String] in
                            var replies: [String] = []
                            for i in 0..<8 {
                                let conn = try await TLSTest.connect(port, shared)
                                try await conn.write("kernel \(k) connection \(i)\n")
                                replies.append(TLSTest.text(try await conn.readLine()))
                                conn.close()
                            }
                            return replies
                        }
                    }
                })
            }
            var all: [String] = []
            for w in workers { all += try await w.join() ?? [] }
            try await server.stop()
            let wellFormed = all.allSatisfy { $0.hasPrefix("full kernel") || $0.hasPrefix("resumed kernel") }
            return ["\(all.count)", "\(wellFormed)", "some resumed \(all.contains { $0.hasPrefix("resumed") })",
                    "cached \(shared.cachedSessionCount)", "live \(shared.connectionCount)"]
        }
        #expect(r == ["24", "true", "some resumed true", "cached 1", "live 0"])
    }
}

// CurioTLS against TLS stacks it did not write: `openssl s_server` and
// `openssl s_client`, and Python's `ssl` module — with the certificates the
// tests made. Each peer runs as a Curio Subprocess; its output is read
// through the kernel.
import Curio
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct PeerProgramTests {
    /// Starts `openssl s_server` in -rev mode (it answers each line
    /// reversed) on an ephemeral port → the process and its port.
    static func startSServer(_ extra: [String], cert: String = "server") async throws -> (Subprocess, Int) {
        let c = try TLSTest.certificates()
        let p = try Subprocess(["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
                                "-cert", c.path(cert + ".pem"), "-key", c.path(cert + ".key")] + extra,
                               stdin: .devNull, stdout: .pipe, stderr: .pipe)
        let line = try await TLSTest.lineMatching(p.stdout!, "ACCEPT") { $0.hasPrefix("ACCEPT") }
        guard let port = line.split(separator: ":").last.flatMap({ Int($0) }) else {
            throw TLSTest.Failure("odd s_server line \(line)")
        }
        return (p, port)
    }

    @Test(.timeLimit(.minutes(1)))
    func curioClientToOpenSSLServer() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let (p, port) = try await Self.startSServer(["-alpn", "h2,http/1.1"])
            let conn = try await TLSTest.connect(port, try TLSTest.client(alpn: ["http/1.1"]))
            try await conn.write("hello openssl\n")
            let reply = TLSTest.text(try await conn.readLine())
            let out = [reply, conn.tls!.negotiatedProtocol ?? "none", conn.tls!.protocolVersion]
            conn.close()
            let status = try await p.wait()
            return out + ["\(status)"]
        }
        #expect(r == ["lssnepo olleh\n", "http/1.1", "TLSv1.3", "0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func curioClientCertificateToOpenSSLServerThatRequiresOne() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let (p, port) = try await Self.startSServer(["-Verify", "1", "-verify_return_error", "-CAfile", c.path("ca.pem")])
            let conn = try await TLSTest.connect(port, try TLSTest.client(cert: "client") { $0.maximumVersion = .v1_2 })
            try await conn.write("abc\n")
            let reply = TLSTest.text(try await conn.readLine())
            conn.close()
            _ = try await p.wait()
            return [reply, conn.tls!.protocolVersion]
        }
        #expect(r == ["cba\n", "TLSv1.2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func openSSLClientToCurioServer() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let server = try await TLSTest.startServer(try TLSTest.server(alpn: ["http/1.1"])) { client, _ in
                let line = TLSTest.text(try await client.readLine()).trimmingTrailingNewline
                try await client.write("pong \(line) \(client.tls!.negotiatedProtocol ?? "none") \(client.tls!.requestedServerName ?? "-")\n")
            }
            let p = try Subprocess(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost",
                                    "-CAfile", c.path("ca.pem"), "-verify_return_error", "-alpn", "http/1.1", "-quiet"],
                                   stdin: .pipe, stdout: .pipe, stderr: .devNull)
            try await p.stdin!.write("ping\n")
            let reply = TLSTest.text(try await p.stdout!.readLine())
            let status = try await p.wait()  // the server's close ends s_client
            p.stdin!.close()
            try await server.stop()
            return [reply, "\(status)"]
        }
        #expect(r == ["pong ping http/1.1 localhost\n", "0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func pythonSSLClientToCurioServerWithResumption() async throws {
        let script = """
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        ctx.set_alpn_protocols(["http/1.1"])
        session = None
        for i in range(2):
            with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
                s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
                s.sendall(b"python %d\\n" % i)
                data = b""
                while not data.endswith(b"\\n"):
                    chunk = s.recv(100)
                    if not chunk:
                        break
                    data += chunk
                session = s.session
                print(s.version(), s.selected_alpn_protocol(), s.session_reused, data.decode().strip(), flush=True)
                s.unwrap()  # close_notify, then wait for the server's
        """
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let server = try await TLSTest.startServer(try TLSTest.server(alpn: ["h2", "http/1.1"]))
            let p = try Subprocess(["python3", "-c", script, "\(server.port)", c.path("ca.pem")],
                                   stdin: .devNull, stdout: .pipe, stderr: .pipe)
            let (out, err) = try await p.communicate()
            try await server.stop()
            return TLSTest.text(out).split(separator: "\n").map(String.init) + [TLSTest.text(err)]
        }
        #expect(r == ["TLSv1.3 http/1.1 False python 0", "TLSv1.3 http/1.1 True python 1", ""])
    }

    @Test(.timeLimit(.minutes(1)))
    func tls11ClientIsRefused() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            // SECLEVEL=0 so the client really offers TLS 1.1 (OpenSSL 3
            // refuses it by itself at the default level).
            let p = try Subprocess(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_1",
                                    "-cipher", "DEFAULT@SECLEVEL=0"],
                                   stdin: .devNull, stdout: .devNull, stderr: .pipe)
            let (_, err) = try await p.communicate()
            let failure = try TLSTest.tlsError(try await server.nextFailure())
            // The server still serves a good client.
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            try await conn.write("next\n")
            let next = TLSTest.text(try await conn.readLine())
            conn.close()
            try await server.stop()
            return ["\(p.status!.returnCode != 0)", "\(TLSTest.text(err).contains("alert protocol version"))",
                    "\(failure.kind): \(failure.message)", next]
        }
        #expect(r == ["true", "true", "handshakeFailed: unsupported protocol", "next\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func curioClientRefusesATLS11Server() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let (p, port) = try await Self.startSServer(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
            let e = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSTest.connect(port, try TLSTest.client())
            })
            p.kill()
            _ = try await p.wait()
            return ["\(e.kind)", e.message]
        }
        #expect(r == ["handshakeFailed", "tlsv1 alert protocol version"])
    }
    @Test(.timeLimit(.minutes(1)))
    func openSSLClientGetsTheSNICertificate() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let c = try TLSTest.certificates()
            let sni = TLSConfiguration.SNICertificate(serverNames: ["alt.example"], certificateChain: c.chain("alt"),
                                                      privateKey: c.key("alt"))
            let server = try await TLSTest.startServer(try TLSTest.server(sni: [sni])) { client, _ in
                _ = try await client.readLine()
                try await client.write((client.tls!.requestedServerName ?? "-") + "\n")
            }
            // -verify_hostname makes s_client check the name against the
            // certificate it got: only the SNI certificate has alt.example.
            let p = try Subprocess(["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "alt.example",
                                    "-verify_hostname", "alt.example", "-CAfile", c.path("ca.pem"), "-verify_return_error",
                                    "-quiet"],
                                   stdin: .pipe, stdout: .pipe, stderr: .devNull)
            try await p.stdin!.write("hi\n")
            let reply = TLSTest.text(try await p.stdout!.readLine())
            let status = try await p.wait()
            p.stdin!.close()
            try await server.stop()
            return [reply, "\(status)"]
        }
        #expect(r == ["alt.example\n", "0"])
    }
}

// Using a TLS connection or context the wrong way gets an error that
// names the mistake.
import Curio
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct MisuseTests {
    @Test(.timeLimit(.minutes(1)))
    func twoReadersAtOnceAndUseAfterClose() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            let tls = conn.tls!
            let reader = try await spawn { _ = try await tls.recv(100) }
            // The first reader is waiting (nothing was sent) when the second comes.
            try await TimeoutTests.waitUntil("the reader waits") { reader.state == .readWait }
            let busy = await TLSTest.error { _ = try await tls.recv(100) }
            try await reader.cancel()
            conn.close()
            let afterClose = await TLSTest.error { _ = try await tls.recv(100) }
            let writeAfterClose = await TLSTest.error { try await tls.sendAll([1]) }
            try await server.stop()
            return ["\(busy.map { type(of: $0) }.map { "\($0)" } ?? "none")",
                    "\((afterClose as? TLSError)?.kind == .closed)", "\((writeAfterClose as? TLSError)?.kind == .closed)"]
        }
        #expect(r == ["ResourceBusy", "true", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aConnectionBelongsToItsKernel() async throws {
        let r = try await TLSTest.run { () -> String in
            let server = try await TLSTest.startServer(try TLSTest.server())
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            let tls = conn.tls!
            // Another kernel, on a worker thread, tries to read.
            let seen = try await runInThread { () -> String in
                try Curio.run { () -> String in
                    do {
                        _ = try await tls.recv(10)
                        return "read?"
                    } catch let e as CurioUsageError {
                        return "\(e.kind)"
                    }
                }
            }
            try await server.stop()
            return seen
        }
        #expect(r == "wrongKernel")
    }

    @Test(.timeLimit(.minutes(1)))
    func wrongRolesAndMissingNames() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            var out: [String] = []
            // A server context cannot connect, a client context cannot serve.
            let s1 = try await TLSTest.plainConnect(server.port)
            let e1 = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSConnection.connect(over: s1, context: try TLSTest.server(), serverName: "localhost")
            })
            out.append(e1.message)
            let e2 = try TLSTest.tlsError(await TLSTest.error {
                try await tcpServer(host: "127.0.0.1", port: 0, tls: try TLSTest.client()) { _, _ in }
            })
            out.append(e2.message)
            // Verifying a name needs the name.
            let s3 = try await TLSTest.plainConnect(server.port)
            let e3 = try TLSTest.tlsError(await TLSTest.error {
                _ = try await TLSConnection.connect(over: s3, context: try TLSTest.client(), serverName: nil)
            })
            out.append(e3.message)
            // The sockets went with the failed calls.
            out.append("\(s1.fd) \(s3.fd)")
            try await server.stop()
            return out
        }
        #expect(r == ["TLSConnection.connect needs a client context", "tcpServer(tls:) needs a server context",
                      "hostname verification needs a serverName (or certificateVerification .noHostnameVerification)",
                      "-1 -1"])
    }
}

// Failed handshakes of every kind, many times over: no descriptor stays
// open and every connection's OpenSSL state is freed.
import Curio
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct LeakTests {
    @Test(.timeLimit(.minutes(2)))
    func failedHandshakesLeakNoDescriptorsAndNoConnections() async throws {
        let r = try await TLSTest.run(limit: 90) { () -> [String] in
            let serverContext = try TLSTest.server()
            let good = try TLSTest.client()
            let wrongCA = try TLSTest.client(ca: "other-ca")
            let server = try await TLSTest.startServer(serverContext)
            let before = TLSTest.socketsOnPort(server.port)  // the listener
            var failures: [String: Int] = [:]
            for round in 0..<25 {
                // A plaintext client.
                let plain = try await TLSTest.plainConnect(server.port)
                try await plain.sendAll(TLSTest.bytes("GET / HTTP/1.1\r\n\r\n"))
                while try await !plain.recv(4096).isEmpty {}
                plain.close()
                // A truncated handshake.
                let cut = try await TLSTest.plainConnect(server.port)
                try await cut.sendAll([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                cut.close()
                // A client refusing the server's certificate.
                _ = await TLSTest.error { _ = try await TLSTest.connect(server.port, wrongCA) }
                // Timeouts on the client side of the handshake.
                _ = await TLSTest.error {
                    _ = try await timeoutAfter(0) { try await TLSTest.connect(server.port, good) }
                }
                for _ in 0..<3 {
                    let f = try await server.nextFailure()
                    failures[String(describing: (f as? TLSError)?.kind), default: 0] += 1
                }
                // And a good one.
                let conn = try await TLSTest.connect(server.port, good)
                try await conn.write("round \(round)\n")
                _ = try await conn.readLine()
                conn.close()
            }
            // The server closes its side of the last good client after
            // reading its close_notify; wait for that, then count.
            try await TimeoutTests.waitUntil("only the listener is left") {
                TLSTest.socketsOnPort(server.port) == before && serverContext.connectionCount == 0
            }
            let after = TLSTest.socketsOnPort(server.port)
            try await server.stop()
            return ["before \(before)", "after \(after)", "server live \(serverContext.connectionCount)",
                    "client live \(good.connectionCount + wrongCA.connectionCount)",
                    failures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")]
        }
        // Timed-out client attempts may or may not have reached the server
        // before they closed; they are not counted.
        #expect(r[0] == "before 1")
        #expect(r[1] == "after 1")
        #expect(r[2] == "server live 0")
        #expect(r[3] == "client live 0")
        #expect(r[4].contains("Optional(CurioTLS.TLSError.Kind.notTLS) 25"))
    }

    @Test(.timeLimit(.minutes(1)))
    func contextsAndConnectionsAreFreed() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server())
            weak var weakContext: TLSContext?
            weak var weakConnection: TLSConnection?
            do {
                let context = try TLSTest.client()
                weakContext = context
                let conn = try await TLSTest.connect(server.port, context)
                weakConnection = conn.tls
                try await conn.write("x\n")
                _ = try await conn.readLine()
                conn.close()
            }
            try await server.stop()
            return ["context \(weakContext == nil)", "connection \(weakConnection == nil)"]
        }
        #expect(r == ["context true", "connection true"])
    }
}

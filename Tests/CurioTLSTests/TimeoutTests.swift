// Handshakes, reads and writes are Curio blocking calls: timeouts and
// cancellation reach them, and partial progress is reported as Curio's
// own streams report it (bytesRead / bytesSent), with nothing lost.
@testable import Curio
import CurioTLS
import Testing

@Suite(.timeLimit(.minutes(2)))
struct TimeoutTests {
    /// A listener that accepts and then says nothing.
    static func silentListener() throws -> (Socket, Int) {
        let listener = try Socket(.inet, .stream)
        try listener.bind(("127.0.0.1", 0))
        try listener.listen(4)
        return (listener, try listener.localAddress.port)
    }

    /// Polls `condition` (yielding to the kernel) until it holds.
    static func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let end = Curio.clock() + 20
        var spins = 0
        while !condition() {
            if Curio.clock() > end { throw TLSTest.Failure("timed out waiting until \(what)") }
            spins += 1
            try await Curio.sleep(spins < 50 ? 0 : 0.001)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func clientHandshakeTimesOutAndClosesItsSocket() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let (listener, port) = try Self.silentListener()
            defer { listener.close() }
            let client = try TLSTest.client()
            let attempt = try await spawn { () -> String in
                do {
                    _ = try await timeoutAfter(0.2) { try await TLSTest.connect(port, client) }
                    return "connected?"
                } catch is TaskTimeout {
                    return "TaskTimeout"
                }
            }
            let (peer, _) = try await listener.accept()
            defer { peer.close() }
            let outcome = try await attempt.join() ?? "nil"
            // The client's socket was closed: the server side reads the
            // hello, then the end.
            var got = 0
            while true {
                let chunk = try await peer.recv(4096)
                if chunk.isEmpty { break }
                got += chunk.count
            }
            return [outcome, "hello then EOF: \(got > 0)"]
        }
        #expect(r == ["TaskTimeout", "hello then EOF: true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingAHandshakeEndsIt() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let (listener, port) = try Self.silentListener()
            defer { listener.close() }
            let client = try TLSTest.client()
            let attempt = try await spawn { () -> String in
                do {
                    _ = try await TLSTest.connect(port, client)
                    return "connected?"
                } catch is TaskCancelled {
                    return "TaskCancelled"
                }
            }
            let (peer, _) = try await listener.accept()
            defer { peer.close() }
            _ = try await peer.recv(4096)  // the hello: the client now waits for the answer
            try await attempt.cancel()
            let outcome = try await attempt.join() ?? "nil"
            var rest: [UInt8] = []
            while true {
                let chunk = try await peer.recv(4096)
                if chunk.isEmpty { break }
                rest += chunk
            }
            return [outcome, "EOF", "live \(client.connectionCount)"]
        }
        #expect(r == ["TaskCancelled", "EOF", "live 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func serverDropsAClientThatNeverHandshakes() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let server = try await TLSTest.startServer(try TLSTest.server(), handshakeTimeout: 2)
            let silent = try await TLSTest.plainConnect(server.port)
            defer { silent.close() }
            // Meanwhile another client is served.
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            try await conn.write("meanwhile\n")
            let meanwhile = TLSTest.text(try await conn.readLine())
            conn.close()
            let failure = try TLSTest.tlsError(try await server.nextFailure())
            let eof = try await silent.recv(100).count
            try await server.stop()
            return [meanwhile, "\(failure.kind): \(failure.message)", "eof \(eof)"]
        }
        #expect(r == ["meanwhile\n", "handshakeFailed: the client did not complete the handshake within 2.0 s", "eof 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimedOutReadLosesNothing() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let go = Queue<String>()
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                while true {
                    let text = try await go.get()
                    if text.isEmpty { return }
                    try await client.write(text)
                }
            }
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            var out: [String] = []
            // Nothing comes: the deadline ends the read.
            do {
                _ = try await timeoutAfter(0.2) { try await conn.readLine() }
                out.append("read?")
            } catch let e as TaskTimeout {
                out.append("timeout \(e.bytesRead ?? -1)")
            }
            // Half a line comes; the read is cancelled with it buffered.
            try await go.put("hel")
            let reader = try await spawn { () -> String in
                do {
                    return TLSTest.text(try await conn.readExactly(11))
                } catch let e as TaskCancelled {
                    return "cancelled \(e.bytesRead ?? -1)"
                }
            }
            try await Self.waitUntil("3 bytes are buffered") { conn.buffer.count == 3 }
            try await reader.cancel()
            out.append(try await reader.join() ?? "nil")
            try await go.put("lo world")
            out.append(TLSTest.text(try await conn.readExactly(11)))
            try await go.put("")
            try await server.stop()
            return out
        }
        #expect(r == ["timeout 0", "cancelled 3", "hello world"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledWriteSaysWhatItCommitted() async throws {
        let r = try await TLSTest.run { () -> [String] in
            let go = Event()
            let counted = Queue<Int>()
            // The server reads nothing until told, then counts to the end.
            let server = try await TLSTest.startServer(try TLSTest.server()) { client, _ in
                try await go.wait()
                try await counted.put(try await client.read().count)
            }
            let conn = try await TLSTest.connect(server.port, try TLSTest.client())
            defer { conn.close() }
            // More than the socket buffers of both ends hold (cheap to make:
            // a pattern would take a while in a debug build, and the kernel
            // would run nothing else meanwhile).
            let payload = [UInt8](repeating: 0x5A, count: 32 << 20)
            let writer = try await spawn { () -> Int in
                do {
                    try await conn.write(payload)
                    return -1
                } catch let e as TaskCancelled {
                    return e.bytesSent ?? -2
                }
            }
            // The socket buffers fill up and the writer waits.
            try await Self.waitUntil("the writer blocks") { writer.state == .writeWait && writer.continuation != nil }
            try await writer.cancel()
            let committed = try await writer.join() ?? -3
            // What was committed but not yet sent goes out first, then
            // close_notify; the server counts exactly the committed bytes.
            await go.set()
            try await conn.write([])
            try await conn.tls!.shutdown()
            let received = try await counted.get()
            try await server.stop()
            return ["\(committed > 0 && committed < payload.count)", "\(received == committed)"]
        }
        #expect(r == ["true", "true"])
    }
}

// Malformed and hostile requests over raw sockets: each is answered with
// the status RFC 9112 calls for and the connection is closed, or (for
// stalls) closed by the server's own timeouts, set small here.
import Curio
import CurioHTTP
import HTTPTypes
import Testing

@Suite(.timeLimit(.minutes(2)))
struct AdversarialTests {
    static func limited() -> HTTPServerConfiguration {
        var c = HTTPTest.quickTimeouts()
        c.maxRequestLineLength = 256
        c.maxHeaderCount = 8
        c.maxHeaderBytes = 1024
        c.maxBodySize = 1000
        return c
    }

    /// Sends each request on a connection of its own → (status, closed).
    static func answers(_ requests: [String]) async throws -> [(Int, Bool)] {
        try await HTTPTest.withServer(limited(), handler: TestHandlers.echo) { port, _ in
            var out: [(Int, Bool)] = []
            for r in requests {
                let (response, closed) = try await HTTPTest.exchange(port, r)
                out.append((response.status, closed))
            }
            return out
        }
    }

    @Test func oversizedHeadsAndBodies() async throws {
        let longLine = "GET /" + String(repeating: "a", count: 400) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        let manyHeaders = "GET / HTTP/1.1\r\nHost: a\r\n" + (0..<20).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        let bigHeader = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 2000) + "\r\n\r\n"
        let bigBody = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + String(repeating: "c", count: 5000)
        let bigChunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "300\r\n" + String(repeating: "d", count: 768) + "\r\n300\r\n" + String(repeating: "d", count: 768) + "\r\n0\r\n\r\n"
        let got = try await Self.answers([longLine, manyHeaders, bigHeader, bigBody, bigChunked])
        #expect(got.map(\.0) == [414, 431, 431, 413, 413])
        #expect(got.allSatisfy { $0.1 }, "every refusal closes the connection")
    }

    @Test func smugglingAttemptsAreRefused() async throws {
        let got = try await Self.answers([
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET nowhere HTTP/1.1\r\nHost: a\r\n\r\n",
        ])
        #expect(got.map(\.0) == [400, 400, 400, 400, 501, 400, 400, 505, 400, 400])
        #expect(got.allSatisfy { $0.1 })
    }

    @Test func slowlorisHeadIsCutOff() async throws {
        let (status, closed) = try await HTTPTest.withServer(Self.limited(), handler: TestHandlers.echo) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            // A head that never ends, one byte at a time: each byte resets
            // nothing, the header timeout runs from the first.
            let trickle = try await spawn(name: "slowloris") {
                try await s.write("GET / HTTP/1.1\r\nHost: a\r\n")
                while true {
                    try await s.write("X")
                    try await Curio.sleep(0.02)
                }
            }
            let r = try await HTTPTest.readResponse(s)
            try await trickle.cancel()
            let rest = try await s.read(1)
            return (r.status, rest.isEmpty)
        }
        #expect(status == 408)
        #expect(closed)
    }

    @Test func idleConnectionIsClosed() async throws {
        let rest = try await HTTPTest.withServer(Self.limited(), handler: TestHandlers.echo) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            let r = try await HTTPTest.readResponse(s)
            // Then nothing: the idle timeout closes without a response.
            return (r.status, try await s.read(100))
        }
        #expect(rest.0 == 200)
        #expect(rest.1.isEmpty)
    }

    @Test func stalledBodyTimesOut() async throws {
        let (status, closed) = try await HTTPTest.withServer(Self.limited(), handler: TestHandlers.echo) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            let r = try await HTTPTest.readResponse(s)
            return (r.status, try await s.read(1).isEmpty)
        }
        #expect(status == 408)
        #expect(closed)
    }

    @Test func pipelinedRequestsAnsweredInOrder() async throws {
        let responses = try await HTTPTest.withServer(Self.limited(), handler: TestHandlers.echo) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            var burst = ""
            for i in 0..<20 { burst += "GET /\(i) HTTP/1.1\r\nHost: a\r\n\r\n" }
            burst += "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
            burst += "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n"
            burst += "GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            try await s.write(burst)
            var out: [String] = []
            for _ in 0..<23 {
                let r = try await HTTPTest.readResponse(s)
                out.append(r.text + (r.header("X-Got-Trailer") ?? ""))
            }
            out.append(try await s.read(1).isEmpty ? "closed" : "open")
            return out
        }
        #expect(responses == (0..<20).map { "hello /\($0)\n" } + ["body", "okt", "hello /last\n", "closed"])
    }

    @Test func unreadBodyWithoutContinueClosesAfterResponse() async throws {
        // The handler answers without reading a body the client is told to
        // wait for (Expect: 100-continue): no 100 is sent, and the
        // connection closes after the final response.
        let handler: HTTPHandler = { _ in HTTPServerResponse(status: .forbidden, body: .string("no\n")) }
        let (status, connection, closed) = try await HTTPTest.withServer(Self.limited(), handler: handler) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n")
            let r = try await HTTPTest.readResponse(s)
            return (r.status, r.header("Connection"), try await s.read(1).isEmpty)
        }
        #expect(status == 403)
        #expect(connection == "close")
        #expect(closed)
    }
}

// What the server writes around the handler's response: keep-alive for
// HTTP/1.0, close-delimited and length-framed streams, HEAD, failures.
import Curio
import CurioHTTP
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ResponseSemanticsTests {
    struct Broken: Error {}

    static let handler: HTTPHandler = { request in
        switch request.path {
        case "/stream":
            return HTTPServerResponse(body: .stream { w in
                try await w.write("a")
                try await w.write("bc")
            })
        case "/sized":
            return HTTPServerResponse(headerFields: [.contentLength: "3"], body: .stream { w in
                try await w.write("abc")
            })
        case "/short":
            return HTTPServerResponse(headerFields: [.contentLength: "10"], body: .stream { w in
                try await w.write("abc")
            })
        case "/throws":
            throw Broken()
        case "/throws-in-body":
            return HTTPServerResponse(body: .stream { _ in throw Broken() })
        case "/interim":
            return HTTPServerResponse(status: .continue)
        case "/lying":
            // A whole body's length is the server's to say.
            return HTTPServerResponse(headerFields: [.contentLength: "99", .transferEncoding: "chunked"],
                                      body: .string("xyz"))
        default:
            return HTTPServerResponse(body: .string("ok"))
        }
    }

    @Test func http10KeepAliveAndClose() async throws {
        let got = try await HTTPTest.withServer(HTTPTest.quickTimeouts(), handler: Self.handler) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let first = try await HTTPTest.readResponse(s)
            try await s.write("GET /stream HTTP/1.0\r\n\r\n")
            // No Content-Length and no chunked for 1.0: the body ends with the connection.
            let second = try await HTTPTest.readResponse(s)
            return (first.header("Connection"), first.text, second.header("Connection"),
                    second.header("Transfer-Encoding"), second.text)
        }
        #expect(got.0 == "keep-alive")
        #expect(got.1 == "ok")
        #expect(got.2 == "close")
        #expect(got.3 == nil)
        #expect(got.4 == "abc")
    }

    @Test func framingOfStreamsAndHead() async throws {
        let got = try await HTTPTest.withServer(HTTPTest.quickTimeouts(), handler: Self.handler) { port, _ in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /sized HTTP/1.1\r\nHost: a\r\n\r\n"
                              + "HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nHEAD /sized HTTP/1.1\r\nHost: a\r\n\r\n"
                              + "GET /lying HTTP/1.1\r\nHost: a\r\n\r\n")
            let chunked = try await HTTPTest.readResponse(s)
            let sized = try await HTTPTest.readResponse(s)
            let headStream = try await HTTPTest.readResponse(s, head: true)
            let headSized = try await HTTPTest.readResponse(s, head: true)
            let lying = try await HTTPTest.readResponse(s)
            return [chunked.header("Transfer-Encoding") ?? "-", chunked.text,
                    sized.header("Content-Length") ?? "-", sized.header("Transfer-Encoding") ?? "-", sized.text,
                    headStream.header("Transfer-Encoding") ?? "-", headStream.header("Content-Length") ?? "-",
                    headSized.header("Content-Length") ?? "-",
                    lying.header("Content-Length") ?? "-", lying.header("Transfer-Encoding") ?? "-", lying.text]
        }
        #expect(got == ["chunked", "abc", "3", "-", "abc", "-", "-", "3", "3", "-", "xyz"])
    }

    @Test func failuresBecome500AndClose() async throws {
        let got = try await HTTPTest.withServer(HTTPTest.quickTimeouts(), handler: Self.handler) { port, _ in
            var out: [String] = []
            for path in ["/throws", "/throws-in-body", "/interim"] {
                let (r, closed) = try await HTTPTest.exchange(port, "GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n")
                out.append("\(r.status) \(closed)")
            }
            // A streamed body shorter than its Content-Length: the client
            // gets what there is and then the end of the connection.
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("GET /short HTTP/1.1\r\nHost: a\r\n\r\n")
            _ = try await s.readLine()
            while try await s.readLine() != Array("\r\n".utf8) {}
            out.append(String(decoding: try await s.readAll(), as: UTF8.self))
            return out
        }
        #expect(got == ["500 true", "500 true", "500 true", "abc"])
    }
}

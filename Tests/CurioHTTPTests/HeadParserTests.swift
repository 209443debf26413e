// The request-head parser and scanner on their own: every rule that keeps
// framing unambiguous, checked without a socket.
import HTTPTypes
import Testing

@testable import CurioHTTP

/// Scans and parses `text` as one request head → the head or the status
/// the server would answer with.
func parseHead(_ text: String, _ config: HTTPServerConfiguration = HTTPServerConfiguration()) -> Result<ParsedHead, HTTPProtocolError> {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { b in
        var scanner = HeadScanner()
        do {
            guard let n = try scanner.scan(b, config) else {
                return .failure(HTTPProtocolError(.ok, "incomplete"))
            }
            return .success(try HeadParser.parse(UnsafeRawBufferPointer(rebasing: b[0..<n]), config))
        } catch {
            return .failure(error as! HTTPProtocolError)
        }
    }
}

func status(_ text: String, _ config: HTTPServerConfiguration = HTTPServerConfiguration()) -> Int {
    switch parseHead(text, config) {
    case .success: return 0
    case .failure(let e): return e.status.code
    }
}

@Suite(.timeLimit(.minutes(1)))
struct HeadParserTests {
    @Test func simpleGet() throws {
        let head = try parseHead("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Custom: v  \r\n\r\n").get()
        #expect(head.request.method == .get)
        #expect(head.request.path == "/a?b=c")
        #expect(head.request.authority == "example.com")
        #expect(head.request.scheme == "http")
        #expect(head.request.headerFields[.userAgent] == "t")
        #expect(head.request.headerFields[HTTPField.Name("x-custom")!] == "v")
        #expect(head.version == .http1_1)
        #expect(head.keepAlive)
        #expect(head.framing == .none)
    }

    @Test func keepAliveRules() throws {
        #expect(try !parseHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").get().keepAlive)
        #expect(try !parseHead("GET / HTTP/1.0\r\n\r\n").get().keepAlive)
        #expect(try parseHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").get().keepAlive)
        #expect(try !parseHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, CLOSE\r\n\r\n").get().keepAlive)
    }

    @Test func framing() throws {
        #expect(try parseHead("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").get().framing == .length(12))
        #expect(try parseHead("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n").get().framing == .length(5))
        #expect(try parseHead("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").get().framing == .chunked)
        #expect(try parseHead("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").get().expectContinue)
    }

    @Test func smugglingDefences() {
        // Both framings, differing lengths, junk lengths.
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n") == 400)
        // Transfer codings: chunked must be last and once; others are not implemented.
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n") == 501)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n") == 501)
        #expect(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
        // Obsolete folding, whitespace before the colon, bad names and values.
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{1}c\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n") == 400)
        // Host: required in 1.1, at most once.
        #expect(status("GET / HTTP/1.1\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
    }

    @Test func bareLineFeeds() {
        #expect(status("GET / HTTP/1.1\nHost: a\n\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\n\r\n") == 400)
        var lenient = HTTPServerConfiguration()
        lenient.allowBareLineFeed = true
        #expect(status("GET / HTTP/1.1\nHost: a\n\n", lenient) == 0)
    }

    @Test func requestLines() {
        #expect(status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET /\r\nHost: a\r\n\r\n") == 400)
        #expect(status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET / http/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505)
        #expect(status("GET / HTTP/1.2\r\nHost: a\r\n\r\n") == 505)
        #expect(status("GET / HTTP/0.9\r\nHost: a\r\n\r\n") == 505)
        #expect(status("GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n") == 0)
    }

    @Test func targetForms() throws {
        let abs = try parseHead("GET http://Example.com:81/x?y HTTP/1.1\r\nHost: other\r\n\r\n").get()
        #expect(abs.request.authority == "Example.com:81")
        #expect(abs.request.path == "/x?y")
        #expect(abs.request.scheme == "http")
        let star = try parseHead("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").get()
        #expect(star.request.path == "*")
        let connect = try parseHead("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").get()
        #expect(connect.request.authority == "example.com:443")
        #expect(connect.request.path == nil)
        #expect(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET example.com/x HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET http://user@host/ HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
        #expect(status("GET ftp://host/ HTTP/1.1\r\nHost: a\r\n\r\n") == 400)
    }

    @Test func limits() {
        var c = HTTPServerConfiguration()
        c.maxRequestLineLength = 64
        c.maxHeaderCount = 3
        c.maxHeaderBytes = 100
        c.maxBodySize = 10
        let longTarget = "/" + String(repeating: "a", count: 80)
        #expect(status("GET \(longTarget) HTTP/1.1\r\nHost: a\r\n\r\n", c) == 414)
        // Refused before the line ends, too.
        #expect(status("GET \(longTarget)", c) == 414)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", c) == 431)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nA: \(String(repeating: "x", count: 120))\r\n\r\n", c) == 431)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nA: \(String(repeating: "x", count: 120))", c) == 431)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", c) == 413)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", c) == 0)
        #expect(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", c) == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n") == 417)
    }

    @Test func incrementalScanMatchesWholeScan() throws {
        let text = Array("GET /x HTTP/1.1\r\nHost: a\r\nX-Long: \(String(repeating: "v", count: 300))\r\n\r\nrest".utf8)
        var scanner = HeadScanner()
        var found: Int?
        let config = HTTPServerConfiguration()
        for end in 1...text.count where found == nil {
            found = try text.withUnsafeBytes { try scanner.scan(UnsafeRawBufferPointer(rebasing: $0[0..<end]), config) }
        }
        #expect(found == text.count - 4)
    }
}

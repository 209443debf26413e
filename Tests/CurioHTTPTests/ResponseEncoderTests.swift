// The response head encoder and the Date line, byte for byte.
import Glibc
import HTTPTypes
import Testing

@testable import CurioHTTP

@Suite(.timeLimit(.minutes(1)))
struct ResponseEncoderTests {
    @Test func imfFixdate() {
        var tm = Glibc.tm()
        var t: time_t = 784111777  // RFC 9110's example instant
        gmtime_r(&t, &tm)
        #expect(String(decoding: DateCache.format(tm), as: UTF8.self) == "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
    }

    @Test func numbers() {
        for n in [0, 7, 10, 99, 100, 12345, Int(Int32.max), Int.max] {
            var out: [UInt8] = []
            ResponseEncoder.appendDecimal(n, into: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(n))
            out = []
            ResponseEncoder.appendHex(n, into: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(n, radix: 16))
        }
    }

    @Test func headLayout() {
        var out: [UInt8] = []
        let head = HTTPResponse(status: .notFound, headerFields: [
            .contentType: "text/plain", .contentLength: "5", .connection: "keep-alive", HTTPField.Name("X-A")!: "b",
        ])
        ResponseEncoder.appendHead(head, body: .length(12), connection: ResponseEncoder.connectionClose,
                                   date: Array("Date: D\r\n".utf8), server: Array("Server: s\r\n".utf8), into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-A: b\r\nDate: D\r\nServer: s\r\n"
            + "Content-Length: 12\r\nConnection: close\r\n\r\n")
        out = []
        ResponseEncoder.appendHead(HTTPResponse(status: .ok, headerFields: [.date: "mine"]), body: .chunked,
                                   connection: nil, date: Array("Date: D\r\n".utf8), server: nil, into: &out)
        #expect(String(decoding: out, as: UTF8.self) ==
            "HTTP/1.1 200 OK\r\nDate: mine\r\nTransfer-Encoding: chunked\r\n\r\n")
    }
}

// The chunked body decoder on its own: sizes, extensions, trailers, limits.
import HTTPTypes
import Testing

@testable import CurioHTTP

/// Decodes `text` fed in pieces of `piece` bytes → (data, trailers) or the status.
func decodeChunked(_ text: String, piece: Int = 1 << 20,
                   _ config: HTTPServerConfiguration = HTTPServerConfiguration()) -> Result<([UInt8], HTTPFields), HTTPProtocolError> {
    let all = Array(text.utf8)
    var buffer: [UInt8] = []
    var fed = 0
    var decoder = ChunkedDecoder()
    var data: [UInt8] = []
    while true {
        let step: ChunkedDecoder.Step
        do {
            step = try buffer.withUnsafeBytes { try decoder.step($0, config) }
        } catch {
            return .failure(error as! HTTPProtocolError)
        }
        switch step {
        case .needMore:
            guard fed < all.count else { return .failure(HTTPProtocolError(.ok, "incomplete")) }
            let n = Swift.min(piece, all.count - fed)
            buffer += all[fed..<(fed + n)]
            fed += n
        case .skip(let n):
            buffer.removeFirst(n)
        case .data(let n):
            data += buffer.prefix(n)
            buffer.removeFirst(n)
        case .end(let n):
            buffer.removeFirst(n)
            return .success((data, decoder.trailers))
        }
    }
}

func chunkedStatus(_ text: String, _ config: HTTPServerConfiguration = HTTPServerConfiguration()) -> Int {
    switch decodeChunked(text, config) {
    case .success: return 0
    case .failure(let e): return e.status.code
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ChunkedDecoderTests {
    @Test func decodesInAnyPieces() throws {
        let body = "5\r\nhello\r\n1;name=value;flag\r\n \r\nA ; q=\"x \\\" y\"\r\n0123456789\r\n0\r\nChecksum: abc\r\nX-T: 1\r\n\r\n"
        for piece in [1, 2, 3, 7, 1000] {
            let (data, trailers) = try decodeChunked(body, piece: piece).get()
            #expect(String(decoding: data, as: UTF8.self) == "hello 0123456789")
            #expect(trailers[HTTPField.Name("checksum")!] == "abc")
            #expect(trailers.count == 2)
        }
    }

    @Test func rejectsBadFraming() {
        #expect(chunkedStatus("z\r\n") == 400)
        #expect(chunkedStatus("\r\n") == 400)
        #expect(chunkedStatus("-1\r\n") == 400)
        #expect(chunkedStatus("5\r\nhelloX\r\n0\r\n\r\n") == 400)
        #expect(chunkedStatus("5 x\r\nhello\r\n0\r\n\r\n") == 400)
        #expect(chunkedStatus("5;\r\nhello\r\n0\r\n\r\n") == 400)
        #expect(chunkedStatus("5;a=\"open\r\nhello\r\n0\r\n\r\n") == 400)
        #expect(chunkedStatus("5\nhello\r\n0\r\n\r\n") == 400)
        #expect(chunkedStatus("1000000000000000\r\n") == 400)
        #expect(chunkedStatus("0\r\n folded: x\r\n\r\n") == 400)
        #expect(chunkedStatus("0\r\nbad name: x\r\n\r\n") == 400)
    }

    @Test func enforcesLimits() {
        var c = HTTPServerConfiguration()
        c.maxBodySize = 8
        c.maxChunkLineLength = 16
        c.maxHeaderCount = 2
        c.maxHeaderBytes = 40
        #expect(chunkedStatus("5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n", c) == 413)
        #expect(chunkedStatus("5;\(String(repeating: "e", count: 30))\r\nhello\r\n0\r\n\r\n", c) == 400)
        #expect(chunkedStatus("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", c) == 431)
        #expect(chunkedStatus("0\r\nA: \(String(repeating: "x", count: 50))\r\n\r\n", c) == 431)
        #expect(chunkedStatus("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", c) == 0)
    }
}

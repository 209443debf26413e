import HTTPTypes

/// Serialises response heads into a connection's output buffer. The fixed
/// parts are encoded once; a head costs a few appends.
enum ResponseEncoder {
    static let crlf: [UInt8] = [13, 10]
    static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    static let connectionClose: [UInt8] = Array("Connection: close\r\n".utf8)
    static let connectionKeepAlive: [UInt8] = Array("Connection: keep-alive\r\n".utf8)
    static let chunkedField: [UInt8] = Array("Transfer-Encoding: chunked\r\n".utf8)
    static let contentLengthPrefix: [UInt8] = Array("Content-Length: ".utf8)
    static let lastChunk: [UInt8] = Array("0\r\n".utf8)
    static let status200: [UInt8] = Array("HTTP/1.1 200 OK\r\n".utf8)

    /// What the head says about the body and the connection.
    enum BodyHeader {
        case length(Int)
        case chunked
        case none  // no framing field (1xx, 204, 304, close-delimited)
    }

    /// Appends the status line, the handler's fields (framing and hop-by-hop
    /// ones excepted), `Date`, `Server`, the framing field and `Connection`.
    static func appendHead(_ head: HTTPResponse, body: BodyHeader, connection: [UInt8]?,
                           date: [UInt8], server: [UInt8]?, into out: inout [UInt8]) {
        let status = head.status
        if status.code == 200 && status.reasonPhrase == "OK" {
            out.append(contentsOf: status200)
        } else {
            out.append(contentsOf: "HTTP/1.1 ".utf8)
            appendDecimal(status.code, into: &out)
            out.append(32)
            out.append(contentsOf: status.reasonPhrase.utf8)
            out.append(contentsOf: crlf)
        }
        var hasDate = false, hasServer = false
        for field in head.headerFields {
            let name = field.name
            if name == .contentLength || name == .transferEncoding || name == .connection { continue }
            if name == .date { hasDate = true }
            if name == .server { hasServer = true }
            out.append(contentsOf: name.rawName.utf8)
            out.append(58)
            out.append(32)
            field.withUnsafeBytesOfValue { out.append(contentsOf: $0) }
            out.append(contentsOf: crlf)
        }
        if !hasDate { out.append(contentsOf: date) }
        if !hasServer, let server { out.append(contentsOf: server) }
        switch body {
        case .length(let n):
            out.append(contentsOf: contentLengthPrefix)
            appendDecimal(n, into: &out)
            out.append(contentsOf: crlf)
        case .chunked:
            out.append(contentsOf: chunkedField)
        case .none:
            break
        }
        if let connection { out.append(contentsOf: connection) }
        out.append(contentsOf: crlf)
    }

    /// Appends trailer fields (after the last chunk) and the final CRLF.
    static func appendTrailers(_ trailers: HTTPFields, into out: inout [UInt8]) {
        for field in trailers {
            out.append(contentsOf: field.name.rawName.utf8)
            out.append(58)
            out.append(32)
            field.withUnsafeBytesOfValue { out.append(contentsOf: $0) }
            out.append(contentsOf: crlf)
        }
        out.append(contentsOf: crlf)
    }

    /// Appends `n` (>= 0) in decimal without making a string.
    static func appendDecimal(_ n: Int, into out: inout [UInt8]) {
        if n < 10 {
            out.append(UInt8(48 + n))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = n, i = 20
        withUnsafeMutableBytes(of: &digits) { d in
            while v > 0 {
                i -= 1
                d[i] = UInt8(48 + v % 10)
                v /= 10
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: d[i..<20]))
        }
    }

    /// Appends `n` in lowercase hexadecimal (a chunk size).
    static func appendHex(_ n: Int, into out: inout [UInt8]) {
        let hex: StaticString = "0123456789abcdef"
        var shift = 60
        while shift > 0 && (n >> shift) & 0xF == 0 { shift -= 4 }
        while shift >= 0 {
            out.append(hex.utf8Start[(n >> shift) & 0xF])
            shift -= 4
        }
    }

    /// A plain-text response for an error the server answers itself.
    static func errorResponse(_ status: HTTPResponse.Status, _ reason: String) -> HTTPServerResponse {
        HTTPServerResponse(status: status, headerFields: [.contentType: "text/plain; charset=utf-8"],
                           body: .string("\(status.code) \(status.reasonPhrase): \(reason)\n"))
    }
}

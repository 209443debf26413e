import HTTPTypes

/// Decodes a chunked request body (RFC 9112 §7.1) from whatever bytes have
/// arrived: sizes in hex with optional extensions, the data, and trailer
/// fields at the end, each bounded by the server's limits.
struct ChunkedDecoder {
    enum State: Equatable {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailers
        case done
    }

    /// What one step found in the buffered bytes.
    enum Step: Equatable {
        /// More bytes are needed.
        case needMore
        /// `count` bytes of framing were consumed; step again.
        case skip(Int)
        /// The first `count` buffered bytes are body data (consume them).
        case data(Int)
        /// The body has ended; `count` bytes (last chunk, trailers) consumed.
        case end(Int)
    }

    private(set) var state = State.size
    /// Data bytes decoded so far.
    private(set) var total = 0
    private(set) var trailers = HTTPFields()
    private var trailerBytes = 0

    mutating func step(_ b: UnsafeRawBufferPointer,
                       _ config: HTTPServerConfiguration) throws(HTTPProtocolError) -> Step {
        switch state {
        case .done:
            return .end(0)
        case .data(let remaining):
            guard !b.isEmpty else { return .needMore }
            let n = Swift.min(remaining, b.count)
            state = n == remaining ? .dataEnd : .data(remaining: remaining - n)
            return .data(n)
        case .dataEnd:
            guard b.count >= 1 else { return .needMore }
            if b[0] == ByteClass.cr {
                guard b.count >= 2 else { return .needMore }
                guard b[1] == ByteClass.lf else { throw bad("chunk data is not followed by CRLF") }
                state = .size
                return .skip(2)
            }
            if b[0] == ByteClass.lf && config.allowBareLineFeed {
                state = .size
                return .skip(1)
            }
            throw bad("chunk data is longer than its size or not followed by CRLF")
        case .size:
            guard let (line, next) = try self.line(b, limit: config.maxChunkLineLength, config) else { return .needMore }
            let size = try parseSize(b, line)
            if size == 0 {
                state = .trailers
                return .skip(next)
            }
            if total + size > config.maxBodySize {
                throw HTTPProtocolError(.contentTooLarge, "the chunked body is larger than \(config.maxBodySize) bytes")
            }
            total += size
            state = .data(remaining: size)
            return .skip(next)
        case .trailers:
            let limit = config.maxHeaderBytes - trailerBytes
            guard let (line, next) = try self.line(b, limit: limit, config, tooLong: .requestHeaderFieldsTooLarge) else {
                return .needMore
            }
            trailerBytes += next
            if line.isEmpty {
                state = .done
                return .end(next)
            }
            try addTrailer(b, line, config)
            return .skip(next)
        }
    }

    private func bad(_ reason: String) -> HTTPProtocolError {
        HTTPProtocolError(.badRequest, reason)
    }

    /// The next line (without its ending) and the bytes through its LF.
    private func line(_ b: UnsafeRawBufferPointer, limit: Int, _ config: HTTPServerConfiguration,
                      tooLong: HTTPResponse.Status = .badRequest) throws(HTTPProtocolError) -> (Range<Int>, Int)? {
        guard let lf = b.firstIndex(of: ByteClass.lf, in: 0..<Swift.min(b.count, Swift.max(limit, 0))) else {
            if b.count >= limit {
                throw HTTPProtocolError(tooLong, tooLong == .badRequest
                    ? "a chunk-size line is longer than \(config.maxChunkLineLength) bytes"
                    : "the trailer fields are longer than \(config.maxHeaderBytes) bytes")
            }
            return nil
        }
        var end = lf
        if end > 0 && b[end - 1] == ByteClass.cr {
            end -= 1
        } else if !config.allowBareLineFeed {
            throw bad("a line of the chunked body ends in a bare LF, not CRLF")
        }
        for i in 0..<end where b[i] == ByteClass.cr { throw bad("a bare CR in a line of the chunked body") }
        return (0..<end, lf + 1)
    }

    /// chunk-size [ chunk-ext ]: 1*HEXDIG, then *( BWS ";" BWS name [ BWS "=" BWS value ] ).
    private func parseSize(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) throws(HTTPProtocolError) -> Int {
        var i = r.lowerBound
        var size = 0
        while i < r.upperBound, let d = ByteClass.hexValue(b[i]) {
            // 15 hex digits cover any body this server could accept.
            guard i - r.lowerBound < 15 else { throw bad("a chunk size has too many digits") }
            size = size << 4 | d
            i += 1
        }
        guard i > r.lowerBound else { throw bad("a chunk does not start with a hexadecimal size") }
        func skipWhitespace() {
            while i < r.upperBound && (b[i] == ByteClass.sp || b[i] == ByteClass.htab) { i += 1 }
        }
        func token() -> Bool {
            let s = i
            while i < r.upperBound && ByteClass.isTokenChar(b[i]) { i += 1 }
            return i > s
        }
        while true {
            skipWhitespace()
            if i == r.upperBound { return size }
            guard b[i] == 59 else { throw bad("a chunk size is followed by something other than an extension") }
            i += 1
            skipWhitespace()
            guard token() else { throw bad("a chunk extension without a name") }
            skipWhitespace()
            if i < r.upperBound && b[i] == 61 {  // "="
                i += 1
                skipWhitespace()
                if i < r.upperBound && b[i] == 34 {  // quoted-string
                    i += 1
                    var closed = false
                    while i < r.upperBound {
                        let c = b[i]
                        if c == 34 { closed = true; i += 1; break }
                        if c == 92 { i += 1; guard i < r.upperBound else { break } }
                        guard ByteClass.isFieldValueByte(b[i]) else { throw bad("a control character in a chunk extension") }
                        i += 1
                    }
                    guard closed else { throw bad("an unterminated quoted chunk extension value") }
                } else if !token() {
                    throw bad("a chunk extension with an empty value")
                }
            }
        }
    }

    private mutating func addTrailer(_ b: UnsafeRawBufferPointer, _ line: Range<Int>,
                                     _ config: HTTPServerConfiguration) throws(HTTPProtocolError) {
        if trailers.count >= config.maxHeaderCount {
            throw HTTPProtocolError(.requestHeaderFieldsTooLarge, "more than \(config.maxHeaderCount) trailer fields")
        }
        let first = b[line.lowerBound]
        if first == ByteClass.sp || first == ByteClass.htab { throw bad("obsolete line folding in the trailers") }
        guard let colon = b.firstIndex(of: ByteClass.colon, in: line), colon > line.lowerBound else {
            throw bad("a trailer line has no field name and colon")
        }
        for i in line.lowerBound..<colon where !ByteClass.isTokenChar(b[i]) {
            throw bad("a trailer field name holds an invalid character (byte \(b[i]))")
        }
        let value = b.trimmingOWS((colon + 1)..<line.upperBound)
        for i in value where !ByteClass.isFieldValueByte(b[i]) {
            throw bad("a trailer field value holds an invalid character (byte \(b[i]))")
        }
        let name = HTTPField.Name(String(decoding: UnsafeRawBufferPointer(rebasing: b[line.lowerBound..<colon]), as: UTF8.self))!
        trailers.append(HTTPField(name: name, value: UnsafeRawBufferPointer(rebasing: b[value])))
    }
}

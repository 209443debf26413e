/// Finds where a request head ends in the bytes received so far, checking
/// the size limits as lines arrive so an oversized head is refused before
/// it is all in memory. Resumable: each call scans only new bytes.
struct HeadScanner {
    /// Start of the line being scanned, relative to the head's first byte.
    private var lineStart = 0
    /// Bytes already scanned without finding a line end.
    private var scanned = 0
    /// Complete lines seen (the request line is the first).
    private var lines = 0
    /// Where the first field line starts (the end of the request line).
    private var fieldsStart = 0

    mutating func reset() { self = HeadScanner() }

    /// True once some bytes of a head have been scanned.
    var started: Bool { scanned > 0 }

    /// The head's length (through its empty last line) once `bytes` holds
    /// all of it, nil while it does not.
    mutating func scan(_ bytes: UnsafeRawBufferPointer,
                       _ config: HTTPServerConfiguration) throws(HTTPProtocolError) -> Int? {
        while true {
            guard let lf = bytes.firstIndex(of: ByteClass.lf, in: scanned..<bytes.count) else {
                scanned = bytes.count
                try checkLimits(pendingLineLength: bytes.count - lineStart, config)
                return nil
            }
            let length = lf - lineStart  // without the LF
            scanned = lf + 1
            let hasCR = length > 0 && bytes[lf - 1] == ByteClass.cr
            if !hasCR && !config.allowBareLineFeed {
                throw HTTPProtocolError(.badRequest, "a line of the request head ends in a bare LF, not CRLF")
            }
            let content = hasCR ? length - 1 : length
            if lines == 0 {
                if length + 1 > config.maxRequestLineLength {
                    throw HTTPProtocolError(.uriTooLong, "the request line is longer than \(config.maxRequestLineLength) bytes")
                }
                fieldsStart = lf + 1
            } else if content == 0 {
                return lf + 1
            }
            lines += 1
            lineStart = lf + 1
            try checkLimits(pendingLineLength: 0, config)
        }
    }

    private func checkLimits(pendingLineLength: Int, _ config: HTTPServerConfiguration) throws(HTTPProtocolError) {
        if lines == 0 {
            if pendingLineLength >= config.maxRequestLineLength {
                throw HTTPProtocolError(.uriTooLong, "the request line is longer than \(config.maxRequestLineLength) bytes")
            }
            return
        }
        if lines - 1 > config.maxHeaderCount {
            throw HTTPProtocolError(.requestHeaderFieldsTooLarge, "more than \(config.maxHeaderCount) header fields")
        }
        if lineStart - fieldsStart + pendingLineLength > config.maxHeaderBytes {
            throw HTTPProtocolError(.requestHeaderFieldsTooLarge, "the header fields are longer than \(config.maxHeaderBytes) bytes")
        }
    }
}

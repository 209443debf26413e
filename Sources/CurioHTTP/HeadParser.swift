import HTTPTypes

/// How a request's body is delimited (RFC 9112 §6.3).
enum BodyFraming: Equatable {
    case none
    case length(Int)
    case chunked
}

/// A request head, parsed, with what the connection needs to know about it.
struct ParsedHead {
    var request: HTTPRequest
    var version: HTTPVersion
    var framing: BodyFraming
    /// The client allows the connection to stay open after the response.
    var keepAlive: Bool
    /// `Expect: 100-continue` was sent.
    var expectContinue: Bool
}

/// Parses a complete request head (as found by ``HeadScanner``) strictly:
/// anything RFC 9112 calls invalid, and every framing ambiguity a request
/// smuggler could use, is an ``HTTPProtocolError``.
enum HeadParser {
    static func parse(_ b: UnsafeRawBufferPointer,
                      _ config: HTTPServerConfiguration) throws(HTTPProtocolError) -> ParsedHead {
        var pos = 0
        let lineEnd = try nextLine(b, &pos)
        let (method, target, version) = try parseRequestLine(b, 0..<lineEnd)

        var fields = HTTPFields()
        var host: Range<Int>?
        var hostCount = 0
        var contentLength: Int?
        var transferEncoding = TransferCoding.absent
        var close = false, keepAliveToken = false
        var expectContinue = false

        while true {
            let start = pos
            let end = try nextLine(b, &pos)
            if end == start { break }
            let first = b[start]
            if first == ByteClass.sp || first == ByteClass.htab {
                throw HTTPProtocolError(.badRequest, "obsolete line folding (a header line starting with whitespace) is not accepted")
            }
            guard let colon = b.firstIndex(of: ByteClass.colon, in: start..<end), colon > start else {
                throw HTTPProtocolError(.badRequest, "a header line has no field name and colon")
            }
            for i in start..<colon where !ByteClass.isTokenChar(b[i]) {
                throw HTTPProtocolError(.badRequest,
                                        b[i] == ByteClass.sp || b[i] == ByteClass.htab
                                            ? "whitespace between a header field name and its colon"
                                            : "a header field name holds an invalid character (byte \(b[i]))")
            }
            let value = b.trimmingOWS((colon + 1)..<end)
            for i in value where !ByteClass.isFieldValueByte(b[i]) {
                throw HTTPProtocolError(.badRequest, "a header field value holds an invalid character (byte \(b[i]))")
            }
            let nameRange = start..<colon
            let name: HTTPField.Name
            if let known = KnownFieldName.match(b, nameRange) {
                name = known.name
                switch known.role {
                case .host:
                    hostCount += 1
                    host = value
                    continue
                case .contentLength:
                    let n = try parseContentLength(b, value)
                    if let old = contentLength, old != n {
                        throw HTTPProtocolError(.badRequest, "Content-Length fields disagree (\(old) and \(n))")
                    }
                    contentLength = n
                case .transferEncoding:
                    try transferEncoding.add(b, value)
                case .connection:
                    forEachListElement(b, value) { r in
                        if b.equalsIgnoringCase(r, "close") { close = true }
                        if b.equalsIgnoringCase(r, "keep-alive") { keepAliveToken = true }
                    }
                case .expect:
                    if b.equalsIgnoringCase(value, "100-continue") {
                        expectContinue = true
                    } else {
                        throw HTTPProtocolError(.expectationFailed, "the only expectation this server meets is 100-continue")
                    }
                case .other:
                    break
                }
            } else {
                // The bytes are a valid token, so the name exists.
                name = HTTPField.Name(String(decoding: UnsafeRawBufferPointer(rebasing: b[nameRange]), as: UTF8.self))!
            }
            fields.append(HTTPField(name: name, value: UnsafeRawBufferPointer(rebasing: b[value])))
        }

        // Framing (RFC 9112 §6.1, §6.3): both headers, or a coding this
        // server cannot undo, must not be guessed at.
        var framing = BodyFraming.none
        switch transferEncoding {
        case .absent:
            if let n = contentLength {
                if n > config.maxBodySize {
                    throw HTTPProtocolError(.contentTooLarge, "the body (\(n) bytes) is larger than \(config.maxBodySize) bytes")
                }
                framing = n > 0 ? .length(n) : .none
            }
        case .chunked, .unsupported:
            if contentLength != nil {
                throw HTTPProtocolError(.badRequest, "both Content-Length and Transfer-Encoding are present")
            }
            if version == .http1_0 {
                throw HTTPProtocolError(.badRequest, "Transfer-Encoding in an HTTP/1.0 request")
            }
            if case .unsupported(let coding) = transferEncoding {
                throw HTTPProtocolError(.notImplemented, "transfer coding '\(coding)' is not implemented (only chunked is)")
            }
            framing = .chunked
        case .chunkedNotLast:
            throw HTTPProtocolError(.badRequest, "chunked is not the final transfer coding")
        }

        if version == .http1_1 {
            if hostCount == 0 { throw HTTPProtocolError(.badRequest, "an HTTP/1.1 request without a Host header") }
        }
        if hostCount > 1 { throw HTTPProtocolError(.badRequest, "more than one Host header") }

        let authority: String? = target.authority ?? host.map {
            String(decoding: UnsafeRawBufferPointer(rebasing: b[$0]), as: UTF8.self)
        }
        let scheme: String?
        switch target.form {
        case .authority: scheme = nil
        case .absolute(let s): scheme = s
        case .origin, .asterisk: scheme = config.scheme
        }
        let request = HTTPRequest(method: method, scheme: scheme, authority: authority,
                                  path: target.path, headerFields: fields)
        let keepAlive = version == .http1_1 ? !close : (keepAliveToken && !close)
        return ParsedHead(request: request, version: version, framing: framing,
                          keepAlive: keepAlive, expectContinue: expectContinue && framing != .none)
    }

    /// The end of the line starting at `pos` (before its CR LF or LF);
    /// moves `pos` past the line. The scanner has vetted the line endings.
    @inline(__always)
    private static func nextLine(_ b: UnsafeRawBufferPointer, _ pos: inout Int) throws(HTTPProtocolError) -> Int {
        guard let lf = b.firstIndex(of: ByteClass.lf, in: pos..<b.count) else {
            throw HTTPProtocolError(.badRequest, "the request head ends inside a line")
        }
        var end = lf
        if end > pos && b[end - 1] == ByteClass.cr { end -= 1 }
        for i in pos..<end where b[i] == ByteClass.cr {
            throw HTTPProtocolError(.badRequest, "a bare CR inside a line of the request head")
        }
        pos = lf + 1
        return end
    }

    // MARK: The request line

    struct Target {
        enum Form: Equatable {
            case origin, asterisk, authority
            case absolute(String)
        }
        var form: Form
        var path: String?
        var authority: String?
    }

    private static func parseRequestLine(_ b: UnsafeRawBufferPointer, _ line: Range<Int>)
        throws(HTTPProtocolError) -> (HTTPRequest.Method, Target, HTTPVersion)
    {
        guard let sp1 = b.firstIndex(of: ByteClass.sp, in: line), sp1 > line.lowerBound else {
            throw HTTPProtocolError(.badRequest, "the request line has no method")
        }
        let methodRange = line.lowerBound..<sp1
        for i in methodRange where !ByteClass.isTokenChar(b[i]) {
            throw HTTPProtocolError(.badRequest, "the method holds an invalid character (byte \(b[i]))")
        }
        guard let sp2 = b.firstIndex(of: ByteClass.sp, in: (sp1 + 1)..<line.upperBound) else {
            throw HTTPProtocolError(.badRequest, "the request line is not 'method target version'")
        }
        let targetRange = (sp1 + 1)..<sp2
        if targetRange.isEmpty {
            throw HTTPProtocolError(.badRequest, "the request line has two spaces in a row or no target")
        }
        for i in targetRange where !ByteClass.isTargetByte(b[i]) {
            throw HTTPProtocolError(.badRequest, "the request target holds an invalid character (byte \(b[i]))")
        }
        let version = try parseVersion(b, (sp2 + 1)..<line.upperBound)
        let method = knownMethod(b, methodRange)
            ?? HTTPRequest.Method(String(decoding: UnsafeRawBufferPointer(rebasing: b[methodRange]), as: UTF8.self))!
        let target = try parseTarget(b, targetRange, method)
        return (method, target, version)
    }

    private static func parseVersion(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) throws(HTTPProtocolError) -> HTTPVersion {
        // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
        let p = r.lowerBound
        guard r.count == 8, b[p] == 72, b[p + 1] == 84, b[p + 2] == 84, b[p + 3] == 80, b[p + 4] == 47,
              b[p + 6] == 46, (48...57).contains(b[p + 5]), (48...57).contains(b[p + 7])
        else {
            throw HTTPProtocolError(.badRequest, "the request line does not end in a valid HTTP version")
        }
        let major = Int(b[p + 5] - 48), minor = Int(b[p + 7] - 48)
        guard major == 1, minor <= 1 else {
            throw HTTPProtocolError(.httpVersionNotSupported, "HTTP/\(major).\(minor) is not supported (only HTTP/1.0 and HTTP/1.1)")
        }
        return minor == 1 ? .http1_1 : .http1_0
    }

    private static func string(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
    }

    /// The four request-target forms of RFC 9112 §3.2, each only where it
    /// belongs.
    private static func parseTarget(_ b: UnsafeRawBufferPointer, _ r: Range<Int>,
                                    _ method: HTTPRequest.Method) throws(HTTPProtocolError) -> Target {
        let first = b[r.lowerBound]
        if method == .connect {
            // authority-form: host ":" port, nothing else.
            guard first != 47, let colon = lastIndex(b, 58, r), colon > r.lowerBound, colon + 1 < r.upperBound,
                  ((colon + 1)..<r.upperBound).allSatisfy({ (48...57).contains(b[$0]) }),
                  b.firstIndex(of: 47, in: r) == nil, b.firstIndex(of: 64, in: r) == nil
            else {
                throw HTTPProtocolError(.badRequest, "CONNECT needs an authority-form target (host:port)")
            }
            return Target(form: .authority, path: nil, authority: string(b, r))
        }
        if first == 47 {  // "/"
            return Target(form: .origin, path: string(b, r), authority: nil)
        }
        if r.count == 1 && first == 42 {  // "*"
            guard method == .options else {
                throw HTTPProtocolError(.badRequest, "the asterisk-form target '*' is only for OPTIONS")
            }
            return Target(form: .asterisk, path: "*", authority: nil)
        }
        // absolute-form: scheme "://" authority [path-abempty] [ "?" query ]
        for (scheme, prefix) in [("http", "http://"), ("https", "https://")] {
            let n = prefix.utf8.count
            guard r.count > n else { continue }
            var matches = true
            for (i, c) in prefix.utf8.enumerated() where ByteClass.lower(b[r.lowerBound + i]) != c { matches = false }
            guard matches else { continue }
            let authStart = r.lowerBound + n
            var authEnd = authStart
            while authEnd < r.upperBound && b[authEnd] != 47 && b[authEnd] != 63 { authEnd += 1 }
            guard authEnd > authStart, b.firstIndex(of: 64, in: authStart..<authEnd) == nil else {
                throw HTTPProtocolError(.badRequest, "an absolute-form target without a valid authority")
            }
            var path = authEnd < r.upperBound ? string(b, authEnd..<r.upperBound) : "/"
            if path.utf8.first == 63 { path = "/" + path }
            return Target(form: .absolute(scheme), path: path, authority: string(b, authStart..<authEnd))
        }
        throw HTTPProtocolError(.badRequest, "the request target is in none of the forms of RFC 9112 §3.2")
    }

    private static func lastIndex(_ b: UnsafeRawBufferPointer, _ byte: UInt8, _ r: Range<Int>) -> Int? {
        var i = r.upperBound
        while i > r.lowerBound {
            i -= 1
            if b[i] == byte { return i }
        }
        return nil
    }

    private static func knownMethod(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> HTTPRequest.Method? {
        let p = r.lowerBound
        switch r.count {
        case 3:
            if b[p] == 71 && b[p + 1] == 69 && b[p + 2] == 84 { return .get }
            if b[p] == 80 && b[p + 1] == 85 && b[p + 2] == 84 { return .put }
        case 4:
            if b[p] == 80 && b[p + 1] == 79 && b[p + 2] == 83 && b[p + 3] == 84 { return .post }
            if b[p] == 72 && b[p + 1] == 69 && b[p + 2] == 65 && b[p + 3] == 68 { return .head }
        case 5:
            if equalsExactly(b, r, "PATCH") { return .patch }
            if equalsExactly(b, r, "TRACE") { return .trace }
        case 6:
            if equalsExactly(b, r, "DELETE") { return .delete }
        case 7:
            if equalsExactly(b, r, "OPTIONS") { return .options }
            if equalsExactly(b, r, "CONNECT") { return .connect }
        default:
            break
        }
        return nil
    }

    private static func equalsExactly(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ s: StaticString) -> Bool {
        guard r.count == s.utf8CodeUnitCount else { return false }
        return memcmp(b.baseAddress! + r.lowerBound, s.utf8Start, r.count) == 0
    }

    // MARK: Framing fields

    /// Content-Length = 1*DIGIT; a list of equal values ("5, 5", which some
    /// proxies produce) is that value; differing values are an error.
    private static func parseContentLength(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) throws(HTTPProtocolError) -> Int {
        var result: Int?
        var failure: HTTPProtocolError?
        forEachListElement(b, r, keepEmpty: true) { e in
            guard failure == nil else { return }
            guard !e.isEmpty, e.count <= 18, e.allSatisfy({ (48...57).contains(b[$0]) }) else {
                failure = HTTPProtocolError(.badRequest, "Content-Length is not a number of at most 18 digits")
                return
            }
            var n = 0
            for i in e { n = n * 10 + Int(b[i] - 48) }
            if let old = result, old != n {
                failure = HTTPProtocolError(.badRequest, "Content-Length lists different values")
            }
            result = n
        }
        if let failure { throw failure }
        guard let result else { throw HTTPProtocolError(.badRequest, "an empty Content-Length") }
        return result
    }

    /// Calls `body` with each element of a comma-separated list, trimmed
    /// (RFC 9110 §5.6.1); empty elements are skipped unless `keepEmpty`.
    static func forEachListElement(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, keepEmpty: Bool = false,
                                   _ body: (Range<Int>) -> Void) {
        var start = r.lowerBound
        while start <= r.upperBound {
            let comma = b.firstIndex(of: 44, in: start..<r.upperBound) ?? r.upperBound
            let e = b.trimmingOWS(start..<comma)
            if !e.isEmpty || keepEmpty { body(e) }
            start = comma + 1
        }
    }
}

/// The transfer codings of a request, as far as the framing goes.
enum TransferCoding: Equatable {
    case absent
    case chunked
    case chunkedNotLast
    case unsupported(String)

    mutating func add(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) throws(HTTPProtocolError) {
        var failure: HTTPProtocolError?
        var sawElement = false
        HeadParser.forEachListElement(b, r) { e in
            sawElement = true
            // A coding may carry parameters ("gzip;q=1"): the name decides.
            let nameEnd = b.firstIndex(of: 59, in: e) ?? e.upperBound
            let name = b.trimmingOWS(e.lowerBound..<nameEnd)
            if b.equalsIgnoringCase(name, "chunked") {
                if name.upperBound != e.upperBound {
                    failure = HTTPProtocolError(.badRequest, "chunked takes no parameters")
                }
                switch self {
                case .chunked, .chunkedNotLast:
                    failure = HTTPProtocolError(.badRequest, "chunked is applied more than once")
                case .absent:
                    self = .chunked
                case .unsupported:
                    break  // "gzip, chunked": framed, but the coding under it cannot be undone
                }
            } else {
                switch self {
                case .chunked, .chunkedNotLast: self = .chunkedNotLast
                case .absent:
                    self = .unsupported(String(decoding: UnsafeRawBufferPointer(rebasing: b[name]), as: UTF8.self))
                case .unsupported: break
                }
            }
        }
        if !sawElement { failure = HTTPProtocolError(.badRequest, "an empty Transfer-Encoding") }
        if let failure { throw failure }
    }
}

#if canImport(Glibc)
import Glibc
#endif

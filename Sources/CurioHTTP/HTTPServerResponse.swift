import HTTPTypes

/// A response: the head (`HTTPResponse` from swift-http-types) and a body.
///
/// The server adds `Content-Length` (whole bodies) or chunked framing
/// (streamed bodies without a `Content-Length`), `Date`, and `Connection`
/// as keep-alive requires; a `Content-Length` or `Transfer-Encoding` the
/// handler sets for a whole body is replaced by the real length. A
/// `Connection: close` from the handler closes the connection after the
/// response.
public struct HTTPServerResponse: Sendable {
    /// Status and header fields.
    public var head: HTTPResponse
    /// What follows the head.
    public var body: HTTPResponseBody

    /// A response with `status` (200 by default), `headerFields` and `body`.
    public init(status: HTTPResponse.Status = .ok, headerFields: HTTPFields = [:], body: HTTPResponseBody = .empty) {
        head = HTTPResponse(status: status, headerFields: headerFields)
        self.body = body
    }

    /// A response from a swift-http-types head and a body.
    public init(head: HTTPResponse, body: HTTPResponseBody = .empty) {
        self.head = head
        self.body = body
    }
}

/// The body of a response: nothing, whole bytes, or a function that writes
/// it piece by piece.
///
/// ```swift
/// .bytes(payload)
/// .string("hello\n")
/// .stream { writer in
///     for part in parts { try await writer.write(part) }
///     writer.trailers = [.init("Checksum")!: sum]   // chunked bodies only
/// }
/// ```
public struct HTTPResponseBody: Sendable {
    enum Storage: Sendable {
        case empty
        case bytes([UInt8])
        case stream(@Sendable (HTTPResponseBodyWriter) async throws -> Void)
    }
    let storage: Storage

    /// No body (`Content-Length: 0` where a body is allowed).
    public static var empty: HTTPResponseBody { HTTPResponseBody(storage: .empty) }
    /// These bytes, with their `Content-Length`.
    public static func bytes(_ bytes: [UInt8]) -> HTTPResponseBody { HTTPResponseBody(storage: .bytes(bytes)) }
    /// A string's UTF-8 bytes, with their `Content-Length`.
    public static func string(_ text: String) -> HTTPResponseBody { HTTPResponseBody(storage: .bytes(Array(text.utf8))) }
    /// A body `write` produces as it goes: sent with the handler's
    /// `Content-Length` if it set one (the writes must add up to it),
    /// else chunked (HTTP/1.1) or ended by closing the connection
    /// (HTTP/1.0). Each write goes out before `write` returns.
    public static func stream(_ write: @escaping @Sendable (HTTPResponseBodyWriter) async throws -> Void) -> HTTPResponseBody {
        HTTPResponseBody(storage: .stream(write))
    }
}

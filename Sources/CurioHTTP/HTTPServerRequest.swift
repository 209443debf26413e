import Curio
import HTTPTypes

/// A handler: an async function of a request returning a response. It runs
/// in the connection's Curio task, so it may use every Curio call; requests
/// of one connection are handled one after another, in order.
///
/// ```swift
/// let handler: HTTPHandler = { request in
///     HTTPServerResponse(status: .ok, body: .string("hello\n"))
/// }
/// ```
public typealias HTTPHandler = @Sendable (HTTPServerRequest) async throws -> HTTPServerResponse

/// A request as a handler sees it: the head (`HTTPRequest` from
/// swift-http-types) and the body as a stream of byte chunks.
public struct HTTPServerRequest: Sendable {
    /// Method, scheme, authority (from `Host` or an absolute target), path
    /// and header fields.
    public var head: HTTPRequest
    /// The body; empty when the request has none.
    public let body: HTTPRequestBody
    /// HTTP/1.0 or HTTP/1.1.
    public let version: HTTPVersion
    /// The client, when the connection is a socket.
    public let remoteAddress: SocketAddress?

    /// The method (`.get`, `.post`, ...).
    public var method: HTTPRequest.Method { head.method }
    /// The target's path and query ("/search?q=curio"), "*" for
    /// `OPTIONS *`, empty for `CONNECT`.
    public var path: String { head.path ?? "" }
    /// The header fields.
    public var headerFields: HTTPFields { head.headerFields }
}

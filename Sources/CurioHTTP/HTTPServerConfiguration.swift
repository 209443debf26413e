/// Limits and timeouts of an HTTP/1.1 server. The defaults suit a public
/// service; tests set the timeouts small.
///
/// ```swift
/// var config = HTTPServerConfiguration()
/// config.maxBodySize = 16 << 20
/// config.idleTimeout = 30
/// ```
public struct HTTPServerConfiguration: Sendable {
    /// Longest request line (method, target, version, CRLF) in bytes; a
    /// longer one is answered 414 URI Too Long.
    public var maxRequestLineLength = 8192
    /// Most header fields in one request (and in one chunked body's
    /// trailers); more are answered 431.
    public var maxHeaderCount = 100
    /// Most bytes of header field lines in one request (and of trailer
    /// lines), the final empty line included; more are answered 431.
    public var maxHeaderBytes = 16384
    /// Largest request body; a larger declared `Content-Length` is answered
    /// 413 before the handler runs, and a chunked body that grows past it
    /// ends with 413.
    public var maxBodySize = 1 << 20
    /// Longest chunk-size line of a chunked body (extensions included); a
    /// longer one is answered 400.
    public var maxChunkLineLength = 4096

    /// Seconds a keep-alive connection may wait for the first byte of its
    /// next request (and a new connection for its first) before it is closed.
    public var idleTimeout: Double = 60
    /// Seconds from a request's first byte until its whole head has
    /// arrived; a slower client (slowloris) is answered 408 and closed.
    public var headerTimeout: Double = 10
    /// Seconds one receive of a request body may wait; a stalled upload is
    /// closed (408 when no response has started).
    public var bodyReadTimeout: Double = 30
    /// Seconds one send of a response may wait for the client to read.
    public var writeTimeout: Double = 30
    /// Seconds a connection the server closes keeps reading (and dropping)
    /// what the client still sends after the last response, so that the
    /// client gets that response instead of a reset (RFC 9112 §9.6).
    public var lingerTimeout: Double = 2

    /// Accepts a bare LF as a line ending in the request head and chunk
    /// lines (RFC 9112 §2.2 allows it). Off by default: a bare LF is
    /// answered 400, which closes a request-smuggling door when this server
    /// sits behind a proxy that reads lines differently.
    public var allowBareLineFeed = false
    /// Responses of pipelined requests are gathered into one send up to
    /// this many bytes while further requests are already buffered.
    public var pipelineBatchBytes = 65536
    /// Value of the `Server` header on every response; nil sends none.
    public var serverName: String? = nil
    /// The scheme handlers see in `HTTPRequest.scheme` ("https" behind TLS).
    public var scheme = "http"
    /// Bytes asked for by one receive.
    public var readChunkSize = 16384
    /// Seconds ``HTTPServer/drain(timeout:)`` waits for in-flight requests
    /// when it is given no timeout.
    public var drainTimeout: Double = 30

    /// The defaults.
    public init() {}
}

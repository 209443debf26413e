import HTTPTypes

/// A request broke HTTP/1.1's rules or the server's limits. The server
/// answers it with ``status`` and closes the connection (RFC 9112 §9.6:
/// after a framing error nothing later on the connection can be trusted).
///
/// A handler reading a body sees this error from the body stream; if it
/// rethrows, the server answers with the status.
public struct HTTPProtocolError: Error, CustomStringConvertible, Sendable {
    /// The status the server answers with: 400, 408, 413, 414, 417, 431,
    /// 501 or 505.
    public let status: HTTPResponse.Status
    /// What was wrong, in words; also the body of the error response.
    public let reason: String

    /// A refusal with `status`, explained by `reason`; a handler may throw
    /// one to answer with that status and close the connection.
    public init(_ status: HTTPResponse.Status, _ reason: String) {
        self.status = status
        self.reason = reason
    }

    public var description: String { "HTTPProtocolError: \(status.code) \(status.reasonPhrase): \(reason)" }
}

/// A handler collected more of a body than it allowed with
/// ``HTTPRequestBody/collect(upTo:)``.
public struct HTTPBodyTooLarge: Error, CustomStringConvertible, Sendable {
    /// The limit the handler gave.
    public let limit: Int
    public var description: String { "HTTPBodyTooLarge: the request body is longer than \(limit) bytes" }
}

/// A streamed response body wrote more or fewer bytes than its
/// `Content-Length` said; the connection is closed since the client can no
/// longer tell where the next response starts.
public struct HTTPBodyLengthMismatch: Error, CustomStringConvertible, Sendable {
    /// The length the response declared.
    public let declared: Int
    /// The bytes the body wrote.
    public let written: Int
    public var description: String {
        "HTTPBodyLengthMismatch: the response declared Content-Length \(declared) but the body wrote \(written) bytes"
    }
}

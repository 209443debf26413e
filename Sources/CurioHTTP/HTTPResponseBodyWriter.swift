import Curio
import HTTPTypes

/// Writes a streamed response body (see ``HTTPResponseBody/stream(_:)``).
/// Use it only inside the body function, from the connection's task.
public final class HTTPResponseBodyWriter: @unchecked Sendable {
    // Unchecked: it is made and used by the connection's own task only;
    // writes after the body function returned throw.
    enum Framing {
        case chunked
        case length(Int)
        case untilClose
        case discard  // HEAD, 204, 304: no body on the wire
    }

    unowned let connection: HTTPConnection
    let framing: Framing
    private(set) var written = 0
    var finished = false

    /// Trailer fields sent after a chunked body; ignored for other framings.
    public var trailers: HTTPFields = [:]

    init(connection: HTTPConnection, framing: Framing) {
        self.connection = connection
        self.framing = framing
    }

    /// Sends `bytes` as the next part of the body.
    public func write(_ bytes: [UInt8]) async throws {
        guard !finished else {
            throw CurioUsageError(.invalidArgument, "HTTPResponseBodyWriter.write after the body function returned")
        }
        if bytes.isEmpty { return }
        switch framing {
        case .discard:
            written += bytes.count
            return
        case .length(let n):
            if written + bytes.count > n { throw HTTPBodyLengthMismatch(declared: n, written: written + bytes.count) }
        case .chunked, .untilClose:
            break
        }
        written += bytes.count
        try await connection.writeBodyPart(bytes, chunked: { if case .chunked = framing { return true } else { return false } }())
    }

    /// Sends a string's UTF-8 bytes.
    public func write(_ text: String) async throws {
        try await write(Array(text.utf8))
    }
}

import CCurioOpenSSL

/// A TLS operation failed. ``kind`` says what went wrong in general,
/// ``message`` names the exact failure (OpenSSL's reason, the certificate
/// verification result), ``openSSLErrors`` holds OpenSSL's error queue as
/// it was at the failure.
///
/// ```swift
/// do {
///     let conn = try await openConnection(host: "expired.example", port: 443, tls: context)
/// } catch let e as TLSError where e.kind == .certificateVerificationFailed {
///     print(e.message)   // "certificate verification failed: certificate has expired"
/// }
/// ```
public struct TLSError: Error, CustomStringConvertible, Sendable {
    /// The family of a failure.
    public enum Kind: Sendable, Equatable {
        /// The configuration could not be loaded (a missing or malformed
        /// certificate or key, a key that does not match its certificate).
        case configuration
        /// The peer's certificate was rejected: see ``TLSError/verifyResult``
        /// (expired, unknown issuer, hostname mismatch, ...).
        case certificateVerificationFailed
        /// The handshake failed for another reason (no shared protocol
        /// version or cipher, an alert from the peer, no ALPN overlap).
        case handshakeFailed
        /// The peer does not speak TLS: its first bytes are not a TLS
        /// record (a plaintext client on a TLS port, or a plaintext server).
        case notTLS
        /// The connection ended without a TLS close_notify: during the
        /// handshake (a truncated handshake) or in the middle of the stream
        /// (a truncation, unless ``TLSConfiguration/allowsEOFWithoutCloseNotify``).
        case unexpectedEOF
        /// A record that is not valid TLS arrived after the handshake
        /// (garbage, a bad MAC, an unexpected message), or the peer sent a
        /// fatal alert.
        case protocolError
        /// The connection was used after ``TLSConnection/close()``,
        /// ``TLSConnection/shutdown(file:line:function:)`` or an earlier
        /// fatal error.
        case closed
    }

    /// What went wrong in general.
    public let kind: Kind
    /// The failure, in words: "certificate verification failed: certificate
    /// has expired", "wrong version number", ...
    public let message: String
    /// The operation that failed ("handshake with localhost", "read").
    public let operation: String
    /// The X.509 verification result (`X509_V_ERR_*`) when the peer's
    /// certificate was rejected.
    public let verifyResult: Int32?
    /// OpenSSL's error queue at the failure, oldest first, one
    /// `error:0A00010B:SSL routines::wrong version number` line each.
    public let openSSLErrors: [String]

    /// Makes an error; CurioTLS itself builds them from OpenSSL's state.
    public init(_ kind: Kind, _ message: String, operation: String, verifyResult: Int32? = nil,
                openSSLErrors: [String] = []) {
        self.kind = kind
        self.message = message
        self.operation = operation
        self.verifyResult = verifyResult
        self.openSSLErrors = openSSLErrors
    }

    /// "TLSError.kind: operation: message".
    public var description: String { "TLSError.\(kind): \(operation): \(message)" }
}

/// One entry of OpenSSL's (thread-local) error queue.
struct OpenSSLErrorEntry {
    let code: UInt
    let text: String
    /// The reason alone ("wrong version number").
    let reason: String
    var isSSL: Bool { ccurio_err_is_ssl_lib(code) != 0 }
    var reasonCode: Int32 { ccurio_err_reason(code) }
}

/// Empties OpenSSL's error queue of this thread → its entries, oldest first.
func drainOpenSSLErrors() -> [OpenSSLErrorEntry] {
    var out: [OpenSSLErrorEntry] = []
    var buf = [CChar](repeating: 0, count: 256)
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        ERR_error_string_n(code, &buf, buf.count)
        let text = cString(buf)
        let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? text
        out.append(OpenSSLErrorEntry(code: code, text: text, reason: reason))
    }
    return out
}

/// A configuration error with OpenSSL's explanation appended.
func configurationError(_ what: String) -> TLSError {
    let queue = drainOpenSSLErrors()
    let detail = queue.last.map { ": " + $0.reason } ?? ""
    return TLSError(.configuration, what + detail, operation: "configure TLS", openSSLErrors: queue.map(\.text))
}

/// The text of a NUL-terminated C buffer.
func cString(_ buf: [CChar]) -> String {
    let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

import Curio
import CurioHTTP
import CurioTLS

extension HTTPServer {
    /// An HTTPS server: each accepted client's TLS handshake runs in its
    /// own connection task (bounded by `handshakeTimeout` seconds, nil for
    /// none), then HTTP/1.1 is served over the TLS stream, with `https` as
    /// the scheme handlers see.
    ///
    /// ```swift
    /// let tls = TLSConfiguration.server(certificateChain: .file("cert.pem"), privateKey: .file("key.pem"))
    /// let server = try HTTPServer(host: "", port: 8443, tls: tls) { request in
    ///     HTTPServerResponse(body: .string("hello over TLS\n"))
    /// }
    /// try await server.run()
    /// ```
    ///
    /// The server advertises `http/1.1` through ALPN: a configuration with
    /// no ALPN protocols gets that one; a list naming anything else (`h2`)
    /// is refused with `TLSError.Kind.configuration`, since a client that
    /// negotiated it would get HTTP/1.1. A failed handshake closes that
    /// client only and goes to `onHandshakeFailure`, or without one is
    /// logged at notice level on the kernel's logger, as `tcpServer(tls:)`
    /// does. Throws when the configuration is not a server's or its
    /// certificate or key cannot be loaded.
    public convenience init(host: String = "", port: Int, reusePort: Bool = false, backlog: Int = 1024,
                            configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                            tls: TLSConfiguration, handshakeTimeout: Double? = 10,
                            onHandshakeFailure: (@Sendable (any Error, SocketAddress) async -> Void)? = nil,
                            handler: @escaping HTTPHandler) throws {
        var tls = tls
        if tls.alpnProtocols.isEmpty { tls.alpnProtocols = [httpALPN] }
        try checkHTTPS(tls)
        try self.init(host: host, port: port, reusePort: reusePort, backlog: backlog, configuration: configuration,
                      tls: TLSContext(tls), handshakeTimeout: handshakeTimeout,
                      onHandshakeFailure: onHandshakeFailure, handler: handler)
    }

    /// The same with a context already loaded (to share one among the
    /// servers of several kernels, or with other listeners). Its ALPN list
    /// must be empty or `["http/1.1"]`.
    public convenience init(host: String = "", port: Int, reusePort: Bool = false, backlog: Int = 1024,
                            configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                            tls context: TLSContext, handshakeTimeout: Double? = 10,
                            onHandshakeFailure: (@Sendable (any Error, SocketAddress) async -> Void)? = nil,
                            handler: @escaping HTTPHandler) throws {
        try checkHTTPS(context.configuration)
        self.init(host: host, port: port, reusePort: reusePort, backlog: backlog, configuration: configuration,
                  transport: .tls(context, readChunkSize: configuration.readChunkSize,
                                  handshakeTimeout: handshakeTimeout, onHandshakeFailure: onHandshakeFailure),
                  handler: handler)
    }
}

extension HTTPServer.Transport {
    /// TLS over each accepted socket with `context` (a server context),
    /// handshakes bounded by `handshakeTimeout` seconds; failed ones go to
    /// `onHandshakeFailure` or the kernel's logger. The scheme is `https`.
    /// `HTTPServer(host:port:tls:)` is the usual way in; this is for a
    /// server made with other transports in mind.
    public static func tls(_ context: TLSContext, readChunkSize: Int = HTTPServerConfiguration().readChunkSize,
                           handshakeTimeout: Double? = 10,
                           onHandshakeFailure: (@Sendable (any Error, SocketAddress) async -> Void)? = nil) -> Self {
        Self(scheme: "https") { socket, peer in
            do {
                let conn = try await acceptTLS(socket, context, timeout: handshakeTimeout)
                return SocketStream(conn, chunk: readChunkSize)
            } catch let e as CancelledError {
                throw e  // the server is stopping or draining
            } catch {
                if let onHandshakeFailure {
                    await onHandshakeFailure(error, peer)
                } else {
                    reportHandshakeFailure(error, peer)
                }
                throw error
            }
        }
    }
}

/// The only application protocol CurioHTTP speaks.
private let httpALPN = "http/1.1"

/// Refuses configurations an HTTPS server cannot honour, naming the mistake.
private func checkHTTPS(_ tls: TLSConfiguration) throws {
    guard tls.role == .server else {
        throw TLSError(.configuration, "an HTTPS server needs a server configuration (TLSConfiguration.server), not a client one",
                       operation: "HTTPServer(tls:)")
    }
    let others = tls.alpnProtocols.filter { $0 != httpALPN }
    guard others.isEmpty else {
        throw TLSError(.configuration,
                       "CurioHTTP speaks HTTP/1.1 only, but the ALPN list offers \(others.joined(separator: ", ")); "
                           + "leave alpnProtocols empty or [\"http/1.1\"]",
                       operation: "HTTPServer(tls:)")
    }
}

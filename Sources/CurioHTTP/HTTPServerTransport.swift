import Curio

extension HTTPServer {
    /// What a server does with each accepted socket before it speaks HTTP
    /// on it: nothing (``plain``), or a handshake that turns the socket into
    /// a stream over another `ByteChannel` — CurioHTTPS's
    /// `HTTPServer(host:port:tls:)` is built on this.
    ///
    /// The opening runs in the connection's own task, so a slow or hostile
    /// client holds up only itself; while it runs, the connection counts as
    /// idle for ``HTTPServer/drain(timeout:)`` (cancelled at once) and is
    /// cancelled with the server.
    public struct Transport: Sendable {
        /// Turns an accepted socket into the stream to serve, or throws to
        /// refuse the client. It owns the socket: on a throw the server
        /// closes it (closing twice is harmless) and reports nothing, so the
        /// closure reports its own failures as it sees fit.
        public typealias Open = @Sendable (_ socket: Socket, _ peer: SocketAddress) async throws -> SocketStream

        /// The scheme handlers see in `HTTPRequest.scheme` for origin-form
        /// targets ("https" behind TLS); it replaces
        /// ``HTTPServerConfiguration/scheme`` when the server is made.
        public let scheme: String
        let open: Open?

        /// A transport that opens each connection with `open`.
        public init(scheme: String, open: @escaping Open) {
            self.scheme = scheme
            self.open = open
        }

        private init(plainScheme: String) {
            scheme = plainScheme
            open = nil
        }

        /// HTTP straight over TCP: the socket is the stream.
        public static let plain = Transport(plainScheme: "http")
    }
}

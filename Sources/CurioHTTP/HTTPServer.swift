import Curio
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 server on Curio: listens on a host and port, serves each
/// connection in its own Curio task, and drains gracefully.
///
/// ```swift
/// let server = HTTPServer(host: "127.0.0.1", port: 8080) { request in
///     HTTPServerResponse(status: .ok, body: .string("hello\n"))
/// }
/// try await server.run()            // until drain() or cancellation
/// ```
///
/// For several kernels (one per core) on one port, give each its own
/// server with `reusePort: true`; the Linux kernel spreads connections
/// among them. A server belongs to the kernel whose task calls ``run()``;
/// call its other methods from tasks of that kernel.
///
/// For HTTPS, the CurioHTTPS product adds `HTTPServer(host:port:tls:)`;
/// any other per-connection handshake plugs in as a ``Transport``. To serve
/// connections accepted elsewhere (a socket passed in), use
/// ``serve(_:remoteAddress:)`` or ``serveHTTP(_:configuration:handler:)``.
public final class HTTPServer: @unchecked Sendable {
    // Unchecked: all state is used by tasks of the kernel that runs it.
    /// Limits and timeouts of every connection (its `scheme` set by the transport).
    public let configuration: HTTPServerConfiguration
    private let handler: HTTPHandler
    private let host: String
    private let port: Int
    private let reusePort: Bool
    private let backlog: Int
    private let transport: Transport
    private let registry = ConnectionRegistry()
    private let listening = Event()
    private var address: SocketAddress?
    private var acceptor: CurioTask<Void>?
    private var stopped = false

    /// A server for `host` ("" for every interface) and `port` (0 picks a
    /// free one: see ``localAddress()``), speaking HTTP over each accepted
    /// socket as `transport` opens it (plain TCP by default).
    public init(host: String = "", port: Int, reusePort: Bool = false, backlog: Int = 1024,
                configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                transport: Transport = .plain, handler: @escaping HTTPHandler) {
        self.host = host
        self.port = port
        self.reusePort = reusePort
        self.backlog = backlog
        var configuration = configuration
        if transport.open != nil { configuration.scheme = transport.scheme }
        self.configuration = configuration
        self.transport = transport
        self.handler = handler
    }

    /// Connections open now.
    public var openConnections: Int { registry.count }

    /// Waits until the server listens → its address (with the real port).
    public func localAddress() async throws -> SocketAddress {
        try await listening.wait()
        guard let address else {
            throw CurioUsageError(.invalidArgument, "the HTTP server stopped before it listened")
        }
        return address
    }

    /// Listens and serves until ``drain(timeout:)`` (then returns once
    /// every connection has closed) or until cancelled (then cancels every
    /// connection and throws the cancellation).
    public func run() async throws {
        guard !stopped, acceptor == nil else {
            throw CurioUsageError(.invalidArgument, "HTTPServer.run called twice, or after drain()")
        }
        let addr = try await resolve(host: host, port: port).first!
        let socket = try Socket(addr.family, .stream)
        defer { socket.close() }
        do {
            try socket.setOption(.reuseAddress, true)
            if reusePort { try socket.setOption(.reusePort, true) }
            try socket.bind(addr)
            try socket.listen(backlog)
            address = try socket.localAddress
        } catch {
            stopped = true
            await listening.set()
            throw error
        }
        let acceptor = try await spawn(name: "http accept \(address!)") { [self] in
            try await acceptLoop(socket)
        }
        self.acceptor = acceptor
        await listening.set()
        do {
            _ = try await acceptor.join()
        } catch let e as CancelledError {
            try await acceptor.cancel()
            try await registry.cancelAll()
            try? await registry.waitUntilClosed(timeout: 1)
            throw e
        } catch {
            // The accept loop failed (not a cancellation): stop serving.
            try await registry.cancelAll()
            throw error
        }
        try await registry.waitUntilClosed(timeout: configuration.drainTimeout)
    }

    /// Graceful stop: stops accepting, closes idle keep-alive connections at
    /// once, lets requests in flight finish (their responses say
    /// `Connection: close`), and returns when every connection has closed.
    /// Connections still open after `timeout` seconds (default
    /// ``HTTPServerConfiguration/drainTimeout``) are cancelled.
    public func drain(timeout: Double? = nil) async throws {
        stopped = true
        if let acceptor { _ = try await acceptor.cancel() }
        try await registry.startDrain()
        try await registry.waitUntilClosed(timeout: timeout ?? configuration.drainTimeout)
    }

    /// Serves one connection accepted elsewhere (TLS, a passed-in socket)
    /// as one of this server's: counted, and drained with the others.
    /// Returns when the connection has closed; the stream is closed.
    public func serve(_ stream: SocketStream, remoteAddress: SocketAddress? = nil) async {
        let connection = HTTPConnection(stream: stream, configuration: configuration, handler: handler,
                                        remoteAddress: remoteAddress ?? (try? stream.socket?.peerAddress))
        if registry.draining {
            stream.close()
            return
        }
        registry.add(connection)
        await connection.run()
        await registry.remove(connection)
    }

    private func acceptLoop(_ socket: Socket) async throws {
        // Once accepting stops, new connections are refused, not queued.
        // Shut down first: a child being spawned meanwhile holds a copy of
        // the descriptor until its exec, which would keep the port bound.
        defer { socket.shutDownAndClose() }
        // Curio's accept loop: one multishot accept on io_uring, and the
        // back-off when descriptors run out.
        try await acceptForever(socket, site: CallSite(file: #filePath, line: #line, function: #function)) { client, peer in
            try? client.setOption(.noDelay, true)
            if let open = transport.open {
                try await spawn(name: "http connection") { [self] in
                    defer { noteConnectionClosed() }
                    await openAndServe(client, peer, open)
                }
            } else {
                let stream = SocketStream(client, chunk: configuration.readChunkSize)
                try await spawn(name: "http connection") { [self] in
                    defer { noteConnectionClosed() }
                    await serve(stream, remoteAddress: peer)
                }
            }
        }
    }

    /// Runs the transport's opening (a TLS handshake) in the connection's
    /// task, as a connection the registry can cancel, then serves it.
    private func openAndServe(_ client: Socket, _ peer: SocketAddress, _ open: Transport.Open) async {
        let key = registry.beginOpening(try? await currentTask())
        let stream: SocketStream
        do {
            stream = try await open(client, peer)
        } catch {
            client.close()
            await registry.endOpening(key)
            return
        }
        await registry.endOpening(key)
        await serve(stream, remoteAddress: peer)
    }
}

/// Serves HTTP/1.1 on one connection that is already open — a socket
/// accepted elsewhere, or any `ByteChannel` wrapped in a stream (a TLS
/// connection) — until the client or the server closes it; the stream is
/// closed on return. Call it from a Curio task.
///
/// ```swift
/// try await tcpServer(host: "", port: 8080) { client, _ in
///     await serveHTTP(client) { _ in HTTPServerResponse(body: .string("hi\n")) }
/// }
/// ```
public func serveHTTP(_ stream: SocketStream, configuration: HTTPServerConfiguration = HTTPServerConfiguration(),
                      handler: @escaping HTTPHandler) async {
    let connection = HTTPConnection(stream: stream, configuration: configuration, handler: handler,
                                    remoteAddress: try? stream.socket?.peerAddress)
    await connection.run()
}

/// The base of a request handler, as Python's `socketserver`: the server
/// makes one handler per client (or per datagram) and calls ``setup()``,
/// ``handle()`` and ``finish()`` in its own task.
///
/// ```swift
/// final class EchoHandler: StreamRequestHandler {
///     override func handle() async throws {
///         print("Connection from", clientAddress)
///         for try await line in rfile {
///             try await wfile.write(line)
///         }
///         print("Connection closed")
///     }
/// }
/// let serv = try TCPServer(("", 25000), EchoHandler.self)
/// try await serv.serveForever()
/// ```
open class BaseRequestHandler {
    /// The client's socket (stream servers) or the server's socket
    /// (datagram servers).
    public let request: Socket
    /// Who the client is.
    public let clientAddress: SocketAddress

    /// Made by the server for each request; subclasses that override it call `super`.
    public required init(request: Socket, clientAddress: SocketAddress) {
        self.request = request
        self.clientAddress = clientAddress
    }

    /// Called before ``handle()``.
    open func setup() async throws {}
    /// Serves the client. Override this.
    open func handle() async throws {}
    /// Called after ``handle()``, also when it threw.
    open func finish() async throws {}
}

/// A handler for stream sockets with buffered `rfile` (read side, an async
/// sequence of lines) and `wfile` (write side).
open class StreamRequestHandler: BaseRequestHandler {
    /// The client's data: `for try await line in rfile`, `rfile.readLine()`.
    public let rfile: SocketStream
    /// Where replies go: `try await wfile.write(line)`.
    public let wfile: SocketStream

    /// Made by the server for each connection, with its streams over `request`.
    public required init(request: Socket, clientAddress: SocketAddress) {
        let stream = SocketStream(request)
        rfile = stream
        wfile = stream
        super.init(request: request, clientAddress: clientAddress)
    }
}

/// A handler for one datagram: `packet` holds it; reply with
/// `try await reply(bytes)`.
open class DatagramRequestHandler: BaseRequestHandler {
    /// The datagram received.
    public internal(set) var packet: [UInt8] = []
    /// Set by ``UDPServer``: its handlers run concurrently and share its
    /// socket, which sends for one task at a time (another would get
    /// ``ResourceBusy``), so their replies take turns.
    var replyLock: Lock?

    /// Made by the server for each datagram.
    public required init(request: Socket, clientAddress: SocketAddress) {
        super.init(request: request, clientAddress: clientAddress)
    }

    /// Sends `bytes` back to the client.
    public func reply(_ bytes: [UInt8]) async throws {
        if let replyLock {
            try await replyLock.withLock { _ = try await request.sendTo(bytes, clientAddress) }
        } else {
            try await request.sendTo(bytes, clientAddress)
        }
    }
}

/// A server for the seed's `socketserver` style: a listening socket and a
/// handler class. Each client gets its own task (named after the handler)
/// and its socket is closed when the handler ends. A handler that throws
/// is reported on stderr and the server goes on; so does a client that
/// resets the connection. When `accept` fails for lack of descriptors
/// (EMFILE/ENFILE), the server reports it once, backs off and retries.
///
/// The server owns its handlers as a task group: cancelling
/// ``serveForever(file:line:function:)`` (or ``shutdown()``) cancels every
/// handler, waits for each to end and closes its connection before it
/// returns. ``drain(grace:)-(Double)`` stops accepting, gives the handlers in flight
/// a grace period, then cancels the rest (see ``TCPListener``).
public class SocketServer: @unchecked Sendable {
    let socket: Socket
    let handler: BaseRequestHandler.Type
    private var serving: AnyCurioTask?
    private var stopping = false
    let control = ServerControl()

    init(socket: Socket, handler: BaseRequestHandler.Type) {
        self.socket = socket
        self.handler = handler
    }

    /// The address the server listens on (with the real port when bound to 0).
    public var serverAddress: SocketAddress {
        get throws { try socket.localAddress }
    }

    /// Serves until ``shutdown()`` or cancellation; then closes the socket.
    public func serveForever(file: StaticString = #filePath, line: UInt = #line,
                             function: StaticString = #function) async throws {
        serving = try Kernel.currentTask()
        defer {
            serving = nil
            socket.shutDownAndClose()
        }
        do {
            try await serveOwningHandlers(control: control, stopAccepting: { stopAccepting() }) { handlers in
                try await serve(handlers, file: file, line: line, function: function)
            }
        } catch is CancelledError where stopping {
            return
        }
    }

    /// Stream servers accept clients and serve each in its own task; the
    /// UDP server overrides this with its datagram loop.
    func serve(_ handlers: ServerHandlers, file: StaticString, line: UInt, function: StaticString) async throws {
        try await acceptLoop(socket, handler, handlers, file: file, line: line, function: function)
    }

    /// A drain stops accepting: stream servers close the listening socket.
    func stopAccepting() { socket.shutDownAndClose() }

    /// Stops ``SocketServer/serveForever(file:line:function:)`` (from another task of its kernel): cancels
    /// every running handler, waits for them and closes their connections.
    public func shutdown() async throws {
        stopping = true
        if let t = serving, !t.terminated { try await t.cancel() }
    }

    /// True once a drain has been asked for. Safe from any thread.
    public var isDraining: Bool { control.isDraining }

    /// Stops accepting, lets the handlers in flight finish for `grace`
    /// seconds, cancels the rest and closes their connections; returns once
    /// ``serveForever(file:line:function:)`` has returned. From any task
    /// (the request is posted to the server's kernel).
    public func drain(grace: Double) async throws {
        try await control.drain(grace: grace)
    }

    /// ``drain(grace:)`` with a `Duration`.
    public func drain(grace: Duration) async throws {
        try await control.drain(grace: seconds(grace))
    }

    /// Starts a drain without waiting; safe from any thread.
    public func beginDrain(grace: Double) throws {
        _ = try nanoseconds(grace, "grace")
        control.requestDrain(grace: grace)
    }

    /// Waits until the server accepts no more connections: after a drain
    /// began (``beginDrain(grace:)``), its listening socket is closed once
    /// this returns, so a new client is refused while the handlers in
    /// flight go on. Returns at once when it is not serving any more.
    public func waitStoppedAccepting() async throws {
        try await control.waitNotAccepting()
    }
}

/// A TCP server: `try TCPServer(("", 25000), EchoHandler.self)`.
public final class TCPServer: SocketServer, @unchecked Sendable {
    /// Listens on `address` (port 0 picks a free port; see `serverAddress`).
    /// `reusePort` lets several kernels (one per core) listen on one port.
    public init(_ address: (String, Int), _ handler: BaseRequestHandler.Type,
                reusePort: Bool = false, backlog: Int = 128) throws {
        let addr = try SocketAddress(host: address.0, port: address.1)
        let sock = try Socket(addr.family, .stream)
        do {
            try sock.setOption(.reuseAddress, true)
            if reusePort { try sock.setOption(.reusePort, true) }
            try sock.bind(addr)
            try sock.listen(backlog)
        } catch {
            sock.close()
            throw error
        }
        super.init(socket: sock, handler: handler)
    }
}

/// A Unix stream server on a filesystem path (an old socket file at the
/// path is replaced).
public final class UnixStreamServer: SocketServer, @unchecked Sendable {
    /// A server on the Unix socket at `path` (a stale socket file there is replaced) that makes a `handler` per connection.
    public init(_ path: String, _ handler: BaseRequestHandler.Type, backlog: Int = 128) throws {
        let addr = try SocketAddress(unixPath: path)
        let sock = try Socket(.unix, .stream)
        do {
            unlinkStaleSocket(path)
            try sock.bind(addr)
            try sock.listen(backlog)
        } catch {
            sock.close()
            throw error
        }
        super.init(socket: sock, handler: handler)
    }
}

/// A UDP server: each datagram goes to a new handler, in its own task.
public final class UDPServer: SocketServer, @unchecked Sendable {
    /// Largest datagram accepted.
    public let maxPacketSize: Int
    /// Replies of concurrent handlers take turns on the one socket.
    private let replyLock = Lock()

    /// A UDP server on `address` that makes a `handler` per datagram of at most `maxPacketSize` bytes.
    public init(_ address: (String, Int), _ handler: BaseRequestHandler.Type, maxPacketSize: Int = 65507) throws {
        let addr = try SocketAddress(host: address.0, port: address.1)
        let sock = try Socket(addr.family, .datagram)
        do {
            try sock.setOption(.reuseAddress, true)
            try sock.bind(addr)
        } catch {
            sock.close()
            throw error
        }
        self.maxPacketSize = maxPacketSize
        super.init(socket: sock, handler: handler)
    }

    /// Handlers in flight reply through the server's socket: a drain keeps
    /// it open until they have ended.
    override func stopAccepting() {}

    override func serve(_ handlers: ServerHandlers, file: StaticString, line: UInt, function: StaticString) async throws {
        let me = try Kernel.currentTask()
        while true {
            let (data, peer) = try await socket.recvFrom(maxPacketSize, file: file, line: line, function: function)
            let handler = self.handler, socket = self.socket, replyLock = self.replyLock
            handlers.spawn(me, name: String(describing: handler)) {
                let h = handler.init(request: socket, clientAddress: peer)
                if let d = h as? DatagramRequestHandler {
                    d.packet = data
                    d.replyLock = replyLock
                }
                try await runHandler(h, close: nil)
            }
        }
    }
}

/// Accepts clients and serves each in its own task until cancelled.
func acceptLoop(_ socket: Socket, _ handler: BaseRequestHandler.Type, _ handlers: ServerHandlers,
                file: StaticString, line: UInt, function: StaticString) async throws {
    let me = try Kernel.currentTask()
    try await acceptForever(socket, site: CallSite(file: file, line: line, function: function)) { client, peer in
        handlers.spawn(me, name: String(describing: handler)) {
            try await runHandler(handler.init(request: client, clientAddress: peer), close: client)
        }
    }
}

/// Accepts connections until cancelled and hands each to `serve`. When
/// `accept` fails for lack of descriptors (EMFILE/ENFILE) or memory, dying
/// or spinning would both be wrong: it reports once on stderr and retries
/// every 100 ms until clients finish and free some.
package func acceptForever(_ socket: Socket, site: CallSite,
                           _ serve: (Socket, SocketAddress) async throws -> Void) async throws {
    var reportedExhaustion = false
    let acceptor = ConnectionAcceptor(socket: socket)
    while true {
        let client: Socket, peer: SocketAddress
        do {
            (client, peer) = try await acceptor.next(site: site)
            reportedExhaustion = false
            noteConnectionAccepted()
        } catch let e as SocketError where e.errno == EMFILE || e.errno == ENFILE || e.errno == ENOBUFS || e.errno == ENOMEM {
            if !reportedExhaustion {
                diagnose(.warning, "curio: accept failed (\(e)); retrying every 100 ms until descriptors free up\n")
                reportedExhaustion = true
            }
            try await sleep(0.1)
            continue
        }
        try await serve(client, peer)
    }
}

/// One handler's life: setup, handle, finish, close. A failure is reported
/// and does not reach the server.
func runHandler(_ h: BaseRequestHandler, close socket: Socket?) async throws {
    defer { if let socket { socket.shutDownAndClose(); noteConnectionClosed() } }
    do {
        try await h.setup()
        do {
            try await h.handle()
        } catch {
            try? await h.finish()
            throw error
        }
        try await h.finish()
    } catch let e as SocketError where e.errno == ECONNRESET || e.errno == EPIPE {
        // The client went away; that ends its session, nothing more.
    } catch is CancelledError {
        throw TaskCancelled()
    } catch {
        diagnose(.error, peer: h.clientAddress, "curio: handler \(type(of: h)) for \(h.clientAddress) failed: \(error)\n")
    }
}

func unlinkStaleSocket(_ path: String) {
    var st = stat()
    if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
}

#if canImport(Glibc)
import Glibc
#endif

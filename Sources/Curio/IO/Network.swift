#if canImport(Glibc)
import Glibc
#endif

/// Resolves `host` to socket addresses with `getaddrinfo`, on a worker
/// thread so the kernel never blocks. Numeric hosts skip the lookup.
///
/// ```swift
/// let addrs = try await resolve(host: "localhost", port: 8080)
/// ```
public func resolve(host: String, port: Int, family: SocketAddress.Family? = nil,
                    file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> [SocketAddress] {
    if let numeric = try? SocketAddress(host: host, port: port, family: family) { return [numeric] }
    guard (0...65535).contains(port) else {
        throw CurioUsageError(.invalidArgument, "port must be 0...65535, got \(port)")
    }
    return try await runInThread(file: file, line: line, function: function) {
        var hints = addrinfo()
        hints.ai_family = family.map { $0.raw } ?? AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0 else {
            throw ResolutionError(host: host, code: rc)
        }
        defer { freeaddrinfo(res) }
        var out: [SocketAddress] = []
        var p = res
        while let ai = p {
            var st = sockaddr_storage()
            withUnsafeMutableBytes(of: &st) { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
            }
            let a = SocketAddress(storage: st, length: ai.pointee.ai_addrlen)
            if !out.contains(a) { out.append(a) }
            p = ai.pointee.ai_next
        }
        return out
    }
}

/// A name could not be resolved.
public struct ResolutionError: Error, CustomStringConvertible {
    /// The name that did not resolve.
    public let host: String
    /// The resolver's error code (`EAI_*`, as `gai_strerror` explains).
    public let code: Int32
    public var description: String { "ResolutionError: cannot resolve '\(host)': \(String(cString: gai_strerror(code)))" }
}

/// Opens a TCP connection and returns it as a buffered stream.
///
/// ```swift
/// let conn = try await openConnection(host: "localhost", port: 25000)
/// try await conn.write("Hello\n")
/// let reply = try await conn.readLine()
/// ```
///
/// With several addresses for the host, attempts are staggered
/// `happyEyeballsDelay` seconds apart (RFC 8305, alternating IPv6 and
/// IPv4); the first to connect wins and the others are cancelled and
/// closed. Throws the last attempt's error when none connects.
public func openConnection(host: String, port: Int, happyEyeballsDelay: Double = 0.25,
                           file: StaticString = #filePath, line: UInt = #line,
                           function: StaticString = #function) async throws -> SocketStream {
    let addrs = interleaveFamilies(try await resolve(host: host, port: port, file: file, line: line, function: function))
    guard !addrs.isEmpty else { throw ResolutionError(host: host, code: EAI_NONAME) }
    if addrs.count == 1 {
        return SocketStream(try await connectOne(addrs[0]))
    }
    _ = try nanoseconds(happyEyeballsDelay, "happyEyeballsDelay")
    let race = ConnectRace()
    var attempts: [CurioTask<Void>] = []
    defer {
        // Runs after the loser attempts were cancelled and have ended.
        race.closeAll(except: race.winner)
    }
    do {
        for addr in addrs {
            attempts.append(try await spawn(name: "connect \(addr)") { await race.attempt(addr) })
            // The next attempt starts after the delay, or at once when every
            // attempt so far has failed.
            _ = try await curioIgnoreAfter(happyEyeballsDelay) { try await race.changed(pending: attempts.count) }
            if race.winner != nil { break }
        }
        while race.winner == nil && race.failures.count < attempts.count {
            try await race.changed(pending: attempts.count)
        }
    } catch {
        for t in attempts { try await t.cancel() }
        throw error
    }
    for t in attempts { try await t.cancel() }
    if let s = race.winner { return SocketStream(s) }
    throw race.failures.last ?? SocketError(errno: ECONNREFUSED, operation: "connect to \(host):\(port)")
}

/// The attempts of one happy-eyeballs connect: who won, who failed.
/// Kernel-thread only.
final class ConnectRace: @unchecked Sendable {
    var winner: Socket?
    var extra: [Socket] = []
    var failures: [any Error] = []
    private let event = Event()

    func attempt(_ addr: SocketAddress) async {
        do {
            let s = try await connectOne(addr)
            if winner == nil { winner = s } else { extra.append(s) }
        } catch is CancelledError {
            return
        } catch {
            failures.append(error)
        }
        await event.set()
    }

    /// Waits until an attempt succeeds or every pending one has failed.
    func changed(pending: Int) async throws {
        while winner == nil && failures.count < pending {
            event.clear()
            try await event.wait()
        }
    }

    func closeAll(except keep: Socket?) {
        for s in extra where s !== keep { s.close() }
        extra.removeAll()
    }
}

/// Connects one socket to `addr`; closes it if the connect fails.
func connectOne(_ addr: SocketAddress) async throws -> Socket {
    let s = try Socket(addr.family, .stream)
    do {
        try await s.connect(addr)
        return s
    } catch {
        s.close()
        throw error
    }
}

/// IPv6 and IPv4 addresses alternating, starting with the family of the
/// first (RFC 8305 §4).
func interleaveFamilies(_ addrs: [SocketAddress]) -> [SocketAddress] {
    guard let first = addrs.first else { return [] }
    var same = addrs.filter { $0.family == first.family }
    var other = addrs.filter { $0.family != first.family }
    var out: [SocketAddress] = []
    while !same.isEmpty || !other.isEmpty {
        if !same.isEmpty { out.append(same.removeFirst()) }
        if !other.isEmpty { out.append(other.removeFirst()) }
    }
    return out
}

/// Connects to a Unix stream socket.
public func openUnixConnection(path: String, file: StaticString = #filePath, line: UInt = #line,
                               function: StaticString = #function) async throws -> SocketStream {
    let s = try Socket(.unix, .stream)
    do {
        try await s.connect(SocketAddress(unixPath: path), file: file, line: line, function: function)
    } catch {
        s.close()
        throw error
    }
    return SocketStream(s)
}

/// Serves TCP clients with `handler`, each in its own task with its own
/// stream (closed when the handler ends), until cancelled. `ready`, if
/// given, learns the listening address once the server listens, and can
/// drain the server (``TCPListener/drain(grace:)-(Double)``).
///
/// ```swift
/// try await tcpServer(host: "", port: 25000) { client, addr in
///     for try await line in client { try await client.write(line) }
/// }
/// ```
///
/// The server owns its connection handlers as a task group: cancelling
/// the server cancels every handler, waits for each to end and closes its
/// connection, and only then does the cancellation propagate (so
/// `cancel()` of the server task returns with no handler left). A drain
/// stops accepting, lets the handlers finish for a grace period, cancels
/// the rest the same way and returns normally.
public func tcpServer(host: String, port: Int, reusePort: Bool = false, backlog: Int = 128,
                      ready: TCPListener? = nil,
                      handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void) async throws {
    let addr = try await resolve(host: host, port: port).first!
    let sock = try Socket(addr.family, .stream)
    defer { sock.shutDownAndClose() }
    try sock.setOption(.reuseAddress, true)
    if reusePort { try sock.setOption(.reusePort, true) }
    try sock.bind(addr)
    try sock.listen(backlog)
    try await serveClients(sock, ready: ready, handler: handler)
}

/// Serves Unix-socket clients at `path` with `handler` until cancelled or
/// drained; handlers are owned as in ``tcpServer(host:port:reusePort:backlog:ready:handler:)``.
public func unixServer(path: String, backlog: Int = 128, ready: TCPListener? = nil,
                       handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void) async throws {
    let sock = try Socket(.unix, .stream)
    defer {
        sock.shutDownAndClose()
        unlinkStaleSocket(path)
    }
    unlinkStaleSocket(path)
    try sock.bind(SocketAddress(unixPath: path))
    try sock.listen(backlog)
    try await serveClients(sock, ready: ready, handler: handler)
}

/// Tells the starter of ``tcpServer(host:port:reusePort:backlog:ready:handler:)``
/// (or ``unixServer(path:backlog:ready:handler:)``) when the server listens
/// and where (useful with port 0), and drains it.
///
/// ```swift
/// let listener = TCPListener()
/// let server = try await spawn { try await tcpServer(host: "", port: 0, ready: listener, handler: serve) }
/// let addr = try await listener.wait()
/// ...
/// try await listener.drain(grace: 5)   // stop accepting; 5 s for in-flight clients
/// ```
///
/// ``drain(grace:)-(Double)`` stops accepting (the listening socket closes, so new
/// clients are refused), lets the connection handlers in flight finish for
/// `grace` seconds, then cancels the ones still running (an idle
/// keep-alive client among them) and closes their connections; the server
/// call then returns normally. It works from a task of the server's kernel,
/// from a task of another kernel and from a Swift task on any executor (the
/// request is posted to the server's kernel); ``beginDrain(grace:)`` starts
/// one from a plain thread without waiting. A drain asked for before the
/// server listens takes effect as soon as it does. Cancelling the server
/// during a drain cancels the remaining handlers at once.
public final class TCPListener: @unchecked Sendable {
    private let event = Event()
    let control = ServerControl()
    /// The listening address, once ``wait()`` has returned.
    public private(set) var address: SocketAddress?
    /// Creates a listener to pass as a server's `ready:`.
    public init() {}
    /// Waits until the server listens → its address.
    public func wait() async throws -> SocketAddress {
        try await event.wait()
        return address!
    }
    func announce(_ a: SocketAddress) async {
        address = a
        await event.set()
    }

    /// True once a drain has been asked for. Safe from any thread.
    public var isDraining: Bool { control.isDraining }

    /// Drains the server and returns once it has stopped serving (every
    /// handler ended, every connection closed). Negative, NaN or infinite
    /// `grace` throws ``CurioUsageError``.
    public func drain(grace: Double) async throws {
        try await control.drain(grace: grace)
    }

    /// Drains the server with a `Duration` grace: `drain(grace: .seconds(5))`.
    public func drain(grace: Duration) async throws {
        try await control.drain(grace: seconds(grace))
    }

    /// Starts a drain without waiting for it; safe from any thread.
    /// Negative, NaN or infinite `grace` throws ``CurioUsageError``.
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

func serveClients(_ sock: Socket, ready: TCPListener?,
                  handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void) async throws {
    if let ready { await ready.announce(try sock.localAddress) }
    try await serveOwningHandlers(control: ready?.control, stopAccepting: { sock.shutDownAndClose() }) { handlers in
        let me = try Kernel.currentTask()
        try await acceptForever(sock, site: CallSite(file: #filePath, line: #line, function: #function)) { client, peer in
            handlers.spawn(me, name: "client \(peer)") {
                let stream = SocketStream(client)
                defer { client.shutDownAndClose(); noteConnectionClosed() }
                do {
                    try await handler(stream, peer)
                } catch let e as SocketError where e.errno == ECONNRESET || e.errno == EPIPE {
                    // The client went away.
                } catch let e where !(e is CancelledError) {
                    diagnose(.error, peer: peer, "curio: client handler for \(peer) failed: \(e)\n")
                }
            }
        }
    }
}

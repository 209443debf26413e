import Synchronization
#if canImport(Glibc)
import Glibc
#endif

extension KernelGroup {
    /// How a group server hands connections to its kernels.
    public enum ConnectionSpread: Sendable, Equatable, CustomStringConvertible {
        /// A listener per kernel on the same port (`SO_REUSEPORT`): the
        /// Linux kernel picks a listener for each new connection by a hash of
        /// its addresses and ports. Nothing crosses threads, so it costs
        /// nothing per connection; the spread is even on average but not
        /// exactly (with 100 connections over 2 listeners, 40/60 happens),
        /// and a connection stays with the kernel it hashed to however busy
        /// that kernel is.
        case reusePort
        /// One listener on kernel 0 that accepts every connection and hands
        /// them to the kernels in turn (0, 1, 2, ...): an exact spread by
        /// count, at the price of one cross-thread post per connection and
        /// one accepting kernel.
        case roundRobin

        public var description: String { self == .reusePort ? "reusePort" : "roundRobin" }
    }

    /// Serves TCP clients on every kernel of the group with `handler`, each
    /// client in a task of its own with its own stream (closed when the
    /// handler ends), and returns once the server listens (with port 0, on
    /// the port the system picked: ``GroupTCPServer/address``).
    ///
    /// ```swift
    /// let server = try await group.tcpServer(port: 25000) { client, _ in
    ///     for try await line in client { try await client.write(line) }
    /// }
    /// try await server.drain(grace: 5)
    /// ```
    ///
    /// Each kernel's handlers are owned by that kernel's part of the server
    /// as ``tcpServer(host:port:reusePort:backlog:ready:handler:)`` owns
    /// them: ``GroupTCPServer/drain(grace:)-(Double)`` stops accepting everywhere,
    /// lets every kernel's handlers finish for the grace period and then
    /// cancels the rest; ``GroupTCPServer/cancel()`` cancels them at once.
    /// Callable from any Swift task. Throws what `bind` or `listen` throws
    /// (the port in use, say) before anything runs, and
    /// ``KernelUnavailable`` once the group is shut down.
    public func tcpServer(host: String = "", port: Int, spread: ConnectionSpread = .reusePort, backlog: Int = 1024,
                          handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void)
        async throws -> GroupTCPServer {
        try await tcpServer(host: host, port: port, spread: spread, backlog: backlog, socketHandler: { socket, peer in
            // The part closes the socket (shut down first) when this returns.
            try await handler(SocketStream(socket), peer)
        })
    }

    /// ``tcpServer(host:port:spread:backlog:handler:)`` with the client's
    /// ``Socket`` itself, for servers that receive into buffers of their own
    /// (`recv(into:)`). The socket is closed when the handler ends.
    public func tcpServer(host: String = "", port: Int, spread: ConnectionSpread = .reusePort, backlog: Int = 1024,
                          socketHandler: @escaping @Sendable (Socket, SocketAddress) async throws -> Void)
        async throws -> GroupTCPServer {
        // On a shut-down group every part's task would come back already
        // ended (refused), yet the server would be returned as if it listened
        // and its sockets left to their deinit: refuse before opening any.
        if let k = kernels.first(where: { $0.lifecycle.isShutDownOrStopping }) {
            throw KernelUnavailable(reason: .shutDown, kernelSerial: k.serial)
        }
        let address = try await resolveForGroup(host: host, port: port)
        let listeners = try openListeners(address, count: spread == .reusePort ? count : 1, backlog: backlog)
        let bound = try listeners[0].localAddress
        let served = kernels.map { _ in KernelLoad() }
        let parts = kernels.map { _ in TCPListener() }
        var members: [CurioTask<Void>] = []
        var acceptor: (task: CurioTask<Void>, control: TCPListener)?
        switch spread {
        case .reusePort:
            for (i, k) in kernels.enumerated() {
                let (sock, load, count, ready) = (listeners[i], loads[i], served[i], parts[i])
                members.append(k.addTask(name: "group server k\(i)") {
                    try await serveGroupPart(sock, ready: ready, served: count, load: load, handler: socketHandler)
                })
            }
        case .roundRobin:
            let inboxes = kernels.map { _ in GroupInbox() }
            for (i, k) in kernels.enumerated() {
                let (inbox, load, ready) = (inboxes[i], loads[i], parts[i])
                members.append(k.addTask(name: "group server k\(i)") {
                    try await serveHandedConnections(inbox, ready: ready, load: load, handler: socketHandler)
                })
            }
            let control = TCPListener()
            let sock = listeners[0]
            acceptor = (kernels[0].addTask(name: "group acceptor") {
                try await acceptForGroup(sock, control: control, inboxes: inboxes, served: served)
            }, control)
        }
        return GroupTCPServer(address: bound, spread: spread, members: members, parts: parts, acceptor: acceptor,
                              served: served)
    }

    /// `host` and `port` as an address: numeric hosts at once, names on a
    /// worker thread of kernel 0 (from any task).
    private func resolveForGroup(host: String, port: Int) async throws -> SocketAddress {
        if let numeric = try? SocketAddress(host: host, port: port) { return numeric }
        return try await kernels[0].call { try await resolve(host: host, port: port).first! }
    }

    /// `count` listening sockets on one address, all with `SO_REUSEPORT` when
    /// there are several: the first binds (port 0 picks a port), the others
    /// bind to the port it got. On a failure every one opened is closed.
    private func openListeners(_ address: SocketAddress, count: Int, backlog: Int) throws -> [Socket] {
        var out: [Socket] = []
        do {
            var at = address
            for i in 0..<count {
                let s = try Socket(at.family, .stream)
                out.append(s)
                try s.setOption(.reuseAddress, true)
                if count > 1 { try s.setOption(.reusePort, true) }
                try s.bind(at)
                try s.listen(backlog)
                if i == 0 { at = try s.localAddress }
            }
        } catch {
            for s in out { s.close() }
            throw error
        }
        return out
    }
}

/// A server running on every kernel of a ``KernelGroup``
/// (``KernelGroup/tcpServer(host:port:spread:backlog:handler:)``). Its
/// methods work from any Swift task.
public final class GroupTCPServer: Sendable {
    /// Where it listens, with the real port.
    public let address: SocketAddress
    /// How connections reach the kernels.
    public let spread: KernelGroup.ConnectionSpread
    private let members: [CurioTask<Void>]
    private let parts: [TCPListener]
    private let acceptor: (task: CurioTask<Void>, control: TCPListener)?
    private let served: [KernelLoad]

    init(address: SocketAddress, spread: KernelGroup.ConnectionSpread, members: [CurioTask<Void>],
         parts: [TCPListener], acceptor: (task: CurioTask<Void>, control: TCPListener)?, served: [KernelLoad]) {
        self.address = address
        self.spread = spread
        self.members = members
        self.parts = parts
        self.acceptor = acceptor
        self.served = served
    }

    /// Connections each kernel has taken so far, by kernel index: how evenly
    /// the spread works. Any thread.
    public var connectionsPerKernel: [Int] { served.map(\.value) }

    /// Stops accepting on every kernel, lets the handlers in flight finish
    /// for `grace` seconds, cancels the ones still running, and returns once
    /// every kernel's part has stopped (every handler ended, every
    /// connection closed). Negative, NaN or infinite `grace` throws
    /// ``CurioUsageError``.
    public func drain(grace: Double) async throws {
        try beginDrain(grace: grace)
        if let acceptor { try await acceptor.task.wait() }
        for m in members { try await m.wait() }
    }

    /// ``drain(grace:)`` with a `Duration`.
    public func drain(grace: Duration) async throws {
        try await drain(grace: seconds(grace))
    }

    /// Starts a drain without waiting for it; safe from any thread.
    public func beginDrain(grace: Double) throws {
        // The kernels' parts learn the grace before the acceptor stops, so
        // none of them mistakes the acceptor's end for a failure.
        for p in parts { try p.beginDrain(grace: grace) }
        try acceptor?.control.beginDrain(grace: 0)
    }

    /// Cancels the server on every kernel: each kernel's handlers are
    /// cancelled and waited for, their connections closed, before this
    /// returns.
    public func cancel() async throws {
        if let acceptor { try await acceptor.task.cancel() }
        for m in members { try await m.cancel() }
    }

    /// Waits until the server has stopped on every kernel; rethrows the
    /// first failure of a kernel's part (an accept that failed for good).
    public func wait() async throws {
        var failure: (any Error)?
        if let acceptor {
            do { _ = try await acceptor.task.join() } catch { failure = failure ?? error }
        }
        for m in members {
            do { _ = try await m.join() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}

// MARK: - The parts on each kernel

/// One kernel's part of a `.reusePort` server: its own listener and the
/// handlers of the connections it accepts.
private func serveGroupPart(_ sock: Socket, ready: TCPListener, served: KernelLoad, load: KernelLoad,
                            handler: @escaping @Sendable (Socket, SocketAddress) async throws -> Void) async throws {
    defer { sock.shutDownAndClose() }
    await ready.announce(try sock.localAddress)
    try await serveOwningHandlers(control: ready.control, stopAccepting: { sock.shutDownAndClose() }) { handlers in
        let me = try Kernel.currentTask()
        try await acceptForever(sock, site: CallSite(file: #filePath, line: #line, function: #function)) { client, peer in
            served.add(1)
            spawnGroupHandler(handlers, me, client, peer, load, handler)
        }
    }
}

/// One kernel's part of a `.roundRobin` server: the handlers of the
/// connections the acceptor hands it.
private func serveHandedConnections(_ inbox: GroupInbox, ready: TCPListener, load: KernelLoad,
                                    handler: @escaping @Sendable (Socket, SocketAddress) async throws -> Void) async throws {
    do {
        try await serveOwningHandlers(control: ready.control, stopAccepting: {}) { handlers in
            let me = try Kernel.currentTask()
            while case .connection(let client, let peer) = try await inbox.queue.get() {
                spawnGroupHandler(handlers, me, client, peer, load, handler)
            }
        }
    } catch {
        await inbox.closeAndDiscard()
        throw error
    }
    await inbox.closeAndDiscard()
}

/// Starts a connection's handler as a task its kernel's part owns.
private func spawnGroupHandler(_ handlers: ServerHandlers, _ me: AnyCurioTask, _ client: Socket, _ peer: SocketAddress,
                               _ load: KernelLoad,
                               _ handler: @escaping @Sendable (Socket, SocketAddress) async throws -> Void) {
    handlers.spawn(me, name: "client \(peer)") {
        load.add(1)
        defer {
            load.add(-1)
            client.shutDownAndClose()
            noteConnectionClosed()
        }
        do {
            try await handler(client, peer)
        } catch let e as SocketError where e.errno == ECONNRESET || e.errno == EPIPE {
            // The client went away.
        } catch let e where !(e is CancelledError) {
            diagnose(.error, peer: peer, "curio: client handler for \(peer) failed: \(e)\n")
        }
    }
}

/// The acceptor of a `.roundRobin` server (a task of kernel 0): accepts and
/// hands each connection to the next kernel's inbox. When it stops, every
/// part is told, so none waits for connections that will never come.
private func acceptForGroup(_ sock: Socket, control: TCPListener, inboxes: [GroupInbox],
                            served: [KernelLoad]) async throws {
    defer {
        sock.shutDownAndClose()
        for inbox in inboxes { inbox.deliver(.end) }
    }
    var turn = 0
    try await serveOwningHandlers(control: control.control, stopAccepting: { sock.shutDownAndClose() }) { _ in
        try await acceptForever(sock, site: CallSite(file: #filePath, line: #line, function: #function)) { client, peer in
            let i = turn
            turn = (turn + 1) % inboxes.count
            served[i].add(1)
            inboxes[i].deliver(.connection(client, peer))
        }
    }
}

/// Connections handed to one kernel's part. Once the part has ended,
/// whatever arrives is closed at once, so no descriptor waits in a queue
/// that nobody reads.
final class GroupInbox: Sendable {
    enum Item: Sendable {
        case connection(Socket, SocketAddress)
        /// The acceptor has stopped.
        case end
    }

    let queue = UniversalQueue<Item>()
    private let closed = Locked(false)

    /// Queues `item` (never blocks), or closes its connection if the part
    /// has ended. Any thread.
    func deliver(_ item: Item) {
        let refused = closed.withLock { c -> Bool in
            if c { return true }
            queue.put(item)
            return false
        }
        if refused, case .connection(let s, _) = item { s.close() }
    }

    /// The part has ended: closes what waits and refuses what comes.
    func closeAndDiscard() async {
        closed.withLock { $0 = true }
        // Items waiting are taken without blocking (and without meeting a
        // pending cancellation); an empty queue ends the loop.
        while let item = try? await queue.get(timeout: 0) {
            if case .connection(let s, _) = item { s.close() }
        }
    }
}

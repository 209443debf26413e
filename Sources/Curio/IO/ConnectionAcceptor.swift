#if canImport(Glibc)
import Glibc
#endif

/// A listener's accept loop as one multishot request: the servers'
/// acceptor. On io_uring one `IORING_ACCEPT_MULTISHOT` submission accepts
/// every connection until it is stopped, instead of one submission (and one
/// completion's worth of bookkeeping) per connection; on epoll the C kernel
/// accepts until `EAGAIN` on each readiness edge. Connections that arrive
/// while the server's task is busy wait here, already accepted, in arrival
/// order.
///
/// The acceptor holds the listener's receiving direction for its life (a
/// second accept on the listener meanwhile is ``ResourceBusy``), like one
/// long `accept()`. When it is dropped — the accept loop ended by a
/// cancellation, a drain or an error — the request is stopped and the
/// connections accepted but not yet taken are closed (their peers see the
/// close, as they would if the listener's backlog were dropped), so no
/// descriptor is left behind. A request that ends on an error (out of
/// descriptors: `EMFILE`) throws it from ``next(site:)``, and the next call
/// starts a new request, so the caller's back-off and retry work as with
/// single accepts. Where the kernel refuses the multishot request (at
/// submission, or with `EINVAL` before any connection: Linux before 5.19)
/// the acceptor falls back to single accepts.
///
/// io_uring reads the descriptor limit (`RLIMIT_NOFILE`) when an accept is
/// armed, so a limit lowered while a multishot accept runs takes effect
/// from the next one (after an error, or for the next server).
final class ConnectionAcceptor {
    let socket: Socket
    private var receiver: AcceptReceiver?
    private var claimed = false
    /// The backend refused the multishot request: single accepts instead.
    private var singleShot = false

    init(socket: Socket) { self.socket = socket }

    /// False once the acceptor fell back to single accepts (tests).
    var usesMultishot: Bool { !singleShot }

    /// Connections accepted and not taken yet (tests).
    var waitingCount: Int { receiver?.waitingCount ?? 0 }

    deinit {
        if let r = receiver { r.abandon() }
        if claimed { socket.endStreamReceiving() }
    }

    /// The next connection, waiting for one if none has arrived.
    func next(site: CallSite) async throws -> (Socket, SocketAddress) {
        while true {
            guard !singleShot, let (r, t) = try start() else {
                return try await socket.accept(file: site.file, line: site.line, function: site.function)
            }
            if let fd = r.popFirst() {
                let client = Socket(accepted: fd, family: socket.family, kind: socket.kind)
                // A multishot accept does not report the peer's address, and
                // a peer that reset before we asked has none any more; its
                // connection is still served (the bytes it sent first are
                // there to read, then the reset), under the family's
                // unspecified address.
                let peer = (try? client.peerAddress) ?? SocketAddress.unspecified(socket.family)
                return (client, peer)
            }
            if let end = r.end {
                receiver = nil
                if end == -Int(EINVAL) && !r.deliveredAny {
                    // Linux before 5.19 refuses IORING_ACCEPT_MULTISHOT with
                    // EINVAL in the completion. A socket that is not
                    // listening gives EINVAL too, and the single accept
                    // then throws it.
                    singleShot = true
                    socket.endStreamReceiving()
                    claimed = false
                    continue
                }
                if end == -Int(ECANCELED) && socket.fd < 0 {
                    throw SocketError(errno: EBADF, operation: "accept (the listening socket was closed)")
                }
                throw SocketError(errno: Int32(-end), operation: "accept")
            }
            _ = try await r.kernel.block(t, .readWait, on: r.waiters, deadline: .max, site: site)
        }
    }

    /// The receiver of the running request, starting one if none runs;
    /// nil when the kernel refuses multishot accept (single accepts then).
    private func start() throws -> (AcceptReceiver, AnyCurioTask)? {
        let t = try Kernel.currentTask("accept")
        if let r = receiver {
            guard r.kernel === t.kernel else {
                throw CurioUsageError(.wrongKernel, "accept: the listener's accept loop belongs to another kernel's task")
            }
            return (r, t)
        }
        if !claimed {
            _ = try socket.beginStreamReceiving("accept")
            claimed = true
        }
        let kernel = t.kernel
        let r = AcceptReceiver(kernel: kernel)
        // The C request holds the receiver until its end is dispatched.
        let token = Unmanaged.passRetained(r).toOpaque()
        switch kernel.startRequest(.acceptEach(socket.fd), token: token) {
        case .pending(let handle):
            r.handle = handle
        case .finished(let res):  // refused at once
            Unmanaged<AcceptReceiver>.fromOpaque(token).release()
            if res == -Int(EINVAL) || res == -Int(EOPNOTSUPP) {
                // A kernel without multishot accept.
                singleShot = true
                socket.endStreamReceiving()
                claimed = false
                return nil
            }
            throw SocketError(errno: Int32(-res), operation: "accept")
        }
        receiver = r
        return (r, t)
    }
}

/// The kernel side of one multishot accept: the descriptors accepted and
/// not taken yet, the end, and the acceptor task waiting for either.
///
/// @unchecked Sendable: as its base class.
final class AcceptReceiver: MultishotReceiver<Int32>, @unchecked Sendable {
    /// The request has delivered a connection (so it is supported here).
    private(set) var deliveredAny = false

    /// Stops the request and closes what was accepted but not taken.
    func abandon() {
        if end == nil, handle != 0 { kernel.cancelRequest(handle) }
        discardAll()
    }

    /// A connection nobody will serve: closed (its peer sees the close).
    override func discard(_ fd: Int32) { Glibc.close(fd) }

    static func accepted(_ token: UnsafeMutableRawPointer?, fd: Int32) {
        let r = Unmanaged<AcceptReceiver>.fromOpaque(token!).takeUnretainedValue()
        r.deliveredAny = true
        r.arrived(fd)
    }

    static func ended(_ token: UnsafeMutableRawPointer?, result: Int) {
        Unmanaged<AcceptReceiver>.fromOpaque(token!).takeRetainedValue().ended(result)
    }
}

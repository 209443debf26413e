#if canImport(Glibc)
import Glibc
#endif

/// A socket's send that returns before the system has taken the bytes —
/// io_uring only.
///
/// Why: on io_uring a `sendAll` that finds room in the socket would cost a
/// `send(2)` of its own (0.5–0.9 µs per round trip of the echo benchmark on
/// a VM, more than all of Curio's user-space work), while an SQE queued
/// for the loop's next `io_uring_enter` rides along with the receive that
/// follows it. So a `sendAll` of at most ``limit`` bytes copies them here,
/// queues one request (`IORequest.sendBehind`) and returns: the copy is the socket's
/// extended send buffer, as the socket's own buffer is for a `send(2)`.
///
/// What stays true for the caller:
/// - Order: at most one send behind is in flight per socket, and every
///   later send on the socket (`send`, `sendAll`, `sendTo`) first waits
///   for it (``settle(_:site:)``), so bytes leave in the order they were
///   handed over.
/// - Errors: a send behind that fails (`ECONNRESET`, `EPIPE`) is reported
///   by the socket's next send, as a `send(2)` reports an error of bytes
///   the socket had already taken.
/// - Close: ``Socket/close()`` issues a send behind that is still queued
///   before the descriptor goes (`Kernel.forgetDescriptor`), and an issued send holds
///   the socket itself, so closing right after `sendAll` delivers every
///   byte and the peer sees the end after them. A `shutdown` asked for
///   while the send is still waiting for room is carried out when it ends.
/// - Lifetime: while a send is in flight the C request holds this object
///   (a retained token) and this object holds the socket, so neither the
///   buffer nor the socket can go away under the system.
///
/// On epoll nothing changes: every send is a `send(2)` at once (epoll has
/// no batching to gain), and the kernel's `queuesSendsBehind` is false.
///
/// Kernel-thread only, like the socket's other state.
final class SendBehind {
    /// The largest send handed over this way; larger ones are sent as
    /// before (their copy would cost more than the system call saved).
    static let limit = 16 * 1024

    @exclusivity(unchecked) private var buffer = PinnedBuffer()
    /// A send behind is queued or being carried out by the system.
    // Kernel-thread state in short, non-overlapping accesses (see Socket's
    // direction claims): no run-time exclusivity checks on the hot path.
    @exclusivity(unchecked) private(set) var inFlight = false
    /// The socket, held while a send is in flight.
    @exclusivity(unchecked) private var socket: Socket?
    /// The errno of a send behind that failed, for the next send to throw.
    @exclusivity(unchecked) private var failure: Int32 = 0
    /// The bytes of the send in flight.
    @exclusivity(unchecked) private var length = 0
    /// A `shutdown(2)` asked for while the send waited for room.
    @exclusivity(unchecked) private var shutdownAfter: Int32?
    /// Tasks waiting for the send in flight to end.
    private let waiters = WaitQueue()

    /// Where the copies go (nil before the first send), for tests.
    var bufferAddress: UnsafeMutableRawPointer? { buffer.address }
    var bufferCapacity: Int { buffer.capacity }

    /// Whether a later send must wait or throw first.
    var needsSettling: Bool { inFlight || failure != 0 }

    /// Copies `bytes` and queues them for `socket`; false when the kernel
    /// could not take the request (then nothing was sent and the caller
    /// sends as usual). The caller has settled any earlier send.
    func start(_ socket: Socket, _ fd: Int32, _ bytes: UnsafeRawBufferPointer, kernel: Kernel) -> Bool {
        let region = buffer.region(bytes.count)
        region.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        let token = Unmanaged.passRetained(self)
        guard case .pending = kernel.startRequest(.sendBehind(fd, from: region.baseAddress!, count: bytes.count),
                                                  token: token.toOpaque()) else {
            // Refused at once (no memory for the request): nothing was queued.
            token.release()
            return false
        }
        inFlight = true
        length = bytes.count
        self.socket = socket
        return true
    }

    /// Waits until no send behind is in flight, then throws the failure of
    /// the last one, if it failed (once).
    func settle(_ t: AnyCurioTask, site: CallSite) async throws {
        while inFlight {
            _ = try await t.kernel.block(t, .writeWait, on: waiters, deadline: .max, site: site)
        }
        try throwFailure()
    }

    /// Throws the failure of the last send behind, if it failed (once).
    func throwFailure() throws {
        guard failure != 0 else { return }
        let e = failure
        failure = 0
        throw SocketError(errno: e, operation: "send (of bytes an earlier sendAll handed over)")
    }

    /// A `shutdown(2)` of `socket` with `how`, now or, when the send behind
    /// is still waiting for room in the socket, once it has ended, so the
    /// end of the stream never overtakes bytes already handed over.
    /// True when it was done now.
    func shutdownWhenSent(_ fd: Int32, how: Int32, kernel: Kernel) -> Bool {
        guard inFlight, how != Int32(SHUT_RD), kernel.flushSendsBehind(fd) > 0 else { return true }
        shutdownAfter = shutdownAfter.map { $0 == how ? how : Int32(SHUT_RDWR) } ?? how
        return false
    }

    /// The kernel's completion of a send behind (the event no task waits for).
    static func ended(_ token: UnsafeMutableRawPointer?, result: Int, kernel: Kernel) {
        let b = Unmanaged<SendBehind>.fromOpaque(token!).takeRetainedValue()
        b.inFlight = false
        let socket = b.socket
        b.socket = nil
        if result < 0 {
            // -ECANCELED: the kernel ended without carrying it out.
            b.failure = Int32(-result)
        } else if result < b.length {
            // MSG_WAITALL stops short only when the connection can take no
            // more (a shutdown or a reset between two parts).
            b.failure = EPIPE
        }
        if let how = b.shutdownAfter {
            b.shutdownAfter = nil
            if let fd = socket?.descriptorIfOpen { _ = Glibc.shutdown(fd, how) }
        }
        kernel.wakeAll(b.waiters)
        // A chunk handler's replies may wait for this one (ChunkHandler.swift).
        socket?.chunkHandling?.sendBehindEnded()
    }
}

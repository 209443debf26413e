#if canImport(Glibc)
import Glibc
#endif

/// A socket whose blocking calls suspend the calling task, as curio's
/// `curio.socket`. Every blocking call is one kernel request: an io_uring
/// SQE on the default build, a try-then-wait on epoll.
///
/// ```swift
/// let sock = try Socket(.inet, .stream)
/// try sock.setOption(.reuseAddress, true)
/// try sock.bind(("", 25000))
/// try sock.listen(5)
/// let (client, addr) = try await sock.accept()
/// ```
///
/// A socket belongs to the tasks of one kernel. Two tasks receiving (or
/// sending) on one socket at the same time get ``ResourceBusy``. Closing
/// a socket cancels what is pending on it.
///
/// The bytes of ``send(_:file:line:function:)-([UInt8],_,_,_)`` and friends are copied into a
/// buffer the socket owns (at most 64 KiB at a time) before the request
/// goes to the system, and received bytes arrive in another: the system
/// never holds a pointer into a Swift array, and neither buffer is
/// allocated again once it has grown to what the traffic needs.
// @unchecked Sendable: the descriptor state, direction claims and buffers
// are touched only by the tasks of the kernel the object is bound to
// (`affinity.task` checks the caller's kernel first); `close` from another
// thread hands the descriptor to that kernel (`closeRegistered`).
public final class Socket: ByteChannel, @unchecked Sendable {
    /// The kind of a socket.
    public enum Kind: Sendable {
        /// A byte stream (`SOCK_STREAM`: TCP, Unix stream) or datagrams (`SOCK_DGRAM`: UDP).
        case stream, datagram
        var raw: Int32 { self == .stream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue) }
    }

    /// `shutdown(_:)` directions.
    public enum ShutdownHow: Sendable {
        /// Which direction ``shutdown(_:)`` ends: receiving, sending, or both.
        case read, write, both
        var raw: Int32 {
            switch self {
            case .read: return Int32(SHUT_RD)
            case .write: return Int32(SHUT_WR)
            case .both: return Int32(SHUT_RDWR)
            }
        }
    }

    /// Options for ``setOption(_:_:)-(_,Bool)`` and ``getOption(_:)``.
    public struct Option: Sendable, Hashable {
        let level: Int32
        let name: Int32
        /// `SO_REUSEADDR`: bind a port that still has connections in TIME_WAIT.
        public static let reuseAddress = Option(level: SOL_SOCKET, name: SO_REUSEADDR)
        /// `SO_REUSEPORT`: several sockets (one kernel per core) listen on one port.
        public static let reusePort = Option(level: SOL_SOCKET, name: SO_REUSEPORT)
        /// `SO_KEEPALIVE`: probe idle connections.
        public static let keepAlive = Option(level: SOL_SOCKET, name: SO_KEEPALIVE)
        /// `SO_BROADCAST`: allow sending datagrams to broadcast addresses.
        public static let broadcast = Option(level: SOL_SOCKET, name: SO_BROADCAST)
        /// `SO_RCVBUF`: the receive buffer's size in bytes.
        public static let receiveBufferSize = Option(level: SOL_SOCKET, name: SO_RCVBUF)
        /// `SO_SNDBUF`: the send buffer's size in bytes.
        public static let sendBufferSize = Option(level: SOL_SOCKET, name: SO_SNDBUF)
        /// `TCP_NODELAY`: send small writes at once (no Nagle delay).
        public static let noDelay = Option(level: Int32(IPPROTO_TCP), name: TCP_NODELAY)
        /// `IPV6_V6ONLY`: an IPv6 socket that does not also take IPv4 connections.
        public static let ipv6Only = Option(level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY)
        /// Any other integer option: `Socket.Option(level: SOL_SOCKET, name: SO_PRIORITY)`.
        public init(level: Int32, name: Int32) {
            self.level = level
            self.name = name
        }
    }

    /// The descriptor, or -1 once closed.
    @exclusivity(unchecked) public private(set) var fd: Int32
    /// The socket's family and kind.
    public let family: SocketAddress.Family
    /// Stream or datagram.
    public let kind: Kind
    private let affinity = Affinity()
    // The direction claims and the send behind are touched by every receive
    // and send, on the kernel's thread, in accesses that never overlap (no
    // inout borrow spans a suspension): the run-time exclusivity checks cost
    // about a tenth of the echo round trip's user-space instructions and
    // could never fire, so they are off for these declarations only.
    @exclusivity(unchecked) private var receiving = false
    @exclusivity(unchecked) private var sending = false
    /// Where receives land and sends are copied to, so a receive allocates
    /// only its result and a send nothing.
    private var rxBuffer = PinnedBuffer()
    private var txBuffer = PinnedBuffer()
    /// Small sends queued behind the caller on io_uring (SendBehind.swift).
    @exclusivity(unchecked) private var behind: SendBehind?
    /// The chunk handler running on this socket, told when a send behind
    /// ends (ChunkHandler.swift); nil otherwise.
    @exclusivity(unchecked) var chunkHandling: ChunkHandling?
    /// shutdown(.write) or (.both) was called: a send fails with EPIPE at
    /// once, so none goes behind (it could only report it later).
    @exclusivity(unchecked) private var writeShutDown = false
    /// Addresses and message headers that must stay put while a request is
    /// in flight: one for the receiving direction, one for the sending one.
    private let rx = UnsafeMutablePointer<IOSlot>.allocate(capacity: 1)
    private let tx = UnsafeMutablePointer<IOSlot>.allocate(capacity: 1)

    /// Creates a socket: `try Socket(.inet, .stream)`.
    public init(_ family: SocketAddress.Family, _ kind: Kind) throws {
        let fd = Glibc.socket(family.raw, kind.raw | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SocketError(errno: errno, operation: "socket") }
        self.fd = fd
        self.family = family
        self.kind = kind
        rx.initialize(to: IOSlot())
        tx.initialize(to: IOSlot())
    }

    /// A socket the kernel accepted with `SOCK_NONBLOCK | SOCK_CLOEXEC`:
    /// nothing to check or set.
    init(accepted fd: Int32, family: SocketAddress.Family, kind: Kind) {
        self.fd = fd
        self.family = family
        self.kind = kind
        rx.initialize(to: IOSlot())
        tx.initialize(to: IOSlot())
    }

    /// Wraps a descriptor this socket now owns (accepted, or from elsewhere).
    /// The descriptor is switched to non-blocking mode.
    public init(adopting fd: Int32, family: SocketAddress.Family, kind: Kind) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        self.fd = fd
        self.family = family
        self.kind = kind
        rx.initialize(to: IOSlot())
        tx.initialize(to: IOSlot())
    }

    deinit {
        if fd >= 0 {
            // The owner forgot close(): nothing can be pending (a pending
            // operation keeps the socket alive), but the kernel must still
            // forget the descriptor before its number is reused.
            closeRegistered(fd, kernel: affinity.kernel)
        }
        rx.deallocate()
        tx.deallocate()
    }

    /// The receive and send buffers' sizes and addresses, for tests.
    var pinnedBuffers: (receive: Int, send: Int, receiveAt: UnsafeMutableRawPointer?, sendAt: UnsafeMutableRawPointer?) {
        // Small sends on io_uring go through the send behind's buffer.
        let sendAt = behind?.bufferAddress ?? txBuffer.address
        return (rxBuffer.capacity, behind?.bufferCapacity ?? txBuffer.capacity, rxBuffer.address, sendAt)
    }

    /// True while a `sendAll` that returned early (io_uring) still has bytes
    /// on their way: code that writes to the descriptor itself must wait.
    package var hasSendInFlight: Bool { behind?.inFlight ?? false }

    /// The descriptor, or nil once closed.
    var descriptorIfOpen: Int32? { fd >= 0 ? fd : nil }

    /// Waits for a send behind in flight and throws its failure: every
    /// send does this first, so bytes leave in the order they were given.
    @inline(__always)
    private func settleSendBehind(_ t: AnyCurioTask, site: CallSite) async throws {
        if let b = behind, b.needsSettling { try await b.settle(t, site: site) }
    }

    /// ``settleSendBehind(_:site:)`` for a `sendAll`, whose cancellation
    /// must say how much of its own buffer went out: none yet.
    private func settleBeforeSendAll(_ t: AnyCurioTask, site: CallSite) async throws {
        guard let b = behind, b.needsSettling else { return }
        do {
            try await b.settle(t, site: site)
        } catch let e as CancelledError {
            throw withProgress(e, bytesSent: 0)
        }
    }

    /// Hands `bytes` (all of them) to a send behind → true when queued.
    /// Only where the kernel batches sends (io_uring), for sends of at most
    /// ``SendBehind/limit`` bytes, for a task whose pending cancellation
    /// has been delivered (this is still a blocking call's point).
    @inline(__always)
    private func sendBehind(_ t: AnyCurioTask, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
        let k = t.kernel
        guard mayGoBehind(bytes.count, on: k) else { return false }
        try k.checkDeliverable(t)
        return startBehind(bytes, kernel: k)
    }

    /// Whether a send of `count` bytes may go behind the caller on `k`.
    @inline(__always)
    private func mayGoBehind(_ count: Int, on k: Kernel) -> Bool {
        count > 0 && count <= SendBehind.limit && !writeShutDown && k.queuesSendsBehind
    }

    /// Copies `bytes` into the socket's send behind and queues it → false
    /// when the kernel refused the request (nothing was queued). The caller
    /// has checked ``mayGoBehind(_:on:)`` and that none is in flight.
    @inline(__always)
    private func startBehind(_ bytes: UnsafeRawBufferPointer, kernel k: Kernel) -> Bool {
        let b: SendBehind
        if let have = behind { b = have } else { b = SendBehind(); behind = b }
        return b.start(self, fd, bytes, kernel: k)
    }

    /// One non-blocking `send(2)` → the bytes it took, or nil when the
    /// socket has no room now (or the call was interrupted).
    @inline(__always)
    private func sendNow(_ base: UnsafeRawPointer?, _ count: Int, flags: Int32) throws -> Int? {
        let n = Glibc.send(fd, base, count, flags | Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        if n >= 0 { return n }
        let e = errno
        if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return nil }
        throw SocketError(errno: e, operation: "send")
    }

    private func checkOpen(_ what: StaticString) throws {
        if fd < 0 { throw SocketError(errno: EBADF, operation: "\(what) on a closed socket") }
    }

    // MARK: Options and addresses

    /// Sets a boolean option: `try sock.setOption(.reuseAddress, true)`.
    public func setOption(_ option: Option, _ value: Bool) throws {
        try setOption(option, value ? 1 : 0)
    }

    /// Sets an integer option.
    public func setOption(_ option: Option, _ value: Int) throws {
        try checkOpen("setOption")
        var v = Int32(value)
        if setsockopt(fd, option.level, option.name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw SocketError(errno: errno, operation: "setsockopt")
        }
    }

    /// Reads an integer option.
    public func getOption(_ option: Option) throws -> Int {
        try checkOpen("getOption")
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, option.level, option.name, &v, &len) != 0 {
            throw SocketError(errno: errno, operation: "getsockopt")
        }
        return Int(v)
    }

    /// Binds to `("", 25000)`-style host and port (`""`: every interface).
    public func bind(_ address: (String, Int)) throws {
        try bind(SocketAddress(host: address.0, port: address.1, family: family == .unix ? nil : family))
    }

    /// Binds to an address.
    public func bind(_ address: SocketAddress) throws {
        try checkOpen("bind")
        let r = address.withSockaddr { Glibc.bind(fd, $0, $1) }
        if r != 0 { throw SocketError(errno: errno, operation: "bind to \(address)") }
    }

    /// Starts listening.
    public func listen(_ backlog: Int = 128) throws {
        try checkOpen("listen")
        if Glibc.listen(fd, Int32(clamping: backlog)) != 0 {
            throw SocketError(errno: errno, operation: "listen")
        }
    }

    /// The address this socket is bound to (`getsockname`).
    public var localAddress: SocketAddress {
        get throws {
            try checkOpen("localAddress")
            var st = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let r = withUnsafeMutablePointer(to: &st) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            if r != 0 { throw SocketError(errno: errno, operation: "getsockname") }
            return SocketAddress(storage: st, length: len)
        }
    }

    /// The address of the peer (`getpeername`).
    public var peerAddress: SocketAddress {
        get throws {
            try checkOpen("peerAddress")
            var st = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let r = withUnsafeMutablePointer(to: &st) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
            }
            if r != 0 { throw SocketError(errno: errno, operation: "getpeername") }
            return SocketAddress(storage: st, length: len)
        }
    }

    // MARK: Blocking calls

    /// Claims one direction for the calling task, or throws ResourceBusy.
    private func begin(_ receive: Bool, _ what: StaticString) throws -> AnyCurioTask {
        let t = try affinity.task(what)
        try checkOpen(what)
        try claim(receive: receive)
        return t
    }

    /// Claims one direction, or throws ResourceBusy.
    private func claim(receive: Bool) throws {
        if receive {
            if receiving { throw ResourceBusy("another task is already receiving on socket \(fd)") }
            receiving = true
        } else {
            if sending { throw ResourceBusy("another task is already sending on socket \(fd)") }
            sending = true
        }
    }

    /// The receiving direction for a streaming receive (ReceiveStream.swift),
    /// held until ``endStreamReceiving()``.
    func beginStreamReceiving(_ what: StaticString) throws -> AnyCurioTask { try begin(true, what) }
    func endStreamReceiving() { receiving = false }

    /// The sending direction for a chunk handler (ChunkHandler.swift), held
    /// until ``endHandlerSending()``: its replies are the socket's only sends.
    func beginHandlerSending() throws { try claim(receive: false) }
    func endHandlerSending() { sending = false }

    /// A send behind is in flight on this socket.
    var sendBehindInFlight: Bool { behind?.inFlight ?? false }

    /// Hands as much of `bytes` to the system as it takes now, without
    /// waiting → how many bytes it took (all of them, some, or none when the
    /// socket's buffer is full or an earlier send behind is still in
    /// flight, which must go first). For a chunk handler's replies, on the
    /// kernel's thread, with the sending direction claimed.
    func sendWithoutWaiting(_ bytes: UnsafeRawBufferPointer, kernel k: Kernel) throws -> Int {
        try checkOpen("send")
        if writeShutDown { throw SocketError(errno: EPIPE, operation: "send (after shutdown)") }
        if let b = behind, b.needsSettling {
            if b.inFlight { return 0 }
            try b.throwFailure()
        }
        if mayGoBehind(bytes.count, on: k), startBehind(bytes, kernel: k) { return bytes.count }
        return try sendNow(bytes.baseAddress, bytes.count, flags: 0) ?? 0
    }

    @inline(__always)
    private func request(_ t: AnyCurioTask, _ request: IORequest, state: TaskState, deadline: Int64 = .max,
                         site: CallSite) async throws -> Int {
        try await t.kernel.performIO(t, request, state, deadline: deadline, site: site)
    }

    /// Accepts a connection → the new socket and the peer's address.
    public func accept(file: StaticString = #filePath, line: UInt = #line,
                       function: StaticString = #function) async throws -> (Socket, SocketAddress) {
        let t = try begin(true, "accept")
        defer { receiving = false }
        let site = CallSite(file: file, line: line, function: function)
        while true {
            let r = try await request(t, .accept(fd, address: rx.addressPointer), state: .readWait, site: site)
            if r >= 0 {
                let client = Socket(accepted: Int32(r), family: family, kind: kind)
                let peer = (try? client.peerAddress) ?? SocketAddress(storage: rx.pointee.address, length: socklen_t(MemoryLayout<sockaddr_storage>.size))
                return (client, peer)
            }
            // A connection that died before we took it is not our error.
            if r == -Int(ECONNABORTED) || r == -Int(EINTR) { continue }
            throw SocketError(errno: Int32(-r), operation: "accept")
        }
    }

    /// Connects to `address`.
    public func connect(_ address: SocketAddress, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        let t = try begin(false, "connect")
        defer { sending = false }
        let site = CallSite(file: file, line: line, function: function)
        tx.pointee.address = address.storage
        // Both backends finish a non-blocking connect themselves (they wait
        // for writability and read SO_ERROR below the backend interface).
        let r = try await request(t, .connect(fd, address: tx.addressPointer, length: Int(address.length)),
                                  state: .writeWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "connect to \(address)") }
    }

    /// Connects to `("127.0.0.1", 25000)`-style numeric host and port.
    public func connect(_ address: (String, Int), file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        try await connect(SocketAddress(host: address.0, port: address.1, family: family),
                          file: file, line: line, function: function)
    }

    /// The most bytes one ``recv(_:file:line:function:)`` returns (and one
    /// send moves): 64 KiB. Larger requests are served in pieces of this
    /// size, so a huge `maxBytes` neither fails nor pins memory.
    public static let maxTransfer = PinnedBuffer.limit

    /// Receives up to `maxBytes` → the bytes that arrived (at most
    /// ``maxTransfer`` at a time, as a stream socket may always return
    /// fewer); an empty result means the peer closed. `maxBytes` must be
    /// positive: zero or negative throws ``CurioUsageError`` (`.invalidArgument`).
    public func recv(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recv: maxBytes must be > 0, got \(maxBytes)")
        }
        // Claim the receiving direction before touching the buffer: another
        // task's receive may be in flight into it (or, from another kernel,
        // it may be another thread's).
        let t = try begin(true, "recv")
        defer { receiving = false }
        let count = Swift.min(maxBytes, PinnedBuffer.limit)
        let buf = rxBuffer.region(count)
        let n = try await receive(t, into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<count]), flags: 0,
                                  site: CallSite(file: file, line: line, function: function))
        return Array(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
    }

    /// Receives into the caller's buffer → the number of bytes (0 at end of
    /// stream). The buffer must stay valid until this returns.
    public func recv(into buffer: UnsafeMutableRawBufferPointer, flags: Int32 = 0,
                     file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int {
        let t = try begin(true, "recv")
        defer { receiving = false }
        return try await receive(t, into: buffer, flags: flags, site: CallSite(file: file, line: line, function: function))
    }

    /// One receive for `t`, which has claimed the receiving direction.
    @inline(__always)
    private func receive(_ t: AnyCurioTask, into buffer: UnsafeMutableRawBufferPointer, flags: Int32,
                         site: CallSite) async throws -> Int {
        let r = try await request(t, .receive(fd, into: buffer.baseAddress, count: buffer.count, flags: flags),
                                  state: .readWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "recv") }
        return r
    }

    /// Sends some of `bytes` (at most ``maxTransfer``) → how many were sent.
    /// The bytes are copied into the socket's own buffer first.
    @discardableResult
    public func send(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int {
        let t = try begin(false, "send")
        defer { sending = false }
        let site = CallSite(file: file, line: line, function: function)
        try await settleSendBehind(t, site: site)
        let (buf, n) = txBuffer.load(bytes, from: 0)
        return try await sendOnce(t, buf.baseAddress!, n, flags: 0, site: site)
    }

    /// Sends some of the caller's buffer → how many bytes were sent. The
    /// memory must stay valid until this returns (the system reads it
    /// directly, across the suspension).
    @discardableResult
    public func send(_ buffer: UnsafeRawBufferPointer, flags: Int32 = 0,
                     file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int {
        let t = try begin(false, "send")
        defer { sending = false }
        let site = CallSite(file: file, line: line, function: function)
        try await settleSendBehind(t, site: site)
        return try await sendOnce(t, buffer.baseAddress, buffer.count, flags: flags, site: site)
    }

    /// One send for `t`, which has claimed the sending direction.
    ///
    /// Tried at once first: a send that finds room in the socket's buffer
    /// (nearly every send of a request/response protocol) completes without
    /// suspending the task, which saves a whole suspend/resume of its Swift
    /// task. Only a send that would block goes to the backend. Adopted Swift
    /// tasks take the backend's path, which also listens for Swift
    /// cancellation.
    private func sendOnce(_ t: AnyCurioTask, _ base: UnsafeRawPointer?, _ count: Int, flags: Int32,
                          site: CallSite) async throws -> Int {
        if _fastPath(t.swiftTask != nil) {
            try t.kernel.checkDeliverable(t)
            if let n = try sendNow(base, count, flags: flags) { return n }
        }
        let r = try await request(t, .send(fd, from: base, count: count, flags: flags), state: .writeWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "send") }
        return r
    }

    /// Sends all of `bytes`, copied through the socket's buffer 64 KiB at a
    /// time. If cancelled (or timed out) half-way, the error's `bytesSent`
    /// tells how many bytes went out. No other task's send interleaves.
    ///
    /// On io_uring a send of at most 16 KiB may return as soon as its bytes
    /// are copied: they go out with the loop's next submission, in order
    /// with every later send on the socket, and a `close()` or `shutdown()`
    /// hands them to the system first. If such a send fails (the peer reset
    /// the connection), the socket's next send throws the error.
    public func sendAll(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        let t = try begin(false, "sendAll")
        defer { sending = false }
        try await sendAllClaimed(t, bytes, site: CallSite(file: file, line: line, function: function))
    }

    /// `sendAll` of an array for `t`, which holds the sending direction already.
    func sendAllClaimed(_ t: AnyCurioTask, _ bytes: [UInt8], site: CallSite) async throws {
        try await settleBeforeSendAll(t, site: site)
        if bytes.count <= SendBehind.limit,
           try bytes.withUnsafeBytes({ try sendBehind(t, $0) }) { return }
        var sent = 0
        while sent < bytes.count {
            let (buf, n) = txBuffer.load(bytes, from: sent)
            var done = 0
            do {
                while done < n {
                    done += try await sendOnce(t, buf.baseAddress! + done, n - done, flags: 0, site: site)
                }
            } catch let e as CancelledError {
                throw withProgress(e, bytesSent: sent + done)
            }
            sent += n
        }
    }

    /// Sends all of the caller's buffer, which must stay valid until this
    /// returns; see ``sendAll(_:file:line:function:)-([UInt8],_,_,_)``.
    public func sendAll(_ buffer: UnsafeRawBufferPointer, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        let t = try begin(false, "sendAll")
        defer { sending = false }
        try await sendAllClaimed(t, buffer, site: CallSite(file: file, line: line, function: function))
    }

    /// `sendAll` for `t`, which holds the sending direction already.
    @inline(__always)
    func sendAllClaimed(_ t: AnyCurioTask, _ buffer: UnsafeRawBufferPointer, site: CallSite) async throws {
        try await settleBeforeSendAll(t, site: site)
        if try sendBehind(t, buffer) { return }
        var sent = 0
        while sent < buffer.count {
            do {
                sent += try await sendOnce(t, buffer.baseAddress! + sent, buffer.count - sent, flags: 0, site: site)
            } catch let e as CancelledError {
                throw withProgress(e, bytesSent: sent)
            }
        }
    }

    /// Receives one datagram of up to `maxBytes` → its bytes and sender
    /// (the rest of a longer datagram is discarded, as recvfrom(2) does).
    /// A datagram larger than ``maxTransfer`` is received into memory of
    /// its own size, freed when the call returns, so asking for a huge
    /// `maxBytes` allocates only what arrives. `maxBytes` must be positive.
    public func recvFrom(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> ([UInt8], SocketAddress) {
        let t = try begin(true, "recvFrom")
        defer { receiving = false }
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recvFrom: maxBytes must be > 0, got \(maxBytes)")
        }
        let site = CallSite(file: file, line: line, function: function)
        var count = Swift.min(maxBytes, PinnedBuffer.limit)
        var buf = rxBuffer.region(count)
        var large: UnsafeMutableRawBufferPointer?
        defer { large?.deallocate() }
        if maxBytes > PinnedBuffer.limit && kind == .datagram {
            // How long is the next datagram? MSG_TRUNC makes a peek report
            // its full length whatever fits.
            let r = try await request(t, .receive(fd, into: buf.baseAddress, count: 1, flags: Int32(MSG_PEEK) | Int32(MSG_TRUNC)),
                                      state: .readWait, site: site)
            if r < 0 { throw SocketError(errno: Int32(-r), operation: "recvfrom") }
            if r > count {
                count = Swift.min(maxBytes, r)
                large = .allocate(byteCount: count, alignment: 16)
                buf = large!
            }
        }
        rx.pointee.prepare(data: buf.baseAddress!, count: count, addressLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
        _ = rx.linked()
        let r = try await request(t, .receiveMessage(fd, rx.messagePointer), state: .readWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "recvfrom") }
        let bytes = Array(UnsafeRawBufferPointer(start: buf.baseAddress, count: Swift.min(r, count)))
        return (bytes, SocketAddress(storage: rx.pointee.address, length: rx.pointee.message.msg_namelen))
    }

    /// Sends one datagram to `address` → bytes sent.
    @discardableResult
    public func sendTo(_ bytes: [UInt8], _ address: SocketAddress, file: StaticString = #filePath,
                       line: UInt = #line, function: StaticString = #function) async throws -> Int {
        let t = try begin(false, "sendTo")
        defer { sending = false }
        let site = CallSite(file: file, line: line, function: function)
        try await settleSendBehind(t, site: site)
        // A datagram goes whole: one larger than the socket's buffer is
        // copied into memory of its own for the call.
        var large: UnsafeMutableRawBufferPointer?
        defer { large?.deallocate() }
        let data: UnsafeMutableRawBufferPointer
        if bytes.count > PinnedBuffer.limit {
            large = .allocate(byteCount: bytes.count, alignment: 16)
            large!.copyBytes(from: bytes)
            data = large!
        } else {
            data = txBuffer.load(bytes, from: 0).0
        }
        tx.pointee.address = address.storage
        tx.pointee.prepare(data: data.baseAddress, count: bytes.count, addressLength: address.length)
        _ = tx.linked()
        let r = try await request(t, .sendMessage(fd, tx.messagePointer), state: .writeWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "sendto \(address)") }
        return r
    }

    /// Shuts down one or both directions (a half-close with `.write`).
    public func shutdown(_ how: ShutdownHow) throws {
        try checkOpen("shutdown")
        if how.raw != Int32(SHUT_RD) { writeShutDown = true }
        // Not before a send behind that still waits for room: it would be cut off.
        if let b = behind, let k = affinity.kernel, k.isOnKernelThread, !b.shutdownWhenSent(fd, how: how.raw, kernel: k) { return }
        if Glibc.shutdown(fd, how.raw) != 0 && errno != ENOTCONN {
            throw SocketError(errno: errno, operation: "shutdown")
        }
    }

    /// Closes the socket. Requests pending on it complete with an error
    /// first, so no buffer stays in the kernel's hands. Closing twice is
    /// harmless.
    public func close() {
        guard fd >= 0 else { return }
        closeRegistered(fd, kernel: affinity.kernel ?? Kernel.current)
        fd = -1
    }

    /// Shuts the socket down in both directions, then closes it: what the
    /// servers do with the listeners and connections they own. A plain
    /// ``close()`` ends the connection only when the last descriptor for
    /// it goes, and a child process being spawned at that instant holds a
    /// copy of every descriptor until its `exec` (close-on-exec or not), so
    /// for that moment the peer would still see the connection open and the
    /// port would still be bound. `shutdown` acts on the socket itself, so
    /// the peer sees the end (after any data still queued) and the port is
    /// free at once. Not used by ``close()``, because a user may share a
    /// socket with a child on purpose.
    package func shutDownAndClose() {
        guard fd >= 0 else { return }
        // A send behind still waiting for room keeps the socket open past
        // the close and ends it after its bytes; shutting down now would
        // cut it off.
        if let b = behind, let k = affinity.kernel, k.isOnKernelThread, !b.shutdownWhenSent(fd, how: Int32(SHUT_RDWR), kernel: k) {
            close()
            return
        }
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        close()
    }

    /// Runs `body` with the socket and closes it afterwards, also when
    /// `body` throws (Python's `with sock:`).
    public func closing<R>(_ body: (Socket) async throws -> R) async rethrows -> R {
        defer { close() }
        return try await body(self)
    }
}

/// A system call on a socket failed; `errno` says why.
public struct SocketError: Error, CustomStringConvertible, Equatable {
    /// The system's error number (`ECONNRESET`, `EPIPE`, ...).
    public let errno: Int32
    /// The operation that failed, with its address when it has one.
    public let operation: String
    /// An error for `operation` failing with `errno`.
    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }
    public var description: String { "SocketError: \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Memory a request points into while it is in flight.
struct IOSlot {
    var address = sockaddr_storage()
    var iov = iovec()
    var message = msghdr()

    /// Points the message header at one data buffer and at `address`.
    mutating func prepare(data: UnsafeMutableRawPointer?, count: Int, addressLength: socklen_t) {
        iov = iovec(iov_base: data, iov_len: count)
        message = msghdr()
        message.msg_namelen = addressLength
    }
}

extension UnsafeMutablePointer where Pointee == IOSlot {
    /// Finishes `prepare`: the header must point at fields of the slot
    /// itself, whose address only the pointer knows.
    func linked() -> UnsafeMutablePointer<IOSlot> {
        pointee.message.msg_iov = field(\.iov).assumingMemoryBound(to: iovec.self)
        pointee.message.msg_iovlen = 1
        pointee.message.msg_name = addressPointer
        return self
    }

    /// Where the slot's address lives, for requests that fill or read it.
    var addressPointer: UnsafeMutableRawPointer { field(\.address) }
    /// Where the slot's message header lives.
    var messagePointer: UnsafeMutableRawPointer { field(\.message) }

    private func field<V>(_ path: KeyPath<IOSlot, V>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(self).advanced(by: MemoryLayout<IOSlot>.offset(of: path)!)
    }
}

import CCurioKernel
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
    public private(set) var fd: Int32
    /// The socket's family and kind.
    public let family: SocketAddress.Family
    /// Stream or datagram.
    public let kind: Kind
    private var affinity = Affinity()
    private var receiving = false
    private var sending = false
    /// Scratch space for ``recv(_:)`` so a receive allocates only its result.
    private var scratch: UnsafeMutableRawBufferPointer?
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
        scratch?.deallocate()
        rx.deallocate()
        tx.deallocate()
    }

    private func checkOpen(_ what: String) throws {
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
        try checkOpen("\(what)")
        if receive {
            if receiving { throw ResourceBusy("another task is already receiving on socket \(fd)") }
            receiving = true
        } else {
            if sending { throw ResourceBusy("another task is already sending on socket \(fd)") }
            sending = true
        }
        return t
    }

    private func request(_ t: AnyCurioTask, _ op: ck_op, buf: UnsafeMutableRawPointer?, len: Int,
                         flags: Int32 = 0, state: TaskState, deadline: Int64 = .max,
                         site: CallSite) async throws -> Int {
        let args = ck_request_args(op: op, fd: fd, buf: buf, len: UInt64(len), flags: flags, offset: -1)
        return try await t.kernel.performIO(t, args, state, deadline: deadline, site: site)
    }

    /// Accepts a connection → the new socket and the peer's address.
    public func accept(file: StaticString = #filePath, line: UInt = #line,
                       function: StaticString = #function) async throws -> (Socket, SocketAddress) {
        let t = try begin(true, "accept")
        defer { receiving = false }
        let site = CallSite(file: file, line: line, function: function)
        while true {
            let r = try await request(t, CK_OP_ACCEPT, buf: rx.addressPointer, len: MemoryLayout<sockaddr_storage>.size,
                                      flags: Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                      state: .readWait, site: site)
            if r >= 0 {
                let client = Socket(adopting: Int32(r), family: family, kind: kind)
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
        var r = try await request(t, CK_OP_CONNECT, buf: tx.addressPointer, len: Int(address.length),
                                  state: .writeWait, site: site)
        if r == -Int(EINPROGRESS) || r == -Int(EALREADY) || r == -Int(EAGAIN) {
            // The socket is non-blocking; wait until it is writable and
            // read the outcome.
            r = try await request(t, CK_OP_POLL_OUT, buf: nil, len: 0, state: .writeWait, site: site)
            if r >= 0 {
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                r = -Int(err)
            }
        }
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "connect to \(address)") }
    }

    /// Connects to `("127.0.0.1", 25000)`-style numeric host and port.
    public func connect(_ address: (String, Int), file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        try await connect(SocketAddress(host: address.0, port: address.1, family: family),
                          file: file, line: line, function: function)
    }

    /// Receives up to `maxBytes`; an empty result means the peer closed.
    public func recv(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recv: maxBytes must be > 0, got \(maxBytes)")
        }
        // Claim the receiving direction before touching `scratch`: another
        // task's receive may be in flight into it (or, from another kernel,
        // it may be another thread's).
        let t = try begin(true, "recv")
        defer { receiving = false }
        if scratch == nil || scratch!.count < maxBytes {
            scratch?.deallocate()
            scratch = .allocate(byteCount: max(maxBytes, 4096), alignment: 16)
        }
        let buf = UnsafeMutableRawBufferPointer(rebasing: scratch![0..<maxBytes])
        let n = try await receive(t, into: buf, flags: 0, site: CallSite(file: file, line: line, function: function))
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
    private func receive(_ t: AnyCurioTask, into buffer: UnsafeMutableRawBufferPointer, flags: Int32,
                         site: CallSite) async throws -> Int {
        let r = try await request(t, CK_OP_RECV, buf: buffer.baseAddress, len: buffer.count, flags: flags,
                                  state: .readWait, site: site)
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "recv") }
        return r
    }

    /// Sends some of `bytes` → how many were sent.
    @discardableResult
    public func send(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int {
        try await send(stableBytes(bytes), file: file, line: line, function: function)
    }

    /// Sends some of the caller's buffer → how many bytes were sent.
    @discardableResult
    public func send(_ buffer: UnsafeRawBufferPointer, flags: Int32 = 0,
                     file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int {
        let t = try begin(false, "send")
        defer { sending = false }
        let r = try await request(t, CK_OP_SEND, buf: UnsafeMutableRawPointer(mutating: buffer.baseAddress),
                                  len: buffer.count, flags: flags, state: .writeWait,
                                  site: CallSite(file: file, line: line, function: function))
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "send") }
        return r
    }

    /// Sends all of `bytes`. If cancelled (or timed out) half-way, the
    /// error's `bytesSent` tells how many bytes went out.
    public func sendAll(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        try await sendAll(stableBytes(bytes), file: file, line: line, function: function)
    }

    /// Sends all of the caller's buffer; see ``sendAll(_:file:line:function:)-([UInt8],_,_,_)``.
    public func sendAll(_ buffer: UnsafeRawBufferPointer, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        var sent = 0
        while sent < buffer.count {
            do {
                sent += try await send(UnsafeRawBufferPointer(rebasing: buffer[sent...]),
                                       file: file, line: line, function: function)
            } catch let e as CancelledError {
                throw withProgress(e, bytesSent: sent)
            }
        }
    }

    /// Receives one datagram of up to `maxBytes` → its bytes and sender.
    public func recvFrom(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> ([UInt8], SocketAddress) {
        let t = try begin(true, "recvFrom")
        defer { receiving = false }
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recvFrom: maxBytes must be > 0, got \(maxBytes)")
        }
        if scratch == nil || scratch!.count < maxBytes {
            scratch?.deallocate()
            scratch = .allocate(byteCount: max(maxBytes, 4096), alignment: 16)
        }
        rx.pointee.prepare(data: scratch!.baseAddress!, count: maxBytes, addressLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
        _ = rx.linked()
        let r = try await request(t, CK_OP_RECVMSG, buf: rx.messagePointer, len: 0, state: .readWait,
                                  site: CallSite(file: file, line: line, function: function))
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "recvfrom") }
        let bytes = Array(UnsafeRawBufferPointer(start: scratch!.baseAddress, count: r))
        return (bytes, SocketAddress(storage: rx.pointee.address, length: rx.pointee.message.msg_namelen))
    }

    /// Sends one datagram to `address` → bytes sent.
    @discardableResult
    public func sendTo(_ bytes: [UInt8], _ address: SocketAddress, file: StaticString = #filePath,
                       line: UInt = #line, function: StaticString = #function) async throws -> Int {
        let t = try begin(false, "sendTo")
        defer { sending = false }
        let data = stableBytes(bytes)
        tx.pointee.address = address.storage
        tx.pointee.prepare(data: UnsafeMutableRawPointer(mutating: data.baseAddress), count: data.count,
                           addressLength: address.length)
        _ = tx.linked()
        // `bytes` is a parameter: the caller keeps it alive for the call.
        let r = try await request(t, CK_OP_SENDMSG, buf: tx.messagePointer, len: 0, state: .writeWait,
                                  site: CallSite(file: file, line: line, function: function))
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "sendto \(address)") }
        return r
    }

    /// Shuts down one or both directions (a half-close with `.write`).
    public func shutdown(_ how: ShutdownHow) throws {
        try checkOpen("shutdown")
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

/// The bytes of an array as a pointer that stays valid while the array is
/// alive and unmodified: a non-empty Swift array on Linux keeps its
/// elements in one heap buffer that never moves while nothing mutates it.
/// Callers keep `bytes` alive across the request.
func stableBytes(_ bytes: [UInt8]) -> UnsafeRawBufferPointer {
    bytes.withUnsafeBytes { $0 }
}

import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// One request to the kernel's backend, named in Swift: the I/O layer
/// (`IO/`) says *what* to do through these constructors and never spells
/// the C kernel's operation codes or argument struct; only the kernel layer
/// (`Core/`) talks to C. A plain value over the C arguments, so building
/// one costs nothing on the hot path.
///
/// Every pointer in a request must stay valid until the request ends (for
/// `Kernel.performIO`: until it returns, which it
/// does only after the backend is done with the memory).
struct IORequest {
    /// The C kernel's form; read by the kernel layer only.
    let args: ck_request_args

    @inline(__always)
    private init(_ op: ck_op, _ fd: Int32, _ buf: UnsafeMutableRawPointer?, _ len: Int,
                 flags: Int32 = 0, offset: Int64 = -1) {
        args = ck_request_args(op: op, fd: fd, buf: buf, len: UInt64(len), flags: flags, offset: offset)
    }

    /// recv(2) of at most `count` bytes into `buffer`.
    @inline(__always)
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawPointer?, count: Int, flags: Int32 = 0) -> IORequest {
        IORequest(CK_OP_RECV, fd, buffer, count, flags: flags)
    }

    /// send(2) of `count` bytes from `buffer`.
    @inline(__always)
    static func send(_ fd: Int32, from buffer: UnsafeRawPointer?, count: Int, flags: Int32 = 0) -> IORequest {
        IORequest(CK_OP_SEND, fd, UnsafeMutableRawPointer(mutating: buffer), count, flags: flags)
    }

    /// recvmsg(2) with the `msghdr` at `message`.
    static func receiveMessage(_ fd: Int32, _ message: UnsafeMutableRawPointer) -> IORequest {
        IORequest(CK_OP_RECVMSG, fd, message, 0)
    }

    /// sendmsg(2) with the `msghdr` at `message`.
    static func sendMessage(_ fd: Int32, _ message: UnsafeMutableRawPointer) -> IORequest {
        IORequest(CK_OP_SENDMSG, fd, message, 0)
    }

    /// accept4(2) of one connection, the peer's address written to
    /// `address` (room for a `sockaddr_storage`); the new descriptor is
    /// close-on-exec and non-blocking.
    static func accept(_ fd: Int32, address: UnsafeMutableRawPointer) -> IORequest {
        IORequest(CK_OP_ACCEPT, fd, address, MemoryLayout<sockaddr_storage>.size, flags: acceptFlags)
    }

    /// Every connection of a listener, until cancelled or failed: each one
    /// arrives as a `CK_EVENT_ACCEPTED` for `token`'s receiver (see
    /// `Kernel.startRequest(_:token:)`).
    static func acceptEach(_ fd: Int32) -> IORequest {
        IORequest(CK_OP_ACCEPT_MULTI, fd, nil, 0, flags: acceptFlags)
    }

    private static let acceptFlags = Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)

    /// connect(2) to the `length`-byte address at `address`; ends with 0 or
    /// the connection's error, never "in progress".
    static func connect(_ fd: Int32, address: UnsafeMutableRawPointer, length: Int) -> IORequest {
        IORequest(CK_OP_CONNECT, fd, address, length)
    }

    /// read(2) (`offset` -1) or pread(2) of at most `count` bytes.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer?, count: Int, offset: Int64 = -1) -> IORequest {
        IORequest(CK_OP_READ, fd, buffer, count, offset: offset)
    }

    /// write(2) (`offset` -1) or pwrite(2) of `count` bytes.
    static func write(_ fd: Int32, from buffer: UnsafeRawPointer?, count: Int, offset: Int64 = -1) -> IORequest {
        IORequest(CK_OP_WRITE, fd, UnsafeMutableRawPointer(mutating: buffer), count, offset: offset)
    }

    /// Waits until `fd` is readable (a pidfd: until the process exits).
    static func readable(_ fd: Int32) -> IORequest {
        IORequest(CK_OP_POLL_IN, fd, nil, 0)
    }

    /// A stream socket's bytes as chunks of the kernel's receive pool, at
    /// most `maxHeld` held by the consumer at once (see `ReceiveStream`).
    static func receiveStream(_ fd: Int32, maxHeld: Int) -> IORequest {
        IORequest(CK_OP_RECV_STREAM, fd, nil, maxHeld)
    }

    /// A send the caller does not wait for (see `SendBehind`): io_uring
    /// queues it for the loop's next submission; epoll sends at once.
    static func sendBehind(_ fd: Int32, from buffer: UnsafeRawPointer, count: Int) -> IORequest {
        IORequest(CK_OP_SEND_BEHIND, fd, UnsafeMutableRawPointer(mutating: buffer), count)
    }
}

/// What the backend said to a request started without a waiting task.
enum RequestStart {
    /// In flight: its events will come for the token; `handle` cancels it.
    case pending(handle: UInt64)
    /// Refused or finished at once with this result (>= 0, or -errno); no
    /// event will come, so the token's reference is the caller's again.
    case finished(Int)
}

extension Kernel {
    /// Starts `request` with `token` (an unretained or retained pointer the
    /// kernel's dispatch recognises by the request's kind of event), for a
    /// request no task waits on: multishot accepts, streaming receives,
    /// sends behind. On the kernel's thread.
    @inline(__always)
    func startRequest(_ request: IORequest, token: UnsafeMutableRawPointer) -> RequestStart {
        var args = request.args
        var handle: UInt64 = 0
        let r = ck_submit(ck, &args, token, &handle)
        return r == Kernel.pending ? .pending(handle: handle) : .finished(Int(r))
    }

    /// Asks for the request behind `handle` to stop; its end still comes
    /// as an event (with -ECANCELED, or its real result if it finished first).
    func cancelRequest(_ handle: UInt64) {
        ck_cancel(ck, handle)
    }

    /// Tells the backend that `fd` is about to be closed: requests waiting
    /// on it end with -ECANCELED, sends behind go to the system first, and
    /// epoll drops its registration. Call it before every close(2) of a
    /// descriptor this kernel has used.
    func forgetDescriptor(_ fd: Int32) {
        ck_forget_fd(ck, fd)
    }

    /// Hands `fd`'s sends behind to the system now → how many are still
    /// in flight (0: every byte handed over is in the socket).
    func flushSendsBehind(_ fd: Int32) -> Int {
        Int(ck_flush_fd(ck, fd))
    }

}

/// Closes `fd`, which `kernel` may have waited on. On epoll the kernel
/// keeps a descriptor registered until it is told to forget it; a
/// descriptor closed without that leaves a stale registration that a later
/// descriptor with the same number inherits, and waits on that one never
/// end. So the kernel forgets `fd` first, on its own thread (posted there
/// from any other thread, and closed after it), then `fd` is closed.
func closeRegistered(_ fd: Int32, kernel: Kernel?) {
    guard let kernel else {
        Glibc.close(fd)
        return
    }
    if kernel.isOnKernelThread || !kernel.isRunning {
        // On the kernel thread, or while no thread runs the kernel: its
        // state is ours to touch.
        kernel.forgetDescriptor(fd)
        Glibc.close(fd)
    } else {
        kernel.postMessage { k in
            k.forgetDescriptor(fd)
            Glibc.close(fd)
        }
    }
}


#if canImport(Glibc)
import Glibc
#endif

/// One end of a pipe (or any descriptor read and written with plain
/// read(2)/write(2)): what ``Subprocess`` gives for a child's stdin,
/// stdout and stderr. Wrap it in a ``SocketStream`` for lines and exact
/// reads; ``Subprocess`` does that for you.
///
/// ```swift
/// let (r, w) = try Pipe.make()
/// try await w.sendAll(Array("hi\n".utf8))
/// let bytes = try await r.recv(100)
/// ```
// @unchecked Sendable: the descriptor state, direction claims and buffers
// are touched only by the tasks of the kernel the object is bound to
// (`affinity.task` checks the caller's kernel first); `close` from another
// thread hands the descriptor to that kernel (`closeRegistered`).
public final class Pipe: ByteChannel, @unchecked Sendable {
    /// The descriptor, or -1 once closed.
    public private(set) var fd: Int32
    private let affinity = Affinity()
    /// Where reads land and writes are copied to (see ``PinnedBuffer``).
    private var rxBuffer = PinnedBuffer()
    private var txBuffer = PinnedBuffer()
    private var reading = false
    private var writing = false

    /// Takes ownership of `fd` and makes it non-blocking.
    public init(adopting fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        self.fd = fd
    }

    /// A new pipe → (read end, write end).
    public static func make() throws -> (Pipe, Pipe) {
        var fds: [Int32] = [0, 0]
        let r = systemPipe(&fds, O_CLOEXEC | O_NONBLOCK)
        guard r == 0 else { throw SocketError(errno: -r, operation: "pipe2") }
        return (Pipe(adopting: fds[0]), Pipe(adopting: fds[1]))
    }

    deinit {
        if fd >= 0 { closeRegistered(fd, kernel: affinity.kernel) }
    }

    /// The calling task, with one direction claimed for it (two tasks
    /// reading, or writing, one pipe at once get ResourceBusy).
    private func claim(_ what: StaticString, reading r: Bool) throws -> AnyCurioTask {
        let t = try affinity.task(what)
        if fd < 0 { throw SocketError(errno: EBADF, operation: "\(what) on a closed pipe") }
        if r {
            if reading { throw ResourceBusy("another task is already reading pipe \(fd)") }
            reading = true
        } else {
            if writing { throw ResourceBusy("another task is already writing pipe \(fd)") }
            writing = true
        }
        return t
    }

    /// Up to `maxBytes` bytes (at most ``Socket/maxTransfer`` at a time);
    /// empty once the other end is closed. `maxBytes` must be positive.
    public func recv(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recv: maxBytes must be > 0, got \(maxBytes)")
        }
        let t = try claim("recv", reading: true)
        defer { reading = false }
        let count = Swift.min(maxBytes, PinnedBuffer.limit)
        let buf = rxBuffer.region(count)
        let r = try await t.kernel.performIO(t, .read(fd, into: buf.baseAddress, count: count), .readWait, deadline: .max,
                                             site: CallSite(file: file, line: line, function: function))
        if r < 0 { throw SocketError(errno: Int32(-r), operation: "read") }
        return Array(UnsafeRawBufferPointer(start: buf.baseAddress, count: r))
    }

    /// Writes all of `bytes`, copied through the pipe's own buffer 64 KiB
    /// at a time; a cancellation half-way records `bytesSent`.
    public func sendAll(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        let t = try claim("sendAll", reading: false)
        defer { writing = false }
        let site = CallSite(file: file, line: line, function: function)
        var sent = 0
        while sent < bytes.count {
            let (buf, n) = txBuffer.load(bytes, from: sent)
            var done = 0
            while done < n {
                let r: Int
                do {
                    r = try await t.kernel.performIO(t, .write(fd, from: buf.baseAddress! + done, count: n - done),
                                                     .writeWait, deadline: .max, site: site)
                } catch let e as CancelledError {
                    throw withProgress(e, bytesSent: sent + done)
                }
                if r < 0 { throw SocketError(errno: Int32(-r), operation: "write") }
                done += r
            }
            sent += n
        }
    }

    /// Closes this end; the other end then reads end-of-stream (or gets
    /// EPIPE when writing).
    public func close() {
        guard fd >= 0 else { return }
        closeRegistered(fd, kernel: affinity.kernel ?? Kernel.current)
        fd = -1
    }
}


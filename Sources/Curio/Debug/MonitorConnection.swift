#if canImport(Glibc)
import Glibc
#endif

/// One remote client of the monitor, as the monitor thread keeps it (that
/// thread alone touches it). Its socket is non-blocking: answers wait in
/// `output` until the client reads them, so a client that stops reading
/// delays nobody, and its input is not read further while a lot of output
/// waits.
final class MonitorConnection {
    let fd: Int32
    /// False until a TCP client has sent the token.
    var authenticated: Bool
    var reader = MonitorLineReader()
    private var output: [UInt8] = []
    private var outputHead = 0
    /// When the client last sent a complete line (or connected).
    var lastLine: Int64
    /// When its output last moved (or began to wait).
    private var lastProgress: Int64
    /// The client has ended its side: answer what it sent, then close.
    var inputEnded = false
    /// Close once the output is out (quit, refusal, too long a line).
    var closing = false
    private(set) var closed = false

    init(fd: Int32, authenticated: Bool, now: Int64) {
        self.fd = fd
        self.authenticated = authenticated
        lastLine = now
        lastProgress = now
    }

    deinit { close() }

    /// Bytes waiting to be sent.
    var backlog: Int { output.count - outputHead }

    /// Bytes held for this client in all (input not yet run, output not yet sent).
    var bufferedBytes: Int { backlog + reader.pending }

    func queue(_ text: String) {
        guard !closed else { return }
        if backlog == 0 {
            output.removeAll(keepingCapacity: output.capacity <= 65536)
            outputHead = 0
            lastProgress = monotonicNanoseconds()
        }
        output.append(contentsOf: text.utf8)
    }

    /// Sends what it can without blocking; closes the connection when the
    /// client has gone (MSG_NOSIGNAL: no SIGPIPE for the program).
    func flush() {
        while backlog > 0 && !closed {
            let n = output.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + outputHead, raw.count - outputHead, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                outputHead += n
                lastProgress = monotonicNanoseconds()
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            close()
            return
        }
        if backlog == 0 {
            output.removeAll(keepingCapacity: output.capacity <= 65536)
            outputHead = 0
            if closing { close() }
        }
    }

    /// True when output has waited `stall` ns without any of it being taken.
    func stalled(now: Int64, stall: Int64) -> Bool {
        backlog > 0 && now - lastProgress >= stall
    }

    /// Sends `text` now if the socket takes it, then closes.
    func refuse(_ text: String) {
        queue(text)
        closing = true
        flush()
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
        output = []
        outputHead = 0
        reader.reset()
    }
}

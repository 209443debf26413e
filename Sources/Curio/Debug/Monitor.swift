import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// The Curio monitor: a console on the terminal (Ctrl-C opens it) and a
/// listener on loopback, both served by one thread of their own so they
/// answer even while a task hogs the kernel thread.
///
/// Commands: `ps`, `where ID`, `cancel ID`, `parents ID`, `tree`,
/// `signal NAME`, `help`, `quit`. It never executes code sent to it.
final class Monitor: @unchecked Sendable {
    /// Weak: the kernel owns the monitor, and the monitor thread stops once
    /// the kernel is gone (see ``stop()``).
    private weak var kernelRef: Kernel?
    let link: MonitorLink
    /// Wakes the monitor thread: SIGINT notifications and shutdown.
    private var wakePipe: [Int32] = [-1, -1]
    private var listener: Int32 = -1
    private var client: Int32 = -1
    private var clientBuffer: [UInt8] = []
    private var consoleOpen = false
    private var consoleBuffer: [UInt8] = []
    private var sourceCache: [String: [Substring]] = [:]
    /// Where the remote monitor listens, if it does.
    private(set) var address: SocketAddress?
    static let maxLine = 4096
    /// Seconds a write to a remote client may make no progress.
    static let sendTimeout = 3

    init(kernel: Kernel, link: MonitorLink, host: String, port: Int, console: Bool) {
        self.kernelRef = kernel
        self.link = link
        _ = ck_pipe2(&wakePipe, O_CLOEXEC | O_NONBLOCK)
        openListener(host: host, port: port)
        if console {
            // Ctrl-C opens the console instead of ending the program.
            if ck_signal_watch(SIGINT) == 0 {
                watchesSIGINT = true
                SignalHub.shared.addListener(SIGINT, owner: self) { [weak self] in self?.poke(1) }
            }
        }
        var tid = pthread_t()
        let me = Unmanaged.passRetained(self).toOpaque()
        if pthread_create(&tid, nil, { arg in
            let m = Unmanaged<Monitor>.fromOpaque(arg!).takeRetainedValue()
            m.run()
            return nil
        }, me) == 0 {
            pthread_detach(tid)
        } else {
            Unmanaged<Monitor>.fromOpaque(me).release()
            diagnose(.warning, kernel: kernelRef, "curio: could not start the monitor thread\n")
        }
    }

    private func openListener(host: String, port: Int) {
        guard let addr = try? SocketAddress(host: host.isEmpty ? "127.0.0.1" : host, port: port) else {
            diagnose(.warning, kernel: kernelRef, "curio: monitor address '\(host):\(port)' is not a numeric address; remote monitor off\n")
            return
        }
        let fd = socket(addr.family.raw, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let ok = addr.withSockaddr { bind(fd, $0, $1) } == 0 && listen(fd, 8) == 0
        guard ok else {
            diagnose(.warning, kernel: kernelRef, "curio: monitor cannot listen on \(addr.host):\(port): \(String(cString: strerror(errno))); remote monitor off\n")
            close(fd)
            return
        }
        listener = fd
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &st) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        address = SocketAddress(storage: st, length: len)
    }

    private var watchesSIGINT = false

    /// Called from the signal thread: wake the monitor thread with a code.
    private func poke(_ code: UInt8) {
        var c = code
        _ = write(wakePipe[1], &c, 1)
    }

    /// Ends the monitor: Ctrl-C gets its old meaning back and the thread
    /// closes the listener and exits. Called when the kernel goes away.
    func stop() {
        if watchesSIGINT {
            SignalHub.shared.removeListeners(owner: self)
            ck_signal_unwatch(SIGINT)
            watchesSIGINT = false
        }
        poke(2)
    }

    deinit {
        close(wakePipe[0])
        close(wakePipe[1])
    }

    // MARK: The thread

    private func run() {
        while true {
            var fds: [pollfd] = [pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0)]
            if consoleOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            if client >= 0 {
                fds.append(pollfd(fd: client, events: Int16(POLLIN), revents: 0))
            } else if listener >= 0 {
                fds.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0))
            }
            // Wake up now and then to watch for a task hogging the kernel.
            if poll(&fds, nfds_t(fds.count), 250) < 0 {
                if errno == EINTR { continue }
                return
            }
            if let kernel = kernelRef { watchForHog(kernel) }
            guard let kernel = kernelRef else { break }
            for p in fds where p.revents != 0 {
                if p.fd == wakePipe[0] {
                    var b = [UInt8](repeating: 0, count: 16)
                    let n = read(wakePipe[0], &b, b.count)
                    if n > 0 && b[0..<n].contains(2) {
                        shutDown()
                        return
                    }
                    if n > 0 && b[0..<n].contains(1) { openConsole(kernel) }
                } else if p.fd == 0 {
                    readConsole(kernel)
                } else if p.fd == listener {
                    acceptClient(kernel)
                } else if p.fd == client {
                    readClient(kernel)
                }
            }
        }
        shutDown()
    }

    private func shutDown() {
        dropClient()
        if listener >= 0 { close(listener) }
        listener = -1
    }

    // MARK: The watchdog

    private var reportedHog: (id: Int64, since: Int64) = (0, 0)

    /// Reports, once, a task that has held the kernel longer than the
    /// kernel's `longBlockThreshold`, with where it last resumed and, where
    /// the binary's symbols allow, the kernel thread's live stack.
    private func watchForHog(_ kernel: Kernel) {
        let threshold = kernel.longBlockThreshold
        guard threshold > 0 else { return }
        var id: Int64 = 0, since: Int64 = 0
        ck_read_running(kernel.ck, &id, &since)
        guard id != 0, (id, since) != reportedHog else { return }
        let held = Double(ck_now_ns() - since) / 1e9
        guard held >= threshold else { return }
        reportedHog = (id, since)
        let (rows, _) = link.snapshot(from: kernel, patience: 0)
        let row = rows.first { Int64($0.id) == id }
        var text = "curio: task \(id) (\(row?.name ?? "?")) has held the kernel for \(formatFixed(held, 3)) s without blocking;"
            + " every other task waits\n"
        if let site = row?.site { text += "  it resumed at File \"\(site.file)\", line \(site.line), in \(site.function)\n" }
        if let frames = captureKernelStack(kernel) {
            text += "  live stack of the kernel thread (innermost first):\n"
            for f in frames.prefix(12) { text += "    \(f)\n" }
        }
        diagnose(.warning, kernel: kernel, text)
    }

    // MARK: The console

    private func openConsole(_ kernel: Kernel) {
        if consoleOpen {
            say(to: 1, "\ncurio > ")
            return
        }
        consoleOpen = true
        let (rows, _) = link.snapshot(from: kernel)
        say(to: 1, "\nCurio Monitor:  \(rows.count) tasks running\nType help for commands\ncurio > ")
    }

    private func readConsole(_ kernel: Kernel) {
        var b = [UInt8](repeating: 0, count: 1024)
        let n = read(0, &b, b.count)
        if n <= 0 {
            // End of input: leave the console, the program runs on.
            consoleOpen = false
            return
        }
        consoleBuffer.append(contentsOf: b[0..<n])
        while let nl = consoleBuffer.firstIndex(of: UInt8(ascii: "\n")) {
            if nl > Monitor.maxLine {
                consoleBuffer.removeSubrange(...nl)
                say(to: 1, "Line too long.\ncurio > ")
                continue
            }
            let line = String(decoding: consoleBuffer[..<nl], as: UTF8.self)
            consoleBuffer.removeSubrange(...nl)
            if !execute(line, out: 1, kernel) {
                consoleOpen = false
                consoleBuffer.removeAll()
                return
            }
            say(to: 1, "curio > ")
        }
        if consoleBuffer.count > Monitor.maxLine {
            consoleBuffer.removeAll()
            say(to: 1, "Line too long.\ncurio > ")
        }
    }

    // MARK: Remote clients, one after another

    private func acceptClient(_ kernel: Kernel) {
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else { return }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        // A client that stops reading is dropped after a while instead of
        // blocking the monitor thread (console, watchdog) for good.
        var limit = timeval(tv_sec: Monitor.sendTimeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        client = fd
        clientBuffer.removeAll()
        let (rows, _) = link.snapshot(from: kernel)
        say(to: fd, "\nCurio Monitor:  \(rows.count) tasks running\nType help for commands\ncurio > ")
    }

    private func dropClient() {
        if client >= 0 { close(client) }
        client = -1
        clientBuffer.removeAll()
    }

    private func readClient(_ kernel: Kernel) {
        var b = [UInt8](repeating: 0, count: 4096)
        let n = recv(client, &b, b.count, 0)
        if n <= 0 {
            dropClient()
            return
        }
        clientBuffer.append(contentsOf: b[0..<n])
        while client >= 0, let nl = clientBuffer.firstIndex(of: UInt8(ascii: "\n")) {
            if nl > Monitor.maxLine {
                // Too long to be a command, even if its end came in time.
                say(to: client, "Line too long; closing.\n")
                dropClient()
                return
            }
            let raw = clientBuffer[..<nl]
            clientBuffer.removeSubrange(...nl)
            guard raw.allSatisfy({ $0 == 9 || $0 == 13 || (32..<127).contains($0) }) else {
                say(to: client, "Bad command: not printable text.\ncurio > ")
                continue
            }
            if !execute(String(decoding: raw, as: UTF8.self), out: client, kernel) {
                dropClient()
                return
            }
            say(to: client, "curio > ")
        }
        if clientBuffer.count > Monitor.maxLine {
            say(to: client, "Line too long; closing.\n")
            dropClient()
        }
    }

    // MARK: Commands

    /// Runs one command line; false means "quit".
    private func execute(_ line: String, out: Int32, _ kernel: Kernel) -> Bool {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
        guard let cmd = words.first else { return true }
        let arg = words.count > 1 ? words[1] : nil
        switch cmd {
        case "help", "h", "?":
            say(to: out, Monitor.helpText)
        case "ps":
            say(to: out, ps(kernel))
        case "where", "w":
            guard let id = arg.flatMap({ Int($0) }) else { say(to: out, "Usage: where ID\n"); break }
            say(to: out, whereText(id, kernel))
        case "cancel":
            guard let id = arg.flatMap({ Int($0) }) else { say(to: out, "Usage: cancel ID\n"); break }
            // Say it before the kernel acts, so the reply comes before
            // whatever the cancelled task prints.
            let (rows, _, _, _) = rowsNow(kernel)
            guard rows.contains(where: { $0.id == id }) else { say(to: out, "No task \(id).\n"); break }
            say(to: out, "Cancelling task \(id)\n")
            cancel(id, kernel)
            settle(after: id, kernel)
        case "parents":
            guard let id = arg.flatMap({ Int($0) }) else { say(to: out, "Usage: parents ID\n"); break }
            say(to: out, parents(id, kernel))
        case "tree":
            say(to: out, tree(kernel))
        case "signal":
            guard let name = arg, let sig = signalNumber(name) else {
                say(to: out, "Usage: signal NAME (for example: signal SIGHUP)\n")
                break
            }
            say(to: out, "Sending \(signalName(sig))\n")
            kill(getpid(), sig)
        case "quit", "q", "exit":
            return false
        default:
            say(to: out, "Unknown command '\(cmd.prefix(40))'. Type help for commands.\n")
        }
        return true
    }

    static let helpText = """
        Commands:
         ps               : Show task table
         where taskid     : Show where a task is blocked
         cancel taskid    : Cancel a task
         parents taskid   : Show a task and the tasks that spawned it
         tree             : Show tasks as a tree of parents and children
         signal signame   : Send a Unix signal to the program
         help             : This help
         quit             : Leave the monitor (the program runs on)

        """

    /// The rows, with the task that holds the kernel marked RUNNING.
    private func rowsNow(_ kernel: Kernel) -> (rows: [TaskRow], runningID: Int, heldFor: Double, fresh: Bool) {
        let (rows, fresh) = link.snapshot(from: kernel)
        var id: Int64 = 0, since: Int64 = 0
        ck_read_running(kernel.ck, &id, &since)
        let held = id != 0 ? Double(ck_now_ns() - since) / 1e9 : 0
        return (rows, Int(id), held, fresh)
    }

    func ps(_ kernel: Kernel) -> String {
        let (rows, runningID, held, fresh) = rowsNow(kernel)
        var out = pad("Task", 6) + " " + pad("State", 12) + " " + pad("Cycles", 10) + " " + pad("Timeout", 7) + " " + pad("Task", 50) + "\n"
        out += String(repeating: "-", count: 6) + " " + String(repeating: "-", count: 12) + " "
            + String(repeating: "-", count: 10) + " " + String(repeating: "-", count: 7) + " " + String(repeating: "-", count: 50) + "\n"
        let now = ck_now_ns()
        for r in rows {
            let state = r.id == runningID ? "RUNNING" : r.state.description
            let timeout = r.wakeDeadline == .max || r.id == runningID
                ? "None" : formatFixed(Double(max(0, r.wakeDeadline - now)) / 1e9, 3)
            out += pad(String(r.id), 6) + " " + pad(state, 12) + " " + pad(String(r.cycles), 10) + " "
                + pad(timeout, 7) + " " + pad(r.name, 50) + "\n"
        }
        if runningID != 0 && held >= 0.5 {
            out += "Task \(runningID) has held the kernel for \(formatFixed(held, 3)) s without blocking"
                + (fresh ? "" : " (the kernel is busy: this table is from before it started)") + ".\n"
        }
        return out
    }

    func whereText(_ id: Int, _ kernel: Kernel) -> String {
        let (rows, runningID, held, _) = rowsNow(kernel)
        guard let r = rows.first(where: { $0.id == id }) else { return "No task \(id).\n" }
        let state = r.id == runningID ? "RUNNING" : r.state.description
        var out = " Stack for Task(id=\(r.id), name=\(r.name), state='\(state)') (most recent call last):\n"
        if let site = r.site {
            out += "  File \"\(site.file)\", line \(site.line), in \(site.function)\n"
            if let text = sourceLine(String(describing: site.file), Int(site.line)) {
                out += "    \(text)\n"
            }
            if r.id == runningID {
                out += "  (running for \(formatFixed(held, 3)) s since it resumed from this call)\n"
            }
        } else {
            out += "  (has not blocked yet)\n"
        }
        if r.id == runningID, let frames = captureKernelStack(kernel) {
            out += "  Live stack of the kernel thread (innermost first):\n"
            for f in frames.prefix(20) { out += "    \(f)\n" }
        }
        return out
    }

    /// Gives a cancelled task a moment (at most half a second) to end, and
    /// its parent to react, so that what they print comes before the next
    /// prompt, as in the seed's transcript.
    private func settle(after id: Int, _ kernel: Kernel) {
        let deadline = ck_now_ns() + 500_000_000
        while ck_now_ns() < deadline {
            let (rows, fresh) = link.snapshot(from: kernel, patience: 0.05)
            if fresh && !rows.contains(where: { $0.id == id }) { break }
        }
        usleep(20_000)
    }

    /// Asks the kernel to cancel task `id` (it may have ended meanwhile).
    func cancel(_ id: Int, _ kernel: Kernel) {
        kernel.postMessage { k in
            k.forEachTask { t in if t.id == id { k.deliverCancel(t, TaskCancelled()) } }
        }
    }

    func parents(_ id: Int, _ kernel: Kernel) -> String {
        let (rows, _, _, _) = rowsNow(kernel)
        var byID: [Int: TaskRow] = [:]
        for r in rows { byID[r.id] = r }
        guard var r = byID[id] else { return "No task \(id).\n" }
        var out = ""
        while true {
            out += "\(pad(String(r.id), 6)) \(pad(r.state.description, 12)) \(r.name)\n"
            guard let p = r.parentID else { break }
            guard let next = byID[p] else {
                out += "\(pad(String(p), 6)) (ended)\n"
                break
            }
            r = next
        }
        return out
    }

    func tree(_ kernel: Kernel) -> String {
        let (rows, _, _, _) = rowsNow(kernel)
        let ids = Set(rows.map(\.id))
        var children: [Int: [TaskRow]] = [:]
        var roots: [TaskRow] = []
        for r in rows {
            if let p = r.parentID, ids.contains(p) { children[p, default: []].append(r) } else { roots.append(r) }
        }
        var out = ""
        func walk(_ r: TaskRow, _ depth: Int) {
            out += String(repeating: "  ", count: depth) + "\(r.id) \(r.name) [\(r.state)]\n"
            for c in children[r.id] ?? [] { walk(c, depth + 1) }
        }
        roots.forEach { walk($0, 0) }
        return out.isEmpty ? "No tasks.\n" : out
    }

    private func sourceLine(_ path: String, _ line: Int) -> String? {
        if sourceCache[path] == nil {
            guard let f = fopen(path, "r") else { return nil }
            defer { fclose(f) }
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                data.append(contentsOf: buf[0..<n])
                if data.count > 8 << 20 { return nil }
            }
            sourceCache[path] = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        }
        guard let lines = sourceCache[path], line >= 1, line <= lines.count else { return nil }
        return lines[line - 1].trimmingWhitespace()
    }

    private func say(to fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            // To a client: send() with MSG_NOSIGNAL, so a client that has
            // gone (EPIPE) does not end the program with SIGPIPE.
            let n = bytes.withUnsafeMutableBytes {
                fd == client ? send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL))
                             : write(fd, $0.baseAddress! + off, $0.count - off)
            }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                if fd == client { dropClient() }
                return
            }
            off += n
        }
        bytes.removeAll()
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

/// `v` with `digits` decimals, without Foundation.
func formatFixed(_ v: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((v * scale).rounded())
    let whole = n / Int(scale), frac = n % Int(scale)
    guard digits > 0 else { return String(whole) }
    let f = String(frac)
    return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
}

extension Substring {
    func trimmingWhitespace() -> String {
        let t = drop { $0 == " " || $0 == "\t" }
        var s = String(t)
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s.removeLast() }
        return s
    }
}

import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The Curio monitor as its kernel holds it: a console on the terminal
/// (Ctrl-C opens it) and a remote endpoint (see ``MonitorListener``), both
/// served by one thread of their own (``MonitorServer``) so they answer
/// even while a task hogs the kernel thread.
///
/// Commands: `ps`, `where ID`, `cancel ID`, `parents ID`, `tree`,
/// `signal NAME`, `help`, `quit`. It never executes code sent to it.
final class Monitor: Sendable {
    /// Where the remote monitor listens, if it does.
    let address: SocketAddress?
    /// The token a TCP client must send first (nil for a Unix socket).
    let token: String?
    /// The file holding the token (TCP).
    let tokenPath: String?
    /// The files to remove when the kernel goes (socket, token).
    private let files: [String]
    private let wakeWrite: Int32
    private let watchesSIGINT: Bool
    private let stopped = Atomic<Bool>(false)
    /// What the monitor thread holds now, for tests and leak checks.
    let stats = Locked(MonitorStats())

    static let maxClients = 4
    /// TCP clients that have not sent the token yet; beyond this the oldest is dropped.
    static let maxUnauthenticated = 8

    /// A monitor of `targets`: one kernel alone, or every kernel of a
    /// group (reported through the first one's logger).
    init(targets: [MonitorTarget], endpoint: Kernel.Configuration.MonitorEndpoint,
         runtimeDirectory: String?, idleTimeout: Double, console: Bool, announce: Bool) {
        let kernel = targets[0].kernel
        var pipe: [Int32] = [-1, -1]
        _ = systemPipe(&pipe, O_CLOEXEC | O_NONBLOCK)
        wakeWrite = pipe[1]

        var listener: MonitorListener?
        do {
            listener = try MonitorListener.open(endpoint, runtimeDirectory: runtimeDirectory)
        } catch {
            diagnose(.warning, kernel: kernel, "curio: \(error.message); remote monitor off\n")
        }
        address = listener?.address
        files = listener?.files ?? []
        tokenPath = listener?.tokenPath
        if case .tcp(let t)? = listener?.transport { token = t } else { token = nil }
        if let l = listener {
            var text = ""
            if case .tcp(let t) = l.transport {
                // TCP is opt-in and has no peer uid: the token is the lock.
                text += "curio: monitor listening on \(l.address.host):\(l.address.port)\n"
                text += "curio: monitor token \(t) (also in \(l.tokenPath ?? "?")); a client sends `token \(t)` first\n"
            } else if announce {
                text += "curio: monitor listening on \(l.address.host)\n"
            }
            if !text.isEmpty { diagnose(.notice, kernel: kernel, text) }
        }

        var sigint = false
        if console, case .success = SignalWatch.start(SIGINT) {
            // Ctrl-C opens the console instead of ending the program.
            sigint = true
        }
        watchesSIGINT = sigint
        let server = MonitorServer(targets: targets, listener: listener, wakeRead: pipe[0],
                                   console: console, idleTimeout: idleTimeout, handle: nil)
        server.handle = self
        if sigint {
            let w = pipe[1]
            SignalHub.shared.addListener(SIGINT, owner: self) { Monitor.poke(w, 1) }
        }
        // The server belongs to the new thread from here on; this thread
        // never touches it again.
        let opaque = Unmanaged.passRetained(server).toOpaque()
        var tid = pthread_t()
        if pthread_create(&tid, nil, { arg in
            let s = Unmanaged<MonitorServer>.fromOpaque(arg!).takeRetainedValue()
            s.run()
            return nil
        }, opaque) == 0 {
            pthread_detach(tid)
        } else {
            Unmanaged<MonitorServer>.fromOpaque(opaque).release()
            diagnose(.warning, kernel: kernel, "curio: could not start the monitor thread\n")
        }
    }

    /// Wakes the monitor thread with a code: 1 Ctrl-C, 2 stop.
    private static func poke(_ fd: Int32, _ code: UInt8) {
        var c = code
        _ = write(fd, &c, 1)
    }

    /// Ends the monitor: Ctrl-C gets its old meaning back, the socket and
    /// token files are removed now, and the thread closes its sockets and
    /// exits. Called when the kernel goes away; idempotent.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if watchesSIGINT {
            SignalHub.shared.removeListeners(owner: self)
            SignalWatch.stop(SIGINT)
        }
        for f in files { MonitorFiles.release(f) }
        Monitor.poke(wakeWrite, 2)
    }

    // The read end belongs to the monitor thread, which closes it when it
    // ends; a poke after that fails with EPIPE (SIGPIPE is ignored).
    deinit { close(wakeWrite) }
}

/// Counters of the monitor thread (see ``Monitor/stats``).
struct MonitorStats: Sendable {
    var clients = 0
    var bufferedBytes = 0
    var accepted = 0
    var refused = 0
    var busy = 0
    var dropped = 0
    var cachedSourceFiles = 0
}

/// The monitor thread: the console, the listener and its clients, the
/// watchdog. Created by ``Monitor`` and then used by that thread alone.
final class MonitorServer {
    private let targets: [MonitorTarget]
    private var listener: MonitorListener?
    private let wakeRead: Int32
    private let consoleAllowed: Bool
    private var consoleOpen = false
    private var consoleReader = MonitorLineReader()
    private var clients: [MonitorConnection] = []
    private var sources = SourceLines()
    /// The hog last reported, per target.
    private var reportedHog: [(id: Int64, since: Int64)]
    /// Set right after init (the handle creates the server first).
    weak var handle: Monitor?
    private let idle: Int64
    private let stall: Int64
    private let tokenWait: Int64

    /// Output waiting for a client beyond which its next lines wait.
    static let highWater = 64 << 10
    /// Input held for a client beyond which the monitor stops reading it.
    static let maxPendingInput = 256 << 10

    init(targets: [MonitorTarget], listener: MonitorListener?, wakeRead: Int32,
         console: Bool, idleTimeout: Double, handle: Monitor?) {
        self.targets = targets
        reportedHog = targets.map { _ in (0, 0) }
        self.listener = listener
        self.wakeRead = wakeRead
        consoleAllowed = console
        self.handle = handle
        let idleNS = Int64(max(0.01, idleTimeout) * 1e9)
        idle = idleNS
        stall = min(idleNS, 10_000_000_000)
        tokenWait = min(idleNS, 10_000_000_000)
    }

    // MARK: The loop

    func run() {
        defer { shutDown() }
        while true {
            var fds: [pollfd] = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            if consoleOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            if let l = listener { fds.append(pollfd(fd: l.fd, events: Int16(POLLIN), revents: 0)) }
            let firstClient = fds.count
            let now = monotonicNanoseconds()
            var wait: Int64 = 250_000_000  // the watchdog's beat
            for c in clients {
                var ev: Int32 = 0
                if wantsInput(c) { ev |= Int32(POLLIN) }
                if c.backlog > 0 { ev |= Int32(POLLOUT) }
                fds.append(pollfd(fd: c.fd, events: Int16(ev), revents: 0))
                wait = min(wait, max(0, deadline(of: c) - now))
            }
            if poll(&fds, nfds_t(fds.count), Int32((wait + 999_999) / 1_000_000)) < 0 && errno != EINTR { return }
            guard let kernel = Watched(targets) else { return }
            watchForHog(kernel)
            if fds[0].revents != 0 {
                var b = [UInt8](repeating: 0, count: 16)
                let n = read(wakeRead, &b, b.count)
                if n > 0 && b[0..<n].contains(2) { return }
                if n > 0 && b[0..<n].contains(1) { openConsole(kernel) }
            }
            // The clients polled, before any accepted below joins them.
            let polled = Array(clients[..<(fds.count - firstClient)])
            for p in fds[1..<firstClient] where p.revents != 0 {
                if p.fd == 0 && consoleOpen { readConsole(kernel) } else if p.fd == listener?.fd { acceptClients(kernel) }
            }
            for (i, c) in polled.enumerated() where !c.closed {
                let rev = Int32(fds[firstClient + i].revents)
                if rev & Int32(POLLOUT) != 0 {
                    c.flush()
                    // Output drained: lines held back may run now.
                    if !c.closed && c.backlog < MonitorServer.highWater { runLines(c, kernel) }
                }
                if !c.closed && rev & Int32(POLLIN | POLLHUP | POLLERR) != 0 { readClient(c, kernel) }
            }
            expireClients()
            clients.removeAll { $0.closed }
            publishStats()
        }
    }

    private func shutDown() {
        for c in clients { c.close() }
        clients.removeAll()
        if let l = listener { close(l.fd) }
        listener = nil
        close(wakeRead)
        publishStats()
    }

    private func publishStats() {
        let count = clients.count
        let bytes = clients.reduce(0) { $0 + $1.bufferedBytes } + consoleReader.pending
        let files = sources.cachedFiles
        handle?.stats.withLock {
            $0.clients = count
            $0.bufferedBytes = bytes
            $0.cachedSourceFiles = files
        }
    }

    private func count(_ field: WritableKeyPath<MonitorStats, Int>) {
        handle?.stats.withLock { $0[keyPath: field] += 1 }
    }

    // MARK: The watchdog

    /// Reports, once, a task that has held the kernel longer than the
    /// kernel's `longBlockThreshold`, with where it last resumed and, where
    /// the binary's symbols allow, the kernel thread's live stack.
    private func watchForHog(_ watched: Watched) {
        for (i, t) in watched.targets.enumerated() {
            let threshold = t.link.longBlockThreshold
            guard threshold > 0 else { continue }
            let (id, since) = t.kernel.runningMark()
            guard id != 0, (id, since) != reportedHog[i] else { continue }
            let held = Double(monotonicNanoseconds() - since) / 1e9
            guard held >= threshold else { continue }
            reportedHog[i] = (id, since)
            let view = MonitorView(targets: [t], patience: 0)
            let row = view.row(Int(id))
            let onKernel = t.index.map { " on kernel \($0)" } ?? ""
            var text = "curio: task \(id) (\(row?.name ?? "?"))\(onKernel) has held the kernel for \(formatFixed(held, 3)) s without blocking;"
                + " every other task waits\n"
            if let site = row?.site { text += "  it resumed at File \"\(site.file)\", line \(site.line), in \(site.function)\n" }
            if let frames = captureKernelStack(t.kernel) {
                text += "  live stack of the kernel thread (innermost first):\n"
                for f in frames.prefix(12) { text += "    \(f)\n" }
            }
            diagnose(.warning, kernel: t.kernel, text)
        }
    }

    // MARK: The console

    private func openConsole(_ kernel: Watched) {
        guard consoleAllowed else { return }
        if consoleOpen {
            writeConsole("\ncurio > ")
            return
        }
        consoleOpen = true
        writeConsole(greeting(kernel))
    }

    private func readConsole(_ kernel: Watched) {
        var b = [UInt8](repeating: 0, count: 1024)
        let n = read(0, &b, b.count)
        if n <= 0 {
            if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
            // End of input: leave the console, the program runs on.
            consoleOpen = false
            return
        }
        consoleReader.append(b[0..<n])
        while let next = consoleReader.next() {
            switch next {
            case .tooLong:
                writeConsole("Line too long.\ncurio > ")
            case .line(let bytes):
                if !execute(String(decoding: bytes, as: UTF8.self), to: nil, kernel) {
                    consoleOpen = false
                    consoleReader.reset()
                    return
                }
                writeConsole("curio > ")
            }
        }
    }

    private func writeConsole(_ text: String) {
        var bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            off += n
        }
        bytes.removeAll()
    }

    private func greeting(_ kernel: Watched) -> String {
        let view = kernel.view()
        let on = kernel.grouped ? " on \(kernel.targets.count) kernels" : ""
        return "\nCurio Monitor:  \(view.rows.count) tasks running\(on)\nType help for commands\ncurio > "
    }

    // MARK: Remote clients

    private var authenticatedCount: Int { clients.reduce(0) { $0 + ($1.authenticated && !$1.closed ? 1 : 0) } }

    private func acceptClients(_ kernel: Watched) {
        guard let l = listener else { return }
        // A bounded batch per turn, so a connection flood cannot starve
        // the clients already served.
        for _ in 0..<16 {
            // Close-on-exec from the start: a child another thread spawns
            // meanwhile must not inherit a monitor client.
            let fd = acceptCloseOnExecNonBlocking(l.fd)
            if fd < 0 { return }
            count(\.accepted)
            let now = monotonicNanoseconds()
            switch l.transport {
            case .unix:
                let me = geteuid()
                guard let uid = peerUID(fd), uid == me else {
                    let who = peerUID(fd).map { "uid \($0)" } ?? "a peer of unknown uid"
                    count(\.refused)
                    MonitorConnection(fd: fd, authenticated: false, now: now)
                        .refuse("Refused: this monitor serves only its owner (uid \(me)); you are \(who).\n")
                    continue
                }
                guard authenticatedCount < Monitor.maxClients else {
                    busy(MonitorConnection(fd: fd, authenticated: false, now: now))
                    continue
                }
                let c = MonitorConnection(fd: fd, authenticated: true, now: now)
                clients.append(c)
                c.queue(greeting(kernel))
                c.flush()
            case .tcp:
                let waiting = clients.filter { !$0.authenticated && !$0.closed }
                if waiting.count >= Monitor.maxUnauthenticated, let oldest = waiting.first {
                    count(\.refused)
                    oldest.refuse("Refused: too many connections are waiting to send the token.\n")
                }
                // Silent until the token: nothing about the program goes to
                // a client that has not proved it may know it.
                clients.append(MonitorConnection(fd: fd, authenticated: false, now: now))
            }
        }
    }

    private func busy(_ c: MonitorConnection) {
        count(\.busy)
        c.refuse("Busy: the monitor already serves \(Monitor.maxClients) clients; try again later.\n")
    }

    private func wantsInput(_ c: MonitorConnection) -> Bool {
        !c.inputEnded && !c.closing && c.reader.pending < MonitorServer.maxPendingInput
    }

    /// When the client is dropped unless something happens first.
    private func deadline(of c: MonitorConnection) -> Int64 {
        if !c.authenticated { return c.lastLine + tokenWait }
        return c.lastLine + idle
    }

    private func expireClients() {
        let now = monotonicNanoseconds()
        for c in clients where !c.closed {
            if c.stalled(now: now, stall: stall) {
                // It does not read what it asked for.
                count(\.dropped)
                c.close()
            } else if c.backlog == 0 && now >= deadline(of: c) {
                count(\.dropped)
                if !c.authenticated {
                    c.refuse("Refused: no token within \(formatFixed(Double(tokenWait) / 1e9, 0)) s.\n")
                } else {
                    c.refuse("Idle for \(formatFixed(Double(idle) / 1e9, 0)) s; closing.\n")
                }
            }
        }
    }

    private func readClient(_ c: MonitorConnection, _ kernel: Watched) {
        var b = [UInt8](repeating: 0, count: 16384)
        var got = 0
        while got < 65536 && c.reader.pending < MonitorServer.maxPendingInput {
            let n = recv(c.fd, &b, b.count, 0)
            if n > 0 {
                c.reader.append(b[0..<n])
                got += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            // 0: the client ended its side (answer what it sent first);
            // an error: it is gone.
            if n < 0 {
                c.close()
                return
            }
            c.inputEnded = true
            break
        }
        runLines(c, kernel)
    }

    /// Runs the client's complete lines while its output keeps up. Returns
    /// with every line run, or with output waiting (POLLOUT brings it back).
    private func runLines(_ c: MonitorConnection, _ kernel: Watched) {
        while !c.closed {
            let waiting = runSomeLines(c, kernel)
            c.flush()
            // More lines wait and the client has taken the output: go on.
            if !waiting || c.closed || c.closing || c.backlog >= MonitorServer.highWater { return }
        }
    }

    /// Runs lines until none is complete (false) or the output backs up (true).
    private func runSomeLines(_ c: MonitorConnection, _ kernel: Watched) -> Bool {
        while !c.closed && !c.closing {
            if c.backlog >= MonitorServer.highWater { return true }
            guard let next = c.reader.next() else {
                if c.inputEnded { c.closing = true }
                return false
            }
            switch next {
            case .tooLong:
                // Too long to be a command, even if its end came in time.
                c.queue("Line too long; closing.\n")
                c.closing = true
            case .line(let raw):
                c.lastLine = monotonicNanoseconds()
                if !c.authenticated {
                    checkToken(raw, c, kernel)
                    continue
                }
                guard MonitorCommand.isPrintable(raw) else {
                    c.queue("Bad command: not printable text.\ncurio > ")
                    continue
                }
                if execute(String(decoding: raw, as: UTF8.self), to: c, kernel) {
                    c.queue("curio > ")
                } else {
                    c.closing = true
                }
            }
        }
        return false
    }

    private func checkToken(_ raw: [UInt8], _ c: MonitorConnection, _ kernel: Watched) {
        guard case .tcp(let token)? = listener?.transport else { return }
        let words = String(decoding: raw, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        let whereToken = listener?.tokenPath.map { " and in \($0)" } ?? ""
        guard words.count == 2, words[0] == "token" else {
            count(\.refused)
            c.refuse("Refused: this monitor needs the run's token first: send a line `token <hex>` (the token is on the program's stderr\(whereToken)).\n")
            return
        }
        guard constantTimeEqual(Array(words[1].utf8), Array(token.utf8)) else {
            count(\.refused)
            c.refuse("Refused: wrong token.\n")
            return
        }
        guard authenticatedCount < Monitor.maxClients else {
            busy(c)
            return
        }
        c.authenticated = true
        c.queue(greeting(kernel))
    }

    // MARK: Commands

    /// Runs one command line for a client (nil: the console); false means "quit".
    private func execute(_ line: String, to client: MonitorConnection?, _ kernel: Watched) -> Bool {
        func say(_ text: String) {
            if let client { client.queue(text) } else { writeConsole(text) }
        }
        switch MonitorCommand.parse(line) {
        case .empty:
            break
        case .reply(let text):
            say(text)
        case .help:
            say(MonitorCommand.helpText)
        case .ps:
            say(kernel.view().ps)
        case .whereIs(let id):
            let view = kernel.view()
            let owner = view.target(of: id).map { kernel.targets[$0].kernel }
            say(view.whereText(id, source: { sources.line($0, $1) }, liveStack: { owner.flatMap(captureKernelStack) }))
        case .cancel(let id):
            // Say it before the kernel acts, so the reply comes before
            // whatever the cancelled task prints.
            let view = kernel.view()
            guard view.row(id) != nil, let at = view.target(of: id) else {
                say("No task \(id).\n")
                break
            }
            say("Cancelling task \(id)\n")
            client?.flush()
            let owner = kernel.targets[at]
            cancel(id, owner.kernel)
            settle(after: id, owner)
        case .parents(let id):
            say(kernel.view().parents(id))
        case .tree:
            say(kernel.view().tree)
        case .signal(let sig):
            say("Sending \(signalName(sig))\n")
            client?.flush()
            kill(getpid(), sig)
        case .quit:
            return false
        }
        return true
    }

    /// Gives a cancelled task a moment (at most half a second) to end, and
    /// its parent to react, so that what they print comes before the next
    /// prompt, as in the seed's transcript.
    private func settle(after id: Int, _ owner: (kernel: Kernel, link: MonitorLink, index: Int?)) {
        let deadline = monotonicNanoseconds() + 500_000_000
        while monotonicNanoseconds() < deadline {
            let (rows, fresh) = owner.link.snapshot(from: owner.kernel, patience: 0.05)
            if fresh && !rows.contains(where: { $0.id == id }) { break }
        }
        usleep(20_000)
    }

    /// Asks the kernel to cancel task `id` (it may have ended meanwhile).
    private func cancel(_ id: Int, _ kernel: Kernel) {
        kernel.postMessage { k in
            k.forEachTask { t in if t.id == id { k.deliverCancel(t, TaskCancelled()) } }
        }
    }
}

/// Compares without an early exit, so the time taken says nothing about
/// how much of a guess was right.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return diff == 0
}

/// The kernels a monitor watches, held strongly for one turn of its loop;
/// nil once every one of them has gone.
struct Watched {
    let targets: [(kernel: Kernel, link: MonitorLink, index: Int?)]

    init?(_ all: [MonitorTarget]) {
        var live: [(kernel: Kernel, link: MonitorLink, index: Int?)] = []
        for t in all {
            if let k = t.kernel { live.append((k, t.link, t.index)) }
        }
        if live.isEmpty { return nil }
        targets = live
    }

    /// True for a group's monitor (its tables have a kernel column).
    var grouped: Bool { targets.first?.index != nil }

    /// The table of every watched kernel now.
    func view(patience: Double = 0.25) -> MonitorView {
        MonitorView(targets: targets, patience: patience)
    }
}

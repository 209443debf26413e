// The seed's monitor transcript end to end, in a pseudo-terminal: the
// example `hello-monitor` (built beside this test binary) runs as a child
// whose stdin, stdout and stderr are the slave side of a pty that is its
// controlling terminal, with CURIO_TIME_SCALE=0.01. After "We're leaving!"
// the test types Ctrl-C (the byte 0x03, which the line discipline turns
// into SIGINT), then `ps`, `where`, `cancel` as the seed's author did; ids
// are read from `ps`, never assumed. The child is killed and reaped on every
// path.
//
// This file also holds `MonitorHarness`, the child-process, pty and socket
// helpers that RemoteMonitorTests and HogAndDeadlockTests use too.
import Glibc
import CurioTestSupport
import Testing

@testable import Curio

// MARK: - Harness

enum MonitorHarness {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Seconds on CLOCK_MONOTONIC.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func selfExecutable() throws -> String { try TestScenarios.selfExecutable() }

    /// An executable of the package, from the build directory this test
    /// binary runs from (.build/debug, .build-epoll/debug, ...).
    static func executable(_ name: String) throws -> String {
        let me = try selfExecutable()
        guard let slash = me.lastIndex(of: "/") else { throw Failure("odd test binary path \(me)") }
        let path = String(me[..<slash]) + "/" + name
        guard access(path, X_OK) == 0 else {
            throw Failure("\(path) is missing: build the package (swift build) before running this test")
        }
        return path
    }

    /// This process's environment without the variables that change how
    /// Curio programs and this test binary behave, plus `changes`.
    static func environment(_ changes: [String: String?]) -> [String] {
        let scrub: Set<String> = ["CURIOMONITOR", "CURIO_TIME_SCALE", "CURIO_LONG_BLOCK", "CURIO_TEST_SCENARIO",
                                  "CURIO_IO_SCENARIO", MonitorDebugScenario.variable, "CURIO_MONITOR_IDLE",
                                  "XDG_RUNTIME_DIR", MonitorPeerScenario.variable]
        var changes = changes
        if changes["XDG_RUNTIME_DIR"] == nil { changes["XDG_RUNTIME_DIR"] = runtimeDirectory }
        var env: [(String, String)] = []
        for (k, v) in TestScenarios.currentEnvironment().sorted(by: { $0.key < $1.key })
        where !scrub.contains(k) && changes[k] == nil {
            env.append((k, v))
        }
        for (k, v) in changes { if let v { env.append((k, v)) } }
        return env.map { "\($0.0)=\($0.1)" }
    }

    /// The XDG_RUNTIME_DIR of every program these tests start: their
    /// monitor sockets go to `<it>/curio/<pid>.sock`, away from a
    /// developer's own programs.
    static let runtimeDirectory: String = privateDirectory("runtime")

    /// A new 0700 directory under /tmp.
    static func privateDirectory(_ what: String) -> String {
        var template = Array("/tmp/curio-monitor-\(what)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return made.map { String(cString: $0) } ?? "/tmp"
    }

    /// Where program `pid` started by these tests has its monitor socket.
    static func socketPath(pid: pid_t, runtimeDirectory: String = runtimeDirectory) -> String {
        runtimeDirectory + "/curio/\(pid).sock"
    }

    /// glibc's pty functions. The Glibc module hides them (they need
    /// _XOPEN_SOURCE), so they are looked up by name, with their C types.
    struct PTYFunctions {
        let posixOpenpt: @convention(c) (Int32) -> Int32
        let grantpt: @convention(c) (Int32) -> Int32
        let unlockpt: @convention(c) (Int32) -> Int32
        let ptsnameR: @convention(c) (Int32, UnsafeMutablePointer<CChar>?, Int) -> Int32

        static func shared() throws -> PTYFunctions {
            let me = dlopen(nil, RTLD_NOW)
            func look<F>(_ name: String, _: F.Type) throws -> F {
                guard let sym = dlsym(me, name) else { throw Failure("dlsym(\(name)) failed") }
                return unsafeBitCast(sym, to: F.self)
            }
            return PTYFunctions(
                posixOpenpt: try look("posix_openpt", (@convention(c) (Int32) -> Int32).self),
                grantpt: try look("grantpt", (@convention(c) (Int32) -> Int32).self),
                unlockpt: try look("unlockpt", (@convention(c) (Int32) -> Int32).self),
                ptsnameR: try look("ptsname_r", (@convention(c) (Int32, UnsafeMutablePointer<CChar>?, Int) -> Int32).self))
        }
    }

    /// What a child reads and writes.
    enum Layout {
        /// stdin, stdout and stderr on a pty that is the child's
        /// controlling terminal (a new session): Ctrl-C works.
        case console
        /// stdout on a pty (so `print` is line-buffered), stdin /dev/null,
        /// stderr a socket: the monitor has no console.
        case terminalOutput
        /// stdin, stdout and stderr sockets.
        case pipes
    }

    enum StreamID { case out, err }

    /// A child process; every read is bounded by a deadline. Used from one
    /// thread at a time. Killed and reaped by `terminate()` or deinit.
    final class Child: @unchecked Sendable {
        let pid: pid_t
        let path: String
        private var inFD: Int32 = -1
        private var outFD: Int32 = -1
        private var errFD: Int32 = -1
        private var outBytes: [UInt8] = []
        private var errBytes: [UInt8] = []
        private var outCursor = 0
        private var errCursor = 0
        private(set) var status: Int32?

        init(_ path: String, arguments: [String] = [], environment: [String: String?] = [:], layout: Layout) throws {
            self.path = path
            var fds: [Int32] = []  // the child's ends, closed after the spawn
            defer { fds.forEach { _ = close($0) } }
            var mine: [Int32] = []
            var ok = false
            defer { if !ok { mine.forEach { _ = close($0) } } }

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }

            func socketPair() throws -> (mine: Int32, theirs: Int32) {
                var sv: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
                    throw Failure("socketpair: \(String(cString: strerror(errno)))")
                }
                mine.append(sv[0])
                fds.append(sv[1])
                return (sv[0], sv[1])
            }
            func openPTY() throws -> (master: Int32, slavePath: String) {
                let pty = try PTYFunctions.shared()
                let master = pty.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard master >= 0 else { throw Failure("posix_openpt: \(String(cString: strerror(errno)))") }
                mine.append(master)
                guard pty.grantpt(master) == 0, pty.unlockpt(master) == 0 else {
                    throw Failure("grantpt/unlockpt: \(String(cString: strerror(errno)))")
                }
                var name = [CChar](repeating: 0, count: 128)
                guard pty.ptsnameR(master, &name, name.count) == 0 else { throw Failure("ptsname_r failed") }
                return (master, String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }

            switch layout {
            case .console:
                let (master, slave) = try openPTY()
                // Opened in the child after setsid() and without O_NOCTTY, the
                // slave becomes the new session's controlling terminal.
                posix_spawn_file_actions_addopen(&actions, 0, slave, O_RDWR, 0)
                posix_spawn_file_actions_adddup2(&actions, 0, 1)
                posix_spawn_file_actions_adddup2(&actions, 0, 2)
                inFD = master
                outFD = fcntl(master, F_DUPFD_CLOEXEC, 3)
                mine.append(outFD)
            case .terminalOutput:
                let (master, slave) = try openPTY()
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_addopen(&actions, 1, slave, O_RDWR | O_NOCTTY, 0)
                let e = try socketPair()
                posix_spawn_file_actions_adddup2(&actions, e.theirs, 2)
                outFD = master
                errFD = e.mine
            case .pipes:
                let i = try socketPair(), o = try socketPair(), e = try socketPair()
                posix_spawn_file_actions_adddup2(&actions, i.theirs, 0)
                posix_spawn_file_actions_adddup2(&actions, o.theirs, 1)
                posix_spawn_file_actions_adddup2(&actions, e.theirs, 2)
                inFD = i.mine
                outFD = o.mine
                errFD = e.mine
            }
            // Nothing but stdio reaches the child: a descriptor the test
            // process left inheritable must not show in its checks.
            _ = spawnClosesDescriptors(&actions, from: 3)

            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            defer { posix_spawnattr_destroy(&attr) }
            var mask = sigset_t()
            sigemptyset(&mask)
            var defaults = sigset_t()
            sigemptyset(&defaults)
            for s in [SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD] { sigaddset(&defaults, s) }
            posix_spawnattr_setsigmask(&attr, &mask)
            posix_spawnattr_setsigdefault(&attr, &defaults)
            // POSIX_SPAWN_SETSID (0x80, a GNU flag the Glibc module hides):
            // a session of its own, away from the terminal running the tests.
            let setsid: Int32 = 0x80
            posix_spawnattr_setflags(&attr, Int16(Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | setsid))

            let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
            let envp: [UnsafeMutablePointer<CChar>?] = MonitorHarness.environment(environment).map { strdup($0) } + [nil]
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
            guard rc == 0 else { throw Failure("posix_spawn \(path): \(String(cString: strerror(rc)))") }
            self.pid = pid
            ok = true
            for fd in [inFD, outFD, errFD] where fd >= 0 {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
        }

        deinit { terminate() }

        /// Kills the child (if it still runs), reaps it and closes every
        /// descriptor. Idempotent.
        func terminate() {
            if status == nil {
                kill(pid, SIGKILL)
                var st: Int32 = 0
                while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
                status = st
            }
            for fd in [inFD, outFD, errFD] where fd >= 0 { close(fd) }
            inFD = -1
            outFD = -1
            errFD = -1
        }

        var isRunning: Bool {
            if status != nil { return false }
            var st: Int32 = 0
            if waitpid(pid, &st, WNOHANG) == pid {
                status = st
                return false
            }
            return true
        }

        /// Waits up to `seconds` for output and reads what arrived.
        func pump(_ seconds: Double) {
            var fds: [pollfd] = []
            if outFD >= 0 { fds.append(pollfd(fd: outFD, events: Int16(POLLIN), revents: 0)) }
            if errFD >= 0 { fds.append(pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)) }
            guard !fds.isEmpty else {
                if seconds > 0 { usleep(UInt32(min(seconds, 0.05) * 1e6)) }
                return
            }
            if poll(&fds, nfds_t(fds.count), Int32(max(0, min(seconds, 60)) * 1000)) <= 0 { return }
            for p in fds where p.revents != 0 { drain(p.fd == outFD ? .out : .err) }
        }

        private func drain(_ which: StreamID) {
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let fd = which == .out ? outFD : errFD
                guard fd >= 0 else { return }
                let n = read(fd, &buf, buf.count)
                if n > 0 {
                    // A terminal turns "\n" into "\r\n"; keep "\n" only.
                    let chunk = buf[0..<n].filter { $0 != 13 }
                    if which == .out { outBytes += chunk } else { errBytes += chunk }
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                // End of stream (a socket's EOF, or EIO once the pty's last
                // slave descriptor is closed).
                if which == .out {
                    if outFD != inFD { close(outFD) }
                    outFD = -1
                } else {
                    close(errFD)
                    errFD = -1
                }
                return
            }
        }

        /// Everything read from a stream so far.
        func text(_ which: StreamID = .out) -> String {
            String(decoding: which == .out ? outBytes : errBytes, as: UTF8.self)
        }

        /// Waits (at most `seconds`) until `needle` appears on the stream
        /// after what earlier calls consumed; returns the text up to and
        /// including it and consumes that.
        @discardableResult
        func expect(_ needle: String, on which: StreamID = .out, within seconds: Double = 15) throws -> String {
            let pattern = Array(needle.utf8)
            let deadline = MonitorHarness.now() + seconds
            while true {
                let bytes = which == .out ? outBytes : errBytes
                let cursor = which == .out ? outCursor : errCursor
                if let r = MonitorHarness.find(pattern, in: bytes, from: cursor) {
                    if which == .out { outCursor = r.upperBound } else { errCursor = r.upperBound }
                    return String(decoding: bytes[cursor..<r.upperBound], as: UTF8.self)
                }
                let open = which == .out ? outFD >= 0 : errFD >= 0
                let left = deadline - MonitorHarness.now()
                if left <= 0 || !open {
                    let tail = String(decoding: bytes[cursor...].suffix(1500), as: UTF8.self)
                    throw Failure("\(open ? "timed out after \(seconds) s" : "stream ended") waiting for \(needle.debugDescription) from \(path); unconsumed: \(tail.debugDescription)")
                }
                pump(min(left, 0.5))
            }
        }

        /// Writes bytes to the child's stdin (the pty master for a console).
        func send(_ bytes: [UInt8]) throws {
            guard inFD >= 0 else { throw Failure("the child's stdin is not ours") }
            var off = 0
            let deadline = MonitorHarness.now() + 10
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { raw in
                    Glibc.send(inFD, raw.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
                }
                if n < 0 && errno == ENOTSOCK {
                    let w = bytes.withUnsafeBytes { raw in write(inFD, raw.baseAddress! + off, bytes.count - off) }
                    if w > 0 { off += w; continue }
                    if w < 0 && (errno == EAGAIN || errno == EINTR) { pump(0.01); continue }
                    throw Failure("write to the child: \(String(cString: strerror(errno)))")
                }
                if n > 0 { off += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) && MonitorHarness.now() < deadline {
                    pump(0.01)
                    continue
                }
                throw Failure("send to the child: \(String(cString: strerror(errno)))")
            }
        }

        func send(_ text: String) throws { try send(Array(text.utf8)) }

        /// Ends the child's stdin (socket layouts).
        func closeInput() {
            if inFD >= 0 && inFD != outFD { shutdown(inFD, Int32(SHUT_WR)) }
        }

        /// Waits (at most `seconds`) for the child to exit, reading its
        /// output meanwhile; its wait status, or nil if it still runs.
        func waitForExit(within seconds: Double) -> Int32? {
            let deadline = MonitorHarness.now() + seconds
            while isRunning {
                if MonitorHarness.now() >= deadline { return nil }
                pump(0.02)
            }
            // Whatever it wrote before it ended.
            var spins = 0
            while (outFD >= 0 || errFD >= 0) && spins < 50 {
                pump(0.02)
                spins += 1
            }
            return status
        }
    }

    /// The range of `pattern` in `bytes` at or after `from`.
    static func find(_ pattern: [UInt8], in bytes: [UInt8], from: Int) -> Range<Int>? {
        guard !pattern.isEmpty, bytes.count - from >= pattern.count else { return nil }
        var i = from
        while i + pattern.count <= bytes.count {
            if bytes[i] == pattern[0] && bytes[i..<(i + pattern.count)].elementsEqual(pattern) {
                return i..<(i + pattern.count)
            }
            i += 1
        }
        return nil
    }

    /// "exit N" or "signal N".
    static func describe(_ status: Int32?) -> String {
        guard let status else { return "still running" }
        if status & 0x7f == 0 { return "exit \((status >> 8) & 0xff)" }
        return "signal \(status & 0x7f)"
    }

    // MARK: The monitor's output

    /// One row of `ps`.
    struct PSRow: Equatable {
        let id: Int
        let state: String
        let cycles: Int
        let timeout: Double?
        let name: String
    }

    static let psHeader = "Task   State        Cycles     Timeout Task"
    static let psRule = "------ ------------ ---------- ------- " + String(repeating: "-", count: 50)

    /// Parses the answer to `ps`: the header (trailing spaces allowed), the
    /// rule, then one row per task. Throws when the shape is wrong.
    static func parsePS(_ text: String) throws -> (rows: [PSRow], notes: [String]) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let h = lines.firstIndex(where: { $0.hasPrefix("Task ") }) else {
            throw Failure("no ps header in \(text.debugDescription)")
        }
        lines.removeFirst(h)
        guard stripTrailing(lines[0]) == psHeader else { throw Failure("ps header is \(lines[0].debugDescription)") }
        guard lines.count > 1, lines[1] == psRule else { throw Failure("ps rule is \(lines.dropFirst().first.debugDescription)") }
        var rows: [PSRow] = []
        var notes: [String] = []
        for line in lines.dropFirst(2) {
            if line.isEmpty || line.hasPrefix("curio >") { continue }
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if f.count >= 5, let id = Int(f[0]), let cycles = Int(f[2]) {
                // Columns start where the header's do.
                let chars = Array(line)
                func column(_ at: Int, _ width: Int) -> String {
                    guard chars.count > at else { return "" }
                    return String(chars[at..<min(chars.count, at + width)])
                }
                guard stripTrailing(column(0, 6)) == String(id), column(6, 1) == " ",
                      stripTrailing(column(7, 12)) == f[1], stripTrailing(column(20, 10)) == f[2],
                      stripTrailing(column(31, 7)) == f[3] else {
                    throw Failure("ps row is not in the header's columns: \(line.debugDescription)")
                }
                let timeout: Double?
                if f[3] == "None" { timeout = nil } else if let t = Double(f[3]) { timeout = t } else {
                    throw Failure("ps timeout \(f[3].debugDescription) in \(line.debugDescription)")
                }
                rows.append(PSRow(id: id, state: f[1], cycles: cycles, timeout: timeout,
                                  name: f[4...].joined(separator: " ")))
            } else {
                notes.append(line)
            }
        }
        return (rows, notes)
    }

    static func stripTrailing(_ s: String) -> String {
        var s = s
        while s.last == " " { s.removeLast() }
        return s
    }

    /// A `where` answer's `File "...", line N, in fn` lines.
    static func fileLines(_ text: String) -> [(file: String, line: Int, function: String)] {
        var out: [(String, Int, String)] = []
        for l in text.split(separator: "\n") {
            let t = l.drop { $0 == " " }
            guard t.hasPrefix("File \""), let close = t.dropFirst(6).firstIndex(of: "\"") else { continue }
            let file = String(t[t.index(t.startIndex, offsetBy: 6)..<close])
            let rest = t[t.index(after: close)...]
            guard rest.hasPrefix(", line "), let comma = rest.dropFirst(7).firstIndex(of: ",") else { continue }
            guard let n = Int(rest[rest.index(rest.startIndex, offsetBy: 7)..<comma]) else { continue }
            let fn = rest[comma...].hasPrefix(", in ") ? String(rest[rest.index(comma, offsetBy: 5)...]) : ""
            out.append((file, n, fn))
        }
        return out
    }

    /// The line after `File ...` in a `where` answer (the source text).
    static func sourceTextAfterFileLine(_ text: String) -> String? {
        let lines = text.split(separator: "\n").map(String.init)
        guard let i = lines.firstIndex(where: { $0.drop { $0 == " " }.hasPrefix("File \"") }), i + 1 < lines.count else {
            return nil
        }
        return String(lines[i + 1].drop { $0 == " " })
    }
}

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct MonitorConsoleTests {
    typealias H = MonitorHarness

    /// Starts hello-monitor on a pty and runs it to "We're leaving!". Its
    /// remote monitor listens on its standard Unix socket, in the tests'
    /// own XDG_RUNTIME_DIR; CURIOMONITOR (empty) makes it say so on the
    /// terminal first.
    static func startHelloMonitor(scale: String = "0.01") throws -> H.Child {
        let child = try H.Child(try H.executable("hello-monitor"),
                                environment: ["CURIO_TIME_SCALE": scale, "CURIOMONITOR": ""],
                                layout: .console)
        do {
            try child.expect("We're leaving!\n", within: 20)
        } catch {
            child.terminate()
            throw error
        }
        return child
    }

    /// Types Ctrl-C and reads the console's greeting.
    static func enterConsole(_ child: H.Child) throws -> String {
        try child.send([0x03])
        return try child.expect("curio > ")
    }

    /// Types a command and returns its answer (up to the next prompt,
    /// without the echoed command line and the prompt).
    static func command(_ child: H.Child, _ line: String) throws -> String {
        try child.send(line + "\n")
        var text = try child.expect("curio > ")
        text.removeLast("curio > ".count)
        // The terminal echoes what was typed.
        let echo = line + "\n"
        if text.hasPrefix(echo) { text.removeFirst(echo.count) }
        return text
    }

    @Test(.timeLimit(.minutes(1)))
    func seedTranscriptPsWhereCancel() throws {
        let child = try Self.startHelloMonitor()
        defer { child.terminate() }
        let countdown = (1...10).reversed().map { "T-minus \($0)\n" }.joined()
        let transcript = "Building the Millenium Falcon in Minecraft\nLet's go\n" + countdown + "We're leaving!\n"
        #expect(child.text().hasPrefix("curio: monitor listening on \(H.socketPath(pid: child.pid))\n"), "\(child.text().debugDescription)")
        #expect(child.text().hasSuffix("\n" + transcript), "\(child.text().debugDescription)")

        let greeting = try Self.enterConsole(child)
        #expect(greeting.contains("\nCurio Monitor:  2 tasks running\nType help for commands\ncurio > "),
                "greeting: \(greeting.debugDescription)")

        let ps1 = try H.parsePS(try Self.command(child, "ps"))
        #expect(ps1.rows.count == 2, "rows: \(ps1.rows)")
        let parent = try #require(ps1.rows.first { $0.name == "parent" }, "no parent in \(ps1.rows)")
        let kid = try #require(ps1.rows.first { $0.name == "kid" }, "no kid in \(ps1.rows)")
        #expect(parent.state == "TASK_JOIN")
        #expect(parent.timeout == nil)
        #expect(kid.state == "TIME_SLEEP")
        let t1 = try #require(kid.timeout)
        // 1000 s scaled by 0.01, minus what has passed.
        #expect(t1 < 10 && t1 > 0, "kid timeout \(t1)")
        #expect(parent.cycles >= 1 && kid.cycles >= 1)
        #expect(parent.id != kid.id)

        // The timeout counts down (at least 50 ms pass between the two).
        usleep(50_000)
        let ps2 = try H.parsePS(try Self.command(child, "ps"))
        let kid2 = try #require(ps2.rows.first { $0.id == kid.id })
        #expect(kid2.state == "TIME_SLEEP")
        let t2 = try #require(kid2.timeout)
        #expect(t2 < t1 && t2 > 0, "kid timeout went from \(t1) to \(t2)")

        let whereKid = try Self.command(child, "where \(kid.id)")
        #expect(whereKid.hasPrefix(" Stack for Task(id=\(kid.id), name=kid, state='TIME_SLEEP') (most recent call last):\n"),
                "where kid: \(whereKid.debugDescription)")
        let kidFrame = try #require(H.fileLines(whereKid).first, "no File line in \(whereKid.debugDescription)")
        #expect(kidFrame.file.hasSuffix("main.swift") && kidFrame.file.contains("hello-monitor"), "\(kidFrame)")
        #expect(kidFrame.function == "kid()")
        #expect(kidFrame.line > 0)
        #expect(H.sourceTextAfterFileLine(whereKid) == "try await Curio.sleep(1000)", "where kid: \(whereKid.debugDescription)")

        let whereParent = try Self.command(child, "where \(parent.id)")
        #expect(whereParent.hasPrefix(" Stack for Task(id=\(parent.id), name=parent, state='TASK_JOIN')"),
                "where parent: \(whereParent.debugDescription)")
        let parentFrame = try #require(H.fileLines(whereParent).first, "no File line in \(whereParent.debugDescription)")
        #expect(parentFrame.file == kidFrame.file)
        #expect(parentFrame.function == "parent()")
        #expect(parentFrame.line > kidFrame.line)
        #expect(H.sourceTextAfterFileLine(whereParent) == "try await kidTask.join()")

        try child.send("cancel \(kid.id)\n")
        try child.expect("Cancelling task \(kid.id)\n")
        try child.expect("Leaving!\n")
        let status = child.waitForExit(within: 20)
        #expect(H.describe(status) == "exit 0", "output: \(child.text().debugDescription)")
        #expect(!child.text().contains("Fatal"))
    }

    @Test(.timeLimit(.minutes(1)))
    func helpUnknownQuitAndReenter() throws {
        // Slower clock: the kid sleeps 50 s, plenty for this conversation.
        let child = try Self.startHelloMonitor(scale: "0.05")
        defer { child.terminate() }
        _ = try Self.enterConsole(child)

        let help = try Self.command(child, "help")
        #expect(help.hasPrefix("Commands:\n"), "help: \(help.debugDescription)")
        for cmd in ["ps", "where taskid", "cancel taskid", "parents taskid", "tree", "signal signame", "help", "quit"] {
            #expect(help.contains("\n " + cmd + " "), "help lacks \(cmd): \(help.debugDescription)")
        }

        let unknown = try Self.command(child, "frobnicate 3")
        #expect(unknown == "Unknown command 'frobnicate'. Type help for commands.\n", "\(unknown.debugDescription)")
        #expect(try Self.command(child, "where") == "Usage: where ID\n")
        #expect(try Self.command(child, "where 999") == "No task 999.\n")
        #expect(try Self.command(child, "cancel abc") == "Usage: cancel ID\n")
        #expect(try Self.command(child, "cancel 999") == "No task 999.\n")
        // An empty line just prompts again.
        #expect(try Self.command(child, "") == "")

        // parents and tree: the kid's parent is the parent.
        let rows = try H.parsePS(try Self.command(child, "ps")).rows
        let parent = try #require(rows.first { $0.name == "parent" })
        let kid = try #require(rows.first { $0.name == "kid" })
        let parents = try Self.command(child, "parents \(kid.id)")
        let parentLines = parents.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(parentLines.map { $0.first } == [String(kid.id), String(parent.id)], "parents: \(parents.debugDescription)")
        let tree = try Self.command(child, "tree")
        #expect(tree == "\(parent.id) parent [TASK_JOIN]\n  \(kid.id) kid [TIME_SLEEP]\n", "tree: \(tree.debugDescription)")

        // quit leaves the console; the program runs on and says nothing.
        try child.send("quit\n")
        try child.expect("quit\n")
        let before = child.text()
        child.pump(0.2)
        #expect(child.text() == before, "after quit: \(child.text().dropFirst(before.count).debugDescription)")
        #expect(child.isRunning)
        // Typed lines are not commands now (the console is closed): the
        // terminal echoes them and nothing answers.
        try child.send("ps\n")
        try child.expect("ps\n")
        child.pump(0.2)
        #expect(!child.text().dropFirst(before.count).contains("TIME_SLEEP"))

        // A second Ctrl-C enters the console again, and it works.
        let greeting = try Self.enterConsole(child)
        #expect(greeting.contains("Curio Monitor:  2 tasks running\nType help for commands\ncurio > "),
                "greeting: \(greeting.debugDescription)")
        // The "ps" typed while the console was closed is still in the
        // terminal's buffer: the console may read it now. Resynchronise on a
        // marker command.
        try child.send("marker-\(kid.id)\n")
        try child.expect("Unknown command 'marker-\(kid.id)'")
        try child.expect("curio > ")
        let again = try H.parsePS(try Self.command(child, "ps")).rows
        #expect(again.map(\.id) == rows.map(\.id))

        // Ctrl-C inside the open console only prompts again.
        try child.send([0x03])
        try child.expect("curio > ")
        #expect(child.isRunning)

        try child.send("cancel \(kid.id)\n")
        try child.expect("Cancelling task \(kid.id)\n")
        try child.expect("Leaving!\n")
        #expect(H.describe(child.waitForExit(within: 20)) == "exit 0")
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutTheMonitorCtrlCEndsTheProgram() throws {
        // hello-countdown has no monitor: Ctrl-C ends it as usual.
        let child = try H.Child(try H.executable("hello-countdown"), environment: ["CURIO_TIME_SCALE": "1"],
                                layout: .console)
        defer { child.terminate() }
        try child.expect("T-minus 10\n")
        try child.send([0x03])
        let status = child.waitForExit(within: 20)
        #expect(H.describe(status) == "signal \(SIGINT)", "output: \(child.text().debugDescription)")
    }
}

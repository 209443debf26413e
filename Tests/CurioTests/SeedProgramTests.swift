// The seed's programs end to end: the example executables built beside this
// test binary run as child processes with their stdout on a terminal (a
// pty, as when the seed's author ran them), the clock scaled by
// CURIO_TIME_SCALE=0.01, and their output is compared line by line with what
// the seed shows. One countdown runs unscaled and checks ~1 s per line.
import Glibc
import Testing

@testable import Curio

// MARK: - Child processes

extension KernelHarness {
    /// A child process whose stdout (a pty or a pipe) and stderr (a pipe)
    /// this process reads, every read bounded. Used from one thread at a
    /// time.
    final class ChildProcess: @unchecked Sendable {
        let pid: pid_t
        let startedAt: Double
        private var outFD: Int32
        private var errFD: Int32
        private var outPending: [UInt8] = []
        private(set) var stdoutBytes: [UInt8] = []
        private(set) var stderrBytes: [UInt8] = []
        private var outLines: [(text: String, at: Double)] = []
        /// When the first and the last complete stdout lines were read.
        private(set) var firstLineAt: Double?
        private(set) var lastLineAt: Double?
        private var exitStatus: Int32?

        init(path: String, arguments: [String], environment: [String: String?],
             stdoutIsTerminal: Bool) throws {
            // Every descriptor is opened close-on-exec at once, so children
            // that other tests spawn meanwhile never inherit one (which
            // would hold a stream open after this child has exited).
            var outRead: Int32 = -1, outWrite: Int32 = -1
            if stdoutIsTerminal {
                let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard master >= 0 else {
                    throw Failure(description: "cannot open a pty: \(String(cString: strerror(errno)))")
                }
                var unlock: Int32 = 0
                var number: Int32 = 0
                guard ioctl(master, KernelHarness.TIOCSPTLCK, &unlock) == 0,
                      ioctl(master, KernelHarness.TIOCGPTN, &number) == 0 else {
                    close(master)
                    throw Failure(description: "cannot set up the pty")
                }
                let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard slave >= 0 else {
                    close(master)
                    throw Failure(description: "cannot open the pty's slave")
                }
                // No output processing: the bytes the program writes, without
                // "\r\n" for "\n".
                var tio = termios()
                tcgetattr(slave, &tio)
                tio.c_oflag &= ~tcflag_t(OPOST)
                tcsetattr(slave, TCSANOW, &tio)
                outRead = master
                outWrite = slave
            } else {
                let pair = try KernelHarness.socketPair()
                outRead = pair.0
                outWrite = pair.1
            }
            let efds: [Int32]
            do {
                let pair = try KernelHarness.socketPair()
                efds = [pair.0, pair.1]
            } catch {
                close(outRead)
                close(outWrite)
                throw error
            }

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, outWrite, 1)
            posix_spawn_file_actions_adddup2(&actions, efds[1], 2)
            // Nothing but stdio reaches the child: a descriptor the test
            // process left inheritable must not show in its checks.
            _ = spawnClosesDescriptors(&actions, from: 3)
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            defer { posix_spawnattr_destroy(&attr) }
            var noSignals = sigset_t()
            sigemptyset(&noSignals)
            var defaults = sigset_t()
            sigemptyset(&defaults)
            sigaddset(&defaults, SIGPIPE)
            sigaddset(&defaults, SIGINT)
            posix_spawnattr_setsigmask(&attr, &noSignals)
            posix_spawnattr_setsigdefault(&attr, &defaults)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

            let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
            let envp: [UnsafeMutablePointer<CChar>?] =
                environment.compactMap { k, v in v.map { strdup("\(k)=\($0)") } } + [nil]
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
            close(outWrite)
            close(efds[1])
            guard rc == 0 else {
                close(outRead)
                close(efds[0])
                throw Failure(description: "posix_spawn \(path) failed: \(String(cString: strerror(rc)))")
            }
            self.pid = pid
            self.startedAt = KernelHarness.monotonicNow()
            outFD = outRead
            errFD = efds[0]
            _ = fcntl(outFD, F_SETFL, fcntl(outFD, F_GETFL) | O_NONBLOCK)
            _ = fcntl(errFD, F_SETFL, fcntl(errFD, F_GETFL) | O_NONBLOCK)
        }

        deinit {
            if exitStatus == nil {
                kill(pid, SIGKILL)
                var st: Int32 = 0
                waitpid(pid, &st, 0)
            }
            if outFD >= 0 { close(outFD) }
            if errFD >= 0 { close(errFD) }
        }

        var stdoutEOF: Bool { outFD < 0 }

        /// Waits up to `seconds` for output and reads what arrived. Returns
        /// false when both streams have ended.
        @discardableResult
        func pump(_ seconds: Double) -> Bool {
            var fds: [pollfd] = []
            if outFD >= 0 { fds.append(pollfd(fd: outFD, events: Int16(POLLIN), revents: 0)) }
            if errFD >= 0 { fds.append(pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)) }
            if fds.isEmpty { return false }
            let ms = Int32(max(0, min(seconds, 3600)) * 1000)
            let n = poll(&fds, nfds_t(fds.count), ms)
            if n <= 0 { return true }
            for p in fds where p.revents != 0 {
                if p.fd == outFD { drain(isStdout: true) } else { drain(isStdout: false) }
            }
            return outFD >= 0 || errFD >= 0
        }

        private func drain(isStdout: Bool) {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let fd = isStdout ? outFD : errFD
                if fd < 0 { return }
                let n = read(fd, &buf, buf.count)
                if n > 0 {
                    let chunk = buf[0..<n]
                    if isStdout {
                        stdoutBytes += chunk
                        collectLines(chunk, at: KernelHarness.monotonicNow())
                    } else {
                        stderrBytes += chunk
                    }
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                // EOF (pipe) or EIO (the pty's last writer closed it).
                close(fd)
                if isStdout { outFD = -1 } else { errFD = -1 }
                return
            }
        }

        private func collectLines(_ chunk: ArraySlice<UInt8>, at time: Double) {
            for b in chunk {
                if b == UInt8(ascii: "\n") {
                    var line = String(decoding: outPending, as: UTF8.self)
                    if line.hasSuffix("\r") { line.removeLast() }
                    outLines.append((line, time))
                    if firstLineAt == nil { firstLineAt = time }
                    lastLineAt = time
                    outPending.removeAll()
                } else {
                    outPending.append(b)
                }
            }
        }

        /// The next complete stdout line and when it arrived, waiting up to
        /// `seconds`; nil when stdout ended or the time ran out.
        func nextLine(within seconds: Double) -> (text: String, at: Double)? {
            let deadline = KernelHarness.monotonicNow() + seconds
            while outLines.isEmpty {
                let left = deadline - KernelHarness.monotonicNow()
                if left <= 0 || outFD < 0 { break }
                pump(left)
            }
            return outLines.isEmpty ? nil : outLines.removeFirst()
        }

        /// Reads everything until both streams end (at most `seconds`).
        func readToEnd(within seconds: Double) throws {
            let deadline = KernelHarness.monotonicNow() + seconds
            while outFD >= 0 || errFD >= 0 {
                let left = deadline - KernelHarness.monotonicNow()
                if left <= 0 { throw Failure(description: "child \(pid) still writing after \(seconds) s") }
                pump(left)
            }
        }

        /// The exit status once the child has exited, waiting at most
        /// `seconds`; nil if it is still running then.
        func waitExit(within seconds: Double) -> Int32? {
            if let exitStatus { return exitStatus }
            let deadline = KernelHarness.monotonicNow() + seconds
            while true {
                var st: Int32 = 0
                let r = waitpid(pid, &st, WNOHANG)
                if r == pid {
                    exitStatus = st
                    return st
                }
                if KernelHarness.monotonicNow() >= deadline { return nil }
                usleep(2_000)
            }
        }

        /// SIGKILLs the child and reaps it; returns its wait status.
        @discardableResult
        func killAndReap() -> Int32 {
            if let exitStatus { return exitStatus }
            kill(pid, SIGKILL)
            var st: Int32 = 0
            waitpid(pid, &st, 0)
            exitStatus = st
            return st
        }

        var stdoutText: String { String(decoding: stdoutBytes, as: UTF8.self) }
        var stderrText: String { String(decoding: stderrBytes, as: UTF8.self) }

        /// Reads everything and waits for the exit, on a thread of its own.
        func readAll(limit: Double) async throws -> (stdout: String, stderr: String, status: Int32) {
            try await KernelHarness.onThread(limit: limit + 5) {
                do {
                    try self.readToEnd(within: limit)
                } catch {
                    self.killAndReap()
                    throw error
                }
                guard let st = self.waitExit(within: 5) else {
                    self.killAndReap()
                    throw Failure(description: "child \(self.pid) closed its output but did not exit")
                }
                return (self.stdoutText, self.stderrText, st)
            }
        }
    }
}

extension KernelHarness {
    // <asm-generic/ioctls.h>: _IOW('T', 0x31, int) and _IOR('T', 0x30, unsigned int).
    static let TIOCSPTLCK: UInt = 0x4004_5431
    static let TIOCGPTN: UInt = 0x8004_5430

    /// A connected pair of close-on-exec stream sockets (read end, write end).
    static func socketPair() throws -> (Int32, Int32) {
        var sv: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &sv) == 0 else {
            throw Failure(description: "socketpair failed: \(String(cString: strerror(errno)))")
        }
        shutdown(sv[0], Int32(SHUT_WR))
        shutdown(sv[1], Int32(SHUT_RD))
        return (sv[0], sv[1])
    }
}

extension KernelHarness {
    /// The exit code of a wait status, or nil if the process did not exit.
    static func exitCode(_ status: Int32) -> Int32? {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil
    }

    /// The signal that killed a process, or nil if it exited.
    static func killSignal(_ status: Int32) -> Int32? {
        let sig = status & 0x7f
        return sig != 0 && sig != 0x7f ? sig : nil
    }
}

private func exitCode(_ status: Int32) -> Int32? { KernelHarness.exitCode(status) }
private func killSignal(_ status: Int32) -> Int32? { KernelHarness.killSignal(status) }

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct SeedProgramTests {
    // The seed's expected output, as the seed shows it.
    static let countdown = [
        "T-minus 10",
        "T-minus 9",
        "T-minus 8",
        "T-minus 7",
        "T-minus 6",
        "T-minus 5",
        "T-minus 4",
        "T-minus 3",
        "T-minus 2",
        "T-minus 1",
    ]

    static let tasks = [
        "Building the Millenium Falcon in Minecraft",
        "Let's go",
        "T-minus 10",
        "T-minus 9",
        "T-minus 8",
        "T-minus 7",
        "T-minus 6",
        "T-minus 5",
        "T-minus 4",
        "T-minus 3",
        "T-minus 2",
        "T-minus 1",
        "We're leaving!",
    ]

    static let cancel = [
        "Building the Millenium Falcon in Minecraft",
        "Let's go",
        "T-minus 10",
        "T-minus 9",
        "T-minus 8",
        "T-minus 7",
        "T-minus 6",
        "T-minus 5",
        "T-minus 4",
        "T-minus 3",
        "T-minus 2",
        "T-minus 1",
        "We're leaving!",
        "I warned you!",
        "Fine. Saving my work.",
        "Leaving!",
    ]

    // The seed prints no transcript for its Task Synchronization program;
    // this is what that program prints, by the seed's own rules.
    static let event = [
        "Can I play?",
        "Yes, go play",
        "Building the Millenium Falcon in Minecraft",
        "Let's go",
        "T-minus 10",
        "T-minus 9",
        "T-minus 8",
        "T-minus 7",
        "T-minus 6",
        "T-minus 5",
        "T-minus 4",
        "T-minus 3",
        "T-minus 2",
        "T-minus 1",
        "We're leaving!",
        "I warned you!",
        "Fine. Saving my work.",
        "Leaving!",
    ]

    /// The example executable `name`, built in the same directory as this
    /// test binary.
    static func example(_ name: String) throws -> String {
        let exe = try KernelHarness.selfExecutable()
        let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = "\(dir)/\(name)"
        guard access(path, X_OK) == 0 else {
            throw KernelHarness.Failure(description: "\(path) is not built (swift build --build-tests builds the examples)")
        }
        return path
    }

    static func start(_ name: String, scale: Double?) throws -> KernelHarness.ChildProcess {
        var env = KernelHarness.currentEnvironment().mapValues { Optional($0) }
        env["CURIO_TIME_SCALE"] = scale.map { "\($0)" }
        env["CURIO_TEST_SCENARIO"] = nil
        return try KernelHarness.ChildProcess(path: try example(name), arguments: [], environment: env,
                                              stdoutIsTerminal: true)
    }

    /// stderr without the one line the default build prints when the
    /// machine does not allow io_uring.
    static func unexpectedStderr(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { !$0.hasPrefix("curio: io_uring is unavailable") }
    }

    /// Runs `name` scaled to completion and returns its output lines.
    static func runToEnd(_ name: String) async throws -> (lines: [String], stderr: String, status: Int32, seconds: Double) {
        let p = try start(name, scale: 0.01)
        let out = try await p.readAll(limit: 30)
        // From the first line to the last, not to our resumption: with every
        // test-pool thread busy, this test can resume long after the child
        // ended (reading late can only shorten the span, never lengthen it).
        let seconds = (p.lastLineAt ?? 0) - (p.firstLineAt ?? 0)
        let lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        return (lines.last == "" ? Array(lines.dropLast()) : lines, out.stderr, out.status, seconds)
    }

    @Test(.timeLimit(.minutes(1)))
    func helloCountdown() async throws {
        let r = try await Self.runToEnd("hello-countdown")
        #expect(r.lines == Self.countdown)
        #expect(exitCode(r.status) == 0)
        #expect(Self.unexpectedStderr(r.stderr).isEmpty, "stderr: \(r.stderr)")
        #expect(r.seconds < 8, "10 scaled seconds took \(r.seconds) s: CURIO_TIME_SCALE was not applied")
    }

    @Test(.timeLimit(.minutes(1)))
    func helloTasksHangsAfterWereLeaving() async throws {
        let p = try Self.start("hello-tasks", scale: 0.01)
        let r = try await KernelHarness.onThread(limit: 40) { () -> ([String], Bool, Int, Int32) in
            var lines: [String] = []
            while lines.count < Self.tasks.count, let line = p.nextLine(within: 20) {
                lines.append(line.text)
            }
            // The kid sleeps 1000 scaled seconds (10 s): for the next
            // second the program must neither print nor exit.
            let quietUntil = KernelHarness.monotonicNow() + 1
            var alive = true
            while KernelHarness.monotonicNow() < quietUntil {
                p.pump(0.05)
                if p.waitExit(within: 0) != nil { alive = false; break }
            }
            let extra = p.stdoutBytes.count
            let status = p.killAndReap()
            return (lines, alive, extra, status)
        }
        #expect(r.0 == Self.tasks)
        #expect(r.1, "hello-tasks exited instead of hanging")
        let expectedBytes = Self.tasks.map { $0.utf8.count + 1 }.reduce(0, +)
        #expect(r.2 == expectedBytes, "output after \"We're leaving!\": \(p.stdoutText)")
        #expect(killSignal(r.3) == SIGKILL)
        #expect(Self.unexpectedStderr(p.stderrText).isEmpty, "stderr: \(p.stderrText)")
    }

    @Test(.timeLimit(.minutes(1)))
    func helloCancel() async throws {
        let r = try await Self.runToEnd("hello-cancel")
        #expect(r.lines == Self.cancel)
        #expect(exitCode(r.status) == 0)
        #expect(Self.unexpectedStderr(r.stderr).isEmpty, "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func helloEvent() async throws {
        let r = try await Self.runToEnd("hello-event")
        #expect(r.lines == Self.event)
        #expect(exitCode(r.status) == 0)
        #expect(Self.unexpectedStderr(r.stderr).isEmpty, "stderr: \(r.stderr)")
    }

    /// The one unscaled run: ten real seconds, one line per second.
    @Test(.timeLimit(.minutes(1)))
    func helloCountdownInRealTime() async throws {
        let p = try Self.start("hello-countdown", scale: nil)
        let r = try await KernelHarness.onThread(limit: 40) { () -> ([(text: String, at: Double)], Double?, Int32?) in
            var lines: [(text: String, at: Double)] = []
            while lines.count < Self.countdown.count, let line = p.nextLine(within: 5) {
                lines.append(line)
            }
            // After "T-minus 1" the countdown sleeps once more, then exits.
            var endedAt: Double?
            let deadline = KernelHarness.monotonicNow() + 5
            while !p.stdoutEOF && KernelHarness.monotonicNow() < deadline { p.pump(0.5) }
            if p.stdoutEOF { endedAt = KernelHarness.monotonicNow() }
            let status = p.waitExit(within: 5)
            if status == nil { p.killAndReap() }
            return (lines, endedAt, status)
        }
        #expect(r.0.map(\.text) == Self.countdown)
        // Lower bounds only: a line never comes before its second is up
        // (the reader's own lag can only make gaps look shorter by as much
        // as it delayed the line before, hence 0.8); how late a line comes
        // on a loaded machine is not the program's to promise. The run's
        // time limit bounds the whole.
        if let first = r.0.first {
            for i in r.0.indices.dropFirst() {
                let since = r.0[i].at - first.at
                #expect(since >= Double(i) - 0.2, "\"\(r.0[i].text)\" came \(since) s after the first line")
            }
        }
        if let first = r.0.first, let end = r.1 {
            let since = end - first.at
            #expect(since >= Double(r.0.count) - 0.2, "the program ended \(since) s after its first line")
        } else {
            Issue.record("hello-countdown did not end")
        }
        #expect(r.2.flatMap(exitCode) == 0)
        #expect(Self.unexpectedStderr(p.stderrText).isEmpty, "stderr: \(p.stderrText)")
    }
}

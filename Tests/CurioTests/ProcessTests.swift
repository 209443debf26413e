// Child processes: the hello-process example (a pool of 1,000 small jobs in
// children of itself, a cancelled long job, a crashing child) leaves no
// child behind; runInProcess(command:) in process (output, failures,
// crashes, cancellation that kills and reaps); Subprocess (communicate,
// stderr, exit statuses and signals, a cancelled wait that kills and reaps,
// a dropped Subprocess reaped anyway) and checkOutput.
//
// Children are found in /proc: by parent pid (the example's, stopped with
// SIGSTOP once it printed its last line, so none can come or go), or by a
// command line no other test uses. Every child the tests start is killed
// and reaped on every path, every read from a child is bounded.
import Glibc
import Synchronization
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

/// A process of the system, from /proc.
struct ProcEntry: Sendable, CustomStringConvertible {
    let pid: pid_t
    let ppid: pid_t
    let state: Character
    let cmdline: [String]
    var description: String { "\(pid) [\(state)] ppid \(ppid): \(cmdline.joined(separator: " "))" }
}

enum ProcScan {
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// One process, or nil if /proc/PID is gone (it was reaped).
    static func entry(_ pid: pid_t) -> ProcEntry? {
        guard let stat = read("/proc/\(pid)/stat") else { return nil }
        let s = String(decoding: stat, as: UTF8.self)
        guard let paren = s.lastIndex(of: ")") else { return nil }
        let fields = s[s.index(after: paren)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let ppid = pid_t(fields[1]) else { return nil }
        let cmd = (read("/proc/\(pid)/cmdline") ?? []).split(separator: 0, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        return ProcEntry(pid: pid, ppid: ppid, state: state, cmdline: cmd.last == "" ? Array(cmd.dropLast()) : cmd)
    }

    static func all() -> [ProcEntry] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [ProcEntry] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = pid_t(name), let entry = entry(pid) { out.append(entry) }
        }
        return out
    }

    static func children(of pid: pid_t) -> [ProcEntry] { all().filter { $0.ppid == pid } }

    /// Waits (bounded) until a child of this process runs `cmdline`.
    static func waitForChild(_ cmdline: [String], within seconds: Double = 10) -> ProcEntry? {
        let end = KernelHarness.monotonicNow() + seconds
        while KernelHarness.monotonicNow() < end {
            if let c = children(of: getpid()).first(where: { $0.cmdline == cmdline }) { return c }
            usleep(2000)
        }
        return nil
    }

    /// Waits (bounded) until /proc/PID is gone.
    static func waitGone(_ pid: pid_t, within seconds: Double = 10) -> Bool {
        let end = KernelHarness.monotonicNow() + seconds
        while KernelHarness.monotonicNow() < end {
            if entry(pid) == nil { return true }
            usleep(2000)
        }
        return entry(pid) == nil
    }
}

private func fibSum(_ jobs: Int) -> Int {
    func fib(_ n: Int) -> Int { n <= 2 ? 1 : fib(n - 1) + fib(n - 2) }
    return (0..<jobs).map { fib($0 % 20 + 1) }.reduce(0, +)
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite(.serialized, .timeLimit(.minutes(1)))
struct ProcessTests {
    // MARK: hello-process

    struct ExampleRun: Sendable {
        var lines: [String] = []
        var childrenAtEnd: [ProcEntry] = []
        var leftAfterExit: [ProcEntry] = []
        var status: Int32?
        var stderr = ""
    }

    /// Runs hello-process `scenario` until it has printed `expectedLines`
    /// lines, stops it, lists its children, lets it finish, and lists any
    /// process left running the example's binary.
    static func runExample(_ scenario: String, jobs: Int? = nil, expectedLines: Int) async throws -> ExampleRun {
        let path = try SeedProgramTests.example("hello-process")
        var env = KernelHarness.currentEnvironment().mapValues { Optional($0) }
        env["JOBS"] = jobs.map { "\($0)" }
        env["CURIO_TEST_SCENARIO"] = nil
        env["CURIOMONITOR"] = nil
        env["CURIO_TIME_SCALE"] = nil
        let p = try KernelHarness.ChildProcess(path: path, arguments: [scenario], environment: env,
                                               stdoutIsTerminal: true)
        return try await KernelHarness.onThread(limit: 55) { () -> ExampleRun in
            var run = ExampleRun()
            defer { if run.status == nil { p.killAndReap() } }
            while run.lines.count < expectedLines, let line = p.nextLine(within: 45) {
                run.lines.append(line.text)
            }
            // Everything is done once the last line is out: stop the
            // program and look for children it left behind.
            kill(p.pid, SIGSTOP)
            let end = KernelHarness.monotonicNow() + 5
            while ProcScan.entry(p.pid)?.state != "T" && KernelHarness.monotonicNow() < end { usleep(1000) }
            run.childrenAtEnd = ProcScan.children(of: p.pid)
            kill(p.pid, SIGCONT)
            try? p.readToEnd(within: 20)
            run.status = p.waitExit(within: 10)
            run.stderr = p.stderrText
            run.leftAfterExit = ProcScan.all().filter { $0.cmdline.first == path }
            return run
        }
    }

    static func checkClean(_ r: ExampleRun, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.childrenAtEnd.isEmpty, "children left: \(r.childrenAtEnd)", sourceLocation: sourceLocation)
        #expect(r.leftAfterExit.isEmpty, "processes left: \(r.leftAfterExit)", sourceLocation: sourceLocation)
        #expect(r.status.flatMap(KernelHarness.exitCode) == 0,
                "status \(String(describing: r.status)); stderr: \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test(.timeLimit(.minutes(1)))
    func helloProcessPoolOfAThousandJobs() async throws {
        let r = try await Self.runExample("pool", jobs: 1000, expectedLines: 1)
        #expect(r.lines == ["pool: 1000 jobs, sum \(fibSum(1000))"])
        Self.checkClean(r)
    }

    @Test(.timeLimit(.minutes(1)))
    func helloProcessCancel() async throws {
        let r = try await Self.runExample("cancel", expectedLines: 1)
        #expect(r.lines == ["cancel: long job cancelled"])
        Self.checkClean(r)
    }

    // A sanitizer runtime takes over the child's SIGSEGV (a report and exit
    // 1, or a hang with its handler off): the crash cannot be seen as such.
    @Test(.timeLimit(.minutes(1)),
          .disabled(if: getenv("CURIO_SANITIZER") != nil, "a sanitizer runtime handles the child's SIGSEGV"))
    func helloProcessCrash() async throws {
        let r = try await Self.runExample("crash", expectedLines: 2)
        #expect(r.lines == ["crash: child crashed: killed by signal 11", "fail: the input was rejected"])
        Self.checkClean(r)
    }

    // MARK: runInProcess(command:)

    @Test(.timeLimit(.minutes(1)))
    func runInProcessCommandOutputAndFailures() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append(text(try await runInProcess(command: ["sh", "-c", "echo hi"])))
            seen.append(text(try await runInProcess(command: ["tr", "a-z", "A-Z"], input: Array("abc\n".utf8))))
            do {
                _ = try await runInProcess(command: ["sh", "-c", "echo partial; echo oops >&2; exit 3"])
                seen.append("no error")
            } catch let e as ProcessWorkError {
                seen.append("\(e.status) crashed=\(e.crashed) message=\(e.message) what=\(e.what)")
            }
            do {
                _ = try await runInProcess(command: ["sh", "-c", "kill -SEGV $$"])
                seen.append("no error")
            } catch let e as ProcessWorkError {
                seen.append("\(e.status) crashed=\(e.crashed)")
            }
            do {
                _ = try await runInProcess(command: ["/nonexistent/curio-test-program"])
                seen.append("no error")
            } catch {
                seen.append("spawn failed")
            }
            // No registered function of that name in this test binary.
            do {
                _ = try await runInProcess("curio-test-unregistered")
                seen.append("no error")
            } catch let e as CurioUsageError {
                seen.append("\(e.kind) \(e.message.contains("curio-test-unregistered"))")
            }
            return seen
        }
        #expect(r == ["hi\n", "ABC\n",
                      "exited with status 3 crashed=false message=oops\n what=sh -c echo partial; echo oops >&2; exit 3",
                      "killed by signal 11 crashed=true", "spawn failed", "invalidArgument true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingRunInProcessKillsAndReapsTheChild() async throws {
        let command = ["sleep", "10.0417"]  // no other test runs this
        let r = try await KernelHarness.run { _ -> (ProcEntry?, Double, ProcEntry?, String) in
            let t = try await spawn { () -> String in
                do {
                    _ = try await runInProcess(command: command)
                    return "finished"
                } catch is CancelledError {
                    return "cancelled"
                }
            }
            // Find the child (a blocking scan, on a worker thread).
            let child = try await runInThread { ProcScan.waitForChild(command) }
            let t0 = KernelHarness.monotonicNow()
            try await t.cancel()
            let took = KernelHarness.monotonicNow() - t0
            // Reaped by the time the cancelled call returned.
            let after = child.flatMap { ProcScan.entry($0.pid) }
            return (child, took, after, try await t.join() ?? "nil")
        }
        if let child = r.0 { kill(child.pid, SIGKILL) }  // only if the test failed
        #expect(r.0 != nil, "the child never showed up")
        #expect(r.1 < 2, "the cancel took \(r.1) s")
        #expect(r.2 == nil, "the child is still there: \(String(describing: r.2))")
        #expect(r.3 == "cancelled")
    }

    // MARK: Subprocess

    @Test(.timeLimit(.minutes(1)))
    func communicateWithStdinStdoutAndStderr() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let up = try Subprocess(["tr", "a-z", "A-Z"], stdin: .pipe, stdout: .pipe)
            defer { up.kill() }
            let (out, err) = try await up.communicate(input: Array("hello\nworld\n".utf8))
            seen.append("\(text(out))|\(text(err))|\(String(describing: up.status))")

            let both = try Subprocess(["sh", "-c", "echo out; echo err >&2; exit 4"], stdout: .pipe, stderr: .pipe)
            defer { both.kill() }
            let (o2, e2) = try await both.communicate()
            seen.append("\(text(o2))|\(text(e2))|\(String(describing: both.status))|\(try await both.wait())")

            // Line by line from stdout, then the end of the stream.
            let lines = try Subprocess(["sh", "-c", "echo a; echo bb"], stdout: .pipe)
            defer { lines.kill() }
            let a = try await lines.stdout!.readLine()
            let b = try await lines.stdout!.readLine()
            let end = try await lines.stdout!.readLine()
            seen.append("\(text(a))\(text(b))\(end.isEmpty ? "EOF" : text(end)) \(try await lines.wait())")

            // stdin from /dev/null: cat ends at once.
            let empty = try Subprocess(["cat"], stdin: .devNull, stdout: .pipe)
            defer { empty.kill() }
            let (o3, _) = try await empty.communicate()
            seen.append("devNull \(o3.count) \(try await empty.wait())")

            // A large input through a child and back: both pipes full at once.
            let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
            let cat = try Subprocess(["cat"], stdin: .pipe, stdout: .pipe)
            defer { cat.kill() }
            let (o4, _) = try await cat.communicate(input: big)
            seen.append("big \(o4 == big)")
            return seen
        }
        #expect(r == ["HELLO\nWORLD\n||Optional(exited with status 0)",
                      "out\n|err\n|Optional(exited with status 4)|4",
                      "a\nbb\nEOF 0",
                      "devNull 0 0",
                      "big true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func waitGivesExitCodesAndSignals() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            for code in [0, 1, 7, 255] {
                let p = try Subprocess(["sh", "-c", "exit \(code)"])
                defer { p.kill() }
                seen.append("\(try await p.wait()) \(p.status!)")
            }
            let segv = try Subprocess(["sh", "-c", "kill -SEGV $$"])
            defer { segv.kill() }
            seen.append("\(try await segv.wait()) \(segv.status!)")
            let term = try Subprocess(["sleep", "30"])
            defer { term.kill() }
            term.terminate()
            seen.append("\(try await term.wait()) \(term.status!.returnCode)")
            let killed = try Subprocess(["sleep", "30"])
            defer { killed.kill() }
            killed.sendSignal(SIGKILL)
            seen.append("\(try await killed.wait())")
            // Waiting again returns the same status at once; signals after
            // the end do nothing.
            killed.kill()
            seen.append("\(try await killed.wait())")
            return seen
        }
        #expect(r == ["0 exited with status 0", "1 exited with status 1", "7 exited with status 7",
                      "255 exited with status 255", "-11 killed by signal 11", "-15 -15", "-9", "-9"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledWaitKillsAndReapsTheChild() async throws {
        let r = try await KernelHarness.run { _ -> (String, String, Double, Bool, String) in
            let p = try Subprocess(["sleep", "30"])
            defer { p.kill() }
            let waiter = try await spawn { () -> String in
                do {
                    return "returned \(try await p.wait())"
                } catch is CancelledError {
                    return "cancelled"
                }
            }
            _ = try await BridgeTest.poll { waiter.state == .ioWait || waiter.state == .timeSleep }
            let state = waiter.state.description
            let t0 = KernelHarness.monotonicNow()
            try await waiter.cancel()
            let took = KernelHarness.monotonicNow() - t0
            let gone = ProcScan.entry(p.pid) == nil
            return (try await waiter.join() ?? "nil", state, took, gone, String(describing: p.status))
        }
        #expect(r.0 == "cancelled")
        #expect(r.1 == "IO_WAIT" || r.1 == "TIME_SLEEP", "\(r.1)")
        #expect(r.2 < 2, "the cancel took \(r.2) s")
        #expect(r.3, "the child was not reaped")
        #expect(r.4 == "Optional(killed by signal 9)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aSubprocessDroppedWithoutWaitIsReaped() async throws {
        let pid = try await KernelHarness.run { _ -> pid_t in
            let p = try Subprocess(["sh", "-c", "exit 0"])
            return p.pid
        }
        // The Subprocess is gone; a worker thread reaps the child.
        let gone = try await KernelHarness.onThread { ProcScan.waitGone(pid, within: 15) }
        #expect(gone, "pid \(pid) is still there: \(String(describing: ProcScan.entry(pid)))")
    }

    @Test(.timeLimit(.minutes(1)))
    func checkOutputSucceedsAndFails() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append(text(try await checkOutput(["echo", "hi"])))
            seen.append(text(try await checkOutput(["cat"], input: Array("piped".utf8))))
            do {
                _ = try await checkOutput(["sh", "-c", "echo partial; exit 2"])
                seen.append("no error")
            } catch let e as SubprocessError {
                seen.append("\(e.status) \(text(e.output)) \(e.arguments)")
            }
            do {
                _ = try await checkOutput(["sh", "-c", "kill -TERM $$"])
                seen.append("no error")
            } catch let e as SubprocessError {
                seen.append("\(e.status)")
            }
            return seen
        }
        #expect(r == ["hi\n", "piped", "exited with status 2 partial\n [\"sh\", \"-c\", \"echo partial; exit 2\"]",
                      "killed by signal 15"])
    }

    @Test(.timeLimit(.minutes(1)))
    func childrenStartWithNoSignalBlockedAndSIGPIPEAtItsDefault() async throws {
        // The kernel thread here blocks nearly every signal (it was started
        // from a Swift-concurrency thread) and the kernel ignores SIGPIPE:
        // neither may leak into a child.
        let r = try await KernelHarness.run { _ -> (String, Bool) in
            var mask = sigset_t()
            pthread_sigmask(SIG_SETMASK, nil, &mask)
            let parentBlocksTERM = sigismember(&mask, SIGTERM) == 1
            // grep reads its own status (a shell would block signals
            // itself while it forks).
            let out = try await checkOutput(["grep", "-E", "^(SigBlk|SigIgn):", "/proc/self/status"])
            return (text(out), parentBlocksTERM)
        }
        var fields: [String: UInt64] = [:]
        for line in r.0.split(separator: "\n") {
            let parts = line.split(separator: ":")
            if parts.count == 2 { fields[String(parts[0])] = UInt64(parts[1].filter(\.isHexDigit), radix: 16) }
        }
        #expect(fields["SigBlk"] == 0, "\(r.0)")
        let pipeBit = UInt64(1) << UInt64(SIGPIPE - 1)
        #expect(fields["SigIgn"].map { $0 & pipeBit == 0 } == true, "SIGPIPE ignored in the child: \(r.0)")
        if !r.1 { print("note: this kernel thread did not block SIGTERM; the mask part is not exercised") }
    }

    /// Only descriptors 0-2 reach a child (Python's close_fds=True): a pipe
    /// this process opened without close-on-exec stays out of it, so the
    /// child cannot hold its write end open.
    @Test(.timeLimit(.minutes(1)))
    func childrenGetOnlyTheirStandardDescriptors() async throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { fds.forEach { Glibc.close($0) } }
        #expect(fcntl(fds[1], F_GETFD) & FD_CLOEXEC == 0, "the pipe must be inheritable for the test to mean anything")
        let probe = [Int32(0), 1, 2, fds[0], fds[1]].map { "[ -e /proc/$$/fd/\($0) ] && echo \($0) open || echo \($0) closed" }
        let r = try await KernelHarness.run { _ -> String in
            text(try await checkOutput(["sh", "-c", probe.joined(separator: "; ")]))
        }
        #expect(r.split(separator: "\n") == ["0 open", "1 open", "2 open", "\(fds[0]) closed", "\(fds[1]) closed"], "\(r)")
    }

    @Test(.timeLimit(.minutes(1)))
    func misuse() async throws {
        #expect(throws: CurioUsageError.self) { _ = try Subprocess([]) }
        #expect(throws: CurioUsageError.self) { _ = try Subprocess([""]) }
        #expect(throws: (any Error).self) { _ = try Subprocess(["/nonexistent/curio-test-program"]) }
        // Waiting outside a kernel.
        let p = try Subprocess(["true"])
        await expectSyncUsageError(.notInKernel) { _ = try await p.wait() }
        await expectSyncUsageError(.notInKernel) { _ = try await runInProcess(command: ["true"]) }
        // Reap it here.
        let code = try await KernelHarness.run { _ in try await p.wait() }
        #expect(code == 0)
    }
}

// MARK: - SIGPIPE (run in a child copy of this test binary)

extension BridgeTest {
    /// Writes to a child's stdin after the child has exited, and to a pipe
    /// whose read end is closed, from a kernel thread that (like a
    /// program's main thread) does not block SIGPIPE.
    static func sigpipeScenario() async throws -> String {
        try await KernelHarness.run { _ -> String in
            var pipeOnly = sigset_t()
            sigemptyset(&pipeOnly)
            sigaddset(&pipeOnly, SIGPIPE)
            pthread_sigmask(SIG_UNBLOCK, &pipeOnly, nil)
            var seen: [String] = []
            let p = try Subprocess(["sh", "-c", "exit 0"], stdin: .pipe, stdout: .pipe)
            do {
                _ = try await p.communicate(input: [UInt8](repeating: 65, count: 1 << 20))
                seen.append("communicate \(p.status!)")
            } catch {
                seen.append("communicate threw \(IOTest.kind(error)) after \(p.status.map { "\($0)" } ?? "no status")")
            }
            let (r, w) = try Pipe.make()
            r.close()
            do {
                try await w.sendAll([1, 2, 3])
                seen.append("sendAll returned")
            } catch {
                seen.append("sendAll threw")
            }
            return seen.joined(separator: ", ")
        }
    }
}

extension ProcessTests {
    @Test(.timeLimit(.minutes(1)))
    func writingToAChildThatExitedDoesNotKillTheProgram() async throws {
        let r = try await BridgeTest.runChild("sigpipe")
        // A kernel ignores SIGPIPE (as Python does): the writes fail with
        // EPIPE instead of ending the program.
        #expect(KernelHarness.killSignal(r.status) == nil,
                "the program died of signal \(KernelHarness.killSignal(r.status) ?? 0)")
        // The child closed its stdin unread: EPIPE, as curio's BrokenPipeError.
        #expect(r.result == "communicate threw BrokenPipeError after exited with status 0, sendAll threw", "\(r.stdout)")
    }
}

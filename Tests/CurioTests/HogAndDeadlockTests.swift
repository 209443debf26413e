// The kernel watching itself: a CPU hog is named while it runs (the
// `hello-hog` example as a child process: the watchdog's report on stderr
// and the remote monitor's `ps`/`where` with the kernel thread's live
// stack); a two-task lock deadlock is reported, naming both tasks, their
// wait and their locations, and can then be broken from outside; the
// SIGUSR1 task dump; the ready-made activations.
//
// The in-process scenarios (deadlock, dump, activations' stderr) own fd 2
// and install signal handlers, so each runs in a child process of this test
// binary (`monitorDebugChildScenario`, selected by an environment
// variable): other tests running meanwhile in this process capture fd 2 too.
// Inside the child the kernel runs on a background thread while the
// scenario's thread watches fd 2 (redirected to a temporary file) with
// bounded polling.
import Glibc
import CurioTestSupport
import Testing

@testable import Curio

// MARK: - Child scenarios

enum MonitorDebugScenario {
    static let variable = "CURIO_MONITOR_DEBUG_SCENARIO"
    static let current: String? = getenv(variable).map { String(cString: $0) }
    static let prefix = "MONDBG: "

    static let scenarios: [String: @Sendable () throws -> [String]] = [
        "deadlock": HogAndDeadlockTests.deadlockScenario,
        "deadlock-after-timer": HogAndDeadlockTests.deadlockAfterTimerScenario,
        "deadlock-monitor": HogAndDeadlockTests.deadlockBrokenByMonitorScenario,
        "dump": HogAndDeadlockTests.taskDumpScenario,
        "activations": HogAndDeadlockTests.activationsScenario,
    ]

    /// Runs this test binary again with only `monitorDebugChildScenario`
    /// selected; the lines the scenario returned, its stderr and status.
    static func run(_ name: String, environment: [String: String?] = [:],
                    limit: Double = 45) throws -> (lines: [String], stderr: String, status: String) {
        var env = environment
        env[variable] = name
        let child = try MonitorHarness.Child(try MonitorHarness.selfExecutable(),
                                             arguments: TestScenarios.arguments(running: "monitorDebugChildScenario"),
                                             environment: env, layout: .pipes)
        defer { child.terminate() }
        child.closeInput()
        let status = MonitorHarness.describe(child.waitForExit(within: limit))
        let lines = child.text().split(separator: "\n", omittingEmptySubsequences: false)
            .compactMap { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : nil }
        return (lines, child.text(.err), status)
    }
}

/// Runs a scenario when this test binary was started by
/// `MonitorDebugScenario.run`; skipped otherwise.
@Test(.enabled(if: MonitorDebugScenario.current != nil), .timeLimit(.minutes(1)))
func monitorDebugChildScenario() throws {
    let name = MonitorDebugScenario.current!
    let body = try #require(MonitorDebugScenario.scenarios[name], "unknown scenario \(name)")
    let lines = try body()
    for l in lines { print(MonitorDebugScenario.prefix + l) }
    print(MonitorDebugScenario.prefix + "END")
    fflush(nil)
}

// MARK: - Helpers for the scenarios

extension MonitorHarness {
    /// fd 2 redirected to an unlinked temporary file until `restore()`.
    /// Only for a child process that owns its fd 2.
    final class StderrFile: @unchecked Sendable {
        private let fd: Int32
        private var saved: Int32

        init() throws {
            fflush(nil)
            var template = Array("/tmp/curio-monitor-stderr-XXXXXX".utf8CString)
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard fd >= 0 else { throw Failure("mkstemp failed") }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            saved = fcntl(2, F_DUPFD_CLOEXEC, 10)
            dup2(fd, 2)
        }

        deinit {
            restore()
            close(fd)
        }

        /// Everything written to fd 2 so far.
        var text: String {
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            var off: off_t = 0
            while true {
                let n = pread(fd, &buf, buf.count, off)
                if n <= 0 { break }
                bytes += buf[0..<n]
                off += off_t(n)
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        /// Waits (bounded) until `needle` has been written `count` times.
        @discardableResult
        func waitFor(_ needle: String, count: Int = 1, within seconds: Double) -> Bool {
            let deadline = MonitorHarness.now() + seconds
            while true {
                if text.occurrences(needle) >= count { return true }
                if MonitorHarness.now() >= deadline { return false }
                usleep(5_000)
            }
        }

        func restore() {
            guard saved >= 0 else { return }
            fflush(nil)
            dup2(saved, 2)
            close(saved)
            saved = -1
        }
    }

    /// A value shared between a kernel thread and the scenario's thread.
    final class Shared<T>: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var value: T
        init(_ value: T) {
            self.value = value
            pthread_mutex_init(&mutex, nil)
        }
        deinit { pthread_mutex_destroy(&mutex) }
        func with<R>(_ body: (inout T) -> R) -> R {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            return body(&value)
        }
        var get: T { with { $0 } }
    }

    /// A thread of its own (for a kernel), joined with a deadline.
    final class Thread: @unchecked Sendable {
        private var tid = pthread_t()
        private let outcome = Shared<String?>(nil)
        private var joined = false

        init(_ body: @escaping @Sendable () throws -> Void) {
            let outcome = self.outcome
            let box = Unmanaged.passRetained(Box {
                let result: String
                do {
                    try body()
                    result = "ok"
                } catch {
                    result = "error: \(error)"
                }
                outcome.with { $0 = result }
            }).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
                return nil
            }, box)
            precondition(rc == 0, "pthread_create failed")
        }

        private final class Box {
            let body: () -> Void
            init(_ body: @escaping () -> Void) { self.body = body }
        }

        /// "ok", "error: ...", or "still running" after `seconds` (the
        /// thread is then left behind; the process ends soon).
        func join(within seconds: Double) -> String {
            let deadline = MonitorHarness.now() + seconds
            while outcome.get == nil {
                if MonitorHarness.now() >= deadline { return "still running after \(seconds) s" }
                usleep(2_000)
            }
            if !joined {
                pthread_join(tid, nil)
                joined = true
            }
            return outcome.get!
        }
    }
}

extension String {
    /// How often `needle` occurs.
    fileprivate func occurrences(_ needle: String) -> Int { ranges(of: needle).count }

    /// The text after the last `needle`, if it occurs.
    fileprivate func afterLast(_ needle: String) -> String? {
        guard let r = ranges(of: needle).last else { return nil }
        return String(self[r.upperBound...])
    }
}

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct HogAndDeadlockTests {
    typealias H = MonitorHarness

    // MARK: The CPU hog

    // Under a sanitizer the kernel thread's live stack is the instrumented
    // build's, whose frames the test cannot name.
    @Test(.timeLimit(.minutes(1)),
          .disabled(if: getenv("CURIO_SANITIZER") != nil, "frame names differ in a sanitizer build"))
    func cpuHogIsNamedWhileItRuns() throws {
        let (child, ep) = try H.startWithRemoteMonitor(
            "hello-hog", environment: ["CURIO_TIME_SCALE": "0.1", "CURIO_LONG_BLOCK": "0.3"])
        defer { child.terminate() }
        try child.expect("Building the Millenium Falcon in Minecraft\n", within: 20)

        // The watchdog's report, once the kid has held the kernel 0.3 s.
        let head = try child.expect(" has held the kernel for ", on: .err, within: 20)
        #expect(head.hasSuffix("(kid) has held the kernel for "), "report: \(head.debugDescription)")
        let reportLine = try child.expect("\n", on: .err)
        #expect(reportLine.hasSuffix(" s without blocking; every other task waits\n"), "\(reportLine.debugDescription)")
        let seconds = Double(reportLine.prefix { $0 != " " })
        #expect(seconds.map { $0 >= 0.3 } == true, "held for \(reportLine.debugDescription)")
        let resumed = try child.expect("\n", on: .err)
        #expect(resumed.hasPrefix("  it resumed at File \"") && resumed.contains("hello-hog/main.swift\", line ")
                && resumed.hasSuffix(", in kid()\n"), "\(resumed.debugDescription)")
        try child.expect("  live stack of the kernel thread (innermost first):\n", on: .err)
        let frame = try child.expect("\n", on: .err)
        #expect(frame.hasPrefix("    ") && frame.contains("fib"), "innermost frame: \(frame.debugDescription)")

        // The remote monitor answers while the kid hogs the kernel.
        let c = try ep.client()
        _ = try c.greeting()
        let ps = try H.parsePS(try c.command("ps"))
        let kid = try #require(ps.rows.first { $0.name == "kid" }, "\(ps.rows)")
        #expect(kid.state == "RUNNING")
        #expect(kid.timeout == nil)
        let parent = try #require(ps.rows.first { $0.name == "parent" })
        #expect(parent.state == "TIME_SLEEP")
        #expect(ps.notes.contains { $0.hasPrefix("Task \(kid.id) has held the kernel for ") }, "notes: \(ps.notes)")

        let whereKid = try c.command("where \(kid.id)")
        #expect(whereKid.hasPrefix(" Stack for Task(id=\(kid.id), name=kid, state='RUNNING') (most recent call last):\n"),
                "\(whereKid.debugDescription)")
        #expect(H.sourceTextAfterFileLine(whereKid) == "try await startEvt.wait()")
        #expect(whereKid.contains("  Live stack of the kernel thread (innermost first):\n"), "\(whereKid.debugDescription)")
        let live = whereKid.split(separator: "\n").drop { !$0.contains("Live stack") }.dropFirst()
        #expect(live.first?.contains("fib") == true, "live stack: \(Array(live))")
        #expect(live.contains { $0.contains("fib") })

        // Reported once, however long it goes on.
        #expect(child.text(.err).occurrences(" has held the kernel for ") == 1, "\(child.text(.err))")
        #expect(child.isRunning)
        child.terminate()
        #expect(H.describe(child.status) == "signal \(SIGKILL)")
    }

    // MARK: Deadlock

    /// Two tasks, each holding one lock and waiting for the other's. The
    /// log says where each blocked ("A-at LINE", "B-at LINE").
    static func lockCycle(_ kernel: Kernel, _ log: H.Shared<[String]>)
        -> (a: CurioTask<Void>, b: CurioTask<Void>) {
        let lock1 = Lock(), lock2 = Lock()
        let aHolds = Event(), bHolds = Event()
        let a = kernel.addTask(name: "taskA") { () async throws -> Void in
            do {
                try await lock1.withLock {
                    await aHolds.set()
                    try await bHolds.wait()
                    log.with { $0.append("A-at \(#line)") }; try await lock2.withLock { log.with { $0.append("A has both") } }
                }
            } catch is CancelledError {
                log.with { $0.append("A cancelled") }
            }
        }
        let b = kernel.addTask(name: "taskB") { () async throws -> Void in
            try await lock2.withLock {
                await bHolds.set()
                try await aHolds.wait()
                log.with { $0.append("B-at \(#line)") }; try await lock1.withLock { log.with { $0.append("B has both") } }
            }
        }
        return (a, b)
    }

    static func deadlockScenario() throws -> [String] {
        let err = try H.StderrFile()
        defer { err.restore() }
        let log = H.Shared<[String]>([])
        let kernel = Kernel()
        let (a, b) = lockCycle(kernel, log)
        let thread = H.Thread { try kernel.run() }
        var out = ["ids \(a.id) \(b.id)"]
        out.append("reported \(err.waitFor("curio: deadlock", within: 20))")
        // The kernel keeps waiting: a posted message is still served.
        let cancelled = try kernel.postBlocking { try await a.cancel(blocking: false) }
        out.append("posted cancel \(cancelled)")
        out.append("join \(thread.join(within: 20))")
        out += log.get.map { "log \($0)" }
        err.restore()
        out += err.text.split(separator: "\n").map { "err \($0)" }
        return out
    }

    /// The report's lines for one task, parsed:
    /// `  task ID (NAME) STATE at FILE:LINE in FUNCTION`.
    static func reportLine(_ lines: [String], id: Int) -> (name: String, state: String, file: String, line: Int)? {
        for l in lines where l.hasPrefix("err   task \(id) (") {
            let rest = l.dropFirst("err   task \(id) (".count)
            guard let close = rest.firstIndex(of: ")") else { continue }
            let name = String(rest[..<close])
            let f = rest[rest.index(after: close)...].split(separator: " ").map(String.init)
            guard f.count >= 5, f[1] == "at", f[3] == "in", let colon = f[2].lastIndex(of: ":"),
                  let line = Int(f[2][f[2].index(after: colon)...]) else { continue }
            return (name, f[0], String(f[2][..<colon]), line)
        }
        return nil
    }

    static func value(_ lines: [String], _ key: String) -> String? {
        lines.first { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
    }

    static func checkDeadlockReport(_ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> (a: Int, b: Int) {
        let ids = try #require(value(lines, "ids")?.split(separator: " ").compactMap { Int($0) }, sourceLocation: sourceLocation)
        try #require(ids.count == 2, sourceLocation: sourceLocation)
        let header = "err curio: deadlock: every task is waiting and nothing (timer, I/O, worker thread, signal) can wake them:"
        #expect(lines.filter { $0 == header }.count == 1, "report: \(lines)", sourceLocation: sourceLocation)
        for (id, name, key) in [(ids[0], "taskA", "A-at"), (ids[1], "taskB", "B-at")] {
            let r = reportLine(lines, id: id)
            let expectedLine = value(lines, "log " + key).flatMap { Int($0) }
            #expect(r?.name == name, "\(name): \(lines)", sourceLocation: sourceLocation)
            #expect(r?.state == "LOCK_ACQUIRE", "\(name): \(lines)", sourceLocation: sourceLocation)
            #expect(r?.file == #filePath, "\(name): \(lines)", sourceLocation: sourceLocation)
            #expect(expectedLine != nil && r?.line == expectedLine, "\(name) blocked at line \(expectedLine.map(String.init) ?? "?"): \(lines)",
                    sourceLocation: sourceLocation)
        }
        #expect(lines.contains("err curio: the kernel keeps waiting (the monitor can still cancel a task)."),
                sourceLocation: sourceLocation)
        return (ids[0], ids[1])
    }

    @Test(.timeLimit(.minutes(1)))
    func twoTaskLockDeadlockIsReportedAndCanBeBroken() throws {
        let r = try MonitorDebugScenario.run("deadlock")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines.last == "END", "\(r.lines)")
        #expect(r.lines.contains("reported true"), "\(r.lines)")
        _ = try Self.checkDeadlockReport(r.lines)
        #expect(r.lines.contains("posted cancel true"))
        #expect(r.lines.contains("join ok"), "\(r.lines)")
        // Cancelled in its wait for lock2, A let lock1 go; B went on.
        #expect(r.lines.contains("log A cancelled") && r.lines.contains("log B has both"), "\(r.lines)")
        #expect(!r.lines.contains("log A has both"))
    }

    /// A sleeping third task could still do something (release a lock):
    /// no report until its timer is gone, then one.
    static func deadlockAfterTimerScenario() throws -> [String] {
        let err = try H.StderrFile()
        defer { err.restore() }
        let log = H.Shared<[String]>([])
        let kernel = Kernel()
        let (a, b) = lockCycle(kernel, log)
        kernel.addTask(name: "sleeper") {
            try await Curio.sleep(0.3)
            writeStderr("sleeper done\n")
        }
        let thread = H.Thread { try kernel.run() }
        var out = ["ids \(a.id) \(b.id)"]
        out.append("reported \(err.waitFor("curio: deadlock", within: 20))")
        _ = try kernel.postBlocking { try await a.cancel(blocking: false) }
        out.append("join \(thread.join(within: 20))")
        out += log.get.map { "log \($0)" }
        err.restore()
        out += err.text.split(separator: "\n").map { "err \($0)" }
        return out
    }

    @Test(.timeLimit(.minutes(1)))
    func aPendingTimerDefersTheDeadlockReport() throws {
        let r = try MonitorDebugScenario.run("deadlock-after-timer")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines.contains("reported true"), "\(r.lines)")
        _ = try Self.checkDeadlockReport(r.lines)
        let sleeper = r.lines.firstIndex(of: "err sleeper done")
        let report = r.lines.firstIndex { $0.hasPrefix("err curio: deadlock") }
        #expect(sleeper != nil && report != nil && sleeper! < report!, "\(r.lines)")
        #expect(r.lines.contains("join ok"))
    }

    /// The deadlocked kernel's monitor (CURIOMONITOR is set for this child)
    /// shows both waits and cancels one of the tasks.
    static func deadlockBrokenByMonitorScenario() throws -> [String] {
        let err = try H.StderrFile()
        defer { err.restore() }
        let log = H.Shared<[String]>([])
        let kernel = Kernel()
        guard let address = kernel.monitorAddress else { return ["no monitor"] }
        let (a, b) = lockCycle(kernel, log)
        let thread = H.Thread { try kernel.run() }
        var out = ["ids \(a.id) \(b.id)"]
        out.append("reported \(err.waitFor("curio: deadlock", within: 20))")
        // TCP (CURIOMONITOR=127.0.0.1:0): the client sends the run's token first.
        let c = try H.MonitorClient(port: Int(address.port), host: address.host)
        c.send("token \(kernel.monitorToken ?? "none")\n")
        _ = try c.greeting()
        for row in try H.parsePS(try c.command("ps")).rows { out.append("ps \(row.id) \(row.state) \(row.name)") }
        let whereA = try c.command("where \(a.id)")
        out.append("where-source \(H.sourceTextAfterFileLine(whereA) ?? "none")")
        c.send("cancel \(a.id)\n")
        out.append("cancel \(try c.expect("\n").debugDescription)")
        out.append("join \(thread.join(within: 20))")
        c.close()
        out += log.get.map { "log \($0)" }
        err.restore()
        out += err.text.split(separator: "\n").map { "err \($0)" }
        return out
    }

    @Test(.timeLimit(.minutes(1)))
    func theMonitorShowsAndBreaksADeadlock() throws {
        let r = try MonitorDebugScenario.run("deadlock-monitor", environment: ["CURIOMONITOR": "127.0.0.1:0"])
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines.contains("reported true"), "\(r.lines)")
        let (a, b) = try Self.checkDeadlockReport(r.lines)
        #expect(r.lines.contains("ps \(a) LOCK_ACQUIRE taskA") && r.lines.contains("ps \(b) LOCK_ACQUIRE taskB"), "\(r.lines)")
        #expect(Self.value(r.lines, "where-source")?.contains("try await lock2.withLock") == true, "\(r.lines)")
        #expect(r.lines.contains("cancel \("Cancelling task \(a)\n".debugDescription)"), "\(r.lines)")
        #expect(r.lines.contains("join ok"), "\(r.lines)")
        #expect(r.lines.contains("log A cancelled") && r.lines.contains("log B has both"))
    }

    // MARK: The SIGUSR1 task dump

    static func taskDumpScenario() throws -> [String] {
        let err = try H.StderrFile()
        defer { err.restore() }
        let log = H.Shared<[String]>([])
        let kernel = Kernel()
        try kernel.enableTaskDump(on: SIGUSR1)
        let go = Event()
        let parent = kernel.addTask(name: "parent") { () async throws -> Void in
            let kid = try await spawn(name: "kid") { () async throws -> Void in
                log.with { $0.append("kid-at \(#line)") }; try await go.wait()
            }
            log.with { $0.append("parent-at \(#line)") }; try await kid.join()
        }
        let thread = H.Thread { try kernel.run() }
        var out = ["parent \(parent.id)"]
        // Signal until a dump shows both tasks blocked (they may not be yet).
        var dumps = 0
        let deadline = H.now() + 20
        var settled = false
        while !settled && H.now() < deadline {
            kill(getpid(), SIGUSR1)
            dumps += 1
            guard err.waitFor("curio: task dump", count: dumps, within: 10) else { break }
            // The whole dump is one write; the latest is at the end.
            let text = err.text
            if let last = text.afterLast("curio: task dump"),
               last.contains(" kid [EVENT_WAIT]"), last.contains(" parent [TASK_JOIN]") {
                settled = true
            } else {
                usleep(10_000)
            }
        }
        out.append("settled \(settled)")
        try kernel.postBlocking { await go.set() }
        out.append("join \(thread.join(within: 20))")
        out += log.get.map { "log \($0)" }
        err.restore()
        if let last = err.text.afterLast("curio: task dump") {
            out += ("curio: task dump" + last).split(separator: "\n").map { "dump \($0)" }
        }
        return out
    }

    @Test(.timeLimit(.minutes(1)))
    func sigusr1DumpsTheTaskTree() throws {
        let r = try MonitorDebugScenario.run("dump")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines.contains("settled true"), "\(r.lines)")
        #expect(r.lines.contains("join ok"))
        let parentID = try #require(Self.value(r.lines, "parent").flatMap { Int($0) })
        let dump = r.lines.filter { $0.hasPrefix("dump ") }.map { String($0.dropFirst(5)) }
        #expect(dump.first == "curio: task dump (2 tasks)", "\(dump)")
        let kidLine = Self.value(r.lines, "log kid-at").flatMap { Int($0) }
        let parentLine = Self.value(r.lines, "log parent-at").flatMap { Int($0) }
        // The parent at the root, the kid under it, each with its wait and
        // the file:line of its blocking call.
        let p = dump.first { $0.hasPrefix("  \(parentID) parent [TASK_JOIN] at ") }
        #expect(p?.contains(" at \(#filePath):\(parentLine ?? -1) in ") == true, "\(dump)")
        let k = dump.first { $0.hasPrefix("    ") && $0.contains(" kid [EVENT_WAIT] at ") }
        #expect(k?.contains(" at \(#filePath):\(kidLine ?? -1) in ") == true, "\(dump)")
        if let p, let k, let pi = dump.firstIndex(of: p), let ki = dump.firstIndex(of: k) { #expect(pi < ki) }
    }

    // MARK: Activations

    static func activationsScenario() throws -> [String] {
        let err = try H.StderrFile()
        defer { err.restore() }
        let log = H.Shared<[String]>([])
        let kernel = Kernel()
        kernel.addActivation(TraceActivation())
        let warning = LongBlockWarning(threshold: 0.03)
        kernel.addActivation(warning)
        let worker = kernel.addTask(name: "worker") { () async throws -> Void in
            log.with { $0.append("spin-resumes-at \(#line)") }; try await Curio.sleep(0.001)
            // 50 ms without blocking.
            let start = Curio.clock()
            while Curio.clock() - start < 0.05 {}
            try await Curio.sleep(0.001)
        }
        let thread = H.Thread { try kernel.run() }
        var out = ["worker \(worker.id)"]
        out.append("join \(thread.join(within: 20))")
        out.append("warnings \(warning.warnings)")
        out += log.get.map { "log \($0)" }
        err.restore()
        out += err.text.split(separator: "\n").map { "err \($0)" }
        return out
    }

    @Test(.timeLimit(.minutes(1)))
    func traceAndLongBlockActivations() throws {
        let r = try MonitorDebugScenario.run("activations")
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines.contains("join ok"))
        let id = try #require(Self.value(r.lines, "worker").flatMap { Int($0) })
        let trace = r.lines.filter { $0.hasPrefix("err curio: trace task \(id) ") }.map { String($0.dropFirst(4)) }
        let t = "curio: trace task \(id)"
        #expect(trace == [
            "\(t) created",
            "\(t) (worker) running", "\(t) (worker) suspended in TIME_SLEEP",
            "\(t) (worker) running", "\(t) (worker) suspended in TIME_SLEEP",
            "\(t) (worker) running", "\(t) (worker) terminated",
        ], "\(r.lines)")

        // The 50 ms slice is warned about, with where it resumed.
        let spinLine = try #require(Self.value(r.lines, "log spin-resumes-at").flatMap { Int($0) })
        let warnings = r.lines.filter { $0.hasPrefix("err curio: task \(id) (worker) ran ") }
        let spin = warnings.filter { $0.hasSuffix(" s without blocking after resuming at File \"\(#filePath)\", line \(spinLine), in \(Self.activationsFunction)") }
        #expect(spin.count == 1, "\(warnings)")
        if let w = spin.first {
            let held = Double(w.dropFirst("err curio: task \(id) (worker) ran ".count).prefix { $0 != " " })
            #expect(held.map { $0 >= 0.05 } == true, "\(w)")
        }
        // The count matches the lines (other slices are far shorter, but a
        // loaded machine may stretch one).
        #expect(Self.value(r.lines, "warnings") == String(warnings.count))
    }

    /// `#function` inside the scenario's closure.
    static let activationsFunction = "activationsScenario()"

    /// Records every hook (kernel thread only; read after the kernel ends).
    final class RecordingActivation: Activation, @unchecked Sendable {
        var events: [String] = []
        func created(_ task: AnyCurioTask) { events.append("created \(task.id)") }
        func running(_ task: AnyCurioTask) { events.append("running \(task.id)") }
        func suspended(_ task: AnyCurioTask) { events.append("suspended \(task.id) \(task.state)") }
        func terminated(_ task: AnyCurioTask) { events.append("terminated \(task.id)") }
    }

    @Test(.timeLimit(.minutes(1)))
    func activationHooksSeeEveryStepInOrder() throws {
        let rec = RecordingActivation()
        let ids = H.Shared<[Int]>([])
        let thread = H.Thread {
            let kernel = Kernel()
            kernel.addActivation(rec)
            let evt = Event()
            let a = kernel.addTask(name: "a") { () async throws -> Void in
                try await evt.wait()
            }
            let b = kernel.addTask(name: "b") { () async throws -> Void in
                try await Curio.sleep(0.001)
                await evt.set()
            }
            ids.with { $0 = [a.id, b.id] }
            try kernel.run()
        }
        #expect(thread.join(within: 30) == "ok")
        let (a, b) = (ids.get[0], ids.get[1])
        func of(_ id: Int) -> [String] {
            rec.events.filter { $0.split(separator: " ")[1] == Substring(String(id)) }
        }
        #expect(of(a) == ["created \(a)", "running \(a)", "suspended \(a) EVENT_WAIT", "running \(a)", "terminated \(a)"],
                "\(rec.events)")
        #expect(of(b) == ["created \(b)", "running \(b)", "suspended \(b) TIME_SLEEP", "running \(b)", "terminated \(b)"],
                "\(rec.events)")
        // Created before anything runs; b's set() makes a run after b.
        #expect(Array(rec.events.prefix(2)) == ["created \(a)", "created \(b)"])
        let bSets = rec.events.lastIndex(of: "running \(b)")
        let aWakes = rec.events.lastIndex(of: "running \(a)")
        #expect(bSets != nil && aWakes != nil && bSets! < aWakes!)
    }
}

// The seed's "Signals" and "Number Crunching" programs end to end: the
// example executables (built beside this test binary) run with
// CURIO_TIME_SCALE=0.01, stdout on a pty (line-buffered, as in the seed's
// transcript), stdin /dev/null (not a terminal: the monitor does not take
// Ctrl-C) and CURIOMONITOR empty (the remote monitor on its standard Unix
// socket, in the tests' own XDG_RUNTIME_DIR). Once the kid is building the Millenium Falcon and the program
// catches SIGHUP, the test sends it and compares the whole output with the
// seed's.
//
// Also the responsiveness check of the Number Crunching section, in
// process: a 0.1 s ticker never stalls over 0.5 s while runCPUBound
// computes Fibonacci numbers, and a SIGHUP is handled while a worker is
// still busy.
import Glibc
import Synchronization
import Testing

@testable import Curio

private func fib(_ n: Int) -> Int {
    n <= 2 ? 1 : fib(n - 1) + fib(n - 2)
}

@Suite(.serialized, .timeLimit(.minutes(1)))
struct SeedSignalProgramTests {
    /// The seed's transcript after "Parent PID <pid>" (the seed shows the
    /// first four lines; the rest is the countdown program's ending, which
    /// the seed describes: "the parent wake[s] up, do[es] the countdown and
    /// cancel[s] the child").
    static let afterPID = [
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

    /// True when process `pid` catches `sig` (its SigCgt mask in
    /// /proc/PID/status).
    static func catches(_ pid: pid_t, _ sig: Int32) -> Bool {
        guard let f = fopen("/proc/\(pid)/status", "re") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("SigCgt:") {
                let hex = String(s.dropFirst(7).filter { $0.isHexDigit })
                guard let mask = UInt64(hex, radix: 16) else { return false }
                return mask & (UInt64(1) << UInt64(sig - 1)) != 0
            }
        }
        return false
    }

    struct Run: Sendable {
        var pid: pid_t = 0
        var lines: [String] = []
        var quietWhilePlaying = true
        var caughtSIGHUP = false
        var status: Int32?
        var stderr = ""
        var failure: String?
    }

    /// Runs `name`: reads up to "Building ...", checks that the program
    /// waits (prints nothing more) and catches SIGHUP, sends SIGHUP, reads
    /// the rest. The child is killed and reaped on every path.
    static func runWithSIGHUP(_ name: String) async throws -> Run {
        var env = KernelHarness.currentEnvironment().mapValues { Optional($0) }
        env["CURIO_TIME_SCALE"] = "0.01"
        env["CURIOMONITOR"] = ""
        env["XDG_RUNTIME_DIR"] = MonitorHarness.runtimeDirectory
        env["CURIO_TEST_SCENARIO"] = nil
        env["CURIO_TASK_DUMP"] = nil
        let p = try KernelHarness.ChildProcess(path: try SeedProgramTests.example(name), arguments: [],
                                               environment: env, stdoutIsTerminal: true)
        return try await KernelHarness.onThread(limit: 50) { () -> Run in
            var run = Run()
            run.pid = p.pid
            defer {
                if run.status == nil { p.killAndReap() }
            }
            while run.lines.count < 4, let line = p.nextLine(within: 20) {
                run.lines.append(line.text)
            }
            guard run.lines.count == 4 else {
                run.failure = "only \(run.lines) before the wait for SIGHUP"
                run.stderr = p.stderrText
                return run
            }
            // The parent waits for SIGHUP: 0.3 s is 30 scaled seconds, far
            // more than the 5 s sleep and the countdown would need.
            if let extra = p.nextLine(within: 0.3) {
                run.quietWhilePlaying = false
                run.lines.append(extra.text)
            }
            let deadline = KernelHarness.monotonicNow() + 10
            while !catches(p.pid, SIGHUP) && KernelHarness.monotonicNow() < deadline { usleep(1000) }
            run.caughtSIGHUP = catches(p.pid, SIGHUP)
            guard run.caughtSIGHUP else {
                run.failure = "the program does not catch SIGHUP"
                return run
            }
            kill(p.pid, SIGHUP)
            do {
                try p.readToEnd(within: 20)
            } catch {
                run.failure = "\(error)"
            }
            // Lines still buffered after the last nextLine.
            while let line = p.nextLine(within: 0) { run.lines.append(line.text) }
            run.status = p.waitExit(within: 10)
            run.stderr = p.stderrText
            return run
        }
    }

    static func check(_ r: Run, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.failure == nil, "\(r.failure ?? "")", sourceLocation: sourceLocation)
        guard let first = r.lines.first else {
            Issue.record("no output; stderr: \(r.stderr)", sourceLocation: sourceLocation)
            return
        }
        // "Parent PID <pid>" with the real pid of the child.
        #expect(first == "Parent PID \(r.pid)", sourceLocation: sourceLocation)
        #expect(Array(r.lines.dropFirst()) == afterPID, sourceLocation: sourceLocation)
        #expect(r.quietWhilePlaying, "the program went on without SIGHUP", sourceLocation: sourceLocation)
        #expect(r.caughtSIGHUP, sourceLocation: sourceLocation)
        #expect(r.status.flatMap(KernelHarness.exitCode) == 0,
                "status \(String(describing: r.status)); stderr: \(r.stderr)", sourceLocation: sourceLocation)
        let unexpected = r.stderr.split(separator: "\n").filter {
            !$0.hasPrefix("curio: io_uring is unavailable") && !$0.hasPrefix("curio: monitor listening on \(MonitorHarness.runtimeDirectory)/curio/")
        }
        #expect(unexpected.isEmpty, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test(.timeLimit(.minutes(1)))
    func helloSignal() async throws {
        let r = try await Self.runWithSIGHUP("hello-signal")
        Self.check(r)
    }

    @Test(.timeLimit(.minutes(1)))
    func helloFib() async throws {
        let r = try await Self.runWithSIGHUP("hello-fib")
        Self.check(r)
    }

    /// The seed: "In this version, the kernel will remain fully responsive.
    /// You can use the monitor and send the signal".
    @Test(.timeLimit(.minutes(1)))
    func kernelStaysResponsiveWhileRunCPUBoundComputes() async throws {
        struct Outcome: Sendable {
            var ticks = 0
            var fibs: [Int] = []
            var tickedWhileComputing: [Bool] = []
            var signal: Int32?
            var waiterWasWaiting = false
            var busyDuringSignal = false
            var busyStarted = false
        }
        let r = try await BridgeTest.signalGate.run {
            try await BridgeTest.run(limit: 45) { _ -> Outcome in
                var out = Outcome()
                let stopTicking = Event()
                let tickCount = Atomic<Int>(0)
                let ticker = try await spawn(name: "ticker") { () -> Int in
                    while !stopTicking.isSet {
                        try await Curio.sleep(0.01)
                        tickCount.add(1, ordering: .releasing)
                    }
                    return tickCount.load(ordering: .acquiring)
                }
                // fib(32) on a worker five times, then two workers that
                // compute until the ticker has ticked five more times: run
                // on the kernel thread, either would stall the ticker, and
                // the worker would give up after 20 s. Event ordering, no
                // bound on the gaps: how soon a tick comes is the machine's.
                for _ in 0..<5 { out.fibs.append(try await runCPUBound { fib(32) }) }
                for _ in 0..<2 {
                    out.tickedWhileComputing.append(try await runCPUBound { () -> Bool in
                        let goal = tickCount.load(ordering: .acquiring) + 5
                        let end = KernelHarness.monotonicNow() + 20
                        while tickCount.load(ordering: .acquiring) < goal && KernelHarness.monotonicNow() < end {
                            _ = fib(15)
                        }
                        return tickCount.load(ordering: .acquiring) >= goal
                    })
                }

                // SIGHUP while a worker is busy: the worker spins until it
                // is released, after the signal has been handled.
                let busyStarted = UniversalEvent()
                let release = Atomic<Bool>(false)
                let busy = try await spawn(name: "kid") {
                    try await runCPUBound { () -> Bool in
                        busyStarted.set()
                        let end = KernelHarness.monotonicNow() + 20
                        while !release.load(ordering: .acquiring) && KernelHarness.monotonicNow() < end {}
                        return release.load(ordering: .acquiring)
                    }
                }
                let sighup = SignalSet(SIGHUP)
                let waiter = try await spawn(name: "parent") { try await sighup.wait(timeout: 10) }
                out.busyStarted = try await timeoutAfter(10) { try await busyStarted.wait(); return true }
                out.waiterWasWaiting = try await BridgeTest.poll { waiter.state == .signalWait }
                if out.waiterWasWaiting { kill(getpid(), SIGHUP) }
                out.signal = try await BridgeTest.joinOrCancel(waiter) ?? nil
                out.busyDuringSignal = !release.load(ordering: .acquiring) && busy.state == .cpuWait
                release.store(true, ordering: .releasing)
                _ = try await busy.join()

                await stopTicking.set()
                out.ticks = try await ticker.join() ?? 0
                return out
            }
        }
        #expect(r.fibs.count == 5 && r.fibs.allSatisfy { $0 == 2_178_309 }, "\(r.fibs)")
        #expect(r.tickedWhileComputing == [true, true], "the ticker stalled while workers computed")
        #expect(r.ticks >= 10)
        #expect(r.busyStarted)
        #expect(r.waiterWasWaiting)
        #expect(r.signal == SIGHUP, "the SIGHUP was not handled while the worker computed")
        #expect(r.busyDuringSignal, "the worker was not busy when the signal was handled")
        #expect(BridgeTest.handlerBits(SIGHUP) == BridgeTest.SIG_DFL_BITS)
    }
}

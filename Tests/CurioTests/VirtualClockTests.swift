// The virtual clock (Kernel.Configuration.clock = .virtual): timers run on
// it, it jumps to the next deadline when every task waits, it stands still
// while a task waits for a worker thread, advanceClock(by:) moves it by hand,
// and the time scale applies to it. Every assertion is on exact virtual
// readings, none on the wall clock.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct VirtualClockTests {
    @Test(.timeLimit(.minutes(1)))
    func anHourOfSleepTakesNoRealTimeAndEndsOnTheDot() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> (Bool, Int64, Int64) in
            let t0 = KernelHarness.clockNow()
            try await Curio.sleep(3600)
            let slept = KernelHarness.clockNow() - t0
            try await Curio.sleep(for: .milliseconds(1))
            return (kernel.clockIsVirtual, slept, KernelHarness.clockNow() - t0)
        }
        #expect(r.0)
        #expect(r.1 == 3_600_000_000_000)
        #expect(r.2 == 3_600_001_000_000)
    }

    // Each sleeper wakes at exactly its own deadline, in deadline order, and
    // sleepers with the same deadline wake in the order they slept.
    @Test(.timeLimit(.minutes(1)))
    func sleepersWakeInDeadlineOrderAtTheirDeadlines() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let t0 = KernelHarness.clockNow()
            var tasks: [CurioTask<Void>] = []
            for (name, hours) in [("c", 3), ("a", 1), ("b", 2), ("a2", 1)] {
                tasks.append(try await spawn {
                    try await CurioClock().sleep(until: CurioClock.Instant(nanoseconds: t0 + Int64(hours) * 3_600_000_000_000))
                    log.add("\(name)@\((KernelHarness.clockNow() - t0) / 1_000_000_000)")
                })
            }
            for t in tasks { try await t.join() }
            return log.entries
        }
        #expect(r == ["a@3600", "a2@3600", "b@7200", "c@10800"])
    }

    @Test(.timeLimit(.minutes(1)))
    func timeoutsFireAtTheirDeadlineWithItsClock() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            let t0 = Curio.clock()
            let n0 = KernelHarness.clockNow()
            do {
                try await timeoutAfter(5) { try await Curio.sleep(10) }
                seen.append("returned")
            } catch let e as TaskTimeout {
                seen.append("timeout after \(KernelHarness.clockNow() - n0) ns, clock \(e.clock - t0 == 5 ? "ok" : "\(e.clock - t0)")")
            }
            // ignoreAfter: nil at its deadline; the inner sleep's own time is never reached.
            let v: Int? = try await ignoreAfter(2) { () -> Int in
                try await Curio.sleep(3)
                return 1
            }
            seen.append("ignore \(v.map(String.init) ?? "nil") at \(KernelHarness.clockNow() - n0) ns")
            // A join with a timeout that the child beats by one second.
            let child = try await spawn { () -> Int in
                try await Curio.sleep(4)
                return 7
            }
            let joined = try await child.join(timeout: 5)
            seen.append("join \(joined.map(String.init) ?? "nil") at \(KernelHarness.clockNow() - n0) ns")
            return seen
        }
        #expect(r == ["timeout after 5000000000 ns, clock ok",
                      "ignore nil at 7000000000 ns",
                      "join 7 at 11000000000 ns"])
    }

    // With autojump off, only advanceClock moves time: a sleeper is still
    // asleep a second before its deadline and wakes when the clock reaches it.
    @Test(.timeLimit(.minutes(1)))
    func advanceClockMovesTimeByHand() async throws {
        let r = try await KernelHarness.runVirtual(autojump: nil) { kernel -> [String] in
            let log = KernelHarness.Log()
            let t0 = KernelHarness.clockNow()
            let sleeper = try await spawn {
                try await Curio.sleep(60)
                log.add("woke at \((KernelHarness.clockNow() - t0) / 1_000_000_000)")
            }
            try await Curio.sleep(0)  // the sleeper starts its sleep
            try kernel.advanceClock(by: .seconds(59))
            try await Curio.sleep(0)
            log.add("after 59: \(sleeper.state)")
            try kernel.advanceClock(by: .seconds(1))
            try await sleeper.join()
            log.add("clock \((KernelHarness.clockNow() - t0) / 1_000_000_000)")
            return log.entries
        }
        #expect(r == ["after 59: \(TaskState.timeSleep)", "woke at 60", "clock 60"])
    }

    // A task waiting for a worker thread holds the clock: the timeout
    // around it would be due at once after a jump, and it is not, although
    // the worker takes real time.
    @Test(.timeLimit(.minutes(1)))
    func aWorkerThreadHoldsTheClock() async throws {
        let r = try await KernelHarness.runVirtual { _ -> (Int, Int64) in
            let t0 = KernelHarness.clockNow()
            let v = try await timeoutAfter(1) {
                try await runInThread { () -> Int in
                    usleep(20_000)
                    return 42
                }
            }
            return (v, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == 42)
        #expect(r.1 == 0, "the virtual clock moved while a worker thread ran")
    }

    // A worker that never answers in time cannot hang a virtual clock: the
    // loop waits the deadline's distance in real time, then jumps, and the
    // timeout fires at exactly its virtual deadline. The worker is released
    // only afterwards, so the order does not depend on timing.
    @Test(.timeLimit(.minutes(1)))
    func aWorkerThatDoesNotAnswerCannotHangTheClock() async throws {
        let r = try await KernelHarness.runVirtual { _ -> (String, Int64) in
            let release = UniversalEvent()
            let t0 = KernelHarness.clockNow()
            var outcome = "returned"
            do {
                _ = try await timeoutAfter(0.05) {
                    try await runInThread { () -> Int in
                        _ = try? release.blockingWait()
                        return 1
                    }
                }
            } catch is TaskTimeout {
                outcome = "timeout"
            }
            let at = KernelHarness.clockNow() - t0
            release.set()
            return (outcome, at)
        }
        #expect(r.0 == "timeout")
        #expect(r.1 == 50_000_000)
    }

    // The time scale of the configuration applies to the kernel's relative
    // times; absolute deadlines are not scaled.
    @Test(.timeLimit(.minutes(1)))
    func timeScaleIsTheKernelsOwn() async throws {
        var c = Kernel.Configuration.builtIn
        c.clock = .virtual()
        c.timeScale = 0.25
        let r = try await KernelHarness.run(configuration: c) { _ -> [Int64] in
            let t0 = KernelHarness.clockNow()
            try await Curio.sleep(8)
            let scaled = KernelHarness.clockNow() - t0
            try await CurioClock().sleep(until: CurioClock.Instant(nanoseconds: KernelHarness.clockNow() + 8_000_000_000))
            return [scaled, KernelHarness.clockNow() - t0]
        }
        #expect(r == [2_000_000_000, 10_000_000_000])
        // Off the kernel's thread nothing is scaled.
        #expect(timeScale == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func badClockSettingsAreNamedErrors() async throws {
        var c = Kernel.Configuration.builtIn
        c.timeScale = 0
        #expect(throws: CurioUsageError.self) { try Kernel.make(configuration: c) }
        c.timeScale = .nan
        #expect(throws: CurioUsageError.self) { try Kernel.make(configuration: c) }
        c.timeScale = 1
        c.clock = .virtual(autojump: .seconds(-1))
        #expect(throws: CurioUsageError.self) { try Kernel.make(configuration: c) }
        let r = try await KernelHarness.run { kernel -> [String] in
            var seen: [String] = []
            do { try kernel.advanceClock(by: .seconds(1)) } catch let e as CurioUsageError { seen.append("\(e.kind)") }
            return seen
        }
        #expect(r == ["invalidArgument"])
        let v = try await KernelHarness.runVirtual(autojump: nil) { kernel -> [String] in
            var seen: [String] = []
            do { try kernel.advanceClock(by: .seconds(-1)) } catch let e as CurioUsageError { seen.append("\(e.kind)") }
            // From another thread: the clock belongs to the kernel's thread.
            let other = try await runInThread { () -> String in
                do { try kernel.advanceClock(by: .seconds(1)) } catch let e as CurioUsageError { return "\(e.kind)" }
                return "moved"
            }
            seen.append(other)
            return seen
        }
        #expect(v == ["invalidArgument", "wrongKernel"])
    }

    // Outside a kernel, Curio.clock() is CLOCK_MONOTONIC; inside a virtual
    // kernel it is the virtual reading, which starts where the real one was.
    @Test(.timeLimit(.minutes(1)))
    func clockReadsTheCallingThreadsKernel() async throws {
        let before = Curio.clock()
        let r = try await KernelHarness.runVirtual { _ -> (Double, Double) in
            let a = Curio.clock()
            try await Curio.sleep(1000)
            return (a, Curio.clock())
        }
        #expect(r.0 >= before)
        #expect(abs(r.1 - r.0 - 1000) < 1e-6)
        #expect(Curio.clock() < r.1, "outside the kernel the real clock is read")
    }

    // The README's example, as printed there.
    @Test(.timeLimit(.minutes(1)))
    func theReadmeExample() async throws {
        let ok = try await KernelHarness.onThread { () -> Bool in
            var configuration = Kernel.Configuration.default
            configuration.clock = .virtual()
            let kernel = Kernel(configuration: configuration)
            defer { try? kernel.shutdown() }
            return try kernel.run { () -> Bool in
                let start = CurioClock().now
                do { try await timeoutAfter(5) { try await Curio.sleep(3600) } } catch is TaskTimeout {}
                return start.duration(to: CurioClock().now) == .seconds(5)
            }
        }
        #expect(ok)
    }

    /// A virtual clock fires a timeout exactly at its deadline. Whose
    /// timeout it is must not depend on the clock's value: for some
    /// deadlines, nanoseconds → seconds → nanoseconds lands one short, and
    /// the block then took its own timeout for a stray one
    /// (UncaughtTimeoutError). The clock is moved so that the deadline is
    /// such a value; the block must still throw TaskTimeout.
    ///
    /// Such values exist at some magnitudes only (none between 2^46 and
    /// 2^53 ns, many from 2^53 ns, about 104 days, on), so the clock is
    /// first moved to 2^53 ns or later: the test does not depend on the
    /// machine's uptime, where the virtual clock starts.
    @Test(.timeLimit(.minutes(1)))
    func aTimeoutOwnedByItsBlockWhateverTheClockReads() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            let lossy: (Int64) -> Bool = { Int64(Double($0) / 1e9 * 1e9) != $0 }
            let lossyRegion: Int64 = 1 << 53
            var outcomes: [String] = []
            for _ in 0..<3 {
                let start = KernelHarness.clockNow()
                let period: Int64 = 10_000_000  // timeoutAfter(0.01)
                var deadline = Swift.max(start + period, lossyRegion)
                var tries = 0
                while !lossy(deadline) {
                    deadline += 1
                    tries += 1
                    if tries == 1_000 { return ["no lossy deadline within 1,000 ns of \(deadline)"] }
                }
                try kernel.advanceClock(by: .nanoseconds(deadline - period - start))
                do {
                    try await timeoutAfter(0.01) { try await Curio.sleep(10) }
                    outcomes.append("returned")
                } catch {
                    outcomes.append(KernelHarness.kind(error))
                }
            }
            return outcomes
        }
        #expect(r == ["TaskTimeout", "TaskTimeout", "TaskTimeout"])
    }
}

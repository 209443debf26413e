// Time, on the virtual clock (exact readings, no wall-clock bounds; a task
// that "runs past its deadline" moves the clock with advanceClock instead
// of spinning), and on the real one only where the test is about the real
// clock: sleep ordering, sleep(0) as a yield, sleep(for:), Curio.clock(), invalid
// times, timeoutAfter / ignoreAfter / timeoutAt / ignoreAt and curio 1.6's
// nesting rules, timeouts while running, and blocks that finish late
// without blocking.
import CCurioKernel
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct TimeTests {
    // Sleeps of 3, 1 and 2 units wake in the order 1, 2, 3. A unit is 10 ms,
    // not 1 ms: each task starts its sleep when it first runs, and on a
    // loaded 2-core machine the three starts can be more than a millisecond
    // apart, which would be the test's noise, not the kernel's.
    @Test(.timeLimit(.minutes(1)))
    func sleepersWakeInDeadlineOrder() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            var tasks: [CurioTask<Void>] = []
            for units in [3, 1, 2] {
                tasks.append(try await spawn {
                    try await Curio.sleep(Double(units) * 0.01)
                    log.add("\(units)")
                })
            }
            for t in tasks { try await t.join() }
            return log.entries
        }
        #expect(r == ["1", "2", "3"])
    }

    // Forty sleepers in shuffled order, deadlines 1 ms apart from one common
    // start (each sleeps until start + its offset, whenever it first runs):
    // the timers fire in deadline order.
    @Test(.timeLimit(.minutes(1)))
    func manySleepersWakeInDeadlineOrder() async throws {
        var offsets = Array(1...40)
        offsets.shuffle()
        let order = offsets
        let r = try await KernelHarness.runVirtual { _ -> ([Int], Int) in
            let woke = KernelHarness.Log()
            let late = KernelHarness.Log()
            let base = Curio.clock() + 0.2
            var tasks: [CurioTask<Void>] = []
            for ms in order {
                tasks.append(try await spawn {
                    let left = base + Double(ms) / 1000 - Curio.clock()
                    if left <= 0 { late.add("\(ms)") }
                    try await Curio.sleep(max(left, 0))
                    woke.add("\(ms)")
                })
            }
            for t in tasks { try await t.join() }
            return (woke.entries.map { Int($0)! }, late.entries.count)
        }
        #expect(r.1 == 0, "some sleepers started after their deadline: the machine stalled for 0.2 s")
        #expect(r.0 == Array(1...40))
    }

    @Test(.timeLimit(.minutes(1)))
    func sleepZeroYieldsBehindTheOtherReadyTasks() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            var tasks: [CurioTask<Void>] = []
            for name in ["a", "b", "c"] {
                tasks.append(try await spawn {
                    for i in 0..<3 {
                        log.add("\(name)\(i)")
                        try await Curio.sleep(0)
                    }
                })
            }
            for t in tasks { try await t.join() }
            return log.entries
        }
        #expect(r == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func sleepZeroAloneReturnsAtOnce() async throws {
        let r = try await KernelHarness.runVirtual { _ -> (Double, String) in
            let t0 = Curio.clock()
            for _ in 0..<1000 { try await Curio.sleep(0) }
            try await Curio.sleep(for: .zero)
            return (Curio.clock() - t0, "\(try await currentTask().state)")
        }
        #expect(r.0 == 0, "yields set no timer: virtual time stood still")
        #expect(r.1 == "RUNNING")
    }

    // On the real clock a sleep never ends early (how much later depends on
    // the machine's load, so there is no upper bound); on the virtual clock
    // it ends exactly on time.
    @Test(.timeLimit(.minutes(1)))
    func sleepSleepsAtLeastThatLong() async throws {
        let exact = try await KernelHarness.runVirtual { _ -> [Int64] in
            var out: [Int64] = []
            for d in [Duration.milliseconds(30), .microseconds(30_000), .nanoseconds(1)] {
                let t0 = KernelHarness.clockNow()
                try await Curio.sleep(for: d)
                out.append(KernelHarness.clockNow() - t0)
            }
            let t0 = KernelHarness.clockNow()
            try await Curio.sleep(0.03)
            out.append(KernelHarness.clockNow() - t0)
            return out
        }
        #expect(exact == [30_000_000, 30_000_000, 1, 30_000_000])
        let r = try await KernelHarness.run { _ -> [Double] in
            var t0 = Curio.clock()
            try await Curio.sleep(0.03)
            let a = Curio.clock() - t0
            t0 = Curio.clock()
            try await Curio.sleep(for: .milliseconds(30))
            let b = Curio.clock() - t0
            t0 = Curio.clock()
            try await Curio.sleep(for: .microseconds(30_000))
            let c = Curio.clock() - t0
            return [a, b, c]
        }
        for s in r {
            #expect(s >= 0.03, "slept \(s) s for 0.03 s")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func clockIsMonotonicSeconds() async throws {
        var last = Curio.clock()
        for _ in 0..<10_000 {
            let now = Curio.clock()
            #expect(now >= last)
            last = now
        }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let mono = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        #expect(abs(Curio.clock() - mono) < 0.5, "Curio.clock() is CLOCK_MONOTONIC in seconds")
        let r = try await KernelHarness.run { _ -> (Double, Double) in
            let a = Curio.clock()
            try await Curio.sleep(0.02)
            return (a, Curio.clock())
        }
        #expect(r.1 - r.0 >= 0.02)
    }

    @Test(.timeLimit(.minutes(1)))
    func negativeNaNAndInfiniteTimesAreInvalid() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var kinds: [String] = []
            func note(_ body: () async throws -> Void) async {
                do {
                    try await body()
                    kinds.append("no error")
                } catch {
                    kinds.append(KernelHarness.kind(error))
                }
            }
            let t = try await spawn { try await Curio.sleep(1000) }
            let evt = Event()
            for bad in [-1, -0.001, Double.nan, .infinity, -Double.infinity] {
                await note { try await Curio.sleep(bad) }
                await note { _ = try await timeoutAfter(bad) { 1 } }
                await note { _ = try await ignoreAfter(bad) { 1 } }
                await note { _ = try await t.join(timeout: bad) }
                await note { _ = try await evt.wait(timeout: bad) }
            }
            await note { try await Curio.sleep(for: .seconds(-1)) }
            await note { _ = try await timeoutAt(.nan) { 1 } }
            await note { _ = try await ignoreAt(.infinity) { 1 } }
            await note { _ = try await timeoutAt(-.infinity) { 1 } }
            try await t.cancel()
            return kinds
        }
        #expect(r == Array(repeating: "CurioUsageError.invalidTimeout", count: 5 * 5 + 4))
    }

    @Test(.timeLimit(.minutes(1)))
    func hugeTimesAreForever() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [Int?] in
            let a = try await timeoutAfter(1e12) { () -> Int in
                try await Curio.sleep(0.001)
                return 1
            }
            let b = try await ignoreAfter(.greatestFiniteMagnitude) { () -> Int in
                try await Curio.sleep(0.001)
                return 2
            }
            let t = try await spawn { () -> Int in
                try await Curio.sleep(0.001)
                return 3
            }
            return [a, b, try await t.join(timeout: 1e300)]
        }
        #expect(r == [1, 2, 3])
    }

    @Test(.timeLimit(.minutes(1)))
    func timeoutAfterReturnsTheValueInTime() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> (String, UInt32) in
            let v = try await timeoutAfter(5) { () -> String in
                try await Curio.sleep(0.001)
                return "in time"
            }
            return (v, UInt32(kernel.statistics.pendingTimers))
        }
        #expect(r.0 == "in time")
        #expect(r.1 == 0, "the block's timer is gone once it returns")
    }

    @Test(.timeLimit(.minutes(1)))
    func timeoutAfterExpiryThrowsTaskTimeout() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            let t0 = KernelHarness.clockNow()
            do {
                _ = try await timeoutAfter(0.02) { () -> Int in
                    try await Curio.sleep(10)
                    return 1
                }
                seen.append("returned")
            } catch let e as TaskTimeout {
                let elapsed = KernelHarness.clockNow() - t0
                seen.append("TaskTimeout")
                seen.append(elapsed == 20_000_000 ? "on time" : "after \(elapsed) ns")
                let clock = CurioClock.Instant(clockSeconds: e.clock).nanoseconds - t0
                seen.append(abs(clock - 20_000_000) < 1000 ? "clock ok" : "clock \(clock) ns")
            }
            // `catch is TimeoutError` and `catch is CancelledError` both catch it.
            do { try await timeoutAfter(0.001) { try await Curio.sleep(10) } } catch is TimeoutError {
                seen.append("TimeoutError")
            }
            do { try await timeoutAfter(0.001) { try await Curio.sleep(10) } } catch is CancelledError {
                seen.append("CancelledError")
            }
            // The expired block leaves nothing behind: later waits run in full.
            let t1 = KernelHarness.clockNow()
            try await Curio.sleep(0.02)
            seen.append(KernelHarness.clockNow() - t1 == 20_000_000 ? "later sleep in full" : "later sleep cut short")
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            return seen
        }
        #expect(r == ["TaskTimeout", "on time", "clock ok", "TimeoutError", "CancelledError",
                      "later sleep in full", "timers 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func ignoreAfterReturnsNilOnExpiryAndTheValueOtherwise() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let a = try await ignoreAfter(0.01) { () -> Int in
                try await Curio.sleep(10)
                return 1
            }
            let b = try await ignoreAfter(5) { () -> Int in
                try await Curio.sleep(0.001)
                return 2
            }
            let c = try await ignoreAfter(5) { 3 }
            // An event wait inside: the waiter is taken off the event.
            let evt = Event()
            let d = try await ignoreAfter(0.01) { try await evt.wait() }
            return [a.map(String.init) ?? "nil", b.map(String.init) ?? "nil", c.map(String.init) ?? "nil",
                    d.map { "\($0)" } ?? "nil"]
        }
        #expect(r == ["nil", "2", "3", "nil"])
    }

    @Test(.timeLimit(.minutes(1)))
    func timeoutAtAndIgnoreAt() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAt(Curio.clock() + 0.01) { try await Curio.sleep(10) }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            seen.append("\(try await timeoutAt(Curio.clock() + 5) { 3 })")
            seen.append("\(try await ignoreAt(Curio.clock() + 0.01) { try await Curio.sleep(10) } == nil)")
            seen.append("\(try await ignoreAt(Curio.clock() + 5) { 4 } ?? -1)")
            // A deadline already in the past: the first blocking call times out.
            seen.append("\(try await ignoreAt(Curio.clock() - 1) { try await Curio.sleep(10) } == nil)")
            do {
                try await timeoutAt(0) { try await Curio.sleep(0) }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            return seen
        }
        #expect(r == ["TaskTimeout", "3", "true", "4", "true", "TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func anInnerBlockNeverExtendsTheOuterDeadline() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> ([String], Int64, UInt32) in
            var seen: [String] = []
            let t0 = KernelHarness.clockNow()
            do {
                try await timeoutAfter(0.02) {
                    do {
                        try await timeoutAfter(5) {
                            do {
                                try await Curio.sleep(10)
                            } catch {
                                seen.append("at the sleep: \(KernelHarness.kind(error))")
                                throw error
                            }
                        }
                    } catch {
                        seen.append("around the inner block: \(KernelHarness.kind(error))")
                        throw error
                    }
                }
            } catch {
                seen.append("around the outer block: \(KernelHarness.kind(error))")
            }
            return (seen, KernelHarness.clockNow() - t0, UInt32(kernel.statistics.pendingTimers))
        }
        #expect(r.0 == ["at the sleep: TaskTimeout",
                        "around the inner block: TimeoutCancellationError",
                        "around the outer block: TaskTimeout"])
        #expect(r.1 == 20_000_000, "the outer 0.02 s deadline ended it, not the inner 5 s one")
        #expect(r.2 == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func anInnerDeadlineThatPassesFirstIsTheInnerBlocks() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            let v = try await timeoutAfter(5) { () -> String in
                do {
                    try await timeoutAfter(0.01) { try await Curio.sleep(10) }
                } catch {
                    seen.append("inner: \(KernelHarness.kind(error))")
                }
                // The outer block goes on; its own deadline is still ahead.
                try await Curio.sleep(0.01)
                return "outer finished"
            }
            seen.append(v)
            return seen
        }
        #expect(r == ["inner: TaskTimeout", "outer finished"])
    }

    @Test(.timeLimit(.minutes(1)))
    func theOuterDeadlineHoldsAgainAfterAnInnerBlock() async throws {
        let r = try await KernelHarness.runVirtual { _ -> ([String], Int64) in
            var seen: [String] = []
            let t0 = KernelHarness.clockNow()
            do {
                try await timeoutAfter(0.05) {
                    // An inner block with a later deadline ends normally...
                    try await timeoutAfter(10) { try await Curio.sleep(0.001) }
                    seen.append("inner returned")
                    // ...and one with an earlier deadline times out and is caught.
                    if try await ignoreAfter(0.005, { try await Curio.sleep(10) }) == nil {
                        seen.append("inner ignored")
                    }
                    try await Curio.sleep(10)  // the outer 0.05 s deadline still holds
                    seen.append("slept 10 s")
                }
            } catch {
                seen.append("outer: \(KernelHarness.kind(error))")
            }
            return (seen, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == ["inner returned", "inner ignored", "outer: TaskTimeout"])
        #expect(r.1 == 50_000_000, "the outer block ended \(r.1) ns after it began")
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimeoutCaughtInsideItsBlockIsDeliveredOnce() async throws {
        // As in curio 1.6: once a block's deadline has fired, the block goes
        // on without further timeouts if its code catches the TaskTimeout.
        let r = try await KernelHarness.runVirtual { _ -> ([String], Int64) in
            var seen: [String] = []
            let t0 = KernelHarness.clockNow()
            let v = try await timeoutAfter(0.01) { () -> Int in
                do {
                    try await Curio.sleep(10)
                } catch is TaskTimeout {
                    seen.append("caught")
                }
                try await Curio.sleep(0.03)
                seen.append("slept after the deadline")
                return 9
            }
            seen.append("\(v)")
            return (seen, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == ["caught", "slept after the deadline", "9"])
        #expect(r.1 == 40_000_000)
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelInsideATimeoutBlockStaysACancel() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let t = try await spawn {
                do {
                    try await timeoutAfter(10) {
                        try await ignoreAfter(10) { try await Curio.sleep(1000) }
                    }
                } catch {
                    log.add(KernelHarness.kind(error))
                    throw error
                }
            }
            try await Curio.sleep(0)
            try await t.cancel()
            log.add(t.terminated ? "ended" : "running")
            return log.entries
        }
        #expect(r == ["TaskCancelled", "ended"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aZeroTimeoutExpiresAtTheFirstBlockingCall() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            seen.append("\(try await timeoutAfter(0) { 1 })")  // never blocks: returns
            do {
                try await timeoutAfter(0) { try await Curio.sleep(0) }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            seen.append(try await ignoreAfter(0) { try await Curio.sleep(1) } == nil ? "nil" : "value")
            return seen
        }
        #expect(r == ["1", "TaskTimeout", "nil"])
    }

    @Test(.timeLimit(.minutes(1)))
    func ignoreAfterNesting() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            // The outer ignoreAfter expires: the inner timeoutAfter unwinds.
            let a = try await ignoreAfter(0.01) { () -> Int in
                do {
                    try await timeoutAfter(5) { try await Curio.sleep(10) }
                } catch {
                    seen.append("inner: \(KernelHarness.kind(error))")
                    throw error
                }
                return 1
            }
            seen.append(a == nil ? "outer nil" : "outer \(a!)")
            // The inner ignoreAfter expires: nil, and the outer goes on.
            let b = try await timeoutAfter(5) { () -> String in
                let inner = try await ignoreAfter(0.01) { () -> Int in
                    try await Curio.sleep(10)
                    return 2
                }
                return inner == nil ? "inner nil" : "inner value"
            }
            seen.append(b)
            return seen
        }
        #expect(r == ["inner: TimeoutCancellationError", "outer nil", "inner nil"])
    }

    @Test(.timeLimit(.minutes(1)))
    func theOutermostExpiredDeadlineOwnsTheTimeout() async throws {
        // Outer and middle deadlines both pass while the task runs without
        // blocking; the outer one (the outermost expired) owns the timeout.
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAfter(0.01) {
                    do {
                        try await timeoutAfter(0.02) {
                            do {
                                try await timeoutAfter(5) {
                                    try kernel.advanceClock(by: .milliseconds(40))
                                    try await Curio.sleep(0)
                                }
                            } catch {
                                seen.append("inner: \(KernelHarness.kind(error))")
                                throw error
                            }
                        }
                    } catch {
                        seen.append("middle: \(KernelHarness.kind(error))")
                        throw error
                    }
                }
            } catch {
                seen.append("outer: \(KernelHarness.kind(error))")
            }
            return seen
        }
        #expect(r == ["inner: TimeoutCancellationError", "middle: TimeoutCancellationError",
                      "outer: TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimeoutEscapingIntoABlockWhoseDeadlineHasNotPassedIsUncaught() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            // The inner block's TaskTimeout is caught, kept and thrown again
            // outside its own block, into the outer one.
            do {
                try await timeoutAfter(5) {
                    var escaped: (any Error)?
                    do {
                        try await timeoutAfter(0.01) { try await Curio.sleep(10) }
                    } catch {
                        escaped = error
                    }
                    seen.append("kept: \(KernelHarness.kind(escaped!))")
                    throw escaped!
                }
            } catch let e as UncaughtTimeoutError {
                seen.append("outer: UncaughtTimeoutError")
                seen.append((e as any Error) is TimeoutError ? "is a TimeoutError" : "not a TimeoutError")
            } catch {
                seen.append("outer: \(KernelHarness.kind(error))")
            }
            // A TaskTimeout made up by hand inside a block that has not expired.
            do {
                try await ignoreAfter(5) { throw TaskTimeout(clock: Curio.clock()) }
                seen.append("ignored")
            } catch {
                seen.append("made up: \(KernelHarness.kind(error))")
            }
            // One made up with a clock that is no time at all: judged, not a crash.
            do {
                try await ignoreAfter(5) { throw TaskTimeout(clock: .nan) }
                seen.append("ignored")
            } catch {
                seen.append("made up, NaN: \(KernelHarness.kind(error))")
            }
            return seen
        }
        #expect(r == ["kept: TaskTimeout", "outer: UncaughtTimeoutError", "is a TimeoutError",
                      "made up: UncaughtTimeoutError", "made up, NaN: UncaughtTimeoutError"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimeoutWhileRunningArrivesAtTheNextBlockingCall() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAfter(0.01) {
                    try kernel.advanceClock(by: .milliseconds(30))  // past the deadline, never blocking
                    seen.append("ran past the deadline")
                    _ = Curio.clock()
                    _ = try await currentTask()
                    seen.append("non-blocking calls went through")
                    try await Curio.sleep(0.001)
                    seen.append("slept")
                }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            // The same with sleep(0) as the blocking call.
            do {
                try await timeoutAfter(0.01) {
                    try kernel.advanceClock(by: .milliseconds(30))
                    try await Curio.sleep(0)
                    seen.append("yielded")
                }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            return seen
        }
        #expect(r == ["ran past the deadline", "non-blocking calls went through", "TaskTimeout", "TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aBlockThatEndsAfterItsDeadlineWithoutBlockingReturnsNormally() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            let v = try await timeoutAfter(0.01) { () -> Int in
                try kernel.advanceClock(by: .milliseconds(30))
                return 7
            }
            seen.append("\(v)")
            let w = try await ignoreAfter(0.01) { () -> Int in
                try await Curio.sleep(0.001)
                try kernel.advanceClock(by: .milliseconds(30))
                return 8
            }
            seen.append("\(w ?? -1)")
            // Nothing is left pending: later blocking calls are not cut short.
            let t0 = KernelHarness.clockNow()
            try await Curio.sleep(0.02)
            seen.append(KernelHarness.clockNow() - t0 >= 20_000_000 ? "later sleep in full" : "later sleep cut short")
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            return seen
        }
        #expect(r == ["7", "8", "later sleep in full", "timers 0"])
    }
}

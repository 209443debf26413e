// Cancellation: delivered only at blocking calls, disableCancellation
// (deferring cancels and timeouts, nesting), checkCancellation and
// pendingCancellation, and the clean-up a cancelled wait leaves behind (the
// event's waiter list, the sleep's timer, the join queue).
import CCurioKernel
import Glibc
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

@Suite(.timeLimit(.minutes(1)))
struct CancellationTests {
    @Test(.timeLimit(.minutes(1)))
    func cancellationArrivesOnlyAtABlockingCall() async throws {
        let r = try await KernelHarness.runVirtual { _ -> ([String], Int??) in
            let log = KernelHarness.Log()
            let setEvt = Event()
            await setEvt.set()
            let t = try await spawn { () -> Int in
                // The cancel is already pending when this task first runs:
                // running code, non-blocking calls and fast paths go on.
                var sum = 0
                for i in 0..<100_000 { sum &+= i }
                log.add("loop done")
                _ = Curio.clock()
                _ = try await currentTask()
                _ = setEvt.isSet
                await setEvt.set()
                try await setEvt.wait()  // set already: returns without blocking
                log.add("fast paths done")
                do {
                    try await Curio.sleep(0.001)
                    log.add("slept")
                } catch {
                    log.add("sleep: \(KernelHarness.kind(error))")
                    throw error
                }
                return sum
            }
            try await t.cancel()  // t has not run yet
            return (log.entries, try await t.join())
        }
        #expect(r.0 == ["loop done", "fast paths done", "sleep: TaskCancelled"])
        #expect(r.1 != nil && r.1! == nil, "join returned \(String(describing: r.1))")
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelInterruptsTheBlockingCallInProgress() async throws {
        let r = try await KernelHarness.runVirtual { _ -> ([String], Int64) in
            let log = KernelHarness.Log()
            let started = Event()
            let t = try await spawn {
                await started.set()
                do {
                    try await Curio.sleep(1000)
                } catch {
                    log.add("sleep: \(KernelHarness.kind(error))")
                }
            }
            try await started.wait()
            let t0 = KernelHarness.clockNow()
            try await t.cancel()
            return (log.entries, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == ["sleep: TaskCancelled"])
        #expect(r.1 == 0, "the cancel ended the 1000 s sleep at once")
    }

    @Test(.timeLimit(.minutes(1)))
    func disableCancellationDefersACancelToTheFirstBlockingCallAfterIt() async throws {
        let r = try await KernelHarness.runVirtual { _ -> ([String], Int64) in
            let log = KernelHarness.Log()
            let started = Event()
            let t = try await spawn {
                try await disableCancellation {
                    await started.set()
                    let t0 = KernelHarness.clockNow()
                    try await Curio.sleep(0.03)  // the parent cancels meanwhile
                    log.add(KernelHarness.clockNow() - t0 == 30_000_000 ? "slept in full" : "sleep cut short")
                    try await checkCancellation()  // does not throw in here
                    log.add("pending: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
                    try await Curio.sleep(0)
                    log.add("yielded")
                }
                log.add("left the block")
                do {
                    try await Curio.sleep(0)
                    log.add("not cancelled")
                } catch {
                    log.add("first blocking call: \(KernelHarness.kind(error))")
                    throw error
                }
            }
            try await started.wait()
            let t0 = KernelHarness.clockNow()
            try await t.cancel()
            log.add("cancel returned")
            return (log.entries, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == ["slept in full", "pending: TaskCancelled", "yielded", "left the block",
                        "first blocking call: TaskCancelled", "cancel returned"])
        #expect(r.1 == 30_000_000, "cancel() waited for the task to end")
    }

    @Test(.timeLimit(.minutes(1)))
    func disableCancellationDefersATimeout() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> ([String], Int64) in
            var seen: [String] = []
            let t0 = KernelHarness.clockNow()
            do {
                try await timeoutAfter(0.01) {
                    try await disableCancellation {
                        let s = KernelHarness.clockNow()
                        try await Curio.sleep(0.04)  // the deadline passes meanwhile
                        seen.append(KernelHarness.clockNow() - s == 40_000_000 ? "slept in full" : "sleep cut short")
                    }
                    seen.append("left the block")
                    try await Curio.sleep(10)
                    seen.append("slept again")
                }
            } catch {
                seen.append("timeout block: \(KernelHarness.kind(error))")
            }
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            return (seen, KernelHarness.clockNow() - t0)
        }
        #expect(r.0 == ["slept in full", "left the block", "timeout block: TaskTimeout", "timers 0"])
        #expect(r.1 == 40_000_000, "the sleep after the block ended at once")
    }

    @Test(.timeLimit(.minutes(1)))
    func disableCancellationNests() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let started = Event()
            let t = try await spawn {
                try await disableCancellation {
                    try await disableCancellation {
                        await started.set()
                        try await Curio.sleep(0.01)
                        log.add("inner done")
                    }
                    // Still inside the outer block: still held back.
                    try await Curio.sleep(0.01)
                    log.add("outer done")
                }
                do {
                    try await Curio.sleep(1000)
                } catch {
                    log.add("after: \(KernelHarness.kind(error))")
                }
            }
            try await started.wait()
            try await t.cancel()
            return log.entries
        }
        #expect(r == ["inner done", "outer done", "after: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func disableCancellationReturnsTheValueAndRethrows() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            seen.append("\(try await disableCancellation { 5 })")
            do {
                try await disableCancellation { throw Boom.boom }
            } catch {
                seen.append("\(error)")
            }
            // The block is left properly after a throw: a self-cancel is
            // delivered at once again.
            try await currentTask().cancel()
            do { try await Curio.sleep(0) } catch { seen.append(KernelHarness.kind(error)) }
            return seen
        }
        #expect(r == ["5", "Boom.boom", "TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func checkCancellationAndPendingCancellation() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            try await checkCancellation()  // nothing pending
            seen.append("pending: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
            try await currentTask().cancel()
            seen.append("pending: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
            seen.append("still: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
            try await disableCancellation {
                try await checkCancellation()  // held back in here
                seen.append("no throw while disabled")
            }
            do {
                try await checkCancellation()
                seen.append("no throw")
            } catch {
                seen.append("checkCancellation: \(KernelHarness.kind(error))")
            }
            // Delivered once: it is no longer pending.
            seen.append("pending: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
            try await Curio.sleep(0.001)
            seen.append("slept")
            return seen
        }
        #expect(r == ["pending: none", "pending: TaskCancelled", "still: TaskCancelled",
                      "no throw while disabled", "checkCancellation: TaskCancelled", "pending: none", "slept"])
    }

    @Test(.timeLimit(.minutes(1)))
    func checkCancellationDeliversAPassedDeadline() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAfter(0.01) {
                    try kernel.advanceClock(by: .milliseconds(20))  // runs past the deadline
                    try await checkCancellation()
                    seen.append("no throw")
                }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            return seen
        }
        #expect(r == ["TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func pendingCancellationReportsAPassedDeadlineWhileDisabled() async throws {
        // curio 1.6: inside disable_cancellation, check_cancellation()
        // returns the pending TaskTimeout once the deadline has passed.
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAfter(0.01) {
                    try await disableCancellation {
                        try await Curio.sleep(0.03)
                        seen.append("pending: \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
                    }
                    try await Curio.sleep(10)
                }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            return seen
        }
        #expect(r == ["pending: TaskTimeout", "TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledEventWaitLeavesTheWaiterListClean() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let evt = Event()
            let other = Event()
            var waiters: [CurioTask<Void>] = []
            for name in ["w1", "w2", "w3"] {
                waiters.append(try await spawn {
                    do {
                        try await evt.wait()
                        log.add("\(name) woke")
                    } catch is CancelledError {
                        log.add("\(name) cancelled")
                        // Now waiting on something else: a stale link in
                        // evt's list would wake it from there.
                        try await other.wait()
                        log.add("\(name) woke from the other event")
                    }
                })
            }
            try await Curio.sleep(0)  // all three wait now
            try await waiters[1].cancel(blocking: false)
            try await Curio.sleep(0)
            await evt.set()
            try await waiters[0].join()
            try await waiters[2].join()
            log.add("w2 state \(waiters[1].state)")
            await other.set()
            try await waiters[1].join()
            return log.entries
        }
        #expect(r == ["w2 cancelled", "w1 woke", "w3 woke", "w2 state EVENT_WAIT", "w2 woke from the other event"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimedOutEventWaitLeavesTheWaiterListClean() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            let evt = Event()
            let late = try await spawn { () -> String in
                try await Curio.sleep(0.02)
                return "late waiter: \(try await evt.wait(timeout: 5))"
            }
            seen.append("timed out: \(try await evt.wait(timeout: 0.01))")
            // A second waiter comes and is woken alone.
            try await Curio.sleep(0.03)
            await evt.set()
            seen.append(try await late.join() ?? "nil")
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            return seen
        }
        #expect(r == ["timed out: false", "late waiter: true", "timers 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledWaitWithATimeoutThrowsAndRemovesItsTimer() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [String] in
            var seen: [String] = []
            let evt = Event()
            let t = try await spawn { () -> String in
                do {
                    return "wait returned \(try await evt.wait(timeout: 100))"
                } catch {
                    return "wait threw \(KernelHarness.kind(error))"
                }
            }
            try await Curio.sleep(0)
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            try await t.cancel()
            seen.append(try await t.join() ?? "nil")
            seen.append("timers \(UInt32(kernel.statistics.pendingTimers))")
            return seen
        }
        #expect(r == ["timers 1", "wait threw TaskCancelled", "timers 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func theTimerOfACancelledSleepIsRemoved() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> [UInt32] in
            var counts: [UInt32] = [UInt32(kernel.statistics.pendingTimers)]
            var kids: [CurioTask<Void>] = []
            for _ in 0..<3 { kids.append(try await spawn { try await Curio.sleep(1000) }) }
            try await Curio.sleep(0)
            counts.append(UInt32(kernel.statistics.pendingTimers))
            try await kids[0].cancel()
            counts.append(UInt32(kernel.statistics.pendingTimers))
            for k in kids.dropFirst() { try await k.cancel() }
            counts.append(UInt32(kernel.statistics.pendingTimers))
            // A timeout block whose body was cancelled leaves no timer either.
            let t = try await spawn { try await timeoutAfter(100) { try await Curio.sleep(1000) } }
            try await Curio.sleep(0)
            counts.append(UInt32(kernel.statistics.pendingTimers))
            try await t.cancel()
            counts.append(UInt32(kernel.statistics.pendingTimers))
            return counts
        }
        #expect(r == [0, 3, 2, 0, 1, 0])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledJoinerIsTakenOffTheJoinQueue() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let gate = Event()
            let other = Event()
            let target = try await spawn { () -> Int in
                try await gate.wait()
                return 1
            }
            let joiner = try await spawn {
                do {
                    try await target.join()
                    log.add("joined")
                } catch is CancelledError {
                    log.add("join cancelled")
                    try await other.wait()
                    log.add("woke from the other event")
                }
            }
            try await Curio.sleep(0)
            try await joiner.cancel(blocking: false)
            try await Curio.sleep(0)
            await gate.set()
            try await target.join()
            try await Curio.sleep(0)
            log.add("joiner state \(joiner.state)")
            await other.set()
            try await joiner.join()
            return log.entries
        }
        #expect(r == ["join cancelled", "joiner state EVENT_WAIT", "woke from the other event"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aSecondCancelOfATaskThatCaughtTheFirstOnlyWaits() async throws {
        // Only the first cancel counts (curio 1.6): the second one does not
        // interrupt the task, it waits for the task to end.
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let caught = Event()
            let release = Event()
            let t = try await spawn {
                do {
                    try await Curio.sleep(1000)
                } catch is CancelledError {
                    log.add("first cancel caught")
                }
                await caught.set()
                do {
                    try await release.wait()
                    log.add("not interrupted")
                } catch is CancelledError {
                    log.add("second cancel caught")
                }
            }
            try await Curio.sleep(0)
            try await t.cancel(blocking: false)
            try await caught.wait()
            log.add("terminated \(t.terminated)")
            let second = try await spawn { try await t.cancel() }
            try await IOTest.waitBlocked(second, .taskJoin)
            await release.set()
            let b = try await second.join()
            log.add("second returned \(b!), terminated \(t.terminated)")
            return log.entries
        }
        #expect(r == ["first cancel caught", "terminated false", "not interrupted", "second returned false, terminated true"])
    }
}

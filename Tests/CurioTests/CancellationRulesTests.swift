// Curio 1.6's cancellation rules (issue 13, rules 1, 2, 4, 5): only the
// first cancel counts, cancelling drops the task's deadlines, partial
// progress survives nested timeout blocks, and a timeout never escapes
// the block it belongs to. Steps are ordered by events and by the states
// the kernel reports, never by sleeping.
import CCurioKernel
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct CancellationRulesTests {
    /// Rule 1: a second cancel() of a task that is cleaning up after the
    /// first does not interrupt the clean-up; it waits, and both return
    /// once the task has ended.
    @Test(.timeLimit(.minutes(1)))
    func onlyTheFirstCancelCounts() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let log = KernelHarness.Log()
            let inCleanup = Event()
            let finishCleanup = Event()
            let t = try await spawn {
                do {
                    try await Curio.sleep(1000)
                } catch {
                    log.add("cancelled: \(KernelHarness.kind(error))")
                    await inCleanup.set()
                    do {
                        try await finishCleanup.wait()
                        log.add("cleanup done")
                    } catch {
                        log.add("cleanup interrupted: \(KernelHarness.kind(error))")
                    }
                    throw error
                }
            }
            try await IOTest.waitBlocked(t, .timeSleep)
            let first = try await spawn { try await t.cancel() }
            try await inCleanup.wait()
            let second = try await spawn { try await t.cancel() }
            try await IOTest.waitBlocked(second, .taskJoin)
            log.add("second cancel waits; task alive: \(!t.terminated)")
            await finishCleanup.set()
            let a = try await first.join()
            let b = try await second.join()
            log.add("first returned \(a!), second \(b!), task ended: \(t.terminated)")
            return log.entries
        }
        #expect(r == ["cancelled: TaskCancelled", "second cancel waits; task alive: true", "cleanup done",
                      "first returned true, second false, task ended: true"])
    }

    /// Rule 2: once cancelled, the deadline of the timeout block the task
    /// is in does not fire into its clean-up.
    @Test(.timeLimit(.minutes(1)))
    func cancellingATaskDropsItsDeadlines() async throws {
        let r = try await KernelHarness.runVirtual { _ -> ([String], Bool, Bool) in
            let log = KernelHarness.Log()
            let t = try await spawn { () -> Int in
                try await timeoutAfter(0.01) {
                    // The cancellation is pending before the first blocking call.
                    try await currentTask().cancel()
                    do {
                        try await Curio.sleep(1000)
                    } catch {
                        log.add("sleep: \(KernelHarness.kind(error))")
                        // Sleeps well past the block's deadline.
                        do {
                            try await Curio.sleep(0.1)
                            log.add("cleanup slept")
                        } catch {
                            log.add("cleanup interrupted: \(KernelHarness.kind(error))")
                        }
                        throw error
                    }
                    return 1
                }
            }
            let v = try await t.join()
            return (log.entries, v == nil, t.cancelled)
        }
        #expect(r.0 == ["sleep: TaskCancelled", "cleanup slept"])
        #expect(r.1, "the task must end cancelled, not normally")
        #expect(r.2)
    }

    /// Rule 2 (pendingCancellation): once the cancellation has been
    /// delivered, a passed deadline of the block is not reported either.
    @Test(.timeLimit(.minutes(1)))
    func aCancelledTaskHasNoDeadlinePending() async throws {
        let r = try await KernelHarness.runVirtual { kernel -> String in
            try await timeoutAfter(0.001) { () -> String in
                try await currentTask().cancel()
                do { try await Curio.sleep(0) } catch {}  // the cancel, delivered and caught
                try kernel.advanceClock(by: .milliseconds(2))  // the block's deadline has passed
                let p = try await pendingCancellation()
                return p.map { KernelHarness.kind($0) } ?? "none"
            }
        }
        #expect(r == "none")
    }

    /// Rule 4: the byte count of an interrupted sendAll survives nested
    /// timeout blocks (inner TimeoutCancellationError, outer TaskTimeout).
    /// Virtual clock: the 0.2 s pass only once the send is stuck on a full
    /// buffer, never before its first bytes (on a loaded machine the real
    /// 0.2 s could pass before the send had begun).
    @Test(.timeLimit(.minutes(1)))
    func partialProgressSurvivesNestedTimeouts() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            let (a, b) = try await IOTest.tcpPair(receiveBuffer: 4096, sendBuffer: 4096)
            defer { a.close(); b.close() }
            let big = IOTest.pattern(8 << 20)
            var out: [String] = []
            do {
                try await timeoutAfter(0.2) {
                    try await timeoutAfter(10) {
                        try await timeoutAfter(20) { try await a.sendAll(big) }
                    }
                }
                out.append("sent everything")
            } catch let e as TaskTimeout {
                out.append("TaskTimeout bytesSent>0: \((e.bytesSent ?? 0) > 0)")
            }
            return out
        }
        #expect(r == ["TaskTimeout bytesSent>0: true"])
    }

    /// Rule 4: the conversion helpers keep the counts on every replacement.
    @Test(.timeLimit(.minutes(1)))
    func everyReplacementErrorCarriesTheCount() {
        var inner = TaskTimeout(clock: 1)
        inner.bytesSent = 7
        let asOuter = carryProgress(of: inner, to: TimeoutCancellationError(clock: 1))
        #expect((asOuter as? TimeoutCancellationError)?.bytesSent == 7)
        let back = carryProgress(of: asOuter, to: TaskTimeout(clock: 1))
        #expect((back as? TaskTimeout)?.bytesSent == 7)
        var read = TimeoutCancellationError(clock: 2)
        read.bytesRead = 3
        let escaped = carryProgress(of: read, to: UncaughtTimeoutError(clock: 2))
        #expect((escaped as? UncaughtTimeoutError)?.bytesRead == 3)
    }

    /// Rule 5: a timeout that fired for a block (on io_uring: while its
    /// recv was being cancelled, the data winning) is dropped when the block
    /// is left; it never reaches the next unrelated blocking call. The
    /// kernel's state after such a race is set up exactly.
    @Test(.timeLimit(.minutes(1)))
    func aTimeoutNeverEscapesItsBlock() async throws {
        let r = try await KernelHarness.runVirtual { _ -> [String] in
            var log: [String] = []
            let t = try await currentTask()
            let v = try await ignoreAfter(0) { () -> Int in
                // What timerFired leaves when the I/O completed first.
                t.deadlineDelivered = true
                t.pendingCancel = TaskTimeout(clock: Curio.clock())
                return 42
            }
            log.append("block returned \(v.map(String.init) ?? "nil")")
            do {
                try await Curio.sleep(0)
                try await Curio.sleep(0.001)
                log.append("later calls fine")
            } catch {
                log.append("later call got \(KernelHarness.kind(error))")
            }
            // An outer block's timeout stays pending for the outer block.
            let outer = try await ignoreAfter(0) { () -> String in
                _ = try await timeoutAfter(1000) { () -> Int in
                    t.deadlineDelivered = true
                    t.pendingCancel = TaskTimeout(clock: Curio.clock())
                    return 1
                }
                do {
                    try await Curio.sleep(0)
                    return "outer timeout lost"
                } catch {
                    log.append("outer got \(KernelHarness.kind(error))")
                    throw error
                }
            }
            log.append("outer returned \(outer ?? "nil")")
            return log
        }
        #expect(r == ["block returned 42", "later calls fine", "outer got TaskTimeout", "outer returned nil"])
    }

    /// Rule 5 on the real race, repeated: ignoreAfter around a recv whose
    /// data arrives as the deadline fires, then an unrelated blocking call.
    @Test(.timeLimit(.minutes(1)))
    func aRecvRacingItsDeadlineLeavesNothingPending() async throws {
        let r = try await IOTest.run { () -> Int in
            let (a, b) = try await IOTest.tcpPair()
            defer { a.close(); b.close() }
            var escaped = 0
            for _ in 0..<200 {
                let sender = try await spawn { try await a.sendAll([1]) }
                _ = try await ignoreAfter(0.000_001) { try await b.recv(1) }
                try await sender.join()
                do { try await Curio.sleep(0) } catch is TaskTimeout { escaped += 1 }
                // Drain whatever the block did not take.
                while IOTest.queued(b.fd) > 0 { _ = try await b.recv(16) }
            }
            return escaped
        }
        #expect(r == 0)
    }
}

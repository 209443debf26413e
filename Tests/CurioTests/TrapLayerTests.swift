// Unit tests of the trap layer (Core/Traps.swift, CurioTask.swift,
// Cancellation.swift) and the wait queues (Core/WaitQueue.swift): how a
// wait ends (the typed `Wake` a continuation resumes with, turned into a
// `WaitOutcome` or a thrown cancellation), the one `CancelHook` per wait
// and what running it undoes, the held cancellations of
// `holdingCancellation` / `blockUninterrupted`, the external waits of
// `blockExternally`, and deadlines (a wait's own, the task's). Steps are
// ordered by task states (a task suspended in a given state), never by
// sleeping; a deadline is only ever a lower bound. Kernel tasks never call
// #expect: they return what they saw and the test function checks it.
import CCurioKernel
import Glibc
import Testing

@testable import Curio

/// A wait queue the tasks of one kernel share. `WaitQueue` is kernel-thread
/// only and not Sendable; every task that touches this one runs on the
/// kernel of the test that made it.
private final class SharedQueue: @unchecked Sendable {
    let q = WaitQueue()
}

/// Spins (yielding to the kernel) until `task` is suspended in `state`.
private func trapWaitBlocked(_ task: AnyCurioTask, _ state: TaskState) async throws {
    try await IOTest.waitBlocked(task, state)
}

/// True when the task's cancel hook says it is linked into `queue`.
private func hooked(_ t: AnyCurioTask, into queue: WaitQueue) -> Bool {
    if case .queue(let q) = t.cancelHook { return q.toOpaque() == Unmanaged.passUnretained(queue).toOpaque() }
    return false
}

/// True when the task has no cancel hook (it is not waiting on anything).
private func unhooked(_ t: AnyCurioTask) -> Bool {
    if case .none = t.cancelHook { return true }
    return false
}

/// A call site for the traps the tests call directly.
private func here(_ line: UInt = #line) -> CallSite {
    CallSite(file: #filePath, line: line, function: #function)
}

/// The kernel clock in nanoseconds (what the traps' deadlines are on).
private func nowNS() -> Int64 { ck_now_ns() }

@Suite(.timeLimit(.minutes(1)))
struct TrapLayerTests {
    @Test(.timeLimit(.minutes(1)))
    func waitQueueIsFIFOAndRemovesACancelledWaiterFromTheMiddle() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let shared = SharedQueue()
            let q = shared.q
            let log = KernelHarness.Log()
            var tasks: [CurioTask<Void>] = []
            for i in 0..<3 {
                let t = try await spawn {
                    let me = try await currentTask()
                    do {
                        let r = try await kernel.block(me, .eventWait, on: shared.q, deadline: .max, site: here())
                        log.add("\(r) \(i)")
                    } catch {
                        log.add("\(KernelHarness.kind(error)) \(i)")
                    }
                }
                try await trapWaitBlocked(t, .eventWait)
                tasks.append(t)
            }
            var seen: [String] = []
            seen.append("count \(q.count), first is 0: \(q.first === tasks[0])")
            seen.append("all hooked: \(tasks.allSatisfy { hooked($0, into: q) })")
            // Cancelling the middle one runs its hook: it leaves the queue at
            // once and its neighbours are linked to each other.
            try await tasks[1].cancel()
            seen.append("count \(q.count), 1 unhooked: \(unhooked(tasks[1]))")
            seen.append("0<->2 linked: \(tasks[0].wqNext === tasks[2] && tasks[2].wqPrev === tasks[0])")
            seen.append("woke 0 first: \(kernel.wakeFirst(q) === tasks[0])")
            kernel.wakeAll(q)
            seen.append("empty: \(q.isEmpty && q.first == nil)")
            for t in tasks { try await t.join() }
            seen.append("unhooked: \(tasks.allSatisfy(unhooked))")
            return seen + log.entries
        }
        #expect(r == ["count 3, first is 0: true", "all hooked: true",
                      "count 2, 1 unhooked: true", "0<->2 linked: true", "woke 0 first: true",
                      "empty: true", "unhooked: true",
                      "TaskCancelled 1", "woken 0", "woken 2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func wakingWithNobodyWaitingReturnsNil() async throws {
        let r = try await KernelHarness.run { kernel -> (Bool, Int) in
            let q = WaitQueue()
            let none = kernel.wakeFirst(q) == nil
            kernel.wakeAll(q)
            return (none, q.count)
        }
        #expect(r.0 && r.1 == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func ownDeadlineGivesTimedOutAndUnlinks() async throws {
        let r = try await KernelHarness.run { kernel -> (WaitOutcome, Int, Bool, Bool, Bool) in
            let q = WaitQueue()
            let me = try await currentTask()
            let deadline = nowNS() + 1_000_000
            let r = try await kernel.block(me, .eventWait, on: q, deadline: deadline, site: here())
            // Timed out means the deadline was reached, not merely near.
            return (r, q.count, unhooked(me), me.timer == 0, nowNS() >= deadline)
        }
        #expect(r.0 == .timedOut)
        #expect(r.1 == 0)
        #expect(r.2 && r.3 && r.4)
    }

    @Test(.timeLimit(.minutes(1)))
    func aDeadlineAlreadyPastStillSuspendsAndTimesOut() async throws {
        // A deadline in the past is a zero timeout: the wait ends by its
        // timer (a wake-up of its own), not by throwing or by hanging.
        let r = try await KernelHarness.run { kernel -> (WaitOutcome, Int) in
            let q = WaitQueue()
            let me = try await currentTask()
            let before = me.cycles
            let r = try await kernel.block(me, .eventWait, on: q, deadline: nowNS() - 1, site: here())
            return (r, me.cycles - before)
        }
        #expect(r.0 == .timedOut)
        #expect(r.1 >= 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func wakeBeforeDeadlineIsWokenAndCancelsTheTimer() async throws {
        let r = try await KernelHarness.run { kernel -> (Bool, WaitOutcome, Bool) in
            let shared = SharedQueue()
            let waiter = try await spawn { () -> (WaitOutcome, Bool) in
                let me = try await currentTask()
                let r = try await kernel.block(me, .eventWait, on: shared.q, deadline: nowNS() + 60_000_000_000,
                                               site: here())
                return (r, me.timer == 0)
            }
            try await trapWaitBlocked(waiter, .eventWait)
            let armed = waiter.timer != 0
            kernel.wakeFirst(shared.q)
            let (outcome, disarmed) = try await waiter.join()!
            return (armed, outcome, disarmed)
        }
        #expect(r.0)
        #expect(r.1 == .woken)
        #expect(r.2)
    }

    @Test(.timeLimit(.minutes(1)))
    func taskDeadlineIsDueOnceAndNeverAfterCancel() async throws {
        let r = try await KernelHarness.run { _ -> [Bool] in
            let me = try await currentTask()
            var seen: [Bool] = []
            me.effectiveDeadline = 100
            seen.append(me.taskDeadlineDue(at: 99))
            seen.append(me.taskDeadlineDue(at: 100))
            me.deadlineDelivered = true
            seen.append(me.taskDeadlineDue(at: 200))
            me.deadlineDelivered = false
            me.cancelled = true
            seen.append(me.taskDeadlineDue(at: 200))
            me.cancelled = false
            me.effectiveDeadline = .max
            seen.append(me.taskDeadlineDueNow() != nil)
            return seen
        }
        #expect(r == [false, true, false, false, false])
    }

    @Test(.timeLimit(.minutes(1)))
    func syncDeadlineValidatesEveryOptionalTimeout() async throws {
        #expect(try syncDeadline(nil) == .max)
        for bad in [-1.0, .nan, .infinity, -.infinity] {
            #expect(performing: { _ = try syncDeadline(bad) }, throws: { ($0 as? CurioUsageError)?.kind == .invalidTimeout })
        }
        let before = nowNS()
        let d = try syncDeadline(0)
        #expect(d >= before && d <= nowNS())
        let later = try syncDeadline(1)
        #expect(later >= before + 1_000_000_000)
    }

    @Test(.timeLimit(.minutes(1)))
    func uninterruptedWaitHoldsTheCancellationForTheNextCall() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let shared = SharedQueue()
            let log = KernelHarness.Log()
            let t = try await spawn {
                let me = try await currentTask()
                await kernel.blockUninterrupted(me, .lockAcquire, on: shared.q, site: here())
                log.add("woken, cancel pending: \(me.pendingCancel != nil), held: \(me.cancelDisabled)")
                do {
                    try await Curio.sleep(0)
                    log.add("next call returned")
                } catch {
                    log.add("next call: \(KernelHarness.kind(error))")
                }
            }
            try await trapWaitBlocked(t, .lockAcquire)
            try await t.cancel(blocking: false)
            // Still in the queue: the hold kept the hook from running.
            log.add("still queued: \(shared.q.count == 1 && IOTest.isBlocked(t, .lockAcquire) && hooked(t, into: shared.q))")
            kernel.wakeFirst(shared.q)
            try await t.wait()
            return log.entries
        }
        #expect(r == ["still queued: true", "woken, cancel pending: true, held: 0", "next call: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func uninterruptedWaitOutlivesTheTaskDeadlineWhichTheNextCallDelivers() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let shared = SharedQueue()
            let log = KernelHarness.Log()
            let t = try await spawn {
                let me = try await currentTask()
                do {
                    try await timeoutAfter(0.001) {
                        await kernel.blockUninterrupted(me, .lockAcquire, on: shared.q, site: here())
                        log.add("woken")
                        try await Curio.sleep(0)
                        log.add("next call returned")
                    }
                } catch {
                    log.add("timeoutAfter: \(KernelHarness.kind(error))")
                }
            }
            try await trapWaitBlocked(t, .lockAcquire)
            let deadline = t.effectiveDeadline
            // Past the task's deadline (a lower bound, whatever the machine's
            // speed): the held wait must still be waiting.
            try await IOTest.waitUntil("the task deadline passes") { nowNS() > deadline }
            // A timer of ours, later than that deadline: the timer heap runs
            // in deadline order, so a timer wrongly armed for the held wait
            // would have fired before this sleep ends.
            try await Curio.sleep(0.001)
            log.add("still queued: \(shared.q.count == 1 && IOTest.isBlocked(t, .lockAcquire))")
            kernel.wakeFirst(shared.q)
            try await t.wait()
            return log.entries
        }
        #expect(r == ["still queued: true", "woken", "timeoutAfter: TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aHeldWaitWithItsOwnDeadlineTimesOutByItNotByTheTaskDeadline() async throws {
        // The task deadline passes first while cancellation is held: it does
        // not end the wait, the wait's own deadline does (timedOut); the task
        // deadline goes to the next blocking call outside the hold.
        let r = try await KernelHarness.run { kernel -> [String] in
            let q = WaitQueue()
            let me = try await currentTask()
            var seen: [String] = []
            do {
                try await timeoutAfter(0.001) {
                    let own = nowNS() + 30_000_000
                    let r = try await kernel.holdingCancellation(me) {
                        try await kernel.block(me, .eventWait, on: q, deadline: own, site: here())
                    }
                    seen.append("\(r), own deadline reached: \(nowNS() >= own)")
                    try await Curio.sleep(0)
                    seen.append("next call returned")
                }
            } catch {
                seen.append(KernelHarness.kind(error))
            }
            return seen
        }
        #expect(r == ["timedOut, own deadline reached: true", "TaskTimeout"])
    }

    @Test(.timeLimit(.minutes(1)))
    func heldCancellationNestsAndIsDeliveredAtTheFirstCallOutsideEveryHold() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let shared = SharedQueue()
            let log = KernelHarness.Log()
            let t = try await spawn {
                let me = try await currentTask()
                do {
                    try await disableCancellation {
                        try await disableCancellation {
                            _ = try await kernel.block(me, .eventWait, on: shared.q, deadline: .max, site: here())
                            try await Curio.sleep(0)
                            log.add("inner: pending \(try await pendingCancellation().map(KernelHarness.kind) ?? "none")")
                        }
                        try await Curio.sleep(0)
                        try await checkCancellation()
                        log.add("outer: still held")
                    }
                    log.add("outside: pending \(me.pendingCancel != nil)")
                    try await Curio.sleep(0)
                    log.add("outside: returned")
                } catch {
                    log.add("outside: \(KernelHarness.kind(error))")
                }
            }
            try await trapWaitBlocked(t, .eventWait)
            try await t.cancel(blocking: false)
            log.add("still queued: \(shared.q.count == 1 && hooked(t, into: shared.q))")
            kernel.wakeFirst(shared.q)
            try await t.wait()
            return log.entries
        }
        #expect(r == ["still queued: true", "inner: pending TaskCancelled", "outer: still held",
                      "outside: pending true", "outside: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func externalWaitIgnoresSpuriousWakeUpsAndIsCounted() async throws {
        let r = try await KernelHarness.run { kernel -> (Int, Int, WaitOutcome, Int) in
            let ready = SyncBox(false)
            let wakes = SyncBox(0)
            let t = try await spawn { () -> WaitOutcome in
                let me = try await currentTask()
                return try await kernel.blockExternally(me, .cpuWait, on: nil, deadline: .max, site: here()) {
                    wakes.value += 1
                    return ready.value
                }
            }
            try await trapWaitBlocked(t, .cpuWait)
            let counted = kernel.externalWaits
            kernel.resume(t, .normal)          // spurious: not ready yet
            try await trapWaitBlocked(t, .cpuWait)
            ready.value = true
            kernel.resume(t, .normal)
            let outcome = try await t.join()!
            return (counted, wakes.value, outcome, kernel.externalWaits)
        }
        #expect(r.0 == 1)
        #expect(r.1 == 2)
        #expect(r.2 == .woken)
        #expect(r.3 == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func externalWaitEndsAtItsDeadlineAndWhenCancelled() async throws {
        let r = try await KernelHarness.run { kernel -> (WaitOutcome, Int, String, Int) in
            let me = try await currentTask()
            // Never done: only the deadline ends it (without asking done()).
            let asked = SyncBox(0)
            let timedOut = try await kernel.blockExternally(me, .cpuWait, on: nil, deadline: nowNS() + 1_000_000,
                                                            site: here()) {
                asked.value += 1
                return false
            }
            let t = try await spawn { () -> String in
                let me = try await currentTask()
                do {
                    _ = try await kernel.blockExternally(me, .cpuWait, on: nil, deadline: .max, site: here()) { false }
                    return "returned"
                } catch {
                    return KernelHarness.kind(error)
                }
            }
            try await trapWaitBlocked(t, .cpuWait)
            try await t.cancel()
            return (timedOut, asked.value, try await t.join()!, kernel.externalWaits)
        }
        #expect(r.0 == .timedOut)
        #expect(r.1 == 0)
        #expect(r.2 == "TaskCancelled")
        #expect(r.3 == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelledReceiveRunsTheIOHookAndKeepsNoHandle() async throws {
        let r = try await KernelHarness.run { _ -> (Bool, String, UInt64, Bool, Int) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let t = try await spawn { () -> String in
                do {
                    _ = try await server.recv(100)
                    return "received"
                } catch {
                    return KernelHarness.kind(error)
                }
            }
            try await trapWaitBlocked(t, .readWait)
            let inFlight = t.ioHandle != 0
            try await t.cancel()
            // The socket still works: the cancelled request took no byte.
            _ = try await client.send([7])
            let got = try await server.recv(1)
            return (inFlight, try await t.join()!, t.ioHandle, unhooked(t), got.count)
        }
        #expect(r.0)
        #expect(r.1 == "TaskCancelled")
        #expect(r.2 == 0)
        #expect(r.3)
        #expect(r.4 == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func anIORequestEndsAtItsOwnDeadlineOrByTheTaskDeadlineAndTakesNoByte() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let me = try await currentTask()
            var seen: [String] = []
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
            defer { buf.deallocate() }
            // Nothing to read: the request's own deadline ends it with
            // -ETIMEDOUT (the `.ioTimedOut` hook), after the deadline.
            let own = nowNS() + 1_000_000
            let args = IORequest.receive(server.fd, into: buf, count: 16)
            let n = try await kernel.performIO(me, args, .readWait, deadline: own, site: here())
            seen.append("own deadline: \(n == -Int(ETIMEDOUT)), reached \(nowNS() >= own), handle \(me.ioHandle)")
            // The task's deadline ends it by a cancellation (`.ioCancelled`).
            do {
                _ = try await timeoutAfter(0.001) { try await server.recv(16) }
                seen.append("task deadline: received")
            } catch {
                seen.append("task deadline: \(KernelHarness.kind(error)), handle \(me.ioHandle)")
            }
            // Neither request took anything: the next byte is still there.
            _ = try await client.send([42])
            seen.append("then \(try await server.recv(16))")
            return seen
        }
        #expect(r == ["own deadline: true, reached true, handle 0", "task deadline: TaskTimeout, handle 0", "then [42]"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aSendWithRoomCompletesWithoutSuspending() async throws {
        let r = try await KernelHarness.run { _ -> (Int, Int, [UInt8]) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let me = try await currentTask()
            let before = me.cycles
            let n = try await client.send([1, 2, 3])
            let after = me.cycles
            let got = try await server.recv(3)
            return (n, after - before, got)
        }
        #expect(r.0 == 3)
        #expect(r.1 == 0)   // never scheduled again: it did not suspend
        #expect(r.2 == [1, 2, 3])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledSenderThrowsBeforeSendingOnTheFastPath() async throws {
        let r = try await KernelHarness.run { _ -> (String, Int) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let me = try await currentTask()
            try await me.cancel(blocking: false)
            var kind = "sent"
            do {
                _ = try await client.send([9])
            } catch {
                kind = KernelHarness.kind(error)
            }
            return (kind, IOTest.queued(server.fd))
        }
        #expect(r.0 == "TaskCancelled")
        #expect(r.1 == 0)
    }
}

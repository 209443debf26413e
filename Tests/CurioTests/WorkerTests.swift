// Worker threads: runCPUBound / runInThread return the work's value and
// rethrow its errors; the waiting task shows CPU_WAIT / IO_WAIT; a cancelled
// call returns at once while the work finishes on its own and its late
// result goes to onCancel; many concurrent calls complete; the kernel stays
// responsive while workers compute; outside a kernel the calls are a
// CurioUsageError.
//
// Work that must be held on its thread waits on a UniversalEvent (a plain
// blocking wait, bounded) so the tests order things by events, not sleeps.
// The CPU pool has one thread per core (two on small machines) and is shared
// with every other test: nothing here holds a worker for long.
import Dispatch
import Glibc
import Synchronization
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

@Suite(.serialized, .timeLimit(.minutes(1)))
struct WorkerTests {
    @Test(.timeLimit(.minutes(1)))
    func returnValuesAndRethrowErrors() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append("cpu \(try await runCPUBound { 6 * 7 })")
            seen.append("thread \(try await runInThread { "in a thread" })")
            let onKernel = Kernel.current != nil
            let cpuThreadHasKernel = try await runCPUBound { Kernel.current != nil }
            seen.append("kernel thread \(onKernel) worker \(cpuThreadHasKernel)")
            do {
                _ = try await runCPUBound { () throws -> Int in throw Boom.boom }
                seen.append("cpu no error")
            } catch let e as Boom {
                seen.append("cpu \(e)")
            }
            do {
                _ = try await runInThread { () throws -> String in throw Boom.other }
                seen.append("thread no error")
            } catch let e as Boom {
                seen.append("thread \(e)")
            }
            // The task goes on normally after a failed call.
            seen.append("after \(try await runInThread { 1 } + (try await runCPUBound { 2 }))")
            return seen
        }
        #expect(r == ["cpu 42", "thread in a thread", "kernel thread true worker false",
                      "cpu Boom.boom", "thread Boom.other", "after 3"])
    }

    @Test(.timeLimit(.minutes(1)))
    func waitingTaskShowsCPUWaitAndIOWait() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            for cpu in [true, false] {
                let started = UniversalEvent()
                let release = UniversalEvent()
                let work: @Sendable () throws -> Bool = {
                    started.set()
                    return try release.blockingWait(timeout: 20)
                }
                let t = try await spawn(name: cpu ? "cruncher" : "blocker") {
                    cpu ? try await runCPUBound(work) : try await runInThread(work)
                }
                try await timeoutAfter(10) { try await started.wait() }
                let waiting = try await BridgeTest.poll { t.state == (cpu ? .cpuWait : .ioWait) }
                seen.append("\(t.state) \(waiting) \(t.name)")
                release.set()
                seen.append("\(try await t.join() ?? false) \(t.state)")
            }
            return seen
        }
        #expect(r == ["CPU_WAIT true cruncher", "true TERMINATED", "IO_WAIT true blocker", "true TERMINATED"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelledCallReturnsAtOnceAndTheLateResultGoesToOnCancel() async throws {
        struct Seen: Sendable {
            var stateBefore = ""
            var cancelSeconds = 0.0
            var finishedAtCancel = true
            var joined: Int?? = nil
            var cancelled = false
            var late: Int?
        }
        let r = try await KernelHarness.run { _ -> Seen in
            var seen = Seen()
            let started = UniversalEvent()
            let release = UniversalEvent()
            let finished = Atomic<Bool>(false)
            let late = UniversalQueue<Result<Int, any Error>>()
            let t = try await spawn {
                try await runCPUBound(onCancel: { late.put($0) }) { () throws -> Int in
                    started.set()
                    _ = try release.blockingWait(timeout: 20)
                    finished.store(true, ordering: .releasing)
                    return 99
                }
            }
            try await timeoutAfter(10) { try await started.wait() }
            seen.stateBefore = t.state.description
            let t0 = KernelHarness.monotonicNow()
            try await t.cancel()
            seen.cancelSeconds = KernelHarness.monotonicNow() - t0
            seen.finishedAtCancel = finished.load(ordering: .acquiring)
            seen.joined = try await t.join()
            seen.cancelled = t.cancelled
            // Only now may the work end; its result arrives in onCancel.
            release.set()
            seen.late = try await timeoutAfter(10) { try await late.get() }.get()
            return seen
        }
        #expect(r.stateBefore == "CPU_WAIT")
        #expect(r.cancelSeconds < 1, "cancel took \(r.cancelSeconds) s")
        #expect(!r.finishedAtCancel, "the cancel waited for the work")
        #expect(r.joined != nil && r.joined! == nil, "join gave \(String(describing: r.joined))")
        #expect(r.cancelled)
        #expect(r.late == 99)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelledCallEndsLongBeforeTheWork() async throws {
        // Measured: the work spins 1.5 s; the caller is gone long before.
        let r = try await KernelHarness.run { _ -> (Double, Double, String) in
            let started = UniversalEvent()
            let late = UniversalQueue<Result<Double, any Error>>()
            let t = try await spawn {
                try await runInThread(onCancel: { late.put($0) }) { () -> Double in
                    started.set()
                    KernelHarness.spin(1.5)
                    return KernelHarness.monotonicNow()
                }
            }
            try await timeoutAfter(10) { try await started.wait() }
            try await t.cancel()
            let cancelEnded = KernelHarness.monotonicNow()
            let outcome = try await timeoutAfter(10) { try await late.get() }
            let workEnded = try outcome.get()
            return (cancelEnded, workEnded, t.state.description)
        }
        #expect(r.1 - r.0 > 1.0, "the task ended only \(r.1 - r.0) s before the work")
        #expect(r.2 == "TERMINATED")
    }

    @Test(.timeLimit(.minutes(1)))
    func onCancelGetsTheErrorOfWorkThatFailsAfterTheCancel() async throws {
        let r = try await KernelHarness.run { _ -> String in
            let started = UniversalEvent()
            let release = UniversalEvent()
            let late = UniversalQueue<Result<Int, any Error>>()
            let t = try await spawn {
                try await runCPUBound(onCancel: { late.put($0) }) { () throws -> Int in
                    started.set()
                    _ = try release.blockingWait(timeout: 20)
                    throw Boom.other
                }
            }
            try await timeoutAfter(10) { try await started.wait() }
            try await t.cancel()
            release.set()
            switch try await timeoutAfter(10, { try await late.get() }) {
            case .success(let v): return "success \(v)"
            case .failure(let e): return "failure \(e)"
            }
        }
        #expect(r == "failure Boom.other")
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelledWithoutOnCancelDropsTheResultAndTheWorkStillEnds() async throws {
        let workEnded = UniversalEvent()
        let r = try await KernelHarness.run { _ -> (Bool, Bool) in
            let started = UniversalEvent()
            let release = UniversalEvent()
            let t = try await spawn {
                try await runCPUBound { () throws -> [Int] in
                    started.set()
                    _ = try release.blockingWait(timeout: 20)
                    workEnded.set()
                    return [1, 2, 3]
                }
            }
            try await timeoutAfter(10) { try await started.wait() }
            try await t.cancel()
            release.set()
            // The worker posts its dropped result to this kernel; keep it
            // running until then.
            try await timeoutAfter(10) { try await workEnded.wait() }
            try await Curio.sleep(0.01)
            return (t.cancelled, try await t.join() == nil)
        }
        #expect(r.0 && r.1)
        #expect(workEnded.isSet)
    }

    @Test(.timeLimit(.minutes(1)))
    func aTimeoutAroundTheCallReturnsAtOnce() async throws {
        let r = try await KernelHarness.run { _ -> (String, Double) in
            let release = UniversalEvent()
            let done = UniversalEvent()
            let t0 = KernelHarness.monotonicNow()
            var what = "no timeout"
            do {
                _ = try await timeoutAfter(0.05) {
                    try await runCPUBound(onCancel: { _ in done.set() }) { () throws -> Bool in
                        try release.blockingWait(timeout: 20)
                    }
                }
            } catch is TaskTimeout {
                what = "TaskTimeout"
            }
            let took = KernelHarness.monotonicNow() - t0
            release.set()
            try await timeoutAfter(10) { try await done.wait() }
            return (what, took)
        }
        #expect(r.0 == "TaskTimeout")
        #expect(r.1 < 1, "took \(r.1) s")
    }

    @Test(.timeLimit(.minutes(1)))
    func aPendingCancellationIsDeliveredBeforeTheWorkStarts() async throws {
        let ran = Atomic<Int>(0)
        let r = try await KernelHarness.run { _ -> (String, Bool) in
            let gate = Event()
            let t = try await spawn { () -> String in
                _ = try await disableCancellation { try await gate.wait() }
                do {
                    _ = try await runCPUBound { ran.add(1, ordering: .relaxed) }
                    return "work ran"
                } catch is CancelledError {
                    return "cancelled"
                }
            }
            try await Curio.sleep(0)
            try await t.cancel(blocking: false)
            await gate.set()
            return (try await t.join() ?? "nil", t.terminated)
        }
        #expect(r.0 == "cancelled")
        #expect(r.1)
        #expect(ran.load(ordering: .relaxed) == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func manyConcurrentCallsComplete() async throws {
        // Two kernels at once, each with 300 CPU calls and 100 thread calls
        // in flight together.
        @Sendable func crowd(_ base: Int) async throws -> (Int, Int) {
            try await KernelHarness.run(limit: 45) { _ -> (Int, Int) in
                var tasks: [CurioTask<Int>] = []
                for i in 0..<300 {
                    tasks.append(try await spawn { try await runCPUBound { (base + i) * 2 } })
                }
                for i in 0..<100 {
                    tasks.append(try await spawn {
                        try await runInThread { () -> Int in
                            usleep(1000)
                            return base + 300 + i
                        }
                    })
                }
                var sum = 0
                for t in tasks { sum += try await t.join() ?? -1_000_000 }
                let expected = (0..<300).map { (base + $0) * 2 }.reduce(0, +)
                    + (0..<100).map { base + 300 + $0 }.reduce(0, +)
                return (sum, expected)
            }
        }
        // Results posted by many worker threads at once must wake the kernel.
        async let a = crowd(0)
        async let b = crowd(10_000)
        let (ra, rb) = try await (a, b)
        #expect(ra.0 == ra.1)
        #expect(rb.0 == rb.1)
    }

    /// While a worker computes, the kernel keeps running its tasks: the
    /// work spins until the kernel's tasks have done 20 timer ticks and 100
    /// queue round trips, which they can only do if the kernel is not
    /// waiting for the worker. No clock decides the outcome: a stalled
    /// kernel leaves the work spinning to its 20 s bound.
    @Test(.timeLimit(.minutes(1)))
    func kernelStaysResponsiveWhileWorkersCompute() async throws {
        let r = try await KernelHarness.run { _ -> (Int, Int, Bool) in
            let released = Atomic<Bool>(false)
            let ticker = try await spawn { () -> Int in
                for _ in 0..<20 { try await Curio.sleep(0.001) }
                return 20
            }
            // Two tasks passing a baton through a queue meanwhile.
            let q = Curio.Queue<Int>()
            let pinger = try await spawn { () -> Int in
                for n in 0..<100 {
                    try await q.put(n)
                    try await Curio.sleep(0)
                }
                try await q.put(-1)
                return 100
            }
            let ponger = try await spawn { () -> Int in
                var got = 0
                while try await q.get() >= 0 { got += 1 }
                return got
            }
            let finisher = try await spawn {
                _ = try await ticker.join()
                _ = try await pinger.join()
                released.store(true, ordering: .releasing)
            }
            let unblocked = try await runCPUBound { () -> Bool in
                let end = KernelHarness.monotonicNow() + 20
                while !released.load(ordering: .acquiring) && KernelHarness.monotonicNow() < end {}
                return released.load(ordering: .acquiring)
            }
            try await finisher.join()
            return (try await ticker.join() ?? 0, try await ponger.join() ?? 0, unblocked)
        }
        #expect(r.2, "the kernel's tasks did not finish while the worker computed")
        #expect(r.0 == 20)
        #expect(r.1 == 100)
    }

    @Test(.timeLimit(.minutes(1)))
    func outsideAKernelIsAUsageError() async throws {
        await expectSyncUsageError(.notInKernel) { _ = try await runCPUBound { 1 } }
        await expectSyncUsageError(.notInKernel) { _ = try await runInThread { 1 } }
        let detached = await Task.detached { () -> String in
            do {
                _ = try await runCPUBound { 1 }
                return "no error"
            } catch let e as CurioUsageError {
                return "\(e.kind) \(e.message.contains("Curio kernel"))"
            } catch {
                return "\(error)"
            }
        }.value
        #expect(detached == "notInKernel true")
    }

    // A pool's idle threads end after its idle time, so a program that
    // stopped using it keeps none; work submitted afterwards starts a new
    // one. Ordered by the exit hook, not by time.
    @Test(.timeLimit(.minutes(1)))
    func idleWorkerThreadsEnd() async throws {
        let exits = DispatchSemaphore(value: 0)
        let pool = WorkerPool(limit: 2, name: "curio-test", idleNanoseconds: 20_000_000,
                              onIdleExit: { exits.signal() })
        for round in 0..<2 {
            let done = DispatchSemaphore(value: 0)
            let ran = Atomic<Int>(0)
            for _ in 0..<2 { pool.submit { ran.add(1, ordering: .relaxed); done.signal() } }
            #expect(done.wait(timeout: .now() + 20) == .success && done.wait(timeout: .now() + 20) == .success)
            #expect(ran.load(ordering: .relaxed) == 2, "round \(round)")
            // Every thread the round started ends once it has idled (each
            // leaves the count before it signals).
            while pool.threadCount > 0 {
                guard exits.wait(timeout: .now() + 20) == .success else { break }
            }
            #expect(pool.threadCount == 0, "round \(round)")
        }
    }
}

// Tasks: spawn/newTask, join (value, nil after an uncaught cancel, the value
// of a task that caught it, TaskError, TaskTimeout), wait, cancel, self-
// cancel, currentTask, ids and names, states, cycles, flags, result, Swift
// cancellation inside a cancelled task, misuse across kernels and outside
// any kernel, and the stderr report of failures nobody joined.
import CCurioKernel
import Glibc
import Synchronization
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

// Functions whose names the tasks get (a task is named after the function
// in which it first blocks).
private func kid() async throws {
    try await Curio.sleep(1000)
}

private func sleeper(_ started: Event) async throws {
    await started.set()
    try await Curio.sleep(1000)
}

private func countdown(_ n: Int) async throws -> Int {
    var n = n
    while n > 0 {
        try await Curio.sleep(0)
        n -= 1
    }
    return n
}

private func failingKid() async throws {
    try await Curio.sleep(0.001)
    throw Boom.other
}

private func joinedFailure() async throws {
    try await Curio.sleep(0.001)
    throw Boom.boom
}

private func cancelledKid() async throws {
    try await Curio.sleep(1000)
}

extension KernelHarness {
    /// Failures nobody joins are reported on stderr with the task's name;
    /// failures that were joined and uncaught cancellations are not.
    static func scenarioUnjoinedErrors() throws {
        let kernel = Kernel()
        try kernel.run {
            _ = try await spawn(name: "doomed") { () -> Int in throw Boom.boom }
            _ = try await spawn { try await failingKid() }
            let joined = try await spawn { try await joinedFailure() }
            _ = try? await joined.join()
            let c = try await spawn { try await cancelledKid() }
            try await Curio.sleep(0)
            try await c.cancel()
            try await Curio.sleep(0.01)
        }
        try kernel.shutdown()
        childSay("ran")
    }
}

@Suite(.timeLimit(.minutes(1)))
struct TaskTests {
    @Test(.timeLimit(.minutes(1)))
    func spawnAndNewTask() async throws {
        let r = try await KernelHarness.run { _ -> [Int] in
            let me = try await currentTask()
            let a = try await spawn { () -> Int in
                try await Curio.sleep(0.001)
                return 10
            }
            let b = try await newTask { 20 }
            let c = try await newTask(daemon: true, name: "c") { 30 }
            return [me.id, a.id, b.id, c.id, a.parentID ?? -1, b.parentID ?? -1,
                    try await a.join()!, try await b.join()!, try await c.join()!]
        }
        #expect(r == [1, 2, 3, 4, 1, 1, 10, 20, 30])
    }

    @Test(.timeLimit(.minutes(1)))
    func joinReturnsTheValue() async throws {
        let r = try await KernelHarness.run { _ -> [String?] in
            let t = try await spawn { () -> String in
                try await Curio.sleep(0.002)
                return "built"
            }
            let first = try await t.join()
            let again = try await t.join()  // joining an ended task returns at once
            let void = try await spawn { try await Curio.sleep(0) }
            let v: Void? = try await void.join()
            return [first, again, v == nil ? "nil" : "()"]
        }
        #expect(r == ["built", "built", "()"])
    }

    /// A task's value lives in storage of its own (CurioTask.storedValue):
    /// it is released exactly once, with the last handle, whatever its size.
    @Test(.timeLimit(.minutes(1)))
    func resultValuesOfEverySizeAreKeptAndFreedWithTheHandle() async throws {
        let freed = Atomic<Int>(0)
        final class Tracked: Sendable {
            let freed: @Sendable () -> Void
            init(_ freed: @escaping @Sendable () -> Void) { self.freed = freed }
            deinit { freed() }
        }
        struct Large: Sendable, Equatable { var a = 1, b = 2, c = 3, d = 4, e = 5, f = 6 }
        struct Empty: Sendable {}
        let r = try await KernelHarness.run { _ -> (Bool, Large?, Bool, Int, Bool) in
            let onFree: @Sendable () -> Void = { freed.add(1, ordering: .relaxed) }
            var object: CurioTask<Tracked>? = try await spawn { Tracked(onFree) }
            let first = try await object!.join()
            let second = try await object!.join()
            let same = first != nil && first === second
            let large = try await spawn { Large() }.join()
            let empty = try await spawn { Empty() }.join()
            let failed = try await spawn { () -> Tracked in throw KernelHarness.Boom.boom }
            var failedThrew = false
            do { _ = try await failed.join() } catch is TaskError { failedThrew = true }
            let whileHeld = freed.load(ordering: .relaxed)
            object = nil
            _ = first
            _ = second
            return (same, large, empty != nil, whileHeld, failedThrew)
        }
        #expect(r.0 && r.1 == Large() && r.2 && r.4)
        #expect(r.3 == 0, "the value was freed while a handle still held it")
        #expect(freed.load(ordering: .relaxed) == 1, "the value must be freed exactly once, with its last handle")
    }

    @Test(.timeLimit(.minutes(1)))
    func joinReturnsNilWhenEndedByAnUncaughtCancel() async throws {
        let r = try await KernelHarness.run { _ -> (Int??, Bool, Bool, Bool) in
            let t = try await spawn { () -> Int in
                try await kid()
                return 1
            }
            try await Curio.sleep(0)
            let wasCancelled = try await t.cancel()
            return (try await t.join(), wasCancelled, t.cancelled, t.terminated)
        }
        #expect(r.0 != nil && r.0! == nil, "join returned \(String(describing: r.0))")
        #expect(r.1)
        #expect(r.2)
        #expect(r.3)
    }

    @Test(.timeLimit(.minutes(1)))
    func joinOfATaskThatCaughtTheCancelGivesItsValue() async throws {
        let r = try await KernelHarness.run { _ -> Int? in
            let t = try await spawn { () -> Int in
                do {
                    try await kid()
                    return 0
                } catch is CancelledError {
                    return 42
                }
            }
            try await Curio.sleep(0)
            try await t.cancel()
            return try await t.join()
        }
        #expect(r == 42)
    }

    @Test(.timeLimit(.minutes(1)))
    func joinThrowsTaskErrorWithTheCause() async throws {
        let r = try await KernelHarness.run { _ -> (Boom?, Int, String, Int, String) in
            let t = try await spawn(name: "builder") { () -> Int in
                try await Curio.sleep(0.001)
                throw Boom.boom
            }
            do {
                _ = try await t.join()
                return (nil, 0, "", t.id, "joined")
            } catch let e as TaskError {
                // A second join throws the same again.
                var second = "no error"
                do { _ = try await t.join() } catch let e2 as TaskError { second = "\(e2.cause)" }
                return (e.cause as? Boom, e.taskID, e.taskName, t.id, second)
            }
        }
        #expect(r.0 == .boom)
        #expect(r.1 == r.3)
        #expect(r.2 == "builder")
        #expect(r.4 == "Boom.boom")
    }

    @Test(.timeLimit(.minutes(1)))
    func everyJoinerGetsTheValue() async throws {
        let r = try await KernelHarness.run { _ -> [Int] in
            let gate = Event()
            let t = try await spawn { () -> Int in
                try await gate.wait()
                return 6
            }
            var joiners: [CurioTask<Int>] = []
            for i in 1...3 {
                joiners.append(try await spawn { try await t.join()! * i })
            }
            try await Curio.sleep(0)
            await gate.set()
            var values: [Int] = []
            for j in joiners { values.append(try await j.join()!) }
            return values
        }
        #expect(r == [6, 12, 18])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledTaskThatThrowsSomethingElseFailsWithIt() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let t = try await spawn { () -> Int in
                do {
                    try await kid()
                } catch is CancelledError {
                    throw Boom.other  // the cleanup itself fails
                }
                return 0
            }
            try await Curio.sleep(0)
            try await t.cancel()
            do { _ = try await t.join() } catch let e as TaskError { seen.append("TaskError: \(e.cause)") }
            // A TaskTimeout the task did not catch, from its own join(timeout:),
            // is a failure too: it was not cancelled.
            let u = try await spawn { () -> Int in
                let other = try await spawn { try await kid() }  // the shutdown ends it
                try await other.join(timeout: 0.001)
                return 1
            }
            do {
                _ = try await u.join()
            } catch let e as TaskError {
                seen.append("TaskError: \(KernelHarness.kind(e.cause)) cancelled=\(u.cancelled)")
            }
            return seen
        }
        #expect(r == ["TaskError: Boom.other", "TaskError: TaskTimeout cancelled=false"])
    }

    @Test(.timeLimit(.minutes(1)))
    func joinWithTimeoutThrowsTaskTimeout() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let t = try await spawn { () -> Int in
                try await kid()
                return 1
            }
            let t0 = Curio.clock()
            do {
                try await t.join(timeout: 0.02)
                seen.append("joined")
            } catch let e as TaskTimeout {
                seen.append("TaskTimeout")
                seen.append(e.clock >= t0 + 0.02 ? "clock after deadline" : "clock \(e.clock - t0)")
            }
            // The seed's spelling: `catch is TimeoutError`.
            do {
                try await t.join(timeout: 0.01)
            } catch is TimeoutError {
                seen.append("TimeoutError")
            }
            do {
                try await t.join(timeout: 0)
            } catch is CancelledError {
                seen.append("CancelledError")  // TaskTimeout is also a CancelledError
            }
            seen.append(t.terminated ? "kid ended" : "kid still running")
            try await t.cancel()
            // A join that does not time out.
            let quick = try await spawn { () -> Int in
                try await Curio.sleep(0.001)
                return 5
            }
            seen.append("\(try await quick.join(timeout: 10) ?? -1)")
            seen.append("timers \(UInt32(Kernel.current!.statistics.pendingTimers))")
            return seen
        }
        #expect(r == ["TaskTimeout", "clock after deadline", "TimeoutError", "CancelledError",
                      "kid still running", "5", "timers 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func waitReturnsWithoutTheTasksError() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let t = try await spawn { () -> Int in
                try await Curio.sleep(0.001)
                throw Boom.boom
            }
            try await t.wait()
            seen.append("waited terminated=\(t.terminated)")
            try await t.wait()  // an ended task: at once
            do { _ = try await t.join() } catch let e as TaskError { seen.append("join: \(e.cause)") }
            let c = try await spawn { try await kid() }
            try await Curio.sleep(0)
            try await c.cancel(blocking: false)
            try await c.wait()
            seen.append("cancelled task waited terminated=\(c.terminated)")
            return seen
        }
        #expect(r == ["waited terminated=true", "join: Boom.boom", "cancelled task waited terminated=true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelReturnsAfterTheTaskEndedAndCleanedUp() async throws {
        let r = try await KernelHarness.run { _ -> ([String], Bool, Bool) in
            let log = KernelHarness.Log()
            let t = try await spawn {
                do {
                    try await kid()
                } catch is CancelledError {
                    log.add("kid caught cancel")
                    try await Curio.sleep(0.005)  // cleanup that blocks
                    log.add("kid saved work")
                }
            }
            try await Curio.sleep(0)
            let result = try await t.cancel()
            log.add("cancel returned")
            return (log.entries, result, t.terminated)
        }
        #expect(r.0 == ["kid caught cancel", "kid saved work", "cancel returned"])
        #expect(r.1)
        #expect(r.2)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelWithoutBlockingReturnsAtOnce() async throws {
        let r = try await KernelHarness.run { _ -> ([String], Bool) in
            let log = KernelHarness.Log()
            let t = try await spawn {
                do {
                    try await kid()
                } catch is CancelledError {
                    log.add("kid caught cancel")
                    try await Curio.sleep(0.005)
                    log.add("kid saved work")
                }
            }
            try await Curio.sleep(0)
            let result = try await t.cancel(blocking: false)
            log.add("cancel returned terminated=\(t.terminated)")
            try await t.join()
            log.add("joined")
            return (log.entries, result)
        }
        #expect(r.0 == ["cancel returned terminated=false", "kid caught cancel", "kid saved work", "joined"])
        #expect(r.1)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelOfAnEndedTaskReturnsFalse() async throws {
        let r = try await KernelHarness.run { _ -> (Bool, Bool, Int?) in
            let t = try await spawn { 3 }
            try await t.join()
            let a = try await t.cancel()
            let b = try await t.cancel(blocking: false)
            return (a, b, try await t.join())
        }
        #expect(!r.0)
        #expect(!r.1)
        #expect(r.2 == 3)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelBeforeTheTaskFirstRuns() async throws {
        let r = try await KernelHarness.run { _ -> ([String], Int??) in
            let log = KernelHarness.Log()
            let t = try await spawn { () -> Int in
                log.add("kid started")
                try await Curio.sleep(1000)
                log.add("kid slept")
                return 1
            }
            try await t.cancel()  // t has not run yet
            log.add("cancel returned")
            return (log.entries, try await t.join())
        }
        #expect(r.0 == ["kid started", "cancel returned"])
        #expect(r.1 != nil && r.1! == nil, "join returned \(String(describing: r.1))")
    }

    @Test(.timeLimit(.minutes(1)))
    func selfCancel() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let t = try await spawn { () -> [String] in
                var seen: [String] = []
                let me = try await currentTask()
                seen.append("cancel \(try await me.cancel())")  // returns at once
                seen.append("cancelled \(me.cancelled)")
                do {
                    try await Curio.sleep(1)
                } catch {
                    seen.append(KernelHarness.kind(error))
                }
                return seen
            }
            return try await t.join() ?? ["nil"]
        }
        #expect(r == ["cancel true", "cancelled true", "TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func currentTaskIsTheRunningTask() async throws {
        let r = try await KernelHarness.run { _ -> (Bool, Bool, Bool) in
            let me = try await currentTask()
            let box = Locked<AnyCurioTask?>(nil)
            let t = try await spawn { () -> Int in
                let mine = try await currentTask()
                box.withLock { $0 = mine }
                try await Curio.sleep(0.001)
                return try await currentTask().id
            }
            let id = try await t.join()
            let seenInside = box.withLock { $0 }
            return (seenInside === t, id == t.id, try await currentTask() === me)
        }
        #expect(r.0)
        #expect(r.1)
        #expect(r.2)
    }

    @Test(.timeLimit(.minutes(1)))
    func idsAndNames() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var names: [String] = []
            let started = Event()
            let explicit = try await spawn(name: "worker") { try await kid() }
            let inferred = try await spawn { try await kid() }
            let viaArgs = try await spawn { try await sleeper(started) }
            let counter = try await spawn { try await countdown(3) }
            let neverBlocks = try await spawn { 1 }
            names.append(inferred.name)  // not run yet: no function known
            try await started.wait()
            try await counter.join()
            try await neverBlocks.join()
            names += [explicit.name, inferred.name, viaArgs.name, counter.name, neverBlocks.name]
            names.append(inferred.description)
            names.append("\(explicit.id) \(inferred.id) \(viaArgs.id) \(counter.id) \(neverBlocks.id)")
            for t in [explicit, inferred, viaArgs] { try await t.cancel() }
            return names
        }
        #expect(r == ["task-3", "worker", "kid", "sleeper", "countdown", "task-6",
                      "Task(id=3, name=kid, state='TIME_SLEEP')", "2 3 4 5 6"])
    }

    @Test(.timeLimit(.minutes(1)))
    func states() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let started = Event()
            let sleeping = try await spawn { try await sleeper(started) }
            seen.append("\(sleeping.state)")                    // READY: spawned, not run
            try await started.wait()
            seen.append("\(sleeping.state)")                    // TIME_SLEEP
            seen.append("\(try await currentTask().state)")     // RUNNING
            let joiner = try await spawn { try await sleeping.join() }
            let gate = Event()
            let waiter = try await spawn { try await gate.wait() }
            try await Curio.sleep(0)                            // both run and block
            seen.append("\(joiner.state)")                      // TASK_JOIN
            seen.append("\(waiter.state)")                      // EVENT_WAIT
            // What the monitor shows of a sleeping task.
            let left = sleeping.timeoutRemaining ?? -1
            seen.append(left > 990 && left <= 1000 ? "timeout ~1000" : "timeout \(left)")
            seen.append(sleeping.currentCallSite?.functionName ?? "no call site")
            seen.append(waiter.timeoutRemaining == nil ? "no timeout" : "timeout")
            await gate.set()
            seen.append("\(waiter.state)")                      // READY: woken, not run yet
            try await sleeping.cancel()
            try await joiner.join()
            try await waiter.join()
            seen.append("\(sleeping.state) \(joiner.state) \(waiter.state)")
            seen.append(sleeping.currentCallSite == nil ? "no call site" : "call site")
            return seen
        }
        #expect(r == ["READY", "TIME_SLEEP", "RUNNING", "TASK_JOIN", "EVENT_WAIT", "timeout ~1000",
                      "sleeper", "no timeout", "READY", "TERMINATED TERMINATED TERMINATED", "no call site"])
    }

    @Test(.timeLimit(.minutes(1)))
    func stateNamesAreTheSeeds() {
        let names = [TaskState.ready, .running, .terminated, .timeSleep, .taskJoin, .eventWait,
                     .lockAcquire, .semaAcquire, .condWait, .queueGet, .queuePut, .readWait,
                     .writeWait, .signalWait, .cpuWait].map(\.description)
        #expect(names == ["READY", "RUNNING", "TERMINATED", "TIME_SLEEP", "TASK_JOIN", "EVENT_WAIT",
                          "LOCK_ACQUIRE", "SEMA_ACQUIRE", "COND_WAIT", "QUEUE_GET", "QUEUE_PUT",
                          "READ_WAIT", "WRITE_WAIT", "SIGNAL_WAIT", "CPU_WAIT"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cyclesIncrease() async throws {
        // Virtual clock: main's 5 ms sleep ends only once the child has
        // nothing left to run (it waits for `step`), whatever the machine's load.
        let r = try await KernelHarness.runVirtual { _ -> [Int] in
            let step = Event()
            let t = try await spawn {
                for _ in 0..<5 { try await Curio.sleep(0) }
                try await step.wait()
                for _ in 0..<5 { try await Curio.sleep(0) }
            }
            let c0 = t.cycles
            try await Curio.sleep(0.005)
            let c1 = t.cycles
            await step.set()
            try await t.join()
            return [c0, c1, t.cycles, try await currentTask().cycles]
        }
        #expect(r[0] == 0)
        #expect(r[1] >= 6, "one run to start, then one per sleep(0)")
        #expect(r[2] >= r[1] + 6)
        #expect(r[3] >= 3)
    }

    @Test(.timeLimit(.minutes(1)))
    func daemonFlag() async throws {
        let r = try await KernelHarness.run { _ -> [Bool] in
            let d = try await spawn(daemon: true) { try await kid() }
            let n = try await spawn { 1 }
            let m = try await currentTask()
            try await n.join()
            return [d.daemon, n.daemon, m.daemon]
        }
        #expect(r == [true, false, false])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancelledAndTerminatedFlags() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let t = try await spawn { try await kid() }
            let ok = try await spawn { 1 }
            try await Curio.sleep(0)
            seen.append("\(t.cancelled) \(t.terminated)")
            try await t.cancel()
            seen.append("\(t.cancelled) \(t.terminated)")
            try await ok.join()
            seen.append("\(ok.cancelled) \(ok.terminated)")
            return seen
        }
        #expect(r == ["false false", "true true", "false true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func resultOfAnEndedTask() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let t = try await spawn { () -> Int in
                try await Curio.sleep(0.001)
                return 8
            }
            do { _ = try t.result } catch { seen.append(KernelHarness.kind(error)) }  // still running
            try await t.wait()
            seen.append("\(try t.result ?? -1)")
            let f = try await spawn { () -> Int in throw Boom.boom }
            try await f.wait()
            do { _ = try f.result } catch let e as TaskError { seen.append("\(e.cause)") }
            let c = try await spawn { () -> Int in
                try await kid()
                return 0
            }
            try await Curio.sleep(0)
            try await c.cancel()
            seen.append(try c.result == nil ? "nil" : "value")
            return seen
        }
        #expect(r == ["CurioUsageError.invalidArgument", "8", "Boom.boom", "nil"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledTaskIsCancelledInSwiftsSense() async throws {
        let r = try await KernelHarness.run { _ -> ([String], Bool, Bool) in
            let handlerRan = Locked(false)
            let t = try await spawn { () -> [String] in
                var seen: [String] = []
                seen.append("before: \(Task.isCancelled)")
                do {
                    try await withTaskCancellationHandler {
                        try await Curio.sleep(1000)
                    } onCancel: {
                        handlerRan.withLock { $0 = true }
                    }
                } catch is CancelledError {
                    seen.append("curio cancel")
                }
                seen.append("after: \(Task.isCancelled)")
                do {
                    try Task.checkCancellation()
                    seen.append("checkCancellation did not throw")
                } catch is CancelledError {
                    seen.append("Swift's CancellationError caught as CancelledError")
                }
                return seen
            }
            try await Curio.sleep(0)
            try await t.cancel()
            // The next task (which may reuse the same Swift task) is not cancelled.
            let next = try await spawn { () -> Bool in
                try await Curio.sleep(0)
                return Task.isCancelled
            }
            return (try await t.join() ?? [], handlerRan.withLock { $0 }, try await next.join()!)
        }
        #expect(r.0 == ["before: false", "curio cancel", "after: true",
                        "Swift's CancellationError caught as CancelledError"])
        #expect(r.1, "withTaskCancellationHandler's handler ran on the Curio cancel")
        #expect(!r.2, "a later task inherited the cancellation")
    }

    @Test(.timeLimit(.minutes(1)))
    func swiftNativeAwaitsInsideACurioTask() async throws {
        // Swift-native code inside a Curio task cooperates: after it
        // awaits Swift's own machinery, the task is still a Curio task.
        let r = try await KernelHarness.run { kernel -> [String] in
            var seen: [String] = []
            await Task.yield()
            do {
                try await Curio.sleep(0.001)
                seen.append("after Task.yield: ok")
            } catch {
                seen.append("after Task.yield: \(KernelHarness.kind(error))")
            }
            try await Task.sleep(for: .milliseconds(1))
            seen.append(Kernel.current === kernel ? "on the kernel" : "off the kernel")
            do {
                try await Curio.sleep(0.001)
                seen.append("after Task.sleep: ok")
            } catch {
                seen.append("after Task.sleep: \(KernelHarness.kind(error))")
            }
            return seen
        }
        // Jobs the runtime enqueues on its own (Task.yield on the kernel
        // thread, Task.sleep's resume from another thread) are matched to
        // their Curio task through the carrier table.
        #expect(r == ["after Task.yield: ok", "on the kernel", "after Task.sleep: ok"])
    }

    @Test(.timeLimit(.minutes(1)))
    func joinWaitAndCancelFromAnotherKernelWorkWithoutBlockingIt() async throws {
        // Kernel a runs on a thread of its own; a task of kernel b joins,
        // waits for and cancels a's tasks (CrossKernelTests shows that b
        // keeps running meanwhile); an event bound to a is still refused.
        let a = try Kernel.start()
        defer { a.stop() }
        let gate = Event()
        let bound = try await a.kernel.call { () -> Bool in
            try await gate.wait(timeout: 0.001)  // binds the event to kernel a
        }
        let ended = a.kernel.addTask { 1 }
        let live = a.kernel.addTask { () -> String in
            do {
                try await Curio.sleep(1000)
                return "slept"
            } catch is CancelledError {
                return "cancelled"
            }
        }
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append("ended: \(try await ended.join() ?? -1)")
            try await ended.wait()
            seen.append("cancel ended: \(try await ended.cancel())")
            seen.append("cancel live: \(try await live.cancel())")
            seen.append("live: \(try await live.join() ?? "nil")")
            do { try await gate.wait() } catch { seen.append(KernelHarness.kind(error)) }
            return seen
        }
        #expect(bound == false)
        #expect(r == ["ended: 1", "cancel ended: false", "cancel live: true", "live: cancelled",
                      "CurioUsageError.wrongKernel"])
    }

    @Test(.timeLimit(.minutes(1)))
    func curioCallsOutsideAKernelAreNotInKernel() async throws {
        // This test function runs on Swift's global executor, not in a
        // Curio kernel.
        let handle = try await KernelHarness.run { _ in try await spawn { 1 } }
        let evt = Event()
        var kinds: [String] = []
        func note(_ body: () async throws -> Void) async {
            do {
                try await body()
                kinds.append("no error")
            } catch {
                kinds.append(KernelHarness.kind(error))
            }
        }
        await note { _ = try await spawn { 1 } }
        await note { _ = try await newTask { 1 } }
        await note { try await Curio.sleep(0.001) }
        await note { try await Curio.sleep(0) }
        await note { try await Curio.sleep(for: .milliseconds(1)) }
        await note { _ = try await currentTask() }
        await note { _ = try await handle.join() }
        await note { try await handle.wait() }
        await note { try await handle.cancel() }
        await note { _ = try await timeoutAfter(1) { 1 } }
        await note { _ = try await ignoreAfter(1) { 1 } }
        await note { try await checkCancellation() }
        await note { _ = try await disableCancellation { 1 } }
        await note { try await evt.wait() }
        let n = "CurioUsageError.notInKernel"
        // Handles work from anywhere: join, wait and cancel of an ended task.
        let ok = "no error"
        #expect(kinds == [n, n, n, n, n, n, ok, ok, ok, n, n, n, n, n])
        // From a plain thread too.
        let fromThread = try await KernelHarness.onThread { () -> String in
            let sem = KernelHarness.Flag()
            let out = Locked("")
            Task {
                do { try await Curio.sleep(0.001) } catch { out.withLock { $0 = KernelHarness.kind(error) } }
                sem.set()
            }
            _ = sem.wait(10)
            return out.withLock { $0 }
        }
        #expect(fromThread == n)
    }

    @Test(.timeLimit(.minutes(1)))
    func failuresNobodyJoinedAreReportedOnStderr() async throws {
        let r = try await KernelHarness.runChild("unjoined-errors")
        #expect(r.status == 0, "child failed: \(r.stderr)")
        #expect(r.lines == ["ran", "END unjoined-errors"])
        let reports = r.stderr.split(separator: "\n").filter { $0.hasPrefix("curio: task") }.map(String.init)
        #expect(reports.sorted() == [
            "curio: task 2 (doomed) crashed and nobody joined it: Boom.boom",
            "curio: task 3 (failingKid) crashed and nobody joined it: Boom.other",
        ], "stderr: \(r.stderr)")
    }
}

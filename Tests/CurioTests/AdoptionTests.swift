// Swift tasks that run on a kernel's executor are Curio tasks: children of
// `async let` and task groups inside a Curio task, actor methods called from
// one, `Task(executorPreference:)` and `withTaskExecutorPreference(kernel)`;
// Swift cancellation reaches them as Curio cancellation and a Curio
// cancellation of the parent reaches them through Swift's.
import Synchronization
import Testing

@testable import Curio

private actor Counter {
    var n = 0
    func bump() async throws -> Int {
        try await Curio.sleep(0.001)
        n += 1
        return n
    }
}

/// What a Curio call made from here sees: "ok" or the error's kind.
private func sleepOutcome(_ seconds: Double = 0.001) async -> String {
    do {
        try await Curio.sleep(seconds)
        return "ok"
    } catch {
        return KernelHarness.kind(error)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct AdoptionTests {
    @Test(.timeLimit(.minutes(1)))
    func asyncLetAndTaskGroupChildrenAreCurioTasksWithTheirParent() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let me = try await currentTask()
            async let a: String = sleepOutcome()
            async let parentSeen: Int? = try currentTask().parentID
            var seen = [await a, "parent ok: \(try await parentSeen == me.id)"]
            let fromGroup = try await withThrowingTaskGroup(of: String.self) { g in
                for _ in 0..<3 { g.addTask { await sleepOutcome() } }
                var out: [String] = []
                for try await s in g { out.append(s) }
                return out
            }
            seen += fromGroup
            let kid = try await withThrowingTaskGroup(of: AnyCurioTask.self) { g in
                g.addTask { try await currentTask() }
                return try await g.next()!
            }
            seen.append("kid distinct: \(kid.id != me.id), daemon: \(kid.daemon)")
            return seen
        }
        #expect(r == ["ok", "parent ok: true", "ok", "ok", "ok", "kid distinct: true, daemon: true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func anActorMethodCalledFromACurioTaskIsThatTask() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let me = try await currentTask()
            let c = Counter()
            let a = try await c.bump()
            let b = try await c.bump()
            let same = try await currentTask() === me
            return ["\(a) \(b)", "same task after: \(same)", await sleepOutcome()]
        }
        #expect(r == ["1 2", "same task after: true", "ok"])
    }

    @Test(.timeLimit(.minutes(1)))
    func tasksPreferringTheKernelAreAdoptedAndListed() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let me = try await currentTask()
            let t = Task(executorPreference: kernel) { () -> (String, Int?, Bool) in
                let outcome = await sleepOutcome()
                let task = try? await currentTask()
                var listed = false
                if let task { kernel.forEachTask { if $0 === task { listed = true } } }
                return (outcome, task?.parentID, listed)
            }
            let (outcome, parent, listed) = await t.value
            return [outcome, "parent is creator: \(parent == me.id)", "listed: \(listed)"]
        }
        #expect(r == ["ok", "parent is creator: true", "listed: true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func codeUnderWithTaskExecutorPreferenceRunsAsACurioTask() async throws {
        let running = try Kernel.start()
        defer { running.stop() }
        let kernel = running.kernel
        // Outside the preference: the clear error, naming the way out.
        var message = ""
        do { try await Curio.sleep(0.001) } catch let e as CurioUsageError {
            message = e.message
        }
        #expect(message.contains("kernel.call"))
        let inside = await withTaskExecutorPreference(kernel) { () -> [String] in
            let outcome = await sleepOutcome()
            let t = try? await currentTask()
            return [outcome, "has id: \((t?.id ?? 0) > 0)", "no parent: \(t?.parentID == nil)",
                    "on the kernel: \(Kernel.current === kernel)"]
        }
        #expect(inside == ["ok", "has id: true", "no parent: true", "on the kernel: true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func swiftCancellationOfAnAdoptedTaskIsACurioCancellation() async throws {
        let r = try await KernelHarness.run { kernel -> [String] in
            let asleep = Event()
            let t = Task(executorPreference: kernel) { () -> [String] in
                var seen: [String] = []
                do {
                    await asleep.set()
                    try await Curio.sleep(1000)
                    seen.append("slept")
                } catch {
                    seen.append("first: \(KernelHarness.kind(error))")
                }
                // Delivered once, as a Curio cancellation is: cleanup may block.
                seen.append("cleanup: \(await sleepOutcome())")
                return seen
            }
            try await asleep.wait()
            t.cancel()
            return await t.value
        }
        #expect(r == ["first: TaskCancelled", "cleanup: ok"])
    }

    @Test(.timeLimit(.minutes(1)))
    func swiftCancellationFromAnotherThreadInterruptsABlockedAdoptedTask() async throws {
        let running = try Kernel.start()
        defer { running.stop() }
        let asleep = UniversalEvent()
        let t = Task(executorPreference: running.kernel) { () -> String in
            do {
                asleep.set()
                try await Curio.sleep(1000)
                return "slept"
            } catch {
                return KernelHarness.kind(error)
            }
        }
        try await asleep.wait()
        t.cancel()  // from this test's task, off the kernel's thread
        #expect(await t.value == "TaskCancelled")
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingTheCurioParentReachesItsStructuredChildren() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let log = KernelHarness.Log()
            let started = Semaphore(value: 0)
            let parent = try await spawn { () -> Void in
                await withTaskGroup(of: Void.self) { g in
                    for i in 0..<2 {
                        g.addTask {
                            do {
                                try await started.release()
                                try await Curio.sleep(1000)
                                log.add("child \(i) slept")
                            } catch {
                                log.add("child \(i): \(KernelHarness.kind(error))")
                            }
                        }
                    }
                }
            }
            try await started.acquire()
            try await started.acquire()
            try await parent.cancel()
            return log.entries.sorted()
        }
        #expect(r == ["child 0: TaskCancelled", "child 1: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aTaskOnAnotherExecutorGetsTheClearError() async throws {
        let r = try await KernelHarness.run { _ -> String in
            // A detached task runs on Swift's global executor, not the kernel.
            let t = Task.detached { () -> String in
                do {
                    try await Curio.sleep(0.001)
                    return "no error"
                } catch let e as CurioUsageError {
                    return "\(e.kind) \(e.message.contains("kernel.call"))"
                } catch {
                    return "\(error)"
                }
            }
            return await t.value
        }
        #expect(r == "notInKernel true")
    }
}

// UniversalResult (issue 13, rule 10): a one-shot value or error set from
// any thread or executor and awaited from any, with timeouts; and
// UniversalQueue's taskDone()/join() across kernel tasks, threads and
// Swift tasks.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct UniversalResultTests {
    @Test(.timeLimit(.minutes(1)))
    func aThreadSetsWhatACurioTaskAwaits() async throws {
        let result = UniversalResult<Int>()
        let r = try await KernelHarness.run { _ -> [String] in
            var out: [String] = []
            let waiter = try await spawn { try await result.get() }
            try await IOTest.waitBlocked(waiter, .eventWait)
            KernelHarness.startThread { try? result.set(42) }
            out.append("got \(try await waiter.join() ?? -1)")
            out.append("again \(try await result.get())")
            return out
        }
        #expect(r == ["got 42", "again 42"])
        #expect(throws: CurioUsageError.self) { try result.set(1) }
    }

    @Test(.timeLimit(.minutes(1)))
    func aCurioTaskSetsWhatAThreadAndASwiftTaskAwait() async throws {
        let result = UniversalResult<String>()
        let swiftWaiter = Task.detached { try await result.get() }
        let threadGot = KernelHarness.Log()
        let threadDone = KernelHarness.Flag()
        KernelHarness.startThread {
            threadGot.add((try? result.blockingGet(timeout: 20)) ?? "timeout")
            threadDone.set()
        }
        try await KernelHarness.run { _ in try result.set("hello") }
        #expect(try await swiftWaiter.value == "hello")
        #expect(threadDone.wait(20))
        #expect(threadGot.entries == ["hello"])
    }

    @Test(.timeLimit(.minutes(1)))
    func anErrorIsThrownToEveryWaiter() async throws {
        let result = UniversalResult<Int>()
        let swiftWaiter = Task.detached { () -> String in
            do { return "value \(try await result.get())" } catch { return "\(error)" }
        }
        try result.setError(KernelHarness.Boom.boom)
        #expect(await swiftWaiter.value == "Boom.boom")
        #expect(throws: KernelHarness.Boom.self) { _ = try result.blockingGet() }
        #expect(result.isSet)
    }

    @Test(.timeLimit(.minutes(1)))
    func getTimesOutEverywhere() async throws {
        let result = UniversalResult<Int>()
        // A Swift task, a thread and a Curio task each give up.
        await #expect(throws: TaskTimeout.self) { _ = try await result.get(timeout: 0.01) }
        #expect(throws: TaskTimeout.self) { _ = try result.blockingGet(timeout: 0.01) }
        let inKernel = try await KernelHarness.run { _ -> String in
            do { return "value \(try await result.get(timeout: .milliseconds(10)))" } catch { return KernelHarness.kind(error) }
        }
        #expect(inKernel == "TaskTimeout")
        #expect(!result.isSet)
        try result.set(5)
        #expect(try await result.get(timeout: 0) == 5)
    }

    @Test(.timeLimit(.minutes(1)))
    func aSwiftWaiterHonoursCancellation() async throws {
        let result = UniversalResult<Int>()
        let waiter = Task.detached { () -> String in
            do { return "value \(try await result.get())" } catch { return "\(type(of: error))" }
        }
        waiter.cancel()
        #expect(await waiter.value == "CancellationError")
    }

    // MARK: - UniversalQueue taskDone / join

    @Test(.timeLimit(.minutes(1)))
    func universalJoinWaitsForEveryTaskDone() async throws {
        let q = UniversalQueue<Int>()
        let log = KernelHarness.Log()
        let r = try await KernelHarness.run { _ -> [String] in
            for i in 1...3 { try await q.put(i) }
            let joiner = try await spawn {
                try await q.join()
                log.add("joined")
            }
            try await IOTest.waitBlocked(joiner, .queueJoin)
            // A plain thread consumes and marks done.
            let consumed = UniversalEvent()
            KernelHarness.startThread {
                for _ in 1...3 {
                    if let v = try? q.blockingGet(timeout: 20) {
                        log.add("thread got \(v)")
                        try? q.taskDone()
                    }
                }
                consumed.set()
            }
            try await consumed.wait()
            try await joiner.join()
            return log.entries
        }
        #expect(r == ["thread got 1", "thread got 2", "thread got 3", "joined"])
        #expect(throws: CurioUsageError.self) { try q.taskDone() }
        #expect(try q.blockingJoin(timeout: 0) == true)
        try await q.put(9)
        #expect(try await q.join(timeout: 0.01) == false)
        #expect(try q.blockingJoin(timeout: 0.01) == false)
        #expect(try await q.get() == 9)
        try q.taskDone()
        #expect(try await q.join(timeout: 1) == true)
    }
}

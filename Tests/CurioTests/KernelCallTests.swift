// kernel.call { } from any Swift task: the value, the error, cancellation of
// the caller (cancels the task and waits for it), and a kernel that is not
// running or shut down (throws at once). Handles joined from outside.
import Glibc
import Synchronization
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct KernelCallTests {
    @Test(.timeLimit(.minutes(1)))
    func callReturnsTheValueAndRethrowsTheError() async throws {
        let running = try Kernel.start()
        defer { running.stop() }
        let v = try await running.kernel.call { () -> Int in
            try await Curio.sleep(0.001)
            return 41 + 1
        }
        #expect(v == 42)
        await #expect(throws: KernelHarness.Boom.boom) {
            try await running.kernel.call { () -> Int in throw KernelHarness.Boom.boom }
        }
        // From one of the kernel's own tasks it works too.
        let inner = try await running.kernel.call { () -> Int in
            try await running.kernel.call { 7 }
        }
        #expect(inner == 7)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingTheCallerCancelsTheTaskAndWaitsForIt() async throws {
        let running = try Kernel.start()
        defer { running.stop() }
        let log = KernelHarness.Log()
        let asleep = UniversalEvent()
        let caller = Task { () -> String in
            do {
                _ = try await running.kernel.call { () -> Int in
                    do {
                        asleep.set()
                        try await Curio.sleep(1000)
                    } catch {
                        try await Curio.sleep(0.01)  // cleanup that blocks
                        log.add("task cleaned up")
                        throw error
                    }
                    return 1
                }
                return "returned"
            } catch {
                log.add("caller saw \(KernelHarness.kind(error))")
                return KernelHarness.kind(error)
            }
        }
        try await asleep.wait()
        caller.cancel()
        #expect(await caller.value == "CancellationError")
        #expect(log.entries == ["task cleaned up", "caller saw CancellationError"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aKernelThatIsNotRunningOrShutDownThrowsAtOnce() async throws {
        // A kernel that has not run yet: the call waits for its first run.
        let fresh = Kernel()
        let early = Task { try await fresh.call { 5 } }
        let runner = Task {
            try await KernelHarness.onThread { () -> Int in
                // Runs once the call's task has arrived (the run would end at once otherwise).
                while !fresh.hasPostedWork { usleep(100) }
                try fresh.run()
                return 0
            }
        }
        #expect(try await early.value == 5)
        _ = try await runner.value
        let running = try Kernel.start()
        running.stop()
        try await running.wait()
        await #expect(throws: KernelUnavailable(reason: .shutDown, kernelSerial: running.kernel.serial)) {
            try await running.kernel.call { 1 }
        }
        // A seed-style kernel whose run() has returned.
        let seed = try await KernelHarness.onThread { () -> Kernel in
            let k = Kernel()
            try k.run { 1 }
            return k
        }
        await #expect(throws: KernelUnavailable(reason: .notRunning, kernelSerial: seed.serial)) {
            try await seed.call { 1 }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aHandleIsJoinedFromASwiftTaskAndFromAPlainThread() async throws {
        let running = try Kernel.start()
        defer { running.stop() }
        let gate = UniversalEvent()
        let t = running.kernel.addTask { () -> String in
            try await gate.wait()
            return "done"
        }
        let joiner = Task { try await t.join() }
        let fromThread = Task {
            try await KernelHarness.onThread { () -> String? in try t.joinBlocking() }
        }
        gate.set()
        #expect(try await joiner.value == "done")
        #expect(try await fromThread.value == "done")
        // A failed task: TaskError with its cause, from outside as inside.
        let bad = running.kernel.addTask { () -> Int in throw KernelHarness.Boom.other }
        do {
            _ = try await bad.join()
            Issue.record("join did not throw")
        } catch let e as TaskError {
            #expect(e.cause as? KernelHarness.Boom == .other)
        }
        // A timeout from outside.
        let slow = running.kernel.addTask { try await Curio.sleep(1000) }
        await #expect(throws: TaskTimeout.self) { try await slow.join(timeout: 0.01) }
        #expect(try await slow.cancel())
    }
}

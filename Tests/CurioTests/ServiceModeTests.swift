// Service mode: a kernel that runs with no tasks until shutdown(), started
// on a thread of its own with Kernel.start(); shutdown() from any thread or
// task; seed-style run() reporting a failed top-level task.
import Glibc
import Synchronization
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ServiceModeTests {
    @Test(.timeLimit(.minutes(1)))
    func aStartedKernelKeepsRunningWithoutTasksUntilStopped() async throws {
        let running = try Kernel.start()
        // No task for a while: it still takes calls.
        for i in 0..<3 {
            #expect(try await running.kernel.call { i * 2 } == i * 2)
        }
        #expect(running.kernel.isRunning)
        #expect(!running.isFinished)
        let daemon = running.kernel.addTask(daemon: true) { () -> String in
            do {
                try await Curio.sleep(1000)
                return "slept"
            } catch {
                try await Curio.sleep(0.001)
                return "cancelled and cleaned up"
            }
        }
        running.stop()
        try await running.wait()
        #expect(running.isFinished && running.kernel.isShutDown)
        #expect(try await daemon.join() == "cancelled and cleaned up")
    }

    @Test(.timeLimit(.minutes(1)))
    func shutdownFromOneOfItsOwnTasksAndFromAPlainThread() async throws {
        let a = try Kernel.start()
        try await a.kernel.call { try a.kernel.shutdown() }
        try await a.wait()
        #expect(a.kernel.isShutDown)
        let b = try Kernel.start()
        try await KernelHarness.onThread {
            try b.kernel.shutdown()
            try b.join()
        }
        #expect(b.kernel.isShutDown)
        // runUntilShutdown on a thread of the test's own.
        let k = Kernel()
        let started = UniversalEvent()
        k.addTask { started.set() }
        let runner = Task { try await KernelHarness.onThread { try k.runUntilShutdown() } }
        try await started.wait()
        try k.shutdown()
        try await runner.value
        #expect(k.isShutDown)
    }

    @Test(.timeLimit(.minutes(1)))
    func seedRunThrowsWhenATopLevelTaskFailedAndNobodyJoinedIt() async throws {
        // A server whose bind finds the port taken.
        let r = try await KernelHarness.onThread { () -> [String] in
            let holder = try Socket(.inet, .stream)
            try holder.bind(("127.0.0.1", 0))
            try holder.listen(1)
            let port = try holder.localAddress.port
            defer { holder.close() }
            var seen: [String] = []
            let kernel = Kernel()
            kernel.addTask {
                let s = try Socket(.inet, .stream)
                defer { s.close() }
                try s.bind(("127.0.0.1", port))
            }
            do {
                try kernel.run()
                seen.append("returned")
            } catch let e as TaskError {
                seen.append("TaskError \(e.taskID) \(e.cause is SocketError || "\(e.cause)".contains("in use"))")
            }
            // A failed task whose handle is kept is left to its owner.
            let kept = kernel.addTask { () -> Int in throw KernelHarness.Boom.boom }
            try kernel.run()
            seen.append("kept: \((try? kept.result) == nil)")
            try kernel.shutdown()
            return seen
        }
        #expect(r == ["TaskError 1 true", "kept: true"])
    }
}

// MARK: - A kernel on the main thread

import Dispatch

extension KernelHarness {
    /// Runs a kernel on the main thread (in a block of the main queue)
    /// whose daemon task awaits the MainActor: the kernel reports it after a
    /// quiet second (the main task's timer is due later); the main actor
    /// runs once the kernel's run() has returned.
    static func scenarioMainThreadKernel() throws {
        let done = Flag()
        DispatchQueue.main.async {
            let k = Kernel()
            do {
                try k.run {
                    k.addTask(daemon: true) {
                        await MainActor.run { done.set() }
                    }
                    try await Curio.sleep(1.5)
                }
            } catch {
                childSay("run failed: \(error)")
            }
            childSay("run returned")
        }
        childSay(done.wait(20) ? "main actor ran" : "main actor never ran")
    }
}

@Suite(.timeLimit(.minutes(1)))
struct MainThreadKernelTests {
    @Test(.timeLimit(.minutes(1)))
    func aHopToTheMainActorWhileAKernelHoldsTheMainThreadIsReported() async throws {
        let r = try await KernelHarness.runChild("main-thread-kernel")
        #expect(r.lines.prefix(2) == ["run returned", "main actor ran"])
        #expect(r.stderr.contains("a Curio kernel runs on the main thread and task 2"))
    }
}

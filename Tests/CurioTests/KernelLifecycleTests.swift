// Lifecycle faults: addTask from another thread racing with run() ending
// (runs the task or fails at once, never hangs), dropping kernels with
// tasks pending (descriptors stay flat), and the throwing creation path.
import Dispatch
import Glibc
import Synchronization
import Testing

@testable import Curio

/// Open descriptors of this process.
private func openDescriptors() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while readdir(dir) != nil { n += 1 }
    return n
}

/// Counts the tasks that ran their cleanup after being cancelled.
private final class CleanupCount: Sendable {
    let n = Atomic<Int>(0)
    /// A task that sleeps until cancelled, then cleans up (blocking once).
    var pendingTask: @Sendable () async -> Void {
        { [self] in
            do { try await Curio.sleep(1000) } catch {
                try? await Curio.sleep(0)
                n.add(1, ordering: .relaxed)
            }
        }
    }
}

@Suite(.timeLimit(.minutes(2)))
struct KernelLifecycleTests {
    @Test(.timeLimit(.minutes(1)))
    func addTaskRacingWithRunEndingRunsOrQueuesNeverHangs() async throws {
        // Each round: a short run() on one thread while another thread adds
        // a task as the run ends. The adder never blocks; every added task
        // runs, in that run or the next one.
        let rounds = 300
        let r = try await KernelHarness.onThread(limit: 50) { () -> (Int, Int) in
            let ran = Atomic<Int>(0)
            var queuedForNextRun = 0
            for _ in 0..<rounds {
                let kernel = Kernel()
                kernel.addTask { try await Curio.sleep(0) }
                let go = KernelHarness.Rendezvous(parties: 2)
                let added = KernelHarness.Flag()
                let handle = Locked<CurioTask<Void>?>(nil)
                KernelHarness.startThread {
                    _ = go.arrive(within: 10)
                    handle.withLock { $0 = kernel.addTask { ran.add(1, ordering: .relaxed) } }
                    added.set()
                }
                _ = go.arrive(within: 10)
                try kernel.run()
                guard added.wait(10) else { return (-1, 0) }
                if let h = handle.withLock({ $0 }), !h.terminated {
                    queuedForNextRun += 1
                    try kernel.run()
                }
                try kernel.shutdown()
            }
            return (ran.load(ordering: .relaxed), queuedForNextRun)
        }
        #expect(r.0 == rounds, "every added task ran (\(r.1) waited for the next run)")
    }

    @Test(.timeLimit(.minutes(1)))
    func addTaskToAShutDownKernelFailsAtOnce() async throws {
        let r = try await KernelHarness.onThread { () -> String in
            let kernel = Kernel()
            try kernel.shutdown()
            let t = kernel.addTask { 1 }
            do {
                _ = try t.result
                return "ran"
            } catch let e as TaskError {
                return "\(t.terminated) \(e.cause as? KernelUnavailable == KernelUnavailable(reason: .shutDown, kernelSerial: kernel.serial))"
            }
        }
        #expect(r == "true true")
    }

    /// In a process of its own: the descriptor count is the whole
    /// process's, and other suites running beside it open and close
    /// descriptors of their own at any moment.
    @Test(.timeLimit(.minutes(2)))
    func droppedKernelsWithPendingTasksFreeEverything() throws {
        let r = try IOTest.runScenario("dropped-kernels", limit: 100)
        #expect(r.status == "exit 0", "stderr: \(r.stderr)")
        #expect(r.lines == [
            "kernels still registered: 0",
            "descriptors after 400 kernels: same as before",
            "cleanups run: 600",
        ], "stderr: \(r.stderr)")
    }

    /// The scenario: 200 kernels dropped with tasks never run, 200 run and
    /// shut down with a suspended daemon.
    static func droppedKernelsScenario() async throws -> [String] {
        try await KernelHarness.onThread(limit: 90) { () -> [String] in
            let cleaned = CleanupCount()
            let pending = cleaned.pendingTask
            // Warm up (once-per-process allocations), then measure.
            do { Kernel().addTask { await pending() } }
            cleaned.n.store(0, ordering: .relaxed)
            // libdispatch opens its event loop's descriptors (epoll,
            // eventfd, timerfd) lazily, on the first timer: the test
            // runner's time-limit watchdog can start that while this counts,
            // and its epoll and eventfd look like a kernel's. Start it now;
            // the timerfd it may add per clock later is left out (Curio
            // never opens one).
            let timerFired = DispatchSemaphore(value: 0)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { timerFired.signal() }
            timerFired.wait()
            func descriptors() -> [Int32: String] {
                IOTest.openDescriptors().filter { $0.value != "anon_inode:[timerfd]" }
            }
            let before = descriptors()
            var serials: [UInt64] = []
            for _ in 0..<200 {
                // Tasks added and never run: the drop runs them, cancelled.
                let dropped = Kernel()
                serials.append(dropped.serial)
                dropped.addTask { await pending() }
                dropped.addTask(daemon: true) { await pending() }
                // A kernel whose daemon is suspended: its task holds it
                // (documented), so it is shut down before it is dropped.
                let ran = Kernel()
                serials.append(ran.serial)
                try ran.run {
                    ran.addTask(daemon: true) { await pending() }
                    try await Curio.sleep(0)
                }
                try ran.shutdown()
            }
            // A kernel leaves the registry only at the very end of its deinit,
            // after ck_kernel_free closed its ring and eventfd.
            let alive = serials.filter { KernelRegistry.lifecycle($0) != nil }.count
            let after = descriptors()
            let same = after == before ? "same as before" : "before \(before), after \(after)"
            return ["kernels still registered: \(alive)",
                    "descriptors after 400 kernels: \(same)",
                    "cleanups run: \(cleaned.n.load(ordering: .relaxed))"]
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func creatingAKernelAtDescriptorExhaustionThrows() async throws {
        // In a child process: exhausting descriptors here would starve the
        // suites running alongside.
        let r = try await KernelHarness.runChild("fd-exhaustion")
        #expect(r.lines.first == "KernelError true")
    }
}

extension KernelHarness {
    /// Lowers the descriptor limit to what is open, then creates a kernel.
    static func scenarioDescriptorExhaustion() throws {
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        var low = saved
        low.rlim_cur = rlim_t(openDescriptors())
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
        // Fill whatever is left.
        var fds: [Int32] = []
        while true {
            let fd = dup(2)
            if fd < 0 { break }
            fds.append(fd)
        }
        let outcome: String
        do {
            _ = try Kernel.make()
            outcome = "created"
        } catch let e as KernelError {
            outcome = "KernelError \(e.errno == EMFILE)"
        }
        fds.forEach { close($0) }
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        childSay(outcome)
    }
}

// The kernel: running until the non-daemon tasks end, run(_ main:),
// shutdown, misuse (running twice, after shutdown, two kernels on a thread),
// several kernels on several threads, addTask from another thread,
// Kernel.current and the backend (io_uring, epoll, the forced fallback).
import CCurioKernel
import Glibc
import Synchronization
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

/// Calls the blocking runs where they must fail (from a task: `run` is
/// `noasync`, so the misuse goes through a synchronous function, as a user's
/// would); returns the kinds of the errors.
private func misuseKinds(_ kernel: Kernel, withShutdown: Bool) -> [String] {
    var kinds: [String] = []
    do { try kernel.run() } catch { kinds.append(KernelHarness.kind(error)) }
    do { try kernel.run { 1 } } catch { kinds.append(KernelHarness.kind(error)) }
    if withShutdown {
        do { try kernel.run(shutdown: true) } catch { kinds.append(KernelHarness.kind(error)) }
    }
    return kinds
}

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct KernelTests {
    @Test(.timeLimit(.minutes(1)))
    func runUntilNonDaemonTasksEnd() async throws {
        let r = try await KernelHarness.onThread { () -> ([String], Bool, Bool, Bool, [String]) in
            let log = KernelHarness.Log()
            // Virtual clock: a run() that waited for the daemon's 1000 s
            // sleep would read 1000 s more on it, and still end at once.
            var c = Kernel.Configuration.default
            c.clock = .virtual()
            let kernel = Kernel(configuration: c)
            let a = kernel.addTask {
                try await Curio.sleep(0.02)
                log.add("a")
            }
            let b = kernel.addTask { () -> Int in
                try await Curio.sleep(0.01)
                log.add("b")
                return 2
            }
            let d = kernel.addTask(daemon: true) {
                do {
                    try await Curio.sleep(1000)
                } catch is CancelledError {
                    try await Curio.sleep(0.001)  // cleanup may still block
                    log.add("daemon cleaned up")
                }
            }
            let t0 = kernel.now
            try kernel.run()
            let elapsed = kernel.now - t0
            let afterRun = log.entries
            let states = (a.terminated && b.terminated, !d.terminated && d.daemon && !a.daemon, elapsed == 20_000_000)
            try kernel.shutdown()
            return (afterRun, states.0, states.1, states.2 && d.terminated, log.entries)
        }
        #expect(r.0 == ["b", "a"])
        #expect(r.1, "run() returns once every non-daemon task has ended")
        #expect(r.2, "the daemon is still suspended after run()")
        #expect(r.3, "the daemon did not keep run() alive and shutdown() ended it")
        #expect(r.4 == ["b", "a", "daemon cleaned up"])
    }

    @Test(.timeLimit(.minutes(1)))
    func runWithNoTasksReturnsAtOnce() async throws {
        let ok = try await KernelHarness.onThread { () -> Bool in
            let kernel = Kernel()
            try kernel.run()
            try kernel.run()
            return Kernel.current == nil
        }
        #expect(ok)
    }

    @Test(.timeLimit(.minutes(1)))
    func runMainReturnsItsValue() async throws {
        let v = try await KernelHarness.onThread { () -> String in
            try Kernel().run {
                try await Curio.sleep(0.001)
                return "answer"
            }
        }
        #expect(v == "answer")
        // A main that never blocks.
        let w = try await KernelHarness.onThread { try Kernel().run { 41 + 1 } }
        #expect(w == 42)
        // Optional values survive the trip.
        let n = try await KernelHarness.onThread { () -> Int? in try Kernel().run { () -> Int? in nil } }
        #expect(n == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func runMainRethrowsItsError() async throws {
        let e = try await KernelHarness.onThread { () -> (any Error)? in
            do {
                try Kernel().run { () -> Int in
                    try await Curio.sleep(0.001)
                    throw Boom.other
                }
                return nil
            } catch {
                return error
            }
        }
        #expect(e as? Boom == .other)
    }

    @Test(.timeLimit(.minutes(1)))
    func runMainThrowsTaskCancelledWhenMainIsCancelled() async throws {
        let e = try await KernelHarness.onThread { () -> String in
            do {
                try Kernel().run { () -> Int in
                    try await currentTask().cancel()
                    try await Curio.sleep(1)
                    return 1
                }
                return "returned"
            } catch {
                return KernelHarness.kind(error)
            }
        }
        #expect(e == "TaskCancelled")
    }

    @Test(.timeLimit(.minutes(1)))
    func runMainLeavesOtherTasksForTheNextRun() async throws {
        let r = try await KernelHarness.onThread { () -> ([String], [String], Bool) in
            let log = KernelHarness.Log()
            let kernel = Kernel()
            let gate = Event()
            let v = try kernel.run { () -> Int in
                try await spawn {
                    try await gate.wait()
                    log.add("other ran")
                }
                return 7
            }
            log.add("main \(v)")
            let first = log.entries
            kernel.addTask { await gate.set() }
            try kernel.run()
            return (first, log.entries, kernel.aliveCount == 0)
        }
        #expect(r.0 == ["main 7"])
        #expect(r.1 == ["main 7", "other ran"])
        #expect(r.2)
    }

    @Test(.timeLimit(.minutes(1)))
    func runShutdownCancelsDaemonsWhichCanCleanUp() async throws {
        let r = try await KernelHarness.onThread { () -> ([String], Bool, Bool, String) in
            let log = KernelHarness.Log()
            let kernel = Kernel()
            var daemons: [CurioTask<Void>] = []
            for i in 1...3 {
                daemons.append(kernel.addTask(daemon: true) {
                    do {
                        try await Event().wait()
                    } catch is CancelledError {
                        log.add("daemon \(i) saw CancelledError")
                        try await Curio.sleep(0.001)
                        log.add("daemon \(i) saved")
                    }
                })
            }
            kernel.addTask { try await Curio.sleep(0.005) }
            try kernel.run(shutdown: true)
            let ended = daemons.allSatisfy { $0.terminated && $0.cancelled }
            // A shut-down kernel refuses to run again.
            var again = "no error"
            do { try kernel.run() } catch { again = KernelHarness.kind(error) }
            return (log.entries.sorted(), ended, kernel.isShutDown, again)
        }
        #expect(r.0 == ["daemon 1 saved", "daemon 1 saw CancelledError",
                        "daemon 2 saved", "daemon 2 saw CancelledError",
                        "daemon 3 saved", "daemon 3 saw CancelledError"])
        #expect(r.1)
        #expect(r.2)
        #expect(r.3 == "CurioUsageError.shutDown")
    }

    @Test(.timeLimit(.minutes(1)))
    func shutdownCancelsNonDaemonTasksLeftByRunMain() async throws {
        let r = try await KernelHarness.onThread { () -> ([String], Int, Bool) in
            let log = KernelHarness.Log()
            let kernel = Kernel()
            let left = try kernel.run { () -> CurioTask<Int> in
                try await spawn { () -> Int in
                    do {
                        try await Curio.sleep(1000)
                        return 0
                    } catch is CancelledError {
                        log.add("kid cancelled")
                        return 5
                    }
                }
            }
            try kernel.shutdown()
            try kernel.shutdown()  // a second shutdown does nothing
            return (log.entries, try left.result ?? -1, kernel.aliveCount == 0)
        }
        #expect(r.0 == ["kid cancelled"])
        #expect(r.1 == 5)
        #expect(r.2)
    }

    @Test(.timeLimit(.minutes(1)))
    func curioRunShutsTheKernelDown() async throws {
        let r = try await KernelHarness.onThread { () -> (Int, [String]) in
            let log = KernelHarness.Log()
            let v = try Curio.run { () -> Int in
                try await spawn(daemon: true) {
                    do { try await Curio.sleep(1000) } catch is CancelledError { log.add("daemon ended") }
                }
                try await spawn {
                    do { try await Curio.sleep(1000) } catch is CancelledError { log.add("kid ended") }
                }
                return 3
            }
            return (v, log.entries.sorted())
        }
        #expect(r.0 == 3)
        #expect(r.1 == ["daemon ended", "kid ended"])
    }

    @Test(.timeLimit(.minutes(1)))
    func runFromInsideATaskIsAlreadyRunning() async throws {
        let kinds = try await KernelHarness.run { kernel -> [String] in
            let kinds = misuseKinds(kernel, withShutdown: true)
            // The kernel keeps working afterwards.
            try await Curio.sleep(0.001)
            return kinds
        }
        #expect(kinds == ["CurioUsageError.alreadyRunning", "CurioUsageError.alreadyRunning",
                          "CurioUsageError.alreadyRunning"])
    }

    @Test(.timeLimit(.minutes(1)))
    func runAfterShutdownIsShutDown() async throws {
        let kinds = try await KernelHarness.onThread { () -> [String] in
            let kernel = Kernel()
            try kernel.run { 1 }
            try kernel.shutdown()
            var kinds: [String] = []
            do { try kernel.run() } catch { kinds.append(KernelHarness.kind(error)) }
            do { try kernel.run { 2 } } catch { kinds.append(KernelHarness.kind(error)) }
            return kinds
        }
        #expect(kinds == ["CurioUsageError.shutDown", "CurioUsageError.shutDown"])
    }

    @Test(.timeLimit(.minutes(1)))
    func secondKernelOnABusyThreadIsThreadBusy() async throws {
        let kinds = try await KernelHarness.run { outer -> [String] in
            let inner = Kernel()
            var kinds = misuseKinds(inner, withShutdown: false)
            kinds.append(Kernel.current === outer ? "outer still current" : "wrong current")
            try await Curio.sleep(0.001)
            return kinds
        }
        #expect(kinds == ["CurioUsageError.threadBusy", "CurioUsageError.threadBusy", "outer still current"])
    }

    @Test(.timeLimit(.minutes(1)))
    func kernelsOnSeveralThreadsRunInParallel() async throws {
        let n = 4
        let meet = KernelHarness.Rendezvous(parties: n)
        let results = try await withThrowingTaskGroup(of: (Int, Int, Bool, Bool, [Int]).self) { group in
            for k in 0..<n {
                group.addTask {
                    try await KernelHarness.run { kernel -> (Int, Int, Bool, Bool, [Int]) in
                        let thread = pthread_self()
                        let counter = Locked(0)
                        var tasks: [CurioTask<Bool>] = []
                        for _ in 0..<20 {
                            tasks.append(try await spawn { () -> Bool in
                                for _ in 0..<50 {
                                    try await Curio.sleep(0)
                                    counter.withLock { $0 += 1 }
                                }
                                try await Curio.sleep(0.001)
                                return Kernel.current === kernel && pthread_equal(pthread_self(), thread) != 0
                            })
                        }
                        // Every kernel blocks its thread here until all are
                        // in a task at the same time: only parallel kernels
                        // get past it.
                        let met = meet.arrive(within: 15)
                        var allOwn = true
                        for t in tasks { allOwn = try await t.join()! && allOwn }
                        let ids = tasks.map(\.id)
                        return (k, counter.withLock { $0 }, met, allOwn, ids)
                    }
                }
            }
            var all: [(Int, Int, Bool, Bool, [Int])] = []
            for try await r in group { all.append(r) }
            return all.sorted { $0.0 < $1.0 }
        }
        #expect(results.count == n)
        for r in results {
            #expect(r.1 == 20 * 50)
            #expect(r.2, "kernel \(r.0) did not meet the others: kernels are not running in parallel")
            #expect(r.3, "a task of kernel \(r.0) ran on another thread or saw another kernel")
            #expect(r.4 == Array(2...21), "task ids are per kernel")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func addTaskFromAnotherThreadWhileRunning() async throws {
        let kernel = Kernel()
        let running = KernelHarness.Flag()
        let kernelThread = Locked<pthread_t?>(nil)
        let sawThread = Locked<pthread_t?>(nil)
        let evt = Event()
        // The kernel's thread starts here and now, not from a child task:
        // a child task may wait for a thread of Swift's pool, which other
        // suites can keep busy for longer than any bound.
        let mainResult = Locked<Result<Int, any Error>?>(nil)
        let finished = KernelHarness.Flag()
        KernelHarness.startThread {
            kernelThread.withLock { $0 = pthread_self() }
            let r = Result { () throws -> Int in
                let v = try kernel.run { () -> Int in
                    running.set()
                    try await evt.wait()
                    return 1
                }
                try kernel.shutdown()
                return v
            }
            mainResult.withLock { $0 = r }
            finished.set()
        }
        // The main task waits for an event only the added task sets: run
        // returns only if the task added from this other thread ran.
        let added = try await KernelHarness.onThread { () -> CurioTask<Int> in
            guard running.wait(30) else { throw KernelHarness.Failure(description: "kernel never ran") }
            return kernel.addTask(name: "from-outside") { () -> Int in
                sawThread.withLock { $0 = pthread_self() }
                await evt.set()
                return 99
            }
        }
        let mainValue = try await KernelHarness.onThread { () -> Int in
            guard finished.wait(30) else { throw KernelHarness.Failure(description: "the kernel's run did not return") }
            return try mainResult.withLock { $0! }.get()
        }
        #expect(mainValue == 1)
        #expect(added.id == 2)
        #expect(added.name == "from-outside")
        #expect(added.parentID == nil)
        #expect(try added.result == 99)
        let k = try #require(kernelThread.withLock { $0 })
        let s = try #require(sawThread.withLock { $0 })
        #expect(pthread_equal(k, s) != 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func addTaskFromInsideATask() async throws {
        let r = try await KernelHarness.run { kernel -> (Int?, Int, Int?) in
            let me = try await currentTask()
            let t = kernel.addTask { () -> Int in
                try await Curio.sleep(0.001)
                return 4
            }
            return (t.parentID, me.id, try await t.join())
        }
        #expect(r.0 == r.1)
        #expect(r.2 == 4)
    }

    @Test(.timeLimit(.minutes(1)))
    func kernelCreatedOnOneThreadRunsOnAnother() async throws {
        let kernel = Kernel()
        let v = try await KernelHarness.onThread { () -> Int in
            let v = try kernel.run { () -> Int in
                try await Curio.sleep(0.001)
                let t = try await spawn { try await Curio.sleep(0); return 20 }
                return try await t.join()! + 1
            }
            try kernel.shutdown()
            return v
        }
        #expect(v == 21)
    }

    @Test(.timeLimit(.minutes(1)))
    func kernelCurrent() async throws {
        #expect(Kernel.current == nil)
        let r = try await KernelHarness.onThread { () -> (Bool, Bool, Bool, Bool) in
            let before = Kernel.current == nil
            let kernel = Kernel()
            let inside = try kernel.run { () -> Bool in
                let a = Kernel.current === kernel
                try await Curio.sleep(0.001)
                let t = try await spawn { Kernel.current === kernel }
                let joined = try await t.join()!
                return a && joined && Kernel.current === kernel
            }
            let after = Kernel.current == nil
            try kernel.shutdown()
            return (before, inside, after, Kernel.current == nil)
        }
        #expect(r.0)
        #expect(r.1)
        #expect(r.2)
        #expect(r.3)
    }

    /// True when the machine lets this process set up io_uring (the sysctl
    /// kernel.io_uring_disabled is 0 or absent) and the environment does
    /// not disable it.
    static var ioUringExpected: Bool {
        if let off = getenv("CURIO_DISABLE_IO_URING"), String(cString: off) != "", String(cString: off) != "0" {
            return false
        }
        let fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return true }
        return buf[0] == UInt8(ascii: "0")
    }

    @Test(.timeLimit(.minutes(1)))
    func backendOfThisBuild() {
        let kernel = Kernel()
        #if Epoll
        #expect(kernel.backend == .epoll)
        #expect(!ck_have_io_uring())
        #else
        #expect(ck_have_io_uring())
        if Self.ioUringExpected {
            #expect(kernel.backend == .ioUring)
        } else {
            #expect(kernel.backend == .epoll)
        }
        #endif
        #expect(Kernel.Backend.ioUring.description == "io_uring")
        #expect(Kernel.Backend.epoll.description == "epoll")
    }

    @Test(.timeLimit(.minutes(1)))
    func forcedFallbackToEpoll() async throws {
        let r = try await KernelHarness.runChild("backend", env: ["CURIO_DISABLE_IO_URING": "1"])
        #expect(r.status == 0, "child failed: \(r.stderr)")
        #expect(r.lines == ["BACKENDS epoll epoll 21", "END backend"])
        let message = "curio: io_uring is unavailable (disabled by CURIO_DISABLE_IO_URING); using the epoll backend"
        let count = r.stderr.split(separator: "\n").filter { $0 == message }.count
        #if Epoll
        // The epoll build never tries io_uring: nothing to fall back from.
        #expect(count == 0)
        #else
        #expect(count == 1, "the fallback is reported once per process; stderr: \(r.stderr)")
        #endif
    }

    @Test(.timeLimit(.minutes(1)))
    func ioUringWhenNotDisabled() async throws {
        let r = try await KernelHarness.runChild("backend", env: ["CURIO_DISABLE_IO_URING": "0"])
        #expect(r.status == 0, "child failed: \(r.stderr)")
        #if Epoll
        #expect(r.lines == ["BACKENDS epoll epoll 21", "END backend"])
        #else
        if Self.ioUringExpected {
            #expect(r.lines == ["BACKENDS io_uring io_uring 21", "END backend"])
            #expect(!r.stderr.contains("io_uring is unavailable"))
        }
        #endif
    }
}

// The test harness shared by the core test files (KernelTests, TaskTests,
// TimeTests, CancellationTests, SeedProgramTests): every kernel runs on a
// thread of its own, never on a thread of Swift's cooperative pool (blocking
// one would starve the test runner and its time limits), and every wait of
// the harness is bounded so a hang fails instead of hanging. Kernel tasks
// never call #expect (they run outside the test's task, where Swift Testing
// cannot attribute an issue): they return what they saw and the test
// function checks it.
import CCurioKernel
import Glibc
import Synchronization
import Testing

@testable import Curio
import CurioTestSupport

enum KernelHarness {
    /// A failure of the harness itself (a bound that ran out).
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// A thread-safe list of strings: what happened, in order.
    final class Log: Sendable {
        private let items = Locked<[String]>([])
        init() {}
        func add(_ s: String) { items.withLock { $0.append(s) } }
        var entries: [String] { items.withLock { $0 } }
    }

    /// A one-shot flag a plain thread can wait for with a bound.
    final class Flag: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var cond = pthread_cond_t()
        private var isSet = false
        init() {
            pthread_mutex_init(&mutex, nil)
            var attr = pthread_condattr_t()
            pthread_condattr_init(&attr)
            pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
            pthread_cond_init(&cond, &attr)
            pthread_condattr_destroy(&attr)
        }
        deinit {
            pthread_mutex_destroy(&mutex)
            pthread_cond_destroy(&cond)
        }
        func set() {
            pthread_mutex_lock(&mutex)
            isSet = true
            pthread_cond_broadcast(&cond)
            pthread_mutex_unlock(&mutex)
        }
        /// True once set; false when `seconds` pass first.
        func wait(_ seconds: Double) -> Bool {
            let deadline = monotonicNow() + seconds
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            while !isSet {
                let left = deadline - monotonicNow()
                if left <= 0 { return false }
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                let ns = Int(left * 1e9) + ts.tv_nsec
                ts.tv_sec += ns / 1_000_000_000
                ts.tv_nsec = ns % 1_000_000_000
                pthread_cond_timedwait(&cond, &mutex, &ts)
            }
            return true
        }
    }

    /// A rendezvous of `parties` threads, bounded: `arrive` returns false
    /// when the others do not all arrive within `seconds`.
    final class Rendezvous: @unchecked Sendable {
        private let parties: Int
        private let arrived = Locked(0)
        private let all = Flag()
        init(parties: Int) { self.parties = parties }
        func arrive(within seconds: Double) -> Bool {
            let n = arrived.withLock { v -> Int in
                v += 1
                return v
            }
            if n == parties { all.set() }
            return all.wait(seconds)
        }
    }

    static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Starts a detached pthread running `body`.
    static func startThread(_ body: @escaping @Sendable () -> Void) {
        TestThreads.start(body)
    }

    /// Runs `body` on a new thread and returns what it returns. Fails after
    /// `limit` seconds (the thread is then abandoned).
    static func onThread<T: Sendable>(limit: Double = 20,
                                      _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await TestThreads.onThread(limit: limit, body)
    }

    /// Runs `main` as the main task of a new kernel on a thread of its own,
    /// then shuts the kernel down; returns main's value.
    static func run<T: Sendable>(limit: Double = 20, configuration: Kernel.Configuration = .default,
                                 _ main: @escaping @Sendable (Kernel) async throws -> T) async throws -> T {
        try await onThread(limit: limit) {
            let kernel = Kernel(configuration: configuration)
            let result = Result { try kernel.run { try await main(kernel) } }
            try kernel.shutdown()
            return try result.get()
        }
    }

    /// Nanoseconds on the calling kernel's clock: exact on a virtual one
    /// (``runVirtual(limit:autojump:_:)``).
    static func clockNow() -> Int64 { CurioClock().now.nanoseconds }

    /// ``run(limit:configuration:_:)`` on a virtual clock (autojump
    /// `.zero`, scale 1): sleeps and timeouts take no real time and end in
    /// deadline order, at exactly their deadlines.
    static func runVirtual<T: Sendable>(limit: Double = 20, autojump: Duration? = .zero,
                                        _ main: @escaping @Sendable (Kernel) async throws -> T) async throws -> T {
        var c = Kernel.Configuration.default
        c.clock = .virtual(autojump: autojump)
        c.timeScale = 1
        return try await run(limit: limit, configuration: c, main)
    }

    /// Runs `main` as the main task of a fresh kernel (`Kernel().run`) on
    /// a thread of its own and returns main's value: what a test body does
    /// instead of running the kernel on its own thread, which is one of the
    /// two threads of Swift's cooperative pool.
    static func runMain<T: Sendable>(limit: Double = 55,
                                     _ main: @escaping @Sendable () async throws -> T) async throws -> T {
        try await onThread(limit: limit) { try Kernel().run(main) }
    }

    /// A short name for an error, for comparing what tasks saw.
    static func kind(_ error: any Error) -> String {
        if let u = error as? CurioUsageError { return "CurioUsageError.\(u.kind)" }
        if error is CancellationError { return "CancellationError" }
        return String(describing: type(of: error))
    }

    /// Busy-waits (without blocking the kernel) for `seconds`.
    static func spin(_ seconds: Double) {
        let end = monotonicNow() + seconds
        while monotonicNow() < end {}
    }
}

extension KernelHarness {
    /// Errors the tests' tasks throw.
    enum Boom: Error, Equatable, CustomStringConvertible {
        case boom, other
        var description: String { self == .boom ? "Boom.boom" : "Boom.other" }
    }
}

// MARK: - Child processes running one scenario of this test binary

extension KernelHarness {
    /// The scenario this process was started to run, if it is a child.
    static let childScenario: String? = getenv("CURIO_TEST_SCENARIO").map { String(cString: $0) }

    /// Every scenario a test may run in a child process (a fresh process:
    /// its own environment, its own stderr, once-per-process messages).
    static let scenarios: [String: @Sendable () throws -> Void] = [
        "backend": scenarioBackend,
        "unjoined-errors": scenarioUnjoinedErrors,
        "main-thread-kernel": scenarioMainThreadKernel,
        "fd-exhaustion": scenarioDescriptorExhaustion,
    ]

    /// Prints the backends of two kernels and runs a little work on one.
    static func scenarioBackend() throws {
        let a = Kernel()
        let b = Kernel()
        let v = try a.run {
            try await Curio.sleep(0.001)
            let t = try await spawn { try await Curio.sleep(0); return 20 }
            return try await t.join()! + 1
        }
        childSay("BACKENDS \(a.backend) \(b.backend) \(v)")
    }

    /// Writes one line to stdout at once (stdout is a pipe in the child).
    static func childSay(_ line: String) {
        print("SCENARIO: " + line)
        fflush(nil)
    }
}

/// Runs a scenario when this test binary was started as a child by
/// `KernelHarness.runChild`; skipped otherwise.
@Test(.enabled(if: KernelHarness.childScenario != nil), .timeLimit(.minutes(1)))
func subprocessScenario() throws {
    let name = KernelHarness.childScenario!
    let body = try #require(KernelHarness.scenarios[name], "unknown scenario \(name)")
    try body()
    KernelHarness.childSay("END \(name)")
}

extension KernelHarness {
    /// Runs this test binary again with only `subprocessScenario` selected
    /// and CURIO_TEST_SCENARIO=name; returns its stdout lines that the
    /// scenario printed (without the "SCENARIO: " prefix) and its stderr.
    static func runChild(_ name: String, env extra: [String: String?] = [:],
                         limit: Double = 30) async throws -> (lines: [String], stderr: String, status: Int32) {
        var unscaled = extra
        if unscaled.index(forKey: "CURIO_TIME_SCALE") == nil { unscaled["CURIO_TIME_SCALE"] = .some(nil) }
        let env = TestScenarios.environment(selecting: "CURIO_TEST_SCENARIO", name, unscaled)
        let p = try ChildProcess(path: try TestScenarios.selfExecutable(),
                                 arguments: TestScenarios.arguments(running: "subprocessScenario"),
                                 environment: env.mapValues { Optional($0) }, stdoutIsTerminal: false)
        let out = try await p.readAll(limit: limit)
        let lines = out.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            .compactMap { $0.hasPrefix("SCENARIO: ") ? String($0.dropFirst(10)) : nil }
        return (lines, out.stderr, out.status)
    }

    static func selfExecutable() throws -> String { try TestScenarios.selfExecutable() }

    static func currentEnvironment() -> [String: String] { TestScenarios.currentEnvironment() }
}

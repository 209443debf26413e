// Signals: SignalSet.wait returns the number; signals arriving between two
// waits inside watch {} are queued, not lost; leaving the scope (or a plain
// wait ending, timing out, being cancelled or failing) restores the previous
// disposition; a waiting task shows SIGNAL_WAIT; uncatchable signals, bad
// numbers and calls outside a kernel give a clear CurioUsageError;
// SignalEvent; signalName/signalNumber.
//
// Dispositions are process-wide, so every test that watches or sends a
// signal holds `BridgeTest.signalGate` (also used by
// SeedSignalProgramTests), and signals are only ever sent while the test's
// own set is known to watch them (its waiter shows SIGNAL_WAIT, or the
// handler is seen installed): an unwatched SIGUSR2 or SIGHUP would end the
// test process. Only SIGUSR2, SIGHUP and SIGWINCH are used (SIGINT belongs
// to the monitor, SIGUSR1 to the task dump).
//
// Also the helpers shared by this concern's test files (SignalTests,
// SeedSignalProgramTests, WorkerTests, UniversalTests, ProcessTests,
// FileTests): `BridgeTest`.
import CCurioKernel
import Glibc
import Synchronization
import CurioTestSupport
import Testing

@testable import Curio

// MARK: - Shared helpers

enum BridgeTest {
    /// A FIFO async lock, for tests that change process-wide state (signal
    /// dispositions) and so must not overlap, whatever suite they are in.
    actor Gate {
        private var busy = false
        private var waiters: [CheckedContinuation<Void, Never>] = []

        func acquire() async {
            if !busy {
                busy = true
                return
            }
            await withCheckedContinuation { waiters.append($0) }
        }

        func release() {
            if waiters.isEmpty {
                busy = false
            } else {
                waiters.removeFirst().resume()
            }
        }

        nonisolated func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
            await acquire()
            do {
                let r = try await body()
                await release()
                return r
            } catch {
                await release()
                throw error
            }
        }
    }

    /// Held by every test that watches or sends a signal.
    static let signalGate = Gate()

    /// The raw handler of `sig`: 0 for SIG_DFL, 1 for SIG_IGN, else an
    /// address.
    static func handlerBits(_ sig: Int32) -> UInt {
        var sa = sigaction()
        sigaction(sig, nil, &sa)
        return unsafeBitCast(sa.__sigaction_handler.sa_handler, to: UInt.self)
    }

    static let SIG_DFL_BITS: UInt = 0
    static let SIG_IGN_BITS: UInt = 1

    /// Sets `sig`'s handler to SIG_DFL (bits 0) or SIG_IGN (bits 1).
    static func setHandler(_ sig: Int32, _ bits: UInt) {
        var sa = sigaction()
        sigemptyset(&sa.sa_mask)
        sa.__sigaction_handler.sa_handler = unsafeBitCast(bits, to: sighandler_t?.self)
        sigaction(sig, &sa, nil)
    }

    /// Runs `main` on a new kernel (``KernelHarness/run(limit:_:)``) whose
    /// thread accepts the test signals. Threads started from Swift's
    /// concurrency pool inherit its mask, which blocks signals: there
    /// `raise()` would leave the signal pending on the thread instead of
    /// running the handler before it returns.
    static func run<T: Sendable>(limit: Double = 30,
                                 _ main: @escaping @Sendable (Kernel) async throws -> T) async throws -> T {
        try await KernelHarness.run(limit: limit) { k in
            var set = sigset_t()
            sigemptyset(&set)
            for sig in [SIGUSR2, SIGHUP, SIGWINCH] { sigaddset(&set, sig) }
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            return try await main(k)
        }
    }

    /// Inside a kernel task: yields, then sleeps 1 ms at a time, until
    /// `condition` holds or `seconds` pass → whether it held.
    static func poll(_ seconds: Double = 10, _ condition: () -> Bool) async throws -> Bool {
        let end = KernelHarness.monotonicNow() + seconds
        var rounds = 0
        while !condition() {
            if KernelHarness.monotonicNow() > end { return false }
            if rounds < 200 { try await Curio.sleep(0) } else { try await Curio.sleep(0.001) }
            rounds += 1
        }
        return true
    }

    /// Joins `task` for at most `seconds`; on timeout cancels it (so that
    /// it stops watching) and returns nil.
    static func joinOrCancel<T>(_ task: CurioTask<T>, _ seconds: Double = 10) async throws -> T? {
        do {
            return try await task.join(timeout: seconds)
        } catch is TaskTimeout {
            try await task.cancel()
            return nil
        }
    }

    /// True when kernels of this build and machine use epoll.
    static let usesEpoll: Bool = Kernel().backend == .epoll

    /// A known bug of the epoll backend (CSources/CCurioKernel/kernel.c,
    /// not one of this concern's sources).
    /// What an error is, in short, for comparing what tasks saw.
    static func describe(_ error: any Error) -> String {
        if let u = error as? CurioUsageError { return "CurioUsageError.\(u.kind): \(u.message)" }
        if error is CancelledError { return "CancelledError" }
        return "\(type(of: error)): \(error)"
    }
}

// MARK: - Scenarios run in a child copy of this test binary

extension BridgeTest {
    /// The scenario this process was started to run, if it is such a child.
    static let childScenario: String? = getenv("CURIO_BRIDGE_CHILD").map { String(cString: $0) }

    /// Scenarios that would take the whole test process down when they
    /// fail (a crash, a fatal signal), so they run in a child.
    static let scenarios: [String: @Sendable () async throws -> String] = [
        "signal-event-shutdown": signalEventShutdownScenario,
        "sigpipe": sigpipeScenario,
    ]

    /// Runs this test binary again with only `bridgeChildScenario`
    /// selected and CURIO_BRIDGE_CHILD=name → what the scenario returned
    /// (nil if it printed nothing), the wait status and the output.
    static func runChild(_ name: String, limit: Double = 40) async throws
        -> (result: String?, status: Int32, stdout: String, stderr: String) {
        let env = TestScenarios.environment(selecting: "CURIO_BRIDGE_CHILD", name)
        let p = try KernelHarness.ChildProcess(path: try TestScenarios.selfExecutable(),
                                               arguments: TestScenarios.arguments(running: "bridgeChildScenario"),
                                               environment: env.mapValues { Optional($0) }, stdoutIsTerminal: false)
        let out = try await p.readAll(limit: limit)
        let line = out.stdout.split(separator: "\n").first { $0.hasPrefix("BRIDGE-CHILD: ") }
        return (line.map { String($0.dropFirst(14)) }, out.status, out.stdout, out.stderr)
    }

    /// A SignalEvent dropped without close(): the kernel's shutdown cancels
    /// its watcher task, which must give the disposition back.
    static func signalEventShutdownScenario() async throws -> String {
        let during = try await BridgeTest.run { _ -> Int32 in
            let ev = try await SignalEvent(SIGUSR2)
            _ = try await BridgeTest.poll { ck_signal_watchers(SIGUSR2) > 0 }
            _ = ev
            return ck_signal_watchers(SIGUSR2)
        }
        let dfl = BridgeTest.handlerBits(SIGUSR2) == BridgeTest.SIG_DFL_BITS
        return "during \(during) after \(ck_signal_watchers(SIGUSR2)) default \(dfl)"
    }
}

/// Runs a `BridgeTest` scenario when this test binary was started as a
/// child by `BridgeTest.runChild`; skipped otherwise.
@Test(.enabled(if: BridgeTest.childScenario != nil), .timeLimit(.minutes(1)))
func bridgeChildScenario() async throws {
    let name = BridgeTest.childScenario!
    let body = try #require(BridgeTest.scenarios[name], "unknown scenario \(name)")
    let r = try await body()
    print("BRIDGE-CHILD: \(r)")
    fflush(nil)
}

// MARK: - Tests

@Suite(.serialized, .timeLimit(.minutes(1)))
struct SignalTests {
    @Test(.timeLimit(.minutes(1)))
    func waitReturnsTheNumberAndTheWaiterShowsSignalWait() async throws {
        try await BridgeTest.signalGate.run {
            let before = BridgeTest.handlerBits(SIGUSR2)
            let r = try await BridgeTest.run { _ -> (Bool, String, String, Int32??, UInt) in
                let set = SignalSet(SIGUSR2)
                let waiter = try await spawn(name: "waiter") { try await set.wait() }
                let waiting = try await BridgeTest.poll { waiter.state == .signalWait }
                let state = waiter.state.description
                let site = waiter.currentCallSite?.function.description ?? "none"
                let during = BridgeTest.handlerBits(SIGUSR2)
                if waiting { kill(getpid(), SIGUSR2) }
                let got = try await BridgeTest.joinOrCancel(waiter)
                return (waiting, state, site, got, during)
            }
            let after = BridgeTest.handlerBits(SIGUSR2)
            #expect(r.0, "the waiter never showed SIGNAL_WAIT")
            #expect(r.1 == "SIGNAL_WAIT")
            #expect(r.2.hasPrefix("waitReturnsTheNumber"), "call site: \(r.2)")
            #expect(r.3 == .some(.some(SIGUSR2)), "wait returned \(String(describing: r.3))")
            #expect(r.4 != before, "SIGUSR2 was not caught while waited for")
            #expect(after == before, "the disposition was not restored")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func signalsBetweenWaitsInsideWatchAreQueued() async throws {
        try await BridgeTest.signalGate.run {
            let before = BridgeTest.handlerBits(SIGUSR2)
            let r = try await BridgeTest.run { _ -> ([Int32?], Bool, UInt) in
                let set = SignalSet(SIGUSR2)
                let notWaiting = Event()
                let sent = Event()
                let waiter = try await spawn(name: "watcher") { () -> [Int32?] in
                    try await set.watch {
                        var got: [Int32?] = []
                        got.append(try await set.wait(timeout: 10))
                        // Not waiting now: the next two signals arrive between waits.
                        await notWaiting.set()
                        try await sent.wait()
                        // Give the signal thread a moment to queue them before
                        // waiting again (correctness does not depend on it:
                        // lost signals would make the waits below time out).
                        try await Curio.sleep(0.05)
                        got.append(try await set.wait(timeout: 10))
                        got.append(try await set.wait(timeout: 10))
                        got.append(try await set.wait(timeout: 0.05))
                        return got
                    }
                }
                let waiting = try await BridgeTest.poll { waiter.state == .signalWait }
                if waiting { kill(getpid(), SIGUSR2) }
                try await notWaiting.wait()
                // Still watched although nobody waits.
                let watched = BridgeTest.handlerBits(SIGUSR2)
                // raise() runs the handler before it returns: two separate
                // deliveries, never merged into one pending signal.
                raise(SIGUSR2)
                raise(SIGUSR2)
                await sent.set()
                let got = try await BridgeTest.joinOrCancel(waiter) ?? []
                return (got, waiting, watched)
            }
            #expect(r.1)
            #expect(r.0 == [SIGUSR2, SIGUSR2, SIGUSR2, nil], "got \(r.0)")
            #expect(r.2 != before, "the signal was not caught between waits inside watch")
            #expect(BridgeTest.handlerBits(SIGUSR2) == before)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func severalSignalsOfOneSetQueueInOrder() async throws {
        try await BridgeTest.signalGate.run {
            let r = try await BridgeTest.run { _ -> [Int32?] in
                let set = SignalSet(SIGUSR2, SIGWINCH, SIGHUP)
                return try await set.watch {
                    raise(SIGWINCH)
                    raise(SIGUSR2)
                    raise(SIGHUP)
                    raise(SIGWINCH)
                    var got: [Int32?] = []
                    for _ in 0..<4 { got.append(try await set.wait(timeout: 5)) }
                    got.append(try await set.wait(timeout: 0.05))
                    return got
                }
            }
            #expect(r == [SIGWINCH, SIGUSR2, SIGHUP, SIGWINCH, nil], "got \(r)")
            #expect(BridgeTest.handlerBits(SIGUSR2) == BridgeTest.SIG_DFL_BITS)
            #expect(BridgeTest.handlerBits(SIGHUP) == BridgeTest.SIG_DFL_BITS)
            #expect(BridgeTest.handlerBits(SIGWINCH) == BridgeTest.SIG_DFL_BITS)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func leavingTheScopeRestoresThePreviousDisposition() async throws {
        try await BridgeTest.signalGate.run {
            // SIGWINCH starts at SIG_DFL; SIGUSR2 is set to SIG_IGN for this
            // test (and back to SIG_DFL after it).
            let winchBefore = BridgeTest.handlerBits(SIGWINCH)
            let usr2Original = BridgeTest.handlerBits(SIGUSR2)
            BridgeTest.setHandler(SIGUSR2, BridgeTest.SIG_IGN_BITS)
            defer { BridgeTest.setHandler(SIGUSR2, usr2Original) }
            let r = try await BridgeTest.run { _ -> [String: UInt] in
                var seen: [String: UInt] = [:]
                let set = SignalSet(SIGWINCH, SIGUSR2)
                try await set.watch {
                    seen["outer winch"] = BridgeTest.handlerBits(SIGWINCH)
                    seen["outer usr2"] = BridgeTest.handlerBits(SIGUSR2)
                    try await set.watch {
                        seen["inner usr2"] = BridgeTest.handlerBits(SIGUSR2)
                    }
                    // The inner scope ended; the outer one still watches.
                    seen["after inner usr2"] = BridgeTest.handlerBits(SIGUSR2)
                    // A wait inside the scope does not end the watch either.
                    _ = try await set.wait(timeout: 0.01)
                    seen["after wait usr2"] = BridgeTest.handlerBits(SIGUSR2)
                }
                seen["after winch"] = BridgeTest.handlerBits(SIGWINCH)
                seen["after usr2"] = BridgeTest.handlerBits(SIGUSR2)
                // A scope left by an error restores too.
                struct Out: Error {}
                do {
                    try await set.watch { throw Out() }
                } catch is Out {}
                seen["after throw usr2"] = BridgeTest.handlerBits(SIGUSR2)
                seen["after throw winch"] = BridgeTest.handlerBits(SIGWINCH)
                // A plain wait that times out restores.
                _ = try await set.wait(timeout: 0.01)
                seen["after timeout usr2"] = BridgeTest.handlerBits(SIGUSR2)
                // A plain wait that is cancelled restores.
                let w = try await spawn { try await SignalSet(SIGUSR2).wait() }
                let cancelledIsWaiting = try await BridgeTest.poll { w.state == .signalWait }
                if cancelledIsWaiting {
                    seen["during cancelled wait usr2"] = BridgeTest.handlerBits(SIGUSR2)
                }
                try await w.cancel()
                seen["after cancel usr2"] = BridgeTest.handlerBits(SIGUSR2)
                return seen
            }
            let ign = BridgeTest.SIG_IGN_BITS
            for key in ["outer usr2", "inner usr2", "after inner usr2", "after wait usr2",
                        "during cancelled wait usr2"] {
                #expect(r[key] != nil && r[key] != ign, "\(key): \(String(describing: r[key]))")
            }
            #expect(r["outer winch"] != winchBefore)
            #expect(r["after winch"] == winchBefore)
            #expect(r["after throw winch"] == winchBefore)
            for key in ["after usr2", "after throw usr2", "after timeout usr2", "after cancel usr2"] {
                #expect(r[key] == ign, "\(key): \(String(describing: r[key])) (expected SIG_IGN)")
            }
            #expect(BridgeTest.handlerBits(SIGWINCH) == winchBefore)
        }
        #expect(BridgeTest.handlerBits(SIGUSR2) == BridgeTest.SIG_DFL_BITS)
    }

    @Test(.timeLimit(.minutes(1)))
    func waitTimeoutReturnsNil() async throws {
        try await BridgeTest.signalGate.run {
            let r = try await BridgeTest.run { _ -> (Int32?, Double, String) in
                let t0 = KernelHarness.monotonicNow()
                let got = try await SignalSet(SIGWINCH).wait(timeout: 0.1)
                let took = KernelHarness.monotonicNow() - t0
                var bad = "nothing thrown"
                do {
                    _ = try await SignalSet(SIGWINCH).wait(timeout: -1)
                } catch {
                    bad = BridgeTest.describe(error)
                }
                return (got, took, bad)
            }
            #expect(r.0 == nil)
            #expect(r.1 >= 0.09 && r.1 < 5, "wait(timeout: 0.1) took \(r.1) s")
            #expect(r.2.hasPrefix("CurioUsageError.invalidTimeout"), "\(r.2)")
            #expect(BridgeTest.handlerBits(SIGWINCH) == BridgeTest.SIG_DFL_BITS)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func uncatchableSignalsAndBadNumbersGiveAClearError() async throws {
        try await BridgeTest.signalGate.run {
            let r = try await BridgeTest.run { _ -> [String] in
                var seen: [String] = []
                for sigs in [[SIGKILL], [SIGSTOP], [0], [-1], [65], [1000], [], [SIGWINCH, SIGKILL]] {
                    let set = SignalSet(sigs)
                    do {
                        _ = try await set.wait(timeout: 0.01)
                        seen.append("\(sigs): wait returned")
                    } catch {
                        seen.append(BridgeTest.describe(error))
                    }
                    var ran = false
                    do {
                        try await set.watch { ran = true }
                        seen.append("\(sigs): watch returned")
                    } catch {
                        seen.append("watch " + BridgeTest.describe(error) + (ran ? " (body ran)" : ""))
                    }
                }
                return seen
            }
            #expect(r.count == 16, "\(r)")
            guard r.count == 16 else { return }
            for i in [0, 1, 2, 3, 14, 15] {
                #expect(r[i].contains("CurioUsageError.invalidArgument") && r[i].contains("cannot be caught"), "\(r[i])")
                #expect(!r[i].contains("body ran"))
            }
            #expect(r[0].contains("SIGKILL") && r[1].contains("SIGKILL"))
            #expect(r[2].contains("SIGSTOP") && r[3].contains("SIGSTOP"))
            #expect(r[14].contains("SIGKILL"))
            for i in 4..<12 {
                #expect(r[i].contains("CurioUsageError.invalidArgument") && r[i].contains("not a valid signal number"), "\(r[i])")
            }
            #expect(r[4].contains("0 is not"))
            #expect(r[6].contains("-1 is not"))
            #expect(r[10].contains("1000 is not"))
            for i in [12, 13] {
                #expect(r[i].contains("CurioUsageError.invalidArgument") && r[i].contains("at least one signal"), "\(r[i])")
            }
            // The set that failed half way gave SIGWINCH back.
            #expect(BridgeTest.handlerBits(SIGWINCH) == BridgeTest.SIG_DFL_BITS)
            #expect(ck_signal_watchers(SIGWINCH) == 0)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func outsideAKernelIsAUsageError() async throws {
        await expectSyncUsageError(.notInKernel) { _ = try await SignalSet(SIGWINCH).wait(timeout: 0.01) }
        await expectSyncUsageError(.notInKernel) { try await SignalSet(SIGWINCH).watch {} }
    }

    @Test(.timeLimit(.minutes(1)))
    func twoSetsAndTwoWaitersOfOneSignal() async throws {
        try await BridgeTest.signalGate.run {
            let r = try await BridgeTest.run { _ -> ([Int32?], Int32?, Int32) in
                let a = SignalSet(SIGUSR2)
                let b = SignalSet(SIGUSR2, SIGWINCH)
                // Two waiters on `a`: one signal wakes one of them.
                let w1 = try await spawn { try await a.watch { try await a.wait(timeout: 10) } }
                let w2 = try await spawn { try await a.watch { try await a.wait(timeout: 10) } }
                // One waiter on `b`, which sees every SIGUSR2 too.
                let w3 = try await spawn { try await b.wait(timeout: 10) }
                let ok = try await BridgeTest.poll {
                    [w1.state, w2.state, w3.state].allSatisfy { $0 == .signalWait }
                }
                if ok { kill(getpid(), SIGUSR2) }
                let third = try await BridgeTest.joinOrCancel(w3) ?? nil
                let firstDone = try await BridgeTest.poll { w1.terminated || w2.terminated }
                let one = firstDone && !w1.terminated ? w2 : w1
                let other = one === w1 ? w2 : w1
                let got1 = try await BridgeTest.joinOrCancel(one) ?? nil
                // The other one still waits; a second signal wakes it.
                let stillWaiting = other.state == .signalWait
                if stillWaiting { kill(getpid(), SIGUSR2) }
                let got2 = try await BridgeTest.joinOrCancel(other) ?? nil
                return ([got1, got2, stillWaiting ? 1 : 0], third, ck_signal_watchers(SIGUSR2))
            }
            #expect(r.0 == [SIGUSR2, SIGUSR2, 1], "\(r.0)")
            #expect(r.1 == SIGUSR2)
            #expect(r.2 == 0, "SIGUSR2 still has \(r.2) watchers")
            #expect(BridgeTest.handlerBits(SIGUSR2) == BridgeTest.SIG_DFL_BITS)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func signalEventIsSetByASignal() async throws {
        try await BridgeTest.signalGate.run {
            let r = try await BridgeTest.run { _ -> [String] in
                var seen: [String] = []
                let ev = try await SignalEvent(SIGWINCH)
                seen.append("isSet \(ev.isSet)")
                let waiter = try await spawn { try await ev.wait(timeout: 10) }
                // The event's watcher task installs the handler when it runs.
                let watched = try await BridgeTest.poll {
                    ck_signal_watchers(SIGWINCH) > 0 && waiter.state == .eventWait
                }
                seen.append("watched \(watched)")
                kill(getpid(), SIGWINCH)  // SIG_DFL of SIGWINCH is to ignore it
                seen.append("woken \(try await BridgeTest.joinOrCancel(waiter) ?? false)")
                seen.append("isSet \(ev.isSet)")
                ev.clear()
                seen.append("cleared \(ev.isSet)")
                seen.append("timeout \(try await ev.wait(timeout: 0.02))")
                // Set again by the next signal.
                raise(SIGWINCH)
                seen.append("again \(try await ev.wait(timeout: 10))")
                try await ev.close()
                seen.append("watchers \(ck_signal_watchers(SIGWINCH))")
                return seen
            }
            #expect(r == ["isSet false", "watched true", "woken true", "isSet true", "cleared false",
                          "timeout false", "again true", "watchers 0"])
            #expect(BridgeTest.handlerBits(SIGWINCH) == BridgeTest.SIG_DFL_BITS)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func signalEventStopsWatchingWhenItsKernelShutsDown() async throws {
        let r = try await BridgeTest.runChild("signal-event-shutdown")
        // (A task ending with no handle left, as this watcher cancelled by
        // the shutdown, once crashed the kernel: it runs in a child.)
        #expect(KernelHarness.killSignal(r.status) == nil,
                "the child died of signal \(KernelHarness.killSignal(r.status) ?? 0): \(r.stderr.suffix(2000))")
        #expect(r.result == "during 1 after 0 default true", "\(r.stdout)")
    }

    @Test(.timeLimit(.minutes(1)))
    func signalNamesAndNumbers() {
        #expect(signalName(SIGHUP) == "SIGHUP")
        #expect(signalName(SIGUSR2) == "SIGUSR2")
        #expect(signalName(SIGWINCH) == "SIGWINCH")
        #expect(signalName(SIGKILL) == "SIGKILL")
        #expect(signalName(40) == "signal 40")
        #expect(signalName(0) == "signal 0")
        #expect(signalNumber("SIGHUP") == SIGHUP)
        #expect(signalNumber("HUP") == SIGHUP)
        #expect(signalNumber("sighup") == SIGHUP)
        #expect(signalNumber("usr2") == SIGUSR2)
        #expect(signalNumber("SIGWINCH") == SIGWINCH)
        #expect(signalNumber("INT") == SIGINT)
        #expect(signalNumber("NOPE") == nil)
        #expect(signalNumber("") == nil)
        #expect(signalNumber("SIG") == nil)
        for sig in Int32(1)..<32 where !signalName(sig).hasPrefix("signal ") {
            #expect(signalNumber(signalName(sig)) == sig, "\(signalName(sig))")
        }
    }
}

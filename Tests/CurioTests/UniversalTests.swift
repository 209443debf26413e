// UniversalQueue and UniversalEvent across kernel tasks, plain threads and
// Swift tasks on the global executor, and kernel.post / postBlocking.
//
// The stress test pushes 100,000 items from 8 plain threads and 8 Curio
// tasks (of a second kernel) through one UniversalQueue to Curio tasks of a
// kernel, some cancelled at random (seeded) while they wait, and to plain
// threads in blockingGet: every item must arrive exactly once, including
// the items handed to a getter that was cancelled before it could take
// them. Every wait is bounded; threads end on sentinels (-1).
import Glibc
import Synchronization
import Testing

@testable import Curio

private typealias Boom = KernelHarness.Boom

/// SplitMix64, seeded: a failing schedule can be replayed from its seed.
private struct UniRNG: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How many times each item arrived.
private final class Tally: Sendable {
    private let counts: Locked<[UInt8]>
    private let others = Locked<[Int]>([])
    init(_ n: Int) { counts = Locked([UInt8](repeating: 0, count: n)) }
    func record(_ v: Int) {
        let ok = counts.withLock { c -> Bool in
            guard v >= 0 && v < c.count else { return false }
            c[v] &+= 1
            return true
        }
        if !ok { others.withLock { $0.append(v) } }
    }
    /// (items never seen, items seen more than once, out-of-range values)
    func check() -> (missing: [Int], duplicated: [Int], strange: [Int]) {
        let c = counts.withLock { $0 }
        var missing: [Int] = [], dup: [Int] = []
        for (i, n) in c.enumerated() {
            if n == 0 { missing.append(i) } else if n > 1 { dup.append(i) }
        }
        return (missing, dup, others.withLock { $0 })
    }
}

/// A countdown a plain thread or an async test can wait for.
private final class Countdown: Sendable {
    private let left: Locked<Int>
    let done = UniversalEvent()
    init(_ n: Int) {
        left = Locked(n)
        if n == 0 { done.set() }
    }
    func tick() {
        if left.withLock({ v -> Int in v -= 1; return v }) == 0 { done.set() }
    }
}

/// The calling thread's id (readlink /proc/thread-self → "PID/task/TID").
private func currentTID() -> Int32 {
    var buf = [CChar](repeating: 0, count: 64)
    let n = readlink("/proc/thread-self", &buf, buf.count - 1)
    guard n > 0 else { return -1 }
    let s = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return Int32(s.split(separator: "/").last ?? "") ?? -1
}

/// The state of thread `tid` of this process ("S" when asleep).
private func threadState(_ tid: Int32) -> Character? {
    guard let f = fopen("/proc/self/task/\(tid)/stat", "re") else { return nil }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 512)
    guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
    let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let paren = s.lastIndex(of: ")") else { return nil }
    return s[s.index(paren, offsetBy: 2)...].first
}

/// Waits (blocking, bounded) until thread `tid` sleeps.
private func waitUntilAsleep(_ tid: Int32, within seconds: Double = 10) -> Bool {
    let end = KernelHarness.monotonicNow() + seconds
    while KernelHarness.monotonicNow() < end {
        if threadState(tid) == "S" { return true }
        usleep(500)
    }
    return false
}

@Suite(.timeLimit(.minutes(1)))
struct UniversalTests {
    // MARK: UniversalQueue

    @Test(.timeLimit(.minutes(1)))
    func hundredThousandItemsFromThreadsAndTasksArriveExactlyOnce() async throws {
        let total = 100_000
        let producerThreads = 8, producerTasks = 8
        let perProducer = total / (producerThreads + producerTasks)
        let curioConsumers = 8, threadConsumers = 4
        let q = UniversalQueue<Int>()
        let tally = Tally(total)
        let producersDone = Countdown(producerThreads + 1)
        let threadConsumersDone = Countdown(threadConsumers)
        let threadTimeouts = Atomic<Int>(0)
        let byThreads = Atomic<Int>(0)
        let byTasks = Atomic<Int>(0)

        // Plain-thread consumers: blockingGet until a sentinel.
        for _ in 0..<threadConsumers {
            KernelHarness.startThread {
                while true {
                    guard let v = try? q.blockingGet(timeout: 40) else {
                        threadTimeouts.add(1, ordering: .relaxed)
                        break
                    }
                    if v == -1 { break }
                    tally.record(v)
                    byThreads.add(1, ordering: .relaxed)
                }
                threadConsumersDone.tick()
            }
        }

        // Curio consumers, cancelled at random while they wait, replaced.
        struct ConsumerReport: Sendable {
            var cancelled = 0
            var cancelledHolding = 0
            var ended = 0
            var finishedInTime = false
            var left = 0
        }
        async let consumers: ConsumerReport = KernelHarness.run(limit: 55) { _ -> ConsumerReport in
            @Sendable func consume() async throws -> Bool {
                do {
                    while true {
                        let v = try await q.get()
                        if v == -1 { return true }
                        tally.record(v)
                        byTasks.add(1, ordering: .relaxed)
                    }
                } catch is CancelledError {
                    return false
                }
            }
            var report = ConsumerReport()
            var live: [CurioTask<Bool>] = []
            for _ in 0..<curioConsumers { live.append(try await spawn(name: "consumer", consume)) }
            var rng = UniRNG(seed: 0xC0FFEE)
            let giveUp = KernelHarness.monotonicNow() + 20
            while (!producersDone.done.isSet || report.cancelled < 20) && KernelHarness.monotonicNow() < giveUp {
                let i = Int.random(in: 0..<live.count, using: &rng)
                if live[i].state == .queueGet && Int.random(in: 0..<4, using: &rng) == 0 {
                    // Now and then an item is already on its way to a waiter
                    // (the first in line, often this one) when it is
                    // cancelled: a marker, -2, counted like any item.
                    if Int.random(in: 0..<3, using: &rng) == 0 && q.isEmpty {
                        try await q.put(-2)
                        report.cancelledHolding += 1
                    }
                    try await live[i].cancel()
                    report.cancelled += 1
                    live[i] = try await spawn(name: "consumer", consume)
                }
                if Int.random(in: 0..<2, using: &rng) == 0 {
                    try await Curio.sleep(0)
                } else {
                    try await Curio.sleep(0.0002)
                }
            }
            // Every item is in; one sentinel per consumer left.
            for _ in 0..<(curioConsumers + threadConsumers) { try await q.put(-1) }
            for t in live {
                if try await BridgeTest.joinOrCancel(t, 40) == true { report.ended += 1 }
            }
            report.finishedInTime = try await ignoreAfter(40) { try await threadConsumersDone.done.wait(); return true } ?? false
            report.left = q.count
            return report
        }

        // Producers: 8 plain threads and 8 tasks of another kernel.
        for p in 0..<producerThreads {
            KernelHarness.startThread {
                let base = p * perProducer
                // Paced (about 0.25 s in all) so that getters keep
                // waiting, being handed items and being cancelled.
                for i in 0..<perProducer {
                    q.put(base + i)
                    if i % 25 == 24 { usleep(1000) }
                }
                producersDone.tick()
            }
        }
        try await KernelHarness.run(limit: 55) { _ in
            var tasks: [CurioTask<Void>] = []
            for p in 0..<producerTasks {
                tasks.append(try await spawn {
                    let base = (producerThreads + p) * perProducer
                    for i in 0..<perProducer {
                        try await q.put(base + i)
                        if i % 25 == 24 { try await Curio.sleep(0.001) }
                    }
                })
            }
            for t in tasks { try await t.join() }
        }
        producersDone.tick()

        let report = try await consumers
        let check = tally.check()
        #expect(check.missing.count == 0, "\(check.missing.count) items never arrived, e.g. \(check.missing.prefix(10))")
        #expect(check.duplicated.count == 0, "\(check.duplicated.count) items arrived twice, e.g. \(check.duplicated.prefix(10))")
        // The -2 markers put for cancelled getters: each arrived once, as
        // every other item.
        #expect(check.strange.count == report.cancelledHolding && check.strange.allSatisfy { $0 == -2 },
                "\(check.strange.count) markers arrived, \(report.cancelledHolding) were put")
        #expect(report.cancelled >= 20, "only \(report.cancelled) getters were cancelled while waiting")
        #expect(report.ended == curioConsumers)
        // The thread consumers' last set() must wake the idle kernel.
        #expect(report.finishedInTime, "thread consumers still waiting; \(report.left) items left in the queue, \(threadTimeouts.load(ordering: .relaxed)) thread timeouts")
        #expect(threadTimeouts.load(ordering: .relaxed) == 0)
        #expect(q.isEmpty, "\(q.count) items left in the queue")
        let tasksGot = byTasks.load(ordering: .relaxed), threadsGot = byThreads.load(ordering: .relaxed)
        #expect(tasksGot > 0 && threadsGot > 0, "tasks got \(tasksGot), threads \(threadsGot)")
        print("UniversalQueue stress: tasks got \(tasksGot), threads \(threadsGot); \(report.cancelled) getters cancelled, \(report.cancelledHolding) markers")
    }

    @Test(.timeLimit(.minutes(1)))
    func anItemHandedToACancelledGetterGoesToTheNextOne() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let q = UniversalQueue<String>()
            let a = try await spawn(name: "a") { try await q.get() }
            let b = try await spawn(name: "b") { try await q.get() }
            _ = try await BridgeTest.poll { a.state == .queueGet && b.state == .queueGet }
            // Handed to `a` (its wake-up is posted), then `a` is cancelled
            // before it runs: the item must go on to `b`.
            try await q.put("x")
            try await a.cancel()
            seen.append("a \(String(describing: try await a.join()))")
            seen.append("b \(try await BridgeTest.joinOrCancel(b, 10) ?? "nothing")")
            // The same with nobody else waiting: the item goes back in front.
            let c = try await spawn(name: "c") { try await q.get() }
            _ = try await BridgeTest.poll { c.state == .queueGet }
            try await q.put("y")
            try await q.put("z")
            try await c.cancel()
            seen.append("c \(String(describing: try await c.join())) count \(q.count)")
            let y = try await timeoutAfter(5) { try await q.get() }
            let z = try await timeoutAfter(5) { try await q.get() }
            seen.append("then \(y) \(z)")
            return seen
        }
        #expect(r == ["a nil", "b x", "c nil count 2", "then y z"])
    }

    @Test(.timeLimit(.minutes(1)))
    func swiftTasksOnTheGlobalExecutorGetAndAreCancelled() async throws {
        let total = 20_000
        let getters = 40
        let q = UniversalQueue<Int>()
        let tally = Tally(total)
        // Swift tasks: get until a sentinel or until cancelled.
        var tasks: [Task<String, Never>] = []
        for _ in 0..<getters {
            tasks.append(Task.detached {
                while true {
                    do {
                        let v = try await q.get()
                        if v < 0 { return "sentinel" }
                        tally.record(v)
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
            })
        }
        // Producers: a plain thread and a Curio task.
        let threadDone = UniversalEvent()
        KernelHarness.startThread {
            for i in 0..<(total / 2) {
                q.put(i)
                if i % 50 == 49 { usleep(500) }
            }
            threadDone.set()
        }
        async let kernelSide: Void = KernelHarness.run(limit: 50) { _ in
            for i in (total / 2)..<total {
                try await q.put(i)
                if i % 50 == 49 { try await Curio.sleep(0.0005) }
            }
        }
        // Cancel a third of the getters at random meanwhile (spaced out
        // over the production; the pauses only spread the cancellations).
        var rng = UniRNG(seed: 42)
        var cancelled = Set<Int>()
        while cancelled.count < getters / 3 {
            let i = Int.random(in: 0..<getters, using: &rng)
            if cancelled.insert(i).inserted {
                tasks[i].cancel()
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        try await kernelSide
        let producedInTime = try await KernelHarness.onThread(limit: 30) { try threadDone.blockingWait(timeout: 25) }
        // One sentinel per getter; cancelled ones leave theirs behind.
        for _ in 0..<getters { try await q.put(-1) }
        var endings: [String] = []
        for t in tasks { endings.append(await t.value) }
        var leftovers: [Int] = []
        while let v = try q.blockingGet(timeout: 0) { leftovers.append(v) }
        let check = tally.check()
        #expect(producedInTime)
        #expect(check.missing.count == 0, "\(check.missing.count) items never arrived, e.g. \(check.missing.prefix(10))")
        #expect(check.duplicated.count == 0, "\(check.duplicated.count) items arrived twice")
        #expect(check.strange.isEmpty)
        #expect(endings.allSatisfy { $0 == "sentinel" || $0 == "cancelled" }, "\(Set(endings))")
        let sentinelsTaken = endings.filter { $0 == "sentinel" }.count
        #expect(leftovers.allSatisfy { $0 == -1 }, "real items left over: \(leftovers.filter { $0 >= 0 }.prefix(10))")
        #expect(sentinelsTaken + leftovers.count == getters)
        #expect(endings.filter { $0 == "cancelled" }.count <= getters / 3)
    }

    @Test(.timeLimit(.minutes(1)))
    func aCancelledSwiftGetterLosesNothing() async throws {
        let q = UniversalQueue<Int>()
        // Cancelled while suspended: CancellationError, the item put later
        // goes to the next getter.
        let getter = Task.detached { () -> String in
            do { return "got \(try await q.get())" } catch { return "\(type(of: error))" }
        }
        // Cancelled before it even starts waiting.
        let early = Task.detached { () -> String in
            withUnsafeCurrentTask { $0?.cancel() }
            do { return "got \(try await q.get())" } catch { return "\(type(of: error))" }
        }
        #expect(await early.value == "CancellationError")
        getter.cancel()
        #expect(await getter.value == "CancellationError")
        try await q.put(7)
        #expect(q.count == 1)
        let next = Task.detached { try await q.get() }
        #expect(try await next.value == 7)
        // A cancelled task still takes an item that is already there.
        try await q.put(8)
        let late = Task.detached { () -> String in
            withUnsafeCurrentTask { $0?.cancel() }
            do { return "got \(try await q.get())" } catch { return "\(type(of: error))" }
        }
        #expect(await late.value == "got 8")
        #expect(q.isEmpty)
    }

    @Test(.timeLimit(.minutes(1)))
    func blockingGetTimesOutAndHandsOver() async throws {
        let q = UniversalQueue<Int>()
        let r = try await KernelHarness.onThread { () -> (Int?, Double, Int?, Int?) in
            let t0 = KernelHarness.monotonicNow()
            let none = try q.blockingGet(timeout: 0.1)
            let waited = KernelHarness.monotonicNow() - t0
            q.put(1)
            let one = try q.blockingGet(timeout: 0)
            // A put from another thread wakes a blocked getter.
            let tid = currentTID()
            KernelHarness.startThread {
                _ = waitUntilAsleep(tid)
                q.put(2)
            }
            let two = try q.blockingGet(timeout: 20)
            return (none, waited, one, two)
        }
        #expect(r.0 == nil)
        #expect(r.1 >= 0.09 && r.1 < 5, "blockingGet(timeout: 0.1) took \(r.1) s")
        #expect(r.2 == 1)
        #expect(r.3 == 2)
        #expect(throws: CurioUsageError.self) { _ = try q.blockingGet(timeout: -1) }
    }

    // MARK: UniversalEvent

    @Test(.timeLimit(.minutes(1)))
    func eventSetFromAThreadWakesTasksThreadsAndSwiftTasks() async throws {
        let ev = UniversalEvent()
        let sleepingThreads = Countdown(2)
        let threadResults = Locked<[Bool]>([])
        let threadsDone = Countdown(2)
        for _ in 0..<2 {
            KernelHarness.startThread {
                let tid = currentTID()
                // Tell the setter who to watch, then block.
                KernelHarness.startThread {
                    _ = waitUntilAsleep(tid)
                    sleepingThreads.tick()
                }
                let ok = (try? ev.blockingWait(timeout: 30)) ?? false
                threadResults.withLock { $0.append(ok) }
                threadsDone.tick()
            }
        }
        let swiftWaiters = (0..<2).map { _ in
            Task.detached { () -> String in
                do {
                    try await ev.wait()
                    return "woken"
                } catch { return "\(error)" }
            }
        }
        let r = try await KernelHarness.run { _ -> ([String], Bool) in
            var tasks: [CurioTask<String>] = []
            for i in 0..<3 {
                tasks.append(try await spawn(name: "waiter\(i)") { () -> String in
                    try await ev.wait()
                    return "woken"
                })
            }
            let allWaiting = try await BridgeTest.poll { tasks.allSatisfy { $0.state == .eventWait } }
            let threadsAsleep = try await timeoutAfter(15) { try await sleepingThreads.done.wait(); return true }
            // Set from a plain thread.
            KernelHarness.startThread { ev.set() }
            var seen: [String] = []
            for t in tasks { seen.append(try await BridgeTest.joinOrCancel(t, 10) ?? "not woken") }
            return (seen, allWaiting && threadsAsleep)
        }
        var swiftSeen: [String] = []
        for t in swiftWaiters { swiftSeen.append(await t.value) }
        let threadsFinished = try await KernelHarness.onThread(limit: 30) { try threadsDone.done.blockingWait(timeout: 25) }
        #expect(r.0 == ["woken", "woken", "woken"])
        #expect(r.1)
        #expect(swiftSeen == ["woken", "woken"])
        #expect(threadsFinished)
        #expect(threadResults.withLock { $0 } == [true, true])
        #expect(ev.isSet)
    }

    @Test(.timeLimit(.minutes(1)))
    func eventTimeoutsClearAndCancellation() async throws {
        let ev = UniversalEvent()
        let r = try await KernelHarness.onThread { () -> (Bool, Double, Bool) in
            let t0 = KernelHarness.monotonicNow()
            let timedOut = try ev.blockingWait(timeout: 0.1)
            let waited = KernelHarness.monotonicNow() - t0
            ev.set()
            let setNow = try ev.blockingWait(timeout: 0)
            return (timedOut, waited, setNow)
        }
        #expect(r.0 == false)
        #expect(r.1 >= 0.09 && r.1 < 5, "blockingWait(timeout: 0.1) took \(r.1) s")
        #expect(r.2)
        ev.clear()
        #expect(!ev.isSet)
        #expect(throws: CurioUsageError.self) { try ev.blockingWait(timeout: .nan) }

        // Cancelled waiters: a Curio task and a Swift task.
        let k = try await KernelHarness.run { _ -> (String, Bool) in
            let t = try await spawn { () -> String in
                do {
                    try await ev.wait()
                    return "woken"
                } catch is CancelledError {
                    return "cancelled"
                }
            }
            _ = try await BridgeTest.poll { t.state == .eventWait }
            try await t.cancel()
            // A set after the cancellation finds no stale waiter.
            ev.set()
            try await ev.wait()
            return (try await t.join() ?? "nil", ev.isSet)
        }
        #expect(k.0 == "cancelled")
        #expect(k.1)
        ev.clear()
        let swift = Task.detached { () -> String in
            do {
                try await ev.wait()
                return "woken"
            } catch { return "\(type(of: error))" }
        }
        swift.cancel()
        #expect(await swift.value == "CancellationError")
    }

    @Test(.timeLimit(.minutes(1)))
    func blockingCallsInsideAKernelAreUsageErrors() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let q = UniversalQueue<Int>()
            let ev = UniversalEvent()
            var seen: [String] = []
            do {
                _ = try q.blockingGet(timeout: 1)
                seen.append("blockingGet returned")
            } catch let e as CurioUsageError {
                seen.append("\(e.kind) \(e.message.contains("get()"))")
            }
            do {
                _ = try ev.blockingWait(timeout: 1)
                seen.append("blockingWait returned")
            } catch let e as CurioUsageError {
                seen.append("\(e.kind) \(e.message.contains("wait()"))")
            }
            // Even with an item or the flag there: the call itself is wrong.
            q.put(1)
            ev.set()
            seen.append((try? q.blockingGet()) == nil ? "refused" : "took it")
            seen.append((try? ev.blockingWait()) == nil ? "refused" : "waited")
            return seen
        }
        #expect(r == ["invalidArgument true", "invalidArgument true", "refused", "refused"])
    }

    // MARK: kernel.post

    @Test(.timeLimit(.minutes(1)))
    func postFromSwiftTasksAndThreads() async throws {
        let kernel = Kernel()
        let stop = UniversalEvent()
        let kernelThread = Locked<pthread_t?>(nil)
        async let running: Void = KernelHarness.onThread(limit: 40) {
            kernelThread.withLock { $0 = pthread_self() }
            try kernel.run {
                try await timeoutAfter(35) { try await stop.wait() }
            }
            try kernel.shutdown()
        }
        // From a Swift task on the global executor.
        let v = try await Task.detached { () -> (Int, Bool) in
            let n = try await kernel.post { () -> Int in
                try await Curio.sleep(0.001)
                return 41 + 1
            }
            let where_ = try await kernel.post { Kernel.current === kernel }
            return (n, where_)
        }.value
        #expect(v.0 == 42)
        #expect(v.1, "the posted body did not run on the kernel")
        await #expect(throws: Boom.boom) {
            _ = try await kernel.post { () -> Int in throw Boom.boom }
        }
        // From a plain thread.
        let t = try await KernelHarness.onThread { () -> (String, String, Bool) in
            let s = try kernel.postBlocking { () -> String in
                try await Curio.sleep(0.001)
                return "from a thread"
            }
            var e = "no error"
            do {
                _ = try kernel.postBlocking { () -> Int in throw Boom.other }
            } catch let b as Boom {
                e = "\(b)"
            }
            let sameThread = try kernel.postBlocking { pthread_equal(pthread_self(), kernelThread.withLock { $0! }) != 0 }
            return (s, e, sameThread)
        }
        #expect(t.0 == "from a thread")
        #expect(t.1 == "Boom.other")
        #expect(t.2)
        // From the kernel's own thread: postBlocking would wait forever.
        let own = try await kernel.post { () -> String in
            // postBlocking is noasync: the misuse goes through a synchronous function.
            func blockOnOwnKernel() throws -> String {
                do {
                    _ = try kernel.postBlocking { 1 }
                    return "no error"
                } catch let e as CurioUsageError {
                    return "\(e.kind)"
                }
            }
            return try blockOnOwnKernel()
        }
        #expect(own == "invalidArgument")
        // From a task of another kernel (it suspends, the other kernel runs on).
        let cross = try await KernelHarness.run { _ -> Int in
            try await kernel.post { 5 } + 1
        }
        #expect(cross == 6)
        stop.set()
        try await running
    }
}

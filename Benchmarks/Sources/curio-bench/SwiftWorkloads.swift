// Swift's own concurrency on its default (global, multi-threaded) executor.
//
// The waits use the cheapest standard tools: `Task.yield`, `Task {}.value`,
// AsyncStream, and checked continuations.
//
// The lock: Swift has no async lock, and a blocking Mutex cannot be held
// across an await, so the table's Swift lock is a FIFO async lock built on
// checked continuations (`AsyncLock`): a task that finds it taken parks its
// continuation, and `release` hands the lock directly to the first parked
// task, as Curio's Lock does. A Synchronization.Mutex guards only its
// waiter list, for a few instructions, never across an await. We chose it
// over an actor because it is the faster of the two (no executor hop per
// acquire and per release), which makes the comparison harder for Curio,
// not easier. The actor version (`ActorLock`, same FIFO handoff) is
// measured in the same rounds and printed in the notes under the table.

import Synchronization

enum SwiftWorkloads {
    static func runner(_ w: Workload) -> Runner? {
        switch w {
        case .taskSwitch: return taskSwitch
        case .spawnJoin: return spawnJoin
        case .queuePingPong: return queuePingPong
        case .eventPingPong: return eventPingPong
        case .lockHandoff: return lockHandoff
        case .sleepers: return sleepers
        case .workerRoundTrip: return workerRoundTrip
        case .threadQueue: return threadQueue
        }
    }

    /// `n` sequential `Task.detached { }.value` round trips.
    static func workerRoundTrip(_ s: Sizes) throws -> Sample {
        let n = s.workerRoundTrips
        let (seconds, sum) = try runOnDefaultExecutor {
            let start = now()
            var sum = 0
            for i in 0..<n { sum += await Task.detached { i }.value }
            return (now() - start, sum)
        }
        try check(sum == n * (n - 1) / 2, "worker: sum \(sum)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// A plain thread yields `n` items into an AsyncStream; a task iterates it.
    static func threadQueue(_ s: Sizes) throws -> Sample {
        let n = s.threadQueueItems
        let (seconds, sum) = try runOnDefaultExecutor {
            let (stream, continuation) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .unbounded)
            let start = now()
            startThread {
                for i in 0..<n { continuation.yield(i) }
                continuation.finish()
            }
            var sum = 0
            for await v in stream { sum += v }
            return (now() - start, sum)
        }
        try check(sum == n * (n - 1) / 2, "uqueue: sum \(sum)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// `tasks` child tasks, each doing `yields` × `Task.yield()`.
    static func taskSwitch(_ s: Sizes) throws -> Sample {
        let (tasks, yields) = (s.switchTasks, s.switchYields)
        let seconds = try runOnDefaultExecutor {
            let start = now()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<tasks {
                    group.addTask {
                        for _ in 0..<yields { await Task.yield() }
                    }
                }
                await group.waitForAll()
            }
            return now() - start
        }
        return .throughput(ops: tasks * yields, seconds: seconds)
    }

    /// `Task { 1 }.value`, one after the other.
    static func spawnJoin(_ s: Sizes) throws -> Sample {
        let n = s.spawns
        let (seconds, sum) = try runOnDefaultExecutor {
            let start = now()
            var sum = 0
            for _ in 0..<n {
                sum += await Task { 1 }.value
            }
            return (now() - start, sum)
        }
        try check(sum == n, "spawn+join summed \(sum), expected \(n)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// Two tasks and two AsyncStreams: ping yields into the first and awaits
    /// the second; pong echoes.
    static func queuePingPong(_ s: Sizes) throws -> Sample {
        let n = s.queueRoundTrips
        let (seconds, last) = try runOnDefaultExecutor {
            let (toPong, toPongC) = AsyncStream.makeStream(of: Int.self)
            let (toPing, toPingC) = AsyncStream.makeStream(of: Int.self)
            let start = now()
            let last = await withTaskGroup(of: Int.self) { group in
                group.addTask {
                    for await x in toPong { toPingC.yield(x) }
                    toPingC.finish()
                    return -1
                }
                group.addTask {
                    var it = toPing.makeAsyncIterator()
                    var last = -1
                    for i in 0..<n {
                        toPongC.yield(i)
                        last = await it.next() ?? -1
                    }
                    toPongC.finish()
                    return last
                }
                var last = -1
                for await r in group where r >= 0 { last = r }
                return last
            }
            return (now() - start, last)
        }
        try check(last == n - 1, "queue ping-pong ended at \(last), expected \(n - 1)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// Two tasks hand control back and forth through two one-slot events
    /// built on CheckedContinuation; each signal is one handoff.
    static func eventPingPong(_ s: Sizes) throws -> Sample {
        let roundTrips = s.eventHandoffs / 2
        let seconds = try runOnDefaultExecutor {
            let ping = ContinuationEvent(), pong = ContinuationEvent()
            let start = now()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for _ in 0..<roundTrips {
                        await ping.wait()
                        pong.signal()
                    }
                }
                group.addTask {
                    for _ in 0..<roundTrips {
                        ping.signal()
                        await pong.wait()
                    }
                }
                await group.waitForAll()
            }
            return now() - start
        }
        return .throughput(ops: roundTrips * 2, seconds: seconds)
    }

    /// `lockTasks` tasks take turns on a FIFO async lock. The table uses the
    /// continuation lock; the actor lock is measured in the same round and
    /// reported in the notes, for reference.
    static func lockHandoff(_ s: Sizes) throws -> Sample {
        let (n, k) = (s.lockHandoffs, s.lockTasks)
        let total = (n / k) * k
        let (seconds, stats) = try runOnDefaultExecutor {
            let lock = AsyncLock()
            let stats = LockStats()
            // Hold the lock while the workers start so that they all queue
            // behind it: from the first release on, the lock is contended.
            await lock.acquire()
            let start = now()
            await withTaskGroup(of: Void.self) { group in
                for id in 0..<k {
                    group.addTask {
                        for _ in 0..<(n / k) {
                            await lock.acquire()
                            stats.record(id)    // guarded by `lock`
                            lock.release()
                        }
                    }
                }
                while lock.waiterCount < k { await Task.yield() }
                lock.release()
                await group.waitForAll()
            }
            return (now() - start, stats)
        }
        try check(stats.acquisitions == total, "lock: \(stats.acquisitions) acquisitions, expected \(total)")

        let (actorSeconds, actorStats) = try runOnDefaultExecutor {
            let lock = ActorLock()
            let stats = LockStats()
            await lock.acquire()
            let start = now()
            await withTaskGroup(of: Void.self) { group in
                for id in 0..<k {
                    group.addTask {
                        for _ in 0..<(n / k) {
                            await lock.acquire()
                            stats.record(id)    // guarded by `lock`
                            await lock.release()
                        }
                    }
                }
                while await lock.waiterCount < k { await Task.yield() }
                await lock.release()
                await group.waitForAll()
            }
            return (now() - start, stats)
        }
        try check(actorStats.acquisitions == total, "actor lock: \(actorStats.acquisitions) acquisitions, expected \(total)")

        var sample = Sample.throughput(ops: total, seconds: seconds,
                                       handoffFraction: Double(stats.handoffs) / Double(total))
        sample.alternativeOpsPerSecond = Double(total) / actorSeconds
        sample.alternativeHandoffFraction = Double(actorStats.handoffs) / Double(total)
        return sample
    }

    /// `sleepers` child tasks each sleeping one second.
    static func sleepers(_ s: Sizes) throws -> Sample {
        let (n, secs) = (s.sleepers, s.sleepSeconds)
        return try runOnDefaultExecutor {
            let asleep = AtomicCounter()
            let base = MemoryMark.baseline()
            let start = now()
            var peak = base
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<n {
                    group.addTask {
                        asleep.increment()
                        try await Task.sleep(for: .seconds(secs))
                    }
                }
                // Wait until every child has reached its sleep.
                while asleep.value < n { try await Task.sleep(for: .milliseconds(1)) }
                peak = MemoryMark.current()
                try await group.waitForAll()
            }
            let end = now()
            return sleeperSample(start: start, end: end, ideal: secs, base: base, peak: peak, tasks: n)
        }
    }
}

// MARK: - Helpers

/// A one-slot event between exactly two tasks: `signal` wakes the waiter,
/// or is remembered until the next `wait`.
final class ContinuationEvent: Sendable {
    private enum State {
        case idle
        case signalled
        case waiting(CheckedContinuation<Void, Never>)
    }
    private let state = Mutex(State.idle)

    func wait() async {
        let ready = state.withLock { st -> Bool in
            if case .signalled = st {
                st = .idle
                return true
            }
            return false
        }
        if ready { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { st -> Bool in
                if case .signalled = st {
                    st = .idle
                    return true
                }
                st = .waiting(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    func signal() {
        let waiter = state.withLock { st -> CheckedContinuation<Void, Never>? in
            switch st {
            case .waiting(let c):
                st = .idle
                return c
            case .idle, .signalled:
                st = .signalled
                return nil
            }
        }
        waiter?.resume()
    }
}

/// A fair (FIFO) async lock: `release` hands the lock to the first waiter.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
        var count: Int { waiters.count - head }
    }
    private let state = Mutex(State())

    var waiterCount: Int { state.withLock { $0.count } }

    func acquire() async {
        let free = state.withLock { st -> Bool in
            if !st.locked {
                st.locked = true
                return true
            }
            return false
        }
        if free { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { st -> Bool in
                if !st.locked {
                    st.locked = true
                    return true
                }
                st.waiters.append(c)
                return false
            }
            if granted { c.resume() }
        }
    }

    func release() {
        let next = state.withLock { st -> CheckedContinuation<Void, Never>? in
            guard st.count > 0 else {
                st.locked = false
                return nil
            }
            let c = st.waiters[st.head]
            st.head += 1
            if st.head >= 1024 && st.head * 2 >= st.waiters.count {
                st.waiters.removeFirst(st.head)
                st.head = 0
            }
            return c          // stays locked: ownership passes to `c`
        }
        next?.resume()
    }
}

/// The same FIFO handoff lock as an actor: every acquire and release is a
/// hop onto the actor's executor.
actor ActorLock {
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var head = 0

    var waiterCount: Int { waiters.count - head }

    func acquire() async {
        if !locked {
            locked = true
            return
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            waiters.append(c)
        }
    }

    func release() {
        guard head < waiters.count else {
            locked = false
            return
        }
        let c = waiters[head]
        head += 1
        if head >= 1024 && head * 2 >= waiters.count {
            waiters.removeFirst(head)
            head = 0
        }
        c.resume()            // stays locked: ownership passes to `c`
    }
}

/// Who held the lock last; touched only while holding the lock under test.
final class LockStats: @unchecked Sendable {
    var acquisitions = 0
    var handoffs = 0
    private var last = -1

    @inline(__always)
    func record(_ id: Int) {
        acquisitions += 1
        if id != last {
            handoffs += 1
            last = id
        }
    }
}

final class AtomicCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

// Curio: each measurement runs on a fresh kernel on the calling thread,
// with `Kernel().run { main }`; the timer starts inside main, so kernel
// setup is not timed. Tasks, yields, joins, queues, events and locks are
// the library's own, written as a Curio program would write them.
//
// Shared counters are `@unchecked Sendable` boxes: every task of a kernel
// runs on that kernel's one thread, so they need no locks.

import Curio

enum CurioWorkloads {
    /// The I/O backend a kernel gets on this machine ("io_uring" or "epoll").
    static var backend: String { Kernel().backend.description }

    static func runner(_ w: Workload) -> Runner? {
        switch w {
        case .taskSwitch: return taskSwitch
        case .spawnJoin: return spawnJoin
        case .eventPingPong: return eventPingPong
        case .queuePingPong: return queuePingPong
        case .lockHandoff: return lockHandoff
        case .sleepers: return sleepers
        case .workerRoundTrip: return workerRoundTrip
        case .threadQueue: return threadQueue
        }
    }

    /// `n` sequential `runInThread` calls: kernel → worker thread → kernel.
    static func workerRoundTrip(_ s: Sizes) throws -> Sample {
        let n = s.workerRoundTrips
        let (seconds, sum) = try Kernel().run {
            let start = now()
            var sum = 0
            for i in 0..<n { sum += try await runInThread { i } }
            return (now() - start, sum)
        }
        try check(sum == n * (n - 1) / 2, "worker: sum \(sum)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// A plain thread puts `n` items into a UniversalQueue; a kernel task gets them.
    static func threadQueue(_ s: Sizes) throws -> Sample {
        let n = s.threadQueueItems
        let q = UniversalQueue<Int>()
        let (seconds, sum) = try Kernel().run {
            let start = now()
            startThread { for i in 0..<n { q.put(i) } }
            var sum = 0
            for _ in 0..<n { sum += try await q.get() }
            return (now() - start, sum)
        }
        try check(sum == n * (n - 1) / 2, "uqueue: sum \(sum)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// `tasks` tasks, each doing `yields` × `Curio.sleep(0)`.
    static func taskSwitch(_ s: Sizes) throws -> Sample {
        let (tasks, yields) = (s.switchTasks, s.switchYields)
        let seconds = try Kernel().run {
            let start = now()
            var handles: [CurioTask<Void>] = []
            handles.reserveCapacity(tasks)
            for _ in 0..<tasks {
                handles.append(try await spawn {
                    for _ in 0..<yields { try await Curio.sleep(0) }
                })
            }
            for h in handles { try await h.join() }
            return now() - start
        }
        return .throughput(ops: tasks * yields, seconds: seconds)
    }

    /// `spawn { 1 }` then `join()`, one after the other.
    static func spawnJoin(_ s: Sizes) throws -> Sample {
        let n = s.spawns
        let (seconds, sum) = try Kernel().run {
            let start = now()
            var sum = 0
            for _ in 0..<n {
                let t = try await spawn { 1 }
                sum += try await t.join() ?? 0
            }
            return (now() - start, sum)
        }
        try check(sum == n, "spawn+join summed \(sum), expected \(n)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// Main puts on one queue and gets from the other; a second task echoes.
    static func queuePingPong(_ s: Sizes) throws -> Sample {
        let n = s.queueRoundTrips
        let (seconds, last) = try Kernel().run {
            let toPong = Queue<Int>(), toPing = Queue<Int>()
            let ponger = try await spawn {
                for _ in 0..<n {
                    let x = try await toPong.get()
                    try await toPing.put(x)
                }
            }
            let start = now()
            var last = -1
            for i in 0..<n {
                try await toPong.put(i)
                last = try await toPing.get()
            }
            try await ponger.join()
            return (now() - start, last)
        }
        try check(last == n - 1, "queue ping-pong ended at \(last), expected \(n - 1)")
        return .throughput(ops: n, seconds: seconds)
    }

    /// Two tasks wake each other with two events (set / wait / clear); each
    /// `set` that wakes the other task is one handoff.
    static func eventPingPong(_ s: Sizes) throws -> Sample {
        let roundTrips = s.eventHandoffs / 2
        let seconds = try Kernel().run {
            let ping = Event(), pong = Event()
            let ponger = try await spawn {
                for _ in 0..<roundTrips {
                    try await ping.wait()
                    ping.clear()
                    await pong.set()
                }
            }
            let start = now()
            for _ in 0..<roundTrips {
                await ping.set()
                try await pong.wait()
                pong.clear()
            }
            try await ponger.join()
            return now() - start
        }
        return .throughput(ops: roundTrips * 2, seconds: seconds)
    }

    /// `lockTasks` tasks take turns on a Lock. Main holds it while they
    /// start, so that they all queue behind it and every release from then on
    /// has a waiter to hand the lock to.
    static func lockHandoff(_ s: Sizes) throws -> Sample {
        let (n, k) = (s.lockHandoffs, s.lockTasks)
        let (seconds, stats) = try Kernel().run {
            let lock = Lock()
            let stats = LockStats()
            try await lock.acquire()
            let start = now()
            var workers: [CurioTask<Void>] = []
            for id in 0..<k {
                workers.append(try await spawn {
                    for _ in 0..<(n / k) {
                        try await lock.acquire()
                        stats.record(id)
                        try await lock.release()
                    }
                })
            }
            try await Curio.sleep(0)      // every worker runs and queues on the lock
            try await lock.release()
            for w in workers { try await w.join() }
            return (now() - start, stats)
        }
        let total = (n / k) * k
        try check(stats.acquisitions == total, "lock: \(stats.acquisitions) acquisitions, expected \(total)")
        return .throughput(ops: total, seconds: seconds,
                           handoffFraction: Double(stats.handoffs) / Double(total))
    }

    /// `sleepers` tasks each doing `Curio.sleep(1)`.
    static func sleepers(_ s: Sizes) throws -> Sample {
        let (n, secs) = (s.sleepers, s.sleepSeconds)
        return try Kernel().run {
            let base = MemoryMark.baseline()
            let start = now()
            var handles: [CurioTask<Void>] = []
            handles.reserveCapacity(n)
            for _ in 0..<n {
                handles.append(try await spawn { try await Curio.sleep(secs) })
            }
            // Behind every ready task: when main runs again, all are asleep.
            try await Curio.sleep(0)
            let peak = MemoryMark.current()
            for h in handles { try await h.join() }
            let end = now()
            return sleeperSample(start: start, end: end, ideal: secs, base: base, peak: peak, tasks: n)
        }
    }
}

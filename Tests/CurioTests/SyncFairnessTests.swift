import Testing
@testable import Curio

// Randomized schedules with cancellations and timeouts for Lock, Semaphore,
// Condition and the queues. Each case is one seed of a SplitMix64
// generator that drives every choice (pauses, timeouts, whom to cancel),
// so a failure names the seed that reproduces it.

private let seeds: [UInt64] = Array(1...20)

/// What happened in one run, for the final checks.
private final class Tally: @unchecked Sendable {
    var entries = 0
    var cancelledWaits = 0
    var cancelledInside = 0
    var timeouts = 0
}

/// Cancels random tasks of `targets`, `rounds` times, pausing at random.
private func spawnCanceller(_ rng: SyncSharedRNG, _ targets: [AnyCurioTask], rounds: Int) async throws -> CurioTask<Int> {
    try await spawn(name: "canceller") {
        var sent = 0
        for _ in 0..<rounds {
            try await Curio.sleep(0)
            try await rng.pause()
            let victim = targets[rng.int(0..<targets.count)]
            if try await victim.cancel(blocking: false) { sent += 1 }
        }
        return sent
    }
}

@Suite struct SyncFairnessTests {
    @Test(.timeLimit(.minutes(1)), arguments: seeds)
    func lockUnderRandomCancellation(seed: UInt64) async throws {
        try await KernelHarness.runMain {
            let rng = SyncSharedRNG(seed: seed)
            let lock = Lock()
            let holder = SyncBox(0)
            let tally = Tally()
            var workers: [CurioTask<Void>] = []
            for _ in 0..<8 {
                workers.append(try await spawn {
                    let me = try await currentTask()
                    for _ in 0..<25 {
                        let got: Bool
                        do {
                            switch rng.int(0..<10) {
                            case 0, 1: got = try await lock.acquire(timeout: 0.0005)
                            case 2: got = try await ignoreAfter(0.0005) { try await lock.acquire() } ?? false
                            default: got = try await lock.acquire()
                            }
                        } catch is CancelledError {
                            #expect(lock.ownerID != me.id, "seed \(seed): a cancelled acquirer holds the lock")
                            tally.cancelledWaits += 1
                            continue
                        }
                        guard got else {
                            #expect(lock.ownerID != me.id, "seed \(seed): a timed-out acquirer holds the lock")
                            tally.timeouts += 1
                            continue
                        }
                        #expect(lock.ownerID == me.id)
                        #expect(holder.value == 0, "seed \(seed): two tasks inside the lock")
                        holder.value = me.id
                        do {
                            try await rng.pause()
                            try await rng.pause()
                        } catch is CancelledError {
                            tally.cancelledInside += 1
                        }
                        #expect(holder.value == me.id, "seed \(seed): another task entered meanwhile")
                        holder.value = 0
                        tally.entries += 1
                        try await lock.release()
                        do { try await rng.pause() } catch is CancelledError {}
                    }
                })
            }
            let canceller = try await spawnCanceller(rng, workers, rounds: 60)
            for w in workers { try await w.join() }
            try await canceller.join()
            #expect(!lock.locked)
            #expect(lock.waiterCount == 0)
            #expect(tally.entries > 0)
            #expect(tally.entries + tally.cancelledWaits + tally.timeouts == 8 * 25)
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: seeds)
    func semaphoreConservesPermits(seed: UInt64) async throws {
        try await KernelHarness.runMain {
            let rng = SyncSharedRNG(seed: seed)
            let permits = 3
            let sem = BoundedSemaphore(value: permits)   // an extra release would throw
            let inside = SyncBox(0)
            let maxInside = SyncBox(0)
            let tally = Tally()
            var workers: [CurioTask<Void>] = []
            for _ in 0..<8 {
                workers.append(try await spawn {
                    for _ in 0..<25 {
                        let got: Bool
                        do {
                            switch rng.int(0..<10) {
                            case 0, 1: got = try await sem.acquire(timeout: 0.0005)
                            case 2: got = try await ignoreAfter(0.0005) { try await sem.acquire() } ?? false
                            default: got = try await sem.acquire()
                            }
                        } catch is CancelledError {
                            tally.cancelledWaits += 1
                            continue
                        }
                        guard got else { tally.timeouts += 1; continue }
                        inside.value += 1
                        maxInside.value = max(maxInside.value, inside.value)
                        #expect(inside.value <= permits, "seed \(seed): more holders than permits")
                        #expect(inside.value + sem.value <= permits)
                        do { try await rng.pause() } catch is CancelledError { tally.cancelledInside += 1 }
                        inside.value -= 1
                        tally.entries += 1
                        try await sem.release()
                        do { try await rng.pause() } catch is CancelledError {}
                    }
                })
            }
            let canceller = try await spawnCanceller(rng, workers, rounds: 60)
            for w in workers { try await w.join() }
            try await canceller.join()
            #expect(sem.value == permits, "seed \(seed): permits lost or created")
            #expect(sem.waiterCount == 0)
            #expect(maxInside.value <= permits)
            #expect(tally.entries + tally.cancelledWaits + tally.timeouts == 8 * 25)
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: seeds)
    func conditionHoldsTheLockOnEveryExit(seed: UInt64) async throws {
        try await KernelHarness.runMain {
            let rng = SyncSharedRNG(seed: seed)
            let cond = Condition()
            let buffer = SyncBox<[Int]>([])
            let produced = SyncBox<[Int]>([])
            let consumed = SyncBox<[Int]>([])
            let stop = SyncBox(false)
            var producers: [CurioTask<Void>] = []
            for p in 0..<3 {
                producers.append(try await spawn {
                    for i in 0..<20 {
                        do {
                            try await cond.withLock {
                                buffer.value.append(p * 1000 + i)
                                produced.value.append(p * 1000 + i)
                                try await cond.notify(rng.int(1..<3))
                            }
                            try await rng.pause()
                        } catch is CancelledError {}
                    }
                })
            }
            var consumers: [CurioTask<Void>] = []
            for _ in 0..<3 {
                consumers.append(try await spawn {
                    let me = try await currentTask()
                    while !stop.value {
                        do {
                            try await cond.acquire()
                        } catch is CancelledError {
                            #expect(cond.lock.ownerID != me.id)
                            continue
                        }
                        do {
                            let timeout: Double? = rng.chance(20) ? 0.0005 : nil
                            if try await cond.waitFor(timeout: timeout, { !buffer.value.isEmpty || stop.value }) {
                                #expect(cond.lock.ownerID == me.id)
                                if !buffer.value.isEmpty { consumed.value.append(buffer.value.removeFirst()) }
                            }
                            #expect(cond.lock.ownerID == me.id)
                        } catch is CancelledError {
                            #expect(cond.lock.ownerID == me.id, "seed \(seed): cancelled wait returned without the lock")
                        }
                        try await cond.release()
                        do { try await rng.pause() } catch is CancelledError {}
                    }
                })
            }
            let canceller = try await spawnCanceller(rng, producers + consumers, rounds: 40)
            for p in producers { try await p.join() }
            try await canceller.join()
            try await cond.withLock {
                stop.value = true
                try await cond.notifyAll()
            }
            for c in consumers { try await c.join() }
            #expect(!cond.locked)
            #expect(cond.waiting == 0)
            #expect((consumed.value + buffer.value).sorted() == produced.value.sorted(),
                    "seed \(seed): items lost or duplicated")
        }
    }

    /// The operations of one queue kind, so that one schedule exercises all three.
    struct QueueOps: Sendable {
        let name: String
        let put: @Sendable (Int, Double?) async throws -> Bool
        let get: @Sendable (Double?) async throws -> Int?
        let taskDone: @Sendable () async throws -> Void
        let join: @Sendable (Double?) async throws -> Bool
        let count: @Sendable () -> Int
        let inFlight: @Sendable () -> Int

        enum Kind: CaseIterable, Sendable { case fifo, priority, lifo }

        static func make(_ kind: Kind, maxSize: Int) -> QueueOps {
            switch kind {
            case .fifo: return fifo(maxSize)
            case .priority: return priority(maxSize)
            case .lifo: return lifo(maxSize)
            }
        }

        static func fifo(_ maxSize: Int) -> QueueOps {
            let q = Queue<Int>(maxSize: maxSize)
            return QueueOps(name: "Queue",
                put: { x, t in if let t { return try await q.put(x, timeout: t) }; try await q.put(x); return true },
                get: { t in if let t { return try await q.get(timeout: t) }; return try await q.get() },
                taskDone: { try await q.taskDone() }, join: { t in try await q.join(timeout: t) },
                count: { q.count }, inFlight: { q.core.itemsInFlight })
        }
        static func priority(_ maxSize: Int) -> QueueOps {
            let q = PriorityQueue<Int>(maxSize: maxSize)
            return QueueOps(name: "PriorityQueue",
                put: { x, t in if let t { return try await q.put(x, timeout: t) }; try await q.put(x); return true },
                get: { t in if let t { return try await q.get(timeout: t) }; return try await q.get() },
                taskDone: { try await q.taskDone() }, join: { t in try await q.join(timeout: t) },
                count: { q.count }, inFlight: { q.core.itemsInFlight })
        }
        static func lifo(_ maxSize: Int) -> QueueOps {
            let q = LifoQueue<Int>(maxSize: maxSize)
            return QueueOps(name: "LifoQueue",
                put: { x, t in if let t { return try await q.put(x, timeout: t) }; try await q.put(x); return true },
                get: { t in if let t { return try await q.get(timeout: t) }; return try await q.get() },
                taskDone: { try await q.taskDone() }, join: { t in try await q.join(timeout: t) },
                count: { q.count }, inFlight: { q.core.itemsInFlight })
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: seeds)
    func queuesLoseAndDuplicateNothing(seed: UInt64) async throws {
        try await KernelHarness.onThread(limit: 55) {
            for kind in QueueOps.Kind.allCases {
                try Kernel().run {
                    let rng = SyncSharedRNG(seed: seed)
                    let q = QueueOps.make(kind, maxSize: rng.int(1..<4))
                    let put = SyncBox<[Int]>([])
                    let got = SyncBox<[Int]>([])
                    let stop = SyncBox(false)
                    var producers: [CurioTask<Void>] = []
                    for p in 0..<4 {
                        producers.append(try await spawn {
                            for i in 0..<30 {
                                let item = p * 1000 + i
                                do {
                                    let ok: Bool
                                    switch rng.int(0..<10) {
                                    case 0, 1: ok = try await q.put(item, 0.0005)
                                    case 2: ok = try await ignoreAfter(0.0005) { try await q.put(item, nil) } ?? false
                                    default: ok = try await q.put(item, nil)
                                    }
                                    if ok { put.value.append(item) }
                                } catch is CancelledError {}
                                do { try await rng.pause() } catch is CancelledError {}
                            }
                        })
                    }
                    var consumers: [CurioTask<Void>] = []
                    for _ in 0..<3 {
                        consumers.append(try await spawn {
                            while !stop.value {
                                do {
                                    let item: Int?
                                    switch rng.int(0..<10) {
                                    case 0, 1: item = try await q.get(0.0005)
                                    case 2: item = try await ignoreAfter(0.0005) { try await q.get(nil) } ?? nil
                                    default: item = try await q.get(nil)
                                    }
                                    if let item {
                                        #expect(!got.value.contains(item), "seed \(seed) \(q.name): \(item) got twice")
                                        got.value.append(item)
                                        try await q.taskDone()
                                    }
                                    try await rng.pause()
                                } catch is CancelledError {}
                            }
                        })
                    }
                    // Consumers swallow their cancellation and loop on; only the
                    // first cancel counts (curio 1.6), so they are cancelled once,
                    // at the end. Getters still give up here by timeout.
                    let canceller = try await spawnCanceller(rng, producers, rounds: 60)
                    for p in producers { try await p.join() }
                    try await canceller.join()
                    stop.value = true
                    for c in consumers { try await c.cancel() }
                    var remaining: [Int] = []
                    while q.count() > 0 {
                        remaining.append(try #require(try await q.get(0)))
                        try await q.taskDone()
                    }
                    #expect(q.inFlight() == 0)
                    #expect((got.value + remaining).sorted() == put.value.sorted(),
                            "seed \(seed) \(q.name): items lost or duplicated")
                    #expect(try await q.join(0), "seed \(seed) \(q.name): taskDone count off")
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)), arguments: seeds)
    func fifoQueueKeepsEachProducersOrder(seed: UInt64) async throws {
        try await KernelHarness.onThread(limit: 55) {
            // With one consumer and no cancellation, a FIFO queue delivers each
            // producer's items in the order it put them, whatever the schedule.
            try Kernel().run {
                let rng = SyncSharedRNG(seed: seed)
                let q = Queue<Int>(maxSize: rng.int(1..<4))
                var producers: [CurioTask<Void>] = []
                for p in 0..<4 {
                    producers.append(try await spawn {
                        for i in 0..<40 {
                            try await q.put(p * 1000 + i)
                            try await rng.pause()
                        }
                    })
                }
                var last = [Int](repeating: -1, count: 4)
                for _ in 0..<(4 * 40) {
                    let item = try await q.get()
                    let p = item / 1000, i = item % 1000
                    #expect(i == last[p] + 1, "seed \(seed): producer \(p) out of order")
                    last[p] = i
                    try await rng.pause()
                }
                for p in producers { try await p.join() }
                #expect(q.isEmpty)
            }
        }
    }
}

// Bounded queues really bound (issue 13, rule 9): an item handed to a
// getter that was woken but has not run yet still counts toward maxSize,
// for Queue, PriorityQueue and LifoQueue, and hand-off stays fair. And the
// bounded UniversalQueue (rule 10): put waits when full in a Curio task,
// a plain thread and a Swift task on another executor.
import Glibc
import Synchronization
import Testing

@testable import Curio

/// The three queues behind one face, for the shared scenario.
private protocol BoundedQueue: Sendable {
    init(maxSize: Int)
    func put(_ item: Int, file: StaticString, line: UInt, function: StaticString) async throws
    func get(file: StaticString, line: UInt, function: StaticString) async throws -> Int
}
extension Queue: BoundedQueue where T == Int {}
extension PriorityQueue: BoundedQueue where T == Int {}
extension LifoQueue: BoundedQueue where T == Int {}

@Suite(.timeLimit(.minutes(1)))
struct QueueBoundTests {
    /// With a getter waiting, a producer of a `maxSize: 1` queue puts one
    /// item (handed to the getter) and must then wait until the getter has
    /// run: the getter's item is logged before the second put returns.
    private static func producerStaysWithinBound<Q: BoundedQueue>(_: Q.Type) async throws -> [String] {
        try await KernelHarness.run { _ -> [String] in
            let log = KernelHarness.Log()
            let q = Q(maxSize: 1)
            let getter = try await spawn {
                let v = try await q.get(file: #filePath, line: #line, function: #function)
                log.add("got \(v)")
            }
            try await IOTest.waitBlocked(getter, .queueGet)
            for i in 1...2 {
                try await q.put(i, file: #filePath, line: #line, function: #function)
                log.add("put \(i)")
            }
            try await getter.join()
            log.add("left \(try await q.get(file: #filePath, line: #line, function: #function))")
            return log.entries
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aBoundedQueueBoundsWithAGetterWaiting() async throws {
        let r = try await Self.producerStaysWithinBound(Queue<Int>.self)
        #expect(r == ["put 1", "got 1", "put 2", "left 2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aBoundedPriorityQueueBoundsWithAGetterWaiting() async throws {
        let r = try await Self.producerStaysWithinBound(PriorityQueue<Int>.self)
        #expect(r == ["put 1", "got 1", "put 2", "left 2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aBoundedLifoQueueBoundsWithAGetterWaiting() async throws {
        let r = try await Self.producerStaysWithinBound(LifoQueue<Int>.self)
        #expect(r == ["put 1", "got 1", "put 2", "left 2"])
    }

    /// Fairness kept: two getters waiting and putters arriving at the
    /// bound are served in arrival order, each item exactly once, and the
    /// item promised to the woken getter keeps the second putter out.
    @Test(.timeLimit(.minutes(1)))
    func handOffStaysFairAtTheBound() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let log = KernelHarness.Log()
            let q = Queue<Int>(maxSize: 1)
            var getters: [CurioTask<Void>] = []
            for g in 0..<2 {
                let t = try await spawn { log.add("g\(g) got \(try await q.get())") }
                try await IOTest.waitBlocked(t, .queueGet)
                getters.append(t)
            }
            try await q.put(1)            // promised to g0
            log.add("full \(q.isFull)")
            var putters: [CurioTask<Void>] = []
            // Started without yielding: g0 has been woken but has not run.
            for p in 2...3 {
                putters.append(try await spawn { try await q.put(p); log.add("put \(p) done") })
            }
            for t in getters { try await t.join() }
            for t in putters { try await t.join() }
            let last = try await q.get()
            log.add("left \(last)")
            return log.entries
        }
        #expect(r == ["full true", "g0 got 1", "put 2 done", "g1 got 2", "put 3 done", "left 3"])
    }

    // MARK: - UniversalQueue(maxSize:)

    @Test(.timeLimit(.minutes(1)))
    func aBoundedUniversalQueueMakesACurioPutterWait() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let log = KernelHarness.Log()
            let q = UniversalQueue<Int>(maxSize: 1)
            try await q.put(1)
            let putter = try await spawn { try await q.put(2); log.add("put 2 done") }
            try await IOTest.waitBlocked(putter, .queuePut)
            log.add("putter waits; full \(q.isFull)")
            log.add("got \(try await q.get())")
            try await putter.join()
            log.add("got \(try await q.get())")
            return log.entries
        }
        #expect(r == ["putter waits; full true", "got 1", "put 2 done", "got 2"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aBoundedUniversalQueueMakesAThreadPutterWait() async throws {
        let q = UniversalQueue<Int>(maxSize: 2)
        let log = KernelHarness.Log()
        let done = KernelHarness.Flag()
        KernelHarness.startThread {
            for i in 1...4 { q.put(i); log.add("put \(i)") }
            done.set()
        }
        // Wait until the thread is parked in put(3).
        try await Self.waitFor { log.entries.count == 2 && q.isFull }
        #expect(try q.blockingGet(timeout: 5) == 1)   // room: put 3 goes in
        try await Self.waitFor { log.entries.count == 3 }
        #expect(log.entries == ["put 1", "put 2", "put 3"])
        for want in 2...4 { #expect(try q.blockingGet(timeout: 5) == want) }
        #expect(done.wait(10))
        #expect(log.entries == ["put 1", "put 2", "put 3", "put 4"])
        // timeouts: a full queue refuses for the time given
        #expect(try q.blockingPut(5) == true)
        #expect(try q.blockingPut(6) == true)
        #expect(try q.blockingPut(7, timeout: 0) == false)
    }

    @Test(.timeLimit(.minutes(1)))
    func aBoundedUniversalQueueMakesASwiftPutterWait() async throws {
        let q = UniversalQueue<Int>(maxSize: 1)
        try await q.put(1)
        let putter = Task.detached { try await q.put(2); return "put 2 done" }
        let timedOut = try await q.put(9, timeout: 0)
        #expect(timedOut == false)
        // The putter is parked until a get makes room.
        #expect(try await q.get() == 1)
        #expect(try await putter.value == "put 2 done")
        #expect(try await q.get() == 2)
        // A cancelled Swift putter leaves no item behind.
        try await q.put(3)
        let cancelled = Task.detached { () -> String in
            do { try await q.put(4); return "put" } catch { return "\(type(of: error))" }
        }
        cancelled.cancel()
        let outcome = await cancelled.value
        #expect(try await q.get() == 3)
        if outcome == "CancellationError" {
            #expect(q.isEmpty)
        } else {
            #expect(try await q.get() == 4)
        }
    }

    /// Waits (without sleeping a fixed time) for `condition`, bounded.
    static func waitFor(_ condition: @Sendable () -> Bool) async throws {
        let end = KernelHarness.monotonicNow() + 20
        while !condition() {
            if KernelHarness.monotonicNow() > end { throw KernelHarness.Failure(description: "condition never held") }
            await Task.yield()
        }
    }
}

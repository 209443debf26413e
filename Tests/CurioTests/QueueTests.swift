import Testing
@testable import Curio

@Suite struct QueueTests {
    @Test(.timeLimit(.minutes(1))) func fifoOrderAndProperties() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            #expect(q.isEmpty)
            #expect(!q.isFull)
            #expect(q.maxSize == 0)
            for i in 0..<100 { try await q.put(i) }       // unbounded: never waits
            #expect(q.count == 100)
            #expect(!q.isFull)
            var got: [Int] = []
            for _ in 0..<100 { got.append(try await q.get()) }
            #expect(got == Array(0..<100))
            #expect(q.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1))) func ringWrapsAndGrows() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            var next = 0, expected = 0
            for round in 1...20 {
                for _ in 0..<(round * 3) { try await q.put(next); next += 1 }
                for _ in 0..<(round * 2) {
                    #expect(try await q.get() == expected)
                    expected += 1
                }
            }
            while !q.isEmpty {
                #expect(try await q.get() == expected)
                expected += 1
            }
            #expect(expected == next)
        }
    }

    @Test(.timeLimit(.minutes(1))) func fastPathsNeitherSwitchNorDeliverCancel() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 2)
            let me = try await currentTask()
            try await me.cancel(blocking: false)
            let cycles = me.cycles
            try await q.put(1)
            #expect(try await q.put(2, timeout: 1))
            #expect(try await q.get() == 1)
            #expect(try await q.get(timeout: 1) == 2)
            try await q.taskDone()
            try await q.taskDone()
            #expect(try await q.join())
            #expect(me.cycles == cycles)
            await #expect(throws: TaskCancelled.self) { try await Curio.sleep(0) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func boundedPutWaitsForRoom() async throws {
        try await KernelHarness.runMain {
            let q = Queue<String>(maxSize: 2)
            try await q.put("a")
            try await q.put("b")
            #expect(q.isFull)
            let putter = try await spawn { try await q.put("c") }
            try await syncYieldUntil { putter.state == .queuePut }
            #expect(q.count == 2)
            #expect(try await q.get() == "a")
            // The waiting putter's item went in as the place freed up.
            #expect(q.count == 2)
            #expect(q.isFull)
            try await putter.join()
            #expect(try await q.get() == "b")
            #expect(try await q.get() == "c")
        }
    }

    @Test(.timeLimit(.minutes(1))) func getWaitsAndGettersAreServedInOrder() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            var getters: [CurioTask<Int>] = []
            for _ in 0..<3 {
                let g = try await spawn { try await q.get() }
                getters.append(g)
                try await syncYieldUntil { g.state == .queueGet }
            }
            for i in 1...3 { try await q.put(i * 10) }
            // Every item was handed to a waiting getter: none is left for a newcomer.
            #expect(q.isEmpty)
            #expect(try await q.get(timeout: 0) == nil)
            #expect(try await getters[0].join() == 10)
            #expect(try await getters[1].join() == 20)
            #expect(try await getters[2].join() == 30)
        }
    }

    @Test(.timeLimit(.minutes(1))) func puttersAreServedInOrder() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            try await q.put(0)
            var putters: [CurioTask<Void>] = []
            for i in 1...4 {
                let p = try await spawn { try await q.put(i) }
                putters.append(p)
                try await syncYieldUntil { p.state == .queuePut }
            }
            var got: [Int] = []
            for _ in 0...4 { got.append(try await q.get()) }
            #expect(got == [0, 1, 2, 3, 4])
            for p in putters { try await p.join() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func timeouts() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            #expect(try await q.get(timeout: 0.002) == nil)
            #expect(try await q.put(1, timeout: 0.002))
            #expect(try await q.put(2, timeout: 0.002) == false)
            #expect(q.count == 1)
            #expect(try await q.get() == 1)
            #expect(q.isEmpty)                             // the timed-out item never went in
            #expect(try await q.join(timeout: 0.002) == false)
            try await q.taskDone()
            #expect(try await q.join(timeout: 0.002))
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledGetterLosesNoItem() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            let getter = try await spawn { try await q.get() }
            try await syncYieldUntil { getter.state == .queueGet }
            try await getter.cancel()
            #expect(try await getter.join() == nil)
            try await q.put(1)
            #expect(q.count == 1)
            #expect(try await q.get() == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledPutterAddsNothing() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            try await q.put(1)
            let putter = try await spawn { try await q.put(2) }
            try await syncYieldUntil { putter.state == .queuePut }
            try await putter.cancel()
            #expect(q.count == 1)
            #expect(try await q.get() == 1)
            #expect(q.isEmpty)
            try await q.taskDone()
            #expect(try await q.join(timeout: 0))        // the cancelled item was never counted
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelAfterHandOffStillDeliversTheItem() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            let got = SyncBox<[Int]>([])
            let getter = try await spawn {
                got.value.append(try await q.get())
                try await Curio.sleep(0)                  // the cancellation lands here
            }
            try await syncYieldUntil { getter.state == .queueGet }
            try await q.put(9)                            // handed to the getter
            try await getter.cancel(blocking: false)
            #expect(try await getter.join() == nil)
            #expect(got.value == [9])
            #expect(q.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelAfterMoveInKeepsThePutDone() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            try await q.put(1)
            let log = SyncBox<[String]>([])
            let putter = try await spawn {
                try await q.put(2)
                log.value.append("put")
                try await Curio.sleep(0)
            }
            try await syncYieldUntil { putter.state == .queuePut }
            #expect(try await q.get() == 1)               // moves 2 in and completes the put
            try await putter.cancel(blocking: false)
            try await putter.join()
            #expect(log.value == ["put"])
            #expect(try await q.get() == 2)
        }
    }

    @Test(.timeLimit(.minutes(1))) func joinWaitsForTaskDone() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            #expect(try await q.join())                   // nothing put: returns at once
            let handled = SyncBox<[Int]>([])
            let worker = try await spawn {
                while true {
                    let item = try await q.get()
                    try await Curio.sleep(0)
                    handled.value.append(item)
                    try await q.taskDone()
                }
            }
            for i in 0..<5 { try await q.put(i) }
            try await q.join()
            #expect(handled.value == [0, 1, 2, 3, 4])
            let joiner = try await spawn { try await q.join() }
            try await q.put(5)
            try await syncYieldUntil { joiner.state == .queueJoin }
            #expect(joiner.state.description == "QUEUE_JOIN")
            try await joiner.join()
            #expect(handled.value.count == 6)
            try await worker.cancel()
        }
    }

    @Test(.timeLimit(.minutes(1))) func optionalItems() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int?>()
            try await q.put(nil)
            try await q.put(3)
            let first: Int?? = try await q.get(timeout: 0)
            #expect(first == .some(nil))
            #expect(try await q.get() == 3)
            #expect(try await q.get(timeout: 0) == Int??.none)
        }
    }

    @Test(.timeLimit(.minutes(1))) func queueStates() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            let getter = try await spawn { try await q.get() }
            try await syncYieldUntil { getter.state == .queueGet }
            #expect(getter.state.description == "QUEUE_GET")
            try await q.put(1)
            try await getter.join()
            try await q.put(2)
            let putter = try await spawn { try await q.put(3) }
            try await syncYieldUntil { putter.state == .queuePut }
            #expect(putter.state.description == "QUEUE_PUT")
            try await putter.cancel()
        }
    }

    @Test(.timeLimit(.minutes(1))) func asyncIteration() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            let pq = PriorityQueue<Int>()
            let lq = LifoQueue<Int>()
            let producer = try await spawn {
                for i in 1...3 {
                    try await q.put(i)
                    try await pq.put(10 - i)
                    try await lq.put(i)
                    try await Curio.sleep(0)
                }
                try await q.put(0)
            }
            var got: [Int] = []
            for try await item in q {
                if item == 0 { break }
                got.append(item)
            }
            #expect(got == [1, 2, 3])
            try await producer.join()
            var smallest: [Int] = []
            for try await item in pq {
                smallest.append(item)
                if pq.isEmpty { break }
            }
            #expect(smallest == [7, 8, 9])
            var latest: [Int] = []
            for try await item in lq {
                latest.append(item)
                if lq.isEmpty { break }
            }
            #expect(latest == [3, 2, 1])
        }
    }

    // MARK: - PriorityQueue

    struct Job: Comparable {
        let priority: Int
        let name: String
        static func < (a: Job, b: Job) -> Bool { a.priority < b.priority }
        static func == (a: Job, b: Job) -> Bool { a.priority == b.priority }
    }

    @Test(.timeLimit(.minutes(1))) func priorityQueueGivesSmallestFirstAndIsStable() async throws {
        try await KernelHarness.runMain {
            let q = PriorityQueue<Job>()
            let input = [(3, "c1"), (1, "a1"), (2, "b1"), (1, "a2"), (3, "c2"), (2, "b2"), (1, "a3")]
            for (p, n) in input { try await q.put(Job(priority: p, name: n)) }
            var names: [String] = []
            while !q.isEmpty { names.append(try await q.get().name) }
            #expect(names == ["a1", "a2", "a3", "b1", "b2", "c1", "c2"])
        }
    }

    @Test(.timeLimit(.minutes(1))) func priorityQueueSortsManyItems() async throws {
        try await KernelHarness.runMain {
            var rng = SyncRNG(seed: 42)
            let q = PriorityQueue<Int>()
            var values: [Int] = []
            for _ in 0..<500 {
                let v = Int.random(in: 0..<100, using: &rng)
                values.append(v)
                try await q.put(v)
            }
            var out: [Int] = []
            for _ in 0..<250 { out.append(try await q.get()) }
            for _ in 0..<100 {
                let v = Int.random(in: 0..<100, using: &rng)
                values.append(v)
                try await q.put(v)
            }
            while !q.isEmpty { out.append(try await q.get()) }
            #expect(out.count == values.count)
            #expect(Array(out.prefix(250)) == Array(values.prefix(500).sorted().prefix(250)))
            #expect(out.sorted() == values.sorted())
        }
    }

    @Test(.timeLimit(.minutes(1))) func priorityQueueBoundedAndWaiting() async throws {
        try await KernelHarness.runMain {
            let q = PriorityQueue<Int>(maxSize: 2)
            let getter = try await spawn { try await q.get() }
            try await syncYieldUntil { getter.state == .queueGet }
            try await q.put(5)
            #expect(try await getter.join() == 5)
            try await q.put(9)
            try await q.put(4)
            #expect(q.isFull)
            #expect(try await q.put(1, timeout: 0.002) == false)
            let putter = try await spawn { try await q.put(7) }
            try await syncYieldUntil { putter.state == .queuePut }
            #expect(try await q.get() == 4)
            #expect(try await q.get() == 7)
            #expect(try await q.get() == 9)
            try await putter.join()
            for _ in 0..<4 { try await q.taskDone() }
            #expect(try await q.join(timeout: 0))
        }
    }

    // MARK: - LifoQueue

    @Test(.timeLimit(.minutes(1))) func lifoQueueGivesTheLatestFirst() async throws {
        try await KernelHarness.runMain {
            let q = LifoQueue<Int>(maxSize: 3)
            for i in 1...3 { try await q.put(i) }
            #expect(q.isFull)
            let putter = try await spawn { try await q.put(4) }
            try await syncYieldUntil { putter.state == .queuePut }
            #expect(try await q.get() == 3)               // then 4 is pushed
            try await putter.join()
            var out: [Int] = []
            while !q.isEmpty { out.append(try await q.get()) }
            #expect(out == [4, 2, 1])
            #expect(try await q.get(timeout: 0.001) == nil)
            for _ in 0..<4 { try await q.taskDone() }
            #expect(try await q.join())
        }
    }

    // MARK: - Bad input

    @Test(.timeLimit(.minutes(1))) func taskDoneTooOftenThrows() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>()
            await expectSyncUsageError(.invalidArgument) { try await q.taskDone() }
            try await q.put(1)
            _ = try await q.get()
            try await q.taskDone()
            await expectSyncUsageError(.invalidArgument) { try await q.taskDone() }
            let pq = PriorityQueue<Int>()
            await expectSyncUsageError(.invalidArgument) { try await pq.taskDone() }
            let lq = LifoQueue<Int>()
            await expectSyncUsageError(.invalidArgument) { try await lq.taskDone() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func invalidTimeoutsAreRejected() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: 1)
            let pq = PriorityQueue<Int>()
            let lq = LifoQueue<Int>()
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await q.put(1, timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { _ = try await q.get(timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { try await q.join(timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { try await pq.put(1, timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { _ = try await pq.get(timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { try await lq.put(1, timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { _ = try await lq.get(timeout: bad) }
            }
            #expect(q.isEmpty && pq.isEmpty && lq.isEmpty)
        }
    }

    @Test(.timeLimit(.minutes(1))) func nonPositiveMaxSizeMeansUnbounded() async throws {
        try await KernelHarness.runMain {
            let q = Queue<Int>(maxSize: -3)
            for i in 0..<10 { try await q.put(i) }
            #expect(!q.isFull)
            #expect(q.count == 10)
            #expect(q.maxSize == -3)
        }
    }

    @Test(.timeLimit(.minutes(1))) func usingAQueueOutsideAKernelThrows() async throws {
        let q = Queue<Int>()
        await expectSyncUsageError(.notInKernel) { try await q.put(1) }
        await expectSyncUsageError(.notInKernel) { _ = try await q.get() }
        await expectSyncUsageError(.notInKernel) { try await q.join() }
        await expectSyncUsageError(.notInKernel) { try await q.taskDone() }
        #expect(q.isEmpty)
        let pq = PriorityQueue<Int>()
        await expectSyncUsageError(.notInKernel) { try await pq.put(1) }
        let lq = LifoQueue<Int>()
        await expectSyncUsageError(.notInKernel) { try await lq.put(1) }
    }

    @Test(.timeLimit(.minutes(1))) func usingAQueueFromTwoKernelsThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            let q = Queue<Int>()
            let pq = PriorityQueue<Int>()
            let lq = LifoQueue<Int>()
            let first = Kernel()
            try first.run {
                try await q.put(1)
                try await pq.put(1)
                try await lq.put(1)
            }
            let second = Kernel()
            try second.run {
                await expectSyncUsageError(.wrongKernel) { _ = try await q.get() }
                await expectSyncUsageError(.wrongKernel) { try await q.put(2) }
                await expectSyncUsageError(.wrongKernel) { _ = try await pq.get() }
                await expectSyncUsageError(.wrongKernel) { _ = try await lq.get() }
            }
            #expect(q.count == 1 && pq.count == 1 && lq.count == 1)
            withExtendedLifetime(first) {}
        }
    }
}

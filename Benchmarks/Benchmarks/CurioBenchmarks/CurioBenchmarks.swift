// Detailed statistics for Curio's hot paths with ordo-one/benchmark:
//
//   cd Benchmarks && swift package benchmark
//   swift package benchmark --filter "spawn.*"
//
// Each iteration runs one kernel turn-around (`kernel.run { ... }`) of
// `scaledIterations.count` operations (1,000: scalingFactor .kilo), so the
// reported times and allocation counts are per operation. Each iteration
// creates its kernel before the measurement starts, so io_uring setup is
// not measured. The side-by-side comparison with Swift concurrency and
// SwiftNIO is `curio-bench`; this target is for looking closely at Curio.

import Benchmark
import Curio

let benchmarks: @Sendable () -> Void = {
    let perOp = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )

    // 10 tasks × 100 yields = 1,000 switches per iteration.
    Benchmark("task switch (Curio.sleep(0))", configuration: perOp) { benchmark in
        let kernel = Kernel()
        let ops = benchmark.scaledIterations.count
        let tasks = 10
        benchmark.startMeasurement()
        try kernel.run {
            var handles: [CurioTask<Void>] = []
            for _ in 0..<tasks {
                handles.append(try await spawn {
                    for _ in 0..<(ops / tasks) { try await Curio.sleep(0) }
                })
            }
            for h in handles { try await h.join() }
        }
        benchmark.stopMeasurement()
    }

    Benchmark("spawn + join", configuration: perOp) { benchmark in
        let kernel = Kernel()
        let ops = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        let sum = try kernel.run {
            var sum = 0
            for _ in 0..<ops {
                let t = try await spawn { 1 }
                sum += try await t.join() ?? 0
            }
            return sum
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }

    Benchmark("queue ping-pong (round trips)", configuration: perOp) { benchmark in
        let kernel = Kernel()
        let ops = benchmark.scaledIterations.count
        benchmark.startMeasurement()
        let last = try kernel.run {
            let toPong = Queue<Int>(), toPing = Queue<Int>()
            let ponger = try await spawn {
                for _ in 0..<ops {
                    let x = try await toPong.get()
                    try await toPing.put(x)
                }
            }
            var last = 0
            for i in 0..<ops {
                try await toPong.put(i)
                last = try await toPing.get()
            }
            try await ponger.join()
            return last
        }
        benchmark.stopMeasurement()
        blackHole(last)
    }

    Benchmark("event ping-pong (handoffs)", configuration: perOp) { benchmark in
        let kernel = Kernel()
        let roundTrips = benchmark.scaledIterations.count / 2
        benchmark.startMeasurement()
        try kernel.run {
            let ping = Event(), pong = Event()
            let ponger = try await spawn {
                for _ in 0..<roundTrips {
                    try await ping.wait()
                    ping.clear()
                    await pong.set()
                }
            }
            for _ in 0..<roundTrips {
                await ping.set()
                try await pong.wait()
                pong.clear()
            }
            try await ponger.join()
        }
        benchmark.stopMeasurement()
    }

    Benchmark("lock handoff (2 tasks)", configuration: perOp) { benchmark in
        let kernel = Kernel()
        let perTask = benchmark.scaledIterations.count / 2
        benchmark.startMeasurement()
        try kernel.run {
            let lock = Lock()
            try await lock.acquire()
            var workers: [CurioTask<Void>] = []
            for _ in 0..<2 {
                workers.append(try await spawn {
                    for _ in 0..<perTask {
                        try await lock.acquire()
                        try await lock.release()
                    }
                })
            }
            try await Curio.sleep(0)
            try await lock.release()
            for w in workers { try await w.join() }
        }
        benchmark.stopMeasurement()
    }

    // 100,000 tasks asleep at once for one second: the time over one second
    // and the memory they take (peak RSS, mallocs per sleeper).
    Benchmark(
        "100,000 sleepers of 1 s",
        configuration: .init(
            metrics: [.wallClock, .peakMemoryResidentDelta, .mallocCountTotal],
            scalingFactor: .one,
            maxDuration: .seconds(5),
            maxIterations: 3
        )
    ) { benchmark in
        let kernel = Kernel()
        let n = 100_000
        benchmark.startMeasurement()
        try kernel.run {
            var handles: [CurioTask<Void>] = []
            handles.reserveCapacity(n)
            for _ in 0..<n {
                handles.append(try await spawn { try await Curio.sleep(1) })
            }
            for h in handles { try await h.join() }
        }
        benchmark.stopMeasurement()
    }
}

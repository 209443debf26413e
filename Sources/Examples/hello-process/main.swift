// Work in child processes: the crash of one is an error in the parent,
// not its end. Run with an argument to pick a scenario (default: all).
import Curio
import Glibc

func fib(_ n: Int) -> Int { n <= 2 ? 1 : fib(n - 1) + fib(n - 2) }

struct WorkerFailure: Error, CustomStringConvertible {
    var description: String { "the input was rejected" }
}

ProcessWorker.register("fib") { input in
    let n = Int(String(decoding: input, as: UTF8.self)) ?? 0
    return Array(String(fib(n)).utf8)
}
ProcessWorker.register("crash") { _ in
    // A real invalid memory access, not just a raised signal.
    let p = UnsafeMutablePointer<Int>(bitPattern: 8)!
    p.pointee = 1
    return []
}
ProcessWorker.register("fail") { _ in throw WorkerFailure() }
ProcessWorker.register("spin") { _ in
    while true { usleep(10_000) }
}
ProcessWorker.runIfWorker()

let scenario = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "all"

try Curio.run {
    if scenario == "all" || scenario == "pool" {
        // Many small jobs, four children at a time.
        let jobs = Int(getenv("JOBS").map { String(cString: $0) } ?? "") ?? 1000
        let limit = Curio.Semaphore(value: 4)
        var sum = 0
        try await withCurioTaskGroup(of: Int.self) { g in
            for i in 0..<jobs {
                try await g.spawn {
                    try await limit.withLock {
                        Int(String(decoding: try await runInProcess("fib", input: Array(String(i % 20 + 1).utf8)), as: UTF8.self))!
                    }
                }
            }
            try await g.join()
            sum = try g.results.reduce(0, +)
        }
        print("pool: \(jobs) jobs, sum \(sum)")
    }
    if scenario == "all" || scenario == "cancel" {
        let t = try await spawn { try await runInProcess("spin") }
        try await Curio.sleep(0.2)
        try await t.cancel()
        print("cancel: long job cancelled")
    }
    if scenario == "all" || scenario == "crash" {
        do {
            _ = try await runInProcess("crash")
        } catch let e as ProcessWorkError {
            print("crash: \(e.crashed ? "child crashed" : "child failed"): \(e.status)")
        }
        do {
            _ = try await runInProcess("fail")
        } catch let e as ProcessWorkError {
            print("fail: \(e.message)")
        }
    }
}

// The harness: which workloads exist, how their sizes scale, how the
// contenders are run round-robin, and how the medians are printed.
//
// Every contender function runs one measurement synchronously and returns a
// `Sample`; it does its own setup (a fresh Curio kernel, a detached Swift
// task, the shared NIO event loop) outside the timed part.

import CBenchSupport
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Workloads and contenders

enum Workload: String, CaseIterable, Sendable {
    case taskSwitch = "switch"
    case spawnJoin = "spawn"
    case queuePingPong = "queue"
    case eventPingPong = "event"
    case lockHandoff = "lock"
    case sleepers = "sleep"
    case workerRoundTrip = "worker"
    case threadQueue = "uqueue"

    /// Other names accepted on the command line.
    static func parse(_ s: String) -> Workload? {
        switch s.lowercased() {
        case "switch", "yield", "taskswitch": return .taskSwitch
        case "spawn", "spawnjoin", "join": return .spawnJoin
        case "queue": return .queuePingPong
        case "event": return .eventPingPong
        case "lock": return .lockHandoff
        case "sleep", "sleepers", "sleeper": return .sleepers
        case "worker", "workers", "thread": return .workerRoundTrip
        case "uqueue", "universal", "threadqueue": return .threadQueue
        default: return nil
        }
    }
}

enum Contender: String, CaseIterable, Sendable {
    case curio, swift, nio

    var title: String {
        switch self {
        case .curio: return "Curio"
        case .swift: return "Swift concurrency"
        case .nio: return "SwiftNIO"
        }
    }
}

/// The sizes of every workload; `--quick` divides the counts by ten (the
/// sleep itself stays one second).
struct Sizes: Sendable {
    var switchTasks = 100
    var switchYields = 10_000
    var spawns = 100_000
    var queueRoundTrips = 100_000
    var eventHandoffs = 100_000
    var lockHandoffs = 100_000
    /// More lock tasks than threads in Swift's pool, so that some task is
    /// always parked on the lock: every release is then a handoff, and
    /// Swift's result does not flip between handing off and barging.
    var lockTasks = max(4, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    var sleepers = 100_000
    var sleepSeconds = 1.0
    var workerRoundTrips = 20_000
    var threadQueueItems = 200_000

    static func make(quick: Bool) -> Sizes {
        var s = Sizes()
        if quick {
            s.switchYields /= 10
            s.spawns /= 10
            s.queueRoundTrips /= 10
            s.eventHandoffs /= 10
            s.lockHandoffs /= 10
            s.sleepers /= 10
            s.workerRoundTrips /= 10
            s.threadQueueItems /= 10
        }
        return s
    }

    func label(_ w: Workload) -> String {
        switch w {
        case .taskSwitch:
            return "task switch (\(switchTasks) tasks × \(fmtCount(switchYields)) yields), switches/s"
        case .spawnJoin:
            return "spawn + join (\(fmtCount(spawns)), sequential), spawns/s"
        case .queuePingPong:
            return "queue ping-pong (\(fmtCount(queueRoundTrips)) round trips), round trips/s"
        case .eventPingPong:
            return "event ping-pong (\(fmtCount(eventHandoffs)) handoffs), handoffs/s"
        case .lockHandoff:
            return "lock handoff (\(fmtCount(lockHandoffs)), \(lockTasks) tasks), acquisitions/s"
        case .sleepers:
            return "\(fmtCount(sleepers)) sleepers of \(fmtSeconds(sleepSeconds))"
        case .workerRoundTrip:
            return "worker thread round trip (\(fmtCount(workerRoundTrips)), sequential), round trips/s"
        case .threadQueue:
            return "thread → task queue (\(fmtCount(threadQueueItems)) items from a plain thread), items/s"
        }
    }
}

/// One measurement. Throughput workloads fill `opsPerSecond`; the sleepers
/// fill the other three.
struct Sample: Sendable {
    var opsPerSecond: Double?
    var secondsOverIdeal: Double?
    /// malloc'd bytes in use at the peak minus before, per task (mallinfo2).
    var heapBytesPerTask: Double?
    /// Resident set growth per task (/proc/self/statm), after malloc_trim.
    var rssBytesPerTask: Double?
    /// Fraction of lock acquisitions that went to a different task than the
    /// previous one (1.0: every acquisition was a handoff).
    var handoffFraction: Double?
    /// A second variant measured in the same round (Swift's actor lock),
    /// reported in the notes.
    var alternativeOpsPerSecond: Double?
    var alternativeHandoffFraction: Double?

    static func throughput(ops: Int, seconds: Double, handoffFraction: Double? = nil) -> Sample {
        Sample(opsPerSecond: Double(ops) / seconds, handoffFraction: handoffFraction)
    }
}

typealias Runner = @Sendable (Sizes) throws -> Sample

/// The contender's implementation of a workload, or nil for "n/a".
func runner(_ c: Contender, _ w: Workload) -> Runner? {
    switch c {
    case .curio: return CurioWorkloads.runner(w)
    case .swift: return SwiftWorkloads.runner(w)
    case .nio: return NIOWorkloads.runner(w)
    }
}

// MARK: - Command line

struct Options {
    var workloads: [Workload] = Workload.allCases
    var contenders: [Contender] = Contender.allCases
    var rounds = 5
    var quick = false
    var warmup = true

    static let usage = """
    usage: curio-bench [--quick] [--rounds N] [--contenders curio,swift,nio] [workload ...]

    workloads: switch spawn queue event lock sleep (default: all)
    --quick       divide every count by 10 (smoke test)
    --rounds N    rounds per contender (default: $BENCH_ROUNDS or 5)
    --contenders  which contenders to run (default: all three)
    --no-warmup   skip the discarded warm-up round (also BENCH_WARMUP=0)

    Rounds are interleaved round-robin (Curio, Swift, NIO, Curio, ...) and
    the median of each is reported in a Markdown table. Before the measured
    rounds, each contender runs each workload once at a tenth of its size,
    discarded (not the sleepers).
    """

    static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        if let env = getenv("BENCH_ROUNDS"), let n = Int(String(cString: env)), n > 0 {
            o.rounds = n
        }
        if let env = getenv("BENCH_WARMUP"), String(cString: env) == "0" {
            o.warmup = false
        }
        var picked: [Workload] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            switch a {
            case "--quick", "-q":
                o.quick = true
            case "--rounds", "-r":
                i += 1
                guard i < args.count, let n = Int(args[i]), n > 0 else {
                    throw UsageError("--rounds needs a positive number")
                }
                o.rounds = n
            case "--contenders", "-c":
                i += 1
                guard i < args.count else { throw UsageError("--contenders needs a list") }
                o.contenders = try args[i].split(separator: ",").map {
                    guard let c = Contender(rawValue: $0.lowercased()) else {
                        throw UsageError("unknown contender '\($0)' (curio, swift, nio)")
                    }
                    return c
                }
            case "--no-warmup":
                o.warmup = false
            case "--help", "-h":
                print(usage)
                exit(0)
            default:
                if a == "all" {
                    picked += Workload.allCases
                } else if let w = Workload.parse(a) {
                    picked.append(w)
                } else {
                    throw UsageError("unknown workload or option '\(a)'")
                }
            }
            i += 1
        }
        if !picked.isEmpty {
            var seen = Set<String>()
            o.workloads = picked.filter { seen.insert($0.rawValue).inserted }
        }
        return o
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: - Running

struct Row {
    let workload: Workload
    let label: String
    /// Per contender: the samples of every round (nil: not applicable).
    var samples: [Contender: [Sample]] = [:]
    var failures: [Contender: String] = [:]
}

func runAll(_ o: Options) -> [Row] {
    let sizes = Sizes.make(quick: o.quick)
    var rows: [Row] = []
    for w in o.workloads {
        var row = Row(workload: w, label: sizes.label(w))
        let active = o.contenders.compactMap { c in runner(c, w).map { (c, $0) } }
        for (c, _) in active { row.samples[c] = [] }
        // One discarded round at a tenth of the size wakes up thread pools,
        // caches and allocators; the sleepers need none (and take seconds).
        if o.warmup && w != .sleepers {
            let small = Sizes.make(quick: true)
            for (c, run) in active {
                do {
                    _ = try run(small)
                } catch {
                    row.failures[c] = "\(error)"
                    log("\(w.rawValue) warm-up \(c.rawValue): FAILED: \(error)")
                }
            }
        }
        for round in 1...o.rounds {
            for (c, run) in active where row.failures[c] == nil {
                do {
                    let s = try run(sizes)
                    row.samples[c, default: []].append(s)
                    log("\(w.rawValue) round \(round)/\(o.rounds) \(c.rawValue): \(describe(w, s))")
                } catch {
                    row.failures[c] = "\(error)"
                    log("\(w.rawValue) round \(round)/\(o.rounds) \(c.rawValue): FAILED: \(error)")
                }
            }
        }
        rows.append(row)
    }
    return rows
}

func describe(_ w: Workload, _ s: Sample) -> String {
    if w == .sleepers {
        return "\(fmt3(s.secondsOverIdeal ?? .nan)) s over ideal, "
            + "\(fmtBytes(s.heapBytesPerTask ?? .nan)) heap/task, \(fmtBytes(s.rssBytesPerTask ?? .nan)) RSS/task"
    }
    var d = "\(fmtRate(s.opsPerSecond ?? .nan))/s"
    if let h = s.handoffFraction { d += " (handoffs \(fmtPercent(h)))" }
    if let a = s.alternativeOpsPerSecond {
        d += "; actor lock \(fmtRate(a))/s"
        if let h = s.alternativeHandoffFraction { d += " (handoffs \(fmtPercent(h)))" }
    }
    return d
}

// MARK: - Report

func median(_ xs: [Double]) -> Double? {
    let v = xs.filter { !$0.isNaN }.sorted()
    if v.isEmpty { return nil }
    return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
}

func medianOf(_ row: Row, _ c: Contender, _ key: KeyPath<Sample, Double?>) -> Double? {
    guard row.failures[c] == nil, let s = row.samples[c] else { return nil }
    return median(s.compactMap { $0[keyPath: key] })
}

func report(_ rows: [Row], _ o: Options) {
    let cs = Contender.allCases
    let machine = machineDescription()
    print("")
    print("Curio benchmarks, \(utcDate()), \(machine)")
    print("Median of \(o.rounds) rounds per contender, interleaved round-robin"
          + (o.warmup ? " after a discarded warm-up" : "") + (o.quick ? ", --quick (counts ÷ 10)" : "") + ".")
    print("")
    print("| Workload | " + cs.map(\.title).joined(separator: " | ") + " | Curio / Swift | Curio / NIO |")
    print("| --- | " + cs.map { _ in "---:" }.joined(separator: " | ") + " | ---: | ---: |")

    func cell(_ row: Row, _ c: Contender, _ key: KeyPath<Sample, Double?>, _ f: (Double) -> String) -> String {
        if !o.contenders.contains(c) { return "–" }
        if row.failures[c] != nil { return "failed" }
        if row.samples[c] == nil { return "n/a" }
        return medianOf(row, c, key).map(f) ?? "n/a"
    }
    func ratio(_ row: Row, _ other: Contender, _ key: KeyPath<Sample, Double?>) -> String {
        guard let a = medianOf(row, .curio, key), let b = medianOf(row, other, key), b != 0 else { return "n/a" }
        return String(format2(a / b)) + "x"
    }
    func line(_ label: String, _ row: Row, _ key: KeyPath<Sample, Double?>, _ f: (Double) -> String) {
        print("| \(label) | " + cs.map { cell(row, $0, key, f) }.joined(separator: " | ")
              + " | \(ratio(row, .swift, key)) | \(ratio(row, .nio, key)) |")
    }

    for row in rows {
        if row.workload == .sleepers {
            line(row.label + ": seconds over ideal (lower is better)", row, \.secondsOverIdeal, fmt3)
            line(row.label + ": heap bytes per task (lower is better)", row, \.heapBytesPerTask, fmtBytes)
            line(row.label + ": RSS bytes per task (lower is better)", row, \.rssBytesPerTask, fmtBytes)
        } else {
            line(row.label, row, \.opsPerSecond, fmtRate)
        }
    }
    print("")

    var notes: [String] = []
    for row in rows {
        for c in cs {
            let key: KeyPath<Sample, Double?> = row.workload == .sleepers ? \.secondsOverIdeal : \.opsPerSecond
            guard row.failures[c] == nil, let v = row.samples[c]?.compactMap({ $0[keyPath: key] }),
                  let lo = v.min(), let hi = v.max(), lo > 0, hi / lo > 1.5 else { continue }
            let f: (Double) -> String = row.workload == .sleepers ? { fmt3($0) + " s" } : { fmtRate($0) + "/s" }
            notes.append("\(c.title) \(row.workload.rawValue) varied from \(f(lo)) to \(f(hi)) across rounds")
        }
        for c in cs {
            if let f = row.failures[c] { notes.append("\(c.title) \(row.workload.rawValue) failed: \(f)") }
        }
        if row.workload == .lockHandoff {
            for c in cs {
                if let h = medianOf(row, c, \.handoffFraction) {
                    notes.append("\(c.title) lock: \(fmtPercent(h)) of acquisitions were handoffs to another task")
                }
                if let a = medianOf(row, c, \.alternativeOpsPerSecond) {
                    var n = "\(c.title) lock as an actor (for reference; the table uses the continuation lock): \(fmtRate(a)) acquisitions/s"
                    if let h = medianOf(row, c, \.alternativeHandoffFraction) { n += ", \(fmtPercent(h)) handoffs" }
                    notes.append(n)
                }
            }
        }
    }
    for n in notes { print("- " + n) }
    if !notes.isEmpty { print("") }
}

// MARK: - Bridging, timing, memory

/// The result of a detached task: written by the task before it signals,
/// read by the waiting thread after.
private final class Outcome<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

/// Runs `body` on Swift's default executor and blocks the calling thread
/// until it ends. The calling thread is never one of the pool's threads.
func runOnDefaultExecutor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let outcome = Outcome<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do {
            outcome.result = .success(try await body())
        } catch {
            outcome.result = .failure(error)
        }
        done.signal()
    }
    done.wait()
    return try outcome.result!.get()
}

/// A monotonic timestamp in seconds.
@inline(__always)
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Bytes handed out by malloc and not yet freed (all arenas, mmapped
/// chunks included).
func heapInUse() -> Int {
    Int(bench_heap_in_use())
}

/// Resident set size from /proc/self/statm.
func residentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY)
    if fd < 0 { return 0 }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 128)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n <= 0 { return 0 }
    let fields = buf[0..<n].split(separator: UInt8(ascii: " "))
    guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Memory before a sleeper run: returns freed memory to the system first so
/// that the RSS growth of this run is not hidden by a previous run's pages.
struct MemoryMark: Sendable {
    let heap: Int
    let rss: Int

    static func baseline() -> MemoryMark {
        bench_trim_heap()
        return MemoryMark(heap: heapInUse(), rss: residentBytes())
    }

    static func current() -> MemoryMark {
        MemoryMark(heap: heapInUse(), rss: residentBytes())
    }

    /// Per-task growth from `base` to `self`.
    func perTask(since base: MemoryMark, tasks: Int) -> (heap: Double, rss: Double) {
        (Double(heap - base.heap) / Double(tasks), Double(rss - base.rss) / Double(tasks))
    }
}

func sleeperSample(start: Double, end: Double, ideal: Double, base: MemoryMark, peak: MemoryMark, tasks: Int) -> Sample {
    let per = peak.perTask(since: base, tasks: tasks)
    return Sample(secondsOverIdeal: end - start - ideal, heapBytesPerTask: per.heap, rssBytesPerTask: per.rss)
}

/// A workload that did not do what it claims.
struct BenchCheckFailed: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
    if !ok { throw BenchCheckFailed(what()) }
}

// MARK: - Formatting and machine

func log(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func format2(_ x: Double) -> String {
    let r = (x * 100).rounded() / 100
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < 2 { s += String(repeating: "0", count: 2 - decimals) }
    }
    return s
}

func fmt3(_ x: Double) -> String {
    if x.isNaN { return "n/a" }
    let r = (x * 1000).rounded() / 1000
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < 3 { s += String(repeating: "0", count: 3 - decimals) }
    }
    return s
}

func fmtRate(_ x: Double) -> String {
    if x.isNaN { return "n/a" }
    if x >= 1e6 { return format2(x / 1e6) + "M" }
    if x >= 1e3 { return String(Int((x / 1e3).rounded())) + "k" }
    return String(Int(x.rounded()))
}

func fmtBytes(_ x: Double) -> String {
    if x.isNaN { return "n/a" }
    if abs(x) >= 1024 { return format2(x / 1024) + " KiB" }
    return String(Int(x.rounded())) + " B"
}

func fmtPercent(_ x: Double) -> String {
    String(Int((x * 100).rounded())) + "%"
}

func fmtSeconds(_ x: Double) -> String {
    x == x.rounded() ? "\(Int(x)) s" : "\(x) s"
}

func fmtCount(_ n: Int) -> String {
    var s = String(n)
    var i = s.count - 3
    while i > 0 {
        s.insert(",", at: s.index(s.startIndex, offsetBy: i))
        i -= 3
    }
    return s
}

func utcDate() -> String {
    var t = time(nil)
    var tm = tm()
    gmtime_r(&t, &tm)
    var buf = [CChar](repeating: 0, count: 64)
    let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M UTC", &tm)
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func machineDescription() -> String {
    var u = utsname()
    uname(&u)
    let machine = withUnsafeBytes(of: &u.machine) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    let release = withUnsafeBytes(of: &u.release) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
    var d = "\(machine), \(cores) cores, Linux \(release)"
    if let cpu = cpuModel() { d += ", \(cpu)" }
    return d
}

/// The CPU model name from /proc/cpuinfo, when there is one.
func cpuModel() -> String? {
    guard let f = fopen("/proc/cpuinfo", "r") else { return nil }
    defer { fclose(f) }
    var line: UnsafeMutablePointer<CChar>?
    var cap = 0
    defer { free(line) }
    while getline(&line, &cap, f) > 0 {
        let s = String(cString: line!)
        if s.hasPrefix("model name") || s.hasPrefix("Hardware") {
            if let colon = s.firstIndex(of: ":") {
                return s[s.index(after: colon)...].trimmingCharacters()
            }
        }
    }
    return nil
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }
}


/// Runs `body` on a new plain thread (not one of Swift's or NIO's).
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var tid = pthread_t()
    let arg = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(&tid, nil, { p in
        Unmanaged<Box>.fromOpaque(p!).takeRetainedValue().body()
        return nil
    }, arg)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(tid)
}

// `make demo`: a one-minute tour of what Curio can do today. It runs the
// seed's programs (their Swift twins, built beside this executable) with a
// scaled clock, then races Curio's kernel against Swift's own concurrency on
// task switches and spawn+join in this same process.
import Curio
import Glibc

let scale = 0.05
let exeDir: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let path = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    return path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
}()

func banner(_ text: String) {
    print("\n\u{1B}[1m== \(text)\u{1B}[0m")
}

/// Runs one example executable with the scaled clock and echoes its output.
/// `killAfter` ends programs that, like the seed's, hang on purpose.
func runExample(_ name: String, killAfter: Double? = nil) {
    let path = "\(exeDir)/\(name)"
    guard access(path, X_OK) == 0 else {
        print("(\(name) is not built; run `swift build -c release` first)")
        return
    }
    var pid: pid_t = 0
    var env = ["CURIO_TIME_SCALE=\(scale)"]
    if let p = getenv("PATH") { env.append("PATH=\(String(cString: p))") }
    var argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
    var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    fflush(nil)  // our lines first, then the child's
    guard posix_spawn(&pid, path, nil, nil, &argv, &envp) == 0 else {
        print("(could not start \(name))")
        return
    }
    if let killAfter {
        let started = clockNow()
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if clockNow() - started > killAfter {
                print("    .... hangs .... (as the seed says; the demo stops it)")
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                return
            }
            usleep(20_000)
        }
    } else {
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

func clockNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

// MARK: - The seed's programs

print("Curio for Swift — the seed's programs, clock scaled by \(scale) (1 s becomes \(Int(scale * 1000)) ms)")
print("backend: \(Kernel().backend)")
banner("Getting Started: hello-countdown")
runExample("hello-countdown")
banner("Tasks: hello-tasks (the parent joins a kid who sleeps 1000 s)")
runExample("hello-tasks", killAfter: 18 * scale + 1)
banner("Join with a timeout, then cancel: hello-cancel")
runExample("hello-cancel")
banner("Task Synchronization: hello-event")
runExample("hello-event")

// MARK: - A quick race

banner("Task switches and spawn+join: Curio's kernel against Swift's default executor")

func curioSwitches(tasks: Int, yields: Int) throws -> Double {
    try Kernel().run {
        let t0 = clockNow()
        var all: [CurioTask<Void>] = []
        for _ in 0..<tasks {
            all.append(try await spawn { for _ in 0..<yields { try await Curio.sleep(0) } })
        }
        for t in all { try await t.join() }
        return Double(tasks * yields) / (clockNow() - t0)
    }
}

func curioSpawnJoin(_ n: Int) throws -> Double {
    try Kernel().run {
        let t0 = clockNow()
        for i in 0..<n {
            let t = try await spawn { i }
            try await t.join()
        }
        return Double(n) / (clockNow() - t0)
    }
}

func swiftSwitches(tasks: Int, yields: Int) async -> Double {
    let t0 = clockNow()
    await withTaskGroup(of: Void.self) { g in
        for _ in 0..<tasks {
            g.addTask { for _ in 0..<yields { await Task.yield() } }
        }
    }
    return Double(tasks * yields) / (clockNow() - t0)
}

func swiftSpawnJoin(_ n: Int) async -> Double {
    let t0 = clockNow()
    for i in 0..<n {
        _ = await Task { i }.value
    }
    return Double(n) / (clockNow() - t0)
}

/// Runs an async Swift-concurrency workload to completion from this
/// synchronous top level.
func blocking(_ body: @escaping @Sendable () async -> Double) -> Double {
    final class Box: @unchecked Sendable { var v = 0.0 }
    let box = Box()
    var sem = sem_t()
    sem_init(&sem, 0, 0)
    withUnsafeMutablePointer(to: &sem) { p in
        nonisolated(unsafe) let sp = p
        Task.detached {
            box.v = await body()
            sem_post(sp)
        }
        sem_wait(p)
    }
    return box.v
}

let sw = (try? curioSwitches(tasks: 100, yields: 10_000)) ?? 0
let swSwift = blocking { await swiftSwitches(tasks: 100, yields: 10_000) }
let sj = (try? curioSpawnJoin(100_000)) ?? 0
let sjSwift = blocking { await swiftSpawnJoin(100_000) }

/// `v` with `digits` decimals, without Foundation.
func fixed(_ v: Double, _ digits: Int) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let n = Int((v * p).rounded())
    let whole = n / Int(p), frac = n % Int(p)
    guard digits > 0 else { return "\(whole)" }
    let f = String(frac)
    return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
}
func rate(_ v: Double) -> String { v >= 1e6 ? fixed(v / 1e6, 2) + "M/s" : fixed(v / 1e3, 0) + "k/s" }

print("  task switch (100 tasks x 10,000 yields):  Curio \(rate(sw))  Swift \(rate(swSwift))  ratio \(fixed(sw / max(swSwift, 1), 1))x")
print("  spawn+join (100,000):                     Curio \(rate(sj))  Swift \(rate(sjSwift))  ratio \(fixed(sj / max(sjSwift, 1), 1))x")
// MARK: - The echo race

/// Starts `path args` with stdout on a pipe → (pid, read end).
func startServer(_ path: String, _ args: [String]) -> (pid_t, Int32)? {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return nil }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    fflush(nil)
    guard posix_spawn(&pid, path, &actions, nil, &argv, environ) == 0 else { return nil }
    close(fds[1])
    return (pid, fds[0])
}

/// Reads the server's first line until it names its port.
func readPort(_ fd: Int32) -> Int? {
    var line: [UInt8] = []
    var b: UInt8 = 0
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while line.count < 200, poll(&p, 1, 5000) == 1, read(fd, &b, 1) == 1 {
        if b == UInt8(ascii: "\n") {
            let text = String(decoding: line, as: UTF8.self)
            // "Server listening at ('0.0.0.0', 41234)" or "PORT 41234"
            let digits = text.split(whereSeparator: { !$0.isNumber }).last.map(String.init)
            if text.contains("PORT") || text.contains("listening") { return digits.flatMap { Int($0) } }
            line.removeAll()
        } else {
            line.append(b)
        }
    }
    return nil
}

/// Round trips per second of `loadgen` against a server, or nil.
func race(_ loadgen: String, server: String, args: [String], conns: Int) -> Double? {
    guard let (pid, out) = startServer(server, args) else { return nil }
    defer {
        kill(pid, SIGKILL)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
        close(out)
    }
    guard let port = readPort(out) else { return nil }
    // Keep draining the server's output ("Connection from ...") meanwhile.
    _ = fcntl(out, F_SETFL, O_NONBLOCK)
    guard let (lg, lgOut) = startServer(loadgen, ["-p", String(port), "-c", String(conns), "-s", "100", "-t", "2", "-w", "0.3"]) else { return nil }
    var text: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    var junk = [UInt8](repeating: 0, count: 65536)
    while true {
        var fds = [pollfd(fd: lgOut, events: Int16(POLLIN), revents: 0), pollfd(fd: out, events: Int16(POLLIN), revents: 0)]
        if poll(&fds, 2, 10_000) <= 0 { break }
        if fds[1].revents != 0 { _ = read(out, &junk, junk.count) }
        if fds[0].revents != 0 {
            let n = read(lgOut, &buf, buf.count)
            if n <= 0 { break }
            text.append(contentsOf: buf[0..<n])
        }
    }
    var st: Int32 = 0
    waitpid(lg, &st, 0)
    close(lgOut)
    // "RTPS <n> CPU ...": the number after the first word.
    let words = String(decoding: text, as: UTF8.self).split(separator: " ")
    guard let i = words.firstIndex(of: "RTPS"), i + 1 < words.count else { return nil }
    return Double(words[i + 1])
}

if let tools = getenv("CURIO_DEMO_TOOLS").map({ String(cString: $0) }) {
    banner("Echo: the seed's echo server (Curio, \(Kernel().backend)) against a raw C io_uring server, 10 connections x 100 B")
    let lg = "\(tools)/loadgen"
    // The seed's server prints with stdio, which a pipe makes block-buffered:
    // stdbuf makes its "Server listening at" line arrive at once.
    let stdbuf = "/usr/bin/stdbuf"
    let curio = access(stdbuf, X_OK) == 0
        ? race(lg, server: stdbuf, args: ["-oL", "\(exeDir)/echo-server", "0"], conns: 10)
        : race(lg, server: "\(exeDir)/echo-server", args: ["0"], conns: 10)
    let c = race(lg, server: "\(tools)/uring_echo", args: ["0"], conns: 10)
    if let curio, let c {
        print("  Curio \(Int(curio)) round trips/s, raw C io_uring \(Int(c)) round trips/s: \(fixed(curio / c, 2))x of the C server")
    } else {
        print("  (the echo race could not run here)")
    }
}

print("\nThe full tables: `make bench` and `make bench-echo` (with SwiftNIO). The tests: `make test`.")

// Fuzzing the monitor's command input (issue 10), reproducibly: a seeded
// PRNG makes random bytes, mutated commands, huge lines, partial lines and
// floods. In process, thousands of them go through the line reader and the
// parser in random chunk sizes (the reader never holds more than one line;
// a parsed command is always well-formed; the same seed gives the same
// outcome). Against a running `hello-monitor`, thousands go over its socket
// on hundreds of connections that end in every way; the program keeps
// answering with the seed's table and its resident memory stays flat.
import Glibc
import Synchronization
import Testing

@testable import Curio

/// SplitMix64: small, fast and the same everywhere, so a failing seed can
/// be replayed.
struct SeededGenerator: RandomNumberGenerator {
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

enum MonitorFuzz {
    static let commands = ["ps", "where 1", "w 2", "tree", "parents 2", "help", "h", "?", "cancel 99999", "signal KILL",
                           "signal STOP", "signal 9", "where", "cancel x", "parents", "token abc", "quit"]

    /// One fuzz input: bytes that may or may not end lines.
    static func input(_ g: inout SeededGenerator) -> [UInt8] {
        switch Int.random(in: 0..<6, using: &g) {
        case 0:  // random bytes
            return (0..<Int.random(in: 0...600, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
        case 1:  // a command with a few bytes changed, inserted or dropped
            var c = Array(commands.randomElement(using: &g)!.utf8)
            for _ in 0..<Int.random(in: 0...3, using: &g) {
                let at = Int.random(in: 0...c.count, using: &g)
                switch Int.random(in: 0..<3, using: &g) {
                case 0: c.insert(UInt8.random(in: 0...255, using: &g), at: at)
                case 1: if at < c.count { c[at] = UInt8.random(in: 0...255, using: &g) }
                default: if at < c.count { c.remove(at: at) }
                }
            }
            return c + [10]
        case 2:  // a huge line, with or without its newline
            let n = Int.random(in: 4000...9000, using: &g)
            let b = UInt8.random(in: 32...126, using: &g)
            return [UInt8](repeating: b, count: n) + (Bool.random(using: &g) ? [10] : [])
        case 3:  // a flood of one command
            let c = Array(commands.randomElement(using: &g)!.utf8) + [10]
            return Array((0..<Int.random(in: 20...200, using: &g)).map { _ in c }.joined())
        case 4:  // half a command
            let c = Array(commands.randomElement(using: &g)!.utf8)
            return Array(c.prefix(Int.random(in: 0...c.count, using: &g)))
        default:  // a well-formed command
            return Array(commands.randomElement(using: &g)!.utf8) + [10]
        }
    }

    /// `bytes` with every line that would cancel a task or send a signal
    /// (which would end the program under test) replaced.
    static func harmless(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var lines: [[UInt8]] = [[]]
        for b in bytes {
            if b == 10 { lines.append([]) } else { lines[lines.count - 1].append(b) }
        }
        for (i, line) in lines.enumerated() {
            if i > 0 { out.append(10) }
            var keep = line
            if line.count <= MonitorCommand.maxLine, MonitorCommand.isPrintable(line) {
                switch MonitorCommand.parse(String(decoding: line, as: UTF8.self)) {
                case .cancel(let id) where id < 1000: keep = Array("nope".utf8)
                case .signal: keep = Array("nope".utf8)
                default: break
                }
            }
            out += keep
        }
        return out
    }
}

@Suite(.timeLimit(.minutes(2)))
struct MonitorFuzzTests {
    typealias H = MonitorHarness

    /// Feeds `count` inputs in random chunks; a digest of everything seen.
    static func fuzzReader(seed: UInt64, count: Int) -> (digest: UInt64, lines: Int, tooLong: Int, problems: [String]) {
        var g = SeededGenerator(seed: seed)
        var reader = MonitorLineReader()
        var digest: UInt64 = 14_695_981_039_346_656_037
        var problems: [String] = []
        var lines = 0, tooLong = 0
        func mix(_ s: String) { for b in s.utf8 { digest = (digest ^ UInt64(b)) &* 1_099_511_628_211 } }
        for _ in 0..<count {
            var bytes = MonitorFuzz.input(&g)[...]
            while !bytes.isEmpty {
                let n = min(bytes.count, Int.random(in: 1...2048, using: &g))
                reader.append(bytes.prefix(n))
                bytes = bytes.dropFirst(n)
                while let next = reader.next() {
                    switch next {
                    case .tooLong:
                        tooLong += 1
                        mix("too long")
                    case .line(let raw):
                        lines += 1
                        if raw.count > MonitorCommand.maxLine { problems.append("a line of \(raw.count) bytes") }
                        if raw.contains(10) { problems.append("a line with a newline") }
                        guard MonitorCommand.isPrintable(raw) else { mix("not printable"); continue }
                        let line = String(decoding: raw, as: UTF8.self)
                        let cmd = MonitorCommand.parse(line)
                        mix("\(cmd)")
                        switch cmd {
                        case .signal(let s) where !MonitorCommand.allowedSignals.contains(s):
                            problems.append("signal \(s) accepted from \(line.debugDescription)")
                        case .reply(let text) where !text.hasSuffix("\n") || text.utf8.count > 300:
                            problems.append("odd reply \(text.debugDescription)")
                        case .whereIs(let id), .cancel(let id), .parents(let id):
                            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                            if words.count < 2 || Int(words[1]) != id { problems.append("id \(id) from \(line.debugDescription)") }
                        default:
                            break
                        }
                    }
                }
                // Drained: what is left is one unfinished line at most.
                if reader.pending > MonitorCommand.maxLine { problems.append("reader holds \(reader.pending) bytes") }
            }
        }
        return (digest, lines, tooLong, problems)
    }

    @Test(.timeLimit(.minutes(1)))
    func theLineReaderAndParserSurviveFuzzing() async throws {
        try await H.offPool { f in
            let a = Self.fuzzReader(seed: 0x5EED_CAFE, count: 2500)
            f.expect(a.problems.isEmpty, "\(a.problems.prefix(10))")
            f.expect(a.lines > 5000 && a.tooLong > 100, "lines \(a.lines), too long \(a.tooLong)")
            // Reproducible: the same seed, the same outcome.
            let b = Self.fuzzReader(seed: 0x5EED_CAFE, count: 2500)
            f.expect(a.digest == b.digest && a.lines == b.lines && a.tooLong == b.tooLong)
        }
    }

    /// Resident bytes of process `pid`.
    static func residentBytes(_ pid: pid_t) throws -> Int {
        let statm = try RemoteMonitorTests.readFile("/proc/\(pid)/statm").split(separator: " ")
        guard statm.count > 1, let pages = Int(statm[1]) else { throw H.Failure("odd statm \(statm)") }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// `inputs` fuzz inputs over connections of ten; each connection ends
    /// abruptly, half-closed (reading every answer), or after a huge line.
    static func fuzzProgram(_ ep: H.Endpoint, _ g: inout SeededGenerator, inputs: Int) throws {
        var sent = 0
        while sent < inputs {
            // Filtered as one stream: an unfinished line runs on into the
            // next input.
            var stream: [UInt8] = []
            for _ in 0..<10 where sent < inputs {
                stream += MonitorFuzz.input(&g)
                sent += 1
            }
            let c = try ep.client()
            c.send(MonitorFuzz.harmless(stream))
            if Bool.random(using: &g) {
                c.close()
            } else {
                _ = shutdown(c.fd, Int32(SHUT_WR))
                guard c.readToEOF(within: 30) != nil else {
                    let tail = MonitorFuzz.harmless(stream).suffix(200)
                    throw H.Failure("the monitor kept a half-closed fuzz client; \(stream.count) bytes ending \(String(decoding: tail, as: UTF8.self).debugDescription); got \(c.pending.suffix(300).debugDescription)")
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aRunningProgramSurvivesFuzzingWithFlatMemory() async throws {
        try await H.offPool(limit: 100) { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.5"])
            defer { child.terminate() }
            try child.expect("We're leaving!\n", within: 30)
            var g = SeededGenerator(seed: 0xF00D_F00D)
            // Warm up: every kind of input and buffer size has been seen once.
            try Self.fuzzProgram(ep, &g, inputs: 400)
            let before = try Self.residentBytes(child.pid)
            try Self.fuzzProgram(ep, &g, inputs: 3000)
            let after = try Self.residentBytes(child.pid)
            f.expect(child.isRunning, "the program died: \(H.describe(child.status)); stderr: \(child.text(.err))")
            // Flat: a leak of even one kilobyte per input would show as 3 MB.
            // (AddressSanitizer keeps freed memory in quarantine: no bound there.)
            if getenv("CURIO_SANITIZER") == nil {
                f.expect(after - before < 2 << 20, "resident memory grew from \(before) to \(after) bytes")
            }
            // And it still answers a normal command with the seed's table.
            let c = try ep.client()
            _ = try c.greeting()
            let rows = try H.parsePS(try c.command("ps")).rows
            f.expect(RemoteMonitorTests.seedState(rows), "\(rows)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theMonitorHoldsNothingOnceFuzzClientsAreGone() async throws {
        try await H.offPool { f in
            // In process, to read the monitor's own counters.
            let path = H.privateDirectory("fuzz") + "/m.sock"
            let box = H.Shared<Kernel?>(nil)
            let stop = Event()
            let thread = H.Thread {
                var config = Kernel.Configuration.builtIn
                config.monitor = .unix(path: path)
                config.monitorConsole = false
                let kernel = Kernel(configuration: config)
                box.with { $0 = kernel }
                try kernel.run {
                    try await stop.wait()
                }
                box.with { $0 = nil }
            }
            let deadline = H.now() + 20
            while box.get == nil && H.now() < deadline { usleep(1000) }
            let kernel = try box.get ?? { throw H.Failure("the kernel never started") }()
            let ep = H.Endpoint(unixPath: path, host: "", port: 0, token: nil)
            var g = SeededGenerator(seed: 0xBADC_0DE5)
            try Self.fuzzProgram(ep, &g, inputs: 1000)
            // A last client that is answered proves the monitor went through
            // everything before it; then the counters drain to nothing.
            let c = try ep.client()
            _ = try c.greeting()
            _ = try H.parsePS(try c.command("ps"))
            c.send("quit\n")
            f.expect(c.readToEOF() == "")
            let monitor = try kernel.monitor ?? { throw H.Failure("no monitor") }()
            var stats = monitor.stats.withLock { $0 }
            let until = H.now() + 20
            while (stats.clients != 0 || stats.bufferedBytes != 0) && H.now() < until {
                usleep(2000)
                stats = monitor.stats.withLock { $0 }
            }
            f.expect(stats.clients == 0 && stats.bufferedBytes == 0, "\(stats)")
            f.expect(stats.accepted >= 101, "\(stats)")
            f.expect(kernel.monitorLink?.waiterCount == 0)
            try kernel.postBlocking { await stop.set() }
            f.expect(thread.join(within: 30) == "ok")
        }
    }
}

extension MonitorHarness {
    /// What a test body running off Swift's pool found wrong.
    final class Findings: Sendable {
        private let items = Locked<[(String, SourceLocation)]>([])
        func expect(_ ok: Bool, _ what: @autoclosure () -> String = "expectation failed", sourceLocation: SourceLocation = #_sourceLocation) {
            if !ok { items.withLock { $0.append((what(), sourceLocation)) } }
        }
        var all: [(String, SourceLocation)] { items.withLock { $0 } }
    }

    /// Runs a blocking test body (child processes, sockets, bounded waits)
    /// on a thread of its own, so it does not hold one of the few threads
    /// of Swift's pool that every other test needs; then records what it
    /// found as issues of the calling test.
    static func offPool(limit: Double = 50, _ body: @escaping @Sendable (Findings) throws -> Void) async throws {
        let findings = Findings()
        do {
            try await KernelHarness.onThread(limit: limit) { try body(findings) }
        } catch {
            Issue.record("\(error)")
        }
        for (what, location) in findings.all { Issue.record(Comment(rawValue: what), sourceLocation: location) }
    }
}

// Subprocess rules (issue 13, rules 12-13; issue 10): a timeout or a
// cancellation of communicate / checkOutput kills and reaps the child
// before the error propagates; writing input to a child that closed its
// stdin is a BrokenPipeError; dropped, un-waited children are reaped by the
// reaper thread and never hold up the shared blocking pool.
import Glibc
import Testing

@testable import Curio

/// True once `pid` is gone altogether (killed and reaped: not even a zombie).
private func isGone(_ pid: pid_t) -> Bool {
    Glibc.kill(pid, 0) == -1 && errno == ESRCH
}

@Suite(.timeLimit(.minutes(1)))
struct SubprocessRulesTests {
    @Test(.timeLimit(.minutes(1)))
    func aTimeoutOfCommunicateKillsAndReapsTheChild() async throws {
        let r = try await IOTest.run { () -> [String] in
            let p = try Subprocess(["sleep", "1000"], stdout: .pipe)
            defer { if !isGone(p.pid) { Glibc.kill(p.pid, SIGKILL) } }
            let e = await IOTest.error { _ = try await timeoutAfter(0.05) { try await p.communicate() } }
            return [IOTest.kind(e), "\(p.status.map { "\($0)" } ?? "not reaped")", "gone \(isGone(p.pid))"]
        }
        #expect(r == ["TaskTimeout", "killed by signal 9", "gone true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingCheckOutputKillsAndReapsTheChild() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let pidFile = dir + "/pid"
        let r = try await IOTest.run { () -> [String] in
            let runner = try await spawn { () -> String in
                do {
                    _ = try await checkOutput(["sh", "-c", "echo $$ > \(pidFile); exec sleep 1000"])
                    return "returned"
                } catch {
                    return KernelHarness.kind(error)
                }
            }
            var pid: pid_t = 0
            try await IOTest.waitUntil("the child wrote its pid") {
                guard let text = try? String(contentsOfPOSIXFile: pidFile), let n = pid_t(text) else { return false }
                pid = n
                return true
            }
            defer { if !isGone(pid) { Glibc.kill(pid, SIGKILL) } }
            try await runner.cancel()
            return [try await runner.join() ?? "nil", "gone \(isGone(pid))"]
        }
        #expect(r == ["TaskCancelled", "gone true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func writingToAChildThatClosedItsStdinIsABrokenPipe() async throws {
        let r = try await IOTest.run { () -> [String] in
            var out: [String] = []
            let big = IOTest.pattern(8 << 20)
            do {
                _ = try await checkOutput(["true"], input: big)
                out.append("checkOutput returned")
            } catch let e as BrokenPipeError {
                out.append("checkOutput: BrokenPipeError \(e.arguments) \(e.status) errno \(e.errno == EPIPE)")
            }
            let p = try Subprocess(["sh", "-c", "exec 0<&-; echo out"], stdin: .pipe, stdout: .pipe)
            do {
                _ = try await p.communicate(input: big)
                out.append("communicate returned")
            } catch let e as BrokenPipeError {
                out.append("communicate: \(IOTest.text(e.stdout)) \(e.status) reaped \(p.status != nil)")
            }
            return out
        }
        #expect(r == ["checkOutput: BrokenPipeError [\"true\"] exited with status 0 errno true",
                      "communicate: out\n exited with status 0 reaped true"])
    }

    /// More dropped long-running children than the blocking pool has
    /// threads: runInThread still runs at once, and every child is reaped
    /// once it ends.
    @Test(.timeLimit(.minutes(1)))
    func droppedChildrenNeverHoldTheBlockingPool() async throws {
        let r = try await IOTest.run { () -> [String] in
            var pids: [pid_t] = []
            for _ in 0..<70 {
                let p = try Subprocess(["sleep", "1000"])
                pids.append(p.pid)
            }
            // Every Subprocess has been dropped un-waited.
            let v = try await runInThread { 7 }
            for pid in pids { Glibc.kill(pid, SIGKILL) }
            try await IOTest.waitUntil("every dropped child is reaped") { pids.allSatisfy(isGone) }
            return ["runInThread \(v)", "reaped \(pids.filter(isGone).count)"]
        }
        #expect(r == ["runInThread 7", "reaped 70"])
    }
}

extension String {
    /// The contents of a small file, trimmed of whitespace at the end.
    fileprivate init(contentsOfPOSIXFile path: String) throws {
        guard let f = fopen(path, "re") else { throw IOTest.Failure("cannot open \(path)") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let n = fread(&buf, 1, 256, f)
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        while let last = bytes.last, last == 10 || last == 32 { bytes.removeLast() }
        self = String(decoding: bytes, as: UTF8.self)
    }
}

// Children Curio starts for work die with their parent, even when the
// parent is SIGKILLed: runInProcess(command:) (a plain program), a Swift
// child started the same way (what a runInProcess worker is: this binary
// with CURIO_PARENT_PID set), and the race where the parent is already gone
// when the child starts.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ParentDeathTests {
    static let sleepCommand = ["sleep", "300.0731"]  // no other test runs this

    /// Starts two children with runInProcess(command:) and prints their
    /// pids, then waits to be killed.
    static func orphanMakerScenario() throws {
        try Curio.run {
            setenv("CURIO_SOUND_SCENARIO", "sleeper", 1)
            let exe = try IOTest.selfExecutable()
            let swiftChild = [exe] + SoundScenario.arguments
            var children: [CurioTask<[UInt8]>] = []
            for command in [sleepCommand, swiftChild] {
                children.append(try await spawn(daemon: true) { try await runInProcess(command: command) })
            }
            let found = try await runInThread { () -> [pid_t] in
                [sleepCommand, swiftChild].compactMap { ProcScan.waitForChild($0, within: 20)?.pid }
            }
            SoundScenario.say("CHILDREN \(found.map(String.init).joined(separator: " "))")
            // Wait for the children (they outlive this process's kill).
            _ = try await children[0].join()
        }
    }

    /// A Swift child that just waits (to be killed with its parent).
    static func sleeperScenario() throws {
        SoundScenario.say("SLEEPING")
        sleep(50)
    }

    /// Gone, or a zombie waiting for a reaper that is not ours.
    static func isGone(_ pid: pid_t) -> Bool {
        guard let e = ProcScan.entry(pid) else { return true }
        return e.state == "Z" || e.state == "X"
    }

    @Test func childrenDieWhenTheirParentIsKilled() async throws {
        let parent = try SoundScenario.start("orphan-maker")
        try await KernelHarness.onThread(limit: 50) {
            try Curio.run {
                try await parent.waitForOutput("its children's pids") { $0.contains { $0.hasPrefix("SOUND: CHILDREN") } }
            }
        }
        let line = parent.stdoutLines.first { $0.hasPrefix("SOUND: CHILDREN") }!
        let pids = line.split(separator: " ").dropFirst(2).compactMap { pid_t($0) }
        #expect(pids.count == 2, "found \(line)")
        for pid in pids { #expect(!Self.isGone(pid), "child \(pid) ended before its parent: \(parent.stdout)") }
        kill(parent.pid, SIGKILL)
        parent.waitForExit(limit: 10)
        let left = try await KernelHarness.onThread(limit: 30) { () -> [pid_t] in
            let end = IOTest.monotonicNow() + 20
            while IOTest.monotonicNow() < end && !pids.allSatisfy(Self.isGone) { usleep(2000) }
            return pids.filter { !Self.isGone($0) }
        }
        for pid in left { kill(pid, SIGKILL) }  // only if the test failed
        #expect(left.isEmpty, "children outlived their SIGKILLed parent: \(left)")
    }

    /// Fault injection for the race: a child whose parent is not the one
    /// it was told of (the parent died before the child could ask to die
    /// with it) kills itself before running anything.
    @Test func aChildWhoseParentIsAlreadyGoneDoesNotRun() async throws {
        let status = try await KernelHarness.run { _ -> Subprocess.Status? in
            var env = IOTest.currentEnvironment()
            env["CURIO_PARENT_PID"] = "1"  // not our parent: as if it had died
            env["CURIO_EXEC_COMMAND"] = "1"
            let p = try Subprocess(["/proc/self/exe", "sh", "-c", "echo ran"], stdout: .pipe, environment: env)
            let (out, _) = try await p.communicate()
            return out.isEmpty ? p.status : .exited(-99)
        }
        #expect(status == .signaled(SIGKILL))
    }

    @Test func theShimRunsTheCommandWithItsArgumentsAndStatus() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append(String(decoding: try await runInProcess(command: ["sh", "-c", "echo $0 $1", "a", "b c"]),
                               as: UTF8.self))
            // The child's environment no longer ties grandchildren to us.
            seen.append(String(decoding: try await runInProcess(command: ["sh", "-c", "echo ${CURIO_PARENT_PID:-unset}"]),
                               as: UTF8.self))
            do {
                _ = try await runInProcess(command: ["sh", "-c", "exit 7"])
            } catch let e as ProcessWorkError {
                seen.append("\(e.status)")
            }
            return seen
        }
        #expect(r == ["a b c\n", "unset\n", "exited with status 7"])
    }
}

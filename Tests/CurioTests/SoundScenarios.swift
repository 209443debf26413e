// Scenarios of the soundness tests (ParentDeathTests, SignalCoexistenceTests)
// that must own a whole process: its signal dispositions, its stderr, its
// death. The test binary runs itself again with CURIO_SOUND_SCENARIO=name
// and only `soundChildScenario` selected; a scenario prints
// "SOUND: ..." lines the parent test checks.
import Glibc
import CurioTestSupport
import Testing

@testable import Curio

enum SoundScenario {
    /// The scenario this process was started to run, if it is a child.
    static let name: String? = getenv("CURIO_SOUND_SCENARIO").map { String(cString: $0) }

    static let all: [String: @Sendable () throws -> Void] = [
        "orphan-maker": ParentDeathTests.orphanMakerScenario,
        "sleeper": ParentDeathTests.sleeperScenario,
        "signal-chain": SignalCoexistenceTests.chainScenario,
        "signal-ignored": SignalCoexistenceTests.ignoredScenario,
        "signal-reclaim": SignalCoexistenceTests.reclaimScenario,
    ]

    /// One line for the parent, at once.
    static func say(_ line: String) {
        print("SOUND: " + line)
        fflush(nil)
    }

    /// The arguments that make this test binary run only the scenario test.
    static let arguments = TestScenarios.arguments(running: "soundChildScenario")

    /// Starts scenario `name` in a child process.
    static func start(_ name: String, env extra: [String: String] = [:]) throws -> IOTest.Child {
        // No monitor, and no scaled clock: it would end the scenarios' waits early.
        var env = TestScenarios.environment(selecting: "CURIO_SOUND_SCENARIO", name,
                                            ["CURIOMONITOR": nil, "CURIO_TIME_SCALE": nil])
        for (k, v) in extra { env[k] = v }
        return try IOTest.Child(path: try IOTest.selfExecutable(), arguments: arguments, environment: env,
                                terminal: false)
    }

    /// Runs scenario `name` to its end → its SOUND lines, exit status and stderr.
    static func run(_ name: String, limit: Double = 40) throws -> (lines: [String], status: String, stderr: String) {
        let child = try start(name)
        let status = child.waitForExit(limit: limit)
        child.waitForOutputEnd()
        let lines = child.stdoutLines.compactMap { $0.hasPrefix("SOUND: ") ? String($0.dropFirst(7)) : nil }
        return (lines, IOTest.describeStatus(status), child.stderr)
    }
}

/// Runs a soundness scenario when this binary was started by
/// `SoundScenario.start`; skipped otherwise.
@Test(.enabled(if: SoundScenario.name != nil), .timeLimit(.minutes(1)))
func soundChildScenario() throws {
    let name = SoundScenario.name!
    let body = try #require(SoundScenario.all[name], "unknown scenario \(name)")
    try body()
    SoundScenario.say("END")
}

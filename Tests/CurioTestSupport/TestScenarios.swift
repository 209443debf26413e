// Re-running the test binary as a child process, shared by every harness
// that needs a scenario in a process of its own (signals, crashes, leaks,
// a peer of another user): where the binary is, the arguments that select
// one test, and an environment that selects one scenario and no other.
import Glibc

/// The pieces every re-exec harness shares.
public enum TestScenarios {
    /// What a re-exec helper throws when the binary cannot be found.
    public struct Failure: Error, CustomStringConvertible {
        /// What went wrong.
        public let description: String
    }

    /// The variables that select a child scenario, one per harness. A child
    /// gets the one its parent sets and none of the others, so a scenario
    /// never starts a second one by inheritance.
    public static let selectors = [
        "CURIO_TEST_SCENARIO", "CURIO_IO_SCENARIO", "CURIO_SOUND_SCENARIO", "CURIO_BRIDGE_CHILD",
        "CURIO_GROUP_LEAK_CHILD", "CURIO_MONITOR_PEER_SCENARIO", "CURIO_MONITOR_DEBUG_SCENARIO",
    ]

    /// The path of this test binary.
    public static func selfExecutable() throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { throw Failure(description: "cannot read /proc/self/exe") }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The directory of this test binary, where the package's executables are built too.
    public static func binaryDirectory() throws -> String {
        let path = try selfExecutable()
        guard let slash = path.lastIndex(of: "/") else { throw Failure(description: "odd executable path \(path)") }
        return String(path[..<slash])
    }

    /// The arguments that make this test binary run the one test `test`.
    public static func arguments(running test: String) -> [String] {
        ["--testing-library", "swift-testing", "--filter", test]
    }

    /// This process's environment.
    public static func currentEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    /// This process's environment with `selector` set to `value`, every
    /// other selector removed, then `extra` applied (nil removes).
    public static func environment(selecting selector: String, _ value: String,
                                   _ extra: [String: String?] = [:]) -> [String: String] {
        var env = currentEnvironment()
        for s in selectors where s != selector { env[s] = nil }
        env[selector] = value
        for (k, v) in extra { env[k] = v }
        return env
    }
}

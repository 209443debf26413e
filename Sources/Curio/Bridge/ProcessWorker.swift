#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Functions a program can run in a child process of itself, for work
/// that must be isolated: a crash there is an error here, not the end of
/// the program.
///
/// ```swift
/// // at the very top of main.swift, before anything else:
/// ProcessWorker.register("resize") { input in try resizeImage(input) }
/// ProcessWorker.runIfWorker()
///
/// // later, in a task:
/// let thumb = try await runInProcess("resize", input: imageBytes)
/// ```
///
/// The child is the same executable started again with the function's
/// name in its environment; it reads its input from stdin, writes its
/// result to stdout and exits. It dies with its parent: if the parent
/// process is killed (even by SIGKILL), Linux sends the child SIGKILL
/// (`PR_SET_PDEATHSIG`, set before any Swift code runs in the child).
public enum ProcessWorker {
    private static let registry = FunctionRegistry()

    /// Makes `fn` callable by ``runInProcess(_:input:file:line:function:)``.
    public static func register(_ name: String, _ fn: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        registry.set(name, fn)
    }

    static func function(_ name: String) -> (@Sendable ([UInt8]) throws -> [UInt8])? {
        registry.get(name)
    }

    static let environmentKey = "CURIO_PROCESS_FUNCTION"

    /// In a worker child, runs the requested function and exits; in the
    /// parent, returns at once. Call it first thing in `main`, after
    /// registering the functions.
    public static func runIfWorker() {
        guard let raw = getenv(environmentKey) else { return }
        let name = String(cString: raw)
        guard let fn = function(name) else {
            writeStderr("curio worker: no function registered as '\(name)'\n")
            exit(4)
        }
        var input: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(0, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            input.append(contentsOf: buf[0..<n])
        }
        do {
            let out = try fn(input)
            var off = 0
            while off < out.count {
                let n = out.withUnsafeBytes { write(1, $0.baseAddress! + off, $0.count - off) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { exit(5) }
                off += n
            }
            exit(0)
        } catch {
            writeStderr("\(error)")
            exit(3)
        }
    }
}

/// Thread-safe name → function table.
private final class FunctionRegistry: Sendable {
    private let table = Locked<[String: @Sendable ([UInt8]) throws -> [UInt8]]>([:])
    func set(_ name: String, _ fn: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        table.withLock { $0[name] = fn }
    }
    func get(_ name: String) -> (@Sendable ([UInt8]) throws -> [UInt8])? {
        table.withLock { $0[name] }
    }
}

/// The work in a child process failed.
public struct ProcessWorkError: Error, CustomStringConvertible {
    /// The function name or the command.
    public let what: String
    /// How the child ended.
    public let status: Subprocess.Status
    /// What the child wrote on stderr (for a registered function that
    /// threw: the error's description).
    public let message: String
    /// Whether a signal ended the child (a crash, or a kill).
    public var crashed: Bool { if case .signaled = status { return true } else { return false } }
    public var description: String {
        "ProcessWorkError: \(what) \(status)" + (message.isEmpty ? "" : ": \(message)")
    }
}

/// Runs the registered function `name` in a child process (see
/// ``ProcessWorker``) → its result. A child that crashes or throws gives a
/// ``ProcessWorkError``; cancelling the call kills and reaps the child, and
/// the child dies with this process if it is killed.
public func runInProcess(_ name: String, input: [UInt8] = [], file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> [UInt8] {
    guard ProcessWorker.function(name) != nil else {
        throw CurioUsageError(.invalidArgument, "runInProcess: no function registered as '\(name)' (ProcessWorker.register it at the top of main)")
    }
    var env = childEnvironment()
    env[ProcessWorker.environmentKey] = name
    env.removeValue(forKey: "CURIOMONITOR")  // the child must not fight over the monitor port
    return try await runChild(["/proc/self/exe"], environment: env, what: name, input: input,
                              site: CallSite(file: file, line: line, function: function))
}

/// This process's environment plus the key that ties a child's life to
/// this process (see CSources/CCurioKernel/os/parent_death.c).
private func childEnvironment() -> [String: String] {
    var env = processEnvironment()
    env["CURIO_PARENT_PID"] = String(getpid())
    return env
}

/// The path `execvp` will run for `program`, or an error naming it: the
/// command is exec'd by a shim in the child, so a missing program is
/// reported here, before anything is spawned.
private func resolveProgram(_ program: String) throws -> String {
    func runnable(_ path: String) -> Bool { access(path, X_OK) == 0 }
    if program.contains("/") {
        if runnable(program) { return program }
        throw SocketError(errno: errno, operation: "spawn '\(program)'")
    }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
        let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + program
        if runnable(candidate) { return candidate }
    }
    throw SocketError(errno: ENOENT, operation: "spawn '\(program)'")
}

/// Runs `command` in a child process with `input` on its stdin → what it
/// wrote to stdout; a non-zero exit or a crash gives a ``ProcessWorkError``.
/// Cancelling the call kills and reaps the child. The child dies with this
/// process: it is started through this executable, which sets
/// `PR_SET_PDEATHSIG` and then execs `command` (the setting survives the
/// exec, except into a set-user-ID program). Children started with
/// ``Subprocess`` directly are not tied to this process.
public func runInProcess(command: [String], input: [UInt8] = [], file: StaticString = #filePath,
                         line: UInt = #line, function: StaticString = #function) async throws -> [UInt8] {
    guard let program = command.first else {
        throw CurioUsageError(.invalidArgument, "runInProcess(command:): the command is empty")
    }
    var env = childEnvironment()
    env["CURIO_EXEC_COMMAND"] = "1"
    _ = try resolveProgram(program)
    return try await runChild(["/proc/self/exe"] + command,
                              environment: env, what: command.joined(separator: " "), input: input,
                              site: CallSite(file: file, line: line, function: function))
}

private func runChild(_ argv: [String], environment: [String: String]?, what: String, input: [UInt8],
                      site: CallSite) async throws -> [UInt8] {
    let child = try Subprocess(argv, stdin: .pipe, stdout: .pipe, stderr: .pipe, environment: environment)
    let out: [UInt8], err: [UInt8]
    do {
        (out, err) = try await child.communicate(input: input, file: site.file, line: site.line, function: site.function)
    } catch {
        child.kill()
        try await disableCancellation { _ = try await child.wait() }
        throw error
    }
    guard let status = child.status, status == .exited(0) else {
        throw ProcessWorkError(what: what, status: child.status ?? .exited(-1),
                               message: String(decoding: err.prefix(4096), as: UTF8.self))
    }
    return out
}

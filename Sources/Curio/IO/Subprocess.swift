#if canImport(Glibc)
import Glibc
#endif

/// A child process with optional pipes to its stdin, stdout and stderr,
/// as curio's `subprocess.Popen`.
///
/// ```swift
/// let p = try Subprocess(["sort"], stdin: .pipe, stdout: .pipe)
/// let (out, _) = try await p.communicate(input: Array("b\na\n".utf8))
/// print(String(decoding: out, as: UTF8.self))   // a, b
/// let status = try await p.wait()               // 0
/// ```
///
/// ``wait(file:line:function:)`` waits on a pidfd through the kernel, so it never blocks the
/// kernel thread. A cancelled or timed-out ``wait(file:line:function:)``, ``communicate(input:file:line:function:)``
/// or `checkOutput` kills the child (SIGKILL) and reaps it
/// before the error propagates: an interrupted call never orphans a child.
/// A child dropped without being waited for is reaped by Curio's reaper
/// thread (it polls the child's pidfd; never a thread of the shared
/// blocking pool, so `runInThread` never waits behind a dropped child). No
/// zombies either way.
///
/// If the parent process is killed outright (SIGKILL, a crash), its plain
/// subprocesses are not killed with it: they are re-parented to init (or
/// the nearest subreaper) and run on. Their pipes to the parent break —
/// stdin reads end-of-file, writes to stdout/stderr fail with EPIPE (or
/// SIGPIPE) — so a child that talks to its parent usually stops soon; one
/// that does not must be stopped by other means (a process group, a
/// supervisor). `runInProcess` workers, unlike these, die with their parent.
public final class Subprocess: @unchecked Sendable {
    /// Where a standard stream of the child goes.
    public enum Redirect: Sendable {
        /// The parent's own stream.
        case inherit
        /// A pipe, readable/writable through the matching property.
        case pipe
        /// `/dev/null`.
        case devNull
    }

    /// How the child ended.
    public enum Status: Sendable, Equatable, CustomStringConvertible {
        /// The child exited with this code.
        case exited(Int32)
        /// A signal with this number ended the child.
        case signaled(Int32)
        /// Python's `returncode`: the exit code, or minus the signal number.
        public var returnCode: Int32 {
            switch self {
            case .exited(let c): return c
            case .signaled(let s): return -s
            }
        }
        public var description: String {
            switch self {
            case .exited(let c): return "exited with status \(c)"
            case .signaled(let s): return "killed by signal \(s)"
            }
        }
    }

    /// The child's process id.
    public let pid: pid_t
    /// Writes to the child's stdin (with `stdin: .pipe`).
    public let stdin: SocketStream?
    /// Reads the child's stdout (with `stdout: .pipe`).
    public let stdout: SocketStream?
    /// Reads the child's stderr (with `stderr: .pipe`).
    public let stderr: SocketStream?
    /// Set once the child has been reaped.
    public private(set) var status: Status?
    private var pidfd: Int32
    /// The kernel that waited on `pidfd` (its epoll registration must be
    /// forgotten when the pidfd closes).
    private weak var pidfdKernel: Kernel?

    /// Starts `arguments[0]` (searched in PATH) with `arguments`.
    /// `environment` replaces the environment when given. The child gets
    /// descriptors 0, 1 and 2 only (as Python's `close_fds=True`): every
    /// other descriptor of this process is closed in it, close-on-exec or
    /// not.
    public init(_ arguments: [String], stdin: Redirect = .inherit, stdout: Redirect = .inherit,
                stderr: Redirect = .inherit, environment: [String: String]? = nil) throws {
        guard let program = arguments.first, !program.isEmpty else {
            throw CurioUsageError(.invalidArgument, "Subprocess needs at least the program name in arguments")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var parentEnds: [Pipe?] = [nil, nil, nil]
        var childEnds: [Int32] = []
        defer { for fd in childEnds { Glibc.close(fd) } }
        do {
            for (target, how) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
                switch how {
                case .inherit:
                    break
                case .devNull:
                    posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
                case .pipe:
                    var fds: [Int32] = [0, 0]
                    let r = systemPipe(&fds, O_CLOEXEC)
                    guard r == 0 else { throw SocketError(errno: -r, operation: "pipe2") }
                    let (childEnd, parentEnd) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
                    childEnds.append(childEnd)
                    parentEnds[Int(target)] = Pipe(adopting: parentEnd)
                    posix_spawn_file_actions_adddup2(&actions, childEnd, target)
                }
            }
        }
        // Only stdin, stdout and stderr reach the child (Python's
        // close_fds=True): a descriptor any part of this process opened
        // without close-on-exec (a C library's, a dependency's) must not
        // leak into it and stay open for as long as the child runs (a
        // pipe's write end then never reports end of file). Placed after
        // the dup2 actions, whose sources it would close.
        let closing = spawnClosesDescriptors(&actions, from: 3)
        guard closing == 0 else {
            parentEnds.forEach { $0?.close() }
            throw SocketError(errno: closing, operation: "spawn '\(program)': posix_spawn_file_actions_addclosefrom_np")
        }
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envStrings: [String] = environment.map { $0.map { "\($0.key)=\($0.value)" } } ?? processEnvironmentEntries()
        let envp = envStrings.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        // The child starts with no signal blocked and SIGPIPE/SIGXFSZ at
        // their defaults (as Python's restore_signals): it must not inherit
        // the mask of the thread that spawns it (a kernel thread started
        // from a dispatch or Swift-concurrency thread blocks nearly every
        // signal, and `terminate()` would then do nothing).
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attr, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGXFSZ)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, program, &actions, &attr, argv, envp)
        guard rc == 0 else {
            parentEnds.forEach { $0?.close() }
            throw SocketError(errno: rc, operation: "spawn '\(program)'")
        }
        self.pid = pid
        let fd = openProcessDescriptor(pid)
        pidfd = fd >= 0 ? fd : -1
        if pidfd >= 0 { _ = fcntl(pidfd, F_SETFD, FD_CLOEXEC) }
        self.stdin = parentEnds[0].map { SocketStream($0) }
        self.stdout = parentEnds[1].map { SocketStream($0) }
        self.stderr = parentEnds[2].map { SocketStream($0) }
    }

    deinit {
        if pidfd >= 0 { closeRegistered(pidfd, kernel: pidfdKernel) }
        if status == nil && !reap(block: false) {
            // Never waited for and still running: the reaper thread reaps it
            // whenever it ends, so it never lingers as a zombie.
            ChildReaper.shared.adopt(pid)
        }
    }

    /// Reaps the child if it has ended; true when it has.
    private func reap(block: Bool) -> Bool {
        if status != nil { return true }
        var st: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &st, block ? 0 : WNOHANG) } while r < 0 && errno == EINTR
        guard r == pid else {
            if r < 0 && errno == ECHILD { status = .exited(-1); return true }
            return false
        }
        let sig = st & 0x7f
        status = sig == 0 ? .exited((st >> 8) & 0xff) : .signaled(sig)
        return true
    }

    /// Waits for the child to end → its return code (the exit status, or
    /// minus the signal that killed it). Cancelling the wait kills the
    /// child and reaps it first.
    @discardableResult
    public func wait(file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int32 {
        let t = try Kernel.currentTask()
        let site = CallSite(file: file, line: line, function: function)
        do {
            try await waitForExit(t, site: site)
        } catch {
            Glibc.kill(pid, SIGKILL)
            try await disableCancellation { try await waitForExit(t, site: site) }
            throw error
        }
        return status!.returnCode
    }

    private func waitForExit(_ t: AnyCurioTask, site: CallSite) async throws {
        while !reap(block: false) {
            if pidfd >= 0 {
                pidfdKernel = t.kernel
                let r = try await t.kernel.performIO(t, .readable(pidfd), .ioWait, deadline: .max, site: site)
                if r < 0 && r != -Int(EINTR) { throw SocketError(errno: Int32(-r), operation: "waiting for pid \(pid)") }
            } else {
                // No pidfd (kernel < 5.3): look again shortly.
                try await sleep(0.01, file: site.file, line: site.line, function: site.function)
            }
        }
    }

    /// Sends `input` to stdin (then closes it), reads stdout and stderr to
    /// their end, and waits for the child → what it wrote.
    ///
    /// When the child closes its stdin before taking all of `input`, this
    /// still reads its output to the end and reaps it, then throws
    /// ``BrokenPipeError`` (curio's `BrokenPipeError`) with what it wrote and
    /// how it ended. A timeout or a cancellation kills the child (SIGKILL)
    /// and reaps it before the error propagates.
    public func communicate(input: [UInt8]? = nil, file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function) async throws -> (stdout: [UInt8], stderr: [UInt8]) {
        let stdinStream = stdin, stdoutStream = stdout, stderrStream = stderr
        let t = try Kernel.currentTask()
        let site = CallSite(file: file, line: line, function: function)
        do {
            let (o, e, brokenPipe) = try await withCurioTaskGroup(of: [UInt8].self) { g in
                let writer = try await g.spawn(name: "communicate stdin") { () -> [UInt8] in
                    guard let s = stdinStream else { return [] }
                    defer { s.close() }
                    if let input, !input.isEmpty { try await s.write(input) }
                    return []
                }
                let out = try await g.spawn(name: "communicate stdout") { try await stdoutStream?.readAll() ?? [] }
                let err = try await g.spawn(name: "communicate stderr") { try await stderrStream?.readAll() ?? [] }
                var brokenPipe = false
                do {
                    _ = try await writer.join()
                } catch let e as TaskError {
                    guard let s = e.cause as? SocketError, s.errno == EPIPE else { throw e.cause }
                    brokenPipe = true
                }
                let o = try await Self.unwrapJoin(out)
                let e = try await Self.unwrapJoin(err)
                return (o, e, brokenPipe)
            }
            try await waitForExit(t, site: site)
            if brokenPipe {
                throw BrokenPipeError(arguments: [], status: status!, stdout: o, stderr: e)
            }
            return (o, e)
        } catch let e as BrokenPipeError {
            throw e
        } catch {
            try await killAndReap(t, site: site)
            throw error
        }
    }

    private static func unwrapJoin(_ t: CurioTask<[UInt8]>) async throws -> [UInt8] {
        do { return try await t.join() ?? [] } catch let e as TaskError { throw e.cause }
    }

    /// SIGKILL, then waits for the child with cancellation held back.
    private func killAndReap(_ t: AnyCurioTask, site: CallSite) async throws {
        guard status == nil else { return }
        Glibc.kill(pid, SIGKILL)
        try await disableCancellation { try await waitForExit(t, site: site) }
    }

    /// Sends `signal` to the child (if it has not been reaped).
    public func sendSignal(_ signal: Int32) {
        if status == nil { Glibc.kill(pid, signal) }
    }

    /// SIGTERM.
    public func terminate() { sendSignal(SIGTERM) }
    /// SIGKILL.
    public func kill() { sendSignal(SIGKILL) }
}

/// Runs a command to its end and returns its output, as Python's
/// `subprocess.check_output`: throws ``SubprocessError`` when the exit
/// status is not 0.
///
/// A timeout or cancellation kills the child and reaps it before the error
/// propagates. A child that closes its stdin before taking all of `input`
/// makes it throw ``BrokenPipeError``.
public func checkOutput(_ arguments: [String], input: [UInt8]? = nil) async throws -> [UInt8] {
    let p = try Subprocess(arguments, stdin: input == nil ? .devNull : .pipe, stdout: .pipe)
    let out: [UInt8]
    do {
        (out, _) = try await p.communicate(input: input)
    } catch var e as BrokenPipeError {
        e.arguments = arguments
        throw e
    }
    if p.status?.returnCode != 0 {
        throw SubprocessError(arguments: arguments, status: p.status!, output: out)
    }
    return out
}

/// The child closed its stdin before taking all the input written to it
/// (`EPIPE`; curio's `BrokenPipeError`). The child has been reaped: its
/// status and everything it wrote are here.
public struct BrokenPipeError: Error, CustomStringConvertible {
    /// The command (empty when thrown by ``Subprocess/communicate(input:file:line:function:)``).
    public internal(set) var arguments: [String]
    /// How the child ended.
    public let status: Subprocess.Status
    /// What the child wrote before it ended.
    public let stdout: [UInt8]
    /// What the child wrote to its standard error before it ended.
    public let stderr: [UInt8]
    /// Always `EPIPE`.
    public var errno: Int32 { EPIPE }
    public var description: String {
        "BrokenPipeError: \(arguments.isEmpty ? "the child" : arguments.joined(separator: " ")) closed its stdin before reading all the input (\(status))"
    }
}

/// A command run by ``checkOutput(_:input:)`` failed.
public struct SubprocessError: Error, CustomStringConvertible {
    /// The command and its arguments.
    public let arguments: [String]
    /// How it ended.
    public let status: Subprocess.Status
    /// What it wrote on stdout before it failed.
    public let output: [UInt8]
    public var description: String { "SubprocessError: \(arguments.joined(separator: " ")) \(status)" }
}


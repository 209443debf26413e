// The helpers shared by the I/O test files (SocketTests, StreamTests,
// SocketServerTests, NetworkTests, EchoProgramTests, FaultTests), under
// `IOTest`. Every test runs its kernel from the synchronous test function
// (`IOTest.run`), with a deadline inside the kernel so a hang fails instead
// of hanging. Steps are ordered by what the kernel reports (a task blocked
// in READ_WAIT, bytes queued on a socket), never by sleeping.
import CCurioKernel
import Glibc
import Synchronization
import Testing

@testable import Curio
import CurioTestSupport

enum IOTest {
    /// A failure of a test step (a wait that ran out, a missing file).
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs `body` as the main task of a new kernel on a thread of its own
    /// (never one of the cooperative pool's), bounded by `limit` seconds
    /// inside the kernel, then shuts the kernel down (cancelling what is
    /// left). The thread itself gets a few seconds more, for the shutdown.
    @discardableResult
    static func run<T: Sendable>(limit: Double = 45, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await TestThreads.onThread(limit: limit + 10) {
            try Curio.run { try await timeoutAfter(limit) { try await body() } }
        }
    }

    /// Polls `condition` (yielding to the kernel in between) until it holds;
    /// throws after `limit` seconds. Correctness never depends on the
    /// interval, only on the condition.
    static func waitUntil(_ what: String, limit: Double = 20, _ condition: () throws -> Bool) async throws {
        let end = Curio.clock() + limit
        var spins = 0
        while try !condition() {
            if Curio.clock() > end { throw Failure("timed out waiting until \(what)") }
            spins += 1
            if spins < 50 {
                try await Curio.sleep(0)
            } else {
                try await Curio.sleep(0.001)
            }
        }
    }

    /// True while `task` is suspended in `state` (a blocking call).
    static func isBlocked(_ task: AnyCurioTask, _ state: TaskState) -> Bool {
        task.state == state && task.continuation != nil
    }

    /// Tasks of the calling kernel named `name` that have not ended.
    static func liveTasks(named name: String) -> Int {
        guard let k = Kernel.current else { return 0 }
        var n = 0
        k.forEachTask { if $0.name == name { n += 1 } }
        return n
    }

    /// Waits until `task` is suspended in `state`.
    static func waitBlocked(_ task: AnyCurioTask, _ state: TaskState) async throws {
        try await waitUntil("task \(task.id) blocks in \(state)") { isBlocked(task, state) }
    }

    /// Bytes waiting in the receive queue of `fd` (a non-consuming peek).
    static func queued(_ fd: Int32, max: Int = 1 << 20) -> Int {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: max, alignment: 16)
        defer { buf.deallocate() }
        let n = Glibc.recv(fd, buf, max, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        return n < 0 ? 0 : n
    }

    /// A connected TCP pair over loopback: (client, server side).
    /// `receiveBuffer` sets SO_RCVBUF on the server side (through the
    /// listener, before the handshake, so the window matches).
    static func tcpPair(_ family: SocketAddress.Family = .inet, receiveBuffer: Int? = nil,
                        sendBuffer: Int? = nil) async throws -> (client: Socket, server: Socket) {
        let listener = try Socket(family, .stream)
        defer { listener.close() }
        if let receiveBuffer { try listener.setOption(.receiveBufferSize, receiveBuffer) }
        try listener.bind((family == .inet6 ? "::1" : "127.0.0.1", 0))
        try listener.listen(1)
        let client = try Socket(family, .stream)
        if let sendBuffer { try client.setOption(.sendBufferSize, sendBuffer) }
        try await client.connect(try listener.localAddress)
        let (server, _) = try await listener.accept()
        return (client, server)
    }

    /// Whether this machine has an IPv6 loopback to bind to.
    static let hasIPv6Loopback: Bool = {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        guard inet_pton(AF_INET6, "::1", &a.sin6_addr) == 1 else { return false }
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }()

    /// A fresh directory under /tmp; remove it with `removeDirectory`.
    static func makeTempDirectory() throws -> String {
        var template = Array("/tmp/curio-io-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw Failure("mkdtemp failed: \(String(cString: strerror(errno)))") }
        return String(cString: p)
    }

    /// Removes `path` and the files directly inside it.
    static func removeDirectory(_ path: String) {
        if let dir = opendir(path) {
            while let e = readdir(dir) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }

    static func fileExists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// What a connect to 127.0.0.1:`port` gets once its listener should be
    /// gone. The port is first taken by a bound socket that does not listen
    /// (a bind that only succeeds when nothing listens there), so a listener
    /// of a test running meanwhile cannot get that port and take the connect.
    static func connectAfterListenerClosed(port: Int) async -> String {
        do {
            let holder = try Socket(.inet, .stream)
            defer { holder.close() }
            try holder.setOption(.reuseAddress, true)
            do {
                try holder.bind(("127.0.0.1", port))
            } catch {
                return "the port is still in use: \(kind(error))"
            }
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            return kind(await self.error { try await s.connect(("127.0.0.1", port)) })
        } catch {
            return kind(error)
        }
    }

    /// Closes `sock` with SO_LINGER 0: the peer gets a reset (RST), not a FIN.
    static func resetClose(_ sock: Socket) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(sock.fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        sock.close()
    }

    /// `count` bytes of a recognizable pattern (different for each `seed`).
    static func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var x = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 &+ 12345)
        for i in 0..<count {
            x = x &* 1_103_515_245 &+ 12345
            out[i] = UInt8(truncatingIfNeeded: x >> 16)
        }
        return out
    }

    /// `count` bytes made of `\n`-terminated lines of `lineLength` bytes.
    static func linePayload(_ count: Int, lineLength: Int = 64, seed: Int = 0) -> [UInt8] {
        precondition(count % lineLength == 0)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count)
        var i = seed
        while out.count < count {
            for _ in 0..<(lineLength - 1) {
                out.append(alphabet[i % alphabet.count])
                i &+= 7
            }
            out.append(UInt8(ascii: "\n"))
            i &+= 1
        }
        return out
    }

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    /// Receives until `count` bytes have arrived (or the end of the stream).
    static func receive(_ sock: Socket, count: Int) async throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < count {
            let chunk = try await sock.recv(min(65536, count - out.count))
            if chunk.isEmpty { break }
            out += chunk
        }
        return out
    }

    /// Receives until the peer closes.
    static func receiveAll(_ sock: Socket) async throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let chunk = try await sock.recv(65536)
            if chunk.isEmpty { return out }
            out += chunk
        }
    }

    /// The error `body` throws (nil if it returns).
    static func error(_ body: () async throws -> Void) async -> (any Error)? {
        do {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    /// "SocketError(errno)" or the error's type, for comparing what tasks saw.
    static func kind(_ error: (any Error)?) -> String {
        guard let error else { return "no error" }
        if let e = error as? SocketError { return "SocketError(\(errnoName(e.errno)))" }
        if let e = error as? CurioUsageError { return "CurioUsageError.\(e.kind)" }
        return String(describing: type(of: error))
    }

    static func errnoName(_ e: Int32) -> String {
        switch e {
        case EBADF: return "EBADF"
        case ECONNREFUSED: return "ECONNREFUSED"
        case ECONNRESET: return "ECONNRESET"
        case EPIPE: return "EPIPE"
        case ECANCELED: return "ECANCELED"
        case ENOTCONN: return "ENOTCONN"
        case EINVAL: return "EINVAL"
        default: return "errno \(e)"
        }
    }

    /// Descriptors open in this process (entries of /proc/self/fd, less
    /// the one opendir itself uses).
    static func openDescriptors() -> [Int32: String] {
        var out: [Int32: String] = [:]
        guard let dir = opendir("/proc/self/fd") else { return out }
        let own = dirfd(dir)
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let fd = Int32(name), fd != own else { continue }
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
            out[fd] = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        }
        closedir(dir)
        return out
    }

    /// The directory holding this test binary (and the example executables).
    static func binaryDirectory() throws -> String { try TestScenarios.binaryDirectory() }

    /// The path of this test binary.
    static func selfExecutable() throws -> String { try TestScenarios.selfExecutable() }

    /// A child process whose output this process collects on threads of
    /// its own: stdout and stderr both on one pty (`terminal`, so the
    /// child's stdio is line-buffered as on a terminal) or on two pipes.
    final class Child: @unchecked Sendable {
        /// Bytes read from one of the child's outputs, and whether it ended.
        final class Sink: Sendable {
            let data = Locked<[UInt8]>([])
            let ended = Locked(false)
            var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
            var isEnded: Bool { ended.withLock { $0 } }
        }

        let pid: pid_t
        private let out = Sink()
        private let err = Sink()
        private let reaped = Locked<Int32?>(nil)

        init(path: String, arguments: [String], environment: [String: String] = currentEnvironment(),
             terminal: Bool) throws {
            var outRead: Int32 = -1, outWrite: Int32 = -1, errRead: Int32 = -1, errWrite: Int32 = -1
            if terminal {
                let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard master >= 0 else { throw Failure("cannot open a pty: \(String(cString: strerror(errno)))") }
                var unlock: Int32 = 0, number: Int32 = 0
                let TIOCSPTLCK: UInt = 0x4004_5431, TIOCGPTN: UInt = 0x8004_5430
                guard ioctl(master, TIOCSPTLCK, &unlock) == 0, ioctl(master, TIOCGPTN, &number) == 0 else {
                    Glibc.close(master)
                    throw Failure("cannot set up the pty")
                }
                let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY | O_CLOEXEC)
                guard slave >= 0 else {
                    Glibc.close(master)
                    throw Failure("cannot open the pty's slave")
                }
                // The bytes the program writes, without "\r\n" for "\n".
                var tio = termios()
                tcgetattr(slave, &tio)
                tio.c_oflag &= ~tcflag_t(OPOST)
                tcsetattr(slave, TCSANOW, &tio)
                outRead = master
                outWrite = slave
                errWrite = slave
            } else {
                // Close-on-exec from the start: children other tests spawn
                // meanwhile must not inherit an end.
                var o: [Int32] = [-1, -1], e: [Int32] = [-1, -1]
                guard ck_pipe2(&o, O_CLOEXEC) == 0 else { throw Failure("pipe2 failed") }
                guard ck_pipe2(&e, O_CLOEXEC) == 0 else {
                    Glibc.close(o[0]); Glibc.close(o[1])
                    throw Failure("pipe2 failed")
                }
                (outRead, outWrite, errRead, errWrite) = (o[0], o[1], e[0], e[1])
            }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, outWrite, 1)
            posix_spawn_file_actions_adddup2(&actions, errWrite, 2)
            // Nothing but stdio reaches the child: a descriptor the test
            // process left inheritable must not show in its checks.
            _ = spawnClosesDescriptors(&actions, from: 3)
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            defer { posix_spawnattr_destroy(&attr) }
            var noSignals = sigset_t()
            sigemptyset(&noSignals)
            var defaults = sigset_t()
            sigemptyset(&defaults)
            for sig in [SIGPIPE, SIGINT, SIGTERM, SIGHUP] { sigaddset(&defaults, sig) }
            posix_spawnattr_setsigmask(&attr, &noSignals)
            posix_spawnattr_setsigdefault(&attr, &defaults)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
            let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer {
                argv.forEach { free($0) }
                envp.forEach { free($0) }
            }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
            Glibc.close(outWrite)
            if errWrite != outWrite { Glibc.close(errWrite) }
            guard rc == 0 else {
                Glibc.close(outRead)
                if errRead >= 0 { Glibc.close(errRead) }
                throw Failure("posix_spawn \(path) failed: \(String(cString: strerror(rc)))")
            }
            self.pid = pid
            errIsShared = errRead < 0
            Self.drain(outRead, into: out)
            if errRead >= 0 { Self.drain(errRead, into: err) }
        }

        /// Reads `fd` on a thread of its own until its end (EOF, or EIO on
        /// a pty whose other side closed), then closes it.
        private static func drain(_ fd: Int32, into sink: Sink) {
            final class Job {
                let fd: Int32
                let sink: Sink
                init(_ fd: Int32, _ sink: Sink) { self.fd = fd; self.sink = sink }
            }
            let job = Unmanaged.passRetained(Job(fd, sink)).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = buf.withUnsafeMutableBytes { Glibc.read(job.fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    let chunk = buf[0..<n]
                    job.sink.data.withLock { $0 += chunk }
                }
                Glibc.close(job.fd)
                job.sink.ended.withLock { $0 = true }
                return nil
            }, job)
            precondition(rc == 0, "pthread_create failed")
            pthread_detach(tid)
        }

        var stdout: String { out.text }
        var stderr: String { err.text }
        var stdoutLines: [String] { stdout.split(separator: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) } }

        /// Waits up to `limit` seconds for the output threads to reach the
        /// ends of the child's outputs (after it exited).
        func waitForOutputEnd(limit: Double = 5) {
            let end = monotonicNow() + limit
            while !(out.isEnded && (err.isEnded || errIsShared)) && monotonicNow() < end { usleep(1000) }
        }
        private var errIsShared = false

        /// Waits (from a kernel task) until the output satisfies `condition`.
        func waitForOutput(_ what: String, limit: Double = 20, _ condition: ([String]) -> Bool) async throws {
            try await IOTest.waitUntil("the child prints \(what); it printed:\n\(stdout)", limit: limit) {
                condition(stdoutLines)
            }
        }

        /// The exit status once the child has ended, without waiting.
        func poll() -> Int32? {
            reaped.withLock { st in
                if st == nil {
                    var status: Int32 = 0
                    if waitpid(pid, &status, WNOHANG) == pid { st = status }
                }
                return st
            }
        }

        /// Waits up to `limit` seconds for the child to end (→ its status);
        /// then kills it with SIGKILL, reaps it and returns nil.
        @discardableResult
        func waitForExit(limit: Double) -> Int32? {
            let end = monotonicNow() + limit
            while monotonicNow() < end {
                if let st = poll() { return st }
                usleep(2000)
            }
            kill(pid, SIGKILL)
            reaped.withLock { st in
                if st == nil {
                    var status: Int32 = 0
                    waitpid(pid, &status, 0)
                    st = status
                }
            }
            return nil
        }

        /// Sends `signal` and waits for the end (SIGKILL after `limit` s).
        @discardableResult
        func terminate(_ signal: Int32 = SIGTERM, limit: Double = 10) -> Int32? {
            if poll() == nil { kill(pid, signal) }
            return waitForExit(limit: limit)
        }

        deinit { if poll() == nil { terminate(SIGKILL) } }
    }

    static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func currentEnvironment() -> [String: String] { TestScenarios.currentEnvironment() }

    /// Statuses: "exit N" or "signal N".
    static func describeStatus(_ status: Int32?) -> String {
        guard let status else { return "killed after the time limit" }
        if status & 0x7f == 0 { return "exit \((status >> 8) & 0xff)" }
        return "signal \(status & 0x7f)"
    }

    // MARK: Scenarios in a child process

    /// The scenario this test binary runs when started by `runScenario`.
    static let childScenario: String? = getenv("CURIO_IO_SCENARIO").map { String(cString: $0) }

    /// Scenarios that must own the whole process: fd 2, /proc/self/fd.
    /// Each returns the lines the parent checks.
    static let scenarios: [String: @Sendable () async throws -> [String]] = [
        "handler-crash": SocketServerTests.handlerCrashScenario,
        "fd-leak": FaultTests.descriptorLeakScenario,
        "emfile": FaultTests.descriptorExhaustionScenario,
        "dropped-kernels": KernelLifecycleTests.droppedKernelsScenario,
    ]

    /// Runs this test binary again with only `ioChildScenario` selected and
    /// CURIO_IO_SCENARIO=name → the lines the scenario printed, its exit
    /// status and its stderr.
    static func runScenario(_ name: String, limit: Double = 50) throws -> (lines: [String], status: String, stderr: String) {
        let child = try Child(path: try selfExecutable(), arguments: TestScenarios.arguments(running: "ioChildScenario"),
                              environment: TestScenarios.environment(selecting: "CURIO_IO_SCENARIO", name), terminal: false)
        let status = child.waitForExit(limit: limit)
        child.waitForOutputEnd()
        let lines = child.stdoutLines.compactMap { $0.hasPrefix("IO-SCENARIO: ") ? String($0.dropFirst(13)) : nil }
        return (lines, describeStatus(status), child.stderr)
    }

    /// A mutable cell shared by the tasks of one kernel (one thread).
    final class Box<T>: @unchecked Sendable {
        var value: T
        init(_ value: T) { self.value = value }
    }

    /// Captures what this process writes to fd 2 (a pipe in its place) and
    /// passes it on to the real stderr, until `stop()` restores fd 2.
    final class StderrCapture: @unchecked Sendable {
        private let saved: Int32
        private let readEnd: Int32
        private let text = Locked<[UInt8]>([])
        private let done = Locked(false)
        private var thread = pthread_t()
        private var stopped = false

        init() throws {
            var fds: [Int32] = [-1, -1]
            guard ck_pipe2(&fds, O_CLOEXEC) == 0 else { throw Failure("pipe2 failed") }
            fflush(nil)
            saved = fcntl(2, F_DUPFD_CLOEXEC, 10)
            guard saved >= 0 else { throw Failure("dup of fd 2 failed") }
            readEnd = fds[0]
            dup2(fds[1], 2)
            Glibc.close(fds[1])
            let me = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&thread, nil, { arg in
                let c = Unmanaged<StderrCapture>.fromOpaque(arg!).takeRetainedValue()
                c.pump()
                return nil
            }, me)
            precondition(rc == 0, "pthread_create failed")
        }

        private func pump() {
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.read(readEnd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                let chunk = Array(buf[0..<n])
                text.withLock { $0 += chunk }
                _ = chunk.withUnsafeBytes { Glibc.write(saved, $0.baseAddress, $0.count) }
            }
            done.withLock { $0 = true }
        }

        /// What was captured so far.
        var captured: String { text.withLock { String(decoding: $0, as: UTF8.self) } }

        /// Restores fd 2 and waits for the pump to drain the pipe.
        func stop() {
            guard !stopped else { return }
            stopped = true
            dup2(saved, 2)
            pthread_join(thread, nil)
            Glibc.close(readEnd)
            Glibc.close(saved)
        }

        deinit { stop() }
    }
}

/// Runs a scenario when this test binary was started by `IOTest.runScenario`;
/// skipped otherwise.
@Test(.enabled(if: IOTest.childScenario != nil), .timeLimit(.minutes(1)))
func ioChildScenario() async throws {
    let name = IOTest.childScenario!
    let body = try #require(IOTest.scenarios[name], "unknown scenario \(name)")
    for line in try await body() { print("IO-SCENARIO: " + line) }
    print("IO-SCENARIO-END")
    fflush(nil)
}

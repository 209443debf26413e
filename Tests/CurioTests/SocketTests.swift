// Sockets: TCP over IPv4 and IPv6 loopback, UDP, Unix stream and datagram
// sockets, options, addresses, recv(into:), partial sends, half-close,
// close and use after close, connect refused, two tasks on one direction
// (ResourceBusy), a socket used from another kernel (wrongKernel), recv(0).
//
// Also the helpers shared by the I/O test files (SocketTests, StreamTests,
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

// MARK: - Shared helpers

enum IOTest {
    /// A failure of a test step (a wait that ran out, a missing file).
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs `body` as the main task of a new kernel, bounded by `limit`
    /// seconds, then shuts the kernel down (cancelling what is left).
    @discardableResult
    static func run<T: Sendable>(limit: Double = 45, _ body: @escaping @Sendable () async throws -> T) throws -> T {
        try Curio.run { try await timeoutAfter(limit) { try await body() } }
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
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
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
    static func binaryDirectory() throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { throw Failure("cannot read /proc/self/exe") }
        let path = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { throw Failure("odd executable path \(path)") }
        return String(path[..<slash])
    }

    /// The path of this test binary.
    static func selfExecutable() throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { throw Failure("cannot read /proc/self/exe") }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A child process whose output this process collects on threads of
    /// its own: stdout and stderr both on one pty (`terminal`, so the
    /// child's stdio is line-buffered as on a terminal) or on two pipes.
    final class Child: @unchecked Sendable {
        /// Bytes read from one of the child's outputs, and whether it ended.
        final class Sink: Sendable {
            let data = Mutex<[UInt8]>([])
            let ended = Mutex(false)
            var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
            var isEnded: Bool { ended.withLock { $0 } }
        }

        let pid: pid_t
        private let out = Sink()
        private let err = Sink()
        private let reaped = Mutex<Int32?>(nil)

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

    static func currentEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

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
    static let scenarios: [String: @Sendable () throws -> [String]] = [
        "handler-crash": SocketServerTests.handlerCrashScenario,
        "fd-leak": FaultTests.descriptorLeakScenario,
        "emfile": FaultTests.descriptorExhaustionScenario,
    ]

    /// Runs this test binary again with only `ioChildScenario` selected and
    /// CURIO_IO_SCENARIO=name → the lines the scenario printed, its exit
    /// status and its stderr.
    static func runScenario(_ name: String, limit: Double = 50) throws -> (lines: [String], status: String, stderr: String) {
        var env = currentEnvironment()
        env["CURIO_IO_SCENARIO"] = name
        env["CURIO_TEST_SCENARIO"] = nil
        let child = try Child(path: try selfExecutable(),
                              arguments: ["--testing-library", "swift-testing", "--filter", "ioChildScenario"],
                              environment: env, terminal: false)
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
        private let text = Mutex<[UInt8]>([])
        private let done = Mutex(false)
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
func ioChildScenario() throws {
    let name = IOTest.childScenario!
    let body = try #require(IOTest.scenarios[name], "unknown scenario \(name)")
    for line in try body() { print("IO-SCENARIO: " + line) }
    print("IO-SCENARIO-END")
    fflush(nil)
}

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct SocketTests {
    /// Connect, accept, exchange both ways; every address agrees.
    private static func tcpRoundTrip(_ family: SocketAddress.Family, host: String) async throws -> [String] {
        var notes: [String] = []
        let listener = try Socket(family, .stream)
        defer { listener.close() }
        try listener.setOption(.reuseAddress, true)
        try listener.bind((host, 0))
        try listener.listen(5)
        let bound = try listener.localAddress
        notes.append("bound \(bound.family) \(bound.host) \(bound.port > 0)")

        let server = try await spawn { () async throws -> [String] in
            let (conn, peer) = try await listener.accept()
            defer { conn.close() }
            var seen = ["peer \(peer.host)", "peer is peerAddress \(peer == (try conn.peerAddress))"]
            seen.append("server local is listener \(try conn.localAddress == bound)")
            let data = try await IOTest.receive(conn, count: 5)
            seen.append("server got \(IOTest.text(data))")
            try await conn.sendAll(IOTest.bytes("world"))
            return seen
        }
        let client = try Socket(family, .stream)
        defer { client.close() }
        try await client.connect(bound)
        notes.append("client peer is listener \(try client.peerAddress == bound)")
        try await client.sendAll(IOTest.bytes("hello"))
        let reply = try await IOTest.receive(client, count: 5)
        notes.append("client got \(IOTest.text(reply))")
        let seen = try await server.join() ?? []
        let clientLocal = try client.localAddress
        notes += seen
        notes.append("accept peer == client local: \(seen.contains("peer \(clientLocal.host)"))")
        notes.append("description \(bound.description == "('\(bound.host)', \(bound.port))")")
        return notes
    }

    @Test(.timeLimit(.minutes(1)))
    func tcpOverIPv4Loopback() throws {
        let notes = try IOTest.run { try await Self.tcpRoundTrip(.inet, host: "127.0.0.1") }
        #expect(notes == [
            "bound inet 127.0.0.1 true",
            "client peer is listener true",
            "client got world",
            "peer 127.0.0.1", "peer is peerAddress true", "server local is listener true", "server got hello",
            "accept peer == client local: true",
            "description true",
        ])
    }

    @Test(.enabled(if: IOTest.hasIPv6Loopback, "no IPv6 loopback on this machine"), .timeLimit(.minutes(1)))
    func tcpOverIPv6Loopback() throws {
        let notes = try IOTest.run { try await Self.tcpRoundTrip(.inet6, host: "::1") }
        #expect(notes == [
            "bound inet6 ::1 true",
            "client peer is listener true",
            "client got world",
            "peer ::1", "peer is peerAddress true", "server local is listener true", "server got hello",
            "accept peer == client local: true",
            "description true",
        ])
    }

    @Test(.enabled(if: IOTest.hasIPv6Loopback, "no IPv6 loopback on this machine"), .timeLimit(.minutes(1)))
    func ipv6OnlyOptionAndWildcardBind() throws {
        let r = try IOTest.run { () -> [String] in
            let s = try Socket(.inet6, .stream)
            defer { s.close() }
            try s.setOption(.ipv6Only, true)
            let on = try s.getOption(.ipv6Only)
            try s.setOption(.ipv6Only, false)
            let off = try s.getOption(.ipv6Only)
            try s.bind(("", 0))
            let a = try s.localAddress
            return ["\(on != 0)", "\(off)", a.host, "\(a.family)"]
        }
        #expect(r == ["true", "0", "::", "inet6"])
    }

    @Test(.timeLimit(.minutes(1)))
    func udpSendToAndRecvFrom() throws {
        let r = try IOTest.run { () -> [String] in
            let a = try Socket(.inet, .datagram)
            let b = try Socket(.inet, .datagram)
            defer { a.close(); b.close() }
            try a.bind(("127.0.0.1", 0))
            try b.bind(("127.0.0.1", 0))
            let aAddr = try a.localAddress, bAddr = try b.localAddress
            var out: [String] = []
            out.append("sent \(try await a.sendTo(IOTest.bytes("ping"), bAddr))")
            let (data, from) = try await b.recvFrom(100)
            out.append("b got \(IOTest.text(data)) from a: \(from == aAddr)")
            try await b.sendTo(IOTest.bytes("pong"), from)
            let (reply, replyFrom) = try await a.recvFrom(100)
            out.append("a got \(IOTest.text(reply)) from b: \(replyFrom == bAddr)")
            // Datagram boundaries are kept; a short buffer truncates one
            // datagram and the next one arrives whole.
            try await a.sendTo(IOTest.bytes("0123456789"), bAddr)
            try await a.sendTo(IOTest.bytes("second"), bAddr)
            let (cut, _) = try await b.recvFrom(4)
            let (second, _) = try await b.recvFrom(100)
            out.append("\(IOTest.text(cut)) \(IOTest.text(second))")
            // An empty datagram is a datagram, not an end of stream.
            out.append("empty sent \(try await a.sendTo([], bAddr))")
            let (empty, emptyFrom) = try await b.recvFrom(100)
            out.append("empty got \(empty.count) from a: \(emptyFrom == aAddr)")
            return out
        }
        #expect(r == [
            "sent 4", "b got ping from a: true", "a got pong from b: true",
            "0123 second", "empty sent 0", "empty got 0 from a: true",
        ])
    }

    @Test(.timeLimit(.minutes(1)))
    func udpRecvFromWaitsForADatagram() throws {
        let r = try IOTest.run { () -> String in
            let a = try Socket(.inet, .datagram)
            let b = try Socket(.inet, .datagram)
            defer { a.close(); b.close() }
            try a.bind(("127.0.0.1", 0))
            try b.bind(("127.0.0.1", 0))
            let bAddr = try b.localAddress
            let receiver = try await spawn { () async throws -> String in
                let (d, _) = try await b.recvFrom(100)
                return IOTest.text(d)
            }
            try await IOTest.waitBlocked(receiver, .readWait)
            try await a.sendTo(IOTest.bytes("late"), bAddr)
            return try await receiver.join() ?? "nil"
        }
        #expect(r == "late")
    }

    @Test(.timeLimit(.minutes(1)))
    func unixStreamSockets() throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let path = dir + "/stream.sock"
        let r = try IOTest.run { () -> [String] in
            let listener = try Socket(.unix, .stream)
            defer { listener.close() }
            try listener.bind(SocketAddress(unixPath: path))
            try listener.listen(5)
            var out: [String] = []
            let local = try listener.localAddress
            out.append("\(local.family) \(local.host == path) \(local.port) \(local.description == "'\(path)'")")
            let server = try await spawn { () async throws -> String in
                let (conn, _) = try await listener.accept()
                defer { conn.close() }
                let d = try await IOTest.receive(conn, count: 3)
                try await conn.sendAll(d.reversed())
                return IOTest.text(d)
            }
            let client = try Socket(.unix, .stream)
            defer { client.close() }
            try await client.connect(SocketAddress(unixPath: path))
            out.append("client peer \(try client.peerAddress.host == path)")
            try await client.sendAll(IOTest.bytes("abc"))
            out.append("reply \(IOTest.text(try await IOTest.receive(client, count: 3)))")
            out.append("server got \(try await server.join() ?? "nil")")
            return out
        }
        #expect(r == ["unix true 0 true", "client peer true", "reply cba", "server got abc"])
    }

    @Test(.timeLimit(.minutes(1)))
    func unixDatagramSockets() throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let r = try IOTest.run { () -> [String] in
            let a = try Socket(.unix, .datagram)
            let b = try Socket(.unix, .datagram)
            defer { a.close(); b.close() }
            try a.bind(SocketAddress(unixPath: dir + "/a.sock"))
            try b.bind(SocketAddress(unixPath: dir + "/b.sock"))
            try await a.sendTo(IOTest.bytes("hi b"), SocketAddress(unixPath: dir + "/b.sock"))
            let (d, from) = try await b.recvFrom(100)
            try await b.sendTo(IOTest.bytes("hi a"), from)
            let (d2, from2) = try await a.recvFrom(100)
            return [IOTest.text(d), from.host, IOTest.text(d2), from2.host]
        }
        #expect(r == ["hi b", dir + "/a.sock", "hi a", dir + "/b.sock"])
    }

    @Test(.timeLimit(.minutes(1)))
    func optionsGetAndSet() throws {
        let r = try IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            var out: [String] = []
            try s.setOption(.reuseAddress, true)
            out.append("reuseAddress \(try s.getOption(.reuseAddress) != 0)")
            try s.setOption(.reuseAddress, false)
            out.append("reuseAddress \(try s.getOption(.reuseAddress) != 0)")
            try s.setOption(.noDelay, true)
            out.append("noDelay \(try s.getOption(.noDelay) != 0)")
            try s.setOption(.noDelay, false)
            out.append("noDelay \(try s.getOption(.noDelay) != 0)")
            try s.setOption(.keepAlive, true)
            out.append("keepAlive \(try s.getOption(.keepAlive) != 0)")
            try s.setOption(.receiveBufferSize, 65536)
            out.append("rcvbuf >= 65536 \(try s.getOption(.receiveBufferSize) >= 65536)")
            // Any integer option by level and name.
            let priority = Socket.Option(level: SOL_SOCKET, name: SO_PRIORITY)
            try s.setOption(priority, 3)
            out.append("priority \(try s.getOption(priority))")
            // An option the socket does not have is a SocketError.
            let udp = try Socket(.inet, .datagram)
            defer { udp.close() }
            let e = await IOTest.error { try udp.setOption(.noDelay, true) }
            out.append("noDelay on UDP: \(e is SocketError)")
            return out
        }
        #expect(r == [
            "reuseAddress true", "reuseAddress false", "noDelay true", "noDelay false", "keepAlive true",
            "rcvbuf >= 65536 true", "priority 3", "noDelay on UDP: true",
        ])
    }

    @Test(.timeLimit(.minutes(1)))
    func bindToEveryInterfaceAndTheSocketProperties() throws {
        let r = try IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            try s.bind(("", 0))
            let a = try s.localAddress
            return [a.host, "\(a.port > 0)", "\(s.family)", "\(s.kind)", "\(s.fd >= 0)"]
        }
        #expect(r == ["0.0.0.0", "true", "inet", "stream", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func recvIntoTheCallersBuffer() throws {
        let r = try IOTest.run { () -> String in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(IOTest.bytes("0123456789ABCDEFGHIJ"))
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            defer { buf.deallocate() }
            var got = 0
            while got < 20 {
                // At most 16 bytes per call, into the rest of the buffer.
                let room = UnsafeMutableRawBufferPointer(rebasing: buf[got..<min(got + 16, 64)])
                let n = try await server.recv(into: room)
                if n == 0 { break }
                if n > 16 { return "recv(into:) wrote \(n) bytes into 16" }
                got += n
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: buf[0..<got]), as: UTF8.self)
        }
        #expect(r == "0123456789ABCDEFGHIJ")
    }

    @Test(.timeLimit(.minutes(1)))
    func sendReturnsAPartialCountWhenTheBuffersAreFull() throws {
        let total = 4 << 20
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 32768, sendBuffer: 32768)
            defer { client.close(); server.close() }
            let payload = IOTest.pattern(total, seed: 7)
            let n = try await client.send(payload)
            // Everything send() reported is what the peer receives, in order.
            let got = try await IOTest.receive(server, count: n)
            return ["\(n > 0) \(n < total)", "\(got.count == n)", "\(got == Array(payload[0..<n]))"]
        }
        #expect(r == ["true true", "true", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func halfCloseWithShutdownWrite() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(IOTest.bytes("last words"))
            try client.shutdown(.write)
            var out: [String] = []
            out.append(IOTest.text(try await IOTest.receiveAll(server)))
            out.append("eof again: \(try await server.recv(10).isEmpty)")
            // The other direction still works.
            try await server.sendAll(IOTest.bytes("bye"))
            try server.shutdown(.write)
            out.append(IOTest.text(try await IOTest.receiveAll(client)))
            out.append("client send after shutdown: \(IOTest.kind(await IOTest.error { try await client.sendAll([1]) }))")
            return out
        }
        #expect(r == ["last words", "eof again: true", "bye", "client send after shutdown: SocketError(EPIPE)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closeTwiceIsHarmlessAndClosingClosesOnThrow() throws {
        let r = try IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            s.close()
            s.close()
            var out = ["fd \(s.fd)"]
            let t = try Socket(.inet, .stream)
            struct Oops: Error {}
            do {
                try await t.closing { _ in throw Oops() }
            } catch is Oops {
                out.append("thrown")
            }
            out.append("closed \(t.fd)")
            let u = try Socket(.inet, .stream)
            let v = await u.closing { $0.fd >= 0 }
            out.append("value \(v) closed \(u.fd)")
            return out
        }
        #expect(r == ["fd -1", "thrown", "closed -1", "value true closed -1"])
    }

    @Test(.timeLimit(.minutes(1)))
    func useAfterCloseIsEBADF() throws {
        let r = try IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            s.close()
            let u = try Socket(.inet, .datagram)
            u.close()
            let somewhere = try SocketAddress(host: "127.0.0.1", port: 9)
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            defer { buf.deallocate() }
            let attempts: [(String, () async throws -> Void)] = [
                ("recv", { _ = try await s.recv(10) }),
                ("recvInto", { _ = try await s.recv(into: buf) }),
                ("send", { _ = try await s.send([1]) }),
                ("sendAll", { try await s.sendAll([1]) }),
                ("accept", { _ = try await s.accept() }),
                ("connect", { try await s.connect(somewhere) }),
                ("recvFrom", { _ = try await u.recvFrom(10) }),
                ("sendTo", { _ = try await u.sendTo([1], somewhere) }),
                ("bind", { try s.bind(("127.0.0.1", 0)) }),
                ("listen", { try s.listen() }),
                ("setOption", { try s.setOption(.reuseAddress, true) }),
                ("getOption", { _ = try s.getOption(.reuseAddress) }),
                ("localAddress", { _ = try s.localAddress }),
                ("peerAddress", { _ = try s.peerAddress }),
                ("shutdown", { try s.shutdown(.both) }),
            ]
            var out: [String] = []
            for (name, body) in attempts {
                out.append("\(name): \(IOTest.kind(await IOTest.error(body)))")
            }
            return out
        }
        let names = ["recv", "recvInto", "send", "sendAll", "accept", "connect", "recvFrom", "sendTo", "bind",
                     "listen", "setOption", "getOption", "localAddress", "peerAddress", "shutdown"]
        #expect(r == names.map { "\($0): SocketError(EBADF)" })
    }

    @Test(.timeLimit(.minutes(1)))
    func connectRefused() throws {
        let r = try IOTest.run { () -> [String] in
            // A bound socket that does not listen holds the port for us.
            let holder = try Socket(.inet, .stream)
            defer { holder.close() }
            try holder.bind(("127.0.0.1", 0))
            let addr = try holder.localAddress
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            let e = await IOTest.error { try await s.connect(addr) }
            let text = (e as? SocketError)?.description ?? ""
            return [IOTest.kind(e), "\(text.contains("connect") && text.contains("\(addr.port)"))"]
        }
        #expect(r == ["SocketError(ECONNREFUSED)", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closeEndsAPendingReceiveWithAnError() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close() }
            let reader = try await spawn { () async throws -> String in
                IOTest.kind(await IOTest.error { _ = try await server.recv(100) })
            }
            try await IOTest.waitBlocked(reader, .readWait)
            server.close()
            let seen = try await reader.join() ?? "nil"
            return ["\(seen.hasPrefix("SocketError"))", "fd \(server.fd)"]
        }
        #expect(r == ["true", "fd -1"])
    }

    @Test(.timeLimit(.minutes(1)))
    func twoTasksReceivingOnOneSocketIsResourceBusy() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let first = try await spawn { () async throws -> String in
                IOTest.text(try await server.recv(10))
            }
            try await IOTest.waitBlocked(first, .readWait)
            var out: [String] = []
            // A larger receive than the pending one: it must not touch the
            // buffer the pending receive fills.
            let e1 = await IOTest.error { _ = try await server.recv(1 << 20) }
            out.append("recv: \(IOTest.kind(e1)) \((e1 as? ResourceBusy)?.description.contains("receiving") ?? false)")
            let e2 = await IOTest.error {
                let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
                defer { b.deallocate() }
                _ = try await server.recv(into: b)
            }
            out.append("recv(into:): \(IOTest.kind(e2))")
            out.append("accept: \(IOTest.kind(await IOTest.error { _ = try await server.accept() }))")
            try await client.sendAll(IOTest.bytes("ping"))
            out.append("first got \(try await first.join() ?? "nil")")
            // Free again once the first receive has ended.
            try await client.sendAll(IOTest.bytes("pong"))
            out.append("then \(IOTest.text(try await server.recv(10)))")
            return out
        }
        #expect(r == ["recv: ResourceBusy true", "recv(into:): ResourceBusy", "accept: ResourceBusy",
                      "first got ping", "then pong"])
    }

    @Test(.timeLimit(.minutes(1)))
    func twoTasksSendingOnOneSocketIsResourceBusy() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 16384, sendBuffer: 16384)
            defer { client.close(); server.close() }
            let big = IOTest.pattern(8 << 20)
            let sender = try await spawn { () async throws -> String in
                IOTest.kind(await IOTest.error { try await client.sendAll(big) })
            }
            try await IOTest.waitBlocked(sender, .writeWait)
            let e = await IOTest.error { _ = try await client.send([1, 2, 3]) }
            let out = ["send: \(IOTest.kind(e)) \((e as? ResourceBusy)?.description.contains("sending") ?? false)"]
            try await sender.cancel()
            return out + ["sender: \(try await sender.join() ?? "nil")"]
        }
        #expect(r == ["send: ResourceBusy true", "sender: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aSocketUsedFromAnotherKernelIsWrongKernel() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            // Both sockets now belong to this kernel.
            try await client.sendAll(IOTest.bytes("x"))
            _ = try await server.recv(1)
            // A second kernel on a worker thread tries to use them.
            let seen = try await runInThread { () throws -> [String] in
                try Kernel().run { () async throws -> [String] in
                    [
                        IOTest.kind(await IOTest.error { _ = try await server.recv(10) }),
                        IOTest.kind(await IOTest.error { try await client.sendAll([1]) }),
                        IOTest.kind(await IOTest.error { _ = try await server.accept() }),
                    ]
                }
            }
            // Still fine here.
            try await client.sendAll(IOTest.bytes("ok"))
            return seen + [IOTest.text(try await IOTest.receive(server, count: 2))]
        }
        #expect(r == ["CurioUsageError.wrongKernel", "CurioUsageError.wrongKernel", "CurioUsageError.wrongKernel", "ok"])
    }

    @Test(.timeLimit(.minutes(1)))
    func blockingCallsOutsideAKernelAreNotInKernel() async throws {
        let s = try Socket(.inet, .stream)
        defer { s.close() }
        let e = await IOTest.error { _ = try await s.recv(10) }
        #expect(IOTest.kind(e) == "CurioUsageError.notInKernel")
    }

    @Test(.timeLimit(.minutes(1)))
    func recvOfZeroOrLessBytesIsAUsageError() throws {
        let r = try IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let u = try Socket(.inet, .datagram)
            defer { u.close() }
            let e0 = await IOTest.error { _ = try await server.recv(0) }
            return [
                IOTest.kind(e0),
                "\((e0 as? CurioUsageError)?.message.contains("maxBytes") ?? false)",
                IOTest.kind(await IOTest.error { _ = try await server.recv(-1) }),
                IOTest.kind(await IOTest.error { _ = try await u.recvFrom(0) }),
            ]
        }
        #expect(r == ["CurioUsageError.invalidArgument", "true", "CurioUsageError.invalidArgument",
                      "CurioUsageError.invalidArgument"])
    }

    @Test(.timeLimit(.minutes(1)))
    func socketAddresses() throws {
        let v4 = try SocketAddress(host: "127.0.0.1", port: 8080)
        #expect(v4.family == .inet && v4.host == "127.0.0.1" && v4.port == 8080)
        #expect(v4.description == "('127.0.0.1', 8080)")
        #expect(try SocketAddress(host: "localhost", port: 1) == SocketAddress(host: "127.0.0.1", port: 1))
        #expect(try SocketAddress(host: "", port: 0).host == "0.0.0.0")
        let v6 = try SocketAddress(host: "::1", port: 443)
        #expect(v6.family == .inet6 && v6.host == "::1" && v6.port == 443)
        #expect(try SocketAddress(host: "", port: 0, family: .inet6).host == "::")
        #expect(try SocketAddress(host: "localhost", port: 0, family: .inet6).host == "::1")
        let unix = try SocketAddress(unixPath: "/tmp/x.sock")
        #expect(unix.family == .unix && unix.host == "/tmp/x.sock" && unix.port == 0)
        #expect(unix.description == "'/tmp/x.sock'")
        #expect(Set([v4, v4, v6]).count == 2)
        for bad in [{ _ = try SocketAddress(host: "not.numeric", port: 1) },
                    { _ = try SocketAddress(host: "127.0.0.1", port: 70000) },
                    { _ = try SocketAddress(host: "127.0.0.1", port: -1) },
                    { _ = try SocketAddress(host: "::zz", port: 1) },
                    { _ = try SocketAddress(unixPath: "") },
                    { _ = try SocketAddress(unixPath: String(repeating: "a", count: 200)) },
                    { _ = try SocketAddress(host: "x", port: 1, family: .unix) }] as [() throws -> Void] {
            #expect(throws: CurioUsageError.self) { try bad() }
        }
    }
}

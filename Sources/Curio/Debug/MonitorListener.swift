import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The remote monitor's listening socket and the files beside it: where
/// they go, who may connect, and their removal.
///
/// - The standard place is a Unix socket `<pid>.sock` in a private
///   directory: `$XDG_RUNTIME_DIR/curio/`, or else `/tmp/curio-<uid>/`
///   (created 0700; an existing one must be this user's and not open to
///   others). The socket is 0600 and the monitor checks each peer's uid
///   (`SO_PEERCRED`): only the program's own user is served.
/// - TCP (opt-in, loopback only) has no peer uid: a client must first send
///   the run's random token, which goes to stderr and to `<pid>.token` (0600)
///   in the same directory, with the address on its second line.
/// - Both files are removed when the kernel goes away or the process
///   exits; files left by a process that died are removed by the next
///   monitor that starts in that directory, and ignored by `curio-monitor`.
struct MonitorListener {
    enum Transport: Equatable {
        case unix
        case tcp(token: String)
    }

    let fd: Int32
    let transport: Transport
    let address: SocketAddress
    /// The files this listener owns (socket file, token file).
    let files: [String]
    /// Where the token is written (TCP), for the refusal line.
    let tokenPath: String?

    /// Fails with a line for stderr (the monitor is then off).
    static func open(_ endpoint: Kernel.Configuration.MonitorEndpoint, runtimeDirectory: String?) throws(MonitorSetupError) -> MonitorListener {
        switch endpoint {
        case .standard:
            let dir = try privateDirectory(runtimeDirectory)
            removeStaleFiles(in: dir)
            let path = try MonitorFiles.claimName(in: dir, suffix: ".sock")
            return try openUnix(path: path)
        case .unix(let path):
            try MonitorFiles.claim(path)
            return try openUnix(path: path)
        case .tcp(let host, let port):
            return try openTCP(host: host, port: port, runtimeDirectory: runtimeDirectory)
        }
    }

    // MARK: The private directory

    /// `$XDG_RUNTIME_DIR/curio` when that works, else `/tmp/curio-<uid>`.
    static func privateDirectory(_ runtimeDirectory: String?) throws(MonitorSetupError) -> String {
        if let base = runtimeDirectory, base.hasPrefix("/"), base.utf8.count < 70,
           let dir = try? ensurePrivate(base + (base.hasSuffix("/") ? "" : "/") + "curio") {
            return dir
        }
        return try ensurePrivate("/tmp/curio-\(geteuid())")
    }

    /// Creates `path` 0700, or checks that the existing one is a directory
    /// of this user that nobody else can enter (not a symbolic link).
    static func ensurePrivate(_ path: String) throws(MonitorSetupError) -> String {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw MonitorSetupError("cannot create the monitor directory \(path): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw MonitorSetupError("cannot inspect the monitor directory \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw MonitorSetupError("\(path) is not a directory; the remote monitor will not use it")
        }
        guard st.st_uid == geteuid() else {
            throw MonitorSetupError("the monitor directory \(path) belongs to uid \(st.st_uid), not to this user (uid \(geteuid())); the remote monitor will not use it")
        }
        if st.st_mode & 0o077 != 0 {
            // Ours but open to others: close it.
            guard chmod(path, 0o700) == 0 else {
                throw MonitorSetupError("the monitor directory \(path) is open to other users and cannot be made private: \(String(cString: strerror(errno)))")
            }
        }
        return path
    }

    /// Removes `<pid>[-n].sock` / `.token` files whose process is gone.
    static func removeStaleFiles(in dir: String) {
        guard let d = opendir(dir) else { return }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = MonitorFiles.pid(fromName: name), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                var st = stat()
                let path = dir + "/" + name
                if lstat(path, &st) == 0 && st.st_uid == geteuid() { unlink(path) }
            }
        }
    }

    // MARK: Unix

    static func openUnix(path: String) throws(MonitorSetupError) -> MonitorListener {
        var ok = false
        defer { if !ok { MonitorFiles.release(path, unlinking: false) } }
        let addr: SocketAddress
        do { addr = try SocketAddress(unixPath: path) } catch {
            throw MonitorSetupError("the monitor socket path \(path) is too long for a Unix socket")
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            // Left by a process that had this pid, or by an earlier run.
            guard st.st_mode & S_IFMT == S_IFSOCK, st.st_uid == geteuid() else {
                throw MonitorSetupError("\(path) exists and is not a socket of this user; the remote monitor will not replace it")
            }
            if socketAnswers(addr) {
                throw MonitorSetupError("another program's monitor listens on \(path)")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MonitorSetupError("cannot create the monitor socket: \(String(cString: strerror(errno)))") }
        guard addr.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let e = errno
            close(fd)
            throw MonitorSetupError("the monitor cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        // The directory is private already; the socket is made 0600 before
        // it accepts anyone, whatever the umask.
        guard chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            throw MonitorSetupError("the monitor cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        ok = true
        return MonitorListener(fd: fd, transport: .unix, address: addr, files: [path], tokenPath: nil)
    }

    /// True when something accepts connections at `addr`.
    static func socketAnswers(_ addr: SocketAddress) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return addr.withSockaddr { connect(fd, $0, $1) } == 0
    }

    // MARK: TCP

    static func openTCP(host: String, port: Int, runtimeDirectory: String?) throws(MonitorSetupError) -> MonitorListener {
        var host = host.isEmpty ? "127.0.0.1" : host
        // The monitor can cancel tasks and send signals: never off the machine.
        if !(host.hasPrefix("127.") || host == "::1" || host == "localhost") {
            diagnose(.warning, "curio: the monitor listens on loopback only; ignoring host '\(host)' and using 127.0.0.1\n")
            host = "127.0.0.1"
        }
        guard let addr = try? SocketAddress(host: host, port: port) else {
            throw MonitorSetupError("monitor address '\(host):\(port)' is not a numeric loopback address and port")
        }
        // The token file goes where the Unix socket would.
        let dir = try privateDirectory(runtimeDirectory)
        removeStaleFiles(in: dir)
        let tokenPath = try MonitorFiles.claimName(in: dir, suffix: ".token")
        var ok = false
        defer { if !ok { MonitorFiles.release(tokenPath, unlinking: false) } }

        let fd = socket(addr.family.raw, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MonitorSetupError("cannot create the monitor socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard addr.withSockaddr({ bind(fd, $0, $1) }) == 0 && listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw MonitorSetupError("monitor cannot listen on \(addr.host):\(port): \(String(cString: strerror(e)))")
        }
        var st = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &st) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        let bound = SocketAddress(storage: st, length: len)
        let token = randomToken()
        let hostPort = bound.family == .inet6 ? "[\(bound.host)]:\(bound.port)" : "\(bound.host):\(bound.port)"
        guard writePrivateFile(tokenPath, token + "\n" + hostPort + "\n") else {
            let e = errno
            close(fd)
            throw MonitorSetupError("cannot write the monitor token file \(tokenPath): \(String(cString: strerror(e)))")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        ok = true
        return MonitorListener(fd: fd, transport: .tcp(token: token), address: bound, files: [tokenPath], tokenPath: tokenPath)
    }

    /// 128 random bits as hex, from the system's CSPRNG (getrandom).
    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        var out = ""
        for _ in 0..<2 {
            let v = rng.next() as UInt64
            let hex = String(v, radix: 16)
            out += String(repeating: "0", count: 16 - hex.count) + hex
        }
        return out
    }

    /// Writes `text` to a new file only this user can read.
    static func writePrivateFile(_ path: String, _ text: String) -> Bool {
        unlink(path)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
            && fchmod(fd, 0o600) == 0
    }
}

/// Why the remote monitor could not start (printed on stderr).
struct MonitorSetupError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The uid of the process at the other end of a Unix socket.
func peerUID(_ fd: Int32) -> uid_t? {
    // struct ucred (pid, uid, gid); the Glibc module leaves it out (it
    // needs _GNU_SOURCE), so it is spelled out here.
    struct PeerCredentials {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }
    var cred = PeerCredentials()
    var len = socklen_t(MemoryLayout<PeerCredentials>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0,
          Int(len) == MemoryLayout<PeerCredentials>.size else { return nil }
    return cred.uid
}

/// The monitor files of this process: names are handed out once, and every
/// file still held is removed at exit (a kernel's deinit removes its own
/// earlier).
enum MonitorFiles {
    private static let held = Locked<Set<String>>([])
    private static let exitHook = Atomic<Bool>(false)

    /// `<dir>/<pid>.sock`, or `<pid>-2.sock`, ... when this process holds
    /// that name already (a second kernel with a monitor).
    static func claimName(in dir: String, suffix: String) throws(MonitorSetupError) -> String {
        installExitHook()
        let pid = getpid()
        let name: String? = held.withLock { set in
            for n in 1...64 {
                let path = dir + "/" + (n == 1 ? "\(pid)" : "\(pid)-\(n)") + suffix
                if !set.contains(path) {
                    set.insert(path)
                    return path
                }
            }
            return nil
        }
        guard let name else { throw MonitorSetupError("too many monitors in this process") }
        return name
    }

    /// Takes an explicit path (`.unix(path:)`).
    static func claim(_ path: String) throws(MonitorSetupError) {
        installExitHook()
        let fresh = held.withLock { $0.insert(path).inserted }
        if !fresh { throw MonitorSetupError("another kernel of this process has its monitor on \(path)") }
    }

    /// Forgets the name and, with `unlinking`, removes the file.
    static func release(_ path: String, unlinking: Bool = true) {
        let mine = held.withLock { $0.remove(path) != nil }
        if mine && unlinking { unlink(path) }
    }

    /// The pid in `1234.sock`, `1234-2.token`; nil for other names.
    static func pid(fromName name: String) -> pid_t? {
        let stem: Substring
        if name.hasSuffix(".sock") { stem = name.dropLast(5) } else if name.hasSuffix(".token") { stem = name.dropLast(6) } else { return nil }
        let digits = stem.split(separator: "-", maxSplits: 1).first ?? ""
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let pid = Int32(digits), pid > 0 else { return nil }
        return pid
    }

    private static func installExitHook() {
        guard !exitHook.exchange(true, ordering: .relaxed) else { return }
        atexit {
            let paths = MonitorFiles.held.withLock { set -> Set<String> in
                let all = set
                set.removeAll()
                return all
            }
            for p in paths { unlink(p) }
        }
    }
}

// curio-monitor: talks to a running program's monitor.
//
//   curio-monitor                 the most recent monitor of this user
//   curio-monitor PID             the monitor of program PID (PID-2 for its second kernel)
//   curio-monitor PATH            the Unix socket at PATH
//   curio-monitor -p PORT [-H HOST] [--token HEX]
//                                 a monitor on TCP (CURIOMONITOR=host:port); the token is
//                                 read from the program's token file unless given
//   curio-monitor --list          the monitors of this user
//
// Monitors live in $XDG_RUNTIME_DIR/curio/ or /tmp/curio-UID/ as PID.sock
// (Unix socket) or PID.token (TCP: the token, then the address). Lines typed
// go to the monitor; its answers are printed. Ends when the monitor closes
// the connection or standard input ends; exits 1 when it cannot connect or
// the monitor refuses it.
import Glibc

/// Prints a message on stderr.
func fail(_ text: String) {
    var t = text
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Where monitors of this user may be, in the order the library prefers.
func monitorDirectories() -> [String] {
    var dirs: [String] = []
    if let x = getenv("XDG_RUNTIME_DIR"), x.pointee != 0 {
        let base = String(cString: x)
        dirs.append(base + (base.hasSuffix("/") ? "" : "/") + "curio")
    }
    dirs.append("/tmp/curio-\(geteuid())")
    return dirs
}

func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 512)
    let n = read(fd, &buf, buf.count)
    return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}

/// A monitor found on disk.
struct Found {
    enum Kind { case unix(String), tcp(host: String, port: UInt16, token: String) }
    let name: String
    let kind: Kind
    let modified: Int
}

/// `<dir>/<name>.sock` or `<dir>/<name>.token`.
func lookUp(_ name: String, in dir: String) -> Found? {
    var st = stat()
    let sock = dir + "/" + name + ".sock"
    if lstat(sock, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK {
        return Found(name: name, kind: .unix(sock), modified: Int(st.st_mtim.tv_sec))
    }
    let tokenFile = dir + "/" + name + ".token"
    if lstat(tokenFile, &st) == 0, let text = readSmallFile(tokenFile) {
        let lines = text.split(separator: "\n").map(String.init)
        if lines.count >= 2, let (host, port) = splitHostPort(lines[1]) {
            return Found(name: name, kind: .tcp(host: host, port: port, token: lines[0]), modified: Int(st.st_mtim.tv_sec))
        }
    }
    return nil
}

/// `127.0.0.1:4000` or `[::1]:4000`.
func splitHostPort(_ s: String) -> (String, UInt16)? {
    guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
    var host = String(s[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// Every monitor of this user whose program still runs.
func allMonitors() -> [Found] {
    var out: [Found] = []
    var seen = Set<String>()
    for dir in monitorDirectories() {
        guard let d = opendir(dir) else { continue }
        defer { closedir(d) }
        while let e = readdir(d) {
            let file = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard file.hasSuffix(".sock") || file.hasSuffix(".token") else { continue }
            let name = String(file.prefix { $0 != "." })
            guard let pid = Int32(name.prefix { $0 != "-" }), pid > 0, kill(pid, 0) == 0 || errno == EPERM,
                  !seen.contains(name), let f = lookUp(name, in: dir) else { continue }
            seen.insert(name)
            out.append(f)
        }
    }
    return out.sorted { ($0.modified, $0.name) > ($1.modified, $1.name) }
}

// MARK: Arguments

var host = "127.0.0.1"
var port: UInt16?
var token: String?
var target: String?
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "-H", "--host":
        guard let v = args.popFirst() else { fail("curio-monitor: -H needs a host\n"); exit(2) }
        host = v
    case "-p", "--port":
        guard let v = args.popFirst(), let p = UInt16(v) else { fail("curio-monitor: -p needs a port number\n"); exit(2) }
        port = p
    case "--token":
        guard let v = args.popFirst() else { fail("curio-monitor: --token needs the token\n"); exit(2) }
        token = v
    case "--list":
        let found = allMonitors()
        if found.isEmpty { print("no monitors of this user are running") }
        for f in found {
            switch f.kind {
            case .unix(let path): print("\(f.name)\t\(path)")
            case .tcp(let h, let p, _): print("\(f.name)\ttcp \(h):\(p)")
            }
        }
        exit(0)
    case "-h", "--help":
        print("""
            usage: curio-monitor [PID | PATH]               the program's Unix socket (default: the most recent)
                   curio-monitor -p PORT [-H HOST] [--token HEX]   a monitor on TCP
                   curio-monitor --list                     the monitors of this user
            """)
        exit(0)
    default:
        if a.hasPrefix("-") || target != nil {
            fail("curio-monitor: unknown argument '\(a)' (try --help)\n")
            exit(2)
        }
        target = a
    }
}

// MARK: Connecting

/// Connects a socket to a `sockaddr` of type `A`.
func connectTo<A>(_ fd: Int32, _ address: inout A) -> Int32 {
    withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<A>.size)) }
    }
}

func connectUnix(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { perror("curio-monitor: socket"); exit(1) }
    var a = sockaddr_un()
    a.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: a.sun_path) else { fail("curio-monitor: path too long: \(path)\n"); exit(2) }
    withUnsafeMutableBytes(of: &a.sun_path) { dst in
        dst.copyBytes(from: bytes)
        dst[bytes.count] = 0
    }
    guard connectTo(fd, &a) == 0 else {
        fail("curio-monitor: cannot connect to \(path): \(String(cString: strerror(errno)))\n")
        exit(1)
    }
    return fd
}

func connectTCP(_ host: String, _ port: UInt16) -> Int32 {
    let v6 = host.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { perror("curio-monitor: socket"); exit(1) }
    var rc: Int32 = -1
    if v6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = port.bigEndian
        guard inet_pton(AF_INET6, host, &a.sin6_addr) == 1 else { fail("curio-monitor: '\(host)' is not a numeric address\n"); exit(2) }
        rc = connectTo(fd, &a)
    } else {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &a.sin_addr) == 1 else {
            fail("curio-monitor: '\(host)' is not a numeric address\n")
            exit(2)
        }
        rc = connectTo(fd, &a)
    }
    guard rc == 0 else {
        fail("curio-monitor: cannot connect to \(host):\(port): \(String(cString: strerror(errno))) (is the program running with the monitor on?)\n")
        exit(1)
    }
    return fd
}

let fd: Int32
if let port {
    fd = connectTCP(host, port)
    if token == nil {
        let mine = allMonitors().first {
            if case .tcp(let h, let p, _) = $0.kind { return p == port && (h == host || (host == "localhost" && h == "127.0.0.1")) }
            return false
        }
        if let mine, case .tcp(_, _, let t) = mine.kind { token = t }
    }
    guard let token else {
        fail("curio-monitor: no token file for \(host):\(port) in \(monitorDirectories().joined(separator: " or ")); pass --token (the program printed it on stderr)\n")
        exit(1)
    }
    var line = Array("token \(token)\n".utf8)
    guard line.withUnsafeMutableBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == line.count else {
        fail("curio-monitor: the monitor closed the connection\n")
        exit(1)
    }
} else {
    let found: Found?
    if let target, target.contains("/") {
        found = Found(name: target, kind: .unix(target), modified: 0)
    } else if let target {
        guard target.allSatisfy({ $0.isNumber || $0 == "-" }) else {
            fail("curio-monitor: '\(target)' is neither a pid nor a socket path (try --help)\n")
            exit(2)
        }
        found = monitorDirectories().lazy.compactMap { lookUp(target, in: $0) }.first
        if found == nil {
            fail("curio-monitor: no monitor for pid \(target) in \(monitorDirectories().joined(separator: " or ")) (is it running with the monitor on, as this user?)\n")
            exit(1)
        }
    } else {
        found = allMonitors().first
        if found == nil {
            fail("curio-monitor: no monitor of this user is running (looked in \(monitorDirectories().joined(separator: " and ")))\n")
            exit(1)
        }
    }
    switch found!.kind {
    case .unix(let path):
        fd = connectUnix(path)
    case .tcp(let h, let p, let t):
        fd = connectTCP(h, p)
        var line = Array("token \(token ?? t)\n".utf8)
        _ = line.withUnsafeMutableBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

// MARK: The session

var buf = [UInt8](repeating: 0, count: 4096)

/// Writes the first `n` bytes of `buf` with `put`, retrying short writes.
@MainActor func writeAll(_ n: Int, _ put: (UnsafeRawPointer, Int) -> Int) -> Bool {
    buf.withUnsafeBytes { raw in
        var off = 0
        while off < n {
            let w = put(raw.baseAddress! + off, n - off)
            if w <= 0 { return false }
            off += w
        }
        return true
    }
}

/// A refusal ("Refused: ...", "Busy: ...") goes to stderr and ends with status 1.
var refused = false
var firstAnswer = true
var stdinOpen = true
while true {
    var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    if stdinOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
    if poll(&fds, nfds_t(fds.count), -1) < 0 { if errno == EINTR { continue }; break }
    if fds[0].revents != 0 {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        if firstAnswer {
            firstAnswer = false
            let head = String(decoding: buf[0..<min(n, 8)], as: UTF8.self)
            refused = head.hasPrefix("Refused:") || head.hasPrefix("Busy:")
        }
        if !writeAll(n, { p, c in write(refused ? 2 : 1, p, c) }) { exit(1) }
    }
    if stdinOpen && fds.count > 1 && fds[1].revents != 0 {
        let n = read(0, &buf, buf.count)
        if n <= 0 {
            stdinOpen = false
            shutdown(fd, Int32(SHUT_WR))
            continue
        }
        if !writeAll(n, { p, c in send(fd, p, c, Int32(MSG_NOSIGNAL)) }) { exit(1) }
    }
}
close(fd)
exit(refused ? 1 : 0)

// curio-monitor: talks to a running program's monitor over loopback.
//
//   curio-monitor [-H host] [-p port]      (default 127.0.0.1:48802)
//
// Lines typed go to the monitor; its answers are printed. Ends when the
// monitor closes the connection or standard input ends.
import Glibc

/// Prints a message on stderr.
func fail(_ text: String) {
    var t = text
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

var host = "127.0.0.1"
var port: UInt16 = 48802
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "-H", "--host":
        guard let v = args.popFirst() else { fail("curio-monitor: -H needs a host\n"); exit(2) }
        host = v
    case "-p", "--port":
        guard let v = args.popFirst(), let p = UInt16(v) else { fail("curio-monitor: -p needs a port number\n"); exit(2) }
        port = p
    case "-h", "--help":
        print("usage: curio-monitor [-H host] [-p port]   (default 127.0.0.1:48802)")
        exit(0)
    default:
        fail("curio-monitor: unknown argument '\(a)' (try --help)\n")
        exit(2)
    }
}

let v6 = host.contains(":")
let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
guard fd >= 0 else { perror("curio-monitor: socket"); exit(1) }
var connected: Int32 = -1
if v6 {
    var a = sockaddr_in6()
    a.sin6_family = sa_family_t(AF_INET6)
    a.sin6_port = port.bigEndian
    guard inet_pton(AF_INET6, host, &a.sin6_addr) == 1 else { fail("curio-monitor: '\(host)' is not a numeric address\n"); exit(2) }
    connected = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
} else {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &a.sin_addr) == 1 else { fail("curio-monitor: '\(host)' is not a numeric address\n"); exit(2) }
    connected = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
}
guard connected == 0 else {
    fail("curio-monitor: cannot connect to \(host):\(port): \(String(cString: strerror(errno))) (is the program running with the monitor on?)\n")
    exit(1)
}

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
var stdinOpen = true
while true {
    var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    if stdinOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
    if poll(&fds, nfds_t(fds.count), -1) < 0 { if errno == EINTR { continue }; break }
    if fds[0].revents != 0 {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        if !writeAll(n, { p, c in write(1, p, c) }) { exit(1) }
    }
    if stdinOpen && fds.count > 1 && fds[1].revents != 0 {
        let n = read(0, &buf, buf.count)
        if n <= 0 {
            stdinOpen = false
            shutdown(fd, Int32(SHUT_WR))
            continue
        }
        if !writeAll(n, { p, c in send(fd, p, c, 0) }) { exit(1) }
    }
}
close(fd)

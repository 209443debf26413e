// The remote monitor against running programs: `hello-monitor` (and
// `hello-signal`) run as child processes with their monitor on its standard
// Unix socket (in the tests' own XDG_RUNTIME_DIR, named for the pid) or, where
// a test says so, on TCP with CURIOMONITOR=127.0.0.1:0 and the run's token;
// the tests connect with plain sockets and with the package's `curio-monitor`
// client. ps/where/cancel/signal work as on the console; bad clients (binary
// garbage, lines over 4096 bytes, unknown commands, clients that leave
// mid-command or mid-answer, clients that stop reading) get an error line or
// are dropped and never harm the program; a few clients are served at once
// and one more is told the monitor is busy; TCP is on loopback only.
import Glibc
import Testing

@testable import Curio

extension MonitorHarness {
    /// A plain TCP client of the remote monitor; every read bounded.
    final class MonitorClient {
        private(set) var fd: Int32
        private var bytes: [UInt8] = []
        private var cursor = 0
        private(set) var eof = false

        /// Connects to a Unix socket (bounded).
        init(unixPath: String, receiveBuffer: Int32? = nil) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
            if var size = receiveBuffer {
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(unixPath.utf8)
            withUnsafeMutableBytes(of: &a.sun_path) { dst in
                dst.copyBytes(from: bytes.prefix(dst.count - 1))
                dst[min(bytes.count, dst.count - 1)] = 0
            }
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            let e = errno
            guard rc == 0 else {
                Glibc.close(fd)
                fd = -1
                throw Failure("connect \(unixPath): \(String(cString: strerror(e)))")
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }

        init(port: Int, host: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
            if var size = receiveBuffer {
                // Set before connecting, it fixes the window the peer sees.
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, host, &a.sin_addr)
            // Non-blocking, so a connect that gets no answer is bounded too.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            var e = errno
            if rc < 0 && e == EINPROGRESS {
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 5000) == 1 {
                    var soError: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                    rc = soError == 0 ? 0 : -1
                    e = soError
                } else {
                    e = ETIMEDOUT
                }
            }
            guard rc == 0 else {
                Glibc.close(fd)
                fd = -1
                throw Failure("connect \(host):\(port): \(String(cString: strerror(e)))")
            }
        }

        deinit { close() }

        func close() {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }

        /// Reads what arrives within `seconds` (returns at the first data).
        func pump(_ seconds: Double) {
            guard fd >= 0, !eof else { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(0, min(seconds, 60)) * 1000)) > 0 else { return }
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 {
                    bytes += buf[0..<n]
                    continue
                }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                eof = true  // 0: closed; ECONNRESET: dropped
                return
            }
        }

        /// Unconsumed text so far.
        var pending: String { String(decoding: bytes[cursor...], as: UTF8.self) }

        @discardableResult
        func expect(_ needle: String, within seconds: Double = 10) throws -> String {
            let pattern = Array(needle.utf8)
            let deadline = MonitorHarness.now() + seconds
            while true {
                if let r = MonitorHarness.find(pattern, in: bytes, from: cursor) {
                    defer { cursor = r.upperBound }
                    return String(decoding: bytes[cursor..<r.upperBound], as: UTF8.self)
                }
                let left = deadline - MonitorHarness.now()
                if left <= 0 || eof || fd < 0 {
                    throw Failure("\(eof ? "connection closed" : "timed out") waiting for \(needle.debugDescription); unconsumed: \(pending.suffix(1500).debugDescription)")
                }
                pump(min(left, 0.5))
            }
        }

        /// Waits until the monitor closes the connection; the text it sent
        /// before. Nil when it is still open after `seconds`.
        func readToEOF(within seconds: Double = 10) -> String? {
            let deadline = MonitorHarness.now() + seconds
            while !eof {
                let left = deadline - MonitorHarness.now()
                if left <= 0 { return nil }
                pump(min(left, 0.5))
            }
            defer { cursor = bytes.count }
            return pending
        }

        /// Sends everything (MSG_NOSIGNAL); false when the monitor has
        /// closed the connection.
        @discardableResult
        func send(_ data: [UInt8]) -> Bool {
            var off = 0
            let deadline = MonitorHarness.now() + 10
            while off < data.count && fd >= 0 {
                let n = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, data.count - off, Int32(MSG_NOSIGNAL)) }
                if n > 0 { off += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) && MonitorHarness.now() < deadline {
                    // Keep reading, or a monitor answering us could block.
                    pump(0.01)
                    continue
                }
                return false
            }
            return off == data.count
        }

        @discardableResult
        func send(_ text: String) -> Bool { send(Array(text.utf8)) }

        /// The greeting up to the first prompt.
        func greeting() throws -> String { try expect("curio > ") }

        /// Sends a command line and returns the answer without the prompt.
        func command(_ line: String) throws -> String {
            guard send(line + "\n") else { throw Failure("could not send \(line.debugDescription)") }
            var text = try expect("curio > ")
            text.removeLast("curio > ".count)
            return text
        }
    }

    /// Where a started program's remote monitor listens.
    struct Endpoint {
        /// The Unix socket, or nil for TCP.
        let unixPath: String?
        let host: String
        let port: Int
        /// The TCP token, from the program's stderr.
        let token: String?

        /// A connected client; on TCP it has sent the token already.
        func client(receiveBuffer: Int32? = nil) throws -> MonitorClient {
            if let unixPath { return try MonitorClient(unixPath: unixPath, receiveBuffer: receiveBuffer) }
            let c = try MonitorClient(port: port, host: host, receiveBuffer: receiveBuffer)
            c.send("token \(token ?? "")\n")
            return c
        }
    }

    /// hello-monitor (or another example) with its stdout on a pty and its
    /// remote monitor on the standard Unix socket (announced on stderr:
    /// "curio: monitor listening on PATH", which must be the socket named for
    /// its pid) or, with `tcp`, on a free loopback port with a token
    /// ("curio: monitor listening on 127.0.0.1:PORT", then the token line).
    static func startWithRemoteMonitor(_ name: String, environment: [String: String?] = [:],
                                       tcp: Bool = false) throws -> (Child, Endpoint) {
        var env = environment
        env["CURIOMONITOR"] = tcp ? "127.0.0.1:0" : ""
        let child = try Child(try executable(name), environment: env, layout: .terminalOutput)
        do {
            try child.expect("curio: monitor listening on ", on: .err, within: 20)
            let address = String(try child.expect("\n", on: .err).dropLast())
            guard tcp else {
                let dir = (env["XDG_RUNTIME_DIR"] ?? nil) ?? runtimeDirectory
                let expected = socketPath(pid: child.pid, runtimeDirectory: dir)
                guard address == expected else {
                    throw Failure("the monitor listens on \(address.debugDescription), not \(expected.debugDescription)")
                }
                return (child, Endpoint(unixPath: address, host: "", port: 0, token: nil))
            }
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
                  port > 0 && port < 65536 else {
                throw Failure("cannot read the monitor's port from \(address.debugDescription)")
            }
            try child.expect("curio: monitor token ", on: .err)
            let token = String(try child.expect(" ", on: .err).dropLast())
            return (child, Endpoint(unixPath: nil, host: String(address[..<colon]), port: port, token: token))
        } catch {
            child.terminate()
            throw error
        }
    }

    /// Polls `ps` until `ready` holds for its rows (at most `seconds`).
    /// `value`, or a failure naming `what`.
    static func need<T>(_ value: T?, _ what: @autoclosure () -> String = "", sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        guard let value else { throw Failure("required value missing at \(sourceLocation.fileName):\(sourceLocation.line) \(what())") }
        return value
    }

    static func psUntil(_ client: MonitorClient, within seconds: Double = 15,
                        _ ready: ([PSRow]) -> Bool) throws -> [PSRow] {
        let deadline = now() + seconds
        while true {
            let rows = try parsePS(try client.command("ps")).rows
            if ready(rows) { return rows }
            if now() >= deadline { throw Failure("ps never showed the expected tasks; last: \(rows)") }
            usleep(20_000)
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct RemoteMonitorTests {
    typealias H = MonitorHarness

    /// The parent joining and the kid sleeping, as in the seed.
    static func seedState(_ rows: [H.PSRow]) -> Bool {
        rows.count == 2 && rows.contains { $0.name == "parent" && $0.state == "TASK_JOIN" }
            && rows.contains { $0.name == "kid" && $0.state == "TIME_SLEEP" }
    }

    @Test(.timeLimit(.minutes(1)))
    func psWhereCancelOverTheNetwork() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            f.expect(ep.unixPath == H.socketPath(pid: child.pid))
            try child.expect("We're leaving!\n", within: 20)

            let client = try ep.client()
            let greeting = try client.greeting()
            f.expect(greeting == "\nCurio Monitor:  2 tasks running\nType help for commands\ncurio > ", "\(greeting.debugDescription)")

            let rows = try H.psUntil(client, Self.seedState)
            let kid = try H.need(rows.first { $0.name == "kid" })
            let parent = try H.need(rows.first { $0.name == "parent" })
            // 1000 s scaled by 0.05.
            let t = try H.need(kid.timeout)
            f.expect(t > 0 && t < 50)

            let whereKid = try client.command("where \(kid.id)")
            f.expect(whereKid.hasPrefix(" Stack for Task(id=\(kid.id), name=kid, state='TIME_SLEEP') (most recent call last):\n"))
            f.expect(H.fileLines(whereKid).first?.function == "kid()")
            f.expect(H.sourceTextAfterFileLine(whereKid) == "try await Curio.sleep(1000)")
            let whereParent = try client.command("w \(parent.id)")
            f.expect(H.sourceTextAfterFileLine(whereParent) == "try await kidTask.join()", "\(whereParent.debugDescription)")

            // The program ends at once, and its monitor with it: the prompt
            // after the answer may or may not come.
            client.send("cancel \(kid.id)\n")
            f.expect(try client.expect("\n") == "Cancelling task \(kid.id)\n")
            try child.expect("Leaving!\n")
            f.expect(H.describe(child.waitForExit(within: 20)) == "exit 0")
            // The program is gone and so is the connection, and its socket file.
            f.expect(client.readToEOF(within: 10) != nil)
            f.expect(access(H.socketPath(pid: child.pid), F_OK) != 0, "the socket file outlived the program")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theCurioMonitorClient() async throws {
        try await H.offPool { f in
            // A directory of its own: `curio-monitor` without a pid picks the
            // most recent monitor there, which must be this program's.
            let dir = H.privateDirectory("client")
            let env: [String: String?] = ["CURIO_TIME_SCALE": "0.05", "XDG_RUNTIME_DIR": dir]
            let (program, _) = try H.startWithRemoteMonitor("hello-monitor", environment: env)
            defer { program.terminate() }
            try program.expect("We're leaving!\n", within: 20)

            let client = try H.Child(try H.executable("curio-monitor"), arguments: [String(program.pid)],
                                     environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { client.terminate() }
            try client.expect("Curio Monitor:  2 tasks running\nType help for commands\ncurio > ")
            try client.send("ps\n")
            let table = try client.expect("curio > ")
            let rows = try H.parsePS(table).rows
            f.expect(Self.seedState(rows), "rows: \(rows)")
            let kid = try H.need(rows.first { $0.name == "kid" })
            try client.send("where \(kid.id)\n")
            let whereKid = try client.expect("curio > ")
            f.expect(whereKid.contains("in kid()\n    try await Curio.sleep(1000)\n"), "\(whereKid.debugDescription)")
            try client.send("help\n")
            f.expect(try client.expect("curio > ").hasPrefix("Commands:\n"))
            // quit: the monitor closes the connection and the client ends (0).
            try client.send("quit\n")
            f.expect(H.describe(client.waitForExit(within: 10)) == "exit 0", "client stderr: \(client.text(.err))")
            f.expect(program.isRunning)

            // --list names it.
            let list = try H.Child(try H.executable("curio-monitor"), arguments: ["--list"],
                                   environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { list.terminate() }
            f.expect(H.describe(list.waitForExit(within: 10)) == "exit 0")
            f.expect(list.text() == "\(program.pid)\t\(H.socketPath(pid: program.pid, runtimeDirectory: dir))\n", "\(list.text())")

            // A second client session, found without a pid; ending its input
            // also ends it.
            let second = try H.Child(try H.executable("curio-monitor"), environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { second.terminate() }
            try second.expect("curio > ")
            try second.send("cancel \(kid.id)\n")
            try second.expect("Cancelling task \(kid.id)\n")
            try program.expect("Leaving!\n")
            f.expect(H.describe(program.waitForExit(within: 20)) == "exit 0")
            f.expect(H.describe(second.waitForExit(within: 10)) == "exit 0")

            // Nothing listens now and the socket is gone: the client says so and fails.
            let third = try H.Child(try H.executable("curio-monitor"), arguments: [String(program.pid)],
                                    environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { third.terminate() }
            f.expect(H.describe(third.waitForExit(within: 10)) == "exit 1")
            f.expect(third.text(.err).contains("curio-monitor: no monitor for pid \(program.pid)"), "\(third.text(.err))")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theCurioMonitorClientOverTCP() async throws {
        try await H.offPool { f in
            let dir = H.privateDirectory("client-tcp")
            let (program, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05", "XDG_RUNTIME_DIR": dir],
                                                             tcp: true)
            defer { program.terminate() }
            try program.expect("We're leaving!\n", within: 20)

            // The token comes from the program's token file.
            let client = try H.Child(try H.executable("curio-monitor"), arguments: ["-p", String(ep.port)],
                                     environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { client.terminate() }
            try client.expect("Curio Monitor:  2 tasks running\nType help for commands\ncurio > ")
            try client.send("ps\n")
            f.expect(Self.seedState(try H.parsePS(try client.expect("curio > ")).rows))
            client.closeInput()
            f.expect(H.describe(client.waitForExit(within: 10)) == "exit 0")

            // By pid, through the token file's address.
            let byPID = try H.Child(try H.executable("curio-monitor"), arguments: [String(program.pid)],
                                    environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { byPID.terminate() }
            try byPID.expect("curio > ")
            byPID.closeInput()
            f.expect(H.describe(byPID.waitForExit(within: 10)) == "exit 0")

            // A wrong token is refused: the line goes to stderr, status 1.
            let wrong = try H.Child(try H.executable("curio-monitor"), arguments: ["-p", String(ep.port), "--token", "0123"],
                                    environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { wrong.terminate() }
            f.expect(H.describe(wrong.waitForExit(within: 10)) == "exit 1")
            f.expect(wrong.text(.err) == "Refused: wrong token.\n", "\(wrong.text(.err).debugDescription)")
            f.expect(program.isRunning)

            program.terminate()
            let gone = try H.Child(try H.executable("curio-monitor"), arguments: ["-p", String(ep.port)],
                                   environment: ["XDG_RUNTIME_DIR": dir], layout: .pipes)
            defer { gone.terminate() }
            f.expect(H.describe(gone.waitForExit(within: 10)) == "exit 1")
            f.expect(gone.text(.err).contains("curio-monitor: cannot connect to 127.0.0.1:\(ep.port)"), "\(gone.text(.err))")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func badClientsNeverHarmTheProgram() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            try child.expect("We're leaving!\n", within: 20)

            /// A fresh client that still gets the seed's table: the program and
            /// its monitor are fine.
            func checkHealthy(_ what: String) throws {
                f.expect(child.isRunning, "the program died after \(what): \(H.describe(child.status))")
                let c = try ep.client()
                _ = try c.greeting()
                let rows = try H.parsePS(try c.command("ps")).rows
                f.expect(Self.seedState(rows), "after \(what): \(rows)")
                // quit: the monitor closes the connection without a prompt.
                c.send("quit\n")
                f.expect(c.readToEOF() == "")
            }

            // Binary garbage: an error line, and the session goes on.
            do {
                let c = try ep.client()
                _ = try c.greeting()
                f.expect(try c.command("\u{1}\u{2}garbage\u{7f}") == "Bad command: not printable text.\n")
                c.send([0x00, 0xff, 0xfe, 0x80, 0x1b, 0x5b, 0x41, 0x0a])
                f.expect(try c.expect("curio > ") == "Bad command: not printable text.\ncurio > ")
                var random = SystemRandomNumberGenerator()
                var noise = (0..<3000).map { _ in UInt8.random(in: 0...255, using: &random) }
                noise = noise.map { $0 == 10 ? 0 : $0 } + [10]
                c.send(noise)
                f.expect(try c.expect("curio > ") == "Bad command: not printable text.\ncurio > ")
                f.expect(try c.command("xyzzy plugh") == "Unknown command 'xyzzy'. Type help for commands.\n")
                let long = String(repeating: "z", count: 300)
                f.expect(try c.command(long) == "Unknown command '\(String(repeating: "z", count: 40))'. Type help for commands.\n")
                // Code is not run, whatever it looks like.
                f.expect(try c.command("import Glibc; exit(3)") == "Unknown command 'import'. Type help for commands.\n")
                f.expect(try c.command("signal NOPE") == "Usage: signal NAME (for example: signal SIGHUP)\n")
                f.expect(try c.command("where -1") == "No task -1.\n")
                f.expect(try c.command("where 99999999999999999999999") == "Usage: where ID\n")
                // Windows line ends and tabs are fine.
                let rows = try H.parsePS(try c.command("\tps\r")).rows
                f.expect(Self.seedState(rows))
            }
            try checkHealthy("binary garbage")

            // A line over 4096 bytes without a newline: dropped with a message.
            do {
                let c = try ep.client()
                _ = try c.greeting()
                c.send(Array(repeating: UInt8(ascii: "a"), count: 5000))
                let rest = c.readToEOF()
                f.expect(rest == "Line too long; closing.\n", "\(rest.debugDescription)")
            }
            try checkHealthy("a long line")

            // The same with a newline at its end, and with a command in front:
            // a line that long is never run.
            do {
                let c = try ep.client()
                _ = try c.greeting()
                c.send("cancel 2" + String(repeating: " ", count: 6000) + "\n")
                let rest = c.readToEOF()
                f.expect(rest == "Line too long; closing.\n", "\(rest.debugDescription)")
            }
            try checkHealthy("a long line ending in a newline")

            // Just under the limit is still a line.
            do {
                let c = try ep.client()
                _ = try c.greeting()
                let answer = try c.command(String(repeating: "q", count: 4000))
                f.expect(answer == "Unknown command '\(String(repeating: "q", count: 40))'. Type help for commands.\n")
            }
            try checkHealthy("a 4000-byte line")

            // Garbage without a newline, then gone.
            do {
                let c = try ep.client()
                c.send([0, 1, 2, 3, 255, 254])
                c.close()
            }
            try checkHealthy("garbage and a disconnect")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func clientsThatLeaveMidCommandOrMidAnswer() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            try child.expect("We're leaving!\n", within: 20)

            // Half a command, then gone.
            for partial in ["whe", "cancel", "ps"] {
                let c = try ep.client()
                _ = try c.greeting()
                c.send(partial)
                c.close()
            }
            // Gone before the greeting.
            for _ in 0..<3 {
                let c = try ep.client()
                c.close()
            }
            // Many commands, then gone while the monitor answers: its writes
            // fail (EPIPE) and must not kill the program with SIGPIPE.
            for round in 0..<5 {
                let c = try ep.client()
                c.send(String(repeating: "help\n", count: 50))
                c.close()
                // Ends its input half only: the monitor answers what came and
                // closes.
                let d = try ep.client()
                _ = try d.greeting()
                _ = shutdown(d.fd, Int32(SHUT_WR))
                f.expect(d.readToEOF() != nil, "round \(round): the monitor kept a half-closed client")
                f.expect(child.isRunning, "round \(round): the program died: \(H.describe(child.status))")
            }
            // A client that does not read a huge answer and then resets.
            do {
                let c = try ep.client()
                c.send(String(repeating: "help\n", count: 3000))
                try c.expect("Commands:")
                var lingerOff = linger(l_onoff: 1, l_linger: 0)
                setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lingerOff, socklen_t(MemoryLayout<linger>.size))
                c.close()
            }

            f.expect(child.isRunning, "the program died: \(H.describe(child.status)); stderr: \(child.text(.err))")
            let c = try ep.client()
            _ = try c.greeting()
            let rows = try H.parsePS(try c.command("ps")).rows
            f.expect(Self.seedState(rows), "\(rows)")
            let kid = try H.need(rows.first { $0.name == "kid" })
            c.send("cancel \(kid.id)\n")
            f.expect(try c.expect("\n") == "Cancelling task \(kid.id)\n")
            try child.expect("Leaving!\n")
            f.expect(H.describe(child.waitForExit(within: 20)) == "exit 0")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aClientThatStopsReadingIsDroppedAndTheNextIsServed() async throws {
        try await H.offPool { f in
            // A stalled client is dropped after the idle timeout (2 s here).
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05",
                                                                                         "CURIO_MONITOR_IDLE": "2"])
            defer { child.terminate() }
            try child.expect("We're leaving!\n", within: 20)

            // A tiny receive window and a flood of commands whose answers it
            // never reads (about 8 MB of help, more than any socket buffer
            // holds): the monitor's writes stall.
            let stuck = try ep.client(receiveBuffer: 4096)
            defer { stuck.close() }
            let flood = Array(String(repeating: "help\n", count: 20000).utf8)
            var sent = 0
            let until = H.now() + 10
            while sent < flood.count && H.now() < until {
                let n = flood.withUnsafeBytes { Glibc.send(stuck.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n > 0 { sent += n } else { usleep(1000) }
            }
            f.expect(sent == flood.count)
            // The next client is served at once, while the stuck one is still
            // connected.
            let waiting = try ep.client()
            _ = try waiting.expect("curio > ", within: 40)
            f.expect(Self.seedState(try H.parsePS(try waiting.command("ps")).rows))
            // The stuck one is dropped: reading now, it gets what was sent
            // before the drop and then the end of the connection.
            f.expect(stuck.readToEOF(within: 40) != nil, "the stalled client was never dropped")
            // (`waiting` has been idle as long: it may be gone too.)
            let after = try ep.client()
            _ = try after.greeting()
            f.expect(Self.seedState(try H.parsePS(try after.command("ps")).rows))
            f.expect(child.isRunning)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aFewClientsAreServedAtOnceAndOneMoreIsToldBusy() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            try child.expect("We're leaving!\n", within: 20)

            // The first stays connected and silent; the second is served meanwhile.
            let first = try ep.client()
            _ = try first.greeting()
            let second = try ep.client()
            _ = try second.greeting()
            f.expect(Self.seedState(try H.parsePS(try second.command("ps")).rows))
            f.expect(Self.seedState(try H.parsePS(try first.command("ps")).rows))

            // Up to the limit, all at once; one more is told and closed.
            var others: [H.MonitorClient] = []
            for _ in 2..<Monitor.maxClients {
                let c = try ep.client()
                _ = try c.greeting()
                others.append(c)
            }
            let extra = try ep.client()
            let busy = extra.readToEOF()
            f.expect(busy == "Busy: the monitor already serves \(Monitor.maxClients) clients; try again later.\n", "\(busy.debugDescription)")
            for c in others { f.expect(Self.seedState(try H.parsePS(try c.command("ps")).rows)) }

            // One leaves; the next is served.
            first.send("quit\n")
            f.expect(first.readToEOF() == "")
            let next = try ep.client()
            _ = try next.greeting()
            f.expect(Self.seedState(try H.parsePS(try next.command("ps")).rows))
            f.expect(child.isRunning)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theDefaultSocketIsPrivate() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            let path = try H.need(ep.unixPath)
            var st = stat()
            f.expect(lstat(path, &st) == 0)
            f.expect(st.st_mode & S_IFMT == S_IFSOCK)
            f.expect(st.st_mode & 0o777 == 0o600, "socket mode \(String(st.st_mode & 0o777, radix: 8))")
            f.expect(st.st_uid == geteuid())
            let dir = String(path[..<path.lastIndex(of: "/")!])
            f.expect(lstat(dir, &st) == 0)
            f.expect(st.st_mode & 0o777 == 0o700, "directory mode \(String(st.st_mode & 0o777, radix: 8))")
            // No TCP listener at all.
            let table = try Self.readFile("/proc/\(child.pid)/net/tcp") + ((try? Self.readFile("/proc/\(child.pid)/net/tcp6")) ?? "")
            let inode = Self.listeningInodes(table)
            let mine = Self.socketInodes(of: child.pid)
            f.expect(inode.isDisjoint(with: mine), "the program listens on TCP")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theTCPListenerIsOnLoopbackOnly() async throws {
        try await H.offPool { f in
            let (child, ep) = try H.startWithRemoteMonitor("hello-monitor", environment: ["CURIO_TIME_SCALE": "0.05"], tcp: true)
            defer { child.terminate() }
            f.expect(ep.host == "127.0.0.1")
            let port = ep.port

            // The kernel's own table of listening TCP sockets: bound to
            // 127.0.0.1 (0100007F), not to every address.
            let hexPort = String(port, radix: 16, uppercase: true)
            let padded = String(repeating: "0", count: 4 - hexPort.count) + hexPort
            let table = try Self.readFile("/proc/\(child.pid)/net/tcp")
            let listening = table.split(separator: "\n").dropFirst().compactMap { line -> String? in
                let f = line.split(separator: " ")
                guard f.count > 3, f[3] == "0A", f[1].hasSuffix(":" + padded) else { return nil }
                return String(f[1])
            }
            f.expect(listening == ["0100007F:" + padded], "listening sockets on port \(port): \(listening)")

            // Another address of this machine does not reach it.
            for address in Self.nonLoopbackIPv4Addresses() {
                f.expect((try? H.MonitorClient(port: port, host: address)) == nil, "the monitor answered on \(address)")
            }
            // Loopback does, with the token.
            let c = try ep.client()
            _ = try c.greeting()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func signalCommandWakesTheSeedsSignalProgram() async throws {
        try await H.offPool { f in
            // The seed's "Signals" program: the parent waits for SIGHUP; the
            // monitor's `signal SIGHUP` sends it.
            let (child, ep) = try H.startWithRemoteMonitor("hello-signal", environment: ["CURIO_TIME_SCALE": "0.05"])
            defer { child.terminate() }
            try child.expect("Building the Millenium Falcon in Minecraft\n", within: 20)
            let c = try ep.client()
            _ = try c.greeting()
            let rows = try H.psUntil(c) { rows in
                rows.contains { $0.name == "parent" && $0.state == "SIGNAL_WAIT" }
                    && rows.contains { $0.name == "kid" && $0.state == "TIME_SLEEP" }
            }
            let parent = try H.need(rows.first { $0.name == "parent" })
            let whereParent = try c.command("where \(parent.id)")
            f.expect(H.sourceTextAfterFileLine(whereParent) == "try await SignalSet(SIGHUP).wait()", "\(whereParent.debugDescription)")

            // Signals that are not requests are refused, by name or number.
            for sig in ["KILL", "SIGSTOP", "SEGV", "9", "ABRT", "QUIT"] {
                let answer = try c.command("signal \(sig)")
                f.expect(answer.hasPrefix("Refused: the monitor sends only signals a program handles as requests (SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2 or SIGWINCH); not SIG"),
                        "signal \(sig): \(answer.debugDescription)")
            }
            f.expect(child.isRunning)
            f.expect(try c.command("help").contains("SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2 or SIGWINCH"))

            f.expect(try c.command("signal HUP") == "Sending SIGHUP\n")
            for line in ["Let's go", "T-minus 10", "T-minus 1", "We're leaving!", "I warned you!", "Fine. Saving my work.", "Leaving!"] {
                try child.expect(line + "\n")
            }
            f.expect(H.describe(child.waitForExit(within: 20)) == "exit 0")
        }
    }

    /// Inodes of the listening sockets in a /proc/PID/net/tcp table.
    static func listeningInodes(_ table: String) -> Set<String> {
        Set(table.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard f.count > 9, f[3] == "0A" else { return nil }
            return String(f[9])
        })
    }

    /// Inodes of the sockets process `pid` holds.
    static func socketInodes(of pid: pid_t) -> Set<String> {
        guard let d = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(d) }
        var out = Set<String>()
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
            guard n > 0 else { continue }
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("socket:[") { out.insert(String(target.dropFirst(8).dropLast())) }
        }
        return out
    }

    static func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw H.Failure("cannot open \(path)") }
        defer { close(fd) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            data += buf[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// This machine's IPv4 addresses other than 127.x.
    static func nonLoopbackIPv4Addresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [String] = []
        var p = list
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var addr = sin.pointee.sin_addr
                _ = inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count))
            }
            let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !s.hasPrefix("127.") { out.append(s) }
        }
        return out
    }
}

import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The curio-service example end to end: started as a child process, it
/// serves a real TCP client, and SIGTERM makes it stop accepting, drain and
/// exit 0. Steps wait for the lines the child prints, never for time.
@Suite(.timeLimit(.minutes(2)))
struct ServiceExampleTests {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// The example running as a child, its stdout read line by line.
    final class Child: Sendable {
        let process: Process
        let lines: AsyncStream<String>

        init(arguments: [String]) throws {
            let process = Process()
            process.executableURL = try Child.productURL("curio-service")
            process.arguments = arguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.standardError
            try process.run()
            self.process = process
            let (lines, continuation) = AsyncStream.makeStream(of: String.self)
            self.lines = lines
            let handle = out.fileHandleForReading
            Thread.detachNewThread {
                var pending = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    pending.append(chunk)
                    while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        continuation.yield(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self))
                        pending.removeSubrange(pending.startIndex...nl)
                    }
                }
                continuation.finish()
            }
        }

        /// The next line the child prints (nil at its end).
        func nextLine() async -> String? {
            var it = lines.makeAsyncIterator()
            return await it.next()
        }

        func terminate() { kill(process.processIdentifier, SIGTERM) }

        /// Waits for the child's exit (its stdout has ended by then) → its status.
        func exitStatus() async -> Int32 {
            for await _ in lines {}
            let process = self.process
            return await ServiceExampleTests.blocking {
                process.waitUntilExit()
                return process.terminationStatus
            }
        }

        static func productURL(_ name: String) throws -> URL {
            var buf = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/exe", &buf, buf.count - 1)
            guard n > 0 else { throw Failure(description: "cannot read /proc/self/exe") }
            let exe = URL(fileURLWithPath: String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
            let url = exe.deletingLastPathComponent().appendingPathComponent(name)
            guard FileManager.default.isExecutableFile(atPath: url.path) else {
                throw Failure(description: "\(url.path) is missing: build it with swift build --build-tests")
            }
            return url
        }
    }

    /// Runs a blocking call on a thread of its own, so that waiting for the
    /// child never holds one of Swift's few cooperative threads.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in Thread.detachNewThread { c.resume(returning: body()) } }
    }

    /// A blocking TCP client with a generous receive timeout (the test's
    /// guard against a hang, not a step's timing). Its calls run through
    /// ``blocking(_:)``.
    final class Client: Sendable {
        let fd: Int32
        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var tv = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            guard Client.connect(fd, port: port) == 0 else {
                let e = errno
                Glibc.close(fd)
                throw Failure(description: "connect to \(port) failed: \(String(cString: strerror(e)))")
            }
        }
        deinit { Glibc.close(fd) }

        static func connect(_ fd: Int32, port: Int) -> Int32 {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }

        /// Whether a new connection to `port` is refused (the listener is closed).
        static func refused(port: Int) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { Glibc.close(fd) }
            return connect(fd, port: port) != 0 && errno == ECONNREFUSED
        }

        func send(_ text: String) {
            var bytes = Array(text.utf8)
            _ = write(fd, &bytes, bytes.count)
        }

        /// Reads until `count` bytes or the end; "" at the end.
        func receive(_ count: Int) -> String {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 256)
            while out.count < count {
                let n = read(fd, &buf, min(buf.count, count - out.count))
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }

        func closeWrite() { shutdown(fd, Int32(SHUT_WR)) }
    }

    static func listeningPort(_ line: String?) throws -> Int {
        let prefix = "curio-service: listening on 127.0.0.1:"
        guard let line, line.hasPrefix(prefix), let port = Int(line.dropFirst(prefix.count)) else {
            throw Failure(description: "expected '\(prefix)PORT', got \(line ?? "the end of the output")")
        }
        return port
    }

    @Test func sigtermStopsAcceptingLetsTheOpenConnectionFinishAndExitsZero() async throws {
        // A long grace: the client ends its connection itself, well within it.
        let child = try Child(arguments: ["0", "600"])
        let port = try Self.listeningPort(await child.nextLine())
        let client = try Client(port: port)
        client.send("hello\n")
        #expect(await Self.blocking { client.receive(6) } == "hello\n")

        child.terminate()
        #expect(await child.nextLine() == "curio-service: draining (1 open)")
        #expect(await Self.blocking { Client.refused(port: port) }, "the server still accepts after the drain began")
        // In-flight work goes on during the grace period.
        client.send("still here\n")
        #expect(await Self.blocking { client.receive(11) } == "still here\n")
        client.closeWrite()
        #expect(await Self.blocking { client.receive(1) } == "")
        #expect(await child.nextLine() == "curio-service: drained (0 cancelled)")
        #expect(await child.exitStatus() == 0)
    }

    @Test func anIdleConnectionIsClosedWhenTheGraceEnds() async throws {
        let child = try Child(arguments: ["0", "0.05"])
        let port = try Self.listeningPort(await child.nextLine())
        let client = try Client(port: port)
        client.send("ping\n")
        #expect(await Self.blocking { client.receive(5) } == "ping\n")

        child.terminate()
        #expect(await child.nextLine() == "curio-service: draining (1 open)")
        // The idle client does not hold the process up: its connection is closed.
        #expect(await Self.blocking { client.receive(1) } == "")
        #expect(await child.nextLine() == "curio-service: drained (1 cancelled)")
        #expect(await child.exitStatus() == 0)
    }

    @Test func sigtermWithNoConnectionsExitsZero() async throws {
        let child = try Child(arguments: ["0", "600"])
        _ = try Self.listeningPort(await child.nextLine())
        child.terminate()
        #expect(await child.nextLine() == "curio-service: draining (0 open)")
        #expect(await child.nextLine() == "curio-service: drained (0 cancelled)")
        #expect(await child.exitStatus() == 0)
    }

    @Test func aPortInUseEndsTheServiceWithAnErrorNotAHang() async throws {
        // Hold a port, then ask the example for it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let child = try Child(arguments: ["\(port)", "1"])
        #expect(await child.exitStatus() == 1)
    }
}

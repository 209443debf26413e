// Two kernels, each with its own HTTPServer, on one port with reusePort:
// new connections are spread among them and all are answered.
import Curio
import CurioHTTP
import CurioTestSupport
import Glibc
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)), .enabled(if: HTTPTest.available("curl")))
struct ReusePortTests {
    /// What the two kernels tell each other (plain memory, read by polling
    /// between yields to their kernels).
    final class Rendezvous: Sendable {
        let port = Mutex<Int?>(nil)
        let secondListening = Mutex(false)
        let done = Mutex(false)
    }

    static func poll(_ what: String, _ condition: () -> Bool) async throws {
        let end = Curio.clock() + 30
        while !condition() {
            if Curio.clock() > end { throw HTTPTest.Failure("timed out waiting until \(what)") }
            try await Curio.sleep(0.001)
        }
    }

    @Test func twoKernelsShareOnePort() async throws {
        let r = Rendezvous()
        let seen = Seen()
        @Sendable func handler(_ name: String) -> HTTPHandler {
            { _ in
                seen.add(name)
                return HTTPServerResponse(body: .string("\(name)\n"))
            }
        }
        // The second kernel's thread starts here and now, not from a child
        // task, which may wait for a thread of Swift's pool that other
        // suites keep busy (slowly so in the sanitizer builds).
        let secondResult = Mutex<Result<Void, any Error>?>(nil)
        TestThreads.start {
            let kernel = Kernel()
            let result = Result { try kernel.run { try await timeoutAfter(40) { try await secondServer() } } }
            try? kernel.shutdown()
            secondResult.withLock { $0 = result }
        }
        @Sendable func secondServer() async throws {
            try await Self.poll("the first server listens") { r.port.withLock { $0 != nil } }
            let port = r.port.withLock { $0! }
            let server = HTTPServer(host: "127.0.0.1", port: port, reusePort: true, handler: handler("B"))
            let serving = try await spawn { try await server.run() }
            _ = try await server.localAddress()
            r.secondListening.withLock { $0 = true }
            try await Self.poll("the client is done") { r.done.withLock { $0 } }
            try await server.drain(timeout: 5)
            _ = try await serving.join()
        }
        let out = try await HTTPTest.kernel {
            let server = HTTPServer(host: "127.0.0.1", port: 0, reusePort: true, handler: handler("A"))
            let serving = try await spawn { try await server.run() }
            let port = try await server.localAddress().port
            r.port.withLock { $0 = port }
            try await Self.poll("the second server listens") { r.secondListening.withLock { $0 } }
            // One connection per request: a new connection picks a listener.
            var args = ["curl", "-sS"]
            for i in 0..<40 {
                if i > 0 { args.append("--next") }
                args += ["-H", "Connection: close", "http://127.0.0.1:\(port)/\(i)"]
            }
            let out = try await HTTPTest.command(args)
            r.done.withLock { $0 = true }
            try await server.drain(timeout: 5)
            _ = try await serving.join()
            return out
        }
        try await TestThreads.onThread(limit: 50) {
            while secondResult.withLock({ $0 == nil }) { usleep(1000) }
            try secondResult.withLock { $0! }.get()
        }
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.split(separator: "\n").count == 40)
        #expect(seen.all.count == 40)
        // 40 connections hashed over two listeners all landing on one has
        // a probability of 2^-39.
        #expect(Set(seen.all) == ["A", "B"])
    }
}

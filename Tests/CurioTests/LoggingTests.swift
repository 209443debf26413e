// Curio's own diagnostics go to the kernel's swift-log Logger, with the
// task and the connection as metadata; a level the logger filters out is
// not even formatted. (The default logger's stderr lines are checked
// byte for byte by the tests of each diagnostic: TaskTests, KernelTests,
// HogAndDeadlockTests.)
import Glibc
import Logging
import Synchronization
import Testing

@testable import Curio

/// A log handler that keeps what it is given and announces each entry.
final class LogCapture: Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]
    }

    private let stored = Locked<[Entry]>([])
    let arrivals = UniversalQueue<Entry>()

    var entries: [Entry] { stored.withLock { $0 } }

    func logger(level: Logger.Level = .trace) -> Logger {
        var l = Logger(label: "test.curio") { _ in Handler(capture: self) }
        l.logLevel = level
        return l
    }

    /// The first entry whose message starts with `prefix`, waiting for it
    /// (on a plain thread) if it has not arrived.
    func first(startingWith prefix: String) throws -> Entry? {
        while true {
            if let e = entries.first(where: { $0.message.hasPrefix(prefix) }) { return e }
            guard try arrivals.blockingGet(timeout: 30) != nil else { return nil }
        }
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var md: [String: String] = [:]
            for (k, v) in event.metadata ?? [:] { md[k] = "\(v)" }
            let e = Entry(level: event.level, message: "\(event.message)", metadata: md)
            capture.stored.withLock { $0.append(e) }
            capture.arrivals.put(e)
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct LoggingTests {
    enum Boom: Error { case boom }

    static func kernel(_ capture: LogCapture, level: Logger.Level = .trace) -> Kernel {
        var c = Kernel.Configuration.builtIn
        c.logger = capture.logger(level: level)
        return Kernel(configuration: c)
    }

    @Test func aTaskFailureNobodyJoinedIsAnErrorWithTheTaskAsMetadata() async throws {
        let capture = LogCapture()
        let (serial, id) = try await KernelHarness.onThread { () throws -> (UInt64, Int) in
            let kernel = Self.kernel(capture)
            let id = try kernel.run { () async throws -> Int in
                let id: Int
                do {
                    let doomed = try await spawn(name: "doomed") { () async throws -> Void in throw Boom.boom }
                    id = doomed.id
                    try await doomed.wait()
                }
                try await Curio.sleep(0)
                return id
            }
            try kernel.shutdown()
            return (kernel.serial, id)
        }
        let found = try await KernelHarness.onThread { try capture.first(startingWith: "curio: task \(id) (doomed) crashed") }
        let e = try #require(found)
        #expect(e.message == "curio: task \(id) (doomed) crashed and nobody joined it: boom")
        #expect(e.level == .error)
        #expect(e.metadata[CurioLogMetadataKey.taskID] == "\(id)")
        #expect(e.metadata[CurioLogMetadataKey.taskName] == "doomed")
        #expect(e.metadata[CurioLogMetadataKey.kernel] == "\(serial)")
    }

    @Test func aFailingClientHandlerIsAnErrorWithThePeer() async throws {
        let capture = LogCapture()
        let peer = try await KernelHarness.onThread { () throws -> String in
            let kernel = Self.kernel(capture)
            let peer = try kernel.run { () async throws -> String in
                let listener = TCPListener()
                let server = try await spawn(daemon: true) {
                    try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                        _ = try await client.readLine()
                        throw Boom.boom
                    }
                }
                let port = try await listener.wait().port
                let stream = try await openConnection(host: "127.0.0.1", port: port)
                let local = try stream.socket!.localAddress
                try await stream.write("go\n")
                // The handler's failure is logged before its stream closes.
                #expect(try await stream.read(10).isEmpty)
                stream.close()
                try await server.cancel()
                return "\(local.host):\(local.port)"
            }
            try kernel.shutdown()
            return peer
        }
        let e = try #require(capture.entries.first { $0.message.hasPrefix("curio: client handler for") })
        #expect(e.level == .error)
        #expect(e.message.hasSuffix("failed: boom"))
        #expect(e.metadata[CurioLogMetadataKey.peer] == peer)
        #expect(e.metadata[CurioLogMetadataKey.taskName]?.hasPrefix("client ") == true)
    }

    @Test func aDeadlockIsAnErrorNamingTheTasks() async throws {
        let capture = LogCapture()
        let kernel = Self.kernel(capture)
        let event = Event()
        // The kernel's thread starts here and now, not from a child task
        // that may wait for a thread of Swift's busy pool.
        let ranResult = Locked<Result<Void, any Error>?>(nil)
        KernelHarness.startThread {
            let r = Result {
                try kernel.run { () async throws -> Void in
                    let waiter = try await spawn(name: "stuck") { try await event.wait() }
                    try await waiter.join()
                }
                try kernel.shutdown()
            }
            ranResult.withLock { $0 = r }
        }
        let e = try await KernelHarness.onThread { try capture.first(startingWith: "curio: deadlock:") }
        let entry = try #require(e)
        #expect(entry.level == .error)
        #expect(entry.message.contains("(stuck) EVENT_WAIT"))
        #expect(entry.metadata[CurioLogMetadataKey.kernel] == "\(kernel.serial)")
        // Break it from outside so the kernel can end.
        kernel.addTask { await event.set() }
        try await KernelHarness.onThread(limit: 30) {
            while ranResult.withLock({ $0 == nil }) { usleep(1000) }
            try ranResult.withLock { $0! }.get()
        }
    }

    @Test func aLongBlockIsAWarningWithTheTask() async throws {
        let capture = LogCapture()
        let id = try await KernelHarness.onThread { () throws -> Int in
            let kernel = Self.kernel(capture)
            kernel.addActivation(LongBlockWarning(threshold: 0.001))
            let id = try kernel.run { () async throws -> Int in
                let hog = try await spawn(name: "hog") { () async throws -> Int in
                    // Holds the kernel well past the threshold, then blocks.
                    KernelHarness.spin(0.02)
                    try await Curio.sleep(0)
                    return try await currentTask().id
                }
                return try await hog.join() ?? 0
            }
            try kernel.shutdown()
            return id
        }
        let e = try #require(capture.entries.first { $0.message.hasPrefix("curio: task \(id) (hog) ran") })
        #expect(e.level == .warning)
        #expect(e.message.contains("s without blocking"))
        #expect(e.metadata[CurioLogMetadataKey.taskID] == "\(id)")
        #expect(e.metadata[CurioLogMetadataKey.taskName] == "hog")
    }

    @Test func aLevelTheLoggerFiltersIsNotLogged() async throws {
        let capture = LogCapture()
        try await KernelHarness.onThread {
            let kernel = Self.kernel(capture, level: .critical)
            try kernel.run {
                let doomed = try await spawn(name: "doomed") { () async throws -> Void in throw Boom.boom }
                try await doomed.wait()
            }
            try kernel.shutdown()
        }
        #expect(capture.entries.isEmpty)
    }

    @Test func diagnoseKeepsTheTextAndDropsOnlyTheLastNewline() throws {
        let capture = LogCapture()
        let kernel = Self.kernel(capture)
        diagnose(.warning, kernel: kernel, "line one\nline two\n")
        diagnose(.notice, kernel: kernel, "no newline")
        #expect(capture.entries.map(\.message) == ["line one\nline two", "no newline"])
        #expect(capture.entries.map(\.level) == [.warning, .notice])
    }
}

// swift-log and swift-metrics as a service wires them: a user Logger whose
// handler keeps what Curio logs (a failing connection handler, with the
// peer as metadata), and a MetricsFactory of the consumer's own that
// observes the kernel's counters and gauges.
import Curio
import Logging
import Metrics
import Synchronization

/// One log record Curio sent to the user's handler.
struct LoggedRecord: Sendable {
    let level: Logger.Level
    let message: String
    let metadata: [String: String]
}

/// A LogHandler that keeps every record in `records`.
struct KeepingLogHandler: LogHandler {
    let records: Records
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        var flat: [String: String] = [:]
        for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { flat[k] = "\(v)" }
        records.append(LoggedRecord(level: event.level, message: "\(event.message)", metadata: flat))
    }

    final class Records: Sendable {
        private let list = Mutex<[LoggedRecord]>([])
        func append(_ r: LoggedRecord) { list.withLock { $0.append(r) } }
        var all: [LoggedRecord] { list.withLock { $0 } }
    }
}

/// A MetricsFactory keeping each metric's last value (counters: their total).
final class KeepingMetrics: MetricsFactory {
    final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        private let value = Mutex<Double>(0)
        private let counts = Mutex<Int>(0)
        func increment(by amount: Int64) { value.withLock { $0 += Double(amount) } }
        func reset() { value.withLock { $0 = 0 } }
        func record(_ v: Int64) { record(Double(v)) }
        func record(_ v: Double) {
            value.withLock { $0 = v }
            counts.withLock { $0 += 1 }
        }
        func recordNanoseconds(_ duration: Int64) { record(duration) }
        var current: Double { value.withLock { $0 } }
        var recordings: Int { counts.withLock { $0 } }
    }
    private let handlers = Mutex<[String: Handler]>([:])

    private func handler(_ label: String) -> Handler {
        handlers.withLock { h in
            if let existing = h[label] { return existing }
            let made = Handler()
            h[label] = made
            return made
        }
    }
    func metric(_ label: String) -> Handler? { handlers.withLock { $0[label] } }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { handler(label) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { handler(label) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { handler(label) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

/// A kernel with the user's logger and metrics serves one connection whose
/// handler fails; the log record and the metrics are checked.
func observabilityChecks() throws {
    let records = KeepingLogHandler.Records()
    let metrics = KeepingMetrics()
    var configuration = Kernel.Configuration.default
    configuration.logger = Logger(label: "consumer.curio") { _ in KeepingLogHandler(records: records) }
    configuration.metricsFactory = metrics
    let kernel = Kernel(configuration: configuration)
    struct HandlerFailed: Error {}
    let clientPort = try kernel.run { () async throws -> Int in
        let listener = TCPListener()
        let server = try await spawn(name: "failing server") {
            try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                _ = try await client.readLine()
                throw HandlerFailed()
            }
        }
        let address = try await listener.wait()
        let stream = try await openConnection(host: "127.0.0.1", port: address.port)
        let port = try stream.socket!.localAddress.port
        try await stream.write("boom\n")
        // The server logs the failure before it closes the connection.
        let end = try await stream.read(10)
        precondition(end.isEmpty, "the failing handler's connection sent \(end)")
        stream.close()
        try await server.cancel()
        return port
    }
    try kernel.shutdown()

    let failure = records.all.first { $0.message.contains("client handler for") }
    precondition(failure != nil, "the handler failure was not logged; got \(records.all.map(\.message))")
    precondition(failure!.level == .error, "the handler failure was logged at \(failure!.level)")
    precondition(failure!.metadata["curio.peer"] == "127.0.0.1:\(clientPort)",
                 "the log record's peer is \(failure!.metadata["curio.peer"] ?? "missing")")

    func value(_ label: String) -> Double { metrics.metric(label)?.current ?? -1 }
    precondition(value(CurioMetricLabel.tasksCreated) >= 3, "tasks created: \(value(CurioMetricLabel.tasksCreated))")
    precondition(value(CurioMetricLabel.connectionsAccepted) == 1,
                 "connections accepted: \(value(CurioMetricLabel.connectionsAccepted))")
    precondition(value(CurioMetricLabel.connectionsOpen) == 0,
                 "connections open at the end: \(value(CurioMetricLabel.connectionsOpen))")
    precondition((metrics.metric(CurioMetricLabel.tasksAlive)?.recordings ?? 0) > 0, "the tasks-alive gauge never moved")
    precondition(value(CurioMetricLabel.backendEnters) > 0, "no backend enters counted")
    print("observability: logged '\(failure!.message.prefix(40))...' with its peer; "
          + "\(Int(value(CurioMetricLabel.tasksCreated))) tasks, 1 connection counted")
}

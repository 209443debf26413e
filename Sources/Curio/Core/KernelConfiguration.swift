#if canImport(Glibc)
import Glibc
#endif
import Logging
import Metrics

extension Kernel {
    /// Everything a kernel is told at creation. Pass one to
    /// ``Kernel/init(configuration:)``; ``Kernel/init(withMonitor:)`` is the
    /// seed's shorthand for `.default` with the monitor on or off.
    ///
    /// ```swift
    /// var config = Kernel.Configuration.default
    /// config.backend = .epoll
    /// config.logger = Logger(label: "my-service.curio")
    /// let kernel = Kernel(configuration: config)
    /// ```
    ///
    /// The library reads no environment variable anywhere else:
    /// ``Kernel/Configuration/default`` starts from the built-in values and
    /// applies the documented overrides of
    /// ``Kernel/Configuration/applyingEnvironment(_:)`` once.
    public struct Configuration: Sendable {
        /// Which I/O backend to ask for.
        public enum BackendPreference: Sendable, Equatable, CustomStringConvertible {
            /// io_uring where it is compiled in and can be set up; epoll otherwise.
            case automatic
            /// io_uring, falling back to epoll (with one log line) when it cannot be set up.
            case ioUring
            /// epoll, even where io_uring is available.
            case epoll

            public var description: String {
                switch self {
                case .automatic: "automatic"
                case .ioUring: "io_uring"
                case .epoll: "epoll"
                }
            }
        }

        /// Where the remote monitor listens, when it is on.
        public enum MonitorEndpoint: Sendable, Equatable {
            /// A Unix socket `<pid>.sock` in `$XDG_RUNTIME_DIR/curio/`, or else in
            /// `/tmp/curio-<uid>/` (a 0700 directory; the socket 0600); only the
            /// program's own user is served (peer uid checked). `curio-monitor <pid>`
            /// finds it.
            case standard
            /// A Unix socket at `path` (0600; peers checked by uid as for `.standard`).
            case unix(path: String)
            /// TCP on a loopback address; port 0 picks a free port. Opt-in: a client
            /// must first send the run's random token (``Kernel/monitorToken``,
            /// printed on stderr and written to a 0600 file beside the Unix socket).
            case tcp(host: String, port: Int)
        }

        /// The clock a kernel's timers run on.
        public enum ClockSource: Sendable, Equatable {
            /// CLOCK_MONOTONIC: real time.
            case monotonic
            /// A virtual clock for tests (trio's `MockClock`, tokio's
            /// `time::pause()`): it starts at the real clock's reading and
            /// stands still while tasks run. With `autojump`, a loop that has
            /// no task to run and sees no event within that much real time
            /// jumps it to the next deadline, so sleeps and timeouts end at
            /// once and in deadline order; `.zero` jumps as soon as one
            /// non-blocking look at the backend finds nothing. `nil` never
            /// jumps: only ``Kernel/advanceClock(by:)`` moves it.
            ///
            /// While a task waits for a worker thread (`runInThread`,
            /// `runCPUBound`, `runInProcess`), the clock runs no faster than
            /// real time: the loop waits as long for the answer as the next
            /// deadline is away before it jumps, so a quick answer is not
            /// overtaken and one that never comes cannot hang the loop.
            /// I/O does not: with `.zero`, a wait on a peer outside the
            /// kernel (another process, a remote host) can lose to a jump;
            /// give such tests a real `autojump` margin, or order them with
            /// events.
            case virtual(autojump: Duration? = .zero)
        }

        /// The backend to ask for. Environment override: `CURIO_DISABLE_IO_URING=1` → `.epoll`.
        public var backend: BackendPreference = .automatic
        /// The clock of the kernel's timers. `.monotonic` by default.
        public var clock: ClockSource = .monotonic
        /// Every relative time the kernel's tasks give Curio (sleeps,
        /// timeouts, `join(timeout:)`) is multiplied by this (> 0, finite);
        /// absolute deadlines and ``clock()`` are not. A knob for running
        /// second-long programs quickly and unchanged. Environment override:
        /// `CURIO_TIME_SCALE`.
        public var timeScale: Double = 1
        /// The monitor: Ctrl-C console on a terminal plus the remote endpoint. `nil`: off.
        /// Environment override: `CURIOMONITOR` (`host:port` or `port` for TCP, a path or
        /// `unix:path`, or empty for `.standard`) turns it on.
        public var monitor: MonitorEndpoint? = nil
        /// A remote monitor client that sends no complete line for this long is
        /// dropped (one that does not read its answers, or a TCP client that has not
        /// sent its token, after at most 10 s). Environment override:
        /// `CURIO_MONITOR_IDLE` (seconds).
        public var monitorIdleTimeout: Duration = .seconds(300)
        /// Whether the Ctrl-C console may take over the terminal when the monitor is on.
        public var monitorConsole = true
        /// Signals that dump the task tree on stderr. Environment override:
        /// `CURIO_TASK_DUMP` set → `[SIGUSR1]`.
        public var taskDumpSignals: [Int32] = []
        /// With the monitor on, a task that holds the kernel this many seconds
        /// without blocking is reported once. 0 turns the watchdog off.
        /// Environment override: `CURIO_LONG_BLOCK` (seconds).
        public var longBlockThreshold: Double = 1
        /// How long the loop watches for a worker thread's answer before it
        /// sleeps, when a task waits for one: a sleeping thread takes tens of
        /// microseconds to wake on a VM. `.zero` never spins.
        public var workerAnswerSpin: Duration = .microseconds(50)
        /// Where Curio's own diagnostics go (unjoined task errors, handler
        /// failures, backend fallback, accept back-off, long blocks,
        /// deadlocks). The default writes them to stderr as plain lines.
        public var logger: Logger = Kernel.Configuration.defaultLogger
        /// How long a dropped kernel runs its cancelled tasks before it
        /// gives up on the ones that ignore the cancellation (it then keeps
        /// its ring and memory for them and says so on stderr).
        public var dropGracePeriod: Duration = .seconds(5)
        /// Where the kernel records its metrics (``CurioMetricLabel``): tasks
        /// created and alive, ready-queue depth, connections accepted and
        /// open, backend enters and io_uring submissions. `nil` (the
        /// default) records nothing and costs nothing; `MetricsSystem.factory`
        /// uses the process's bootstrapped backend.
        public var metricsFactory: (any MetricsFactory)? = nil
        /// The receive pool of ``Socket/receiveChunks(maxHeld:)``: how many
        /// buffers (rounded up to a power of two, 1...32768) and of how many
        /// bytes each (64...1 MiB). Allocated with the kernel's first
        /// streaming receive; on io_uring it is the provided-buffer ring.
        public var receiveBufferCount = 256
        /// The size of each receive-pool buffer: the largest chunk (see
        /// ``receiveBufferCount``).
        public var receiveBufferSize = 8192

        /// The built-in values with no environment applied.
        public static var builtIn: Configuration { Configuration() }

        /// The built-in values with the environment's documented overrides.
        public static var `default`: Configuration { Configuration().applyingEnvironment() }

        /// Creates the built-in configuration (see ``builtIn``).
        public init() {}

        /// This configuration with the documented environment variables of
        /// `environment` (the process's own by default) applied over it.
        public func applyingEnvironment(_ environment: [String: String]? = nil) -> Configuration {
            let env = environment ?? processEnvironment()
            var c = self
            if let off = env["CURIO_DISABLE_IO_URING"], !off.isEmpty, off != "0" {
                c.backend = .epoll
                c.backendForcedByEnvironment = true
            }
            if let m = env["CURIOMONITOR"] {
                c.monitor = Configuration.parseMonitorEndpoint(m)
                c.monitorAnnounced = true
            }
            if let s = env["CURIO_MONITOR_IDLE"], let v = Double(s), v.isFinite, v > 0 {
                c.monitorIdleTimeout = .milliseconds(Int64(v * 1000))
            }
            if let d = env["XDG_RUNTIME_DIR"], !d.isEmpty { c.monitorRuntimeDirectory = d }
            if env["CURIO_TASK_DUMP"] != nil, !c.taskDumpSignals.contains(SIGUSR1) {
                c.taskDumpSignals.append(SIGUSR1)
            }
            if let s = env["CURIO_TIME_SCALE"], let v = Double(s), v.isFinite, v > 0 {
                c.timeScale = v
            }
            if let s = env["CURIO_LONG_BLOCK"], let v = Double(s), v.isFinite, v >= 0 {
                c.longBlockThreshold = v
            }
            return c
        }

        /// Throws ``CurioUsageError`` naming the first value a kernel cannot
        /// be created with.
        func validate() throws {
            guard timeScale.isFinite, timeScale > 0 else {
                throw CurioUsageError(.invalidArgument, "Kernel.Configuration.timeScale must be a finite number > 0, got \(timeScale)")
            }
            if case .virtual(let autojump?) = clock, autojump < .zero {
                throw CurioUsageError(.invalidArgument, "Kernel.Configuration.clock: .virtual(autojump:) must be >= 0 or nil, got \(autojump)")
            }
        }

        // Set by applyingEnvironment: how the overrides are reported.
        var backendForcedByEnvironment = false
        /// True when CURIOMONITOR asked for the monitor: it then says on stderr where it listens.
        var monitorAnnounced = false
        /// `$XDG_RUNTIME_DIR`, where `.standard` puts the monitor's socket.
        var monitorRuntimeDirectory: String?

        /// `host:port`, `port`, a path / `unix:path`, or empty / "1" for the standard endpoint.
        static func parseMonitorEndpoint(_ text: String) -> MonitorEndpoint {
            if text.isEmpty || text == "1" { return .standard }
            if text.hasPrefix("unix:") { return .unix(path: String(text.dropFirst(5))) }
            if text.hasPrefix("/") { return .unix(path: text) }
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count >= 2, let port = Int(parts.last!) {
                return .tcp(host: parts.dropLast().joined(separator: ":"), port: port)
            }
            if let port = Int(text) { return .tcp(host: "127.0.0.1", port: port) }
            return .standard
        }

        /// A logger that prints each message as one plain line on stderr,
        /// as Curio always has.
        static let defaultLogger = Logger(label: "curio") { _ in PlainStderrLogHandler() }
    }
}

/// Writes each message as one line on stderr, with no decoration: what
/// Curio printed before it used swift-log.
struct PlainStderrLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        writeStderr("\(event.message)\n")
    }
}

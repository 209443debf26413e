import CCurioKernel
import Metrics

/// The names of the metrics a kernel records when
/// ``Kernel/Configuration/metricsFactory`` is set. Every metric carries the
/// dimension `("kernel", "<serial>")` (``Kernel/serial``), so several kernels
/// of one process (one per core) stay apart.
public enum CurioMetricLabel {
    /// Counter: tasks spawned.
    public static let tasksCreated = "curio_tasks_created"
    /// Gauge: tasks spawned and not yet ended (running, ready or blocked).
    public static let tasksAlive = "curio_tasks_alive"
    /// Gauge: jobs waiting in the ready queue, sampled as tasks suspend.
    public static let readyQueueDepth = "curio_ready_queue_depth"
    /// Counter: connections accepted by the servers (``tcpServer(host:port:reusePort:backlog:ready:handler:)``,
    /// ``unixServer(path:backlog:ready:handler:)``, ``SocketServer``).
    public static let connectionsAccepted = "curio_connections_accepted"
    /// Gauge: accepted connections whose handler has not yet ended.
    public static let connectionsOpen = "curio_connections_open"
    /// Counter: system calls that entered the backend (`io_uring_enter` or `epoll_wait`).
    public static let backendEnters = "curio_backend_enters"
    /// Counter: io_uring submission entries handed to the kernel (0 on epoll).
    public static let ioUringSubmissions = "curio_io_uring_submissions"
    /// Recorder: io_uring submissions per `io_uring_enter`, one value per sample.
    public static let ioUringSubmissionsPerEnter = "curio_io_uring_submissions_per_enter"
}

/// A kernel's metrics: an ``Activation`` the kernel installs when its
/// configuration has a ``Kernel/Configuration/metricsFactory``. With none,
/// nothing here exists and the kernel's only cost is its (empty)
/// activation list check, which it makes anyway.
///
/// Counters move as events happen; the ready-queue depth and the backend's
/// counters are sampled at most every millisecond, as tasks suspend, so a
/// busy kernel pays one clock read per slice, not one metric call.
final class KernelMetrics: Activation {
    private unowned let kernel: Kernel
    private let tasksCreated: Counter
    private let tasksAlive: Gauge
    private let readyDepth: Gauge
    private let accepted: Counter
    private let open: Gauge
    private let enters: Counter
    private let submissions: Counter
    private let submissionsPerEnter: Recorder
    private var alive = 0
    private var openCount = 0
    private var lastSample: Int64 = 0
    private var seen = ck_stats()

    init(kernel: Kernel, factory: any MetricsFactory) {
        self.kernel = kernel
        let dims = [("kernel", "\(kernel.serial)")]
        tasksCreated = Counter(label: CurioMetricLabel.tasksCreated, dimensions: dims, factory: factory)
        tasksAlive = Gauge(label: CurioMetricLabel.tasksAlive, dimensions: dims, factory: factory)
        readyDepth = Gauge(label: CurioMetricLabel.readyQueueDepth, dimensions: dims, factory: factory)
        accepted = Counter(label: CurioMetricLabel.connectionsAccepted, dimensions: dims, factory: factory)
        open = Gauge(label: CurioMetricLabel.connectionsOpen, dimensions: dims, factory: factory)
        enters = Counter(label: CurioMetricLabel.backendEnters, dimensions: dims, factory: factory)
        submissions = Counter(label: CurioMetricLabel.ioUringSubmissions, dimensions: dims, factory: factory)
        submissionsPerEnter = Recorder(label: CurioMetricLabel.ioUringSubmissionsPerEnter, dimensions: dims,
                                       aggregate: true, factory: factory)
        ck_get_stats(kernel.ck, &seen)
    }

    func created(_ task: AnyCurioTask) {
        tasksCreated.increment()
        alive += 1
        tasksAlive.record(alive)
    }

    func suspended(_ task: AnyCurioTask) {
        let now = ck_now_ns()
        if now - lastSample >= 1_000_000 {
            lastSample = now
            sample()
        }
    }

    func terminated(_ task: AnyCurioTask) {
        alive -= 1
        tasksAlive.record(alive)
    }

    /// Records the ready-queue depth and what the backend did since the last sample.
    func sample() {
        readyDepth.record(Int(ck_ready_count(kernel.readyQueue)))
        var s = ck_stats()
        ck_get_stats(kernel.ck, &s)
        let dEnters = s.enters &- seen.enters, dSubmitted = s.submitted &- seen.submitted
        seen = s
        if dEnters > 0 { enters.increment(by: Int64(dEnters)) }
        if dSubmitted > 0 { submissions.increment(by: Int64(dSubmitted)) }
        if dEnters > 0 && kernel.backend == .ioUring {
            submissionsPerEnter.record(Double(dSubmitted) / Double(dEnters))
        }
    }

    func connectionAccepted() {
        accepted.increment()
        openCount += 1
        open.record(openCount)
    }

    func connectionClosed() {
        openCount -= 1
        open.record(openCount)
    }
}

extension Kernel {
    /// Installs the metrics activation when the configuration asks for it.
    func installMetrics() {
        guard let factory = configuration.metricsFactory else { return }
        addActivation(KernelMetrics(kernel: self, factory: factory))
    }

    /// This kernel's metrics, when they are on. Off, this is the check of
    /// an empty array (the activation list).
    var metrics: KernelMetrics? {
        if activations.isEmpty { return nil }
        for a in activations { if let m = a as? KernelMetrics { return m } }
        return nil
    }

    /// Records the backend's counters now (tests; a dashboard's scrape).
    public func sampleMetrics() {
        metrics?.sample()
    }
}

/// Servers call these on the kernel thread around each accepted connection
/// (package-wide: CurioHTTP's connections are counted the same way).
package func noteConnectionAccepted() {
    Kernel.current?.metrics?.connectionAccepted()
}

package func noteConnectionClosed() {
    Kernel.current?.metrics?.connectionClosed()
}

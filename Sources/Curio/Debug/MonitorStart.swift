#if canImport(Glibc)
import Glibc
#endif

extension Kernel {
    /// The remote monitor listens on `endpoint` and, on a terminal and when
    /// `console` allows, takes over Ctrl-C. With `announce` it says on
    /// stderr where it listens (TCP always does, with its token).
    func startMonitor(_ endpoint: Configuration.MonitorEndpoint, announce: Bool, console: Bool) {
        let link = attachMonitorLink()
        monitor = Monitor(targets: [MonitorTarget(kernel: self, link: link, index: nil)], endpoint: endpoint,
                          runtimeDirectory: configuration.monitorRuntimeDirectory,
                          idleTimeout: configuration.monitorIdleTimeoutSeconds,
                          console: console && isatty(0) == 1, announce: announce)
    }

    /// Makes the kernel publish what a monitor reads (its task table and the
    /// running task). Before the kernel runs, on the thread that owns it.
    func attachMonitorLink() -> MonitorLink {
        let link = MonitorLink(longBlockThreshold: longBlockThreshold)
        monitorLink = link
        // First, so that a task that hogs the kernel from its first slice
        // is known to the monitor before any other hook runs.
        activations.insert(MonitorRunningNote(link: link), at: 0)
        return link
    }

    /// The token a client of the remote monitor must send first (a line
    /// `token <hex>`) when the monitor listens on TCP; nil for the Unix
    /// socket (whose peers are checked by uid) or with the monitor off.
    /// Random for each run; also printed on stderr and written to a file
    /// only this user can read (see docs/DEBUGGING.md).
    public var monitorToken: String? { monitor?.token }
}

extension Kernel.Configuration {
    /// ``monitorIdleTimeout`` in seconds.
    var monitorIdleTimeoutSeconds: Double {
        Double(monitorIdleTimeout.components.seconds) + Double(monitorIdleTimeout.components.attoseconds) / 1e18
    }
}

extension Monitor {
    /// One monitor for every kernel of a group, on the group's endpoint.
    /// Before the kernels run (their links are attached here).
    static func forGroup(_ kernels: [Kernel], endpoint: Kernel.Configuration.MonitorEndpoint,
                         configuration: Kernel.Configuration) -> Monitor {
        let targets = kernels.enumerated().map { i, k in
            MonitorTarget(kernel: k, link: k.attachMonitorLink(), index: i)
        }
        return Monitor(targets: targets, endpoint: endpoint, runtimeDirectory: configuration.monitorRuntimeDirectory,
                       idleTimeout: configuration.monitorIdleTimeoutSeconds,
                       console: configuration.monitorConsole && isatty(0) == 1,
                       announce: configuration.monitorAnnounced)
    }
}

extension KernelGroup {
    /// Where the group's monitor listens, if it does (its Unix socket by
    /// default): one endpoint for every kernel.
    public var monitorAddress: SocketAddress? { monitor?.address }

    /// The token a TCP client of the group's monitor sends first (see
    /// ``Kernel/monitorToken``); nil for the Unix socket or no monitor.
    public var monitorToken: String? { monitor?.token }
}

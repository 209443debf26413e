#if canImport(Glibc)
import Glibc
#endif

extension Kernel {
    /// The remote monitor listens on `endpoint` and, on a terminal and when
    /// `console` allows, takes over Ctrl-C. With `announce` it says on
    /// stderr where it listens (TCP always does, with its token).
    func startMonitor(_ endpoint: Configuration.MonitorEndpoint, announce: Bool, console: Bool) {
        let link = MonitorLink(longBlockThreshold: longBlockThreshold)
        monitorLink = link
        // First, so that a task that hogs the kernel from its first slice
        // is known to the monitor before any other hook runs.
        activations.insert(MonitorRunningNote(link: link), at: 0)
        let idle = Double(configuration.monitorIdleTimeout.components.seconds)
            + Double(configuration.monitorIdleTimeout.components.attoseconds) / 1e18
        monitor = Monitor(kernel: self, link: link, endpoint: endpoint,
                          runtimeDirectory: configuration.monitorRuntimeDirectory, idleTimeout: idle,
                          console: console && isatty(0) == 1, announce: announce)
    }

    /// The token a client of the remote monitor must send first (a line
    /// `token <hex>`) when the monitor listens on TCP; nil for the Unix
    /// socket (whose peers are checked by uid) or with the monitor off.
    /// Random for each run; also printed on stderr and written to a file
    /// only this user can read (see docs/DEBUGGING.md).
    public var monitorToken: String? { monitor?.token }
}

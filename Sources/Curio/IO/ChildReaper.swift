import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reaps children that were dropped without being waited for, on one
/// thread of its own: it polls their pidfds (and, for a child without one,
/// looks again every 50 ms), so no long-running dropped child ever holds a
/// thread of the shared blocking pool — `runInThread` and name resolution
/// never wait behind it. The thread starts with the first dropped child
/// and lives as long as the process.
final class ChildReaper: Sendable {
    static let shared = ChildReaper()

    private struct Child {
        let pid: pid_t
        let pidfd: Int32
    }
    private struct State {
        var incoming: [Child] = []
        var started = false
    }
    private let state = Locked(State())
    /// A pipe that wakes the reaper thread when a child is handed over.
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private init() {
        var fds: [Int32] = [-1, -1]
        _ = systemPipe(&fds, O_CLOEXEC)
        for fd in fds where fd >= 0 { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    /// Number of children handed over and not reaped yet (for tests).
    let pendingCount = Atomic<Int>(0)

    /// Takes over reaping `pid`.
    func adopt(_ pid: pid_t) {
        let fd = openProcessDescriptor(pid)
        let pidfd: Int32 = fd >= 0 ? fd : -1
        if pidfd >= 0 { _ = fcntl(pidfd, F_SETFD, FD_CLOEXEC) }
        pendingCount.add(1, ordering: .relaxed)
        let start = state.withLock { s -> Bool in
            s.incoming.append(Child(pid: pid, pidfd: pidfd))
            defer { s.started = true }
            return !s.started
        }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        if start { startThread() }
    }

    private func startThread() {
        var tid = pthread_t()
        let me = Unmanaged.passUnretained(self).toOpaque()
        let r = pthread_create(&tid, nil, { arg in
            Unmanaged<ChildReaper>.fromOpaque(arg!).takeUnretainedValue().loop()
            return nil
        }, me)
        if r == 0 {
            pthread_detach(tid)
        } else {
            // No thread: reap what ends now and leave the rest to the
            // next adopt (better a zombie than a stalled pool).
            state.withLock { $0.started = false }
        }
    }

    private func loop() {
        var children: [Child] = []
        while true {
            children += state.withLock { s -> [Child] in
                defer { s.incoming.removeAll() }
                return s.incoming
            }
            children.removeAll { c in
                var st: Int32 = 0
                var r: pid_t
                repeat { r = waitpid(c.pid, &st, WNOHANG) } while r < 0 && errno == EINTR
                guard r == c.pid || (r < 0 && errno == ECHILD) else { return false }
                if c.pidfd >= 0 { Glibc.close(c.pidfd) }
                pendingCount.subtract(1, ordering: .relaxed)
                return true
            }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for c in children where c.pidfd >= 0 {
                fds.append(pollfd(fd: c.pidfd, events: Int16(POLLIN), revents: 0))
            }
            let noPidfd = children.contains { $0.pidfd < 0 }
            _ = poll(&fds, nfds_t(fds.count), noPidfd ? 50 : -1)
            var drained = [UInt8](repeating: 0, count: 64)
            _ = read(wakeRead, &drained, 64)
        }
    }
}

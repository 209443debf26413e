import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One task as the monitor sees it.
struct TaskRow: Sendable {
    let id: Int
    let parentID: Int?
    let name: String
    let state: TaskState
    let cycles: Int
    let daemon: Bool
    /// When its pending timer fires (CLOCK_MONOTONIC ns), or Int64.max.
    let wakeDeadline: Int64
    let site: CallSite?
}

/// What the kernel thread notes, as a slice starts, about a task that no
/// snapshot has shown yet: a task spawned and run at once can hog the
/// kernel before any copy of the table exists, and the monitor must still
/// list it (issue 13, rule 14). Plain values only; the name is worked out
/// on the monitor thread.
struct UnseenRunningTask: Sendable {
    let id: Int
    let parentID: Int?
    let explicitName: String?
    let firstFunction: StaticString?
    let cycles: Int
    let daemon: Bool
    let site: CallSite?

    /// The task's display name, as ``AnyCurioTask/name`` would give it.
    var name: String {
        if let explicitName { return explicitName }
        if let firstFunction { return CallSite(file: "", line: 0, function: firstFunction).functionName }
        return "task-\(id)"
    }

    var row: TaskRow {
        TaskRow(id: id, parentID: parentID, name: name, state: .running, cycles: cycles, daemon: daemon,
                wakeDeadline: .max, site: site)
    }
}

/// Where the kernel publishes what the monitor reads. The kernel thread
/// writes a fresh copy of its task table on request (or when it goes idle
/// after a while); other threads read the last copy. A kernel that is stuck
/// in a task cannot answer, so readers fall back to the last copy plus the
/// running mark (`Kernel.runningMark()`) and the note about a running task no
/// copy has shown (``UnseenRunningTask``).
///
/// A reader waiting for a fresh copy parks on a pipe of its own, which
/// ``publish(_:threshold:)`` writes to: `Synchronization.Mutex` has no
/// condition variable, and a stored `pthread_cond_t` has no stable address.
/// The state is behind a ``Locked``.
final class MonitorLink: Sendable {
    private struct State {
        var rows: [TaskRow] = []
        var generation = 0
        /// Write ends of the pipes of the readers waiting for the next copy.
        var waiters: [Int32] = []
        var unseen: UnseenRunningTask?
        var longBlockThreshold: Double
    }

    private let state: Locked<State>
    /// The highest task id the last copy held: the kernel thread compares a
    /// starting task's id with it (an atomic load per slice) to know
    /// whether the task is one no copy has shown.
    private let newestPublishedID = Atomic<Int>(0)

    init(longBlockThreshold: Double = 1) {
        state = Locked(State(longBlockThreshold: longBlockThreshold))
    }

    /// Kernel thread: a new copy of the table.
    func publish(_ new: [TaskRow], threshold: Double) {
        let newest = new.last?.id ?? 0
        state.withLock { s in
            s.rows = new
            s.generation += 1
            s.longBlockThreshold = threshold
            if let u = s.unseen, u.id <= newest { s.unseen = nil }
            // Under the lock: a reader closes its pipe only after taking
            // itself off the list under the lock, so the descriptor is
            // still the reader's here. The pipes are non-blocking.
            var one: UInt8 = 1
            for fd in s.waiters { _ = write(fd, &one, 1) }
            s.waiters.removeAll()
        }
        if newest > newestPublishedID.load(ordering: .relaxed) {
            newestPublishedID.store(newest, ordering: .relaxed)
        }
    }

    /// Kernel thread, as a slice starts: note `task` if no copy has shown it.
    func noteRunning(_ task: AnyCurioTask) {
        guard task.id > newestPublishedID.load(ordering: .relaxed) else { return }
        let note = UnseenRunningTask(id: task.id, parentID: task.parentID, explicitName: task.explicitName,
                                     firstFunction: task.firstFunction, cycles: task.cycles, daemon: task.daemon,
                                     site: task.site)
        state.withLock { $0.unseen = note }
    }

    /// The running task as the kernel noted it, if no copy has shown it.
    func unseenRunning(id: Int) -> UnseenRunningTask? {
        state.withLock { s in s.unseen?.id == id ? s.unseen : nil }
    }

    /// The watchdog's threshold as the kernel last published it (the
    /// kernel's property belongs to the kernel thread).
    var longBlockThreshold: Double { state.withLock { $0.longBlockThreshold } }

    /// How many readers wait for a copy now (for tests: none once they are done).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// The latest rows, after asking the kernel for fresh ones and waiting
    /// up to `patience` seconds; `fresh` is false when the kernel did not
    /// answer in time (it is busy running a task). Any thread but the
    /// kernel's.
    func snapshot(from kernel: Kernel, patience: Double = 0.25) -> (rows: [TaskRow], fresh: Bool) {
        let request = requestSnapshot(from: kernel, waiting: patience > 0)
        return collect(request, deadline: monotonicNanoseconds() + Int64(max(0, patience) * 1e9))
    }

    /// A request for a fresh copy: the reader's pipe (if it waits) and the
    /// generation it asked after.
    struct SnapshotRequest {
        fileprivate let pipe: [Int32]
        fileprivate let waits: Bool
        fileprivate let before: Int
    }

    /// Asks the kernel for a fresh copy without waiting for it, so that a
    /// group's monitor asks every kernel first and then waits for them all
    /// within one patience. Pair with ``collect(_:deadline:)``.
    func requestSnapshot(from kernel: Kernel, waiting: Bool) -> SnapshotRequest {
        var pipe: [Int32] = [-1, -1]
        let waits = waiting && systemPipe(&pipe, O_CLOEXEC | O_NONBLOCK) == 0
        let before = state.withLock { s -> Int in
            if waits { s.waiters.append(pipe[1]) }
            return s.generation
        }
        kernel.postMessage { k in k.publishSnapshot() }
        return SnapshotRequest(pipe: pipe, waits: waits, before: before)
    }

    /// The rows once the kernel has answered `request`, or when `deadline`
    /// (kernel clock ns) passes first (`fresh` false).
    func collect(_ request: SnapshotRequest, deadline: Int64) -> (rows: [TaskRow], fresh: Bool) {
        let pipe = request.pipe
        if request.waits {
            while true {
                let left = deadline - monotonicNanoseconds()
                if left <= 0 { break }
                var p = pollfd(fd: pipe[0], events: Int16(POLLIN), revents: 0)
                let r = poll(&p, 1, Int32(min(Int64(Int32.max), (left + 999_999) / 1_000_000)))
                if r > 0 { break }
                if r < 0 && errno != EINTR { break }
            }
        }
        let result = state.withLock { s -> ([TaskRow], Bool) in
            if request.waits { s.waiters.removeAll { $0 == pipe[1] } }
            return (s.rows, s.generation != request.before)
        }
        // Closed only once the publisher can no longer write to it.
        if request.waits { close(pipe[0]); close(pipe[1]) }
        return result
    }
}

/// Notes each starting task for the monitor (see ``UnseenRunningTask``);
/// installed as the first activation of a kernel with the monitor on.
final class MonitorRunningNote: Activation {
    private let link: MonitorLink
    init(link: MonitorLink) { self.link = link }
    func running(_ task: AnyCurioTask) { link.noteRunning(task) }
}

extension Kernel {
    /// Copies the task table for the monitor (kernel thread).
    func publishSnapshot() {
        guard let link = monitorLink else { return }
        var rows: [TaskRow] = []
        forEachTask { t in
            rows.append(TaskRow(id: t.id, parentID: t.parentID, name: t.name, state: t.state, cycles: t.cycles,
                                daemon: t.daemon, wakeDeadline: t.continuation != nil ? t.wakeDeadline : .max,
                                site: t.site))
        }
        rows.sort { $0.id < $1.id }
        link.publish(rows, threshold: longBlockThreshold)
    }
}

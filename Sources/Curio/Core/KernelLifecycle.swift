import CCurioKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a kernel cannot take work: it is not running, or it has been shut
/// down (or is shutting down). Thrown at once by ``Kernel/call(name:_:)``
/// and recorded as the failure of a task added to a shut-down kernel.
public struct KernelUnavailable: Error, CustomStringConvertible, Equatable {
    /// Which of the two it is.
    public enum Reason: Sendable, Equatable {
        /// The kernel is not running: its `run()` has returned. (A kernel
        /// that has never run takes calls; they wait for its first run.)
        case notRunning
        /// ``Kernel/shutdown()`` was called (or the kernel was dropped).
        case shutDown
    }
    /// Why the kernel refused.
    public let reason: Reason
    /// The kernel's ``Kernel/serial``.
    public let kernelSerial: UInt64

    /// What happened and what to do instead.
    public var description: String {
        switch reason {
        case .notRunning:
            "KernelUnavailable: kernel \(kernelSerial) is not running (its run() has returned); start it with Kernel.start() or runUntilShutdown() to call it from other tasks"
        case .shutDown:
            "KernelUnavailable: kernel \(kernelSerial) has been shut down and takes no more work"
        }
    }
}

/// The part of a kernel's state that other threads may read and change:
/// whether its loop runs, whether it is shutting down, and how many posted
/// pieces of work it has not taken yet. Every change is made under one
/// mutex, and the loop decides to leave under the same mutex, so a post
/// either lands before the decision (and the loop stays for it) or sees the
/// kernel stopped (and the poster fails or queues at once).
final class KernelLifecycle: Sendable {
    enum Phase: Sendable, Equatable {
        /// Not running; work added now waits for the next run.
        case idle
        /// A thread is in the loop (or `Kernel.start()` has given it one).
        case running
        /// A dropped kernel is running its cancelled tasks to their end.
        case draining
        /// Shut down: takes no more work.
        case shutDown
    }

    struct State {
        var phase = Phase.idle
        /// A thread is inside the loop right now.
        var loopActive = false
        /// The loop has run at least once: a call to a kernel that is idle
        /// after that fails at once, one to a new kernel waits for its run.
        var everRan = false
        /// Posted work (tasks, calls, the shutdown request) not taken yet.
        var inflight = 0
        /// `shutdown()` was asked for while the kernel ran elsewhere.
        var stopRequested = false
    }

    let state = Locked(State())
    /// The C kernel, for posts: valid until the phase is `.shutDown` after
    /// a drop (the kernel takes no posts once it is).
    // nonisolated(unsafe): an immutable pointer; ck_post is thread-safe.
    nonisolated(unsafe) let ck: OpaquePointer

    init(ck: OpaquePointer) { self.ck = ck }

    /// Posts `body` for the kernel thread as work the loop must not leave
    /// behind. Returns why not, at once, when the kernel is shut down or
    /// shutting down (unless `evenWhenStopping`), and, with
    /// `requireRunning`, when it is not running. Thread-safe.
    func post(requireRunning: Bool = false, evenWhenStopping: Bool = false,
              _ body: @escaping @Sendable (Kernel) -> Void) -> KernelUnavailable.Reason? {
        state.withLock { s -> KernelUnavailable.Reason? in
            postLocked(&s, requireRunning: requireRunning, evenWhenStopping: evenWhenStopping, body)
        }
    }

    /// `post` for a caller that holds the lock.
    func postLocked(_ s: inout State, requireRunning: Bool = false, evenWhenStopping: Bool = false,
                    _ body: @escaping @Sendable (Kernel) -> Void) -> KernelUnavailable.Reason? {
        if s.phase == .shutDown { return .shutDown }
        if (s.stopRequested || s.phase == .draining) && !evenWhenStopping { return .shutDown }
        if requireRunning && s.phase != .running && s.everRan { return .notRunning }
        s.inflight += 1
        let m = Unmanaged.passRetained(KernelMessage { k in
            k.lifecycle.state.withLock { $0.inflight -= 1 }
            body(k)
        }).toOpaque()
        if !ck_post(ck, nil, nil, m) {
            Unmanaged<KernelMessage>.fromOpaque(m).release()
            fatalError("curio: out of memory posting work to a kernel")
        }
        return nil
    }

    var phase: Phase { state.withLock { $0.phase } }
    var isShutDownOrStopping: Bool { state.withLock { $0.phase == .shutDown || $0.stopRequested } }
}

extension Kernel {
    /// Marks the loop as running on this thread, or says why it cannot run.
    func enterLoop() throws {
        try lifecycle.state.withLock { s in
            if s.phase == .shutDown || s.phase == .draining {
                throw CurioUsageError(.shutDown, "this kernel has been shut down and cannot run again; create a new Kernel")
            }
            if s.loopActive {
                throw CurioUsageError(.alreadyRunning, "this kernel is already running (run() was called from one of its own tasks or from a second thread)")
            }
            if let other = ck_current(), other != ck {
                throw CurioUsageError(.threadBusy, "another kernel is running on this thread; use one kernel per thread")
            }
            s.phase = .running
            s.loopActive = true
            s.everRan = true
        }
    }

    /// Decides, under the lifecycle lock, whether the loop may leave now:
    /// not while posted work is on its way. Leaving a shutdown marks the
    /// kernel shut down.
    func mayLeaveLoop() -> Bool {
        let stopping = self.stopping
        return lifecycle.state.withLock { s in
            if s.inflight > 0 { return false }
            s.phase = stopping ? .shutDown : .idle
            s.loopActive = false
            return true
        }
    }

    /// Leaves the loop on an error (idempotent).
    func leaveLoop() {
        let stopping = self.stopping
        lifecycle.state.withLock { s in
            if s.loopActive {
                s.loopActive = false
                s.phase = stopping ? .shutDown : .idle
            }
        }
    }

    /// Kernel thread: cancels every task, daemons included, and makes the
    /// loop run until they have all ended. Tasks added later are cancelled
    /// as they arrive.
    func beginStopping() {
        if !stopping {
            stopping = true
            lifecycle.state.withLock { $0.stopRequested = true }
        }
        var t = taskListHead
        while let task = t {
            t = task.allNext
            deliverCancel(task, TaskCancelled())
        }
    }
}

/// Every live kernel's lifecycle by serial, for handles that outlive their
/// kernel's reference (a ``CurioTask`` joined from another thread): a weak
/// entry stays valid until the dropped kernel has finished its drain.
enum KernelRegistry {
    private final class Entry: Sendable {
        weak let lifecycle: KernelLifecycle?
        init(_ l: KernelLifecycle) { lifecycle = l }
    }
    private static let table = Locked<[UInt64: Entry]>([:])

    static func add(_ serial: UInt64, _ l: KernelLifecycle) {
        table.withLock { $0[serial] = Entry(l) }
    }
    static func remove(_ serial: UInt64) {
        _ = table.withLock { $0.removeValue(forKey: serial) }
    }
    static func lifecycle(_ serial: UInt64) -> KernelLifecycle? {
        table.withLock { $0[serial]?.lifecycle }
    }
}

extension KernelLifecycle {
    /// Ends a dropped kernel's drain unless posted work is on its way.
    func finishDrain() -> Bool {
        state.withLock { s in
            if s.inflight > 0 { return false }
            s.phase = .shutDown
            return true
        }
    }
}

extension Kernel {
    /// True while work posted from outside (a call, a task, a shutdown
    /// request) waits for the kernel to take it. Thread-safe.
    var hasPostedWork: Bool { lifecycle.state.withLock { $0.inflight > 0 } }
}

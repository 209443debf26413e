import Synchronization

/// An event flag, as in `threading`: tasks wait until some task sets it.
///
/// ```swift
/// let startEvt = Event()
/// // kid:    try await startEvt.wait()
/// // parent: await startEvt.set()
/// ```
///
/// ``set()``, ``clear()`` and ``isSet`` may be used from any thread or
/// kernel; waiting belongs to the tasks of the kernel the event is bound to
/// (the kernel of its first waiter).
// @unchecked Sendable: the flag is atomic and so safe from any thread; the
// wait queue is touched only on the bound kernel's thread (`wait` runs in
// one of its tasks, a foreign `set` posts its wake-up there).
public final class Event: @unchecked Sendable {
    private let flag = Atomic<Bool>(false)
    private let waiters = WaitQueue()
    private let affinity = Affinity()

    /// Creates an event that is not set.
    public init() {}

    /// True while the event is set. Safe to read from any thread.
    public var isSet: Bool { flag.load(ordering: .acquiring) }

    /// Sets the event and wakes every waiting task, in the order they came.
    /// From outside the event's kernel the wake-up is handed to that kernel;
    /// a set that comes before the event has a kernel is seen by its first
    /// waiter, whichever thread sets it.
    public func set() async {
        // Store, then read the binding (both sequentially consistent, as
        // the binding in `Affinity`): a waiter binding the event at the same
        // moment either is seen here, and gets the posted wake-up, or sees
        // the flag before it blocks.
        flag.store(true, ordering: .sequentiallyConsistent)
        guard let kernel = affinity.kernel else { return }
        if kernel.isOnKernelThread {
            kernel.wakeAll(waiters)
        } else {
            kernel.postMessage { [self] k in k.wakeAll(waiters) }
        }
    }

    /// Clears the event; later ``wait(timeout:file:line:function:)-(Double?,_,_,_)`` calls block again.
    public func clear() {
        flag.store(false, ordering: .sequentiallyConsistent)
    }

    /// Waits until the event is set. Returns true, or false when `timeout`
    /// seconds pass first (as in `threading`). Returns at once, without
    /// switching tasks, if the event is already set.
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task()
        let deadline = try timeout.map { try deadlineAfter($0) } ?? .max
        if flag.load(ordering: .sequentiallyConsistent) { return true }
        let r = try await t.kernel.block(t, .eventWait, on: waiters, deadline: deadline,
                                         site: CallSite(file: file, line: line, function: function))
        return r != .timedOut
    }
}

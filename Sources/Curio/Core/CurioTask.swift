import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// A Curio task of any result type: what ``currentTask()`` returns and what
/// the monitor lists. ``CurioTask`` adds the typed result.
///
/// All of its state belongs to the kernel thread; read it from the task's
/// own kernel.
public class AnyCurioTask: @unchecked Sendable, CustomStringConvertible {
    unowned(unsafe) let kernel: Kernel
    /// The kernel's serial: checked instead of `kernel`, which a handle may outlive.
    let kernelSerial: UInt64
    /// Unique within the kernel, counting up from 1.
    public let id: Int
    /// Daemon tasks do not keep ``Kernel/run(shutdown:)`` running.
    public let daemon: Bool
    /// The id of the task that spawned this one, if any.
    public let parentID: Int?
    let explicitName: String?

    /// What the task is doing now.
    @exclusivity(unchecked) public internal(set) var state: TaskState = .ready
    /// How many times the task has been scheduled to run.
    @exclusivity(unchecked) public internal(set) var cycles = 0
    /// True once a cancellation has been requested.
    @exclusivity(unchecked) public internal(set) var cancelled = false
    /// True once the task has ended, whatever the way.
    @exclusivity(unchecked) public internal(set) var terminated = false

    // Kernel-thread state, touched on every switch: Swift's dynamic
    // exclusivity checks cost more here than they protect (only the kernel
    // thread writes it, and never re-entrantly).

    // The current wait, while `continuation` is set: what undoes it on a
    // cancellation or timeout (Traps.swift), the wait-queue links, and
    // the timer of its deadline, if any.
    @exclusivity(unchecked) var continuation: UnsafeContinuation<Wake, Never>?
    @exclusivity(unchecked) var cancelHook: CancelHook = .none
    @exclusivity(unchecked) unowned(unsafe) var wqPrev: AnyCurioTask?
    @exclusivity(unchecked) unowned(unsafe) var wqNext: AnyCurioTask?
    @exclusivity(unchecked) var timer: UInt64 = 0
    /// Absolute deadline of the operation's own timeout (Int64.max: none).
    @exclusivity(unchecked) var ownDeadline: Int64 = .max
    /// When the pending timer fires (for the monitor's Timeout column).
    @exclusivity(unchecked) var wakeDeadline: Int64 = .max
    @exclusivity(unchecked) var site: CallSite?
    @exclusivity(unchecked) var firstFunction: StaticString?

    // Cancellation and timeouts.
    @exclusivity(unchecked) var pendingCancel: (any Error)?
    @exclusivity(unchecked) var cancelDisabled: Int32 = 0
    @exclusivity(unchecked) var timeouts: ContiguousArray<Int64> = []
    @exclusivity(unchecked) var effectiveDeadline: Int64 = .max
    @exclusivity(unchecked) var deadlineDelivered = false
    /// Timeout blocks whose bodies run in child Swift tasks, innermost
    /// last, and the Swift task running the innermost body while there is
    /// one (nil otherwise): DeadlineScope.swift.
    @exclusivity(unchecked) var scopes: ContiguousArray<DeadlineScope> = []
    @exclusivity(unchecked) var bodyAddress: UnsafeMutableRawPointer?

    // Termination.
    @exclusivity(unchecked) var joiners: WaitQueue?
    @exclusivity(unchecked) var failure: (any Error)?
    @exclusivity(unchecked) var endedByCancel = false
    @exclusivity(unchecked) var failureRetrieved = false
    /// The Swift task running this task's body while it runs.
    @exclusivity(unchecked) var swiftTask: Task<Void, Never>?
    @exclusivity(unchecked) var inSwiftTaskTable = false
    /// The group this task belongs to, told when the task ends.
    @exclusivity(unchecked) var group: (any TaskEndObserver)?
    /// The user took this task's outcome (an explicit `join`, or a group's
    /// `nextDone`): its group leaves it out of `results` and `exceptions`.
    @exclusivity(unchecked) var takenByUser = false

    // The kernel's task list.
    @exclusivity(unchecked) var allNext: AnyCurioTask?
    @exclusivity(unchecked) unowned(unsafe) var allPrev: AnyCurioTask?

    init(kernel: Kernel, id: Int, daemon: Bool, name: String?, parentID: Int?) {
        self.kernel = kernel
        self.kernelSerial = kernel.serial
        self.id = id
        self.daemon = daemon
        self.explicitName = name
        self.parentID = parentID
    }

    deinit {
        if let failure, !failureRetrieved {
            reportCrash(failure)
        }
    }

    /// The name given at spawn, or else the function in which the task
    /// first blocked (`parent`, `kid`, `countdown`), or `task-ID`.
    public var name: String {
        if let explicitName { return explicitName }
        if let firstFunction {
            return CallSite(file: "", line: 0, function: firstFunction).functionName
        }
        return "task-\(id)"
    }

    /// Where the task is blocked now, if it is.
    public var currentCallSite: CallSite? { continuation != nil ? site : nil }

    /// Seconds until the task's pending timer fires, if it has one.
    public var timeoutRemaining: Double? {
        guard continuation != nil, wakeDeadline != .max else { return nil }
        return Double(wakeDeadline - kernel.now) / 1e9
    }

    public var description: String {
        "Task(id=\(id), name=\(name), state='\(state)')"
    }

    /// Runs the task's body; ``CurioTask`` provides it.
    func runBody() async {}

    func reportCrash(_ error: any Error) {
        let text = "curio: task \(id) (\(name)) crashed and nobody joined it: \(error)\n"
        diagnose(.error, task: self, text)
    }

    /// Waits until the task has ended, whatever the way; never throws the
    /// task's error (use ``CurioTask/join(timeout:file:line:function:)-(Double?,_,_,_)``).
    public func wait(file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws {
        guard let me = try callerOnSameKernel() else { return try await waitFromOutside(timeout: nil) }
        if terminated { return }
        if me === self {
            throw CurioUsageError(.invalidArgument, "a task cannot wait for itself to end")
        }
        _ = try await kernel.block(me, .taskJoin, on: joinQueue(), deadline: .max,
                                   site: CallSite(file: file, line: line, function: function))
    }

    /// Cancels the task: it sees a ``TaskCancelled`` at its current or next
    /// blocking call. With `blocking` (the default) this returns once the
    /// task has finished handling it and ended. Returns false when the task
    /// had already ended or had already been cancelled.
    ///
    /// Only the first cancel counts (curio 1.6): a second `cancel()` of a
    /// task that is already handling its cancellation (cleaning up in a
    /// `catch`, say) does not interrupt that handling; it waits like the
    /// first, and both return once the task has ended. Cancelling a task
    /// also drops its deadlines: no ``timeoutAfter(_:_:)-(Double,_)`` block it is in
    /// fires into its clean-up.
    ///
    /// A task may cancel itself; the call then returns at once and the
    /// cancellation arrives at its next blocking call.
    @discardableResult
    public func cancel(blocking: Bool = true, file: StaticString = #filePath, line: UInt = #line,
                       function: StaticString = #function) async throws -> Bool {
        guard let me = try callerOnSameKernel() else { return try await cancelFromOutside(blocking: blocking) }
        if terminated { return false }
        let first = !cancelled
        kernel.deliverCancel(self, TaskCancelled())
        if blocking && me !== self && !terminated {
            _ = try await kernel.block(me, .taskJoin, on: joinQueue(), deadline: .max,
                                       site: CallSite(file: file, line: line, function: function))
        }
        return first
    }

    func joinQueue() -> WaitQueue {
        if let joiners { return joiners }
        let q = WaitQueue()
        joiners = q
        return q
    }

    func checkSameKernel(_ me: AnyCurioTask) throws {
        if me.kernel.serial != kernelSerial {
            throw CurioUsageError(.wrongKernel, "task \(id) belongs to another kernel; join, wait for or cancel it from a task of its own kernel")
        }
    }

    /// Waits for the end with an optional timeout; throws TaskTimeout on
    /// expiry. Shared by the typed joins.
    func awaitEnd(timeout: Double?, site: CallSite) async throws {
        guard let me = try callerOnSameKernel() else { return try await waitFromOutside(timeout: timeout) }
        if terminated { return }
        if me === self {
            throw CurioUsageError(.invalidArgument, "a task cannot join itself")
        }
        let deadline = try syncDeadline(timeout)
        let r = try await kernel.block(me, .taskJoin, on: joinQueue(), deadline: deadline, site: site)
        if r == .timedOut { throw TaskTimeout(clock: clock()) }
    }

    /// The error for a join of a task that ended by throwing.
    func joinFailure() -> TaskError? {
        guard let failure else { return nil }
        failureRetrieved = true
        return TaskError(cause: failure, taskID: id, taskName: name)
    }
}

/// A handle on a task: join it for its value, wait for it, cancel it.
///
/// ```swift
/// let kidTask = try await newTask(kid)
/// try await kidTask.join(timeout: 10)   // throws TaskTimeout after 10 s
/// try await kidTask.cancel()            // returns once the kid has ended
/// ```
public final class CurioTask<T>: AnyCurioTask, @unchecked Sendable {
    /// The body's return value once it has returned; nil before, and when
    /// it threw. Kept behind a typed pointer rather than in a `T?` field:
    /// copying or destroying a `T?` in this generic class asks the runtime
    /// for `Optional<T>`'s metadata (a locked hash lookup, about 300
    /// instructions), three times per task, where the pointer needs only
    /// `T`'s own value witnesses. A result of size zero (`Void`) needs no
    /// memory and shares one never-touched placeholder.
    private var storedValue: UnsafeMutablePointer<T>?

    /// The body's return value, if it returned.
    var value: T? {
        guard let p = storedValue else { return nil }
        return p.pointee
    }

    private func storeValue(_ v: T) {
        let p: UnsafeMutablePointer<T>
        if MemoryLayout<T>.size == 0 {
            p = zeroSizedValuePlaceholder.assumingMemoryBound(to: T.self)
        } else {
            p = .allocate(capacity: 1)
        }
        p.initialize(to: v)
        storedValue = p
    }

    deinit {
        guard let p = storedValue else { return }
        p.deinitialize(count: 1)
        if MemoryLayout<T>.size != 0 { p.deallocate() }
    }

    /// Waits for the task to end and returns its value.
    ///
    /// Returns `nil` when the task ended by a cancellation it did not catch;
    /// throws ``TaskError`` (with the cause) when it ended by throwing
    /// anything else, and ``TaskTimeout`` when `timeout` seconds pass first.
    @discardableResult
    public func join(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> T? {
        try await awaitEnd(timeout: timeout, site: CallSite(file: file, line: line, function: function))
        takenByUser = true
        if let e = joinFailure() { throw e }
        return value
    }

    /// The outcome of an ended task without waiting: its value, `nil` if it
    /// ended by cancellation; throws ``TaskError`` if it failed, and a
    /// ``CurioUsageError`` if it is still running.
    public var result: T? {
        get throws {
            guard terminated else {
                throw CurioUsageError(.invalidArgument, "task \(id) (\(name)) has not ended yet; join it instead")
            }
            if let e = joinFailure() { throw e }
            return value
        }
    }

    var body: (@Sendable () async throws -> T)?

    /// Runs the task's body, then records how it ended.
    override func runBody() async {
        guard let fn = body else { return }
        body = nil
        do {
            storeValue(try await fn())
        } catch {
            if cancelled && error is CancelledError {
                endedByCancel = true
            } else {
                failure = error
            }
        }
        kernel.taskEnded(self)
    }

    func outcomeForRun() throws -> T {
        if let failure {
            failureRetrieved = true
            throw failure
        }
        if let p = storedValue { return p.pointee }
        throw pendingCancel ?? TaskCancelled()
    }
}

/// Where every task whose result has size zero "stores" it: such a value
/// occupies no bytes, so nothing is ever read from or written to here.
// nonisolated(unsafe): never dereferenced for a non-zero number of bytes.
nonisolated(unsafe) private let zeroSizedValuePlaceholder = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)

// MARK: - Spawning

/// Starts a new task on the calling task's kernel and returns its handle.
///
/// ```swift
/// let kidTask = try await spawn(kid)
/// let worker = try await spawn(daemon: true, name: "worker") { try await serve() }
/// ```
///
/// Daemon tasks do not keep ``Kernel/run(shutdown:)`` running. Throws
/// ``CurioUsageError`` when called outside a kernel's task.
@discardableResult
public func spawn<T>(daemon: Bool = false, name: String? = nil,
                     _ fn: @escaping @Sendable () async throws -> T) async throws -> CurioTask<T> {
    let me = try Kernel.currentTask()
    return me.kernel.spawnTask(daemon: daemon, name: name, parent: me.id, fn)
}

/// The seed's `curio.new_task()`: the same as ``spawn(daemon:name:_:)``.
@discardableResult
public func newTask<T>(daemon: Bool = false, name: String? = nil,
                       _ fn: @escaping @Sendable () async throws -> T) async throws -> CurioTask<T> {
    let me = try Kernel.currentTask()
    return me.kernel.spawnTask(daemon: daemon, name: name, parent: me.id, fn)
}

/// The task that is running, or ``CurioUsageError`` outside a kernel.
public func currentTask() async throws -> AnyCurioTask {
    try Kernel.currentTask()
}

/// Something that wants to hear when a task ends (a task group).
protocol TaskEndObserver: AnyObject {
    func taskDidEnd(_ t: AnyCurioTask)
}

extension Kernel {
    @discardableResult
    func spawnTask<T>(daemon: Bool, name: String?, parent: Int?,
                      _ fn: @escaping @Sendable () async throws -> T) -> CurioTask<T> {
        let t = CurioTask<T>(kernel: self, id: takeTaskID(), daemon: daemon, name: name, parentID: parent)
        t.body = fn
        start(t)  // Launch.swift: links, counts and launches it
        return t
    }

    func taskEnded(_ t: AnyCurioTask) {
        t.terminated = true
        t.state = .terminated
        aliveCount -= 1
        if !t.daemon { nonDaemonAlive -= 1 }
        if let next = t.allNext { next.allPrev = t.allPrev }
        if let prev = t.allPrev { prev.allNext = t.allNext } else { taskListHead = t.allNext }
        t.allNext = nil
        t.allPrev = nil
        for a in activations { a.terminated(t) }
        forgetSwiftTask(t)
        if let q = t.joiners { wakeAll(q) }
        if let g = t.group {
            t.group = nil
            g.taskDidEnd(t)
        }
        // A failure nobody joins is reported by deinit, when the last
        // handle goes away: at once if nobody kept one.
    }

    /// Visits every task that has not ended, most recent first.
    func forEachTask(_ body: (AnyCurioTask) -> Void) {
        var t = taskListHead
        while let task = t {
            t = task.allNext
            body(task)
        }
    }
}

/// A set of tasks managed together, as curio 1.6's `TaskGroup`.
///
/// ```swift
/// // First answer wins; the others are cancelled.
/// let winner = try await withCurioTaskGroup(of: String.self, wait: .any) { g in
///     for host in mirrors { try await g.spawn { try await fetch(host) } }
///     try await g.join()
///     return try g.result
/// }
///
/// // Collect results as tasks finish.
/// let g = CurioTaskGroup<Int>()
/// for n in 1...10 { try await g.spawn { try await work(n) } }
/// for try await task in g { print(try task.result ?? -1) }
/// ```
///
/// ``join(file:line:function:)`` waits as the policy says for the non-daemon members, then
/// cancels whatever is still running — daemon members always — and waits
/// for it to end, so no task outlives its group's join and a daemon member
/// that loops forever never holds `join()` up.
/// ``withCurioTaskGroup(of:wait:_:)`` always joins, also when its body
/// throws — prefer it.
///
/// Errors of member tasks do not make ``join(file:line:function:)`` throw (curio 1.6); read
/// them from ``exceptions``, ``result``, ``results`` or ``nextResult(file:line:function:)``.
/// A failure nobody reads is reported on stderr when the group goes away.
///
/// What the user already took is left out of the group's outcome (as in
/// curio): a member joined explicitly (``CurioTask/join(timeout:file:line:function:)-(Double?,_,_,_)``),
/// a daemon member, and a member handed out by ``nextDone(file:line:function:)``,
/// ``nextResult(file:line:function:)`` or iteration are not in ``results``, ``exceptions`` or
/// ``result``, and they do not satisfy the wait policy.
public final class CurioTaskGroup<T>: AsyncSequence, TaskEndObserver, @unchecked Sendable {
    /// When ``CurioTaskGroup/join(file:line:function:)`` stops waiting.
    public enum WaitPolicy: Sendable {
        /// Wait for every task; stop early (cancelling the rest) when one fails.
        case all
        /// Wait for the first task to end, whatever the way.
        case any
        /// Wait for the first task to return a value (not nil, not an error).
        case object
        /// Do not wait: cancel everything.
        case none
    }

    /// When ``join(file:line:function:)`` stops waiting.
    public let policy: WaitPolicy
    private var running: [ObjectIdentifier: CurioTask<T>] = [:]
    private var finished: [CurioTask<T>] = []  // ended, not yet handed out by nextDone
    private var finishedHead = 0
    private var allEnded: [CurioTask<T>] = []  // every ended task, in order
    private var members: [CurioTask<T>] = []  // every task, in the order added
    private var nonDaemonRunning = 0
    private let doneWaiters = WaitQueue()
    private var affinity = Affinity()
    private var joined = false

    /// The task that satisfied the policy (for `.all`: the first to end).
    public private(set) var completed: CurioTask<T>?

    /// Creates an empty group that waits as `policy` says.
    public init(wait policy: WaitPolicy = .all) {
        self.policy = policy
    }

    /// Tasks of the group that have not ended.
    public var tasks: [CurioTask<T>] { Array(running.values).sorted { $0.id < $1.id } }

    /// Starts a task in the group.
    @discardableResult
    public func spawn(daemon: Bool = false, name: String? = nil,
                      _ fn: @escaping @Sendable () async throws -> T) async throws -> CurioTask<T> {
        let me = try affinity.task()
        try checkOpen()
        let t: CurioTask<T> = me.kernel.spawnTask(daemon: daemon, name: name, parent: me.id, fn)
        adopt(t)
        return t
    }

    /// Adds a task spawned elsewhere. It must belong to the same kernel and
    /// to no other group.
    public func add(_ task: CurioTask<T>) async throws {
        let me = try affinity.task()
        try checkOpen()
        try task.checkSameKernel(me)
        if task.group != nil || running[ObjectIdentifier(task)] != nil {
            throw CurioUsageError(.invalidArgument, "task \(task.id) already belongs to a task group")
        }
        if task.terminated {
            members.append(task)
            taskDidEnd(task)
        } else {
            adopt(task)
        }
    }

    private func adopt(_ t: CurioTask<T>) {
        running[ObjectIdentifier(t)] = t
        members.append(t)
        if !t.daemon { nonDaemonRunning += 1 }
        t.group = self
    }

    /// Whether `t` counts for the group's outcome: not a daemon, and not
    /// already taken by the user.
    private func counts(_ t: AnyCurioTask) -> Bool { !t.daemon && !t.takenByUser }

    private func checkOpen() throws {
        if joined {
            throw CurioUsageError(.invalidArgument, "this task group has been joined; start a new group")
        }
    }

    func taskDidEnd(_ t: AnyCurioTask) {
        let wasRunning = running.removeValue(forKey: ObjectIdentifier(t))
        guard let t = wasRunning ?? (t as? CurioTask<T>) else { return }
        if wasRunning != nil && !t.daemon { nonDaemonRunning -= 1 }
        // The kernel clears `group` when a task ends; keep a mark so that
        // an ended member cannot be added to a group (this one or another) again.
        t.group = formerGroupMember
        finished.append(t)
        allEnded.append(t)
        t.kernel.wakeAll(doneWaiters)
    }

    /// The next task to end (in the order they ended), or nil when every
    /// task has been handed out (daemon members that have not ended are not
    /// waited for). Waits if none has ended yet. A task handed out here is
    /// the caller's: it leaves ``results``, ``exceptions`` and ``result``.
    public func nextDone(file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> CurioTask<T>? {
        let me = try affinity.task()
        while true {
            if finishedHead < finished.count {
                let t = finished[finishedHead]
                finishedHead += 1
                if finishedHead == finished.count {
                    finished.removeAll(keepingCapacity: true)
                    finishedHead = 0
                }
                t.takenByUser = true
                return t
            }
            if nonDaemonRunning == 0 { return nil }
            _ = try await me.kernel.block(me, .taskJoin, on: doneWaiters, deadline: .max,
                                          site: CallSite(file: file, line: line, function: function))
        }
    }

    /// The value of the next task to end: throws ``TaskError`` if it failed,
    /// returns nil if it was cancelled, and throws ``CurioUsageError`` when
    /// no task is left.
    public func nextResult(file: StaticString = #filePath, line: UInt = #line,
                           function: StaticString = #function) async throws -> T? {
        guard let t = try await nextDone(file: file, line: line, function: function) else {
            throw CurioUsageError(.invalidArgument, "nextResult(): the task group has no tasks left")
        }
        return try t.result
    }

    /// Waits as the policy says for the non-daemon members, then cancels
    /// the tasks still running (daemon members always) and waits for them
    /// to end. If the caller is cancelled while waiting, the members are
    /// cancelled too before the cancellation propagates.
    public func join(file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws {
        let me = try affinity.task()
        do {
            var seen = 0
            waiting: while policy != .none {
                while seen < allEnded.count {
                    let t = allEnded[seen]
                    seen += 1
                    guard counts(t) else { continue }
                    if completed == nil && policy == .all { completed = t }
                    if satisfies(t) { break waiting }
                }
                if nonDaemonRunning == 0 { break }
                _ = try await me.kernel.block(me, .taskJoin, on: doneWaiters, deadline: .max,
                                              site: CallSite(file: file, line: line, function: function))
            }
        } catch {
            joined = true
            try await cancelRemaining(file: file, line: line, function: function)
            throw error
        }
        // Members may spawn into the group while join waits (more work for
        // `.all`); from here on nothing new may join what is being cancelled.
        joined = true
        try await cancelRemaining(file: file, line: line, function: function)
    }

    private func satisfies(_ t: CurioTask<T>) -> Bool {
        switch policy {
        case .all:
            return t.failure != nil
        case .any:
            completed = t
            return true
        case .object:
            guard t.failure == nil, !t.endedByCancel, let v = t.value, !isNilOptional(v) else { return false }
            completed = t
            return true
        case .none:
            return true
        }
    }

    /// Cancels every task still running and waits until they have all
    /// ended. The wait itself cannot be interrupted (the members end
    /// promptly when cancelled); a cancellation of the caller arriving
    /// meanwhile is delivered at its next blocking call.
    public func cancelRemaining(file: StaticString = #filePath, line: UInt = #line,
                                function: StaticString = #function) async throws {
        let me = try affinity.task()
        try await me.kernel.holdingCancellation(me) {
            // A member may spawn into the group while it is being cancelled:
            // repeat until none is left.
            while !running.isEmpty {
                let victims = tasks
                for t in victims { me.kernel.deliverCancel(t, TaskCancelled()) }
                for t in victims where !t.terminated {
                    try await t.wait(file: file, line: line, function: function)
                }
            }
        }
    }

    /// The value of ``completed``: throws ``TaskError`` if it failed and
    /// ``CurioUsageError`` if no task completed (members the user took are
    /// never ``completed``).
    public var result: T? {
        get throws {
            guard let completed else {
                throw CurioUsageError(.invalidArgument, "the task group has no completed task (join it first)")
            }
            return try completed.result
        }
    }

    /// The values of the members that ended by returning, in the order the
    /// tasks were added (spawn / ``add(_:)`` order), leaving out what the
    /// user already took (see the type's notes). Throws the first
    /// ``TaskError`` (in that order) if a member failed.
    public var results: [T] {
        get throws {
            var out: [T] = []
            for t in members where t.terminated && counts(t) {
                if let e = t.joinFailure() { throw e }
                if let v = t.value { out.append(v) }
            }
            return out
        }
    }

    /// What the failed members threw, in the order the tasks were added,
    /// leaving out what the user already took.
    public var exceptions: [any Error] {
        members.compactMap { t in
            guard t.terminated, counts(t), let f = t.failure else { return nil }
            t.failureRetrieved = true
            return f
        }
    }

    /// The first failure, if any task failed.
    public var exception: (any Error)? { exceptions.first }

    // MARK: AsyncSequence: `for try await task in group` yields tasks as they end.

    public typealias Element = CurioTask<T>
    public typealias Failure = any Error

    public struct AsyncIterator: AsyncIteratorProtocol {
        let group: CurioTaskGroup<T>
        public mutating func next() async throws -> CurioTask<T>? {
            try await group.nextDone()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(group: self) }
}

/// Runs `body` with a new task group and joins the group when the body ends,
/// also when it throws (then the members are cancelled first): nothing
/// spawned in the group outlives this call.
public func withCurioTaskGroup<T, R>(of: T.Type = T.self, wait policy: CurioTaskGroup<T>.WaitPolicy = .all,
                                     _ body: (CurioTaskGroup<T>) async throws -> R) async throws -> R {
    let group = CurioTaskGroup<T>(wait: policy)
    let r: R
    do {
        r = try await body(group)
    } catch {
        try await group.cancelRemaining()
        throw error
    }
    try await group.join()
    return r
}

/// What `group` of an ended member points at: not the group itself (the
/// group keeps its ended tasks, so that would be a reference cycle), only
/// the fact that the task belonged to one.
private final class FormerGroupMember: TaskEndObserver, Sendable {
    func taskDidEnd(_ t: AnyCurioTask) {}
}
private let formerGroupMember = FormerGroupMember()

private protocol OptionalProtocol { var isNil: Bool { get } }
extension Optional: OptionalProtocol { var isNil: Bool { self == nil } }
private func isNilOptional(_ v: Any) -> Bool { (v as? any OptionalProtocol)?.isNil ?? false }

/// A mutual-exclusion lock for the tasks of one kernel (curio's `Lock`).
///
/// ```swift
/// let lock = Lock()
/// try await lock.withLock {
///     balance += amount          // no other task of the kernel runs this at the same time
/// }
/// ```
///
/// Waiters are served first come, first served: ``release()`` hands the
/// lock straight to the task that has waited longest, so a task arriving
/// later cannot overtake it. A waiter that is cancelled or times out while
/// queued never owns the lock. An uncontended ``acquire(timeout:file:line:function:)-(Double?,_,_,_)``
/// returns at once, without switching tasks and without delivering a
/// pending cancellation.
///
/// The lock belongs to the task that acquired it: releasing it from another
/// task, releasing it when it is not locked, or acquiring it again from the
/// task that holds it (use ``RLock`` for that) throws ``CurioUsageError``.
/// A lock binds to the kernel of the first task that uses it; tasks of
/// another kernel get ``CurioUsageError`` with kind `.wrongKernel`.
// @unchecked Sendable: every mutable field is touched only by the tasks of
// the kernel the object is bound to (`affinity.task` checks the caller's
// kernel before each access), so one thread at a time; a task of another
// kernel gets `.wrongKernel` instead of touching it.
public final class Lock: @unchecked Sendable {
    /// The id of the task holding the lock; 0 when unlocked. With hand-off,
    /// an unlocked lock has no waiters.
    private(set) var ownerID = 0
    private let waiters = WaitQueue()
    private let affinity = Affinity()

    /// Creates an unlocked lock.
    public init() {}

    /// True while some task holds the lock. Read it from the lock's kernel.
    public var locked: Bool { ownerID != 0 }

    /// Tasks waiting for the lock.
    var waiterCount: Int { waiters.count }

    /// Acquires the lock, waiting in line while another task holds it.
    ///
    /// Returns true once the calling task holds the lock, or false when
    /// `timeout` seconds pass first (as in `threading`). A cancellation
    /// while waiting throws ``CancelledError`` and leaves the lock alone.
    ///
    /// ```swift
    /// if try await lock.acquire(timeout: 0.5) {
    ///     // ... the lock is ours ...
    ///     try await lock.release()
    /// } else {
    ///     print("busy")
    /// }
    /// ```
    @discardableResult
    public func acquire(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task("Lock.acquire")
        let deadline = try syncDeadline(timeout)
        return try await acquire(t, deadline: deadline, site: CallSite(file: file, line: line, function: function))
    }

    /// Releases the lock. If tasks are waiting, the first of them now holds
    /// it. Never blocks.
    ///
    /// Throws ``CurioUsageError`` with kind `.invalidRelease` when the lock
    /// is not locked or is held by another task.
    public func release() async throws {
        let t = try affinity.task("Lock.release")
        try release(by: t, "Lock.release")
    }

    /// Runs `body` while holding the lock, and releases it afterwards, also
    /// when `body` throws.
    ///
    /// ```swift
    /// let snapshot = try await lock.withLock { state }
    /// ```
    public func withLock<T>(file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function,
                            _ body: () async throws -> T) async throws -> T {
        try await holding({ try await acquire(file: file, line: line, function: function) },
                          { try await release() }, body)
    }

    // MARK: - Shared with RLock and Condition

    /// Acquires for `t`, validated already.
    func acquire(_ t: AnyCurioTask, deadline: Int64, site: CallSite) async throws -> Bool {
        if ownerID == 0 {
            assert(waiters.isEmpty, "an unlocked Lock with waiters: hand-off broken")
            ownerID = t.id
            return true
        }
        if ownerID == t.id {
            throw CurioUsageError(.invalidArgument,
                "Lock.acquire: the calling task (\(t.id)) already holds this lock, so waiting for it would deadlock; use RLock for a lock a task may acquire again")
        }
        let r = try await t.kernel.block(t, .lockAcquire, on: waiters, deadline: deadline, site: site)
        if r == .timedOut { return false }
        assert(ownerID == t.id, "woken without the lock: hand-off broken")
        return true
    }

    /// Checks that `t` holds the lock, then hands it on.
    func release(by t: AnyCurioTask, _ what: String) throws {
        guard ownerID == t.id else {
            if ownerID == 0 {
                throw CurioUsageError(.invalidRelease, "\(what): the lock is not locked")
            }
            throw CurioUsageError(.invalidRelease,
                "\(what): the lock is held by task \(ownerID), not by the calling task \(t.id); only the holder may release it")
        }
        handOff(t.kernel)
    }

    /// Gives the lock to the first waiter, or unlocks it when none waits.
    func handOff(_ kernel: Kernel) {
        if let w = kernel.wakeFirst(waiters) {
            ownerID = w.id
        } else {
            ownerID = 0
        }
    }

    /// Acquires the lock for `t` without delivering cancellations or task
    /// deadlines: ``Condition`` uses it to take the lock back before a
    /// cancellation or timeout propagates out of its wait. What arrives
    /// meanwhile stays pending for the next blocking call.
    func reacquire(_ t: AnyCurioTask, site: CallSite) async {
        if ownerID == 0 {
            ownerID = t.id
            return
        }
        await t.kernel.blockUninterrupted(t, .lockAcquire, on: waiters, site: site)
        assert(ownerID == t.id, "woken without the lock: hand-off broken")
    }
}

/// A reentrant lock (curio's `RLock`): the task that holds it may acquire
/// it again; it is released when that task has released it as many times
/// as it acquired it.
///
/// ```swift
/// let rlock = RLock()
/// func update() async throws {
///     try await rlock.withLock {
///         try await rlock.withLock { /* nested: fine */ }
///     }
/// }
/// ```
///
/// Fair and cancellation-safe like ``Lock``. Releasing it from a task that
/// does not hold it throws ``CurioUsageError`` with kind `.invalidRelease`.
// @unchecked Sendable: every mutable field is touched only by the tasks of
// the kernel the object is bound to (`affinity.task` checks the caller's
// kernel before each access), so one thread at a time; a task of another
// kernel gets `.wrongKernel` instead of touching it.
public final class RLock: @unchecked Sendable {
    private let base = Lock()
    private var depth = 0
    private let affinity = Affinity()

    /// Creates an unlocked reentrant lock.
    public init() {}

    /// True while some task holds the lock.
    public var locked: Bool { base.locked }

    /// How many times the holding task has acquired the lock without
    /// releasing it (0 when unlocked).
    public var recursionLevel: Int { base.locked ? max(depth, 1) : 0 }

    /// Acquires the lock: at once if the calling task already holds it
    /// (counting one level more), otherwise waiting in line. Returns false
    /// when `timeout` seconds pass first.
    @discardableResult
    public func acquire(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task("RLock.acquire")
        let deadline = try syncDeadline(timeout)
        if base.ownerID == t.id {
            depth += 1
            return true
        }
        guard try await base.acquire(t, deadline: deadline, site: CallSite(file: file, line: line, function: function)) else {
            return false
        }
        depth = 1
        return true
    }

    /// Releases one level; the last release hands the lock to the first
    /// waiter. Throws ``CurioUsageError`` (`.invalidRelease`) when the
    /// calling task does not hold the lock.
    public func release() async throws {
        let t = try affinity.task("RLock.release")
        guard base.ownerID == t.id else {
            if base.ownerID == 0 {
                throw CurioUsageError(.invalidRelease, "RLock.release: the lock is not locked")
            }
            throw CurioUsageError(.invalidRelease,
                "RLock.release: the lock is held by task \(base.ownerID), not by the calling task \(t.id); only the holder may release it")
        }
        depth -= 1
        if depth == 0 { base.handOff(t.kernel) }
    }

    /// Runs `body` holding the lock (one level more if the task holds it
    /// already) and releases that level afterwards, also when `body` throws.
    public func withLock<T>(file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function,
                            _ body: () async throws -> T) async throws -> T {
        try await holding({ try await acquire(file: file, line: line, function: function) },
                          { try await release() }, body)
    }
}

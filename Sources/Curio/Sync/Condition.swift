
/// A condition variable (curio's `Condition`): tasks holding its lock wait
/// for another task to change some state and notify them.
///
/// ```swift
/// let cond = Condition()
/// var items: [Int] = []
///
/// // consumer
/// try await cond.withLock {
///     try await cond.waitFor { !items.isEmpty }
///     print(items.removeFirst())
/// }
///
/// // producer
/// try await cond.withLock {
///     items.append(42)
///     try await cond.notify()
/// }
/// ```
///
/// ``wait(timeout:file:line:function:)-(Double?,_,_,_)`` releases the lock, waits for a
/// notification and takes the lock back before it returns — also when the
/// wait is cancelled or times out: the lock is held again before the
/// ``CancelledError`` propagates, as in `threading` and curio. Waiting or
/// notifying without holding the lock throws ``CurioUsageError``.
/// Notifications wake waiters in the order they started waiting.
// @unchecked Sendable: every mutable field is touched only by the tasks of
// the kernel the object is bound to (`affinity.task` checks the caller's
// kernel before each access), so one thread at a time; a task of another
// kernel gets `.wrongKernel` instead of touching it.
public final class Condition: @unchecked Sendable {
    /// The lock that guards the condition's state.
    public let lock: Lock
    private let waiters = WaitQueue()
    private let affinity = Affinity()

    /// Creates a condition over `lock`, or over a new ``Lock``.
    public init(lock: Lock? = nil) {
        self.lock = lock ?? Lock()
    }

    /// True while some task holds the lock.
    public var locked: Bool { lock.locked }

    /// How many tasks are waiting for a notification.
    public var waiting: Int { waiters.count }

    /// Acquires the condition's lock (see ``Lock/acquire(timeout:file:line:function:)-(Double?,_,_,_)``).
    @discardableResult
    public func acquire(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws -> Bool {
        try await lock.acquire(timeout: timeout, file: file, line: line, function: function)
    }

    /// Releases the condition's lock (see ``Lock/release()``).
    public func release() async throws {
        try await lock.release()
    }

    /// Runs `body` holding the condition's lock (see ``Lock/withLock(file:line:function:_:)``).
    public func withLock<T>(file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function,
                            _ body: () async throws -> T) async throws -> T {
        try await lock.withLock(file: file, line: line, function: function, body)
    }

    /// Releases the lock, waits until notified, and takes the lock back.
    ///
    /// Returns true when notified, false when `timeout` seconds passed
    /// first. Either way, and also when the wait is cancelled, the calling
    /// task holds the lock again when this returns or throws.
    ///
    /// Throws ``CurioUsageError`` (`.invalidRelease`) when the calling task
    /// does not hold the lock.
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task("Condition.wait")
        try checkHolder(t, "Condition.wait", .invalidRelease)
        let deadline = try syncDeadline(timeout)
        return try await wait(t, deadline: deadline, site: CallSite(file: file, line: line, function: function))
    }

    /// Waits until `predicate` is true, waking at each notification to
    /// check it again; the lock is held whenever `predicate` runs. Returns
    /// true, or the predicate's value when `timeout` seconds (for the whole
    /// call) have passed.
    ///
    /// ```swift
    /// try await cond.withLock {
    ///     try await cond.waitFor { queue.count > 0 }
    /// }
    /// ```
    @discardableResult
    public func waitFor(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function,
                        _ predicate: () throws -> Bool) async throws -> Bool {
        let t = try affinity.task("Condition.waitFor")
        try checkHolder(t, "Condition.waitFor", .invalidRelease)
        let deadline = try syncDeadline(timeout)
        let site = CallSite(file: file, line: line, function: function)
        while true {
            if try predicate() { return true }
            if deadline != .max && t.kernel.now >= deadline { return false }
            if try await !wait(t, deadline: deadline, site: site) {
                return try predicate()
            }
        }
    }

    /// Wakes up to `n` waiting tasks, longest-waiting first. They return
    /// from their wait once they have taken the lock back, so not before
    /// the caller releases it.
    ///
    /// Throws ``CurioUsageError`` (`.invalidArgument`) when the calling task
    /// does not hold the lock or `n` is negative.
    public func notify(_ n: Int = 1) async throws {
        let t = try affinity.task("Condition.notify")
        guard n >= 0 else {
            throw CurioUsageError(.invalidArgument, "Condition.notify: n must be >= 0, got \(n)")
        }
        try checkHolder(t, "Condition.notify", .invalidArgument)
        var left = n
        while left > 0, t.kernel.wakeFirst(waiters) != nil { left -= 1 }
    }

    /// Wakes every waiting task.
    public func notifyAll() async throws {
        let t = try affinity.task("Condition.notifyAll")
        try checkHolder(t, "Condition.notifyAll", .invalidArgument)
        t.kernel.wakeAll(waiters)
    }

    // MARK: - Internals

    private func checkHolder(_ t: AnyCurioTask, _ what: String, _ kind: CurioUsageError.Kind) throws {
        guard lock.ownerID == t.id else {
            let who = lock.ownerID == 0 ? "nobody holds it" : "task \(lock.ownerID) holds it"
            throw CurioUsageError(kind,
                "\(what): the calling task must hold the condition's lock (\(who)); acquire it first, e.g. with withLock { }")
        }
    }

    /// One wait: the lock is held by `t` on entry and on every exit.
    private func wait(_ t: AnyCurioTask, deadline: Int64, site: CallSite) async throws -> Bool {
        // A pending cancellation is delivered while the lock is still held.
        try t.kernel.checkDeliverable(t)
        lock.handOff(t.kernel)
        let r: WaitOutcome
        do {
            r = try await t.kernel.block(t, .condWait, on: waiters, deadline: deadline, site: site)
        } catch {
            await lock.reacquire(t, site: site)
            throw error
        }
        await lock.reacquire(t, site: site)
        return r != .timedOut
    }
}

/// A counting semaphore for the tasks of one kernel (curio's `Semaphore`):
/// ``acquire(timeout:file:line:function:)-(Double?,_,_,_)`` takes a permit, waiting while
/// there is none; ``release()`` gives one back.
///
/// ```swift
/// let slots = Curio.Semaphore(value: 3)     // at most three downloads at a time
/// try await slots.withLock {
///     try await download(url)
/// }
/// ```
///
/// Waiters are served first come, first served: ``release()`` hands its
/// permit straight to the task that has waited longest. A waiter that is
/// cancelled or times out never takes a permit, so permits are never lost.
/// Any task may release (a semaphore has no owner); see
/// ``BoundedSemaphore`` for one that refuses to grow past its initial
/// value.
///
/// In a file that imports Glibc, write `Curio.Semaphore`: Glibc declares a
/// `Semaphore` of its own.
///
/// A negative initial value is a mistake the semaphore reports, not a
/// crash: `Semaphore(value: -1)` is created (the spelling stays the
/// non-throwing `threading` one), and its first ``acquire(timeout:file:line:function:)-(Double?,_,_,_)``,
/// ``release()`` or ``withLock(file:line:function:_:)`` throws
/// ``CurioUsageError`` with kind `.invalidArgument` naming the value.
// @unchecked Sendable: `value` and the wait queue are touched only by the
// tasks of the kernel the semaphore is bound to (`affinity.task` checks
// that before every access); `bound` and `invalidValue` are immutable.
public class Semaphore: @unchecked Sendable {
    /// The permits available now. With hand-off, permits and waiters never
    /// coexist: a waiting task means the value is 0.
    public private(set) var value: Int
    /// The bound of a ``BoundedSemaphore``.
    let bound: Int?
    private let waiters = WaitQueue()
    private let affinity = Affinity()
    /// The rejected initial value, reported by every call.
    private let invalidValue: Int?

    init(value: Int, bound: Int?) {
        self.invalidValue = value < 0 ? value : nil
        self.value = Swift.max(0, value)
        self.bound = bound.map { Swift.max(0, $0) }
    }

    /// The calling task, once the semaphore is known to be valid.
    private func task(_ what: StaticString) throws -> AnyCurioTask {
        if let invalidValue {
            let type = bound == nil ? "Semaphore" : "BoundedSemaphore"
            throw CurioUsageError(.invalidArgument,
                "\(what): this \(type) was created with value \(invalidValue); the initial value must be >= 0")
        }
        return try affinity.task(what)
    }

    /// Creates a semaphore with `value` permits (at least 0; a negative
    /// value makes every call throw, see ``Semaphore``).
    public convenience init(value: Int = 1) {
        self.init(value: value, bound: nil)
    }

    /// True when no permit is available (an acquire would wait).
    public var locked: Bool { value == 0 }

    /// Tasks waiting for a permit.
    var waiterCount: Int { waiters.count }

    /// Takes a permit, waiting in line while there is none. Returns true,
    /// or false when `timeout` seconds pass first (as in `threading`).
    ///
    /// With a permit free and nobody waiting, returns at once without
    /// switching tasks.
    @discardableResult
    public func acquire(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws -> Bool {
        let t = try task("Semaphore.acquire")
        let deadline = try syncDeadline(timeout)
        if value > 0 {
            assert(waiters.isEmpty, "a Semaphore with permits and waiters: hand-off broken")
            value -= 1
            return true
        }
        let r = try await t.kernel.block(t, .semaAcquire, on: waiters, deadline: deadline,
                                         site: CallSite(file: file, line: line, function: function))
        // A normal wake carries the releaser's permit.
        return r != .timedOut
    }

    /// Gives a permit back: to the first waiting task if there is one,
    /// otherwise to the semaphore. Never blocks.
    ///
    /// A ``BoundedSemaphore`` throws ``CurioUsageError`` (`.invalidRelease`)
    /// when this would raise its value above the initial one.
    public func release() async throws {
        let t = try task("Semaphore.release")
        if let bound, value >= bound {
            throw CurioUsageError(.invalidRelease,
                "BoundedSemaphore.release: released more times than acquired; its value would exceed its bound of \(bound)")
        }
        if t.kernel.wakeFirst(waiters) == nil {
            value += 1
        }
    }

    /// Runs `body` holding a permit, and releases it afterwards, also when
    /// `body` throws.
    public func withLock<T>(file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function,
                            _ body: () async throws -> T) async throws -> T {
        try await holding({ try await acquire(file: file, line: line, function: function) },
                          { try await release() }, body)
    }
}

/// A semaphore that can never hold more permits than it started with
/// (curio's `BoundedSemaphore`): releasing it more often than it was
/// acquired throws ``CurioUsageError`` with kind `.invalidRelease`, which
/// catches the bug where a code path releases twice.
///
/// ```swift
/// let pool = BoundedSemaphore(value: 2)
/// try await pool.acquire()
/// try await pool.release()
/// try await pool.release()   // throws: the bound is 2
/// ```
// @unchecked Sendable: adds no state to ``Semaphore``.
public final class BoundedSemaphore: Semaphore, @unchecked Sendable {
    /// Creates a semaphore with `value` permits, which is also its bound
    /// (at least 0; a negative value makes every call throw).
    public init(value: Int = 1) {
        super.init(value: value, bound: value)
    }
}

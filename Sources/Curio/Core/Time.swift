import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// The kernel clock in seconds: the calling kernel's clock (CLOCK_MONOTONIC,
/// or its virtual clock, ``Kernel/Configuration/ClockSource``), and
/// CLOCK_MONOTONIC on a thread that runs no kernel. Deadlines given to
/// ``timeoutAt(_:_:)-(Double,_)`` and ``ignoreAt(_:_:)-(Double,_)`` are on this clock.
public func clock() -> Double {
    Double(ck_clock_now()) / 1e9
}

/// The scale of relative times given on the calling thread: its kernel's
/// ``Kernel/Configuration/timeScale``; 1 on a thread that runs no kernel.
var timeScale: Double { Kernel.current?.configuration.timeScale ?? 1 }

/// Nanoseconds for a timeout in seconds, or a clear error for a negative,
/// NaN or infinite one.
func nanoseconds(_ seconds: Double, _ what: String = "timeout") throws -> Int64 {
    guard seconds.isFinite, seconds >= 0 else {
        throw CurioUsageError(.invalidTimeout, "\(what) must be a finite number of seconds >= 0, got \(seconds)")
    }
    let scaled = seconds * timeScale
    // About 292 years; longer is "forever" for every practical purpose.
    if scaled >= 9.2e9 { return Int64.max / 2 }
    return Int64(scaled * 1e9)
}

/// The absolute deadline `seconds` from now.
func deadlineAfter(_ seconds: Double) throws -> Int64 {
    let ns = try nanoseconds(seconds)
    return ck_clock_now() &+ ns
}

func seconds(_ d: Duration) -> Double {
    let c = d.components
    return Double(c.seconds) + Double(c.attoseconds) / 1e18
}

/// Suspends the calling task for `seconds` (the seed's `curio.sleep`).
/// `Curio.sleep(0)` only moves the task behind the other ready tasks.
///
/// ```swift
/// try await Curio.sleep(1)
/// ```
///
/// A cancellation or a timeout interrupts the sleep with a thrown
/// ``CancelledError``. Negative, NaN or infinite values throw
/// ``CurioUsageError``.
public func sleep(_ seconds: Double, file: StaticString = #filePath, line: UInt = #line,
                  function: StaticString = #function) async throws {
    let t = try Kernel.currentTask()
    let site = CallSite(file: file, line: line, function: function)
    if seconds == 0 {
        try await t.kernel.yieldNow(t, site: site)
        return
    }
    let deadline = try deadlineAfter(seconds)
    _ = try await t.kernel.block(t, .timeSleep, on: nil, deadline: deadline, site: site)
}

/// Suspends the calling task for `duration`: `try await Curio.sleep(for: .milliseconds(50))`.
public func sleep(for duration: Duration, file: StaticString = #filePath, line: UInt = #line,
                  function: StaticString = #function) async throws {
    try await sleep(seconds(duration), file: file, line: line, function: function)
}

/// Runs `body`, cancelling it with ``TaskTimeout`` at its blocking call once
/// `seconds` have passed.
///
/// ```swift
/// let reply = try await timeoutAfter(5) { try await fetch() }
/// ```
///
/// Blocks nest as in curio 1.6: an inner block never extends an outer
/// deadline; when an outer deadline passes, the inner block unwinds with
/// ``TimeoutCancellationError`` and the block that owns the deadline throws
/// ``TaskTimeout``.
///
/// The deadline reaches every await inside the block (curio 1.6 rule 3),
/// not only Curio's own calls: a Swift-native await (`Task.sleep`, another
/// library's continuation, an `AsyncStream`) is cancelled in Swift's sense
/// when the deadline passes, and the block throws ``TaskTimeout`` as it
/// would for a Curio call:
///
/// ```swift
/// try await timeoutAfter(0.05) { try await Task.sleep(for: .seconds(5)) }  // TaskTimeout after 0.05 s
/// ```
///
/// Only the block's body is cancelled (it runs in a child Swift task that
/// is the same Curio task: same ``currentTask()``, same locks), never the
/// task itself, so `Task.sleep` and Curio calls after the block work as
/// before. Within the block, once its deadline has cancelled the body,
/// later Swift-native awaits there fail at once too (Swift cancellation
/// stays), while Curio's calls see the timeout once, as usual. A
/// continuation ends only if its code listens for cancellation
/// (`withTaskCancellationHandler`); an `AsyncStream`'s iteration just ends,
/// and the block's next await then throws. A real `cancel()` of the task
/// meanwhile is a cancellation, as outside a block. The one exception: in
/// code isolated to an actor the body stays on the actor, and only Curio's
/// calls see the deadline there.
public func timeoutAfter<T>(_ seconds: Double, _ body: () async throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    let deadline = try deadlineAfter(seconds)
    return try await t.kernel.withDeadline(t, deadline, ignore: false, body)!
}

/// Like ``timeoutAfter(_:_:)-(Double,_)`` with an absolute deadline on ``clock()``.
public func timeoutAt<T>(_ clockDeadline: Double, _ body: () async throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    let deadline = try absoluteDeadline(clockDeadline)
    return try await t.kernel.withDeadline(t, deadline, ignore: false, body)!
}

/// Runs `body`; if `seconds` pass first, cancels it and returns `nil`
/// instead of throwing.
///
/// ```swift
/// if let line = try await ignoreAfter(1, { try await stream.readLine() }) { ... }
/// ```
///
/// As with ``timeoutAfter(_:_:)-(Double,_)``, the deadline reaches every
/// await inside the block, Swift-native ones included (`Task.sleep`, a
/// continuation that listens for cancellation, an `AsyncStream`): they are
/// cancelled in Swift's sense, the block returns `nil`, and the task goes
/// on uncancelled.
public func ignoreAfter<T>(_ seconds: Double, _ body: () async throws -> T) async throws -> T? {
    let t = try Kernel.currentTask()
    let deadline = try deadlineAfter(seconds)
    return try await t.kernel.withDeadline(t, deadline, ignore: true, body)
}

/// Like ``ignoreAfter(_:_:)-(Double,_)`` with an absolute deadline on ``clock()``.
public func ignoreAt<T>(_ clockDeadline: Double, _ body: () async throws -> T) async throws -> T? {
    let t = try Kernel.currentTask()
    let deadline = try absoluteDeadline(clockDeadline)
    return try await t.kernel.withDeadline(t, deadline, ignore: true, body)
}

// MARK: - Blocks around Curio's own calls only

// The library's servers and streams put timeouts around bodies that await
// nothing but Curio's calls (a receive, a write, an Event). The task
// record's deadline reaches those without the child Swift task that rule 3
// needs for Swift-native awaits, so these skip it: a block then costs what
// it did before rule 3 (about a fifth), on every HTTP request.

/// ``timeoutAfter(_:_:)-(Double,_)`` for a body that awaits only Curio's calls.
package func curioTimeoutAfter<T>(_ seconds: Double, _ body: () async throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    return try await t.kernel.deadlineBlock(t, try deadlineAfter(seconds), ignore: false, scope: nil, body)!
}

/// ``timeoutAt(_:_:)`` for a body that awaits only Curio's calls.
package func curioTimeoutAt<T>(_ clockDeadline: Double, _ body: () async throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    return try await t.kernel.deadlineBlock(t, try absoluteDeadline(clockDeadline), ignore: false, scope: nil, body)!
}

/// ``ignoreAfter(_:_:)-(Double,_)`` for a body that awaits only Curio's calls.
package func curioIgnoreAfter<T>(_ seconds: Double, _ body: () async throws -> T) async throws -> T? {
    let t = try Kernel.currentTask()
    return try await t.kernel.deadlineBlock(t, try deadlineAfter(seconds), ignore: true, scope: nil, body)
}

func absoluteDeadline(_ clockDeadline: Double) throws -> Int64 {
    guard clockDeadline.isFinite else {
        throw CurioUsageError(.invalidTimeout, "deadline must be a finite clock() value, got \(clockDeadline)")
    }
    if clockDeadline >= 9.2e9 { return Int64.max / 2 }
    return clockDeadline <= 0 ? 0 : Int64(clockDeadline * 1e9)
}

extension Kernel {
    /// The nesting rules of curio 1.6's timeout blocks.
    ///
    /// Two more rules hold on the way out: a timeout that belongs to this
    /// block (or to an inner one already left) never outlives it — on
    /// io_uring a deadline can fire while a recv is being cancelled and
    /// the data still win, leaving the ``TaskTimeout`` pending with no
    /// block left to own it — and an error that replaces another carries
    /// the partial progress (`bytesRead` / `bytesSent`) over.
    ///
    /// The body runs in a child Swift task of its own, so that the deadline
    /// also reaches a Swift-native await (rule 3, DeadlineScope.swift) —
    /// unless no deadline can reach it there (see `deadlineReachesSwift`).
    func withDeadline<T>(_ t: AnyCurioTask, _ deadline: Int64, ignore: Bool,
                         _ body: () async throws -> T) async throws -> T? {
        // A caller isolated to an actor keeps its body on that actor: there
        // only Curio's own calls see the deadline. (Bound to a local first:
        // `#isolation` tested in place crashes Swift 6.3's -Onone codegen.)
        let isolation = #isolation
        guard isolation == nil, deadlineReachesSwift(t, deadline) else {
            return try await deadlineBlock(t, deadline, ignore: ignore, scope: nil, body)
        }
        // The child never outlives the block: `runScoped` waits for it.
        // (A local function, not a closure literal: a literal here would be
        // a concurrent closure, and region checking rejects `body` in it.)
        func scoped(_ escapable: @escaping () async throws -> T) async throws -> T? {
            try await scopedBlock(t, deadline, ignore: ignore, escapable)
        }
        return try await withoutActuallyEscaping(body, do: scoped)
    }

    private func scopedBlock<T>(_ t: AnyCurioTask, _ deadline: Int64, ignore: Bool,
                                _ body: @escaping () async throws -> T) async throws -> T? {
        let scope = DeadlineScope()
        return try await deadlineBlock(t, deadline, ignore: ignore, scope: scope) {
            try await self.runScoped(t, scope, body)
        }
    }

    /// Whether a block entered now needs a child task of its own for its
    /// deadline to reach a Swift-native await: not in a cancelled task (its
    /// deadlines are dropped), not with cancellation held back (it stays
    /// held for the whole body), not without a finite deadline, and not
    /// directly inside a block with a child whose deadline comes no later
    /// (that deadline passes first, cancels the outer child, and the nesting
    /// rules make this block unwind with ``TimeoutCancellationError``).
    @inline(__always)
    private func deadlineReachesSwift(_ t: AnyCurioTask, _ deadline: Int64) -> Bool {
        guard !t.cancelled, t.cancelDisabled == 0, min(deadline, t.effectiveDeadline) < Int64.max / 2 else {
            return false
        }
        if let s = t.scopes.last, t.timeouts.count == s.level + 1, t.effectiveDeadline <= deadline {
            return false
        }
        return true
    }

    func deadlineBlock<T>(_ t: AnyCurioTask, _ deadline: Int64, ignore: Bool, scope: DeadlineScope?,
                                  _ body: () async throws -> T) async throws -> T? {
        let level = t.timeouts.count
        scope?.level = level
        t.timeouts.append(deadline)
        let savedEffective = t.effectiveDeadline
        let savedDelivered = t.deadlineDelivered
        if deadline < t.effectiveDeadline {
            t.effectiveDeadline = deadline
            t.deadlineDelivered = false
        }
        func restore() {
            if let pending = t.pendingCancel as? TaskTimeout,
               judge(t, level: level, firedAt: pending.fired.nanoseconds) != .outer {
                t.pendingCancel = nil
            }
            t.timeouts.removeLast(t.timeouts.count - level)
            t.effectiveDeadline = savedEffective
            t.deadlineDelivered = savedDelivered
        }
        func timedOut(_ e: TaskTimeout) throws -> T? {
            let verdict = judge(t, level: level, firedAt: e.fired.nanoseconds)
            restore()
            switch verdict {
            case .none: throw carryProgress(of: e, to: UncaughtTimeoutError(firedAt: e.fired.nanoseconds))
            case .outer: throw carryProgress(of: e, to: TimeoutCancellationError(firedAt: e.fired.nanoseconds))
            case .mine: if ignore { return nil } else { throw e }
            }
        }
        do {
            let v = try await body()
            restore()
            return v
        } catch let e as TaskTimeout {
            return try timedOut(e)
        } catch let e as TimeoutCancellationError {
            let verdict = judge(t, level: level, firedAt: e.fired.nanoseconds)
            restore()
            switch verdict {
            case .none: throw carryProgress(of: e, to: UncaughtTimeoutError(firedAt: e.fired.nanoseconds))
            case .outer: throw e
            case .mine: if ignore { return nil } else { throw carryProgress(of: e, to: TaskTimeout(firedAt: e.fired.nanoseconds)) }
            }
        } catch is CancellationError where !t.cancelled && swiftTimeoutClock(t, scope) != nil {
            // The deadline cancelled a Swift-native await of the body: this
            // Swift cancellation is the timeout, fired at that clock.
            return try timedOut(TaskTimeout(firedAt: swiftTimeoutClock(t, scope)!))
        } catch {
            restore()
            throw error
        }
    }

    /// When a deadline cancelled the Swift task that ran `scope`'s body
    /// (this block's own child, already left), or, for a block without a
    /// child, the body of the scope around it.
    private func swiftTimeoutClock(_ t: AnyCurioTask, _ scope: DeadlineScope?) -> Int64? {
        if let scope { return scope.firedAt }
        return t.scopes.last?.firedAt
    }

    fileprivate enum Verdict { case none, outer, mine }

    /// Which block a timeout that fired at `firedAt` (kernel-clock
    /// nanoseconds, exact) belongs to: the outermost block whose deadline
    /// had passed by then.
    fileprivate func judge(_ t: AnyCurioTask, level: Int, firedAt: Int64) -> Verdict {
        for (i, d) in t.timeouts.enumerated() where d <= firedAt {
            return i < level ? .outer : (i == level ? .mine : .none)
        }
        return .none
    }
}

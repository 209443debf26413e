import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// What a suspended task's continuation resumes with: how its wait ended.
/// Typed, so that a byte count, an errno and "timed out" never share one
/// integer.
enum Wake: Equatable {
    /// Woken by the thing it waited for (or its sleep ran out).
    case normal
    /// The wait's own deadline passed.
    case timeout
    /// Cancelled (or its task deadline passed): throw `pendingCancel`.
    case cancel
    /// An I/O request finished: its result, >= 0 or -errno.
    case completed(Int)
}

/// How a blocking wait ended, as the traps hand it to the primitives (a
/// cancellation is thrown instead).
enum WaitOutcome: Equatable {
    /// Woken by its waker (or, for a sleep, its time ran out).
    case woken
    /// The deadline given to the wait passed first.
    case timedOut
}

/// The one thing that undoes a task's current wait (curio's `cancel_func`).
/// The trap that suspends the task sets it, the waker clears it, and a
/// cancellation or timeout runs it (`Kernel.interrupt`). An enum with the
/// link as payload, not a closure: setting it allocates nothing.
enum CancelHook {
    /// Nothing to unlink: a sleep (only its timer wakes it), or a waker
    /// outside the kernel that holds the task and finds it resumed.
    case none
    /// Linked into a wait queue: unlink it, then resume it.
    case queue(Unmanaged<WaitQueue>)
    /// An I/O request in flight: ask the backend to cancel it; its
    /// completion resumes the task, so the buffer is free once it has.
    case io(UInt64)
    /// The same request after a cancellation asked it to stop.
    case ioCancelled(UInt64)
    /// The same request after its own deadline asked it to stop.
    case ioTimedOut(UInt64)
    /// In the yield list: it is resumed this turn anyway and checks then.
    case yield
}

/// The absolute deadline for an optional `timeout:` in seconds (`.max`
/// when there is none), or ``CurioUsageError`` with kind `.invalidTimeout`
/// for a negative, NaN or infinite one. Every blocking call that takes an
/// optional timeout validates it here.
@inline(__always)
func syncDeadline(_ timeout: Double?) throws -> Int64 {
    guard let timeout else { return .max }
    return try deadlineAfter(timeout)
}

extension AnyCurioTask {
    /// Whether the task's timeout deadline (``timeoutAfter(_:_:)``) is due
    /// at `now`: the one place that decides it. Never after it was
    /// delivered, and never once the task is cancelled (cancelling drops
    /// the deadlines, as curio does).
    @inline(__always)
    func taskDeadlineDue(at now: Int64) -> Bool {
        now >= effectiveDeadline && !deadlineDelivered && !cancelled
    }

    /// The clock reading at which the task's timeout deadline is found due,
    /// or nil; reads the clock only when a deadline is set.
    @inline(__always)
    func taskDeadlineDueNow() -> Int64? {
        guard effectiveDeadline != .max else { return nil }
        let now = kernel.now
        return taskDeadlineDue(at: now) ? now : nil
    }

    /// True while the task waits in the yield list (`Curio.sleep(0)`).
    var yielding: Bool {
        if case .yield = cancelHook { return true }
        return false
    }

    /// The I/O request the task waits for, or 0.
    var ioHandle: UInt64 {
        switch cancelHook {
        case .io(let h), .ioCancelled(let h), .ioTimedOut(let h): return h
        default: return 0
        }
    }
}

/// The traps: the only place where tasks suspend. Each one records what the
/// task waits for (state, call site, deadline) for the monitor, sets the
/// wait's cancel hook, and suspends on a continuation that the kernel
/// resumes exactly once with a ``Wake``.
extension Kernel {
    /// Throws the cancellation or timeout due to `t` at a blocking call.
    @inline(__always)
    func checkDeliverable(_ t: AnyCurioTask) throws {
        guard t.cancelDisabled == 0 else { return }
        if let e = t.pendingCancel {
            t.pendingCancel = nil
            throw e
        }
        if let now = t.taskDeadlineDueNow() {
            t.deadlineDelivered = true
            throw TaskTimeout(firedAt: now)
        }
    }

    /// Suspends `t` until it is woken, its own `deadline` passes
    /// (``WaitOutcome/timedOut``) or it is cancelled (throws). `queue`, if
    /// given, is where wakers find it; without one only the timer, or a
    /// waker that holds the task (``resume(_:_:)``), can wake it.
    @inline(__always)
    func block(_ t: AnyCurioTask, _ state: TaskState, on queue: WaitQueue?,
               deadline: Int64, site: CallSite) async throws -> WaitOutcome {
        if _slowPath(t.swiftTask == nil) {
            // An adopted Swift task: Swift cancellation interrupts it too (Adoption.swift).
            return try await listeningForSwiftCancel(t) {
                try await blockNow(t, state, on: queue, deadline: deadline, site: site)
            }
        }
        return try await blockNow(t, state, on: queue, deadline: deadline, site: site)
    }

    @inline(__always)
    private func blockNow(_ t: AnyCurioTask, _ state: TaskState, on queue: WaitQueue?,
                          deadline: Int64, site: CallSite) async throws -> WaitOutcome {
        try checkDeliverable(t)
        guard arm(t, state, deadline: deadline, site: site) else { throw Kernel.timerUnavailable() }
        queue?.append(t)  // sets the cancel hook
        switch await withUnsafeContinuation({ t.continuation = $0 }) {
        case .normal, .completed: return .woken
        case .timeout: return .timedOut
        case .cancel: throw t.takeCancel()
        }
    }

    /// Waits for a waker outside the kernel's sight (a worker thread,
    /// another thread's put, a signal) until `done()` holds after a wake-up,
    /// or the deadline passes. Such a wait is not part of a deadlock, and
    /// the loop watches briefly for the waker's post before sleeping.
    func blockExternally(_ t: AnyCurioTask, _ state: TaskState, on queue: WaitQueue?,
                         deadline: Int64, site: CallSite,
                         until done: () -> Bool) async throws -> WaitOutcome {
        externalWaits += 1
        defer { externalWaits -= 1 }
        while true {
            let r = try await block(t, state, on: queue, deadline: deadline, site: site)
            if r == .timedOut || done() { return r }
        }
    }

    /// Waits in `queue` with cancellations and task deadlines held back
    /// (they stay pending for the next blocking call) and no deadline of its
    /// own: ``Condition`` takes its lock back this way before a
    /// cancellation propagates out of its wait.
    func blockUninterrupted(_ t: AnyCurioTask, _ state: TaskState, on queue: WaitQueue,
                            site: CallSite) async {
        do {
            _ = try await holdingCancellation(t) {
                try await block(t, state, on: queue, deadline: .max, site: site)
            }
        } catch {
            // With cancellation held and no deadline, block neither throws
            // nor times out; getting here is a kernel bug.
            preconditionFailure("curio: a wait with cancellation disabled was interrupted by \(error)")
        }
    }

    /// Runs `body` with `t`'s cancellations and task deadlines held back
    /// (``disableCancellation(_:)`` for code inside Curio): what arrives
    /// meanwhile is delivered at the first blocking call after it.
    @inline(__always)
    func holdingCancellation<R>(_ t: AnyCurioTask, _ body: () async throws -> R) async rethrows -> R {
        t.cancelDisabled += 1
        defer { t.cancelDisabled -= 1 }
        return try await body()
    }

    /// Records the wait and starts its timer (the earlier of the operation's
    /// own deadline and the task's timeout deadline). False when the C
    /// kernel has no memory for the timer: the caller must not wait on a
    /// deadline that would never fire.
    @inline(__always)
    func arm(_ t: AnyCurioTask, _ state: TaskState, deadline: Int64, site: CallSite) -> Bool {
        // The timer of a Swift-native await in a timeout block, still armed
        // when the body came back on a job the loop did not pair (an actor's).
        if _slowPath(t.timer != 0) { scopeResumes(t) }
        t.state = state
        t.site = site
        if t.firstFunction == nil { t.firstFunction = site.function }
        t.ownDeadline = deadline
        var when = deadline
        if t.cancelDisabled == 0 && !t.deadlineDelivered && t.effectiveDeadline < when {
            when = t.effectiveDeadline
        }
        t.wakeDeadline = when
        if when != .max {
            t.timer = ck_timer_add(ck, when, Unmanaged.passUnretained(t).toOpaque())
            if _slowPath(t.timer == 0) { return false }
        }
        return true
    }

    /// What a wait whose timer could not be started throws.
    static func timerUnavailable() -> KernelError {
        KernelError(errno: ENOMEM, operation: "starting the timer of a timeout")
    }

    /// Runs one I/O request for `t`: its result, >= 0 or -errno (-ETIMEDOUT
    /// when the operation's own `deadline` passed). A request that the
    /// backend completes at once returns without suspending.
    ///
    /// A cancellation asks the backend to cancel and waits for the
    /// request's completion, so the buffer is never in use after this
    /// returns; if the request completed first, its result is returned and
    /// the cancellation waits for the next blocking call (no data is lost).
    /// Both backends wait for readiness themselves (EAGAIN and a connect in
    /// progress are retried below the backend interface), so one request
    /// is one answer here.
    @inline(__always)
    func performIO(_ t: AnyCurioTask, _ request: IORequest, _ state: TaskState,
                   deadline: Int64, site: CallSite) async throws -> Int {
        if _slowPath(t.swiftTask == nil) {
            return try await listeningForSwiftCancel(t) {
                try await submitIONow(t, request, state, deadline: deadline, site: site)
            }
        }
        return try await submitIONow(t, request, state, deadline: deadline, site: site)
    }

    @inline(__always)
    private func submitIONow(_ t: AnyCurioTask, _ request: IORequest, _ state: TaskState,
                             deadline: Int64, site: CallSite) async throws -> Int {
        try checkDeliverable(t)
        var handle: UInt64 = 0
        var a = request.args
        let r = ck_submit(ck, &a, Unmanaged.passUnretained(t).toOpaque(), &handle)
        if r != Kernel.pending { return Int(r) }
        let armed = arm(t, state, deadline: deadline, site: site)
        t.cancelHook = .io(handle)
        if _slowPath(!armed) {
            // No timer, so no deadline could end this wait: cancel the
            // request and wait for it (the buffer stays owned until then).
            ck_cancel(ck, handle)
        }
        switch await withUnsafeContinuation({ t.continuation = $0 }) {
        case .completed(let n):
            if _slowPath(!armed) && n == -Int(ECANCELED) { throw Kernel.timerUnavailable() }
            return n
        case .cancel:
            if _slowPath(!armed) { throw Kernel.timerUnavailable() }
            throw t.takeCancel()
        case .timeout:
            if _slowPath(!armed) { throw Kernel.timerUnavailable() }
            return -Int(ETIMEDOUT)
        case .normal:
            preconditionFailure("curio: an I/O wait was resumed without its completion")
        }
    }

    /// `ck_submit`'s answer for a request that will complete later (CK_PENDING).
    static let pending = Int64.min

    /// Moves `t` behind every other ready task (`Curio.sleep(0)`).
    func yieldNow(_ t: AnyCurioTask, site: CallSite) async throws {
        if _slowPath(t.swiftTask == nil) {
            return try await listeningForSwiftCancel(t) { try await yieldNowBody(t, site: site) }
        }
        try await yieldNowBody(t, site: site)
    }

    private func yieldNowBody(_ t: AnyCurioTask, site: CallSite) async throws {
        try checkDeliverable(t)
        t.state = .ready
        t.site = site
        if t.firstFunction == nil { t.firstFunction = site.function }
        t.wakeDeadline = .max
        t.cancelHook = .yield
        yielders.append(t)
        _ = await withUnsafeContinuation { t.continuation = $0 }
        try checkDeliverable(t)
    }

    /// Resumes a suspended task with `value`; the job that results is
    /// queued behind the ones already ready. The caller has unlinked it.
    @inline(__always)
    func resume(_ t: AnyCurioTask, _ value: Wake) {
        guard let c = t.continuation else { return }
        t.continuation = nil
        t.cancelHook = .none
        if t.timer != 0 {
            ck_timer_cancel(ck, t.timer)
            t.timer = 0
        }
        t.state = .ready
        let saved = ck_tls_resuming()
        ck_set_tls_resuming(Unmanaged.passUnretained(t).toOpaque())
        let before = ck_ready_count(readyQueue)
        c.resume(returning: value)
        ck_set_tls_resuming(saved)
        assert(enqueuedOneJob(since: before),
               "curio: resuming a continuation did not enqueue its job synchronously (RuntimeAssumptions.swift, 2)")
    }

    /// Wakes the first task of `queue`; returns it, or nil if none waited.
    @discardableResult
    func wakeFirst(_ queue: WaitQueue, _ value: Wake = .normal) -> AnyCurioTask? {
        guard let t = queue.popFirst() else { return nil }
        resume(t, value)
        return t
    }

    /// Wakes every task of `queue`, in arrival order.
    func wakeAll(_ queue: WaitQueue, _ value: Wake = .normal) {
        while let t = queue.popFirst() { resume(t, value) }
    }

    /// Ends `t`'s wait early with `why` (`.cancel` or `.timeout`) by
    /// running its cancel hook.
    private func interrupt(_ t: AnyCurioTask, _ why: Wake) {
        switch t.cancelHook {
        case .io(let h), .ioCancelled(let h), .ioTimedOut(let h):
            // The completion resumes it (with `why` if it was cancelled).
            t.cancelHook = why == .cancel ? .ioCancelled(h) : .ioTimedOut(h)
            ck_cancel(ck, h)
        case .yield:
            return
        case .queue(let q):
            q.takeUnretainedValue().remove(t)
            resume(t, why)
        case .none:
            resume(t, why)
        }
    }

    /// Requests cancellation of `t` with `error` (a TaskCancelled or a
    /// timeout). A suspended task with cancellation enabled is interrupted
    /// now; otherwise the error waits for its next blocking call.
    ///
    /// Only the first ``TaskCancelled`` counts: a task that is already
    /// cancelled is handling it (maybe cleaning up), and a second one
    /// must not interrupt that; the caller just waits for the end.
    /// Cancelling also drops the task's deadlines: a timeout that was
    /// pending is replaced by the cancellation.
    func deliverCancel(_ t: AnyCurioTask, _ error: any Error) {
        guard !t.terminated else { return }
        if error is TaskCancelled {
            if t.cancelled { return }
            t.swiftTask?.cancel()
            t.cancelled = true
        } else if t.cancelled {
            return
        }
        if t.pendingCancel == nil || error is TaskCancelled { t.pendingCancel = error }
        if t.continuation != nil && t.cancelDisabled == 0 {
            interrupt(t, .cancel)
        }
    }

    /// A wait's timer fired at `deadline`: the task's timeout deadline
    /// (delivered as a cancellation) or the operation's own.
    func timerFired(_ t: AnyCurioTask, deadline: Int64) {
        t.timer = 0
        guard t.continuation != nil else {
            // A Swift-native await inside a timeout block (DeadlineScope.swift).
            if t.state == .swiftAwait { swiftAwaitDeadlinePassed(t, deadline: deadline) }
            return
        }
        if t.cancelDisabled == 0 && t.taskDeadlineDue(at: deadline) {
            t.deadlineDelivered = true
            if t.pendingCancel == nil { t.pendingCancel = TaskTimeout(firedAt: now) }
            interrupt(t, .cancel)
        } else if deadline >= t.ownDeadline {
            interrupt(t, .timeout)
        } else if t.ownDeadline != .max {
            // The task deadline passed while cancellation is disabled: keep
            // waiting for the operation's own deadline.
            t.wakeDeadline = t.ownDeadline
            t.timer = ck_timer_add(ck, t.ownDeadline, Unmanaged.passUnretained(t).toOpaque())
            if _slowPath(t.timer == 0) {
                // No memory for the timer: the operation's own deadline
                // could never end the wait. Fail it now instead (even with
                // cancellation disabled: it is an error, not a cancel).
                t.wakeDeadline = .max
                t.pendingCancel = Kernel.timerUnavailable()
                interrupt(t, .cancel)
            }
        } else {
            t.wakeDeadline = .max
        }
    }

    /// `t`'s I/O request completed with `result` (>= 0 or -errno). A
    /// request cancelled by an interruption reports that instead.
    func ioCompleted(_ t: AnyCurioTask, result: Int64) {
        var wake = Wake.completed(Int(result))
        if result == -Int64(ECANCELED) {
            switch t.cancelHook {
            case .ioCancelled: wake = .cancel
            case .ioTimedOut: wake = .timeout
            default: break
            }
        }
        t.cancelHook = .none
        resume(t, wake)
    }
}

extension AnyCurioTask {
    /// Takes the pending cancellation to throw it.
    func takeCancel() -> any Error {
        let e = pendingCancel ?? TaskCancelled()
        pendingCancel = nil
        return e
    }
}

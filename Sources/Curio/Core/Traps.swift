import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// How a suspended task was woken: the value its continuation resumes with.
/// I/O waits resume with the operation's result (>= 0 or -errno) instead.
enum Wake {
    /// Woken by the thing it waited for (or its sleep ran out).
    static let normal = 0
    /// The operation's own timeout passed.
    static let timeout = Int.min
    /// Cancelled (or its task deadline passed): throw `pendingCancel`.
    static let cancel = Int.min + 1
}

/// The traps: the only place where tasks suspend. Each one records what the
/// task waits for (state, call site, deadline) for the monitor, links the
/// task where its waker will find it, and suspends on a continuation that
/// the kernel resumes exactly once.
extension Kernel {
    /// Throws the cancellation or timeout due to `t` at a blocking call.
    @inline(__always)
    func checkDeliverable(_ t: AnyCurioTask) throws {
        guard t.cancelDisabled == 0 else { return }
        if let e = t.pendingCancel {
            t.pendingCancel = nil
            throw e
        }
        // A cancelled task's deadlines are dropped (curio clears the
        // pending timeout when it cancels): none fires into its clean-up.
        if t.effectiveDeadline != .max && !t.deadlineDelivered && !t.cancelled {
            let now = ck_now_ns()
            if now >= t.effectiveDeadline {
                t.deadlineDelivered = true
                throw TaskTimeout(clock: Double(now) / 1e9)
            }
        }
    }

    /// Suspends `t` until it is woken, its own `deadline` passes (result
    /// ``Wake/timeout``) or it is cancelled (throws). `queue`, if given, is
    /// where wakers find it; without one only the timer can wake it.
    @inline(__always)
    func block(_ t: AnyCurioTask, _ state: TaskState, on queue: WaitQueue?,
               deadline: Int64, site: CallSite) async throws -> Int {
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
                          deadline: Int64, site: CallSite) async throws -> Int {
        try checkDeliverable(t)
        guard arm(t, state, deadline: deadline, site: site) else { throw Kernel.timerUnavailable() }
        queue?.append(t)
        let r = await withUnsafeContinuation { t.continuation = $0 }
        if r == Wake.cancel { throw t.takeCancel() }
        return r
    }

    /// Records the wait and starts its timer (the earlier of the operation's
    /// own deadline and the task's timeout deadline). False when the C
    /// kernel has no memory for the timer: the caller must not wait on a
    /// deadline that would never fire.
    @inline(__always)
    func arm(_ t: AnyCurioTask, _ state: TaskState, deadline: Int64, site: CallSite) -> Bool {
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

    /// Runs one I/O request for `t`: its result (>= 0) or -errno, or
    /// ``Wake/timeout`` when the operation's own deadline passed. On epoll
    /// a request that can complete at once does so without suspending.
    ///
    /// A cancellation asks the backend to cancel and waits for the
    /// request's completion, so the buffer is never in use after this
    /// returns; if the request completed first, its result is returned and
    /// the cancellation waits for the next blocking call (no data is lost).
    func performIO(_ t: AnyCurioTask, _ args: ck_request_args, _ state: TaskState,
                   deadline: Int64, site: CallSite) async throws -> Int {
        // Both backends wait for readiness themselves (io_uring turns EAGAIN
        // and a connect in progress into a poll and retries, below the
        // backend interface), so one request is one answer here.
        try await submitIO(t, args, state, deadline: deadline, site: site)
    }

    private func submitIO(_ t: AnyCurioTask, _ args: ck_request_args, _ state: TaskState,
                          deadline: Int64, site: CallSite) async throws -> Int {
        if _slowPath(t.swiftTask == nil) {
            return try await listeningForSwiftCancel(t) {
                try await submitIONow(t, args, state, deadline: deadline, site: site)
            }
        }
        return try await submitIONow(t, args, state, deadline: deadline, site: site)
    }

    private func submitIONow(_ t: AnyCurioTask, _ args: ck_request_args, _ state: TaskState,
                             deadline: Int64, site: CallSite) async throws -> Int {
        try checkDeliverable(t)
        var handle: UInt64 = 0
        var a = args
        let r = ck_submit(ck, &a, Unmanaged.passUnretained(t).toOpaque(), &handle)
        if r != Int64.min { return Int(r) }  // CK_PENDING
        let armed = arm(t, state, deadline: deadline, site: site)
        t.ioHandle = handle
        t.ioInterrupt = 0
        if _slowPath(!armed) {
            // No timer, so no deadline could end this wait: cancel the
            // request and wait for it (the buffer stays owned until then).
            ck_cancel(ck, handle)
        }
        let res = await withUnsafeContinuation { t.continuation = $0 }
        if _slowPath(!armed) && res == -Int(ECANCELED) { throw Kernel.timerUnavailable() }
        let reason = t.ioInterrupt
        t.ioInterrupt = 0
        if reason != 0 && res == -Int(ECANCELED) {
            if reason == Wake.cancel { throw t.takeCancel() }
            return Wake.timeout
        }
        return res
    }

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
        t.yielding = true
        yielders.append(t)
        _ = await withUnsafeContinuation { t.continuation = $0 }
        t.yielding = false
        try checkDeliverable(t)
    }

    /// Resumes a suspended task with `value`; the job that results is
    /// queued behind the ones already ready.
    @inline(__always)
    func resume(_ t: AnyCurioTask, _ value: Int) {
        guard let c = t.continuation else { return }
        t.continuation = nil
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
    func wakeFirst(_ queue: WaitQueue, _ value: Int = Wake.normal) -> AnyCurioTask? {
        guard let t = queue.popFirst() else { return nil }
        resume(t, value)
        return t
    }

    /// Wakes every task of `queue`, in arrival order.
    func wakeAll(_ queue: WaitQueue, _ value: Int = Wake.normal) {
        while let t = queue.popFirst() { resume(t, value) }
    }

    /// Takes `t` out of whatever it waits on and resumes it with `value`,
    /// except for I/O, which is cancelled and resumes on completion.
    private func interrupt(_ t: AnyCurioTask, _ value: Int) {
        if t.ioHandle != 0 {
            t.ioInterrupt = value
            ck_cancel(ck, t.ioHandle)
            return
        }
        // A yield is resumed this turn anyway and checks on its own.
        if t.yielding { return }
        if let q = t.waitQueue { q.remove(t) }
        resume(t, value)
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
            interrupt(t, Wake.cancel)
        }
    }

    func timerFired(_ t: AnyCurioTask, deadline: Int64) {
        t.timer = 0
        guard t.continuation != nil else { return }
        if t.cancelDisabled == 0 && !t.deadlineDelivered && !t.cancelled && deadline >= t.effectiveDeadline {
            t.deadlineDelivered = true
            if t.pendingCancel == nil { t.pendingCancel = TaskTimeout(clock: Double(ck_now_ns()) / 1e9) }
            interrupt(t, Wake.cancel)
        } else if deadline >= t.ownDeadline {
            interrupt(t, Wake.timeout)
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
                interrupt(t, Wake.cancel)
            }
        } else {
            t.wakeDeadline = .max
        }
    }

    func ioCompleted(_ t: AnyCurioTask, result: Int64) {
        t.ioHandle = 0
        resume(t, Int(result))
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

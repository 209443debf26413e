import CCurioKernel

/// What a kernel's backend (io_uring or epoll) has done since the kernel
/// was made: the counters behind the metrics of ``CurioMetricLabel``,
/// read at once (``Kernel/backendStatistics()``). Useful to see whether a
/// server batches its submissions, how often requests finish without
/// waiting, and whether anything waited for memory.
public struct BackendStatistics: Sendable, Equatable {
    /// Polls of the backend by the run loop.
    public var polls: Int
    /// `io_uring_enter` / `epoll_wait` system calls.
    public var enters: Int
    /// Wake-ups other threads sent to the kernel (eventfd writes).
    public var wakeupsSent: Int
    /// Requests that finished on their first try, with no wait and no submission.
    public var immediate: Int
    /// io_uring submission queue entries handed to the kernel (0 on epoll);
    /// `submitted / enters` is the batching.
    public var submitted: Int
    /// io_uring: operations that found nothing to do (`EAGAIN`) and became a readiness poll.
    public var readinessRetries: Int
    /// io_uring: submissions that waited for a free queue entry.
    public var submissionWaits: Int
    /// Completions, timers and posts that waited a turn for memory.
    public var deferredEvents: Int
    /// Connections a multishot accept closed at once because there was no
    /// memory to report them (their peers see the close).
    public var acceptsDropped: Int
    /// io_uring: `sendAll`s that returned at once and left their bytes to
    /// the loop's next submission (0 on epoll). Each is also one of
    /// ``submitted``.
    public var sendsBehind: Int = 0
    /// Virtual clock (``Kernel/Configuration/clock``): jumps to the next
    /// deadline the idle loop made.
    public var clockJumps: Int = 0
    /// Now, not a count since creation: timers armed and not yet fired
    /// (sleeps, timeouts, waits with a deadline).
    public var pendingTimers: Int = 0
    /// Now: I/O requests handed to the backend and not yet completed.
    public var pendingRequests: Int = 0
}

extension Kernel {
    /// The backend counters of the calling task's kernel. Throws
    /// ``CurioUsageError`` outside a kernel's task.
    public static func backendStatistics() throws -> BackendStatistics {
        let t = try Kernel.currentTask("backendStatistics")
        return t.kernel.statistics
    }

    /// The backend counters of this kernel (its thread only).
    var statistics: BackendStatistics {
        var s = ck_stats()
        ck_get_stats(ck, &s)
        return BackendStatistics(
            polls: Int(s.polls), enters: Int(s.enters), wakeupsSent: Int(s.wakeups_sent),
            immediate: Int(s.immediate), submitted: Int(s.submitted),
            readinessRetries: Int(s.readiness_retries), submissionWaits: Int(s.sqe_waits),
            deferredEvents: Int(s.deferred_events), acceptsDropped: Int(s.accepts_dropped),
            sendsBehind: Int(s.sends_behind), clockJumps: Int(s.clock_jumps),
            pendingTimers: Int(ck_timer_count(ck)), pendingRequests: Int(ck_pending_requests(ck)))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A counting semaphore for parking plain threads, in memory of its own:
/// a `sem_t` must not move while threads wait on it, and a Swift stored
/// property has no stable address, so it lives in a heap allocation made in
/// `init` and freed in `deinit`. Its owner (a `WorkerPool`, which lives for
/// the whole process) keeps it alive for as long as any thread can wait.
// @unchecked Sendable: the pointer never changes after init, and sem_wait /
// sem_post are thread-safe on the memory it points to.
final class ThreadParker: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<sem_t>

    init() {
        sem = .allocate(capacity: 1)
        sem_init(sem, 0, 0)
    }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    /// Blocks until a matching ``unpark()`` (one that came earlier counts).
    func park() {
        while sem_wait(sem) != 0 && errno == EINTR {}
    }

    /// ``park()`` for at most `nanoseconds`: false when the time ran out
    /// with no ``unpark()`` taken.
    func park(nanoseconds: Int64) -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)  // sem_timedwait's clock
        let end = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) + nanoseconds
        ts.tv_sec = Int(end / 1_000_000_000)
        ts.tv_nsec = Int(end % 1_000_000_000)
        while true {
            if sem_timedwait(sem, &ts) == 0 { return true }
            if errno != EINTR { return false }
        }
    }

    /// Lets one parked (or the next parking) thread go.
    func unpark() {
        sem_post(sem)
    }
}

/// A bounded pool of worker threads. Threads start on demand up to the
/// bound; one that finds no work for ``idleNanoseconds`` ends, so a
/// program that stopped using the pool holds none of its threads.
final class WorkerPool: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var head = 0
        var threads = 0
        /// Threads parked (or about to park) with no wake-up granted yet.
        var idle = 0
    }
    private let state = Locked(State())
    private let parker = ThreadParker()
    /// Workers that just finished a job and spin briefly for the next one:
    /// waking a sleeping thread costs tens of microseconds on a VM, more
    /// than most jobs take.
    private let spinning = Atomic<Int>(0)
    private let queued = Atomic<Int>(0)
    static let spinNanoseconds: Int64 = 50_000
    let limit: Int
    let name: String
    /// How long an idle thread waits for work before it ends.
    let idleNanoseconds: Int64
    /// Called on a thread that ends for idleness, as its last act (tests).
    let onIdleExit: (@Sendable () -> Void)?

    init(limit: Int, name: String, idleNanoseconds: Int64 = 10_000_000_000,
         onIdleExit: (@Sendable () -> Void)? = nil) {
        self.limit = max(1, limit)
        self.name = name
        self.idleNanoseconds = idleNanoseconds
        self.onIdleExit = onIdleExit
    }

    /// Threads the pool has now (started and not ended).
    var threadCount: Int { state.withLock { $0.threads } }

    /// For CPU-bound work: one thread per core.
    static let cpu = WorkerPool(limit: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), name: "curio-cpu")
    /// For blocking calls (name resolution, files on epoll): more threads,
    /// since they mostly wait.
    static let blocking = WorkerPool(limit: 64, name: "curio-io")

    func submit(_ job: @escaping @Sendable () -> Void) {
        enum Action { case none, unpark, start }
        let action = state.withLock { s -> Action in
            s.jobs.append(job)
            queued.add(1, ordering: .releasing)
            if spinning.load(ordering: .acquiring) > 0 {
                // A spinning worker takes it: it re-checks the queue under
                // the lock after it stops spinning, so nothing is missed.
                return .none
            } else if s.idle > 0 {
                s.idle -= 1
                return .unpark
            } else if s.threads < limit {
                s.threads += 1
                return .start
            }
            return .none
        }
        switch action {
        case .none: break
        case .unpark: parker.unpark()
        case .start: startThread()
        }
    }

    private func startThread() {
        var tid = pthread_t()
        let me = Unmanaged.passRetained(self).toOpaque()
        let r = pthread_create(&tid, nil, { arg in
            let pool = Unmanaged<WorkerPool>.fromOpaque(arg!).takeRetainedValue()
            pool.work()
            return nil
        }, me)
        if r != 0 {
            Unmanaged<WorkerPool>.fromOpaque(me).release()
            let orphaned = state.withLock { s -> Bool in
                s.threads -= 1
                // With no thread at all, the job just queued would wait for
                // the next submit: run it here rather than strand it.
                return s.threads == 0 && s.head < s.jobs.count
            }
            if orphaned { drainOnCaller() }
            return
        }
        pthread_detach(tid)
    }

    /// Runs queued jobs on the submitting thread (only when no worker
    /// thread can be started at all).
    private func drainOnCaller() {
        while let job = take() { job() }
    }

    /// The next job, or nil when the queue is empty.
    private func take() -> (@Sendable () -> Void)? {
        state.withLock { pop(&$0) }
    }

    /// Takes the first job of `s` (under the lock).
    private func pop(_ s: inout State) -> (@Sendable () -> Void)? {
        guard s.head < s.jobs.count else { return nil }
        let job = s.jobs[s.head]
        s.head += 1
        queued.subtract(1, ordering: .relaxed)
        if s.head == s.jobs.count {
            s.jobs.removeAll(keepingCapacity: true)
            s.head = 0
        }
        return job
    }

    private func work() {
        while true {
            let job = state.withLock { s -> (@Sendable () -> Void)? in
                if let job = pop(&s) { return job }
                s.idle += 1
                return nil
            }
            guard let job else {
                // `submit` took a thread off `idle` and granted one wake-up;
                // a grant made before we park is kept by the semaphore, so
                // none is lost.
                if parker.park(nanoseconds: idleNanoseconds) { continue }
                // Timed out. Grants are not addressed to a thread: while
                // some parked thread is still counted idle, one of them may
                // end, and this is it; with none counted, every parked
                // thread (this one too) holds a grant, which it takes.
                let ends = state.withLock { s -> Bool in
                    guard s.idle > 0 else { return false }
                    s.idle -= 1
                    s.threads -= 1
                    return true
                }
                if ends {
                    onIdleExit?()
                    return
                }
                parker.park()
                continue
            }
            job()
            spinning.add(1, ordering: .releasing)
            let until = monotonicNanoseconds() + WorkerPool.spinNanoseconds
            while queued.load(ordering: .acquiring) == 0 && monotonicNanoseconds() < until {}
            spinning.subtract(1, ordering: .releasing)
        }
    }
}

/// What a worker's job and the waiting task share, on the kernel's thread
/// only: the worker hands its result over inside the message it posts.
private struct WorkHandOff<T: Sendable> {
    var result: Result<T, any Error>?
    /// The waiting task gave up (cancelled) before the result arrived.
    var abandoned = false
}

extension Kernel {
    /// Runs `work` on `pool` while `t` waits in `state`; the kernel thread
    /// stays free. A cancelled wait returns at once; the work finishes on
    /// its own and its result is dropped (or handed to `onCancel`).
    func runOnWorker<T: Sendable>(_ t: AnyCurioTask, pool: WorkerPool, state: TaskState, site: CallSite,
                                  onCancel: (@Sendable (Result<T, any Error>) -> Void)?,
                                  _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try checkDeliverable(t)
        let box = KernelBound(WorkHandOff<T>(), kernel: self)
        let waiter = KernelBound(t, kernel: self)
        // The job keeps the kernel alive until it has posted its result.
        pool.submit { [self] in
            let result = Result { try work() }
            self.postMessage { k in
                if box.value.abandoned {
                    onCancel?(result)
                } else {
                    box.value.result = result
                    // Does nothing if the task was cancelled meanwhile and
                    // has not run yet; it then finds the result below.
                    k.resume(waiter.value, Wake.normal)
                }
            }
        }
        do {
            _ = try await blockExternally(t, state, on: nil, deadline: .max, site: site) {
                box.value.result != nil
            }
        } catch {
            if let result = box.value.result {
                onCancel?(result)
            } else {
                box.value.abandoned = true
            }
            throw error
        }
        return try box.value.result!.get()
    }
}

/// Runs CPU-heavy `work` on a worker thread (one per core) so the kernel
/// stays responsive; the calling task waits in `CPU_WAIT`.
///
/// ```swift
/// total += try await runCPUBound { fib(n) }
/// ```
///
/// Errors thrown by `work` come back to the caller. A cancelled call
/// returns at once with the cancellation; the work still runs to its end on
/// its thread (threads cannot be interrupted) and its result is dropped, or
/// passed to `onCancel`.
public func runCPUBound<T: Sendable>(onCancel: (@Sendable (Result<T, any Error>) -> Void)? = nil,
                                     file: StaticString = #filePath, line: UInt = #line,
                                     function: StaticString = #function,
                                     _ work: @escaping @Sendable () throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    return try await t.kernel.runOnWorker(t, pool: .cpu, state: .cpuWait,
                                          site: CallSite(file: file, line: line, function: function),
                                          onCancel: onCancel, work)
}

/// Runs blocking `work` (a system call, a C library that blocks) on a
/// worker thread; the calling task waits in `IO_WAIT`. Same cancellation
/// rules as ``runCPUBound(onCancel:file:line:function:_:)``.
public func runInThread<T: Sendable>(onCancel: (@Sendable (Result<T, any Error>) -> Void)? = nil,
                                     file: StaticString = #filePath, line: UInt = #line,
                                     function: StaticString = #function,
                                     _ work: @escaping @Sendable () throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    return try await t.kernel.runOnWorker(t, pool: .blocking, state: .ioWait,
                                          site: CallSite(file: file, line: line, function: function),
                                          onCancel: onCancel, work)
}

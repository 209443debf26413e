#if canImport(Glibc)
import Glibc
#endif
import CCurioKernel
import Synchronization

/// A bounded pool of worker threads. Threads start on demand up to the
/// bound and then stay, waiting for work.
final class WorkerPool: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var threads = 0
    private var idle = 0
    /// Workers that just finished a job and spin briefly for the next one:
    /// waking a sleeping thread costs tens of microseconds on a VM, more
    /// than most jobs take.
    private let spinning = Atomic<Int>(0)
    private let queued = Atomic<Int>(0)
    static let spinNanoseconds: Int64 = 50_000
    let limit: Int
    let name: String

    init(limit: Int, name: String) {
        self.limit = max(1, limit)
        self.name = name
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    /// For CPU-bound work: one thread per core.
    static let cpu = WorkerPool(limit: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), name: "curio-cpu")
    /// For blocking calls (name resolution, files on epoll): more threads,
    /// since they mostly wait.
    static let blocking = WorkerPool(limit: 64, name: "curio-io")

    func submit(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        queued.add(1, ordering: .releasing)
        if spinning.load(ordering: .acquiring) > 0 {
            // A spinning worker takes it: it re-checks the queue under the
            // lock after it stops spinning, so nothing is missed.
        } else if idle > 0 {
            pthread_cond_signal(&cond)
        } else if threads < limit {
            threads += 1
            startThread()
        }
        pthread_mutex_unlock(&mutex)
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
            threads -= 1
            return
        }
        pthread_detach(tid)
    }

    private func work() {
        pthread_mutex_lock(&mutex)
        while true {
            while head == jobs.count {
                idle += 1
                pthread_cond_wait(&cond, &mutex)
                idle -= 1
            }
            let job = jobs[head]
            head += 1
            queued.subtract(1, ordering: .relaxed)
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            }
            pthread_mutex_unlock(&mutex)
            job()
            spinning.add(1, ordering: .releasing)
            let until = ck_now_ns() + WorkerPool.spinNanoseconds
            while queued.load(ordering: .acquiring) == 0 && ck_now_ns() < until {}
            spinning.subtract(1, ordering: .releasing)
            pthread_mutex_lock(&mutex)
        }
    }
}

/// The result of work done on a worker thread, carried back to the kernel.
final class WorkResult<T>: @unchecked Sendable {
    /// Written by the worker before it posts; read on the kernel thread
    /// after the post (the post queue's lock orders the two).
    var result: Result<T, any Error>?
    /// Kernel-thread only.
    var abandoned = false
    var delivered = false
    let task: AnyCurioTask
    init(_ task: AnyCurioTask) { self.task = task }
}

extension Kernel {
    /// Runs `work` on `pool` while `t` waits in `state`; the kernel thread
    /// stays free. A cancelled wait returns at once; the work finishes on
    /// its own and its result is dropped (or handed to `onCancel`).
    func runOnWorker<T>(_ t: AnyCurioTask, pool: WorkerPool, state: TaskState, site: CallSite,
                        onCancel: (@Sendable (Result<T, any Error>) -> Void)?,
                        _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try checkDeliverable(t)
        let box = WorkResult<T>(t)
        // The job keeps the kernel alive until it has posted its result.
        pool.submit { [self] in
            box.result = Result { try work() }
            self.postMessage { k in
                if box.abandoned {
                    onCancel?(box.result!)
                } else {
                    box.delivered = true
                    // Does nothing if the task was cancelled meanwhile and
                    // has not run yet; it then finds the result below.
                    k.resume(box.task, Wake.normal)
                }
            }
        }
        externalWaits += 1
        defer { externalWaits -= 1 }
        do {
            _ = try await block(t, state, on: nil, deadline: .max, site: site)
        } catch {
            box.abandoned = true
            if box.delivered { onCancel?(box.result!) }
            throw error
        }
        return try box.result!.get()
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

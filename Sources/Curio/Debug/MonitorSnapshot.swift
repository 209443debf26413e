import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// One task as the monitor sees it.
struct TaskRow: Sendable {
    let id: Int
    let parentID: Int?
    let name: String
    let state: TaskState
    let cycles: Int
    let daemon: Bool
    /// When its pending timer fires (CLOCK_MONOTONIC ns), or Int64.max.
    let wakeDeadline: Int64
    let site: CallSite?
}

/// Where the kernel publishes what the monitor reads. The kernel thread
/// writes a fresh copy of its task table on request (or when it goes idle
/// after a while); the monitor thread reads the last copy under the lock.
/// A kernel that is stuck in a task cannot answer, so the monitor falls
/// back to the last copy plus the running mark (``ck_read_running``).
final class MonitorLink: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var rows: [TaskRow] = []
    private var generation = 0
    private(set) var publishedAt: Int64 = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&cond)
    }

    func publish(_ new: [TaskRow]) {
        pthread_mutex_lock(&mutex)
        rows = new
        generation += 1
        publishedAt = ck_now_ns()
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    /// The latest rows, after asking the kernel for fresh ones and waiting
    /// up to `patience` seconds; `fresh` is false when the kernel did not
    /// answer in time (it is busy running a task).
    func snapshot(from kernel: Kernel, patience: Double = 0.25) -> (rows: [TaskRow], fresh: Bool) {
        pthread_mutex_lock(&mutex)
        let before = generation
        pthread_mutex_unlock(&mutex)
        kernel.postMessage { k in k.publishSnapshot() }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let deadline = ck_now_ns() + Int64(patience * 1e9)
        while generation == before {
            let now = ck_now_ns()
            if now >= deadline { break }
            var ts = absoluteRealtime(afterNanoseconds: deadline - now)
            pthread_cond_timedwait(&cond, &mutex, &ts)
        }
        return (rows, generation != before)
    }
}

extension Kernel {
    /// Copies the task table for the monitor (kernel thread).
    func publishSnapshot() {
        guard let link = monitorLink else { return }
        var rows: [TaskRow] = []
        forEachTask { t in
            rows.append(TaskRow(id: t.id, parentID: t.parentID, name: t.name, state: t.state, cycles: t.cycles,
                                daemon: t.daemon, wakeDeadline: t.continuation != nil ? t.wakeDeadline : .max,
                                site: t.site))
        }
        rows.sort { $0.id < $1.id }
        link.publish(rows)
    }
}

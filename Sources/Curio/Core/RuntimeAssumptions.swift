import CCurioKernel

// What Curio's executor assumes about the Swift concurrency runtime, in one
// place. Each assumption is used only through the functions below and is
// checked by an `assert` (debug builds) where it is used. Checked on Swift
// 6.3.1 (swift-6.3.1-RELEASE, x86_64 and aarch64 Linux); the layout checks
// in `SwiftRuntime.checkLayout()` run once per process in debug builds.
//
// 1. A task is a job. The job the runtime hands to `TaskExecutor.enqueue`
//    for a task's own work is the task object itself, so `UnownedJob`,
//    `Task` and `UnsafeCurrentTask` all hold the same address (one pointer
//    each). `tasksBySwiftTask` is keyed by that address.
//    Checked: `launch` asserts that the job enqueued inside `Task.init` is
//    the new task's address.
// 2. Enqueue happens synchronously inside `Task.init` and inside
//    `UnsafeContinuation.resume`, on the calling thread. That is what lets
//    `ck_tls_resuming` (set around both) pair the job with its Curio task.
//    Checked: `launch` and `resume` assert that no more than one job reached
//    the ready queue during the call when they run on the kernel thread
//    (and `launch`, that it is the new task's).
// 3. A job may run more than one task: a default actor that a task hops to
//    is scheduled on the task's preferred executor as a job of its own,
//    which drains the actor's queue (possibly for several tasks). So the
//    pairing is a hint: `Kernel.currentTask()` confirms it against the Swift
//    task that is actually running (`withUnsafeCurrentTask`) before using it.
// 4. Task ids (`swift_task_getJobTaskId`) are unique for the process's life,
//    while addresses are reused once a task is freed. An adopted task (see
//    Adoption.swift) is recognized by address *and* id, so a new task at a
//    freed task's address is never taken for the old one.
// 5. A `Task(executorPreference:)` retains its executor for the task's
//    life; `withTaskExecutorPreference` does not retain it. Curio's own tasks
//    therefore prefer the kernel's `KernelExecutor`, which does not retain
//    the kernel, so a `Kernel` dropped with tasks pending still deinits.
// 6. `swift_task_getCurrent` (the entry `withUnsafeCurrentTask` is built
//    on, exported by libswift_Concurrency with the Swift calling convention)
//    returns the running task's address without retaining it, or nil off
//    every task. Calling it directly (through `ck_swift_current_task` in
//    ck.h: the compiler reserves the name in Swift) saves the closure, the
//    retain and the release of `withUnsafeCurrentTask` on every blocking
//    call: about 650 instructions per echo round trip, measured with
//    callgrind.
//    Checked: debug builds assert it against `withUnsafeCurrentTask`.

/// The runtime entry that reads a job's task id (0 for a job that is not a
/// task). Exported by libswift_Concurrency with the Swift calling
/// convention; the standard library declares it the same way.
@_silgen_name("swift_task_getJobTaskId")
private func curioJobTaskID(_ job: UnownedJob) -> UInt64

enum SwiftRuntime {
    /// The address of the Swift task running the calling code, or nil
    /// outside any task (a plain thread, a message on the kernel thread).
    @inline(__always)
    static func currentTaskAddress() -> UnsafeMutableRawPointer? {
        let here = ck_swift_current_task()
        assert(here == withUnsafeCurrentTask { $0.map { unsafeBitCast($0, to: UnsafeMutableRawPointer.self) } },
               "curio: swift_task_getCurrent no longer matches withUnsafeCurrentTask; see RuntimeAssumptions.swift")
        return here
    }

    /// The address of the task behind a `Task` handle (assumption 1).
    @inline(__always)
    static func address<S, F>(of task: Task<S, F>) -> UnsafeMutableRawPointer {
        unsafeBitCast(task, to: UnsafeMutableRawPointer.self)
    }

    /// The runtime's id of the task at `address` (assumption 4). Only for a
    /// task that is running now (the caller's own).
    static func taskID(at address: UnsafeMutableRawPointer) -> UInt64 {
        curioJobTaskID(unsafeBitCast(address, to: UnownedJob.self))
    }

    /// Debug builds: the sizes assumption 1 relies on.
    static let checkLayout: Void = {
        assert(MemoryLayout<UnsafeCurrentTask>.size == MemoryLayout<UnsafeMutableRawPointer>.size,
               "curio: UnsafeCurrentTask is no longer one pointer; see RuntimeAssumptions.swift")
        assert(MemoryLayout<Task<Void, Never>>.size == MemoryLayout<UnsafeMutableRawPointer>.size,
               "curio: Task is no longer one pointer; see RuntimeAssumptions.swift")
        assert(MemoryLayout<UnownedJob>.size == MemoryLayout<UnsafeMutableRawPointer>.size,
               "curio: UnownedJob is no longer one pointer; see RuntimeAssumptions.swift")
    }()
}

extension Kernel {
    /// Debug builds: assumption 2 for a call that enqueues at most one job
    /// on this kernel (`before` is the ready count before the call): none
    /// when the task resumes on a busy actor, one otherwise, never more.
    /// Returns true so it can sit inside `assert`.
    func enqueuedOneJob(since before: UInt32) -> Bool {
        guard isOnKernelThread else { return true }
        return ck_ready_count(readyQueue) &- before <= 1
    }

    /// Debug builds: assumption 1 — the newest ready job is `task`'s.
    func newestJobIsTask(_ task: UnsafeMutableRawPointer) -> Bool {
        guard isOnKernelThread, ck_ready_count(readyQueue) > 0 else { return true }
        let q = readyQueue.pointee
        return q.buf[Int((q.tail &- 1) & q.mask)].job == task
    }
}

import CCurioKernel

/// Starting a Curio task: each runs on a Swift task of its own whose
/// executor preference is the kernel.
///
/// (An earlier version reused finished Swift tasks for new Curio tasks. It
/// saved nothing measurable once Curio's code stopped hopping executors,
/// and its extra frame pushed every suspended task past the Swift task
/// allocator's first slab: about 1.1 KB more per sleeping task.)
extension Kernel {
    /// Links a new task record into the kernel and starts its body. Kernel
    /// thread (or the thread that owns a kernel that is not running).
    func start(_ t: AnyCurioTask) {
        aliveCount += 1
        if !t.daemon { nonDaemonAlive += 1 }
        t.allNext = taskListHead
        taskListHead?.allPrev = t
        taskListHead = t
        for a in activations { a.created(t) }
        launch(t)
        // Shutting down: a task that arrives now is cancelled at once and
        // runs to its end like the others.
        if stopping { deliverCancel(t, TaskCancelled()) }
    }

    /// Starts `t`'s body on a new Swift task.
    func launch(_ t: AnyCurioTask) {
        // The runtime enqueues the first job inside Task.init; the
        // thread-local tells `enqueue` which task that job belongs to.
        // Detached: a Curio task inherits neither the Swift priority nor
        // the task-locals of whoever happened to spawn it; its body binds
        // the one task-local Curio needs (adoption's parent).
        let saved = ck_tls_resuming()
        ck_set_tls_resuming(Unmanaged.passUnretained(t).toOpaque())
        let before = ck_ready_count(readyQueue)
        let swiftTask = Task.detached(executorPreference: coreExecutor) {
            await CurioTaskContext.$task.withValue(t) { await t.runBody() }
        }
        ck_set_tls_resuming(saved)
        assert(enqueuedOneJob(since: before) && newestJobIsTask(SwiftRuntime.address(of: swiftTask)),
               "curio: Task.init did not enqueue the new task's own job synchronously (RuntimeAssumptions.swift, 1 and 2)")
        t.swiftTask = swiftTask
    }

    /// Called when `t`'s job stopped without a Curio trap (a Swift-native
    /// await: `Task.yield()`, `Task.sleep`, a continuation of its own). The
    /// job that resumes it will be the Swift task itself, enqueued without
    /// Curio's pairing; the run loop then finds `t` here. Registered this
    /// late because it costs a table entry that most tasks never need, and
    /// early enough: such a job can reach the ready queue only after this
    /// job has returned (a post from another thread is drained later).
    func noteSwiftAwait(_ t: AnyCurioTask) {
        guard !t.inSwiftTaskTable, let h = t.swiftTask else { return }
        tasksBySwiftTask[SwiftRuntime.address(of: h)] = t
        t.inSwiftTaskTable = true
    }

    /// Drops `t`'s Swift task when `t` ends, and tells whoever watches the
    /// end from outside the kernel: joiners on other threads, executors or
    /// kernels, adopted Swift tasks it created, and seed-style `run()`.
    func forgetSwiftTask(_ t: AnyCurioTask) {
        if t.inSwiftTaskTable, let h = t.swiftTask {
            tasksBySwiftTask[SwiftRuntime.address(of: h)] = nil
        }
        t.inSwiftTaskTable = false
        t.swiftTask = nil
        if !adoptedByParent.isEmpty { parentEnded(t) }
        if !outsideWaiters.isEmpty, let ws = outsideWaiters.removeValue(forKey: ObjectIdentifier(t)) {
            for w in ws { w() }
        }
        if t.failure != nil && !t.daemon && t.parentID == nil { noteTopLevelFailure(t) }
    }
}

import CCurioKernel

/// Starting a Curio task: each runs on a Swift task of its own whose
/// executor preference is the kernel.
///
/// (An earlier version reused finished Swift tasks for new Curio tasks. It
/// saved nothing measurable once Curio's code stopped hopping executors,
/// and its extra frame pushed every suspended task past the Swift task
/// allocator's first slab: about 1.1 KB more per sleeping task.)
extension Kernel {
    /// Starts `t`'s body on a new Swift task.
    func launch(_ t: AnyCurioTask) {
        // The runtime enqueues the first job inside Task.init; the
        // thread-local tells `enqueue` which task that job belongs to.
        let saved = ck_tls_resuming()
        ck_set_tls_resuming(Unmanaged.passUnretained(t).toOpaque())
        let swiftTask = Task(executorPreference: self) { await t.runBody() }
        ck_set_tls_resuming(saved)
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
        tasksBySwiftTask[unsafeBitCast(h, to: UnsafeMutableRawPointer.self)] = t
        t.inSwiftTaskTable = true
    }

    /// Drops `t`'s Swift task when `t` ends.
    func forgetSwiftTask(_ t: AnyCurioTask) {
        if t.inSwiftTaskTable, let h = t.swiftTask {
            tasksBySwiftTask[unsafeBitCast(h, to: UnsafeMutableRawPointer.self)] = nil
        }
        t.inSwiftTaskTable = false
        t.swiftTask = nil
    }
}

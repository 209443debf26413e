import CCurioKernel

/// The Curio task whose body the calling Swift code runs in, inherited by
/// the Swift tasks it creates (`async let`, task groups, `Task { }`): how
/// an adopted task finds its parent.
enum CurioTaskContext {
    @TaskLocal static var task: AnyCurioTask?
}

/// A Swift task Curio did not create that runs on a kernel's executor and
/// made a Curio call: a child of `async let` or of a task group inside a
/// Curio task, a `Task(executorPreference: kernel)`, code under
/// `withTaskExecutorPreference(kernel)`. It has an id, a name and a parent
/// like any task and is listed by the monitor; it is a daemon (its creator,
/// not the kernel, waits for it).
///
/// The kernel cannot see such a task end, so its record ends when the
/// Curio task that created it ends (structured children have ended by
/// then), when its address turns up again with another Swift task id (it
/// was freed), or when the kernel shuts down; an unstructured task that
/// outlives its creator is adopted again, with a new id, at its next call.
final class AdoptedTask: AnyCurioTask, @unchecked Sendable {
    // @unchecked: like every task record, kernel-thread state only.
    /// Where its Swift task lives, and that task's runtime id (addresses
    /// are reused, ids are not: RuntimeAssumptions.swift, 4).
    let address: UnsafeMutableRawPointer
    let swiftTaskID: UInt64
    /// Swift cancellation has been turned into a Curio cancellation.
    var swiftCancelDelivered = false

    init(kernel: Kernel, id: Int, parent: AnyCurioTask?, address: UnsafeMutableRawPointer,
         swiftTaskID: UInt64, name: String?) {
        self.address = address
        self.swiftTaskID = swiftTaskID
        super.init(kernel: kernel, id: id, daemon: true, name: name, parentID: parent?.id)
    }
}

extension Kernel {
    /// The Curio task of the Swift task at `address`, which runs on this
    /// kernel now: a registered one, the Curio task itself inside an actor's
    /// job, or a newly adopted one. Nil only off every task.
    func findOrAdopt(_ address: UnsafeMutableRawPointer) -> AnyCurioTask? {
        if let t = tasksBySwiftTask[address] {
            guard let a = t as? AdoptedTask else {
                current = t
                return t
            }
            if a.swiftTaskID == SwiftRuntime.taskID(at: address) {
                current = a
                return a
            }
            // Its Swift task is gone and another one lives at the address.
            endAdopted(a)
        }
        let context = CurioTaskContext.task
        if let c = context, c.kernelSerial == serial, let h = c.swiftTask,
           SwiftRuntime.address(of: h) == address {
            // The Curio task itself, running in a job that is not its own
            // (an actor it called drains its queue on this kernel). From now
            // on its own jobs are found by address.
            noteSwiftAwait(c)
            return c
        }
        if let c = context, c.kernelSerial == serial, !c.terminated, c.bodyAddress == address {
            // The body of one of its timeout blocks (DeadlineScope.swift), in
            // a job that is not its own.
            current = c
            return c
        }
        let parent = context.flatMap { $0.kernelSerial == serial && !$0.terminated ? $0 : nil }
        let a = AdoptedTask(kernel: self, id: takeTaskID(), parent: parent, address: address,
                            swiftTaskID: SwiftRuntime.taskID(at: address), name: Task.name)
        tasksBySwiftTask[address] = a
        a.inSwiftTaskTable = true
        a.allNext = taskListHead
        taskListHead?.allPrev = a
        taskListHead = a
        adoptedCount += 1
        if let parent { adoptedByParent[parent.id, default: []].append(a) }
        for h in activations { h.created(a) }
        current = a
        // Already cancelled by Swift (its parent was): delivered at its first blocking call.
        if withUnsafeCurrentTask(body: { $0?.isCancelled ?? false }) { noteSwiftCancellation(a) }
        if stopping { deliverCancel(a, TaskCancelled()) }
        return a
    }

    /// Ends an adopted task's record: unlisted, unregistered, joiners woken.
    func endAdopted(_ a: AdoptedTask) {
        guard !a.terminated else { return }
        a.terminated = true
        a.state = .terminated
        adoptedCount -= 1
        if a.timer != 0 && a.continuation == nil {
            // Left in a Swift-native await of a timeout block: the timer holds the record unretained.
            scopeResumes(a)
        }
        if tasksBySwiftTask[a.address] === a { tasksBySwiftTask[a.address] = nil }
        a.inSwiftTaskTable = false
        if let next = a.allNext { next.allPrev = a.allPrev }
        if let prev = a.allPrev { prev.allNext = a.allNext } else { taskListHead = a.allNext }
        a.allNext = nil
        a.allPrev = nil
        if let p = a.parentID, var list = adoptedByParent[p] {
            list.removeAll { $0 === a }
            adoptedByParent[p] = list.isEmpty ? nil : list
        }
        for h in activations { h.terminated(a) }
        if !outsideWaiters.isEmpty, let ws = outsideWaiters.removeValue(forKey: ObjectIdentifier(a)) {
            for w in ws { w() }
        }
        if let q = a.joiners { wakeAll(q) }
    }

    /// The Curio task `t` ended: the structured Swift children it created
    /// have ended too. One still suspended in a Curio call is alive (an
    /// unstructured task): it keeps its record, without a parent list.
    func parentEnded(_ t: AnyCurioTask) {
        guard let list = adoptedByParent.removeValue(forKey: t.id) else { return }
        for a in list where a.continuation == nil && !a.yielding && a.ioHandle == 0 {
            endAdopted(a)
        }
    }

    /// Shutdown or drop: ends every adopted record that is not in a Curio wait.
    func endIdleAdoptedTasks() {
        guard adoptedCount > 0 else { return }
        var t = taskListHead
        while let task = t {
            t = task.allNext
            if let a = task as? AdoptedTask, a.continuation == nil, !a.yielding, a.ioHandle == 0 {
                endAdopted(a)
            }
        }
    }

    /// Swift cancelled `a`'s task: a Curio cancellation, delivered once, at
    /// its current or next blocking call.
    func noteSwiftCancellation(_ a: AdoptedTask) {
        guard !a.swiftCancelDelivered, !a.terminated else { return }
        a.swiftCancelDelivered = true
        deliverCancel(a, TaskCancelled())
    }

    /// Runs a blocking wait of `t`. For an adopted task (the only kind
    /// without a Swift task handle) the wait also listens for Swift
    /// cancellation, which interrupts it as a Curio cancellation; Curio's
    /// own tasks are cancelled only through Curio.
    ///
    /// Never inlined: every trap calls this on its slow path only, and an
    /// inlined copy (with its cancellation handler and a second copy of
    /// the wait) sat in the async frame of every trap on every path. That
    /// pushed a sleeping task's frames past the Swift task allocator's
    /// first 1 KiB slab (2.87 instead of 1.87 KiB per sleeper) and slowed
    /// spawn+join by a third (`make bench`, README "Benchmarks").
    @inline(never)
    func listeningForSwiftCancel<R>(_ t: AnyCurioTask, _ wait: () async throws -> R) async throws -> R {
        guard t.swiftTask == nil, let a = t as? AdoptedTask else { return try await wait() }
        // Inside a timeout block the wait runs in the block's child Swift
        // task, which the block's deadline may have cancelled: that is the
        // timeout (already pending), not a cancellation of the task.
        if withUnsafeCurrentTask(body: { $0?.isCancelled ?? false }) && !deadlineCancelledScope(a) {
            noteSwiftCancellation(a)
        }
        let lifecycle = self.lifecycle
        return try await withTaskCancellationHandler {
            try await wait()
        } onCancel: {
            if ck_current() == lifecycle.ck {
                if !a.kernel.deadlineCancelledScope(a) { a.kernel.noteSwiftCancellation(a) }
            } else {
                _ = lifecycle.post(evenWhenStopping: true) { k in
                    if !k.deadlineCancelledScope(a) { k.noteSwiftCancellation(a) }
                }
            }
        }
    }
}

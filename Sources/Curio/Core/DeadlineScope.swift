import CCurioKernel

// Curio 1.6 rule 3: a timeout reaches every await inside its block, not only
// Curio's own blocking calls. Curio's calls see the deadline through the task
// record (Traps.swift); a Swift-native await (`Task.sleep`, a continuation of
// another library, an `AsyncStream`) sees only Swift cancellation, and Swift
// cancellation cannot be taken back: cancelling the Curio task's own Swift
// task would fail every later await of the task, long after the block.
//
// So a block's body runs in a child Swift task of its own, started
// immediately, on the kernel thread, inside the caller's job, and it *is* the
// same Curio task (same record, id, locks, cancellation; `currentTask()`
// finds the record through `bodyAddress`). A deadline that passes while the
// body sits in a Swift-native await cancels that child alone; the block then
// throws `TaskTimeout` (Time.swift turns the child's `CancellationError` into
// it). A real `cancel()` cancels the Curio task's Swift task, which Swift
// passes on to the child.
//
// What keeps it cheap for a block around Curio calls only:
// - the child starts synchronously (`addImmediateTask`): entering a block is
//   not a scheduling point, and a body that never suspends ends in the same
//   job, so the cost is one child task's life (release build, loaded 2-core
//   VM: a block around a call that never suspends went from about 0.3 to
//   1.8 µs; a task group with an immediate child alone is about 0.4 µs
//   there, the rest is the runtime's executor checks on a task executor);
// - a body that did suspend hands its waiting parent straight back when it
//   ends (`KernelExecutor.handOff`: the parent's job goes to the front of the
//   ready queue, paired with the task): leaving a block is not a scheduling
//   point either, as in curio;
// - the kernel learns the child's address, and arms a timer for the
//   deadline, only when the child stops in a Swift-native await (run loop).
//
// Blocks that need no child of their own skip it: a cancelled task (its
// deadlines are dropped), cancellation held back (`disableCancellation`), no
// finite deadline, a block directly inside a block with a child whose
// deadline comes no later (the outer deadline fires first and cancels the
// outer child), or a caller isolated to an actor (the body must run on that
// actor; there only Curio's own calls see the deadline).

/// One timeout block whose body runs in a child Swift task. Not generic:
/// a generic class would cost a metadata lookup on every block.
final class DeadlineScope: @unchecked Sendable {
    // @unchecked: kernel-thread state, like the task record that lists it.
    // The caller writes `run` before the child starts; the child takes it.
    /// Runs the body and stores its outcome (set by `runScoped`).
    var run: (() async -> Void)?
    /// The child running the body while it runs: what the deadline cancels.
    var child: UnsafeCurrentTask?
    var childAddress: UnsafeMutableRawPointer?
    /// The Swift task that waits for the child (the caller of the block),
    /// and the body address to restore when the child ends.
    var parentAddress: UnsafeMutableRawPointer?
    var savedBody: UnsafeMutableRawPointer?
    /// The child is in `tasksBySwiftTask`: it made a Swift-native await, and
    /// the job that resumes it arrives unpaired.
    var registered = false
    /// When the deadline cancelled the child (kernel-clock nanoseconds), or nil.
    var firedAt: Int64?
    /// The block's index in the task's `timeouts`.
    var level = 0
}

extension Kernel {
    /// Runs `body` in a child Swift task that is `t` for Curio and returns
    /// what it returned (or throws what it threw).
    func runScoped<T>(_ t: AnyCurioTask, _ scope: DeadlineScope,
                      _ body: @escaping () async throws -> T) async throws -> T {
        // The outcome, written by the child and read once the group is done.
        let slot = UnsafeMutablePointer<Result<T, any Error>>.allocate(capacity: 1)
        defer { slot.deallocate() }
        scope.run = {
            do {
                slot.initialize(to: .success(try await body()))
            } catch {
                slot.initialize(to: .failure(error))
            }
        }
        scope.parentAddress = SwiftRuntime.currentTaskAddress()
        scope.savedBody = t.bodyAddress
        let executor = coreExecutor
        await withDiscardingTaskGroup { group in
            group.addImmediateTask { [self] in
                let me = withUnsafeCurrentTask { $0 }
                let address = me.map { unsafeBitCast($0, to: UnsafeMutableRawPointer.self) }
                scope.child = me
                scope.childAddress = address
                t.bodyAddress = address
                t.scopes.append(scope)
                let run = scope.run!
                scope.run = nil
                await run()
                leaveScope(t, scope)
                // If the caller is waiting in the group, its job is enqueued
                // as this task completes: it runs next, paired with `t`.
                if let parent = scope.parentAddress { executor.handOff(parent, to: t) }
            }
        }
        // The child ended without suspending: no hand-off was needed.
        if let parent = scope.parentAddress { executor.cancelHandOff(parent) }
        return try slot.move().get()
    }

    private func leaveScope(_ t: AnyCurioTask, _ run: DeadlineScope) {
        if let last = t.scopes.last, last === run { t.scopes.removeLast() }
        if run.registered, let a = run.childAddress, tasksBySwiftTask[a] === t {
            tasksBySwiftTask[a] = nil
        }
        run.registered = false
        run.child = nil
        t.bodyAddress = run.savedBody
        // Back from a Swift-native await on a job the loop did not pair
        // (an actor's): the timer of that await must not outlive the block.
        if _slowPath(t.timer != 0 && t.continuation == nil) { scopeResumes(t) }
    }

    /// `t`'s job stopped in a Swift-native await inside a timeout block (run
    /// loop): the job that resumes it must find `t`, and the deadline must
    /// reach the await.
    func scopeAwaitsSwift(_ t: AnyCurioTask) {
        guard let scope = t.scopes.last else { return }
        if !scope.registered, let a = scope.childAddress, tasksBySwiftTask[a] == nil {
            tasksBySwiftTask[a] = t
            scope.registered = true
        }
        guard t.timer == 0, t.cancelDisabled == 0, !t.deadlineDelivered, !t.cancelled,
              t.effectiveDeadline != .max else { return }
        // Blocks inside the innermost scope that run without a child (an
        // actor-isolated caller's) leave their deadlines to Curio's calls:
        // only the deadlines of this scope and those around it cancel it.
        let deadline = t.timeouts.count == scope.level + 1
            ? t.effectiveDeadline : t.timeouts[...scope.level].min() ?? .max
        guard deadline != .max else { return }
        t.wakeDeadline = deadline
        t.timer = ck_timer_add(ck, deadline, Unmanaged.passUnretained(t).toOpaque())
        // No memory for the timer: the deadline reaches the block at its next
        // Curio call instead, as it did before rule 3.
        if _slowPath(t.timer == 0) { t.wakeDeadline = .max }
    }

    /// `t` runs again after a Swift-native await inside a block: the timer
    /// armed for that await goes.
    func scopeResumes(_ t: AnyCurioTask) {
        ck_timer_cancel(ck, t.timer)
        t.timer = 0
        t.wakeDeadline = .max
    }

    /// The deadline timer of a Swift-native await fired (`timerFired`):
    /// cancel the innermost block's child, which is where the await is. A
    /// Curio call the body makes afterwards gets the ``TaskTimeout`` too.
    func swiftAwaitDeadlinePassed(_ t: AnyCurioTask, deadline: Int64) {
        t.wakeDeadline = .max
        guard t.state == .swiftAwait, let scope = t.scopes.last, let child = scope.child,
              t.cancelDisabled == 0, t.taskDeadlineDue(at: deadline) else { return }
        let now = t.kernel.now
        t.deadlineDelivered = true
        if t.pendingCancel == nil { t.pendingCancel = TaskTimeout(firedAt: now) }
        // Set before cancelling: cancellation handlers run inside `cancel()`,
        // and an adopted task's must see that this is a deadline.
        scope.firedAt = now
        child.cancel()
    }

    /// Whether Swift cancellation seen inside `t`'s timeout blocks may come
    /// from a deadline (one of them cancelled its child) rather than from
    /// the task's own cancellation.
    func deadlineCancelledScope(_ t: AnyCurioTask) -> Bool {
        t.scopes.contains { $0.firedAt != nil }
    }
}

extension KernelExecutor {
    /// The next enqueue of `job` runs before every other ready job, paired
    /// with `task`. Kernel thread only.
    func handOff(_ job: UnsafeMutableRawPointer, to task: AnyCurioTask) {
        handOffJob = job
        handOffTask = Unmanaged.passUnretained(task).toOpaque()
    }

    /// The hand-off was not needed (the child ended without suspending).
    func cancelHandOff(_ job: UnsafeMutableRawPointer) {
        if handOffJob == job { handOffJob = nil }
    }
}

import CCurioKernel
import Synchronization

// Using a kernel from outside it: `kernel.call { }` from any Swift task,
// `addTask` from any thread without blocking, and joining, waiting for or
// cancelling a task's handle from anywhere.

extension Kernel {
    /// Runs `body` as a new task of this kernel and returns its value.
    /// Callable from any Swift task or executor: a Curio task of this or
    /// another kernel, an actor, a task of Swift's global pool. The caller
    /// suspends (it never blocks a thread, so another kernel's task that
    /// calls this does not stall its own kernel).
    ///
    /// ```swift
    /// let running = try Kernel.start()
    /// let n = try await running.kernel.call { try await countConnections() }
    /// ```
    ///
    /// Rethrows what `body` throws. Cancelling the caller cancels the task
    /// and waits for it to end; then this throws `CancellationError` if the
    /// task ended by that cancellation (and returns its value if it
    /// finished anyway). Throws ``KernelUnavailable`` at once when the
    /// kernel's run has ended or it has been shut down; on a kernel that has
    /// not run yet the call waits for its first run.
    public func call<T: Sendable>(name: String? = nil,
                                  _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        if let here = Kernel.current, here === self, let me = try? Kernel.currentTask() {
            // From one of this kernel's own tasks: a child task, joined.
            let t = spawnTask(daemon: false, name: name, parent: me.id, body)
            do {
                guard let v = try await t.join() else { throw TaskCancelled() }
                return v
            } catch let e as TaskError {
                throw e.cause
            }
        }
        let call = OutsideCall<T>()
        let refused = lifecycle.post(requireRunning: true) { k in
            call.task = k.spawnTask(daemon: false, name: name ?? "call", parent: nil) { () async -> Void in
                do {
                    call.finish(.success(try await body()))
                } catch {
                    call.finish(.failure(error))
                }
            }
        }
        if let refused { throw KernelUnavailable(reason: refused, kernelSerial: serial) }
        let lifecycle = self.lifecycle
        let outcome = await withTaskCancellationHandler {
            _ = await call.done.wait(cancellable: false)
            return call.outcome()
        } onCancel: {
            _ = lifecycle.post(evenWhenStopping: true) { k in
                if let t = call.task { k.deliverCancel(t, TaskCancelled()) }
            }
        }
        switch outcome {
        case .success(let v):
            return v
        case .failure(let e):
            if e is CancelledError && Task.isCancelled { throw CancellationError() }
            throw e
        }
    }

    /// ``call(name:_:)`` for a plain thread: blocks it until `body` has run
    /// as a task of this kernel and returns its value. Throws
    /// ``KernelUnavailable`` at once when the kernel is not running or is shut
    /// down, and a ``CurioUsageError`` on a kernel's own thread (it would
    /// wait for itself).
    @available(*, noasync, message: "callBlocking blocks the thread; use `try await kernel.call { }`")
    public func callBlocking<T: Sendable>(name: String? = nil,
                                          _ body: @escaping @Sendable () async throws -> T) throws -> T {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "a blocking call from a kernel's thread would stop that kernel; use `try await kernel.call { }` in a task")
        }
        let call = OutsideCall<T>()
        let refused = lifecycle.post(requireRunning: true) { k in
            call.task = k.spawnTask(daemon: false, name: name ?? "call", parent: nil) { () async -> Void in
                do {
                    call.finish(.success(try await body()))
                } catch {
                    call.finish(.failure(error))
                }
            }
        }
        if let refused { throw KernelUnavailable(reason: refused, kernelSerial: serial) }
        _ = call.done.blockingWait(deadline: nil)
        return try call.outcome().get()
    }

    /// `addTask` from a thread other than the kernel's: never blocks.
    func addTaskFromOutside<T>(daemon: Bool, name: String?,
                               _ fn: @escaping @Sendable () async throws -> T) -> CurioTask<T> {
        let t = CurioTask<T>(kernel: self, id: takeTaskID(), daemon: daemon, name: name, parentID: nil)
        t.body = fn
        let handoff = UncheckedHandoff(t)
        let refused: KernelUnavailable.Reason? = lifecycle.state.withLock { s in
            if s.phase == .idle && !s.loopActive && !s.stopRequested {
                // Not running: the thread that owns the kernel may add
                // tasks directly (the seed's add_task before run); the lock
                // keeps a run() from starting meanwhile.
                start(t)
                return nil
            }
            return lifecycle.postLocked(&s) { k in k.start(handoff.task) }
        }
        if let refused {
            // Cannot run: the handle ends at once with the reason, so a join
            // throws it and an unjoined one is reported like any failure.
            t.failure = KernelUnavailable(reason: refused, kernelSerial: serial)
            t.terminated = true
            t.state = .terminated
        }
        return t
    }

    // MARK: - Seed-style run() and failed top-level tasks

    /// A top-level task failed: remembered (weakly) so that `run()` can
    /// throw it if nobody kept the handle to join it.
    func noteTopLevelFailure(_ t: AnyCurioTask) {
        guard let f = t.failure else { return }
        unjoinedFailures.append(UnjoinedFailure(task: t, error: TaskError(cause: f, taskID: t.id, taskName: t.name)))
    }

    /// The first top-level failure whose handle nobody kept, if any.
    func takeUnjoinedFailure() -> TaskError? {
        defer { unjoinedFailures.removeAll() }
        return unjoinedFailures.first { $0.task == nil }?.error
    }
}

/// A failure for seed-style `run()`: the task weakly, so a handle the
/// program keeps (to join later) leaves the failure to the program.
struct UnjoinedFailure {
    weak var task: AnyCurioTask?
    let error: TaskError
}

/// Carries a task record to the kernel thread in a message.
private struct UncheckedHandoff<T>: @unchecked Sendable {
    // @unchecked: the record is created here and touched only by the
    // kernel thread once the message runs.
    let task: CurioTask<T>
    init(_ task: CurioTask<T>) { self.task = task }
}

/// One `call` from outside: the outcome, and the task (kernel thread only).
private final class OutsideCall<T: Sendable>: @unchecked Sendable {
    // @unchecked: `task` is written and read on the kernel thread only;
    // `result` is behind its mutex.
    var task: AnyCurioTask?
    private let result = Locked<Result<T, any Error>?>(nil)
    let done = OutsideSignal()

    func finish(_ r: Result<T, any Error>) {
        result.withLock { $0 = r }
        done.fire()
    }

    func outcome() -> Result<T, any Error> {
        result.withLock { $0 } ?? .failure(TaskCancelled())
    }
}

// MARK: - Handles used from outside their kernel

extension AnyCurioTask {
    /// The calling task when it runs on this task's kernel; nil when the
    /// caller is outside it (another thread, executor or kernel), which
    /// then takes the outside path.
    func callerOnSameKernel() throws -> AnyCurioTask? {
        guard let here = Kernel.current, here.serial == kernelSerial else { return nil }
        return try Kernel.currentTask()
    }

    /// Registers `fire` to run on the kernel thread when this task ends.
    /// True when it has already ended (nothing registered).
    func watchEnd(_ fire: @escaping @Sendable () -> Void) throws -> Bool {
        guard let life = KernelRegistry.lifecycle(kernelSerial) else { return true }
        let handoff = UncheckedAnyHandoff(self)
        return try life.state.withLock { s in
            // Not running: nothing writes task state, the lock orders this
            // read after the loop's last writes.
            if !s.loopActive && s.phase != .running && s.phase != .draining && terminated { return true }
            if s.phase == .shutDown {
                throw KernelUnavailable(reason: .shutDown, kernelSerial: kernelSerial)
            }
            _ = life.postLocked(&s, evenWhenStopping: true) { k in
                let t = handoff.task
                if t.terminated {
                    fire()
                } else {
                    k.outsideWaiters[ObjectIdentifier(t), default: []].append(fire)
                }
            }
            return false
        }
    }

    /// `wait`/`join` from outside the task's kernel: suspends the caller
    /// (Swift cancellation ends the wait with `CancellationError`).
    func waitFromOutside(timeout: Double?) async throws {
        let deadline = try timeout.map { try deadlineAfter($0) }
        let signal = OutsideSignal()
        if try watchEnd({ signal.fire() }) { return }
        switch await signal.wait(cancellable: true, deadline: deadline) {
        case .fired: return
        case .cancelled: throw CancellationError()
        case .timedOut: throw TaskTimeout(clock: clock())
        }
    }

    /// `cancel` from outside the task's kernel: true when the task was
    /// still running when the cancellation reached it.
    func cancelFromOutside(blocking: Bool) async throws -> Bool {
        let end = OutsideSignal()
        if try watchEnd({ end.fire() }) { return false }
        guard let life = KernelRegistry.lifecycle(kernelSerial) else { return false }
        let delivered = OutsideSignal()
        let wasLive = Locked(false)
        let handoff = UncheckedAnyHandoff(self)
        _ = life.post(evenWhenStopping: true) { k in
            let t = handoff.task
            wasLive.withLock { $0 = !t.terminated }
            k.deliverCancel(t, TaskCancelled())
            delivered.fire()
        }
        _ = await delivered.wait(cancellable: false)
        let live = wasLive.withLock { $0 }
        if blocking && live {
            if await end.wait(cancellable: true) == .cancelled { throw CancellationError() }
        }
        return live
    }

    /// Blocks the calling plain thread until the task has ended; false when
    /// `timeout` seconds pass first. Not for code on a kernel's thread (it
    /// would stop that kernel): that gets a ``CurioUsageError``; await
    /// ``wait(file:line:function:)`` there.
    @available(*, noasync, message: "waitBlocking blocks the thread; await wait() or join() instead")
    @discardableResult
    public func waitBlocking(timeout: Double? = nil) throws -> Bool {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "waitBlocking() would block a kernel's thread; use `try await wait()` in a task")
        }
        let deadline = try timeout.map { try deadlineAfter($0) }
        let signal = OutsideSignal()
        if try watchEnd({ signal.fire() }) { return true }
        return signal.blockingWait(deadline: deadline)
    }
}

extension CurioTask {
    /// ``join(timeout:file:line:function:)-(Double?,_,_,_)`` for a plain thread: blocks it
    /// until the task has ended and returns its value (nil if it ended by
    /// cancellation); throws ``TaskError`` if it failed and ``TaskTimeout``
    /// when `timeout` seconds pass first.
    @available(*, noasync, message: "joinBlocking blocks the thread; await join() instead")
    @discardableResult
    public func joinBlocking(timeout: Double? = nil) throws -> T? {
        if try !waitBlocking(timeout: timeout) { throw TaskTimeout(clock: clock()) }
        if let e = joinFailure() { throw e }
        return value
    }
}

/// Carries a task record to its kernel thread in a message.
private struct UncheckedAnyHandoff: @unchecked Sendable {
    // @unchecked: the record is read only on its kernel thread by the message.
    let task: AnyCurioTask
    init(_ task: AnyCurioTask) { self.task = task }
}

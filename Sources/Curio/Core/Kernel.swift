import CCurioKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The Curio kernel: a single-threaded task executor over a C core that
/// holds the ready queue, the timer heap and the I/O rings.
///
/// Seed style — add tasks, then run until every non-daemon task has ended:
///
/// ```swift
/// let kernel = Kernel()
/// kernel.addTask { try await countdown(10) }
/// try kernel.run()
/// ```
///
/// Curio 1.6 style — run one main task and get its value:
///
/// ```swift
/// let answer = try Kernel().run { try await compute() }
/// ```
///
/// Service style — a kernel on a thread of its own, called from any Swift
/// task (see "Using Curio from Swift concurrency" in the README):
///
/// ```swift
/// let running = try Kernel.start()
/// let n = try await running.kernel.call { try await countConnections() }
/// running.stop()
/// try await running.wait()
/// ```
///
/// Every task of a kernel runs on the thread that runs its loop, so the
/// kernel's state needs no locks; several kernels on several threads run
/// independently (one kernel per thread). Any Swift task that runs on a
/// kernel's executor (`withTaskExecutorPreference(kernel)`, a child of a
/// Curio task, an actor method called from one) is a Curio task too.
///
/// Dropping the last reference to a kernel cancels its remaining tasks and
/// runs them to their end (for at most ``Configuration/dropGracePeriod``),
/// then frees its ring, eventfd and memory.
public final class Kernel: TaskExecutor, @unchecked Sendable {
    // @unchecked: the mutable state below is touched only on the thread
    // that runs the loop (or, while no loop runs, by the one thread that
    // owns the kernel); what other threads use is `lifecycle` (a Mutex),
    // `ck_post` (locked in C) and the immutable `let`s.

    /// Which I/O backend a kernel uses.
    public enum Backend: Sendable, Equatable, CustomStringConvertible {
        /// io_uring (the default build) or epoll (the `Epoll` trait, or the run-time fallback).
        case ioUring, epoll
        public var description: String { self == .ioUring ? "io_uring" : "epoll" }
    }

    let ck: OpaquePointer
    let readyQueue: UnsafeMutablePointer<ck_ready>
    private let eventBuffer: UnsafeMutablePointer<ck_event>
    private static let eventCapacity: Int32 = 256
    /// The executor Curio's own tasks prefer: it does not retain the kernel.
    let coreExecutor: KernelExecutor
    private let unownedSelf: UnownedTaskExecutor

    /// Whether the monitor was requested for this kernel.
    public let withMonitor: Bool
    /// How long the loop watches for a worker's answer before sleeping.
    static let spinNanoseconds: Int64 = 50_000
    /// Unique among every kernel this process creates (never reused).
    public let serial: UInt64 = ck_next_serial()
    /// The backend this kernel ended up with (io_uring may fall back to epoll).
    public let backend: Backend

    /// Run state shared with other threads.
    let lifecycle: KernelLifecycle
    /// Task ids: taken on whichever thread creates the task record. A
    /// kernel of a ``KernelGroup`` starts at its index + 1 and steps by the
    /// group's size (set before its thread starts), so ids are unique
    /// across the group and name their kernel.
    let taskIDs = Atomic<Int>(1)
    let taskIDStep = Atomic<Int>(1)

    // Kernel-thread state. Only the thread running the loop touches these.
    // The ones the loop reads on every job or wait skip run-time exclusivity
    // checks (`@exclusivity(unchecked)`, about 60 instructions per access):
    // each access is a plain read or store that never spans a call which
    // could touch the same field, so no two accesses can overlap.
    @exclusivity(unchecked) unowned(unsafe) var current: AnyCurioTask?
    @exclusivity(unchecked) var aliveCount = 0
    var nonDaemonAlive = 0
    var taskListHead: AnyCurioTask?
    @exclusivity(unchecked) var yielders: ContiguousArray<AnyCurioTask> = []
    /// Every live Curio task by the address of its Swift task (see launch
    /// and RuntimeAssumptions.swift).
    var tasksBySwiftTask: [UnsafeMutableRawPointer: AnyCurioTask] = [:]
    /// Adopted Swift tasks by the id of the Curio task that created them.
    var adoptedByParent: [Int: [AdoptedTask]] = [:]
    /// Adopted tasks that are still listed.
    var adoptedCount = 0
    /// Top-level non-daemon tasks that failed, for seed-style run().
    var unjoinedFailures: [UnjoinedFailure] = []
    /// Outside joiners (other threads, executors, kernels) by task.
    var outsideWaiters: [ObjectIdentifier: [@Sendable () -> Void]] = [:]
    /// Set once shutdown has begun: every task is cancelled, new ones as
    /// they arrive, and the loop runs until they have all ended.
    var stopping = false
    /// The loop runs on the main thread (MainThreadWatch.swift).
    var onMainThread = false
    var mainActorReported = false
    private var yieldersSpare: ContiguousArray<AnyCurioTask> = []
    /// Set when the monitor (or the task dump) is on: the snapshot it reads.
    @exclusivity(unchecked) var monitorLink: MonitorLink?
    /// Debug hooks (``addActivation(_:)``).
    @exclusivity(unchecked) var activations: [any Activation] = []
    /// Tasks waiting for something outside the kernel's sight (a worker
    /// thread, another thread's put, a signal): not part of a deadlock.
    @exclusivity(unchecked) var externalWaits = 0
    @exclusivity(unchecked) var deadlockReported = false
    /// Signals that dump the task tree (``enableTaskDump(on:)``).
    var dumpSignals: [Int32] = []

    /// What this kernel was created with.
    public let configuration: Configuration
    /// True when ``Configuration/clock`` is virtual.
    public let clockIsVirtual: Bool

    /// With the monitor on, a task that holds the kernel this many seconds
    /// without blocking is reported once on stderr, with its location and
    /// the kernel thread's live stack. 0 turns the watchdog off. Starts at
    /// the configuration's ``Configuration/longBlockThreshold``.
    public var longBlockThreshold: Double
    var monitor: Monitor?
    private var lastPublish: Int64 = 0
    @exclusivity(unchecked) private var snapshotDirty = true

    /// Where the remote monitor listens (its Unix socket by default), if it does.
    public var monitorAddress: SocketAddress? { monitor?.address }

    /// Creates a kernel with the default configuration (the environment's
    /// documented overrides applied); `withMonitor` turns on the monitor
    /// (Ctrl-C console and remote endpoint), as in the seed.
    ///
    /// The default build uses io_uring and falls back to epoll, with one
    /// line on stderr, when io_uring cannot be set up; the `Epoll` package
    /// trait builds epoll alone.
    ///
    /// Stops the program when the kernel cannot be created (no descriptor
    /// or memory left); use ``make(configuration:)`` to get an error instead.
    public convenience init(withMonitor: Bool = false) {
        var c = Configuration.default
        if withMonitor && c.monitor == nil { c.monitor = .standard }
        self.init(configuration: c)
    }

    /// Creates a kernel from `configuration`. Stops the program when the
    /// kernel cannot be created; ``make(configuration:)`` throws instead.
    public convenience init(configuration: Configuration) {
        let core: OpaquePointer
        do {
            core = try Kernel.newCore(configuration)
        } catch {
            fatalError("curio: cannot create a kernel: \(error) (Kernel.make(configuration:) throws this instead)")
        }
        self.init(configuration: configuration, core: core)
    }

    /// Creates a kernel from `configuration`, or throws ``KernelError``
    /// when the process has no descriptor or memory left for one.
    ///
    /// ```swift
    /// let kernel = try Kernel.make()
    /// ```
    public static func make(configuration: Configuration = .default) throws -> Kernel {
        Kernel(configuration: configuration, core: try newCore(configuration))
    }

    /// The C kernel for `configuration`'s backend preference.
    private static func newCore(_ configuration: Configuration) throws -> OpaquePointer {
        try configuration.validate()
        let want: ck_backend_kind
        switch configuration.backend {
        case .automatic, .ioUring: want = ck_have_io_uring() ? CK_BACKEND_IO_URING : CK_BACKEND_EPOLL
        // The C kernel reads the variable itself and reports why it falls
        // back; ask it for io_uring so that it does.
        case .epoll where configuration.backendForcedByEnvironment:
            want = ck_have_io_uring() ? CK_BACKEND_IO_URING : CK_BACKEND_EPOLL
        case .epoll: want = CK_BACKEND_EPOLL
        }
        // Quiet: the fallback is logged through the kernel's logger (once
        // per process, see `init`), not printed by C.
        var options = ck_kernel_options(want: want, flags: UInt32(CK_KERNEL_QUIET_FALLBACK))
        guard let k = ck_kernel_new_with(&options) else {
            throw KernelError(errno: errno, operation: "creating a kernel (ring or epoll instance and eventfd)")
        }
        return k
    }

    private init(configuration: Configuration, core k: OpaquePointer) {
        _ = SwiftRuntime.checkLayout
        self.configuration = configuration
        longBlockThreshold = configuration.longBlockThreshold
        clockIsVirtual = configuration.clock != .monotonic
        ck = k
        readyQueue = ck_kernel_ready(k)
        eventBuffer = .allocate(capacity: Int(Self.eventCapacity))
        withMonitor = configuration.monitor != nil
        backend = ck_kernel_backend(k) == CK_BACKEND_IO_URING ? .ioUring : .epoll
        coreExecutor = KernelExecutor(ck: k, readyQueue: readyQueue)
        lifecycle = KernelLifecycle(ck: k)
        unownedSelf = UnownedTaskExecutor(ordinary: coreExecutor)
        ck_set_owner(k, Unmanaged.passUnretained(self).toOpaque())
        KernelRegistry.add(serial, lifecycle)
        startClock(configuration.clock)
        ck_ignore_sigpipe()
        if let why = ck_kernel_fallback_reason(k), Kernel.fallbackReported.exchange(true, ordering: .relaxed) == false {
            diagnose(.warning, kernel: self, "curio: io_uring is unavailable (\(String(cString: why))); using the epoll backend\n")
        }
        if let endpoint = configuration.monitor {
            startMonitor(endpoint, announce: configuration.monitorAnnounced,
                         console: configuration.monitorConsole)
        }
        installMetrics()
        for sig in configuration.taskDumpSignals {
            // Opt-in from outside the program: `kill -USR1 <pid>` dumps the tasks.
            try? enableTaskDump(on: sig)
        }
    }

    deinit {
        monitor?.stop()
        let drained = drainOnDrop()
        if !dumpSignals.isEmpty {
            SignalHub.shared.removeListeners(owner: self)
            dumpSignals.forEach { ck_signal_unwatch($0) }
        }
        if drained {
            ck_kernel_free(ck)
        } else {
            // Tasks that ignore their cancellation still reference the C
            // kernel (their jobs, timers, requests): freeing it would let
            // them touch freed memory. Keep it, and say so.
            diagnose(.warning, kernel: self, "curio: kernel \(serial) was dropped with \(aliveCount) task(s) that did not end within \(configuration.dropGracePeriod) of being cancelled; its resources are kept for them\n")
        }
        eventBuffer.deallocate()
        KernelRegistry.remove(serial)
    }

    // MARK: - Executor

    /// Queues a job of a task that prefers this kernel. Called by the
    /// Swift runtime; jobs from other threads go through the C post queue.
    public func enqueue(_ job: consuming ExecutorJob) {
        coreExecutor.enqueue(job)
    }

    /// The kernel's executor identity: the same for `Kernel` and for the
    /// executor Curio's own tasks prefer, so hopping between them is free.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        unownedSelf
    }

    // MARK: - Finding the kernel of the calling code

    /// The kernel running on the calling thread, if any.
    public static var current: Kernel? {
        guard let k = ck_current() else { return nil }
        return Unmanaged<Kernel>.fromOpaque(ck_owner(k)).takeUnretainedValue()
    }

    /// The task making a Curio call, or a clear error when the caller is
    /// not running on a kernel's executor.
    ///
    /// The run loop's pairing (`current`) is confirmed against the Swift
    /// task that is actually running (RuntimeAssumptions.swift, 3); any
    /// other Swift task on this kernel is adopted (Adoption.swift).
    @inline(__always)
    static func currentTask(_ what: StaticString = #function) throws -> AnyCurioTask {
        if let k = ck_current() {
            let kernel = Unmanaged<Kernel>.fromOpaque(ck_owner(k)).takeUnretainedValue()
            let here = SwiftRuntime.currentTaskAddress()
            if let t = kernel.current {
                if let h = t.swiftTask, SwiftRuntime.address(of: h) == here { return t }
                // Inside a timeout block the body runs in a child Swift task (DeadlineScope.swift).
                if let here, t.bodyAddress == here { return t }
            }
            if let here, let t = kernel.findOrAdopt(here) { return t }
        }
        throw notInKernel(what)
    }

    /// The error for a Curio call made off every kernel.
    static func notInKernel(_ what: StaticString) -> CurioUsageError {
        CurioUsageError(.notInKernel,
            "\(what) must be called from a task running on a Curio kernel, and this code runs on another executor or a plain thread. From there, run it on a kernel with `try await kernel.call { ... }` (or Kernel.addTask), or run the calling task on the kernel with `withTaskExecutorPreference(kernel)`")
    }

    // MARK: - Running

    /// Runs until every non-daemon task has ended (the seed's
    /// `kernel.run()`). Daemon tasks stay suspended; ``shutdown()`` (or
    /// `shutdown: true`) cancels them.
    ///
    /// Throws ``TaskError`` when a task added with ``addTask(daemon:name:_:)``
    /// (not a daemon) failed and nobody kept its handle to join it — a
    /// server whose `bind` found the port in use, say. Such a failure is
    /// also reported on stderr when it happens, as before; a task whose
    /// handle is kept is left for its owner to join.
    ///
    /// Throws ``CurioUsageError`` when the kernel is already running, has
    /// been shut down, or another kernel runs on this thread.
    ///
    /// This blocks the calling thread until the kernel is done: from async
    /// code use ``start(configuration:)`` instead.
    @available(*, noasync, message: "run() blocks the thread until the kernel ends; from async code use Kernel.start() and kernel.call { }")
    public func run(shutdown: Bool = false) throws {
        try loop { self.nonDaemonAlive == 0 }
        let failure = takeUnjoinedFailure()
        if shutdown { try self.shutdown() }
        if let failure { throw failure }
    }

    /// Runs `main` as a task and returns its value once it ends (curio 1.6's
    /// `kernel.run(coro)`). Other tasks keep their state; run the kernel
    /// again or call ``shutdown()`` to finish them.
    ///
    /// Rethrows what `main` throws; throws ``TaskCancelled`` if `main` was
    /// cancelled.
    @available(*, noasync, message: "run(_:) blocks the thread until main ends; from async code use Kernel.start() and kernel.call { }")
    @discardableResult
    public func run<T>(_ main: @escaping @Sendable () async throws -> T) throws -> T {
        try checkRunnable()
        // Under the lifecycle lock: another thread may be adding a task to
        // this idle kernel at the same moment (addTaskFromOutside).
        let task: CurioTask<T> = lifecycle.state.withLock { _ in
            spawnTask(daemon: false, name: nil, parent: nil, main)
        }
        try loop { task.terminated }
        return try task.outcomeForRun()
    }

    /// Service mode: runs with or without tasks until ``shutdown()`` is
    /// called (from any thread or task), then cancels every task, runs them
    /// to their end and returns. The kernel is shut down afterwards.
    ///
    /// ``start(configuration:)`` runs this on a thread of its own.
    @available(*, noasync, message: "runUntilShutdown() blocks the thread; from async code use Kernel.start()")
    public func runUntilShutdown() throws {
        try loop { false }
    }

    /// Cancels every remaining task, daemons included, and runs them until
    /// they have all ended. Afterwards the kernel cannot run again, and
    /// ``call(name:_:)`` and ``addTask(daemon:name:_:)`` fail at once.
    ///
    /// Safe from any thread or task. On a kernel that is not running, the
    /// calling thread runs the tasks to their end before this returns. On a
    /// kernel that is running (on another thread, or this is one of its own
    /// tasks), this asks its loop to do so and returns at once; the loop's
    /// `run` call returns when they have ended.
    public func shutdown() throws {
        if isOnKernelThread {
            beginStopping()
            return
        }
        enum Next { case done, request, drainHere }
        let next: Next = lifecycle.state.withLock { s in
            if s.phase == .shutDown { return .done }
            if s.loopActive || s.phase == .running {
                if !s.stopRequested {
                    s.stopRequested = true
                    return .request
                }
                return .done
            }
            return .drainHere
        }
        switch next {
        case .done:
            return
        case .request:
            _ = lifecycle.post(evenWhenStopping: true) { k in k.beginStopping() }
        case .drainHere:
            try checkRunnable()
            if aliveCount > 0 || adoptedCount > 0 || ck_posted_count(ck) > 0 {
                beginStopping()
                try loop { self.aliveCount == 0 }
            }
            lifecycle.state.withLock { s in
                s.phase = .shutDown
                s.stopRequested = true
            }
            stopping = true
        }
    }

    /// True once ``shutdown()`` has finished (or the loop ended a shutdown).
    public var isShutDown: Bool { lifecycle.phase == .shutDown }

    /// True while a thread runs this kernel's loop (or `Kernel.start()`
    /// has given it one). Thread-safe.
    public var isRunning: Bool { lifecycle.phase == .running }

    private func checkRunnable() throws {
        try lifecycle.state.withLock { s in
            if s.phase == .shutDown {
                throw CurioUsageError(.shutDown, "this kernel has been shut down and cannot run again; create a new Kernel")
            }
            if s.loopActive {
                throw CurioUsageError(.alreadyRunning, "this kernel is already running (run() was called from one of its own tasks or from a second thread)")
            }
        }
        if let other = ck_current(), other != ck {
            throw CurioUsageError(.threadBusy, "another kernel is running on this thread; use one kernel per thread")
        }
    }

    /// The loop: run the jobs that are ready, then wait for completions,
    /// timers and posts, until `done` says so (or, once shutdown has begun,
    /// until every task has ended) and no posted work is on its way.
    private func loop(until done: () -> Bool) throws {
        try enterLoop()
        ck_bind_thread(ck)
        ck_note_thread(ck)
        onMainThread = MainThreadWatch.isMainThread
        mainActorReported = false
        defer {
            // Samples are taken at most once a millisecond while tasks
            // switch; a run shorter than that would otherwise report no
            // backend activity at all.
            metrics?.sample()
            onMainThread = false
            leaveLoop()
            ck_bind_thread(nil)
        }
        while true {
            runReady()
            if (stopping ? aliveCount == 0 : done()) && mayLeaveLoop() { return }
            try waitAndDispatch()
        }
    }

    /// The loop's waiting half: publish the monitor's snapshot when going
    /// idle, watch briefly for a worker's answer, then poll and dispatch.
    private func waitAndDispatch(maxWaitCap: Int64 = -1) throws {
        let mayBlock = ck_ready_count(readyQueue) == 0
        var maxWait: Int64 = maxWaitCap
        if mayBlock && monitorLink != nil && snapshotDirty {
            // Going idle: leave the monitor a recent copy of the table
            // in case a task hogs the kernel later. At most 100 copies a
            // second; a skipped one is made when the window closes.
            let now = ck_now_ns()
            let wait = lastPublish + 10_000_000 - now
            if wait <= 0 {
                lastPublish = now
                snapshotDirty = false
                publishSnapshot()
            } else if maxWait < 0 || wait < maxWait {
                maxWait = wait
            }
        }
        // (ck_timer_next is Int64.max without timers, so that case spins too.)
        if mayBlock && externalWaits > 0 && ck_timer_next(ck) &- now > Kernel.spinNanoseconds {
            // A worker thread will likely answer within microseconds:
            // look for its post a little before going to sleep, since
            // a sleeping kernel thread takes tens of microseconds to
            // wake on a VM.
            let until = ck_now_ns() + Kernel.spinNanoseconds
            while ck_posted_count(ck) == 0 && ck_now_ns() < until {}
        }
        if mayBlock { checkDeadlock() }
        var watching = false
        if mayBlock, onMainThread, let cap = mainActorWatchCap(), maxWait < 0 || cap < maxWait {
            maxWait = cap
            watching = true
        }
        if clockIsVirtual { holdClockForOutsideWaits() }
        let got = ck_poll(ck, mayBlock, maxWait, eventBuffer, Self.eventCapacity)
        if got < 0 {
            throw KernelError(errno: -got, operation: "waiting for events")
        }
        if watching && got == 0 && ck_ready_count(readyQueue) == 0 { reportQuietMainThread() }
        for i in 0..<Int(got) { dispatch(eventBuffer[i]) }
    }

    /// Runs the jobs that are ready now; what they make ready runs on the
    /// next call, after the I/O poll, so busy tasks cannot starve I/O.
    @discardableResult
    private func runReady() -> Int {
        var entry = ck_ready_entry()
        let executor = unownedSelf
        let count = Int(ck_ready_count(readyQueue))
        var n = count
        let monitored = monitorLink != nil
        let hooked = !activations.isEmpty
        if count > 0 {
            deadlockReported = false
            snapshotDirty = true
        }
        while n > 0 && ck_ready_pop(readyQueue, &entry) {
            n -= 1
            if entry.task == nil, let job = entry.job, let t = tasksBySwiftTask[job] {
                // Enqueued by the runtime on its own (see launch).
                entry.task = Unmanaged.passUnretained(t).toOpaque()
            }
            // A strong reference for the whole job: the task may end in it,
            // and its Swift task then drops the last other reference.
            let task = entry.task.map { Unmanaged<AnyCurioTask>.fromOpaque($0).takeUnretainedValue() }
            if let t = task {
                // Back from a Swift-native await in a timeout block: the timer of its deadline goes.
                if _slowPath(t.timer != 0 && t.continuation == nil) { scopeResumes(t) }
                t.state = .running
                t.cycles &+= 1
                current = t
                if monitored { ck_mark_running(ck, Int64(t.id), ck_now_ns()) }
                if hooked { for a in activations { a.running(t) } }
            } else {
                current = nil
            }
            unsafeBitCast(entry.job, to: UnownedJob.self).runSynchronously(on: executor)
            if let t = task, !t.terminated {
                if t.continuation == nil && !t.yielding {
                    // It stopped without a Curio trap: a Swift-native await.
                    t.state = .swiftAwait
                    noteSwiftAwait(t)
                    // In a timeout block: the deadline must reach the await (DeadlineScope.swift).
                    if !t.scopes.isEmpty { scopeAwaitsSwift(t) }
                }
                if hooked { for a in activations { a.suspended(t) } }
            }
            current = nil
            if monitored { ck_mark_running(ck, 0, 0) }
            if !yielders.isEmpty { resumeYielders() }
        }
        return count
    }

    private func resumeYielders() {
        swap(&yielders, &yieldersSpare)
        for t in yieldersSpare where t.continuation != nil {
            resume(t, Wake.normal)
        }
        yieldersSpare.removeAll(keepingCapacity: true)
    }

    private func dispatch(_ e: ck_event) {
        switch ck_event_kind(UInt32(e.kind)) {
        case CK_EVENT_TIMER:
            let t = Unmanaged<AnyCurioTask>.fromOpaque(e.token).takeUnretainedValue()
            timerFired(t, deadline: e.result)
        case CK_EVENT_IO:
            let t = Unmanaged<AnyCurioTask>.fromOpaque(e.token).takeUnretainedValue()
            ioCompleted(t, result: e.result)
        case CK_EVENT_MESSAGE:
            let message = Unmanaged<KernelMessage>.fromOpaque(e.token).takeRetainedValue()
            message.body(self)
        case CK_EVENT_CHUNK:
            // A streaming receive completes many times: its token is the
            // receiver (ReceiveStream.swift), not a task.
            ChunkReceiver.chunkArrived(e.token, buffer: e.aux, length: Int(e.result))
        case CK_EVENT_STREAM_END:
            ChunkReceiver.streamEnded(e.token, result: Int(e.result))
        case CK_EVENT_IO_MORE:
            // A multishot accept's connection (ConnectionAcceptor.swift).
            AcceptReceiver.accepted(e.token, fd: Int32(truncatingIfNeeded: e.result))
        case CK_EVENT_MULTI_END:
            AcceptReceiver.ended(e.token, result: Int(e.result))
        case CK_EVENT_SENT_BEHIND:
            // A send the task did not wait for (SendBehind.swift).
            SendBehind.ended(e.token, result: Int(e.result), kernel: self)
        default:
            break
        }
    }

    // MARK: - Dropping

    /// Cancels what is left and runs it to its end, for at most the
    /// configuration's drop grace period. True when nothing is left that
    /// could still touch the C kernel.
    private func drainOnDrop() -> Bool {
        lifecycle.state.withLock { s in
            if s.phase != .shutDown { s.phase = .draining }
            s.stopRequested = true
        }
        func idle() -> Bool {
            aliveCount == 0 && ck_ready_count(readyQueue) == 0 && ck_posted_count(ck) == 0
                && ck_pending_requests(ck) == 0
        }
        if idle() && adoptedCount == 0 && lifecycle.finishDrain() { return true }
        // Dropped on another kernel's thread (one of its tasks let go of
        // the last reference): borrow the thread and give it back.
        let saved = ck_current()
        let savedResuming = ck_tls_resuming()
        ck_bind_thread(ck)
        defer {
            ck_bind_thread(saved)
            ck_set_tls_resuming(savedResuming)
        }
        ck_set_tls_resuming(nil)
        beginStopping()
        let deadline = ck_now_ns() + max(configuration.dropGracePeriod.curioNanoseconds, 0)
        while true {
            runReady()
            endIdleAdoptedTasks()
            if idle() && lifecycle.finishDrain() { return true }
            let left = deadline - ck_now_ns()
            if left <= 0 {
                lifecycle.state.withLock { $0.phase = .shutDown }
                return false
            }
            do {
                try waitAndDispatch(maxWaitCap: min(left, 10_000_000))
            } catch {
                lifecycle.state.withLock { $0.phase = .shutDown }
                return false
            }
        }
    }

    // MARK: - Messages from other threads

    /// Runs `body` on the kernel thread at its next turn. Thread-safe.
    /// For work for tasks the kernel already has (wake-ups); new work from
    /// outside goes through `lifecycle.post`, which the loop waits for.
    func postMessage(_ body: @escaping @Sendable (Kernel) -> Void) {
        let m = Unmanaged.passRetained(KernelMessage(body)).toOpaque()
        if !ck_post(ck, nil, nil, m) {
            Unmanaged<KernelMessage>.fromOpaque(m).release()
            fatalError("curio: out of memory posting a message to the kernel")
        }
    }

    /// True when the calling thread is this kernel's running thread.
    var isOnKernelThread: Bool { ck_current() == ck }

    /// A new task id; any thread.
    func takeTaskID() -> Int {
        taskIDs.wrappingAdd(taskIDStep.load(ordering: .relaxed), ordering: .relaxed).oldValue
    }

    // MARK: - Adding tasks (seed style)

    /// Adds a task to run when the kernel runs (the seed's `add_task`).
    ///
    /// ```swift
    /// kernel.addTask(parent)
    /// kernel.addTask { try await countdown(10) }
    /// ```
    ///
    /// Safe from any thread or task, and never blocks: from a thread other
    /// than the kernel's own, or from a task of another kernel, the handle
    /// is returned at once and the task starts on the kernel thread at its
    /// next turn (or at its next `run` when it is not running). On a kernel
    /// that is shut down the task cannot run: the handle is returned already
    /// ended, failed with ``KernelUnavailable`` (its join throws
    /// ``TaskError`` with that cause).
    @discardableResult
    public func addTask<T>(daemon: Bool = false, name: String? = nil,
                           _ fn: @escaping @Sendable () async throws -> T) -> CurioTask<T> {
        if isOnKernelThread {
            return spawnTask(daemon: daemon, name: name, parent: current?.id, fn)
        }
        return addTaskFromOutside(daemon: daemon, name: name, fn)
    }
}

/// A closure posted to a kernel from another thread.
final class KernelMessage {
    let body: @Sendable (Kernel) -> Void
    init(_ body: @escaping @Sendable (Kernel) -> Void) { self.body = body }
}

/// The executor Curio's own tasks prefer. It holds the C kernel, not the
/// `Kernel`: a task retains its preferred executor (RuntimeAssumptions.swift,
/// 5), and a kernel must be free to go away while its tasks are suspended.
/// It shares the kernel's identity (``Kernel/asUnownedTaskExecutor()``).
final class KernelExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: two immutable pointers; `enqueue` pushes onto the ready
    // queue only on the kernel's own thread and posts (locked) otherwise;
    // the hand-off fields are read and written on the kernel thread only.
    let ck: OpaquePointer
    let readyQueue: UnsafeMutablePointer<ck_ready>
    /// Kernel thread only: the job that goes ahead of every other ready one
    /// when it is enqueued (a task whose timeout block's child just ended,
    /// DeadlineScope.swift), and its Curio task.
    var handOffJob: UnsafeMutableRawPointer?
    var handOffTask: UnsafeMutableRawPointer?

    init(ck: OpaquePointer, readyQueue: UnsafeMutablePointer<ck_ready>) {
        self.ck = ck
        self.readyQueue = readyQueue
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let raw = unsafeBitCast(UnownedJob(job), to: UnsafeMutableRawPointer.self)
        if ck_current() == ck {
            if _slowPath(raw == handOffJob) {
                handOffJob = nil
                if !ck_ready_push_front(readyQueue, raw, handOffTask) {
                    fatalError("curio: out of memory growing the ready queue")
                }
                return
            }
            if !ck_ready_push(readyQueue, raw, ck_tls_resuming()) {
                fatalError("curio: out of memory growing the ready queue")
            }
        } else if !ck_post(ck, raw, ck_tls_resuming(), nil) {
            fatalError("curio: out of memory posting a job to the kernel")
        }
    }
}

/// Runs `main` on a new kernel and returns its value, then shuts the kernel
/// down (curio 1.6's `curio.run`): tasks still running when `main` ends are
/// cancelled and run to their end.
///
/// ```swift
/// try Curio.run { try await parent() }
/// ```
///
/// Rethrows what `main` throws (after the shutdown).
@available(*, noasync, message: "Curio.run blocks the thread until main ends; from async code use Kernel.start() and kernel.call { }")
@discardableResult
public func run<T>(withMonitor: Bool = false, _ main: @escaping @Sendable () async throws -> T) throws -> T {
    let kernel = Kernel(withMonitor: withMonitor)
    let value: T
    do {
        value = try kernel.run(main)
    } catch {
        try kernel.shutdown()
        throw error
    }
    try kernel.shutdown()
    return value
}

extension Kernel {
    /// The io_uring → epoll fallback is said once per process, like the
    /// C kernel used to print it.
    static let fallbackReported = Atomic<Bool>(false)
}

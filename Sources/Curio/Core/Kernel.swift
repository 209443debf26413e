import CCurioKernel
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
/// Every task of a kernel runs on the thread that called ``run(shutdown:)``, so the
/// kernel's state needs no locks; several kernels on several threads run
/// independently (one kernel per thread).
public final class Kernel: TaskExecutor, @unchecked Sendable {
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
    private var unownedSelf: UnownedTaskExecutor!

    /// Whether the monitor was requested for this kernel.
    public let withMonitor: Bool
    /// How long the loop watches for a worker's answer before sleeping.
    static let spinNanoseconds: Int64 = 50_000
    /// Unique among every kernel this process creates (never reused).
    public let serial: UInt64 = ck_next_serial()
    /// The backend this kernel ended up with (io_uring may fall back to epoll).
    public let backend: Backend

    // Kernel-thread state. Only the thread running the loop touches these.
    @exclusivity(unchecked) unowned(unsafe) var current: AnyCurioTask?
    var nextTaskID = 1
    var aliveCount = 0
    var nonDaemonAlive = 0
    var taskListHead: AnyCurioTask?
    var yielders: ContiguousArray<AnyCurioTask> = []
    /// Every live Curio task by the address of its Swift task (see launch).
    var tasksBySwiftTask: [UnsafeMutableRawPointer: AnyCurioTask] = [:]
    private var yieldersSpare: ContiguousArray<AnyCurioTask> = []
    private(set) var isRunning = false
    private(set) var isShutDown = false
    /// Set when the monitor (or the task dump) is on: the snapshot it reads.
    var monitorLink: MonitorLink?
    /// Debug hooks (``addActivation(_:)``).
    var activations: [any Activation] = []
    /// Tasks waiting for something outside the kernel's sight (a worker
    /// thread, another thread's put, a signal): not part of a deadlock.
    var externalWaits = 0
    var deadlockReported = false
    /// Signals that dump the task tree (``enableTaskDump(on:)``).
    var dumpSignals: [Int32] = []

    /// What this kernel was created with.
    public let configuration: Configuration

    /// With the monitor on, a task that holds the kernel this many seconds
    /// without blocking is reported once on stderr, with its location and
    /// the kernel thread's live stack. 0 turns the watchdog off. Starts at
    /// the configuration's ``Configuration/longBlockThreshold``.
    public var longBlockThreshold: Double
    private var monitor: Monitor?
    private var lastPublish: Int64 = 0
    private var snapshotDirty = true

    /// Where the remote monitor listens (`nc 127.0.0.1 48802`), if it does.
    public var monitorAddress: SocketAddress? { monitor?.address }

    /// Creates a kernel with the default configuration (the environment's
    /// documented overrides applied); `withMonitor` turns on the monitor
    /// (Ctrl-C console and remote endpoint), as in the seed.
    ///
    /// The default build uses io_uring and falls back to epoll, with one
    /// line on stderr, when io_uring cannot be set up; the `Epoll` package
    /// trait builds epoll alone.
    public convenience init(withMonitor: Bool = false) {
        var c = Configuration.default
        if withMonitor && c.monitor == nil { c.monitor = .standard }
        self.init(configuration: c)
    }

    /// Creates a kernel from `configuration`.
    public init(configuration: Configuration) {
        self.configuration = configuration
        longBlockThreshold = configuration.longBlockThreshold
        let want: ck_backend_kind
        switch configuration.backend {
        case .automatic, .ioUring: want = ck_have_io_uring() ? CK_BACKEND_IO_URING : CK_BACKEND_EPOLL
        // The C kernel reads the variable itself and says once why it
        // falls back; ask it for io_uring so that it does.
        case .epoll where configuration.backendForcedByEnvironment:
            want = ck_have_io_uring() ? CK_BACKEND_IO_URING : CK_BACKEND_EPOLL
        case .epoll: want = CK_BACKEND_EPOLL
        }
        guard let k = ck_kernel_new(want) else {
            // Only fd or memory exhaustion gets here; there is no kernel to
            // return and the initializer is non-throwing by design (API.md).
            fatalError("curio: cannot create a kernel: \(String(cString: strerror(errno)))")
        }
        ck = k
        readyQueue = ck_kernel_ready(k)
        eventBuffer = .allocate(capacity: Int(Self.eventCapacity))
        withMonitor = configuration.monitor != nil
        backend = ck_kernel_backend(k) == CK_BACKEND_IO_URING ? .ioUring : .epoll
        unownedSelf = UnownedTaskExecutor(ordinary: self)
        ck_set_owner(k, Unmanaged.passUnretained(self).toOpaque())
        ck_ignore_sigpipe()
        if let fallback = ck_take_fallback_report() { diagnose(.warning, kernel: self, String(cString: fallback)) }
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

    /// The remote monitor listens on `endpoint` and, on a terminal and when
    /// `console` allows, takes over Ctrl-C. With `announce` it says on
    /// stderr where it listens.
    private func startMonitor(_ endpoint: Configuration.MonitorEndpoint, announce: Bool, console: Bool) {
        var host = "127.0.0.1", port = 48802
        if case .tcp(let h, let p) = endpoint {
            if !h.isEmpty { host = h }
            port = p
        }
        // The monitor can cancel tasks and send signals: never off the machine.
        if !(host.hasPrefix("127.") || host == "::1" || host == "localhost") {
            diagnose(.warning, kernel: self, "curio: the monitor listens on loopback only; ignoring host '\(host)' and using 127.0.0.1\n")
            host = "127.0.0.1"
        }
        let link = MonitorLink()
        monitorLink = link
        let m = Monitor(kernel: self, link: link, host: host, port: port,
                        console: console && isatty(0) == 1)
        monitor = m
        if announce, let a = m.address {
            diagnose(.notice, kernel: self, "curio: monitor listening on \(a.host):\(a.port)\n")
        }
    }

    deinit {
        monitor?.stop()
        if !dumpSignals.isEmpty {
            SignalHub.shared.removeListeners(owner: self)
            dumpSignals.forEach { ck_signal_unwatch($0) }
        }
        ck_kernel_free(ck)
        eventBuffer.deallocate()
    }

    // MARK: - Executor

    /// Queues a job of one of this kernel's tasks. Called by the Swift
    /// runtime; jobs from other threads go through the C post queue.
    public func enqueue(_ job: consuming ExecutorJob) {
        let raw = unsafeBitCast(UnownedJob(job), to: UnsafeMutableRawPointer.self)
        if ck_current() == ck {
            if !ck_ready_push(readyQueue, raw, ck_tls_resuming()) {
                fatalError("curio: out of memory growing the ready queue")
            }
        } else if !ck_post(ck, raw, ck_tls_resuming(), nil) {
            fatalError("curio: out of memory posting a job to the kernel")
        }
    }

    /// This kernel as an executor for `Task(executorPreference:)` (TaskExecutor).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    // MARK: - Finding the kernel of the calling code

    /// The kernel running on the calling thread, if any.
    public static var current: Kernel? {
        guard let k = ck_current() else { return nil }
        return Unmanaged<Kernel>.fromOpaque(ck_owner(k)).takeUnretainedValue()
    }

    /// The task making a Curio call, or a clear error when the caller is
    /// not a task of a running kernel.
    @inline(__always)
    static func currentTask(_ what: StaticString = #function) throws -> AnyCurioTask {
        if let k = ck_current() {
            let kernel = Unmanaged<Kernel>.fromOpaque(ck_owner(k)).takeUnretainedValue()
            if let t = kernel.current { return t }
        }
        throw CurioUsageError(.notInKernel,
            "\(what) must be called from a task running on a Curio kernel (spawn it with Kernel.addTask, run(_:) or spawn); it was called from a plain thread or another executor")
    }

    // MARK: - Running

    /// Runs until every non-daemon task has ended (the seed's
    /// `kernel.run()`). Daemon tasks stay suspended; ``shutdown()`` (or
    /// `shutdown: true`) cancels them.
    ///
    /// Throws ``CurioUsageError`` when the kernel is already running, has
    /// been shut down, or another kernel runs on this thread.
    public func run(shutdown: Bool = false) throws {
        try loop { self.nonDaemonAlive == 0 }
        if shutdown { try self.shutdown() }
    }

    /// Runs `main` as a task and returns its value once it ends (curio 1.6's
    /// `kernel.run(coro)`). Other tasks keep their state; run the kernel
    /// again or call ``shutdown()`` to finish them.
    ///
    /// Rethrows what `main` throws; throws ``TaskCancelled`` if `main` was
    /// cancelled.
    @discardableResult
    public func run<T>(_ main: @escaping @Sendable () async throws -> T) throws -> T {
        try checkRunnable()
        let task: CurioTask<T> = spawnTask(daemon: false, name: nil, parent: nil, main)
        try loop { task.terminated }
        return try task.outcomeForRun()
    }

    /// Cancels every remaining task, daemons included, and runs the kernel
    /// until they have all ended. Afterwards the kernel cannot run again.
    public func shutdown() throws {
        if isShutDown { return }
        if aliveCount > 0 {
            try checkRunnable()
            var t = taskListHead
            while let task = t {
                t = task.allNext
                deliverCancel(task, TaskCancelled())
            }
            try loop { self.aliveCount == 0 }
        }
        isShutDown = true
    }

    private func checkRunnable() throws {
        if isShutDown {
            throw CurioUsageError(.shutDown, "this kernel has been shut down and cannot run again; create a new Kernel")
        }
        if isRunning {
            throw CurioUsageError(.alreadyRunning, "this kernel is already running (run() was called from one of its own tasks or from a second thread)")
        }
        if let other = ck_current(), other != ck {
            throw CurioUsageError(.threadBusy, "another kernel is running on this thread; use one kernel per thread")
        }
    }

    /// The loop: run the jobs that are ready, then wait for completions,
    /// timers and posts, until `done` says so.
    private func loop(until done: () -> Bool) throws {
        try checkRunnable()
        isRunning = true
        ck_bind_thread(ck)
        ck_note_thread(ck)
        defer {
            isRunning = false
            ck_bind_thread(nil)
        }
        while true {
            runReady()
            if done() { return }
            let mayBlock = ck_ready_count(readyQueue) == 0
            var maxWait: Int64 = -1
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
                } else {
                    maxWait = wait
                }
            }
            // (ck_timer_next is Int64.max without timers, so that case spins too.)
            if mayBlock && externalWaits > 0 && ck_timer_next(ck) &- ck_now_ns() > Kernel.spinNanoseconds {
                // A worker thread will likely answer within microseconds:
                // look for its post a little before going to sleep, since
                // a sleeping kernel thread takes tens of microseconds to
                // wake on a VM.
                let until = ck_now_ns() + Kernel.spinNanoseconds
                while ck_posted_count(ck) == 0 && ck_now_ns() < until {}
            }
            if mayBlock { checkDeadlock() }
            let got = ck_poll(ck, mayBlock, maxWait, eventBuffer, Self.eventCapacity)
            if got < 0 {
                throw KernelError(errno: -got, operation: "waiting for events")
            }
            for i in 0..<Int(got) { dispatch(eventBuffer[i]) }
        }
    }

    /// Runs the jobs that are ready now; what they make ready runs on the
    /// next call, after the I/O poll, so busy tasks cannot starve I/O.
    @discardableResult
    private func runReady() -> Int {
        var entry = ck_ready_entry()
        let executor = unownedSelf!
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
        default:
            break
        }
    }

    // MARK: - Messages from other threads

    /// Runs `body` on the kernel thread at its next turn. Thread-safe.
    func postMessage(_ body: @escaping @Sendable (Kernel) -> Void) {
        let m = Unmanaged.passRetained(KernelMessage(body)).toOpaque()
        if !ck_post(ck, nil, nil, m) {
            Unmanaged<KernelMessage>.fromOpaque(m).release()
            fatalError("curio: out of memory posting a message to the kernel")
        }
    }

    /// True when the calling thread is this kernel's running thread.
    var isOnKernelThread: Bool { ck_current() == ck }

    // MARK: - Adding tasks (seed style)

    /// Adds a task to run when the kernel runs (the seed's `add_task`).
    ///
    /// ```swift
    /// kernel.addTask(parent)
    /// kernel.addTask { try await countdown(10) }
    /// ```
    ///
    /// Safe from any thread: from a thread other than a running kernel's,
    /// the task is created on the kernel thread at its next turn.
    @discardableResult
    public func addTask<T>(daemon: Bool = false, name: String? = nil,
                           _ fn: @escaping @Sendable () async throws -> T) -> CurioTask<T> {
        if isRunning && !isOnKernelThread {
            let box = HandoffBox<CurioTask<T>>()
            postMessage { k in box.put(k.spawnTask(daemon: daemon, name: name, parent: nil, fn)) }
            return box.take()
        }
        return spawnTask(daemon: daemon, name: name, parent: current?.id, fn)
    }
}

/// A closure posted to a kernel from another thread.
final class KernelMessage {
    let body: @Sendable (Kernel) -> Void
    init(_ body: @escaping @Sendable (Kernel) -> Void) { self.body = body }
}

/// Carries one value from the kernel thread to a thread that blocks for it.
final class HandoffBox<T>: @unchecked Sendable {
    private var value: T?
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }
    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&cond)
    }
    func put(_ v: T) {
        pthread_mutex_lock(&mutex)
        value = v
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
    }
    func take() -> T {
        pthread_mutex_lock(&mutex)
        while value == nil { pthread_cond_wait(&cond, &mutex) }
        let v = value!
        value = nil
        pthread_mutex_unlock(&mutex)
        return v
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

import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// N kernels on N threads of their own, one per core by default: the way a
/// Curio service uses every core.
///
/// ```swift
/// let group = try KernelGroup.start()             // one kernel per available core
/// let n = try await group.call { try await work() }          // on the next kernel (round robin)
/// let m = try await group.call(on: .leastLoaded) { try await work() }
/// let server = try await group.tcpServer(port: 8080) { client, _ in
///     for try await line in client { try await client.write(line) }
/// }
/// ...
/// try await server.drain(grace: 5)
/// group.shutdown()
/// try await group.wait()                           // every thread joined
/// ```
///
/// Every kernel is created with the same ``Kernel/Configuration`` and runs in
/// service mode (``Kernel/runUntilShutdown()``) on a joinable thread named
/// `curio-g<serial>.<index>`. Each kernel is a ``Kernel`` like any other: its tasks run
/// on its thread only, objects that block bind to the kernel of their first
/// user, and kernels hand each other work without blocking (``addTask(on:daemon:name:_:)``,
/// ``call(on:name:_:)``, ``UniversalQueue``).
///
/// Task ids are unique across the group: kernel `i` of `n` numbers its tasks
/// `i + 1`, `i + 1 + n`, `i + 1 + 2n`, ..., so an id names its kernel
/// (``kernelIndex(ofTask:)``) and the group's monitor takes `where ID` and
/// `cancel ID` for any kernel's task.
///
/// With ``Kernel/Configuration/monitor`` set, the group has one monitor
/// endpoint (not one per kernel) whose `ps` lists every kernel's tasks with a
/// kernel column.
public final class KernelGroup: Sendable {
    /// Where a task or call goes.
    public enum Placement: Sendable, Equatable {
        /// The next kernel in turn (``KernelGroup/next()``).
        case next
        /// The kernel with the lowest ``KernelGroup/load(at:)`` (``KernelGroup/leastLoaded()``).
        case leastLoaded
        /// The kernel at this index (0 ..< ``KernelGroup/count``).
        case kernel(Int)
    }

    /// The kernels, in index order.
    public let kernels: [Kernel]
    /// Unique among the groups this process creates; the group's threads are
    /// named `curio-g<serial>.<index>`.
    public let serial: Int
    private static let serials = Atomic<Int>(1)
    /// How many kernels the group has.
    public var count: Int { kernels.count }

    /// What ``load(at:)`` reads, one per kernel.
    let loads: [KernelLoad]
    private let cursor = Atomic<UInt>(0)
    private let threads: Locked<[pthread_t]?>
    private let outcomes: Locked<[Result<Void, any Error>?]>
    private let running: Atomic<Int>
    private let allFinished = OutsideSignal()
    private let allJoined = OutsideSignal()
    /// The group's one monitor, when the configuration asks for it.
    let monitor: Monitor?

    deinit { monitor?.stop() }

    private init(kernels: [Kernel], monitor: Monitor?) {
        self.kernels = kernels
        self.monitor = monitor
        serial = KernelGroup.serials.wrappingAdd(1, ordering: .relaxed).oldValue
        loads = kernels.map { _ in KernelLoad() }
        threads = Locked([])
        outcomes = Locked(Array(repeating: nil, count: kernels.count))
        running = Atomic(kernels.count)
    }

    // MARK: - Starting

    /// Creates `kernels` kernels (default: ``availableCores``) with
    /// `configuration` and runs each on a thread of its own, in service mode,
    /// until ``shutdown()``. The kernels take calls as soon as this returns.
    ///
    /// With `pinThreads`, kernel `i` runs only on the `i`-th CPU of the
    /// process's affinity mask (modulo their number): steadier caches and
    /// benchmark figures, at the price of not moving off a CPU another
    /// process keeps busy.
    ///
    /// Throws ``CurioUsageError`` for a count below 1 or above 4096, and
    /// ``KernelError`` when a kernel or a thread cannot be created (the ones
    /// already started are shut down and joined first).
    public static func start(kernels requested: Int? = nil, configuration: Kernel.Configuration = .default,
                             pinThreads: Bool = false) throws -> KernelGroup {
        let n = requested ?? availableCores
        guard (1...4096).contains(n) else {
            throw CurioUsageError(.invalidArgument, "KernelGroup.start(kernels: \(n)): a group needs 1 to 4096 kernels")
        }
        // The group has one monitor; its kernels have none of their own
        // (they would all try to listen on the same socket).
        var each = configuration
        each.monitor = nil
        var made: [Kernel] = []
        do {
            for i in 0..<n {
                let k = try Kernel.make(configuration: each)
                k.taskIDs.store(i + 1, ordering: .relaxed)
                k.taskIDStep.store(n, ordering: .relaxed)
                made.append(k)
            }
        } catch {
            for k in made { try? k.shutdown() }
            throw error
        }
        var monitor: Monitor?
        if let endpoint = configuration.monitor {
            monitor = Monitor.forGroup(made, endpoint: endpoint, configuration: configuration)
        }
        let group = KernelGroup(kernels: made, monitor: monitor)
        let cpus = pinThreads ? allowedCPUs() : []
        for i in 0..<n {
            do {
                try group.startThread(i, cpu: cpus.isEmpty ? nil : cpus[i % cpus.count])
            } catch {
                // The threads not started never run: count them as ended.
                for j in i..<n {
                    try? made[j].shutdown()
                    group.threadEnded(j, .success(()))
                }
                group.shutdown()
                try? group.joinThreadsBlocking()
                throw error
            }
        }
        return group
    }

    private func startThread(_ i: Int, cpu: Int?) throws {
        let kernel = kernels[i]
        kernel.lifecycle.state.withLock { $0.phase = .running }
        let body: @Sendable () -> Void = { [self] in
            // The group's serial in the name tells the threads of several
            // groups of one process apart (`curio-k<i>` repeated itself for
            // every group); it fits the OS's 15 bytes up to group 999 and
            // kernel 999.
            nameThisThread("curio-g\(serial).\(i)")
            if let cpu { pinThisThread(to: cpu) }
            let r = Result { try kernel.runUntilShutdown() }
            if case .failure = r {
                kernel.lifecycle.state.withLock { s in
                    if !s.loopActive { s.phase = .shutDown }
                }
            }
            threadEnded(i, r)
        }
        let arg = Unmanaged.passRetained(GroupThreadBody(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            Unmanaged<GroupThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, arg)
        if rc != 0 {
            Unmanaged<GroupThreadBody>.fromOpaque(arg).release()
            kernel.lifecycle.state.withLock { $0.phase = .idle }
            throw KernelError(errno: rc, operation: "starting kernel \(i)'s thread")
        }
        threads.withLock { $0?.append(tid) }
    }

    /// A kernel's thread is about to return; the last one stops the monitor.
    private func threadEnded(_ i: Int, _ r: Result<Void, any Error>) {
        outcomes.withLock { $0[i] = r }
        if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            monitor?.stop()
            allFinished.fire()
        }
    }

    // MARK: - Stopping

    /// Asks every kernel to shut down: each cancels its tasks, runs them to
    /// their end, and its thread returns. Never blocks; safe from any
    /// thread or task (a task of the group included). ``wait()`` or
    /// ``join()`` waits for the threads and joins them.
    public func shutdown() {
        for k in kernels { try? k.shutdown() }
    }

    /// True once every kernel's thread has finished its loop.
    public var isFinished: Bool { allFinished.isFired }

    /// Waits (without blocking a thread, but for the few microseconds a
    /// finished thread takes to exit) until every kernel's thread has ended,
    /// joins them, and rethrows the first error a kernel's loop threw. Swift
    /// cancellation of the caller ends the wait with `CancellationError`
    /// (the kernels keep running). From a task of the group itself this
    /// would wait for its own kernel: that throws ``CurioUsageError``.
    public func wait() async throws {
        try refuseOwnKernel("wait()")
        if await allFinished.wait(cancellable: true) == .cancelled { throw CancellationError() }
        if !joinThreadsIfFirst() {
            if await allJoined.wait(cancellable: true) == .cancelled { throw CancellationError() }
        }
        try firstFailure()
    }

    /// ``wait()`` for a plain thread: blocks it until every kernel's thread
    /// has ended and is joined.
    @available(*, noasync, message: "join() blocks the thread; await wait() instead")
    public func join() throws {
        try refuseOwnKernel("join()")
        try joinThreadsBlocking()
        try firstFailure()
    }

    private func joinThreadsBlocking() throws {
        _ = allFinished.blockingWait(deadline: nil)
        if !joinThreadsIfFirst() { _ = allJoined.blockingWait(deadline: nil) }
    }

    /// Joins every thread if no other caller has taken them; false when
    /// another caller has (it fires `allJoined` when done).
    private func joinThreadsIfFirst() -> Bool {
        guard let tids = threads.withLock({ t -> [pthread_t]? in
            defer { t = nil }
            return t
        }) else { return false }
        // Every body has returned (allFinished): each join waits only for
        // the thread's exit.
        for tid in tids { pthread_join(tid, nil) }
        allJoined.fire()
        return true
    }

    private func refuseOwnKernel(_ what: String) throws {
        if let here = Kernel.current, kernels.contains(where: { $0 === here }) {
            throw CurioUsageError(.invalidArgument, "KernelGroup.\(what) from a task of the group's own kernel \(index(of: here) ?? -1) would wait for itself; call shutdown() and return, and wait from outside the group")
        }
    }

    private func firstFailure() throws {
        for r in outcomes.withLock({ $0 }) {
            if case .failure(let e)? = r { throw e }
        }
    }

    // MARK: - Placement

    /// The kernel at `index`; throws ``CurioUsageError`` outside 0 ..< ``count``.
    public func kernel(at index: Int) throws -> Kernel {
        guard kernels.indices.contains(index) else {
            throw CurioUsageError(.invalidArgument, "KernelGroup.kernel(at: \(index)): the group has \(count) kernel(s), indices 0..<\(count)")
        }
        return kernels[index]
    }

    /// The next kernel in turn: successive calls (from any thread) go round
    /// the group.
    public func next() -> Kernel { kernels[nextIndex()] }

    /// The kernel whose ``load(at:)`` is lowest now; ties go round the group,
    /// so an idle group spreads work like ``next()``. The loads are read
    /// without stopping anyone: two callers at the same moment may pick the
    /// same kernel.
    public func leastLoaded() -> Kernel { kernels[leastLoadedIndex()] }

    /// The index of `kernel` in the group, or nil for a kernel of elsewhere.
    public func index(of kernel: Kernel) -> Int? { kernels.firstIndex { $0 === kernel } }

    /// The index of the kernel that created task `id` (a task of this
    /// group: ids are unique across it).
    public func kernelIndex(ofTask id: Int) -> Int { ((id - 1) % count + count) % count }

    /// The load of kernel `index` as ``leastLoaded()`` counts it: calls made
    /// through the group (``call(on:name:_:)``) from when they are placed
    /// until they return, plus tasks added through the group
    /// (``addTask(on:daemon:name:_:)``) and connections of its servers
    /// (``tcpServer(host:port:spread:backlog:handler:)``) from when their
    /// task starts until it ends. Tasks those tasks spawn, and work given
    /// to the kernel directly, are not counted. Any thread.
    public func load(at index: Int) -> Int {
        loads[index].value
    }

    /// The index `placement` resolves to now.
    public func index(for placement: Placement) throws -> Int {
        switch placement {
        case .next: return nextIndex()
        case .leastLoaded: return leastLoadedIndex()
        case .kernel(let i):
            guard kernels.indices.contains(i) else {
                throw CurioUsageError(.invalidArgument, "KernelGroup placement .kernel(\(i)): the group has \(count) kernel(s), indices 0..<\(count)")
            }
            return i
        }
    }

    func nextIndex() -> Int {
        Int(cursor.wrappingAdd(1, ordering: .relaxed).oldValue % UInt(kernels.count))
    }

    private func leastLoadedIndex() -> Int {
        let n = kernels.count
        let start = nextIndex()
        var best = start, bestLoad = Int.max
        for step in 0..<n {
            let i = (start + step) % n
            let l = loads[i].value
            if l < bestLoad {
                best = i
                bestLoad = l
                if l == 0 { break }
            }
        }
        return best
    }

    // MARK: - Running work

    /// Runs `body` as a task of the kernel `placement` picks and returns its
    /// value, from any Swift task (a task of one of the group's kernels
    /// included: it suspends without stalling its kernel). See
    /// ``Kernel/call(name:_:)`` for cancellation and errors; throws
    /// ``KernelUnavailable`` once the group is shut down.
    public func call<T: Sendable>(on placement: Placement = .next, name: String? = nil,
                                  _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let i = try index(for: placement)
        let load = loads[i]
        load.add(1)
        defer { load.add(-1) }
        return try await kernels[i].call(name: name, body)
    }

    /// Adds a task to the kernel `placement` picks and returns its handle at
    /// once, from any thread or task: the non-blocking message between
    /// kernels. Join, wait for or cancel the handle from anywhere; on a
    /// shut-down group it comes back ended, failed with ``KernelUnavailable``.
    @discardableResult
    public func addTask<T>(on placement: Placement = .next, daemon: Bool = false, name: String? = nil,
                           _ body: @escaping @Sendable () async throws -> T) throws -> CurioTask<T> {
        let i = try index(for: placement)
        let load = loads[i]
        return kernels[i].addTask(daemon: daemon, name: name) {
            load.add(1)
            defer { load.add(-1) }
            return try await body()
        }
    }

    // MARK: - Cores

    /// The CPUs this process may run on (its `sched_getaffinity` mask), at
    /// least 1: ``start(kernels:configuration:pinThreads:)``'s default count.
    public static var availableCores: Int { max(1, allowedCPUs().count) }
}

/// A kernel's load as its group counts it (``KernelGroup/load(at:)``).
final class KernelLoad: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add(_ d: Int) { count.add(d, ordering: .relaxed) }
}

/// A group thread's body, passed through pthread_create's argument.
private final class GroupThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

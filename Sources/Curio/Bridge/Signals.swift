import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// Waits for Unix signals, as curio's `SignalSet`.
///
/// ```swift
/// try await SignalSet(SIGHUP).wait()           // the seed: wait for a SIGHUP
///
/// let sigs = SignalSet(SIGINT, SIGTERM)
/// try await sigs.watch {                        // signals arriving in here queue up
///     while let sig = try await sigs.wait() { print("got", sig) }
/// }
/// ```
///
/// While a set is watched, its signals are caught (their previous
/// disposition is restored when the last watch ends) and queued, so none
/// arriving between two waits is lost. ``wait(timeout:file:line:function:)-(Double?,_,_,_)``
/// outside ``watch(_:)`` watches just for the wait. Signals reach the
/// kernel as posted messages from a C handler's self-pipe; no Swift code
/// runs in a signal handler. A waiting task shows `SIGNAL_WAIT`.
public final class SignalSet: @unchecked Sendable {
    /// The signal numbers in the set.
    public let signals: [Int32]
    private let waiters = WaitQueue()
    private var affinity = Affinity()
    private var watchDepth = 0
    private var mutex = pthread_mutex_t()
    private var pending: [Int32] = []  // guarded by mutex

    /// A set of signals: `SignalSet(SIGHUP)`, `SignalSet(SIGINT, SIGTERM)`.
    public init(_ signals: Int32...) {
        self.signals = signals
        pthread_mutex_init(&mutex, nil)
    }

    /// The same from an array.
    public init(_ signals: [Int32]) {
        self.signals = signals
        pthread_mutex_init(&mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
    }

    /// Watches the set while `body` runs: its signals are caught and queued
    /// for ``wait(timeout:file:line:function:)-(Double?,_,_,_)``. Scopes nest.
    public func watch<R>(_ body: () async throws -> R) async throws -> R {
        let t = try affinity.task()
        try startWatching(t.kernel)
        defer { stopWatching() }
        return try await body()
    }

    /// Waits for one of the set's signals → its number; nil when `timeout`
    /// seconds pass first.
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Int32? {
        let t = try affinity.task()
        let deadline = try timeout.map { try deadlineAfter($0) } ?? .max
        let scoped = watchDepth > 0
        if !scoped { try startWatching(t.kernel) }
        defer { if !scoped { stopWatching() } }
        t.kernel.externalWaits += 1
        defer { t.kernel.externalWaits -= 1 }
        while true {
            if let sig = takePending() { return sig }
            let r = try await t.kernel.block(t, .signalWait, on: waiters, deadline: deadline,
                                             site: CallSite(file: file, line: line, function: function))
            if r == Wake.timeout { return takePending() }
        }
    }

    private func takePending() -> Int32? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return pending.isEmpty ? nil : pending.removeFirst()
    }

    private func startWatching(_ kernel: Kernel) throws {
        if watchDepth == 0 {
            guard !signals.isEmpty else {
                throw CurioUsageError(.invalidArgument, "SignalSet() needs at least one signal")
            }
            var started: [Int32] = []
            for sig in signals {
                let r = ck_signal_watch(sig)
                if r != 0 {
                    started.forEach { ck_signal_unwatch($0) }
                    throw CurioUsageError(.invalidArgument, r == -EPERM
                        ? "signal \(sig) (\(signalName(sig))) cannot be caught"
                        : "\(sig) is not a valid signal number")
                }
                started.append(sig)
            }
            try SignalHub.shared.register(self, kernel: kernel)
        }
        watchDepth += 1
    }

    private func stopWatching() {
        watchDepth -= 1
        if watchDepth == 0 {
            SignalHub.shared.unregister(self)
            signals.forEach { ck_signal_unwatch($0) }
            pthread_mutex_lock(&mutex)
            pending.removeAll()
            pthread_mutex_unlock(&mutex)
        }
    }

    /// Called on the hub thread: queue the signal, wake a waiter.
    func deliver(_ sig: Int32, to kernel: Kernel) {
        pthread_mutex_lock(&mutex)
        pending.append(sig)
        pthread_mutex_unlock(&mutex)
        kernel.postMessage { [self] k in k.wakeFirst(waiters) }
    }
}

/// An ``Event`` that is set when one of its signals arrives (curio's
/// `SignalEvent`). It watches its signals from creation until ``close()``.
///
/// ```swift
/// let stop = try await SignalEvent(SIGINT, SIGTERM)
/// try await stop.wait()
/// ```
public final class SignalEvent: @unchecked Sendable {
    private let set: SignalSet
    private let event = Event()
    private var watcher: CurioTask<Void>?

    /// Starts watching `signals` (a daemon task waits on them).
    public init(_ signals: Int32...) async throws {
        set = SignalSet(signals)
        let set = self.set, event = self.event
        watcher = try await spawn(daemon: true, name: "SignalEvent") {
            try await set.watch {
                while true {
                    try await set.wait()
                    await event.set()
                }
            }
        }
    }

    /// True once a signal has arrived (until ``clear()``).
    public var isSet: Bool { event.isSet }
    /// Waits for a signal; false when `timeout` seconds pass first.
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        try await event.wait(timeout: timeout, file: file, line: line, function: function)
    }
    /// Clears the event.
    public func clear() { event.clear() }
    /// Stops watching; the signals get their previous disposition back.
    public func close() async throws {
        try await watcher?.cancel()
        watcher = nil
    }
}

/// Reads the self-pipe on its own thread and hands each signal to the
/// kernels whose sets watch it.
final class SignalHub: @unchecked Sendable {
    static let shared = SignalHub()
    private var mutex = pthread_mutex_t()
    private var sets: [(set: SignalSet, kernel: Kernel)] = []
    private var listeners: [(sig: Int32, owner: ObjectIdentifier?, call: @Sendable () -> Void)] = []
    private var started = false

    private init() {
        pthread_mutex_init(&mutex, nil)
    }

    func register(_ set: SignalSet, kernel: Kernel) throws {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        try startLocked()
        sets.append((set, kernel))
    }

    /// Calls `call` on the signal thread each time `sig` arrives (the
    /// monitor's Ctrl-C). The caller must also watch `sig`.
    func addListener(_ sig: Int32, owner: AnyObject? = nil, _ call: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if (try? startLocked()) != nil { listeners.append((sig, owner.map(ObjectIdentifier.init), call)) }
    }

    /// Removes the listeners `owner` added.
    func removeListeners(owner: AnyObject) {
        pthread_mutex_lock(&mutex)
        listeners.removeAll { $0.owner == ObjectIdentifier(owner) }
        pthread_mutex_unlock(&mutex)
    }

    private func startLocked() throws {
        if !started {
            let fd = ck_signal_pipe()
            if fd < 0 { throw KernelError(errno: -fd, operation: "creating the signal pipe") }
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                SignalHub.shared.run(fd: Int32(Int(bitPattern: arg)))
                return nil
            }, UnsafeMutableRawPointer(bitPattern: Int(fd)))
            if rc != 0 { throw KernelError(errno: rc, operation: "starting the signal thread") }
            pthread_detach(tid)
            started = true
        }
    }

    func unregister(_ set: SignalSet) {
        pthread_mutex_lock(&mutex)
        sets.removeAll { $0.set === set }
        pthread_mutex_unlock(&mutex)
    }

    private func run(fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 64)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, -1) < 0 && errno != EINTR { return }
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                pthread_mutex_lock(&mutex)
                for sig in buf[0..<n] {
                    for entry in sets where entry.set.signals.contains(Int32(sig)) {
                        entry.set.deliver(Int32(sig), to: entry.kernel)
                    }
                    for l in listeners where l.sig == Int32(sig) { l.call() }
                }
                pthread_mutex_unlock(&mutex)
            }
        }
    }
}

/// `SIGHUP` for 1, and so on.
public func signalName(_ sig: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
        SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM",
        SIGTERM: "SIGTERM", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2", SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT",
        SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGTTIN: "SIGTTIN", SIGTTOU: "SIGTTOU", SIGWINCH: "SIGWINCH",
    ]
    return names[sig] ?? "signal \(sig)"
}

/// The signal called `name` (`"SIGHUP"` or `"HUP"`), or nil.
public func signalNumber(_ name: String) -> Int32? {
    let upper = name.uppercased()
    let full = upper.hasPrefix("SIG") ? upper : "SIG" + upper
    for sig in Int32(1)..<Int32(32) where signalName(sig) == full { return sig }
    return nil
}

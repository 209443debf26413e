#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

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
///
/// ## Other signal users in the same process
///
/// Curio does not silently steal a signal:
/// - a handler installed before the watch (a plain `sigaction`, a C
///   library's) keeps being called, after Curio's, with the same
///   `siginfo_t`;
/// - a handler installed *over* Curio's while it watches is noticed at
///   the next watch: Curio's goes back in front and chains to it;
/// - a signal that was ignored (`SIG_IGN`) — what swift-service-lifecycle's
///   `ServiceGroup` and Dispatch signal sources set up, and what `nohup`
///   does for SIGHUP — is taken over: Dispatch reads such signals with a
///   signalfd, which no longer sees them once a handler catches them. Curio
///   logs a warning once per signal (through the kernel's logger) naming it;
///   when the watch ends the signal is ignored again and the source fires
///   as before. Watch a signal with one of the two, not both.
///
/// When the last watch ends, the disposition found at the first watch is
/// put back, unless another handler replaced Curio's meanwhile (that one
/// is kept).
// @unchecked Sendable: `signals` is immutable and `pending` is a Mutex;
// the wait queue and `watchDepth` are touched only by the tasks of the
// kernel the set is bound to (`affinity.task()` checks it first) and by
// messages posted to that kernel.
public final class SignalSet: @unchecked Sendable {
    /// The signal numbers in the set.
    public let signals: [Int32]
    private let waiters = WaitQueue()
    private let affinity = Affinity()
    private var watchDepth = 0
    private let pending = Locked<[Int32]>([])

    /// A set of signals: `SignalSet(SIGHUP)`, `SignalSet(SIGINT, SIGTERM)`.
    public init(_ signals: Int32...) {
        self.signals = signals
    }

    /// The same from an array.
    public init(_ signals: [Int32]) {
        self.signals = signals
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
        if let sig = takePending() { return sig }
        _ = try await t.kernel.blockExternally(t, .signalWait, on: waiters, deadline: deadline,
                                               site: CallSite(file: file, line: line, function: function)) {
            pending.withLock { !$0.isEmpty }
        }
        return takePending()
    }

    private func takePending() -> Int32? {
        pending.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }

    private func startWatching(_ kernel: Kernel) throws {
        if watchDepth == 0 {
            guard !signals.isEmpty else {
                throw CurioUsageError(.invalidArgument, "SignalSet() needs at least one signal")
            }
            var started: [Int32] = []
            for sig in signals {
                switch SignalWatch.start(sig) {
                case .success(let takeover):
                    SignalTakeover.report(sig, takeover, kernel: kernel)
                    started.append(sig)
                case .failure(let e):
                    started.forEach { SignalWatch.stop($0) }
                    throw CurioUsageError(.invalidArgument, e.errno == EPERM
                        ? "signal \(sig) (\(signalName(sig))) cannot be caught"
                        : "\(sig) is not a valid signal number")
                }
            }
            try SignalHub.shared.register(self, kernel: kernel)
        }
        watchDepth += 1
    }

    private func stopWatching() {
        watchDepth -= 1
        if watchDepth == 0 {
            SignalHub.shared.unregister(self)
            signals.forEach { SignalWatch.stop($0) }
            pending.withLock { $0.removeAll() }
        }
    }

    /// Called on the hub thread: queue the signal, wake a waiter.
    func deliver(_ sig: Int32, to kernel: Kernel) {
        pending.withLock { $0.append(sig) }
        kernel.postMessage { [self] k in k.wakeFirst(waiters) }
    }
}

/// Says once per signal, through the kernel's logger, when a watch took a
/// disposition that someone else was using (see ``SignalSet``).
enum SignalTakeover {
    private static let reported = Locked<Set<Int32>>([])

    /// What the watch of `sig` found in its disposition.
    static func report(_ sig: Int32, _ takeover: SignalWatch.Takeover, kernel: Kernel) {
        let message: String
        switch takeover {
        case .wasIgnored:
            message = "curio: \(signalName(sig)) was ignored (SIG_IGN, as set up for a Dispatch signal source, swift-service-lifecycle's ServiceGroup or nohup); Curio's SignalSet now catches it, so such a source does not see it until the watch ends"
        case .reclaimed:
            message = "curio: another handler replaced Curio's for \(signalName(sig)) while a SignalSet watched it; Curio's is back and calls that handler after its own"
        case .nobodyLoses:
            return
        }
        let first = reported.withLock { $0.insert(sig).inserted }
        if first { kernel.configuration.logger.warning("\(message)") }
    }

    /// Forgets what was reported (tests).
    static func reset() { reported.withLock { $0.removeAll() } }
}

/// An ``Event`` that is set when one of its signals arrives (curio's
/// `SignalEvent`). It watches its signals from creation until ``close()``.
///
/// ```swift
/// let stop = try await SignalEvent(SIGINT, SIGTERM)
/// try await stop.wait()
/// ```
// @unchecked Sendable: `set` and `event` are Sendable; `watcher` is set
// and cleared only by tasks of the kernel that created the event.
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
final class SignalHub: Sendable {
    static let shared = SignalHub()

    private struct Listener {
        let sig: Int32
        let owner: ObjectIdentifier?
        let call: @Sendable () -> Void
    }
    private struct State {
        var sets: [(set: SignalSet, kernel: Kernel)] = []
        var listeners: [Listener] = []
        var started = false
    }
    private let state = Locked(State())

    private init() {}

    func register(_ set: SignalSet, kernel: Kernel) throws {
        try state.withLock { s in
            try startLocked(&s)
            s.sets.append((set, kernel))
        }
    }

    /// Calls `call` on the signal thread each time `sig` arrives (the
    /// monitor's Ctrl-C). The caller must also watch `sig`.
    func addListener(_ sig: Int32, owner: AnyObject? = nil, _ call: @escaping @Sendable () -> Void) {
        state.withLock { s in
            if (try? startLocked(&s)) != nil {
                s.listeners.append(Listener(sig: sig, owner: owner.map(ObjectIdentifier.init), call: call))
            }
        }
    }

    /// Removes the listeners `owner` added.
    func removeListeners(owner: AnyObject) {
        state.withLock { $0.listeners.removeAll { $0.owner == ObjectIdentifier(owner) } }
    }

    private func startLocked(_ s: inout State) throws {
        if !s.started {
            let fd = SignalWatch.pipe()
            if fd < 0 { throw KernelError(errno: -fd, operation: "creating the signal pipe") }
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                SignalHub.shared.run(fd: Int32(Int(bitPattern: arg)))
                return nil
            }, UnsafeMutableRawPointer(bitPattern: Int(fd)))
            if rc != 0 { throw KernelError(errno: rc, operation: "starting the signal thread") }
            pthread_detach(tid)
            s.started = true
        }
    }

    func unregister(_ set: SignalSet) {
        state.withLock { $0.sets.removeAll { $0.set === set } }
    }

    private func run(fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 64)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, -1) < 0 && errno != EINTR { return }
            while true {
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                for sig in buf[0..<n].map({ Int32($0) }) {
                    // Collected under the lock, called outside it: a
                    // listener may take locks of its own.
                    let (sets, calls) = state.withLock { s in
                        (s.sets.filter { $0.set.signals.contains(sig) },
                         s.listeners.filter { $0.sig == sig }.map(\.call))
                    }
                    for entry in sets { entry.set.deliver(sig, to: entry.kernel) }
                    for call in calls { call() }
                }
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

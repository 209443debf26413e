import Synchronization

/// Thrown into a server's accept loop to make it stop accepting and drain.
/// Never seen by users: the server catches it.
struct ServerDrainRequest: Error {}

/// The connection handlers of one server, owned as a task group: the
/// server cancels and waits for every one of them before it ends, and a
/// drain lets them finish for a grace period first. Kernel-thread only.
final class ServerHandlers: TaskEndObserver {
    private var running: [ObjectIdentifier: AnyCurioTask] = [:]
    private let emptied = WaitQueue()

    var count: Int { running.count }

    /// Starts `body` as a handler task that the server owns.
    func spawn(_ me: AnyCurioTask, name: String, _ body: @escaping @Sendable () async throws -> Void) {
        let t = me.kernel.spawnTask(daemon: false, name: name, parent: me.id, body)
        guard !t.terminated else { return }
        running[ObjectIdentifier(t)] = t
        t.group = self
    }

    func taskDidEnd(_ t: AnyCurioTask) {
        running[ObjectIdentifier(t)] = nil
        if running.isEmpty { t.kernel.wakeAll(emptied) }
    }

    /// Waits until no handler runs, or `deadline` passes; true when none runs.
    func waitEmpty(_ me: AnyCurioTask, deadline: Int64) async throws -> Bool {
        while !running.isEmpty {
            let r = try await me.kernel.block(me, .taskJoin, on: emptied, deadline: deadline,
                                              site: CallSite(file: #filePath, line: #line, function: #function))
            if r == .timedOut { return running.isEmpty }
        }
        return true
    }

    /// Cancels every handler and waits for each to end (each closes its
    /// connection as it ends). Not interruptible: a cancellation of the
    /// caller arriving meanwhile waits for its next blocking call.
    func cancelAll(_ me: AnyCurioTask) async throws {
        try await me.kernel.holdingCancellation(me) {
            while !running.isEmpty {
                let victims = running.values.sorted { $0.id < $1.id }
                for t in victims { me.kernel.deliverCancel(t, TaskCancelled()) }
                for t in victims where !t.terminated { try await t.wait() }
            }
        }
    }
}

/// The drain state of one server, shared by ``TCPListener`` and
/// ``SocketServer``: who serves (kernel-thread state) and whether a drain
/// was asked for (any thread).
final class ServerControl: Sendable {
    private struct Shared {
        var kernel: Kernel?
        var grace: Double?
        var finished = false
    }
    private let shared = Locked(Shared())
    /// Set when the server has stopped serving (drained or not).
    let finished = UniversalEvent()
    /// Set once the server accepts no more connections: its listening
    /// socket is closed (a drain began, or it stopped serving).
    let notAccepting = UniversalEvent()
    /// The serving task (touched on its kernel's thread only).
    private let serving = Locked<AnyCurioTask?>(nil)

    var isDraining: Bool { shared.withLock { $0.grace != nil } }

    /// The server `me` starts serving with `handlers`; returns a grace
    /// already asked for (drain before the server listened).
    func attach(_ me: AnyCurioTask) -> Double? {
        serving.withLock { $0 = me }
        notAccepting.clear()
        return shared.withLock { s in
            s.kernel = me.kernel
            s.finished = false
            return s.grace
        }
    }

    /// The server stopped serving.
    func detach() {
        serving.withLock { $0 = nil }
        shared.withLock { s in
            s.kernel = nil
            s.finished = true
        }
        notAccepting.set()
        finished.set()
    }

    /// The grace period asked for, once a drain was asked for.
    var grace: Double? { shared.withLock { $0.grace } }

    /// Asks for a drain; from any thread. The server's kernel is told at
    /// its next turn (or at once, on its own thread).
    func requestDrain(grace: Double) {
        let kernel: Kernel? = shared.withLock { s in
            // Only the first request interrupts the accept loop: a second
            // one (drain() after beginDrain()) would reach the server while
            // it waits for its handlers and end the drain as a failure.
            guard s.grace == nil else { return nil }
            s.grace = grace
            return s.kernel
        }
        guard let kernel else { return }  // asked before, or not serving yet: attach sees it
        if kernel.isOnKernelThread {
            interruptAccept(kernel)
        } else {
            kernel.postMessage { [self] k in interruptAccept(k) }
        }
    }

    private func interruptAccept(_ k: Kernel) {
        guard let t = serving.withLock({ $0 }), !t.terminated, t.kernel === k else { return }
        k.deliverCancel(t, ServerDrainRequest())
    }

    /// Asks for a drain and waits until the server has stopped serving.
    func drain(grace: Double) async throws {
        _ = try nanoseconds(grace, "grace")
        requestDrain(grace: grace)
        if shared.withLock({ $0.finished }) { return }
        try await finished.wait()
    }

    /// Waits until the server accepts no more connections (see
    /// ``notAccepting``, which `detach` sets too).
    func waitNotAccepting() async throws {
        try await notAccepting.wait()
    }
}

/// Runs a server's accept loop with its handlers owned as a group:
/// cancelling the server cancels every handler, waits for it to end and
/// closes its connection before the cancellation propagates; a drain stops
/// accepting (`stopAccepting` closes the listening socket), gives the
/// handlers `grace` seconds, then cancels the rest the same way.
func serveOwningHandlers(control: ServerControl?, stopAccepting: () -> Void,
                         _ acceptLoop: (ServerHandlers) async throws -> Void) async throws {
    let me = try Kernel.currentTask()
    let handlers = ServerHandlers()
    let early = control?.attach(me)
    defer { control?.detach() }
    do {
        if early == nil { try await acceptLoop(handlers) }
    } catch is ServerDrainRequest {
        // Fall through to the drain below.
    } catch {
        try await handlers.cancelAll(me)
        throw error
    }
    stopAccepting()
    control?.notAccepting.set()
    let grace = control?.grace ?? 0
    do {
        _ = try await handlers.waitEmpty(me, deadline: try deadlineAfter(grace))
    } catch {
        try await handlers.cancelAll(me)
        throw error
    }
    try await handlers.cancelAll(me)
}

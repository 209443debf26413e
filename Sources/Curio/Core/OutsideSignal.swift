import CCurioKernel
import Dispatch
import Synchronization

/// A one-shot signal that the kernel thread fires once and that any Swift
/// task (of any executor, a Curio task of another kernel included) or any
/// plain thread waits for. Firing happens under the signal's lock (a
/// `Locked`, which ThreadSanitizer can see), so what
/// the kernel wrote before firing is visible to every waiter after it.
final class OutsideSignal: Sendable {
    enum Outcome: Sendable { case fired, cancelled, timedOut }

    private enum Waiter {
        case task(UnsafeContinuation<Outcome, Never>)
        case thread(DispatchSemaphore)
    }

    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: Waiter] = [:]
    }

    private let state = Locked(State())

    init() {}

    var isFired: Bool { state.withLock { $0.fired } }

    /// Fires the signal and wakes every waiter. Any thread; idempotent.
    func fire() {
        let woken: [Waiter] = state.withLock { s in
            guard !s.fired else { return [] }
            s.fired = true
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            return w
        }
        for w in woken {
            switch w {
            case .task(let c): c.resume(returning: .fired)
            case .thread(let sem): sem.signal()
            }
        }
    }

    /// Waits until fired. With `cancellable`, Swift cancellation of the
    /// caller ends the wait (`.cancelled`); with `deadline` (kernel clock
    /// ns), so does that moment (`.timedOut`).
    func wait(cancellable: Bool, deadline: Int64? = nil) async -> Outcome {
        let id: Int = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        let timer = deadline.map { d in
            // The deadline is on the caller's clock (its kernel's, perhaps
            // virtual): make it a duration here, not in the timer task.
            let ns = d - ck_clock_now()
            return Task { [self] in
                if ns > 0 { try? await Task.sleep(nanoseconds: UInt64(ns)) }
                if !Task.isCancelled { end(id, .timedOut) }
            }
        }
        defer { timer?.cancel() }
        let body = {
            await withUnsafeContinuation { (c: UnsafeContinuation<Outcome, Never>) in
                let now: Outcome? = self.state.withLock { s in
                    if s.fired { return .fired }
                    s.waiters[id] = .task(c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
        }
        if !cancellable { return await body() }
        return await withTaskCancellationHandler {
            if Task.isCancelled { return .cancelled }
            return await body()
        } onCancel: {
            end(id, .cancelled)
        }
    }

    /// Ends one waiter early, if it still waits.
    private func end(_ id: Int, _ outcome: Outcome) {
        let w: Waiter? = state.withLock { $0.waiters.removeValue(forKey: id) }
        if case .task(let c) = w { c.resume(returning: outcome) }
    }

    /// Blocks the calling thread until fired, or `deadline` (kernel clock
    /// ns) passes: false then.
    func blockingWait(deadline: Int64?) -> Bool {
        let sem = DispatchSemaphore(value: 0)
        let id: Int? = state.withLock { s in
            if s.fired { return nil }
            s.nextID += 1
            s.waiters[s.nextID] = .thread(sem)
            return s.nextID
        }
        guard let id else { return true }
        if let deadline {
            let ns = deadline - ck_clock_now()
            if sem.wait(timeout: .now() + .nanoseconds(Int(max(ns, 0)))) == .success { return true }
            let stillWaiting = state.withLock { $0.waiters.removeValue(forKey: id) != nil }
            if stillWaiting { return false }
            sem.wait()  // fired meanwhile: take its signal
            return true
        }
        sem.wait()
        return true
    }
}

// Threads for tests, shared by every test target: a kernel runs on a
// thread of its own, never on a thread of Swift's cooperative pool
// (blocking one would starve the test runner and its time limits), and
// every wait for such a thread is bounded, so a hang fails instead of
// hanging.
import Glibc
import Synchronization

/// Starting plain threads and waiting for what they return, with bounds.
public enum TestThreads {
    /// What a bounded wait throws when its bound runs out.
    public struct Timeout: Error, CustomStringConvertible {
        /// Which wait ran out, and after how long.
        public let description: String
    }

    /// Starts a detached pthread running `body`.
    public static func start(_ body: @escaping @Sendable () -> Void) {
        final class Box {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let arg = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, arg)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(tid)
    }

    /// Runs `body` on a new thread and returns what it returns. Fails with
    /// ``Timeout`` after `limit` seconds (the thread is then abandoned), or
    /// with `CancellationError` when the calling task is cancelled (a
    /// test's time limit).
    public static func onThread<T: Sendable>(limit: Double,
                                             _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let slot = Slot<T>()
        let watchdog = Task {
            try? await Task.sleep(for: .seconds(limit))
            slot.finish(.failure(Timeout(description: "the kernel thread did not finish within \(limit) s")))
        }
        defer { watchdog.cancel() }
        let value = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { c in
                slot.install(c)
                start { slot.finish(Result { try body() }) }
            }
        } onCancel: {
            slot.finish(.failure(CancellationError()))
        }
        // The continuation's hand-off is invisible to ThreadSanitizer: take
        // the lock the thread released after its last write, so that what
        // it built (a kernel, say) is seen as ordered before our reads.
        slot.synchronize()
        return value
    }

    /// Delivers one result to a continuation, whoever comes first: the
    /// thread, the watchdog or the test's cancellation.
    private final class Slot<T: Sendable>: Sendable {
        private enum State {
            case idle
            case waiting(CheckedContinuation<T, any Error>)
            case early(Result<T, any Error>)
            case done
        }
        private let state = PthreadLocked(State.idle)

        func install(_ c: CheckedContinuation<T, any Error>) {
            let early: Result<T, any Error>? = state.withLock { s in
                if case .early(let r) = s {
                    s = .done
                    return r
                }
                s = .waiting(c)
                return nil
            }
            if let early { c.resume(with: early) }
        }

        func synchronize() { state.withLock { _ in } }

        func finish(_ r: Result<T, any Error>) {
            let c: CheckedContinuation<T, any Error>? = state.withLock { s in
                switch s {
                case .idle:
                    s = .early(r)
                    return nil
                case .waiting(let c):
                    s = .done
                    return c
                case .early, .done:
                    return nil
                }
            }
            c?.resume(with: r)
        }
    }
}

/// State behind a heap-allocated pthread mutex. A `Synchronization.Mutex`
/// locks inside the uninstrumented standard library, so ThreadSanitizer
/// sees no order between a result a test thread hands over and the test
/// that reads it (it reported the kernel a thread had created as racing with
/// the test's first look at it); TSan intercepts pthread mutexes.
final class PthreadLocked<State>: @unchecked Sendable {
    // @unchecked: `state` is only touched between lock and unlock of
    // `mutex`, which lives on the heap (a stable address) for the box's life.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State

    init(_ initial: State) {
        state = initial
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}

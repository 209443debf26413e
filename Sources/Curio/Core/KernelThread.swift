import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A kernel running on a thread of its own (``Kernel/start(configuration:)``),
/// in service mode: it runs with or without tasks until ``stop()``.
///
/// ```swift
/// let running = try Kernel.start()
/// let v = try await running.kernel.call { try await work() }
/// running.stop()
/// try await running.wait()
/// ```
public final class KernelThread: Sendable {
    /// The running kernel: ``Kernel/call(name:_:)`` and
    /// ``Kernel/addTask(daemon:name:_:)`` work from any thread or task.
    public let kernel: Kernel
    private let finished = OutsideSignal()
    private let outcome = Locked<Result<Void, any Error>?>(nil)

    init(kernel: Kernel) { self.kernel = kernel }

    /// Asks the kernel to shut down: every task is cancelled and run to its
    /// end, then the thread exits. Never blocks; safe from anywhere.
    public func stop() {
        try? kernel.shutdown()
    }

    /// True once the kernel's thread has finished.
    public var isFinished: Bool { finished.isFired }

    /// Waits (without blocking a thread) until the kernel's thread has
    /// finished; rethrows what its loop threw. Swift cancellation of the
    /// caller ends the wait with `CancellationError` (the kernel keeps running).
    public func wait() async throws {
        if await finished.wait(cancellable: true) == .cancelled { throw CancellationError() }
        try outcome.withLock { $0 }?.get()
    }

    /// Blocks the calling thread until the kernel's thread has finished.
    @available(*, noasync, message: "join() blocks the thread; await wait() instead")
    public func join() throws {
        if Kernel.current === kernel {
            throw CurioUsageError(.invalidArgument, "join() from the kernel's own thread would wait forever; call stop() and return")
        }
        _ = finished.blockingWait(deadline: nil)
        try outcome.withLock { $0 }?.get()
    }

    fileprivate func finish(_ r: Result<Void, any Error>) {
        outcome.withLock { $0 = r }
        finished.fire()
    }
}

extension Kernel {
    /// Creates a kernel and runs it on a new thread of its own, in service
    /// mode (``runUntilShutdown()``), until ``KernelThread/stop()`` (or
    /// ``shutdown()``). The kernel takes calls as soon as this returns.
    ///
    /// Throws ``KernelError`` when the kernel or the thread cannot be created.
    public static func start(configuration: Configuration = .default) throws -> KernelThread {
        let kernel = try make(configuration: configuration)
        let handle = KernelThread(kernel: kernel)
        // Running from now on: calls posted before the thread reaches its
        // loop wait in the post queue for it.
        kernel.lifecycle.state.withLock { $0.phase = .running }
        let body: @Sendable () -> Void = {
            let r = Result { try kernel.runUntilShutdown() }
            if case .failure = r {
                kernel.lifecycle.state.withLock { s in
                    if !s.loopActive { s.phase = .shutDown }
                }
            }
            handle.finish(r)
        }
        let arg = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            let b = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            b.body()
            return nil
        }, arg)
        if rc != 0 {
            Unmanaged<ThreadBody>.fromOpaque(arg).release()
            kernel.lifecycle.state.withLock { $0.phase = .idle }
            throw KernelError(errno: rc, operation: "starting the kernel's thread")
        }
        pthread_detach(tid)
        return handle
    }
}

/// A thread's body, passed through pthread_create's argument.
private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

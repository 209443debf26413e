import Curio
#if canImport(Glibc)
import Glibc
#endif

/// Runs a kernel on a thread of its own and hands its result back to the
/// awaiting Swift task: the one place this target touches threads, so that
/// it can become a call to the core library's own kernel-on-a-thread API
/// when that exists, with nothing else changing.
enum KernelThread {
    /// Creates a kernel from `configuration` on a new thread, runs `main` on
    /// it, shuts the kernel down (cancelling the tasks `main` left) and
    /// returns `main`'s value or error.
    static func run<T: Sendable>(_ configuration: Kernel.Configuration,
                                 _ main: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(configuration, main, continuation)
            let rc = startThread { job.execute() }
            if rc != 0 { continuation.resume(throwing: CurioServiceError.threadUnavailable(errno: rc)) }
        }
    }

    /// Runs `body` on a new detached thread; 0, or pthread_create's error.
    private static func startThread(_ body: @escaping @Sendable () -> Void) -> Int32 {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let raw = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, raw)
        if rc == 0 {
            pthread_detach(tid)
        } else {
            Unmanaged<Box>.fromOpaque(raw).release()
        }
        return rc
    }

    /// What the new thread runs. Its fields are immutable and Sendable.
    private final class Job<T: Sendable>: Sendable {
        let configuration: Kernel.Configuration
        let main: @Sendable () async throws -> T
        let continuation: CheckedContinuation<T, any Error>

        init(_ configuration: Kernel.Configuration, _ main: @escaping @Sendable () async throws -> T,
             _ continuation: CheckedContinuation<T, any Error>) {
            self.configuration = configuration
            self.main = main
            self.continuation = continuation
        }

        func execute() {
            let kernel = Kernel(configuration: configuration)
            let result: Result<T, any Error>
            do {
                result = .success(try kernel.run(main))
            } catch {
                result = .failure(error)
            }
            do {
                try kernel.shutdown()
            } catch {
                if case .success = result {
                    continuation.resume(throwing: error)
                    return
                }
            }
            continuation.resume(with: result)
        }
    }
}

/// Errors of the service wrapper itself (the service's own errors pass through unchanged).
public enum CurioServiceError: Error, CustomStringConvertible, Sendable {
    /// No thread could be started for the kernel (`pthread_create` failed with this error number).
    case threadUnavailable(errno: Int32)

    /// A sentence naming the problem.
    public var description: String {
        switch self {
        case .threadUnavailable(let e):
            "CurioService: cannot start the kernel's thread: \(String(cString: strerror(e)))"
        }
    }
}

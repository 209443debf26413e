import Curio
import Logging
import ServiceLifecycle

/// A Curio kernel and the work it serves as a swift-service-lifecycle
/// `Service`, to run in a `ServiceGroup` beside the rest of a Swift service.
///
/// ```swift
/// let echo = CurioService(drain: { try await server.drain() }) {
///     try await tcpServer(host: "", port: 25000) { client, _ in
///         for try await line in client { try await client.write(line) }
///     }
/// }
/// let group = ServiceGroup(services: [echo], gracefulShutdownSignals: [.sigterm],
///                          logger: logger)
/// try await group.run()
/// ```
///
/// - ``run()`` starts a kernel on a thread of its own and runs `body` there
///   as its main Curio task; it returns when `body` returns.
/// - Graceful shutdown (SIGTERM through the group, or
///   `ServiceGroup.triggerGracefulShutdown()`) runs the `drain` closure as a
///   Curio task on the kernel — stop accepting, let in-flight work finish —
///   and, once it returns, cancels `body` if it is still running. Without a
///   `drain` closure the body is cancelled at once, like
///   `cancelWhenGracefulShutdown`.
/// - Cancelling the Swift task that runs the service cancels `body` (and a
///   drain in progress) at once; ``run()`` then throws `CancellationError`.
///
/// Either way, the kernel is shut down before ``run()`` returns: tasks the
/// body left behind are cancelled and run to their end, so no descriptor
/// or thread outlives the service.
public struct CurioService: Service {
    /// The work a service runs on its kernel.
    public typealias Body = @Sendable () async throws -> Void

    /// The configuration of the kernel that ``run()`` creates.
    public let configuration: Kernel.Configuration
    private let drain: Body?
    private let body: Body

    /// A service that runs `body` as the main task of a new kernel made from
    /// `configuration`, and runs `drain` on that kernel at graceful shutdown.
    ///
    /// - Parameters:
    ///   - configuration: the kernel's configuration; its
    ///     `Kernel.Configuration.logger` also receives the service's own
    ///     messages (a failing drain).
    ///   - drain: runs as a Curio task when graceful shutdown begins; `body`
    ///     is cancelled once it returns (or throws). `nil`: cancel at once.
    ///   - body: the service's work, run as a Curio task.
    public init(configuration: Kernel.Configuration = .default, drain: Body? = nil,
                _ body: @escaping Body) {
        self.configuration = configuration
        self.drain = drain
        self.body = body
    }

    /// Serves until `body` ends: see the type's discussion for shutdown and
    /// cancellation. Rethrows what `body` throws.
    public func run() async throws {
        let control = ShutdownControl()
        let drain = self.drain, body = self.body, logger = configuration.logger
        let cancelled = try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await KernelThread.run(configuration) {
                    try await supervise(body: body, drain: drain, control: control, logger: logger)
                }
            } onGracefulShutdown: {
                control.drainRequested.set()
            }
        } onCancel: {
            control.cancelRequested.set()
        }
        if cancelled { throw CancellationError() }
    }
}

/// The two requests that reach the kernel from other threads.
final class ShutdownControl: Sendable {
    /// Graceful shutdown began: drain, then cancel the body.
    let drainRequested = UniversalEvent()
    /// The service's Swift task was cancelled: cancel everything now.
    let cancelRequested = UniversalEvent()
}

/// The main task of a service's kernel: runs the body, and the drain or
/// the cancellation when they are asked for. Returns whether the body was
/// ended by a cancellation of the service.
func supervise(body: @escaping CurioService.Body, drain: CurioService.Body?,
               control: ShutdownControl, logger: Logger) async throws -> Bool {
    let main = try await spawn(name: "service") { try await body() }
    let drainer = try await spawn(daemon: true, name: "service-drain") {
        try await control.drainRequested.wait()
        if let drain {
            do {
                try await drain()
            } catch is CancelledError {
                throw TaskCancelled()
            } catch {
                logger.error("curio: the service's drain failed: \(error)")
            }
        }
        if !main.terminated { try await main.cancel() }
    }
    let canceller = try await spawn(daemon: true, name: "service-cancel") {
        try await control.cancelRequested.wait()
        try await drainer.cancel()
        try await main.cancel()
    }
    let outcome: Result<Void, any Error>
    do {
        _ = try await main.join()
        outcome = .success(())
    } catch let e as TaskError {
        outcome = .failure(e.cause)
    } catch {
        outcome = .failure(error)
    }
    // A drain in progress finishes (it may still be closing connections);
    // a watcher that never fired is cancelled.
    if control.drainRequested.isSet && !control.cancelRequested.isSet {
        _ = try? await drainer.join()
    } else {
        try await drainer.cancel()
    }
    try await canceller.cancel()
    try outcome.get()
    return control.cancelRequested.isSet
}

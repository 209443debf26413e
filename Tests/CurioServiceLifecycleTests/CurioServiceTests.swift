import Curio
import CurioServiceLifecycle
import Logging
import ServiceLifecycle
import Testing

/// CurioService inside a ServiceGroup, in this process: the body runs on a
/// kernel, graceful shutdown drains on that kernel and then cancels,
/// cancellation cancels at once. Each step is ordered by events the body and
/// the drain set, never by time.
@Suite(.timeLimit(.minutes(1)))
struct CurioServiceTests {
    enum Boom: Error { case boom }

    /// What the service's tasks saw, for the test to read afterwards.
    final class Observations: Sendable {
        let started = UniversalEvent()
        let drained = UniversalEvent()
        let bodyCancelled = UniversalEvent()
        let bodyOnKernel = UniversalEvent()
        let drainOnKernel = UniversalEvent()
    }

    static var quietLogger: Logger {
        var l = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        l.logLevel = .critical
        return l
    }

    /// A body that says it started (and whether it runs on a kernel), then
    /// sleeps until cancelled and records the cancellation.
    static func waitingBody(_ o: Observations) -> CurioService.Body {
        {
            if Kernel.current != nil { o.bodyOnKernel.set() }
            o.started.set()
            do {
                try await Curio.sleep(.seconds(3600))
            } catch is CancelledError {
                o.bodyCancelled.set()
                throw TaskCancelled()
            }
        }
    }

    @Test func gracefulShutdownRunsTheDrainOnTheKernelThenCancelsTheBody() async throws {
        let o = Observations()
        let service = CurioService(drain: {
            if Kernel.current != nil { o.drainOnKernel.set() }
            // The body is still running while the drain runs.
            #expect(!o.bodyCancelled.isSet)
            try await Curio.sleep(.milliseconds(1))
            o.drained.set()
        }, Self.waitingBody(o))
        let group = ServiceGroup(services: [service], logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await o.started.wait()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(o.bodyOnKernel.isSet)
        #expect(o.drainOnKernel.isSet)
        #expect(o.drained.isSet)
        #expect(o.bodyCancelled.isSet)
    }

    @Test func withoutADrainGracefulShutdownCancelsTheBody() async throws {
        let o = Observations()
        let service = CurioService(Self.waitingBody(o))
        let group = ServiceGroup(services: [service], logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await o.started.wait()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(o.bodyCancelled.isSet)
    }

    @Test func cancellingTheServiceCancelsTheBodyAndSkipsTheDrain() async throws {
        let o = Observations()
        let service = CurioService(drain: { o.drained.set() }, Self.waitingBody(o))
        let running = Task { try await service.run() }
        try await o.started.wait()
        running.cancel()
        let result = await running.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(o.bodyCancelled.isSet)
        #expect(!o.drained.isSet)
    }

    /// Keeps the messages logged to it.
    struct CapturingHandler: LogHandler {
        let messages: UniversalQueue<String>
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { messages.put("\(event.level) \(event.message)") }
    }

    @Test func aFailingDrainIsLoggedAndTheBodyIsStillCancelled() async throws {
        let o = Observations()
        let messages = UniversalQueue<String>()
        var config = Kernel.Configuration.default
        config.logger = Logger(label: "test") { _ in CapturingHandler(messages: messages) }
        let service = CurioService(configuration: config, drain: { throw Boom.boom }, Self.waitingBody(o))
        let group = ServiceGroup(services: [service], logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await o.started.wait()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(o.bodyCancelled.isSet)
        #expect(try messages.blockingGet(timeout: .seconds(5)) == "error curio: the service's drain failed: boom")
    }

    @Test func theBodysErrorIsTheServicesError() async throws {
        let service = CurioService {
            try await Curio.sleep(0)
            throw Boom.boom
        }
        await #expect(throws: Boom.boom) { try await service.run() }
    }

    @Test func aBodyThatReturnsEndsTheServiceAndItsLeftoverTasks() async throws {
        let o = Observations()
        let service = CurioService {
            // A daemon the body leaves behind is cancelled by the kernel's shutdown.
            try await spawn(daemon: true) {
                do { try await Curio.sleep(.seconds(3600)) } catch is CancelledError { o.bodyCancelled.set() }
            }
            try await Curio.sleep(0)
        }
        try await service.run()
        #expect(o.bodyCancelled.isSet)
    }

    @Test func theKernelUsesTheGivenConfiguration() async throws {
        var config = Kernel.Configuration.default
        config.backend = .epoll
        let seen = UniversalQueue<String>()
        let service = CurioService(configuration: config) {
            seen.put("\(Kernel.current!.backend)")
        }
        try await service.run()
        #expect(try seen.blockingGet(timeout: .seconds(5)) == "epoll")
    }
}

#if CONSUMER_LIFECYCLE
import Curio
import CurioServiceLifecycle
import Logging
import ServiceLifecycle

/// A CurioService in a ServiceGroup: graceful shutdown runs the drain on the
/// kernel, then the service ends.
func lifecycleChecks() async throws {
    let started = UniversalEvent()
    let drained = UniversalEvent()
    let service = CurioService(drain: {
        precondition(Kernel.current != nil, "the drain did not run on the kernel")
        drained.set()
    }) {
        started.set()
        try await Curio.sleep(.seconds(3600))
    }
    let group = ServiceGroup(services: [service], logger: Logger(label: "consumer"))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await started.wait()
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
    precondition(drained.isSet, "graceful shutdown did not drain")
    print("service: drained and stopped")
}
#endif

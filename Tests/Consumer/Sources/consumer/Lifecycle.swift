// CurioServiceLifecycle in a ServiceGroup that turns SIGTERM into a
// graceful shutdown: the service's echo server drains (stops accepting,
// lets an open connection finish its line, then closes it after a short
// grace) and the group ends without an error.
import Curio
import CurioServiceLifecycle
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif


func lifecycleChecks() async throws {
    let listener = TCPListener()
    let address = UniversalResult<SocketAddress>()
    let drained = UniversalEvent()
    let service = CurioService(drain: {
        precondition(Kernel.current != nil, "the drain did not run on the kernel")
        try await listener.drain(grace: .milliseconds(200))
        drained.set()
    }) {
        let server = try await spawn(name: "echo") {
            try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                for try await line in client.lines { try await client.write(line) }
            }
        }
        try address.set(try await listener.wait())
        _ = try await server.join()
    }
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm],
                             logger: Logger(label: "consumer.lifecycle"))
    let client = try Kernel.start()
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let port = try await address.get(timeout: .seconds(30)).port
        let reply = try await client.kernel.call { () async throws -> String in
            let stream = try await openConnection(host: "127.0.0.1", port: port)
            defer { stream.close() }
            try await stream.write("before\n")
            let before = String(decoding: try await stream.readLine(), as: UTF8.self)
            kill(getpid(), SIGTERM)  // ServiceGroup's handler starts the graceful shutdown
            // The idle connection is closed once the drain's grace has passed.
            let end = try await stream.read(100)
            return before + "end \(end.count)"
        }
        try await tasks.waitForAll()
        precondition(reply == "before\nend 0", "the drained connection saw \(reply)")
    }
    client.stop()
    try await client.wait()
    precondition(drained.isSet, "SIGTERM did not drain the service")
    print("service: SIGTERM drained the server and the group ended")
}

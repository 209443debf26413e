// A Curio TCP echo server as a swift-service-lifecycle service: a
// ServiceGroup runs it and turns SIGTERM (or SIGINT) into a graceful
// shutdown that stops accepting, lets open connections finish for a grace
// period, cancels the ones still open after it, and exits 0.
//
//   curio-service [port] [grace-seconds]     (defaults: 25000, 5)
//
// It prints, on stdout, one line per step:
//   curio-service: listening on 127.0.0.1:PORT
//   curio-service: draining (N open)
//   curio-service: drained (N cancelled)
import Curio
import CurioServiceLifecycle
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments.dropFirst()
let port = arguments.first.flatMap { Int($0) } ?? 25000
let grace = arguments.dropFirst().first.flatMap { Double($0) } ?? 5

func say(_ line: String) {
    print("curio-service: \(line)")
    fflush(nil)
}

/// The connections being served, counted for the drain's report. Touched
/// only by tasks of the service's kernel, which all run on the kernel's one
/// thread, one at a time.
final class Connections: @unchecked Sendable {
    private(set) var count = 0
    private(set) var cancelled = 0

    func serve(_ client: SocketStream) async throws {
        count += 1
        defer { count -= 1 }
        do {
            for try await line in client.lines {
                try await client.write(line)
            }
        } catch is CancelledError {
            // The drain's grace ended with this connection still open.
            cancelled += 1
            throw TaskCancelled()
        }
    }
}

let connections = Connections()
let listener = TCPListener()

let echo = CurioService(
    drain: {
        // The server stops accepting at once, lets open connections finish
        // for the grace period, then cancels the rest and closes them. The
        // line comes once new clients are refused.
        try listener.beginDrain(grace: grace)
        try await listener.waitStoppedAccepting()
        say("draining (\(connections.count) open)")
        try await listener.drain(grace: grace)
        say("drained (\(connections.cancelled) cancelled)")
    },
    {
        let task = try await spawn(name: "echo-server") {
            try await tcpServer(host: "127.0.0.1", port: port, ready: listener) { client, _ in
                try await connections.serve(client)
            }
        }
        // A daemon, so that a server failing at start-up (port in use)
        // ends the service with its error instead of waiting here forever.
        try await spawn(daemon: true, name: "announce") {
            let address = try await listener.wait()
            say("listening on \(address.host):\(address.port)")
        }
        _ = try await task.join()
    })

LoggingSystem.bootstrap(StreamLogHandler.standardError)
let group = ServiceGroup(services: [echo], gracefulShutdownSignals: [.sigterm, .sigint],
                         logger: Logger(label: "curio-service"))
do {
    try await group.run()
} catch {
    // A server that cannot start (port in use) ends the service with its error.
    var text = "curio-service: \(error)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

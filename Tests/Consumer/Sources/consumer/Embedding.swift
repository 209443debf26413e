// The embedding part: a kernel on a thread of its own (service mode),
// reached from the program's async main with kernel.call; inside it, a
// child of `async let` and an actor method make Curio calls (adopted Swift
// tasks); a Curio task handle joined from outside the kernel; a server
// drained; the kernel shut down from another task.
import Curio

/// An actor whose method sleeps on Curio's timer when called from a Curio task.
actor Counter {
    private var n = 0
    func bump() async throws -> Int {
        try await Curio.sleep(.milliseconds(1))
        n += 1
        return n
    }
}

func embeddingChecks() async throws {
    let running = try Kernel.start()
    let kernel = running.kernel

    // Structured children and actors inside a Curio task are Curio tasks too.
    let counted = try await kernel.call { () async throws -> Int in
        async let a: Void = Curio.sleep(.milliseconds(1))
        let counter = Counter()
        _ = try await counter.bump()
        let n = try await counter.bump()
        try await a
        return n
    }
    precondition(counted == 2, "the actor counted \(counted)")

    // A handle made inside the kernel, joined from this (non-Curio) task.
    let task = try await kernel.call { try await spawn { () -> Int in
        try await Curio.sleep(.milliseconds(1))
        return 41
    } }
    let joined = try await task.join()
    precondition(joined == 41, "join from outside gave \(String(describing: joined))")

    // A server drained: it stops accepting and its handlers end.
    let listener = TCPListener()
    let server = try await kernel.call { try await spawn(name: "drained") {
        try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
            for try await line in client.lines { try await client.write(line) }
        }
    } }
    _ = try await kernel.call { try await listener.wait() }
    try await kernel.call { try await listener.drain(grace: .seconds(1)) }
    _ = try await server.join()

    running.stop()
    try await running.wait()
    do {
        _ = try await kernel.call { 1 }
        preconditionFailure("a call to a stopped kernel did not throw")
    } catch is KernelUnavailable {
        // As documented: a kernel that has ended throws at once.
    }
    print("embedding: ok")
}

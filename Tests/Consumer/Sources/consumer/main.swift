// Uses Curio from outside its repository: a kernel, tasks, Duration
// timeouts, the Clock, an Event, a Queue, swift-log configuration and a
// TCP echo round trip; service mode, kernel.call, adopted Swift tasks and
// a drained server (Embedding.swift); with CONSUMER_LIFECYCLE, also CurioServiceLifecycle
// in a ServiceGroup. Prints the backend first; the check compares it with
// the trait the consumer asked for.
import Curio
import Logging

/// The kernel part: a plain function, so that the kernel's blocking run()
/// is not called from an async context.
func kernelChecks() throws -> Int {
    var configuration = Kernel.Configuration.default
    configuration.logger = Logger(label: "consumer.curio")
    let kernel = Kernel(configuration: configuration)
    print("backend: \(kernel.backend)")

    let total = try kernel.run { () async throws -> Int in
        let started = Event()
        let queue = Queue<Int>()
        let producer = try await spawn(name: "producer") {
            await started.set()
            for i in 1...3 { try await queue.put(i) }
        }
        _ = try await started.wait(timeout: .seconds(5))
        var sum = 0
        for _ in 1...3 { sum += try await queue.get() }
        _ = try await producer.join(timeout: .seconds(5))

        // A timeout that expires, as a Duration.
        let late: Int? = try await ignoreAfter(.milliseconds(10)) {
            try await Curio.sleep(.seconds(5))
            return 1
        }
        precondition(late == nil, "ignoreAfter(.milliseconds(10)) did not expire")

        // Code written against any Clock<Duration> runs on the kernel's timer.
        let clock: any Clock<Duration> = CurioClock()
        try await clock.sleep(for: .milliseconds(1))

        // A TCP echo round trip on a port the system picks.
        let listener = TCPListener()
        let server = try await spawn(daemon: true, name: "echo") {
            try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                for try await line in client.lines { try await client.write(line) }
            }
        }
        let address = try await listener.wait()
        let stream = try await openConnection(host: "127.0.0.1", port: address.port)
        try await stream.write("ping\n")
        let reply = try await stream.readLine()
        stream.close()
        try await server.cancel()
        precondition(reply == Array("ping\n".utf8), "echo replied \(reply)")
        return sum
    }
    return total
}

print("sum: \(try kernelChecks())")
try await embeddingChecks()
#if CONSUMER_LIFECYCLE
try await lifecycleChecks()
#endif
print("consumer: ok")

// Uses Curio from outside its repository, one item of issue 9 after the
// other: a kernel, tasks, Duration timeouts and sleeps, CurioClock as
// `any Clock<Duration>`, an Event, a Queue, a Lock, a UniversalResult and a
// TCP echo round trip (here); service mode, kernel.call, adopted Swift
// tasks and a drained server (Embedding.swift); swift-log diagnostics
// through the consumer's own Logger and swift-metrics through its own
// MetricsFactory (Observability.swift); cross-kernel hand-off without
// blocking and a start-up failure reported by run() (Kernels.swift);
// SignalSet beside other signal users (Signals.swift); CurioServiceLifecycle
// in a ServiceGroup drained by SIGTERM (Lifecycle.swift). Prints the
// backend first; the check compares it with the trait asked for. Any
// broken promise stops the program with a precondition failure.
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

        // timeoutAfter with a Duration throws TaskTimeout.
        do {
            try await timeoutAfter(.milliseconds(5)) { try await Curio.sleep(.seconds(5)) }
            preconditionFailure("timeoutAfter(.milliseconds(5)) did not time out")
        } catch is TaskTimeout {}

        // Timeouts of the primitives as Durations.
        let lock = Lock()
        try await lock.acquire()
        let holder = try await spawn { try await lock.acquire(timeout: .milliseconds(5)) }
        let gotHeldLock = try await holder.join()
        precondition(gotHeldLock == false, "a held lock was acquired")
        try await lock.release()
        let never = UniversalResult<Int>()
        do {
            _ = try await never.get(timeout: .milliseconds(5))
            preconditionFailure("UniversalResult.get(timeout:) did not time out")
        } catch is TaskTimeout {}

        // Code written against any Clock<Duration> runs on the kernel's timer.
        let clock: any Clock<Duration> = CurioClock()
        let slept = try await pause(on: clock, for: .milliseconds(20))
        precondition(slept >= .milliseconds(20), "the clock slept \(slept)")

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

/// Generic code that knows only `Clock<Duration>`: sleeps on it and
/// measures on its own `now`.
func pause<C: Clock>(on clock: C, for d: Duration) async throws -> Duration where C.Duration == Duration {
    let start = clock.now
    try await clock.sleep(for: d)
    return start.duration(to: clock.now)
}

print("sum: \(try kernelChecks())")
try await embeddingChecks()
try observabilityChecks()
try await crossKernelChecks()
try startupFailureCheck()
try signalChecks()
try await lifecycleChecks()
print("consumer: ok")

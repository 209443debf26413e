// swift-metrics: with a factory in the configuration a kernel records its
// tasks, its ready queue, its servers' connections and its backend's
// system calls; without one it records nothing and installs nothing.
import Glibc
import Metrics
import MetricsTestKit
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct MetricsTests {
    static func kernel(_ metrics: TestMetrics) -> Kernel {
        var c = Kernel.Configuration.builtIn
        c.metricsFactory = metrics
        return Kernel(configuration: c)
    }

    @Test func offByDefault() {
        let kernel = Kernel(configuration: .builtIn)
        #expect(kernel.metrics == nil)
        #expect(kernel.activations.isEmpty)
    }

    @Test func tasksCreatedAndAlive() async throws {
        let metrics = TestMetrics()
        let serial = try await KernelHarness.onThread { () throws -> UInt64 in
            let kernel = Self.kernel(metrics)
            try kernel.run {
                var kids: [CurioTask<Void>] = []
                for _ in 0..<3 { kids.append(try await spawn { try await Curio.sleep(0) }) }
                for k in kids { try await k.join() }
            }
            try kernel.shutdown()
            return kernel.serial
        }
        let dims = [("kernel", "\(serial)")]
        #expect(try metrics.expectCounter(CurioMetricLabel.tasksCreated, dims).totalValue == 4)
        let alive = try metrics.expectGauge(CurioMetricLabel.tasksAlive, dims)
        #expect(alive.values.map { Int($0) }.max() == 4)
        #expect(alive.lastValue == 0)
    }

    @Test func connectionsAcceptedAndOpen() async throws {
        let metrics = TestMetrics()
        let serial = try await KernelHarness.onThread { () throws -> UInt64 in
            let kernel = Self.kernel(metrics)
            try kernel.run {
                let listener = TCPListener()
                let server = try await spawn(daemon: true) {
                    try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                        for try await line in client.lines { try await client.write(line) }
                    }
                }
                let port = try await listener.wait().port
                for _ in 0..<2 {
                    let stream = try await openConnection(host: "127.0.0.1", port: port)
                    try await stream.write("x\n")
                    _ = try await stream.readLine()
                    try stream.socket!.shutdown(.write)
                    // EOF: the handler has ended and its connection is closed.
                    #expect(try await stream.read(10).isEmpty)
                    stream.close()
                }
                try await server.cancel()
                kernel.sampleMetrics()
            }
            try kernel.shutdown()
            return kernel.serial
        }
        let dims = [("kernel", "\(serial)")]
        #expect(try metrics.expectCounter(CurioMetricLabel.connectionsAccepted, dims).totalValue == 2)
        #expect(try metrics.expectGauge(CurioMetricLabel.connectionsOpen, dims).values == [1, 0, 1, 0])
        #expect(try metrics.expectGauge(CurioMetricLabel.readyQueueDepth, dims).lastValue != nil)
    }

    /// A run shorter than the sampling interval still reports what its
    /// backend did: the counters are sampled when the run ends.
    @Test func aShortRunReportsItsBackendActivityWhenItEnds() async throws {
        let metrics = TestMetrics()
        let serial = try await KernelHarness.onThread { () throws -> UInt64 in
            let kernel = Self.kernel(metrics)
            try kernel.run {
                let (r, w) = try Pipe.make()
                defer { r.close(); w.close() }
                let reader = try await spawn { try await r.recv(10) }
                // The reader runs first and waits for data, so the backend
                // has to be asked for it (epoll would otherwise find the
                // byte with a direct read and never be entered).
                try await Curio.sleep(0)
                try await w.sendAll([1])
                #expect(try await reader.join() == [1])
            }
            try kernel.shutdown()
            return kernel.serial
        }
        let dims = [("kernel", "\(serial)")]
        #expect(try metrics.expectCounter(CurioMetricLabel.backendEnters, dims).totalValue >= 1)
    }

    @Test func backendEntersAndIoUringSubmissions() async throws {
        let metrics = TestMetrics()
        let (serial, backend) = try await KernelHarness.onThread { () throws -> (UInt64, Kernel.Backend) in
            let kernel = Self.kernel(metrics)
            try kernel.run {
                // Reads that wait for data are io_uring submissions (timers are not).
                let (r, w) = try Pipe.make()
                defer { r.close(); w.close() }
                for _ in 0..<3 {
                    let reader = try await spawn { try await r.recv(10) }
                    try await Curio.sleep(0.001)
                    try await w.sendAll([1])
                    #expect(try await reader.join() == [1])
                }
                kernel.sampleMetrics()
            }
            try kernel.shutdown()
            return (kernel.serial, kernel.backend)
        }
        let dims = [("kernel", "\(serial)")]
        #expect(try metrics.expectCounter(CurioMetricLabel.backendEnters, dims).totalValue >= 3)
        if backend == .ioUring {
            #expect(try metrics.expectCounter(CurioMetricLabel.ioUringSubmissions, dims).totalValue >= 3)
            let perEnter = try metrics.expectRecorder(CurioMetricLabel.ioUringSubmissionsPerEnter, dims)
            #expect(!perEnter.values.isEmpty)
        } else {
            #expect(metrics.counters(label: CurioMetricLabel.ioUringSubmissions).allSatisfy { $0.totalValue == 0 })
        }
    }
}

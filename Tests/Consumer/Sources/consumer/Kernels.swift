// Two kernels handing each other work without blocking, and a seed-style
// run() reporting a server that could not start.
import Curio
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Kernel A hands a task to kernel B while B's thread is held by a task
/// that lets go only once A's hand-off has returned: a hand-off that waited
/// for B to take the task would never return. Then both kernels hand each
/// other tasks at the same time and join them across.
func crossKernelChecks() async throws {
    let a = try Kernel.start()
    let b = try Kernel.start()
    let holding = UniversalEvent()
    let release = Atomic<Bool>(false)
    // Holds B's thread (no blocking call) until A's hand-off has returned.
    let hog = b.kernel.addTask(name: "hog") { () -> Int in
        holding.set()
        var spins = 0
        while !release.load(ordering: .acquiring) {
            sched_yield()
            spins += 1
        }
        return spins
    }
    let handedOver = try await a.kernel.call { () async throws -> Int in
        try await holding.wait()
        let handle = b.kernel.addTask(name: "from A") { () async throws -> Int in
            try await Curio.sleep(.milliseconds(1))
            return 7
        }
        release.store(true, ordering: .releasing)  // reached only if addTask did not block
        return try await handle.join() ?? -1
    }
    precondition(handedOver == 7, "the task handed from A to B returned \(handedOver)")
    _ = try await hog.join()

    // Each kernel hands the other 100 tasks and joins them from its own task.
    func pingPong(_ from: Kernel, _ to: Kernel) async throws -> Int {
        try await from.call { () async throws -> Int in
            var sum = 0
            for i in 1...100 {
                let h = to.addTask { () async throws -> Int in
                    try await Curio.sleep(0)
                    return i
                }
                sum += try await h.join() ?? 0
            }
            return sum
        }
    }
    async let ab = pingPong(a.kernel, b.kernel)
    async let ba = pingPong(b.kernel, a.kernel)
    let (x, y) = try await (ab, ba)
    precondition(x == 5050 && y == 5050, "cross-kernel sums \(x), \(y)")
    a.stop()
    b.stop()
    try await a.wait()
    try await b.wait()
    print("kernels: hand-off while the other kernel is busy, 2 x 100 joins across")
}

/// A server whose port is taken: the seed-style run() throws TaskError with
/// the bind's error, instead of printing a line and returning normally.
func startupFailureCheck() throws {
    let taken = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    precondition(taken >= 0, "socket failed")
    defer { close(taken) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
            bind(taken, p, len) == 0 && listen(taken, 1) == 0 && getsockname(taken, p, &len) == 0
        }
    }
    precondition(bound, "could not hold a port")
    let port = Int(UInt16(bigEndian: addr.sin_port))

    var configuration = Kernel.Configuration.default
    configuration.logger.logLevel = .critical  // the failure is checked below, not printed
    let kernel = Kernel(configuration: configuration)
    kernel.addTask(name: "server") {
        try await tcpServer(host: "127.0.0.1", port: port) { _, _ in }
    }
    do {
        try kernel.run()
        preconditionFailure("run() returned normally although the server could not bind")
    } catch let e as TaskError {
        let cause = e.cause as? SocketError
        precondition(cause?.errno == EADDRINUSE, "run() threw TaskError with cause \(e.cause)")
        print("start-up failure: run() threw TaskError(\(cause!))")
    }
}

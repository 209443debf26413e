// KernelGroup: N kernels on N threads. Starting and shutting down joins
// every thread and closes every descriptor (checked in a child process that
// owns its descriptor table), from a task or from a plain thread; placement
// round robin, by least load and by index; kernels sending to each other
// while the other is busy; group-unique task ids; misuse named with clear
// errors (kernel counts, indices, waiting from inside, running a group's
// kernel again, use after shutdown). A group server on port 0 whose
// connections reach every kernel (exactly, with the round-robin acceptor;
// every kernel, with SO_REUSEPORT); a handler failing on one kernel that no
// other connection notices; drains with handlers in flight on every kernel
// (long grace: they finish; zero grace: they are cancelled) and a cancel;
// one monitor whose ps lists every kernel's tasks with their kernel column
// and whose where/cancel reach any of them. Steps are ordered by replies,
// end-of-file and task states, never by sleeping.
import Glibc
import Synchronization
import Testing

@testable import Curio
import CurioTestSupport

@Suite(.timeLimit(.minutes(1)))
struct KernelGroupTests {
    /// Threads named `prefix`… once those already joined are off the
    /// kernel's list. pthread_join returns when the exiting thread's tid is
    /// cleared (early in its exit, with its memory map); Linux unlists it
    /// from /proc/self/task a little later (at exit_notify), so right after
    /// a join it can still show. A joined thread leaves within microseconds:
    /// this waits for that, and only a thread that really lives on is still
    /// counted after 10 s.
    static func threadsLeft(named prefix: String) -> Int {
        var n = threads(named: prefix)
        var waited = 0
        while n > 0 && waited < 10_000 {
            usleep(1000)
            waited += 1
            n = threads(named: prefix)
        }
        return n
    }

    /// Threads of this process whose name starts with `prefix`.
    static func threads(named prefix: String) -> Int {
        guard let dir = opendir("/proc/self/task") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while let e = readdir(dir) {
            let tid = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int(tid) != nil, let f = fopen("/proc/self/task/\(tid)/comm", "re") else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            let line = fgets(&buf, 64, f).map { _ in String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) } ?? ""
            fclose(f)
            if line.hasPrefix(prefix) { n += 1 }
        }
        return n
    }

    @Test func startingAndShuttingDownJoinsEveryThread() async throws {
        let group = try KernelGroup.start(kernels: 3)
        let prefix = "curio-g\(group.serial)."
        #expect(group.count == 3)
        var seen: [Int] = []
        for i in 0..<3 {
            seen.append(try await group.call(on: .kernel(i)) { group.index(of: Kernel.current!)! })
        }
        #expect(seen == [0, 1, 2])
        // Each thread names itself before its loop takes calls: every one has
        // answered, so every one is named.
        #expect(Self.threads(named: prefix) == 3)
        group.shutdown()
        try await group.wait()
        #expect(group.isFinished)
        #expect(group.kernels.allSatisfy { $0.isShutDown })
        // Joined: the threads are gone, not merely about to go.
        #expect(Self.threadsLeft(named: prefix) == 0)
        await #expect(throws: KernelUnavailable.self) { try await group.call { 1 } }
        try await group.wait()  // a second wait returns at once
        group.shutdown()        // and so does a second shutdown
        try await group.wait()
    }

    /// Descriptors and threads of the whole process, before and after a
    /// group that served connections: run in a child process of its own, so
    /// no other test's descriptors come and go meanwhile.
    @Test func aGroupLeavesNoDescriptorOrThreadBehind() throws {
        let child = try IOTest.Child(path: try TestScenarios.selfExecutable(),
                                     arguments: TestScenarios.arguments(running: "groupLeakChild"),
                                     environment: TestScenarios.environment(selecting: "CURIO_GROUP_LEAK_CHILD", "1"),
                                     terminal: false)
        let status = child.waitForExit(limit: 50)
        child.waitForOutputEnd()
        let lines = child.stdoutLines.filter { $0.hasPrefix("GROUP-LEAK ") }
        #expect(status == 0, "\(child.stderr)")
        // groupRun prints its line twice (the warm-up run and the measured one).
        #expect(lines == ["GROUP-LEAK group threads 0", "GROUP-LEAK group threads 0", "GROUP-LEAK fds same",
                          "GROUP-LEAK threads not more", "GROUP-LEAK served 12"], "\(child.stdoutLines) \(child.stderr)")
    }

    @Test func placementRoundRobinByIndexAndByLoad() async throws {
        let group = try KernelGroup.start(kernels: 3)
        defer { group.shutdown() }
        #expect((0..<6).map { _ in group.index(of: group.next())! } == [0, 1, 2, 0, 1, 2])
        #expect(try group.kernel(at: 2) === group.kernels[2])
        #expect(throws: CurioUsageError.self) { try group.kernel(at: 3) }
        #expect(throws: CurioUsageError.self) { try group.addTask(on: .kernel(-1)) { 0 } }
        // Kernels 0 and 1 each hold a task that waits; the least loaded is 2.
        let gate = UniversalEvent()
        var held: [CurioTask<Void>] = []
        for i in 0..<2 {
            let started = UniversalEvent()
            held.append(try group.addTask(on: .kernel(i)) {
                started.set()
                try await gate.wait()
            })
            try await started.wait()
        }
        #expect((0..<3).map(group.load(at:)) == [1, 1, 0])
        #expect((0..<6).map { _ in group.index(of: group.leastLoaded())! } == [2, 2, 2, 2, 2, 2])
        // A call counts while it runs: with it, every kernel holds one.
        let inCall = UniversalEvent()
        let call = Task { try await group.call(on: .leastLoaded) { () -> Int in
            inCall.set()
            try await gate.wait()
            return group.index(of: Kernel.current!)!
        } }
        try await inCall.wait()
        #expect((0..<3).map(group.load(at:)) == [1, 1, 1])
        gate.set()
        for t in held { try await t.join() }
        #expect(try await call.value == 2)
        #expect((0..<3).map(group.load(at:)) == [0, 0, 0])
        // Idle again: ties go round the group.
        #expect(Set((0..<3).map { _ in group.index(of: group.leastLoaded())! }) == [0, 1, 2])
        group.shutdown()
        try await group.wait()
    }

    @Test func kernelsSendToEachOtherWithoutWaitingForTheOther() async throws {
        let group = try KernelGroup.start(kernels: 2)
        // Each direction: the receiving kernel is held by a task that spins
        // until released; the sender's addTask returns while it spins, and
        // only then does the sender release it.
        for (from, to) in [(0, 1), (1, 0)] {
            let release = Atomic<Bool>(false)
            let spinning = UniversalEvent()
            try group.addTask(on: .kernel(to)) {
                spinning.set()
                while !release.load(ordering: .acquiring) {}
            }
            try await spinning.wait()
            let r = try await group.call(on: .kernel(from)) { () -> String in
                let t = try group.addTask(on: .kernel(to)) { "ran on \(group.index(of: Kernel.current!)!)" }
                let order = "sent while \(to) spun"
                release.store(true, ordering: .releasing)
                return order + ", " + (try await t.join() ?? "nil")
            }
            #expect(r == "sent while \(to) spun, ran on \(to)")
        }
        // Both at once, many times: calls both ways never deadlock.
        async let a = group.call(on: .kernel(0)) { () -> Int in
            var sum = 0
            for i in 0..<100 { sum += try await group.call(on: .kernel(1)) { i } }
            return sum
        }
        async let b = group.call(on: .kernel(1)) { () -> Int in
            var sum = 0
            for i in 0..<100 { sum += try await group.call(on: .kernel(0)) { i } }
            return sum
        }
        #expect(try await a == 4950)
        #expect(try await b == 4950)
        group.shutdown()
        try await group.wait()
    }

    @Test func idsAreUniqueAcrossTheGroupAndNameTheirKernel() async throws {
        let group = try KernelGroup.start(kernels: 3)
        var ids: [Int] = []
        for _ in 0..<9 {
            let (id, k) = try await group.call { (try await currentTask().id, group.index(of: Kernel.current!)!) }
            #expect(group.kernelIndex(ofTask: id) == k)
            ids.append(id)
        }
        #expect(Set(ids).count == 9)
        group.shutdown()
        try await group.wait()
    }

    @Test func misuseIsNamedWithClearErrors() async throws {
        for bad in [0, -1, 4097] {
            #expect(performing: { _ = try KernelGroup.start(kernels: bad) },
                    throws: { e in
                        guard let u = e as? CurioUsageError else { return false }
                        return u.kind == .invalidArgument && "\(u)".contains("1 to 4096")
                    })
        }
        let group = try KernelGroup.start(kernels: 2)
        for bad in [-1, 2, Int.max] {
            #expect(performing: { _ = try group.kernel(at: bad) },
                    throws: { ($0 as? CurioUsageError)?.kind == .invalidArgument && "\($0)".contains("indices 0..<2") })
            #expect(throws: CurioUsageError.self) { try group.addTask(on: .kernel(bad)) { 0 } }
            await #expect(throws: CurioUsageError.self) { try await group.call(on: .kernel(bad)) { 0 } }
            #expect(throws: CurioUsageError.self) { _ = try group.index(for: .kernel(bad)) }
        }
        // Waiting for the group from a task of the group would wait for itself.
        let fromInside = try await group.call { () -> String in
            do {
                try await group.wait()
                return "waited"
            } catch let e as CurioUsageError {
                return "\(e.kind) \("\(e)".contains("would wait for itself"))"
            }
        }
        #expect(fromInside == "invalidArgument true")
        // A kernel of a running group cannot be run a second time elsewhere.
        let again = try await KernelHarness.onThread { () -> String in
            do {
                try group.kernels[1].run { 0 }
                return "ran"
            } catch let e as CurioUsageError {
                return "\(e.kind)"
            } catch {
                return "\(error)"
            }
        }
        #expect(again == "alreadyRunning")
        // The group still works after every refusal.
        #expect(try await group.call(on: .kernel(1)) { group.index(of: Kernel.current!)! } == 1)
        group.shutdown()
        try await group.wait()
        // After shutdown: calls and tasks are refused with KernelUnavailable,
        // a server cannot start, and the kernels cannot be run again.
        await #expect(throws: KernelUnavailable.self) { try await group.call(on: .leastLoaded) { 0 } }
        let late = try group.addTask { 0 }
        #expect(late.terminated)
        await #expect(performing: { _ = try await late.join() },
                      throws: { (($0 as? TaskError)?.cause as? KernelUnavailable)?.reason == .shutDown })
        await #expect(throws: KernelUnavailable.self) {
            _ = try await group.tcpServer(host: "127.0.0.1", port: 0, handler: { (_: SocketStream, _) in })
        }
        let rerun = try await KernelHarness.onThread { () -> String in
            do {
                try group.kernels[0].run { 0 }
                return "ran"
            } catch let e as CurioUsageError {
                return "\(e.kind)"
            } catch {
                return "\(error)"
            }
        }
        #expect(rerun == "shutDown")
    }

    @Test func shutdownAndJoinFromAPlainThreadEndEveryKernelsTasks() async throws {
        let group = try KernelGroup.start(kernels: 3)
        let prefix = "curio-g\(group.serial)."
        let log = KernelHarness.Log()
        var sleepers: [CurioTask<Void>] = []
        for i in 0..<3 {
            let started = UniversalEvent()
            sleepers.append(try group.addTask(on: .kernel(i)) {
                started.set()
                do {
                    try await Curio.sleep(1000)
                } catch {
                    log.add("\(i) \(KernelHarness.kind(error))")
                    throw error
                }
            })
            try await started.wait()
        }
        // A plain thread (not a task, not the test's): shutdown never blocks,
        // join blocks it until every kernel's thread is joined.
        let outcome = try await KernelHarness.onThread { () -> String in
            group.shutdown()
            do {
                try group.join()
                return "joined, finished \(group.isFinished), named threads left \(Self.threadsLeft(named: prefix))"
            } catch {
                return "join threw \(error)"
            }
        }
        #expect(outcome == "joined, finished true, named threads left 0")
        #expect(log.entries.sorted() == ["0 TaskCancelled", "1 TaskCancelled", "2 TaskCancelled"])
        #expect(sleepers.allSatisfy { $0.terminated })
        // Ended by the shutdown's cancellation: join gives nil, not a failure.
        for s in sleepers { #expect(try await s.join() == nil) }
        try await group.wait()
    }
}

// MARK: - Servers across the group

extension KernelGroupTests {
    /// Connects to `port`, sends a line, and returns the reply line.
    static func ask(_ port: Int, _ line: String) async throws -> String {
        let s = SocketStream(try await connectOne(try SocketAddress(host: "127.0.0.1", port: port)))
        defer { s.close() }
        try await s.write(line + "\n")
        return String(decoding: try await s.readLine(), as: UTF8.self)
    }

    /// A client of a greeting server (``greetingServer(_:spread:_:)``):
    /// its stream and the kernel that serves it, read from the greeting.
    struct Client: Sendable {
        let stream: SocketStream
        let kernel: Int
    }

    /// Connects to a greeting server and reads its greeting.
    static func greeted(_ port: Int) async throws -> Client {
        let s = SocketStream(try await connectOne(try SocketAddress(host: "127.0.0.1", port: port)))
        let line = String(decoding: try await s.readLine(), as: UTF8.self)
        guard let k = Int(line.dropLast()) else { throw KernelHarness.Failure(description: "greeting \(line)") }
        return Client(stream: s, kernel: k)
    }

    /// A server that greets every client with the index of the kernel that
    /// serves it (a line), then runs `body` with the client and that index.
    static func greetingServer(_ group: KernelGroup, spread: KernelGroup.ConnectionSpread,
                               _ body: @escaping @Sendable (SocketStream, Int) async throws -> Void) async throws -> GroupTCPServer {
        try await group.tcpServer(host: "127.0.0.1", port: 0, spread: spread) { client, _ in
            let k = group.index(of: Kernel.current!)!
            try await client.write("\(k)\n")
            try await body(client, k)
        }
    }

    /// Connects until every kernel of `group` serves at least `each` of the
    /// clients (exactly `each` per kernel with `.roundRobin`; with
    /// `.reusePort` the Linux hash decides, so it may take more).
    static func clientsOnEveryKernel(_ group: KernelGroup, port: Int, each: Int) async throws -> [Client] {
        var clients: [Client] = []
        var perKernel = Array(repeating: 0, count: group.count)
        // 2^-40-ish odds of one kernel never being picked by 200 connections.
        for _ in 0..<200 where perKernel.min()! < each {
            let c = try await greeted(port)
            perKernel[c.kernel] += 1
            clients.append(c)
        }
        guard perKernel.min()! >= each else { throw KernelHarness.Failure(description: "spread \(perKernel)") }
        return clients
    }

    /// Polls (from the test's Swift task) until `condition` holds; the
    /// 1-minute time limit ends a hang.
    static func until(_ condition: () async throws -> Bool) async throws {
        while try await !condition() { try await Task.sleep(for: .milliseconds(1)) }
    }

    /// True once the part of the server on every kernel waits for its
    /// handlers in a drain (accepting stopped, listener closed) and, for
    /// `.roundRobin`, the acceptor has ended.
    static func everyPartDraining(_ group: KernelGroup, _ spread: KernelGroup.ConnectionSpread) async throws -> Bool {
        for i in 0..<group.count {
            let draining = try await group.call(on: .kernel(i)) { () -> Bool in
                var parts = 0, waiting = 0, acceptors = 0
                Kernel.current!.forEachTask { t in
                    if t.name == "group server k\(i)" {
                        parts += 1
                        if IOTest.isBlocked(t, .taskJoin) { waiting += 1 }
                    }
                    if t.name == "group acceptor" && !t.terminated { acceptors += 1 }
                }
                return parts == 1 && waiting == 1 && acceptors == 0
            }
            if !draining { return false }
        }
        return true
    }

    /// A server whose handler answers each line with the index of the kernel
    /// that serves it.
    static func kernelNamingServer(_ group: KernelGroup, spread: KernelGroup.ConnectionSpread) async throws -> GroupTCPServer {
        try await group.tcpServer(host: "127.0.0.1", port: 0, spread: spread) { client, _ in
            for try await _ in client {
                try await client.write("\(group.index(of: Kernel.current!)!)\n")
            }
        }
    }

    @Test func roundRobinServerSpreadsConnectionsExactly() async throws {
        let group = try KernelGroup.start(kernels: 3)
        let server = try await Self.kernelNamingServer(group, spread: .roundRobin)
        #expect(server.address.port != 0)
        #expect(server.spread == .roundRobin)
        let answers = try await KernelHarness.run { _ in
            var out: [String] = []
            for i in 0..<30 { out.append(try await Self.ask(server.address.port, "hi \(i)")) }
            return out
        }
        // One connection at a time, handed out in turn.
        #expect(answers == (0..<30).map { "\($0 % 3)\n" })
        #expect(server.connectionsPerKernel == [10, 10, 10])
        try await server.drain(grace: 5)
        try await server.wait()
        group.shutdown()
        try await group.wait()
    }

    @Test func reusePortServerSpreadsConnectionsOverEveryKernel() async throws {
        let group = try KernelGroup.start(kernels: 2)
        let server = try await Self.kernelNamingServer(group, spread: .reusePort)
        #expect(server.spread == .reusePort)
        let answers = try await KernelHarness.run { _ in
            var out: [String] = []
            for i in 0..<60 { out.append(try await Self.ask(server.address.port, "hi \(i)")) }
            return out
        }
        #expect(answers.count == 60)
        let perKernel = server.connectionsPerKernel
        // Which listener a connection reaches is the Linux kernel's hash of
        // its ports: the counts must agree with the answers, whatever the
        // split, and 60 connections from 60 source ports all hashing to one
        // of two listeners has odds of 2^-59.
        #expect(perKernel.reduce(0, +) == 60)
        #expect(perKernel == [answers.filter { $0 == "0\n" }.count, answers.filter { $0 == "1\n" }.count])
        #expect(perKernel.allSatisfy { $0 > 0 }, "\(perKernel)")
        try await server.drain(grace: 5)
        try await server.wait()
        group.shutdown()
        try await group.wait()
    }

    @Test(arguments: [KernelGroup.ConnectionSpread.roundRobin, .reusePort])
    func aHandlerFailingOnOneKernelDoesNotHurtTheOthers(_ spread: KernelGroup.ConnectionSpread) async throws {
        let group = try KernelGroup.start(kernels: 2)
        struct Boom: Error {}
        // Each line is echoed; "boom" makes the handler throw.
        let server = try await Self.greetingServer(group, spread: spread) { client, _ in
            for try await line in client {
                if line == Array("boom\n".utf8) { throw Boom() }
                try await client.write(line)
            }
        }
        let port = server.address.port
        let r = try await KernelHarness.run { _ -> [String] in
            let clients = try await Self.clientsOnEveryKernel(group, port: port, each: 2)
            defer { for c in clients { c.stream.close() } }
            // One client of kernel 0 makes its handler fail; it sees its
            // connection closed, and nobody else notices.
            let victim = clients.first { $0.kernel == 0 }!
            try await victim.stream.write("boom\n")
            var seen = ["victim eof \(try await victim.stream.read().isEmpty)"]
            for (n, c) in clients.enumerated() where c.stream !== victim.stream {
                try await c.stream.write("still \(n)\n")
                let back = String(decoding: try await c.stream.readLine(), as: UTF8.self)
                if back != "still \(n)\n" { seen.append("client \(n) on \(c.kernel) got \(back)") }
            }
            // New connections reach both kernels, the failed one included.
            let fresh = try await Self.clientsOnEveryKernel(group, port: port, each: 1)
            for c in fresh {
                try await c.stream.write("new\n")
                if try await c.stream.readLine() != Array("new\n".utf8) { seen.append("fresh client on \(c.kernel) failed") }
                c.stream.close()
            }
            return seen
        }
        #expect(r == ["victim eof true"])
        try await server.drain(grace: 5)
        try await server.wait()
        group.shutdown()
        try await group.wait()
    }

    @Test(arguments: [KernelGroup.ConnectionSpread.roundRobin, .reusePort])
    func drainLetsInFlightHandlersOnEveryKernelFinish(_ spread: KernelGroup.ConnectionSpread) async throws {
        let group = try KernelGroup.start(kernels: 2)
        let release = UniversalEvent()
        let ended = KernelHarness.Log()
        // Every handler, once greeted, waits for `release`, says goodbye and
        // ends; none reads again, so only the drain's grace matters.
        let server = try await Self.greetingServer(group, spread: spread) { client, k in
            try await release.wait()
            try await client.write("bye\n")
            ended.add("\(k)")
        }
        let port = server.address.port
        let clientThread = try Kernel.start()
        defer { clientThread.stop() }
        let clientKernel = clientThread.kernel
        let clients = try await clientKernel.call { try await Self.clientsOnEveryKernel(group, port: port, each: 2) }
        // A long grace, so that only the handlers' ends can end the drain.
        let drain = Task { try await server.drain(grace: 1000) }
        try await Self.until { try await Self.everyPartDraining(group, spread) }
        // Accepting stopped everywhere while the handlers are still in flight.
        let refused = try await clientKernel.call { await IOTest.connectAfterListenerClosed(port: port) }
        #expect(refused == "SocketError(ECONNREFUSED)")
        release.set()
        try await drain.value
        // Returned only once every handler had ended, each having finished
        // its work (not cancelled).
        #expect(ended.entries.count == clients.count)
        let byes = try await clientKernel.call { () -> [String] in
            var out: [String] = []
            for c in clients {
                out.append(String(decoding: try await c.stream.readLine(), as: UTF8.self))
                out.append("eof \(try await c.stream.read().isEmpty)")
                c.stream.close()
            }
            return out
        }
        #expect(byes == Array(repeating: ["bye\n", "eof true"], count: clients.count).flatMap { $0 })
        #expect(server.connectionsPerKernel.reduce(0, +) == clients.count)
        try await server.wait()
        group.shutdown()
        try await group.wait()
    }

    @Test(arguments: [KernelGroup.ConnectionSpread.roundRobin, .reusePort])
    func drainCancelsEveryKernelsHandlersWhenTheGraceEnds(_ spread: KernelGroup.ConnectionSpread) async throws {
        let group = try KernelGroup.start(kernels: 2)
        let log = KernelHarness.Log()
        // Every handler waits for a line its client never sends.
        let server = try await Self.greetingServer(group, spread: spread) { client, k in
            do {
                _ = try await client.readLine()
                log.add("\(k) read")
            } catch {
                log.add("\(k) \(KernelHarness.kind(error))")
                throw error
            }
        }
        let port = server.address.port
        let r = try await KernelHarness.run { _ -> ([Int], [String]) in
            let clients = try await Self.clientsOnEveryKernel(group, port: port, each: 2)
            try await server.drain(grace: 0)
            var seen: [String] = []
            for c in clients {
                seen.append("eof \(try await c.stream.read().isEmpty)")
                c.stream.close()
            }
            return (clients.map(\.kernel), seen)
        }
        // Cancelled on both kernels before drain returned.
        #expect(log.entries.sorted() == r.0.map { "\($0) TaskCancelled" }.sorted())
        #expect(Set(r.0) == [0, 1])
        #expect(r.1 == Array(repeating: "eof true", count: r.0.count))
        try await server.wait()
        group.shutdown()
        try await group.wait()
    }

    @Test(arguments: [KernelGroup.ConnectionSpread.roundRobin, .reusePort])
    func cancelCancelsEveryKernelsHandlersAndClosesTheListeners(_ spread: KernelGroup.ConnectionSpread) async throws {
        let group = try KernelGroup.start(kernels: 2)
        let log = KernelHarness.Log()
        let server = try await Self.greetingServer(group, spread: spread) { client, k in
            do {
                _ = try await client.readLine()
            } catch {
                log.add("\(k) \(KernelHarness.kind(error))")
                throw error
            }
        }
        let port = server.address.port
        let r = try await KernelHarness.run { _ -> ([Int], [String], String) in
            let clients = try await Self.clientsOnEveryKernel(group, port: port, each: 1)
            try await server.cancel()
            var seen: [String] = []
            for c in clients {
                seen.append("eof \(try await c.stream.read().isEmpty)")
                c.stream.close()
            }
            return (clients.map(\.kernel), seen, await IOTest.connectAfterListenerClosed(port: port))
        }
        #expect(log.entries.sorted() == r.0.map { "\($0) TaskCancelled" }.sorted())
        #expect(r.1 == Array(repeating: "eof true", count: r.0.count))
        #expect(r.2 == "SocketError(ECONNREFUSED)")
        group.shutdown()
        try await group.wait()
    }
}

// MARK: - One monitor for the group

extension KernelGroupTests {
    @Test func theMonitorListsEveryKernelsTasksAndReachesThem() async throws {
        let path = "/tmp/curio-group-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var config = Kernel.Configuration.default
        config.monitor = .unix(path: path)
        config.monitorConsole = false
        let group = try KernelGroup.start(kernels: 3, configuration: config)
        #expect(group.monitorAddress != nil)
        var sleepers: [CurioTask<String>] = []
        for i in 0..<3 {
            let started = UniversalEvent()
            sleepers.append(try group.addTask(on: .kernel(i), name: "sleeper-\(i)") { () -> String in
                started.set()
                try await Curio.sleep(1000)
                return "woke"
            })
            try await started.wait()
        }
        let ids = sleepers.map(\.id)
        let (ps, whereText, cancelText) = try await TestThreads.onThread(limit: 30) { () -> (String, String, String) in
            let c = try MonitorHarness.MonitorClient(unixPath: path)
            defer { c.close() }
            _ = try c.greeting()
            // The sleepers are listed once they block; ps until they all are.
            // Polled without a bound of its own: the test's time limit ends a hang.
            var ps = ""
            while true {
                ps = try c.command("ps")
                let lines = ps.split(separator: "\n")
                if (0..<3).allSatisfy({ i in lines.contains { $0.contains("sleeper-\(i)") && $0.contains("TIME_SLEEP") } }) {
                    break
                }
            }
            return (ps, try c.command("where \(ids[1])"), try c.command("cancel \(ids[2])"))
        }
        #expect(ps.contains("Kernel"))
        for i in 0..<3 {
            let line = ps.split(separator: "\n").first { $0.contains("sleeper-\(i)") }.map(String.init) ?? ""
            let columns = line.split(separator: " ")
            #expect(columns.count >= 3 && columns[0] == "\(ids[i])" && columns[1] == "\(i)", "\(ps)")
        }
        #expect(whereText.contains("name=sleeper-1, kernel=1"), "\(whereText)")
        #expect(whereText.contains("KernelGroupTests.swift"), "\(whereText)")
        #expect(cancelText.contains("Cancelling task \(ids[2])"))
        // Cancelled on kernel 2: it ends by the cancellation (join gives nil).
        #expect(try await sleepers[2].join() == nil)
        group.shutdown()
        try await group.wait()
        #expect(access(path, F_OK) != 0, "the socket file is removed once the group has stopped")
    }
}

// MARK: - The child process of aGroupLeavesNoDescriptorOrThreadBehind

@Test(.enabled(if: getenv("CURIO_GROUP_LEAK_CHILD") != nil), .timeLimit(.minutes(1)))
func groupLeakChild() throws {
    func groupRun() throws -> Int {
        let group = try KernelGroup.start(kernels: 3)
        let served = try group.kernels[0].callBlocking { () -> Int in
            let server = try await group.tcpServer(host: "127.0.0.1", port: 0, spread: .roundRobin) { c, _ in
                for try await line in c { try await c.write(line) }
            }
            for i in 0..<12 { _ = try await KernelGroupTests.ask(server.address.port, "x\(i)") }
            try await server.drain(grace: 1)
            return server.connectionsPerKernel.reduce(0, +)
        }
        group.shutdown()
        try group.join()
        let left = KernelGroupTests.threadsLeft(named: "curio-g\(group.serial).")
        #expect(left == 0)
        print("GROUP-LEAK group threads \(left)")
        return served
    }
    // Once first, so that what a process sets up once (the io_uring probe,
    // the blocking pool's first worker, Swift metadata) is in the baseline.
    _ = try groupRun()
    let fds = IOTest.openDescriptors()
    let threads = KernelGroupTests.threads(named: "")
    let (served, afterThreads): (Int, Int) = try {
        let served = try groupRun()
        return (served, KernelGroupTests.threads(named: ""))
    }()
    let after = IOTest.openDescriptors()
    print("GROUP-LEAK fds \(after == fds ? "same" : "before \(fds) after \(after)")")
    print("GROUP-LEAK threads \(afterThreads <= threads ? "not more" : "\(threads) then \(afterThreads)")")
    print("GROUP-LEAK served \(served)")
    fflush(nil)
}

// Issue 13, rule 14: `ps` always has a row for the running task. A task that
// is spawned and starts hogging the kernel at once runs before the kernel
// ever goes idle, so no copy of the task table has seen it; the monitor still
// lists it (id, name, RUNNING, how long it has held the kernel) and `where`
// shows its live stack. In process: the kernel runs on a thread of its own
// with its monitor on a Unix socket in a private directory; the hog spins on
// an atomic flag the test sets once it has looked.
import Glibc
import Synchronization
import Testing

@testable import Curio

/// The hog's body, named so the live stack can be recognised.
@inline(never)
func rule14SpinUntilReleased(_ gate: MonitorRunningTaskTests.Gate) {
    gate.started.store(true, ordering: .releasing)
    // Never awaits, so it holds the kernel; the sleep only spares the CPU
    // for the tests that run meanwhile.
    while !gate.released.load(ordering: .acquiring) { usleep(1000) }
}

@Suite(.timeLimit(.minutes(1)))
struct MonitorRunningTaskTests {
    typealias H = MonitorHarness

    final class Gate: Sendable {
        let started = Atomic<Bool>(false)
        let released = Atomic<Bool>(false)
        let ids = Locked<(parent: Int, hog: Int)>((0, 0))
    }

    @Test(.timeLimit(.minutes(1)))
    func psAndWhereShowATaskThatHogsFromItsFirstSlice() throws {
        let gate = Gate()
        let path = H.privateDirectory("rule14") + "/m.sock"
        let ready = H.Shared<String?>(nil)
        let thread = H.Thread {
            // This thread is started from one of Swift's pool threads, which
            // block signals; the monitor takes the live stack with the
            // real-time signal SIGRTMIN+3, so let that one in.
            var capture = sigset_t()
            sigemptyset(&capture)
            sigaddset(&capture, __libc_current_sigrtmin() + 3)
            pthread_sigmask(SIG_UNBLOCK, &capture, nil)
            var config = Kernel.Configuration.builtIn
            config.monitor = .unix(path: path)
            config.monitorConsole = false
            config.longBlockThreshold = 0  // no watchdog report on stderr
            let kernel = Kernel(configuration: config)
            ready.with { $0 = kernel.monitorAddress?.host }
            try kernel.run {
                let hog = try await spawn(name: "cruncher") { () async throws -> Void in
                    rule14SpinUntilReleased(gate)
                }
                let me = try await currentTask().id
                gate.ids.withLock { $0 = (me, hog.id) }
                try await hog.join()
            }
        }
        // Bounded: the hog starts within the thread's first loop turns.
        let deadline = H.now() + 20
        while !gate.started.load(ordering: .acquiring) && H.now() < deadline { usleep(1000) }
        defer { gate.released.store(true, ordering: .releasing) }
        let started = gate.started.load(ordering: .acquiring)
        try #require(started, "the hog never started")
        #expect(ready.get == path)
        let (parentID, hogID) = gate.ids.withLock { $0 }

        let c = try H.MonitorClient(unixPath: path)
        let greeting = try c.greeting()
        let ps = try H.parsePS(try c.command("ps"))
        #expect(greeting.contains("Curio Monitor:  \(ps.rows.count) tasks running"), "\(greeting.debugDescription)")
        let row = try #require(ps.rows.first { $0.id == hogID }, "no row for the running task: \(ps)")
        #expect(row.state == "RUNNING")
        #expect(row.name == "cruncher")
        #expect(row.timeout == nil)
        #expect(row.cycles == 1)
        // Any copy the kernel made is from before the hog was spawned.
        #expect(ps.rows.allSatisfy { $0.id == hogID || $0.id == parentID }, "\(ps.rows)")
        let note = try #require(ps.notes.first { $0.hasPrefix("Task \(hogID) has held the kernel for ") }, "\(ps.notes)")
        #expect(note.hasSuffix(" s without blocking (the kernel is busy: this table is from before it started)."), "\(note)")
        let held = Double(note.dropFirst("Task \(hogID) has held the kernel for ".count).prefix { $0 != " " })
        #expect(held.map { $0 >= 0 } == true, "\(note)")

        let whereHog = try c.command("where \(hogID)")
        #expect(whereHog.hasPrefix(" Stack for Task(id=\(hogID), name=cruncher, state='RUNNING') (most recent call last):\n  (has not blocked yet)\n  (running for "),
                "\(whereHog.debugDescription)")
        let live = whereHog.split(separator: "\n").drop { !$0.contains("Live stack of the kernel thread") }.dropFirst()
        #expect(live.contains { $0.contains("rule14SpinUntilReleased") }, "live stack: \(Array(live)); \(whereHog)")
        #expect(try c.command("tree").contains("\(hogID) cruncher [RUNNING]"))

        gate.released.store(true, ordering: .releasing)
        #expect(thread.join(within: 30) == "ok")
    }
}

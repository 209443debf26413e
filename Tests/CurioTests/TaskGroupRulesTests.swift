// Curio 1.6's task-group rules (issue 13, rules 6-8): join() never waits
// for daemon members, `results` is in add order, and `results`,
// `exceptions` and `result` leave out what the user already took.
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct TaskGroupRulesTests {
    /// Rule 6, for every policy: a daemon member that loops forever does not
    /// hold join() up; it is cancelled after the non-daemons and waited for.
    @Test(.timeLimit(.minutes(1)), arguments: [CurioTaskGroup<Int>.WaitPolicy.all, .any, .object, .none])
    func joinNeverWaitsForDaemonMembers(_ policy: CurioTaskGroup<Int>.WaitPolicy) async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let log = KernelHarness.Log()
            let g = CurioTaskGroup<Int>(wait: policy)
            let daemon = try await g.spawn(daemon: true) { () -> Int in
                do {
                    while true { try await Curio.sleep(1000) }
                } catch {
                    log.add("daemon cancelled")
                    throw error
                }
            }
            _ = try await g.spawn { 5 }
            try await g.join()
            log.add("joined; daemon ended: \(daemon.terminated)")
            return log.entries
        }
        #expect(r == ["daemon cancelled", "joined; daemon ended: true"])
    }

    /// Rule 6: a daemon member ending does not satisfy `.any`.
    @Test(.timeLimit(.minutes(1)))
    func aDaemonMemberDoesNotSatisfyThePolicy() async throws {
        let r = try await KernelHarness.run { _ -> Int? in
            let g = CurioTaskGroup<Int>(wait: .any)
            let gate = Event()
            _ = try await g.spawn(daemon: true) { 1 }
            _ = try await g.spawn { try await gate.wait(); return 2 }
            try await Curio.sleep(0)   // the daemon member ends first
            let releaser = try await spawn { await gate.set() }
            try await g.join()
            try await releaser.join()
            return try g.result
        }
        #expect(r == 2)
    }

    /// Rule 7: `results` follows the order the tasks were added, not the
    /// order they ended; `exceptions` too.
    @Test(.timeLimit(.minutes(1)))
    func resultsAreInAddOrder() async throws {
        let r = try await KernelHarness.run { _ -> ([Int], [String]) in
            let g = CurioTaskGroup<Int>()
            let gates = (0..<4).map { _ in Event() }
            for i in 0..<3 {
                let gate = gates[i]
                try await g.spawn { try await gate.wait(); return i }
            }
            // One spawned elsewhere and added.
            let gate3 = gates[3]
            let added = try await spawn { () -> Int in try await gate3.wait(); return 3 }
            try await g.add(added)
            // End in reverse order.
            for gate in gates.reversed() {
                await gate.set()
                try await Curio.sleep(0)
            }
            try await g.join()

            let f = CurioTaskGroup<Int>(wait: .none)
            let fgates = (0..<2).map { _ in Event() }
            let errors: [KernelHarness.Boom] = [.boom, .other]
            for i in 0..<2 {
                let gate = fgates[i], e = errors[i]
                try await f.spawn { () -> Int in _ = try await disableCancellation { try await gate.wait() }; throw e }
            }
            let releaser = try await spawn {
                await fgates[1].set()
                try await Curio.sleep(0)
                await fgates[0].set()
            }
            try await f.join()
            try await releaser.join()
            return (try g.results, f.exceptions.map { "\($0)" })
        }
        #expect(r.0 == [0, 1, 2, 3])
        #expect(r.1 == ["Boom.boom", "Boom.other"])
    }

    /// Rule 8: members joined by the user, daemon members and members
    /// handed out by nextDone are not in `results` or `exceptions`.
    @Test(.timeLimit(.minutes(1)))
    func resultsLeaveOutWhatTheUserTook() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var out: [String] = []
            let g = CurioTaskGroup<Int>()
            let joined = try await g.spawn { 1 }
            let daemon = try await g.spawn(daemon: true) { 2 }
            let failing = try await g.spawn { () -> Int in throw KernelHarness.Boom.boom }
            _ = try await g.spawn { 4 }
            _ = try await g.spawn { 5 }
            out.append("joined \(try await joined.join() ?? -1)")
            // Every member has ended now, in spawn order.
            let handed = [try await g.nextDone(), try await g.nextDone(), try await g.nextDone()]
            out.append("handed out \(handed[0] === joined) \(handed[1] === daemon) \(handed[2] === failing)")
            try await g.join()
            out.append("results \(try g.results)")
            out.append("exceptions \(g.exceptions.count)")

            let h = CurioTaskGroup<Int>()
            let mine = try await h.spawn { 10 }
            _ = try await h.spawn(daemon: true) { 20 }
            _ = try await h.spawn { 30 }
            _ = try await mine.join()
            try await h.join()
            out.append("results \(try h.results)")
            return out
        }
        #expect(r == ["joined 1", "handed out true true true", "results [4, 5]", "exceptions 0", "results [30]"])
    }

    /// Rule 8: `result` of a `.any` group is never a member the user took.
    @Test(.timeLimit(.minutes(1)))
    func resultIsNeverAMemberTheUserTook() async throws {
        let r = try await KernelHarness.run { _ -> Int? in
            let g = CurioTaskGroup<Int>(wait: .any)
            let gate = Event()
            let first = try await g.spawn { 1 }
            _ = try await g.spawn { try await gate.wait(); return 2 }
            _ = try await first.join()
            let releaser = try await spawn { await gate.set() }
            try await g.join()
            try await releaser.join()
            return try g.result
        }
        #expect(r == 2)
    }
}

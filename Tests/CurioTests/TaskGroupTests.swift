import Testing
@testable import Curio
#if canImport(Glibc)
import Glibc
#endif

// Tests of CurioTaskGroup and withCurioTaskGroup (curio 1.6's TaskGroup).
//
// Every test runs inside a kernel. Steps are ordered with events and with
// `wait()` on the task that must end first, never with wall-clock sleeps;
// the only sleeps are short ones inside cancellation handlers, to prove the
// group waits for cleanup that blocks.

// MARK: - Helpers

/// What the tasks of a test did, in order. Touched only on the kernel thread.
private final class GroupLog: @unchecked Sendable {
    private(set) var items: [String] = []
    func add(_ s: String) { items.append(s) }
    func count(_ s: String) -> Int { items.filter { $0 == s }.count }
}

private struct GroupBoom: Error, Equatable, CustomStringConvertible {
    let tag: String
    init(_ tag: String) { self.tag = tag }
    var description: String { "GroupBoom(\(tag))" }
}

/// Blocks until cancelled; then logs "NAME cancelled", does cleanup that
/// itself blocks, logs "NAME cleaned up" and rethrows the cancellation.
private func groupParked<T>(_ log: GroupLog, _ name: String, as: T.Type = T.self) async throws -> T {
    do {
        try await Event().wait()
    } catch let error as any CancelledError {
        log.add("\(name) cancelled")
        try await Curio.sleep(0.001)
        log.add("\(name) cleaned up")
        throw error
    }
    throw GroupBoom("\(name) woke up without being cancelled")
}

/// Opens `gate` and waits until `task` has ended: the tasks released this
/// way end in exactly the order of the calls.
private func groupRelease(_ gate: Event, _ task: AnyCurioTask) async throws {
    await gate.set()
    try await task.wait()
}

private func groupEvents(_ n: Int) -> [Event] { (0..<n).map { _ in Event() } }

/// Runs `body` with file descriptor 2 pointing at a temporary file and
/// returns what was written to it. Output of other tests that happens to
/// land there is written back to the real stderr, minus lines containing
/// `swallow`.
private func groupCapturingStderr(swallow: String, _ body: () throws -> Void) throws -> String {
    fflush(nil)
    var template = Array("/tmp/curio-taskgroup-stderr-XXXXXX".utf8CString)
    // Close-on-exec: tests running meanwhile may spawn child processes.
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    try #require(fd >= 0)
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    let saved = fcntl(2, F_DUPFD_CLOEXEC, 0)
    try #require(saved >= 0)
    _ = dup2(fd, 2)
    var failure: (any Error)?
    do { try body() } catch { failure = error }
    fflush(nil)
    _ = dup2(saved, 2)
    close(saved)

    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    _ = lseek(fd, 0, SEEK_SET)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, 4096) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    close(fd)
    let text = String(decoding: bytes, as: UTF8.self)
    let others = text.split(separator: "\n").filter { !$0.contains(swallow) }
    if !others.isEmpty { writeStderr(others.joined(separator: "\n") + "\n") }
    if let failure { throw failure }
    return text
}

// MARK: - spawn

@Test(.timeLimit(.minutes(1)))
func taskGroupSpawnStartsMembers() async throws {
    try await KernelHarness.runMain {
        let me = try await currentTask()
        let g = CurioTaskGroup<Int>()
        #expect(g.policy == .all)
        #expect(g.tasks.isEmpty)
        let gate = Event()
        let a = try await g.spawn(name: "member-a") { try await gate.wait(); return 1 }
        let b = try await g.spawn { try await gate.wait(); return 2 }
        #expect(g.tasks.map(\.id) == [a.id, b.id])
        #expect(a.name == "member-a")
        #expect(a.parentID == me.id)
        #expect(!a.daemon)
        #expect(!a.terminated && !b.terminated)
        let d = try await g.spawn(daemon: true) { try await gate.wait(); return 3 }
        #expect(d.daemon)

        await gate.set()
        try await g.join()
        #expect(g.tasks.isEmpty)
        #expect(a.terminated && b.terminated && d.terminated)
        #expect(try a.result == 1)
        #expect(try b.result == 2)
        #expect(try d.result == 3)
        #expect(try g.results == [1, 2])   // the daemon member is left out
    }
}

// MARK: - wait: .all

@Test(.timeLimit(.minutes(1)))
func taskGroupAllWaitsForEveryTaskAndCompletedIsFirstToEnd() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>(wait: .all)
        let gates = groupEvents(3)
        var members: [CurioTask<Int>] = []
        for i in 0..<3 {
            let gate = gates[i]
            members.append(try await g.spawn { try await gate.wait(); return (i + 1) * 10 })
        }
        let order = [1, 0, 2]
        let m = members
        let me = try await currentTask()
        let driver = try await spawn {
            #expect(me.state == .taskJoin)   // blocked in join()
            for i in order { try await groupRelease(gates[i], m[i]) }
        }
        try await g.join()
        // join returned only once every member had ended.
        #expect(members.allSatisfy { $0.terminated })
        #expect(!members.contains { $0.cancelled })
        #expect(g.tasks.isEmpty)
        #expect(g.completed === members[1])
        #expect(try g.result == 20)
        #expect(try g.results == [10, 20, 30])   // in add order
        #expect(g.exceptions.isEmpty)
        #expect(g.exception == nil)
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAllStopsAtFirstFailureAndCancelsTheRest() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>()
        let gate = Event()
        let ok = try await g.spawn { 1 }
        let bad = try await g.spawn { () async throws -> Int in
            try await gate.wait()
            throw GroupBoom("first")
        }
        let a = try await g.spawn { try await groupParked(log, "a", as: Int.self) }
        let b = try await g.spawn { try await groupParked(log, "b", as: Int.self) }
        let driver = try await spawn { try await ok.wait(); await gate.set() }

        try await g.join()   // member failures do not make join throw
        #expect(bad.terminated && ok.terminated)
        #expect(a.terminated && b.terminated)
        #expect(a.cancelled && b.cancelled)
        #expect(!ok.cancelled && !bad.cancelled)
        // Their cleanup ran to its end before join returned.
        #expect(log.count("a cancelled") == 1 && log.count("a cleaned up") == 1)
        #expect(log.count("b cancelled") == 1 && log.count("b cleaned up") == 1)
        #expect(try a.result == nil)
        #expect(try b.result == nil)

        #expect(g.completed === ok)   // .all: the first to end
        #expect(try g.result == 1)
        let exceptions = g.exceptions
        #expect(exceptions.count == 1)
        #expect(exceptions.first as? GroupBoom == GroupBoom("first"))
        #expect(g.exception as? GroupBoom == GroupBoom("first"))
        let e = #expect(throws: TaskError.self) { try g.results }
        #expect(e?.cause as? GroupBoom == GroupBoom("first"))
        #expect(e?.taskID == bad.id)
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAllIgnoresMembersCancelledFromOutside() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>()
        let gate = Event()
        let victim = try await g.spawn { try await groupParked(log, "victim", as: Int.self) }
        let other = try await g.spawn { try await gate.wait(); return 5 }
        let driver = try await spawn {
            try await victim.cancel()
            #expect(!other.terminated)
            try await groupRelease(gate, other)
        }
        try await g.join()
        #expect(victim.terminated && other.terminated)
        #expect(!other.cancelled)
        #expect(g.completed === victim)
        #expect(try g.result == nil)   // ended by the cancellation it was sent
        #expect(try g.results == [5])
        #expect(g.exceptions.isEmpty)
        try await driver.join()
    }
}

// MARK: - wait: .any

@Test(.timeLimit(.minutes(1)))
func taskGroupAnyReturnsAfterFirstTaskEndsAndCancelsTheRest() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<String>(wait: .any)
        let gate = Event()
        let slow1 = try await g.spawn { try await groupParked(log, "slow1", as: String.self) }
        let fast = try await g.spawn { try await gate.wait(); return "fast" }
        let slow2 = try await g.spawn { try await groupParked(log, "slow2", as: String.self) }
        let driver = try await spawn { await gate.set() }

        try await g.join()
        #expect(g.completed === fast)
        #expect(try g.result == "fast")
        #expect(slow1.terminated && slow2.terminated)
        #expect(slow1.cancelled && slow2.cancelled && !fast.cancelled)
        #expect(log.count("slow1 cleaned up") == 1 && log.count("slow2 cleaned up") == 1)
        #expect(g.tasks.isEmpty)
        #expect(try g.results == ["fast"])
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAnyCountsAFailureAsTheFirstToEnd() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>(wait: .any)
        let bad = try await g.spawn { () async throws -> Int in throw GroupBoom("any") }
        let slow = try await g.spawn { try await groupParked(log, "slow", as: Int.self) }
        try await g.join()
        #expect(g.completed === bad)
        let e = #expect(throws: TaskError.self) { try g.result }
        #expect(e?.cause as? GroupBoom == GroupBoom("any"))
        #expect(slow.terminated && slow.cancelled)
        #expect(log.count("slow cleaned up") == 1)
    }
}

// MARK: - wait: .object

@Test(.timeLimit(.minutes(1)))
func taskGroupObjectWaitsForFirstNonNilValue() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int?>(wait: .object)
        let gates = groupEvents(3)
        let returnsNil = try await g.spawn { () async throws -> Int? in try await gates[0].wait(); return nil }
        let fails = try await g.spawn { () async throws -> Int? in try await gates[1].wait(); throw GroupBoom("object") }
        let value = try await g.spawn { () async throws -> Int? in try await gates[2].wait(); return 7 }
        let later = try await g.spawn { try await groupParked(log, "later", as: Int?.self) }
        let driver = try await spawn {
            try await groupRelease(gates[0], returnsNil)
            #expect(!value.terminated && !later.terminated)   // join is still waiting
            try await groupRelease(gates[1], fails)
            #expect(!later.terminated && !later.cancelled)
            try await groupRelease(gates[2], value)
        }

        try await g.join()
        #expect(g.completed === value)
        #expect(try g.result == .some(.some(7)))
        #expect(later.terminated && later.cancelled)
        #expect(log.count("later cleaned up") == 1)
        #expect(!returnsNil.cancelled && !fails.cancelled && !value.cancelled)
        #expect(g.exceptions.count == 1)
        #expect(g.exception as? GroupBoom == GroupBoom("object"))
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupObjectWithNoValueCompletesNothing() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int?>(wait: .object)
        try await g.spawn { nil }
        try await g.spawn { () async throws -> Int? in throw GroupBoom("none") }
        try await g.spawn { nil }
        try await g.join()
        #expect(g.completed == nil)
        #expect(g.tasks.isEmpty)
        let e = #expect(throws: CurioUsageError.self) { try g.result }
        #expect(e?.kind == .invalidArgument)
        #expect(g.exceptions.count == 1)

        // With a non-optional T every returned value counts.
        let h = CurioTaskGroup<Int>(wait: .object)
        let gate = Event()
        let bad = try await h.spawn { () async throws -> Int in throw GroupBoom("skip") }
        let good = try await h.spawn { try await gate.wait(); return 0 }
        let driver = try await spawn { try await bad.wait(); await gate.set() }
        try await h.join()
        #expect(h.completed === good)
        #expect(try h.result == 0)
        #expect(h.exception as? GroupBoom == GroupBoom("skip"))
        try await driver.join()
    }
}

// MARK: - wait: .none

@Test(.timeLimit(.minutes(1)))
func taskGroupNoneCancelsEverythingAtOnce() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>(wait: .none)
        var members: [CurioTask<Int>] = []
        for i in 0..<3 {
            members.append(try await g.spawn { try await groupParked(log, "m\(i)", as: Int.self) })
        }
        try await Curio.sleep(0)   // the three are blocked now
        // Not started yet when join cancels it: it sees the cancellation
        // at its first blocking call.
        let fresh = try await g.spawn { try await groupParked(log, "fresh", as: Int.self) }
        try await g.join()
        #expect(members.allSatisfy { $0.terminated && $0.cancelled })
        #expect(fresh.terminated && fresh.cancelled)
        for name in ["m0", "m1", "m2", "fresh"] {
            #expect(log.count("\(name) cleaned up") == 1)
        }
        #expect(g.completed == nil)
        #expect(g.tasks.isEmpty)
        #expect(try g.results.isEmpty)
    }
}

// MARK: - nextDone / nextResult / iteration

@Test(.timeLimit(.minutes(1)))
func taskGroupNextDoneReturnsTasksInCompletionOrder() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        #expect(try await g.nextDone() == nil)   // empty group: nil at once

        let gates = groupEvents(4)
        var members: [CurioTask<Int>] = []
        for i in 0..<4 {
            let gate = gates[i]
            members.append(try await g.spawn { try await gate.wait(); return i })
        }
        let order = [2, 0, 3, 1]
        let m = members
        let driver = try await spawn {
            for i in order { try await groupRelease(gates[i], m[i]) }
        }
        var seen: [Int] = []
        while let t = try await g.nextDone() {
            #expect(t.terminated)
            seen.append(t.id)
        }
        #expect(seen == order.map { members[$0].id })
        #expect(try await g.nextDone() == nil)
        #expect(try g.results.isEmpty)   // every member was handed out: the caller's now
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupNextDoneHandsOutTasksThatEndedBeforeTheCall() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        let a = try await g.spawn { 1 }
        let b = try await g.spawn { 2 }
        try await a.wait()
        try await b.wait()
        #expect(g.tasks.isEmpty)
        #expect(try await g.nextDone() === a)
        #expect(try await g.nextDone() === b)
        #expect(try await g.nextDone() == nil)
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupNextResultReturnsValuesAndThrowsTaskError() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>()
        let gates = groupEvents(3)
        let one = try await g.spawn { try await gates[0].wait(); return 1 }
        let bad = try await g.spawn(name: "bad") { () async throws -> Int in try await gates[1].wait(); throw GroupBoom("next") }
        let cancelled = try await g.spawn { try await groupParked(log, "c", as: Int.self) }
        let four = try await g.spawn { try await gates[2].wait(); return 4 }
        let driver = try await spawn {
            try await groupRelease(gates[0], one)
            try await groupRelease(gates[1], bad)
            try await cancelled.cancel()
            try await groupRelease(gates[2], four)
        }

        #expect(try await g.nextResult() == 1)
        let e = await #expect(throws: TaskError.self) { try await g.nextResult() }
        #expect(e?.cause as? GroupBoom == GroupBoom("next"))
        #expect(e?.taskID == bad.id)
        #expect(e?.taskName == "bad")
        #expect(try await g.nextResult() == nil)   // ended by cancel()
        #expect(try await g.nextResult() == 4)
        let empty = await #expect(throws: CurioUsageError.self) { try await g.nextResult() }
        #expect(empty?.kind == .invalidArgument)
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupForTryAwaitYieldsTasksAsTheyEnd() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<String>()
        let gates = groupEvents(3)
        var members: [CurioTask<String>] = []
        for i in 0..<3 {
            let gate = gates[i]
            members.append(try await g.spawn { try await gate.wait(); return "t\(i)" })
        }
        let order = [1, 2, 0]
        let m = members
        let driver = try await spawn {
            for i in order { try await groupRelease(gates[i], m[i]) }
        }
        var values: [String] = []
        for try await task in g {
            #expect(task.terminated)
            values.append(try task.result ?? "?")
        }
        #expect(values == ["t1", "t2", "t0"])
        #expect(try g.results.isEmpty)   // iteration handed every member out

        // Breaking out early leaves the rest for later.
        let h = CurioTaskGroup<Int>()
        let first = try await h.spawn { 1 }
        let second = try await h.spawn { 2 }
        for try await task in h {
            #expect(task === first)
            break
        }
        #expect(try await h.nextDone() === second)
        try await driver.join()
    }
}

// MARK: - results, exceptions, exception, result

@Test(.timeLimit(.minutes(1)))
func taskGroupResultsAndExceptions() async throws {
    try await KernelHarness.runMain {
        // Before anything completes.
        let g = CurioTaskGroup<Int>()
        #expect(try g.results.isEmpty)
        #expect(g.exceptions.isEmpty)
        #expect(g.exception == nil)
        #expect(g.completed == nil)
        let noJoin = #expect(throws: CurioUsageError.self) { try g.result }
        #expect(noJoin?.kind == .invalidArgument)

        // Failures, in completion order; values of the others.
        let gates = groupEvents(4)
        let v1 = try await g.spawn { try await gates[0].wait(); return 1 }
        let f2 = try await g.spawn { () async throws -> Int in try await gates[1].wait(); throw GroupBoom("second") }
        let f1 = try await g.spawn { () async throws -> Int in try await gates[2].wait(); throw GroupBoom("first") }
        let v2 = try await g.spawn { try await gates[3].wait(); return 2 }
        let driver = try await spawn {
            try await groupRelease(gates[3], v2)
            try await groupRelease(gates[2], f1)
        }
        // .all stops at the first failure (f1); v1 and f2 are cancelled.
        try await g.join()
        #expect(g.completed === v2)
        #expect(try g.result == 2)
        #expect(g.exceptions.map { ($0 as? GroupBoom)?.tag } == ["first"])
        #expect(g.exception as? GroupBoom == GroupBoom("first"))
        let e = #expect(throws: TaskError.self) { try g.results }
        #expect(e?.cause as? GroupBoom == GroupBoom("first"))
        #expect(e?.taskID == f1.id)
        #expect(v1.cancelled && f2.cancelled)
        #expect(try v1.result == nil)
        #expect(try f2.result == nil)
        try await driver.join()

        // Several failures, all ended before join: every failure is kept,
        // in the order the tasks were added.
        let h = CurioTaskGroup<Int>()
        try await h.spawn { 10 }
        try await h.spawn { () async throws -> Int in throw GroupBoom("x") }
        try await h.spawn { () async throws -> Int in throw GroupBoom("y") }
        try await h.spawn { 20 }
        try await Curio.sleep(0)
        try await h.join()
        #expect(h.exceptions.map { ($0 as? GroupBoom)?.tag } == ["x", "y"])
        #expect(h.exception as? GroupBoom == GroupBoom("x"))
        let he = #expect(throws: TaskError.self) { try h.results }
        #expect(he?.cause as? GroupBoom == GroupBoom("x"))

        // Read with nextDone instead: the members are the caller's, and the
        // group's outcome leaves them out (curio 1.6).
        let k = CurioTaskGroup<Int>()
        try await k.spawn { 10 }
        try await k.spawn { () async throws -> Int in throw GroupBoom("x") }
        var failures = 0
        while let t = try await k.nextDone() { if t.failure != nil { failures += 1; _ = t.joinFailure() } }
        #expect(failures == 1)
        #expect(k.exceptions.isEmpty)
        #expect(try k.results.isEmpty)
    }
}

// MARK: - cancelRemaining

@Test(.timeLimit(.minutes(1)))
func taskGroupCancelRemainingCancelsAndWaitsForCleanup() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>()
        let done = try await g.spawn { 42 }
        try await done.wait()
        var members: [CurioTask<Int>] = []
        for i in 0..<3 {
            members.append(try await g.spawn { try await groupParked(log, "m\(i)", as: Int.self) })
        }
        #expect(g.tasks.count == 3)
        try await g.cancelRemaining()
        #expect(g.tasks.isEmpty)
        #expect(members.allSatisfy { $0.terminated && $0.cancelled })
        #expect(!done.cancelled)
        for i in 0..<3 { #expect(log.count("m\(i) cleaned up") == 1) }
        #expect(try g.results == [42])   // cancelled members have no value
        var handedOut = 0
        while try await g.nextDone() != nil { handedOut += 1 }
        #expect(handedOut == 4)
        try await g.cancelRemaining()   // nothing left: returns at once
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupCancelRemainingAlsoCancelsMembersSpawnedWhileItWaits() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g = CurioTaskGroup<Int>()
        let spawned = GroupLog()
        let spawner = try await g.spawn { () async throws -> Int in
            do {
                try await Event().wait()
            } catch {
                // A member that reacts to its cancellation by starting
                // another member of the same group.
                let t = try await g.spawn { try await groupParked(log, "late", as: Int.self) }
                spawned.add("\(t.id)")
                throw error
            }
            return 0
        }
        try await Curio.sleep(0)
        try await g.cancelRemaining()
        #expect(spawner.terminated)
        #expect(spawned.items.count == 1)
        #expect(g.tasks.isEmpty)
        #expect(log.count("late cleaned up") == 1)
    }
}

// MARK: - add

@Test(.timeLimit(.minutes(1)))
func taskGroupAddAdoptsARunningTask() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        let gate = Event()
        let outside = try await spawn { try await gate.wait(); return 9 }
        try await g.add(outside)
        #expect(g.tasks.map(\.id) == [outside.id])
        let driver = try await spawn { await gate.set() }
        try await g.join()   // waits for the adopted task
        #expect(outside.terminated)
        #expect(g.completed === outside)
        #expect(try g.result == 9)
        try await driver.join()
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAddOfATerminatedTaskMakesItDoneAtOnce() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        let ended = try await spawn { 3 }
        try await ended.wait()
        try await g.add(ended)
        #expect(g.tasks.isEmpty)
        #expect(try await g.nextDone() === ended)
        #expect(try await g.nextDone() == nil)
        #expect(try g.results.isEmpty)   // handed out by nextDone

        // Adding the same ended task again is an error, not a second entry.
        let again = await #expect(throws: CurioUsageError.self) { try await g.add(ended) }
        #expect(again?.kind == .invalidArgument)
        #expect(try g.results.isEmpty)

        // And so is adding it to another group: it belongs to g.
        let j = CurioTaskGroup<Int>()
        let other = await #expect(throws: CurioUsageError.self) { try await j.add(ended) }
        #expect(other?.kind == .invalidArgument)
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAddRejectsTasksAlreadyInAGroup() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let g1 = CurioTaskGroup<Int>()
        let g2 = CurioTaskGroup<Int>()
        let member = try await g1.spawn { try await groupParked(log, "member", as: Int.self) }

        let other = await #expect(throws: CurioUsageError.self) { try await g2.add(member) }
        #expect(other?.kind == .invalidArgument)
        let same = await #expect(throws: CurioUsageError.self) { try await g1.add(member) }
        #expect(same?.kind == .invalidArgument)
        #expect(g2.tasks.isEmpty)
        #expect(g1.tasks.count == 1)

        // A task that ended as a member of g1 still belongs to g1.
        let quick = try await g1.spawn { 5 }
        try await quick.wait()
        let ended = await #expect(throws: CurioUsageError.self) { try await g2.add(quick) }
        #expect(ended?.kind == .invalidArgument)

        try await g1.cancelRemaining()
        #expect(member.terminated)
        while try await g1.nextDone() != nil {}
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupAddRejectsATaskOfAnotherKernel() async throws {
    try await KernelHarness.onThread(limit: 55) {
        let other = Kernel()
        let foreign = other.addTask { 5 }
        try other.run()
        #expect(foreign.terminated)
        defer { withExtendedLifetime(other) {} }   // the task refers to its kernel
        try Kernel().run {
            let g = CurioTaskGroup<Int>()
            let e = await #expect(throws: CurioUsageError.self) { try await g.add(foreign) }
            #expect(e?.kind == .wrongKernel)
            let next = try await g.nextDone()
            #expect(next == nil)
        }
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupBelongsToTheKernelThatFirstUsedIt() async throws {
    try await KernelHarness.onThread(limit: 55) {
        // Both kernels stay alive: objects refer to their kernel unowned, and a
        // second kernel allocated at the first one's address would pass for it.
        let first = Kernel()
        let second = Kernel()
        defer { withExtendedLifetime((first, second)) {} }
        let g = CurioTaskGroup<Int>()
        try first.run {
            try await g.spawn { 1 }
            while try await g.nextDone() != nil {}
        }
        try second.run {
            let s = await #expect(throws: CurioUsageError.self) { try await g.spawn { 2 } }
            #expect(s?.kind == .wrongKernel)
            let n = await #expect(throws: CurioUsageError.self) { try await g.nextDone() }
            #expect(n?.kind == .wrongKernel)
            let j = await #expect(throws: CurioUsageError.self) { try await g.join() }
            #expect(j?.kind == .wrongKernel)
            try await Curio.sleep(0)
        }
        #expect(try g.results.isEmpty)   // handed out by nextDone
    }
}

// MARK: - join closes the group

@Test(.timeLimit(.minutes(1)))
func taskGroupSpawnAfterJoinThrows() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        try await g.spawn { 1 }
        try await g.join()
        let e = await #expect(throws: CurioUsageError.self) { try await g.spawn { 2 } }
        #expect(e?.kind == .invalidArgument)
        let t = try await spawn { 3 }
        let a = await #expect(throws: CurioUsageError.self) { try await g.add(t) }
        #expect(a?.kind == .invalidArgument)
        try await t.join()
        try await g.join()   // a second join is harmless
        #expect(try g.results == [1])
    }
}

@Test(.timeLimit(.minutes(1)))
func taskGroupMembersMaySpawnIntoTheGroupWhileItIsBeingJoined() async throws {
    try await KernelHarness.runMain {
        let g = CurioTaskGroup<Int>()
        let gate = Event()
        let child = GroupLog()
        try await g.spawn { () async throws -> Int in
            try await gate.wait()
            // A crawler-style member: adds more work to its own group.
            let t = try await g.spawn { try await gate.wait(); return 2 }
            child.add("\(t.id)")
            return 1
        }
        let driver = try await spawn { await gate.set() }
        try await g.join()
        #expect(child.items.count == 1)
        #expect(g.tasks.isEmpty)
        #expect(try g.results == [1, 2])
        #expect(g.exceptions.isEmpty)
        try await driver.join()
    }
}

// MARK: - withCurioTaskGroup

@Test(.timeLimit(.minutes(1)))
func withCurioTaskGroupJoinsOnNormalExit() async throws {
    try await KernelHarness.runMain {
        let gates = groupEvents(3)
        var members: [CurioTask<Int>] = []
        let driverBox = GroupLog()
        let value = try await withCurioTaskGroup(of: Int.self) { g in
            for i in 0..<3 {
                let gate = gates[i]
                members.append(try await g.spawn { try await gate.wait(); return i })
            }
            let m = members
            let driver = try await spawn {
                for i in [2, 1, 0] { try await groupRelease(gates[i], m[i]) }
            }
            driverBox.add("\(driver.id)")
            #expect(!members.contains { $0.terminated })
            return "body done"   // no explicit join
        }
        #expect(value == "body done")
        #expect(members.allSatisfy { $0.terminated && !$0.cancelled })
        #expect(driverBox.items.count == 1)

        // The seed-style example: first answer wins.
        let winner = try await withCurioTaskGroup(of: String.self, wait: .any) { g in
            let gate = Event()
            try await g.spawn { try await gate.wait(); return "slow" }
            try await g.spawn { "fast" }
            try await g.join()
            return try g.result
        }
        #expect(winner == "fast")
    }
}

@Test(.timeLimit(.minutes(1)))
func withCurioTaskGroupCancelsMembersWhenTheBodyThrows() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        var members: [CurioTask<Int>] = []
        await #expect(throws: GroupBoom("body")) {
            try await withCurioTaskGroup(of: Int.self) { g in
                for i in 0..<3 {
                    members.append(try await g.spawn { try await groupParked(log, "m\(i)", as: Int.self) })
                }
                try await Curio.sleep(0)
                throw GroupBoom("body")
            }
        }
        // Nothing outlives the call, and the cleanup of each member ran.
        #expect(members.count == 3)
        #expect(members.allSatisfy { $0.terminated && $0.cancelled })
        for i in 0..<3 { #expect(log.count("m\(i) cleaned up") == 1) }
    }
}

@Test(.timeLimit(.minutes(1)))
func withCurioTaskGroupCancelledCallerCancelsMembers() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let started = Event()
        let membersBox = GroupLog()
        let holder = try await spawn {
            do {
                try await withCurioTaskGroup(of: Int.self) { g in
                    for i in 0..<2 {
                        let t = try await g.spawn { try await groupParked(log, "m\(i)", as: Int.self) }
                        membersBox.add("\(t.id)")
                    }
                    await started.set()
                    _ = try await g.nextDone()   // the body is blocked here when cancelled
                }
            } catch is CancelledError {
                log.add("holder cancelled")
                throw TaskCancelled()
            }
        }
        try await started.wait()
        try await holder.cancel()
        #expect(holder.terminated)
        #expect(log.items.last == "holder cancelled")
        #expect(log.count("m0 cleaned up") == 1 && log.count("m1 cleaned up") == 1)
        #expect(membersBox.items.count == 2)
    }
}

// MARK: - cancelling the joiner

@Test(.timeLimit(.minutes(1)))
func taskGroupCancellingTheJoinerCancelsMembersFirst() async throws {
    try await KernelHarness.runMain {
        let log = GroupLog()
        let joining = Event()
        let members = GroupLog()
        let joiner = try await spawn {
            let g = CurioTaskGroup<Int>()
            var ts: [CurioTask<Int>] = []
            for i in 0..<3 {
                ts.append(try await g.spawn { try await groupParked(log, "m\(i)", as: Int.self) })
            }
            await joining.set()
            do {
                try await g.join()
            } catch let error as any CancelledError {
                // The members have all ended before the cancellation gets here.
                let allEnded = ts.allSatisfy { $0.terminated && $0.cancelled } && g.tasks.isEmpty
                log.add("joiner cancelled, members ended: \(allEnded)")
                members.add("\(ts.count)")
                throw error
            }
            log.add("join returned")
        }
        try await joining.wait()
        try await joiner.cancel()
        #expect(joiner.terminated)
        #expect(try joiner.result == nil)
        #expect(log.items.last == "joiner cancelled, members ended: true")
        #expect(!log.items.contains("join returned"))
        for i in 0..<3 {
            let cleaned = log.items.firstIndex(of: "m\(i) cleaned up")
            #expect(cleaned != nil)
            #expect(cleaned ?? .max < log.items.count - 1)
        }
        #expect(members.items == ["3"])
    }
}

// MARK: - unread failures

@Test(.timeLimit(.minutes(1)))
func taskGroupReportsAnUnreadFailureOnStderr() async throws {
    try await KernelHarness.onThread(limit: 55) {
        let token = "taskgroup-unread-failure-7a3e"
        let text = try groupCapturingStderr(swallow: token) {
            try Kernel().run {
                try await withCurioTaskGroup(of: Int.self) { g in
                    try await g.spawn(name: "unread") { () async throws -> Int in throw GroupBoom(token) }
                    try await g.spawn { 1 }
                }
                // A failure that was read is not reported.
                try await withCurioTaskGroup(of: Int.self) { g in
                    try await g.spawn(name: "read") { () async throws -> Int in throw GroupBoom("read-\(token)") }
                    try await g.join()
                    #expect(g.exceptions.count == 1)
                }
            }
        }
        let lines = text.split(separator: "\n").filter { $0.contains(token) }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("crashed and nobody joined it") == true)
        #expect(lines.first?.contains("unread") == true)
        #expect(lines.first?.contains("GroupBoom(\(token))") == true)
    }
}

// Races between threads that used to be decided by luck: two kernels
// binding a fresh object at the same moment (exactly one may own it), an
// Event set from another kernel while its first waiter binds it (the set
// is never lost), and the worker pool's parking of threads under load (no
// job is stranded).
import Glibc
import Synchronization
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ThreadSafetyTests {
    static let rounds = 300

    /// Runs `body(kernelIndex)` as the main task of two kernels on two
    /// threads at once → what each returned.
    static func twoKernels<T: Sendable>(_ body: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        async let a = KernelHarness.run(limit: 50) { _ in try await body(0) }
        async let b = KernelHarness.run(limit: 50) { _ in try await body(1) }
        return try await [a, b]
    }

    @Test func aFreshObjectBindsToExactlyOneKernel() async throws {
        let locks = (0..<Self.rounds).map { _ in Lock() }
        let meet = (0..<Self.rounds).map { _ in KernelHarness.Rendezvous(parties: 2) }
        let r = try await Self.twoKernels { _ -> [String] in
            var seen: [String] = []
            for i in 0..<Self.rounds {
                guard meet[i].arrive(within: 20) else { throw KernelHarness.Failure(description: "round \(i): no partner") }
                do {
                    try await locks[i].acquire()
                    try await locks[i].release()
                    seen.append("owner")
                } catch let e as CurioUsageError where e.kind == .wrongKernel {
                    seen.append("refused")
                }
            }
            return seen
        }
        var doubleOwners = 0, noOwner = 0
        for i in 0..<Self.rounds {
            let owners = [r[0][i], r[1][i]].filter { $0 == "owner" }.count
            if owners > 1 { doubleOwners += 1 }
            if owners == 0 { noOwner += 1 }
        }
        #expect(doubleOwners == 0, "\(doubleOwners) objects were owned by two kernels")
        #expect(noOwner == 0)
    }

    @Test func aSetFromAnotherKernelIsNeverLostWhileTheWaiterBinds() async throws {
        let events = (0..<Self.rounds).map { _ in Event() }
        let meet = (0..<Self.rounds).map { _ in KernelHarness.Rendezvous(parties: 2) }
        let r = try await Self.twoKernels { k -> Int in
            var woken = 0
            for i in 0..<Self.rounds {
                guard meet[i].arrive(within: 20) else { throw KernelHarness.Failure(description: "round \(i): no partner") }
                if k == 0 {
                    if try await events[i].wait(timeout: 5) { woken += 1 }
                } else {
                    await events[i].set()
                }
            }
            return woken
        }
        #expect(r[0] == Self.rounds, "\(Self.rounds - r[0]) sets were lost")
    }

    @Test func clearAndIsSetWorkFromAnyThread() async throws {
        let event = Event()
        let r = try await KernelHarness.run { _ -> [Bool] in
            let waiter = try await spawn { try await event.wait(timeout: 10) }
            try await IOTest.waitBlocked(waiter, .eventWait)
            // Another kernel's thread sets it; this kernel's waiter wakes.
            try await runInThread {
                let k = Kernel()
                try k.run { await event.set() }
                try k.shutdown()
            }
            let woke = try await waiter.join() ?? false
            let setSeen = event.isSet
            try await runInThread { event.clear() }
            return [woke, setSeen, event.isSet]
        }
        #expect(r == [true, true, false])
    }

    @Test func theWorkerPoolStrandsNoJobUnderLoad() async throws {
        let r = try await Self.twoKernels { k -> Int in
            try await withCurioTaskGroup(of: Int.self) { g in
                for i in 0..<500 {
                    try await g.spawn { try await runInThread { i * 2 + k } }
                }
                try await g.join()
                return try g.results.reduce(0, +)
            }
        }
        let base = (0..<500).reduce(0) { $0 + $1 * 2 }
        #expect(r == [base, base + 500])
    }

    @Test func kernelBoundHoldsItsValueForItsKernel() async throws {
        let r = try await KernelHarness.run { kernel -> Int in
            let box = KernelBound(41, kernel: kernel)
            box.value += 1
            // A message posted from another thread runs on the kernel's.
            let done = Event()
            try await runInThread {
                kernel.postMessage { _ in box.value += 100 }
            }
            try await IOTest.waitUntil("the posted message ran") { box.value == 142 }
            await done.set()
            return box.value
        }
        #expect(r == 142)
    }
}

// Kernels talking to each other: addTask and call from a task of another
// kernel never block the caller's kernel, so two kernels doing it to each
// other do not deadlock.
import Synchronization
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct CrossKernelTests {
    @Test(.timeLimit(.minutes(1)))
    func twoKernelsAddingTasksToEachOtherDoNotDeadlock() async throws {
        let a = try Kernel.start()
        let b = try Kernel.start()
        defer {
            a.stop()
            b.stop()
        }
        // Each kernel's task adds a task to the other and waits for its
        // value, many times, at the same time.
        async let fromA = a.kernel.call { () -> Int in
            var sum = 0
            for i in 0..<50 {
                let t = b.kernel.addTask { () -> Int in
                    try await Curio.sleep(0)
                    return i
                }
                sum += try await t.join() ?? 0
            }
            return sum
        }
        async let fromB = b.kernel.call { () -> Int in
            var sum = 0
            for i in 0..<50 {
                sum += try await a.kernel.call { () -> Int in
                    try await Curio.sleep(0)
                    return i
                }
            }
            return sum
        }
        #expect(try await fromA == 1225)
        #expect(try await fromB == 1225)
    }

    @Test(.timeLimit(.minutes(1)))
    func addTaskToABusyKernelReturnsAtOnce() async throws {
        // Kernel b is held by a task that spins until a flag is set; a task
        // of kernel a adds to b and goes on: it is not held up by b.
        let a = try Kernel.start()
        let b = try Kernel.start()
        defer {
            a.stop()
            b.stop()
        }
        let release = Atomic<Bool>(false)
        let holding = UniversalEvent()
        b.kernel.addTask {
            holding.set()
            while !release.load(ordering: .acquiring) {}
        }
        try await holding.wait()
        let r = try await a.kernel.call { () -> String in
            let t = b.kernel.addTask { "ran on b" }
            try await Curio.sleep(0)  // a keeps running
            release.store(true, ordering: .releasing)
            return try await t.join() ?? "nil"
        }
        #expect(r == "ran on b")
    }
}

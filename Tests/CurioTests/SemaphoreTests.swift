import Testing
@testable import Curio

@Suite struct SemaphoreTests {
    @Test(.timeLimit(.minutes(1))) func countsPermits() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 2)
            #expect(sem.value == 2)
            #expect(!sem.locked)
            try await sem.acquire()
            try await sem.acquire()
            #expect(sem.value == 0)
            #expect(sem.locked)
            #expect(try await sem.acquire(timeout: 0.002) == false)
            try await sem.release()
            try await sem.release()
            #expect(sem.value == 2)
            // A plain semaphore may grow past its initial value.
            try await sem.release()
            #expect(sem.value == 3)
            #expect(Curio.Semaphore().value == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func fastPathNeitherSwitchesNorDeliversCancel() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 1)
            let me = try await currentTask()
            try await me.cancel(blocking: false)
            let cycles = me.cycles
            #expect(try await sem.acquire())
            try await sem.release()
            #expect(try await sem.withLock { "x" } == "x")
            #expect(me.cycles == cycles)
            await #expect(throws: TaskCancelled.self) { try await Curio.sleep(0) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func limitsConcurrency() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 3)
            let inside = SyncBox(0)
            let maxInside = SyncBox(0)
            var tasks: [CurioTask<Void>] = []
            for _ in 0..<12 {
                tasks.append(try await spawn {
                    try await sem.withLock {
                        inside.value += 1
                        maxInside.value = max(maxInside.value, inside.value)
                        try await Curio.sleep(0)
                        try await Curio.sleep(0)
                        inside.value -= 1
                    }
                })
            }
            for t in tasks { try await t.join() }
            #expect(maxInside.value == 3)
            #expect(sem.value == 3)
        }
    }

    @Test(.timeLimit(.minutes(1))) func waitersAreServedInOrderWithHandOff() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 0)
            let order = SyncBox<[Int]>([])
            var tasks: [CurioTask<Void>] = []
            for i in 1...4 {
                let t = try await spawn {
                    try await sem.acquire()
                    order.value.append(i)
                }
                tasks.append(t)
                try await syncYieldUntil { t.state == .semaAcquire }
            }
            try await sem.release()
            // Handed to task 1: the value stays 0 and a newcomer cannot take it.
            #expect(sem.value == 0)
            #expect(try await sem.acquire(timeout: 0) == false)
            for _ in 0..<3 { try await sem.release() }
            for t in tasks { try await t.join() }
            #expect(order.value == [1, 2, 3, 4])
            #expect(sem.value == 0)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledOrTimedOutWaitersNeverTakeAPermit() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 0)
            let cancelled = try await spawn {
                do { try await sem.acquire() } catch is CancelledError { return "cancelled" }
                return "acquired"
            }
            let timedOut = try await spawn { try await sem.acquire(timeout: 0.003) }
            let patient = try await spawn { try await sem.acquire() }
            try await syncYieldUntil { cancelled.state == .semaAcquire && patient.state == .semaAcquire }
            try await cancelled.cancel()
            #expect(try await cancelled.join() == "cancelled")
            #expect(try await timedOut.join() == false)
            try await sem.release()                      // goes to `patient`, the only waiter left
            #expect(try await patient.join() == true)
            #expect(sem.value == 0)
            try await sem.release()
            #expect(sem.value == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelAfterHandOffKeepsThePermit() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 0)
            let waiter = try await spawn {
                try await sem.acquire()
                try await sem.release()                   // gives it back
                try await Curio.sleep(0)                  // the cancellation lands here
            }
            try await syncYieldUntil { waiter.state == .semaAcquire }
            try await sem.release()
            try await waiter.cancel(blocking: false)
            #expect(try await waiter.join() == nil)      // ended by the cancellation
            #expect(sem.value == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func withLockReleasesWhenTheBodyThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            struct Boom: Error {}
            try Kernel().run {
                let sem = Curio.Semaphore(value: 1)
                await #expect(throws: Boom.self) { try await sem.withLock { throw Boom() } }
                #expect(sem.value == 1)
            }
        }
    }

    // MARK: - BoundedSemaphore

    @Test(.timeLimit(.minutes(1))) func boundedSemaphoreRefusesToGrow() async throws {
        try await KernelHarness.runMain {
            let sem = BoundedSemaphore(value: 2)
            let asPlain: Curio.Semaphore = sem
            try await sem.acquire()
            try await sem.release()
            #expect(sem.value == 2)
            do {
                try await asPlain.release()
                Issue.record("over-release did not throw")
            } catch let e as CurioUsageError {
                #expect(e.kind == .invalidRelease)
                #expect(e.message.contains("bound of 2"), "\(e.message)")
            }
            #expect(sem.value == 2)
            // Releases that only return acquired permits are fine, also through waiters.
            try await sem.acquire()
            try await sem.acquire()
            let waiter = try await spawn { try await sem.acquire() }
            try await syncYieldUntil { waiter.state == .semaAcquire }
            try await sem.release()
            try await waiter.join()
            try await sem.release()
            try await sem.release()
            #expect(sem.value == 2)
            await expectSyncUsageError(.invalidRelease) { try await sem.release() }
        }
    }

    // MARK: - Bad input

    @Test(.timeLimit(.minutes(1))) func invalidTimeoutsAreRejected() async throws {
        try await KernelHarness.runMain {
            let sem = Curio.Semaphore(value: 1)
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await sem.acquire(timeout: bad) }
            }
            #expect(sem.value == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func usingASemaphoreOutsideAKernelThrows() async throws {
        let sem = Curio.Semaphore(value: 1)
        await expectSyncUsageError(.notInKernel) { try await sem.acquire() }
        await expectSyncUsageError(.notInKernel) { try await sem.release() }
        #expect(sem.value == 1)
        let bounded = BoundedSemaphore(value: 1)
        await expectSyncUsageError(.notInKernel) { try await bounded.release() }
    }

    @Test(.timeLimit(.minutes(1))) func usingASemaphoreFromTwoKernelsThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            let sem = Curio.Semaphore(value: 1)
            let first = Kernel()
            try first.run { try await sem.withLock {} }
            let second = Kernel()
            try second.run {
                await expectSyncUsageError(.wrongKernel) { try await sem.acquire() }
                await expectSyncUsageError(.wrongKernel) { try await sem.release() }
            }
            #expect(sem.value == 1)
            withExtendedLifetime(first) {}
        }
    }
}

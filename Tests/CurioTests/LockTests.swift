import Testing
@testable import Curio

@Suite struct LockTests {
    @Test(.timeLimit(.minutes(1))) func acquireAndRelease() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            #expect(!lock.locked)
            #expect(try await lock.acquire())
            #expect(lock.locked)
            try await lock.release()
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func uncontendedAcquireNeitherSwitchesNorDeliversCancel() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let me = try await currentTask()
            try await me.cancel(blocking: false)          // pending for the next blocking call
            let cycles = me.cycles
            #expect(try await lock.acquire())
            try await lock.release()
            #expect(try await lock.withLock { 7 } == 7)
            #expect(me.cycles == cycles)
            await #expect(throws: TaskCancelled.self) { try await Curio.sleep(0) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func mutualExclusionWithWithLock() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let inside = SyncBox(0)
            let maxInside = SyncBox(0)
            let total = SyncBox(0)
            var tasks: [CurioTask<Void>] = []
            for _ in 0..<10 {
                tasks.append(try await spawn {
                    for _ in 0..<5 {
                        try await lock.withLock {
                            inside.value += 1
                            maxInside.value = max(maxInside.value, inside.value)
                            try await Curio.sleep(0)
                            total.value += 1
                            inside.value -= 1
                        }
                    }
                })
            }
            for t in tasks { try await t.join() }
            #expect(maxInside.value == 1)
            #expect(total.value == 50)
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func waitersAreServedInArrivalOrderAndNobodyOvertakes() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let order = SyncBox<[Int]>([])
            try await lock.acquire()
            var tasks: [CurioTask<Void>] = []
            for i in 1...5 {
                let t = try await spawn {
                    try await lock.acquire()
                    order.value.append(i)
                    try await lock.release()
                }
                tasks.append(t)
                try await syncYieldUntil("task \(i) waits") { t.state == .lockAcquire }
            }
            try await lock.release()
            // The lock went to task 1 at once: acquiring now waits behind all five.
            #expect(lock.locked)
            try await lock.acquire()
            order.value.append(0)
            try await lock.release()
            for t in tasks { try await t.join() }
            #expect(order.value == [1, 2, 3, 4, 5, 0])
        }
    }

    @Test(.timeLimit(.minutes(1))) func releaseHandsTheLockToTheFirstWaiter() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            try await lock.acquire()
            let waiter = try await spawn { try await lock.acquire() }
            try await syncYieldUntil { waiter.state == .lockAcquire }
            try await lock.release()
            #expect(lock.ownerID == waiter.id)
            #expect(try await waiter.join() == true)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledWaiterNeverOwnsTheLock() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let me = try await currentTask()
            try await lock.acquire()
            let outcome = SyncBox("")
            let waiter = try await spawn {
                do {
                    try await lock.acquire()
                    outcome.value = "acquired"
                } catch is CancelledError {
                    outcome.value = lock.ownerID == me.id ? "cancelled" : "cancelled, but owner changed"
                }
            }
            try await syncYieldUntil { waiter.state == .lockAcquire }
            try await waiter.cancel()
            #expect(outcome.value == "cancelled")
            #expect(lock.ownerID == me.id)
            try await lock.release()
            #expect(!lock.locked)
            // Nobody is left in line: the next acquire is immediate.
            #expect(try await lock.acquire(timeout: 0))
            try await lock.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelAfterHandOffKeepsTheLockAndStaysPending() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            try await lock.acquire()
            let log = SyncBox<[String]>([])
            let waiter = try await spawn {
                try await lock.acquire()
                log.value.append("acquired")
                try await lock.release()
                do {
                    try await Curio.sleep(0)
                } catch is CancelledError {
                    log.value.append("cancelled at next blocking call")
                }
            }
            try await syncYieldUntil { waiter.state == .lockAcquire }
            try await lock.release()                      // hands off: the waiter owns it now
            try await waiter.cancel(blocking: false)      // too late to take it back
            try await waiter.join()
            #expect(log.value == ["acquired", "cancelled at next blocking call"])
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func acquireTimesOut() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let me = try await currentTask()
            try await lock.acquire()
            let waiter = try await spawn { try await lock.acquire(timeout: 0.005) }
            #expect(try await waiter.join() == false)
            #expect(lock.ownerID == me.id)
            try await lock.release()
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func timeoutAfterAroundAcquire() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            try await lock.acquire()
            let waiter = try await spawn {
                try await ignoreAfter(0.005) { try await lock.acquire() }
            }
            #expect(try await waiter.join() == .some(nil))
            try await lock.release()
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func withLockReleasesWhenTheBodyThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            struct Boom: Error {}
            try Kernel().run {
                let lock = Lock()
                await #expect(throws: Boom.self) {
                    try await lock.withLock { throw Boom() }
                }
                #expect(!lock.locked)
                // Cancelled inside the body: released too.
                let holder = try await spawn {
                    try await lock.withLock { try await Curio.sleep(10) }
                }
                try await syncYieldUntil { holder.state == .timeSleep }
                #expect(lock.locked)
                try await holder.cancel()
                #expect(!lock.locked)
            }
        }
    }

    // MARK: - RLock

    @Test(.timeLimit(.minutes(1))) func rlockIsReentrant() async throws {
        try await KernelHarness.runMain {
            let lock = RLock()
            try await lock.acquire()
            try await lock.acquire()
            #expect(lock.recursionLevel == 2)
            let other = try await spawn { try await lock.acquire(timeout: 0.002) }
            #expect(try await other.join() == false)
            try await lock.release()
            #expect(lock.locked)
            try await lock.release()
            #expect(!lock.locked)
            #expect(lock.recursionLevel == 0)
            let nested = try await lock.withLock { try await lock.withLock { lock.recursionLevel } }
            #expect(nested == 2)
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func rlockHandsOffInOrderAfterTheLastRelease() async throws {
        try await KernelHarness.runMain {
            let lock = RLock()
            let order = SyncBox<[Int]>([])
            try await lock.acquire()
            try await lock.acquire()
            var tasks: [CurioTask<Void>] = []
            for i in 1...3 {
                let t = try await spawn {
                    try await lock.withLock {
                        try await lock.withLock { order.value.append(i) }
                    }
                }
                tasks.append(t)
                try await syncYieldUntil { t.state == .lockAcquire }
            }
            try await lock.release()
            try await Curio.sleep(0)
            #expect(order.value.isEmpty)                  // still held once
            try await lock.release()
            for t in tasks { try await t.join() }
            #expect(order.value == [1, 2, 3])
            #expect(!lock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func rlockCancelledWaiterNeverOwns() async throws {
        try await KernelHarness.runMain {
            let lock = RLock()
            try await lock.acquire()
            let waiter = try await spawn {
                do { try await lock.acquire() } catch is CancelledError { return "cancelled" }
                return "acquired"
            }
            try await syncYieldUntil { waiter.state == .lockAcquire }
            try await waiter.cancel()
            #expect(try await waiter.join() == "cancelled")
            #expect(lock.recursionLevel == 1)
            try await lock.release()
            #expect(!lock.locked)
        }
    }

    // MARK: - Bad input

    @Test(.timeLimit(.minutes(1))) func releasingAnUnlockedLockThrows() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            await expectSyncUsageError(.invalidRelease) { try await lock.release() }
            try await lock.acquire()
            try await lock.release()
            await expectSyncUsageError(.invalidRelease) { try await lock.release() }
            let r = RLock()
            await expectSyncUsageError(.invalidRelease) { try await r.release() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func releaseByANonOwnerThrows() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let rlock = RLock()
            try await lock.acquire()
            try await rlock.acquire()
            let intruder = try await spawn {
                await expectSyncUsageError(.invalidRelease) { try await lock.release() }
                await expectSyncUsageError(.invalidRelease) { try await rlock.release() }
            }
            try await intruder.join()
            #expect(lock.locked)
            #expect(rlock.locked)
            try await lock.release()
            try await rlock.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func reacquiringAPlainLockIsAnErrorNotADeadlock() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            try await lock.acquire()
            await expectSyncUsageError(.invalidArgument) { try await lock.acquire() }
            #expect(lock.locked)
            try await lock.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func invalidTimeoutsAreRejected() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let rlock = RLock()
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await lock.acquire(timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { try await rlock.acquire(timeout: bad) }
            }
            #expect(!lock.locked)
            #expect(!rlock.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func usingALockOutsideAKernelThrows() async throws {
        // The test itself runs on Swift's global executor, not on a kernel.
        let lock = Lock()
        await expectSyncUsageError(.notInKernel) { try await lock.acquire() }
        await expectSyncUsageError(.notInKernel) { try await lock.release() }
        await expectSyncUsageError(.notInKernel) { _ = try await lock.withLock { 1 } }
        let rlock = RLock()
        await expectSyncUsageError(.notInKernel) { try await rlock.acquire() }
    }

    @Test(.timeLimit(.minutes(1))) func usingALockFromTwoKernelsThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            let lock = Lock()
            let rlock = RLock()
            let first = Kernel()
            try first.run {
                try await lock.acquire()
                try await lock.release()
                try await rlock.acquire()
                try await rlock.release()
            }
            let second = Kernel()
            try second.run {
                await expectSyncUsageError(.wrongKernel) { try await lock.acquire() }
                await expectSyncUsageError(.wrongKernel) { try await rlock.acquire() }
            }
            withExtendedLifetime(first) {}
        }
    }
}

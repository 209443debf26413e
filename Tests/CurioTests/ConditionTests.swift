import Testing
@testable import Curio

@Suite struct ConditionTests {
    @Test(.timeLimit(.minutes(1))) func waitAndNotify() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let items = SyncBox<[Int]>([])
            let consumer = try await spawn {
                let me = try await currentTask()
                return try await cond.withLock {
                    try await cond.waitFor { !items.value.isEmpty }
                    #expect(cond.lock.ownerID == me.id)
                    return items.value.removeFirst()
                }
            }
            try await syncYieldUntil { consumer.state == .condWait }
            #expect(!cond.locked)                         // wait released the lock
            try await cond.withLock {
                items.value.append(42)
                try await cond.notify()
            }
            #expect(try await consumer.join() == 42)
            #expect(!cond.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func notifyWakesNInOrderAndNotifyAllTheRest() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let order = SyncBox<[Int]>([])
            var tasks: [CurioTask<Void>] = []
            for i in 1...5 {
                let t = try await spawn {
                    try await cond.withLock {
                        try await cond.wait()
                        order.value.append(i)
                    }
                }
                tasks.append(t)
                try await syncYieldUntil { t.state == .condWait }
            }
            #expect(cond.waiting == 5)
            try await cond.withLock { try await cond.notify(2) }
            try await tasks[0].join()
            try await tasks[1].join()
            #expect(order.value == [1, 2])
            #expect(cond.waiting == 3)
            try await cond.withLock { try await cond.notify(0) }
            #expect(cond.waiting == 3)
            try await cond.withLock { try await cond.notifyAll() }
            for t in tasks { try await t.join() }
            #expect(order.value == [1, 2, 3, 4, 5])
            // Notifying nobody is fine.
            try await cond.withLock { try await cond.notify(10) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func notifiedWaitersReturnOnlyWhenTheNotifierReleases() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let returned = SyncBox(false)
            let waiter = try await spawn {
                try await cond.withLock {
                    try await cond.wait()
                    returned.value = true
                }
            }
            try await syncYieldUntil { waiter.state == .condWait }
            try await cond.acquire()
            try await cond.notify()
            for _ in 0..<5 { try await Curio.sleep(0) }
            #expect(!returned.value)
            #expect(waiter.state == .lockAcquire)
            try await cond.release()
            try await waiter.join()
            #expect(returned.value)
        }
    }

    @Test(.timeLimit(.minutes(1))) func waitTimesOutAndHoldsTheLockAgain() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let me = try await currentTask()
            try await cond.acquire()
            #expect(try await cond.wait(timeout: 0.003) == false)
            #expect(cond.lock.ownerID == me.id)
            #expect(cond.waiting == 0)
            #expect(try await cond.waitFor(timeout: 0.003) { false } == false)
            #expect(cond.lock.ownerID == me.id)
            #expect(try await cond.waitFor(timeout: 0.003) { true } == true)
            try await cond.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledWaitTakesTheLockBackBeforeThrowing() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let log = SyncBox<[String]>([])
            let waiter = try await spawn {
                let me = try await currentTask()
                try await cond.acquire()
                do {
                    try await cond.wait()
                    log.value.append("notified")
                } catch is CancelledError {
                    log.value.append(cond.lock.ownerID == me.id ? "cancelled holding the lock" : "cancelled without the lock")
                }
                try await cond.release()
            }
            try await syncYieldUntil { waiter.state == .condWait }
            // Hold the lock while cancelling: the waiter must wait for it.
            try await cond.acquire()
            try await waiter.cancel(blocking: false)
            for _ in 0..<5 { try await Curio.sleep(0) }
            #expect(log.value.isEmpty)
            #expect(waiter.state == .lockAcquire)
            // A second cancellation while it waits for the lock does not interrupt that wait.
            try await waiter.cancel(blocking: false)
            for _ in 0..<3 { try await Curio.sleep(0) }
            #expect(log.value.isEmpty)
            try await cond.release()
            try await waiter.join()
            #expect(log.value == ["cancelled holding the lock"])
            #expect(!cond.locked)
        }
    }

    @Test(.timeLimit(.minutes(1))) func taskTimeoutInWaitTakesTheLockBack() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let me = try await currentTask()
            try await cond.acquire()
            let r = try await ignoreAfter(0.003) { try await cond.wait() }
            #expect(r == nil)
            #expect(cond.lock.ownerID == me.id)
            await #expect(throws: TaskTimeout.self) {
                try await timeoutAfter(0.003) { try await cond.waitFor { false } }
            }
            #expect(cond.lock.ownerID == me.id)
            try await cond.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func pendingCancellationIsDeliveredWithTheLockStillHeld() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let me = try await currentTask()
            try await cond.acquire()
            try await me.cancel(blocking: false)
            await #expect(throws: TaskCancelled.self) { try await cond.wait() }
            #expect(cond.lock.ownerID == me.id)
            #expect(cond.waiting == 0)
            try await cond.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func sharesAGivenLock() async throws {
        try await KernelHarness.runMain {
            let lock = Lock()
            let cond = Condition(lock: lock)
            #expect(cond.lock === lock)
            try await lock.acquire()
            #expect(cond.locked)
            try await cond.notify()
            try await cond.release()
            #expect(!lock.locked)
        }
    }

    // MARK: - Bad input

    @Test(.timeLimit(.minutes(1))) func waitingOrNotifyingWithoutTheLockThrows() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            await expectSyncUsageError(.invalidRelease) { try await cond.wait() }
            await expectSyncUsageError(.invalidRelease) { try await cond.waitFor { true } }
            await expectSyncUsageError(.invalidArgument) { try await cond.notify() }
            await expectSyncUsageError(.invalidArgument) { try await cond.notifyAll() }
            // Held by another task is not held by the caller.
            try await cond.acquire()
            let other = try await spawn {
                await expectSyncUsageError(.invalidRelease) { try await cond.wait() }
                await expectSyncUsageError(.invalidArgument) { try await cond.notify() }
                await expectSyncUsageError(.invalidRelease) { try await cond.release() }
            }
            try await other.join()
            await expectSyncUsageError(.invalidArgument) { try await cond.notify(-1) }
            try await cond.release()
            await expectSyncUsageError(.invalidRelease) { try await cond.release() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func invalidTimeoutsAreRejected() async throws {
        try await KernelHarness.runMain {
            let cond = Condition()
            let me = try await currentTask()
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await cond.acquire(timeout: bad) }
            }
            try await cond.acquire()
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await cond.wait(timeout: bad) }
                await expectSyncUsageError(.invalidTimeout) { try await cond.waitFor(timeout: bad) { false } }
                #expect(cond.lock.ownerID == me.id)
            }
            try await cond.release()
        }
    }

    @Test(.timeLimit(.minutes(1))) func usingAConditionOutsideAKernelThrows() async throws {
        let cond = Condition()
        await expectSyncUsageError(.notInKernel) { try await cond.acquire() }
        await expectSyncUsageError(.notInKernel) { try await cond.wait() }
        await expectSyncUsageError(.notInKernel) { try await cond.notify() }
        await expectSyncUsageError(.notInKernel) { try await cond.notifyAll() }
    }

    @Test(.timeLimit(.minutes(1))) func usingAConditionFromTwoKernelsThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            let cond = Condition()
            let first = Kernel()
            try first.run {
                try await cond.withLock { try await cond.notify() }
            }
            let second = Kernel()
            try second.run {
                await expectSyncUsageError(.wrongKernel) { try await cond.acquire() }
                await expectSyncUsageError(.wrongKernel) { try await cond.notify() }
                await expectSyncUsageError(.wrongKernel) { try await cond.wait() }
            }
            withExtendedLifetime(first) {}
        }
    }
}

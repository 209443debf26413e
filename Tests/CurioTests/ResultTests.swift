import Testing
@testable import Curio

@Suite struct ResultTests {
    struct Failure: Error, Equatable { let code: Int }

    @Test(.timeLimit(.minutes(1))) func setThenUnwrapReturnsAtOnce() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<String>()
            #expect(!r.isSet)
            try await r.set("done")
            #expect(r.isSet)
            let me = try await currentTask()
            let cycles = me.cycles
            #expect(try await r.unwrap() == "done")
            #expect(try await r.unwrap() == "done")      // unwrap does not consume
            #expect(try await r.wait(timeout: 0))
            #expect(me.cycles == cycles)
        }
    }

    @Test(.timeLimit(.minutes(1))) func everyWaiterGetsTheValue() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            var waiters: [CurioTask<Int>] = []
            for _ in 0..<4 {
                let t = try await spawn { try await r.unwrap() }
                waiters.append(t)
                try await syncYieldUntil { t.state == .eventWait }
            }
            try await r.set(7)
            for t in waiters { #expect(try await t.join() == 7) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func setErrorMakesUnwrapThrowIt() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            let waiter = try await spawn {
                do {
                    _ = try await r.unwrap()
                    return 0
                } catch let e as Failure {
                    return e.code
                }
            }
            try await syncYieldUntil { waiter.state == .eventWait }
            try await r.setError(Failure(code: 3))
            #expect(try await waiter.join() == 3)
            await #expect(throws: Failure(code: 3)) { _ = try await r.unwrap() }
        }
    }

    @Test(.timeLimit(.minutes(1))) func waitWithTimeout() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            #expect(try await r.wait(timeout: 0.002) == false)
            let setter = try await spawn { try await r.set(1) }
            #expect(try await r.wait(timeout: 5))
            try await setter.join()
            #expect(try await r.unwrap() == 1)
        }
    }

    @Test(.timeLimit(.minutes(1))) func cancelledWaiterLeavesTheResultAlone() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            let waiter = try await spawn { try await r.unwrap() }
            try await syncYieldUntil { waiter.state == .eventWait }
            try await waiter.cancel()
            #expect(try await waiter.join() == nil)
            #expect(!r.isSet)
            try await r.set(5)
            #expect(try await r.unwrap() == 5)
        }
    }

    @Test(.timeLimit(.minutes(1))) func optionalValues() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int?>()
            try await r.set(nil)
            #expect(r.isSet)
            #expect(try await r.unwrap() == nil)
        }
    }

    // MARK: - Bad input

    @Test(.timeLimit(.minutes(1))) func settingTwiceThrows() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            try await r.set(1)
            await expectSyncUsageError(.invalidArgument) { try await r.set(2) }
            await expectSyncUsageError(.invalidArgument) { try await r.setError(Failure(code: 1)) }
            #expect(try await r.unwrap() == 1)
            let e = CurioResult<Int>()
            try await e.setError(Failure(code: 1))
            await expectSyncUsageError(.invalidArgument) { try await e.set(2) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func invalidTimeoutsAreRejected() async throws {
        try await KernelHarness.runMain {
            let r = CurioResult<Int>()
            for bad in syncBadTimeouts {
                await expectSyncUsageError(.invalidTimeout) { try await r.wait(timeout: bad) }
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func usingAResultOutsideAKernelThrows() async throws {
        let r = CurioResult<Int>()
        await expectSyncUsageError(.notInKernel) { try await r.set(1) }
        await expectSyncUsageError(.notInKernel) { _ = try await r.unwrap() }
        #expect(!r.isSet)
    }

    @Test(.timeLimit(.minutes(1))) func usingAResultFromTwoKernelsThrows() async throws {
        try await KernelHarness.onThread(limit: 55) {
            let r = CurioResult<Int>()
            let first = Kernel()
            try first.run { try await r.set(1) }
            let second = Kernel()
            try second.run {
                await expectSyncUsageError(.wrongKernel) { _ = try await r.unwrap() }
            }
            withExtendedLifetime(first) {}
        }
    }
}

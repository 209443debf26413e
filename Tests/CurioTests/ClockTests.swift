// CurioClock: the kernel's clock as a Swift Clock. Code written against
// `any Clock<Duration>` sleeps on Curio's timer inside a task (the monitor's
// TIME_SLEEP, Curio cancellation and timeouts apply) and on Swift's clock
// elsewhere.
import Glibc
import Testing

@testable import Curio

/// Library code that knows nothing of Curio: it takes any clock.
func elapsed<C: Clock<Duration>>(on clock: C, sleeping duration: Duration) async throws -> Duration {
    let start = clock.now
    try await clock.sleep(for: duration)
    return start.duration(to: clock.now)
}

func sleepAnHour(on clock: any Clock<Duration>) async throws {
    try await clock.sleep(for: .seconds(3600))
}

@Suite(.timeLimit(.minutes(1)))
struct ClockTests {
    @Test func codeWrittenAgainstAnyClockSleepsOnTheKernel() async throws {
        let slept = try await KernelHarness.run { _ -> Duration in
            let clock: any Clock<Duration> = CurioClock()
            return try await elapsed(on: clock, sleeping: .milliseconds(20))
        }
        #expect(slept >= .milliseconds(20))
    }

    @Test func aClockSleepIsACurioSleepTheKernelSeesAndCancels() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let sleeper = try await spawn { () async throws -> String in
                do {
                    try await sleepAnHour(on: .curio)
                    return "woke"
                } catch is CancelledError {
                    return "cancelled"
                }
            }
            // Let the sleeper reach its sleep.
            while sleeper.state != .timeSleep { try await Curio.sleep(0) }
            let state = "\(sleeper.state)"
            #expect(sleeper.timeoutRemaining != nil)
            try await sleeper.cancel()
            return [state, try await sleeper.join() ?? "nil"]
        }
        #expect(r == ["TIME_SLEEP", "cancelled"])
    }

    @Test func aTimeoutBlockInterruptsAClockSleep() async throws {
        let r = try await KernelHarness.run { _ -> String in
            do {
                try await timeoutAfter(.milliseconds(5)) { try await sleepAnHour(on: CurioClock()) }
                return "woke"
            } catch is TaskTimeout {
                return "timeout"
            }
        }
        #expect(r == "timeout")
    }

    @Test func aDeadlineInThePastReturnsAtOnce() async throws {
        let r = try await KernelHarness.run { _ -> Bool in
            let clock = CurioClock()
            try await clock.sleep(until: clock.now.advanced(by: .seconds(-1)), tolerance: nil)
            return true
        }
        #expect(r)
    }

    @Test func nowIsTheKernelsClock() {
        let before = Curio.clock()
        let now = CurioClock().now
        let after = Curio.clock()
        #expect(now.clockSeconds >= before - 1e-6)
        #expect(now.clockSeconds <= after + 1e-6)
        #expect(CurioClock().minimumResolution > .zero)
        #expect(CurioClock().minimumResolution <= .milliseconds(1))
    }

    @Test func instantsAreOrderedAndDurationsRoundTrip() {
        let a = CurioClock.Instant(nanoseconds: 1_000_000_000)
        let b = a.advanced(by: .milliseconds(1500))
        #expect(a < b)
        #expect(a.duration(to: b) == .milliseconds(1500))
        #expect(b.advanced(by: .milliseconds(-1500)) == a)
        #expect(b.clockSeconds == 2.5)
        #expect(CurioClock.Instant(clockSeconds: 2.5) == b)
        #expect("\(b)" == "2.500000000 s")
    }

    @Test func outsideAKernelItSleepsOnSwiftsClock() async throws {
        let slept = try await elapsed(on: CurioClock(), sleeping: .milliseconds(10))
        #expect(slept >= .milliseconds(10))
        let sleeper = Task { try await sleepAnHour(on: CurioClock()) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }
}

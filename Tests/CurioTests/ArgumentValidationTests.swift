// Bad arguments get a clear error that names the mistake, never a trap:
// semaphores with a negative value, negative counts and bad timeouts on
// every synchronization call, empty or uncatchable signal sets, empty or
// missing commands.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ArgumentValidationTests {
    @Test func aNegativeSemaphoreValueIsReportedByEveryCall() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            for sem in [Curio.Semaphore(value: -1), BoundedSemaphore(value: -3)] {
                for call in [{ _ = try await sem.acquire() },
                             { _ = try await sem.acquire(timeout: 0.01) },
                             { try await sem.release() },
                             { _ = try await sem.withLock { 1 } }] as [() async throws -> Void] {
                    let e = await IOTest.error(call)
                    let u = e as? CurioUsageError
                    seen.append("\(u.map { "\($0.kind)" } ?? "\(String(describing: e))") \(u?.message.contains("created with value -") == true)")
                }
            }
            // Zero is a valid value: the first acquire waits (and times out).
            seen.append("zero \(try await Curio.Semaphore(value: 0).acquire(timeout: 0.001))")
            return seen
        }
        #expect(Array(r.dropLast()) == Array(repeating: "invalidArgument true", count: 8))
        #expect(r.last == "zero false")
    }

    @Test func theMessageNamesTheValueAndTheType() async throws {
        let m = try await KernelHarness.run { _ -> String in
            let e = await IOTest.error { try await BoundedSemaphore(value: -7).release() }
            return (e as? CurioUsageError)?.message ?? "no usage error"
        }
        #expect(m.contains("BoundedSemaphore"), "\(m)")
        #expect(m.contains("-7"), "\(m)")
    }

    @Test func badCountsAndTimeoutsOnSynchronization() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let lock = Lock(), rlock = RLock(), sem = Curio.Semaphore(value: 1), cond = Condition(), event = Event()
            var seen: [String] = []
            for timeout in [-1.0, .nan, .infinity] {
                seen.append(IOTest.kind(await IOTest.error { _ = try await lock.acquire(timeout: timeout) }))
                seen.append(IOTest.kind(await IOTest.error { _ = try await rlock.acquire(timeout: timeout) }))
                seen.append(IOTest.kind(await IOTest.error { _ = try await sem.acquire(timeout: timeout) }))
                seen.append(IOTest.kind(await IOTest.error { _ = try await cond.acquire(timeout: timeout) }))
                seen.append(IOTest.kind(await IOTest.error { _ = try await event.wait(timeout: timeout) }))
            }
            try await cond.withLock {
                seen.append(IOTest.kind(await IOTest.error { try await cond.notify(-1) }))
                seen.append(IOTest.kind(await IOTest.error { _ = try await cond.wait(timeout: -2) }))
            }
            // Nothing was taken by the rejected calls.
            seen.append("free \(!lock.locked && !rlock.locked && sem.value == 1 && !cond.locked)")
            return seen
        }
        let timeout = IOTest.kind(CurioUsageError(.invalidTimeout, ""))
        #expect(Array(r.prefix(15)) == Array(repeating: timeout, count: 15))
        #expect(Array(r.dropFirst(15)) == [IOTest.kind(CurioUsageError(.invalidArgument, "")), timeout, "free true"])
    }

    @Test func signalSetsRejectWhatCannotBeWatched() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            for set in [SignalSet(), SignalSet(0), SignalSet(SIGKILL), SignalSet(SIGSTOP), SignalSet(4096)] {
                let e = await IOTest.error { _ = try await set.wait(timeout: 0.001) }
                seen.append(IOTest.kind(e) + " " + ((e as? CurioUsageError)?.message.isEmpty == false ? "named" : "unnamed"))
            }
            return seen
        }
        #expect(r == Array(repeating: IOTest.kind(CurioUsageError(.invalidArgument, "")) + " named", count: 5))
    }

    @Test func emptyAndMissingCommands() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            [IOTest.kind(await IOTest.error { _ = try await runInProcess(command: []) }),
             IOTest.kind(await IOTest.error { _ = try await runInProcess(command: ["/nonexistent/curio-x"]) }),
             IOTest.kind(await IOTest.error { _ = try await runInProcess(command: ["curio-no-such-program-x"]) })]
        }
        #expect(r == [IOTest.kind(CurioUsageError(.invalidArgument, "")), "SocketError(errno \(ENOENT))", "SocketError(errno \(ENOENT))"])
    }
}

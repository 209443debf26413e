// Duration spellings of every timeout and sleep: each behaves as the seed's
// Double version (the same expiry, the same value when in time, the same
// error for a negative duration). Expiries use durations of milliseconds
// against work that would take an hour; no step depends on how fast the
// machine is.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct DurationTests {
    static let short = Duration.milliseconds(5)
    static let long = Duration.seconds(3600)

    @Test func sleepTakesADuration() async throws {
        let slept = try await KernelHarness.run { _ -> Double in
            let start = Curio.clock()
            try await Curio.sleep(.milliseconds(20))
            return Curio.clock() - start
        }
        #expect(slept >= 0.02)
    }

    @Test func timeoutAfterAndTimeoutAtExpireWithTaskTimeout() async throws {
        let kinds = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            do {
                try await timeoutAfter(Self.short) { try await Curio.sleep(Self.long) }
            } catch is TimeoutError { seen.append("after") }
            do {
                try await timeoutAt(CurioClock().now.advanced(by: Self.short)) { try await Curio.sleep(Self.long) }
            } catch is TimeoutError { seen.append("at") }
            seen.append("\(try await timeoutAfter(Self.long) { 7 })")
            return seen
        }
        #expect(kinds == ["after", "at", "7"])
    }

    @Test func ignoreAfterAndIgnoreAtReturnNilOnExpiry() async throws {
        let r = try await KernelHarness.run { _ -> [Int?] in
            [
                try await ignoreAfter(Self.short) { try await Curio.sleep(Self.long); return 1 },
                try await ignoreAt(CurioClock().now.advanced(by: Self.short)) { try await Curio.sleep(Self.long); return 2 },
                try await ignoreAfter(Self.long) { 3 },
            ]
        }
        #expect(r == [nil, nil, 3])
    }

    @Test func joinTimesOutThenReturnsTheValue() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            let gate = Event()
            let t = try await spawn { () async throws -> Int in
                try await gate.wait()
                return 42
            }
            var out: [String] = []
            do { _ = try await t.join(timeout: Self.short) } catch is TimeoutError { out.append("timeout") }
            await gate.set()
            out.append("\(try await t.join(timeout: Self.long) ?? -1)")
            return out
        }
        #expect(r == ["timeout", "42"])
    }

    @Test func eventResultAndConditionWaitsTimeOut() async throws {
        let r = try await KernelHarness.run { _ -> [Bool] in
            let event = Event()
            let result = CurioResult<Int>()
            let cond = Condition()
            var out = [try await event.wait(timeout: Self.short), try await result.wait(timeout: Self.short)]
            try await cond.acquire(timeout: Self.long)
            out.append(try await cond.wait(timeout: Self.short))
            out.append(try await cond.waitFor(timeout: Self.short) { false })
            out.append(try await cond.waitFor(timeout: Self.short) { true })
            try await cond.release()
            await event.set()
            out.append(try await event.wait(timeout: Self.short))
            return out
        }
        #expect(r == [false, false, false, false, true, true])
    }

    @Test func locksAndSemaphoresGiveUpAfterTheDuration() async throws {
        let r = try await KernelHarness.run { _ -> [Bool] in
            let lock = Lock(), rlock = RLock(), sema = Curio.Semaphore(value: 0)
            let held = Event(), done = Event()
            let holder = try await spawn {
                try await lock.acquire()
                try await rlock.acquire()
                await held.set()
                try await done.wait()
                try await rlock.release()
                try await lock.release()
            }
            try await held.wait()
            let out = [
                try await lock.acquire(timeout: Self.short),
                try await rlock.acquire(timeout: Self.short),
                try await sema.acquire(timeout: Self.short),
            ]
            await done.set()
            try await holder.join()
            return out + [try await lock.acquire(timeout: Self.long)]
        }
        #expect(r == [false, false, false, true])
    }

    @Test func queuesPutGetAndJoinTimeOut() async throws {
        let r = try await KernelHarness.run { _ -> [String] in
            var out: [String] = []
            let q = Queue<Int>(maxSize: 1)
            let pq = PriorityQueue<Int>(maxSize: 1)
            let lq = LifoQueue<Int>(maxSize: 1)
            out.append("\(try await q.get(timeout: Self.short) as Int?)")
            out.append("\(try await pq.get(timeout: Self.short) as Int?)")
            out.append("\(try await lq.get(timeout: Self.short) as Int?)")
            out.append("\(try await q.put(1, timeout: Self.short)),\(try await q.put(2, timeout: Self.short))")
            out.append("\(try await pq.put(1, timeout: Self.short)),\(try await pq.put(2, timeout: Self.short))")
            out.append("\(try await lq.put(1, timeout: Self.short)),\(try await lq.put(2, timeout: Self.short))")
            out.append("\(try await q.join(timeout: Self.short))")
            out.append("\(try await pq.join(timeout: Self.short))")
            out.append("\(try await lq.join(timeout: Self.short))")
            out.append("\(try await q.get(timeout: Self.long) as Int?)")
            return out
        }
        #expect(r == ["nil", "nil", "nil", "true,false", "true,false", "true,false", "false", "false", "false", "Optional(1)"])
    }

    @Test func signalWaitsTimeOut() async throws {
        // A signal no other test of this process sends (they share the process's signals).
        let r = try await KernelHarness.run { _ -> [String] in
            let set = SignalSet(SIGVTALRM)
            let event = try await SignalEvent(SIGVTALRM)
            return ["\(try await set.wait(timeout: Self.short) as Int32?)", "\(try await event.wait(timeout: Self.short))"]
        }
        #expect(r == ["nil", "false"])
    }

    @Test func universalBlockingWaitsTakeADuration() throws {
        let q = UniversalQueue<Int>()
        let e = UniversalEvent()
        #expect(try q.blockingGet(timeout: Self.short) == nil)
        #expect(try e.blockingWait(timeout: Self.short) == false)
        q.put(5)
        e.set()
        #expect(try q.blockingGet(timeout: Self.long) == 5)
        #expect(try e.blockingWait(timeout: Self.long) == true)
    }

    @Test func openConnectionTakesTheHappyEyeballsDelayAsADuration() async throws {
        let reply = try await KernelHarness.run { _ -> String in
            let listener = TCPListener()
            let server = try await spawn(daemon: true) {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    for try await line in client.lines { try await client.write(line) }
                }
            }
            let port = try await listener.wait().port
            let stream = try await openConnection(host: "localhost", port: port, happyEyeballsDelay: .milliseconds(250))
            try await stream.write("hi\n")
            let line = try await stream.readLine()
            stream.close()
            try await server.cancel()
            return String(decoding: line, as: UTF8.self)
        }
        #expect(reply == "hi\n")
    }

    @Test func aNegativeDurationIsTheSameClearError() async throws {
        let errors = try await KernelHarness.run { _ -> [CurioUsageError.Kind] in
            var kinds: [CurioUsageError.Kind] = []
            let bad = Duration.milliseconds(-1)
            do { try await Curio.sleep(bad) } catch let e as CurioUsageError { kinds.append(e.kind) }
            do { _ = try await timeoutAfter(bad) { 1 } } catch let e as CurioUsageError { kinds.append(e.kind) }
            do { _ = try await Event().wait(timeout: bad) } catch let e as CurioUsageError { kinds.append(e.kind) }
            return kinds
        }
        #expect(errors == [.invalidTimeout, .invalidTimeout, .invalidTimeout])
    }
}

// SwiftNIO's event loop: one MultiThreadedEventLoopGroup thread, driven by
// closures, promises and futures (not Swift tasks). This is what NIO
// programs do, and the bar the issue calls the moonshot.
//
// A "task" here is a chain of closures; a "switch" is one closure submitted
// with `execute` and run by a later turn of the loop; a "wake-up" is a
// promise fulfilled from such a closure, which runs the waiting callback.
// Every measurement starts and stops on the loop thread, so the main
// thread's wake-up at the end is not timed.
//
// State objects are `@unchecked Sendable`: they are created before the loop
// sees them and afterwards touched only on the loop thread.

import NIOCore
import NIOPosix

enum NIOWorkloads {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    static var loop: any EventLoop { group.next() }

    static func runner(_ w: Workload) -> Runner? {
        switch w {
        case .taskSwitch: return taskSwitch
        case .spawnJoin: return spawnJoin
        case .queuePingPong: return queuePingPong
        case .eventPingPong: return eventPingPong
        case .lockHandoff: return nil   // no async lock on an event loop: n/a
        case .sleepers: return sleepers
        case .workerRoundTrip, .threadQueue: return nil  // task bridges: no event-loop equivalent
        }
    }

    /// `tasks` chains of `yields` hops each, all interleaved on the loop.
    static func taskSwitch(_ s: Sizes) throws -> Sample {
        let el = loop
        let st = Chains(el: el, running: s.switchTasks)
        el.execute {
            st.start = now()
            for _ in 0..<s.switchTasks { hop(st, s.switchYields) }
        }
        try st.done.futureResult.wait()
        return .throughput(ops: s.switchTasks * s.switchYields, seconds: st.end - st.start)
    }

    /// `submit { 1 }` and continue in its future's callback, one after the other.
    static func spawnJoin(_ s: Sizes) throws -> Sample {
        let el = loop
        let st = Counted(el: el, n: s.spawns)
        el.execute {
            st.start = now()
            spawnStep(st)
        }
        try st.done.futureResult.wait()
        try check(st.sum == s.spawns, "NIO spawn summed \(st.sum), expected \(s.spawns)")
        return .throughput(ops: s.spawns, seconds: st.end - st.start)
    }

    /// Ping hands a value to pong through a promise fulfilled on a later loop
    /// turn, pong hands it back the same way: two hops per round trip.
    static func queuePingPong(_ s: Sizes) throws -> Sample {
        let el = loop
        let st = Counted(el: el, n: s.queueRoundTrips)
        el.execute {
            st.start = now()
            ping(st, 0)
        }
        try st.done.futureResult.wait()
        try check(st.sum == s.queueRoundTrips, "NIO queue ended at \(st.sum), expected \(s.queueRoundTrips)")
        return .throughput(ops: s.queueRoundTrips, seconds: st.end - st.start)
    }

    /// Two parties alternately wake each other by fulfilling a promise from a
    /// later loop turn: one handoff each.
    static func eventPingPong(_ s: Sizes) throws -> Sample {
        let el = loop
        let st = Counted(el: el, n: s.eventHandoffs)
        el.execute {
            st.start = now()
            handoff(st)
        }
        try st.done.futureResult.wait()
        return .throughput(ops: s.eventHandoffs, seconds: st.end - st.start)
    }

    /// `sleepers` timers of one second scheduled with `scheduleTask(in:)`.
    static func sleepers(_ s: Sizes) throws -> Sample {
        let el = loop
        let st = Counted(el: el, n: s.sleepers)
        let scheduled = el.makePromise(of: Void.self)
        let delay = TimeAmount.nanoseconds(Int64(s.sleepSeconds * 1e9))
        let base = MemoryMark.baseline()
        el.execute {
            st.start = now()
            for _ in 0..<st.n {
                _ = el.scheduleTask(in: delay) {
                    st.sum += 1
                    if st.sum == st.n { st.finish() }
                }
            }
            scheduled.succeed()
        }
        try scheduled.futureResult.wait()
        let peak = MemoryMark.current()
        try st.done.futureResult.wait()
        return sleeperSample(start: st.start, end: st.end, ideal: s.sleepSeconds, base: base, peak: peak, tasks: st.n)
    }
}

// MARK: - The chains

final class Chains: @unchecked Sendable {
    let el: any EventLoop
    let done: EventLoopPromise<Void>
    var running: Int
    var start = 0.0, end = 0.0

    init(el: any EventLoop, running: Int) {
        self.el = el
        self.running = running
        done = el.makePromise()
    }
}

private func hop(_ st: Chains, _ left: Int) {
    if left == 0 {
        st.running -= 1
        if st.running == 0 {
            st.end = now()
            st.done.succeed()
        }
        return
    }
    st.el.execute { hop(st, left - 1) }
}

final class Counted: @unchecked Sendable {
    let el: any EventLoop
    let n: Int
    let done: EventLoopPromise<Void>
    var sum = 0
    var start = 0.0, end = 0.0

    init(el: any EventLoop, n: Int) {
        self.el = el
        self.n = n
        done = el.makePromise()
    }

    func finish() {
        end = now()
        done.succeed()
    }
}

private func spawnStep(_ st: Counted) {
    st.el.submit { 1 }.whenSuccess { v in
        st.sum += v
        if st.sum == st.n { st.finish() } else { spawnStep(st) }
    }
}

private func ping(_ st: Counted, _ value: Int) {
    let toPong = st.el.makePromise(of: Int.self)
    toPong.futureResult.whenSuccess { x in pong(st, x) }
    st.el.execute { toPong.succeed(value) }
}

private func pong(_ st: Counted, _ value: Int) {
    let toPing = st.el.makePromise(of: Int.self)
    toPing.futureResult.whenSuccess { x in
        st.sum += 1
        if st.sum == st.n { st.finish() } else { ping(st, x + 1) }
    }
    st.el.execute { toPing.succeed(value) }
}

private func handoff(_ st: Counted) {
    let wake = st.el.makePromise(of: Void.self)
    wake.futureResult.whenSuccess {
        st.sum += 1
        if st.sum == st.n { st.finish() } else { handoff(st) }
    }
    st.el.execute { wake.succeed() }
}

import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's clock (CLOCK_MONOTONIC, the clock of ``clock()`` and of
/// every Curio deadline) as a Swift `Clock`, so code written against
/// `any Clock<Duration>` runs on Curio's timers.
///
/// ```swift
/// func retry(on clock: any Clock<Duration>) async throws {
///     try await clock.sleep(for: .milliseconds(100))
/// }
/// try await retry(on: CurioClock())
/// ```
///
/// Inside a Curio task, ``sleep(until:tolerance:)`` is a Curio sleep: the
/// monitor shows the task in `TIME_SLEEP`, and a Curio cancellation or an
/// enclosing ``timeoutAfter(_:_:)-(Double,_)`` interrupts it. Anywhere else
/// (a plain Swift task on another executor) it sleeps on Swift's own
/// `SuspendingClock`, which reads the same monotonic clock on Linux, and
/// Swift cancellation interrupts it.
///
/// Durations given to this clock are not scaled by `CURIO_TIME_SCALE`:
/// a clock's instants are absolute.
public struct CurioClock: Clock, Sendable {
    /// A point on the kernel's monotonic clock, in nanoseconds.
    public struct Instant: InstantProtocol, Sendable, Hashable, CustomStringConvertible {
        /// Nanoseconds since the monotonic clock's origin (boot, on Linux).
        public let nanoseconds: Int64

        /// The instant `nanoseconds` after the clock's origin.
        public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

        /// The instant at `seconds` on ``clock()``.
        public init(clockSeconds seconds: Double) {
            self.nanoseconds = Int64((seconds * 1e9).rounded())
        }

        /// This instant in seconds, as ``clock()`` reads it.
        public var clockSeconds: Double { Double(nanoseconds) / 1e9 }

        /// The instant `duration` later (earlier for a negative one).
        public func advanced(by duration: Duration) -> Instant {
            Instant(nanoseconds: nanoseconds &+ duration.curioNanoseconds)
        }

        /// The time from this instant to `other`.
        public func duration(to other: Instant) -> Duration {
            .nanoseconds(other.nanoseconds &- nanoseconds)
        }

        /// Whether `lhs` comes before `rhs`.
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

        /// The instant in seconds, like ``clock()``: `"1234.500000000 s"`.
        public var description: String {
            let s = nanoseconds / 1_000_000_000, ns = abs(nanoseconds % 1_000_000_000)
            let frac = String(ns)
            return "\(s).\(String(repeating: "0", count: 9 - frac.count))\(frac) s"
        }
    }

    /// Creates the clock; every `CurioClock` reads the same time.
    public init() {}

    /// Now, on the kernel's clock.
    public var now: Instant { Instant(nanoseconds: ck_clock_now()) }

    /// The resolution CLOCK_MONOTONIC reports (a nanosecond on Linux).
    /// Curio's timers themselves fire no earlier than their deadline.
    public var minimumResolution: Duration {
        var res = timespec()
        guard clock_getres(CLOCK_MONOTONIC, &res) == 0 else { return .nanoseconds(1) }
        return .seconds(Int64(res.tv_sec)) + .nanoseconds(Int64(res.tv_nsec))
    }

    /// Suspends until `deadline`: on the kernel's timer when called from a
    /// Curio task, on Swift's clock elsewhere (see the type's discussion).
    /// A deadline in the past returns at once (after a Curio yield, inside
    /// a task). `tolerance` is accepted for `Clock` and not used: Curio's
    /// timers are exact to the loop's turn.
    ///
    /// Throws a ``CancelledError`` when the Curio task is cancelled or its
    /// timeout expires, and `CancellationError` when a Swift task elsewhere
    /// is cancelled.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await sleep(until: deadline, site: CallSite(file: #filePath, line: #line, function: #function))
    }

    private func sleep(until deadline: Instant, site: CallSite) async throws {
        // On a kernel thread, the calling task's Curio identity (a Swift
        // task the kernel does not know keeps Swift's sleep).
        if Kernel.current != nil, let t = try? Kernel.currentTask("CurioClock.sleep(until:)") {
            if deadline.nanoseconds <= t.kernel.now {
                try await t.kernel.yieldNow(t, site: site)
                return
            }
            _ = try await t.kernel.block(t, .timeSleep, on: nil, deadline: deadline.nanoseconds, site: site)
            return
        }
        let left = now.duration(to: deadline)
        if left > .zero {
            try await Task.sleep(for: left, clock: SuspendingClock())
        } else {
            try Task.checkCancellation()
        }
    }
}

extension Clock where Self == CurioClock {
    /// The kernel's clock: `try await someAPI(clock: .curio)`.
    public static var curio: CurioClock { CurioClock() }
}

extension Duration {
    /// This duration in whole nanoseconds, saturating at about ±292 years.
    var curioNanoseconds: Int64 {
        let c = components
        let (ns, overflow) = c.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return c.seconds < 0 ? Int64.min / 2 : Int64.max / 2 }
        return ns &+ c.attoseconds / 1_000_000_000
    }
}

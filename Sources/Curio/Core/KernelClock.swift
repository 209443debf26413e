import CCurioKernel

// The kernel's clock. Every deadline a task sets (sleeps, timeouts, waits
// with a timeout) and every "is it due" check reads `now`, so a kernel
// created with `clock: .virtual` moves all of them together; the jump to
// the next deadline on an idle loop is in the C kernel's poll (clock.c,
// kernel.c). Monitor timings, metrics and spins stay on real time.

extension Kernel {
    /// Now on this kernel's clock, in nanoseconds (CLOCK_MONOTONIC, or the
    /// virtual clock's reading).
    @inline(__always)
    var now: Int64 { ck_kernel_now(ck) }

    /// Moves this kernel's virtual clock forward by `duration`; the timers
    /// due by then fire on the loop's next turn (after the calling task's
    /// next suspension: `try await Curio.sleep(0)` lets them run first).
    ///
    /// ```swift
    /// var configuration = Kernel.Configuration.builtIn
    /// configuration.clock = .virtual(autojump: nil)
    /// try Kernel(configuration: configuration).run {
    ///     let sleeper = try await spawn { try await Curio.sleep(60) }
    ///     try Kernel.current!.advanceClock(by: .seconds(60))
    ///     try await sleeper.join()        // no real minute passes
    /// }
    /// ```
    ///
    /// Throws ``CurioUsageError`` on a kernel with a real clock, for a
    /// negative duration, and off the kernel's thread.
    public func advanceClock(by duration: Duration) throws {
        guard clockIsVirtual else {
            throw CurioUsageError(.invalidArgument, "advanceClock(by:) needs a kernel created with clock: .virtual; this one runs on CLOCK_MONOTONIC")
        }
        guard duration >= .zero else {
            throw CurioUsageError(.invalidArgument, "advanceClock(by:) cannot move the clock back (got \(duration))")
        }
        guard ck_current() == ck else {
            throw CurioUsageError(.wrongKernel, "advanceClock(by:) must be called on the kernel's own thread (from one of its tasks)")
        }
        _ = ck_clock_advance(ck, duration.curioNanoseconds)
    }

    /// Sets up the clock `configuration` asks for, at creation.
    func startClock(_ source: Configuration.ClockSource) {
        guard case .virtual(let autojump) = source else { return }
        // Start where the real clock is: deadlines computed by code that
        // mixes in `Curio.clock()` readings keep their usual magnitude.
        ck_clock_set_virtual(ck, ck_now_ns(), autojump.map(\.curioNanoseconds) ?? -1)
    }

    /// Before the loop waits: a task waiting for a worker thread (or any
    /// answer from outside the loop) holds a virtual clock, so that its
    /// answer is not overtaken by a jump to the next deadline (held, the
    /// clock jumps only after that much real time, see ck_clock_hold).
    @inline(__always)
    func holdClockForOutsideWaits() {
        ck_clock_hold(ck, externalWaits > 0)
    }
}

import CCurioKernel

/// Runs `body` with cancellation held back: cancellations and timeouts that
/// arrive meanwhile wait for the first blocking call after the block.
/// Blocks nest.
///
/// ```swift
/// try await disableCancellation {
///     try await saveWork()   // not interrupted half-way
/// }
/// ```
public func disableCancellation<T>(_ body: () async throws -> T) async throws -> T {
    let t = try Kernel.currentTask()
    return try await t.kernel.holdingCancellation(t, body)
}

/// Throws the cancellation (or timeout) pending for the calling task, if
/// any and if cancellation is enabled; otherwise returns.
public func checkCancellation() async throws {
    let t = try Kernel.currentTask()
    try t.kernel.checkDeliverable(t)
}

/// The cancellation waiting for the calling task, without delivering it:
/// inside ``disableCancellation(_:)`` this tells a task that it should stop.
/// A timeout deadline that has passed counts (a ``TaskTimeout``), as in
/// curio 1.6, since the next blocking call would deliver it — unless the
/// task has been cancelled, which drops its deadlines.
public func pendingCancellation() async throws -> (any Error)? {
    let t = try Kernel.currentTask()
    if let e = t.pendingCancel { return e }
    return t.taskDeadlineDueNow().map { TaskTimeout(firedAt: $0) }
}

/// Swift's own cancellation error counts as a Curio cancellation, so
/// `catch is CancelledError` also catches what `Task.checkCancellation()`
/// throws inside a cancelled Curio task.
extension CancellationError: CancelledError {}

/// A one-shot value or error, set from any thread or executor and awaited
/// from any (curio 1.6's `UniversalResult`).
///
/// ```swift
/// let answer = UniversalResult<Int>()
/// // a plain thread, a Curio task of any kernel, any Swift task:
/// try answer.set(42)                       // or try answer.setError(error)
/// // a Curio task or any Swift task:
/// let n = try await answer.get()           // waits; the value, or throws the error
/// let m = try await answer.get(timeout: 1) // throws TaskTimeout after 1 s
/// // a plain thread:
/// let k = try answer.blockingGet(timeout: 1)
/// ```
///
/// Setting it a second time throws ``CurioUsageError``. Any number of
/// waiters may wait; setting it wakes them all. A timed-out wait throws
/// ``TaskTimeout`` (the result stays unset and can still be set); in a
/// Swift task, Swift cancellation ends the wait with `CancellationError`,
/// in a Curio task a cancellation is delivered as usual.
public final class UniversalResult<T: Sendable>: Sendable {
    private let event = UniversalEvent()
    private let outcome = Locked<Result<T, any Error>?>(nil)

    /// Creates an unset result.
    public init() {}

    /// True once a value or an error has been set.
    public var isSet: Bool { outcome.withLock { $0 != nil } }

    /// Sets the value and wakes every waiter; never blocks. Throws
    /// ``CurioUsageError`` when already set.
    public func set(_ value: T) throws {
        try settle(.success(value))
    }

    /// Sets an error, which the waiters throw; never blocks. Throws
    /// ``CurioUsageError`` when already set.
    public func setError(_ error: any Error) throws {
        try settle(.failure(error))
    }

    private func settle(_ r: Result<T, any Error>) throws {
        let first = outcome.withLock { o -> Bool in
            guard o == nil else { return false }
            o = r
            return true
        }
        guard first else {
            throw CurioUsageError(.invalidArgument, "UniversalResult: the result was already set; it is set once")
        }
        event.set()
    }

    private func current() throws -> T? {
        guard let r = outcome.withLock({ $0 }) else { return nil }
        return try r.get()
    }

    /// Waits until set → the value (or throws the error). From a Curio task
    /// of any kernel or any Swift task.
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        if let v = try current() { return v }
        try await event.wait(file: file, line: line, function: function)
        return try current()!
    }

    /// Waits at most `timeout` seconds; throws ``TaskTimeout`` when the
    /// time runs out first.
    public func get(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        if let v = try current() { return v }
        guard try await event.wait(timeout: timeout, file: file, line: line, function: function) else {
            throw TaskTimeout(clock: clock())
        }
        return try current()!
    }

    /// ``get(timeout:file:line:function:)`` with a `Duration`.
    public func get(timeout: Duration, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        try await get(timeout: seconds(timeout), file: file, line: line, function: function)
    }

    /// Blocks the calling thread until set (at most `timeout` seconds:
    /// then ``TaskTimeout``). Kernel threads get ``CurioUsageError``.
    public func blockingGet(timeout: Double? = nil) throws -> T {
        if let v = try current() { return v }
        guard try event.blockingWait(timeout: timeout) else { throw TaskTimeout(clock: clock()) }
        return try current()!
    }
}

import Synchronization

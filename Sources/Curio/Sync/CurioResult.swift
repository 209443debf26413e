/// A value or an error delivered once, that tasks wait for (curio's
/// `Result`).
///
/// ```swift
/// let answer = CurioResult<Int>()
/// try await spawn {
///     do { try await answer.set(try await compute()) }
///     catch { try await answer.setError(error) }
/// }
/// let n = try await answer.unwrap()    // waits; returns the value or throws the error
/// ```
///
/// Any number of tasks may wait; setting wakes them all, in the order they
/// came. Setting it a second time throws ``CurioUsageError``.
public final class CurioResult<T>: @unchecked Sendable {
    private var outcome: Result<T, any Error>?
    private let waiters = WaitQueue()
    private var affinity = Affinity()

    /// Creates an unset result.
    public init() {}

    /// True once a value or an error has been set.
    public var isSet: Bool { outcome != nil }

    /// Sets the value and wakes every waiting task. Never blocks.
    ///
    /// Throws ``CurioUsageError`` (`.invalidArgument`) if the result was set
    /// already.
    public func set(_ value: T) async throws {
        try settle(.success(value), "CurioResult.set")
    }

    /// Sets an error, which ``unwrap(file:line:function:)`` throws, and
    /// wakes every waiting task. Never blocks.
    ///
    /// Throws ``CurioUsageError`` (`.invalidArgument`) if the result was set
    /// already.
    public func setError(_ error: any Error) async throws {
        try settle(.failure(error), "CurioResult.setError")
    }

    /// Waits until the result is set, then returns its value or throws its
    /// error. Returns at once, without switching tasks, if it is set.
    public func unwrap(file: StaticString = #filePath, line: UInt = #line,
                       function: StaticString = #function) async throws -> T {
        let t = try affinity.task("CurioResult.unwrap")
        if outcome == nil {
            _ = try await t.kernel.block(t, .eventWait, on: waiters, deadline: .max,
                                         site: CallSite(file: file, line: line, function: function))
        }
        return try outcome!.get()
    }

    /// Waits until the result is set without taking it. Returns true, or
    /// false when `timeout` seconds pass first (as in `threading`).
    ///
    /// ```swift
    /// if try await result.wait(timeout: 1) { print(try await result.unwrap()) }
    /// ```
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task("CurioResult.wait")
        let deadline = try syncDeadline(timeout)
        if outcome != nil { return true }
        let r = try await t.kernel.block(t, .eventWait, on: waiters, deadline: deadline,
                                         site: CallSite(file: file, line: line, function: function))
        return r != .timedOut
    }

    private func settle(_ result: Result<T, any Error>, _ what: StaticString) throws {
        let t = try affinity.task(what)
        guard outcome == nil else {
            throw CurioUsageError(.invalidArgument, "\(what): the result was already set; a CurioResult is set once")
        }
        outcome = result
        t.kernel.wakeAll(waiters)
    }
}

// `Duration` spellings of every timeout and sleep. Each one converts and
// calls the seed's `Double` (seconds) version, so both behave alike: the
// same errors for negative values, the same CURIO_TIME_SCALE, the same
// monitor location (the caller's file, line and function are passed on).
#if canImport(Glibc)
import Glibc
#endif

extension Duration {
    /// This duration in seconds, as the `Double` APIs take it.
    var curioSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}

/// Suspends the calling task for `duration` (``sleep(_:file:line:function:)``
/// with a `Duration`): `try await Curio.sleep(.milliseconds(50))`.
public func sleep(_ duration: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws {
    try await sleep(duration.curioSeconds, file: file, line: line, function: function)
}

/// ``timeoutAfter(_:_:)`` with a `Duration`:
/// `try await timeoutAfter(.milliseconds(50)) { try await fetch() }`.
public func timeoutAfter<T>(_ duration: Duration, _ body: () async throws -> T) async throws -> T {
    try await timeoutAfter(duration.curioSeconds, body)
}

/// ``ignoreAfter(_:_:)`` with a `Duration`: `nil` when `duration` passes first.
public func ignoreAfter<T>(_ duration: Duration, _ body: () async throws -> T) async throws -> T? {
    try await ignoreAfter(duration.curioSeconds, body)
}

/// ``timeoutAt(_:_:)`` with a deadline on ``CurioClock``.
public func timeoutAt<T>(_ deadline: CurioClock.Instant, _ body: () async throws -> T) async throws -> T {
    try await timeoutAt(deadline.clockSeconds, body)
}

/// ``ignoreAt(_:_:)`` with a deadline on ``CurioClock``: `nil` when it passes first.
public func ignoreAt<T>(_ deadline: CurioClock.Instant, _ body: () async throws -> T) async throws -> T? {
    try await ignoreAt(deadline.clockSeconds, body)
}

/// ``openConnection(host:port:happyEyeballsDelay:file:line:function:)`` with
/// the happy-eyeballs delay as a `Duration`.
public func openConnection(host: String, port: Int, happyEyeballsDelay: Duration,
                           file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> SocketStream {
    try await openConnection(host: host, port: port, happyEyeballsDelay: happyEyeballsDelay.curioSeconds,
                             file: file, line: line, function: function)
}

extension CurioTask {
    /// Like ``join(timeout:file:line:function:)`` with a `Duration`: `try await task.join(timeout: .seconds(1))`.
    @discardableResult
    public func join(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> T? {
        try await join(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension Event {
    /// Like ``Event/wait(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `event.wait(timeout: .seconds(1))`.
    @discardableResult
    public func wait(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await wait(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension CurioResult {
    /// Like ``CurioResult/wait(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `result.wait(timeout: .seconds(1))`.
    @discardableResult
    public func wait(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await wait(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension Lock {
    /// Like ``Lock/acquire(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `lock.acquire(timeout: .milliseconds(50))`.
    @discardableResult
    public func acquire(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await acquire(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension RLock {
    /// Like ``RLock/acquire(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `lock.acquire(timeout: .milliseconds(50))`.
    @discardableResult
    public func acquire(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await acquire(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension Semaphore {
    /// Like ``Semaphore/acquire(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `sema.acquire(timeout: .milliseconds(50))`.
    @discardableResult
    public func acquire(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await acquire(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension Condition {
    /// Like ``Condition/acquire(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `cond.acquire(timeout: .milliseconds(50))`.
    @discardableResult
    public func acquire(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await acquire(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``Condition/wait(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `cond.wait(timeout: .seconds(1))`.
    @discardableResult
    public func wait(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await wait(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``waitFor(timeout:file:line:function:_:)`` with a `Duration`.
    @discardableResult
    public func waitFor(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function,
                        _ predicate: () throws -> Bool) async throws -> Bool {
        try await waitFor(timeout: timeout.curioSeconds, file: file, line: line, function: function, predicate)
    }
}

extension Queue {
    /// Like ``Queue/put(_:timeout:file:line:function:)-(_,Double,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func put(_ item: T, timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await put(item, timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``Queue/get(timeout:file:line:function:)-(Double,_,_,_)`` with a `Duration`; `nil` when the time passes first.
    @discardableResult
    public func get(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> T? {
        try await get(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``Queue/join(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func join(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await join(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension PriorityQueue {
    /// Like ``PriorityQueue/put(_:timeout:file:line:function:)-(_,Double,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func put(_ item: T, timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await put(item, timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``PriorityQueue/get(timeout:file:line:function:)-(Double,_,_,_)`` with a `Duration`; `nil` when the time passes first.
    @discardableResult
    public func get(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> T? {
        try await get(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``PriorityQueue/join(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func join(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await join(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension LifoQueue {
    /// Like ``LifoQueue/put(_:timeout:file:line:function:)-(_,Double,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func put(_ item: T, timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await put(item, timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``LifoQueue/get(timeout:file:line:function:)-(Double,_,_,_)`` with a `Duration`; `nil` when the time passes first.
    @discardableResult
    public func get(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> T? {
        try await get(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }

    /// Like ``LifoQueue/join(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`; `false` when the time passes first.
    @discardableResult
    public func join(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await join(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension SignalSet {
    /// Like ``SignalSet/wait(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `signals.wait(timeout: .seconds(1))`.
    @discardableResult
    public func wait(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Int32? {
        try await wait(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension SignalEvent {
    /// Like ``SignalEvent/wait(timeout:file:line:function:)-(Double?,_,_,_)`` with a `Duration`: `event.wait(timeout: .seconds(1))`.
    @discardableResult
    public func wait(timeout: Duration, file: StaticString = #filePath, line: UInt = #line, function: StaticString = #function) async throws -> Bool {
        try await wait(timeout: timeout.curioSeconds, file: file, line: line, function: function)
    }
}

extension UniversalQueue {
    /// Like ``blockingGet(timeout:)`` with a `Duration`, for plain threads; `nil` when the time passes first.
    public func blockingGet(timeout: Duration) throws -> T? {
        try blockingGet(timeout: timeout.curioSeconds)
    }
}

extension UniversalEvent {
    /// Like ``blockingWait(timeout:)`` with a `Duration`, for plain threads; `false` when the time passes first.
    @discardableResult
    public func blockingWait(timeout: Duration) throws -> Bool {
        try blockingWait(timeout: timeout.curioSeconds)
    }
}

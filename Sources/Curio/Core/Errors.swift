/// Every error that means "this task is being cancelled".
///
/// `catch is CancelledError` catches an explicit ``AnyCurioTask/cancel(blocking:file:line:function:)``
/// as well as every timeout delivered by ``timeoutAfter(_:_:)-(Double,_)`` and friends:
///
/// ```swift
/// do {
///     try await Curio.sleep(1000)
/// } catch is CancelledError {
///     print("Fine. Saving my work.")
/// }
/// ```
public protocol CancelledError: Error {}

/// Every error that means "a deadline passed".
///
/// `catch is TimeoutError` catches ``TaskTimeout`` (a task's own deadline)
/// and ``UncaughtTimeoutError``.
public protocol TimeoutError: Error {}

/// Delivered at a blocking call when another task cancels this one.
public struct TaskCancelled: CancelledError, CustomStringConvertible {
    /// Bytes a stream read had received when this interrupted it (they
    /// stay buffered for the next read), or nil.
    public var bytesRead: Int?
    /// Bytes a `sendAll` / stream write had sent when this interrupted it.
    public var bytesSent: Int?
    /// Creates the cancellation that `cancel()` delivers.
    public init() {}
    public var description: String { "TaskCancelled" + progressDescription(bytesRead, bytesSent) }
}

/// Delivered at a blocking call when the deadline of the innermost
/// enclosing ``timeoutAfter(_:_:)-(Double,_)`` block passes, and thrown by
/// ``CurioTask/join(timeout:file:line:function:)-(Double?,_,_,_)`` when the task has not ended in time.
public struct TaskTimeout: CancelledError, TimeoutError, CustomStringConvertible {
    /// The kernel clock (``clock()``) when the timeout fired.
    public var clock: Double { fired.seconds }
    /// Partial progress of the interrupted read or write, as on ``TaskCancelled``.
    public var bytesRead: Int?
    /// Bytes an interrupted `sendAll` had sent when the timeout struck (0 for other calls).
    public var bytesSent: Int?
    /// A timeout that fired at `clock` (seconds on ``clock()``).
    public init(clock: Double) { fired = FiringTime(seconds: clock) }
    init(firedAt: Int64) { fired = FiringTime(nanoseconds: firedAt) }
    let fired: FiringTime
    public var description: String { "TaskTimeout(clock: \(clock))" + progressDescription(bytesRead, bytesSent) }
}

/// Seen inside a timeout block when the deadline that passed belongs to an
/// enclosing block: the inner block did not time out, it is being unwound.
public struct TimeoutCancellationError: CancelledError, CustomStringConvertible {
    /// When the outer deadline fired, in seconds on ``clock()``.
    public var clock: Double { fired.seconds }
    /// Partial progress of the interrupted read or write, as on ``TaskCancelled``.
    public var bytesRead: Int?
    /// Bytes an interrupted `sendAll` had sent when the deadline struck (0 for other calls).
    public var bytesSent: Int?
    /// An outer deadline that fired at `clock` (seconds on ``clock()``).
    public init(clock: Double) { fired = FiringTime(seconds: clock) }
    init(firedAt: Int64) { fired = FiringTime(nanoseconds: firedAt) }
    let fired: FiringTime
    public var description: String { "TimeoutCancellationError(clock: \(clock))" + progressDescription(bytesRead, bytesSent) }
}

/// When a timeout fired, in both units: the seconds its public `clock`
/// shows, and the exact kernel-clock nanoseconds a timeout block compares
/// with its deadline to tell whose timeout it is. Both are kept because a
/// round trip through `Double` seconds can land a nanosecond early; with a
/// virtual clock, which fires exactly at a deadline, that nanosecond once
/// decided whether a block owned its own timeout, depending on the clock's
/// value.
struct FiringTime: Sendable {
    let seconds: Double
    let nanoseconds: Int64

    init(nanoseconds: Int64) {
        self.seconds = Double(nanoseconds) / 1e9
        self.nanoseconds = nanoseconds
    }

    init(seconds: Double) {
        self.seconds = seconds
        let ns = (seconds * 1e9).rounded()
        // Saturating, and total: a made-up timeout with a NaN clock counts
        // as long ago (it owns no block's deadline) instead of trapping.
        self.nanoseconds = ns >= 9.2e18 ? .max : (ns > -9.2e18 ? Int64(ns) : .min)
    }
}

func progressDescription(_ read: Int?, _ sent: Int?) -> String {
    var parts: [String] = []
    if let read { parts.append("bytesRead: \(read)") }
    if let sent { parts.append("bytesSent: \(sent)") }
    return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
}

/// `error` with the partial progress of an interrupted read or write
/// recorded on it, when it is one of Curio's cancellations. `package`: the
/// TLS and HTTP layers record their progress the same way.
package func withProgress(_ error: any Error, bytesRead: Int? = nil, bytesSent: Int? = nil) -> any Error {
    switch error {
    case var e as TaskCancelled:
        e.bytesRead = bytesRead ?? e.bytesRead
        e.bytesSent = bytesSent ?? e.bytesSent
        return e
    case var e as TaskTimeout:
        e.bytesRead = bytesRead ?? e.bytesRead
        e.bytesSent = bytesSent ?? e.bytesSent
        return e
    case var e as TimeoutCancellationError:
        e.bytesRead = bytesRead ?? e.bytesRead
        e.bytesSent = bytesSent ?? e.bytesSent
        return e
    case var e as UncaughtTimeoutError:
        e.bytesRead = bytesRead ?? e.bytesRead
        e.bytesSent = bytesSent ?? e.bytesSent
        return e
    default:
        return error
    }
}

/// A timeout reached a block whose own deadline has not passed and that
/// has no enclosing block it could belong to: somebody let a timeout escape.
public struct UncaughtTimeoutError: TimeoutError, CustomStringConvertible {
    /// When the stray timeout fired, in seconds on ``clock()``.
    public var clock: Double { fired.seconds }
    /// Bytes of the interrupted read that were received, as on ``TaskCancelled``.
    public var bytesRead: Int?
    /// Bytes of the interrupted write that went out, as on ``TaskCancelled``.
    public var bytesSent: Int?
    /// A timeout that fired at `clock` and reached a block whose own deadline had not passed.
    public init(clock: Double) { fired = FiringTime(seconds: clock) }
    init(firedAt: Int64) { fired = FiringTime(nanoseconds: firedAt) }
    let fired: FiringTime
    public var description: String {
        "UncaughtTimeoutError(clock: \(clock)): a timeout escaped from the block that owned it" + progressDescription(bytesRead, bytesSent)
    }
}

/// The partial progress (`bytesRead`, `bytesSent`) recorded on `error`, if
/// it is one of Curio's cancellations or timeouts.
func progress(of error: any Error) -> (read: Int?, sent: Int?) {
    switch error {
    case let e as TaskCancelled: return (e.bytesRead, e.bytesSent)
    case let e as TaskTimeout: return (e.bytesRead, e.bytesSent)
    case let e as TimeoutCancellationError: return (e.bytesRead, e.bytesSent)
    case let e as UncaughtTimeoutError: return (e.bytesRead, e.bytesSent)
    default: return (nil, nil)
    }
}

/// `replacement` with the partial progress of `original` carried over: an
/// error that replaces another on the way out of a timeout block keeps the
/// count, so a caller can always tell how much of a stream went through.
func carryProgress<E: Error>(of original: any Error, to replacement: E) -> any Error {
    let (read, sent) = progress(of: original)
    if read == nil && sent == nil { return replacement }
    return withProgress(replacement, bytesRead: read, bytesSent: sent)
}

/// Thrown by ``CurioTask/join(timeout:file:line:function:)-(Double?,_,_,_)`` when the task ended by throwing.
public struct TaskError: Error, CustomStringConvertible {
    /// What the task threw.
    public let cause: any Error
    /// The id and name of the task that failed.
    public let taskID: Int
    /// The failed task's name (as the monitor shows it).
    public let taskName: String
    public var description: String { "TaskError(task \(taskID) '\(taskName)' failed: \(cause))" }
}

/// Two tasks tried to use one resource at the same time (for example, two
/// tasks reading the same socket).
public struct ResourceBusy: Error, CustomStringConvertible {
    /// What was busy, and who holds it.
    public let message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    public var description: String { "ResourceBusy: \(message)" }
}

/// A Curio API was used the wrong way. The message names the mistake.
public struct CurioUsageError: Error, CustomStringConvertible, Equatable {
    /// The kinds of misuse, for code that handles one of them.
    public enum Kind: Sendable, Equatable {
        /// A blocking call made outside a task of a running kernel.
        case notInKernel
        /// A task of one kernel used an object bound to another kernel.
        case wrongKernel
        /// `run()` on a kernel that is already running.
        case alreadyRunning
        /// `run()` after `shutdown()`.
        case shutDown
        /// Another kernel already runs on this thread.
        case threadBusy
        /// A timeout or duration that is negative, NaN or infinite.
        case invalidTimeout
        /// `release()` of a lock the caller does not hold, or a bounded
        /// semaphore released above its initial value.
        case invalidRelease
        /// Any other misuse.
        case invalidArgument
    }
    /// Which misuse this is.
    public let kind: Kind
    /// A sentence naming the mistake and what to do instead.
    public let message: String
    /// An error of `kind` explained by `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { "CurioUsageError.\(kind): \(message)" }
    public static func == (a: CurioUsageError, b: CurioUsageError) -> Bool { a.kind == b.kind }
}

/// The kernel's C core failed (for example it could not create its
/// io_uring or epoll instance).
public struct KernelError: Error, CustomStringConvertible {
    /// The system's error number.
    public let errno: Int32
    /// What the kernel was doing when it failed.
    public let operation: String
    public var description: String { "KernelError: \(operation) failed: \(String(cString: strerror(errno)))" }
}

#if canImport(Glibc)
import Glibc
#endif

/// What a task is doing, with the names the seed's monitor shows.
public enum TaskState: UInt8, Sendable, CustomStringConvertible {
    /// Waiting to run (`READY`), running now (`RUNNING`), or ended (`TERMINATED`).
    case ready, running, terminated
    /// Blocked in a sleep, a join, an event, a lock, a semaphore or a condition (`TIME_SLEEP`, `TASK_JOIN`, `EVENT_WAIT`, `LOCK_ACQUIRE`, `SEMA_ACQUIRE`, `COND_WAIT`).
    case timeSleep, taskJoin, eventWait, lockAcquire, semaAcquire, condWait
    /// Blocked on a queue, a socket or file, a signal or a worker thread (`QUEUE_GET`, `QUEUE_PUT`, `READ_WAIT`, `WRITE_WAIT`, `IO_WAIT`, `SIGNAL_WAIT`, `CPU_WAIT`).
    case queueGet, queuePut, readWait, writeWait, ioWait, signalWait, cpuWait
    /// Waiting for a ``CurioResult`` (`FUTURE_WAIT`).
    case futureWait
    /// Suspended in a Swift-native await (`Task.sleep`, another actor, a
    /// continuation of its own): waiting on something outside Curio.
    case swiftAwait
    /// In ``Queue/join(timeout:file:line:function:)-(Double?,_,_,_)``, waiting for every item to be done (`QUEUE_JOIN`).
    case queueJoin

    /// The seed's spelling: `TIME_SLEEP`, `TASK_JOIN`, ...
    public var description: String {
        switch self {
        case .ready: return "READY"
        case .running: return "RUNNING"
        case .terminated: return "TERMINATED"
        case .timeSleep: return "TIME_SLEEP"
        case .taskJoin: return "TASK_JOIN"
        case .eventWait: return "EVENT_WAIT"
        case .lockAcquire: return "LOCK_ACQUIRE"
        case .semaAcquire: return "SEMA_ACQUIRE"
        case .condWait: return "COND_WAIT"
        case .queueGet: return "QUEUE_GET"
        case .queuePut: return "QUEUE_PUT"
        case .readWait: return "READ_WAIT"
        case .writeWait: return "WRITE_WAIT"
        case .ioWait: return "IO_WAIT"
        case .signalWait: return "SIGNAL_WAIT"
        case .cpuWait: return "CPU_WAIT"
        case .futureWait: return "FUTURE_WAIT"
        case .swiftAwait: return "SWIFT_AWAIT"
        case .queueJoin: return "QUEUE_JOIN"
        }
    }
}

/// Where a task made its current blocking call, for the monitor's `where`.
public struct CallSite: Sendable, CustomStringConvertible {
    /// The source file of the call (`#filePath`).
    public let file: StaticString
    /// The line of the call.
    public let line: UInt
    /// The function that made the call (`#function`: `parent()`).
    public let function: StaticString

    /// The location of a call; blocking calls make one from their defaulted `file:line:function:` parameters.
    public init(file: StaticString, line: UInt, function: StaticString) {
        self.file = file
        self.line = line
        self.function = function
    }

    /// The function's name without its argument labels: `countdown(_:)`
    /// becomes `countdown`.
    public var functionName: String {
        let f = function.description
        if let paren = f.firstIndex(of: "(") { return String(f[..<paren]) }
        return f
    }

    public var description: String { "File \"\(file)\", line \(line), in \(function)" }
}

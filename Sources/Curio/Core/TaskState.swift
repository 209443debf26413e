/// What a task is doing, with the names the seed's monitor shows.
public enum TaskState: UInt8, Sendable, CustomStringConvertible {
    case ready, running, terminated
    case timeSleep, taskJoin, eventWait, lockAcquire, semaAcquire, condWait
    case queueGet, queuePut, readWait, writeWait, ioWait, signalWait, cpuWait
    case futureWait
    /// Suspended in a Swift-native await (`Task.sleep`, another actor, a
    /// continuation of its own): waiting on something outside Curio.
    case swiftAwait
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
    public let file: StaticString
    public let line: UInt
    public let function: StaticString

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

/// An event flag, as in `threading`: tasks wait until some task sets it.
///
/// ```swift
/// let startEvt = Event()
/// // kid:    try await startEvt.wait()
/// // parent: await startEvt.set()
/// ```
public final class Event: @unchecked Sendable {
    private var flag = false
    private let waiters = WaitQueue()
    private var affinity = Affinity()

    /// Creates an event that is not set.
    public init() {}

    /// True while the event is set.
    public var isSet: Bool { flag }

    /// Sets the event and wakes every waiting task, in the order they came.
    /// From outside the event's kernel the work is handed to that kernel.
    public func set() async {
        affinity.perform { [self] in
            flag = true
            if let k = affinity.kernel { k.wakeAll(waiters) }
        }
    }

    /// Clears the event; later ``wait(timeout:file:line:function:)-(Double?,_,_,_)`` calls block again.
    public func clear() {
        affinity.perform { [self] in flag = false }
    }

    /// Waits until the event is set. Returns true, or false when `timeout`
    /// seconds pass first (as in `threading`). Returns at once, without
    /// switching tasks, if the event is already set.
    @discardableResult
    public func wait(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        let t = try affinity.task()
        let deadline = try timeout.map { try deadlineAfter($0) } ?? .max
        if flag { return true }
        let r = try await t.kernel.block(t, .eventWait, on: waiters, deadline: deadline,
                                         site: CallSite(file: file, line: line, function: function))
        return r != Wake.timeout
    }
}

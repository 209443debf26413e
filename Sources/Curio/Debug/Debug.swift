#if canImport(Glibc)
import Glibc
#endif

/// Hooks into a task's life, as curio's `Activation`: add one with
/// ``Kernel/addActivation(_:)``. Every call happens on the kernel thread,
/// between jobs; keep them quick.
///
/// ```swift
/// kernel.addActivation(TraceActivation())
/// ```
public protocol Activation: AnyObject {
    /// A task was spawned.
    func created(_ task: AnyCurioTask)
    /// The task is about to run a slice (until its next blocking call).
    func running(_ task: AnyCurioTask)
    /// The task's slice ended: it blocked (or yielded).
    func suspended(_ task: AnyCurioTask)
    /// The task ended.
    func terminated(_ task: AnyCurioTask)
}

extension Activation {
    public func created(_ task: AnyCurioTask) {}
    public func running(_ task: AnyCurioTask) {}
    public func suspended(_ task: AnyCurioTask) {}
    public func terminated(_ task: AnyCurioTask) {}
}

/// Prints every task event on stderr: `curio: trace task 3 (kid) running`.
public final class TraceActivation: Activation {
    /// Creates the tracer; add it with ``Kernel/addActivation(_:)``.
    public init() {}
    public func created(_ task: AnyCurioTask) { writeStderr("curio: trace task \(task.id) created\n") }
    public func running(_ task: AnyCurioTask) { writeStderr("curio: trace task \(task.id) (\(task.name)) running\n") }
    public func suspended(_ task: AnyCurioTask) {
        writeStderr("curio: trace task \(task.id) (\(task.name)) suspended in \(task.state)\n")
    }
    public func terminated(_ task: AnyCurioTask) { writeStderr("curio: trace task \(task.id) (\(task.name)) terminated\n") }
}

/// Warns on stderr about every slice in which a task held the kernel for
/// longer than `threshold` seconds without blocking: it delayed every
/// other task by that much.
public final class LongBlockWarning: Activation {
    /// Seconds a slice may hold the kernel before it is reported.
    public let threshold: Double
    private var started: Int64 = 0
    /// The blocking call the running slice resumed from (by the slice's
    /// end, the task's site is the call it blocks in next).
    private var resumedAt: CallSite?
    /// Warnings so far (for tests and dashboards).
    public private(set) var warnings = 0

    /// Reports slices longer than `threshold` seconds.
    public init(threshold: Double = 0.05) { self.threshold = threshold }

    public func running(_ task: AnyCurioTask) {
        started = monotonicNanoseconds()
        resumedAt = task.site
    }

    public func suspended(_ task: AnyCurioTask) { check(task) }
    public func terminated(_ task: AnyCurioTask) { check(task) }

    private func check(_ task: AnyCurioTask) {
        guard started != 0 else { return }
        let held = Double(monotonicNanoseconds() - started) / 1e9
        started = 0
        if held > threshold {
            warnings += 1
            var where_ = ""
            if let s = resumedAt { where_ = " after resuming at \(s)" }
            diagnose(.warning, task: task, "curio: task \(task.id) (\(task.name)) ran \(formatFixed(held, 3)) s without blocking\(where_)\n")
        }
    }
}

extension Kernel {
    /// Adds a hook called at each step of every task's life.
    public func addActivation(_ a: any Activation) {
        activations.append(a)
    }

    /// Prints the task tree with each task's state and blocking call on
    /// stderr whenever `signal` arrives (`kill -USR1 <pid>`): for programs
    /// that hang in production, where nobody can attach a monitor.
    public func enableTaskDump(on signal: Int32 = SIGUSR1) throws {
        if case .failure = SignalWatch.start(signal) {
            throw CurioUsageError(.invalidArgument, "cannot watch signal \(signal) (\(signalName(signal))) for the task dump")
        }
        let link = ensureMonitorLink()
        dumpSignals.append(signal)
        SignalHub.shared.addListener(signal, owner: self) { [weak self] in
            if let self { writeStderr(self.taskDump(link)) }
        }
    }

    func ensureMonitorLink() -> MonitorLink {
        if let monitorLink { return monitorLink }
        let link = MonitorLink()
        monitorLink = link
        return link
    }

    /// The tree of tasks with states and locations, from any thread.
    func taskDump(_ link: MonitorLink) -> String {
        let view = MonitorView(link: link, kernel: self)
        let (rows, fresh, id) = (view.rows, view.fresh, Int64(view.runningID))
        var out = "curio: task dump (\(rows.count) tasks)\(fresh ? "" : "; the kernel is busy, table from before")\n"
        var children: [Int: [TaskRow]] = [:]
        let ids = Set(rows.map(\.id))
        var roots: [TaskRow] = []
        for r in rows {
            if let p = r.parentID, ids.contains(p) { children[p, default: []].append(r) } else { roots.append(r) }
        }
        func walk(_ r: TaskRow, _ depth: Int) {
            let state = Int64(r.id) == id ? "RUNNING" : r.state.description
            out += String(repeating: "  ", count: depth + 1) + "\(r.id) \(r.name) [\(state)]"
            if let s = r.site { out += " at \(s.file):\(s.line) in \(s.function)" }
            out += "\n"
            for c in children[r.id] ?? [] { walk(c, depth + 1) }
        }
        roots.forEach { walk($0, 0) }
        return out
    }
}

/// The live stack of the kernel thread, innermost first, with function
/// names read from the binaries' symbol tables. Nil when it cannot be taken.
func captureKernelStack(_ kernel: Kernel) -> [String]? {
    guard let frames = kernel.captureStackAddresses() else { return nil }
    var out: [String] = []
    for addr in frames {
        guard let symbol = symbolize(addr) else {
            // Unnamed frames before the first named one are the signal
            // delivery machinery; later ones are kept as addresses.
            if !out.isEmpty { out.append("\(addr)") }
            continue
        }
        // The capture handler and the signal trampoline are not the task's.
        if symbol.name == "on_capture" || symbol.name.hasPrefix("__restore_rt") { continue }
        out.append("\(demangle(symbol.name)) + \(symbol.offset) (\(symbol.binary))")
    }
    return out
}

@_silgen_name("swift_demangle")
private func _swiftDemangle(_ mangled: UnsafePointer<CChar>?, _ length: Int,
                            _ output: UnsafeMutablePointer<CChar>?, _ outputSize: UnsafeMutablePointer<Int>?,
                            _ flags: UInt32) -> UnsafeMutablePointer<CChar>?

/// A Swift symbol's readable name (`$s9hello_hog3fibyS2iF` → `hello_hog.fib(Swift.Int) -> Swift.Int`);
/// other names unchanged.
func demangle(_ symbol: String) -> String {
    guard symbol.hasPrefix("$s") || symbol.hasPrefix("_T") || symbol.hasPrefix("$S"),
          let d = _swiftDemangle(symbol, symbol.utf8.count, nil, nil, 0) else { return symbol }
    defer { free(d) }
    return String(cString: d)
}

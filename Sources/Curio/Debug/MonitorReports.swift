#if canImport(Glibc)
import Glibc
#endif

/// One kernel the monitor watches: a kernel alone, or one of a
/// ``KernelGroup``'s (then `index` is its place in the group and the
/// monitor's tables get a kernel column).
final class MonitorTarget: Sendable {
    weak let kernel: Kernel?
    let link: MonitorLink
    /// The kernel's index in its group; nil for a kernel alone.
    let index: Int?

    init(kernel: Kernel, link: MonitorLink, index: Int?) {
        self.kernel = kernel
        self.link = link
        self.index = index
    }
}

/// The task table as the monitor shows it at one moment: each kernel's last
/// copy, the task that holds a kernel now marked RUNNING, and a row for
/// that task even when no copy has shown it yet. For a group, the rows of
/// every kernel, by id (ids are unique across a group).
struct MonitorView {
    /// A task holding its kernel now.
    struct Running {
        /// Position of its kernel among the view's targets.
        let target: Int
        let id: Int
        /// Seconds it has held the kernel.
        let heldFor: Double
        /// Its row comes from the kernel's note, not from a copy of the
        /// table (it has run since before any copy).
        let unseen: Bool
        /// The kernel answered with a fresh copy.
        let fresh: Bool
    }

    let rows: [TaskRow]
    /// Each row's kernel, as a position among the targets.
    private let targetOfRow: [Int: Int]
    /// The group index of each target (empty for a kernel alone: no column).
    private let groupIndex: [Int]
    let running: [Running]
    /// False when some kernel was too busy to make a fresh copy.
    let fresh: Bool

    /// The view of one kernel alone.
    init(link: MonitorLink, kernel: Kernel, patience: Double = 0.25) {
        self.init(targets: [(kernel, link, nil)], patience: patience)
    }

    /// The view of several kernels: each is asked for a fresh copy first,
    /// then all are waited for within one `patience`.
    init(targets: [(kernel: Kernel, link: MonitorLink, index: Int?)], patience: Double = 0.25) {
        let requests = targets.map { $0.link.requestSnapshot(from: $0.kernel, waiting: patience > 0) }
        let deadline = monotonicNanoseconds() + Int64(max(0, patience) * 1e9)
        var rows: [TaskRow] = []
        var targetOf: [Int: Int] = [:]
        var running: [Running] = []
        var allFresh = true
        for (i, t) in targets.enumerated() {
            let (some, fresh) = t.link.collect(requests[i], deadline: deadline)
            allFresh = allFresh && fresh
            for r in some {
                rows.append(r)
                targetOf[r.id] = i
            }
            let (id, since) = t.kernel.runningMark()
            guard id != 0 else { continue }
            var unseen = false
            if !some.contains(where: { $0.id == Int(id) }), let note = t.link.unseenRunning(id: Int(id)) {
                rows.append(note.row)
                targetOf[note.id] = i
                unseen = true
            }
            running.append(Running(target: i, id: Int(id), heldFor: Double(monotonicNanoseconds() - since) / 1e9,
                                   unseen: unseen, fresh: fresh))
        }
        rows.sort { $0.id < $1.id }
        self.rows = rows
        targetOfRow = targetOf
        groupIndex = targets.compactMap(\.index)
        self.running = running
        fresh = allFresh
    }

    /// True when the rows come from a group (they show a kernel column).
    var grouped: Bool { !groupIndex.isEmpty }

    /// The id of the task holding a kernel alone now (0: none).
    var runningID: Int { running.first?.id ?? 0 }

    func row(_ id: Int) -> TaskRow? { rows.first { $0.id == id } }

    /// Which target (position) task `id` runs on, if the view has it.
    func target(of id: Int) -> Int? { targetOfRow[id] }

    private func runningEntry(_ id: Int) -> Running? { running.first { $0.id == id } }

    /// The group index of a row's kernel, as the kernel column shows it.
    private func kernelLabel(_ id: Int) -> String {
        guard let t = targetOfRow[id], t < groupIndex.count else { return "?" }
        return String(groupIndex[t])
    }

    func state(of r: TaskRow) -> String { runningEntry(r.id) != nil ? "RUNNING" : r.state.description }

    var ps: String {
        let kernelColumn = grouped
        var out = pad("Task", 6) + " " + (kernelColumn ? pad("Kernel", 6) + " " : "") + pad("State", 12) + " "
            + pad("Cycles", 10) + " " + pad("Timeout", 7) + " " + pad("Task", 50) + "\n"
        out += String(repeating: "-", count: 6) + " " + (kernelColumn ? String(repeating: "-", count: 6) + " " : "")
            + String(repeating: "-", count: 12) + " " + String(repeating: "-", count: 10) + " "
            + String(repeating: "-", count: 7) + " " + String(repeating: "-", count: 50) + "\n"
        let now = monotonicNanoseconds()
        for r in rows {
            let timeout = r.wakeDeadline == .max || runningEntry(r.id) != nil
                ? "None" : formatFixed(Double(max(0, r.wakeDeadline - now)) / 1e9, 3)
            out += pad(String(r.id), 6) + " " + (kernelColumn ? pad(kernelLabel(r.id), 6) + " " : "")
                + pad(state(of: r), 12) + " " + pad(String(r.cycles), 10) + " "
                + pad(timeout, 7) + " " + pad(r.name, 50) + "\n"
        }
        // Always for a task no copy has shown: its row is all there is.
        for run in running where run.heldFor >= 0.5 || run.unseen {
            let onKernel = kernelColumn ? " (kernel \(kernelLabel(run.id)))" : ""
            out += "Task \(run.id)\(onKernel) has held the kernel for \(formatFixed(run.heldFor, 3)) s without blocking"
                + (run.fresh ? "" : " (the kernel is busy: this table is from before it started)") + ".\n"
        }
        return out
    }

    /// `where ID`; `liveStack` gives the stack of the thread of the task's
    /// kernel when the task is running.
    func whereText(_ id: Int, source: (String, Int) -> String?, liveStack: () -> [String]?) -> String {
        guard let r = row(id) else { return "No task \(id).\n" }
        let onKernel = grouped ? ", kernel=\(kernelLabel(id))" : ""
        var out = " Stack for Task(id=\(r.id), name=\(r.name)\(onKernel), state='\(state(of: r))') (most recent call last):\n"
        let run = runningEntry(id)
        if let site = r.site {
            out += "  File \"\(site.file)\", line \(site.line), in \(site.function)\n"
            if let text = source(String(describing: site.file), Int(site.line)) {
                out += "    \(text)\n"
            }
            if let run {
                out += "  (running for \(formatFixed(run.heldFor, 3)) s since it resumed from this call)\n"
            }
        } else {
            out += "  (has not blocked yet)\n"
            if let run { out += "  (running for \(formatFixed(run.heldFor, 3)) s since it started)\n" }
        }
        if run != nil, let frames = liveStack() {
            out += "  Live stack of the kernel thread (innermost first):\n"
            for f in frames.prefix(20) { out += "    \(f)\n" }
        }
        return out
    }

    func parents(_ id: Int) -> String {
        var byID: [Int: TaskRow] = [:]
        for r in rows { byID[r.id] = r }
        guard var r = byID[id] else { return "No task \(id).\n" }
        var out = ""
        while true {
            let onKernel = grouped ? " (kernel \(kernelLabel(r.id)))" : ""
            out += "\(pad(String(r.id), 6)) \(pad(r.state.description, 12)) \(r.name)\(onKernel)\n"
            guard let p = r.parentID else { break }
            guard let next = byID[p] else {
                out += "\(pad(String(p), 6)) (ended)\n"
                break
            }
            r = next
        }
        return out
    }

    var tree: String {
        let ids = Set(rows.map(\.id))
        var children: [Int: [TaskRow]] = [:]
        var roots: [TaskRow] = []
        for r in rows {
            if let p = r.parentID, ids.contains(p) { children[p, default: []].append(r) } else { roots.append(r) }
        }
        var out = ""
        func walk(_ r: TaskRow, _ depth: Int) {
            let onKernel = grouped ? " (kernel \(kernelLabel(r.id)))" : ""
            out += String(repeating: "  ", count: depth) + "\(r.id) \(r.name) [\(r.state)]\(onKernel)\n"
            for c in children[r.id] ?? [] { walk(c, depth + 1) }
        }
        roots.forEach { walk($0, 0) }
        return out.isEmpty ? "No tasks.\n" : out
    }
}

/// Source lines for `where`, read once per file (files over 8 MB are not
/// read; at most 64 files are kept).
struct SourceLines {
    private var cache: [String: [Substring]] = [:]

    var cachedFiles: Int { cache.count }

    mutating func line(_ path: String, _ line: Int) -> String? {
        if cache[path] == nil {
            guard let f = fopen(path, "re") else { return nil }
            defer { fclose(f) }
            var data: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n <= 0 { break }
                data.append(contentsOf: buf[0..<n])
                if data.count > 8 << 20 { return nil }
            }
            if cache.count >= 64 { cache.removeAll() }
            cache[path] = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        }
        guard let lines = cache[path], line >= 1, line <= lines.count else { return nil }
        return lines[line - 1].trimmingWhitespace()
    }
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

/// `v` with `digits` decimals, without Foundation.
func formatFixed(_ v: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((v * scale).rounded())
    let whole = n / Int(scale), frac = n % Int(scale)
    guard digits > 0 else { return String(whole) }
    let f = String(frac)
    return "\(whole)." + String(repeating: "0", count: digits - f.count) + f
}

extension Substring {
    func trimmingWhitespace() -> String {
        let t = drop { $0 == " " || $0 == "\t" }
        var s = String(t)
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s.removeLast() }
        return s
    }
}

import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// The task table as the monitor shows it at one moment: the kernel's last
/// copy, the task that holds the kernel now marked RUNNING, and a row for
/// that task even when no copy has shown it yet.
struct MonitorView {
    let rows: [TaskRow]
    /// The task holding the kernel now (0: none).
    let runningID: Int
    /// Seconds it has held the kernel.
    let heldFor: Double
    /// False when the kernel was too busy to make a fresh copy.
    let fresh: Bool

    /// True when the running task's row comes from the kernel's note, not
    /// from a copy of the table (it has run since before any copy).
    let runningUnseen: Bool

    init(link: MonitorLink, kernel: Kernel, patience: Double = 0.25) {
        var (rows, fresh) = link.snapshot(from: kernel, patience: patience)
        var id: Int64 = 0, since: Int64 = 0
        ck_read_running(kernel.ck, &id, &since)
        var unseen = false
        if id != 0, !rows.contains(where: { $0.id == Int(id) }), let note = link.unseenRunning(id: Int(id)) {
            rows.append(note.row)
            rows.sort { $0.id < $1.id }
            unseen = true
        }
        runningUnseen = unseen
        self.rows = rows
        self.fresh = fresh
        runningID = Int(id)
        heldFor = id != 0 ? Double(ck_now_ns() - since) / 1e9 : 0
    }

    func row(_ id: Int) -> TaskRow? { rows.first { $0.id == id } }

    func state(of r: TaskRow) -> String { r.id == runningID ? "RUNNING" : r.state.description }

    var ps: String {
        var out = pad("Task", 6) + " " + pad("State", 12) + " " + pad("Cycles", 10) + " " + pad("Timeout", 7) + " " + pad("Task", 50) + "\n"
        out += String(repeating: "-", count: 6) + " " + String(repeating: "-", count: 12) + " "
            + String(repeating: "-", count: 10) + " " + String(repeating: "-", count: 7) + " " + String(repeating: "-", count: 50) + "\n"
        let now = ck_now_ns()
        for r in rows {
            let timeout = r.wakeDeadline == .max || r.id == runningID
                ? "None" : formatFixed(Double(max(0, r.wakeDeadline - now)) / 1e9, 3)
            out += pad(String(r.id), 6) + " " + pad(state(of: r), 12) + " " + pad(String(r.cycles), 10) + " "
                + pad(timeout, 7) + " " + pad(r.name, 50) + "\n"
        }
        // Always for a task no copy has shown: its row is all there is.
        if runningID != 0 && (heldFor >= 0.5 || runningUnseen) {
            out += "Task \(runningID) has held the kernel for \(formatFixed(heldFor, 3)) s without blocking"
                + (fresh ? "" : " (the kernel is busy: this table is from before it started)") + ".\n"
        }
        return out
    }

    /// `where ID`; `liveStack` gives the kernel thread's stack when the task
    /// is the running one.
    func whereText(_ id: Int, source: (String, Int) -> String?, liveStack: () -> [String]?) -> String {
        guard let r = row(id) else { return "No task \(id).\n" }
        var out = " Stack for Task(id=\(r.id), name=\(r.name), state='\(state(of: r))') (most recent call last):\n"
        if let site = r.site {
            out += "  File \"\(site.file)\", line \(site.line), in \(site.function)\n"
            if let text = source(String(describing: site.file), Int(site.line)) {
                out += "    \(text)\n"
            }
            if r.id == runningID {
                out += "  (running for \(formatFixed(heldFor, 3)) s since it resumed from this call)\n"
            }
        } else {
            out += "  (has not blocked yet)\n"
            if r.id == runningID { out += "  (running for \(formatFixed(heldFor, 3)) s since it started)\n" }
        }
        if r.id == runningID, let frames = liveStack() {
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
            out += "\(pad(String(r.id), 6)) \(pad(r.state.description, 12)) \(r.name)\n"
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
            out += String(repeating: "  ", count: depth) + "\(r.id) \(r.name) [\(r.state)]\n"
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
            guard let f = fopen(path, "r") else { return nil }
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

import CCurioKernel

// The loop's deadlock check. It reads the C kernel's counts of what could
// still wake the loop (timers, requests, events, posts), so it lives in the
// kernel layer.
extension Kernel {
    /// Called when the loop is about to wait with nothing that could ever
    /// wake it but another thread: no timer, no I/O, no worker, no signal
    /// wait. If tasks are still waiting, they wait on each other.
    func checkDeadlock() {
        guard !deadlockReported, aliveCount > 0, ck_timer_count(ck) == 0, ck_pending_requests(ck) == 0,
              ck_waiting_events(ck) == 0, externalWaits == 0, ck_posted_count(ck) == 0,
              ck_ready_count(readyQueue) == 0 else { return }
        // A task in a Swift-native await waits for something Curio cannot
        // see (a Swift timer, another executor): no verdict then.
        var allInTraps = true
        forEachTask { if $0.continuation == nil { allInTraps = false } }
        guard allInTraps else { return }
        deadlockReported = true
        var lines = "curio: deadlock: every task is waiting and nothing (timer, I/O, worker thread, signal) can wake them:\n"
        var rows: [AnyCurioTask] = []
        forEachTask { rows.append($0) }
        for t in rows.sorted(by: { $0.id < $1.id }) {
            lines += "  task \(t.id) (\(t.name)) \(t.state)"
            if let s = t.site { lines += " at \(s.file):\(s.line) in \(s.function)" }
            lines += "\n"
        }
        lines += "curio: the kernel keeps waiting (the monitor can still cancel a task).\n"
        diagnose(.error, kernel: self, lines)
    }
}

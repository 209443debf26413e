import CCurioKernel
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Notices a kernel on the main thread whose tasks wait for something that
/// may be the `MainActor`. The main actor runs on the main thread (the main
/// queue), which the kernel's loop holds until `run()` returns, so a task
/// that hops to it waits silently until then. The runtime offers no way to
/// see that hop (Swift 6.3 enqueues main-actor jobs straight on the main
/// queue), so the kernel reports what it can see: running on the main thread,
/// a second with nothing happening — no job, no event, no timer due — while
/// some task waits in a Swift-native await. Reported once per run, on
/// stderr, naming the fix.
enum MainThreadWatch {
    /// How long the kernel must see nothing happen before it reports.
    static let quietNanoseconds: Int64 = 1_000_000_000

    /// Marks the main queue, so that code running in one of its blocks
    /// (on whichever thread the process services it) is recognized.
    private static let mainQueueKey: DispatchSpecificKey<Bool> = {
        let key = DispatchSpecificKey<Bool>()
        DispatchQueue.main.setSpecific(key: key, value: true)
        return key
    }()

    /// True on the main thread or inside a block of the main queue: where
    /// the main actor's jobs run.
    static var isMainThread: Bool {
        isProcessMainThread || DispatchQueue.getSpecific(key: mainQueueKey) == true
    }

    /// The main thread is the one whose thread id is the process id;
    /// `/proc/thread-self` names both ("PID/task/TID").
    static var isProcessMainThread: Bool {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buf, buf.count - 1)
        guard n > 0 else { return false }
        let text = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(separator: "/")
        return parts.count == 3 && parts[0] == parts[2]
    }
}

extension Kernel {
    /// Before the loop sleeps: the wait cap that lets it notice a quiet
    /// second on the main thread, or nil when there is nothing to watch.
    ///
    /// Which tasks wait in a Swift await is looked at only once the capped
    /// sleep has passed quietly (``reportQuietMainThread()``): a busy server
    /// sleeps many times a second, and walking every task before each
    /// sleep cost a busy echo server a few percent of its instructions.
    func mainActorWatchCap() -> Int64? {
        guard onMainThread, !mainActorReported, ck_ready_count(readyQueue) == 0,
              ck_timer_next(ck) &- now > MainThreadWatch.quietNanoseconds else { return nil }
        return MainThreadWatch.quietNanoseconds
    }

    /// The watched sleep ended with nothing to do: report, if some task
    /// waits in a Swift await.
    func reportQuietMainThread() {
        var names: [String] = []
        forEachTask { if $0.state == .swiftAwait { names.append("\($0.id) (\($0.name))") } }
        guard !names.isEmpty else { return }
        mainActorReported = true
        writeStderr("curio: a Curio kernel runs on the main thread and task \(names.joined(separator: ", ")) has waited in a Swift await for a second with nothing else happening. If it waits for the MainActor, it cannot resume until this kernel's run() returns: the main actor runs on the main thread. Run the kernel on a thread of its own (Kernel.start()) and reach it with kernel.call { }.\n")
    }
}

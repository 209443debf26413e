import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Notices a task hopping to the `MainActor` while a kernel runs on the
/// main thread. The main actor runs on the main thread, which the kernel's
/// loop holds until `run()` returns: such a task would wait silently until
/// then. Curio watches the runtime's main-executor enqueue (a documented
/// runtime hook, RuntimeAssumptions.swift, 6) while a kernel runs there and
/// reports the first such hop of each run on stderr, naming the fix.
enum MainThreadWatch {
    private static let kernelsOnMain = Atomic<Int>(0)
    private static let reported = Atomic<Bool>(false)
    private static let installed = Mutex<Bool>(false)

    /// The previous hook (or nil), called for every job we see.
    private nonisolated(unsafe) static var previous: EnqueueHook?

    typealias EnqueueOriginal = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias EnqueueHook = @convention(c) (UnsafeMutableRawPointer?, EnqueueOriginal?) -> Void

    /// The main thread is the one whose thread id is the process id;
    /// `/proc/thread-self` names both ("PID/task/TID").
    static var isMainThread: Bool {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/thread-self", &buf, buf.count - 1)
        guard n > 0 else { return false }
        let text = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(separator: "/")
        return parts.count == 3 && parts[0] == parts[2]
    }

    /// A loop starts: true when it runs on the main thread (the watch is on).
    static func kernelEnters() -> Bool {
        guard isMainThread else { return false }
        install()
        kernelsOnMain.add(1, ordering: .sequentiallyConsistent)
        reported.store(false, ordering: .relaxed)
        return true
    }

    static func kernelLeaves() {
        kernelsOnMain.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Installs the hook once, chained to whatever hook was there.
    private static func install() {
        installed.withLock { done in
            guard !done else { return }
            done = true
            guard let sym = dlsym(nil /* RTLD_DEFAULT */, "swift_task_enqueueMainExecutor_hook") else { return }
            let slot = sym.assumingMemoryBound(to: EnqueueHook?.self)
            previous = slot.pointee
            slot.pointee = { job, original in
                MainThreadWatch.sawMainActorJob()
                if let p = MainThreadWatch.previous { p(job, original) } else { original?(job) }
            }
        }
    }

    /// A job was enqueued on the main actor.
    static func sawMainActorJob() {
        guard kernelsOnMain.load(ordering: .sequentiallyConsistent) > 0,
              !reported.exchange(true, ordering: .relaxed) else { return }
        writeStderr("curio: a task is waiting for the MainActor, but a Curio kernel runs on the main thread, so the main actor cannot run until that kernel's run() returns. Run the kernel on a thread of its own (Kernel.start()) and reach it with kernel.call { }, or keep MainActor code out of the kernel's tasks.\n")
    }
}

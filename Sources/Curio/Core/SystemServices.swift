import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

// The C kernel's services that are not requests: real time, process and
// thread helpers, signal watches and the debugging helpers (live stacks,
// symbols, the running mark). The layers above Core/ call these and never
// the C kernel itself, so `grep -rn 'ck_\|CK_' Sources/Curio --include=*.swift`
// finds C names in Core/ only.

/// Real time on CLOCK_MONOTONIC, in nanoseconds: for threads outside a
/// kernel (workers, the bridge's blocking waits) and for reports of how
/// long something has taken.
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    ck_now_ns()
}

/// Now on the clock that deadlines made on the calling thread are on
/// (``deadlineAfter(_:)``): its kernel's (possibly virtual) clock, or
/// CLOCK_MONOTONIC off a kernel's thread. Read it where the deadline was
/// made to turn the deadline into a duration for a timer elsewhere.
@inline(__always)
func callerClockNanoseconds() -> Int64 {
    ck_clock_now()
}

/// pipe2(2) (which Swift's Glibc module does not export) → 0, or -errno;
/// the two descriptors go to `fds[0]` (read) and `fds[1]` (write).
func systemPipe(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32 {
    ck_pipe2(fds, flags)
}

/// Makes a spawned child close every descriptor from `lowest` up, after
/// the file actions added before (posix_spawn_file_actions_addclosefrom_np,
/// which Swift's Glibc module does not export) → 0, or an errno.
func spawnClosesDescriptors(_ actions: inout posix_spawn_file_actions_t, from lowest: Int32) -> Int32 {
    ck_spawn_close_from(&actions, lowest)
}

/// accept4(2) with close-on-exec and non-blocking set atomically → the
/// connection's descriptor, or -errno.
func acceptCloseOnExecNonBlocking(_ fd: Int32) -> Int32 {
    ck_accept_cloexec_nonblock(fd)
}

/// pidfd_open(2) → a descriptor that becomes readable when `pid` exits,
/// or -errno (kernels older than 5.3: -ENOSYS).
func openProcessDescriptor(_ pid: pid_t) -> Int32 {
    ck_pidfd_open(pid)
}

/// The CPUs the calling thread may run on, in ascending order (its
/// `sched_getaffinity` mask); every CPU `sysconf` counts when the mask cannot
/// be read. Containers and `taskset` narrow the mask, so this is what a group
/// should size itself by, not the machine's CPU count.
func allowedCPUs() -> [Int] {
    var cpus = [Int32](repeating: 0, count: 4096)
    let n = Int(ck_allowed_cpus(&cpus, Int32(cpus.count)))
    if n > 0 { return cpus[0..<n].map { Int($0) } }
    return Array(0..<max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}

/// Names the calling thread (what `top -H`, `perf` and debuggers show; the
/// OS keeps 15 bytes).
func nameThisThread(_ name: String) {
    ck_name_thread(String(name.prefix(15)))
}

/// Keeps the calling thread on `cpu` (best effort: a CPU the process may not
/// use leaves the thread where it was).
func pinThisThread(to cpu: Int) {
    _ = ck_pin_thread(Int32(cpu))
}

/// The process-wide signal watches of the C kernel: a watched signal is
/// caught by Curio's handler and written to the signal pipe, which one
/// thread (`SignalHub`) reads. Watches are counted per signal.
enum SignalWatch {
    /// What starting a watch found in the signal's disposition.
    enum Takeover {
        /// The default action was replaced, or a previous handler is chained
        /// after Curio's: nobody loses the signal.
        case nobodyLoses
        /// The signal was ignored (`SIG_IGN`, as set up for a Dispatch
        /// signal source): whoever ignored it does not see it now.
        case wasIgnored
        /// Another handler had replaced Curio's while it was watched; Curio's
        /// is back and calls that one after its own.
        case reclaimed
    }

    /// Starts watching `sig` → what it took over, or the errno (EPERM: a
    /// signal that cannot be caught; EINVAL: not a signal).
    static func start(_ sig: Int32) -> Result<Takeover, KernelError> {
        var outcome: Int32 = 0
        let r = ck_signal_watch_outcome(sig, &outcome)
        if r != 0 { return .failure(KernelError(errno: -r, operation: "watching signal \(sig)")) }
        switch Int(outcome) {
        case CK_SIGNAL_WAS_IGNORED: return .success(.wasIgnored)
        case CK_SIGNAL_RECLAIMED: return .success(.reclaimed)
        default: return .success(.nobodyLoses)
        }
    }

    /// Ends one watch of `sig`; the last one puts back what was there.
    static func stop(_ sig: Int32) {
        ck_signal_unwatch(sig)
    }

    /// The read end of the signal pipe (one per process) or -errno.
    static func pipe() -> Int32 {
        ck_signal_pipe()
    }
}

/// One frame of a live stack, named from the binaries' symbol tables.
struct StackSymbol {
    /// The symbol's (mangled) name.
    var name: String
    /// The frame's distance from the symbol's start.
    var offset: UInt64
    /// The binary the symbol is in.
    var binary: String
}

extension Kernel {
    /// The return addresses of the kernel thread's stack now, innermost
    /// first (the thread is interrupted by a signal for at most 200 ms), or
    /// nil when it cannot be taken. From any thread.
    func captureStackAddresses() -> [UnsafeMutableRawPointer]? {
        var frames = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        let n = ck_capture_stack(ck, &frames, Int32(frames.count), 200)
        guard n > 0 else { return nil }
        return frames.prefix(Int(n)).compactMap { $0 }
    }

    /// The task the kernel thread is running now and since when
    /// (nanoseconds on the monotonic clock), as the loop marks it for the
    /// monitor; id 0 when none. From any thread.
    func runningMark() -> (taskID: Int64, since: Int64) {
        var id: Int64 = 0, since: Int64 = 0
        ck_read_running(ck, &id, &since)
        return (id, since)
    }
}

/// The symbol `address` falls in, or nil when no symbol table names it.
func symbolize(_ address: UnsafeMutableRawPointer) -> StackSymbol? {
    var name = [CChar](repeating: 0, count: 1024)
    var file = [CChar](repeating: 0, count: 256)
    var offset: UInt64 = 0
    guard ck_symbol_name(address, &name, name.count, &offset, &file, file.count) == 1 else { return nil }
    func text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    return StackSymbol(name: text(name), offset: offset, binary: text(file))
}

/// This process's environment as `NAME=value` entries, in `environ`'s order.
func processEnvironmentEntries() -> [String] {
    var out: [String] = []
    var p = environ
    while let entry = p.pointee {
        out.append(String(cString: entry))
        p += 1
    }
    return out
}

/// This process's environment by name (the environment of a child the
/// library starts, and the source of the configuration's overrides).
func processEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    for s in processEnvironmentEntries() {
        if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
    }
    return env
}

import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

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

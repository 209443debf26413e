/// A value that only the thread running one kernel may touch (SwiftNIO's
/// `NIOLoopBoundBox` for Curio kernels): the one audited way to hand
/// kernel-thread-only state to `@Sendable` closures that are created on
/// other threads but only ever *run* on the kernel's thread (posted
/// messages, completions).
///
/// Every access checks, in debug builds, that the calling thread runs
/// `kernel`, so a misuse traps at the access instead of racing silently.
/// Release builds skip the check: it is a load from thread-local storage
/// and the value is on hot paths.
// @unchecked Sendable: `value` is read and written only on the thread
// running `kernel` (asserted on every access in debug builds), so no two
// threads ever touch it at once; the reference itself is immutable.
final class KernelBound<Value>: @unchecked Sendable {
    /// The kernel whose thread owns `value`.
    let kernel: Kernel
    private var storage: Value

    /// Wraps `value` for `kernel`. Creating one is allowed anywhere (the
    /// value is not yet shared); every later access must be on the kernel.
    init(_ value: Value, kernel: Kernel) {
        self.kernel = kernel
        self.storage = value
    }

    /// The value; touch it only on `kernel`'s thread.
    var value: Value {
        get {
            assertOnKernel()
            return storage
        }
        set {
            assertOnKernel()
            storage = newValue
        }
    }

    @inline(__always)
    private func assertOnKernel(file: StaticString = #fileID, line: UInt = #line) {
        assert(kernel.isOnKernelThread || !kernel.isRunning,
               "KernelBound: touched off the thread of the kernel that owns it", file: file, line: line)
    }
}

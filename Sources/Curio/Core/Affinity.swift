import CCurioKernel

/// Which kernel a synchronization object belongs to. An object binds to the
/// kernel of the first task that blocks on it; from then on, blocking calls
/// from another kernel's tasks get a clear ``CurioUsageError`` and
/// non-blocking calls from elsewhere are handed to the owning kernel.
///
/// Kernels are told apart by a serial number that is never reused, so an
/// object that outlives its kernel is not mistaken for one of a new kernel
/// that happens to get the same address. The kernel is held strongly: a
/// weak reference made every kernel's reference counting take the slow
/// side-table path (2% of an echo server's time), and an object that is
/// still in use has every reason to keep its kernel.
struct Affinity {
    private var serial: UInt64 = 0
    private(set) var kernel: Kernel?

    /// The calling task, after checking it may block on this object.
    @inline(__always)
    mutating func task(_ what: StaticString = #function) throws -> AnyCurioTask {
        let t = try Kernel.currentTask(what)
        if serial != t.kernel.serial {
            if serial != 0 {
                throw CurioUsageError(.wrongKernel, "\(what): this object belongs to another kernel's tasks; use UniversalQueue/UniversalEvent to cross kernels")
            }
            serial = t.kernel.serial
            kernel = t.kernel
        }
        return t
    }

    /// Runs `body` on the owning kernel: inline when the caller is on it (or
    /// no living kernel owns the object), posted to it otherwise. Returns
    /// false when the work was posted and will run later.
    @discardableResult
    func perform(_ body: @escaping @Sendable () -> Void) -> Bool {
        guard let kernel, !kernel.isOnKernelThread else {
            body()
            return true
        }
        kernel.postMessage { _ in body() }
        return false
    }
}

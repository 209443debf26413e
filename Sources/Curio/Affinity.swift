/// Which kernel a synchronization object belongs to. An object binds to the
/// kernel of the first task that blocks on it; from then on, blocking calls
/// from another kernel's tasks get a clear ``CurioUsageError`` and
/// non-blocking calls from elsewhere are handed to the owning kernel.
struct Affinity {
    unowned(unsafe) private(set) var kernel: Kernel?

    /// The calling task, after checking it may block on this object.
    @inline(__always)
    mutating func task(_ what: StaticString = #function) throws -> AnyCurioTask {
        let t = try Kernel.currentTask(what)
        if let kernel {
            if kernel !== t.kernel {
                throw CurioUsageError(.wrongKernel, "\(what): this object belongs to another kernel's tasks; use UniversalQueue/UniversalEvent to cross kernels")
            }
        } else {
            kernel = t.kernel
        }
        return t
    }

    /// Runs `body` on the owning kernel: inline when the caller is on it (or
    /// nothing owns the object yet), posted to it otherwise. Returns false
    /// when the work was posted and will run later.
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

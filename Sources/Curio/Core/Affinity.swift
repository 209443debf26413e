import CCurioKernel
import Synchronization

/// Which kernel a synchronization object belongs to. An object binds to the
/// kernel of the first task that blocks on it; from then on, blocking calls
/// from another kernel's tasks get a clear ``CurioUsageError`` and
/// non-blocking calls from elsewhere (`Event.set`) post their work to the
/// owning kernel.
///
/// Binding is one compare-and-swap, so two kernels' tasks that use a fresh
/// object at the same moment cannot both bind it: one wins, the other gets
/// `.wrongKernel`. The kernel is held strongly (retained once, released in
/// `deinit`): a weak reference made every kernel's reference counting take
/// the slow side-table path (2% of an echo server's time), and an object
/// still in use has every reason to keep its kernel. Because a bound kernel
/// stays alive, its address cannot be reused by a new kernel, so comparing
/// addresses is enough to tell kernels apart.
struct Affinity: ~Copyable {
    private let bound = Atomic<Unmanaged<Kernel>?>(nil)

    init() {}

    deinit {
        bound.load(ordering: .acquiring)?.release()
    }

    /// The kernel the object is bound to, if any.
    var kernel: Kernel? {
        bound.load(ordering: .acquiring)?.takeUnretainedValue()
    }

    /// The calling task, after checking it may block on this object.
    @inline(__always)
    func task(_ what: StaticString = #function) throws -> AnyCurioTask {
        let t = try Kernel.currentTask(what)
        if let k = bound.load(ordering: .acquiring), k.toOpaque() == Unmanaged.passUnretained(t.kernel).toOpaque() {
            return t
        }
        try bind(t.kernel, what)
        return t
    }

    /// Binds the object to `kernel` unless another kernel has it.
    @inline(never)
    private func bind(_ kernel: Kernel, _ what: StaticString) throws {
        let mine = Unmanaged.passRetained(kernel)
        // Sequentially consistent: an `Event.set` on another thread stores
        // its flag and then reads the binding; the binder stores the binding
        // and then reads the flag. With this ordering one of them sees the
        // other's write, so a set is never lost between the two.
        let (won, current) = bound.compareExchange(expected: nil, desired: mine, ordering: .sequentiallyConsistent)
        if won { return }
        mine.release()
        if current?.toOpaque() != mine.toOpaque() {
            throw CurioUsageError(.wrongKernel, "\(what): this object belongs to another kernel's tasks; use UniversalQueue/UniversalEvent to cross kernels")
        }
    }
}

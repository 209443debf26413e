import Synchronization

/// A `Synchronization.Mutex` whose ordering ThreadSanitizer can see.
///
/// On Linux a contended `Mutex` is taken in the kernel (a priority-
/// inheriting futex), so the sanitizer never sees the acquire and reports
/// the protected state as raced whenever two threads meet at the lock.
/// Inside the lock this adds an acquiring load and a releasing add on an
/// atomic of its own: the order the lock already gives, spelled so the
/// sanitizer sees it. Two uncontended atomic operations per use.
final class SanitizerVisibleMutex<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    private let order = Atomic<Int>(0)

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R {
        mutex.withLock { value in
            _ = order.load(ordering: .acquiring)
            defer { order.wrappingAdd(1, ordering: .releasing) }
            return body(&value)
        }
    }
}

import CCurioKernel
import Synchronization

/// A `Synchronization.Mutex` whose locking ThreadSanitizer can see.
///
/// A contended `Mutex` is acquired inside the standard library, which is not
/// built with the sanitizer, so TSan misses that the new holder synchronizes
/// with the last one and reports every guarded access as a race. `Locked`
/// adds the two annotations the sanitizer needs (acquire after the lock is
/// taken, release before it is given back) on an address of its own; in a
/// build without TSan they are two calls that return at once.
/// Package-wide so CurioTLS and CurioHTTP guard their shared state with it too.
package struct Locked<State: ~Copyable>: ~Copyable, Sendable {
    private let mutex: Mutex<State>
    /// A unique address for the annotations (never dereferenced), kept as
    /// bits so the type stays plainly Sendable.
    private let token: UInt

    package init(_ initial: consuming sending State) {
        mutex = Mutex(initial)
        token = UInt(bitPattern: UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1))
    }

    deinit {
        UnsafeMutableRawPointer(bitPattern: token)?.deallocate()
    }

    /// Runs `body` with the state, holding the lock.
    package borrowing func withLock<R, E: Error>(_ body: (inout sending State) throws(E) -> sending R) throws(E) -> sending R {
        let address = UnsafeMutableRawPointer(bitPattern: token)
        return try mutex.withLock { (state: inout sending State) throws(E) -> sending R in
            ck_tsan_acquire(address)
            defer { ck_tsan_release(address) }
            return try body(&state)
        }
    }
}

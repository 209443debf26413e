import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// One waiter of a universal primitive: a Curio task, a thread blocked on
/// a condition variable, or a Swift task on another executor. Whoever
/// removes it from the waiter list (under the primitive's lock) owns
/// waking it, and hands it its item before doing so.
final class UniversalWaiter<T>: @unchecked Sendable {
    enum Kind {
        case curio(Kernel, AnyCurioTask)
        case thread
        case swift
    }
    let kind: Kind
    var item: T?
    var handed = false
    /// Swift waiters: set under the primitive's lock once suspended.
    var continuation: UnsafeContinuation<T?, Never>?
    /// Swift waiters: cancelled before (or while) registering.
    var cancelled = false
    /// Curio waiters: still suspended in this very wait (kernel thread only).
    var active = true
    init(_ kind: Kind) { self.kind = kind }
}

/// What UniversalQueue and UniversalEvent share: the lock, the condition
/// variable for blocked threads, the waiter list, and parking a Swift task
/// of another executor until a value is handed to it.
public class UniversalWaitList<T>: @unchecked Sendable {
    var mutex = pthread_mutex_t()
    var cond = pthread_cond_t()
    var waiters: [UniversalWaiter<T>] = []

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    deinit {
        pthread_mutex_destroy(&mutex)
        pthread_cond_destroy(&cond)
    }

    /// Parks the calling Swift task (not a Curio task) until a waker hands
    /// it a value; `ready`, called under the lock, answers at once when no
    /// wait is needed. Swift cancellation ends the wait with nil, unless a
    /// value was handed over first.
    func parkSwiftTask(ready: () -> T?) async -> T? {
        let w = UniversalWaiter<T>(.swift)
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (c: UnsafeContinuation<T?, Never>) in
                pthread_mutex_lock(&mutex)
                if let v = ready() {
                    pthread_mutex_unlock(&mutex)
                    c.resume(returning: v)
                } else if w.cancelled {
                    pthread_mutex_unlock(&mutex)
                    c.resume(returning: nil)
                } else {
                    w.continuation = c
                    waiters.append(w)
                    pthread_mutex_unlock(&mutex)
                }
            }
        } onCancel: {
            pthread_mutex_lock(&mutex)
            w.cancelled = true
            let i = waiters.firstIndex { $0 === w }
            if let i { waiters.remove(at: i) }
            pthread_mutex_unlock(&mutex)
            // Still listed: nobody handed it a value, so it is ours to end.
            if i != nil { w.continuation?.resume(returning: nil) }
        }
    }
}

/// A thread-safe FIFO queue for kernel tasks, plain threads and Swift tasks
/// on other executors at once (curio's `UniversalQueue`).
///
/// ```swift
/// let q = UniversalQueue<Int>()
/// // a plain thread:          q.put(42)            or  q.blockingGet()
/// // a Curio task:            try await q.get()
/// // any other Swift task:    try await q.get()
/// ```
///
/// Items are handed straight to the longest-waiting getter; a getter that
/// is cancelled after an item was handed to it puts that item back at the
/// front, so nothing is lost or delivered twice.
public final class UniversalQueue<T>: UniversalWaitList<T>, @unchecked Sendable {
    private var items: [T] = []
    private var head = 0

    /// Creates an empty, unbounded queue.
    public override init() {
        super.init()
    }

    /// Items waiting (approximate while others use the queue).
    public var count: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return items.count - head
    }

    /// True when no item waits.
    public var isEmpty: Bool { count == 0 }

    /// Adds an item; never blocks. Safe from any thread or task.
    public func put(_ item: T) {
        pthread_mutex_lock(&mutex)
        if waiters.isEmpty {
            items.append(item)
            pthread_mutex_unlock(&mutex)
            return
        }
        let w = waiters.removeFirst()
        w.item = item
        w.handed = true
        pthread_mutex_unlock(&mutex)
        wake(w)
    }

    private func wake(_ w: UniversalWaiter<T>) {
        switch w.kind {
        case .curio(let kernel, let task):
            kernel.postMessage { k in
                if w.active { k.resume(task, Wake.normal) }
            }
        case .thread:
            pthread_mutex_lock(&mutex)
            pthread_cond_broadcast(&cond)
            pthread_mutex_unlock(&mutex)
        case .swift:
            w.continuation?.resume(returning: w.item)
        }
    }

    /// Takes an item now (under the lock), or nil.
    private func takeLocked() -> T? {
        guard head < items.count else { return nil }
        let v = items[head]
        head += 1
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return v
    }

    /// Returns an item that was handed to a waiter that then gave up.
    private func giveBackLocked(_ item: T) -> UniversalWaiter<T>? {
        if let w = waiters.first {
            waiters.removeFirst()
            w.item = item
            w.handed = true
            return w
        }
        if head > 0 {
            head -= 1
            items[head] = item
        } else {
            items.insert(item, at: 0)
        }
        return nil
    }

    /// Waits for an item. In a Curio task the task suspends (`QUEUE_GET`);
    /// in any other Swift task it suspends on a continuation and honours
    /// Swift cancellation.
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        if let k = Kernel.current, let t = k.current {
            return try await curioGet(k, t, CallSite(file: file, line: line, function: function))
        }
        return try await swiftGet()
    }

    private func curioGet(_ k: Kernel, _ t: AnyCurioTask, _ site: CallSite) async throws -> T {
        pthread_mutex_lock(&mutex)
        if let v = takeLocked() {
            pthread_mutex_unlock(&mutex)
            return v
        }
        let w = UniversalWaiter<T>(.curio(k, t))
        waiters.append(w)
        pthread_mutex_unlock(&mutex)
        defer { w.active = false }
        k.externalWaits += 1
        defer { k.externalWaits -= 1 }
        while true {
            do {
                _ = try await k.block(t, .queueGet, on: nil, deadline: .max, site: site)
            } catch {
                pthread_mutex_lock(&mutex)
                var next: UniversalWaiter<T>?
                if let i = waiters.firstIndex(where: { $0 === w }) {
                    waiters.remove(at: i)
                } else if let item = w.item {
                    next = giveBackLocked(item)
                }
                pthread_mutex_unlock(&mutex)
                if let next { wake(next) }
                throw error
            }
            pthread_mutex_lock(&mutex)
            let handed = w.handed
            pthread_mutex_unlock(&mutex)
            if handed { return w.item! }
        }
    }

    private func swiftGet() async throws -> T {
        guard let v = await parkSwiftTask(ready: { takeLocked() }) else { throw CancellationError() }
        return v
    }

    /// Waits for an item, blocking the calling thread. For plain threads;
    /// a Curio task calling this would block its whole kernel, so it gets
    /// a ``CurioUsageError`` instead. `timeout` in seconds → nil on timeout.
    public func blockingGet(timeout: Double? = nil) throws -> T? {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "blockingGet() would block the kernel thread; use `try await get()` in a task")
        }
        let deadline = try timeout.map { try deadlineAfter($0) }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if let v = takeLocked() { return v }
        let w = UniversalWaiter<T>(.thread)
        waiters.append(w)
        while !w.handed {
            if let deadline {
                let now = ck_now_ns()
                if now >= deadline {
                    waiters.removeAll { $0 === w }
                    return nil
                }
                var ts = absoluteRealtime(afterNanoseconds: deadline - now)
                pthread_cond_timedwait(&cond, &mutex, &ts)
            } else {
                pthread_cond_wait(&cond, &mutex)
            }
        }
        return w.item
    }
}

/// A thread-safe event flag for kernel tasks, plain threads and Swift
/// tasks on other executors (curio's `UniversalEvent`).
///
/// ```swift
/// let ready = UniversalEvent()
/// // a thread:       ready.set()
/// // a Curio task:   try await ready.wait()
/// // a thread:       ready.blockingWait()
/// ```
public final class UniversalEvent: UniversalWaitList<Bool>, @unchecked Sendable {
    private var flag = false

    /// Creates an event that is not set.
    public override init() {
        super.init()
    }

    /// True while set.
    public var isSet: Bool {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return flag
    }

    /// Sets the event and wakes every waiter. Safe from anywhere.
    public func set() {
        pthread_mutex_lock(&mutex)
        flag = true
        let woken = waiters
        waiters.removeAll()
        for w in woken { w.handed = true }
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
        for w in woken {
            switch w.kind {
            case .curio(let kernel, let task):
                kernel.postMessage { k in if w.active { k.resume(task, Wake.normal) } }
            case .thread:
                break
            case .swift:
                w.continuation?.resume(returning: true)
            }
        }
    }

    /// Clears the event.
    public func clear() {
        pthread_mutex_lock(&mutex)
        flag = false
        pthread_mutex_unlock(&mutex)
    }

    /// Waits until the event is set: suspends a Curio task (`EVENT_WAIT`)
    /// or any other Swift task.
    public func wait(file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws {
        if let k = Kernel.current, let t = k.current {
            pthread_mutex_lock(&mutex)
            if flag {
                pthread_mutex_unlock(&mutex)
                return
            }
            let w = UniversalWaiter<Bool>(.curio(k, t))
            waiters.append(w)
            pthread_mutex_unlock(&mutex)
            defer { w.active = false }
            k.externalWaits += 1
            defer { k.externalWaits -= 1 }
            do {
                while true {
                    _ = try await k.block(t, .eventWait, on: nil, deadline: .max,
                                          site: CallSite(file: file, line: line, function: function))
                    pthread_mutex_lock(&mutex)
                    let done = w.handed
                    pthread_mutex_unlock(&mutex)
                    if done { return }
                }
            } catch {
                pthread_mutex_lock(&mutex)
                waiters.removeAll { $0 === w }
                pthread_mutex_unlock(&mutex)
                throw error
            }
        }
        let ok = await parkSwiftTask(ready: { flag ? true : nil })
        if ok == nil { throw CancellationError() }
    }

    /// Blocks the calling thread until the event is set; false when
    /// `timeout` seconds pass first. Not for Curio tasks (it would block the
    /// kernel): they get a ``CurioUsageError``.
    @discardableResult
    public func blockingWait(timeout: Double? = nil) throws -> Bool {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "blockingWait() would block the kernel thread; use `try await wait()` in a task")
        }
        let deadline = try timeout.map { try deadlineAfter($0) }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while !flag {
            if let deadline {
                let now = ck_now_ns()
                if now >= deadline { return false }
                var ts = absoluteRealtime(afterNanoseconds: deadline - now)
                pthread_cond_timedwait(&cond, &mutex, &ts)
            } else {
                pthread_cond_wait(&cond, &mutex)
            }
        }
        return true
    }
}

/// CLOCK_REALTIME `ns` from now, for pthread_cond_timedwait.
func absoluteRealtime(afterNanoseconds ns: Int64) -> timespec {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    let wake = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) + ns
    return timespec(tv_sec: Int(wake / 1_000_000_000), tv_nsec: Int(wake % 1_000_000_000))
}

extension Kernel {
    /// Runs `body` as a new task on this kernel from any thread or task and
    /// returns its value (curio's `kernel.submit`/AWAIT bridge): the same as
    /// ``call(name:_:)``, which throws ``KernelUnavailable`` at once on a
    /// kernel that is not running.
    ///
    /// ```swift
    /// let n = try await kernel.post { try await countConnections() }
    /// ```
    public func post<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await call(name: "post", body)
    }

    /// The same for a plain thread: blocks it until `body` has run
    /// (``callBlocking(name:_:)``).
    @available(*, noasync, message: "postBlocking blocks the thread; use `try await kernel.call { }`")
    public func postBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        if isOnKernelThread {
            throw CurioUsageError(.invalidArgument, "postBlocking() from the kernel's own thread would wait forever; spawn a task instead")
        }
        return try callBlocking(name: "post", body)
    }
}

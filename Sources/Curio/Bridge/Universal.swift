#if canImport(Glibc)
import Glibc
#endif

// The universal primitives (UniversalQueue, UniversalEvent, UniversalResult)
// serve Curio tasks of any kernel, plain threads and Swift tasks on other
// executors at once. Their state sits behind one `ThreadLock` each; a
// waiter is a `UniversalWaiter`, and whoever takes it off a waiter list
// (under the lock) owns waking it and hands it its value first.

/// A pthread mutex and condition variable on the heap: their addresses
/// never move (a stored `pthread_mutex_t` property has no stable address in
/// Swift, and passing `&property` is an exclusivity access that
/// ThreadSanitizer reports as a race). Allocated in `init`, destroyed and
/// freed in `deinit`: they live exactly as long as the primitive that owns
/// this lock, and no thread can be inside them then (every waiter holds a
/// reference to the primitive while it waits).
final class ThreadLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        // Deadlines are on CLOCK_MONOTONIC, as the kernel clock.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Wakes every thread blocked in ``wait(until:)``.
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits (lock held) for a broadcast or the monotonic `deadline` (ns,
    /// `nil`: none). Spurious wake-ups happen: callers re-check.
    func wait(until deadline: Int64?) {
        guard let deadline else {
            pthread_cond_wait(cond, mutex)
            return
        }
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(cond, mutex, &ts)
    }
}

/// One waiter of a universal primitive: a Curio task, a thread blocked on
/// the lock's condition variable, or a Swift task on another executor.
/// Every field but `active` is guarded by the primitive's lock; `active` is
/// its Curio task's kernel-thread state.
final class UniversalWaiter<V>: @unchecked Sendable {
    enum Kind {
        case curio(Kernel, AnyCurioTask)
        case thread
        case swift
    }
    let kind: Kind
    /// What the waker handed over (a queue item; a putter's parked item).
    var item: V?
    var handed = false
    /// Swift waiters: set once suspended.
    var continuation: UnsafeContinuation<Void, Never>?
    /// Swift waiters: gave up (cancelled or timed out) before a hand-off.
    var gaveUp = false
    var timedOut = false
    /// Curio waiters: still suspended in this very wait (kernel thread only).
    var active = true
    init(_ kind: Kind, item: V? = nil) {
        self.kind = kind
        self.item = item
    }

    /// The waiter for the calling context.
    static func forCaller(item: V? = nil) -> UniversalWaiter<V> {
        if let k = Kernel.current, let t = k.current { return UniversalWaiter(.curio(k, t), item: item) }
        return UniversalWaiter(.swift, item: item)
    }
}

/// The lock and the waiting every universal primitive shares.
public class UniversalWaitList: @unchecked Sendable {
    let lock = ThreadLock()

    init() {}

    /// Wakes `w`, which the caller took off its list and handed its value
    /// to (under the lock); call it after unlocking.
    func wake<V>(_ w: UniversalWaiter<V>) {
        switch w.kind {
        case .curio(let kernel, let task):
            kernel.postMessage { k in
                if w.active { k.resume(task, Wake.normal) }
            }
        case .thread:
            lock.withLock { lock.broadcast() }
        case .swift:
            lock.lock()
            let c = w.continuation
            w.continuation = nil
            lock.unlock()
            c?.resume()
        }
    }

    /// Waits until `w` is handed its value: true; false when `deadline`
    /// (ns, nil: none) passes first. `w` must be listed already (under the
    /// lock, by the caller, who then unlocked). `unlist`, called under the
    /// lock, takes `w` off its list if it is still there (true) — a waiter
    /// that is not listed any more was handed its value. A Curio task is
    /// suspended in its kernel (`state`), a thread blocks, a Swift task
    /// suspends; a cancellation (Curio or Swift) throws unless the value was
    /// handed over first — then `handedThenCancelled` decides.
    func waitHanded<V>(_ w: UniversalWaiter<V>, _ state: TaskState, deadline: Int64?, site: CallSite,
                       unlist: @escaping @Sendable (UniversalWaiter<V>) -> Bool,
                       handedThenCancelled: (UniversalWaiter<V>, any Error) throws -> Void) async throws -> Bool {
        switch w.kind {
        case .curio(let k, let t):
            defer { w.active = false }
            let r: WaitOutcome
            do {
                r = try await k.blockExternally(t, state, on: nil, deadline: deadline ?? .max, site: site) {
                    lock.withLock { w.handed }
                }
            } catch {
                let listed = lock.withLock { unlist(w) }
                if listed { throw error }
                try handedThenCancelled(w, error)
                return true
            }
            if r == .timedOut {
                // Not listed any more: handed over meanwhile (its resume,
                // still on the way, finds the wait inactive).
                return !lock.withLock { unlist(w) }
            }
            return true
        case .thread:
            return blockThread(w, deadline: deadline, unlist: unlist)
        case .swift:
            let timer: Task<Void, Never>? = deadline.map { d in
                // The deadline is on this thread's clock (a kernel's may be
                // virtual); the timer task runs elsewhere, so it gets a duration.
                let ns = d - callerClockNanoseconds()
                return Task { [self] in
                    if ns > 0 { try? await Task.sleep(nanoseconds: UInt64(ns)) }
                    if Task.isCancelled { return }
                    lock.lock()
                    let listed = unlist(w)
                    if listed { w.timedOut = true; w.gaveUp = true }
                    let c = listed ? w.continuation : nil
                    if listed { w.continuation = nil }
                    lock.unlock()
                    c?.resume()
                }
            }
            defer { timer?.cancel() }
            await withTaskCancellationHandler {
                await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                    lock.lock()
                    if w.handed || w.gaveUp {
                        lock.unlock()
                        c.resume()
                    } else {
                        w.continuation = c
                        lock.unlock()
                    }
                }
            } onCancel: {
                lock.lock()
                let listed = unlist(w)
                if listed { w.gaveUp = true }
                let c = listed ? w.continuation : nil
                if listed { w.continuation = nil }
                lock.unlock()
                c?.resume()
            }
            let (handed, timedOut) = lock.withLock { (w.handed, w.timedOut) }
            if handed { return true }
            if timedOut { return false }
            throw CancellationError()
        }
    }
}

/// A thread-safe FIFO queue for kernel tasks, plain threads and Swift tasks
/// on other executors at once (curio 1.6's `UniversalQueue`), optionally
/// bounded, with ``taskDone()`` and ``join(timeout:file:line:function:)-(Double?,_,_,_)``.
///
/// ```swift
/// let q = UniversalQueue<Int>(maxSize: 100)
/// // a plain thread:          q.put(42)              or  q.blockingGet()
/// // a Curio task:            try await q.put(42)    /   try await q.get()
/// // any other Swift task:    try await q.put(42)    /   try await q.get()
/// ```
///
/// In async code `put` suspends while a bounded queue is full (in a Curio
/// task it waits in `QUEUE_PUT` without blocking its kernel; a Swift task
/// on another executor suspends). The synchronous ``put(_:)`` is for plain
/// threads: it blocks the thread while the queue is full; on a kernel
/// thread it would stop the whole kernel, so there it is a programming
/// error (a precondition failure naming the mistake) — use `try await put`.
///
/// Items are handed straight to the longest-waiting getter; an item handed
/// to a getter that has not run yet still counts toward `maxSize`, so a
/// producer is never more than `maxSize` items ahead. A getter that is
/// cancelled after an item was handed to it puts that item back at the
/// front, and a putter whose item was taken in just as it was cancelled
/// returns normally (the cancellation waits for its next blocking call), so
/// nothing is lost or delivered twice.
public final class UniversalQueue<T: Sendable>: UniversalWaitList, @unchecked Sendable {
    // Everything below is guarded by `lock`.
    private var items: [T] = []
    private var head = 0
    /// Items handed to getters that have not taken them yet.
    private var handedPending = 0
    private var getters: [UniversalWaiter<T>] = []
    /// Waiting putters, each with its item.
    private var putters: [UniversalWaiter<T>] = []
    private var joiners: [UniversalWaiter<Bool>] = []
    private var unfinished = 0

    /// The bound given at creation; 0 or less means unbounded.
    public let maxSize: Int

    /// Creates a queue holding at most `maxSize` items (0, the default, or
    /// any value below 1: unbounded).
    public init(maxSize: Int = 0) {
        self.maxSize = maxSize
        super.init()
    }

    /// Items waiting (approximate while others use the queue).
    public var count: Int { lock.withLock { items.count - head } }

    /// True when no item waits.
    public var isEmpty: Bool { count == 0 }

    /// True when a bounded queue is full (a put would wait).
    public var isFull: Bool { lock.withLock { fullLocked } }

    private var fullLocked: Bool { maxSize > 0 && items.count - head + handedPending >= maxSize }

    // MARK: Putting

    /// Adds an item, from a plain thread: never blocks an unbounded queue;
    /// blocks the thread while a bounded one is full. On a kernel thread
    /// a full bounded queue is a programming error (use `try await put`).
    public func put(_ item: T) {
        if maxSize > 0 && Kernel.current != nil {
            lock.lock()
            let full = fullLocked || !putters.isEmpty
            lock.unlock()
            precondition(!full, "curio: UniversalQueue.put(_:) without await on a full bounded queue would block the kernel thread; use `try await q.put(item)` in a task")
        }
        _ = try? blockingPutUnchecked(item, deadline: nil)
    }

    /// Adds an item without ever waiting, past the bound if need be: the
    /// kernel's own replies (``Kernel/post(_:)``) use unbounded queues.
    func offer(_ item: T) {
        lock.lock()
        let w = deliverLocked(item)
        unfinished += 1
        lock.unlock()
        if let w { wake(w) }
    }

    /// Adds an item, blocking the calling thread at most `timeout` seconds
    /// (nil: for ever) while the queue is full. Returns false when the time
    /// ran out (the item is not queued). Throws ``CurioUsageError`` on a
    /// kernel thread, which it would block.
    @discardableResult
    public func blockingPut(_ item: T, timeout: Double? = nil) throws -> Bool {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "blockingPut() would block the kernel thread; use `try await put()` in a task")
        }
        return try blockingPutUnchecked(item, deadline: timeout.map { try deadlineAfter($0) })
    }

    private func blockingPutUnchecked(_ item: T, deadline: Int64?) throws -> Bool {
        lock.lock()
        if let w = tryPutLocked(item) {
            lock.unlock()
            if let w = w { wake(w) }
            return true
        }
        let w = UniversalWaiter<T>(.thread, item: item)
        putters.append(w)
        lock.unlock()
        // A thread wait is synchronous; the async signature is shared.
        return blockThread(w, deadline: deadline) { [self] in unlistPutter($0) }
    }

    /// Adds an item, waiting while the queue is full: a Curio task waits in
    /// `QUEUE_PUT`; a Swift task on another executor suspends (Swift
    /// cancellation ends the wait with `CancellationError`).
    public func put(_ item: T, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws {
        _ = try await put(item, deadline: nil, site: CallSite(file: file, line: line, function: function))
    }

    /// Adds an item, waiting at most `timeout` seconds for room. Returns
    /// false (and the item is not queued) when the time ran out.
    @discardableResult
    public func put(_ item: T, timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> Bool {
        try await put(item, deadline: try deadlineAfter(timeout), site: CallSite(file: file, line: line, function: function))
    }

    private func put(_ item: T, deadline: Int64?, site: CallSite) async throws -> Bool {
        lock.lock()
        if let w = tryPutLocked(item) {
            lock.unlock()
            if let w = w { wake(w) }
            return true
        }
        let w = UniversalWaiter<T>.forCaller(item: item)
        putters.append(w)
        lock.unlock()
        return try await waitHanded(w, .queuePut, deadline: deadline, site: site,
                                    unlist: { [self] in unlistPutter($0) },
                                    handedThenCancelled: { w, error in
            // The item went in just as the cancellation came: the put is
            // done; the cancellation waits for the next blocking call.
            if case .curio(_, let t) = w.kind, t.pendingCancel == nil { t.pendingCancel = error }
        })
    }

    /// Puts `item` if there is room (lock held): `.some(waiter to wake or
    /// nil)` when it went in, nil when the caller must wait.
    private func tryPutLocked(_ item: T) -> UniversalWaiter<T>?? {
        if fullLocked || !putters.isEmpty { return nil }
        unfinished += 1
        return .some(deliverLocked(item))
    }

    /// Gives `item` to the first waiting getter (returned, to be woken) or
    /// appends it. Lock held.
    private func deliverLocked(_ item: T) -> UniversalWaiter<T>? {
        if !getters.isEmpty {
            let g = getters.removeFirst()
            g.item = item
            g.handed = true
            handedPending += 1
            return g
        }
        items.append(item)
        return nil
    }

    private func unlistPutter(_ w: UniversalWaiter<T>) -> Bool {
        guard let i = putters.firstIndex(where: { $0 === w }) else { return false }
        putters.remove(at: i)
        return true
    }

    /// Room was made: waiting putters' items go in, first come first
    /// served. Lock held; returns the waiters to wake.
    private func admitPuttersLocked() -> [any WakeableWaiter] {
        var woken: [any WakeableWaiter] = []
        while !putters.isEmpty && !fullLocked {
            let p = putters.removeFirst()
            p.handed = true
            unfinished += 1
            if let g = deliverLocked(p.item!) { woken.append(g) }
            woken.append(p)
        }
        return woken
    }

    private func wakeAll(_ ws: [any WakeableWaiter]) {
        for w in ws { w.wakeUp(in: self) }
    }

    // MARK: Getting

    /// Takes an item now (lock held), or nil.
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

    /// Returns an item that was handed to a getter that then gave up.
    private func giveBackLocked(_ item: T) -> UniversalWaiter<T>? {
        handedPending -= 1
        if let g = getters.first {
            getters.removeFirst()
            g.item = item
            g.handed = true
            handedPending += 1
            return g
        }
        if head > 0 {
            head -= 1
            items[head] = item
        } else {
            items.insert(item, at: 0)
        }
        return nil
    }

    private func unlistGetter(_ w: UniversalWaiter<T>) -> Bool {
        guard let i = getters.firstIndex(where: { $0 === w }) else { return false }
        getters.remove(at: i)
        return true
    }

    /// Waits for an item. In a Curio task the task suspends (`QUEUE_GET`);
    /// in any other Swift task it suspends on a continuation and honours
    /// Swift cancellation.
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        try await get(deadline: nil, site: CallSite(file: file, line: line, function: function))!
    }

    /// Waits at most `timeout` seconds for an item; nil when the time ran out.
    public func get(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T? {
        try await get(deadline: try deadlineAfter(timeout), site: CallSite(file: file, line: line, function: function))
    }

    private func get(deadline: Int64?, site: CallSite) async throws -> T? {
        lock.lock()
        if let v = takeLocked() {
            let woken = admitPuttersLocked()
            lock.unlock()
            wakeAll(woken)
            return v
        }
        let w = UniversalWaiter<T>.forCaller()
        getters.append(w)
        lock.unlock()
        let got = try await waitHanded(w, .queueGet, deadline: deadline, site: site,
                                       unlist: { [self] in unlistGetter($0) },
                                       handedThenCancelled: { [self] w, error in
            lock.lock()
            let next = giveBackLocked(w.item!)
            lock.unlock()
            if let next { wake(next) }
            throw error
        })
        guard got else { return nil }
        return takeHanded(w)
    }

    /// The item handed to `w`; it stops counting as in flight.
    private func takeHanded(_ w: UniversalWaiter<T>) -> T {
        lock.lock()
        handedPending -= 1
        let v = w.item!
        let woken = admitPuttersLocked()
        lock.unlock()
        wakeAll(woken)
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
        lock.lock()
        if let v = takeLocked() {
            let woken = admitPuttersLocked()
            lock.unlock()
            wakeAll(woken)
            return v
        }
        let w = UniversalWaiter<T>(.thread)
        getters.append(w)
        lock.unlock()
        guard blockThread(w, deadline: deadline, unlist: { [self] in unlistGetter($0) }) else { return nil }
        return takeHanded(w)
    }

    // MARK: taskDone / join

    /// Marks one item got from the queue as handled; from any thread or
    /// task. Throws ``CurioUsageError`` when called more times than items
    /// were put.
    public func taskDone() throws {
        lock.lock()
        guard unfinished > 0 else {
            lock.unlock()
            throw CurioUsageError(.invalidArgument, "UniversalQueue.taskDone(): called more times than there were items put")
        }
        unfinished -= 1
        var woken: [UniversalWaiter<Bool>] = []
        if unfinished == 0 {
            woken = joiners
            joiners.removeAll()
            for j in woken { j.handed = true }
        }
        lock.unlock()
        for j in woken { wake(j) }
    }

    /// Waits until every item put has been marked done with ``taskDone()``:
    /// true, or false when `timeout` seconds pass first. From a Curio task
    /// (`QUEUE_JOIN`) or any Swift task.
    @discardableResult
    public func join(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        let deadline = try timeout.map { try deadlineAfter($0) }
        lock.lock()
        if unfinished == 0 {
            lock.unlock()
            return true
        }
        let w = UniversalWaiter<Bool>.forCaller()
        joiners.append(w)
        lock.unlock()
        return try await waitHanded(w, .queueJoin, deadline: deadline,
                                    site: CallSite(file: file, line: line, function: function),
                                    unlist: { [self] in unlistJoiner($0) },
                                    handedThenCancelled: { _, error in throw error })
    }

    /// ``join(timeout:file:line:function:)`` for a plain thread.
    @discardableResult
    public func blockingJoin(timeout: Double? = nil) throws -> Bool {
        if Kernel.current != nil {
            throw CurioUsageError(.invalidArgument, "blockingJoin() would block the kernel thread; use `try await join()` in a task")
        }
        let deadline = try timeout.map { try deadlineAfter($0) }
        lock.lock()
        if unfinished == 0 {
            lock.unlock()
            return true
        }
        let w = UniversalWaiter<Bool>(.thread)
        joiners.append(w)
        lock.unlock()
        return blockThread(w, deadline: deadline) { [self] in unlistJoiner($0) }
    }

    private func unlistJoiner(_ w: UniversalWaiter<Bool>) -> Bool {
        guard let i = joiners.firstIndex(where: { $0 === w }) else { return false }
        joiners.remove(at: i)
        return true
    }
}

/// A waiter of any value type, for waking a mixed list.
protocol WakeableWaiter {
    func wakeUp(in list: UniversalWaitList)
}

extension UniversalWaiter: WakeableWaiter {
    func wakeUp(in list: UniversalWaitList) { list.wake(self) }
}

extension UniversalWaitList {
    /// Blocks the calling thread until `w` is handed its value (true) or
    /// `deadline` passes (false). `w` is listed; `unlist` as in
    /// ``waitHanded(_:_:deadline:site:unlist:handedThenCancelled:)``.
    func blockThread<V>(_ w: UniversalWaiter<V>, deadline: Int64?,
                        unlist: (UniversalWaiter<V>) -> Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        while !w.handed {
            if let deadline, monotonicNanoseconds() >= deadline {
                if unlist(w) { return false }
                continue
            }
            lock.wait(until: deadline)
        }
        return true
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
public final class UniversalEvent: UniversalWaitList, @unchecked Sendable {
    // Guarded by `lock`.
    private var flag = false
    private var waiters: [UniversalWaiter<Bool>] = []

    /// Creates an event that is not set.
    public override init() {
        super.init()
    }

    /// True while set.
    public var isSet: Bool { lock.withLock { flag } }

    /// Sets the event and wakes every waiter. Safe from anywhere.
    public func set() {
        lock.lock()
        flag = true
        let woken = waiters
        waiters.removeAll()
        for w in woken { w.handed = true }
        lock.broadcast()
        lock.unlock()
        for w in woken {
            if case .thread = w.kind { continue }
            wake(w)
        }
    }

    /// Clears the event.
    public func clear() {
        lock.withLock { flag = false }
    }

    /// Waits until the event is set: suspends a Curio task (`EVENT_WAIT`)
    /// or any other Swift task (which honours Swift cancellation).
    public func wait(file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws {
        _ = try await wait(deadline: nil, site: CallSite(file: file, line: line, function: function))
    }

    /// Waits at most `timeout` seconds: true once set, false when the time
    /// ran out.
    @discardableResult
    public func wait(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        try await wait(deadline: try deadlineAfter(timeout), site: CallSite(file: file, line: line, function: function))
    }

    private func wait(deadline: Int64?, site: CallSite) async throws -> Bool {
        lock.lock()
        if flag {
            lock.unlock()
            return true
        }
        let w = UniversalWaiter<Bool>.forCaller()
        waiters.append(w)
        lock.unlock()
        return try await waitHanded(w, .eventWait, deadline: deadline, site: site,
                                    unlist: { [self] in unlist($0) },
                                    handedThenCancelled: { _, _ in })
    }

    private func unlist(_ w: UniversalWaiter<Bool>) -> Bool {
        guard let i = waiters.firstIndex(where: { $0 === w }) else { return false }
        waiters.remove(at: i)
        return true
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
        lock.lock()
        defer { lock.unlock() }
        while !flag {
            if let deadline, monotonicNanoseconds() >= deadline { return false }
            lock.wait(until: deadline)
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

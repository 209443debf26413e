// The three queues share one core, `QueueCore`, parameterized by the
// buffer discipline (FIFO ring, LIFO stack, stable binary heap); the public
// classes only forward to it. The core's generic half (buffer and parked
// items) is `@inlinable`, so a program's `Queue<Int>` is specialized for
// Int — unspecialized generic code spends a third of a hand-off looking up
// type metadata. Its non-generic half, `QueueWaits`, does all the waiting
// and is compiled once, here.
//
// Hand-off, so that cancellation never loses or duplicates an item:
// - getters wait only while no item is available; a put that finds one
//   waiting pushes its item and *reserves* it (`reserved` += 1) before
//   waking the first getter. Reserved items are not available to anybody
//   else (`count` leaves them out, so fast-path getters cannot take them);
//   the woken getter, when it runs, releases one reservation and pops. The
//   discipline decides which item it gets at that moment (FIFO: the front).
// - reserved items still count toward `maxSize` (they are in the buffer
//   until their getter runs): a producer is never more than `maxSize`
//   items ahead of the consumers, also when getters wait.
// - putters wait only while the buffer is full, with their item parked in
//   `parked`; a get that frees a place moves the first putter's item into
//   the buffer (promising it to the next waiting getter, if any) and wakes
//   the putter, whose put has then completed.
// - a waiter that is cancelled or times out was unlinked by the kernel
//   without being popped, so nothing was reserved for it; a putter takes
//   its parked item back.
// No per-item dictionary on the hand-off path: the getter side costs one
// counter.

/// The storage discipline of a queue: where `push` puts an item and which
/// one `pop` takes.
@usableFromInline
protocol QueueBuffer {
    associatedtype Element
    init()
    var count: Int { get }
    mutating func push(_ item: Element)
    /// Takes the next item; `count` must be > 0.
    mutating func pop() -> Element
}

/// First in, first out: a growable ring.
@usableFromInline
struct FIFOBuffer<Element>: QueueBuffer {
    @usableFromInline var slots: ContiguousArray<Element?> = []
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable
    mutating func push(_ item: Element) {
        if count == slots.count { grow() }
        var i = head + count
        if i >= slots.count { i -= slots.count }
        slots[i] = item
        count += 1
    }

    @inlinable
    mutating func pop() -> Element {
        let item = slots[head]!
        slots[head] = nil
        head += 1
        if head == slots.count { head = 0 }
        count -= 1
        return item
    }

    @inlinable
    mutating func grow() {
        let capacity = Swift.max(8, slots.count * 2)
        var bigger = ContiguousArray<Element?>()
        bigger.reserveCapacity(capacity)
        for k in 0..<count {
            var i = head + k
            if i >= slots.count { i -= slots.count }
            bigger.append(slots[i])
        }
        bigger.append(contentsOf: repeatElement(nil, count: capacity - count))
        slots = bigger
        head = 0
    }
}

/// Last in, first out.
@usableFromInline
struct LIFOBuffer<Element>: QueueBuffer {
    @usableFromInline var items: ContiguousArray<Element> = []
    @inlinable init() {}
    @inlinable var count: Int { items.count }
    @inlinable mutating func push(_ item: Element) { items.append(item) }
    @inlinable mutating func pop() -> Element { items.removeLast() }
}

/// Smallest first; equal items come out in the order they were put (each
/// carries its arrival number).
@usableFromInline
struct HeapBuffer<Element: Comparable>: QueueBuffer {
    @usableFromInline var heap: ContiguousArray<(item: Element, seq: UInt64)> = []
    @usableFromInline var nextSeq: UInt64 = 0
    @inlinable init() {}
    @inlinable var count: Int { heap.count }

    @inlinable
    func before(_ a: Int, _ b: Int) -> Bool {
        let x = heap[a], y = heap[b]
        if x.item < y.item { return true }
        if y.item < x.item { return false }
        return x.seq < y.seq
    }

    @inlinable
    mutating func push(_ item: Element) {
        heap.append((item, nextSeq))
        nextSeq &+= 1
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard before(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    @inlinable
    mutating func pop() -> Element {
        let top = heap[0].item
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && before(l, m) { m = l }
                if r < heap.count && before(r, m) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// Items parked by waiting putters, keyed by task. They are nearly always
/// taken in the order they were added (putters are served first come,
/// first served), so a take looks at the oldest entry first and only
/// scans when a putter in the middle gave up (cancelled or timed out).
@usableFromInline
struct ParkedItems<Element> {
    @usableFromInline var keys: ContiguousArray<ObjectIdentifier?> = []
    @usableFromInline var items: ContiguousArray<Element?> = []
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable
    mutating func add(_ key: ObjectIdentifier, _ item: Element) {
        if head > 0 && head == keys.count {
            keys.removeAll(keepingCapacity: true)
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= keys.count {
            keys.removeFirst(head)
            items.removeFirst(head)
            head = 0
        }
        keys.append(key)
        items.append(item)
        count += 1
    }

    /// Takes the item parked for `key`, if any.
    @inlinable
    mutating func take(_ key: ObjectIdentifier) -> Element? {
        var i = head
        while i < keys.count {
            if keys[i] == key {
                let item = items[i]
                keys[i] = nil
                items[i] = nil
                count -= 1
                // Skip the entries already taken at the front.
                while head < keys.count && keys[head] == nil { head += 1 }
                return item
            }
            i += 1
        }
        return nil
    }
}

/// The non-generic half of every queue: the waiting, the counts and the
/// wake-ups. Kernel-thread only.
@usableFromInline
class QueueWaits {
    /// As given; 0 or less means unbounded.
    @usableFromInline let maxSize: Int
    /// Items in the buffer promised to getters that were woken and have
    /// not run yet.
    @usableFromInline final var reserved = 0
    /// Items put and not yet marked done with `taskDone`.
    final var unfinished = 0
    private let getters = WaitQueue()
    private let putters = WaitQueue()
    private let joiners = WaitQueue()
    private var affinity = Affinity()

    @usableFromInline
    init(maxSize: Int) {
        self.maxSize = maxSize
    }

    /// Tasks waiting to get, to put, to join (for tests).
    final var waiterCounts: (getters: Int, putters: Int, joiners: Int) {
        (getters.count, putters.count, joiners.count)
    }

    /// The calling task, allowed to use this queue, and the deadline of
    /// `timeout`, validated.
    @usableFromInline
    final func begin(_ what: StaticString, _ timeout: Double?) throws -> (AnyCurioTask, Int64) {
        let t = try affinity.task(what)
        return (t, try syncDeadline(timeout))
    }

    @usableFromInline
    final var hasGetters: Bool { !getters.isEmpty }

    /// The item just pushed is promised to the first waiting getter
    /// (`counted`: it was counted as unfinished already).
    @usableFromInline
    final func promiseToFirstGetter(_ t: AnyCurioTask, counted: Bool = false) {
        reserved += 1
        if !counted { unfinished += 1 }
        t.kernel.wakeFirst(getters)
    }

    /// An item went into the buffer without waiting.
    @usableFromInline
    final func counted() {
        unfinished += 1
    }

    /// The putter that has waited longest, if any.
    @usableFromInline
    final var firstPutter: ObjectIdentifier? {
        if let p = putters.first { return ObjectIdentifier(p) }
        return nil
    }

    /// The first putter's item was moved into the buffer: its put is done.
    @usableFromInline
    final func completeFirstPutter(_ t: AnyCurioTask) {
        unfinished += 1
        t.kernel.wakeFirst(putters)
    }

    /// Waits for room; true when a getter moved the item in, false on
    /// timeout.
    @usableFromInline
    final func waitToPut(_ t: AnyCurioTask, _ deadline: Int64, _ site: CallSite) async throws -> Bool {
        let r = try await t.kernel.block(t, .queuePut, on: putters, deadline: deadline, site: site)
        return r != .timedOut
    }

    /// Waits for an item; true when one was reserved for the caller (the
    /// reservation is released: pop it now), false on timeout.
    @usableFromInline
    final func waitToGet(_ t: AnyCurioTask, _ deadline: Int64, _ site: CallSite) async throws -> Bool {
        let r = try await t.kernel.block(t, .queueGet, on: getters, deadline: deadline, site: site)
        if r == .timedOut { return false }
        precondition(reserved > 0, "curio: a getter woken without an item")
        reserved -= 1
        return true
    }

    /// Waits until every item put has been marked done.
    final func join(timeout: Double?, site: CallSite, _ what: StaticString) async throws -> Bool {
        let (t, deadline) = try begin(what, timeout)
        if unfinished == 0 { return true }
        let r = try await t.kernel.block(t, .queueJoin, on: joiners, deadline: deadline, site: site)
        return r != .timedOut
    }

    final func taskDone(_ what: StaticString) throws {
        let t = try affinity.task(what)
        guard unfinished > 0 else {
            throw CurioUsageError(.invalidArgument,
                "\(what): called more times than there were items put (every taskDone() must match one item got from the queue)")
        }
        unfinished -= 1
        if unfinished == 0 { t.kernel.wakeAll(joiners) }
    }
}

/// A queue: the generic half (buffer, parked items) over ``QueueWaits``.
@usableFromInline
final class QueueCore<Buffer: QueueBuffer>: QueueWaits {
    @usableFromInline typealias Element = Buffer.Element

    @usableFromInline var buffer = Buffer()
    /// Items of putters waiting for room.
    @usableFromInline var parked = ParkedItems<Element>()

    @usableFromInline
    override init(maxSize: Int) {
        super.init(maxSize: maxSize)
    }

    /// Items available to a get (reserved ones are already promised).
    @inlinable var count: Int { buffer.count - reserved }
    @inlinable var isEmpty: Bool { count == 0 }
    /// Reserved items count: they stay in the buffer until their getter runs.
    @inlinable var isFull: Bool { maxSize > 0 && buffer.count >= maxSize }
    /// Items reserved for woken getters not yet run, plus items of waiting
    /// putters (for tests: 0 once every waiter has run).
    var itemsInFlight: Int { reserved + parked.count }

    /// Puts `item`; false when the deadline passed first.
    @inlinable
    func put(_ item: Element, timeout: Double?, site: CallSite, _ what: StaticString) async throws -> Bool {
        let (t, deadline) = try begin(what, timeout)
        if !isFull {
            buffer.push(item)
            if hasGetters {
                // Getters wait only while nothing is available: promise the
                // item to the first one.
                assert(count == 1, "a queue with items and waiting getters: hand-off broken")
                promiseToFirstGetter(t)
            } else {
                counted()
            }
            return true
        }
        let key = ObjectIdentifier(t)
        parked.add(key, item)
        let done: Bool
        do {
            done = try await waitToPut(t, deadline, site)
        } catch {
            _ = parked.take(key)
            throw error
        }
        // Done: a getter moved the item into the buffer (and counted it).
        if !done { _ = parked.take(key) }
        return done
    }

    /// Gets the next item; nil (as `Element?`) when the deadline passed first.
    @inlinable
    func get(timeout: Double?, site: CallSite, _ what: StaticString) async throws -> Element? {
        let (t, deadline) = try begin(what, timeout)
        if count > 0 {
            let item = buffer.pop()
            admitFirstPutter(t)
            return item
        }
        guard try await waitToGet(t, deadline, site) else { return nil }
        // Woken by a put: one item in the buffer was ours.
        let item = buffer.pop()
        admitFirstPutter(t)
        return .some(item)
    }

    /// A place just freed: the longest-waiting putter's item goes in, and
    /// to the first waiting getter if there is one.
    @inlinable
    func admitFirstPutter(_ t: AnyCurioTask) {
        guard let p = firstPutter else { return }
        guard let moved = parked.take(p) else {
            preconditionFailure("curio: a waiting putter without its item")
        }
        buffer.push(moved)
        completeFirstPutter(t)
        if hasGetters { promiseToFirstGetter(t, counted: true) }
    }
}

// MARK: - The public queues

/// A first-in, first-out queue for the tasks of one kernel (curio's
/// `Queue`).
///
/// ```swift
/// let q = Queue<String>(maxSize: 10)
///
/// // producer
/// for job in jobs { try await q.put(job) }     // waits while 10 items are queued
///
/// // consumer
/// while true {
///     let job = try await q.get()              // waits while the queue is empty
///     try await handle(job)
///     try await q.taskDone()
/// }
///
/// try await q.join()                           // every job handled
/// ```
///
/// `maxSize` 0 (the default, or any value below 1) means unbounded: ``put(_:file:line:function:)``
/// never waits. Waiting getters and putters are served first come, first
/// served, and a task cancelled or timed out while waiting neither takes
/// nor loses an item. Getting from a non-empty queue and putting into one
/// with room return at once, without switching tasks.
///
/// The `timeout:` variants return `false` / `nil` when the time runs out,
/// as the other synchronization primitives do (and `threading`); with a
/// timeout of 0 the call gives up at the kernel's next turn. `for try await
/// item in queue` gets items forever. A queue binds to the kernel of the first task that
/// uses it; to cross kernels or threads use `UniversalQueue`.
public final class Queue<T>: @unchecked Sendable {
    @usableFromInline let core: QueueCore<FIFOBuffer<T>>

    /// Creates a queue holding at most `maxSize` items (0: unbounded).
    public init(maxSize: Int = 0) {
        core = QueueCore(maxSize: maxSize)
    }

    /// The bound given at creation; 0 or less means unbounded.
    public var maxSize: Int { core.maxSize }
    /// Items in the queue that a get could take now (an item already
    /// promised to a woken getter is not counted).
    @inlinable public var count: Int { core.count }
    /// True when the queue holds no item.
    @inlinable public var isEmpty: Bool { core.isEmpty }
    /// True when a bounded queue holds `maxSize` items (a put would wait).
    /// Items already promised to woken getters that have not run yet still
    /// count, so a producer is never more than `maxSize` items ahead.
    @inlinable public var isFull: Bool { core.isFull }

    /// Adds `item` at the back, waiting while the queue is full.
    @inlinable
    public func put(_ item: T, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws {
        _ = try await core.put(item, timeout: nil, site: CallSite(file: file, line: line, function: function), "Queue.put")
    }

    /// Adds `item`, waiting at most `timeout` seconds for room. Returns
    /// false (and the item is not queued) when the time ran out.
    @discardableResult
    @inlinable
    public func put(_ item: T, timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> Bool {
        try await core.put(item, timeout: timeout, site: CallSite(file: file, line: line, function: function), "Queue.put")
    }

    /// Takes the item at the front, waiting while the queue is empty.
    @inlinable
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        try await core.get(timeout: nil, site: CallSite(file: file, line: line, function: function), "Queue.get")!
    }

    /// Takes the item at the front, waiting at most `timeout` seconds.
    /// Returns nil when the time ran out.
    @inlinable
    public func get(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T? {
        try await core.get(timeout: timeout, site: CallSite(file: file, line: line, function: function), "Queue.get")
    }

    /// Waits until every item put has been marked done with ``taskDone()``.
    /// Returns true, or false when `timeout` seconds pass first.
    @discardableResult
    public func join(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        try await core.join(timeout: timeout, site: CallSite(file: file, line: line, function: function), "Queue.join")
    }

    /// Marks one item got from the queue as handled. Throws
    /// ``CurioUsageError`` when called more times than items were put.
    public func taskDone() async throws {
        try core.taskDone("Queue.taskDone")
    }
}

/// A queue that gives the smallest item first (curio's `PriorityQueue`);
/// items that compare equal come out in the order they were put.
///
/// ```swift
/// let q = PriorityQueue<Job>()           // Job: Comparable by priority
/// try await q.put(Job(priority: 2, "later"))
/// try await q.put(Job(priority: 1, "first"))
/// let next = try await q.get()           // priority 1
/// ```
///
/// Waiting, fairness, bounds, timeouts and ``join(timeout:file:line:function:)-(Double?,_,_,_)``
/// / ``taskDone()`` work as in ``Queue``.
public final class PriorityQueue<T: Comparable>: @unchecked Sendable {
    @usableFromInline let core: QueueCore<HeapBuffer<T>>

    /// Creates a priority queue holding at most `maxSize` items (0: unbounded).
    public init(maxSize: Int = 0) {
        core = QueueCore(maxSize: maxSize)
    }

    /// The bound given at creation; 0 or less means unbounded.
    public var maxSize: Int { core.maxSize }
    /// Items in the queue that a get could take now (an item already
    /// promised to a woken getter is not counted).
    @inlinable public var count: Int { core.count }
    /// True when the queue holds no item.
    @inlinable public var isEmpty: Bool { core.isEmpty }
    /// True when a bounded queue holds `maxSize` items (a put would wait).
    /// Items already promised to woken getters that have not run yet still
    /// count, so a producer is never more than `maxSize` items ahead.
    @inlinable public var isFull: Bool { core.isFull }

    /// Adds `item`, waiting while the queue is full.
    @inlinable
    public func put(_ item: T, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws {
        _ = try await core.put(item, timeout: nil, site: CallSite(file: file, line: line, function: function), "PriorityQueue.put")
    }

    /// Adds `item`, waiting at most `timeout` seconds for room. Returns
    /// false (and the item is not queued) when the time ran out.
    @discardableResult
    @inlinable
    public func put(_ item: T, timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> Bool {
        try await core.put(item, timeout: timeout, site: CallSite(file: file, line: line, function: function), "PriorityQueue.put")
    }

    /// Takes the smallest item, waiting while the queue is empty.
    @inlinable
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        try await core.get(timeout: nil, site: CallSite(file: file, line: line, function: function), "PriorityQueue.get")!
    }

    /// Takes the smallest item, waiting at most `timeout` seconds. Returns
    /// nil when the time ran out.
    @inlinable
    public func get(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T? {
        try await core.get(timeout: timeout, site: CallSite(file: file, line: line, function: function), "PriorityQueue.get")
    }

    /// Waits until every item put has been marked done with ``taskDone()``.
    @discardableResult
    public func join(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        try await core.join(timeout: timeout, site: CallSite(file: file, line: line, function: function), "PriorityQueue.join")
    }

    /// Marks one item got from the queue as handled.
    public func taskDone() async throws {
        try core.taskDone("PriorityQueue.taskDone")
    }
}

/// A queue that gives the most recently put item first (curio's
/// `LifoQueue`): a stack that tasks can wait on.
///
/// ```swift
/// let stack = LifoQueue<Int>()
/// try await stack.put(1)
/// try await stack.put(2)
/// let top = try await stack.get()        // 2
/// ```
///
/// Waiting, fairness, bounds, timeouts and ``join(timeout:file:line:function:)-(Double?,_,_,_)``
/// / ``taskDone()`` work as in ``Queue``.
public final class LifoQueue<T>: @unchecked Sendable {
    @usableFromInline let core: QueueCore<LIFOBuffer<T>>

    /// Creates a LIFO queue holding at most `maxSize` items (0: unbounded).
    public init(maxSize: Int = 0) {
        core = QueueCore(maxSize: maxSize)
    }

    /// The bound given at creation; 0 or less means unbounded.
    public var maxSize: Int { core.maxSize }
    /// Items in the queue that a get could take now (an item already
    /// promised to a woken getter is not counted).
    @inlinable public var count: Int { core.count }
    /// True when the queue holds no item.
    @inlinable public var isEmpty: Bool { core.isEmpty }
    /// True when a bounded queue holds `maxSize` items (a put would wait).
    /// Items already promised to woken getters that have not run yet still
    /// count, so a producer is never more than `maxSize` items ahead.
    @inlinable public var isFull: Bool { core.isFull }

    /// Pushes `item`, waiting while the queue is full.
    @inlinable
    public func put(_ item: T, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws {
        _ = try await core.put(item, timeout: nil, site: CallSite(file: file, line: line, function: function), "LifoQueue.put")
    }

    /// Pushes `item`, waiting at most `timeout` seconds for room. Returns
    /// false (and the item is not queued) when the time ran out.
    @discardableResult
    @inlinable
    public func put(_ item: T, timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> Bool {
        try await core.put(item, timeout: timeout, site: CallSite(file: file, line: line, function: function), "LifoQueue.put")
    }

    /// Pops the most recent item, waiting while the queue is empty.
    @inlinable
    public func get(file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T {
        try await core.get(timeout: nil, site: CallSite(file: file, line: line, function: function), "LifoQueue.get")!
    }

    /// Pops the most recent item, waiting at most `timeout` seconds.
    /// Returns nil when the time ran out.
    @inlinable
    public func get(timeout: Double, file: StaticString = #filePath, line: UInt = #line,
                    function: StaticString = #function) async throws -> T? {
        try await core.get(timeout: timeout, site: CallSite(file: file, line: line, function: function), "LifoQueue.get")
    }

    /// Waits until every item put has been marked done with ``taskDone()``.
    @discardableResult
    public func join(timeout: Double? = nil, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> Bool {
        try await core.join(timeout: timeout, site: CallSite(file: file, line: line, function: function), "LifoQueue.join")
    }

    /// Marks one item got from the queue as handled.
    public func taskDone() async throws {
        try core.taskDone("LifoQueue.taskDone")
    }
}

// MARK: - Async iteration

/// Iterating a queue gets its items one after another, waiting whenever it
/// is empty, and never ends by itself (curio's `async for item in queue`);
/// leave the loop with `break`, or by cancellation.
///
/// ```swift
/// for try await job in jobs {
///     try await handle(job)
///     try await jobs.taskDone()
/// }
/// ```
extension Queue: AsyncSequence {
    public typealias Element = T
    public typealias Failure = any Error

    /// Gets the queue's items, one per ``next()``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let queue: Queue<T>
        /// Waits for and returns the next item; never nil.
        @inlinable public mutating func next() async throws -> T? { try await queue.get() }
    }

    /// An iterator that gets items from the queue.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: self) }
}

/// Iterating gets the smallest item each time, waiting whenever the queue is
/// empty; the loop never ends by itself (see ``Queue``).
extension PriorityQueue: AsyncSequence {
    public typealias Element = T
    public typealias Failure = any Error

    /// Gets the queue's items, one per ``next()``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let queue: PriorityQueue<T>
        /// Waits for and returns the smallest item; never nil.
        @inlinable public mutating func next() async throws -> T? { try await queue.get() }
    }

    /// An iterator that gets items from the queue.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: self) }
}

/// Iterating gets the most recent item each time, waiting whenever the
/// queue is empty; the loop never ends by itself (see ``Queue``).
extension LifoQueue: AsyncSequence {
    public typealias Element = T
    public typealias Failure = any Error

    /// Gets the queue's items, one per ``next()``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let queue: LifoQueue<T>
        /// Waits for and returns the most recent item; never nil.
        @inlinable public mutating func next() async throws -> T? { try await queue.get() }
    }

    /// An iterator that gets items from the queue.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: self) }
}

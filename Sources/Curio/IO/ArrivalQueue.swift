/// What a multishot request delivered and its consumer has not taken yet,
/// in arrival order: chunks of a streaming receive, descriptors of a
/// multishot accept. A ring of slots whose size is a power of two, grown
/// (doubled) only when full, so a steady stream allocates nothing once it
/// has reached its working size, and taking an item never moves the others
/// (an array emptied on every catch-up cost a `replaceSubrange` per chunk).
struct ArrivalQueue<Element> {
    private var slots = ContiguousArray<Element?>()
    private var head = 0
    private var stored = 0

    /// Items waiting.
    var count: Int { stored }

    mutating func append(_ item: Element) {
        if stored == slots.count { grow() }
        slots[(head + stored) & (slots.count - 1)] = item
        stored += 1
    }

    mutating func popFirst() -> Element? {
        guard stored > 0 else { return nil }
        let item = slots[head].take()
        head = (head + 1) & (slots.count - 1)
        stored -= 1
        return item
    }

    /// Doubles the ring (4 slots at first), keeping the items in order from slot 0.
    private mutating func grow() {
        var bigger = ContiguousArray<Element?>(repeating: nil, count: Swift.max(4, slots.count * 2))
        for i in 0..<stored {
            bigger[i] = slots[(head + i) & (slots.count - 1)].take()
        }
        slots = bigger
        head = 0
    }
}

/// The kernel side of one multishot request (a streaming receive, a
/// multishot accept): what it delivered and nobody took yet, its end, and
/// the task waiting for either. It is the C request's token, retained
/// until the end is dispatched. Subclasses say what becomes of an item
/// nobody will take (``discard(_:)``).
///
/// @unchecked Sendable: every member is touched only on its kernel's
/// thread (the C kernel reports to the thread that runs it, and the
/// consumer is one of the kernel's tasks); other threads only post back
/// there.
class MultishotReceiver<Item>: @unchecked Sendable {
    let kernel: Kernel
    var handle: UInt64 = 0
    let waiters = WaitQueue()
    // Touched on every item without run-time exclusivity checks: only the
    // kernel's thread uses them, and an access (an append or a pop, a read
    // of `end`) calls out to nothing, so no other access of the same field
    // can begin while it lasts, wherever the arrival comes from.
    @exclusivity(unchecked) private var items = ArrivalQueue<Item>()
    @exclusivity(unchecked) private(set) var end: Int?
    /// The consumer is gone: what still arrives is discarded at once.
    private(set) var abandoned = false

    init(kernel: Kernel) { self.kernel = kernel }

    /// Items waiting to be taken.
    var waitingCount: Int { items.count }

    func popFirst() -> Item? { items.popFirst() }

    /// Gives back an item nobody will take (a buffer, a descriptor).
    func discard(_ item: Item) {}

    /// The request delivered `item` (kernel thread, from dispatch).
    func arrived(_ item: Item) {
        if abandoned {
            discard(item)
            return
        }
        items.append(item)
        kernel.wakeFirst(waiters)
    }

    /// The request ended with `result` (kernel thread, from dispatch).
    func ended(_ result: Int) {
        end = result
        handle = 0
        kernel.wakeFirst(waiters)
    }

    /// The consumer is gone: discards what waits and what still comes.
    func discardAll() {
        abandoned = true
        while let item = popFirst() { discard(item) }
    }
}

/// What a multishot request delivered and its consumer has not taken yet,
/// in arrival order: chunks of a streaming receive, descriptors of a
/// multishot accept. An array read from a moving head, emptied (keeping
/// its capacity) whenever the consumer catches up, so a steady stream
/// allocates nothing once it has grown to its working size.
struct ArrivalQueue<Element> {
    private var items = ContiguousArray<Element>()
    private var head = 0

    /// Items waiting.
    var count: Int { items.count - head }

    mutating func append(_ item: Element) { items.append(item) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return item
    }
}

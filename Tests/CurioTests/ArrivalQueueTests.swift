// The arrival queue of multishot requests (chunks of a streaming receive,
// descriptors of a multishot accept): first in, first out across the
// ring's wrap-around and its growth, and items released when taken.
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct ArrivalQueueTests {
    @Test(.timeLimit(.minutes(1)))
    func itemsComeOutInArrivalOrderAcrossWrapAndGrowth() {
        var q = ArrivalQueue<Int>()
        #expect(q.popFirst() == nil && q.count == 0)
        var next = 0, expected = 0
        var taken: [Int] = []
        // Uneven bursts: the head wraps around the ring several times, and
        // the ring grows while its items straddle the end of the slots.
        for burst in [1, 3, 2, 4, 1, 7, 3, 9, 2, 17, 5, 1, 33] {
            for _ in 0..<burst {
                q.append(next)
                next += 1
            }
            #expect(q.count == next - expected)
            for _ in 0..<(burst + 1) / 2 {
                if let v = q.popFirst() { taken.append(v); expected += 1 }
            }
        }
        while let v = q.popFirst() { taken.append(v) }
        #expect(taken == Array(0..<next), "items left the queue out of arrival order")
        #expect(q.count == 0 && q.popFirst() == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func aTakenItemIsNotKeptAliveByTheQueue() {
        final class Item {}
        var q = ArrivalQueue<Item>()
        weak var gone: Item?
        do {
            let item = Item()
            gone = item
            q.append(item)
            q.append(Item())
        }
        _ = q.popFirst()
        #expect(gone == nil, "the ring still held an item after it was taken")
        #expect(q.count == 1)
    }
}

/// A FIFO of suspended tasks, linked through the tasks themselves so that
/// adding, removing (on cancellation or timeout) and waking cost O(1) and
/// allocate nothing. Every blocking primitive keeps one or more.
///
/// Kernel-thread only. A task is in at most one queue at a time.
final class WaitQueue {
    unowned(unsafe) private(set) var first: AnyCurioTask?
    unowned(unsafe) private var last: AnyCurioTask?
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    func append(_ t: AnyCurioTask) {
        t.cancelHook = .queue(Unmanaged.passUnretained(self))
        t.wqNext = nil
        t.wqPrev = last
        if let last { last.wqNext = t } else { first = t }
        last = t
        count += 1
    }

    func remove(_ t: AnyCurioTask) {
        if let p = t.wqPrev { p.wqNext = t.wqNext } else { first = t.wqNext }
        if let n = t.wqNext { n.wqPrev = t.wqPrev } else { last = t.wqPrev }
        t.wqPrev = nil
        t.wqNext = nil
        t.cancelHook = .none
        count -= 1
    }

    func popFirst() -> AnyCurioTask? {
        guard let t = first else { return nil }
        remove(t)
        return t
    }
}

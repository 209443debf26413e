/// A reusable Swift task that runs Curio tasks one after another.
///
/// Creating a Swift task with an executor preference costs an allocation
/// (the task and its first allocator slab), status-record bookkeeping under
/// the runtime's lock, and as much again to tear it down. A Curio task that
/// ends hands its Swift task back to the kernel instead; the next spawn
/// resumes it with the new body, which costs one continuation resume. A
/// carrier whose Swift task was cancelled (Swift cancellation is sticky)
/// retires instead of returning, and the kernel lets every idle carrier
/// finish whenever its loop stops, so none outlives a `run`.
final class Carrier: @unchecked Sendable {
    unowned(unsafe) let kernel: Kernel
    var next: AnyCurioTask?
    /// The Curio task whose body this carrier runs now.
    unowned(unsafe) var running: AnyCurioTask?
    var continuation: UnsafeContinuation<AnyCurioTask?, Never>?
    var task: Task<Void, Never>?

    init(kernel: Kernel, first: AnyCurioTask) {
        self.kernel = kernel
        self.next = first
    }

    func loop() async {
        // A job the runtime enqueues for this Swift task without going
        // through a Curio trap (after `Task.yield()`, `Task.sleep`, a
        // continuation resumed by another thread) is the task itself: the
        // kernel finds the Curio task from it through this table.
        let me = withUnsafeCurrentTask { unsafeBitCast($0!, to: UnsafeMutableRawPointer.self) }
        kernel.carriersByTask[me] = self
        while let t = next {
            next = nil
            running = t
            await t.runBody()
            running = nil
            t.carrier = nil
            if Task.isCancelled { break }
            next = await kernel.park(self)
        }
        kernel.carriersByTask[me] = nil
        task = nil
    }
}

extension Kernel {
    /// Most carriers kept idle; past that, an ended task's carrier exits.
    static let maxIdleCarriers = 256

    /// Starts `t` on an idle carrier, or on a new one.
    func launch(_ t: AnyCurioTask) {
        // The runtime enqueues the job inside Task.init / resume; the
        // thread-local tells `enqueue` which task that job belongs to.
        let saved = ck_tls_resuming()
        ck_set_tls_resuming(Unmanaged.passUnretained(t).toOpaque())
        if let c = idleCarriers.popLast(), let k = c.continuation {
            c.continuation = nil
            t.carrier = c
            k.resume(returning: t)
        } else {
            let c = Carrier(kernel: self, first: t)
            t.carrier = c
            c.task = Task(executorPreference: self) { await c.loop() }
        }
        ck_set_tls_resuming(saved)
    }

    /// Parks an idle carrier until the next spawn; nil tells it to exit.
    func park(_ c: Carrier) async -> AnyCurioTask? {
        guard isRunning, idleCarriers.count < Kernel.maxIdleCarriers else { return nil }
        return await withUnsafeContinuation { k in
            c.continuation = k
            idleCarriers.append(c)
        }
    }

    /// Tells every idle carrier to exit and runs them to their end, so no
    /// Swift task of this kernel stays suspended once `run` returns.
    func retireIdleCarriers(_ runReady: () -> Void) {
        // isRunning is already false, so carriers resumed here exit.
        while !idleCarriers.isEmpty {
            let idle = idleCarriers
            idleCarriers.removeAll()
            for c in idle {
                let k = c.continuation
                c.continuation = nil
                k?.resume(returning: nil)
            }
            runReady()
        }
    }
}

import CCurioKernel

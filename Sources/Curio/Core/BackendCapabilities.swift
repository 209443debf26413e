import Glibc

// What the running backend can do, asked by capability. The I/O layer
// chooses a path by what the backend offers (queue a send behind the
// caller, wait for a regular file), never by its name: a new backend fills
// in these answers and the layers above it do not change.

extension Kernel {
    /// Small sends can be queued behind the caller and carried out with the
    /// loop's next system call (``SendBehind``): io_uring batches them with
    /// the next submission; epoll has nothing to batch them with.
    var queuesSendsBehind: Bool { backend == .ioUring }

    /// One `pread`/`pwrite` (`appending`: `write` at the end) of a regular
    /// file, from or into `buffer`, which the caller keeps valid and
    /// unshared until this returns. io_uring waits for files itself; epoll
    /// cannot (a regular file is always "ready"), so there a blocking-pool
    /// worker makes the call. Either way it returns only once the system is
    /// done with `buffer`: an io_uring request is waited for even when
    /// cancelled, and the worker is waited for with cancellation held back
    /// until it has finished (then delivered at the next blocking call).
    /// Returns the byte count or `-errno`.
    func transferFile(_ t: AnyCurioTask, fd: Int32, write: Bool, _ buffer: UnsafeMutableRawPointer, count: Int,
                      offset: Int64, appending: Bool, site: CallSite) async throws -> Int {
        let state: TaskState = write ? .writeWait : .readWait
        if backend == .ioUring {
            let request: IORequest = write ? .write(fd, from: buffer, count: count, offset: appending ? -1 : offset)
                                           : .read(fd, into: buffer, count: count, offset: offset)
            return try await performIO(t, request, state, deadline: .max, site: site)
        }
        try checkDeliverable(t)
        // The worker is waited for (below) and the caller keeps the buffer
        // for the whole call: the pointer is valid for the whole job.
        nonisolated(unsafe) let p = buffer
        return try await holdingCancellation(t) {
            try await runOnWorker(t, pool: .blocking, state: state, site: site, onCancel: nil) {
                let r = write ? (appending ? Glibc.write(fd, p, count) : pwrite(fd, p, count, Int(offset)))
                              : pread(fd, p, count, Int(offset))
                return r < 0 ? -Int(errno) : r
            }
        }
    }
}

import CCurioKernel
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's receive pool (the buffers streaming receives read into,
/// a provided-buffer ring on io_uring), for `IO/ReceiveStream.swift`. On
/// the kernel's thread.
extension Kernel {
    /// Sets the pool's shape before its first stream → false for a shape
    /// the C kernel refuses (count 1...32768, size 64...1048576). Once the
    /// pool exists its shape stays, and this is true.
    func configureReceivePool(buffers: Int, size: Int) -> Bool {
        ck_stream_configure(ck, UInt32(clamping: buffers), UInt32(clamping: size)) != -EINVAL
    }

    /// The bytes of a buffer a chunk event named; the consumer holds it
    /// until ``releaseReceivePoolBuffer(_:)``.
    func receivePoolBuffer(_ id: UInt32) -> UnsafeRawPointer {
        guard let p = ck_stream_buffer(ck, id) else {
            preconditionFailure("curio: receive pool buffer \(id) is not held by a consumer")
        }
        return UnsafeRawPointer(p)
    }

    /// Gives a chunk's buffer back to the pool (and starts again a stream
    /// that stopped for want of one).
    func releaseReceivePoolBuffer(_ id: UInt32) {
        _ = ck_stream_release(ck, id)
    }

    /// The pool's counters.
    func receivePoolCounts() -> ReceivePoolStatistics {
        var s = ck_stream_stats()
        ck_get_stream_stats(ck, &s)
        return ReceivePoolStatistics(
            buffers: Int(s.buffers), bufferSize: Int(s.buffer_size), held: Int(s.held),
            streams: Int(s.streams), usesBufferRing: s.ring, chunks: Int(s.chunks),
            exhausted: Int(s.exhausted), paused: Int(s.paused), rearmed: Int(s.rearmed))
    }
}

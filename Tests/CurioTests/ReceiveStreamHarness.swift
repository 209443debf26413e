// The helpers of ReceiveStreamTests: a kernel with a chosen receive pool
// on a thread of its own, the receive path this build and machine should
// take (so a test that silently ran on the wrong path fails), and small
// byte utilities. Kernel tasks return what they saw; the test functions
// check it (Swift Testing cannot attribute an issue raised on a kernel's
// thread).
import Glibc
import Testing

@testable import Curio

enum StreamTest {
    /// Runs `body` as the main task of a new kernel whose receive pool has
    /// `count` buffers of `size` bytes, on a thread of its own, bounded by
    /// `limit` seconds inside the kernel (a hang fails instead of hanging).
    static func run<T: Sendable>(count: Int = 16, size: Int = 4096, limit: Double = 40,
                                 _ body: @escaping @Sendable (Kernel) async throws -> T) async throws -> T {
        try await KernelHarness.onThread(limit: limit + 10) {
            // `.default` keeps CURIO_DISABLE_IO_URING working, as Kernel() does.
            var c = Kernel.Configuration.default
            c.receiveBufferCount = count
            c.receiveBufferSize = size
            let kernel = Kernel(configuration: c)
            let result = Result { try kernel.run { try await timeoutAfter(limit) { try await body(kernel) } } }
            try kernel.shutdown()
            return try result.get()
        }
    }

    /// A task that sends all of `payload` on `client` and then ends its
    /// sending side (the peer then sees the end of the stream).
    static func sendThenEnd(_ client: Socket, _ payload: [UInt8]) async throws -> CurioTask<Void> {
        try await spawn { () async throws -> Void in
            try await client.sendAll(payload)
            try client.shutdown(.write)
        }
    }

    /// The pool's statistics (from a task of the kernel).
    static func stats() throws -> ReceivePoolStatistics { try Kernel.receivePoolStatistics() }

    /// "backend ring": the path `kernel` took, as `expectedPath` spells it.
    static func path(_ kernel: Kernel, _ s: ReceivePoolStatistics) -> String {
        "\(kernel.backend) ring \(s.usesBufferRing)"
    }

    /// The path this build should take on this machine: io_uring with a
    /// provided-buffer ring and multishot recv (Linux 6.0 and later) in
    /// the default build, recv on readiness with the Epoll trait or when
    /// io_uring is unavailable.
    static var expectedPath: String {
        #if Epoll
        return "epoll ring false"
        #else
        guard KernelTests.ioUringExpected else { return "epoll ring false" }
        return "io_uring ring \(linuxAtLeast(6, 0))"
        #endif
    }

    /// Whether the running Linux is at least major.minor.
    static func linuxAtLeast(_ major: Int, _ minor: Int) -> Bool {
        var un = utsname()
        guard uname(&un) == 0 else { return false }
        let release = withUnsafeBytes(of: un.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return parts[0] > major || (parts[0] == major && parts[1] >= minor)
    }

    /// FNV-1a, 64 bits: a checksum to compare transfers by.
    static func fnv(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// "N bytes, fnv X": what a comparison of two transfers shows on failure.
    static func summary(_ bytes: [UInt8]) -> String { "\(bytes.count) bytes, fnv \(fnv(bytes))" }

    /// Whether `fd` reports an error or hang-up (a reset arrived), without
    /// consuming the error as SO_ERROR would.
    static func hasErrorOrHangUp(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) == 1 else { return false }
        return p.revents & Int16(POLLERR | POLLHUP) != 0
    }

    /// "CancelledError" for any cancellation, else IOTest's short name.
    static func kind(_ error: (any Error)?) -> String {
        if error is CancelledError { return "CancelledError" }
        if error is ResourceBusy { return "ResourceBusy" }
        return IOTest.kind(error)
    }
}

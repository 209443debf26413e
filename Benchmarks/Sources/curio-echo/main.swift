// The echo benchmark's Curio server, written for speed with the public
// API only: one task per client, `recv(into:)` into a buffer the
// connection reuses, `sendAll` of exactly the bytes received, TCP_NODELAY.
// Listens on 127.0.0.1 only.
//
//   curio-echo [PORT]   (default 0: a free port)
//
// Prints "BACKEND io_uring|epoll" (what the kernel really uses) and then
// "PORT <n>". The Benchmarks package builds it against Curio's default
// trait (io_uring) or, with CURIO_BENCH_EPOLL set, the Epoll trait.
import Curio

#if canImport(Glibc)
import Glibc
#endif

/// Large enough for a 16 KiB message in one receive.
let bufferSize = 64 * 1024

func serve(_ client: Socket) async {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
    defer {
        client.close()
        buffer.deallocate()
    }
    do {
        while true {
            let n = try await client.recv(into: buffer)
            if n == 0 { return }
            try await client.sendAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    } catch {
        // A reset or a vanished client ends this connection only.
    }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
signal(SIGPIPE, SIG_IGN)
let kernel = Kernel()
print("BACKEND \(kernel.backend)")
kernel.addTask {
    let listener = try Socket(.inet, .stream)
    try listener.setOption(.reuseAddress, true)
    try listener.bind(("127.0.0.1", port))
    try listener.listen(1024)
    print("PORT \(try listener.localAddress.port)")
    fflush(nil)  // all streams: stdout is a pipe or file here
    while true {
        let (client, _) = try await listener.accept()
        try client.setOption(.noDelay, true)
        try await spawn(daemon: true) { await serve(client) }
    }
}
try kernel.run()

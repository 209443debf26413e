// The echo benchmark's Curio server, written for speed with the public
// API only: one task per client, TCP_NODELAY, `sendAll` of exactly the
// bytes received. Listens on 127.0.0.1 only.
//
//   curio-echo [PORT] [--stream | --inline] [--kernels N]
//
//   PORT         default 0: a free port
//   --stream     receive with `receiveChunks()` (on io_uring a multishot
//                recv into the kernel's provided-buffer ring; the echo is
//                sent straight from the pool buffer) instead of
//                `recv(into:)` into a buffer the connection reuses
//   --inline     echo from a `handleChunks` handler, which the kernel
//                calls as each chunk arrives (no suspension per message)
//   --kernels N  a KernelGroup of N kernels, one thread each, a listener
//                per kernel with SO_REUSEPORT (default: one Kernel on the
//                main thread, as the seed's programs run)
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

/// Echoes with one reused buffer: a `recv` per message.
func serveWithBuffer(_ client: Socket) async {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
    defer { buffer.deallocate() }
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

/// Echoes each chunk of a streaming receive from the buffer it arrived in.
func serveStreaming(_ client: Socket) async {
    do {
        for try await chunk in client.receiveChunks() {
            try await client.sendAll(chunk)
        }
    } catch {
        // A reset or a vanished client ends this connection only.
    }
}

/// Echoes each chunk from a handler the kernel calls as it arrives
/// (`handleChunks`): no task suspends per message.
func serveInline(_ client: Socket) async {
    do {
        try await client.handleChunks { chunk, output in try output.send(chunk) }
    } catch {
        // A reset or a vanished client ends this connection only.
    }
}

func fail(_ message: String) -> Never {
    let text = "curio-echo: \(message)\nusage: curio-echo [PORT] [--stream | --inline] [--kernels N]\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

/// What the command line asks for.
struct Options: Sendable {
    /// How a connection is served.
    enum Mode: Sendable { case buffer, stream, inline }
    var port = 0
    var mode = Mode.buffer
    var kernels: Int? = nil
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    while let argument = arguments.popFirst() {
        switch argument {
        case "--stream": options.mode = .stream
        case "--inline": options.mode = .inline
        case "--kernels":
            guard let value = arguments.popFirst(), let n = Int(value), n >= 1 else {
                fail("--kernels needs a number of kernels, 1 or more")
            }
            options.kernels = n
        default:
            guard let p = Int(argument), (0...65535).contains(p) else { fail("'\(argument)' is not a port") }
            options.port = p
        }
    }
    return options
}

func serve(_ client: Socket, mode: Options.Mode) async {
    switch mode {
    case .buffer: await serveWithBuffer(client)
    case .stream: await serveStreaming(client)
    case .inline: await serveInline(client)
    }
}

let options = parseOptions()
signal(SIGPIPE, SIG_IGN)

/// The kernels' configuration: for the modes that receive into the pool,
/// buffers as large as the C server's and `recv(into:)`'s (64 KiB), so a
/// 16 KiB message is one chunk there too.
let configuration: Kernel.Configuration = {
    var c = Kernel.Configuration.default
    if options.mode != .buffer { c.receiveBufferSize = bufferSize }
    return c
}()

if let kernels = options.kernels {
    let group = try KernelGroup.start(kernels: kernels, configuration: configuration, pinThreads: true)
    print("BACKEND \(try group.kernel(at: 0).backend)")
    // The server is opened from a task of the group; the main thread only waits.
    try group.addTask(on: .kernel(0)) { [options] in
        let server = try await group.tcpServer(host: "127.0.0.1", port: options.port, spread: .reusePort) { client, _ in
            try client.setOption(.noDelay, true)
            await serve(client, mode: options.mode)
        }
        print("PORT \(server.address.port)")
        fflush(nil)  // all streams: stdout is a pipe or file here
    }
    try group.join()
} else {
    let kernel = Kernel(configuration: configuration)
    print("BACKEND \(kernel.backend)")
    kernel.addTask { [options] in
        let listener = try Socket(.inet, .stream)
        try listener.setOption(.reuseAddress, true)
        try listener.bind(("127.0.0.1", options.port))
        try listener.listen(1024)
        print("PORT \(try listener.localAddress.port)")
        fflush(nil)
        while true {
            let (client, _) = try await listener.accept()
            try client.setOption(.noDelay, true)
            try await spawn(daemon: true) {
                defer { client.close() }
                await serve(client, mode: options.mode)
            }
        }
    }
    try kernel.run()
}

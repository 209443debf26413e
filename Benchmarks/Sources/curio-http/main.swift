// The HTTP benchmark's Curio server: CurioHTTP's HTTPServer on one kernel,
// answering every request with "Hello, World!" (text/plain). Listens on
// 127.0.0.1 only.
//
//   curio-http [PORT]   (default 0: a free port)
//
// Prints "BACKEND io_uring|epoll" (what the kernel really uses) and then
// "PORT <n>". Built against Curio's default trait (io_uring) or, with
// CURIO_BENCH_EPOLL set, the Epoll trait (Benchmarks/http/run.sh).
import Curio
import CurioHTTP

#if canImport(Glibc)
import Glibc
#endif

let hello: [UInt8] = Array("Hello, World!".utf8)
let fields: HTTPFields = [.contentType: "text/plain"]

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
signal(SIGPIPE, SIG_IGN)
let kernel = Kernel()
print("BACKEND \(kernel.backend)")
kernel.addTask {
    let server = HTTPServer(host: "127.0.0.1", port: port) { _ in
        HTTPServerResponse(status: .ok, headerFields: fields, body: .bytes(hello))
    }
    let serving = try await spawn(name: "http server") { try await server.run() }
    print("PORT \(try await server.localAddress().port)")
    fflush(nil)  // stdout is a pipe or a file here
    _ = try await serving.join()
}
try kernel.run()

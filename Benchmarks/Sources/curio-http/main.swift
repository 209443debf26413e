// The HTTP and HTTPS benchmarks' Curio server: CurioHTTP's HTTPServer on one
// kernel, answering every request with "Hello, World!" (text/plain); given a
// certificate and key, the same handler behind CurioTLS (CurioHTTPS's
// HTTPServer(tls:)). Listens on 127.0.0.1 only.
//
//   curio-http [PORT [CERT.pem KEY.pem]]   (PORT 0, the default: a free port)
//
// Prints "BACKEND io_uring|epoll" (what the kernel really uses) and then
// "PORT <n>". Built against Curio's default trait (io_uring) or, with
// CURIO_BENCH_EPOLL set, the Epoll trait (Benchmarks/http/run.sh).
import Curio
import CurioHTTP
import CurioHTTPS
import CurioTLS

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
guard args.count == 1 || args.count == 2 || args.count == 4, let port = args.count > 1 ? Int(args[1]) : 0 else {
    let usage = "usage: curio-http [PORT [CERT.pem KEY.pem]]\n"
    _ = write(2, usage, usage.utf8.count)  // stderr: the global is not concurrency-safe
    exit(2)
}
// nil: plain HTTP.
let tls = args.count == 4 ? TLSConfiguration.server(certificateChain: .file(args[2]), privateKey: .file(args[3])) : nil

let hello: [UInt8] = Array("Hello, World!".utf8)
let fields: HTTPFields = [.contentType: "text/plain"]

signal(SIGPIPE, SIG_IGN)
let kernel = Kernel()
print("BACKEND \(kernel.backend)")
kernel.addTask {
    let respond: HTTPHandler = { _ in
        HTTPServerResponse(status: .ok, headerFields: fields, body: .bytes(hello))
    }
    let server = try tls.map { try HTTPServer(host: "127.0.0.1", port: port, tls: $0, handler: respond) }
        ?? HTTPServer(host: "127.0.0.1", port: port, handler: respond)
    let serving = try await spawn(name: tls == nil ? "http server" : "https server") { try await server.run() }
    print("PORT \(try await server.localAddress().port)")
    fflush(nil)  // stdout is a pipe or a file here
    _ = try await serving.join()
}
try kernel.run()

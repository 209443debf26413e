// The HTTPS benchmark's Curio server: CurioHTTPS's HTTPServer(tls:) on one
// kernel, answering every request with "Hello, World!" (text/plain), the
// same handler as curio-http behind CurioTLS. Listens on 127.0.0.1 only.
//
//   curio-https PORT CERT.pem KEY.pem   (PORT 0: a free port)
//
// Prints "BACKEND io_uring|epoll" and then "PORT <n>" (Benchmarks/http/run.sh).
import Curio
import CurioHTTPS
import CurioTLS

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
guard args.count == 4, let port = Int(args[1]) else {
    fputs("usage: curio-https PORT CERT.pem KEY.pem\n", stderr)
    exit(2)
}
let hello: [UInt8] = Array("Hello, World!".utf8)
let fields: HTTPFields = [.contentType: "text/plain"]
let tls = TLSConfiguration.server(certificateChain: .file(args[2]), privateKey: .file(args[3]))

signal(SIGPIPE, SIG_IGN)
let kernel = Kernel()
print("BACKEND \(kernel.backend)")
kernel.addTask {
    let server = try HTTPServer(host: "127.0.0.1", port: port, tls: tls) { _ in
        HTTPServerResponse(status: .ok, headerFields: fields, body: .bytes(hello))
    }
    let serving = try await spawn(name: "https server") { try await server.run() }
    print("PORT \(try await server.localAddress().port)")
    fflush(nil)  // stdout is a pipe or a file here
    _ = try await serving.join()
}
try kernel.run()

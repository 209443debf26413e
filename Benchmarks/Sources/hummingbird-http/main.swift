// The HTTP and HTTPS benchmarks' Hummingbird 2 server, as its documentation's
// hello-world is written: a Router with one GET route returning a string,
// an Application run as a service. Given a certificate and key it serves
// HTTPS with HummingbirdTLS (`server: .tls(.http1(), tlsConfiguration:)`,
// swift-nio-ssl underneath), ALPN http/1.1. One NIO event loop thread (like
// one Curio kernel); handlers run on Swift's default executor, as always in
// Hummingbird. Listens on 127.0.0.1 only.
//
//   hummingbird-http [PORT [CERT.pem KEY.pem]]   (PORT 0, the default: a free
//                                                 port; prints "PORT <n>")
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
guard args.count == 1 || args.count == 2 || args.count == 4, let port = args.count > 1 ? Int(args[1]) : 0 else {
    let usage = "usage: hummingbird-http [PORT [CERT.pem KEY.pem]]\n"
    _ = write(2, usage, usage.utf8.count)  // stderr: the global is not concurrency-safe
    exit(2)
}
let server: HTTPServerBuilder
if args.count == 4 {
    var tls = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(args[2]).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: args[3], format: .pem))
    )
    tls.applicationProtocols = ["http/1.1"]
    server = try .tls(.http1(), tlsConfiguration: tls)
} else {
    server = .http1()
}

let router = Router()
router.get("/") { _, _ in
    "Hello, World!"
}
let app = Application(
    router: router,
    server: server,
    configuration: .init(address: .hostname("127.0.0.1", port: port)),
    onServerRunning: { channel in
        print("PORT \(channel.localAddress!.port!)")
        fflush(nil)
    },
    eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup(numberOfThreads: 1))
)
try await app.runService()

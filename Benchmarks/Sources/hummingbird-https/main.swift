// The HTTPS benchmark's Hummingbird 2 server: hummingbird-http's
// hello-world with HummingbirdTLS, as its documentation shows
// (`server: .tls(.http1(), tlsConfiguration:)`, swift-nio-ssl underneath);
// ALPN http/1.1. One NIO event loop thread; handlers on Swift's default
// executor. Listens on 127.0.0.1 only.
//
//   hummingbird-https PORT CERT.pem KEY.pem   (PORT 0: a free port; prints "PORT <n>")
import Hummingbird
import HummingbirdTLS
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

let args = CommandLine.arguments
guard args.count == 4, let port = Int(args[1]) else {
    fputs("usage: hummingbird-https PORT CERT.pem KEY.pem\n", stderr)
    exit(2)
}
var tlsConfiguration = TLSConfiguration.makeServerConfiguration(
    certificateChain: try NIOSSLCertificate.fromPEMFile(args[2]).map { .certificate($0) },
    privateKey: .privateKey(try NIOSSLPrivateKey(file: args[3], format: .pem))
)
tlsConfiguration.applicationProtocols = ["http/1.1"]

let router = Router()
router.get("/") { _, _ in
    "Hello, World!"
}
let app = Application(
    router: router,
    server: try .tls(.http1(), tlsConfiguration: tlsConfiguration),
    configuration: .init(address: .hostname("127.0.0.1", port: port)),
    onServerRunning: { channel in
        print("PORT \(channel.localAddress!.port!)")
        fflush(nil)
    },
    eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup(numberOfThreads: 1))
)
try await app.runService()

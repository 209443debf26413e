// The HTTP benchmark's Hummingbird 2 server, as its documentation's
// hello-world is written: a Router with one GET route returning a string,
// an Application run as a service. One NIO event loop thread (like one
// Curio kernel); handlers run on Swift's default executor, as always in
// Hummingbird. Listens on 127.0.0.1 only.
//
//   hummingbird-http [PORT]   (default 0: a free port; prints "PORT <n>")
import Hummingbird
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
let router = Router()
router.get("/") { _, _ in
    "Hello, World!"
}
let app = Application(
    router: router,
    configuration: .init(address: .hostname("127.0.0.1", port: port)),
    onServerRunning: { channel in
        print("PORT \(channel.localAddress!.port!)")
        fflush(nil)
    },
    eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup(numberOfThreads: 1))
)
try await app.runService()

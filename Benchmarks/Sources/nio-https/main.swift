// The HTTPS benchmark's SwiftNIO server: nio-http's NIOHTTP1 server (the way
// NIOHTTP1's example server is written) with swift-nio-ssl's
// NIOSSLServerHandler first in each child pipeline, as NIOSSL's
// documentation shows; ALPN http/1.1. One event loop thread, TCP_NODELAY.
// Listens on 127.0.0.1 only.
//
//   nio-https PORT CERT.pem KEY.pem   (PORT 0: a free port; prints "PORT <n>")
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

final class HelloHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var keepAlive = false
    private var body: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            keepAlive = request.isKeepAlive
        case .body:
            break
        case .end:
            if body == nil { body = context.channel.allocator.buffer(string: "Hello, World!") }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: "\(body!.readableBytes)")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body!))), promise: nil)
            let close = !keepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if close { context.close(promise: nil) }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

let args = CommandLine.arguments
guard args.count == 4, let port = Int(args[1]) else {
    fputs("usage: nio-https PORT CERT.pem KEY.pem\n", stderr)
    exit(2)
}
var tlsConfiguration = TLSConfiguration.makeServerConfiguration(
    certificateChain: try NIOSSLCertificate.fromPEMFile(args[2]).map { .certificate($0) },
    privateKey: .privateKey(try NIOSSLPrivateKey(file: args[3], format: .pem))
)
tlsConfiguration.applicationProtocols = ["http/1.1"]
let sslContext = try NIOSSLContext(configuration: tlsConfiguration)

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 1024)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
        }.flatMap {
            channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true)
        }.flatMap {
            channel.pipeline.addHandler(HelloHandler())
        }
    }
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)

let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("PORT \(channel.localAddress!.port!)")
fflush(nil)
try channel.closeFuture.wait()

// The HTTP and HTTPS benchmarks' SwiftNIO server, as NIOHTTP1's own example
// server is written: `configureHTTPServerPipeline`, a handler that answers on
// `.end` with head, body and end, keep-alive as the request asks. Given a
// certificate and key it serves HTTPS: swift-nio-ssl's NIOSSLServerHandler
// first in each child pipeline, as NIOSSL's documentation shows, ALPN
// http/1.1. One event loop thread (like one Curio kernel), TCP_NODELAY.
// Listens on 127.0.0.1 only.
//
//   nio-http [PORT [CERT.pem KEY.pem]]   (PORT 0, the default: a free port;
//                                         prints "PORT <n>")
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
guard args.count == 1 || args.count == 2 || args.count == 4, let port = args.count > 1 ? Int(args[1]) : 0 else {
    let usage = "usage: nio-http [PORT [CERT.pem KEY.pem]]\n"
    _ = write(2, usage, usage.utf8.count)  // stderr: the global is not concurrency-safe
    exit(2)
}
// nil: plain HTTP.
let sslContext: NIOSSLContext? = try args.count == 4 ? {
    var tls = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(args[2]).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: args[3], format: .pem))
    )
    tls.applicationProtocols = ["http/1.1"]
    return try NIOSSLContext(configuration: tls)
}() : nil

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 1024)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            if let sslContext { try pipeline.addHandler(NIOSSLServerHandler(context: sslContext)) }
            try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
            try pipeline.addHandler(HelloHandler())
        }
    }
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)

let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("PORT \(channel.localAddress!.port!)")
fflush(nil)
try channel.closeFuture.wait()

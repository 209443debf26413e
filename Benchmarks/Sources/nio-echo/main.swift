// The echo benchmark's SwiftNIO server: one event loop thread, a handler
// that writes back what it reads and flushes when the read burst ends,
// TCP_NODELAY. Listens on 127.0.0.1 only.
//
//   nio-echo [PORT]     (default 0: a free port; prints "PORT <n>")
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }
let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("PORT \(channel.localAddress?.port ?? -1)")
fflush(nil)  // all streams: stdout is a pipe or file here
try channel.closeFuture.wait()

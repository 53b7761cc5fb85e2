// nio-echo: SwiftNIO echo server, modelled on NIO's own EchoServer example.
//
//   nio-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening (port 0 = ephemeral), serves until
// SIGINT/SIGTERM, then exits 0.
import NIOCore
import NIOPosix

import EchoServerCommon
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // As in NIO's example: write back what we read; flush at the end of the read burst.
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

let arguments = ServerArguments.parse(program: "nio-echo")
let host = arguments.host
let port = arguments.port

// SIGINT/SIGTERM: blocked here, before any thread exists (threads inherit the
// mask), and taken with sigwait() on the main thread below. (A DispatchSource
// with SIG_IGN can lose the signal when the kernel delivers it to a thread that
// does not block it, e.g. the event loop's.)
var stopSignals = sigset_t()
sigemptyset(&stopSignals)
sigaddset(&stopSignals, SIGINT)
sigaddset(&stopSignals, SIGTERM)
pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator())

let channel: Channel
do {
    channel = try bootstrap.bind(host: host, port: port).wait()
} catch {
    eprint("nio-echo: bind failed: \(error)")
    exit(1)
}

print("listening on \(channel.localAddress?.port ?? port)")
fflush(nil)

var received: Int32 = 0
sigwait(&stopSignals, &received)
try? channel.close().wait()
try? group.syncShutdownGracefully()
exit(0)

// nio-echo: SwiftNIO echo server, modelled on NIO's own EchoServer example.
//
//   nio-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening (port 0 = ephemeral), serves until
// SIGINT/SIGTERM, then exits 0.
import Dispatch
import NIOCore
import NIOPosix

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

/// Writes to stderr (the C `stderr` global is not usable in Swift 6 mode).
func eprint(_ message: String) {
    var m = message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func usage() -> Never {
    eprint("usage: nio-echo --port N [--host 127.0.0.1]")
    exit(2)
}

var host = "127.0.0.1"
var port: Int? = nil
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--port": guard let v = args.popFirst(), let p = Int(v) else { usage() }; port = p
    case "--host": guard let v = args.popFirst() else { usage() }; host = v
    default: usage()
    }
}
guard let port else { usage() }

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

// SIGINT/SIGTERM: close the listening channel; main then shuts the group down.
// (A nonisolated function, so the handlers are not inferred to be @MainActor,
// which would trap when they run on the signal queue.)
nonisolated func installSignalHandlers(closing channel: Channel) -> [DispatchSourceSignal] {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let queue = DispatchQueue(label: "nio-echo.signals")
    return [SIGINT, SIGTERM].map { sig in
        let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        src.setEventHandler { @Sendable in channel.close(promise: nil) }
        src.resume()
        return src
    }
}
let signalSources = installSignalHandlers(closing: channel)

print("listening on \(channel.localAddress?.port ?? port)")
fflush(nil)

try? channel.closeFuture.wait()
try? group.syncShutdownGracefully()
_ = signalSources
exit(0)

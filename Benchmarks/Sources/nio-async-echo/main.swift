// nio-async-echo: SwiftNIO echo server written with NIOAsyncChannel and
// structured concurrency, as NIO's own async examples do: one child task per
// connection, `for try await` over inbound, `outbound.write` back.
//
//   nio-async-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening, serves until SIGINT/SIGTERM, exits 0.
import NIOCore
import NIOPosix

import EchoServerCommon
#if canImport(Glibc)
import Glibc
#endif

let arguments = ServerArguments.parse(program: "nio-async-echo")
let host = arguments.host
let listenPort = arguments.port

// SIGINT/SIGTERM end the process with status 0. A handler rather than a
// sigwait thread: blocking the signals on the main thread did not cover the
// threads the Swift runtime had already started for the async main, so
// SIGTERM killed the process (status 143) instead. `_exit` is async-signal-safe.
signal(SIGINT) { _ in _exit(0) }
signal(SIGTERM) { _ in _exit(0) }

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
do {
    server = try await ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .bind(host: host, port: listenPort) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
} catch {
    eprint("nio-async-echo: bind failed: \(error)")
    exit(1)
}

print("listening on \(server.channel.localAddress?.port ?? listenPort)")
fflush(nil)

try await withThrowingDiscardingTaskGroup { tasks in
    try await server.executeThenClose { connections in
        for try await connection in connections {
            tasks.addTask {
                try? await connection.executeThenClose { inbound, outbound in
                    for try await chunk in inbound {
                        try await outbound.write(chunk)
                    }
                }
            }
        }
    }
}

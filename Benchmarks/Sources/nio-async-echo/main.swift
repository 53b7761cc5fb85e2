// nio-async-echo: SwiftNIO echo server written with NIOAsyncChannel and
// structured concurrency, as NIO's own async examples do: one child task per
// connection, `for try await` over inbound, `outbound.write` back.
//
//   nio-async-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening, serves until SIGINT/SIGTERM, exits 0.
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

func eprint(_ message: String) {
    var m = message + "\n"
    m.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func usage() -> Never {
    eprint("usage: nio-async-echo --port N [--host 127.0.0.1]")
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
guard let listenPort = port else { usage() }

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

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

// SIGINT/SIGTERM blocked before any thread exists, taken by sigwait on a thread of its own.
var stopSignals = sigset_t()
sigemptyset(&stopSignals)
sigaddset(&stopSignals, SIGINT)
sigaddset(&stopSignals, SIGTERM)
pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
var signalThread = pthread_t()
pthread_create(&signalThread, nil, { _ in
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGTERM)
    var received: Int32 = 0
    sigwait(&signals, &received)
    exit(0)
}, nil)

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

// swisted-actor-echo: the async echo (swisted-async-echo) with its loops
// isolated to an actor whose executor is the reactor, as an actor-based
// service would write it: `for try await chunk in connection.inbound` and
// `try await connection.write(chunk)` inside an actor method. The tasks have
// no executor preference, as plain actor code: Swisted wakes a task waiting
// in the actor on the reactor thread, in the actor's isolation (see the
// README, "Using Swisted from async code"), so a round trip makes no hop.
//
//   swisted-actor-echo --port N [--host 127.0.0.1]
//
// Prints "listening on PORT" once listening (port 0 = ephemeral), serves until
// SIGINT/SIGTERM (reactor.run(installSignalHandlers: true) returns), exits 0.
import Swisted

import EchoServerCommon
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The echo, isolated to an actor whose executor is the reactor: every
/// `await` below stays on the reactor thread (no thread hop); resuming after a
/// suspension is one job on the reactor, isolated to the actor.
actor Echo {
    let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    init(reactor: Reactor) {
        self.reactor = reactor
    }

    /// Accepts connections and echoes each one in a child task, until the reactor stops.
    func serve(port: Int, host: String) async {
        let listener: AsyncListener
        do {
            // The same listen backlog as the other servers (Swisted defaults to Twisted's 50).
            listener = try await reactor.listen(port: port, interface: host, backlog: 4096)
        } catch {
            eprint("swisted-actor-echo: cannot listen: \(error)")
            exit(1)
        }
        print("listening on \(listener.port)")
        fflush(nil)
        await withDiscardingTaskGroup { connections in
            do {
                for try await connection in listener {
                    connections.addTask { await self.echo(connection) }
                }
            } catch {
                eprint("swisted-actor-echo: accept loop ended: \(error)")
            }
        }
    }

    /// Writes back every chunk the connection receives, then closes it.
    func echo(_ connection: AsyncConnection) async {
        do {
            for try await chunk in connection.inbound {
                try await connection.write(chunk)
            }
        } catch {
            // The peer went away uncleanly: nothing to echo any more.
        }
        await connection.close()
    }
}

func main() throws {
    let arguments = ServerArguments.parse(program: "swisted-actor-echo")
    let host = arguments.host
    let portNumber = arguments.port

    let reactor = Reactor()
    // The task starts once the reactor runs (its jobs wait until then).
    let echo = Echo(reactor: reactor)
    Task {
        await echo.serve(port: portNumber, host: host)
    }
    try reactor.run(installSignalHandlers: true)
}

try main()
exit(0)

// swisted-async-echo: the echo server on Swisted's async API, written the way
// an async/await user would: `reactor.listen` gives an AsyncListener, one child
// task per connection runs `for try await chunk in connection.inbound` and
// `try await connection.write(chunk)`. Everything runs on the reactor's
// executor (the outer task prefers it, the child tasks of its task group inherit
// the preference), so a round trip makes no thread hop.
//
//   swisted-async-echo --port N [--host 127.0.0.1]
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

/// Accepts connections and echoes each one in a child task, until the reactor stops.
func serve(on reactor: Reactor, port: Int, host: String) async {
    let listener: AsyncListener
    do {
        // The same listen backlog as the other servers (Swisted defaults to Twisted's 50).
        listener = try await reactor.listen(port: port, interface: host, backlog: 4096)
    } catch {
        eprint("swisted-async-echo: cannot listen: \(error)")
        exit(1)
    }
    print("listening on \(listener.port)")
    fflush(nil)
    await withDiscardingTaskGroup { connections in
        do {
            for try await connection in listener {
                connections.addTask {
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
        } catch {
            eprint("swisted-async-echo: accept loop ended: \(error)")
        }
    }
}

func main() throws {
    let arguments = ServerArguments.parse(program: "swisted-async-echo")
    let host = arguments.host
    let portNumber = arguments.port

    let reactor = Reactor()
    // The task starts once the reactor runs (its jobs wait until then).
    Task(executorPreference: reactor) {
        await serve(on: reactor, port: portNumber, host: host)
    }
    try reactor.run(installSignalHandlers: true)
}

try main()
exit(0)

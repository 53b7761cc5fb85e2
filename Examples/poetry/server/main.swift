// poetry-server: serves one poem to everyone who connects, slowly.
// swift run poetry-server [--port N] [--iface HOST] [--delay SECONDS] [--num-bytes N] POETRY_FILE
import ArgumentParser
import Glibc
import PoetryServer
import Swisted

@main
struct PoetryServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poetry-server",
        abstract: "Serve a poem to every client that connects, a few bytes at a time.",
        discussion: "With --delay 0 it is the fast server: the whole poem at once, then it hangs up."
    )

    @Option(help: "The port to listen on (0: a free port).") var port = 0
    @Option(help: "The interface to listen on: localhost, an IPv4 or IPv6 literal, \"\" for all.") var iface = "localhost"
    @Option(help: "Seconds between chunks (0: send the whole poem at once).") var delay = 0.7
    @Option(help: "Bytes to send per chunk.") var numBytes = 10
    @Argument(help: "The poem to serve.") var poetryFile: String

    func run() throws {
        guard delay >= 0, delay.isFinite else { throw fail("--delay must be a number of seconds, 0 or more") }
        guard numBytes >= 1 else { throw fail("--num-bytes must be 1 or more") }
        let poem: [UInt8]
        do { poem = try readPoem(poetryFile) } catch { throw fail("\(error)") }

        let reactor = Reactor()
        let factory = PoetryFactory(poem: poem, delay: delay, numBytes: numBytes, reactor: reactor)
        let listening: ListeningPort
        do {
            listening = try reactor.listenTCP(port, factory, interface: iface)
        } catch {
            throw fail("\(error)")
        }
        let bound = listening.getHost() as! any IPAddress
        print("Serving \(poetryFile) on port \(bound.port).")
        fflush(nil)  // a script waiting for the port reads it now
        try reactor.run(installSignalHandlers: true)
    }
}

/// Writes `poetry-server: error: MESSAGE` to standard error; exit status 2.
func fail(_ message: String) -> ExitCode {
    let line = "poetry-server: error: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    return ExitCode(2)
}

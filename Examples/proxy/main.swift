// A TCP proxy with bounded memory: each side of a proxied connection is the
// other's producer, so a slow reader on either end slows the other end down
// instead of filling memory (Twisted's portforward).
// swift run swisted-proxy --port 8080 --to 127.0.0.1:80
import ArgumentParser
import Glibc
import Swisted

@main
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "swisted-proxy")
    @Option(help: "Port to listen on (0: any free port).") var port = 0
    @Option(help: "Interface to listen on.") var interface = "127.0.0.1"
    @Option(help: "Where to forward connections, HOST:PORT.") var to: String

    func run() throws {
        guard let colon = to.lastIndex(of: ":"), let upstreamPort = Int(to[to.index(after: colon)...]) else {
            throw ValidationError("--to must be HOST:PORT")
        }
        let upstreamHost = String(to[..<colon])
        let reactor = Reactor()
        let listening: ListeningPort
        do {
            listening = try reactor.listenTCP(port, ProxyFactory(reactor: reactor, host: upstreamHost, port: upstreamPort), interface: interface)
        } catch {
            throw ValidationError("\(error)")
        }
        print("Proxying port \((listening.getHost() as! any IPAddress).port) to \(to).")
        fflush(nil)
        try reactor.run(installSignalHandlers: true)
    }
}

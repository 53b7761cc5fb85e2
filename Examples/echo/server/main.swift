// The echo server: every byte a client sends comes straight back.
// swift run echo-server [--port N] [--interface HOST] [--once]
import ArgumentParser
import Glibc
import Swisted

final class Echo: Protocol {
    override func connectionMade() throws {
        print("Connection from \(transport!.getPeer())")
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        transport!.write(data)
    }
}

/// Stops the reactor after the first connection ends (for `--once`).
final class OnceEcho: Protocol {
    override func dataReceived(_ data: Span<UInt8>) throws {
        transport!.write(data)
    }

    override func connectionLost(_ reason: any Error) {
        print("Connection closed: \(reason)")
        try? (factory as! OnceFactory).reactor.stop()
    }
}

final class OnceFactory: Factory {
    let reactor: Reactor

    init(reactor: Reactor) {
        self.reactor = reactor
        super.init(protocolType: OnceEcho.self)
    }
}

@main
struct EchoServer: ParsableCommand {
    @Option(help: "Port to listen on (0: any free port).") var port = 0
    @Option(help: "Interface to listen on.") var interface = "127.0.0.1"
    @Flag(help: "Exit after the first connection closes.") var once = false

    func run() throws {
        let reactor = Reactor()
        let factory: Factory
        if once {
            factory = OnceFactory(reactor: reactor)
        } else {
            factory = Factory.forProtocol(Echo.self)
        }
        let listening: ListeningPort
        do {
            listening = try reactor.listenTCP(port, factory, interface: interface)
        } catch {
            throw ValidationError("\(error)")
        }
        let address = listening.getHost() as! any IPAddress
        print("Echo server listening on port \(address.port).")
        fflush(nil)  // a script waiting for the port reads it now
        try reactor.run(installSignalHandlers: true)
    }
}

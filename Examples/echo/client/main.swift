// The echo client: sends a message, waits for all of it to come back, prints it.
// swift run echo-client PORT [--host HOST] [--message TEXT]
import ArgumentParser
import Swisted

final class EchoClient: Protocol {
    var expected: [UInt8] = []
    var received: [UInt8] = []

    override func connectionMade() throws {
        expected = Array((factory as! EchoClientFactory).message.utf8)
        transport!.write(expected)
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        received += data.array
        if received.count >= expected.count {
            print("Echoed back: \(String(decoding: received, as: UTF8.self))")
            transport!.loseConnection()
        }
    }
}

final class EchoClientFactory: ClientFactory {
    let reactor: Reactor
    let message: String
    var succeeded = false

    init(reactor: Reactor, message: String) {
        self.reactor = reactor
        self.message = message
        super.init(protocolType: EchoClient.self)
    }

    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        print("Connection failed: \(reason)")
        try? reactor.stop()
    }

    override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        succeeded = reason is ConnectionDone
        try? reactor.stop()
    }
}

@main
struct EchoClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "echo-client")
    @Argument(help: "Port of the echo server.") var port: Int
    @Option(help: "Host of the echo server.") var host = "127.0.0.1"
    @Option(help: "What to send.") var message = "Hello from Swisted!"

    func run() throws {
        let reactor = Reactor()
        let factory = EchoClientFactory(reactor: reactor, message: message)
        reactor.connectTCP(host, port, factory, timeout: 5)
        try reactor.run()
        if !factory.succeeded { throw ExitCode.failure }
    }
}

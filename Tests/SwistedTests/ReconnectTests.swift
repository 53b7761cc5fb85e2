// ReconnectingClientFactory against a real server that goes away and comes
// back on the same port.

import Swisted
import Testing

private final class CountingReconnector: ReconnectingClientFactory {
    var made = 0
    var failed = 0
    var lost = 0
    var onMade: (() -> Void)?

    override func buildProtocol(_ address: any Address) -> Protocol? {
        resetDelay()  // a good connection: the next outage starts from initialDelay
        let probe = Probe()
        probe.onMade = { [unowned self] _ in
            made += 1
            onMade?()
        }
        return probe
    }

    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        failed += 1
        super.clientConnectionFailed(connector, reason: reason)
    }

    override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        lost += 1
        super.clientConnectionLost(connector, reason: reason)
    }
}

@Suite("Reconnecting over real sockets")
struct ReconnectTests {
    @Test("the server goes away and comes back on the same port; the client reconnects by itself")
    func serverComesBack() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        var port: ListeningPort!
        defer { port = nil }  // closures kept by what it holds capture it: break the cycle
        var portNumber = 0
        server.build = { [unowned server] _ in  // the factory keeps this closure
            let probe = Probe()
            probe.onMade = { probe in
                guard server.buildCount == 1 else { return }
                // The first time: go away (close the connection and the port),
                // and come back on the same port a little later.
                port.stopListening()
                probe.transport!.loseConnection()
                reactor.callLater(0.3) {
                    port = try reactor.listenTCP(portNumber, server, interface: "127.0.0.1")
                }
            }
            return probe
        }
        port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        portNumber = port.portNumber
        let client = CountingReconnector()
        client.initialDelay = 0.05
        client.factor = 1.5
        client.jitter = 0
        client.onMade = { [unowned client] in  // the factory keeps this closure
            if client.made == 2 {
                client.stopTrying()
                try? reactor.stop()
            }
        }
        reactor.connectTCP("127.0.0.1", portNumber, client)
        try runReactor(reactor)
        #expect(client.made == 2)
        #expect(client.lost >= 1)
        #expect(client.failed >= 1)  // refused while the server was away
        #expect(server.buildCount == 2)
    }
}

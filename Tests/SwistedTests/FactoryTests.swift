// Factory start/stop counting across ports and connectors.

import Swisted
import Testing

@Suite("Factory start and stop")
struct FactoryTests {
    @Test("One factory on two ports: startFactory once, stopFactory once after both ports stopped")
    func oneFactoryTwoPorts() throws {
        let reactor = Reactor()
        let factory = RecordingFactory()
        let first = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        let second = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        #expect(factory.startCount == 1)
        #expect(factory.numPorts == 2)
        var stopsAfterFirst = -1
        reactor.callWhenRunning {
            first.stopListening {
                stopsAfterFirst = factory.stopCount
                second.stopListening { try? reactor.stop() }
            }
        }
        try runReactor(reactor)

        #expect(stopsAfterFirst == 0)
        #expect(factory.startCount == 1)
        #expect(factory.stopCount == 1)
        #expect(factory.numPorts == 0)
    }

    @Test("A ClientFactory starts on connect and stops after clientConnectionLost")
    func clientFactoryStopsAfterConnectionLost() throws {
        let reactor = Reactor()
        let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.loseConnection() }
            return probe
        }
        var stopsInsideLost = -1
        client.onLost = { _, _ in
            stopsInsideLost = client.stopCount
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        #expect(client.startCount == 1)
        #expect(client.stopCount == 0)
        try runReactor(reactor)
        client.onLost = nil

        #expect(stopsInsideLost == 0)
        #expect(client.startCount == 1)
        #expect(client.stopCount == 1)
        #expect(client.lostCount == 1)
    }

    @Test("A ClientFactory stops after clientConnectionFailed")
    func clientFactoryStopsAfterConnectionFailed() throws {
        let reactor = Reactor()
        let port = try freePort(reactor)
        let client = RecordingFactory()
        var stopsInsideFailed = -1
        client.onFailed = { _, _ in
            stopsInsideFailed = client.stopCount
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port, client)
        #expect(client.startCount == 1)
        try runReactor(reactor)
        client.onFailed = nil

        #expect(stopsInsideFailed == 0)
        #expect(client.failedCount == 1)
        #expect(client.startCount == 1)
        #expect(client.stopCount == 1)
    }

    @Test("A ClientFactory that reconnects from clientConnectionFailed is not stopped in between")
    func reconnectFromConnectionFailedKeepsFactoryStarted() throws {
        let reactor = Reactor()
        let port = try freePort(reactor)
        let log = EventLog()
        let client = RecordingFactory()
        client.log = log
        client.onFailed = { connector, _ in
            if (connector.factory as! RecordingFactory).failedCount < 3 {
                try? connector.connect()
            } else {
                try? reactor.stop()
            }
        }
        reactor.connectTCP("127.0.0.1", port, client)
        try runReactor(reactor)

        #expect(client.failedCount == 3)
        #expect(client.startedConnectingCount == 3)
        #expect(client.startCount == 1)
        #expect(client.stopCount == 1)
        #expect(log.events == ["startFactory",
                               "startedConnecting", "clientConnectionFailed",
                               "startedConnecting", "clientConnectionFailed",
                               "startedConnecting", "clientConnectionFailed",
                               "stopFactory"])
    }

    @Test("One ClientFactory on two connectors: started once, stopped once after both are done")
    func clientFactoryOnTwoConnectors() throws {
        let reactor = Reactor()
        let port = try freePort(reactor)
        let client = RecordingFactory()
        var stopsAfterFirstFailure = -1
        client.onFailed = { connector, _ in
            let factory = connector.factory as! RecordingFactory
            if factory.failedCount == 1 {
                stopsAfterFirstFailure = factory.stopCount
            } else {
                try? reactor.stop()
            }
        }
        reactor.connectTCP("127.0.0.1", port, client)
        reactor.connectTCP("127.0.0.1", port, client)
        #expect(client.startCount == 1)
        #expect(client.numPorts == 2)
        try runReactor(reactor)

        #expect(client.failedCount == 2)
        #expect(stopsAfterFirstFailure == 0)
        #expect(client.startCount == 1)
        #expect(client.stopCount == 1)
    }
}

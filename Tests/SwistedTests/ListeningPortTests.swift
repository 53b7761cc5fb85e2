// Listening ports: binding, errors, refusing connections, closing and rebinding.

import Glibc
import Swisted
import Testing

@Suite("TCP listening ports")
struct ListeningPortTests {
    @Test("stopListening then listening again on the same port in the same callback succeeds and serves")
    func rebindRightAfterStopListening() throws {
        let reactor = Reactor()
        let client = RecordingFactory()
        var second: ListeningPort?
        defer { second = nil }  // closures kept by what it holds capture it: break the cycle
        var rebindError: (any Error)?
        var number = 0
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("again") }
            probe.onData = { probe, _ in if probe.received.count >= 5 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { _, _ in
            second?.stopListening()
            try? reactor.stop()
        }
        client.onFailed = { _, _ in
            second?.stopListening()
            try? reactor.stop()
        }
        reactor.callWhenRunning {
            let first = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
            number = first.portNumber
            first.stopListening()
            do {
                second = try reactor.listenTCP(number, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
            } catch {
                rebindError = error
                try reactor.stop()
                return
            }
            reactor.connectTCP("127.0.0.1", number, client)
        }
        try runReactor(reactor)

        #expect(rebindError == nil)
        #expect(second?.portNumber == number)
        #expect(client.failedCount == 0)
        #expect(client.probes.first?.receivedString == "again")
    }

    @Test("Listening on a port in use throws CannotListenError with EADDRINUSE and the address")
    func portInUse() throws {
        let reactor = Reactor()
        let factory = RecordingFactory()
        let taken = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        let number = taken.portNumber
        var caught: CannotListenError?
        do {
            _ = try reactor.listenTCP(number, factory, interface: "127.0.0.1")
        } catch {
            caught = error
        }
        taken.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let error = try #require(caught)
        #expect(error.interface == "127.0.0.1")
        #expect(error.port == number)
        #expect((error.underlying as? UVError) == .addressInUse)
        #expect(error.description == "Couldn't listen on 127.0.0.1:\(number): EADDRINUSE: address already in use.")
        #expect(factory.startCount == 1)
        #expect(factory.stopCount == 1)
    }

    @Test("A bad interface throws CannotListenError carrying InvalidAddressError", arguments: ["not-an-ip", "999.1.1.1", "1.2.3", "::zz"])
    func badInterface(interface: String) throws {
        let reactor = Reactor()
        let factory = RecordingFactory()
        var caught: CannotListenError?
        do {
            _ = try reactor.listenTCP(0, factory, interface: interface)
        } catch {
            caught = error
        }
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let error = try #require(caught)
        #expect(error.interface == interface)
        #expect(error.port == 0)
        let invalid = try #require(error.underlying as? InvalidAddressError)
        #expect(invalid.address == interface)
        #expect(error.description.hasPrefix("Couldn't listen on \(interface):0: Invalid address \(interface): not an IP address"))
        #expect(factory.startCount == 0)
    }

    @Test("A port out of range throws CannotListenError carrying InvalidAddressError", arguments: [70000, -1, 65536])
    func portOutOfRange(port: Int) throws {
        let reactor = Reactor()
        let factory = RecordingFactory()
        var caught: CannotListenError?
        do {
            _ = try reactor.listenTCP(port, factory, interface: "127.0.0.1")
        } catch {
            caught = error
        }
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let error = try #require(caught)
        #expect(error.port == port)
        let invalid = try #require(error.underlying as? InvalidAddressError)
        #expect(invalid.reason == "port must be in 0...65535")
        #expect(error.description == "Couldn't listen on 127.0.0.1:\(port): Invalid address 127.0.0.1:\(port): port must be in 0...65535.")
        #expect(factory.startCount == 0)
    }

    @Test("buildProtocol returning nil closes that connection at once; the port serves the next one normally")
    func buildProtocolNilRefusesOneConnection() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        var built = 0
        server.build = { _ in
            built += 1
            return built == 1 ? nil : Echo()
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        var clientBuilt = 0
        client.build = { _ in
            let probe = Probe()
            clientBuilt += 1
            // Only the second connection talks; the first just waits for its end.
            let talks = clientBuilt == 2
            probe.onMade = { probe in if talks { probe.transport!.write("served") } }
            probe.onData = { probe, _ in if probe.received.count >= 6 { probe.transport!.loseConnection() } }
            return probe
        }
        var stateAfterRefusal: (starts: Int, stops: Int) = (-1, -1)
        client.onLost = { connector, _ in
            if (connector.factory as! RecordingFactory).lostCount == 1 {
                stateAfterRefusal = (server.startCount, server.stopCount)
                try? connector.connect()
            } else {
                port.stopListening()
                try? reactor.stop()
            }
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(server.buildCount == 2)
        #expect(stateAfterRefusal.starts == 1 && stateAfterRefusal.stops == 0, "the port stopped after refusing")
        #expect(client.probes.count == 2)
        #expect(client.probes.first?.lostCount == 1)
        #expect(client.probes.first?.receivedCount == 0)
        #expect(isDoneOrLost(client.probes.first?.lostReason))
        #expect(client.probes.last?.receivedString == "served")
        #expect(client.probes.last?.lostCount == 1)
        #expect(client.lostCount == 2)
    }

    @Test("stopListening's completion runs once after the port closed, also when called twice")
    func stopListeningCompletion() throws {
        let reactor = Reactor()
        let factory = RecordingFactory()
        let port = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        var first = 0, second = 0, third = 0
        var stopsAtFirst = -1
        reactor.callWhenRunning {
            port.stopListening {
                first += 1
                stopsAtFirst = factory.stopCount
                // Already closed: the completion comes later, once.
                port.stopListening {
                    third += 1
                    try? reactor.stop()
                }
            }
            port.stopListening { second += 1 }
            #expect(first == 0 && second == 0)
        }
        try runReactor(reactor)

        #expect(first == 1)
        #expect(second == 1)
        #expect(third == 1)
        #expect(stopsAtFirst == 1)
        #expect(factory.stopCount == 1)
    }

    @Test("A port keeps listening after its last reference is dropped")
    func droppedPortKeepsListening() throws {
        let reactor = Reactor()
        var number = 0
        do {
            let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
            number = port.portNumber
        }
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("ok") }
            probe.onData = { probe, _ in if probe.received.count >= 2 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { _, _ in try? reactor.stop() }  // the shutdown closes the port
        reactor.connectTCP("127.0.0.1", number, client)
        try runReactor(reactor)

        #expect(client.probes.first?.receivedString == "ok")
    }
}

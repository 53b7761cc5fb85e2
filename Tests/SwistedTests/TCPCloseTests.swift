// How TCP connections end: connectionLost exactly once on every path, with
// the right reason, and calls made from inside callbacks (re-entrancy).

import Glibc
import Swisted
import Testing

struct Boom: Error, CustomStringConvertible {
    let where_: String
    var description: String { "boom in \(where_)" }
}

/// Lost-reason types a peer may legitimately see when the other side resets or aborts.
func isDoneOrLost(_ reason: (any Error)?) -> Bool {
    reason is ConnectionDone || reason is ConnectionLost
}

@Suite("TCP connection close paths")
struct TCPCloseTests {
    @Test("A clean close by the peer gives connectionLost(ConnectionDone) exactly once")
    func cleanCloseByPeer() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        server.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in
                listening?.stopListening()
                try? reactor.stop()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.loseConnection() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        let probe = try #require(server.probes.first)
        #expect(probe.madeCount == 1)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionDone)
    }

    @Test("loseConnection by us gives our protocol connectionLost(ConnectionDone) exactly once, and the peer too")
    func loseConnectionByUs() throws {
        let reactor = Reactor()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let bothClosed = Countdown(2) {
            listening?.stopListening()
            try? reactor.stop()
        }
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.loseConnection() }
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(server.probes.map(\.lostCount) == [1])
        #expect(server.probes.first?.lostReason is ConnectionDone)
        #expect(client.probes.map(\.lostCount) == [1])
        #expect(client.probes.first?.lostReason is ConnectionDone)
    }

    @Test("abortConnection gives connectionLost(ConnectionAborted) exactly once; the peer sees its end once")
    func abortConnection() throws {
        let reactor = Reactor()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let bothClosed = Countdown(2) {
            listening?.stopListening()
            try? reactor.stop()
        }
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        var disconnecting = false
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write("unsent, maybe")
                probe.transport!.abortConnection()
                disconnecting = probe.transport!.disconnecting
                probe.transport!.abortConnection()  // again: nothing
                probe.transport!.loseConnection()   // after abort: nothing
            }
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(disconnecting)
        #expect(client.probes.map(\.lostCount) == [1])
        #expect(client.probes.first?.lostReason is ConnectionAborted)
        #expect(client.lostReason is ConnectionAborted)
        #expect(server.probes.map(\.lostCount) == [1])
        #expect(isDoneOrLost(server.probes.first?.lostReason), "server saw \(String(describing: server.probes.first?.lostReason))")
    }

    @Test("A peer reset (SO_LINGER 0 close) gives connectionLost exactly once, with ConnectionLost or ConnectionDone")
    func peerResetWithLingerZero() throws {
        let reactor = Reactor()
        let probe = try serveOneRawClient(reactor) { _, client, _ in
            client.reset()  // sends RST
        }

        #expect(probe.lostCount == 1)
        #expect(isDoneOrLost(probe.lostReason), "saw \(String(describing: probe.lostReason))")
        if let lost = probe.lostReason as? ConnectionLost {
            #expect(lost.underlying == .connectionReset)
        }
    }

    @Test("A Swisted client aborting with unread data resets the server, which sees connectionLost exactly once")
    func clientAbortWithUnreadDataResetsPeer() throws {
        let reactor = Reactor()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let bothClosed = Countdown(2) {
            listening?.stopListening()
            try? reactor.stop()
        }
        let blob = pattern(count: 4 * 1024 * 1024)
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write(blob) }
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onData = { probe, _ in probe.transport!.abortConnection() }
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.map(\.lostCount) == [1])
        #expect(client.probes.first?.dataCount == 1)
        #expect(client.probes.first?.lostReason is ConnectionAborted)
        #expect(server.probes.map(\.lostCount) == [1])
        #expect(isDoneOrLost(server.probes.first?.lostReason), "server saw \(String(describing: server.probes.first?.lostReason))")
    }

    @Test("An error thrown in a protocol callback closes that connection with the error, is logged once with the peer, and the port keeps accepting",
          arguments: ["dataReceived", "connectionMade"])
    func errorInCallbackClosesOnlyThatConnection(callback: String) throws {
        let reactor = Reactor()
        let logs = LogCapture(reactor)
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let secondDone = Countdown(2) {  // both ends of the second connection closed
            listening?.stopListening()
            try? reactor.stop()
        }
        let server = RecordingFactory()
        var built = 0
        server.build = { _ in
            let probe = Probe()
            built += 1
            let first = built == 1
            if !first { probe.onLost = { _, _ in secondDone.tick() } }
            probe.onMade = { _ in if first, callback == "connectionMade" { throw Boom(where_: callback) } }
            probe.onData = { probe, bytes in
                if first, callback == "dataReceived" { throw Boom(where_: callback) }
                probe.transport!.write(bytes)
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        var firstClientHost = ""
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                if firstClientHost.isEmpty { firstClientHost = probe.transport!.getHost().description }
                probe.transport!.write("ping")
            }
            probe.onData = { probe, _ in if probe.received.count >= 4 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { connector, _ in
            if (connector.factory as! RecordingFactory).lostCount == 1 {
                try? connector.connect()  // the second connection must be served normally
            } else {
                secondDone.tick()
            }
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(server.buildCount == 2)
        let failed = try #require(server.probes.first)
        #expect(failed.lostCount == 1)
        #expect((failed.lostReason as? Boom)?.where_ == callback)
        #expect(logs.messages.count == 1)
        let message = logs.messages.first ?? ""
        #expect(message.contains(callback))
        #expect(message.contains("boom in \(callback)"))
        #expect(message.contains(firstClientHost), "log: \(message), peer: \(firstClientHost)")
        #expect(client.probes.count == 2)
        #expect(client.probes.first?.lostCount == 1)
        #expect(isDoneOrLost(client.probes.first?.lostReason))
        #expect(client.probes.last?.receivedString == "ping")
        #expect(server.probes.last?.lostCount == 1)
        #expect(server.probes.last?.lostReason is ConnectionDone)
    }
}

@Suite("TCP calls from inside callbacks")
struct TCPReentrancyTests {
    @Test("abortConnection inside connectionMade: connectionLost(ConnectionAborted) once, no data delivered")
    func abortInsideConnectionMade() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.abortConnection() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("data nobody reads") }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        let probe = try #require(server.probes.first)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionAborted)
        #expect(probe.dataCount == 0)
        #expect(client.probes.map(\.lostCount) == [1])
    }

    @Test("write then loseConnection inside dataReceived: the reply arrives, then ConnectionDone")
    func writeAndLoseInsideDataReceived() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onData = { probe, bytes in
                probe.transport!.write("you said: ")
                probe.transport!.write(bytes)
                probe.transport!.loseConnection()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("hello") }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.first?.receivedString == "you said: hello")
        #expect(client.probes.first?.lostReason is ConnectionDone)
        #expect(server.probes.map(\.lostCount) == [1])
    }

    @Test("stopListening inside connectionMade: that connection keeps working, the port closes")
    func stopListeningInsideConnectionMade() throws {
        let reactor = Reactor()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        var stopCompletions = 0
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { _ in listening?.stopListening { stopCompletions += 1 } }
            probe.onData = { probe, bytes in probe.transport!.write(bytes) }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("still here") }
            probe.onData = { probe, _ in if probe.received.count >= 10 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { connector, _ in
            // The port is closed now: a new attempt is refused.
            try? connector.connect()
        }
        client.onFailed = { _, _ in try? reactor.stop() }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.first?.receivedString == "still here")
        #expect(client.failedReason is ConnectionRefusedError)
        #expect(stopCompletions == 1)
        #expect(server.startCount == 1)
        #expect(server.stopCount == 1)
        #expect(server.buildCount == 1)
    }

    @Test("stopListening inside buildProtocol: the connection being built is still served")
    func stopListeningInsideBuildProtocol() throws {
        let reactor = Reactor()
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let server = RecordingFactory()
        server.build = { _ in
            listening?.stopListening()
            return Echo()
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("abc") }
            probe.onData = { probe, _ in if probe.received.count >= 3 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { _, _ in try? reactor.stop() }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.first?.receivedString == "abc")
        #expect(server.stopCount == 1)
    }

    @Test("reactor.stop() inside dataReceived closes both ends, each with connectionLost(ConnectionLost) once")
    func reactorStopInsideDataReceived() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onData = { _, _ in try reactor.stop() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("stop please") }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(server.probes.map(\.lostCount) == [1])
        #expect(server.probes.first?.lostReason is ConnectionLost)
        #expect(client.probes.map(\.lostCount) == [1])
        #expect(client.probes.first?.lostReason is ConnectionLost)
        #expect(client.lostCount == 1)
        #expect(server.stopCount == 1)
        #expect(client.stopCount == 1)
    }

    @Test("reactor.stop() inside connectionMade closes the connection with connectionLost once")
    func reactorStopInsideConnectionMade() throws {
        let reactor = Reactor()
        let server = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { _ in try reactor.stop() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", server.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.map(\.lostCount) == [1])
        #expect(client.probes.first?.lostReason is ConnectionLost)
        #expect(client.lostCount == 1)
    }

    @Test("write, loseConnection and abortConnection inside connectionLost are ignored; connectionLost stays at one call")
    func callsInsideConnectionLostAreIgnored() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.loseConnection() }
            probe.onLost = { probe, _ in
                probe.transport!.write("too late")
                probe.transport!.loseConnection()
                probe.transport!.abortConnection()
                #expect(probe.transport!.disconnecting)
                #expect(probe.transport!.bufferSize == 0)
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in Probe() }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(server.probes.map(\.lostCount) == [1])
        #expect(server.probes.first?.lostReason is ConnectionDone)
        #expect(client.probes.first?.receivedCount == 0)
        #expect(client.probes.map(\.lostCount) == [1])
    }

    @Test("A zero-delay callLater chain does not starve connections")
    func zeroDelayChainDoesNotStarveIO() throws {
        let reactor = Reactor()
        let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        var ticks = 0
        var done = false
        func tick() {
            ticks += 1
            if !done { reactor.callLater(0) { tick() } }
        }
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("through") }
            probe.onData = { probe, _ in if probe.received.count >= 7 { probe.transport!.loseConnection() } }
            return probe
        }
        client.onLost = { _, _ in
            done = true
            port.stopListening()
            try? reactor.stop()
        }
        reactor.callWhenRunning {
            reactor.callLater(0) { tick() }
            reactor.connectTCP("127.0.0.1", port.portNumber, client)
        }
        try runReactor(reactor)
        // The last tick is still pending; its closure keeps the reactor that keeps it.
        for call in reactor.getDelayedCalls() { try call.cancel() }

        #expect(client.probes.first?.receivedString == "through")
        #expect(ticks > 0)
    }

    @Test("reactor.stop() with a write still pending after loseConnection: connectionLost(ConnectionLost) once")
    func reactorStopWithPendingWrites() throws {
        let reactor = Reactor()
        var rawClient: Int32 = -1
        let blob = pattern(count: 8 * 1024 * 1024)
        var pendingAtStop = -1
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write(blob)  // the raw peer never reads
                probe.transport!.loseConnection()
                // Next loop round: the kernel has taken what it can (the
                // peer's small receive buffer bounds it), the rest is pending.
                reactor.callLater(0) {
                    pendingAtStop = probe.transport!.bufferSize
                    try reactor.stop()
                }
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        reactor.callWhenRunning {
            let fd = Raw.tcpSocket()
            Raw.setReceiveBuffer(fd, bytes: 4096)  // before connect: the window stays small
            rawClient = Raw.connect(fd, port: port.portNumber)
        }
        try runReactor(reactor)
        if rawClient >= 0 { close(rawClient) }

        #expect(pendingAtStop > 0)
        #expect(server.probes.map(\.lostCount) == [1])
        #expect(server.probes.first?.lostReason is ConnectionLost)
        #expect(server.stopCount == 1)
    }
}

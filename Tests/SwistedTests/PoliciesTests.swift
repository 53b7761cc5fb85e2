// The policies on real loopback sockets: connection limits (overall, per
// peer, with an overflow protocol), counts that return to 0 however a
// connection ends, and idle timeouts against a slowloris-style crowd.

import Glibc
import Swisted
import Testing

/// Connects a client to 127.0.0.1:`port` (from `bindHost` if given) that
/// writes `message` once connected. `onEchoed` runs once the whole message
/// came back; `onLost` when the connection ends (or the attempt fails).
@discardableResult
private func connectEchoClient(_ reactor: Reactor, _ port: Int, _ message: String, from bindHost: String? = nil,
                               onEchoed: @escaping (Probe) -> Void = { _ in },
                               onLost: @escaping (Probe, any Error) -> Void) -> Probe {
    let probe = Probe()
    let bytes = Array(message.utf8)
    probe.onMade = { if !bytes.isEmpty { $0.transport!.write(bytes) } }
    probe.onData = { probe, _ in if probe.received == bytes { onEchoed(probe) } }
    probe.onLost = onLost
    let factory = RecordingFactory()
    factory.build = { _ in probe }
    factory.onFailed = { _, reason in onLost(probe, reason) }
    if let bindHost {
        reactor.connectTCP("127.0.0.1", port, factory, timeout: 5, bindAddress: (bindHost, 0))
    } else {
        reactor.connectTCP("127.0.0.1", port, factory)
    }
    return probe
}

/// A server factory of echoing probes that tells `onLost` about each lost one.
private func echoServer(onLost: @escaping (Probe, any Error) -> Void) -> RecordingFactory {
    let server = RecordingFactory()
    server.build = { _ in
        let probe = Probe()
        probe.onData = { probe, bytes in probe.transport!.write(bytes) }
        probe.onLost = onLost
        return probe
    }
    return server
}

private struct PolicyBoom: Error {}

@Suite("Connection limits and idle timeouts on loopback")
struct PoliciesTests {
    @Test("over maxConnections the excess is closed, the others still echo; after closes new ones are served")
    func overallLimit() throws {
        let reactor = Reactor()
        var serverLost = 0
        var afterServerLost: () -> Void = {}
        // The server's protocols call it and it holds the port: drop it at the end (no cycle).
        defer { afterServerLost = {} }
        let limited = LimitConnectionsFactory(wrapping: echoServer { _, _ in
            serverLost += 1
            afterServerLost()
        }, maxConnections: 3)
        let port = try reactor.listenTCP(0, limited, interface: "127.0.0.1")

        var served: [Probe] = []
        var refused = 0
        var unexpected: [String] = []
        var countsWhenFull: (Int, Int) = (-1, -1)
        var countAfterCloses = -1
        var secondRoundServed = 0
        var secondRoundLost = 0

        func secondRound() {
            countAfterCloses = limited.connectionCount
            for index in 0..<3 {
                connectEchoClient(reactor, port.portNumber, "again-\(index)", onEchoed: { probe in
                    secondRoundServed += 1
                    probe.transport!.loseConnection()
                }, onLost: { probe, _ in
                    secondRoundLost += 1
                    if probe.received.isEmpty { unexpected.append("second round refused") }
                    if secondRoundLost == 3 {
                        afterServerLost = {
                            if serverLost == 6 {
                                port.stopListening()
                                try? reactor.stop()
                            }
                        }
                        afterServerLost()
                    }
                })
            }
        }

        func firstRoundSettled() {
            guard served.count == 3, refused == 2 else { return }
            countsWhenFull = (limited.connectionCount, limited.refusedCount)
            afterServerLost = { if serverLost == 3 { secondRound() } }
            for probe in served { probe.transport!.loseConnection() }
        }

        for index in 0..<5 {
            connectEchoClient(reactor, port.portNumber, "hello-\(index)", onEchoed: { probe in
                served.append(probe)
                firstRoundSettled()
            }, onLost: { probe, _ in
                if probe.received.isEmpty {
                    refused += 1
                    firstRoundSettled()
                } else if !served.contains(where: { $0 === probe }) {
                    unexpected.append("lost with a partial echo")
                }
            })
        }
        try runReactor(reactor)

        #expect(unexpected.isEmpty, "\(unexpected)")
        #expect(served.count == 3)
        #expect(refused == 2)
        #expect(countsWhenFull.0 == 3)
        #expect(countsWhenFull.1 == 2)
        #expect(countAfterCloses == 0)
        #expect(secondRoundServed == 3)
        #expect(limited.connectionCount == 0)
        #expect(limited.peerConnectionCounts.isEmpty)
        #expect(limited.refusedCount == 2)
    }

    @Test("maxConnectionsPerPeer limits each host apart (127.0.0.1 and 127.0.0.2); counts return to 0")
    func perPeerLimit() throws {
        let reactor = Reactor()
        var serverLost = 0
        var allServerLost: () -> Void = {}
        defer { allServerLost = {} }  // holds the port, which holds the factory that calls it
        let limited = LimitConnectionsFactory(wrapping: echoServer { _, _ in
            serverLost += 1
            if serverLost == 4 { allServerLost() }
        }, maxConnectionsPerPeer: 2)
        let port = try reactor.listenTCP(0, limited, interface: "127.0.0.1")

        var servedFrom: [String: [Probe]] = [:]
        var refusedFrom: [String: Int] = [:]
        var failures: [String] = []
        var countsWhenSettled: [String: Int] = [:]
        var settledChecked = false

        func settle() {
            let served = servedFrom.values.map(\.count).reduce(0, +)
            let refused = refusedFrom.values.reduce(0, +)
            guard served == 4, refused == 1, !settledChecked else { return }
            settledChecked = true
            countsWhenSettled = limited.peerConnectionCounts
            allServerLost = {
                port.stopListening()
                try? reactor.stop()
            }
            for probe in servedFrom.values.joined() { probe.transport!.loseConnection() }
        }

        for (host, count) in [("127.0.0.1", 3), ("127.0.0.2", 2)] {
            for index in 0..<count {
                connectEchoClient(reactor, port.portNumber, "\(host)-\(index)", from: host, onEchoed: { probe in
                    servedFrom[host, default: []].append(probe)
                    settle()
                }, onLost: { probe, reason in
                    if reason is ConnectError || reason is InvalidAddressError {
                        failures.append("\(host): \(reason)")
                        try? reactor.stop()
                    } else if probe.received.isEmpty {
                        refusedFrom[host, default: 0] += 1
                        settle()
                    }
                })
            }
        }
        try runReactor(reactor)

        #expect(failures.isEmpty, "\(failures)")
        #expect(servedFrom["127.0.0.1"]?.count == 2)
        #expect(servedFrom["127.0.0.2"]?.count == 2)
        #expect(refusedFrom == ["127.0.0.1": 1])
        #expect(countsWhenSettled == ["127.0.0.1": 2, "127.0.0.2": 2])
        #expect(limited.connectionCount == 0)
        #expect(limited.peerConnectionCounts.isEmpty)
    }

    @Test("counts go down exactly once for connections ended by abort, reset, a throwing callback and clean closes")
    func countsReturnToZero() throws {
        let reactor = Reactor()
        let logs = LogCapture(reactor)
        var reasons: [String: any Error] = [:]
        var rawSocket: Int32 = -1
        var countsDuringRun: [Int] = []
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onData = { probe, bytes in
                let text = String(decoding: bytes, as: UTF8.self)
                probe.name = text
                switch text {
                case "abort": probe.transport!.abortConnection()
                case "throw": throw PolicyBoom()
                case "close": probe.transport!.loseConnection()
                case "raw":
                    // The raw client resets its end now that the server holds the connection.
                    Raw.setLingerZero(rawSocket)
                    Glibc.close(rawSocket)
                    rawSocket = -1
                default: probe.transport!.write(bytes)
                }
            }
            return probe
        }
        var lostOnServer = 0
        var limitedRef: LimitConnectionsFactory?
        var portRef: ListeningPort?
        // The server's build closure reads both, and the port holds the server: no cycle left.
        defer {
            limitedRef = nil
            portRef = nil
        }
        let build = server.build!
        server.build = { address in
            let probe = build(address) as! Probe
            probe.onLost = { probe, reason in
                reasons[probe.name] = reason
                countsDuringRun.append(limitedRef!.connectionCount)
                lostOnServer += 1
                if lostOnServer == 5 {
                    portRef!.stopListening()
                    try? reactor.stop()
                }
            }
            return probe
        }
        let limited = LimitConnectionsFactory(wrapping: server, maxConnections: 10)
        limitedRef = limited
        let port = try reactor.listenTCP(0, limited, interface: "127.0.0.1")
        portRef = port

        for message in ["abort", "throw", "close"] {
            connectEchoClient(reactor, port.portNumber, message, onLost: { _, _ in })
        }
        connectEchoClient(reactor, port.portNumber, "echo", onEchoed: { $0.transport!.loseConnection() }, onLost: { _, _ in })
        reactor.callWhenRunning {
            rawSocket = Raw.connect(port: port.portNumber)
            _ = "raw".withCString { send(rawSocket, $0, 3, 0) }
        }
        try runReactor(reactor)
        if rawSocket >= 0 { Glibc.close(rawSocket) }

        #expect(lostOnServer == 5)
        #expect(reasons["abort"] is ConnectionAborted)
        #expect(reasons["throw"] is PolicyBoom)
        #expect(reasons["close"] is ConnectionDone)
        #expect(reasons["echo"] is ConnectionDone)
        #expect(reasons["raw"] is ConnectionLost, "a reset: \(String(describing: reasons["raw"]))")
        #expect(logs.messages.contains { $0.contains("PolicyBoom") })
        #expect(countsDuringRun.count == 5)
        #expect(countsDuringRun.allSatisfy { $0 >= 0 }, "never counted below 0: \(countsDuringRun)")
        #expect(limited.connectionCount == 0)
        #expect(limited.peerConnectionCounts.isEmpty)
        #expect(limited.refusedCount == 0)
    }

    @Test("an overflow protocol tells the excess client it is busy; the served client is untouched")
    func overflowProtocol() throws {
        final class Busy: Protocol {
            override func connectionMade() throws {
                transport!.write("busy\r\n")
                transport!.loseConnection()
            }
        }
        let reactor = Reactor()
        var serverLost = 0
        var whenServerDone: () -> Void = {}
        defer { whenServerDone = {} }  // holds the port, which holds the factory that calls it
        let limited = LimitConnectionsFactory(wrapping: echoServer { _, _ in
            serverLost += 1
            whenServerDone()
        }, maxConnections: 1, overflowProtocolType: Busy.self)
        let port = try reactor.listenTCP(0, limited, interface: "127.0.0.1")

        var countWhileBusy = -1
        var busyClient: Probe?
        var asked = false
        let first = connectEchoClient(reactor, port.portNumber, "first", onLost: { _, _ in })
        first.onData = { probe, _ in
            if probe.receivedString == "first", !asked {
                asked = true
                busyClient = connectEchoClient(reactor, port.portNumber, "", onLost: { _, _ in
                    countWhileBusy = limited.connectionCount
                    // The served connection still works after the refusal.
                    first.transport!.write(" again")
                })
            } else if probe.receivedString == "first again" {
                whenServerDone = {
                    port.stopListening()
                    try? reactor.stop()
                }
                probe.transport!.loseConnection()
            }
        }
        try runReactor(reactor)

        #expect(busyClient?.receivedString == "busy\r\n")
        #expect(busyClient?.lostReason is ConnectionDone)
        #expect(first.receivedString == "first again")
        #expect(countWhileBusy == 1)
        #expect(serverLost == 1)
        #expect(limited.refusedCount == 1)
        #expect(limited.overflowCount == 0)
        #expect(limited.connectionCount == 0)
    }

    @Test("a TimingOutProtocol on a real connection uses the reactor's clock and closes the idle client")
    func timingOutProtocolOnReactor() throws {
        final class Idle: TimingOutProtocol {
            var timedOut = false
            override func connectionMade() throws { setTimeout(0.1) }
            override func timeoutConnection() {
                timedOut = true
                super.timeoutConnection()
            }
        }
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in Idle() }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = connectEchoClient(reactor, port.portNumber, "", onLost: { _, _ in
            port.stopListening()
            try? reactor.stop()
        })
        try runReactor(reactor)

        #expect((server.protocols.first as? Idle)?.timedOut == true)
        #expect(client.lostReason is ConnectionDone)
    }

    @Test("slowloris: 20 clients sending a byte per second are closed by the idle timeout; regular clients are fully served meanwhile")
    func slowloris() throws {
        final class CountingTimeouts: TimeoutFactory {
            var timeouts = 0
        }
        final class CountedTimeout: TimeoutProtocol {
            override func timeoutConnection() {
                (factory as! CountingTimeouts).timeouts += 1
                super.timeoutConnection()
            }
        }
        let slowCount = 20
        let regularCount = 5
        let chunksPerRegular = 12
        let timeout = 0.4
        let regularInterval = 0.04  // 12 chunks span longer than the timeout: only the resets keep them open
        let slowInterval = 1.0

        let reactor = Reactor()
        var serverLost = 0
        var clientsLost = 0
        func maybeFinish() {
            if serverLost == slowCount + regularCount, clientsLost == slowCount + regularCount {
                port?.stopListening()
                try? reactor.stop()
            }
        }
        var port: ListeningPort?
        defer { port = nil }  // the server's closures reach it, and it holds the server
        let timeouts = CountingTimeouts(wrapping: echoServer { _, _ in
            serverLost += 1
            maybeFinish()
        }, timeoutPeriod: timeout)
        timeouts.timeoutProtocolType = CountedTimeout.self
        // Limits on top, generous enough for everyone, to check the counts through timeouts too.
        let limited = LimitConnectionsFactory(wrapping: timeouts, maxConnections: 100, maxConnectionsPerPeer: 50)
        port = try reactor.listenTCP(0, limited, interface: "127.0.0.1")
        let portNumber = port!.portNumber

        // Slow clients: one byte now, the next only after `slowInterval`, too late.
        var slowBytesSent = [Int](repeating: 0, count: slowCount)
        var slowProbes: [Probe] = []
        var slowEchoed = 0
        var regularProbes: [Probe] = []
        var regularExpected: [String] = []

        func startRegularClients() {
            for index in 0..<regularCount {
                let chunks = (0..<chunksPerRegular).map { "r\(index)c\($0);" }
                regularExpected.append(chunks.joined())
                let probe = Probe()
                var sent = 0
                var nextChunk: DelayedCall?
                func sendNext(_ probe: Probe) {
                    guard sent < chunks.count, !(probe.transport?.disconnecting ?? true) else { return }
                    probe.transport!.write(chunks[sent])
                    sent += 1
                    if sent < chunks.count {
                        nextChunk = reactor.callLater(regularInterval) { sendNext(probe) }
                    }
                }
                probe.onMade = { sendNext($0) }
                probe.onData = { probe, _ in
                    if probe.receivedString == chunks.joined() { probe.transport!.loseConnection() }
                }
                probe.onLost = { _, _ in
                    if let call = nextChunk, call.active { try? call.cancel() }
                    clientsLost += 1
                    maybeFinish()
                }
                regularProbes.append(probe)
                let factory = RecordingFactory()
                factory.build = { _ in probe }
                reactor.connectTCP("127.0.0.1", portNumber, factory)
            }
        }

        for index in 0..<slowCount {
            let probe = Probe()
            var nextByte: DelayedCall?
            func sendByte(_ probe: Probe) {
                guard let transport = probe.transport, !transport.disconnecting else { return }
                transport.write([UInt8(ascii: "s")])
                slowBytesSent[index] += 1
                nextByte = reactor.callLater(slowInterval) { sendByte(probe) }
            }
            probe.onMade = { sendByte($0) }
            probe.onData = { probe, _ in
                // Once every slow client is connected and echoed, the regular ones start.
                if probe.receivedCount == 1 {
                    slowEchoed += 1
                    if slowEchoed == slowCount { startRegularClients() }
                }
            }
            probe.onLost = { _, _ in
                if let call = nextByte, call.active { try? call.cancel() }
                clientsLost += 1
                maybeFinish()
            }
            slowProbes.append(probe)
            let factory = RecordingFactory()
            factory.build = { _ in probe }
            reactor.connectTCP("127.0.0.1", portNumber, factory)
        }
        try runReactor(reactor, timeLimit: 10)

        #expect(timeouts.timeouts == slowCount, "exactly the slow clients timed out")
        #expect(slowProbes.allSatisfy { $0.lostCount == 1 && $0.lostReason is ConnectionDone })
        #expect(slowProbes.allSatisfy { $0.receivedString == "s" })
        #expect(slowBytesSent == [Int](repeating: 1, count: slowCount))
        #expect(regularProbes.count == regularCount)
        for (probe, expected) in zip(regularProbes, regularExpected) {
            #expect(probe.receivedString == expected)
            #expect(probe.lostCount == 1)
            #expect(probe.lostReason is ConnectionDone)
        }
        #expect(limited.connectionCount == 0)
        #expect(limited.peerConnectionCounts.isEmpty)
        #expect(limited.refusedCount == 0)
    }

    @Test("a peer that never reads cannot hold a timed-out connection: abortTimeout aborts it")
    func abortTimeoutOnStuckPeer() throws {
        final class Timeouts: TimeoutFactory { var count = 0 }
        final class Counted: TimeoutProtocol {
            override func timeoutConnection() {
                (factory as! Timeouts).count += 1
                super.timeoutConnection()
            }
        }
        let reactor = Reactor()
        var port: ListeningPort?
        defer { port = nil }  // the server's closures reach it, and it holds the server
        let server = RecordingFactory()
        var serverReason: (any Error)?
        server.build = { _ in
            let probe = Probe()
            // More than the kernel buffers hold: loseConnection can never finish.
            probe.onMade = { $0.transport!.write(pattern(count: 16 * 1024 * 1024)) }
            probe.onLost = { _, reason in
                serverReason = reason
                port?.stopListening()
                try? reactor.stop()
            }
            return probe
        }
        let timeouts = Timeouts(wrapping: server, timeoutPeriod: 0.2, abortTimeout: 0.2)
        timeouts.timeoutProtocolType = Counted.self
        port = try reactor.listenTCP(0, timeouts, interface: "127.0.0.1")
        let raw = Raw.tcpSocket()
        Raw.setReceiveBuffer(raw, bytes: 4096)
        reactor.callWhenRunning { _ = Raw.connect(raw, port: port!.portNumber) }
        try runReactor(reactor)
        Glibc.close(raw)

        #expect(timeouts.count == 1)
        #expect(serverReason is ConnectionAborted, "got \(String(describing: serverReason))")
    }

    @Test("an absurdly long period on a real reactor neither fires nor crashes the reactor's timer")
    func hugePeriodOnReactor() throws {
        let reactor = Reactor()
        var fired = false
        let idle = IdleTimeout(clock: reactor, period: 1e300) { fired = true }
        reactor.callLater(0.01) { try reactor.stop() }
        try runReactor(reactor)
        #expect(idle.isPending)
        #expect(!fired)
        idle.cancelTimeout()
    }

    @Test("over a Unix socket: the timeout finds the reactor, and unnamed peers share one per-peer count")
    func unixSocket() throws {
        var template = Array("/tmp/swisted-policies-XXXXXX".utf8CString)
        let directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { rmdir(directory) }
        let path = directory + "/p.sock"
        let reactor = Reactor()
        var port: ListeningPort?
        defer { port = nil }  // the server's closures reach it, and it holds the server
        let done = Countdown(3) {
            port?.stopListening()
            try? reactor.stop()
        }
        let timeouts = TimeoutFactory(wrapping: echoServer { _, _ in done.tick() }, timeoutPeriod: 0.3)
        let limited = LimitConnectionsFactory(wrapping: timeouts, maxConnectionsPerPeer: 1)
        port = try reactor.listenUNIX(path, limited)
        var countsWhileServed: [String: Int] = [:]
        var second: Probe?

        let firstFactory = RecordingFactory()
        let first = Probe()
        first.onMade = { $0.transport!.write("a") }
        first.onData = { _, _ in
            countsWhileServed = limited.peerConnectionCounts
            let secondFactory = RecordingFactory()
            let probe = Probe()
            second = probe
            probe.onLost = { _, _ in done.tick() }
            secondFactory.build = { _ in probe }
            reactor.connectUNIX(path, secondFactory, timeout: 2)
        }
        first.onLost = { _, _ in done.tick() }
        firstFactory.build = { _ in first }
        reactor.connectUNIX(path, firstFactory, timeout: 2)
        try runReactor(reactor)

        #expect(first.receivedString == "a")
        #expect(first.lostReason is ConnectionDone, "closed by the server's idle timeout")
        #expect(second?.lostCount == 1)
        #expect(second?.receivedCount == 0, "refused: the same (unnamed) peer already had its one connection")
        #expect(countsWhileServed == ["UNIXAddress(None)": 1])
        #expect(limited.refusedCount == 1)
        #expect(limited.connectionCount == 0)
        #expect(limited.peerConnectionCounts.isEmpty)
    }
}

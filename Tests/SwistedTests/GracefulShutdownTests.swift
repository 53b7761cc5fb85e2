import Testing
@testable import Swisted

/// Says goodbye and closes when the reactor begins a graceful shutdown.
private final class Polite: Protocol, GracefulShutdownAware {
    var notified = 0
    var lostReason: (any Error)?
    var onMadeHook: (() -> Void)?
    override func connectionMade() throws { onMadeHook?() }
    func gracefulShutdownStarted() {
        notified += 1
        transport!.write("bye\n")
        transport!.loseConnection()
    }
    override func connectionLost(_ reason: any Error) { lostReason = reason }
}

/// Ignores the graceful shutdown: closed when the grace period ends.
private final class Stubborn: Protocol {
    var lostCount = 0
    var lostReason: (any Error)?
    var onMadeHook: (() -> Void)?
    override func connectionMade() throws { onMadeHook?() }
    override func connectionLost(_ reason: any Error) {
        lostCount += 1
        lostReason = reason
    }
}

@Suite("Reactor.stopGracefully")
struct GracefulShutdownTests {
    @Test("Stops listening at once, lets a GracefulShutdownAware connection finish, aborts the rest after the grace period")
    func gracefulShutdown() throws {
        let reactor = Reactor()
        let polite = Polite()
        let stubborn = Stubborn()
        var serverProtocols: [Protocol] = [polite, stubborn]
        let server = RecordingFactory()
        server.build = { _ in serverProtocols.isEmpty ? nil : serverProtocols.removeFirst() }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let portNumber = port.portNumber

        var remaining: Int?
        var lateAttempt: (any Error)?
        var graceStartedAt = 0.0
        let client = RecordingFactory()
        let bothConnected = Countdown(4) {  // two clients made, two servers made
            graceStartedAt = reactor.seconds()
            reactor.stopGracefully(gracePeriod: 0.3) { remaining = $0 }
            // The port is closed at once: a new attempt is refused.
            let late = RecordingFactory()
            late.onFailed = { _, reason in lateAttempt = reason }
            reactor.connectTCP("127.0.0.1", portNumber, late)
        }
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { _ in bothConnected.tick() }
            return probe
        }
        polite.onMadeHook = { bothConnected.tick() }
        stubborn.onMadeHook = { bothConnected.tick() }
        reactor.connectTCP("127.0.0.1", portNumber, client)
        reactor.connectTCP("127.0.0.1", portNumber, client)
        try runReactor(reactor)

        #expect(polite.notified == 1)
        #expect(polite.lostReason is ConnectionDone)
        #expect(stubborn.lostCount == 1)
        #expect(stubborn.lostReason is ConnectionLost)
        // Outgoing connections count too: the stubborn server side and its client.
        #expect(remaining == 2, "two connections were still open when the grace period ended")
        #expect(reactor.seconds() - graceStartedAt >= 0.3)
        #expect(lateAttempt is ConnectionRefusedError)
        let probes = client.probes
        #expect(probes.count == 2)
        #expect(probes.allSatisfy { $0.lostCount == 1 })
        #expect(probes.contains { $0.received == Array("bye\n".utf8) && $0.lostReason is ConnectionDone })
        #expect(server.stopCount == 1)
    }

    @Test("With no connections open, the reactor stops at once; a second call does nothing")
    func nothingOpen() throws {
        let reactor = Reactor()
        _ = try reactor.listenTCP(0, RecordingFactory(), interface: "127.0.0.1")
        var calls: [Int] = []
        reactor.callLater(0) {
            reactor.stopGracefully(gracePeriod: 10) { calls.append($0) }
            reactor.stopGracefully(gracePeriod: 10) { calls.append($0 + 100) }
        }
        try runReactor(reactor, timeLimit: 3)
        #expect(calls == [0])
    }
}

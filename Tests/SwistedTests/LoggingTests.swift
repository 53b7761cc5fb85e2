import InMemoryLogging
import Logging
import Swisted
import Testing

/// A reconnecting factory that says when an attempt failed (after its own handling).
private final class GivingUpFactory: ReconnectingClientFactory {
    var onFailed: (() -> Void)?
    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        super.clientConnectionFailed(connector, reason: reason)
        onFailed?()
    }
}

/// Throws on the first bytes it receives.
private final class Thrower: Protocol {
    struct Boom: Error {}
    override func dataReceived(_ data: Span<UInt8>) throws { throw Boom() }
}

@Suite("Reactor: unhandled errors go to the swift-log logger")
struct LoggingTests {
    @Test("An error thrown by dataReceived is logged at error level with the peer and protocol as metadata")
    func protocolErrorCarriesMetadata() throws {
        let reactor = Reactor()
        let handler = InMemoryLogHandler()
        reactor.logger = Logger(label: "test") { _ in handler }
        let server = RecordingFactory()
        server.build = { _ in Thrower() }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        var clientAddress = ""
        client.build = { _ in
            let probe = Probe()
            probe.onMade = {
                clientAddress = $0.transport!.getHost().description
                $0.transport!.write("x")
            }
            probe.onLost = { _, _ in
                port.stopListening()
                try? reactor.stop()
            }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        let entries = handler.entries
        #expect(entries.count == 1)
        let entry = try #require(entries.first)
        #expect(entry.level == .error)
        #expect(entry.message.description.hasPrefix("Unhandled error in Thrower.dataReceived"))
        #expect(entry.metadata["protocol"] == "Thrower")
        #expect(!clientAddress.isEmpty)
        #expect(entry.metadata["peer"] == .string(clientAddress))
    }

    @Test("What the reactor did on its own is logged below .error: an oversize datagram dropped, a reconnecting factory giving up")
    func ownActionsBelowError() throws {
        let reactor = Reactor()
        let handler = InMemoryLogHandler()
        reactor.logger = Logger(label: "test") { _ in handler }
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1", maxPacketSize: 10)
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { _, _, _ in
            serverPort.stopListening()
            client.stopListening()
        }
        // A closed TCP port: every attempt is refused; with maxRetries 0 the
        // first failure is the last.
        let closed = try reactor.listenTCP(0, Factory(), interface: "127.0.0.1")
        let closedPort = closed.portNumber
        closed.stopListening()
        let factory = GivingUpFactory()
        factory.maxRetries = 0
        let done = Countdown(2) { try? reactor.stop() }
        server.onStop = { _ in done.tick() }
        factory.onFailed = { done.tick() }
        reactor.connectTCP("127.0.0.1", closedPort, factory)
        try client.write(pattern(count: 11), to: "127.0.0.1", port: serverPort.portNumber)
        try client.write(pattern(count: 10), to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)

        let entries = handler.entries.map { ($0.level, $0.message.description) }
        #expect(entries.count == 2, "\(entries)")
        #expect(entries.contains { $0.0 == .warning && $0.1.contains("longer than maxPacketSize") }, "\(entries)")
        #expect(entries.contains { $0.0 == .warning && $0.1.contains("abandoning") }, "\(entries)")
    }

    @Test("An error thrown by a delayed call is logged once; logHandler, when set, takes the line instead")
    func delayedCallErrorAndOverride() throws {
        struct Oops: Error {}
        let reactor = Reactor()
        let handler = InMemoryLogHandler()
        reactor.logger = Logger(label: "test") { _ in handler }
        reactor.callLater(0) { throw Oops() }
        reactor.callLater(0.01) { [unowned reactor] in try reactor.stop() }
        try runReactor(reactor)
        #expect(handler.entries.count == 1)
        #expect(handler.entries.first?.message.description.hasPrefix("Unhandled error in a delayed call") == true)

        var lines: [String] = []
        reactor.logHandler = { lines.append($0) }
        reactor.callLater(0) { throw Oops() }
        reactor.callLater(0.01) { [unowned reactor] in try reactor.stop() }
        try runReactor(reactor)
        #expect(lines.count == 1)
        #expect(handler.entries.count == 1, "the logger got nothing while logHandler was set")
    }
}

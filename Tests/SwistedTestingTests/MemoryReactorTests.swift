// SwistedTesting's MemoryReactor: code that listens and connects, tested without sockets.
import Swisted
import SwistedTesting
import Testing

/// Code under test: written against the interfaces, so it runs on a Reactor or a MemoryReactor.
private func startService(on reactor: some ReactorTCP, port: Int) throws -> any ListeningPortProtocol {
    try reactor.listenTCP(port, Factory.forProtocol(Protocol.self), interface: "127.0.0.1")
}

/// A client factory that retries after a delay, on any ReactorTime.
private final class Retrying: ClientFactory {
    let time: any ReactorTime
    var failures: [String] = []
    init(time: any ReactorTime) {
        self.time = time
        super.init(protocolType: Protocol.self)
    }
    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        failures.append(String(describing: reason))
        time.callLater(2) { try? connector.connect() }
    }
}

@Suite("MemoryReactor")
struct MemoryReactorTests {
    @Test("listenTCP is recorded with its arguments and returns a fake port")
    func listen() throws {
        let reactor = MemoryReactor()
        let factory = ServerFactory()
        let port = try reactor.listenTCP(8080, factory, backlog: 7, interface: "::1")
        #expect(reactor.tcpServers.count == 1)
        let server = reactor.tcpServers[0]
        #expect(server.port == 8080 && server.backlog == 7 && server.interface == "::1")
        #expect(server.factory === factory)
        #expect(port.getHost().description == "IPv6Address(type='TCP', host='::1', port=8080, flowInfo=0, scopeID=0)")
        var done = false
        port.stopListening { done = true }
        #expect(port.stopped && done)
        #expect(factory.numPorts == 0)  // not started, as in Twisted
    }

    @Test("code written against ReactorTCP runs on a MemoryReactor")
    func substitutes() throws {
        let reactor = MemoryReactor()
        let port = try startService(on: reactor, port: 2121)
        #expect(reactor.tcpServers.map(\.port) == [2121])
        #expect(port.getHost().description == "IPv4Address(type='TCP', host='127.0.0.1', port=2121)")
    }

    @Test("listenError makes the next listenTCP fail")
    func listenFails() throws {
        let reactor = MemoryReactor()
        reactor.listenError = CannotListenError(interface: "", port: 80, underlying: UVError.addressInUse)
        #expect(throws: CannotListenError.self) { try reactor.listenTCP(80, Factory()) }
        #expect(reactor.tcpServers.isEmpty)
        _ = try reactor.listenTCP(80, Factory())
        #expect(reactor.tcpServers.count == 1)
    }

    @Test("connectTCP is recorded, calls startedConnecting, and returns a connector that does no I/O")
    func connect() throws {
        let reactor = MemoryReactor()
        final class Watching: ClientFactory {
            var started: [Connector] = []
            override func startedConnecting(_ connector: Connector) { started.append(connector) }
        }
        let factory = Watching()
        defer { factory.started.removeAll() }  // each connector holds the factory: break the cycle
        let connector = reactor.connectTCP("example.org", 443, factory, timeout: 5, bindAddress: nil)
        let client = try #require(reactor.tcpClients.first)
        #expect(client.host == "example.org" && client.port == 443 && client.timeout == 5)
        #expect(client.connector === connector && factory.started.first === connector)
        #expect(connector.getDestination().description == "IPv4Address(type='TCP', host='example.org', port=443)")
        #expect(connector.state == .disconnected)
        try connector.stopConnecting()
        connector.disconnect()
        #expect(reactor.connectorCalls.map(\.call) == [.stopConnecting, .disconnect])
    }

    @Test("listenUNIX and connectUNIX are recorded with their arguments")
    func unix() throws {
        let reactor = MemoryReactor()
        let port = try reactor.listenUNIX("/tmp/x.sock", Factory(), backlog: 5, mode: 0o600, wantPID: true)
        let server = try #require(reactor.unixServers.first)
        #expect(server.path == "/tmp/x.sock" && server.backlog == 5 && server.mode == 0o600 && server.wantPID)
        #expect(port.getHost().description == "UNIXAddress('/tmp/x.sock')")
        let connector = reactor.connectUNIX("/tmp/x.sock", ClientFactory(), timeout: 3, checkPID: true)
        let client = try #require(reactor.unixClients.first)
        #expect(client.path == "/tmp/x.sock" && client.timeout == 3 && client.checkPID && client.connector === connector)
        connector.disconnect()
        #expect(reactor.connectorCalls.map(\.call) == [.disconnect])
    }

    @Test("a retrying factory reconnects 2 s after each failure, on the reactor's clock")
    func reconnecting() throws {
        let reactor = MemoryReactor()
        // Its clock, not the reactor: the MemoryReactor keeps every factory
        // it was given, so a factory holding the MemoryReactor is a cycle.
        let factory = Retrying(time: reactor.clock)
        let connector = reactor.connectTCP("10.0.0.9", 25, factory)
        factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
        #expect(reactor.connectorCalls.isEmpty)
        try reactor.advance(1.9)
        #expect(reactor.connectorCalls.isEmpty)
        try reactor.advance(0.1)
        #expect(reactor.connectorCalls.count == 1)
        #expect(reactor.connectorCalls.first?.connector === connector && reactor.connectorCalls.first?.call == .connect)
        #expect(factory.failures == ["Connection was refused by other side: ECONNREFUSED: connection refused."])
    }
}

// A TCP proxy with bounded memory: Twisted's twisted.protocols.portforward.
// Each side is the other side's push producer, so a slow reader on either
// end pauses reading on the other: nothing buffers without bound.

/// One side of a proxied connection: forwards what it reads to its peer.
/// Threading: reactor thread only.
open class Proxy: Protocol {
    /// The other side, once both are connected.
    public var peer: Proxy?

    /// Couples the two sides: each transport becomes the other's producer.
    public func setPeer(_ peer: Proxy) {
        self.peer = peer
    }

    open override func dataReceived(_ data: Span<UInt8>) throws {
        peer?.transport?.write(data)
    }

    open override func connectionLost(_ reason: any Error) {
        guard let peer else { return }
        self.peer = nil
        peer.peer = nil
        // Our transport was the peer's producer: release it, then let the
        // peer flush what we sent it and close.
        peer.transport?.unregisterProducer()
        peer.transport?.loseConnection()
    }
}

/// The side facing the proxy's upstream server (Twisted's `ProxyClient`).
/// Threading: reactor thread only.
open class ProxyClient: Proxy {
    open override func connectionMade() throws {
        let client = (factory as! ProxyClientFactory).server
        setPeer(client)
        client.setPeer(self)
        // Each side paces the other, then the waiting client side starts reading.
        try transport!.registerProducer(client.transport!, streaming: true)
        try client.transport!.registerProducer(transport!, streaming: true)
        client.transport!.resumeProducing()
    }
}

/// Connects a ``ProxyClient`` for one incoming proxied connection.
/// Threading: reactor thread only.
open class ProxyClientFactory: ClientFactory {
    /// The incoming side this connection serves.
    public let server: ProxyServer

    public init(server: ProxyServer, protocolType: ProxyClient.Type = ProxyClient.self) {
        self.server = server
        super.init(protocolType: protocolType)
    }

    open override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        server.transport?.loseConnection()
    }
}

/// The side facing the proxy's user (Twisted's `ProxyServer`): on connect it
/// pauses its own reading and connects to the upstream host.
/// Threading: reactor thread only.
open class ProxyServer: Proxy {
    open override func connectionMade() throws {
        // Read nothing until the upstream side is there to take it.
        transport!.pauseProducing()
        let factory = self.factory as! ProxyFactory
        factory.reactor.connectTCP(factory.host, factory.port, ProxyClientFactory(server: self, protocolType: factory.clientProtocolType))
    }
}

/// Listens for clients and proxies each to `host`:`port` (Twisted's `ProxyFactory`):
///
/// ```swift
/// try reactor.listenTCP(8080, ProxyFactory(reactor: reactor, host: "127.0.0.1", port: 80))
/// ```
/// Threading: reactor thread only.
open class ProxyFactory: ServerFactory {
    public let reactor: Reactor
    public let host: String
    public let port: Int
    /// The protocol for the upstream side (a ``ProxyClient`` subclass).
    public var clientProtocolType: ProxyClient.Type = ProxyClient.self

    public init(reactor: Reactor, host: String, port: Int) {
        self.reactor = reactor
        self.host = host
        self.port = port
        super.init(protocolType: ProxyServer.self)
    }
}

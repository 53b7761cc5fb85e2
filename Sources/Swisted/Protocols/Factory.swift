import Logging

/// Makes a protocol for each new connection: Twisted's `Factory`.
///
/// Either say which protocol class to build:
///
/// ```swift
/// let factory = Factory.forProtocol(Echo.self)
/// ```
///
/// or subclass and override ``buildProtocol(_:)`` (call `super` to build
/// ``protocolType`` and set the protocol's ``Protocol/factory``).
///
/// A factory may serve several ports and connectors at once:
/// ``startFactory()`` runs when the first starts and ``stopFactory()`` when
/// the last stops (counted by ``doStart()``/``doStop()``), as in Twisted.
///
/// Threading: reactor thread only.
open class Factory {
    /// The class ``buildProtocol(_:)`` instantiates.
    public var protocolType: Protocol.Type?

    /// How many ports and connectors use this factory now.
    public private(set) var numPorts = 0

    /// A factory that builds `protocolType`; without one, override ``buildProtocol(_:)``.
    public init(protocolType: Protocol.Type? = nil) {
        self.protocolType = protocolType
    }

    /// A factory that builds `protocolType`: `Factory.forProtocol(Echo.self)`.
    /// (`ServerFactory.forProtocol` and `ClientFactory.forProtocol` give those classes.)
    public class func forProtocol(_ protocolType: Protocol.Type) -> Factory {
        Factory(protocolType: protocolType)
    }

    /// Makes the protocol for a new connection to or from `address`, or
    /// returns nil to refuse it (a server closes the connection at once).
    /// The default builds ``protocolType`` and sets its ``Protocol/factory``;
    /// without a ``protocolType`` it logs that to standard error and refuses.
    open func buildProtocol(_ address: any Address) -> Protocol? {
        guard let protocolType else {
            reportMissingProtocolType()
            return nil
        }
        let proto = protocolType.init()
        proto.factory = self
        return proto
    }

    /// Called when the first port or connector starts using this factory.
    open func startFactory() {}

    /// Called when the last port or connector stops using this factory.
    open func stopFactory() {}

    /// Counts a port or connector starting to use the factory; calls
    /// ``startFactory()`` for the first. Ports and connectors call it.
    public func doStart() {
        if numPorts == 0 { startFactory() }
        numPorts += 1
    }

    /// Counts a port or connector done with the factory; calls
    /// ``stopFactory()`` for the last. Ports and connectors call it.
    public func doStop() {
        guard numPorts > 0 else { return }
        numPorts -= 1
        if numPorts == 0 { stopFactory() }
    }

    private func reportMissingProtocolType() {
        SwistedLog.logger.error("Swisted: \(type(of: self)).buildProtocol: no protocolType set and buildProtocol not overridden; refusing the connection")
    }
}

/// A factory for listening ports. Same as ``Factory``; named for readers who know Twisted.
/// Threading: reactor thread only.
open class ServerFactory: Factory {
    /// A server factory that builds `protocolType`.
    public override class func forProtocol(_ protocolType: Protocol.Type) -> ServerFactory {
        ServerFactory(protocolType: protocolType)
    }
}

/// A factory for outgoing connections: Twisted's `ClientFactory`.
///
/// Besides building the protocol, it hears how each connection attempt of
/// a ``Connector`` goes: ``startedConnecting(_:)`` first; then either
/// ``clientConnectionFailed(_:reason:)`` (the connection was never made),
/// or the protocol's `connectionMade` … `connectionLost`, followed by
/// ``clientConnectionLost(_:reason:)``. Calling `connector.connect()` from
/// either of the last two reconnects.
///
/// Threading: reactor thread only.
open class ClientFactory: Factory {
    /// A client factory that builds `protocolType`.
    public override class func forProtocol(_ protocolType: Protocol.Type) -> ClientFactory {
        ClientFactory(protocolType: protocolType)
    }

    /// A connection attempt started (called inside `connectTCP` or `connector.connect()`).
    /// `connector.stopConnecting()` may be called from here.
    open func startedConnecting(_ connector: Connector) {}

    /// The attempt failed: ``ConnectionRefusedError``, ``TimeoutError``,
    /// ``DNSLookupError``, ``UserError`` (`stopConnecting`),
    /// ``InvalidAddressError`` or ``ConnectError``. Always called
    /// asynchronously, never inside `connectTCP`.
    open func clientConnectionFailed(_ connector: Connector, reason: any Error) {}

    /// An established connection ended; called after the protocol's `connectionLost`.
    open func clientConnectionLost(_ connector: Connector, reason: any Error) {}
}

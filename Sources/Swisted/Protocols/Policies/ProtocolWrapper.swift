// Wrapping a protocol without changing it: Twisted's ProtocolWrapper and
// WrappingFactory (twisted.protocols.policies), the base of the timeout and
// connection-limit policies next to this file.

import Glibc

/// A protocol that stands between a transport and another protocol, and is
/// that protocol's transport: Twisted's `ProtocolWrapper`.
///
/// The real transport talks to the wrapper; the wrapper passes every
/// callback on to ``wrappedProtocol``, whose ``Protocol/transport`` is the
/// wrapper. Everything the wrapped protocol does to its transport (write,
/// close, producers, addresses) goes through the wrapper to the real
/// transport. A subclass overrides the callbacks or transport calls it wants
/// to watch (``TimeoutProtocol`` resets its timer in `dataReceived` and
/// `write`) and calls `super` to keep them flowing.
///
/// The wrapper registers with its ``WrappingFactory`` when the connection is
/// made and unregisters, exactly once, when it is lost; then it drops
/// ``wrappedProtocol`` (the two reference each other until then) and, once
/// the wrapped protocol's `connectionLost` returned, its ``Protocol/factory``.
/// Forgetting the factory matters: a wrapped factory that keeps the
/// protocols it built (as many do) would otherwise make a cycle that
/// outlives the connection (wrapping factory → wrapped factory → protocol →
/// this wrapper, its transport → wrapping factory).
///
/// What is not passed through: the wrapper is not a ``TCPTransport`` (reach
/// the socket options through the wrapper's own ``Protocol/transport``) and
/// not a ``HalfCloseableProtocol``, so a wrapped protocol sees the peer's EOF
/// as the end of the connection, as a protocol that does not adopt it does.
///
/// Threading: reactor thread only, like the transport it wraps.
open class ProtocolWrapper: Protocol, Transport {
    /// The protocol this wrapper serves; nil before it is wrapped and after
    /// the connection is lost (to break the wrapper ⇄ protocol cycle).
    public var wrappedProtocol: Protocol?

    /// Set by ``loseConnection()``/``abortConnection()`` on the wrapper.
    private var closeRequested = false

    /// How a ``LimitConnectionsFactory`` counted this connection (nil once counted down).
    var limitToken: ConnectionLimitToken?

    /// A wrapper for nothing yet: set ``wrappedProtocol`` (and ``Protocol/factory``) before the connection is made.
    public required init() {}

    /// A wrapper for `wrappedProtocol`, built by `factory`.
    public init(factory: WrappingFactory?, wrapping wrappedProtocol: Protocol) {
        self.wrappedProtocol = wrappedProtocol
        super.init()
        self.factory = factory
    }

    /// The ``WrappingFactory`` that built this wrapper, if one did.
    public var wrappingFactory: WrappingFactory? { factory as? WrappingFactory }

    // MARK: Protocol (from the real transport)

    /// Attaches the real transport, registers with the ``WrappingFactory``,
    /// then makes the wrapped protocol's connection with this wrapper as its transport.
    /// - Throws: whatever the wrapped protocol's `connectionMade` throws.
    open override func makeConnection(_ transport: any Transport) throws {
        try super.makeConnection(transport)
        wrappingFactory?.connectionOpened(self)
        try wrappedProtocol?.makeConnection(self)
    }

    /// Passes the bytes on to the wrapped protocol.
    /// - Throws: whatever the wrapped protocol throws.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        try wrappedProtocol?.dataReceived(data)
    }

    /// Unregisters from the ``WrappingFactory``, tells the wrapped protocol,
    /// then forgets it and the factory (see the type's notes on cycles).
    /// Runs its body once, however often it is called. A subclass that
    /// overrides it reads ``Protocol/factory`` before calling `super`.
    open override func connectionLost(_ reason: any Error) {
        wrappingFactory?.connectionClosed(self)
        guard let wrapped = wrappedProtocol else { return }
        wrappedProtocol = nil
        wrapped.connected = false
        wrapped.connectionLost(reason)
        factory = nil
    }

    // MARK: Transport (from the wrapped protocol)

    /// Writes through to the real transport (ignored before the connection is made).
    open func write(_ data: UnsafeRawBufferPointer) {
        transport?.write(data)
    }

    /// Writes each chunk through to the real transport.
    open func writeSequence(_ chunks: [[UInt8]]) {
        transport?.writeSequence(chunks)
    }

    /// Closes the real transport once its writes are sent.
    open func loseConnection() {
        closeRequested = true
        transport?.loseConnection()
    }

    /// Closes the real transport now, dropping unsent data.
    open func abortConnection() {
        closeRequested = true
        transport?.abortConnection()
    }

    /// The real transport's peer (a placeholder before the connection is made).
    public func getPeer() -> any Address { transport?.getPeer() ?? NotConnectedAddress() }

    /// The real transport's own address (a placeholder before the connection is made).
    public func getHost() -> any Address { transport?.getHost() ?? NotConnectedAddress() }

    /// The real transport's unsent bytes.
    public var bufferSize: Int { transport?.bufferSize ?? 0 }

    /// True once the wrapper or the real transport is closing or closed.
    public var disconnecting: Bool { closeRequested || (transport?.disconnecting ?? false) }

    /// Shuts down the real transport's write side.
    open func loseWriteConnection() {
        transport?.loseWriteConnection()
    }

    /// Registers `producer` with the real transport.
    /// - Throws: ``ProducerError`` as the real transport does, or if there is no connection yet.
    open func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {
        guard let transport else { throw ProducerError("the wrapper is not connected yet") }
        try transport.registerProducer(producer, streaming: streaming)
    }

    /// Unregisters the real transport's producer.
    open func unregisterProducer() {
        transport?.unregisterProducer()
    }

    /// The real transport's high-water mark.
    public var writeHighWaterMark: Int {
        get { transport?.writeHighWaterMark ?? 64 * 1024 }
        set { transport?.writeHighWaterMark = newValue }
    }

    /// The real transport's low-water mark.
    public var writeLowWaterMark: Int {
        get { transport?.writeLowWaterMark ?? 16 * 1024 }
        set { transport?.writeLowWaterMark = newValue }
    }

    /// Pauses reading on the real transport.
    open func pauseProducing() { transport?.pauseProducing() }

    /// Resumes reading on the real transport.
    open func resumeProducing() { transport?.resumeProducing() }

    /// Stops the real transport (it closes).
    public func stopProducing() { transport?.stopProducing() }
}

/// What a ``ProtocolWrapper`` reports as an address before it has a transport.
struct NotConnectedAddress: Address {
    var description: String { "NotConnectedAddress()" }
}

/// A factory that wraps each protocol another factory builds: Twisted's
/// `WrappingFactory`. ``buildProtocol(_:)`` asks ``wrappedFactory`` for the
/// protocol (nil refuses the connection, as the wrapped factory decided) and
/// wraps it in a ``wrapperType`` (``ProtocolWrapper`` by default).
///
/// Starting and stopping are passed on (the wrapped factory starts when this
/// one does), and so are a ``ClientFactory``'s connection callbacks, so a
/// wrapping factory can be given to `listenTCP`, `connectTCP` and the Unix
/// equivalents in place of the factory it wraps.
///
/// ``registerProtocol(_:)`` and ``unregisterProtocol(_:)`` run when a wrapper's
/// connection is made and lost (unregister exactly once per registered
/// wrapper); ``protocols`` holds the live ones. Subclasses override them to
/// count or watch connections.
///
/// Threading: reactor thread only.
open class WrappingFactory: ClientFactory {
    /// The factory whose protocols are wrapped.
    public let wrappedFactory: Factory

    /// The class of the wrappers ``wrap(_:)`` makes.
    public var wrapperType: ProtocolWrapper.Type = ProtocolWrapper.self

    private var live: [ObjectIdentifier: ProtocolWrapper] = [:]

    /// Wraps the protocols `wrappedFactory` builds.
    public init(wrapping wrappedFactory: Factory) {
        self.wrappedFactory = wrappedFactory
        super.init(protocolType: nil)
    }

    /// The wrappers whose connections are open (made and not yet lost), in no particular order.
    public var protocols: [ProtocolWrapper] { Array(live.values) }

    /// Builds the wrapped factory's protocol for `address` and wraps it; nil
    /// (a refused connection) if the wrapped factory returns nil.
    open override func buildProtocol(_ address: any Address) -> Protocol? {
        guard let proto = wrappedFactory.buildProtocol(address) else { return nil }
        return wrap(proto)
    }

    /// Makes the wrapper for `proto` (a ``wrapperType`` whose factory is this one).
    open func wrap(_ proto: Protocol) -> ProtocolWrapper {
        let wrapper = wrapperType.init()
        wrapper.wrappedProtocol = proto
        wrapper.factory = self
        return wrapper
    }

    /// A wrapper's connection was made (called once per wrapper, before the
    /// wrapped protocol's `connectionMade`). Does nothing by default.
    open func registerProtocol(_ wrapper: ProtocolWrapper) {}

    /// A registered wrapper's connection was lost: called exactly once per
    /// ``registerProtocol(_:)``, before the wrapped protocol's
    /// `connectionLost`, whatever ended it. Does nothing by default.
    open func unregisterProtocol(_ wrapper: ProtocolWrapper) {}

    /// Records the wrapper as live, then tells ``registerProtocol(_:)``.
    final func connectionOpened(_ wrapper: ProtocolWrapper) {
        guard live.updateValue(wrapper, forKey: ObjectIdentifier(wrapper)) == nil else { return }
        registerProtocol(wrapper)
    }

    /// Forgets the wrapper and tells ``unregisterProtocol(_:)``, once.
    final func connectionClosed(_ wrapper: ProtocolWrapper) {
        countDown(wrapper)
        guard live.removeValue(forKey: ObjectIdentifier(wrapper)) != nil else { return }
        unregisterProtocol(wrapper)
    }

    /// A wrapper's connection ended: release what was counted for it
    /// (``LimitConnectionsFactory``). Runs before ``unregisterProtocol(_:)``.
    func countDown(_ wrapper: ProtocolWrapper) {}

    /// Starts the wrapped factory (Twisted's `doStart` pass-through).
    open override func startFactory() {
        wrappedFactory.doStart()
    }

    /// Stops the wrapped factory.
    open override func stopFactory() {
        wrappedFactory.doStop()
    }

    /// Passes the call on if the wrapped factory is a ``ClientFactory``.
    open override func startedConnecting(_ connector: Connector) {
        (wrappedFactory as? ClientFactory)?.startedConnecting(connector)
    }

    /// Passes the call on if the wrapped factory is a ``ClientFactory``.
    open override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        (wrappedFactory as? ClientFactory)?.clientConnectionFailed(connector, reason: reason)
    }

    /// Passes the call on if the wrapped factory is a ``ClientFactory``.
    open override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        (wrappedFactory as? ClientFactory)?.clientConnectionLost(connector, reason: reason)
    }
}

/// The reactor that drives `transport`, if it is one of Swisted's stream
/// connections (TCP or Unix), looking through ``ProtocolWrapper``s; nil for
/// other transports (a test's `StringTransport`).
func reactorTime(of transport: (any Transport)?) -> (any ReactorTime)? {
    var current = transport
    while let next = current {
        if let connection = next as? StreamConnection { return connection.reactor }
        guard let wrapper = next as? ProtocolWrapper else { return nil }
        current = wrapper.transport
    }
    return nil
}

/// Writes a line to standard error (for misuse that has no reactor to log to).
func reportToStandardError(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { buffer in _ = Glibc.write(2, buffer.baseAddress, buffer.count) }
}

/// The logic of a UDP port: Twisted's `DatagramProtocol`. Subclass it and
/// override the callbacks you need, then hand an instance to
/// ``Reactor/listenUDP(_:_:interface:maxPacketSize:)``.
///
/// ```swift
/// final class Echo: DatagramProtocol {
///     override func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {
///         try transport!.write(data, to: address)     // back to the sender
///     }
/// }
/// ```
///
/// Life cycle: `listenUDP` binds the port and calls ``makeConnection(_:)``,
/// which sets ``transport`` and calls ``startProtocol()``, once, before
/// `listenUDP` returns. Then ``datagramReceived(_:from:)`` runs once per
/// datagram, and ``connectionRefused()`` whenever a connected port
/// (`transport.connect(host, port)`) hears that nobody listens at its peer.
/// When the port has closed (``UDPPort/stopListening(_:)``, or a reactor
/// shutdown), ``doStop()`` clears ``transport`` and calls ``stopProtocol()``,
/// once.
///
/// Unlike a TCP ``Protocol`` there is no connection to lose: one protocol
/// instance serves every peer of its port, and datagrams may be lost,
/// duplicated or reordered by the network.
///
/// Threading: reactor thread only. Every callback arrives on the reactor's
/// thread, and anything may be called from inside any callback (write,
/// connect, stopListening, reactor.stop).
open class DatagramProtocol {
    /// The port this protocol receives on and writes through; set by
    /// ``makeConnection(_:)``, cleared by ``doStop()`` (so nil inside
    /// ``stopProtocol()``, as in Twisted).
    public var transport: (any UDPTransport)?

    /// How many ports use this protocol now: 1 while its port is open, else 0.
    public private(set) var numPorts = 0

    public init() {}

    /// Attaches the port, then calls ``doStart()`` (so ``startProtocol()``).
    /// The port calls it; in-memory tests may call it with a test transport.
    ///
    /// A protocol serves one port at a time: attaching it to a second port
    /// while the first is open is a programming error and traps (Twisted asserts the same).
    open func makeConnection(_ transport: any UDPTransport) {
        precondition(self.transport == nil, "Swisted: \(type(of: self)) is already attached to a UDP port; a DatagramProtocol serves one port at a time")
        self.transport = transport
        doStart()
    }

    /// Counts a port starting to use the protocol; calls ``startProtocol()`` for the first.
    public func doStart() {
        if numPorts == 0 { startProtocol() }
        numPorts += 1
    }

    /// Counts a port done with the protocol: clears ``transport``, then
    /// calls ``stopProtocol()`` when no port is left. The port calls it from
    /// its close callback.
    public func doStop() {
        guard numPorts > 0 else { return }
        numPorts -= 1
        transport = nil
        if numPorts == 0 { stopProtocol() }
    }

    /// The port is open and ``transport`` is set: the place to join a
    /// multicast group or send a first datagram. Called once, inside `listenUDP`.
    open func startProtocol() {}

    /// The port has closed; called once, after the last datagram. ``transport`` is nil here.
    open func stopProtocol() {}

    /// A datagram arrived from `address` (an ``IPv4Address`` or
    /// ``IPv6Address`` of type `.udp`). Called once per datagram, whole:
    /// UDP never splits or joins datagrams. A datagram longer than the
    /// port's `maxPacketSize` never gets here: it is logged and dropped.
    ///
    /// `data` is a view into the reactor's read buffer, valid only during
    /// this call: copy what you keep (`data.array`, `data.string`).
    /// - Throws: anything; a throw is logged (``Reactor/logger``) and the
    ///   port keeps receiving.
    open func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {}

    /// A connected port (`transport.connect(host, port)`) learned that
    /// nothing listens at its peer: the kernel got an ICMP "port
    /// unreachable" for an earlier datagram and reported `ECONNREFUSED` on
    /// a later receive or send. Never called for a port that is not
    /// connected (there, the kernel cannot tell which peer refused). The port
    /// stays open; writing again may succeed once the peer listens.
    open func connectionRefused() {}
}

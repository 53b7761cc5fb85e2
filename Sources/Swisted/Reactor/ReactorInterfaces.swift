// The reactor's facets as protocols (Twisted's IReactorTime, ...), so code
// can take "something that schedules calls" and tests can pass a `Clock`
// (SwistedTesting) where the program passes its `Reactor`. The concrete
// Reactor API is unchanged; its conformances live here.

/// Time and scheduled calls: Twisted's `IReactorTime`. Adopted by
/// ``Reactor`` and by SwistedTesting's `Clock`, so code written against
/// `any ReactorTime` (a timeout, a LoopingCall, a reconnecting factory's
/// back-off) can be tested with no real time passing.
///
/// Threading: the adopter's; for ``Reactor``, reactor thread only.
public protocol ReactorTime: AnyObject {
    /// The current time on this scheduler's clock, in seconds.
    func seconds() -> Double

    /// Schedules `function` to run `seconds` from now (negative counts as 0);
    /// same-time calls run in scheduling order.
    @discardableResult
    func callLater(_ seconds: Double, _ function: @escaping () throws -> Void) -> DelayedCall

    /// The calls scheduled and not yet run or cancelled, earliest first.
    func getDelayedCalls() -> [DelayedCall]
}

extension Reactor: ReactorTime {
    /// The delayed calls still pending, earliest first (Twisted's `getDelayedCalls`).
    /// Reactor thread only.
    public func getDelayedCalls() -> [DelayedCall] {
        assertOnReactorThread()
        return timers.pendingCalls
    }
}

/// What ``Reactor/listenTCP(_:_:backlog:interface:)`` returns, as a
/// protocol (Twisted's `IListeningPort`): adopted by ``ListeningPort`` and
/// by SwistedTesting's fake port, so code that only needs the address and
/// `stopListening` can work with either.
public protocol ListeningPortProtocol: AnyObject {
    /// The address the port is bound to.
    func getHost() -> any Address

    /// Stops listening; `completion` runs once the port is closed.
    func stopListening(_ completion: (() -> Void)?)
}

extension ListeningPort: ListeningPortProtocol {}

/// TCP ports and connections: Twisted's `IReactorTCP`. Adopted by
/// ``Reactor`` and by SwistedTesting's `MemoryReactor`, which records the
/// calls instead of opening sockets. Write code that listens or connects
/// against `some ReactorTCP` (or `any ReactorTCP`) to test it without sockets.
///
/// Connections are always ``Connector``s, as `ClientFactory` callbacks
/// take that class; a `MemoryReactor`'s connectors do no I/O.
///
/// Threading: the adopter's; for ``Reactor``, reactor thread only.
public protocol ReactorTCP: AnyObject {
    /// What ``listenTCP(_:_:backlog:interface:)`` returns.
    associatedtype Port: ListeningPortProtocol

    /// Listens on `port` (see ``Reactor/listenTCP(_:_:backlog:interface:)``).
    /// - Throws: ``CannotListenError``.
    @discardableResult
    func listenTCP(_ port: Int, _ factory: Factory, backlog: Int, interface: String) throws(CannotListenError) -> Port

    /// Connects to `host`:`port` (see ``Reactor/connectTCP(_:_:_:timeout:bindAddress:)``).
    @discardableResult
    func connectTCP(_ host: String, _ port: Int, _ factory: ClientFactory, timeout: Double?,
                    bindAddress: (host: String, port: Int)?) -> Connector
}

extension ReactorTCP {
    /// Listens with the defaults: a backlog of 50, every IPv4 interface.
    @discardableResult
    public func listenTCP(_ port: Int, _ factory: Factory, interface: String = "") throws(CannotListenError) -> Port {
        try listenTCP(port, factory, backlog: 50, interface: interface)
    }

    /// Connects with the defaults: a 30-second timeout, no local address.
    @discardableResult
    public func connectTCP(_ host: String, _ port: Int, _ factory: ClientFactory) -> Connector {
        connectTCP(host, port, factory, timeout: 30, bindAddress: nil)
    }
}

extension Reactor: ReactorTCP {}

/// Unix-domain stream sockets: Twisted's `IReactorUNIX`. Adopted by
/// ``Reactor`` and by SwistedTesting's `MemoryReactor`.
///
/// Threading: the adopter's; for ``Reactor``, reactor thread only.
public protocol ReactorUNIX: AnyObject {
    /// What ``listenUNIX(_:_:backlog:mode:wantPID:)`` returns.
    associatedtype UNIXPort: ListeningPortProtocol

    /// Listens on the socket at `path` (see ``Reactor/listenUNIX(_:_:backlog:mode:wantPID:)``).
    /// - Throws: ``CannotListenError``.
    @discardableResult
    func listenUNIX(_ path: String, _ factory: Factory, backlog: Int, mode: Int, wantPID: Bool) throws(CannotListenError) -> UNIXPort

    /// Connects to the socket at `path` (see ``Reactor/connectUNIX(_:_:timeout:checkPID:)``).
    @discardableResult
    func connectUNIX(_ path: String, _ factory: ClientFactory, timeout: Double?, checkPID: Bool) -> Connector
}

extension Reactor: ReactorUNIX {}

/// A call made on a ``Connector`` of SwistedTesting's `MemoryReactor`,
/// reported instead of acted on.
package enum MemoryConnectorCall: Sendable {
    case connect, stopConnecting, disconnect
}

/// UDP ports: Twisted's `IReactorUDP`. Adopted by ``Reactor`` and by
/// SwistedTesting's `MemoryReactor`, which records the call and returns a
/// port that records what is sent through it.
///
/// Threading: the adopter's; for ``Reactor``, reactor thread only.
public protocol ReactorUDP: AnyObject {
    /// What ``listenUDP(_:_:interface:maxPacketSize:)`` returns.
    associatedtype UDPPortType: MulticastTransport

    /// Binds a UDP port for `proto` (see ``Reactor/listenUDP(_:_:interface:maxPacketSize:)``).
    /// - Throws: ``CannotListenError``.
    @discardableResult
    func listenUDP(_ port: Int, _ proto: DatagramProtocol, interface: String, maxPacketSize: Int) throws(CannotListenError) -> UDPPortType
}

extension Reactor: ReactorUDP {}

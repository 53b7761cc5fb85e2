import Swisted

/// A reactor that opens nothing: Twisted's `MemoryReactorClock`. It records
/// every `listenTCP`, `connectTCP`, `listenUNIX` and `connectUNIX` with its
/// arguments and returns fakes,
/// and keeps time with a ``Clock``. Pass it where your code takes
/// `some ReactorTCP` / `any ReactorTime` (a `Reactor` in the program), then
/// look at what the code asked for and drive the factories yourself.
///
/// ```swift
/// let reactor = MemoryReactor()
/// startMyService(on: reactor)                  // calls reactor.listenTCP(8080, ...)
/// let server = reactor.tcpServers[0]
/// #expect(server.port == 8080)
/// let proto = server.factory.buildProtocol(IPv4Address(type: .tcp, host: "10.0.0.1", port: 1))!
/// try proto.makeConnection(StringTransport())  // talk to it in memory
/// ```
///
/// ## The fakes
/// - `listenTCP` returns a ``MemoryListeningPort``: `getHost()` is the
///   address asked for; `stopListening` is recorded. The factory is not
///   started (as in Twisted). Set ``listenError`` to make the next
///   `listenTCP` fail.
/// - `connectTCP` returns a real `Connector`, since `ClientFactory`'s
///   callbacks take that class, but one that does no I/O: it calls
///   `factory.startedConnecting` (as Twisted's fake does) and from then on
///   `connect()`, `stopConnecting()` and `disconnect()` are only recorded in
///   ``connectorCalls`` (the connector stays `disconnected`). To play the
///   outcome, call the factory yourself:
///   `factory.clientConnectionFailed(client.connector, reason: ConnectionRefusedError())`,
///   and check whether it called `connector.connect()` again.
///   (The connector's `reactor` property is a private `Reactor` that never
///   runs; do not use it.)
/// - `listenUNIX`/`connectUNIX` are recorded the same way (``unixServers``,
///   ``unixClients``); the fake port's host is `UNIXAddress(path)`.
/// - `listenUDP` is not recorded yet (it returns the concrete `UDPPort`).
///
/// Threading: not thread-safe; use it from one thread.
public final class MemoryReactor: ReactorTCP, ReactorUNIX, ReactorUDP, ReactorTime {
    /// One `listenTCP` call.
    public struct TCPServer {
        public let port: Int
        public let factory: Factory
        public let backlog: Int
        public let interface: String
        /// The fake port returned.
        public let listeningPort: MemoryListeningPort
    }

    /// One `connectTCP` call.
    public struct TCPClient {
        public let host: String
        public let port: Int
        public let factory: ClientFactory
        public let timeout: Double?
        public let bindAddress: (host: String, port: Int)?
        /// The connector returned (no I/O; see the class documentation).
        public let connector: Connector
    }

    /// One `listenUNIX` call.
    public struct UNIXServer {
        public let path: String
        public let factory: Factory
        public let backlog: Int
        public let mode: Int
        public let wantPID: Bool
        /// The fake port returned.
        public let listeningPort: MemoryListeningPort
    }

    /// One `connectUNIX` call.
    public struct UNIXClient {
        public let path: String
        public let factory: ClientFactory
        public let timeout: Double?
        public let checkPID: Bool
        /// The connector returned (no I/O; see the class documentation).
        public let connector: Connector
    }

    /// A call on one of this reactor's connectors.
    public enum ConnectorCall: Equatable, Sendable {
        case connect, stopConnecting, disconnect
    }

    /// Every `listenTCP` call that succeeded, in order.
    public private(set) var tcpServers: [TCPServer] = []
    /// Every `connectTCP` call, in order.
    public private(set) var tcpClients: [TCPClient] = []
    /// Every `listenUNIX` call that succeeded, in order.
    public private(set) var unixServers: [UNIXServer] = []
    /// A `listenUDP` call.
    public struct UDPServer {
        public let port: Int
        public let proto: DatagramProtocol
        public let interface: String
        public let maxPacketSize: Int
        /// The fake port it returned.
        public let udpPort: MemoryUDPPort
    }

    /// Every `listenUDP` call that succeeded, in order.
    public private(set) var udpServers: [UDPServer] = []
    /// Every `connectUNIX` call, in order.
    public private(set) var unixClients: [UNIXClient] = []
    /// Calls on the connectors (TCP and Unix), in order: which connector and what was called.
    public private(set) var connectorCalls: [(connector: Connector, call: ConnectorCall)] = []

    /// When set, the next `listenTCP` or `listenUNIX` throws it (and it is cleared).
    public var listenError: CannotListenError?

    /// The clock behind ``callLater(_:_:)`` and ``seconds()``; advance it to run delayed calls.
    public let clock: Clock

    /// Only to construct connectors; never run.
    private let idle = Reactor()

    public init(clock: Clock = Clock()) {
        self.clock = clock
    }

    // MARK: ReactorTCP

    /// Records the call and returns a ``MemoryListeningPort`` for the address asked for.
    /// - Throws: ``listenError`` if set.
    @discardableResult
    public func listenTCP(_ port: Int, _ factory: Factory, backlog: Int = 50, interface: String = "") throws(CannotListenError) -> MemoryListeningPort {
        if let listenError {
            self.listenError = nil
            throw listenError
        }
        let listeningPort = MemoryListeningPort(address: fakeAddress(.tcp, interface: interface, port: port))
        tcpServers.append(TCPServer(port: port, factory: factory, backlog: backlog, interface: interface, listeningPort: listeningPort))
        return listeningPort
    }

    /// Records the call, calls `factory.startedConnecting`, and returns a connector that does no I/O.
    @discardableResult
    public func connectTCP(_ host: String, _ port: Int, _ factory: ClientFactory, timeout: Double? = 30,
                           bindAddress: (host: String, port: Int)? = nil) -> Connector {
        let connector = Connector(reactor: idle, host: host, port: port, factory: factory, timeout: timeout, bindAddress: bindAddress)
        record(connector)
        tcpClients.append(TCPClient(host: host, port: port, factory: factory, timeout: timeout, bindAddress: bindAddress, connector: connector))
        factory.startedConnecting(connector)
        return connector
    }

    // MARK: ReactorUNIX

    /// Records the call and returns a ``MemoryListeningPort`` whose host is `UNIXAddress(path)`.
    /// - Throws: ``listenError`` if set.
    @discardableResult
    public func listenUNIX(_ path: String, _ factory: Factory, backlog: Int = 50, mode: Int = 0o666,
                           wantPID: Bool = false) throws(CannotListenError) -> MemoryListeningPort {
        if let listenError {
            self.listenError = nil
            throw listenError
        }
        let listeningPort = MemoryListeningPort(address: UNIXAddress(name: path))
        unixServers.append(UNIXServer(path: path, factory: factory, backlog: backlog, mode: mode, wantPID: wantPID, listeningPort: listeningPort))
        return listeningPort
    }

    /// Records the call, calls `factory.startedConnecting`, and returns a connector that does no I/O.
    @discardableResult
    public func connectUNIX(_ path: String, _ factory: ClientFactory, timeout: Double? = 30, checkPID: Bool = false) -> Connector {
        let connector = Connector(reactor: idle, unixPath: path, checkPID: checkPID, factory: factory, timeout: timeout)
        record(connector)
        unixClients.append(UNIXClient(path: path, factory: factory, timeout: timeout, checkPID: checkPID, connector: connector))
        factory.startedConnecting(connector)
        return connector
    }

    // MARK: ReactorUDP

    /// Records the call and returns a ``MemoryUDPPort`` for the address asked
    /// for. The protocol is not started (as in Twisted's MemoryReactor).
    /// - Throws: ``listenError`` if set.
    @discardableResult
    public func listenUDP(_ port: Int, _ proto: DatagramProtocol, interface: String = "",
                          maxPacketSize: Int = 8192) throws(CannotListenError) -> MemoryUDPPort {
        if let listenError {
            self.listenError = nil
            throw listenError
        }
        let udpPort = MemoryUDPPort(address: fakeAddress(.udp, interface: interface, port: port))
        udpServers.append(UDPServer(port: port, proto: proto, interface: interface, maxPacketSize: maxPacketSize, udpPort: udpPort))
        return udpPort
    }

    /// The address a fake port reports: the interface asked for (`0.0.0.0` for every interface).
    private func fakeAddress(_ type: SocketType, interface: String, port: Int) -> any Address {
        let host = interface.isEmpty ? "0.0.0.0" : interface
        return host.contains(":")
            ? IPv6Address(type: type, host: host, port: port)
            : IPv4Address(type: type, host: host, port: port)
    }

    private func record(_ connector: Connector) {
        connector.memoryCalls = { [unowned self] connector, call in
            switch call {
            case .connect: self.connectorCalls.append((connector, .connect))
            case .stopConnecting: self.connectorCalls.append((connector, .stopConnecting))
            case .disconnect: self.connectorCalls.append((connector, .disconnect))
            }
        }
    }

    // MARK: ReactorTime

    public func seconds() -> Double { clock.seconds() }

    @discardableResult
    public func callLater(_ seconds: Double, _ function: @escaping () throws -> Void) -> DelayedCall {
        clock.callLater(seconds, function)
    }

    public func getDelayedCalls() -> [DelayedCall] { clock.getDelayedCalls() }

    /// Advances the clock (see ``Clock/advance(_:)``).
    public func advance(_ amount: Double) throws { try clock.advance(amount) }
}

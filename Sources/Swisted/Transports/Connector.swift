import CLibUV
import Glibc

/// An outgoing connection and its attempts: Twisted's `IConnector`,
/// returned by ``Reactor/connectTCP(_:_:_:timeout:bindAddress:)``.
///
/// One connector makes one connection at a time, and can make it again
/// (``connect()``) after it failed or was lost, with the same factory: the
/// basis of reconnecting clients.
///
/// An attempt resolves the host (unless it is an IP literal) with the
/// reactor's ``Reactor/resolver``, then tries each address in turn until one
/// accepts, all within `timeout` seconds. The factory hears
/// `startedConnecting` first, then either `clientConnectionFailed` (always
/// asynchronously, never inside `connectTCP`), or `buildProtocol` and the
/// protocol's life, then `clientConnectionLost`.
///
/// Threading: reactor thread only.
public final class Connector {
    /// Where a connector is in its cycle.
    public enum State: Sendable { case disconnected, connecting, connected }

    public let reactor: Reactor
    public let factory: ClientFactory
    /// The host as given: a name or an IP literal (for a Unix connector, the socket path).
    public let host: String
    /// The TCP port (0 for a Unix connector).
    public let port: Int
    /// Seconds an attempt may take before it fails with ``TimeoutError``; nil waits as long as the system does.
    public let timeout: Double?
    /// The local address to bind before connecting, if any (an IP literal and a port, 0 for any).
    public let bindAddress: (host: String, port: Int)?
    /// Disconnected, connecting, or connected.
    public private(set) var state = State.disconnected

    private var factoryStarted = false
    private var transport: StreamConnection?
    /// Set for a Unix-socket connector: the socket path and whether to check its PID lock.
    private let unix: (path: String, checkPID: Bool)?
    private var candidates: [SocketAddress] = []
    private var resolution: (any HostResolution)?
    private var timeoutCall: DelayedCall?
    /// Why the current attempt is being abandoned (stop, timeout, bad input); set once.
    private var failure: (any Error)?
    /// The error of the last address tried, reported if no address works.
    private var lastError: (any Error)?
    private var generation = 0
    /// Connecting, but waiting for the reactor to run again (made during shutdown).
    private var awaitingRun = false
    /// Set by SwistedTesting's MemoryReactor: no I/O; connect, stopConnecting and disconnect are only reported.
    package var memoryCalls: ((Connector, MemoryConnectorCall) -> Void)?

    package init(reactor: Reactor, host: String, port: Int, factory: ClientFactory, timeout: Double?, bindAddress: (host: String, port: Int)?) {
        self.reactor = reactor
        self.host = stripBrackets(host)
        self.port = port
        self.factory = factory
        self.timeout = timeout
        self.bindAddress = bindAddress
        self.unix = nil
    }

    package init(reactor: Reactor, unixPath: String, checkPID: Bool, factory: ClientFactory, timeout: Double?) {
        self.reactor = reactor
        self.host = unixPath
        self.port = 0
        self.factory = factory
        self.timeout = timeout
        self.bindAddress = nil
        self.unix = (unixPath, checkPID)
    }

    /// The address this connector connects to, as given (the host is not resolved):
    /// an ``IPv6Address`` for an IPv6 literal, a ``UNIXAddress`` for a Unix
    /// socket, else an ``IPv4Address``.
    public func getDestination() -> any Address {
        if unix != nil { return UNIXAddress(name: host) }
        return host.contains(":")
            ? IPv6Address(type: .tcp, host: host, port: port)
            : IPv4Address(type: .tcp, host: host, port: port)
    }

    /// Starts a connection attempt: `factory.startedConnecting(self)` is
    /// called before this returns; the outcome comes later.
    /// - Throws: ``AlreadyConnectingError`` unless the connector is disconnected.
    public func connect() throws(AlreadyConnectingError) {
        if let memoryCalls { return memoryCalls(self, .connect) }
        reactor.assertOnReactorThread()
        guard state == .disconnected else { throw AlreadyConnectingError() }
        state = .connecting
        failure = nil
        lastError = nil
        generation += 1
        if !factoryStarted {
            factory.doStart()
            factoryStarted = true
        }
        reactor.connectorsInProgress[ObjectIdentifier(self)] = self
        if let timeout {
            timeoutCall = reactor.callLater(timeout) { [weak self] in
                self?.timeoutCall = nil
                self?.abandon(TimeoutError())
            }
        }
        factory.startedConnecting(self)
        guard state == .connecting, failure == nil else { return }
        if reactor.isShuttingDown {
            // No I/O while the reactor shuts down (else a factory that
            // reconnects from clientConnectionLost would keep it running):
            // the attempt stays `connecting` and starts at the next run().
            awaitingRun = true
            reactor.connectorsAwaitingRun.append(self)
            return
        }
        begin()
    }

    /// The reactor runs again: start an attempt made while it shut down.
    func reactorStarted() {
        guard awaitingRun else { return }
        awaitingRun = false
        guard state == .connecting, failure == nil else { return }
        begin()
    }

    /// Stops the attempt in progress; the factory gets `clientConnectionFailed` with ``UserError``.
    /// - Throws: ``NotConnectingError`` if no attempt is in progress.
    public func stopConnecting() throws(NotConnectingError) {
        if let memoryCalls { return memoryCalls(self, .stopConnecting) }
        reactor.assertOnReactorThread()
        guard state == .connecting else { throw NotConnectingError() }
        abandon(UserError())
    }

    /// Stops the attempt in progress, or closes the connection (`loseConnection`) if connected.
    public func disconnect() {
        if let memoryCalls { return memoryCalls(self, .disconnect) }
        reactor.assertOnReactorThread()
        switch state {
        case .connecting: abandon(UserError())
        case .connected: transport?.loseConnection()
        case .disconnected: break
        }
    }

    // MARK: The attempt

    private func begin() {
        if let unix {
            connectUNIX(unix.path, checkPID: unix.checkPID)
            return
        }
        guard isValidPort(port) else {
            abandon(InvalidAddressError(address: "\(host):\(port)", reason: "port must be in 0...65535"))
            return
        }
        if let literal = SocketAddress(ipLiteral: host, port: port) {
            candidates = [literal]
            connectNext()
            return
        }
        guard !host.isEmpty, !host.contains(":") else {
            abandon(InvalidAddressError(address: host, reason: "not a host name or IP address"))
            return
        }
        let current = generation
        let resolution = reactor.resolver.resolveHostName(host, on: reactor) { [weak self] result in
            guard let self, self.generation == current, self.state == .connecting, self.failure == nil else { return }
            self.resolution = nil
            switch result {
            case .failure(let error as DNSLookupError):
                self.abandon(error)
            case .failure(let error):
                self.abandon(DNSLookupError(host: self.host, detail: String(describing: error)))
            case .success(let addresses):
                self.candidates = addresses.compactMap { SocketAddress(ipLiteral: stripBrackets($0), port: self.port) }
                if self.candidates.isEmpty {
                    self.abandon(DNSLookupError(host: self.host, detail: "no usable address"))
                } else {
                    self.connectNext()
                }
            }
        }
        // A resolver that answered synchronously has already moved us on.
        if self.generation == current, state == .connecting, failure == nil, candidates.isEmpty, transport == nil {
            self.resolution = resolution
        }
    }

    private func connectNext() {
        let address = candidates.removeFirst()
        let connection: TCPConnection
        do {
            connection = try TCPConnection(reactor: reactor, state: .connecting, family: address.isIPv6 ? AF_INET6 : AF_INET)
        } catch {
            abandon(ConnectError(error))
            return
        }
        connection.connector = self
        transport = connection
        if let bindAddress {
            guard isValidPort(bindAddress.port),
                  let local = SocketAddress(ipLiteral: stripBrackets(bindAddress.host), port: bindAddress.port) else {
                abandon(InvalidAddressError(address: "\(bindAddress.host):\(bindAddress.port)", reason: "bindAddress must be an IP literal and a port in 0...65535"))
                return
            }
            let rc = local.withSockAddr { uv_tcp_bind(connection.tcp, $0, 0) }
            if rc < 0 {
                abandon(ConnectError(UVError(code: rc)))
                return
            }
        }
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        // The handle holds the connection until its close callback, which
        // libuv runs only after this request's callback: no extra reference needed.
        request.pointee.data = Unmanaged.passUnretained(connection).toOpaque()
        let rc = address.withSockAddr { uv_tcp_connect(request, connection.tcp, $0, connectCallback) }
        if rc < 0 {
            request.deallocate()
            lastError = connectFailure(UVError(code: rc))
            connection.closeNow(lastError!)  // attemptClosed tries the next address
        }
    }

    /// A Unix-domain connect finishes at once (see `UNIXSocketName.connect`);
    /// its outcome is still delivered from the loop, like a TCP connect's.
    private func connectUNIX(_ path: String, checkPID: Bool) {
        let name: UNIXSocketName
        do { name = try UNIXSocketName(path) } catch {
            abandon(error)
            return
        }
        if checkPID, !name.isAbstract {
            guard let pid = UNIXSocketLock.owner(of: path + ".lock") else {
                abandon(BadFileError(path: path, reason: "no lock file \(path).lock: no server holds it"))
                return
            }
            guard UNIXSocketLock.isAlive(pid) else {
                abandon(BadFileError(path: path, reason: "its lock names process \(pid), which is not running"))
                return
            }
        }
        let fd: Int32
        do { fd = try name.connect() } catch {
            abandon(connectFailure(error))
            return
        }
        let connection: UNIXConnection
        do {
            connection = try UNIXConnection(reactor: reactor, state: .connecting, hostName: nil, peerName: path)
        } catch {
            close(fd)
            abandon(ConnectError(error))
            return
        }
        connection.connector = self
        transport = connection
        let rc = uv_pipe_open(connection.pipe, fd)
        if rc < 0 {
            close(fd)
            lastError = ConnectError(UVError(code: rc))
            connection.closeNow(lastError!)
            return
        }
        reactor.callSoon { [self] in connectFinished(connection, status: 0) }
    }

    fileprivate func connectFinished(_ connection: StreamConnection, status: Int32) {
        guard connection === transport, connection.state == .connecting else { return }
        if status < 0 {
            lastError = connectFailure(UVError(code: status))
            connection.closeNow(lastError!)
            return
        }
        cancelTimeout()
        state = .connected
        reactor.connectorsInProgress[ObjectIdentifier(self)] = nil
        candidates = []
        connection.readAddresses()
        if let proto = factory.buildProtocol(connection.getPeer()) {
            connection.start(with: proto)
        } else {
            // As Twisted does: a stand-in protocol, so the connection still ends
            // the normal way (connectionLost, then clientConnectionLost).
            connection.start(with: Protocol())
            connection.loseConnection()
        }
    }

    /// Gives up the current attempt with `reason` (stop, timeout, bad input, DNS failure).
    private func abandon(_ reason: any Error) {
        guard state == .connecting, failure == nil else { return }
        failure = reason
        awaitingRun = false
        resolution?.cancel()
        resolution = nil
        if let transport {
            transport.closeNow(reason)  // attemptClosed delivers the failure
        } else {
            reactor.callSoon { [self] in deliverFailure(reason) }
        }
    }

    /// The handle of an attempt that did not connect is closed.
    func attemptClosed() {
        transport = nil
        guard state == .connecting else { return }
        if failure == nil, !candidates.isEmpty {
            connectNext()
            return
        }
        deliverFailure(failure ?? lastError ?? ConnectError(.invalidArgument))
    }

    private func deliverFailure(_ reason: any Error) {
        guard state == .connecting else { return }
        state = .disconnected
        failure = nil
        candidates = []
        cancelTimeout()
        reactor.connectorsInProgress[ObjectIdentifier(self)] = nil
        factory.clientConnectionFailed(self, reason: reason)
        stopFactoryIfDone()
    }

    /// The established connection ended (after the protocol's connectionLost).
    func connectionLost(_ reason: any Error) {
        transport = nil
        state = .disconnected
        factory.clientConnectionLost(self, reason: reason)
        stopFactoryIfDone()
    }

    /// Unless the factory reconnected from its callback, this connector is done with it.
    private func stopFactoryIfDone() {
        if state == .disconnected, factoryStarted {
            factoryStarted = false
            factory.doStop()
        }
    }

    private func cancelTimeout() {
        if let timeoutCall, timeoutCall.active { try? timeoutCall.cancel() }
        timeoutCall = nil
    }

    func reactorWillShutDown() {
        guard !awaitingRun else { return }  // made during this shutdown: waits for the next run()
        abandon(UserError("The reactor stopped before the connection was made."))
    }
}

private func connectCallback(_ request: UnsafeMutablePointer<uv_connect_t>?, _ status: Int32) {
    let connection = Unmanaged<StreamConnection>.fromOpaque(request!.pointee.data).takeUnretainedValue()
    request!.deallocate()
    connection.connector?.connectFinished(connection, status: status)
}

extension Reactor {
    /// Listens for TCP connections on `port` (0: the system picks a free
    /// one; read it from `getHost()`), building a protocol with `factory` for
    /// each. Starts the factory (``Factory/doStart()``).
    ///
    /// - Parameters:
    ///   - interface: `""` (every IPv4 interface, the default), `"::"` (every
    ///     interface, IPv6 and IPv4), `"localhost"` (127.0.0.1), or an IPv4/IPv6
    ///     literal such as `"127.0.0.1"` or `"::1"`. Names are never looked up.
    ///   - backlog: the listen queue length (`uv_listen`).
    /// - Throws: ``CannotListenError`` carrying the address and the reason:
    ///   a ``UVError`` (`EADDRINUSE: address already in use`,
    ///   `EADDRNOTAVAIL`, `EACCES`) or an ``InvalidAddressError`` for a bad
    ///   interface or a port outside 0...65535.
    ///
    /// Reactor thread only.
    @discardableResult
    public func listenTCP(_ port: Int, _ factory: Factory, backlog: Int = 50, interface: String = "") throws(CannotListenError) -> ListeningPort {
        assertOnReactorThread()
        return try ListeningPort.listenTCP(reactor: self, port: port, factory: factory, backlog: backlog, interface: interface)
    }

    /// Connects to `host`:`port` over TCP, with `factory` building the protocol.
    ///
    /// `host` may be a name (resolved asynchronously by ``resolver``; IPv6
    /// and IPv4 results are tried in order), or an IPv4 or IPv6 literal
    /// (with or without brackets), which skips resolution. The factory's
    /// `startedConnecting` runs before this returns; everything else,
    /// including failures from bad input, comes later, from the reactor:
    /// `clientConnectionFailed` with ``ConnectionRefusedError``,
    /// ``TimeoutError``, ``DNSLookupError``, ``UserError``,
    /// ``InvalidAddressError`` or ``ConnectError``.
    ///
    /// - Parameters:
    ///   - timeout: seconds before the attempt fails with ``TimeoutError``
    ///     (nil: the system's own limit).
    ///   - bindAddress: a local IP literal and port to bind first.
    /// - Returns: the ``Connector``, to stop, disconnect or reconnect.
    ///
    /// Reactor thread only.
    @discardableResult
    public func connectTCP(_ host: String, _ port: Int, _ factory: ClientFactory, timeout: Double? = 30,
                           bindAddress: (host: String, port: Int)? = nil) -> Connector {
        assertOnReactorThread()
        let connector = Connector(reactor: self, host: host, port: port, factory: factory, timeout: timeout, bindAddress: bindAddress)
        try! connector.connect()  // a new connector is disconnected: cannot throw
        return connector
    }
}

import CLibUV
import Glibc

/// A port listening for connections: Twisted's `IListeningPort`, returned by
/// ``Reactor/listenTCP(_:_:backlog:interface:)`` and
/// ``Reactor/listenUNIX(_:_:backlog:mode:wantPID:)``.
///
/// For each incoming connection it asks the factory for a protocol
/// (`buildProtocol(peerAddress)`; nil refuses: the connection is closed at
/// once) and connects the two. It keeps listening while it is open, even if
/// you drop your reference to it; ``stopListening(_:)`` closes it (the
/// connections it accepted stay open).
///
/// Threading: reactor thread only.
public final class ListeningPort: HandleOwning {
    /// The reactor the port belongs to.
    public let reactor: Reactor
    /// The factory that builds a protocol per connection.
    public let factory: Factory
    private let stream: UnsafeMutablePointer<uv_stream_t>
    private let host: any Address
    private let family: Family
    private var listening = true
    private var closed = false
    private var closeCompletions: [() -> Void] = []
    /// A connection is waiting in the kernel while accepting is paused.
    private var acceptDeferred = false

    /// Set by the async listener while nobody takes its connections: a
    /// connection that arrives is left in the kernel's accept queue (libuv
    /// stops polling the socket until `uv_accept` is called), so the backlog
    /// absorbs the surplus instead of memory. Clearing it accepts the waiting one.
    var acceptPaused = false {
        didSet {
            if !acceptPaused, acceptDeferred {
                acceptDeferred = false
                connectionArrived(0)
            }
        }
    }

    /// What kind of socket listens, and what it leaves on disk.
    enum Family {
        case tcp
        /// `socketFile`: the path to remove on close (nil for an abstract name);
        /// `lockFile`: the `wantPID` lock to remove on close.
        case unix(name: String, socketFile: String?, lockFile: String?)
    }

    /// Takes an initialized, listening stream handle (adopts it) and starts the factory.
    init(reactor: Reactor, factory: Factory, stream: UnsafeMutablePointer<uv_stream_t>, host: any Address, family: Family) {
        self.reactor = reactor
        self.factory = factory
        self.stream = stream
        self.host = host
        self.family = family
        UVHandle.adopt(stream, owner: self)
        factory.doStart()
    }

    /// Binds and listens on TCP (`uv_tcp_bind`, `uv_listen`).
    static func listenTCP(reactor: Reactor, port: Int, factory: Factory, backlog: Int, interface: String) throws(CannotListenError) -> ListeningPort {
        func failure(_ error: any Error & Sendable) -> CannotListenError {
            CannotListenError(interface: interface, port: port, underlying: error)
        }
        guard isValidPort(port) else {
            throw failure(InvalidAddressError(address: "\(interface):\(port)", reason: "port must be in 0...65535"))
        }
        guard let address = SocketAddress(listenInterface: interface, port: port) else {
            throw failure(InvalidAddressError(address: interface, reason: "not an IP address (use an IPv4 or IPv6 literal, \"\", \"::\" or \"localhost\")"))
        }
        let tcp = UVHandle.allocate(uv_tcp_t.self)
        let initRC = uv_tcp_init_ex(reactor.loop, tcp, UInt32(address.isIPv6 ? AF_INET6 : AF_INET))
        if initRC < 0 {
            UVHandle.deallocateUninitialized(tcp)
            throw failure(UVError(code: initRC))
        }
        // Any failure from here on closes the handle; its memory is freed in the close callback.
        var rc = address.withSockAddr { uv_tcp_bind(tcp, $0, 0) }
        if rc == 0 {
            // libuv reports some bind errors (EADDRINUSE) only here.
            rc = uv_listen(UVHandle.asStream(tcp), Int32(clamping: backlog), listenCallback)
        }
        let actual = rc == 0 ? SocketAddress.read { uv_tcp_getsockname(tcp, $0, $1) } : nil
        guard rc == 0, let actual else {
            UVHandle.close(tcp)
            throw failure(UVError(code: rc == 0 ? UV_EINVAL.rawValue : rc))
        }
        return ListeningPort(reactor: reactor, factory: factory, stream: UVHandle.asStream(tcp),
                             host: actual.address(type: .tcp), family: .tcp)
    }

    /// Starts listening on an already bound socket: `uv_listen` with our callback.
    /// Closes the handle and throws on failure.
    static func startListening(_ stream: UnsafeMutablePointer<uv_stream_t>, backlog: Int) throws(UVError) {
        let rc = uv_listen(stream, Int32(clamping: backlog), listenCallback)
        if rc < 0 {
            UVHandle.close(stream)
            throw UVError(code: rc)
        }
    }

    /// The address the port is bound to: an ``IPv4Address``/``IPv6Address``
    /// (with port 0, it holds the port the system chose) or a ``UNIXAddress``.
    public func getHost() -> any Address {
        host
    }

    /// Stops accepting connections and closes the listening socket at once,
    /// so the same port can be bound again right after (a Unix socket's
    /// file, and its `wantPID` lock file, are removed). Connections already
    /// accepted stay open. The factory's `doStop` (and `completion`, if given)
    /// run once libuv has finished closing. Calling it again does nothing
    /// but add the completion. May be called inside `buildProtocol`.
    ///
    /// Reactor thread only.
    public func stopListening(_ completion: (() -> Void)? = nil) {
        reactor.assertOnReactorThread()
        if let completion {
            if closed { reactor.callSoon(completion) } else { closeCompletions.append(completion) }
        }
        guard listening else { return }
        listening = false
        UVHandle.close(stream)
        if case .unix(_, let socketFile, let lockFile) = family {
            if let socketFile { unlink(socketFile) }
            if let lockFile { unlink(lockFile) }
        }
    }

    fileprivate func connectionArrived(_ status: Int32) {
        guard status >= 0 else {
            reactor.logError("Swisted: accept failed on \(getHost()): \(UVError(code: status))")
            return
        }
        guard listening else { return }
        if acceptPaused {
            acceptDeferred = true
            return
        }
        let connection: StreamConnection
        do {
            switch family {
            case .tcp:
                connection = try TCPConnection(reactor: reactor, state: .connecting)
            case .unix(let name, _, _):
                connection = try UNIXConnection(reactor: reactor, state: .connecting, hostName: name, peerName: nil)
            }
        } catch {
            reactor.logError("Swisted: cannot create a handle for a connection on \(getHost()): \(error)")
            return
        }
        let rc = uv_accept(stream, connection.stream)
        guard rc == 0 else {
            reactor.logError("Swisted: accept failed on \(getHost()): \(UVError(code: rc))")
            connection.closeNow(ConnectionLost(UVError(code: rc)))
            return
        }
        connection.readAddresses()
        guard let proto = factory.buildProtocol(connection.getPeer()) else {
            // Refused: no protocol ever sees this connection.
            connection.closeNow(ConnectionDone())
            return
        }
        connection.start(with: proto)
    }

    func handleDidClose() {
        closed = true
        factory.doStop()
        let completions = closeCompletions
        closeCompletions = []
        for completion in completions { completion() }
    }

    func reactorWillShutDown() {
        stopListening()
    }
}

private func listenCallback(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    Unmanaged<ListeningPort>.fromOpaque(server!.pointee.data)._withUnsafeGuaranteedRef {
        $0.connectionArrived(status)
    }
}

extension SocketAddress {
    /// The address to bind for a listening interface: `""` is every IPv4
    /// interface (Twisted's default), `"localhost"` is 127.0.0.1 (as binding
    /// to it does in Python), anything else must be an IP literal (optionally
    /// in brackets). No name is ever looked up.
    init?(listenInterface interface: String, port: Int) {
        switch interface {
        case "": self.init(ipLiteral: "0.0.0.0", port: port)
        case "localhost": self.init(ipLiteral: "127.0.0.1", port: port)
        default: self.init(ipLiteral: stripBrackets(interface), port: port)
        }
    }
}

/// `[::1]` → `::1`; anything else unchanged.
func stripBrackets(_ host: String) -> String {
    if host.hasPrefix("["), host.hasSuffix("]"), host.count >= 2 {
        return String(host.dropFirst().dropLast())
    }
    return host
}

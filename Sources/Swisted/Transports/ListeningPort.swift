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
/// ## Running out of file descriptors
/// When the process has no descriptor left (`EMFILE`, or `ENFILE` for the
/// whole system), the port neither crashes nor spins, and the connections
/// already open carry on:
/// - Usually libuv's own reserve descriptor handles it: libuv frees it,
///   accepts every waiting connection and closes it at once (those clients
///   see the connection closed), then takes the reserve back. Nothing is
///   logged; accepting goes on normally as soon as a descriptor is free.
/// - If libuv's reserve cannot help (it could not be reopened, or the limit
///   was lowered below it), libuv would retry `accept` in a tight loop. The
///   port then gives up a reserve descriptor of its own (each port holds
///   one, `/dev/null`), so that one more connection is accepted, and leaves
///   it with libuv untaken: libuv stops watching the socket, and new
///   connections wait in the kernel's backlog. The port retries every
///   50 ms to 1 s (doubling); once a descriptor is free again it takes its
///   reserve back, serves the held connection and accepts again. One line
///   is logged when this starts and one when it ends.
/// - If even that is impossible (the port's reserve could not be opened, at
///   listen time or at any accept since, or freeing it did not help), the
///   port logs the error and stops listening rather than keep the reactor
///   spinning.
///
/// Other accept errors are logged once per run of consecutive failures.
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

    // Descriptor exhaustion (see "Running out of file descriptors" above).
    /// The port's reserve descriptor (`/dev/null`, read-only), or -1 while given up.
    private var reserveFD: Int32 = -1
    /// The reserve was just given up for an accept: hold the connection it brings.
    private var holdNextAccept = false
    /// libuv holds one accepted connection we have not taken: it does not watch the socket.
    private var acceptPaused = false
    private var retryCall: DelayedCall?
    /// libuv holds one accepted connection we left untaken for the async listener's consumer.
    private var consumerHeld = false

    /// Set by the async listener (AsyncListener) while its buffer of accepted
    /// connections is full: a connection that arrives is left with libuv
    /// untaken (libuv stops watching the socket until `uv_accept`), so later
    /// ones wait in the kernel's backlog instead of in memory. Clearing it
    /// takes the held connection and accepting goes on.
    var consumerPaused = false {
        didSet {
            guard !consumerPaused, consumerHeld else { return }
            consumerHeld = false
            // While paused for descriptors, the retry takes the held connection.
            if listening, !acceptPaused { acceptPending() }
        }
    }
    private var retryDelay = ListeningPort.firstRetryDelay
    private static let firstRetryDelay = 0.05
    private static let maxRetryDelay = 1.0
    /// Failed accepts since the last successful one (each run is logged once).
    private var failedAccepts = 0

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
        reserveFD = ListeningPort.openReserve()
        factory.doStart()
    }

    /// Opens a descriptor to hold in reserve; -1 if none is free.
    private static func openReserve() -> Int32 {
        open("/dev/null", O_RDONLY | O_CLOEXEC)
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
        UVHandle.close(stream)  // also closes a connection libuv holds for us
        if let retryCall, retryCall.active { try? retryCall.cancel() }
        retryCall = nil
        if reserveFD >= 0 {
            close(reserveFD)
            reserveFD = -1
        }
        if case .unix(_, let socketFile, let lockFile) = family {
            if let socketFile { unlink(socketFile) }
            if let lockFile { unlink(lockFile) }
        }
    }

    fileprivate func connectionArrived(_ status: Int32) {
        guard listening else { return }
        guard status >= 0 else {
            acceptFailed(status)
            return
        }
        if holdNextAccept {
            // This connection has the descriptor our reserve gave up. Not
            // taking it (no uv_accept) makes libuv stop watching the socket
            // until we do: nothing spins while descriptors are short.
            holdNextAccept = false
            pauseAccepting()
            return
        }
        if consumerPaused {
            consumerHeld = true  // taken when the async listener's consumer makes room
            return
        }
        acceptPending()
    }

    /// Takes the connection libuv accepted (`uv_accept`, which also makes
    /// libuv watch the socket again) and hands it to the factory.
    private func acceptPending() {
        let connection: StreamConnection
        do {
            switch family {
            case .tcp:
                connection = try TCPConnection(reactor: reactor, state: .connecting)
            case .unix(let name, _, _):
                connection = try UNIXConnection(reactor: reactor, state: .connecting, hostName: name, peerName: nil)
            }
        } catch {
            // The connection stays with libuv (which stops watching the socket meanwhile): try again later.
            reactor.logError("Swisted: cannot create a handle for a connection on \(getHost()): \(error); retrying")
            pauseAccepting()
            return
        }
        let rc = uv_accept(stream, connection.stream)
        guard rc == 0 else {
            reactor.logError("Swisted: accept failed on \(getHost()): \(UVError(code: rc))")
            connection.closeNow(ConnectionLost(UVError(code: rc)))
            return
        }
        if reserveFD < 0, !holdNextAccept {
            // The port was made with no descriptor free for its reserve: take one now if there is.
            reserveFD = ListeningPort.openReserve()
        }
        if failedAccepts > 0 {
            if failedAccepts > 1 {
                reactor.log(.notice, "Swisted: accepting on \(getHost()) again (after \(failedAccepts) failed accepts)")
            }
            failedAccepts = 0
        }
        connection.readAddresses()
        guard let proto = factory.buildProtocol(connection.getPeer()) else {
            // Refused: no protocol ever sees this connection.
            connection.closeNow(ConnectionDone())
            return
        }
        connection.start(with: proto)
    }

    /// libuv reports a failed accept, and tries again as soon as we return.
    private func acceptFailed(_ status: Int32) {
        failedAccepts += 1
        let error = UVError(code: status)
        guard status == UV_EMFILE.rawValue || status == UV_ENFILE.rawValue else {
            // Per-connection errors: libuv goes on with the next connection.
            if failedAccepts == 1 { reactor.logError("Swisted: accept failed on \(getHost()): \(error)") }
            return
        }
        // Out of descriptors, and libuv's own reserve did not help. (Linux
        // needs a free descriptor before it looks at the queue, so this also
        // comes right after the last one was used, with nobody waiting: then
        // the connection held is the next one to arrive.)
        if reserveFD >= 0, !holdNextAccept {
            close(reserveFD)
            reserveFD = -1
            holdNextAccept = true  // libuv's next accept gets the descriptor just freed
            reactor.logError("Swisted: out of file descriptors accepting on \(getHost()) (\(error)): pausing accepts until one is free")
            return
        }
        // No reserve, or freeing it did not help: libuv would retry forever.
        holdNextAccept = false
        reactor.logError("Swisted: out of file descriptors accepting on \(getHost()) (\(error)) and none can be freed: stopped listening")
        stopListening()
    }

    private func pauseAccepting() {
        acceptPaused = true
        retryCall = reactor.callLater(retryDelay) { [weak self] in self?.retryAccepting() }
        retryDelay = min(retryDelay * 2, ListeningPort.maxRetryDelay)
    }

    private func retryAccepting() {
        retryCall = nil
        guard listening, acceptPaused else { return }
        if reserveFD < 0 {
            reserveFD = ListeningPort.openReserve()
            guard reserveFD >= 0 else {
                pauseAccepting()  // still none free
                return
            }
            reactor.log(.notice, "Swisted: a file descriptor is free again: accepting on \(getHost()) again")
            failedAccepts = 0
        }
        acceptPaused = false
        retryDelay = ListeningPort.firstRetryDelay
        acceptPending()
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

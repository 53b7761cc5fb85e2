/// The connector of an async connection attempt, so cancellation can stop it.
/// Threading: `connector` is reactor-thread state; the box crosses threads.
final class ConnectAttempt: @unchecked Sendable {
    // @unchecked Sendable: `connector` is only touched on the reactor thread.
    var connector: Connector?
}

/// A factory for one async connection attempt: it resolves `waiter` with
/// what `buildProtocol` made (subclasses), or with the connect error.
/// Threading: reactor thread only.
class AsyncClientFactory<Value: Sendable>: ClientFactory {
    let reactor: Reactor
    let waiter: OneShot<Value>

    init(reactor: Reactor, waiter: OneShot<Value>) {
        self.reactor = reactor
        self.waiter = waiter
        super.init()
    }

    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        waiter.fail(reason)
    }
}

/// Builds an ``AsyncBridge`` for the one connection of an async connect and
/// resolves the waiter with the outcome.
/// Threading: reactor thread only.
final class AsyncConnectFactory: AsyncClientFactory<AsyncConnection> {
    let options: AsyncConnection.Options

    init(reactor: Reactor, waiter: OneShot<AsyncConnection>, options: AsyncConnection.Options) {
        self.options = options
        super.init(reactor: reactor, waiter: waiter)
    }

    override func buildProtocol(_ address: any Address) -> Protocol? {
        // If nobody waits any more (cancelled), the connection is dropped
        // here, and its deinit closes it.
        AsyncBridge(reactor: reactor, options: options, factory: self) { [waiter] connection in
            waiter.succeed(connection)
        }
    }

    override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        waiter.fail(reason)  // lost before connectionMade finished: not normally reached
    }
}

/// Builds the caller's protocol for ``Reactor/connectTCP(_:_:timeout:bindAddress:_:)``
/// and resolves the waiter once its `connectionMade` has run.
/// Threading: reactor thread only.
final class AsyncProtocolFactory<P: Protocol>: AsyncClientFactory<ReactorBound<P>> {
    let make: @Sendable () -> P
    private var built: P?

    init(reactor: Reactor, waiter: OneShot<ReactorBound<P>>, make: @escaping @Sendable () -> P) {
        self.make = make
        super.init(reactor: reactor, waiter: waiter)
    }

    override func buildProtocol(_ address: any Address) -> Protocol? {
        let proto = make()
        proto.factory = self
        built = proto
        // The connector calls connectionMade right after this returns; the
        // next loop turn is after it.
        reactor.callSoon { [self] in deliver() }
        return proto
    }

    private func deliver() {
        guard let proto = built else { return }
        built = nil
        if !waiter.succeed(ReactorBound(proto, reactor: reactor)) {
            proto.transport?.loseConnection()  // the caller stopped waiting
        }
    }

    override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        // Made, then lost before the next loop turn: connectionMade did run.
        deliver()
    }
}

extension Reactor {
    /// Runs one async connection attempt: `connect` starts it on the reactor
    /// thread; cancelling the task stops it (`stopConnecting`).
    nonisolated(nonsending) func connectAsync<Value: Sendable>(
        _ waiter: OneShot<Value>,
        _ connect: @escaping @Sendable (Reactor) -> Connector
    ) async throws -> Value {
        let attempt = ConnectAttempt()
        return try await waiter.wait(on: self, start: {
            self.perform {
                guard !waiter.isFinished else { return }  // cancelled before it started
                attempt.connector = connect(self)
            }
        }, onCancel: {
            self.perform {
                guard let connector = attempt.connector, connector.state == .connecting else { return }
                try? connector.stopConnecting()
            }
        })
    }

    /// Connects over TCP and returns the connection once it is made.
    ///
    /// The attempt is ``connectTCP(_:_:_:timeout:bindAddress:)``'s: `host`
    /// may be a name (resolved by ``resolver``) or an IPv4/IPv6 literal.
    ///
    /// - Parameters:
    ///   - timeout: seconds before it fails with ``TimeoutError`` (nil: the system's limit).
    ///   - bindAddress: a local IP literal and port to bind first.
    ///   - options: the inbound buffer's water marks.
    /// - Throws: what `clientConnectionFailed` would get:
    ///   ``ConnectionRefusedError``, ``TimeoutError``, ``DNSLookupError``,
    ///   ``InvalidAddressError``, ``ConnectError``, ``UserError`` (the reactor
    ///   stopped first); `CancellationError` if the task is cancelled, which
    ///   stops the attempt.
    ///
    /// Threading: any task or thread (see ``AsyncConnection``). Waits for the
    /// reactor to run if it is stopped.
    public nonisolated(nonsending) func connect(host: String, port: Int, timeout: Double? = 30,
                        bindAddress: (host: String, port: Int)? = nil,
                        options: AsyncConnection.Options = .init()) async throws -> AsyncConnection {
        let bind = bindAddress.map { SendableBind(host: $0.host, port: $0.port) }
        let waiter = OneShot<AsyncConnection>()
        return try await connectAsync(waiter) { reactor in
            let factory = AsyncConnectFactory(reactor: reactor, waiter: waiter, options: options)
            return reactor.connectTCP(host, port, factory, timeout: timeout, bindAddress: bind.map { ($0.host, $0.port) })
        }
    }

    /// Connects to the Unix-domain stream socket at `path` and returns the
    /// connection once it is made.
    /// - Throws: as ``connectUNIX(_:_:timeout:checkPID:)``'s factory would
    ///   hear (``ConnectionRefusedError``, ``BadFileError``, ...);
    ///   `CancellationError` if the task is cancelled.
    ///
    /// Threading: any task or thread (see ``AsyncConnection``).
    public nonisolated(nonsending) func connect(unixPath path: String, timeout: Double? = 30,
                        options: AsyncConnection.Options = .init()) async throws -> AsyncConnection {
        let waiter = OneShot<AsyncConnection>()
        return try await connectAsync(waiter) { reactor in
            let factory = AsyncConnectFactory(reactor: reactor, waiter: waiter, options: options)
            return reactor.connectUNIX(path, factory, timeout: timeout)
        }
    }

    /// Connects over TCP with a protocol built by `makeProtocol`, and returns
    /// it once its `connectionMade` has run: Twisted's `connectProtocol`.
    ///
    /// ```swift
    /// let client = try await reactor.connectTCP("127.0.0.1", 8000) { LineClient() }
    /// reactor.callFromThread { client.value.sendLine("hi") }
    /// ```
    ///
    /// The protocol belongs to the reactor's thread, so it comes wrapped in a
    /// ``ReactorBound``: use `value` on the reactor thread (inside
    /// `callFromThread`). If the connection is made and lost before the
    /// caller resumes, the protocol is still returned (it has heard
    /// `connectionLost`).
    ///
    /// - Throws: the connect error (``ConnectionRefusedError``,
    ///   ``TimeoutError``, ``DNSLookupError``, ...); `CancellationError` if
    ///   the task is cancelled, which stops the attempt (or closes the
    ///   connection, if it was made meanwhile).
    ///
    /// Threading: any task or thread; `makeProtocol` runs on the reactor thread.
    public nonisolated(nonsending) func connectTCP<P: Protocol>(_ host: String, _ port: Int, timeout: Double? = 30,
                                        bindAddress: (host: String, port: Int)? = nil,
                                        _ makeProtocol: @escaping @Sendable () -> P) async throws -> ReactorBound<P> {
        let bind = bindAddress.map { SendableBind(host: $0.host, port: $0.port) }
        let waiter = OneShot<ReactorBound<P>>()
        return try await connectAsync(waiter) { reactor in
            let factory = AsyncProtocolFactory(reactor: reactor, waiter: waiter, make: makeProtocol)
            return reactor.connectTCP(host, port, factory, timeout: timeout, bindAddress: bind.map { ($0.host, $0.port) })
        }
    }
}

/// A bind address that can cross into a `@Sendable` closure.
struct SendableBind: Sendable {
    let host: String
    let port: Int
}

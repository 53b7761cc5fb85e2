/// A listening port for async/await code: an `AsyncSequence` of the
/// ``AsyncConnection``s it accepts, made by
/// ``Reactor/listen(port:interface:backlog:maxPendingConnections:options:)``
/// or ``Reactor/listen(unixPath:backlog:mode:maxPendingConnections:options:)``.
///
/// ```swift
/// let listener = try await reactor.listen(port: 0, interface: "127.0.0.1")
/// for try await connection in listener {
///     Task { for try await chunk in connection.inbound { try await connection.write(chunk) } }
/// }
/// ```
///
/// Back-pressure on accept: at most `maxPendingConnections` accepted
/// connections wait for the consumer. While that many wait, the port stops
/// accepting (connections queue in the kernel's listen backlog, and beyond it
/// the kernel refuses them); taking one resumes accepting.
///
/// The sequence ends (nil) after ``close()``, or when the reactor stops
/// (which closes every port); connections accepted but never taken are then
/// closed. Dropping the last reference to the listener also closes it.
///
/// Threading: `Sendable`; any task or thread. One task at a time may wait for
/// the next connection (a second throws ``AsyncConnectionError/concurrentIteration``).
public final class AsyncListener: AsyncSequence, Sendable {
    /// Each element is one accepted connection.
    public typealias Element = AsyncConnection

    let core: ListenerCore
    /// The address the port is bound to (with port 0, the port the system chose).
    public let address: any Address

    init(core: ListenerCore, address: any Address) {
        self.core = core
        self.address = address
    }

    deinit {
        let core = core
        core.reactor.perform { core.close(then: nil) }
    }

    /// The TCP port (0 for a Unix socket).
    public var port: Int { (address as? any IPAddress)?.port ?? 0 }

    /// Stops listening and returns once the port is closed. Connections
    /// already taken stay open; those still waiting are closed; a task
    /// waiting for the next connection gets nil. Calling it again just waits.
    public nonisolated(nonsending) func close() async {
        let core = core
        let waiter = OneShot<Void>()
        _ = try? await waiter.wait(on: core.reactor, start: {
            core.reactor.perform { core.close(then: waiter) }
        })
    }

    /// An iterator over the accepted connections (each is yielded once, to whichever iterator asks).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(listener: self)
    }

    /// Iterates an ``AsyncListener``. Threading: one task at a time (a second
    /// waiting task gets ``AsyncConnectionError/concurrentIteration``);
    /// `next()` throws `CancellationError` if the task is cancelled.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let listener: AsyncListener
        /// Whether the caller's actor runs on the reactor.
        var isolation = IsolationCache()

        /// The next accepted connection; nil once the listener is closed.
        /// - Throws: `CancellationError`; ``AsyncConnectionError/concurrentIteration``.
        public mutating func next() async throws -> AsyncConnection? {
            try await listener.core.next(isolatedToReactor: false)
        }

        /// The next accepted connection, in the caller's isolation (what
        /// `for try await` calls): an actor on the reactor's executor waits
        /// here without leaving it, as on ``AsyncConnection/inbound``.
        /// - Throws: as ``next()``.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> AsyncConnection? {
            let core = listener.core
            return try await core.next(isolatedToReactor: isolation.runsOn(core.reactor, actor))
        }
    }
}

/// The shared state of an ``AsyncListener``: accepted connections waiting
/// for the consumer (any thread, behind a lock) and the port (reactor thread).
final class ListenerCore: @unchecked Sendable {
    // @unchecked Sendable: `port` and `closeWaiters` are reactor-thread
    // state; `state` is behind its lock.
    let reactor: Reactor
    let maxPending: Int
    var port: ListeningPort?
    private var portClosed = false
    private var closeWaiters: [OneShot<Void>] = []

    struct State: SingleConsumerState {
        var queue: [AsyncConnection] = []
        var head = 0
        var closed = false
        var consumer = ConsumerSlot<AsyncConnection>()
        var acceptPaused = false
        var resumeScheduled = false
        /// Most connections ever waiting at once (for tests).
        var maxQueued = 0

        var count: Int { queue.count - head }

        enum Step { case connection(AsyncConnection, resumeAccepting: Bool), end }

        /// The next step for the consumer; nil: wait.
        mutating func take(maxPending: Int) -> Step? {
            if head < queue.count {
                let connection = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                }
                var resume = false
                if acceptPaused, !resumeScheduled, !closed, count < maxPending {
                    resumeScheduled = true
                    resume = true
                }
                return .connection(connection, resumeAccepting: resume)
            }
            return closed ? .end : nil
        }
    }

    let state = Locked(State())

    init(reactor: Reactor, maxPending: Int) {
        self.reactor = reactor
        self.maxPending = max(1, maxPending)
    }

    /// Reactor thread: a connection was made on the port.
    func deliver(_ connection: AsyncConnection) {
        let max = maxPending
        let (reader, pause) = state.withLock { state -> (ConsumerSlot<AsyncConnection>.Waiter?, Bool) in
            if state.closed {
                return (nil, false)  // dropped by the caller: its deinit closes it
            }
            if let waiter = state.consumer.takeWaiter() {
                return (waiter, false)
            }
            state.queue.append(connection)
            state.maxQueued = Swift.max(state.maxQueued, state.count)
            guard !state.acceptPaused, state.count >= max else { return (nil, false) }
            state.acceptPaused = true
            return (nil, true)
        }
        reader?.resume(with: .success(connection), from: reactor)
        if pause { port?.consumerPaused = true }
    }

    /// Reactor thread: the consumer made room.
    private func resumeAccepting() {
        let max = maxPending
        let resume = state.withLock { state -> Bool in
            state.resumeScheduled = false
            guard state.acceptPaused, !state.closed, state.count < max else { return false }
            state.acceptPaused = false
            return true
        }
        if resume { port?.consumerPaused = false }
    }

    /// Reactor thread: stop listening; `waiter` (if any) hears when the port is closed.
    func close(then waiter: OneShot<Void>?) {
        endSequence()
        if let waiter {
            if portClosed { waiter.succeed(()) } else { closeWaiters.append(waiter) }
        }
        port?.stopListening()  // portDidClose follows (now, or from the reactor's shutdown)
    }

    /// No more connections: a waiting reader gets nil, waiting connections are closed.
    private func endSequence() {
        let (reader, dropped) = state.withLock { state -> (ConsumerSlot<AsyncConnection>.Waiter?, [AsyncConnection]) in
            state.closed = true
            let reader = state.consumer.takeWaiter()
            let dropped = Array(state.queue[state.head...])
            state.queue = []
            state.head = 0
            return (reader, dropped)
        }
        reader?.resume(with: .success(nil), from: reactor)
        for connection in dropped { connection.abort() }
    }

    /// Reactor thread: the port's handle is closed (by ``close(then:)`` or by
    /// the reactor's shutdown): the sequence ends and `close()` returns.
    func portDidClose() {
        port = nil
        portClosed = true
        endSequence()
        let waiters = closeWaiters
        closeWaiters = []
        for waiter in waiters { waiter.succeed(()) }
    }

    /// The next connection for the iterator (any thread).
    /// `nonisolated(nonsending)`: it runs in the caller's isolation, like
    /// ``ConnectionCore/nextChunk(isolatedToReactor:)``.
    nonisolated(nonsending) func next(isolatedToReactor: Bool) async throws -> AsyncConnection? {
        let max = maxPending
        return try await state.nextElement(isolatedToReactor: isolatedToReactor) { state in
            state.take(maxPending: max)
        } deliver: { step in
            switch step {
            case .connection(let connection, let resume):
                if resume { reactor.perform { self.resumeAccepting() } }
                return connection
            case .end:
                return nil
            }
        }
    }
}

/// Builds an ``AsyncBridge`` per accepted connection and hands each made
/// connection to the listener. Threading: reactor thread only.
final class AsyncListenFactory: ServerFactory {
    let reactor: Reactor
    let listener: ListenerCore
    let options: AsyncConnection.Options

    init(reactor: Reactor, listener: ListenerCore, options: AsyncConnection.Options) {
        self.reactor = reactor
        self.listener = listener
        self.options = options
        super.init()
    }

    override func buildProtocol(_ address: any Address) -> Protocol? {
        AsyncBridge(reactor: reactor, options: options, factory: self) { [listener] connection in
            listener.deliver(connection)
        }
    }

    /// The port's handle is closed (its `doStop`).
    override func stopFactory() {
        listener.portDidClose()
    }
}

extension Reactor {
    /// Listens on a port via `listen`, wrapped as an ``AsyncListener``.
    private nonisolated(nonsending) func listenAsync(
        maxPendingConnections: Int, options: AsyncConnection.Options,
        _ listen: @escaping @Sendable (Reactor, Factory) throws(CannotListenError) -> ListeningPort
    ) async throws -> AsyncListener {
        let waiter = OneShot<AsyncListener>()
        return try await waiter.wait(on: self, start: {
            self.perform {
                let core = ListenerCore(reactor: self, maxPending: maxPendingConnections)
                let factory = AsyncListenFactory(reactor: self, listener: core, options: options)
                do {
                    let port = try listen(self, factory)
                    core.port = port
                    // If the caller was cancelled meanwhile, the listener is
                    // dropped here and its deinit closes the port.
                    waiter.succeed(AsyncListener(core: core, address: port.getHost()))
                } catch {
                    waiter.fail(error)
                }
            }
        })
    }

    /// Listens for TCP connections and returns them as an ``AsyncListener``.
    ///
    /// - Parameters:
    ///   - port: 0 lets the system choose (read it from ``AsyncListener/port``).
    ///   - interface: as in ``listenTCP(_:_:backlog:interface:)``: `""` (every
    ///     IPv4 interface), `"::"`, `"localhost"`, or an IP literal.
    ///   - backlog: the kernel's listen queue length.
    ///   - maxPendingConnections: accepted connections that may wait for the
    ///     consumer before accepting pauses (default 16).
    ///   - options: each connection's inbound buffer water marks.
    /// - Throws: ``CannotListenError`` (address in use, bad interface, ...).
    ///
    /// Threading: any task or thread (see ``AsyncConnection``).
    public nonisolated(nonsending) func listen(port: Int = 0, interface: String = "", backlog: Int = 50,
                       maxPendingConnections: Int = 16,
                       options: AsyncConnection.Options = .init()) async throws -> AsyncListener {
        try await listenAsync(maxPendingConnections: maxPendingConnections, options: options) { reactor, factory throws(CannotListenError) in
            try reactor.listenTCP(port, factory, backlog: backlog, interface: interface)
        }
    }

    /// Listens on a Unix-domain stream socket at `path` and returns the
    /// connections as an ``AsyncListener``.
    /// - Parameters: as ``listenUNIX(_:_:backlog:mode:wantPID:)``, plus
    ///   `maxPendingConnections` and `options` as in
    ///   ``listen(port:interface:backlog:maxPendingConnections:options:)``.
    /// - Throws: ``CannotListenError``.
    ///
    /// Threading: any task or thread (see ``AsyncConnection``).
    public nonisolated(nonsending) func listen(unixPath path: String, backlog: Int = 50, mode: Int = 0o666,
                       maxPendingConnections: Int = 16,
                       options: AsyncConnection.Options = .init()) async throws -> AsyncListener {
        try await listenAsync(maxPendingConnections: maxPendingConnections, options: options) { reactor, factory throws(CannotListenError) in
            try reactor.listenUNIX(path, factory, backlog: backlog, mode: mode, wantPID: false)
        }
    }
}

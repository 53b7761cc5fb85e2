/// Adopt on a ``Protocol`` to hear that the reactor began a graceful
/// shutdown (``Reactor/stopGracefully(gracePeriod:completion:)``): finish the
/// work in hand and close, e.g. answer the current request and close an idle
/// keep-alive connection, instead of waiting for the grace period to end.
///
/// Threading: called on the reactor thread.
public protocol GracefulShutdownAware: AnyObject {
    /// The reactor stopped accepting connections and will abort this one if
    /// it is still open when the grace period ends. Called once.
    func gracefulShutdownStarted()
}

extension Reactor {
    /// Shuts down gently: stops listening on every TCP, Unix and UDP port at
    /// once, tells each open connection's protocol that adopts
    /// ``GracefulShutdownAware``, lets connections end by themselves for up
    /// to `gracePeriod` seconds, then stops the reactor (``stop()``), which
    /// closes whatever is still open at once (`connectionLost` with
    /// ``ConnectionLost``; unsent data is dropped, as with `abortConnection`).
    ///
    /// Outgoing connections count as open connections; connection attempts
    /// still in progress are left to ``stop()``. Calling it again while a
    /// graceful shutdown is under way does nothing.
    ///
    /// - Parameters:
    ///   - gracePeriod: seconds to wait for connections to close by themselves.
    ///   - completion: called on the reactor thread just before the reactor
    ///     stops, with the number of connections still open (to be closed by ``stop()``).
    ///
    /// Threading: reactor thread only (from another thread, through
    /// ``callFromThread(_:)``). Does nothing if the reactor is not running.
    public func stopGracefully(gracePeriod: Double, completion: ((Int) -> Void)? = nil) {
        assertOnReactorThread()
        guard running, !stoppingGracefully else { return }
        stoppingGracefully = true
        for owner in openHandleOwners() {
            switch owner {
            case let port as ListeningPort: port.stopListening()
            case let port as UDPPort: port.stopListening()
            case let connection as StreamConnection:
                (connection.proto as? GracefulShutdownAware)?.gracefulShutdownStarted()
            default: break
            }
        }
        let deadline = seconds() + max(0, gracePeriod)
        // Polled, not counted per connection: this costs nothing until a
        // graceful shutdown begins, and 10 ms is well under any grace period.
        func check() {
            guard running else { stoppingGracefully = false; return }
            let open = openConnectionCount
            if open == 0 || seconds() >= deadline {
                completion?(open)
                stoppingGracefully = false
                try? stop()
            } else {
                callLater(0.01, check)
            }
        }
        callSoon(check)
    }

    /// Connections (TCP or Unix, either direction) whose handles are not closing.
    var openConnectionCount: Int {
        openHandleOwners().lazy.filter { $0 is StreamConnection }.count
    }
}

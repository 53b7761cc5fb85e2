/// A value that belongs to a reactor's thread, wrapped so that a reference to
/// it can travel through other threads and be used back on the reactor
/// thread: the companion of ``Reactor/callFromThread(_:)``.
///
/// Swift's concurrency checking rightly refuses to let a `@Sendable` closure
/// capture a transport or a protocol, which are not thread-safe. Wrap the
/// object on the reactor thread, hand the wrapper to the other thread, and
/// touch the object only inside `callFromThread`:
///
/// ```swift
/// let connection = ReactorBound(transport, reactor: reactor)   // on the reactor thread
/// worker.async {
///     let reply = expensiveComputation()
///     reactor.callFromThread { connection.value.write(reply) } // back on the reactor thread
/// }
/// ```
///
/// Threading: the wrapper itself is `Sendable`; ``value`` may be read and
/// written only on the reactor's thread (any thread while the reactor is
/// not running, like the rest of the reactor's API). Reading it elsewhere
/// traps, in every build: that would be a data race.
public final class ReactorBound<Value>: @unchecked Sendable {
    // @unchecked Sendable: `storage` is only touched after the precondition
    // that we are on the reactor's thread.
    /// The reactor whose thread owns the value.
    public let reactor: Reactor
    private var storage: Value

    /// Wraps `value`, which belongs to `reactor`'s thread. Call on that thread.
    public init(_ value: Value, reactor: Reactor) {
        reactor.assertOnReactorThread()
        self.reactor = reactor
        self.storage = value
    }

    /// The wrapped value. Reactor thread only (traps elsewhere).
    public var value: Value {
        get {
            precondition(reactor.isOnReactorThread, "Swisted: ReactorBound.value read off the reactor thread; use reactor.callFromThread { }")
            return storage
        }
        set {
            precondition(reactor.isOnReactorThread, "Swisted: ReactorBound.value written off the reactor thread; use reactor.callFromThread { }")
            storage = newValue
        }
    }
}

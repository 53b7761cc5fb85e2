// Idle timeouts: Twisted's TimeoutMixin, TimeoutProtocol and TimeoutFactory
// (twisted.protocols.policies).
//
// Swift has no mixins, so the mixin's state and logic live in a small object,
// `IdleTimeout`, that any protocol can own whatever class it derives from (a
// `LineReceiver` subclass cannot also derive from a timeout base class).
// `TimingOutProtocol` is that object already wired into a `Protocol`
// subclass, with the mixin's method names, for protocols that derive from
// `Protocol` directly. `TimeoutFactory` puts a timeout on any protocol from
// the outside, without changing it.

/// One idle timer with Twisted's `TimeoutMixin` semantics, as an object a
/// protocol owns: ``setTimeout(_:)`` arms, moves or (with nil) disables it
/// and returns the previous period; ``resetTimeout()`` restarts the count on
/// activity; when a full period passes without a reset, the `onTimeout`
/// closure runs once (call ``setTimeout(_:)`` again to re-arm).
///
/// ```swift
/// final class Chat: LineReceiver {
///     var clock: (any ReactorTime)?   // set by the factory: the reactor, or a test Clock
///     var idle: IdleTimeout?
///     override func connectionMade() throws {
///         guard let clock else { return }
///         idle = IdleTimeout(clock: clock) { [weak self] in self?.transport?.loseConnection() }
///         idle!.setTimeout(60)
///     }
///     override func lineReceived(_ line: Span<UInt8>) throws {
///         idle?.resetTimeout()
///         // ...
///     }
///     override func connectionLost(_ reason: any Error) {
///         idle?.cancelTimeout()
///     }
/// }
/// ```
///
/// Why an object and not a base class: Swift has single inheritance, so a
/// timeout base class would rule out every other base (line receivers,
/// proxies). The object works with any of them; ``TimingOutProtocol`` wraps
/// it for protocols that derive from ``Protocol`` directly, and
/// ``TimeoutFactory`` adds a timeout to a protocol without touching it.
///
/// Lifetime: the pending call holds the object weakly, and dropping the
/// object cancels it, so a timer never keeps a protocol alive and never fires
/// for a protocol that is gone. Capture the protocol weakly in `onTimeout`
/// (the protocol owns this object). Cancel it in `connectionLost`, or it may
/// fire after the connection ended if the protocol is still around.
///
/// Periods are in seconds: negative counts as 0; NaN and infinite ones leave
/// the timer disarmed (never firing) but are still reported as the period;
/// finite ones above 1e9 seconds (31 years) are treated as 1e9.
///
/// Threading: the clock's thread (for a ``Reactor``, reactor thread only),
/// where `onTimeout` runs too. Errors: none; nothing here throws.
public final class IdleTimeout {
    /// What schedules the timer: the ``Reactor``, or a test `Clock`.
    public let clock: any ReactorTime

    /// The current period, in seconds; nil when disabled (Twisted's `timeOut`).
    public private(set) var period: Double?

    private var call: DelayedCall?
    private let onTimeout: () -> Void

    /// A timer on `clock` that runs `onTimeout` when it expires; disarmed
    /// until ``setTimeout(_:)`` (or a non-nil `period` here) arms it.
    public init(clock: any ReactorTime, period: Double? = nil, onTimeout: @escaping () -> Void) {
        self.clock = clock
        self.onTimeout = onTimeout
        if let period { setTimeout(period) }
    }

    deinit {
        if let call, call.active { try? call.cancel() }
    }

    /// True while the timer is counting down (armed and not yet expired or cancelled).
    public var isPending: Bool { call?.active ?? false }

    /// When the timer will expire on the clock's time line, if it is pending.
    public var deadline: Double? { isPending ? call?.getTime() : nil }

    /// Sets the period and restarts the count from now: arms the timer if it
    /// was not pending, moves it if it was; nil disables it. Returns the
    /// previous period (Twisted's `setTimeout`).
    @discardableResult
    public func setTimeout(_ period: Double?) -> Double? {
        let previous = self.period
        self.period = period
        guard let seconds = Self.delay(for: period) else {
            disarm()
            return previous
        }
        if let call, call.active {
            try? call.reset(seconds)
        } else {
            let call = clock.callLater(seconds) { [weak self] in self?.expire() }
            self.call = call
        }
        return previous
    }

    /// Restarts the count from now, for the current period: call it on
    /// activity. Does nothing if the timer is not pending (disabled, or
    /// already expired), as in Twisted.
    public func resetTimeout() {
        guard let call, call.active, let seconds = Self.delay(for: period) else { return }
        try? call.reset(seconds)
    }

    /// Disables the timer and forgets the period (Twisted's `cancelTimeout`);
    /// does nothing if it was not pending.
    public func cancelTimeout() {
        period = nil
        disarm()
    }

    private func disarm() {
        if let call, call.active { try? call.cancel() }
        call = nil
    }

    private func expire() {
        call = nil
        onTimeout()
    }

    /// The delay to schedule for `period`: nil for nil, NaN and infinity;
    /// negative counts as 0; huge ones are capped at ``longestDelay``.
    static func delay(for period: Double?) -> Double? {
        guard let period, period.isFinite else { return nil }
        return min(max(0, period), longestDelay)
    }

    /// About 31 years. The reactor converts a delay to whole milliseconds in
    /// a UInt64, which traps beyond ~5.8e8 years; a cap far below keeps any
    /// finite period from crashing the process.
    static let longestDelay = 1e9
}

/// A ``Protocol`` with one idle timer: Twisted's `TimeoutMixin` as a base
/// class. Call ``setTimeout(_:)`` (usually in `connectionMade`), call
/// ``resetTimeout()`` on activity (usually in `dataReceived`); after a full
/// period without activity ``timeoutConnection()`` runs, by default closing
/// the connection with `loseConnection()` (Twisted's default: what was
/// written still goes out; override to abort, or to say goodbye first).
///
/// ```swift
/// final class Session: TimingOutProtocol {
///     override func connectionMade() throws { setTimeout(30) }
///     override func dataReceived(_ data: Span<UInt8>) throws {
///         resetTimeout()
///         transport!.write(data)
///     }
/// }
/// ```
///
/// Unlike the Python mixin, the timer is cancelled by this class's
/// `connectionLost` (subclasses overriding it should call `super`; even if
/// they do not, ``timeoutConnection()`` is never called once the protocol is
/// no longer connected). Protocols that derive from another class own an
/// ``IdleTimeout`` instead; see it for why there are two shapes.
///
/// `loseConnection()` waits for what was written to be sent, which a peer
/// that stops reading can delay forever; set ``abortTimeout`` to abort the
/// connection if it is still there that many seconds after the timeout
/// (Twisted's HTTP server does this with its `abortTimeout`).
///
/// The timer runs on ``clock`` if set, else on the reactor of the
/// connection (any TCP or Unix connection of Swisted, also through
/// ``ProtocolWrapper``s), read when the timer is first armed. With neither
/// (an in-memory transport and no clock), ``setTimeout(_:)`` reports the
/// mistake on standard error and leaves the timer disarmed.
///
/// Threading: reactor thread only.
open class TimingOutProtocol: Protocol {
    /// The clock for the timer; nil uses the connection's reactor. Set a test `Clock` here before ``setTimeout(_:)``.
    public var clock: (any ReactorTime)?

    /// Seconds to wait, after the default ``timeoutConnection()`` called
    /// `loseConnection()`, before aborting a connection that is still not
    /// closed (its peer does not read what is left to send); nil (the
    /// default) never aborts.
    public var abortTimeout: Double?

    private var idle: IdleTimeout?
    private var abortCall: DelayedCall?

    /// A protocol with no timer yet (``setTimeout(_:)`` arms one).
    public required init() {}

    /// The current period in seconds, nil when disabled (Twisted's `timeOut`).
    public var timeOut: Double? { idle?.period }

    /// True while the timer is counting down.
    public var timeoutPending: Bool { idle?.isPending ?? false }

    /// Sets the period and restarts the count (nil disables the timer);
    /// returns the previous period. See ``IdleTimeout/setTimeout(_:)``.
    @discardableResult
    public func setTimeout(_ period: Double?) -> Double? {
        if let idle { return idle.setTimeout(period) }
        guard period != nil else { return nil }
        guard let clock = clock ?? reactorTime(of: transport) else {
            reportToStandardError("Swisted: \(type(of: self)).setTimeout: no clock set and no reactor-driven transport; the timeout is not armed")
            return nil
        }
        let idle = IdleTimeout(clock: clock) { [weak self] in self?.timerExpired() }
        self.idle = idle
        return idle.setTimeout(period)
    }

    /// Restarts the count for the current period (call it on activity);
    /// does nothing once the timer expired or while it is disabled.
    public func resetTimeout() {
        idle?.resetTimeout()
    }

    /// Disables the timer and forgets the period.
    public func cancelTimeout() {
        idle?.cancelTimeout()
    }

    /// The timer expired: by default `transport.loseConnection()`, then an
    /// abort after ``abortTimeout`` if set. Override for anything else
    /// (`abortConnection()`, a goodbye message, a new ``setTimeout(_:)`` to
    /// keep waiting).
    open func timeoutConnection() {
        transport?.loseConnection()
        if let delay = IdleTimeout.delay(for: abortTimeout), let clock = idle?.clock, connected {
            if let abortCall, abortCall.active { try? abortCall.cancel() }
            abortCall = clock.callLater(delay) { [weak self] in
                guard let self, self.connected else { return }
                self.transport?.abortConnection()
            }
        }
    }

    /// Cancels the timer (and a pending abort). Subclasses overriding it should call `super`.
    open override func connectionLost(_ reason: any Error) {
        idle?.cancelTimeout()
        if let abortCall, abortCall.active { try? abortCall.cancel() }
        abortCall = nil
    }

    private func timerExpired() {
        guard connected else { return }
        timeoutConnection()
    }
}

/// The wrapper a ``TimeoutFactory`` puts around each protocol: Twisted's
/// `TimeoutProtocol`. It arms the factory's period when the connection is
/// made, restarts the count on every `dataReceived` and on every write the
/// wrapped protocol makes, and when a full period passes without either,
/// calls ``timeoutConnection()`` (by default `loseConnection()`, Twisted's
/// `timeoutFunc`). The timer is cancelled when the connection is lost.
///
/// The wrapped protocol can change its own timeout through its transport:
/// `(transport as? TimeoutProtocol)?.setTimeout(nil)`.
///
/// Threading: reactor thread only.
open class TimeoutProtocol: ProtocolWrapper {
    /// The clock for the timer; nil uses the connection's reactor. Read when the connection is made.
    public var clock: (any ReactorTime)?

    /// The period armed when the connection is made (the factory sets it); nil arms none.
    public var initialTimeout: Double?

    /// Seconds to wait, after the default ``timeoutConnection()`` called
    /// `loseConnection()`, before aborting a connection that is still not
    /// closed (its peer does not read); nil never aborts. The factory sets it.
    public var abortTimeout: Double?

    private var idle: IdleTimeout?
    private var abortCall: DelayedCall?

    /// A wrapper for nothing yet; ``TimeoutFactory`` sets ``ProtocolWrapper/wrappedProtocol``, the period and the clock.
    public required init() { super.init() }

    /// The current period in seconds; nil when disabled.
    public var timeoutPeriod: Double? { idle?.period }

    /// True while the timer is counting down.
    public var timeoutPending: Bool { idle?.isPending ?? false }

    /// Arms ``initialTimeout``, then makes the wrapped protocol's connection.
    /// - Throws: whatever the wrapped protocol's `connectionMade` throws.
    open override func makeConnection(_ transport: any Transport) throws {
        if let clock = clock ?? reactorTime(of: transport) {
            idle = IdleTimeout(clock: clock) { [weak self] in self?.timerExpired() }
            idle!.setTimeout(initialTimeout)
        } else if initialTimeout != nil {
            reportToStandardError("Swisted: \(type(of: self)): no clock set and no reactor-driven transport; the timeout is not armed")
        }
        try super.makeConnection(transport)
    }

    /// Sets the period and restarts the count (nil disables the timer);
    /// returns the previous period. Does nothing before the connection is made.
    @discardableResult
    public func setTimeout(_ period: Double?) -> Double? {
        idle?.setTimeout(period)
    }

    /// Restarts the count for the current period.
    public func resetTimeout() {
        idle?.resetTimeout()
    }

    /// Disables the timer and forgets the period.
    public func cancelTimeout() {
        idle?.cancelTimeout()
    }

    /// The timer expired: by default closes the connection with
    /// ``ProtocolWrapper/loseConnection()``, then aborts it after
    /// ``abortTimeout`` if set and it is still open. Override for anything else.
    open func timeoutConnection() {
        loseConnection()
        if let delay = IdleTimeout.delay(for: abortTimeout), let clock = idle?.clock, connected {
            if let abortCall, abortCall.active { try? abortCall.cancel() }
            abortCall = clock.callLater(delay) { [weak self] in
                guard let self, self.connected else { return }
                self.abortConnection()
            }
        }
    }

    open override func dataReceived(_ data: Span<UInt8>) throws {
        resetTimeout()
        try super.dataReceived(data)
    }

    open override func write(_ data: UnsafeRawBufferPointer) {
        resetTimeout()
        super.write(data)
    }

    open override func writeSequence(_ chunks: [[UInt8]]) {
        resetTimeout()
        super.writeSequence(chunks)
    }

    open override func connectionLost(_ reason: any Error) {
        idle?.cancelTimeout()
        if let abortCall, abortCall.active { try? abortCall.cancel() }
        abortCall = nil
        super.connectionLost(reason)
    }

    private func timerExpired() {
        guard connected else { return }
        timeoutConnection()
    }
}

/// Puts an idle timeout on every connection of another factory, without
/// changing its protocol: Twisted's `TimeoutFactory`. Each protocol is
/// wrapped in a ``TimeoutProtocol`` (or the subclass in ``timeoutProtocolType``)
/// that closes the connection after ``timeoutPeriod`` seconds with nothing
/// received and nothing written.
///
/// ```swift
/// try reactor.listenTCP(8000, TimeoutFactory(wrapping: Factory.forProtocol(Echo.self), timeoutPeriod: 60))
/// ```
///
/// Threading: reactor thread only.
open class TimeoutFactory: WrappingFactory {
    /// The idle period given to each new connection, in seconds (default 30 minutes, as in Twisted); nil arms none.
    public var timeoutPeriod: Double?

    /// The clock for the timers; nil uses each connection's reactor. Set a test `Clock` here.
    public var clock: (any ReactorTime)?

    /// Seconds after a timeout's `loseConnection()` before a connection that
    /// is still open is aborted (a peer that does not read could otherwise
    /// hold it forever); nil (the default, as in Twisted) never aborts.
    public var abortTimeout: Double?

    /// The wrapper class (override ``TimeoutProtocol/timeoutConnection()`` in a subclass to act differently).
    public var timeoutProtocolType: TimeoutProtocol.Type = TimeoutProtocol.self

    /// Wraps the protocols of `wrappedFactory` with a `timeoutPeriod`-second idle timeout.
    public init(wrapping wrappedFactory: Factory, timeoutPeriod: Double? = 30 * 60, abortTimeout: Double? = nil,
                clock: (any ReactorTime)? = nil) {
        self.timeoutPeriod = timeoutPeriod
        self.abortTimeout = abortTimeout
        self.clock = clock
        super.init(wrapping: wrappedFactory)
    }

    /// Wraps `proto` in a ``timeoutProtocolType`` with this factory's periods and clock.
    open override func wrap(_ proto: Protocol) -> ProtocolWrapper {
        let wrapper = timeoutProtocolType.init()
        wrapper.wrappedProtocol = proto
        wrapper.factory = self
        wrapper.clock = clock
        wrapper.initialTimeout = timeoutPeriod
        wrapper.abortTimeout = abortTimeout
        return wrapper
    }
}

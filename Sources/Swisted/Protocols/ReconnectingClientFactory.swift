import Glibc

/// A client factory that reconnects after a failed or lost connection, with
/// exponential back-off and jitter: Twisted's `ReconnectingClientFactory`,
/// with the same defaults and algorithm.
///
/// After each failure the delay grows by ``factor`` (capped at
/// ``maxDelay``), then is drawn from a normal distribution around itself
/// with standard deviation `delay × jitter`; ``maxRetries`` (nil: no limit)
/// ends the attempts. Call ``resetDelay()`` once a connection works (in
/// `buildProtocol` or the protocol's `connectionMade`) so the next outage
/// starts from ``initialDelay`` again; ``stopTrying()`` ends it all.
///
/// Subclasses overriding `clientConnectionFailed`/`clientConnectionLost`
/// must call `super` to keep reconnecting. Works with TCP and Unix connectors.
///
/// Threading: reactor thread only.
open class ReconnectingClientFactory: ClientFactory {
    /// The longest delay between attempts, in seconds (default 3600).
    public var maxDelay = 3600.0
    /// The first delay, in seconds (default 1.0).
    public var initialDelay = 1.0
    /// How much the delay grows per attempt (default e).
    public var factor = 2.7182818284590451
    /// Relative standard deviation of the delay (default 0.11962656472; 0 disables jitter).
    public var jitter = 0.11962656472
    /// Give up after this many retries (nil: never).
    public var maxRetries: Int?
    /// The current delay.
    public private(set) var delay = 1.0
    /// Retries since the last ``resetDelay()``.
    public private(set) var retries = 0
    /// False after ``stopTrying()``.
    public private(set) var continueTrying = true
    /// The last connector seen (the one ``retry(_:)`` reconnects).
    ///
    /// Weak: the connector holds this factory, so a strong reference here
    /// was a cycle that kept both (and, through the connector, the reactor)
    /// alive forever once the program let go of them (LeakSanitizer). The
    /// connector is kept alive while it matters by whoever drives it: the
    /// reactor during an attempt, the transport while connected, the
    /// scheduled retry while one is pending.
    public private(set) weak var connector: Connector?
    /// What schedules the retries; nil uses the connector's reactor. Set a test `Clock` here.
    public var clock: (any ReactorTime)?
    /// Random numbers for the jitter; replace with a seeded generator for repeatable delays.
    public var randomNumbers: any RandomNumberGenerator = SystemRandomNumberGenerator()
    private var pendingRetry: DelayedCall?

    public override init(protocolType: Protocol.Type? = nil) {
        super.init(protocolType: protocolType)
    }

    open override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        if continueTrying {
            self.connector = connector
            retry()
        }
    }

    open override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        if continueTrying {
            self.connector = connector
            retry()
        }
    }

    /// Schedules the next attempt of `connector` (default: the last one seen)
    /// after the next back-off delay, unless ``maxRetries`` is reached.
    open func retry(_ connector: Connector? = nil) {
        guard continueTrying, let connector = connector ?? self.connector else { return }
        retries += 1
        if let maxRetries, retries > maxRetries {
            connector.reactor.log(.warning, "Swisted: abandoning \(connector.getDestination()) after \(retries - 1) retries")
            return
        }
        delay = min(delay * factor, maxDelay)
        if jitter > 0 {
            delay = max(0, normal(mean: delay, deviation: delay * jitter))
        }
        // A newer failure supersedes a retry still waiting (one retry at a time).
        if let pendingRetry, pendingRetry.active { try? pendingRetry.cancel() }
        pendingRetry = (clock ?? connector.reactor).callLater(delay) { [weak self, connector] in
            self?.pendingRetry = nil
            try? connector.connect()
        }
    }

    /// Stops reconnecting: cancels a scheduled retry and stops an attempt in progress.
    open func stopTrying() {
        if let pendingRetry, pendingRetry.active { try? pendingRetry.cancel() }
        pendingRetry = nil
        continueTrying = false
        if let connector, connector.state == .connecting { try? connector.stopConnecting() }
    }

    /// Back to the first delay and no retries counted; call it after a good connection.
    open func resetDelay() {
        delay = initialDelay
        retries = 0
        pendingRetry = nil
        continueTrying = true
    }

    /// A normal variate (Box-Muller), from ``randomNumbers``.
    private func normal(mean: Double, deviation: Double) -> Double {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &randomNumbers)
        let u2 = Double.random(in: 0..<1, using: &randomNumbers)
        return mean + deviation * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

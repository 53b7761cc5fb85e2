// The reactor's facets as protocols (Twisted's IReactorTime, ...), so code
// can take "something that schedules calls" and tests can pass a `Clock`
// (SwistedTesting) where the program passes its `Reactor`. The concrete
// Reactor API is unchanged; its conformances live here.

/// Time and scheduled calls: Twisted's `IReactorTime`. Adopted by
/// ``Reactor`` and by SwistedTesting's `Clock`, so code written against
/// `any ReactorTime` (a timeout, a LoopingCall, a reconnecting factory's
/// back-off) can be tested with no real time passing.
///
/// Threading: the adopter's; for ``Reactor``, reactor thread only.
public protocol ReactorTime: AnyObject {
    /// The current time on this scheduler's clock, in seconds.
    func seconds() -> Double

    /// Schedules `function` to run `seconds` from now (negative counts as 0);
    /// same-time calls run in scheduling order.
    @discardableResult
    func callLater(_ seconds: Double, _ function: @escaping () throws -> Void) -> DelayedCall

    /// The calls scheduled and not yet run or cancelled, earliest first.
    func getDelayedCalls() -> [DelayedCall]
}

extension Reactor: ReactorTime {
    /// The delayed calls still pending, earliest first (Twisted's `getDelayedCalls`).
    /// Reactor thread only.
    public func getDelayedCalls() -> [DelayedCall] {
        assertOnReactorThread()
        return timers.pendingCalls
    }
}

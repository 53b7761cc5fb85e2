import Swisted

/// A reactor clock that only moves when told to: Twisted's
/// `twisted.internet.task.Clock`. Pass it wherever code takes
/// `any ReactorTime` (a `Reactor` in the program) and drive time by hand.
///
/// ```swift
/// let clock = Clock()
/// var fired = false
/// clock.callLater(5) { fired = true }
/// try clock.advance(4.9)    // not yet
/// try clock.advance(0.1)    // runs it
/// ```
///
/// The calls are the same ``DelayedCall``s the reactor hands out, in the
/// same timer queue: `cancel`, `reset`, `delay`, `active`, `getTime` and the
/// `AlreadyCalled`/`AlreadyCancelled` errors behave exactly as on a reactor,
/// and same-time calls run in scheduling order.
///
/// Threading: not thread-safe; use it from one thread.
public final class Clock: ReactorTime {
    private final class Now { var value: Double; init(_ value: Double) { self.value = value } }
    private let now: Now
    private let timers: TimerQueue

    /// A clock reading `start` seconds (0 by default), with nothing scheduled.
    public init(start: Double = 0) {
        let now = Now(start)
        self.now = now
        timers = TimerQueue(now: { now.value })
    }

    /// The clock's current time.
    public func seconds() -> Double { now.value }

    /// Schedules `function` to run once the clock has been advanced `seconds`
    /// (negative counts as 0). Returns the call, to cancel or move.
    @discardableResult
    public func callLater(_ seconds: Double, _ function: @escaping () throws -> Void) -> DelayedCall {
        timers.schedule(at: now.value + max(0, seconds), function)
    }

    /// The calls still pending, earliest first.
    public func getDelayedCalls() -> [DelayedCall] { timers.pendingCalls }

    /// Moves the clock `amount` seconds forward (0 runs what is due now)
    /// and runs every call due by then, in time order; a call scheduled
    /// by a running call also runs if it is due (as in Twisted).
    /// - Throws: the first error a call threw, after every due call has run.
    public func advance(_ amount: Double) throws {
        precondition(amount >= 0, "Clock.advance: time cannot go backwards (\(amount))")
        now.value += amount
        var firstError: (any Error)?
        while let earliest = timers.earliestTime, earliest <= now.value {
            timers.runDue(at: now.value) { error in
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    /// Advances by each amount in turn (Twisted's `pump`): `pump([1, 1, 1])`
    /// is three `advance(1)`, each running what became due.
    /// - Throws: the first error a call threw; the remaining steps are not taken.
    public func pump(_ timings: [Double]) throws {
        for amount in timings { try advance(amount) }
    }
}

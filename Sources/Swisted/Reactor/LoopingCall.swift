/// Calls a function every `interval` seconds: Twisted's `task.LoopingCall`.
///
/// ```swift
/// let heartbeat = LoopingCall(reactor) { transport.write("ping\r\n") }
/// try heartbeat.start(5)            // now, then every 5 s
/// ...
/// heartbeat.stop()
/// ```
///
/// Calls stay on the interval grid that started at `start`: a call that
/// runs late does not shift later ones, and intervals missed during a stall
/// are skipped, not made up (``withCount(_:_:)`` tells how many elapsed).
/// An error thrown by the function stops the loop and reaches the
/// completion handler given to ``start(_:now:completion:)``; ``stop()``
/// completes it with success.
///
/// The clock is anything that schedules calls (``ReactorTime``): the
/// reactor in programs, SwistedTesting's `Clock` in tests.
///
/// Threading: the clock's (for a reactor, reactor thread only).
public final class LoopingCall {
    /// What schedules the calls.
    public let clock: any ReactorTime
    private let function: (Int) throws -> Void
    private let counts: Bool
    /// True between ``start(_:now:completion:)`` and ``stop()`` (or an error).
    public private(set) var running = false
    /// The interval given to the last ``start(_:now:completion:)``.
    public private(set) var interval: Double?
    private var startTime = 0.0
    private var runAtStart = true
    private var lastRunTime: Double?
    private var call: DelayedCall?
    private var completion: ((Result<Void, any Error>) -> Void)?

    /// A loop that calls `function` each interval.
    public init(_ clock: any ReactorTime, _ function: @escaping () throws -> Void) {
        self.clock = clock
        self.function = { _ in try function() }
        self.counts = false
    }

    private init(clock: any ReactorTime, counting function: @escaping (Int) throws -> Void) {
        self.clock = clock
        self.function = function
        self.counts = true
    }

    /// A loop whose function gets the number of intervals elapsed since its
    /// last call: 1 normally, more after a stall (Twisted's `withCount`).
    public static func withCount(_ clock: any ReactorTime, _ function: @escaping (Int) throws -> Void) -> LoopingCall {
        LoopingCall(clock: clock, counting: function)
    }

    /// Errors from ``start(_:now:completion:)``.
    public struct StartError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Starts calling every `interval` seconds; with `now`, the first call
    /// happens at once (inside this call), else after one interval. An
    /// interval of 0 calls again at each reactor iteration.
    /// - Parameter completion: runs once when the loop ends: `.success` after
    ///   ``stop()``, `.failure` with the error the function threw.
    /// - Throws: ``StartError`` if already running or `interval` is negative.
    public func start(_ interval: Double, now: Bool = true,
                      completion: ((Result<Void, any Error>) -> Void)? = nil) throws(StartError) {
        guard !running else { throw StartError(description: "LoopingCall is already running") }
        guard interval >= 0, interval.isFinite else {
            throw StartError(description: "LoopingCall interval must be 0 or more seconds, not \(interval)")
        }
        running = true
        self.interval = interval
        self.completion = completion
        startTime = clock.seconds()
        runAtStart = now
        lastRunTime = nil
        if now {
            fire()
        } else {
            schedule(from: startTime)
        }
    }

    /// Stops the loop: no further calls; the completion gets `.success`.
    /// Does nothing if it is not running.
    public func stop() {
        guard running else { return }
        running = false
        if let call {
            if call.active { try? call.cancel() }
            self.call = nil
            finish(.success(()))
        }
        // Called from inside the function: `fire` completes after it returns.
    }

    /// Restarts the interval grid from now (the next call one interval away).
    public func reset() {
        guard running, let call, call.active else { return }
        try? call.cancel()
        self.call = nil
        startTime = clock.seconds()
        lastRunTime = nil
        runAtStart = false
        schedule(from: startTime)
    }

    private func fire() {
        call = nil
        do {
            if counts {
                if let count = elapsedIntervals() { try function(count) }
            } else {
                try function(1)
            }
        } catch {
            running = false
            finish(.failure(error))
            return
        }
        if running {
            schedule(from: clock.seconds())
        } else {
            finish(.success(()))
        }
    }

    /// How many intervals passed since the last call (nil: none yet).
    private func elapsedIntervals() -> Int? {
        let now = clock.seconds()
        guard let interval, interval > 0 else {
            lastRunTime = now
            return 1
        }
        var last = lastRunTime ?? startTime
        if lastRunTime == nil, runAtStart { last -= interval }
        let count = intervalNumber(now) - intervalNumber(last)
        guard count > 0 else { return nil }
        lastRunTime = now
        return count
    }

    private func intervalNumber(_ time: Double) -> Int {
        Int(((time - startTime) / interval!).rounded(.down))
    }

    private func schedule(from when: Double) {
        let interval = self.interval!
        var delay = 0.0
        if interval > 0 {
            let runningFor = when - startTime
            let untilNext = interval - runningFor.truncatingRemainder(dividingBy: interval)
            // Too small to move `when` at all: it is time for the next interval.
            delay = when == when + untilNext ? interval : untilNext
        }
        call = clock.callLater(delay) { [weak self] in self?.fire() }
    }

    private func finish(_ result: Result<Void, any Error>) {
        let completion = self.completion
        self.completion = nil
        completion?(result)
    }
}

// Several Deferreds at once (Twisted's DeferredList and gatherResults), and
// a Deferred that fires after a delay (deferLater).
//
// Threading: like Deferred, these belong to the thread of the Deferreds
// they are given (in a program, the reactor's thread).

/// Counts the Deferreds of a list as they fire.
private final class Gathering<Value> {
    var results: [Result<Value, any Error>?]
    var remaining: Int
    init(count: Int) {
        results = Array(repeating: nil, count: count)
        remaining = count
    }
}

/// A canceller that cancels every Deferred of the list still around.
/// Weak: the list's Deferreds keep the combined one alive (through their
/// steps), not the other way round.
private func cancelAll<Value, Combined>(_ deferreds: [Deferred<Value>]) -> (Deferred<Combined>) -> Void {
    let weakDeferreds = deferreds.map { WeakDeferred($0) }
    return { _ in
        for entry in weakDeferreds { entry.deferred?.cancel() }
    }
}

private struct WeakDeferred<Value> {
    weak var deferred: Deferred<Value>?
    init(_ deferred: Deferred<Value>) { self.deferred = deferred }
}

/// Waits for every Deferred in `deferreds` and fires with the outcome of
/// each, in the order given: Twisted's `DeferredList`.
///
/// - Parameters:
///   - fireOnOneErrback: fail with ``FirstError`` (the error and its index)
///     as soon as one of them fails, instead of waiting for all.
///   - consumeErrors: count the errors of `deferreds` as handled here, so
///     they are not also logged as unhandled; otherwise they stay in their
///     Deferreds, to be handled there (Twisted's default).
/// - Returns: a Deferred of the results, one per Deferred given (an empty
///   list fires at once). Cancelling it cancels each Deferred given.
///
/// Named after Twisted's class; here it is a function returning the Deferred.
/// Threading: that of the Deferreds given (in a program, the reactor's thread).
public func DeferredList<Value>(_ deferreds: [Deferred<Value>], fireOnOneErrback: Bool = false,
                                consumeErrors: Bool = false,
                                fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<[Result<Value, any Error>]> {
    let combined = Deferred<[Result<Value, any Error>]>(canceller: cancelAll(deferreds), fileID: fileID, line: line)
    let gathering = Gathering<Value>(count: deferreds.count)
    if deferreds.isEmpty {
        combined.resolve(.success([]))
        return combined
    }
    for (index, deferred) in deferreds.enumerated() {
        deferred.observe(handles: consumeErrors) { [combined] result in
            gathering.results[index] = result
            gathering.remaining -= 1
            if fireOnOneErrback, case .failure(let error) = result {
                combined.resolve(.failure(FirstError(error: error, index: index)))
            } else if gathering.remaining == 0 {
                combined.resolve(.success(gathering.results.map { $0! }))
            }
        }
    }
    return combined
}

/// Fires with the first value among `deferreds` and its index: Twisted's
/// `DeferredList(fireOnOneCallback=True)`. The others are left running
/// (cancel them if they are no longer wanted).
///
/// - Parameters:
///   - fireOnOneErrback: fail with ``FirstError`` as soon as one fails.
///   - consumeErrors: count the errors of `deferreds` as handled here.
/// - Returns: a Deferred of `(value, index)`. If every one fails (or the
///   list is empty) it fails with ``AllFailedError``, listing the errors:
///   Twisted fires with the list instead, which this result type cannot
///   hold. Cancelling it cancels each Deferred given.
///
/// Threading: that of the Deferreds given.
public func DeferredList<Value>(firstOf deferreds: [Deferred<Value>], fireOnOneErrback: Bool = false,
                                consumeErrors: Bool = false,
                                fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<(value: Value, index: Int)> {
    let combined = Deferred<(value: Value, index: Int)>(canceller: cancelAll(deferreds), fileID: fileID, line: line)
    let gathering = Gathering<Value>(count: deferreds.count)
    if deferreds.isEmpty {
        combined.resolve(.failure(AllFailedError(errors: [])))
        return combined
    }
    for (index, deferred) in deferreds.enumerated() {
        deferred.observe(handles: consumeErrors) { [combined] result in
            gathering.results[index] = result
            gathering.remaining -= 1
            switch result {
            case .success(let value):
                combined.resolve(.success((value: value, index: index)))
            case .failure(let error):
                if fireOnOneErrback {
                    combined.resolve(.failure(FirstError(error: error, index: index)))
                } else if gathering.remaining == 0 {
                    let errors = gathering.results.compactMap { result -> (any Error)? in
                        if case .failure(let error)? = result { return error }
                        return nil
                    }
                    combined.resolve(.failure(AllFailedError(errors: errors)))
                }
            }
        }
    }
    return combined
}

/// Waits for every Deferred in `deferreds` and fires with their values in
/// order, or fails with ``FirstError`` as soon as one fails: Twisted's
/// `gatherResults`.
///
/// - Parameter consumeErrors: count the errors of `deferreds` as handled
///   here (they reach the caller through ``FirstError``); otherwise each is
///   also left in its own Deferred, as in Twisted.
/// - Returns: a Deferred of the values (an empty list fires at once with
///   `[]`). Cancelling it cancels each Deferred given.
///
/// Threading: that of the Deferreds given.
public func gatherResults<Value>(_ deferreds: [Deferred<Value>], consumeErrors: Bool = false,
                                 fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<[Value]> {
    let list = DeferredList(deferreds, fireOnOneErrback: true, consumeErrors: consumeErrors, fileID: fileID, line: line)
    return list.addCallback({ results in try results.map { try $0.get() } }, fileID: fileID, line: line)
}

/// A Deferred that fires `seconds` from now on `clock` with what
/// `function` returns (or fails with what it throws): Twisted's
/// `task.deferLater`. Cancelling it before then cancels the delayed call
/// (`function` does not run) and fails it with ``CancelledError``.
///
/// Pass the ``Reactor`` in a program, SwistedTesting's `Clock` in tests.
/// Threading: the clock's (for a reactor, its thread).
public func deferLater<Value>(_ clock: some ReactorTime, _ seconds: Double,
                              fileID: StaticString = #fileID, line: UInt = #line,
                              _ function: @escaping () throws -> Value) -> Deferred<Value> {
    var call: DelayedCall?
    let deferred = Deferred<Value>(canceller: { _ in
        if let pending = call, pending.active { try? pending.cancel() }
        call = nil
    }, fileID: fileID, line: line)
    // The delayed call keeps the Deferred alive until it runs or is cancelled.
    call = clock.callLater(seconds) {
        call = nil
        deferred.resolve(outcome: Deferred<Value>.outcome { try function() })
    }
    return deferred
}

/// A Deferred that fires with no value `seconds` from now on `clock`
/// (Twisted's `deferLater` without a callable). Threading: the clock's.
public func deferLater(_ clock: some ReactorTime, _ seconds: Double,
                       fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<Void> {
    deferLater(clock, seconds, fileID: fileID, line: line) { () }
}

extension Deferred {
    /// Gives the Deferred a time limit (Twisted's `addTimeout`): if its chain
    /// has not reached this point `seconds` from now on `clock`, it is
    /// cancelled (``cancel()``), and the ``CancelledError`` that follows
    /// becomes ``DeferredTimeoutError``. Reaching this point in time cancels
    /// the delayed call. Returns `self`.
    ///
    /// Threading: the clock's (for a reactor, its thread).
    @discardableResult
    public func addTimeout(_ seconds: Double, _ clock: some ReactorTime) -> Deferred<Value> {
        var timedOut = false
        // The delayed call keeps the Deferred alive until the time is up, as in
        // Twisted, so a Deferred nobody fires still fails (and is logged if
        // unhandled) rather than vanishing. Firing in time cancels the call,
        // which drops that reference.
        let call = clock.callLater(seconds) {
            timedOut = true
            self.cancel()
        }
        return addBoth { (result: Result<Value, any Error>) throws -> Value in
            if call.active { try? call.cancel() }
            if timedOut, case .failure(let error) = result, error is CancelledError {
                throw DeferredTimeoutError(seconds: seconds)
            }
            return try result.get()
        }
    }
}

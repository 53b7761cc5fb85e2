// The bridges between Deferreds and Swift concurrency.
//
// `await deferred.value` runs on the caller's own executor (it is
// `nonisolated(nonsending)`): the Deferred is never touched from another
// thread, so it needs no lock and no hop. From a task or actor running on
// the reactor's thread (the Deferred's thread) there is no hop at all.
// The only thing that crosses threads is the wake-up: a continuation
// resumed with a `Sendable` reason (fired, or the task was cancelled);
// the result itself is read back by the awaiting code on its own executor.

/// Why an awaiting `value` woke up.
private enum Wakeup: Sendable {
    case fired
    case taskCancelled
}

/// The continuation of one `await deferred.value`, resumed exactly once
/// by whichever comes first: the Deferred firing (on its thread) or the
/// task being cancelled (on the canceller's thread).
private final class AwaitSignal: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Wakeup, Never>)
        case early(Wakeup)
        case done
    }

    private let state = Locked(State.idle)

    func install(_ continuation: CheckedContinuation<Wakeup, Never>) {
        let early: Wakeup? = state.withLock { state in
            if case .early(let wakeup) = state {
                state = .done
                return wakeup
            }
            state = .waiting(continuation)
            return nil
        }
        if let early { continuation.resume(returning: early) }
    }

    func wake(_ wakeup: Wakeup) {
        let continuation: CheckedContinuation<Wakeup, Never>? = state.withLock { state in
            switch state {
            case .idle:
                state = .early(wakeup)
                return nil
            case .waiting(let continuation):
                state = .done
                return continuation
            case .early, .done:
                return nil
            }
        }
        continuation?.resume(returning: wakeup)
    }
}

/// Where the step added by `value` leaves the result for the awaiting code.
/// Written on the Deferred's thread, read after the continuation resumed
/// (which orders the two), by the same isolation domain.
private final class AwaitedResult<Value> {
    var result: Result<Value, any Error>?
}

extension Deferred {
    /// The Deferred's result at this point of its chain, awaited: the
    /// value, or the error thrown.
    ///
    /// Adds a step that watches the result without changing it (steps
    /// added later still see it) and counts an error as handled, so an
    /// awaited error is not also logged as unhandled.
    ///
    /// Cancelling the awaiting task cancels the Deferred (``cancel()``);
    /// `value` then returns or throws whatever the Deferred fired with
    /// (normally ``CancelledError``; a canceller may fire it with a value).
    ///
    /// Threading: runs on the caller's executor (`nonisolated(nonsending)`),
    /// so await it where the Deferred lives: on the reactor's thread (an
    /// actor or task whose executor is the reactor), or in the task or
    /// actor that owns a Deferred that is not attached to a reactor. Swift's
    /// region checking refuses to hand the non-`Sendable` Deferred to
    /// another isolation domain.
    ///
    /// - Throws: the error the chain holds at this point, or
    ///   ``CancelledError`` if the task was cancelled and the Deferred did
    ///   not fire when cancelled.
    nonisolated(nonsending) public var value: Value {
        get async throws {
            if let result = currentResult {
                observe(handles: true) { _ in }
                return try result.get()
            }
            let signal = AwaitSignal()
            let awaited = AwaitedResult<Value>()
            observe(handles: true) { result in
                awaited.result = result
                signal.wake(.fired)
            }
            let wakeup = await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    signal.install(continuation)
                }
            } onCancel: {
                signal.wake(.taskCancelled)
            }
            if wakeup == .taskCancelled, awaited.result == nil {
                // Back in the Deferred's domain: cancel it here, where it may be touched.
                cancel()
            }
            guard let result = awaited.result else { throw CancelledError() }
            return try result.get()
        }
    }
}

extension Deferred where Value: Sendable {
    /// A Deferred fired with what an async closure returns or throws:
    /// Twisted's `Deferred.fromCoroutine` / `ensureDeferred`.
    ///
    /// `body` runs in a new `Task` whose executor preference is the reactor
    /// (`Task(executorPreference: reactor)`): like a Twisted coroutine, it
    /// runs on the reactor's thread between I/O callbacks, hops away only
    /// to await other actors, and comes back. So it needs no thread of
    /// Swift's global pool, and its outcome fires the Deferred right there,
    /// on the reactor's thread (through ``Reactor/callFromThread(_:)`` in
    /// the unexpected case that it finishes elsewhere). Keep CPU-heavy work
    /// out of `body` (it would hold up the reactor), as in Twisted.
    /// Cancelling the Deferred cancels the task, and the Deferred fails with
    /// ``CancelledError`` at once; what the task returns afterwards is dropped.
    ///
    /// ```swift
    /// let d = Deferred(reactor) { try await fetchFromDatabase(id) }
    /// d.addCallback { row in transport.write(row.bytes) }
    /// ```
    ///
    /// Threading: create it on the reactor's thread (or before the reactor
    /// runs). The task starts when the reactor runs (its jobs wait until
    /// then), and the Deferred fires on the reactor's thread.
    public convenience init(_ reactor: Reactor, fileID: StaticString = #fileID, line: UInt = #line,
                            _ body: sending @escaping () async throws -> Value) {
        self.init(fileID: fileID, line: line)
        let bound = ReactorBound(self, reactor: reactor)
        let task = Task(executorPreference: reactor) {
            let outcome: Result<Value, any Error>
            do {
                outcome = .success(try await body())
            } catch {
                outcome = .failure(error)
            }
            if reactor.isRunningOnCurrentThread {
                bound.value.resolve(outcome)
            } else {
                reactor.callFromThread { bound.value.resolve(outcome) }
            }
        }
        setCanceller { _ in task.cancel() }
    }
}

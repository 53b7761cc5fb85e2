import Glibc

/// State shared between threads, behind a pthread mutex.
///
/// A pthread mutex rather than `Synchronization.Mutex` for the reason given
/// in `CrossThreadQueue`: ThreadSanitizer intercepts pthread locks but not
/// the futex inside `Mutex`, and would report every critical section as a race.
///
/// Threading: any thread. `body` runs with the lock held: it must not call
/// out (no continuation resumes, no reactor calls) and must not re-enter.
final class Locked<State>: @unchecked Sendable {
    // @unchecked Sendable: `state` is only touched with `lock` held.
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State

    init(_ state: State) {
        self.state = state
        lock = .allocate(capacity: 1)
        let rc = pthread_mutex_init(lock, nil)
        precondition(rc == 0, "Swisted: pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    @inline(__always)
    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(&state)
    }
}

/// An error that is carried from the reactor thread to a task. Connection
/// reasons are `any Error` (a protocol callback may throw anything); the
/// ones Swisted makes are all `Sendable` values, and a reason is never
/// touched again on the reactor side once handed over.
struct CarriedError: @unchecked Sendable {
    let error: any Error
}

/// The continuation of one suspended async call, resumed exactly once:
/// by the reactor side with the outcome, or by task cancellation with
/// `CancellationError`, whichever comes first; the other finds it finished.
///
/// Use: create it, call ``install(_:)`` inside `withCheckedThrowingContinuation`
/// (it resumes at once if the task was cancelled already), and call
/// ``cancel()`` from the `onCancel` of `withTaskCancellationHandler`.
///
/// Threading: any thread.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Value, any Error>)
        case cancelledEarly
        case finished
    }

    private let state = Locked(State.idle)

    /// Installs the continuation. If ``cancel()`` came first, resumes it with
    /// `CancellationError` and returns false: nothing should be started.
    @discardableResult
    func install(_ continuation: CheckedContinuation<Value, any Error>) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            switch state {
            case .idle:
                state = .waiting(continuation)
                return false
            case .cancelledEarly, .finished, .waiting:
                state = .finished
                return true
            }
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    private func take() -> CheckedContinuation<Value, any Error>? {
        state.withLock { state in
            guard case .waiting(let continuation) = state else { return nil }
            state = .finished
            return continuation
        }
    }

    /// Resumes with `value`; false if it was already finished (cancelled).
    @discardableResult
    func succeed(_ value: Value) -> Bool {
        guard let continuation = take() else { return false }
        continuation.resume(returning: value)
        return true
    }

    /// Resumes throwing `error`; false if it was already finished.
    @discardableResult
    func fail(_ error: any Error) -> Bool {
        guard let continuation = take() else { return false }
        continuation.resume(throwing: error)
        return true
    }

    /// Task cancellation: resumes with `CancellationError` if still waiting,
    /// or makes a later ``install(_:)`` do so.
    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            switch state {
            case .idle:
                state = .cancelledEarly
                return nil
            case .waiting(let continuation):
                state = .finished
                return continuation
            case .cancelledEarly, .finished:
                return nil
            }
        }
        continuation?.resume(throwing: CancellationError())
    }

    /// True once resumed (or cancelled before it was installed).
    var isFinished: Bool {
        state.withLock { state in
            switch state {
            case .idle, .waiting: return false
            case .cancelledEarly, .finished: return true
            }
        }
    }

    /// Suspends until the reactor side resolves it (or the task is
    /// cancelled); `start` runs once the continuation is installed, unless
    /// the task was cancelled already.
    nonisolated(nonsending) func wait(start: () -> Void, onCancel: @escaping @Sendable () -> Void = {}) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if install(continuation) { start() }
            }
        } onCancel: {
            self.cancel()
            onCancel()
        }
    }
}

extension Reactor {
    /// Runs `job` on the reactor thread: at once if the caller is on it
    /// (or the reactor is not running: the setup thread owns it then), else
    /// through ``callFromThread(_:)``.
    func perform(_ job: @escaping @Sendable () -> Void) {
        if isOnReactorThread {
            job()
        } else {
            callFromThread(job)
        }
    }
}

/// What the async API throws besides the connection's own errors.
public enum AsyncConnectionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `write` after ``AsyncConnection/close()`` or ``AsyncConnection/closeWrite()``.
    case closedForWriting
    /// ``AsyncConnection/inbound`` or an ``AsyncListener`` was iterated from
    /// two tasks at once; only one may wait for the next element.
    case concurrentIteration

    /// A sentence saying what went wrong.
    public var description: String {
        switch self {
        case .closedForWriting: "The connection was closed for writing (close() or closeWrite()) before this write."
        case .concurrentIteration: "Another task is already waiting on this sequence; iterate it from one task at a time."
        }
    }
}

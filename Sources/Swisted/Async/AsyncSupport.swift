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
/// Use: create it, call ``install(_:)`` inside `withUnsafeThrowingContinuation`
/// (it resumes at once if the task was cancelled already), and call
/// ``cancel()`` from the `onCancel` of a cancellation handler (``wait(start:onCancel:)`` does both).
///
/// Threading: any thread.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case idle
        /// `wakeOn`: the reactor whose serial executor the waiting code is
        /// isolated to (an actor on it), if any (``Reactor/resume(_:with:isolated:)``).
        case waiting(UnsafeContinuation<Value, any Error>, wakeOn: Reactor?)
        case cancelledEarly
        case finished
    }

    private let state = Locked(State.idle)

    /// Installs the continuation. If ``cancel()`` came first, resumes it with
    /// `CancellationError` and returns false: nothing should be started.
    /// `wakeOn`: the reactor whose serial executor the waiting code is
    /// isolated to, if any: the reactor side then wakes the task in that
    /// isolation at once (``Reactor/resume(_:with:isolated:)``).
    @discardableResult
    func install(_ continuation: UnsafeContinuation<Value, any Error>, wakeOn reactor: Reactor?) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            switch state {
            case .idle:
                state = .waiting(continuation, wakeOn: reactor)
                return false
            case .cancelledEarly, .finished, .waiting:
                state = .finished
                return true
            }
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    /// Resumes with `result`; false if it was already finished (cancelled).
    private func finish(_ result: Result<Value, any Error>) -> Bool {
        let taken = state.withLock { state -> (UnsafeContinuation<Value, any Error>, Reactor?)? in
            guard case .waiting(let continuation, let reactor) = state else { return nil }
            state = .finished
            return (continuation, reactor)
        }
        guard let (continuation, reactor) = taken else { return false }
        if let reactor {
            reactor.resume(continuation, with: result, isolated: true)
        } else {
            continuation.resume(with: result)
        }
        return true
    }

    /// Resumes with `value`; false if it was already finished (cancelled).
    @discardableResult
    func succeed(_ value: Value) -> Bool {
        finish(.success(value))
    }

    /// Resumes throwing `error`; false if it was already finished.
    @discardableResult
    func fail(_ error: any Error) -> Bool {
        finish(.failure(error))
    }

    /// Task cancellation: resumes with `CancellationError` if still waiting,
    /// or makes a later ``install(_:)`` do so.
    func cancel() {
        let continuation = state.withLock { state -> UnsafeContinuation<Value, any Error>? in
            switch state {
            case .idle:
                state = .cancelledEarly
                return nil
            case .waiting(let continuation, _):
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
    /// the task was cancelled already. `reactor`: the reactor that resolves
    /// it; a caller isolated to an actor on it is woken in that isolation.
    @inline(never)  // its closures' task allocations would move into callers' fast paths (write)
    nonisolated(nonsending) func wait(on reactor: Reactor, start: () -> Void,
                                      onCancel: @escaping @Sendable () -> Void = {}) async throws -> Value {
        let wakeOn = reactor.isSerialExecutor(of: #isolation) ? reactor : nil
        return try await withCancellationHandler {
            self.cancel()
            onCancel()
        } suspending: { continuation in
            if install(continuation, wakeOn: wakeOn) { start() }
        }
    }
}

/// Whether an iterator's caller, an actor, runs on the reactor's serial
/// executor (``Reactor/isSerialExecutor(of:)``), asked once per actor rather
/// than at every wait (the actor's `unownedExecutor`, ~100 instructions).
/// The answer only steers how the waiting task is woken
/// (``Reactor/resume(_:with:isolated:)``): were it stale, a wake-up would take a
/// detour through one more executor switch, never run in the wrong place.
///
/// Threading: part of an iterator (one task at a time).
struct IsolationCache {
    private var actor: ObjectIdentifier?
    private var onReactor = false

    /// True if `actor` runs on `reactor`'s serial executor.
    @inline(__always)
    mutating func runsOn(_ reactor: Reactor, _ actor: (any Actor)?) -> Bool {
        guard let actor else { return false }
        let id = ObjectIdentifier(actor)
        if id != self.actor {
            self.actor = id
            onReactor = reactor.isSerialExecutor(of: actor)
        }
        return onReactor
    }
}

/// The one consumer of a single-consumer async sequence (an
/// ``AsyncListener``'s connections, an ``AsyncConnection``'s inbound chunks):
/// the continuation of the task waiting for the next element, kept in the
/// sequence's ``Locked`` state beside its buffer (see ``SingleConsumerState``).
///
/// Threading: part of a ``Locked`` state; touched only with its lock held.
struct ConsumerSlot<Element: Sendable> {
    /// The waiting consumer: an unsafe continuation (no checking canary: one
    /// allocation less per wait); every path takes it out of the slot under
    /// the lock before resuming it, so it is resumed exactly once.
    struct Waiter {
        let continuation: UnsafeContinuation<Element?, any Error>
        /// The consumer waits in code isolated to the reactor's serial
        /// executor (an actor on it): see ``Reactor/resume(_:with:isolated:)``.
        let isolatedToReactor: Bool

        /// Resumes the consumer from the reactor thread.
        func resume(with result: Result<Element?, any Error>, from reactor: Reactor) {
            reactor.resume(continuation, with: result, isolated: isolatedToReactor)
        }
    }

    /// The waiting consumer, if one waits.
    private(set) var waiter: Waiter?
    /// Which call to `next` installed `waiter` (a cancellation only removes its own).
    private var waiterID = 0
    private var nextWaiterID = 0

    /// True while a consumer waits.
    var isWaiting: Bool { waiter != nil }

    /// The producer's side: removes the waiting consumer, if any, to be
    /// resumed once the lock is released.
    mutating func takeWaiter() -> Waiter? {
        let waiter = waiter
        self.waiter = nil
        return waiter
    }

    fileprivate mutating func newWaiterID() -> Int {
        nextWaiterID += 1
        return nextWaiterID
    }

    fileprivate mutating func install<Step>(_ waiter: Waiter, id: Int) -> ConsumerOutcome<Step> {
        if self.waiter != nil { return .busy }
        if CancellationScope.currentTaskIsCancelled { return .cancelled }
        self.waiter = waiter
        waiterID = id
        return .installed
    }

    fileprivate mutating func takeWaiter(id: Int) -> Waiter? {
        guard waiter != nil, waiterID == id else { return nil }
        return takeWaiter()
    }
}

/// What the consumer's second look at the state found.
private enum ConsumerOutcome<Step> {
    case step(Step)
    case installed, busy, cancelled
}

/// The locked state of a single-consumer async sequence: a buffer the
/// consumer takes steps from, and the ``ConsumerSlot`` where it waits.
protocol SingleConsumerState: SendableMetatype {
    associatedtype Element: Sendable
    var consumer: ConsumerSlot<Element> { get set }
}

extension Locked where State: SingleConsumerState {
    /// The consumer's `next()`: takes a step from the state, or, if there is
    /// none yet, installs the one waiter and suspends until the producer
    /// resumes it (``ConsumerSlot/takeWaiter()``) or the task is cancelled.
    ///
    /// - Parameters:
    ///   - isolatedToReactor: the caller runs isolated to the reactor's
    ///     serial executor (``Reactor/isSerialExecutor(of:)`` of its
    ///     `#isolation`), so the producer's resume lets the task go on
    ///     isolated to it (``Reactor/resume(_:with:isolated:)``).
    ///   - take: with the lock held, the next step (an element, the end, a
    ///     failure), or nil to wait. Called once or twice.
    ///   - deliver: without the lock, turns the step taken into the element
    ///     to return (nil: the end) or the error to throw; runs once.
    /// - Throws: what `deliver` throws; `CancellationError`;
    ///   ``AsyncConnectionError/concurrentIteration`` if another task waits.
    ///
    /// Threading: any thread or task. `nonisolated(nonsending)`: it runs in
    /// the caller's isolation, so a caller on the reactor's executor makes no
    /// executor switch.
    @inline(__always)  // into its callers: one async frame and one executor check less per element
    nonisolated(nonsending) func nextElement<Step>(
        isolatedToReactor: Bool,
        take: (inout State) -> Step?,
        deliver: (Step) throws -> State.Element?
    ) async throws -> State.Element? {
        typealias Element = State.Element
        var id = 0
        let first = withLock { state -> Step? in
            let step = take(&state)
            if step == nil { id = state.consumer.newWaiterID() }
            return step
        }
        if let first { return try deliver(first) }
        let waiterID = id
        return try await withCancellationHandler {
            let waiter = self.withLock { $0.consumer.takeWaiter(id: waiterID) }
            waiter?.continuation.resume(throwing: CancellationError())  // any thread: no isolation hint
        } suspending: { (continuation: UnsafeContinuation<Element?, any Error>) in
            let outcome = withLock { state -> ConsumerOutcome<Step> in
                if let step = take(&state) { return .step(step) }
                return state.consumer.install(.init(continuation: continuation, isolatedToReactor: isolatedToReactor), id: waiterID)
            }
            switch outcome {
            case .installed:
                break
            case .busy:
                continuation.resume(throwing: AsyncConnectionError.concurrentIteration)
            case .cancelled:
                continuation.resume(throwing: CancellationError())
            case .step(let step):
                continuation.resume(with: Result { try deliver(step) })
            }
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

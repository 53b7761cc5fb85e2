import Logging

/// A result that is not there yet, and the chain of callbacks that will
/// process it: Twisted's `Deferred`.
///
/// Whoever produces the result fires the Deferred once, with
/// ``callback(_:)`` (a value) or ``errback(_:)`` (an error). Whoever wants
/// the result adds callbacks (for values) and errbacks (for errors), before
/// or after it fires. Each step receives the result of the step before it:
/// a callback that throws turns the chain into an error; an errback that
/// returns a value recovers it; a step that returns another Deferred pauses
/// the chain until that one fires, and its result carries on down the chain.
///
/// ```swift
/// fetchPoem()                                   // Deferred<[UInt8]>
///     .addCallback { bytes in try Poem(bytes) } // Deferred<Poem>
///     .addErrback { error in Poem.fallback }    // recovers
///     .addCallback { poem in print(poem.title) }
/// ```
///
/// ## Types along the chain
/// Twisted's chain changes type as it goes; a Swift object's type cannot.
/// So each step is generic in what it returns, and:
/// - a step that keeps the type (`(Int) -> Int`, any errback) joins *this*
///   Deferred's chain and returns `self`, exactly as in Twisted:
///   `d.addCallback(f); d.addErrback(g)` runs `f`, then `g` on its outcome;
/// - a step that changes the type (`(Int) -> String`) returns a *new*
///   `Deferred<String>` that continues the chain: go on with the returned
///   one, as in the example above. The original keeps its own result:
///   steps added to it later see that result, not the converted one, and
///   an error it handed on counts as handled there (the new Deferred owns
///   it). Cancelling the new Deferred cancels the original.
///
/// Every step is statically typed: the compiler checks what each callback
/// receives, and no step can see a value of the wrong type.
///
/// ## Errors nobody handled
/// A Deferred whose result is an error when its last reference goes away
/// logs that error once, at `.error` level, as "Unhandled error in Deferred
/// created at File.swift:line: ...", through ``logger`` if set, else
/// ``SwistedLog/logger``. An error counts as handled once an errback or
/// `addBoth` step ran on it, it was handed on to another Deferred (a chain,
/// ``gatherResults(_:consumeErrors:fileID:line:)`` with `consumeErrors`), or it was
/// awaited through ``value``.
///
/// ## Threading contract
/// Not thread-safe, like transports: a Deferred belongs to one thread, in a
/// program the reactor's thread, and its callbacks run on the thread that
/// fires it. Code on other threads fires it through
/// ``Reactor/callFromThread(_:)`` (``ReactorBound`` carries the reference).
/// The async bridges (``value``, ``init(_:fileID:line:_:)``) keep to this:
/// `await deferred.value` resumes on the caller's own executor, and a
/// Deferred made from an async closure is fired on the reactor's thread.
public final class Deferred<Value> {
    /// What a step of the chain produced.
    enum Outcome {
        case success(Value)
        case failure(any Error)
        /// Wait for this Deferred and carry on with its result.
        case deferred(Deferred<Value>)
        /// The step did not run on this result (a callback given an error,
        /// an errback given a value): the result passes on as it is.
        case unchanged
    }

    enum Link {
        /// A step; `handles` marks the result as handled after it ran (an
        /// observer that passed it on, an errback that ran).
        case step(handles: Bool, (Result<Value, any Error>) -> Outcome)
        /// The Deferred that waits for this one: give it this result.
        case resume(Deferred<Value>)
    }

    private var links: [Link?] = []
    private var nextLink = 0
    private var result: Result<Value, any Error>?
    private var resultHandled = false
    private var pauseCount = 0
    private var waiting = false
    private weak var waitingOn: Deferred<Value>?
    private var running = false
    private var canceller: ((Deferred<Value>) -> Void)?
    private var suppressAlreadyCalled = false

    /// True once ``callback(_:)`` or ``errback(_:)`` was called (or the
    /// Deferred was cancelled).
    public private(set) var called = false

    /// Where this Deferred was created, for the unhandled-error log.
    public let fileID: StaticString
    /// The line where this Deferred was created.
    public let line: UInt

    /// Where this Deferred reports an error nobody handled; `nil` (the
    /// default) means ``SwistedLog/logger`` as it is at that moment.
    /// Deferreds derived from this one (a type-changing step) copy it.
    public var logger: Logger?

    /// Creates a Deferred that has not fired.
    ///
    /// - Parameter canceller: called by ``cancel()`` before the Deferred has
    ///   fired, to stop the work that would fire it. It may fire the
    ///   Deferred itself (with a value or an error); if it does not, the
    ///   Deferred fails with ``CancelledError``. Without a canceller,
    ///   ``cancel()`` fails it with ``CancelledError`` and the one
    ///   ``callback(_:)``/``errback(_:)`` that the work makes later is
    ///   silently ignored (Twisted's behaviour).
    public init(canceller: ((Deferred<Value>) -> Void)? = nil, fileID: StaticString = #fileID, line: UInt = #line) {
        self.canceller = canceller
        self.fileID = fileID
        self.line = line
    }

    deinit {
        if case .failure(let error)? = result, !resultHandled {
            let message: Logger.Message = "Unhandled error in Deferred created at \(fileID):\(line): \(error)"
            (logger ?? SwistedLog.logger).error(message, metadata: [
                "created": "\(fileID):\(line)",
                "error": "\(String(reflecting: type(of: error)))",
            ])
        }
    }

    /// A Deferred that has already fired with `value`: Twisted's `succeed`.
    public static func succeed(_ value: Value, fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<Value> {
        let deferred = Deferred(fileID: fileID, line: line)
        deferred.fire(.success(value))
        return deferred
    }

    /// A Deferred that has already failed with `error`: Twisted's `fail`.
    /// Handle the error, or it is logged when the Deferred goes away.
    public static func fail(_ error: any Error, fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<Value> {
        let deferred = Deferred(fileID: fileID, line: line)
        deferred.fire(.failure(error))
        return deferred
    }

    var createdAt: String { "\(fileID):\(line)" }

    // MARK: Firing

    /// Fires the Deferred with `value`: the callbacks added so far run now,
    /// in order; those added later run as they are added.
    /// - Throws: ``AlreadyCalledError`` if it has already fired (except the
    ///   one call that follows a ``cancel()`` without canceller, which is
    ///   ignored).
    public func callback(_ value: Value) throws(AlreadyCalledError) {
        try start(.success(value))
    }

    /// Fires the Deferred with `error`: the chain's errbacks see it.
    /// - Throws: ``AlreadyCalledError`` as ``callback(_:)`` does.
    public func errback(_ error: any Error) throws(AlreadyCalledError) {
        try start(.failure(error))
    }

    private func start(_ first: Result<Value, any Error>) throws(AlreadyCalledError) {
        if called {
            if suppressAlreadyCalled {
                suppressAlreadyCalled = false
                return
            }
            throw AlreadyCalledError(createdAt: createdAt)
        }
        fire(first)
    }

    /// Fires a Deferred known not to have fired.
    private func fire(_ first: Result<Value, any Error>) {
        called = true
        canceller = nil
        result = first
        resultHandled = false
        runCallbacks()
    }

    /// Fires with `outcome` (which may be another Deferred to wait for)
    /// unless already fired: how a derived Deferred receives its result.
    /// A result arriving after the Deferred was cancelled is dropped.
    func resolve(outcome: Outcome) {
        guard !called else { return }
        called = true
        canceller = nil
        apply(outcome, handles: false)
        runCallbacks()
    }

    /// Fires with `result` unless already fired (see ``resolve(outcome:)``).
    func resolve(_ result: Result<Value, any Error>) {
        guard !called else { return }
        fire(result)
    }

    /// Sets the canceller of a Deferred made before its work (the async bridge).
    func setCanceller(_ canceller: @escaping (Deferred<Value>) -> Void) {
        if !called { self.canceller = canceller }
    }

    // MARK: Cancelling, pausing

    /// Cancels the work behind this Deferred: Twisted's `cancel`.
    ///
    /// Before it fired: runs the canceller, and fails the Deferred with
    /// ``CancelledError`` unless the canceller fired it. After it fired but
    /// while its chain waits on another Deferred (a step returned one):
    /// cancels that one, whose result (usually ``CancelledError``) then
    /// carries on down this chain (if that one no longer exists, the chain
    /// carries on with ``CancelledError``). Otherwise does nothing.
    public func cancel() {
        if !called {
            if let canceller {
                self.canceller = nil
                canceller(self)
            } else {
                suppressAlreadyCalled = true
            }
            if !called { fire(.failure(CancelledError())) }
        } else if waiting {
            if let inner = waitingOn {
                inner.cancel()
            } else {
                // The Deferred waited on is gone (nothing held it, so nothing
                // could fire it): carry on with CancelledError instead.
                waiting = false
                result = .failure(CancelledError())
                resultHandled = false
                runCallbacks()
            }
        }
    }

    /// Stops the chain before its next step until ``unpause()``: Twisted's
    /// `pause`. Pauses count: each needs its own unpause.
    public func pause() {
        pauseCount += 1
    }

    /// Undoes one ``pause()``; when none is left, the chain carries on.
    /// More unpauses than pauses are ignored.
    public func unpause() {
        guard pauseCount > 0 else { return }
        pauseCount -= 1
        if pauseCount == 0 { runCallbacks() }
    }

    /// True while the chain is stopped: paused, or waiting on a Deferred a step returned.
    public var paused: Bool { pauseCount > 0 || waiting }

    // MARK: Steps
    //
    // The callback steps are generic in what they return: a step that keeps
    // the type (New == Value) joins this chain and returns `self`; one that
    // changes it returns the Deferred<New> that continues the chain. (Separate
    // same-type overloads would make Swift's overload resolution reject
    // multi-statement closures without a `return` as ambiguous.)

    /// Adds a callback and an errback as one step (Twisted's `addCallbacks`):
    /// `callback` runs if the result so far is a value, `errback` if it is an
    /// error, and what the one that ran returns (or throws) is the next result.
    /// - Returns: `self` if `New` is `Value`, else the `Deferred<New>` that
    ///   continues the chain (see "Types along the chain").
    @discardableResult
    public func addCallbacks<New>(_ callback: @escaping (Value) throws -> New,
                                  errback: @escaping (any Error) throws -> New,
                                  fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<New> {
        continueChain(fileID: fileID, line: line) { result in
            switch result {
            case .success(let value): return Deferred<New>.outcome { try callback(value) }
            case .failure(let error): return Deferred<New>.outcome { try errback(error) }
            }
        }
    }

    /// Adds a callback (Twisted's `addCallback`): it receives the value so
    /// far and returns the next one; throwing turns the chain into that
    /// error. An error so far skips it and passes on.
    /// - Returns: `self` if `New` is `Value`, else the `Deferred<New>` that
    ///   continues the chain (see "Types along the chain").
    @discardableResult
    public func addCallback<New>(_ callback: @escaping (Value) throws -> New,
                                 fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<New> {
        continueChain(fileID: fileID, line: line) { result in
            guard case .success(let value) = result else { return .unchanged }
            return Deferred<New>.outcome { try callback(value) }
        }
    }

    /// Adds a callback that returns another Deferred: the chain waits for
    /// it and carries on with its result (cancelling the chain meanwhile
    /// cancels that Deferred).
    /// - Returns: `self` if `New` is `Value`, else the `Deferred<New>` that
    ///   continues the chain.
    @discardableResult
    public func addCallback<New>(_ callback: @escaping (Value) throws -> Deferred<New>,
                                 fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<New> {
        continueChain(fileID: fileID, line: line) { result in
            guard case .success(let value) = result else { return .unchanged }
            return Deferred<New>.waiting { try callback(value) }
        }
    }

    /// Adds an errback (Twisted's `addErrback`): it receives the error so far
    /// and returns a value to recover with, or throws (the same or another
    /// error) to stay failed. A value so far skips it. Returns `self`.
    @discardableResult
    public func addErrback(_ errback: @escaping (any Error) throws -> Value) -> Deferred<Value> {
        addLink(.step(handles: false) { result in
            guard case .failure(let error) = result else { return .unchanged }
            return Deferred.outcome { try errback(error) }
        })
        return self
    }

    /// Adds an errback that returns a Deferred to wait for (a retry, say).
    /// Returns `self`.
    ///
    /// On a `Deferred<Void>`, Swift takes a one-expression closure such as
    /// `{ _ in retry() }` as the plain errback (a `Void` closure discards
    /// its expression's value): write `{ _ in return retry() }` there.
    @_disfavoredOverload
    @discardableResult
    public func addErrback(_ errback: @escaping (any Error) throws -> Deferred<Value>) -> Deferred<Value> {
        addLink(.step(handles: false) { result in
            guard case .failure(let error) = result else { return .unchanged }
            return Deferred.waiting { try errback(error) }
        })
        return self
    }

    /// Adds a step that runs on a value or an error alike (Twisted's
    /// `addBoth`); what it returns or throws is the next result.
    /// - Returns: `self` if `New` is `Value`, else the `Deferred<New>` that
    ///   continues the chain.
    @discardableResult
    public func addBoth<New>(_ both: @escaping (Result<Value, any Error>) throws -> New,
                             fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<New> {
        continueChain(fileID: fileID, line: line) { result in Deferred<New>.outcome { try both(result) } }
    }

    /// Adds a step on a value or an error alike that returns a Deferred to wait for.
    /// - Returns: `self` if `New` is `Value`, else the `Deferred<New>` that
    ///   continues the chain.
    @discardableResult
    public func addBoth<New>(_ both: @escaping (Result<Value, any Error>) throws -> Deferred<New>,
                             fileID: StaticString = #fileID, line: UInt = #line) -> Deferred<New> {
        continueChain(fileID: fileID, line: line) { result in Deferred<New>.waiting { try both(result) } }
    }

    /// Fires `other` with this chain's result at this point (Twisted's
    /// `chainDeferred`); the result, an error included, is then `other`'s
    /// to handle. If `other` has already fired, this chain fails with
    /// ``AlreadyCalledError``. Returns `self`.
    @discardableResult
    public func chainDeferred(_ other: Deferred<Value>) -> Deferred<Value> {
        addLink(.step(handles: true) { result in
            do {
                try other.start(result)
                return .unchanged
            } catch {
                return .failure(error)
            }
        })
        return self
    }

    // MARK: Machinery

    static func outcome(_ body: () throws -> Value) -> Outcome {
        do { return .success(try body()) } catch { return .failure(error) }
    }

    static func waiting(_ body: () throws -> Deferred<Value>) -> Outcome {
        do { return .deferred(try body()) } catch { return .failure(error) }
    }

    /// Adds the step `transform` to the chain. If `New` is `Value` the step
    /// joins this chain and `self` is returned; otherwise a `Deferred<New>`
    /// continues the chain with what `transform` makes of this chain's
    /// result at this point. `transform` returns `.unchanged` only for an
    /// error it did not touch.
    func continueChain<New>(fileID: StaticString, line: UInt,
                            _ transform: @escaping (Result<Value, any Error>) -> Deferred<New>.Outcome) -> Deferred<New> {
        if let same = self as? Deferred<New> {
            // New is Value (the cast of a class to its own type): the casts
            // below are between identical types and cannot fail.
            addLink(.step(handles: false) { result in
                switch transform(result) {
                case .success(let value): return .success(value as! Value)
                case .failure(let error): return .failure(error)
                case .deferred(let inner): return .deferred(inner as! Deferred<Value>)
                case .unchanged: return .unchanged
                }
            })
            return same
        }
        // Weak: the new Deferred is kept by this one's link until it is
        // fired; a strong reference back would be a cycle.
        let next = Deferred<New>(canceller: { [weak self] _ in self?.cancel() }, fileID: fileID, line: line)
        next.logger = logger
        addLink(.step(handles: true) { result in
            let outcome = transform(result)
            if case .unchanged = outcome, case .failure(let error) = result {
                next.resolve(outcome: .failure(error))
            } else {
                next.resolve(outcome: outcome)
            }
            return .unchanged
        })
        return next
    }

    /// Adds a step that watches the result without changing it, and marks
    /// an error as handled (``value``, ``gatherResults(_:consumeErrors:fileID:line:)``):
    /// `handles` false leaves an error to be logged if nothing else handles it.
    func observe(handles: Bool, _ observer: @escaping (Result<Value, any Error>) -> Void) {
        addLink(.step(handles: handles) { result in
            observer(result)
            return .unchanged
        })
    }

    /// The result, if the Deferred has fired and its chain is not waiting.
    var currentResult: Result<Value, any Error>? {
        called && !paused && !running ? result : nil
    }

    private func addLink(_ link: Link) {
        links.append(link)
        if called { runCallbacks() }
    }

    /// Applies what a step produced to this Deferred.
    private func apply(_ outcome: Outcome, handles: Bool) {
        switch outcome {
        case .unchanged:
            if handles { resultHandled = true }
        case .success(let value):
            result = .success(value)
            resultHandled = false
        case .failure(let error):
            result = .failure(error)
            resultHandled = false
        case .deferred(let inner):
            if inner === self {
                result = .failure(DeferredReturnedItself())
                resultHandled = false
            } else if inner.called, !inner.paused, !inner.running, let innerResult = inner.result {
                // Already there: take it now (the inner Deferred's error is ours to handle now).
                inner.resultHandled = true
                result = innerResult
                resultHandled = false
            } else {
                waiting = true
                waitingOn = inner
                result = nil
                inner.links.append(.resume(self))
                // inner is not fired, paused, or running its chain further up
                // the stack: either way it reaches the resume link later.
            }
        }
    }

    /// Runs the steps not run yet, in order, until the chain stops (paused,
    /// waiting) or none is left. When a Deferred this chain waited on
    /// finishes, the waiting one carries on in this same loop (a stack of
    /// chains, not recursion, as in Twisted), so long chains of Deferreds
    /// returning Deferreds do not grow the call stack.
    private func runCallbacks() {
        guard called, !running, !paused else { return }
        var chain: [Deferred<Value>] = [self]
        running = true
        while let current = chain.last {
            guard !current.paused, current.nextLink < current.links.count else {
                current.running = false
                if current.nextLink == current.links.count {
                    current.links.removeAll()
                    current.nextLink = 0
                }
                chain.removeLast()
                continue
            }
            let link = current.links[current.nextLink]
            current.links[current.nextLink] = nil
            current.nextLink += 1
            switch link {
            case .step(let handles, let run)?:
                guard let result = current.result else { continue }
                current.apply(run(result), handles: handles)
            case .resume(let outer)?:
                current.resultHandled = true
                outer.waiting = false
                outer.waitingOn = nil
                outer.result = current.result
                outer.resultHandled = false
                if !outer.paused, !outer.running {
                    outer.running = true
                    chain.append(outer)
                }
            case nil:
                continue
            }
        }
    }
}

extension Deferred: CustomStringConvertible {
    /// `Deferred<Int> created at File.swift:12 (pending|fired: ...|waiting)`.
    public var description: String {
        let state: String
        if !called {
            state = "pending"
        } else if waiting {
            state = "waiting on another Deferred"
        } else if let result {
            switch result {
            case .success(let value): state = "value \(value)"
            case .failure(let error): state = "error \(error)"
            }
        } else {
            state = "fired"
        }
        return "Deferred<\(Value.self)> created at \(createdAt) (\(state))"
    }
}

// Errors of Deferreds: plain Sendable values (FirstError and AllFailedError
// carry errors, which are Sendable too), usable on any thread.

/// ``Deferred/callback(_:)`` or ``Deferred/errback(_:)`` was called on a
/// ``Deferred`` that already has its result: Twisted's `AlreadyCalledError`.
/// A Deferred fires once.
public struct AlreadyCalledError: Error, Sendable, CustomStringConvertible {
    /// Where the Deferred was created (`file:line`).
    public let createdAt: String
    public init(createdAt: String = "") { self.createdAt = createdAt }
    public var description: String {
        createdAt.isEmpty ? "AlreadyCalledError: the Deferred has already fired"
            : "AlreadyCalledError: the Deferred created at \(createdAt) has already fired"
    }
}

/// The error a ``Deferred`` fails with when ``Deferred/cancel()`` is called
/// before it fired and its canceller (if any) did not fire it: Twisted's
/// `defer.CancelledError`. Also what `try await deferred.value` throws when
/// the awaiting task is cancelled (the Deferred is cancelled in turn).
public struct CancelledError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "CancelledError: the Deferred was cancelled" }
}

/// The first error among the Deferreds given to ``gatherResults(_:consumeErrors:fileID:line:)``
/// or to ``DeferredList(_:fireOnOneErrback:consumeErrors:fileID:line:)`` with
/// `fireOnOneErrback`: Twisted's `defer.FirstError`.
/// Threading: it carries `any Error`, so it is not `Sendable`; it arrives on the reactor thread.
public struct FirstError: Error, CustomStringConvertible {
    /// The error the Deferred at ``index`` failed with.
    public let error: any Error
    /// The position of the failed Deferred in the list given.
    public let index: Int

    public init(error: any Error, index: Int) {
        self.error = error
        self.index = index
    }

    public var description: String { "FirstError[#\(index), \(error)]" }
}

/// Every Deferred given to ``DeferredList(firstOf:fireOnOneErrback:consumeErrors:fileID:line:)``
/// failed (or the list was empty). Twisted's `DeferredList(fireOnOneCallback=True)`
/// fires with the list of failures instead; in Swift the result type is the
/// first value, so this case is an error.
/// Threading: it carries `any Error`, so it is not `Sendable`; it arrives on the reactor thread.
public struct AllFailedError: Error, CustomStringConvertible {
    /// The errors, in the order of the Deferreds given.
    public let errors: [any Error]

    public init(errors: [any Error]) { self.errors = errors }

    public var description: String {
        "AllFailedError: every Deferred failed (\(errors.map { "\($0)" }.joined(separator: "; ")))"
    }
}

/// A callback returned the very Deferred it was added to; waiting on itself
/// would hang the chain forever, so the chain fails with this instead
/// (Twisted raises an assertion there).
public struct DeferredReturnedItself: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "DeferredReturnedItself: a callback returned the Deferred it was added to" }
}

/// A Deferred given a time limit with ``Deferred/addTimeout(_:_:)`` did not
/// fire in time and was cancelled: Twisted's `defer.TimeoutError`.
public struct DeferredTimeoutError: Error, Sendable, CustomStringConvertible {
    /// The time limit, in seconds.
    public let seconds: Double
    public init(seconds: Double) { self.seconds = seconds }
    public var description: String { "DeferredTimeoutError: the Deferred did not fire within \(seconds) s" }
}

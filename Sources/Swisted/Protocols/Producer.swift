/// Something that produces data for a consumer (a transport): Twisted's `IProducer`.
/// Register it with ``Transport/registerProducer(_:streaming:)``.
/// Threading: reactor thread only, like the transport it feeds.
public protocol Producer: AnyObject {
    /// Stop for good: the consumer is gone (its connection was lost) or
    /// asked to stop. Called at most once by a transport.
    func stopProducing()
}

/// A producer that writes on its own initiative until told to pause: Twisted's
/// `IPushProducer` (register with `streaming: true`).
///
/// A transport pauses it when its write buffer rises above
/// ``Transport/writeHighWaterMark`` and resumes it once the buffer drains
/// to ``Transport/writeLowWaterMark``, so memory stays bounded however fast
/// it produces. Every transport is itself a push producer of the bytes it
/// reads: pausing it stops reading the socket.
public protocol PushProducer: Producer {
    /// Stop writing until ``resumeProducing()``.
    func pauseProducing()
    /// Go on writing.
    func resumeProducing()
}

/// A producer that writes only when asked: Twisted's `IPullProducer`
/// (register with `streaming: false`). The transport calls
/// ``resumeProducing()`` each time its write buffer is empty, until the
/// producer unregisters; each call should write one chunk.
public protocol PullProducer: Producer {
    /// Write the next chunk (or unregister when there is none).
    func resumeProducing()
}

/// A protocol that wants to hear about each direction of a connection
/// closing separately: Twisted's `IHalfCloseableProtocol`. Adopt it on a
/// ``Protocol`` subclass:
///
/// - ``readConnectionLost()`` when the peer shuts down its write side (EOF),
///   instead of `connectionLost`: you may still write, then close or
///   `loseWriteConnection()`.
/// - ``writeConnectionLost()`` when our own write side is shut down after
///   ``Transport/loseWriteConnection()`` flushed.
///
/// `connectionLost` comes once, when both directions are done. A protocol
/// that does not adopt this sees the peer's EOF as the end of the connection.
/// Threading: reactor thread only.
public protocol HalfCloseableProtocol: AnyObject {
    func readConnectionLost()
    func writeConnectionLost()
}

/// A producer could not be registered: another one is registered and was
/// never unregistered, or `streaming` does not match the producer's kind.
public struct ProducerError: Error, Sendable, CustomStringConvertible {
    public let detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { "Cannot register producer: \(detail)." }
}

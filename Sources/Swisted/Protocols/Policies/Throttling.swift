// Bandwidth throttling: Twisted's ThrottlingFactory and ThrottlingProtocol
// (twisted.protocols.policies), read and write limits. The connection count
// limit of Twisted's ThrottlingFactory is LimitConnectionsFactory's.

/// Limits the bytes per second that all the connections it makes read, and
/// that their producers write, together: Twisted's `ThrottlingFactory`.
///
/// Every second (on ``clock``) it compares the bytes of the second that
/// ended with the limit. Over ``readLimit``: every connection stops reading
/// (its transport's `pauseProducing()`) for as long as the excess would take
/// at the limit (`read / readLimit - 1` seconds), then reads again. Over
/// ``writeLimit``: every connection's registered producer is paused the same
/// way. As in Twisted, plain `write` calls are counted but never held back:
/// only a producer (``Transport/registerProducer(_:streaming:)``) can be
/// paused. Unlike Twisted, a throttle never resumes what something else
/// paused: a connection whose protocol paused its transport (a paused
/// ``LineReceiver``, say) stays paused when reads are unthrottled, and a
/// producer that its transport paused above the high-water mark stays paused
/// when writes are; and a connection made while reads are throttled starts
/// throttled.
///
/// ```swift
/// let limited = ThrottlingFactory(wrapping: factory, clock: reactor,
///                                 readLimit: 1_000_000, writeLimit: 500_000)
/// try reactor.listenTCP(8000, limited)
/// ```
///
/// Pass a test `Clock` (SwistedTesting) as `clock` to drive the seconds by
/// hand. For a connection count limit too, wrap a ``LimitConnectionsFactory``.
///
/// Threading: reactor thread only (the clock's thread), like every factory.
open class ThrottlingFactory: WrappingFactory {
    /// What counts the seconds: the reactor, or a test `Clock`.
    public let clock: any ReactorTime
    /// Bytes per second all connections may read together; nil: no limit.
    public let readLimit: Int?
    /// Bytes per second all connections may write together; nil: no limit.
    public let writeLimit: Int?

    /// Bytes read so far in the current second.
    public var readThisSecond: Int { reads.thisSecond }
    /// Bytes written so far in the current second.
    public var writtenThisSecond: Int { writes.thisSecond }
    /// True while reads are throttled.
    public var readsThrottled: Bool { reads.throttled }
    /// True while writes are throttled.
    public var writesThrottled: Bool { writes.throttled }

    /// One direction's second: its count, its throttle, its pending calls.
    private struct Meter {
        let limit: Int?
        var thisSecond = 0
        var throttled = false
        var check: DelayedCall?
        var unthrottle: DelayedCall?

        init(limit: Int?) { self.limit = limit }

        /// Cancels the pending calls and starts over (no connection left).
        mutating func reset() {
            for call in [check, unthrottle] {
                if let call, call.active { try? call.cancel() }
            }
            self = Meter(limit: limit)
        }
    }

    private enum Direction { case reads, writes }
    private var reads: Meter
    private var writes: Meter

    /// A factory whose connections are `wrappedFactory`'s, throttled.
    /// - Parameters:
    ///   - clock: what schedules the checks: the reactor, or a test `Clock`.
    ///   - readLimit: bytes per second for all connections' reads together (> 0), or nil.
    ///   - writeLimit: bytes per second for all connections' writes together (> 0), or nil.
    /// Traps if a limit is 0 or negative (a programming error: nothing could ever be read).
    public init(wrapping wrappedFactory: Factory, clock: any ReactorTime, readLimit: Int? = nil, writeLimit: Int? = nil) {
        precondition((readLimit ?? 1) > 0 && (writeLimit ?? 1) > 0, "ThrottlingFactory: limits must be positive")
        self.clock = clock
        self.readLimit = readLimit
        self.writeLimit = writeLimit
        reads = Meter(limit: readLimit)
        writes = Meter(limit: writeLimit)
        super.init(wrapping: wrappedFactory)
        wrapperType = ThrottlingProtocol.self
    }

    /// Counts bytes a connection read (its ``ThrottlingProtocol`` calls it).
    public func registerRead(_ count: Int) {
        reads.thisSecond += count
    }

    /// Counts bytes a connection wrote (its ``ThrottlingProtocol`` calls it).
    public func registerWritten(_ count: Int) {
        writes.thisSecond += count
    }

    /// The connections, as ``ThrottlingProtocol``s.
    private var throttled: [ThrottlingProtocol] { protocols.compactMap { $0 as? ThrottlingProtocol } }

    /// The first connection starts the checks; one made while throttled starts throttled.
    open override func registerProtocol(_ wrapper: ProtocolWrapper) {
        if protocols.count == 1 {
            for direction in [Direction.reads, .writes] where meter(direction).limit != nil && meter(direction).check == nil {
                scheduleCheck(direction)
            }
        }
        guard let connection = wrapper as? ThrottlingProtocol else { return }
        if readsThrottled { connection.throttleReads() }
        if writesThrottled { connection.throttleWrites() }
    }

    /// The last connection gone: the checks stop, the counts and throttles reset.
    open override func unregisterProtocol(_ wrapper: ProtocolWrapper) {
        guard protocols.isEmpty else { return }
        reads.reset()
        writes.reset()
    }

    private func meter(_ direction: Direction) -> Meter {
        direction == .reads ? reads : writes
    }

    private func update(_ direction: Direction, _ change: (inout Meter) -> Void) {
        if direction == .reads { change(&reads) } else { change(&writes) }
    }

    private func scheduleCheck(_ direction: Direction) {
        let call = clock.callLater(1) { [weak self] in self?.checkBandwidth(direction) }
        update(direction) { $0.check = call }
    }

    /// The second is over: throttle for the excess, if any, as long as it
    /// would take at the limit (Twisted's `checkReadBandwidth` and `checkWriteBandwidth`).
    private func checkBandwidth(_ direction: Direction) {
        let second = meter(direction)
        if let limit = second.limit, second.thisSecond > limit {
            if direction == .reads { throttleReads() } else { throttleWrites() }
            if let call = second.unthrottle, call.active { try? call.cancel() }
            let call = clock.callLater(Double(second.thisSecond) / Double(limit) - 1) { [weak self] in
                if direction == .reads { self?.unthrottleReads() } else { self?.unthrottleWrites() }
            }
            update(direction) { $0.unthrottle = call }
        }
        update(direction) { $0.thisSecond = 0 }
        scheduleCheck(direction)
    }

    /// Stops every connection's reading until ``unthrottleReads()``.
    open func throttleReads() {
        reads.throttled = true
        for connection in throttled { connection.throttleReads() }
    }

    /// Lets every connection read again (unless something else paused it).
    open func unthrottleReads() {
        reads.unthrottle = nil
        reads.throttled = false
        for connection in throttled { connection.unthrottleReads() }
    }

    /// Pauses every connection's producer until ``unthrottleWrites()``.
    open func throttleWrites() {
        writes.throttled = true
        for connection in throttled { connection.throttleWrites() }
    }

    /// Resumes every connection's producer (unless its transport paused it).
    open func unthrottleWrites() {
        writes.unthrottle = nil
        writes.throttled = false
        for connection in throttled { connection.unthrottleWrites() }
    }
}

/// The wrapper a ``ThrottlingFactory`` puts around each of its connections:
/// counts what is read and written, and pauses reading or the producer when
/// the factory throttles (Twisted's `ThrottlingProtocol`).
///
/// The transport reads only while neither the throttle nor the wrapped
/// protocol (through this wrapper's `pauseProducing()`) wants it paused; a
/// producer registered through this wrapper is paused while either the
/// throttle or the transport (its high-water mark) wants it paused.
///
/// Threading: reactor thread only.
open class ThrottlingProtocol: ProtocolWrapper {
    /// The factory's throttle holds reading back.
    public var readsThrottled: Bool { readGate?.throttled ?? false }
    /// The transport's reading (it produces what it reads) behind a gate:
    /// paused while the wrapped protocol (``pauseProducing()``) or the
    /// throttle wants it paused.
    private var readGate: ThrottledPushProducer?
    /// The producer registered through this wrapper, behind its gate.
    private var gate: ThrottledProducer?

    private var throttlingFactory: ThrottlingFactory? { factory as? ThrottlingFactory }

    /// Puts the transport's reading behind its gate before the factory
    /// hears of the connection (it may throttle it at once).
    /// - Throws: what the wrapped protocol's `connectionMade` throws.
    open override func makeConnection(_ transport: any Transport) throws {
        readGate = ThrottledPushProducer(transport)
        try super.makeConnection(transport)
    }

    /// Counts the bytes with the factory, then passes them on.
    /// - Throws: what the wrapped protocol's `dataReceived` throws.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        throttlingFactory?.registerRead(data.count)
        try super.dataReceived(data)
    }

    /// Counts the bytes with the factory (unless the connection is closing:
    /// they are dropped), then writes them.
    open override func write(_ data: UnsafeRawBufferPointer) {
        if !disconnecting { throttlingFactory?.registerWritten(data.count) }
        super.write(data)
    }

    /// Counts the bytes as ``write(_:)`` does, then writes them.
    open override func writeSequence(_ chunks: [[UInt8]]) {
        if !disconnecting { throttlingFactory?.registerWritten(chunks.reduce(0) { $0 + $1.count }) }
        super.writeSequence(chunks)
    }

    /// Registers `producer` with the transport behind a gate that also
    /// holds it back while writes are throttled.
    /// - Throws: ``ProducerError`` as the transport's `registerProducer` does.
    open override func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {
        let gate = ThrottledProducer.gate(for: producer, streaming: streaming)
        gate.throttled = throttlingFactory?.writesThrottled ?? false
        try super.registerProducer(gate, streaming: streaming)
        self.gate = gate
    }

    /// Forgets the producer and unregisters it from the transport.
    open override func unregisterProducer() {
        gate = nil
        super.unregisterProducer()
    }

    /// The wrapped protocol pauses its reading: it stays paused through throttles.
    open override func pauseProducing() {
        readGate?.pauseProducing()
    }

    /// The wrapped protocol resumes its reading: the transport reads again
    /// unless reads are throttled.
    open override func resumeProducing() {
        readGate?.resumeProducing()
    }

    /// Stops reading (the factory throttles reads).
    open func throttleReads() {
        readGate?.throttled = true
    }

    /// Reads again, unless the wrapped protocol paused reading.
    open func unthrottleReads() {
        readGate?.throttled = false
    }

    /// Pauses the registered producer (the factory throttles writes).
    open func throttleWrites() {
        gate?.throttled = true
    }

    /// Resumes the registered producer, unless its transport paused it.
    open func unthrottleWrites() {
        gate?.throttled = false
    }
}

/// A producer as its transport sees it through a ``ThrottlingProtocol``:
/// the real one is held back while the throttle or the transport wants it
/// held back. ``gate(for:streaming:)`` makes the right kind; a producer of
/// the wrong kind for `streaming` gets a gate of neither kind, which the
/// transport refuses with its usual ``ProducerError``.
///
/// Threading: reactor thread only.
class ThrottledProducer: Producer {
    /// The throttle's side of the gate.
    final var throttled = false {
        didSet { if throttled != oldValue { throttleChanged() } }
    }
    private let producer: any Producer

    init(_ producer: any Producer) {
        self.producer = producer
    }

    static func gate(for producer: any Producer, streaming: Bool) -> ThrottledProducer {
        if streaming, let push = producer as? any PushProducer { return ThrottledPushProducer(push) }
        if !streaming, let pull = producer as? any PullProducer { return ThrottledPullProducer(pull) }
        return ThrottledProducer(producer)
    }

    func throttleChanged() {}

    final func stopProducing() {
        producer.stopProducing()
    }
}

/// A push producer is paused while either its consumer or the throttle
/// says so. The consumer is the transport (its high-water mark) for a
/// registered producer, the wrapped protocol for the transport's reading.
final class ThrottledPushProducer: ThrottledProducer, PushProducer {
    private let push: any PushProducer
    /// The consumer's pause (``pauseProducing()``), apart from the throttle's.
    private var pausedByConsumer = false

    init(_ push: any PushProducer) {
        self.push = push
        super.init(push)
    }

    override func throttleChanged() {
        guard !pausedByConsumer else { return }
        if throttled { push.pauseProducing() } else { push.resumeProducing() }
    }

    func pauseProducing() {
        pausedByConsumer = true
        if !throttled { push.pauseProducing() }
    }

    func resumeProducing() {
        pausedByConsumer = false
        if !throttled { push.resumeProducing() }
    }
}

/// A pull producer's requests for a chunk wait while throttled; the one
/// that waited is passed on when the throttle lifts.
final class ThrottledPullProducer: ThrottledProducer, PullProducer {
    private let pull: any PullProducer
    private var requestWaiting = false

    init(_ pull: any PullProducer) {
        self.pull = pull
        super.init(pull)
    }

    override func throttleChanged() {
        guard !throttled, requestWaiting else { return }
        requestWaiting = false
        pull.resumeProducing()
    }

    func resumeProducing() {
        if throttled {
            requestWaiting = true
        } else {
            pull.resumeProducing()
        }
    }
}

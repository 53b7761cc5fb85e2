import Swisted

/// A transport that records what is written and how it is closed, with no
/// reactor and no socket: Twisted's `StringTransport`. Attach it with
/// `proto.makeConnection(transport)`, feed the protocol with
/// `proto.receive(...)`, and read what it wrote with ``value()``.
///
/// ```swift
/// let transport = StringTransport()
/// let proto = Echo()
/// try proto.makeConnection(transport)
/// try proto.receive("hello")
/// #expect(transport.string == "hello")
/// ```
///
/// It behaves like Swisted's real transports where a protocol can tell:
/// writes after ``loseConnection()`` or ``abortConnection()`` are ignored,
/// and ``disconnecting`` turns true at either. It never calls
/// `connectionLost` itself; ``StringTransportWithDisconnection`` does.
///
/// Threading: not thread-safe; use it from one thread, as a reactor would.
open class StringTransport: Transport {
    private var written: [UInt8] = []

    /// How many `write` calls delivered bytes (a check that a frame went out in one write).
    public private(set) var writeCount = 0

    /// True once ``loseConnection()`` or ``abortConnection()`` was called.
    public private(set) var disconnecting = false

    /// True once ``loseConnection()`` was called.
    public private(set) var loseConnectionCalled = false

    /// True once ``abortConnection()`` was called (Twisted's `aborting`).
    public private(set) var abortConnectionCalled = false
    /// The error that closed this transport as it would close a real
    /// connection: one a receiver's callback threw while `resumeProducing()`
    /// delivered what it had held back (the transport is aborted with it).
    public private(set) var closeError: (any Error)?

    /// What ``getPeer()`` returns.
    public var peer: any Address
    /// What ``getHost()`` returns.
    public var host: any Address

    /// What ``bufferSize`` reports; set it to play a transport with a backlog.
    public var reportedBufferSize = 0

    /// The producer registered with ``registerProducer(_:streaming:)``, if any.
    public private(set) var producer: (any Producer)?
    /// Whether the registered producer is a streaming (push) producer; nil when none is registered.
    public private(set) var streaming: Bool?
    /// Every `registerProducer`/`unregisterProducer` call, in order:
    /// `"register(streaming: true)"`, `"unregister"`.
    public private(set) var producerEvents: [String] = []

    /// What this transport, as a producer of what it reads, was last told
    /// (Twisted's `producerState`): `pauseProducing`, `resumeProducing`, `stopProducing`.
    public enum ProducerState: Sendable, Equatable { case producing, paused, stopped }
    /// See ``ProducerState``.
    public private(set) var producerState = ProducerState.producing

    /// True once ``loseWriteConnection()`` was called.
    public private(set) var loseWriteConnectionCalled = false

    public var writeHighWaterMark = 64 * 1024
    public var writeLowWaterMark = 16 * 1024

    /// A transport whose ends are the given addresses (by default
    /// 10.0.0.1:12345 for the peer and 10.0.0.2:54321 for this end, as
    /// Twisted's `StringTransport` uses).
    public init(peer: any Address = IPv4Address(type: .tcp, host: "10.0.0.1", port: 12345),
                host: any Address = IPv4Address(type: .tcp, host: "10.0.0.2", port: 54321)) {
        self.peer = peer
        self.host = host
    }

    /// Everything written so far (since the last ``clear()``).
    public func value() -> [UInt8] { written }

    /// ``value()`` decoded as UTF-8.
    public var string: String { String(decoding: written, as: UTF8.self) }

    /// Forgets what was written so far.
    public func clear() { written.removeAll(keepingCapacity: true) }

    // MARK: Transport

    /// Records `data`; ignored after ``loseConnection()``, ``abortConnection()`` or ``loseWriteConnection()``.
    open func write(_ data: UnsafeRawBufferPointer) {
        guard !disconnecting, !loseWriteConnectionCalled, !data.isEmpty else { return }
        written.append(contentsOf: data)
        writeCount += 1
    }

    /// Records the call and sets ``disconnecting``.
    open func loseConnection() {
        loseConnectionCalled = true
        disconnecting = true
    }

    /// Records the call and sets ``disconnecting``.
    open func abortConnection() {
        abortConnectionCalled = true
        disconnecting = true
    }

    public func getPeer() -> any Address { peer }
    public func getHost() -> any Address { host }

    /// ``reportedBufferSize``.
    public var bufferSize: Int { reportedBufferSize }

    /// Records the call; later writes are ignored, as on a real transport.
    open func loseWriteConnection() {
        loseWriteConnectionCalled = true
    }

    // MARK: Consumer

    /// Records a producer, as a real transport would accept it.
    /// - Throws: ``ProducerError`` if one is registered already (Twisted
    ///   raises `RuntimeError`), or `streaming` does not match its kind
    ///   (`true` needs a `PushProducer`, `false` a `PullProducer`).
    public func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {
        if let current = self.producer {
            throw ProducerError("\(current) was never unregistered")
        }
        if streaming, !(producer is any PushProducer) { throw ProducerError("streaming: true needs a PushProducer") }
        if !streaming, !(producer is any PullProducer) { throw ProducerError("streaming: false needs a PullProducer") }
        self.producer = producer
        self.streaming = streaming
        producerEvents.append("register(streaming: \(streaming))")
    }

    /// Forgets the producer (Twisted's `unregisterProducer`).
    public func unregisterProducer() {
        producer = nil
        streaming = nil
        producerEvents.append("unregister")
    }

    // MARK: Producer (of what it reads)

    /// Records it in ``producerState``.
    open func pauseProducing() { producerState = .paused }
    /// Records it in ``producerState``.
    open func resumeProducing() { producerState = .producing }
    /// Records it in ``producerState`` (a real transport also closes; this one does not).
    open func stopProducing() { producerState = .stopped }
}

extension StringTransport: ClosesWithError {
    /// Records `error` as ``closeError`` and aborts
    /// (``StringTransportWithDisconnection`` gives it to `connectionLost`).
    package func closeWithError(_ error: any Error, in callback: String, of protocolType: Any.Type) {
        closeError = error
        abortConnection()
    }
}

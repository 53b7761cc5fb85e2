/// One connection, as a protocol sees it: Twisted's `ITransport`.
///
/// Calls are "thrown over the wall": `write` never blocks and never fails
/// in front of you; if the connection breaks, the protocol hears it in
/// `connectionLost`. Nothing written is lost unless the connection is lost
/// or aborted.
///
/// Writing to a connection the peer has reset never kills the process with
/// SIGPIPE (the reactor ignores SIGPIPE, see ``Reactor``): the protocol gets
/// `connectionLost` with ``ConnectionLost`` carrying `ECONNRESET` or `EPIPE`
/// (``UVError/connectionReset``, ``UVError/brokenPipe``).
///
/// A peer that stops reading never makes the transport spin or grow without
/// bound: ``bufferSize`` holds only what was written and not yet taken by the
/// kernel (a registered push producer is paused above
/// ``writeHighWaterMark``), and ``abortConnection()`` frees it at once.
///
/// A transport is a consumer (``registerProducer(_:streaming:)``) and
/// also a ``PushProducer`` of what it reads: `pauseProducing()` stops
/// reading the socket (`uv_read_stop`), `resumeProducing()` starts again,
/// `stopProducing()` is `loseConnection()`. Coupling two transports as each
/// other's producers makes a proxy with bounded memory in both directions.
///
/// Threading: reactor thread only. From another thread, use
/// `reactor.callFromThread { transport.write(...) }`.
public protocol Transport: PushProducer {
    /// Queues `data` to be sent, in order, after everything written before.
    /// The bytes are copied (or sent at once) before the call returns.
    /// Ignored after ``loseConnection()`` or ``abortConnection()``.
    func write(_ data: UnsafeRawBufferPointer)

    /// Writes each chunk in order, as one write would.
    func writeSequence(_ chunks: [[UInt8]])

    /// Closes the connection once everything written so far has been sent.
    /// The protocol then gets `connectionLost` with ``ConnectionDone``.
    /// Later writes are ignored; calling it again does nothing.
    func loseConnection()

    /// Closes the connection now, dropping anything not yet sent. The
    /// protocol gets `connectionLost` with ``ConnectionAborted``.
    func abortConnection()

    /// The address of the other end.
    func getPeer() -> any Address

    /// The address of this end.
    func getHost() -> any Address

    /// Bytes written but not yet handed to the kernel.
    var bufferSize: Int { get }

    /// True once ``loseConnection()`` or ``abortConnection()`` was called, or the connection was lost.
    var disconnecting: Bool { get }

    /// Shuts down the write side once everything written has been sent
    /// (`uv_shutdown`, a TCP FIN); reading goes on. Later writes are ignored.
    /// A ``HalfCloseableProtocol`` then hears `writeConnectionLost()`.
    func loseWriteConnection()

    /// Attaches a producer that writes into this transport (Twisted's
    /// `IConsumer.registerProducer`). With `streaming: true` it must be a
    /// ``PushProducer``: it is paused above ``writeHighWaterMark`` and
    /// resumed at ``writeLowWaterMark``. With `streaming: false` it must be a
    /// ``PullProducer``: it is asked for a chunk each time the buffer is empty.
    /// `stopProducing()` is called when the connection is lost. While one is
    /// registered, ``loseConnection()`` waits for it to unregister (its
    /// writes still go out), then flushes and closes.
    /// - Throws: ``ProducerError`` if another producer is registered, or
    ///   `streaming` does not match the producer's kind.
    func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError)

    /// Detaches the producer (a producer calls it when it has written everything).
    func unregisterProducer()

    /// Above this many bytes in ``bufferSize`` a push producer is paused (default 64 KiB).
    var writeHighWaterMark: Int { get set }

    /// At or below this many bytes a paused push producer is resumed (default 16 KiB).
    var writeLowWaterMark: Int { get set }
}

extension Transport {
    /// Writes the bytes of a span (for example the one `dataReceived` got).
    @inlinable
    public func write(_ data: Span<UInt8>) {
        data.withUnsafeBytes { write($0) }
    }

    /// Writes an array of bytes.
    @inlinable
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes a slice of bytes.
    @inlinable
    public func write(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes a string as UTF-8.
    @inlinable
    public func write(_ string: String) {
        var string = string
        string.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Writes each chunk in order (the default for transports without a better way).
    public func writeSequence(_ chunks: [[UInt8]]) {
        for chunk in chunks { write(chunk) }
    }
}

/// A TCP connection's transport: Twisted's `ITCPTransport`.
/// Reach it from a protocol with `transport as? any TCPTransport`.
/// Threading: reactor thread only.
public protocol TCPTransport: Transport {
    /// Turns Nagle's algorithm off (`true`) or on (`uv_tcp_nodelay`).
    /// - Throws: ``UVError`` if the socket refuses, or is closed.
    func setTcpNoDelay(_ enabled: Bool) throws(UVError)

    /// Turns TCP keep-alive on or off (`uv_tcp_keepalive`); `delay` is the idle time in seconds before the first probe.
    /// - Throws: ``UVError`` if the socket refuses, or is closed.
    func setTcpKeepAlive(_ enabled: Bool, delay: Int) throws(UVError)
}

extension Span where Element == UInt8 {
    /// Copies the bytes into an array (to keep them past the callback).
    public var array: [UInt8] {
        withUnsafeBufferPointer { Array($0) }
    }

    /// Decodes the bytes as UTF-8 (invalid sequences become U+FFFD).
    public var string: String {
        withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
    }
}

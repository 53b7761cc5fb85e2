/// One connection, as a protocol sees it: Twisted's `ITransport`.
///
/// Calls are "thrown over the wall": `write` never blocks and never fails
/// in front of you; if the connection breaks, the protocol hears it in
/// `connectionLost`. Nothing written is lost unless the connection is lost
/// or aborted.
///
/// Threading: reactor thread only. From another thread, use
/// `reactor.callFromThread { transport.write(...) }`.
public protocol Transport: AnyObject {
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

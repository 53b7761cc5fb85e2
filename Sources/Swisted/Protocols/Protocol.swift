/// The logic of one connection: Twisted's `Protocol`. Subclass it and
/// override the callbacks you need.
///
/// ```swift
/// final class Echo: Protocol {
///     override func dataReceived(_ data: Span<UInt8>) throws {
///         transport!.write(data)
///     }
/// }
/// ```
///
/// Life cycle, for each connection: the factory's `buildProtocol` creates the
/// protocol; ``makeConnection(_:)`` attaches the transport and calls
/// ``connectionMade()``; ``dataReceived(_:)`` runs for each chunk of bytes, of
/// any size; ``connectionLost(_:)`` runs exactly once at the end, after
/// which the factory hears of it (`clientConnectionLost` for clients).
///
/// Errors: an error thrown from `connectionMade` or `dataReceived` closes this
/// connection only (its `connectionLost` gets the error as reason) and is
/// logged once with the peer's address; the port keeps accepting.
///
/// Threading: reactor thread only. Every callback is delivered on the
/// reactor's thread, and anything may be called from inside any callback
/// (write, loseConnection, abortConnection, stopListening, reactor.stop).
open class Protocol {
    /// The connection this protocol talks through; set by ``makeConnection(_:)``.
    // @exclusivity(unchecked): every `transport!.write` in a subclass of
    // another module paid a dynamic exclusivity check (swift_beginAccess and
    // a thread-local access set, ~76 instructions of the ~1,000 per echo
    // round trip, callgrind). Reactor-thread-only state never has
    // overlapping accesses that the check would catch.
    @exclusivity(unchecked)
    public var transport: (any Transport)?

    /// The factory that built this protocol; set by ``Factory/buildProtocol(_:)``.
    @exclusivity(unchecked)
    public var factory: Factory?

    /// True from ``makeConnection(_:)`` until ``connectionLost(_:)``.
    public var connected = false

    public required init() {}

    /// Attaches the transport, then calls ``connectionMade()``. Transports
    /// call it; in-memory tests call it with a test transport.
    /// - Throws: whatever `connectionMade` throws.
    open func makeConnection(_ transport: any Transport) throws {
        connected = true
        self.transport = transport
        try connectionMade()
    }

    /// The connection is made and the transport is ready. The place to write a greeting.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func connectionMade() throws {}

    /// Bytes arrived: a chunk of any size, as the network delivered it (tests
    /// should feed chunks down to one byte at a time).
    ///
    /// `data` is a view into the reactor's read buffer, valid only during this
    /// call: copy what you keep (`data.array`, `data.string`). Writing it
    /// back (`transport!.write(data)`) copies only what the kernel does not take at once.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func dataReceived(_ data: Span<UInt8>) throws {}

    /// The connection is closed; called exactly once. `reason` is
    /// ``ConnectionDone`` for a clean close, ``ConnectionLost`` for an
    /// unclean one, ``ConnectionAborted`` after `abortConnection()`, or the
    /// error a callback threw.
    open func connectionLost(_ reason: any Error) {}

    /// Internal hook: a `uv_write` of this protocol's stream transport
    /// completed (the queue drained that far to the kernel). The async API's
    /// bridge overrides it to learn when its writes reached the kernel; a
    /// method, not a stored closure, so no connection pays memory for it.
    func writeDrainProgressed() {}

    /// Internal hook: true if this protocol hands its stream transport the
    /// memory each read lands in (``readBuffer()``) instead of the reactor's
    /// shared slab. Asked when reading starts. The async API's bridge does,
    /// so a received chunk becomes the `[UInt8]` it yields with no copy.
    var providesReadBuffers: Bool { false }

    /// Internal hook (only called when ``providesReadBuffers``): the memory
    /// the next read lands in. It must stay valid and untouched until the
    /// read comes back: in ``dataReceived(_:)`` (whose span then lies in it),
    /// in ``readBufferUnused()``, or not at all if the connection closes.
    func readBuffer() -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: nil, count: 0) }

    /// Internal hook: the read into ``readBuffer()``'s memory found nothing
    /// (the socket was drained).
    func readBufferUnused() {}
}

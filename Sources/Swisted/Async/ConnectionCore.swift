/// The shared heart of one ``AsyncConnection``: the inbound buffer (any
/// thread, behind a lock) and the write side (reactor thread only).
///
/// Threading: `inbound` may be touched from any thread; every other stored
/// property belongs to the reactor's thread and is reached only through
/// `reactor.perform` (inline on the reactor thread, else `callFromThread`).
final class ConnectionCore: @unchecked Sendable {
    // @unchecked Sendable: the reactor-thread fields below are only touched
    // on the reactor's thread (every entry point goes through
    // `reactor.perform`); `inbound` is behind its own lock.

    let reactor: Reactor
    let inboundHighWater: Int
    let inboundLowWater: Int
    let inbound = Locked(InboundState())

    // MARK: Reactor thread only

    /// The transport, from `connectionMade` until `connectionLost`.
    private var connection: StreamConnection?
    private var lostReason: (any Error)?
    /// Bytes handed to the transport's `write` by this API so far.
    @exclusivity(unchecked) private var submitted = 0
    /// Writes waiting to be admitted (the transport is above its high-water
    /// mark), and close requests behind them, in call order.
    /// `@exclusivity(unchecked)`: reactor-thread only, and every access is
    /// one short statement (append, remove, copy out, replace), none spanning
    /// a call that could reach it again; `writeNow` reads it on every write.
    @exclusivity(unchecked) private var ops: [Op] = []
    /// Writes handed to the transport whose last byte (`target`, counted in
    /// `submitted`) has not reached the kernel yet, in order.
    private var flushWaiters: [(target: Int, waiter: OneShot<Void>)] = []
    /// `close()` or `closeWrite()` was processed: later writes fail.
    private var writeSideClosed = false
    private var closeRequested = false
    /// The write side is shut down (FIN sent): `writeConnectionLost` came.
    private var writeShut = false
    private var closeWaiters: [OneShot<Void>] = []
    private var halfCloseWaiters: [OneShot<Void>] = []

    /// The array the next read lands in (``readBuffer()``): count ==
    /// capacity while armed, empty when none is.
    /// `@exclusivity(unchecked)`: reactor-thread only, touched by short
    /// non-reentrant methods (no access overlaps another).
    @exclusivity(unchecked) private var readArray: [UInt8] = []
    /// The read size expected next, adapted to the reads seen
    /// (``adaptReadSize(after:)``).
    private var readSize = ConnectionCore.minReadSize {
        didSet { connection?.protocolGivesReadBuffer = readSize >= ConnectionCore.ownArrayReadSize }
    }
    /// Reads in a row that used less than half of the expected size.
    private var smallReads = 0
    /// Chunks that are the read array itself (no copy), for tests.
    private(set) var uncopiedChunks = 0
    /// The address of the last chunk handed over in place (the read array
    /// itself), for tests.
    private(set) var lastUncopiedChunk: UInt = 0
    /// Chunks copied into a recycled chunk's memory (``arrayCopy(of:)``), for tests.
    private(set) var recycledChunks = 0

    static let minReadSize = 1024
    static let maxReadSize = 64 * 1024
    /// From this expected size on, reads land in their own array (no copy);
    /// below it they land in the reactor's slab and are copied out (a small
    /// copy costs less than allocating an array before knowing its size).
    static let ownArrayReadSize = 16 * 1024

    enum Op: Sendable {
        case write([UInt8], OneShot<Void>)
        case closeWrite(OneShot<Void>)
        case close(OneShot<Void>)
    }

    init(reactor: Reactor, options: AsyncConnection.Options) {
        self.reactor = reactor
        inboundHighWater = max(1, options.inboundHighWaterMark)
        inboundLowWater = min(max(0, options.inboundLowWaterMark), inboundHighWater)
    }

    // MARK: Life (reactor thread)

    func attach(_ connection: StreamConnection) {
        self.connection = connection
    }

    /// `connectionLost`: every waiter hears the outcome, exactly once.
    func lost(_ reason: any Error) {
        connection = nil
        lostReason = reason
        let clean = reason is ConnectionDone
        let pendingOps = ops
        let flushing = flushWaiters
        let halfClosing = halfCloseWaiters
        let closing = closeWaiters
        ops = []
        flushWaiters = []
        halfCloseWaiters = []
        closeWaiters = []
        for op in pendingOps { fail(op, reason) }
        // A clean end (ConnectionDone) comes only after the write queue drained
        // (shutdown follows the drain; ENOTCONN there means the peer left
        // after taking everything): those bytes did reach the kernel.
        for entry in flushing { if clean { entry.waiter.succeed(()) } else { entry.waiter.fail(reason) } }
        for waiter in halfClosing { if clean { waiter.succeed(()) } else { waiter.fail(reason) } }
        for waiter in closing { waiter.succeed(()) }
        finishInbound(clean || reason is ConnectionAborted ? .clean : .failed(CarriedError(error: reason)))
    }

    private func fail(_ op: Op, _ reason: any Error) {
        switch op {
        case .write(_, let waiter): waiter.fail(reason)
        case .closeWrite(let waiter): if reason is ConnectionDone { waiter.succeed(()) } else { waiter.fail(reason) }
        case .close(let waiter): waiter.succeed(())
        }
    }

    /// The peer shut down its write side (EOF): the inbound sequence ends; writing goes on.
    func peerFinished() {
        finishInbound(.clean)
    }

    /// Our write side is shut down (after `closeWrite`).
    func writeSideShut() {
        writeShut = true
        let waiters = halfCloseWaiters
        halfCloseWaiters = []
        for waiter in waiters { waiter.succeed(()) }
    }

    /// The user dropped the last reference to the ``AsyncConnection``: close it (flushing).
    func releasedByUser() {
        guard connection != nil, !closeRequested else { return }
        submit(.close(OneShot()))
    }

    func abort() {
        connection?.abortConnection()
    }

    // MARK: Writing (reactor thread)

    /// True while the transport's write queue means what it says (open, or
    /// flushing before a close we asked for), not once it is closing.
    private var queueIsLive: Bool {
        guard let connection else { return false }
        return connection.state == .open || connection.state == .disconnecting
    }

    func submit(_ op: Op) {
        guard connection != nil else {
            if case .write(_, let waiter) = op, writeSideClosed {
                waiter.fail(AsyncConnectionError.closedForWriting)
            } else {
                fail(op, lostReason ?? ConnectionDone())
            }
            return
        }
        ops.append(op)
        pump()
    }

    /// Hands queued operations to the transport, in order, while it is below
    /// its high-water mark.
    private func pump() {
        while !ops.isEmpty {
            guard let connection, queueIsLive else { return }  // lost() fails what is left
            switch ops[0] {
            case .write(let bytes, let waiter):
                if waiter.isFinished {  // cancelled while waiting: never written
                    ops.removeFirst()
                    continue
                }
                if writeSideClosed {
                    ops.removeFirst()
                    waiter.fail(AsyncConnectionError.closedForWriting)
                    continue
                }
                guard connection.bufferSize <= connection.writeHighWaterMark else { return }
                ops.removeFirst()
                if hand(bytes, to: connection) {
                    waiter.succeed(())
                } else {
                    flushWaiters.append((submitted, waiter))
                }
            case .closeWrite(let waiter):
                ops.removeFirst()
                if writeShut || closeRequested {
                    if writeShut { waiter.succeed(()) } else { halfCloseWaiters.append(waiter) }
                    continue
                }
                halfCloseWaiters.append(waiter)
                if !writeSideClosed {
                    writeSideClosed = true
                    connection.loseWriteConnection()  // flushes, then FIN
                }
            case .close(let waiter):
                ops.removeFirst()
                closeWaiters.append(waiter)
                writeSideClosed = true
                if !closeRequested {
                    closeRequested = true
                    connection.loseConnection()  // flushes, then closes
                }
            }
        }
    }

    /// What ``writeNow(_:)`` did.
    enum ImmediateWrite {
        /// Not taken (writes are waiting ahead, the write side is closed or
        /// closing, or the transport is above its high-water mark): queue it.
        case notTaken
        /// Handed to the transport, and every byte reached the kernel.
        case done
        /// Handed to the transport; the waiter hears when the bytes reached
        /// the kernel (or the connection was lost first).
        case flushing(OneShot<Void>)
    }

    /// The fast path of ``AsyncConnection/write(_:)`` for a task already on
    /// the reactor's thread: when nothing waits ahead of it and the
    /// transport is at or below its high-water mark, the bytes are handed to
    /// the transport at once, exactly as ``pump()`` would hand them; most
    /// writes then reach the kernel at once and the caller returns without
    /// suspending (no waiter, no continuation, no job).
    func writeNow(_ bytes: [UInt8]) -> ImmediateWrite {
        guard let connection, ops.isEmpty, !writeSideClosed, queueIsLive,
              connection.bufferSize <= connection.writeHighWaterMark else { return .notTaken }
        if hand(bytes, to: connection) { return .done }
        let waiter = OneShot<Void>()
        flushWaiters.append((submitted, waiter))
        return .flushing(waiter)
    }

    /// Writes `bytes` to the transport (counted in `submitted`); true if the
    /// kernel took them all at once. False: they are queued (a flush waiter
    /// must wait for `submitted`), or the write failed and the connection is
    /// closing (``lost(_:)`` fails the waiter).
    private func hand(_ bytes: [UInt8], to connection: StreamConnection) -> Bool {
        bytes.withUnsafeBytes { connection.write($0) }
        submitted += bytes.count
        return queueIsLive && connection.bufferSize == 0
    }

    /// A `uv_write` completed: writers whose bytes all reached the kernel
    /// return, and waiting writes may be admitted.
    /// A `uv_write` completed (``AsyncBridge/writeDrainProgressed()``).
    func drainProgressed() {
        guard let connection, queueIsLive else { return }
        let handed = submitted - connection.bufferSize
        var done = 0
        while done < flushWaiters.count, flushWaiters[done].target <= handed { done += 1 }
        if done > 0 {
            let finished = flushWaiters[..<done]
            flushWaiters.removeFirst(done)
            for entry in finished { entry.waiter.succeed(()) }
        }
        pump()
    }

    // MARK: Reading

    enum End {
        case clean
        case failed(CarriedError)
    }

    struct InboundState: SingleConsumerState {
        var chunks: [[UInt8]] = []
        var head = 0
        var buffered = 0
        var end: End?
        var consumer = ConsumerSlot<[UInt8]>()
        /// We paused the transport's reading (buffer above the high-water mark).
        var paused = false
        var resumeScheduled = false
        // Statistics, for tests.
        var maxBuffered = 0
        var pauseCount = 0

        enum Step {
            case chunk([UInt8], resumeReading: Bool)
            case end
            case failed(CarriedError)
        }

        /// The next step for the reader; nil: wait.
        mutating func take(lowWater: Int) -> Step? {
            if head < chunks.count {
                let chunk = chunks[head]
                chunks[head] = []
                head += 1
                if head == chunks.count {
                    chunks.removeAll(keepingCapacity: true)
                    head = 0
                } else if head >= 32, head * 2 >= chunks.count {
                    chunks.removeFirst(head)
                    head = 0
                }
                buffered -= chunk.count
                var resume = false
                if paused, !resumeScheduled, end == nil, buffered <= lowWater {
                    resumeScheduled = true
                    resume = true
                }
                return .chunk(chunk, resumeReading: resume)
            }
            switch end {
            case .clean: return .end
            case .failed(let error): return .failed(error)
            case nil: return nil
            }
        }
    }

    // MARK: Read memory (reactor thread)

    /// The memory the next read lands in: when large reads are expected
    /// (``ownArrayReadSize``), an array of ``readSize`` bytes (count set,
    /// contents not yet written) that becomes the chunk itself when the read
    /// fills at least half of it (``chunk(of:)``): one allocation, no copy.
    /// Otherwise none: the read lands in the reactor's slab and is copied.
    ///
    /// The pointer escapes `withUnsafeMutableBytes`: valid because the array
    /// is uniquely referenced by `readArray` and neither copied nor resized
    /// until the read callback, which runs right after the read, on this thread.
    func readBuffer() -> UnsafeMutableRawBufferPointer {
        guard readSize >= ConnectionCore.ownArrayReadSize else {
            readArray = []
            return UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        if readArray.count != readSize {
            let size = readSize
            if reactor.spareReadArray.count == size {
                readArray = reactor.spareReadArray
                reactor.spareReadArray = []  // `readArray` is now its only reference
            } else {
                // Uninitialized UInt8s (a trivial type): the kernel writes the
                // bytes that are kept; the rest is cut off unread.
                readArray = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
            }
        }
        return readArray.withUnsafeMutableBytes { $0 }
    }

    /// The read into ``readBuffer()``'s memory found nothing (the socket is
    /// drained): the array goes to the reactor's one spare (the next large
    /// read, on any connection, uses it), so an idle connection holds none.
    func readBufferUnused() {
        guard !readArray.isEmpty else { return }
        reactor.spareReadArray = readArray
        readArray = []
    }

    /// The received bytes as an array: the read array itself when the bytes
    /// lie in it and fill at least half of it (so a chunk's capacity is at
    /// most twice its size), else a copy. Either way the connection keeps no
    /// read array afterwards (an idle connection holds none).
    private func chunk(of data: Span<UInt8>) -> [UInt8] {
        let count = data.count
        adaptReadSize(after: count)
        let size = readArray.count
        guard size > 0, data.withUnsafeBufferPointer({ bytes in
            readArray.withUnsafeBytes { $0.baseAddress == UnsafeRawPointer(bytes.baseAddress) }
        }) else { return arrayCopy(of: data) }
        guard count * 2 >= size else {
            // Mostly empty: copy the bytes out (while the array still holds
            // them), then free the array.
            let copy = arrayCopy(of: data)
            readArray = []
            return copy
        }
        var chunk = readArray
        readArray = []  // `chunk` is now the only reference: trimming it moves nothing
        chunk.removeSubrange(count...)  // a count change: nothing moves, capacity stays
        uncopiedChunks += 1
        lastUncopiedChunk = chunk.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        return chunk
    }

    /// `data` as a new array: in the memory of the last chunk copied out
    /// (``Reactor/recycledChunk``) if its reader has let it go and it fits
    /// (its capacity at least `data`'s size and at most twice it, as any
    /// chunk's), else in a new one, which is kept for the next copy. Only
    /// this reactor's thread takes and refills the recycled chunk, and only
    /// when nothing else references it (Swift's release on the reader's
    /// thread orders before the uniqueness check here), so no reader ever
    /// sees its bytes change. Only copied chunks are kept: a reader that
    /// mutates a chunk right away copies it once while the reactor still
    /// holds it, which for a large chunk read in place would cost more than
    /// its allocation.
    private func arrayCopy(of data: Span<UInt8>) -> [UInt8] {
        guard reactor.recyclesChunks else { return data.array }
        var chunk = reactor.recycledChunk
        reactor.recycledChunk = []  // `chunk` is now its only reference, unless a reader still holds it
        let count = data.count
        if chunk.capacity >= count, chunk.capacity <= 2 * count {
            // Unreferenced elsewhere: emptied in place (the same memory);
            // else new memory of that capacity.
            let memory = chunk.withUnsafeBufferPointer { $0.baseAddress }
            chunk.removeAll(keepingCapacity: true)
            data.withUnsafeBufferPointer { chunk.append(contentsOf: $0) }
            if chunk.withUnsafeBufferPointer({ $0.baseAddress }) == memory { recycledChunks += 1 }
        } else {
            chunk = data.array
        }
        reactor.recycledChunk = chunk
        return chunk
    }

    /// Grows the expected read size at once when a read reached it (there
    /// may be more), shrinks it after four reads in a row used less than half.
    private func adaptReadSize(after count: Int) {
        if count >= readSize {
            smallReads = 0
            readSize = min(readSize * 4, ConnectionCore.maxReadSize)
        } else if count * 2 < readSize {
            smallReads += 1
            if smallReads >= 4 {
                smallReads = 0
                readSize = max(readSize / 2, ConnectionCore.minReadSize)
            }
        } else {
            smallReads = 0
        }
    }

    /// `dataReceived` (reactor thread): hand the chunk to a waiting reader or
    /// buffer it; pause reading the socket above the high-water mark.
    func received(_ data: Span<UInt8>) {
        let chunk = chunk(of: data)
        let high = inboundHighWater
        let (reader, pause) = inbound.withLock { state -> (ConsumerSlot<[UInt8]>.Waiter?, Bool) in
            guard state.end == nil else { return (nil, false) }
            if let waiter = state.consumer.takeWaiter() {
                return (waiter, false)
            }
            state.chunks.append(chunk)
            state.buffered += chunk.count
            state.maxBuffered = max(state.maxBuffered, state.buffered)
            guard !state.paused, state.buffered > high else { return (nil, false) }
            state.paused = true
            state.pauseCount += 1
            return (nil, true)
        }
        reader?.resume(with: .success(chunk), from: reactor)
        if pause { connection?.pauseProducing() }
    }

    private func finishInbound(_ end: End) {
        let reader = inbound.withLock { state -> ConsumerSlot<[UInt8]>.Waiter? in
            guard state.end == nil else { return nil }
            state.end = end
            return state.consumer.takeWaiter()
        }
        guard let reader else { return }
        switch end {
        case .clean: reader.resume(with: .success(nil), from: reactor)
        case .failed(let carried): reader.resume(with: .failure(carried.error), from: reactor)
        }
    }

    /// Reactor thread: the reader drained the buffer to the low-water mark.
    private func resumeReadingIfDrained() {
        let low = inboundLowWater
        let resume = inbound.withLock { state -> Bool in
            state.resumeScheduled = false
            guard state.paused, state.end == nil, state.buffered <= low else { return false }
            state.paused = false
            return true
        }
        if resume, let connection, queueIsLive { connection.resumeProducing() }
    }

    /// The next chunk for the inbound sequence (any thread).
    /// `nonisolated(nonsending)`: it runs in the caller's isolation, so an
    /// actor (or a task) on the reactor's executor makes no executor switch.
    /// `isolatedToReactor`: that caller is an actor on the reactor (see
    /// ``ConsumerSlot/Waiter``).
    @inline(__always)  // one async frame and one executor check less per read
    nonisolated(nonsending) func nextChunk(isolatedToReactor: Bool) async throws -> [UInt8]? {
        let low = inboundLowWater
        return try await inbound.nextElement(isolatedToReactor: isolatedToReactor) { state in
            state.take(lowWater: low)
        } deliver: { step in
            switch step {
            case .chunk(let chunk, let resume):
                if resume { reactor.perform { self.resumeReadingIfDrained() } }
                return chunk
            case .end:
                return nil
            case .failed(let carried):
                throw carried.error
            }
        }
    }

    // MARK: Test access (reactor thread)

    /// The connection holds a read array (between a read's alloc and read callbacks only).
    var holdsReadArray: Bool { !readArray.isEmpty }
    /// The read size expected next.
    var expectedReadSize: Int { readSize }
    /// Bytes written but not yet with the kernel (0 once lost).
    var transportBufferSize: Int { connection?.bufferSize ?? 0 }
    /// Writes waiting for admission.
    var waitingOps: Int { ops.count }
    /// `close()` reached the transport.
    var closeWasRequested: Bool { closeRequested }
    /// Bytes handed to the transport so far.
    var bytesSubmitted: Int { submitted }
    /// The transport's high-water mark (settable for tests), or 0 once lost.
    var writeHighWaterMark: Int {
        get { connection?.writeHighWaterMark ?? 0 }
        set { connection?.writeHighWaterMark = newValue }
    }
}

/// The protocol under every ``AsyncConnection``: forwards the transport's
/// callbacks to the ``ConnectionCore``. Half-closeable, so the peer's EOF
/// ends the inbound sequence while writing goes on.
/// Threading: reactor thread only.
final class AsyncBridge: Protocol, HalfCloseableProtocol {
    var core: ConnectionCore?
    /// Called with the new connection once `connectionMade` ran.
    var onMade: ((AsyncConnection) -> Void)?

    /// What the async factories build: a bridge with a fresh ``ConnectionCore``
    /// (`options` for its inbound buffer), made by `factory`; `onMade` hears
    /// the ``AsyncConnection`` once the transport is connected.
    convenience init(reactor: Reactor, options: AsyncConnection.Options, factory: Factory,
                     onMade: @escaping (AsyncConnection) -> Void) {
        self.init()
        core = ConnectionCore(reactor: reactor, options: options)
        self.factory = factory
        self.onMade = onMade
    }

    override func connectionMade() throws {
        guard let core, let stream = transport as? StreamConnection else {
            transport?.abortConnection()  // only real stream connections carry the async API
            return
        }
        core.attach(stream)
        let connection = AsyncConnection(core: core, peerAddress: stream.getPeer(), localAddress: stream.getHost())
        let made = onMade
        onMade = nil
        made?(connection)
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        core?.received(data)
    }

    override func writeDrainProgressed() {
        core?.drainProgressed()
    }

    override var providesReadBuffers: Bool { core != nil }

    override func readBuffer() -> UnsafeMutableRawBufferPointer {
        core?.readBuffer() ?? UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    override func readBufferUnused() {
        core?.readBufferUnused()
    }

    override func connectionLost(_ reason: any Error) {
        onMade = nil
        core?.lost(reason)
    }

    func readConnectionLost() {
        core?.peerFinished()
    }

    func writeConnectionLost() {
        core?.writeSideShut()
    }
}

import CLibUV
import Logging

/// A connected libuv stream and the protocol on it: the transport of every
/// TCP and Unix-socket connection.
///
/// Data path (see DESIGN.md): reads land in the reactor's one slab and reach
/// `dataReceived` as a `Span` with no copy; writes go straight to the kernel
/// with `uv_try_write`, and only the part it does not take is copied into
/// `pending`. At most one `uv_write` is in flight; whatever is written
/// meanwhile collects in `pending` and goes out in the next one.
///
/// Life: `connecting` (client attempts only) → `open` → `disconnecting`
/// (after `loseConnection`, until the queue drains and `uv_shutdown` is
/// done) → `closing` (`uv_close` called) → `closed` (close callback:
/// `connectionLost` delivered, exactly once). Half-close and producers add
/// flags within `open`: `loseWhenProducerDone`, `writeShutdownRequested`,
/// `writeShut`, `readShut`, `readingPaused`.
///
/// Reactor thread only.
class StreamConnection: HandleOwning, Transport {
    enum State { case connecting, open, disconnecting, closing, closed }

    final let reactor: Reactor
    final let stream: UnsafeMutablePointer<uv_stream_t>
    final var proto: Protocol?
    /// The protocol's ``Protocol/readBuffer()`` gives the next read's memory
    /// (set by a protocol with ``Protocol/providesReadBuffers`` when it
    /// wants its own memory, large reads; otherwise the read lands in the
    /// reactor's slab without asking it).
    final var protocolGivesReadBuffer = false
    /// The connector of a client connection: hears of a failed attempt or a lost connection.
    final var connector: Connector?
    final private(set) var state: State
    /// True once `start(with:)` ran: the connection was made and a protocol attached.
    final private(set) var established = false
    final private var closeReason: (any Error)?
    /// The part of the writes the kernel did not take at once; made on the
    /// first such write (an idle connection carries one pointer, not two
    /// buffers and a request: memory per idle connection is a benchmark target).
    final private var queue: WriteQueue?
    final private var writing = false
    final private var shutdownInFlight = false

    // Flow control: the consumer side (a producer feeding us) ...
    final private var producer: (any Producer)?
    final private var producerIsStreaming = false
    final private var producerPaused = false
    final private var pullScheduled = false
    /// Bytes accepted by `write` so far (tells a pull producer's round that wrote from one that did not).
    final private var bytesAccepted = 0
    /// `loseConnection` was called while a producer was registered: close once it unregisters.
    final private var loseWhenProducerDone = false
    // ... and the producer side (our own reading, paused by whoever consumes it).
    final private var readingPaused = false
    final private var reading = false
    // Half-close.
    final private var writeShutdownRequested = false
    final private var writeShut = false
    final private var readShut = false

    private final var highWater: Int32 = 64 * 1024
    private final var lowWater: Int32 = 16 * 1024

    public final var writeHighWaterMark: Int {
        get { Int(highWater) }
        set { highWater = Int32(clamping: newValue) }
    }

    public final var writeLowWaterMark: Int {
        get { Int(lowWater) }
        set { lowWater = Int32(clamping: newValue) }
    }

    /// Takes ownership of an initialized stream handle (adopts it).
    init(reactor: Reactor, stream: UnsafeMutablePointer<uv_stream_t>, state: State) {
        self.reactor = reactor
        self.stream = stream
        self.state = state
        UVHandle.adopt(stream, owner: self)
    }


    /// Reads the local and peer addresses from the socket (after accept or
    /// connect), for `getPeer`/`getHost`. Subclasses: TCP reads them, Unix knows them.
    func readAddresses() {}

    // MARK: Life

    /// The connection is made: attach the protocol, tell it (`makeConnection`
    /// → `connectionMade`), then start reading unless it closed or paused meanwhile.
    /// The caller has read the addresses (`readAddresses`) to build the protocol.
    final func start(with proto: Protocol) {
        self.proto = proto
        state = .open
        established = true
        do {
            try proto.makeConnection(self)
        } catch {
            fail(error, in: "connectionMade")
            return
        }
        updateReading()
    }

    /// Reads while open (or draining after loseConnection) and not paused; stops otherwise.
    private func updateReading() {
        let wanted = (state == .open || state == .disconnecting) && !readingPaused && !readShut
        guard wanted != reading else { return }
        if wanted {
            // A protocol that owns its read buffers (the async bridge) gets
            // reads in its own memory; every other one shares the reactor's slab.
            let rc = proto?.providesReadBuffers == true
                ? uv_read_start(stream, streamOwnBufferAllocCallback, streamOwnBufferReadCallback)
                : uv_read_start(stream, streamAllocCallback, streamReadCallback)
            if rc < 0 {
                closeNow(ConnectionLost(UVError(code: rc)))
                return
            }
        } else if state != .closing, state != .closed {
            uvMustSucceed(uv_read_stop(stream), "uv_read_stop")
        }
        reading = wanted
    }

    @inline(__always)
    final func didRead(_ nread: Int, _ base: UnsafeMutablePointer<CChar>?) {
        if nread > 0 {
            // After loseConnection we keep reading (so the kernel does not
            // answer the peer's late bytes with a reset that could destroy
            // our last writes) but no longer deliver.
            guard state == .open, !loseWhenProducerDone, let proto = proto.map(Unmanaged.passUnretained) else { return }
            let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(base!).assumingMemoryBound(to: UInt8.self), count: nread)
            do {
                // Borrowed, not retained (a retain/release pair per read,
                // callgrind): `self.proto` keeps it alive until the close
                // callback, which cannot run inside this read callback.
                try proto._withUnsafeGuaranteedRef { try $0.dataReceived(bytes.span) }
            } catch {
                fail(error, in: "dataReceived")
            }
        } else if nread < 0 {
            let error = UVError(code: Int32(truncatingIfNeeded: nread))
            if error == .endOfFile {
                peerClosedWriting()
            } else {
                closeNow(ConnectionLost(error))
            }
        }
    }

    /// EOF: the peer shut down its write side.
    private func peerClosedWriting() {
        readShut = true
        updateReading()
        if state == .disconnecting {
            return  // we still flush, then close
        }
        guard let halfCloseable = proto as? HalfCloseableProtocol else {
            closeNow(ConnectionDone())  // not opted in: EOF is the end
            return
        }
        halfCloseable.readConnectionLost()
        if writeShut { closeNow(ConnectionDone()) }
    }

    /// A protocol callback threw: log it once with the peer, close this connection with the error as reason.
    final func fail(_ error: any Error, in callback: String, of protocolType: Any.Type? = nil) {
        let name = protocolType.map { String(describing: $0) } ?? proto.map { String(describing: type(of: $0)) } ?? "Protocol"
        let peer = String(describing: getPeer())
        reactor.logError("Unhandled error in \(name).\(callback) (peer \(peer)): \(error); closing the connection",
                         metadata: ["peer": .string(peer), "protocol": .string(name)])
        closeNow(error)
    }

    /// Closes the handle now; `connectionLost(reason)` follows from the close callback.
    final func closeNow(_ reason: any Error) {
        guard state != .closing, state != .closed else { return }
        state = .closing
        closeReason = reason
        UVHandle.close(stream, callback: streamConnectionCloseCallback)
    }

    final func handleDidClose() {
        state = .closed
        queue = nil  // libuv has called back every write request by now
        let reason = closeReason ?? ConnectionDone()
        closeReason = nil
        if let producer {
            self.producer = nil
            producer.stopProducing()
        }
        if let proto {
            self.proto = nil
            proto.connected = false
            proto.connectionLost(reason)
        }
        if let connector {
            self.connector = nil
            if established {
                connector.connectionLost(reason)
            } else {
                connector.attemptClosed()
            }
        }
    }

    final func reactorWillShutDown() {
        closeNow(established ? ConnectionLost(detail: "the reactor stopped") : UserError("The reactor stopped before the connection was made."))
    }

    // MARK: Writing

    /// True while `write` accepts bytes: open, write side not shut, and not
    /// after `loseConnection` (unless a producer still feeds us).
    private var acceptsWrites: Bool {
        state == .open && !writeShutdownRequested && (!loseWhenProducerDone || producer != nil)
    }

    final func write(_ data: UnsafeRawBufferPointer) {
        reactor.assertOnReactorThread()
        guard acceptsWrites, data.count > 0 else { return }
        bytesAccepted &+= data.count
        if writing {
            queue!.pending.append(data)
            checkHighWater()
            return
        }
        var buffer = uv_buf_t(base: UnsafeMutableRawPointer(mutating: data.baseAddress!).assumingMemoryBound(to: CChar.self), len: data.count)
        let written = Int(uv_try_write(stream, &buffer, 1))
        if written == data.count { return }
        if written < 0, written != Int(UV_EAGAIN.rawValue) {
            closeNow(ConnectionLost(UVError(code: Int32(written))))
            return
        }
        let queue = self.queue ?? makeQueue()
        queue.pending.append(UnsafeRawBufferPointer(rebasing: data[max(0, written)...]))
        flush(queue)
        checkHighWater()
    }

    private func makeQueue() -> WriteQueue {
        let queue = WriteQueue(owner: self)
        self.queue = queue
        return queue
    }

    /// Hands everything pending to one `uv_write`.
    private func flush(_ queue: WriteQueue) {
        swap(&queue.pending, &queue.inFlight)
        var buffer = uv_buf_t(base: queue.inFlight.base!.assumingMemoryBound(to: CChar.self), len: queue.inFlight.count)
        let rc = uv_write(queue.request, stream, &buffer, 1, streamWriteCallback)
        if rc < 0 {
            queue.inFlight.clear()
            closeNow(ConnectionLost(UVError(code: rc)))
            return
        }
        writing = true
    }

    final func writeCompleted(_ status: Int32) {
        writing = false
        let queue = self.queue!
        queue.inFlight.clear()
        if status < 0 {
            // ECANCELED: we closed the handle; the close callback reports why.
            if status != UV_ECANCELED.rawValue { closeNow(ConnectionLost(UVError(code: status))) }
            return
        }
        guard state == .open || state == .disconnecting else { return }
        if !queue.pending.isEmpty {
            flush(queue)
        }
        if !writing {
            drained()
        } else {
            checkLowWater()
        }
        // The async API learns here how far the queue drained (one vtable
        // call per completed uv_write; nothing on the plain write path).
        proto?.writeDrainProgressed()
    }

    /// Everything written so far is with the kernel.
    private func drained() {
        if state == .disconnecting || writeShutdownRequested {
            beginShutdown()
            return
        }
        checkLowWater()
        if producer != nil, !producerIsStreaming { schedulePull() }
    }

    final func loseConnection() {
        reactor.assertOnReactorThread()
        guard state == .open, !loseWhenProducerDone else { return }
        if producer != nil {
            // Twisted's rule: wait for the producer to finish (unregister), then flush and close.
            loseWhenProducerDone = true
            return
        }
        state = .disconnecting
        if writeShut {
            closeNow(ConnectionDone())  // the write side is already shut down and flushed
        } else if !writing {
            beginShutdown()
        }
    }

    final func loseWriteConnection() {
        reactor.assertOnReactorThread()
        guard state == .open, !writeShutdownRequested else { return }
        writeShutdownRequested = true
        if !writing { beginShutdown() }
    }

    /// Everything is written: send FIN (`uv_shutdown`). After `loseConnection`
    /// the handle closes next; after `loseWriteConnection` reading goes on.
    private func beginShutdown() {
        guard !shutdownInFlight, !writeShut else { return }
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = uv_shutdown(request, stream, streamShutdownCallback)
        if rc < 0 {
            request.deallocate()
            // ENOTCONN: the peer is gone already; everything we wrote was handed over.
            closeNow(rc == UV_ENOTCONN.rawValue ? ConnectionDone() : ConnectionLost(UVError(code: rc)))
            return
        }
        shutdownInFlight = true
    }

    final func shutdownCompleted(_ status: Int32) {
        shutdownInFlight = false
        if status == UV_ECANCELED.rawValue { return }
        if status < 0, status != UV_ENOTCONN.rawValue {
            closeNow(ConnectionLost(UVError(code: status)))
            return
        }
        writeShut = true
        if state == .disconnecting || status < 0 || readShut {
            closeNow(ConnectionDone())
            return
        }
        (proto as? HalfCloseableProtocol)?.writeConnectionLost()
    }

    final func abortConnection() {
        reactor.assertOnReactorThread()
        guard state == .open || state == .disconnecting else { return }
        closeNow(ConnectionAborted())
    }

    final var bufferSize: Int {
        guard state != .closed, state != .closing else { return 0 }
        return (queue?.pending.count ?? 0) + Int(stream.pointee.write_queue_size)
    }

    final var disconnecting: Bool { state != .open || loseWhenProducerDone }

    // MARK: Consumer: a producer writing into this transport

    final func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {
        reactor.assertOnReactorThread()
        if let current = self.producer {
            throw ProducerError("cannot register \(type(of: producer)): \(type(of: current)) is registered and was never unregistered")
        }
        if streaming, !(producer is any PushProducer) {
            throw ProducerError("\(type(of: producer)) is registered as streaming but is not a PushProducer")
        }
        if !streaming, !(producer is any PullProducer) {
            throw ProducerError("\(type(of: producer)) is registered as non-streaming but is not a PullProducer")
        }
        guard state == .open || state == .connecting else {
            producer.stopProducing()  // Twisted: registering on a closed transport stops the producer
            return
        }
        self.producer = producer
        producerIsStreaming = streaming
        producerPaused = false
        if streaming {
            checkHighWater()
        } else {
            schedulePull()
        }
    }

    final func unregisterProducer() {
        reactor.assertOnReactorThread()
        producer = nil
        producerPaused = false
        if loseWhenProducerDone {
            loseWhenProducerDone = false
            loseConnection()
        }
    }

    /// A push producer is paused when the queue passes the high-water mark.
    @inline(__always)
    private func checkHighWater() {
        guard producerIsStreaming, !producerPaused, let producer, bufferSize > Int(highWater) else { return }
        producerPaused = true
        (producer as! any PushProducer).pauseProducing()
    }

    /// ... and resumed when it drains to the low-water mark.
    private func checkLowWater() {
        guard producerIsStreaming, producerPaused, let producer, bufferSize <= Int(lowWater) else { return }
        producerPaused = false
        (producer as! any PushProducer).resumeProducing()
    }

    /// A pull producer is asked for more each time the queue is empty. A
    /// round whose bytes the kernel took at once leaves nothing to drain, so
    /// the next round is scheduled here (from the loop, not recursively).
    private func schedulePull() {
        guard !pullScheduled else { return }
        pullScheduled = true
        reactor.callSoon { [self] in
            pullScheduled = false
            guard acceptsWrites, !producerIsStreaming, let producer = producer as? any PullProducer, bufferSize == 0 else { return }
            let before = bytesAccepted
            producer.resumeProducing()
            if self.producer != nil, bytesAccepted != before, bufferSize == 0, !writing { schedulePull() }
        }
    }

    // MARK: Producer: our own reading

    final func pauseProducing() {
        reactor.assertOnReactorThread()
        readingPaused = true
        updateReading()
    }

    final func resumeProducing() {
        reactor.assertOnReactorThread()
        readingPaused = false
        updateReading()
    }

    final func stopProducing() {
        loseConnection()
    }

    /// The other end's address (overridden per socket family).
    func getPeer() -> any Address { preconditionFailure("StreamConnection subclasses provide getPeer") }

    /// This end's address (overridden per socket family).
    func getHost() -> any Address { preconditionFailure("StreamConnection subclasses provide getHost") }
}

/// The write-side buffers of a connection that had to queue: `pending`
/// collects writes while `inFlight` is with one `uv_write` (`request`).
/// Freed with the connection, after libuv has called the request back.
final class WriteQueue {
    var pending = WriteBuffer()
    var inFlight = WriteBuffer()
    let request: UnsafeMutablePointer<uv_write_t>

    init(owner: StreamConnection) {
        request = .allocate(capacity: 1)
        // The handle holds the connection until its close callback, which
        // libuv runs after every write callback: an unretained pointer is safe.
        request.pointee.data = Unmanaged.passUnretained(owner).toOpaque()
    }

    deinit {
        pending.release()
        inFlight.release()
        request.deallocate()
    }
}

// Hot-path callbacks: plain nonisolated functions, owner borrowed without
// retain/release (the handle's reference keeps it alive). Measured in
// DESIGN.md: each of these saves ~280 instructions per echo round trip.

private func streamAllocCallback(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    Reactor.of(handle!.pointee.loop)._withUnsafeGuaranteedRef { reactor in
        buffer!.pointee = uv_buf_t(base: reactor.readSlab.assumingMemoryBound(to: CChar.self), len: Reactor.readSlabSize)
    }
}

private func streamReadCallback(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    Unmanaged<StreamConnection>.fromOpaque(stream!.pointee.data)._withUnsafeGuaranteedRef {
        $0.didRead(nread, buffer!.pointee.base)
    }
}

/// The alloc callback of a protocol with ``Protocol/providesReadBuffers``:
/// the read lands in the protocol's memory when it wants to give some
/// (``StreamConnection/protocolGivesReadBuffer``), else in the slab.
private func streamOwnBufferAllocCallback(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    let memory = Unmanaged<StreamConnection>.fromOpaque(handle!.pointee.data)._withUnsafeGuaranteedRef {
        $0.protocolGivesReadBuffer ? $0.proto?.readBuffer() : nil
    }
    guard let memory, let base = memory.baseAddress, memory.count > 0 else {
        streamAllocCallback(handle, suggested, buffer)
        return
    }
    buffer!.pointee = uv_buf_t(base: base.assumingMemoryBound(to: CChar.self), len: memory.count)
}

private func streamOwnBufferReadCallback(_ stream: UnsafeMutablePointer<uv_stream_t>?, _ nread: Int, _ buffer: UnsafePointer<uv_buf_t>?) {
    // The async API's reads: the task they woke runs at the end (see Reactor.asyncRead).
    Reactor.of(stream!.pointee.loop)._withUnsafeGuaranteedRef { reactor in
        reactor.asyncRead {
            Unmanaged<StreamConnection>.fromOpaque(stream!.pointee.data)._withUnsafeGuaranteedRef {
                if nread <= 0 { $0.proto?.readBufferUnused() }
                $0.didRead(nread, buffer!.pointee.base)
            }
        }
    }
}

private func streamWriteCallback(_ request: UnsafeMutablePointer<uv_write_t>?, _ status: Int32) {
    Unmanaged<StreamConnection>.fromOpaque(request!.pointee.data)._withUnsafeGuaranteedRef {
        $0.writeCompleted(status)
    }
}

private func streamShutdownCallback(_ request: UnsafeMutablePointer<uv_shutdown_t>?, _ status: Int32) {
    let owner = request!.pointee.data!
    request!.deallocate()
    Unmanaged<StreamConnection>.fromOpaque(owner)._withUnsafeGuaranteedRef {
        $0.shutdownCompleted(status)
    }
}

/// A TCP connection (`uv_tcp_t`).
final class TCPConnection: StreamConnection, TCPTransport {
    /// The handle, as the `uv_tcp_t` it is (the same memory as `stream`).
    var tcp: UnsafeMutablePointer<uv_tcp_t> {
        UnsafeMutableRawPointer(stream).assumingMemoryBound(to: uv_tcp_t.self)
    }

    /// Creates an unconnected TCP handle on the reactor's loop.
    /// - Throws: ``UVError`` from `uv_tcp_init_ex` (for example `EMFILE`).
    init(reactor: Reactor, state: State, family: Int32 = AF_UNSPEC) throws(UVError) {
        let tcp = UVHandle.allocate(uv_tcp_t.self)
        let rc = uv_tcp_init_ex(reactor.loop, tcp, UInt32(family))
        if rc < 0 {
            UVHandle.deallocateUninitialized(tcp)
            throw UVError(code: rc)
        }
        super.init(reactor: reactor, stream: UVHandle.asStream(tcp), state: state)
    }

    private var peerAddress: SocketAddress?

    override func getPeer() -> any Address {
        peerAddress?.address(type: .tcp) ?? IPv4Address(type: .tcp, host: "0.0.0.0", port: 0)
    }

    override func getHost() -> any Address {
        // Read when asked (rarely), not kept per connection.
        guard state != .closed, state != .closing,
              let host = SocketAddress.read({ uv_tcp_getsockname(tcp, $0, $1) }) else {
            return IPv4Address(type: .tcp, host: "0.0.0.0", port: 0)
        }
        return host.address(type: .tcp)
    }

    override func readAddresses() {
        peerAddress = SocketAddress.read { uv_tcp_getpeername(tcp, $0, $1) }
    }

    func setTcpNoDelay(_ enabled: Bool) throws(UVError) {
        reactor.assertOnReactorThread()
        guard state == .open || state == .disconnecting else { throw UVError(UV_EBADF) }
        try uvCheck(uv_tcp_nodelay(tcp, enabled ? 1 : 0))
    }

    func setTcpKeepAlive(_ enabled: Bool, delay: Int = 60) throws(UVError) {
        reactor.assertOnReactorThread()
        guard state == .open || state == .disconnecting else { throw UVError(UV_EBADF) }
        try uvCheck(uv_tcp_keepalive(tcp, enabled ? 1 : 0, UInt32(max(1, delay))))
    }
}

/// The close callback of a connection's handle. Its owner is always the
/// `StreamConnection` that adopted it, so `handleDidClose` is called directly
/// (no `as! HandleOwning` lookup per connection: issue #7).
private func streamConnectionCloseCallback(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    UVHandle.finishClose(handle, owner: StreamConnection.self)
}

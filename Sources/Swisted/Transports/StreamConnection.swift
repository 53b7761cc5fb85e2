import CLibUV

/// A connected libuv stream and the protocol on it: the transport of every
/// TCP connection (and, later, Unix-socket connection).
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
/// `connectionLost` delivered, exactly once).
///
/// Reactor thread only.
class StreamConnection: HandleOwning, Transport {
    enum State { case connecting, open, disconnecting, closing, closed }

    final let reactor: Reactor
    final let stream: UnsafeMutablePointer<uv_stream_t>
    final var proto: Protocol?
    /// The connector of a client connection: hears of a failed attempt or a lost connection.
    final var connector: Connector?
    final private(set) var state: State
    /// True once `start(with:)` ran: the connection was made and a protocol attached.
    final private(set) var established = false
    final private var closeReason: (any Error)?
    final private var pending = WriteBuffer()
    final private var inFlight = WriteBuffer()
    final private var writeRequest: UnsafeMutablePointer<uv_write_t>?
    final private var writing = false

    /// Takes ownership of an initialized stream handle (adopts it).
    init(reactor: Reactor, stream: UnsafeMutablePointer<uv_stream_t>, state: State) {
        self.reactor = reactor
        self.stream = stream
        self.state = state
        UVHandle.adopt(stream, owner: self)
    }

    deinit {
        pending.release()
        inFlight.release()
    }

    /// Reads the local and peer addresses from the socket (after accept or
    /// connect), for `getPeer`/`getHost`. Subclasses: TCP reads them, Unix knows them.
    func readAddresses() {}

    // MARK: Life

    /// The connection is made: attach the protocol, tell it (`makeConnection`
    /// → `connectionMade`), then start reading unless it already closed.
    final func start(with proto: Protocol) {
        readAddresses()
        self.proto = proto
        state = .open
        established = true
        do {
            try proto.makeConnection(self)
        } catch {
            fail(error, in: "connectionMade")
            return
        }
        guard state == .open || state == .disconnecting else { return }
        let rc = uv_read_start(stream, streamAllocCallback, streamReadCallback)
        if rc < 0 { closeNow(ConnectionLost(UVError(code: rc))) }
    }

    @inline(__always)
    final func didRead(_ nread: Int, _ base: UnsafeMutablePointer<CChar>?) {
        if nread > 0 {
            // After loseConnection we keep reading (so the kernel does not
            // answer the peer's late bytes with a reset that could destroy
            // our last writes) but no longer deliver.
            guard state == .open, let proto else { return }
            let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(base!).assumingMemoryBound(to: UInt8.self), count: nread)
            do {
                try proto.dataReceived(bytes.span)
            } catch {
                fail(error, in: "dataReceived")
            }
        } else if nread < 0 {
            let error = UVError(code: Int32(truncatingIfNeeded: nread))
            if error == .endOfFile {
                if state == .disconnecting {
                    // The peer is done sending; we still flush, then close.
                    uvMustSucceed(uv_read_stop(stream), "uv_read_stop")
                } else {
                    closeNow(ConnectionDone())
                }
            } else {
                closeNow(ConnectionLost(error))
            }
        }
    }

    /// A protocol callback threw: log it once with the peer, close this connection with the error as reason.
    final func fail(_ error: any Error, in callback: String) {
        let name = proto.map { String(describing: type(of: $0)) } ?? "Protocol"
        reactor.logError("Unhandled error in \(name).\(callback) (peer \(getPeer())): \(error); closing the connection")
        closeNow(error)
    }

    /// Closes the handle now; `connectionLost(reason)` follows from the close callback.
    final func closeNow(_ reason: any Error) {
        guard state != .closing, state != .closed else { return }
        state = .closing
        closeReason = reason
        UVHandle.close(stream)
    }

    final func handleDidClose() {
        state = .closed
        pending.release()
        inFlight.release()
        writeRequest?.deallocate()
        writeRequest = nil
        let reason = closeReason ?? ConnectionDone()
        closeReason = nil
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

    // MARK: Transport

    final func write(_ data: UnsafeRawBufferPointer) {
        reactor.assertOnReactorThread()
        guard state == .open, data.count > 0 else { return }
        if writing {
            pending.append(data)
            return
        }
        var buffer = uv_buf_t(base: UnsafeMutableRawPointer(mutating: data.baseAddress!).assumingMemoryBound(to: CChar.self), len: data.count)
        let written = Int(uv_try_write(stream, &buffer, 1))
        if written == data.count { return }
        if written < 0, written != Int(UV_EAGAIN.rawValue) {
            closeNow(ConnectionLost(UVError(code: Int32(written))))
            return
        }
        pending.append(UnsafeRawBufferPointer(rebasing: data[max(0, written)...]))
        flush()
    }

    /// Hands everything pending to one `uv_write`.
    private func flush() {
        swap(&pending, &inFlight)
        if writeRequest == nil { writeRequest = .allocate(capacity: 1) }
        writeRequest!.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var buffer = uv_buf_t(base: inFlight.base!.assumingMemoryBound(to: CChar.self), len: inFlight.count)
        let rc = uv_write(writeRequest, stream, &buffer, 1, streamWriteCallback)
        if rc < 0 {
            inFlight.clear()
            closeNow(ConnectionLost(UVError(code: rc)))
            return
        }
        writing = true
    }

    final func writeCompleted(_ status: Int32) {
        writing = false
        inFlight.clear()
        if status < 0 {
            // ECANCELED: we closed the handle; the close callback reports why.
            if status != UV_ECANCELED.rawValue { closeNow(ConnectionLost(UVError(code: status))) }
            return
        }
        guard state == .open || state == .disconnecting else { return }
        if !pending.isEmpty {
            flush()
        } else if state == .disconnecting {
            beginShutdown()
        }
    }

    final func loseConnection() {
        reactor.assertOnReactorThread()
        guard state == .open else { return }
        state = .disconnecting
        if !writing { beginShutdown() }
    }

    /// Everything is written: send FIN (`uv_shutdown`), then close.
    private func beginShutdown() {
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = uv_shutdown(request, stream, streamShutdownCallback)
        if rc < 0 {
            request.deallocate()
            // ENOTCONN: the peer is gone already; everything we wrote was handed over.
            closeNow(rc == UV_ENOTCONN.rawValue ? ConnectionDone() : ConnectionLost(UVError(code: rc)))
        }
    }

    final func shutdownCompleted(_ status: Int32) {
        if status == UV_ECANCELED.rawValue { return }
        closeNow(status < 0 && status != UV_ENOTCONN.rawValue ? ConnectionLost(UVError(code: status)) : ConnectionDone())
    }

    final func abortConnection() {
        reactor.assertOnReactorThread()
        guard state == .open || state == .disconnecting else { return }
        closeNow(ConnectionAborted())
    }

    final var bufferSize: Int {
        guard state != .closed else { return 0 }
        return pending.count + Int(stream.pointee.write_queue_size)
    }

    final var disconnecting: Bool { state != .open }

    /// The other end's address (overridden per socket family).
    func getPeer() -> any Address { preconditionFailure("StreamConnection subclasses provide getPeer") }

    /// This end's address (overridden per socket family).
    func getHost() -> any Address { preconditionFailure("StreamConnection subclasses provide getHost") }
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
    let tcp: UnsafeMutablePointer<uv_tcp_t>

    /// Creates an unconnected TCP handle on the reactor's loop.
    /// - Throws: ``UVError`` from `uv_tcp_init_ex` (for example `EMFILE`).
    init(reactor: Reactor, state: State, family: Int32 = AF_UNSPEC) throws(UVError) {
        let tcp = UVHandle.allocate(uv_tcp_t.self)
        let rc = uv_tcp_init_ex(reactor.loop, tcp, UInt32(family))
        if rc < 0 {
            UVHandle.deallocateUninitialized(tcp)
            throw UVError(code: rc)
        }
        self.tcp = tcp
        super.init(reactor: reactor, stream: UVHandle.asStream(tcp), state: state)
    }

    private var peerAddress: SocketAddress?
    private var hostAddress: SocketAddress?

    override func getPeer() -> any Address {
        peerAddress?.address(type: .tcp) ?? IPv4Address(type: .tcp, host: "0.0.0.0", port: 0)
    }

    override func getHost() -> any Address {
        hostAddress?.address(type: .tcp) ?? IPv4Address(type: .tcp, host: "0.0.0.0", port: 0)
    }

    override func readAddresses() {
        peerAddress = SocketAddress.read { uv_tcp_getpeername(tcp, $0, $1) }
        hostAddress = SocketAddress.read { uv_tcp_getsockname(tcp, $0, $1) }
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

import CLibUV
import Glibc

/// A UDP port (`uv_udp_t`): Twisted's `twisted.internet.udp.Port`, returned
/// by ``Reactor/listenUDP(_:_:interface:maxPacketSize:)``.
///
/// It receives datagrams for its ``DatagramProtocol`` and sends the ones
/// the protocol writes. It stays open while you hold no reference to it,
/// until ``stopListening(_:)`` or a reactor shutdown closes it; the
/// protocol's `stopProtocol` then runs once.
///
/// Data path (as TCP's, see DESIGN.md): datagrams land in the reactor's one
/// read slab and reach `datagramReceived` as a `Span` with no copy; the
/// sender's address value is built once per new sender and reused while
/// datagrams keep coming from the same one. Writes go straight to the kernel
/// (`uv_udp_try_send`); only a datagram the kernel cannot take at once is
/// copied, into a buffer owned by its `uv_udp_send_t`, and sent in order.
///
/// Life: `listening` → `closing` (`uv_close` called) → `closed` (close
/// callback: `stopProtocol` delivered, exactly once).
///
/// Threading: reactor thread only.
public final class UDPPort: HandleOwning, MulticastTransport {
    /// The reactor the port belongs to.
    public let reactor: Reactor
    /// The protocol that receives this port's datagrams (Twisted's `port.protocol`).
    public let datagramProtocol: DatagramProtocol
    /// The longest datagram delivered, in bytes: longer ones are logged
    /// and dropped. `maxPacketSize` as given to `listenUDP`, at most 65536.
    public let maxPacketSize: Int

    private let udp: UnsafeMutablePointer<uv_udp_t>
    private let slab: UnsafeMutablePointer<CChar>
    private let isIPv6: Bool
    private var bound: SocketAddress
    private var peer: SocketAddress?
    private enum State { case listening, closing, closed }
    private var state = State.listening
    private var closeCompletions: [() -> Void] = []

    // The address value of the last sender: building one costs a String and
    // an existential box; a port that hears from the same peers again and
    // again reuses it instead.
    private var lastSender = sockaddr_in6()
    private var lastSenderAddress: (any Address)?

    /// Binds (`uv_udp_bind`), starts receiving (`uv_udp_recv_start`), then
    /// attaches the protocol (`makeConnection` → `startProtocol`).
    /// `reuseAddress`: bind with `SO_REUSEADDR` (``Reactor/listenMulticast(_:_:interface:maxPacketSize:listenMultiple:)``).
    init(reactor: Reactor, port: Int, proto: DatagramProtocol, interface: String, maxPacketSize: Int,
         reuseAddress: Bool = false) throws(CannotListenError) {
        func failure(_ error: any Error & Sendable) -> CannotListenError {
            CannotListenError(interface: interface, port: port, underlying: error)
        }
        precondition(proto.transport == nil, "Swisted: \(type(of: proto)) is already attached to a UDP port; a DatagramProtocol serves one port at a time")
        guard isValidPort(port) else {
            throw failure(InvalidAddressError(address: "\(interface):\(port)", reason: "port must be in 0...65535"))
        }
        guard let address = SocketAddress(listenInterface: interface, port: port) else {
            throw failure(InvalidAddressError(address: interface, reason: "not an IP address (use an IPv4 or IPv6 literal, \"\", \"::\" or \"localhost\")"))
        }
        let udp = UVHandle.allocate(uv_udp_t.self)
        let initRC = uv_udp_init_ex(reactor.loop, udp, UInt32(address.isIPv6 ? AF_INET6 : AF_INET))
        if initRC < 0 {
            UVHandle.deallocateUninitialized(udp)
            throw failure(UVError(code: initRC))
        }
        // Any failure from here on closes the handle; its memory is freed in the close callback.
        // UV_UDP_REUSEADDR only when asked (listenMultiple): else a second port
        // on the same address must fail (EADDRINUSE), as in Twisted.
        let flags = reuseAddress ? UInt32(UV_UDP_REUSEADDR.rawValue) : 0
        var rc = address.withSockAddr { uv_udp_bind(udp, $0, flags) }
        let actual = rc == 0 ? SocketAddress.read { uv_udp_getsockname(udp, $0, $1) } : nil
        if rc == 0, actual != nil {
            // Nothing is delivered before the loop runs, so adopting below is in time.
            rc = uv_udp_recv_start(udp, udpAllocCallback, udpReceiveCallback)
        }
        guard rc == 0, let actual else {
            UVHandle.close(udp)
            throw failure(UVError(code: rc == 0 ? UV_EINVAL.rawValue : rc))
        }
        self.reactor = reactor
        self.datagramProtocol = proto
        self.maxPacketSize = min(max(maxPacketSize, 1), Reactor.readSlabSize)
        self.udp = udp
        self.slab = reactor.readSlab.assumingMemoryBound(to: CChar.self)
        self.isIPv6 = address.isIPv6
        self.bound = actual
        UVHandle.adopt(udp, owner: self)
        proto.makeConnection(self)
    }

    // MARK: Receiving

    /// The buffer for the next datagram: the reactor's slab, cut to
    /// `maxPacketSize` so the kernel flags anything longer (`UV_UDP_PARTIAL`).
    @inline(__always)
    fileprivate func receiveBuffer() -> uv_buf_t {
        uv_buf_t(base: slab, len: maxPacketSize)
    }

    @inline(__always)
    fileprivate func didReceive(_ nread: Int, _ base: UnsafeMutablePointer<CChar>?, _ sender: UnsafePointer<sockaddr>?, _ flags: UInt32) {
        guard state == .listening else { return }
        if nread < 0 {
            receiveFailed(UVError(code: Int32(truncatingIfNeeded: nread)))
            return
        }
        // nread == 0 without a sender: libuv saying "nothing more to read now".
        guard let sender else { return }
        if flags & UV_UDP_PARTIAL.rawValue != 0 {
            datagramTooLong(from: sender)
            return
        }
        let address = senderAddress(sender)
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(base).map { $0.assumingMemoryBound(to: UInt8.self) }, count: nread)
        do {
            try datagramProtocol.datagramReceived(bytes.span, from: address)
        } catch {
            callbackFailed(error, from: address)
        }
    }

    /// The public address of a sender, reusing the last one's when it is the same.
    @inline(__always)
    private func senderAddress(_ sender: UnsafePointer<sockaddr>) -> any Address {
        let length = Int32(sender.pointee.sa_family) == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        if let cached = lastSenderAddress, memcmp(&lastSender, sender, length) == 0 {
            return cached
        }
        return newSender(sender, length: length)
    }

    private func newSender(_ sender: UnsafePointer<sockaddr>, length: Int) -> any Address {
        let address = SocketAddress(sender).map { $0.address(type: .udp) } ?? IPv4Address(type: .udp, host: "0.0.0.0", port: 0)
        withUnsafeMutableBytes(of: &lastSender) { storage in
            storage.copyMemory(from: UnsafeRawBufferPointer(start: sender, count: length))
        }
        lastSenderAddress = address
        return address
    }

    private func datagramTooLong(from sender: UnsafePointer<sockaddr>) {
        reactor.log(.warning, "Swisted: dropped a datagram from \(senderAddress(sender)) to \(getHost()): longer than maxPacketSize (\(maxPacketSize) bytes)")
    }

    private func callbackFailed(_ error: any Error, from address: any Address) {
        reactor.logError("Unhandled error in \(type(of: datagramProtocol)).datagramReceived (from \(address)): \(error); the port keeps receiving")
    }

    private func receiveFailed(_ error: UVError) {
        if error == .connectionRefused {
            // Only a connected socket can tell which peer refused (Twisted ignores it otherwise).
            if peer != nil { datagramProtocol.connectionRefused() }
            return
        }
        reactor.logError("Swisted: receive failed on \(getHost()): \(error); the port keeps receiving")
    }

    // MARK: Sending

    /// Tests only: skip `uv_udp_try_send`, as if the kernel answered
    /// `EAGAIN`, so every write takes the copy-and-queue path (which loopback
    /// never needs: it takes datagrams at once or drops them silently).
    package var _alwaysQueueSends = false

    /// Sends one datagram to `address` (nil on a connected port): at once
    /// with `uv_udp_try_send`, or, if the kernel cannot take it now, as a
    /// copy queued with `uv_udp_send` (a later failure of that one is logged).
    /// On a connected port, `ECONNREFUSED` from this send calls the protocol's
    /// `connectionRefused()` instead of throwing. The `write(_:to:)` overloads
    /// for `Span`, `[UInt8]`, `String` and `(host, port)` all end here.
    ///
    /// - Throws: ``MessageLengthError`` (over 65507 bytes on IPv4, 65527 on
    ///   IPv6, or `EMSGSIZE`); ``InvalidAddressError`` (not an ``IPv4Address``
    ///   or ``IPv6Address``, a host that is not an IP literal of this port's
    ///   family, a port outside 0...65535, or another address than the peer of
    ///   a connected port); ``NotListeningError`` after ``stopListening(_:)``;
    ///   ``UVError`` for any other refusal (`EACCES` for a broadcast address
    ///   without ``setBroadcastAllowed(_:)``, `EDESTADDRREQ` for nil on a port
    ///   that is not connected).
    ///
    /// Reactor thread only.
    public func write(_ datagram: UnsafeRawBufferPointer, to address: (any Address)?) throws {
        reactor.assertOnReactorThread()
        guard state == .listening else { throw NotListeningError(operation: "write") }
        let limit = isIPv6 ? 65527 : 65507
        guard datagram.count <= limit else { throw MessageLengthError(length: datagram.count, limit: limit) }
        var destination: SocketAddress?
        if let address {
            let target = try socketAddress(address)
            if let peer {
                // Twisted: a connected port writes only to its peer.
                guard target.isSame(as: peer) else {
                    throw InvalidAddressError(address: "\(address)", reason: "this port is connected to \(peer.address(type: .udp)); write to it, or with no address")
                }
            } else {
                destination = target
            }
        }
        var buffer = uv_buf_t(base: UnsafeMutableRawPointer(mutating: datagram.baseAddress)?.assumingMemoryBound(to: CChar.self), len: datagram.count)
        let rc: Int32
        if _alwaysQueueSends {
            rc = UV_EAGAIN.rawValue
        } else if let destination {
            rc = destination.withSockAddr { uv_udp_try_send(udp, &buffer, 1, $0) }
        } else {
            rc = uv_udp_try_send(udp, &buffer, 1, nil)
        }
        if rc >= 0 { return }
        if rc == UV_EAGAIN.rawValue {
            try enqueue(datagram, to: destination)
        } else {
            try sendFailed(rc, length: datagram.count)
        }
    }

    /// The kernel cannot take the datagram now (full socket buffer, or
    /// earlier datagrams still queued): copy it into a buffer owned by a
    /// send request, which libuv sends in order; freed in the send callback.
    private func enqueue(_ datagram: UnsafeRawBufferPointer, to destination: SocketAddress?) throws {
        let header = MemoryLayout<uv_udp_send_t>.stride
        let memory = UnsafeMutableRawPointer.allocate(byteCount: header + datagram.count, alignment: MemoryLayout<uv_udp_send_t>.alignment)
        let request = memory.bindMemory(to: uv_udp_send_t.self, capacity: 1)
        let payload = memory + header
        if datagram.count > 0 { payload.copyMemory(from: datagram.baseAddress!, byteCount: datagram.count) }
        var buffer = uv_buf_t(base: payload.assumingMemoryBound(to: CChar.self), len: datagram.count)
        let rc: Int32
        if let destination {
            rc = destination.withSockAddr { uv_udp_send(request, udp, &buffer, 1, $0, udpSendCallback) }
        } else {
            rc = uv_udp_send(request, udp, &buffer, 1, nil, udpSendCallback)
        }
        if rc < 0 {
            memory.deallocate()  // a call that takes a callback and fails never calls it
            try sendFailed(rc, length: datagram.count)
        }
    }

    /// A send failed at once: Twisted's write() error handling.
    private func sendFailed(_ rc: Int32, length: Int) throws {
        let error = UVError(code: rc)
        switch rc {
        case UV_EMSGSIZE.rawValue:
            throw MessageLengthError(length: length, underlying: error)
        case UV_ECONNREFUSED.rawValue:
            // An ICMP "port unreachable" for an earlier datagram, reported on this send.
            if peer != nil { datagramProtocol.connectionRefused() }
        default:
            throw error
        }
    }

    /// A queued datagram was sent, or failed; nobody is waiting to hear it, so failures are logged.
    fileprivate func sendCompleted(_ status: Int32) {
        guard status < 0, state == .listening else { return }  // ECANCELED: we closed the port
        if status == UV_ECONNREFUSED.rawValue {
            if peer != nil { datagramProtocol.connectionRefused() }
            return
        }
        reactor.logError("Swisted: a queued datagram on \(getHost()) could not be sent: \(UVError(code: status))")
    }

    /// The socket address for a destination given as an address value.
    private func socketAddress(_ address: any Address) throws(InvalidAddressError) -> SocketAddress {
        // Concrete casts copy the value out of its box: no allocation.
        if let v4 = address as? IPv4Address {
            return try socketAddress(host: v4.host, port: v4.port)
        }
        if let v6 = address as? IPv6Address {
            var target = try socketAddress(host: v6.host, port: v6.port)
            if case .v6(var addr) = target, addr.sin6_scope_id == 0, v6.scopeID != 0 || v6.flowInfo != 0 {
                addr.sin6_scope_id = UInt32(truncatingIfNeeded: v6.scopeID)
                addr.sin6_flowinfo = UInt32(truncatingIfNeeded: v6.flowInfo).bigEndian
                target = .v6(addr)
            }
            return target
        }
        throw InvalidAddressError(address: "\(address)", reason: "a UDP destination must be an IPv4Address or IPv6Address")
    }

    /// Parses an IP literal (or `"<broadcast>"`) of this port's family; names are never looked up.
    private func socketAddress(host: String, port: Int) throws(InvalidAddressError) -> SocketAddress {
        guard isValidPort(port) else { throw InvalidAddressError(address: "\(host):\(port)", reason: "port must be in 0...65535") }
        let literal = host == "<broadcast>" ? "255.255.255.255" : stripBrackets(host)
        guard let target = SocketAddress(ipLiteral: literal, port: port) else {
            throw InvalidAddressError(address: host, reason: "not an IPv4 or IPv6 address (UDP ports take IP addresses, not host names)")
        }
        if target.isIPv6 != isIPv6 {
            throw InvalidAddressError(address: host, reason: isIPv6 ? "an IPv6 port cannot send to an IPv4 address" : "an IPv4 port cannot send to an IPv6 address")
        }
        return target
    }

    // MARK: Connected mode

    /// Connects the port to `host` (an IP literal) and `port` (`uv_udp_connect`):
    /// from now on it receives only that peer's datagrams, ``write(_:to:)``
    /// needs no address, and an ICMP "port unreachable" from the peer reaches
    /// the protocol as ``DatagramProtocol/connectionRefused()``.
    ///
    /// - Throws: ``InvalidAddressError`` (a host name, the other IP family, a
    ///   port outside 0...65535); ``AlreadyConnectedError`` if connected
    ///   already (Twisted cannot reconnect a UDP port either);
    ///   ``NotListeningError`` after ``stopListening(_:)``; ``UVError`` if the
    ///   system refuses.
    ///
    /// Reactor thread only.
    public func connect(_ host: String, _ port: Int) throws {
        reactor.assertOnReactorThread()
        guard state == .listening else { throw NotListeningError(operation: "connect") }
        if let peer { throw AlreadyConnectedError(peer: "\(peer.address(type: .udp))") }
        let target = try socketAddress(host: host, port: port)
        try uvCheck(target.withSockAddr { uv_udp_connect(udp, $0) })
        peer = target
        // The local address is fixed now (an unspecified bind gets the route's source).
        if let local = SocketAddress.read({ uv_udp_getsockname(udp, $0, $1) }) { bound = local }
    }

    // MARK: Port

    /// The address the port is bound to; with port 0, it holds the port the
    /// system chose. After ``connect(_:_:)``, the local address the system
    /// picked for that peer. An ``IPv4Address`` or ``IPv6Address`` of type `.udp`.
    public func getHost() -> any Address {
        bound.address(type: .udp)
    }

    /// Stops receiving and closes the socket at once, so the same port can be
    /// bound again right after. The protocol's `stopProtocol` (then
    /// `completion`, if given) runs once libuv has finished closing; datagrams
    /// still queued for sending are dropped. Later writes throw
    /// ``NotListeningError``. Calling it again does nothing but add the
    /// completion. May be called inside any callback.
    ///
    /// Reactor thread only.
    public func stopListening(_ completion: (() -> Void)? = nil) {
        reactor.assertOnReactorThread()
        if let completion {
            if state == .closed { reactor.callSoon(completion) } else { closeCompletions.append(completion) }
        }
        guard state == .listening else { return }
        state = .closing
        UVHandle.close(udp)
    }

    func handleDidClose() {
        state = .closed
        lastSenderAddress = nil
        datagramProtocol.doStop()
        let completions = closeCompletions
        closeCompletions = []
        for completion in completions { completion() }
    }

    func reactorWillShutDown() {
        stopListening()
    }

    // MARK: Options

    /// Throws `EBADF` unless the port is open (as TCP's options do on a closed connection).
    private func checkOpen() throws(UVError) {
        guard state == .listening else { throw UVError(UV_EBADF) }
    }

    /// Allows (or forbids again) writing to broadcast addresses
    /// (`SO_BROADCAST`, `uv_udp_set_broadcast`); forbidden by default, when
    /// such a write throws `EACCES`.
    /// - Throws: ``UVError``: the system's refusal, or `EBADF` once the port is closed.
    ///
    /// Reactor thread only.
    public func setBroadcastAllowed(_ enabled: Bool) throws(UVError) {
        reactor.assertOnReactorThread()
        try checkOpen()
        try uvCheck(uv_udp_set_broadcast(udp, enabled ? 1 : 0))
    }

    /// Whether writing to broadcast addresses is allowed (`getsockopt(SO_BROADCAST)`).
    /// - Throws: ``UVError`` (`EBADF` once the port is closed).
    ///
    /// Reactor thread only.
    public func getBroadcastAllowed() throws(UVError) -> Bool {
        reactor.assertOnReactorThread()
        return try socketOption(SOL_SOCKET, SO_BROADCAST) != 0
    }

    /// Joins the multicast group `group` (an IP literal of this port's
    /// family) on the local interface whose address is `interface` (`""`: the
    /// system picks one by route), with `uv_udp_set_membership`. The port then
    /// receives datagrams sent to the group on its port number.
    /// - Throws: ``MulticastJoinError`` carrying an ``InvalidAddressError``
    ///   (a host name, the other family) or the system's ``UVError`` (`EINVAL`
    ///   for an address that is not a group, `ENODEV` for no such interface,
    ///   `EBADF` once the port is closed).
    ///
    /// Reactor thread only.
    public func joinGroup(_ group: String, interface: String = "") throws(MulticastJoinError) {
        reactor.assertOnReactorThread()
        try setMembership(group, interface, UV_JOIN_GROUP)
    }

    /// Leaves a group joined with ``joinGroup(_:interface:)`` (same arguments).
    /// - Throws: ``MulticastJoinError``, as `joinGroup` (`EADDRNOTAVAIL`: not a member).
    ///
    /// Reactor thread only.
    public func leaveGroup(_ group: String, interface: String = "") throws(MulticastJoinError) {
        reactor.assertOnReactorThread()
        try setMembership(group, interface, UV_LEAVE_GROUP)
    }

    private func setMembership(_ group: String, _ interface: String, _ membership: uv_membership) throws(MulticastJoinError) {
        func failure(_ error: any Error & Sendable) -> MulticastJoinError {
            MulticastJoinError(group: group, interface: interface, underlying: error)
        }
        guard state == .listening else { throw failure(UVError(UV_EBADF)) }
        let groupLiteral = stripBrackets(group)
        guard let groupAddress = SocketAddress(ipLiteral: groupLiteral, port: 0) else {
            throw failure(InvalidAddressError(address: group, reason: "not an IPv4 or IPv6 address (multicast groups are IP addresses, not host names)"))
        }
        guard groupAddress.isIPv6 == isIPv6 else {
            throw failure(InvalidAddressError(address: group, reason: isIPv6 ? "an IPv6 port cannot join an IPv4 group" : "an IPv4 port cannot join an IPv6 group"))
        }
        let interfaceLiteral = stripBrackets(interface)
        if !interface.isEmpty, SocketAddress(ipLiteral: interfaceLiteral, port: 0) == nil {
            throw failure(InvalidAddressError(address: interface, reason: "not an IPv4 or IPv6 address of a local interface"))
        }
        let rc = interface.isEmpty
            ? uv_udp_set_membership(udp, groupLiteral, nil, membership)
            : uv_udp_set_membership(udp, groupLiteral, interfaceLiteral, membership)
        if rc < 0 { throw failure(UVError(code: rc)) }
    }

    /// Sets the time-to-live (IPv6: hop limit) of the multicast datagrams
    /// this port sends, 1...255 (`uv_udp_set_multicast_ttl`); the default, 1,
    /// keeps them on the local network.
    /// - Throws: ``UVError`` (`EINVAL` outside 1...255, `EBADF` once closed).
    ///
    /// Reactor thread only.
    public func setTTL(_ ttl: Int) throws(UVError) {
        reactor.assertOnReactorThread()
        try checkOpen()
        guard (1...255).contains(ttl) else { throw UVError(UV_EINVAL) }
        try uvCheck(uv_udp_set_multicast_ttl(udp, Int32(ttl)))
    }

    /// The multicast time-to-live (IPv6: hop limit), read from the socket.
    /// - Throws: ``UVError`` (`EBADF` once the port is closed).
    ///
    /// Reactor thread only.
    public func getTTL() throws(UVError) -> Int {
        reactor.assertOnReactorThread()
        return Int(isIPv6
            ? try socketOption(Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS)
            : try socketOption(Int32(IPPROTO_IP), IP_MULTICAST_TTL))
    }

    /// Whether this host's own members of a group receive the multicast
    /// datagrams this port sends (`uv_udp_set_multicast_loop`; on by default).
    /// - Throws: ``UVError``: the system's refusal, or `EBADF` once closed.
    ///
    /// Reactor thread only.
    public func setLoopbackMode(_ enabled: Bool) throws(UVError) {
        reactor.assertOnReactorThread()
        try checkOpen()
        try uvCheck(uv_udp_set_multicast_loop(udp, enabled ? 1 : 0))
    }

    /// Whether multicast loopback is on, read from the socket.
    /// - Throws: ``UVError`` (`EBADF` once the port is closed).
    ///
    /// Reactor thread only.
    public func getLoopbackMode() throws(UVError) -> Bool {
        reactor.assertOnReactorThread()
        return (isIPv6
            ? try socketOption(Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP)
            : try socketOption(Int32(IPPROTO_IP), IP_MULTICAST_LOOP)) != 0
    }

    /// Sends this port's multicast datagrams out of the local interface whose
    /// address is `interface` (an IP literal; `uv_udp_set_multicast_interface`).
    /// - Throws: ``InvalidAddressError`` for a host name; ``UVError``: the
    ///   system's refusal (`EADDRNOTAVAIL`: no such local address), or `EBADF` once closed.
    ///
    /// Reactor thread only.
    public func setOutgoingInterface(_ interface: String) throws {
        reactor.assertOnReactorThread()
        try checkOpen()
        let literal = stripBrackets(interface)
        guard SocketAddress(ipLiteral: literal, port: 0) != nil else {
            throw InvalidAddressError(address: interface, reason: "not an IPv4 or IPv6 address of a local interface")
        }
        try uvCheck(uv_udp_set_multicast_interface(udp, literal))
    }

    /// The interface multicast datagrams leave by: the IPv4 address set with
    /// ``setOutgoingInterface(_:)`` (`"0.0.0.0"`: the system's choice), or for
    /// an IPv6 port `"::%<interface name>"` (`"::"`: the system's choice).
    /// - Throws: ``UVError`` if the port is closed (`EBADF`).
    public func getOutgoingInterface() throws(UVError) -> String {
        reactor.assertOnReactorThread()
        if isIPv6 {
            let index = try socketOption(Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF)
            guard index != 0 else { return "::" }
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(IF_NAMESIZE)) { buffer in
                guard let name = if_indextoname(UInt32(bitPattern: index), buffer.baseAddress!) else { return "::%\(index)" }
                return "::%" + String(cString: name)
            }
        }
        var address = in_addr()
        try socketOption(Int32(IPPROTO_IP), IP_MULTICAST_IF, into: &address)
        return IPv4Host.format(networkOrder: address.s_addr)
    }

    /// Reads an integer socket option (libuv has setters only).
    private func socketOption(_ level: Int32, _ name: Int32) throws(UVError) -> Int32 {
        var value: Int32 = 0
        try socketOption(level, name, into: &value)
        return value
    }

    /// Reads socket option `name` into `value` (`getsockopt`).
    private func socketOption<Value: BitwiseCopyable>(_ level: Int32, _ name: Int32, into value: inout Value) throws(UVError) {
        try checkOpen()
        var fd: uv_os_fd_t = -1
        try uvCheck(uv_fileno(UVHandle.asHandle(udp), &fd))
        var length = socklen_t(MemoryLayout<Value>.size)
        let rc = withUnsafeMutableBytes(of: &value) { getsockopt(fd, level, name, $0.baseAddress, &length) }
        guard rc == 0 else { throw UVError(code: -errno) }
    }
}

// Hot-path callbacks: plain nonisolated functions, owner borrowed without
// retain/release (the handle's reference keeps it alive), as for streams.

private func udpAllocCallback(_ handle: UnsafeMutablePointer<uv_handle_t>?, _ suggested: Int, _ buffer: UnsafeMutablePointer<uv_buf_t>?) {
    Unmanaged<UDPPort>.fromOpaque(handle!.pointee.data)._withUnsafeGuaranteedRef {
        buffer!.pointee = $0.receiveBuffer()
    }
}

private func udpReceiveCallback(_ handle: UnsafeMutablePointer<uv_udp_t>?, _ nread: Int, _ buffer: UnsafePointer<uv_buf_t>?,
                                _ sender: UnsafePointer<sockaddr>?, _ flags: UInt32) {
    Unmanaged<UDPPort>.fromOpaque(handle!.pointee.data)._withUnsafeGuaranteedRef {
        $0.didReceive(nread, buffer!.pointee.base, sender, flags)
    }
}

private func udpSendCallback(_ request: UnsafeMutablePointer<uv_udp_send_t>?, _ status: Int32) {
    let handle = request!.pointee.handle!
    UnsafeMutableRawPointer(request!).deallocate()  // the request and the datagram's copy: one block
    // Send callbacks (ECANCELED ones included) run before the close callback: the owner is still there.
    guard let owner = handle.pointee.data else { return }
    Unmanaged<UDPPort>.fromOpaque(owner)._withUnsafeGuaranteedRef { $0.sendCompleted(status) }
}

extension SocketAddress {
    /// Same family, address and port (and, for IPv6, scope).
    func isSame(as other: SocketAddress) -> Bool {
        switch (self, other) {
        case (.v4(let a), .v4(let b)):
            return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr
        case (.v6(var a), .v6(var b)):
            return a.sin6_port == b.sin6_port && a.sin6_scope_id == b.sin6_scope_id
                && memcmp(&a.sin6_addr, &b.sin6_addr, MemoryLayout<in6_addr>.size) == 0
        default:
            return false
        }
    }
}

extension Reactor {
    /// Opens a UDP port for multicast, as ``listenUDP(_:_:interface:maxPacketSize:)``
    /// does (Twisted's `listenMulticast`); join groups on it with
    /// ``UDPPort/joinGroup(_:interface:)``. With `listenMultiple`, the socket
    /// is bound with `SO_REUSEADDR`, so several ports (in this process or
    /// others, each bound with it) can listen on the same port number, and
    /// each receives every datagram sent to a group they joined.
    ///
    /// Threading: reactor thread only.
    /// - Throws: ``CannotListenError``, as `listenUDP` (`EADDRINUSE` when the
    ///   port is taken by a socket bound without `listenMultiple`).
    @discardableResult
    public func listenMulticast(_ port: Int, _ proto: DatagramProtocol, interface: String = "", maxPacketSize: Int = 8192,
                                listenMultiple: Bool = false) throws(CannotListenError) -> UDPPort {
        assertOnReactorThread()
        return try UDPPort(reactor: self, port: port, proto: proto, interface: interface, maxPacketSize: maxPacketSize,
                           reuseAddress: listenMultiple)
    }

    /// Opens a UDP port on `port` (0: the system picks a free one; read it
    /// from `getHost()`) with `proto` receiving its datagrams: Twisted's
    /// `reactor.listenUDP(port, protocol, interface, maxPacketSize)`.
    /// Calls `proto.makeConnection(port)`, so `startProtocol()`, before returning.
    ///
    /// ```swift
    /// let port = try reactor.listenUDP(0, Echo(), interface: "127.0.0.1")
    /// ```
    ///
    /// - Parameters:
    ///   - interface: `""` (every IPv4 interface, the default), `"::"` (every
    ///     interface, IPv6 and IPv4), `"localhost"` (127.0.0.1), or an IPv4/IPv6
    ///     literal such as `"127.0.0.1"` or `"::1"`. Names are never looked
    ///     up. The port's family (IPv4 or IPv6) follows the interface.
    ///   - maxPacketSize: the longest datagram delivered to the protocol
    ///     (at most 65536); a longer one is logged and dropped.
    /// - Throws: ``CannotListenError`` carrying the address and the reason:
    ///   a ``UVError`` (`EADDRINUSE: address already in use`, `EADDRNOTAVAIL`,
    ///   `EACCES`) or an ``InvalidAddressError`` for a bad interface or a
    ///   port outside 0...65535.
    ///
    /// A protocol serves one port at a time: passing one that is attached to
    /// an open port traps.
    ///
    /// Reactor thread only.
    @discardableResult
    public func listenUDP(_ port: Int, _ proto: DatagramProtocol, interface: String = "", maxPacketSize: Int = 8192) throws(CannotListenError) -> UDPPort {
        assertOnReactorThread()
        return try UDPPort(reactor: self, port: port, proto: proto, interface: interface, maxPacketSize: maxPacketSize)
    }
}

/// A UDP port, as a ``DatagramProtocol`` sees it: Twisted's `IUDPTransport`.
///
/// Unlike a stream ``Transport``, writes are synchronous: a datagram goes
/// to the kernel inside `write` (or, if the socket is momentarily full, is
/// copied and sent as soon as it can be), and a datagram that cannot be
/// sent at all throws, as in Twisted.
///
/// Threading: reactor thread only. From another thread, use
/// `reactor.callFromThread { try port.write(...) }`.
public protocol UDPTransport: AnyObject {
    /// Sends one datagram. `address` is the destination: an ``IPv4Address``
    /// or ``IPv6Address`` whose host is an IP literal (the address
    /// `datagramReceived` got, for a reply). On a connected port, pass nil
    /// (or the connected address).
    ///
    /// - Throws: ``MessageLengthError`` if the datagram is too long;
    ///   ``InvalidAddressError`` if the host is not an IP literal of the
    ///   port's family, the port is out of range, or a connected port is
    ///   given another address; ``NotListeningError`` after `stopListening`;
    ///   ``UVError`` for anything else the system refuses at once (for
    ///   example `EACCES` for a broadcast address without
    ///   `setBroadcastAllowed(true)`, `EDESTADDRREQ` for nil on a port that
    ///   is not connected).
    func write(_ datagram: UnsafeRawBufferPointer, to address: (any Address)?) throws

    /// Connects the port to one peer (`uv_udp_connect`): afterwards it
    /// receives only from that peer, writes go there without an address,
    /// and ``DatagramProtocol/connectionRefused()`` reports when nothing
    /// listens there.
    /// - Throws: ``InvalidAddressError`` if `host` is not an IP literal of
    ///   the port's family or `port` is out of range; ``AlreadyConnectedError``
    ///   if connected already; ``NotListeningError`` after `stopListening`;
    ///   ``UVError`` if the system refuses.
    func connect(_ host: String, _ port: Int) throws

    /// The address the port is bound to (after `connect`, the local address
    /// the system picked for that peer).
    func getHost() -> any Address

    /// Closes the port; the protocol's `stopProtocol` follows, then
    /// `completion` (nil: none). Calling it again does nothing but add the completion.
    func stopListening(_ completion: (() -> Void)?)

    /// Allows or forbids sending to broadcast addresses (`SO_BROADCAST`, `uv_udp_set_broadcast`).
    /// - Throws: ``UVError`` if the system refuses, or the port is closed (`EBADF`).
    func setBroadcastAllowed(_ enabled: Bool) throws(UVError)

    /// Whether sending to broadcast addresses is allowed (`SO_BROADCAST`).
    /// - Throws: ``UVError`` if the port is closed (`EBADF`).
    func getBroadcastAllowed() throws(UVError) -> Bool
}

/// A UDP port's multicast controls: Twisted's `IMulticastTransport`.
/// Every port ``Reactor/listenUDP(_:_:interface:maxPacketSize:)`` returns has them.
///
/// Threading: reactor thread only.
public protocol MulticastTransport: UDPTransport {
    /// Joins the multicast group `group` (an IP literal) on `interface`
    /// (the IP literal of a local interface; `""`: the system's choice),
    /// so the port receives datagrams sent to the group (`uv_udp_set_membership`).
    /// - Throws: ``MulticastJoinError`` carrying an ``InvalidAddressError``
    ///   (not an IP literal) or the system's ``UVError`` (for example
    ///   `EINVAL` for an address that is not a multicast group).
    func joinGroup(_ group: String, interface: String) throws(MulticastJoinError)

    /// Leaves a group joined with ``joinGroup(_:interface:)``.
    /// - Throws: ``MulticastJoinError``, as `joinGroup`.
    func leaveGroup(_ group: String, interface: String) throws(MulticastJoinError)

    /// Sets the time-to-live (IPv6: hop limit) of multicast datagrams this
    /// port sends, 1...255 (`uv_udp_set_multicast_ttl`). The system default is 1: this network only.
    /// - Throws: ``UVError`` (`EINVAL` out of range; `EBADF` when closed).
    func setTTL(_ ttl: Int) throws(UVError)

    /// The multicast time-to-live (IPv6: hop limit).
    /// - Throws: ``UVError`` if the port is closed (`EBADF`).
    func getTTL() throws(UVError) -> Int

    /// Whether this host receives the multicast datagrams it sends
    /// (`uv_udp_set_multicast_loop`; the system default is true).
    /// - Throws: ``UVError`` if the system refuses, or the port is closed (`EBADF`).
    func setLoopbackMode(_ enabled: Bool) throws(UVError)

    /// Whether this host receives the multicast datagrams it sends.
    /// - Throws: ``UVError`` if the port is closed (`EBADF`).
    func getLoopbackMode() throws(UVError) -> Bool

    /// Chooses the interface multicast datagrams leave by, as the IP literal
    /// of a local interface (`uv_udp_set_multicast_interface`).
    /// - Throws: ``InvalidAddressError`` if `interface` is not an IP
    ///   literal; ``UVError`` if the system refuses or the port is closed.
    func setOutgoingInterface(_ interface: String) throws

    /// The interface multicast datagrams leave by, as ``setOutgoingInterface(_:)``
    /// set it (IPv4: `"0.0.0.0"` until set, the system's choice).
    /// - Throws: ``UVError`` if the port is closed.
    func getOutgoingInterface() throws(UVError) -> String
}

extension UDPTransport {
    /// Closes the port (see ``stopListening(_:)``).
    public func stopListening() {
        stopListening(nil)
    }

    /// Sends the bytes of a span (for example the one `datagramReceived` got) to `address`.
    @inlinable
    public func write(_ datagram: Span<UInt8>, to address: any Address) throws {
        try datagram.withUnsafeBytes { bytes in try write(bytes, to: address) }
    }

    /// Sends an array of bytes to `address`.
    @inlinable
    public func write(_ datagram: [UInt8], to address: any Address) throws {
        try datagram.withUnsafeBytes { bytes in try write(bytes, to: address) }
    }

    /// Sends a string, as UTF-8, to `address`.
    @inlinable
    public func write(_ datagram: String, to address: any Address) throws {
        var datagram = datagram
        try datagram.withUTF8 { bytes in try write(UnsafeRawBufferPointer(bytes), to: address) }
    }

    /// Sends the bytes of a span to `host` (an IP literal; `"<broadcast>"`
    /// is 255.255.255.255) and `port`: Twisted's `write(data, (host, port))`.
    public func write(_ datagram: Span<UInt8>, to host: String, port: Int) throws {
        try write(datagram, to: udpAddress(host, port))
    }

    /// Sends an array of bytes to `host` (an IP literal) and `port`.
    public func write(_ datagram: [UInt8], to host: String, port: Int) throws {
        try write(datagram, to: udpAddress(host, port))
    }

    /// Sends a string, as UTF-8, to `host` (an IP literal) and `port`.
    public func write(_ datagram: String, to host: String, port: Int) throws {
        try write(datagram, to: udpAddress(host, port))
    }

    /// Sends the bytes of a span to the peer of a connected port.
    @inlinable
    public func write(_ datagram: Span<UInt8>) throws {
        try datagram.withUnsafeBytes { bytes in try write(bytes, to: nil) }
    }

    /// Sends an array of bytes to the peer of a connected port.
    @inlinable
    public func write(_ datagram: [UInt8]) throws {
        try datagram.withUnsafeBytes { bytes in try write(bytes, to: nil) }
    }

    /// Sends a string, as UTF-8, to the peer of a connected port.
    @inlinable
    public func write(_ datagram: String) throws {
        var datagram = datagram
        try datagram.withUTF8 { bytes in try write(UnsafeRawBufferPointer(bytes), to: nil) }
    }
}

extension MulticastTransport {
    /// Joins `group` on the interface the system chooses.
    public func joinGroup(_ group: String) throws(MulticastJoinError) {
        try joinGroup(group, interface: "")
    }

    /// Leaves `group`, joined on the interface the system chose.
    public func leaveGroup(_ group: String) throws(MulticastJoinError) {
        try leaveGroup(group, interface: "")
    }
}

/// The address value for a host and port given by hand (IPv6 when the host has a colon).
private func udpAddress(_ host: String, _ port: Int) -> any Address {
    host.contains(":") ? IPv6Address(type: .udp, host: host, port: port) : IPv4Address(type: .udp, host: host, port: port)
}

import CLibUV

/// A resolved IPv4 or IPv6 socket address, in the form libuv takes it.
/// Internal: the public face of an address is ``IPv4Address`` / ``IPv6Address``.
enum SocketAddress {
    case v4(sockaddr_in)
    case v6(sockaddr_in6)

    /// Parses an IP literal (`127.0.0.1`, `::1`, `fe80::1%lo`) with a port.
    /// Returns nil when `host` is not an IP literal; the port must already be in range.
    init?(ipLiteral host: String, port: Int) {
        precondition((0...65535).contains(port), "port checked by the caller")
        // C sees a String only up to its first NUL: "127.0.0.1\0junk" would
        // pass as 127.0.0.1 (found by Fuzz/address).
        guard !host.utf8.contains(0) else { return nil }
        // withCString, not the implicit String-to-pointer conversion: that one
        // copies the string into a new array (one malloc per call), and UDP
        // parses the destination of every datagram it sends.
        if host.contains(":") {
            // uv_ip6_addr parses only the first 39 bytes before a `%zone`
            // (its buffer is 40), so "<39 valid bytes>junk%lo" passed (found by
            // Fuzz/address). Zoned addresses that long are refused instead.
            if let percent = host.utf8.firstIndex(of: UInt8(ascii: "%")),
               host.utf8.distance(from: host.utf8.startIndex, to: percent) > 39 {
                return nil
            }
            var addr = sockaddr_in6()
            guard host.withCString({ uv_ip6_addr($0, Int32(port), &addr) }) == 0 else { return nil }
            self = .v6(addr)
        } else {
            var addr = sockaddr_in()
            guard host.withCString({ uv_ip4_addr($0, Int32(port), &addr) }) == 0 else { return nil }
            // inet_pton accepts only dotted quads, so "1.2.3" or "localhost" land here as nil.
            self = .v4(addr)
        }
    }

    /// Reads a `sockaddr` filled in by the kernel (getpeername, getsockname, getaddrinfo).
    init?(_ storage: UnsafePointer<sockaddr>) {
        switch Int32(storage.pointee.sa_family) {
        case AF_INET:
            self = .v4(UnsafeRawPointer(storage).load(as: sockaddr_in.self))
        case AF_INET6:
            self = .v6(UnsafeRawPointer(storage).load(as: sockaddr_in6.self))
        default:
            return nil
        }
    }

    /// The IP address in text form, without the port.
    var ipString: String {
        if case .v4(let addr) = self { return IPv4Host.format(networkOrder: addr.sin_addr.s_addr) }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            let base = buffer.baseAddress!
            switch self {
            case .v4(var addr):
                _ = uv_ip4_name(&addr, base, 64)
            case .v6(var addr):
                _ = uv_ip6_name(&addr, base, 64)
            }
            return String(cString: base)
        }
    }

    var port: Int {
        switch self {
        case .v4(let addr): return Int(UInt16(bigEndian: addr.sin_port))
        case .v6(let addr): return Int(UInt16(bigEndian: addr.sin6_port))
        }
    }

    var isIPv6: Bool {
        if case .v6 = self { return true }
        return false
    }

    /// The public, printable form of this address.
    func address(type: SocketType) -> any Address {
        switch self {
        case .v4(let addr):
            // The text is made only if someone reads it (issue #7: not on every accept).
            return IPv4Address(type: type, networkOrder: addr.sin_addr.s_addr, port: port)
        case .v6(let addr):
            return IPv6Address(type: type, host: ipString, port: port,
                               flowInfo: Int(UInt32(bigEndian: addr.sin6_flowinfo)),
                               scopeID: Int(addr.sin6_scope_id))
        }
    }

    /// Calls `body` with a `sockaddr` pointer to this address.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>) throws -> R) rethrows -> R {
        switch self {
        case .v4(var addr):
            return try withUnsafePointer(to: &addr) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body)
            }
        case .v6(var addr):
            return try withUnsafePointer(to: &addr) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body)
            }
        }
    }

    /// Reads an address with a libuv getter such as `uv_tcp_getpeername`.
    static func read(_ getter: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<Int32>) -> Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                guard getter(sa, &length) == 0 else { return nil }
                return SocketAddress(UnsafePointer(sa))
            }
        }
    }
}

/// Checks a port number given by a user.
func isValidPort(_ port: Int) -> Bool {
    (0...65535).contains(port)
}

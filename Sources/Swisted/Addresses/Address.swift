/// The address of one end of a connection, or of a listening port.
///
/// Concrete addresses are ``IPv4Address`` and ``IPv6Address`` (and your own,
/// for in-memory transports). They print as Twisted prints them, so logs
/// read the same on both sides: `IPv4Address(type='TCP', host='127.0.0.1', port=8000)`.
/// Cast to the concrete type to read its fields:
///
/// ```swift
/// let bound = port.getHost() as! IPv4Address
/// print(bound.port)
/// ```
///
/// Threading: addresses are values, `Sendable`, usable on any thread.
public protocol Address: Sendable, CustomStringConvertible {}

/// The socket type an IP address belongs to.
public enum SocketType: String, Sendable, Hashable {
    case tcp = "TCP"
    case udp = "UDP"
}

/// An IP address with a port: what ``IPv4Address`` and ``IPv6Address`` have in common.
public protocol IPAddress: Address {
    /// TCP or UDP.
    var type: SocketType { get }
    /// The IP address in text form (`127.0.0.1`, `::1`), or the host name a connector was given.
    var host: String { get }
    /// The port number.
    var port: Int { get }
}

/// An IPv4 address and port, printed as Twisted prints it:
/// `IPv4Address(type='TCP', host='127.0.0.1', port=8000)`.
///
/// An address the kernel reported (the peer of an accepted connection, say)
/// keeps the raw 32-bit address and formats ``host`` when it is read, so
/// accepting a connection costs no string formatting. Equality and hashing
/// go by the text, so both forms of one address are equal.
/// Threading: a value; any thread.
public struct IPv4Address: IPAddress, Hashable {
    public var type: SocketType
    /// The host as given, or the raw address (network byte order) still to be formatted.
    private var hostStorage: IPv4Host
    public var port: Int

    /// The IP address in text form (`127.0.0.1`), or the host name a connector was given.
    public var host: String {
        get { hostStorage.text }
        set { hostStorage = .text(newValue) }
    }

    public init(type: SocketType, host: String, port: Int) {
        self.type = type
        self.hostStorage = .text(host)
        self.port = port
    }

    /// An address read from a `sockaddr_in`: `networkOrder` is its `sin_addr.s_addr`.
    init(type: SocketType, networkOrder: UInt32, port: Int) {
        self.type = type
        self.hostStorage = .raw(networkOrder)
        self.port = port
    }

    public static func == (lhs: IPv4Address, rhs: IPv4Address) -> Bool {
        lhs.type == rhs.type && lhs.port == rhs.port && lhs.hostStorage.equals(rhs.hostStorage)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(host)
        hasher.combine(port)
    }

    public var description: String {
        "IPv4Address(type='\(type.rawValue)', host='\(host)', port=\(port))"
    }
}

/// The host of an ``IPv4Address``: text, or a raw address formatted on demand.
enum IPv4Host: Sendable {
    case text(String)
    /// `sin_addr.s_addr`: network byte order.
    case raw(UInt32)

    var text: String {
        switch self {
        case .text(let text): return text
        case .raw(let address): return IPv4Host.format(networkOrder: address)
        }
    }

    func equals(_ other: IPv4Host) -> Bool {
        if case .raw(let a) = self, case .raw(let b) = other { return a == b }
        return text == other.text
    }

    /// Dotted-quad text of an address in network byte order, without
    /// `inet_ntop` (which formats with `sprintf`).
    static func format(networkOrder address: UInt32) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { buffer in
            var count = 0
            withUnsafeBytes(of: address) { octets in  // the memory order is the network order
                for index in 0..<4 {
                    if index > 0 {
                        buffer[count] = UInt8(ascii: ".")
                        count += 1
                    }
                    let octet = octets[index]
                    if octet >= 100 {
                        buffer[count] = UInt8(ascii: "0") &+ octet / 100
                        count += 1
                    }
                    if octet >= 10 {
                        buffer[count] = UInt8(ascii: "0") &+ (octet / 10) % 10
                        count += 1
                    }
                    buffer[count] = UInt8(ascii: "0") &+ octet % 10
                    count += 1
                }
            }
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[0..<count]), as: UTF8.self)
        }
    }
}

/// An IPv6 address and port, printed as Twisted prints it:
/// `IPv6Address(type='TCP', host='::1', port=8000, flowInfo=0, scopeID=0)`.
/// Threading: a value; any thread.
public struct IPv6Address: IPAddress, Hashable {
    public var type: SocketType
    public var host: String
    public var port: Int
    public var flowInfo: Int
    public var scopeID: Int
    public init(type: SocketType, host: String, port: Int, flowInfo: Int = 0, scopeID: Int = 0) {
        self.type = type
        self.host = host
        self.port = port
        self.flowInfo = flowInfo
        self.scopeID = scopeID
    }
    public var description: String {
        "IPv6Address(type='\(type.rawValue)', host='\(host)', port=\(port), flowInfo=\(flowInfo), scopeID=\(scopeID))"
    }
}

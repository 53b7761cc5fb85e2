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
public struct IPv4Address: IPAddress, Hashable {
    public var type: SocketType
    public var host: String
    public var port: Int
    public init(type: SocketType, host: String, port: Int) {
        self.type = type
        self.host = host
        self.port = port
    }
    public var description: String {
        "IPv4Address(type='\(type.rawValue)', host='\(host)', port=\(port))"
    }
}

/// An IPv6 address and port, printed as Twisted prints it:
/// `IPv6Address(type='TCP', host='::1', port=8000, flowInfo=0, scopeID=0)`.
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

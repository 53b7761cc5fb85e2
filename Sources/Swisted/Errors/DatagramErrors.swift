// Twisted's named errors for UDP ports (twisted.internet.error), thrown
// synchronously by the port's calls: UDP writes either go to the kernel at
// once or fail in front of you, as in Twisted.

/// A datagram was too long to send: over the UDP limit (65507 bytes of
/// payload over IPv4, 65527 over IPv6), or longer than the system takes on
/// this path (`EMSGSIZE`).
public struct MessageLengthError: Error, Sendable, CustomStringConvertible {
    /// The datagram's length in bytes.
    public let length: Int
    /// The UDP limit it went over, when Swisted checked it before sending.
    public let limit: Int?
    /// The libuv error, when the system refused it (`EMSGSIZE`).
    public let underlying: UVError?
    public init(length: Int, limit: Int? = nil, underlying: UVError? = nil) {
        self.length = length
        self.limit = limit
        self.underlying = underlying
    }
    public var description: String {
        var text = "Message is too long to send: \(length) bytes"
        if let limit { text += " (the limit is \(limit))" }
        if let underlying { text += ": \(underlying)" }
        return text + "."
    }
}

/// A call needed an open port, but ``UDPPort/stopListening(_:)`` was called
/// (or the reactor shut down the port).
public struct NotListeningError: Error, Sendable, CustomStringConvertible {
    /// What was attempted, for example `write`.
    public let operation: String
    public init(operation: String) { self.operation = operation }
    public var description: String { "Cannot \(operation): the port is not listening (stopListening() was called)." }
}

/// `connect` was called on a UDP port that is connected already; Twisted
/// does not support reconnecting a UDP port either.
public struct AlreadyConnectedError: Error, Sendable, CustomStringConvertible {
    /// The address the port is connected to.
    public let peer: String
    public init(peer: String) { self.peer = peer }
    public var description: String { "Already connected to \(peer); reconnecting a UDP port is not supported." }
}

/// Joining or leaving a multicast group failed.
public struct MulticastJoinError: Error, Sendable, CustomStringConvertible {
    /// The group address as given.
    public let group: String
    /// The interface as given (`""`: the system's choice).
    public let interface: String
    /// The reason: a ``UVError`` from the system, or an ``InvalidAddressError``.
    public let underlying: any Error & Sendable
    public init(group: String, interface: String, underlying: any Error & Sendable) {
        self.group = group
        self.interface = interface
        self.underlying = underlying
    }
    public var description: String {
        let on = interface.isEmpty ? "" : " on \(interface)"
        return "Multicast group \(group)\(on): \(sentence(underlying))"
    }
}

// Twisted's named errors (twisted.internet.error), each carrying the libuv
// error behind it where there is one. All are value types and Sendable.

/// The reason given to `connectionLost` when the connection closed cleanly:
/// the peer closed its side (EOF), or `loseConnection()` finished flushing.
public struct ConnectionDone: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Connection was closed cleanly." }
}

/// The reason given to `connectionLost` when the connection closed uncleanly:
/// a read or write failed (for example `ECONNRESET`), or the reactor shut
/// down with the connection open.
public struct ConnectionLost: Error, Sendable, CustomStringConvertible {
    /// The libuv error that ended the connection, if one did.
    public let underlying: UVError?
    /// What happened, when there is no libuv error (for example a reactor shutdown).
    public let detail: String?
    public init(_ underlying: UVError? = nil, detail: String? = nil) {
        self.underlying = underlying
        self.detail = detail
    }
    public var description: String {
        var text = "Connection to the other side was lost in a non-clean fashion"
        if let underlying { text += ": \(underlying)" }
        if let detail { text += ": \(detail)" }
        return text + "."
    }
}

/// The reason given to `connectionLost` after `abortConnection()`.
public struct ConnectionAborted: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Connection was aborted locally using abortConnection()." }
}

/// A connection attempt was refused by the other side (`ECONNREFUSED`).
public struct ConnectionRefusedError: Error, Sendable, CustomStringConvertible {
    public let underlying: UVError
    public init(_ underlying: UVError = .connectionRefused) { self.underlying = underlying }
    public var description: String { "Connection was refused by other side: \(underlying)." }
}

/// A connection attempt did not finish within its timeout (or the kernel
/// gave up with `ETIMEDOUT`).
public struct TimeoutError: Error, Sendable, CustomStringConvertible {
    public let underlying: UVError?
    public init(_ underlying: UVError? = nil) { self.underlying = underlying }
    public var description: String {
        if let underlying { return "TCP connection timed out: \(underlying)." }
        return "User timeout caused connection failure."
    }
}

/// A connection attempt failed for another reason (for example `ENETUNREACH`).
public struct ConnectError: Error, Sendable, CustomStringConvertible {
    public let underlying: UVError
    public init(_ underlying: UVError) { self.underlying = underlying }
    public var description: String { "An error occurred while connecting: \(underlying)." }
}

/// A host name could not be resolved.
public struct DNSLookupError: Error, Sendable, CustomStringConvertible {
    /// The name that was looked up.
    public let host: String
    /// The libuv error the lookup gave, if any (for example `EAI_NONAME`).
    public let underlying: UVError?
    /// What went wrong, when there is no libuv error (a custom resolver's words).
    public let detail: String?
    public init(host: String, underlying: UVError? = nil, detail: String? = nil) {
        self.host = host
        self.underlying = underlying
        self.detail = detail
    }
    public var description: String {
        var text = "DNS lookup failed: \(host)"
        if let underlying { text += ": \(underlying)" }
        if let detail { text += ": \(detail)" }
        return text + "."
    }
}

/// The user stopped a connection attempt (`Connector.stopConnecting()`), or
/// the reactor shut down while it was in progress.
public struct UserError: Error, Sendable, CustomStringConvertible {
    public let detail: String
    public init(_ detail: String = "User aborted connection.") { self.detail = detail }
    public var description: String { detail }
}

/// An address or port was not valid where an IP literal, a host name or a
/// port number in 0...65535 was needed.
public struct InvalidAddressError: Error, Sendable, CustomStringConvertible {
    /// The address as given.
    public let address: String
    /// Why it is not valid.
    public let reason: String
    public init(address: String, reason: String) {
        self.address = address
        self.reason = reason
    }
    public var description: String { "Invalid address \(address): \(reason)." }
}

/// A listening port could not be opened: the port is in use, the interface
/// is not an address of this machine, the port is out of range, ...
public struct CannotListenError: Error, Sendable, CustomStringConvertible {
    /// The interface asked for (`""` means all IPv4 interfaces).
    public let interface: String
    /// The port asked for.
    public let port: Int
    /// The reason: a ``UVError`` such as `EADDRINUSE`, or an ``InvalidAddressError``.
    public let underlying: any Error & Sendable
    public init(interface: String, port: Int, underlying: any Error & Sendable) {
        self.interface = interface
        self.port = port
        self.underlying = underlying
    }
    public var description: String {
        let where_ = interface.isEmpty ? "any" : interface
        return "Couldn't listen on \(where_):\(port): \(sentence(underlying))"
    }
}

/// `Reactor.stop()` was called when the reactor was not running (or was already stopping).
public struct ReactorNotRunning: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Can't stop reactor that isn't running." }
}

/// `Reactor.run()` was called while the reactor was already running.
public struct ReactorAlreadyRunning: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Reactor already running." }
}

/// `cancel`, `reset` or `delay` was called on a ``DelayedCall`` that has already run.
public struct AlreadyCalled: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Tried to cancel an already-called event." }
}

/// `cancel`, `reset` or `delay` was called on a ``DelayedCall`` that was cancelled.
public struct AlreadyCancelled: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Tried to cancel an already-cancelled event." }
}

/// `Connector.stopConnecting()` was called when the connector was not connecting.
public struct NotConnectingError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "The Connector was not connecting when it was asked to stop connecting." }
}

/// `Connector.connect()` was called while the connector was connecting or connected.
public struct AlreadyConnectingError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "Can't connect in this state: the connector is already connecting or connected." }
}

/// An error's description as the end of a sentence: exactly one full stop.
func sentence(_ error: any Error) -> String {
    let text = String(describing: error)
    return text.hasSuffix(".") ? text : text + "."
}

/// Maps a libuv error from a failed connect to Twisted's reason for it.
func connectFailure(_ error: UVError) -> any Error {
    switch error {
    case .connectionRefused: return ConnectionRefusedError(error)
    case .timedOut: return TimeoutError(error)
    default: return ConnectError(error)
    }
}

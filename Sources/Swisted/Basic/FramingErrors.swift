// The reasons a framing receiver closes a connection. A receiver that meets
// bad input throws one of these from `dataReceived`: the transport then
// closes that connection only, logs the error once with the peer's address,
// and hands the error to `connectionLost` as the reason (see `Protocol`).

/// A line grew past ``LineReceiver/maxLength`` (or ``LineOnlyReceiver/maxLength``):
/// thrown by the default `lineLengthExceeded`.
public struct LineTooLongError: Error, Sendable, CustomStringConvertible {
    /// Bytes of the line seen so far (at least this long; the delimiter is not counted).
    public let length: Int
    /// The limit in force.
    public let maxLength: Int
    public init(length: Int, maxLength: Int) {
        self.length = length
        self.maxLength = maxLength
    }
    public var description: String {
        "Line too long: at least \(length) bytes without a delimiter, the maximum is \(maxLength)."
    }
}

/// The peer sent something that is not a netstring (Twisted's
/// `NetstringParseError`; the receiver then counts as a `brokenPeer`).
public struct NetstringParseError: Error, Sendable, CustomStringConvertible {
    /// What was wrong: a leading zero, a non-digit in the length, a length
    /// over the maximum, a missing `:` or `,`.
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "Broken netstring from the peer: \(reason)." }
}

/// A length-prefixed frame announced more bytes than
/// ``IntNStringReceiver/maxLength``: thrown by the default `lengthLimitExceeded`.
public struct LengthLimitExceededError: Error, Sendable, CustomStringConvertible {
    /// The length the prefix announced.
    public let length: Int
    /// The limit in force.
    public let maxLength: Int
    public init(length: Int, maxLength: Int) {
        self.length = length
        self.maxLength = maxLength
    }
    public var description: String {
        "Frame too long: the peer announced \(length) bytes, the maximum is \(maxLength)."
    }
}

/// `sendString` was given more bytes than the length prefix can express or
/// than `maxLength` allows (Twisted's `StringTooLongError`). Nothing was written.
public struct StringTooLongError: Error, Sendable, CustomStringConvertible {
    /// The length of the string.
    public let length: Int
    /// The largest length that could be sent.
    public let limit: Int
    public init(length: Int, limit: Int) {
        self.length = length
        self.limit = limit
    }
    public var description: String {
        "String too long to send: \(length) bytes, the limit is \(limit)."
    }
}

/// A receiver got data for a callback its subclass did not override (for
/// example raw data without a `rawDataReceived`): Twisted's `NotImplementedError`.
public struct NotImplementedError: Error, Sendable, CustomStringConvertible {
    /// The method that should have been overridden, as `Class.method`.
    public let method: String
    public init(_ method: String) { self.method = method }
    public var description: String { "\(method) is not implemented: override it." }
}

/// A protocol that receives netstrings: Twisted's `NetstringReceiver`.
///
/// A netstring is `<length>:<bytes>,` with the length in decimal, no
/// leading zeros (`0:,` is the empty string): `12:hello world!,`. Each
/// string goes to ``stringReceived(_:)``; ``sendString(_:)`` sends one.
///
/// ## Zero copy, and how long a string is valid
/// The `Span` given to ``stringReceived(_:)`` is a view into the read buffer
/// when the whole netstring lies inside one read, or into the receiver's
/// buffer when it was split; valid only during the call either way. Only
/// the payload of a partial netstring is kept (at most ``maxLength`` bytes);
/// the length digits are parsed as they come.
///
/// ## Broken peers
/// A leading zero, a non-digit in the length, a length over ``maxLength``
/// (99999 by default; seen as soon as the digits say so), a missing `:` or
/// a missing `,` make the peer a ``brokenPeer``: `dataReceived` throws
/// ``NetstringParseError`` saying which, so the transport closes this
/// connection with that reason (and logs it); anything received later is ignored.
/// Once the transport is `disconnecting`, no more strings are delivered.
///
/// Threading: reactor thread only.
open class NetstringReceiver: Protocol {
    /// The longest string accepted, in bytes (Twisted's `MAX_LENGTH`).
    public var maxLength = 99999

    /// True once the peer sent something that is not a netstring.
    public private(set) var brokenPeer = false

    private enum State { case length, payload, comma }
    private var state = State.length
    private var length = 0
    private var digits = 0
    private var payload: [UInt8] = []
    final var reentry = ReentryQueue()
    private var outgoing: [UInt8] = []

    public required init() { super.init() }

    /// Bytes kept between reads now (a partial payload); for tests of the bounds.
    package var bufferedByteCount: Int { payload.count + reentry.count }

    /// Parses netstrings out of `data`.
    /// - Throws: ``NetstringParseError`` for a broken peer, and whatever ``stringReceived(_:)`` throws.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        guard !brokenPeer else { return }
        try feed(data, stop: { brokenPeer })
    }

    final func parse(_ chunk: UnsafeBufferPointer<UInt8>) throws {
        // Nothing more once the transport is closing, not even bytes a callback
        // queued (re-entry) before it called loseConnection (found by Fuzz/).
        if transport?.disconnecting == true { return }
        var position = 0
        while position < chunk.count {
            switch state {
            case .length:
                let byte = chunk[position]
                position += 1
                if byte == UInt8(ascii: ":") {
                    guard digits > 0 else { throw broken("no length before ':'") }
                    state = .payload
                } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                    if digits == 1, length == 0 { throw broken("the length has a leading zero") }
                    let digit = Int(byte - UInt8(ascii: "0"))
                    // Checked before it is computed: 10 * length + digit may not fit in an Int.
                    guard digit <= maxLength, length <= (maxLength - digit) / 10 else { throw broken("the length is over the maximum of \(maxLength)") }
                    length = length * 10 + digit
                    digits += 1
                } else {
                    throw broken(digits == 0 ? "byte \(byte) where a length should start" : "byte \(byte) in the length, where ':' should follow the digits")
                }
            case .payload:
                let available = chunk.count - position
                if payload.isEmpty, available > length {
                    // The zero-copy path: payload and comma are inside this read.
                    let start = position, end = position + length
                    position = end + 1
                    guard chunk[end] == UInt8(ascii: ",") else { throw broken("missing ',' after \(length) bytes") }
                    reset()
                    try stringReceived(UnsafeBufferPointer(rebasing: chunk[start..<end]).span)
                    if transport?.disconnecting == true { return }
                } else {
                    let take = min(length - payload.count, available)
                    payload.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position..<position + take]))
                    position += take
                    if payload.count == length { state = .comma }
                }
            case .comma:
                guard chunk[position] == UInt8(ascii: ",") else { throw broken("missing ',' after \(length) bytes") }
                position += 1
                var string: [UInt8] = []
                swap(&string, &payload)
                reset()
                try string.withUnsafeBufferPointer { try stringReceived($0.span) }
                if payload.isEmpty, payload.capacity < string.capacity {
                    string.removeAll(keepingCapacity: true)
                    swap(&string, &payload)
                }
                if transport?.disconnecting == true { return }
            }
        }
    }

    private func reset() {
        state = .length
        length = 0
        digits = 0
    }

    private func broken(_ reason: String) -> NetstringParseError {
        brokenPeer = true
        payload = []
        _ = reentry.takeAll()
        return NetstringParseError(reason)
    }

    /// A netstring arrived; `string` is its payload, valid only during the call.
    /// The default throws ``NotImplementedError``: override it.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func stringReceived(_ string: Span<UInt8>) throws {
        throw NotImplementedError("\(type(of: self)).stringReceived")
    }

    /// Sends `string` as one netstring, in one write.
    public func sendString(_ string: Span<UInt8>) {
        string.withUnsafeBufferPointer { send($0) }
    }

    /// Sends `string` as one netstring, in one write.
    public func sendString(_ string: [UInt8]) {
        string.withUnsafeBufferPointer { send($0) }
    }

    /// Sends the UTF-8 bytes of `string` as one netstring, in one write.
    public func sendString(_ string: String) {
        var string = string
        string.withUTF8 { send($0) }
    }

    private func send(_ string: UnsafeBufferPointer<UInt8>) {
        guard let transport else { return }
        outgoing.removeAll(keepingCapacity: true)
        outgoing.append(contentsOf: String(string.count).utf8)
        outgoing.append(UInt8(ascii: ":"))
        outgoing.append(contentsOf: string)
        outgoing.append(UInt8(ascii: ","))
        outgoing.withUnsafeBytes { transport.write($0) }
    }
}

extension NetstringReceiver: ReentrantParser {}

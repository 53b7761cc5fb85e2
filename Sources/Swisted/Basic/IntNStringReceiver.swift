/// A protocol that receives strings each preceded by its length as a
/// big-endian unsigned integer of ``prefixLength`` bytes: Twisted's
/// `IntNStringReceiver`. Use ``Int8StringReceiver``, ``Int16StringReceiver``
/// or ``Int32StringReceiver``; they differ only in the prefix width, and all
/// three run this one implementation.
///
/// ```swift
/// final class Messages: Int32StringReceiver {
///     override func stringReceived(_ string: Span<UInt8>) throws {
///         try sendString(string)   // echo the frame back
///     }
/// }
/// ```
///
/// ## Zero copy, and how long a string is valid
/// The `Span` given to ``stringReceived(_:)`` is a view into the read buffer
/// when the frame lies inside one read (no copy, no allocation), or into the
/// receiver's buffer when it was split between reads; valid only during the
/// call either way. Only a partial frame is kept: at most
/// `prefixLength + maxLength` bytes (while not paused: see ``pauseProducing()``).
///
/// ## Limits
/// A prefix announcing more than ``maxLength`` bytes (99999 by default)
/// calls ``lengthLimitExceeded(_:)`` at once, before any of the payload is
/// kept; its default throws ``LengthLimitExceededError``, so the transport
/// closes this connection with that reason. Once the transport is
/// `disconnecting`, no more strings are delivered.
///
/// Threading: reactor thread only.
open class IntNStringReceiver: Protocol {
    /// Bytes in the length prefix: 1, 2, 3 or 4.
    public let prefixLength: Int

    /// The longest string accepted, in bytes (Twisted's `MAX_LENGTH`).
    public var maxLength = 99999

    /// The partial frame: prefix and payload so far.
    private var partial: [UInt8] = []
    final var reentry = ReentryQueue()
    private var outgoing: [UInt8] = []

    /// A receiver with a 4-byte prefix (what ``Int32StringReceiver`` is).
    public required init() {
        prefixLength = 4
        super.init()
    }

    /// A receiver with a `prefixLength`-byte prefix, 1...4.
    public init(prefixLength: Int) {
        precondition((1...4).contains(prefixLength), "IntNStringReceiver: prefixLength must be 1...4, not \(prefixLength)")
        self.prefixLength = prefixLength
        super.init()
    }

    /// Bytes kept between reads now (a partial frame); for tests of the bounds.
    package var bufferedByteCount: Int { partial.count + reentry.count }

    /// The largest length the prefix can express.
    public var prefixLimit: Int { (1 << (8 * prefixLength)) - 1 }

    /// Parses frames out of `data`.
    /// - Throws: ``LengthLimitExceededError`` from the default ``lengthLimitExceeded(_:)``,
    ///   and whatever ``stringReceived(_:)`` throws.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        try feed(data)
    }

    @inline(__always)
    private func readLength(_ bytes: UnsafePointer<UInt8>) -> Int {
        var length = 0
        for index in 0..<prefixLength { length = length << 8 | Int(bytes[index]) }
        return length
    }

    final func parse(_ chunk: UnsafeBufferPointer<UInt8>) throws {
        // Nothing more once the transport is closing, not even bytes a callback
        // queued (re-entry) before it called loseConnection (found by Fuzz/).
        if transport?.disconnecting == true { return }
        if reentry.paused { return reentry.hold(chunk) }
        let prefixLength = self.prefixLength
        var position = 0
        if !partial.isEmpty {
            // Finish the frame begun in an earlier read.
            if partial.count < prefixLength {
                let take = min(prefixLength - partial.count, chunk.count)
                partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[0..<take]))
                position = take
                if partial.count < prefixLength { return }
            }
            let length = partial.withUnsafeBufferPointer { readLength($0.baseAddress!) }
            if length > maxLength {
                partial.removeAll(keepingCapacity: true)
                return try lengthLimitExceeded(length)
            }
            let take = min(prefixLength + length - partial.count, chunk.count - position)
            partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position..<position + take]))
            position += take
            if partial.count < prefixLength + length { return }
            var frame: [UInt8] = []
            swap(&frame, &partial)
            try frame.withUnsafeBufferPointer { try stringReceived(UnsafeBufferPointer(rebasing: $0[prefixLength...]).span) }
            if partial.isEmpty, partial.capacity < frame.capacity {
                frame.removeAll(keepingCapacity: true)
                swap(&frame, &partial)
            }
            if transport?.disconnecting == true { return }
        }
        // The zero-copy path: whole frames inside this read.
        let base = chunk.baseAddress
        while chunk.count - position >= prefixLength {
            if reentry.paused {  // pauseProducing() from a callback: hold the rest back
                return reentry.hold(UnsafeBufferPointer(rebasing: chunk[position...]))
            }
            let length = readLength(base! + position)
            if length > maxLength { return try lengthLimitExceeded(length) }
            let start = position + prefixLength
            guard chunk.count - start >= length else { break }
            position = start + length
            try stringReceived(UnsafeBufferPointer(rebasing: chunk[start..<position]).span)
            if transport?.disconnecting == true { return }
        }
        if position < chunk.count {
            if reentry.paused { return reentry.hold(UnsafeBufferPointer(rebasing: chunk[position...])) }
            partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position...]))
        }
    }

    // MARK: Flow control

    /// True from ``pauseProducing()`` or ``stopProducing()`` until
    /// ``resumeProducing()``: nothing is delivered (Twisted's `paused`).
    public var paused: Bool { reentry.paused }

    /// Stops delivering at once, also the strings already received in the
    /// read being parsed, and stops the transport's reading: Twisted's
    /// `IntNStringReceiver.pauseProducing`. Bytes held back meanwhile wait,
    /// in order, for ``resumeProducing()``: while paused the receiver keeps
    /// the rest of that read besides a partial frame (its transport reads no
    /// more). Call it from any callback or from outside.
    open func pauseProducing() {
        pauseDelivery()
    }

    /// Makes the transport read again, then delivers what was held back, in
    /// order, before returning (called inside a callback of this receiver:
    /// once that callback returns). A callback that throws meanwhile closes
    /// the connection with that reason, as a throw inside `dataReceived` does
    /// (an in-memory `StringTransport` records it as its `closeError`).
    /// After `connectionLost` nothing more is delivered.
    open func resumeProducing() {
        resumeDeliveryAndReading()
    }

    /// Stops delivering, as ``pauseProducing()`` does, and stops the
    /// transport (its `stopProducing()`: `loseConnection()`). As in Twisted,
    /// a later ``resumeProducing()`` would deliver again what is held.
    open func stopProducing() {
        stopDelivery()
    }

    /// A string arrived; valid only during the call (see the class documentation).
    /// The default throws ``NotImplementedError``: override it.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func stringReceived(_ string: Span<UInt8>) throws {
        throw NotImplementedError("\(type(of: self)).stringReceived")
    }

    /// The peer announced a string of `length` bytes, more than ``maxLength``.
    /// The rest of that read is dropped (the stream cannot be trusted after
    /// it). The default throws ``LengthLimitExceededError``, closing this
    /// connection with that reason.
    open func lengthLimitExceeded(_ length: Int) throws {
        throw LengthLimitExceededError(length: length, maxLength: maxLength)
    }

    /// Sends `string` with its length prefix, in one write.
    /// - Throws: ``StringTooLongError`` if it is longer than the prefix can
    ///   express (``prefixLimit``) or than ``maxLength``; nothing is written then.
    public func sendString(_ string: Span<UInt8>) throws(StringTooLongError) {
        try checkLength(string.count)
        string.withUnsafeBufferPointer { send($0) }
    }

    /// Sends `string` with its length prefix, in one write.
    /// - Throws: ``StringTooLongError`` as ``sendString(_:)-(Span<UInt8>)`` does.
    public func sendString(_ string: [UInt8]) throws(StringTooLongError) {
        try checkLength(string.count)
        string.withUnsafeBufferPointer { send($0) }
    }

    /// Sends the UTF-8 bytes of `string` with their length prefix, in one write.
    /// - Throws: ``StringTooLongError`` as ``sendString(_:)-(Span<UInt8>)`` does.
    public func sendString(_ string: String) throws(StringTooLongError) {
        var string = string
        try checkLength(string.utf8.count)
        string.withUTF8 { send($0) }
    }

    private func checkLength(_ count: Int) throws(StringTooLongError) {
        let limit = min(prefixLimit, maxLength)
        guard count <= limit else { throw StringTooLongError(length: count, limit: limit) }
    }

    private func send(_ string: UnsafeBufferPointer<UInt8>) {
        guard let transport else { return }
        outgoing.removeAll(keepingCapacity: true)
        for index in stride(from: prefixLength - 1, through: 0, by: -1) {
            outgoing.append(UInt8(truncatingIfNeeded: string.count >> (8 * index)))
        }
        outgoing.append(contentsOf: string)
        outgoing.withUnsafeBytes { transport.write($0) }
    }
}

/// ``IntNStringReceiver`` with a 1-byte length prefix: strings of at most 255 bytes.
open class Int8StringReceiver: IntNStringReceiver {
    public required init() { super.init(prefixLength: 1) }
}

/// ``IntNStringReceiver`` with a 2-byte big-endian length prefix.
open class Int16StringReceiver: IntNStringReceiver {
    public required init() { super.init(prefixLength: 2) }
}

/// ``IntNStringReceiver`` with a 4-byte big-endian length prefix.
open class Int32StringReceiver: IntNStringReceiver {
    public required init() { super.init(prefixLength: 4) }
}

extension IntNStringReceiver: ReentrantParser {}

/// A string receiver is a push producer of what it delivers, as
/// ``LineReceiver`` is.
extension IntNStringReceiver: PushProducer {}

/// A protocol that receives lines only: Twisted's `LineOnlyReceiver`, the
/// faster cousin of ``LineReceiver`` without raw mode, mode switches or
/// re-entry handling.
///
/// Each line, without its ``delimiter``, goes to ``lineReceived(_:)`` as a
/// `Span` valid only during the call: a view into the read buffer when the
/// line lies inside one read, else into the receiver's buffer of the partial
/// line (never more than `maxLength + delimiter.count - 1` bytes). A line of
/// exactly ``maxLength`` bytes is accepted; longer calls
/// ``lineLengthExceeded(_:)`` (default: throw ``LineTooLongError``, which
/// closes this connection with that reason). Lines stop being delivered once
/// the transport is `disconnecting`.
///
/// Threading: reactor thread only.
open class LineOnlyReceiver: Protocol {
    /// The line delimiter, `\r\n` by default. Must not be empty. A change made
    /// inside a callback applies from the next read on, and then, as in
    /// Twisted, to the bytes kept from earlier reads too (split anew with it).
    public var delimiter: [UInt8] = Array("\r\n".utf8)

    /// The longest line accepted, in bytes, delimiter not counted.
    public var maxLength = 16384

    private var lines = LineBuffer()

    public required init() { super.init() }

    /// Bytes kept between reads now (the partial line); for tests of the bounds.
    package var bufferedByteCount: Int { lines.partial.count }

    /// Splits `data` into lines.
    /// - Throws: whatever ``lineReceived(_:)`` throws, and ``LineTooLongError`` from the default ``lineLengthExceeded(_:)``.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        let delimiter = self.delimiter  // a local copy: callbacks may change the property
        try data.withUnsafeBufferPointer { chunk in
            try delimiter.withUnsafeBufferPointer { splitter in
                if let joined = lines.rejoinIfDelimiterChanged(delimiter, chunk: chunk) {
                    try joined.withUnsafeBufferPointer { try parse($0, splitter) }
                } else {
                    try parse(chunk, splitter)
                }
            }
        }
        lines.readEnded(delimiter: delimiter)
    }

    private func parse(_ chunk: UnsafeBufferPointer<UInt8>, _ delimiter: UnsafeBufferPointer<UInt8>) throws {
        var position = 0
        if !lines.partial.isEmpty {
            switch lines.continueLine(chunk, position: &position, delimiter: delimiter, maxLength: maxLength) {
            case .needMore:
                return
            case .tooLong(let all):
                return try all.withUnsafeBufferPointer { try lineLengthExceeded($0.span) }
            case .line:
                var line = lines.takeLine()
                try line.withUnsafeBufferPointer { try lineReceived($0.span) }
                lines.recycle(&line)
            }
        }
        while position < chunk.count {
            if transport?.disconnecting == true { return }
            let start = position
            guard let end = LineBuffer.find(delimiter, in: chunk, from: start) else {
                if chunk.count - start - delimiter.count >= maxLength {  // no overflow with maxLength = Int.max
                    return try lineLengthExceeded(UnsafeBufferPointer(rebasing: chunk[start...]).span)
                }
                lines.partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[start...]))
                return
            }
            if end - start > maxLength {
                return try lineLengthExceeded(UnsafeBufferPointer(rebasing: chunk[start...]).span)
            }
            position = end + delimiter.count
            try lineReceived(UnsafeBufferPointer(rebasing: chunk[start..<end]).span)
        }
    }

    /// A line arrived, without its delimiter; valid only during the call.
    /// The default throws ``NotImplementedError``: override it.
    open func lineReceived(_ line: Span<UInt8>) throws {
        throw NotImplementedError("\(type(of: self)).lineReceived")
    }

    /// A line grew longer than ``maxLength``; `line` holds what was received
    /// of it and the rest of that read. The default throws ``LineTooLongError``.
    open func lineLengthExceeded(_ line: Span<UInt8>) throws {
        throw LineTooLongError(length: line.count, maxLength: maxLength)
    }

    /// Writes `line` followed by ``delimiter``, in one write.
    public func sendLine(_ line: Span<UInt8>) {
        line.withUnsafeBufferPointer { send($0) }
    }

    /// Writes `line` followed by ``delimiter``, in one write.
    public func sendLine(_ line: [UInt8]) {
        line.withUnsafeBufferPointer { send($0) }
    }

    /// Writes `line` as UTF-8 followed by ``delimiter``, in one write.
    public func sendLine(_ line: String) {
        var line = line
        line.withUTF8 { send($0) }
    }

    private func send(_ line: UnsafeBufferPointer<UInt8>) {
        lines.send(line, delimiter: delimiter, to: transport)
    }
}

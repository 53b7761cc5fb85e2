/// A protocol that receives lines and/or raw data, depending on its mode:
/// Twisted's `LineReceiver` (`twisted.protocols.basic`).
///
/// In line mode (the default), each line (without its ``delimiter``) goes to
/// ``lineReceived(_:)``. After ``setRawMode()``, every byte goes to
/// ``rawDataReceived(_:)`` until ``setLineMode(extra:)``. Either may be called
/// from inside either callback: the bytes after the switch, already in the
/// same read, go to the new mode without loss.
///
/// ```swift
/// final class Chat: LineReceiver {
///     override func lineReceived(_ line: Span<UInt8>) throws {
///         sendLine("you said: " + line.string)
///     }
/// }
/// ```
///
/// ## Zero copy, and how long a line is valid
/// The `Span` given to ``lineReceived(_:)`` and ``rawDataReceived(_:)`` is a
/// view into the read buffer when the line lies inside one read (the usual
/// case: no copy, no allocation), or into the receiver's own buffer when it
/// was split between reads. Either way it is valid only during the call:
/// copy what you keep (`line.array`, `line.string`). Only a partial line is
/// kept between reads, never more than `maxLength + delimiter.count - 1` bytes
/// (while not paused: see ``pauseProducing()``).
///
/// ## Limits and errors
/// A line of exactly ``maxLength`` bytes is accepted; one byte more calls
/// ``lineLengthExceeded(_:)``, whose default throws ``LineTooLongError``: the
/// transport closes this connection, logs the error, and `connectionLost`
/// gets it as the reason. Once the transport is `disconnecting` (you called
/// `loseConnection()`), no more lines are delivered.
///
/// Re-entry: `dataReceived` called from inside a callback (for example
/// through ``setLineMode(extra:)``) queues its bytes behind the ones being
/// parsed, as Twisted does; in raw mode the rest of the read and those bytes
/// go to ``rawDataReceived(_:)`` in one call, as Twisted's one buffer does.
///
/// Threading: reactor thread only, like every protocol.
open class LineReceiver: Protocol {
    /// The line delimiter, `\r\n` by default (Twisted's default). Must not be empty.
    /// A change applies to the rest of the read being parsed and, as in
    /// Twisted, to the bytes kept from earlier reads (split anew with it).
    public var delimiter: [UInt8] = Array("\r\n".utf8)

    /// The longest line accepted, in bytes, delimiter not counted (Twisted's `MAX_LENGTH`).
    public var maxLength = 16384

    /// True in line mode, false in raw mode.
    public private(set) var lineMode = true

    private var lines = LineBuffer()
    /// The read being parsed and how far: valid only inside `dataReceived`.
    private var chunk = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
    private var position = 0
    final var reentry = ReentryQueue()

    public required init() { super.init() }

    /// Bytes kept between reads now (the partial line); for tests of the bounds.
    package var bufferedByteCount: Int { lines.partial.count + reentry.count }

    /// Splits `data` into lines (or passes it on raw); see the class documentation.
    /// - Throws: whatever the callbacks throw, and ``LineTooLongError`` from the default ``lineLengthExceeded(_:)``.
    open override func dataReceived(_ data: Span<UInt8>) throws {
        try feed(data)
    }

    final func parse(_ data: UnsafeBufferPointer<UInt8>) throws {
        if let joined = lines.rejoinIfDelimiterChanged(delimiter, chunk: data) {
            try joined.withUnsafeBufferPointer { try parseRead($0) }
        } else {
            try parseRead(data)
        }
        lines.readEnded(delimiter: delimiter)
    }

    private func parseRead(_ data: UnsafeBufferPointer<UInt8>) throws {
        chunk = data
        position = 0
        defer {  // the read's memory is not ours after this call
            chunk = UnsafeBufferPointer(start: nil, count: 0)
            position = 0
        }
        while position < chunk.count {
            if reentry.paused {  // pauseProducing() from a callback: hold the rest back
                reentry.hold(UnsafeBufferPointer(rebasing: chunk[position...]))
                position = chunk.count
                return
            }
            if !lineMode {
                try deliverRaw()
                continue
            }
            // No line once the transport is closing, not even from bytes a
            // callback queued (re-entry) before it called loseConnection (found by Fuzz/lines).
            if transport?.disconnecting == true {
                position = chunk.count
                return
            }
            let start = position
            if lines.partial.isEmpty {
                // The zero-copy path: the line is inside this read.
                let end = delimiter.withUnsafeBufferPointer { LineBuffer.find($0, in: chunk, from: start) }
                if let end {
                    position = end + delimiter.count
                    if end - start > maxLength {
                        position = chunk.count
                        return try lineLengthExceeded(UnsafeBufferPointer(rebasing: chunk[start...]).span)
                    }
                    try lineReceived(UnsafeBufferPointer(rebasing: chunk[start..<end]).span)
                } else if chunk.count - start - delimiter.count >= maxLength {  // no overflow with maxLength = Int.max
                    position = chunk.count
                    return try lineLengthExceeded(UnsafeBufferPointer(rebasing: chunk[start...]).span)
                } else {
                    lines.partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[start...]))
                    position = chunk.count
                    return
                }
            } else {
                // A line begun in an earlier read.
                var at = position
                let step = delimiter.withUnsafeBufferPointer {
                    lines.continueLine(chunk, position: &at, delimiter: $0, maxLength: maxLength)
                }
                position = at
                switch step {
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
            if transport?.disconnecting == true {
                position = chunk.count
                return
            }
        }
    }

    /// Raw mode: what is kept from line mode first, then the rest of the
    /// read, then the bytes fed in meanwhile.
    private func deliverRaw() throws {
        if !lines.partial.isEmpty || reentry.count > 0 {
            // All of them in one call, as Twisted does (its one buffer): if the
            // callback goes back to line mode with `setLineMode(extra:)`, its
            // extra bytes come after all of them, not before the rest of this
            // read or before bytes fed in earlier (found by Fuzz/lines and by
            // a comparison with Twisted's algorithm).
            var kept = lines.takeLine()
            kept.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position...]))
            position = chunk.count
            if reentry.count > 0 { kept += reentry.takeAll() }
            try kept.withUnsafeBufferPointer { try rawDataReceived($0.span) }
            lines.recycle(&kept)
            return
        }
        let rest = UnsafeBufferPointer(rebasing: chunk[position...])
        position = chunk.count
        if !rest.isEmpty { try rawDataReceived(rest.span) }
    }

    // MARK: Callbacks

    /// A line arrived, without its delimiter. Valid only during the call (see the class documentation).
    /// The default throws ``NotImplementedError``: override it.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func lineReceived(_ line: Span<UInt8>) throws {
        throw NotImplementedError("\(type(of: self)).lineReceived")
    }

    /// Bytes arrived in raw mode. Valid only during the call.
    /// The default throws ``NotImplementedError``: override it if you use raw mode.
    /// - Throws: anything; a throw closes this connection with the error as reason.
    open func rawDataReceived(_ data: Span<UInt8>) throws {
        throw NotImplementedError("\(type(of: self)).rawDataReceived")
    }

    /// A line grew longer than ``maxLength``. `line` holds what was received
    /// of it (and, as in Twisted, whatever followed in the same read); the
    /// buffer is already cleared. The default throws ``LineTooLongError``,
    /// which closes this connection only, with that reason, at once (as
    /// `abortConnection` does: what is not yet sent may be lost). Override to skip the
    /// line and carry on (return normally), or to answer and then call
    /// `transport!.loseConnection()`, which sends the answer before closing.
    open func lineLengthExceeded(_ line: Span<UInt8>) throws {
        throw LineTooLongError(length: line.count, maxLength: maxLength)
    }

    // MARK: Modes

    /// Switches to raw mode: bytes after the current line, and all later ones,
    /// go to ``rawDataReceived(_:)``. A partial line kept from line mode is
    /// delivered first, as raw data.
    public func setRawMode() {
        lineMode = false
    }

    /// Switches to line mode, then parses `extra` as if it had just been
    /// received (inside a callback: right after the bytes being parsed).
    /// - Throws: what parsing `extra` throws.
    public func setLineMode(extra: [UInt8] = []) throws {
        lineMode = true
        if !extra.isEmpty { try extra.withUnsafeBufferPointer { try dataReceived($0.span) } }
    }

    /// Returns and forgets everything received but not yet delivered: the
    /// partial line, and, inside a callback, the rest of the current read.
    @discardableResult
    public func clearLineBuffer() -> [UInt8] {
        var all = lines.takeLine()
        if position < chunk.count {
            all.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position...]))
            position = chunk.count
        }
        all += reentry.takeAll()
        return all
    }

    // MARK: Flow control

    /// True from ``pauseProducing()`` or ``stopProducing()`` until
    /// ``resumeProducing()``: nothing is delivered (Twisted's `paused`).
    public var paused: Bool { reentry.paused }

    /// Stops delivering at once, also the lines already received in the read
    /// being parsed (say, the rest of a pipelined batch), and stops the
    /// transport's reading: Twisted's `LineReceiver.pauseProducing`. Bytes
    /// held back meanwhile wait, in order, for ``resumeProducing()``: while
    /// paused the receiver keeps the rest of that read besides the partial
    /// line (its transport reads no more). Call it from any callback or
    /// from outside.
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

    // MARK: Sending

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

extension LineReceiver: ReentrantParser {}

/// A line receiver is a push producer of what it delivers: register it with
/// another transport (`registerProducer(receiver, streaming: true)`) to pause
/// its delivery, and its own transport's reading, while that one is full.
/// As in Twisted, that transport and your own calls share one paused state
/// (a resume from either resumes), and when that transport closes it calls
/// ``stopProducing()``, which closes this receiver's connection too.
extension LineReceiver: PushProducer {}

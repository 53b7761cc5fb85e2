import Glibc

/// The partial line a line receiver carries between reads, and the
/// delimiter search both line receivers share.
///
/// Invariant: `partial` never holds a whole delimiter (a complete line is
/// delivered as soon as its delimiter is seen), so at most
/// `maxLength + delimiter.count - 1` bytes are ever kept.
struct LineBuffer {
    var partial: [UInt8] = []
    /// The delimiter `partial` was kept under (see ``rejoinIfDelimiterChanged(_:chunk:)``).
    private var partialDelimiter: [UInt8] = []
    /// Scratch for an outgoing line and its delimiter (reused: one write, no allocation per line).
    private var outgoing: [UInt8] = []

    /// Writes `line` followed by `delimiter` to `transport` in one write:
    /// `sendLine` of both line receivers.
    mutating func send(_ line: UnsafeBufferPointer<UInt8>, delimiter: [UInt8], to transport: (any Transport)?) {
        guard let transport else { return }
        outgoing.removeAll(keepingCapacity: true)
        outgoing.append(contentsOf: line)
        outgoing.append(contentsOf: delimiter)
        outgoing.withUnsafeBytes { transport.write($0) }
    }

    /// The index in `chunk` (at or after `start`) where the first whole
    /// `delimiter` begins, or nil. `memchr` for the first byte, then a compare.
    @inline(__always)
    static func find(_ delimiter: UnsafeBufferPointer<UInt8>, in chunk: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        let d = delimiter.count
        guard let base = chunk.baseAddress else { return nil }
        let first = delimiter[0]
        var index = start
        let last = chunk.count - d  // the last index a delimiter can start at
        while index <= last {
            guard let hit = memchr(base + index, Int32(first), last - index + 1) else { return nil }
            let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if d == 1 || memcmp(base + at + 1, delimiter.baseAddress! + 1, d - 1) == 0 { return at }
            index = at + 1
        }
        return nil
    }

    enum Step {
        /// A whole line is in `partial`: deliver it, then ``takeLine()``'s array goes back through ``recycle(_:)``.
        case line
        /// The line is longer than allowed; the array holds `partial` and the rest of the chunk.
        case tooLong([UInt8])
        /// The chunk is used up and kept in `partial`.
        case needMore
    }

    /// Continues the line in `partial` with `chunk[position...]`: finds the
    /// delimiter (possibly split between `partial` and the chunk), and
    /// advances `position` past what it used.
    mutating func continueLine(_ chunk: UnsafeBufferPointer<UInt8>, position: inout Int,
                               delimiter: UnsafeBufferPointer<UInt8>, maxLength: Int) -> Step {
        let d = delimiter.count
        let available = chunk.count - position
        // A delimiter that starts in the tail of `partial` and ends in the chunk;
        // the longest overlap starts earliest.
        if d > 1 {
            var k = min(d - 1, partial.count)
            while k >= 1 {
                if available >= d - k,
                   partial.withUnsafeBufferPointer({ memcmp($0.baseAddress! + $0.count - k, delimiter.baseAddress!, k) == 0 }),
                   memcmp(chunk.baseAddress! + position, delimiter.baseAddress! + k, d - k) == 0 {
                    partial.removeLast(k)
                    position += d - k
                    if partial.count > maxLength { return .tooLong(tooLong(chunk, from: position - (d - k), withDelimiter: delimiter, k: k)) }
                    return .line
                }
                k -= 1
            }
        }
        if let end = LineBuffer.find(delimiter, in: chunk, from: position) {
            if partial.count + (end - position) > maxLength {
                let rest = tooLong(chunk, from: position, withDelimiter: nil, k: 0)
                position = chunk.count
                return .tooLong(rest)
            }
            partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position..<end]))
            position = end + d
            return .line
        }
        if partial.count + available - d >= maxLength {  // not `maxLength + d`: maxLength may be Int.max
            let rest = tooLong(chunk, from: position, withDelimiter: nil, k: 0)
            position = chunk.count
            return .tooLong(rest)
        }
        partial.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[position...]))
        position = chunk.count
        return .needMore
    }

    /// Everything kept plus the rest of the chunk (for `lineLengthExceeded`); empties `partial`.
    private mutating func tooLong(_ chunk: UnsafeBufferPointer<UInt8>, from start: Int,
                                  withDelimiter delimiter: UnsafeBufferPointer<UInt8>?, k: Int) -> [UInt8] {
        var all = partial
        if let delimiter { all.append(contentsOf: UnsafeBufferPointer(rebasing: delimiter[0..<k])) }
        all.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[start...]))
        partial.removeAll(keepingCapacity: true)
        return all
    }

    /// A read ended: remembers the delimiter the partial line was kept under.
    mutating func readEnded(delimiter: [UInt8]) {
        if !partial.isEmpty { partialDelimiter = delimiter }
    }

    /// Twisted splits its whole buffer with the current delimiter on every
    /// read, so a delimiter changed between reads (from a timer, say) applies
    /// to the kept bytes too: if `delimiter` is not the one `partial` was kept
    /// under, returns the kept bytes followed by `chunk`, to be parsed as one
    /// read (`partial` is emptied); otherwise nil, and nothing changes.
    mutating func rejoinIfDelimiterChanged(_ delimiter: [UInt8], chunk: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard !partial.isEmpty, partialDelimiter != delimiter else { return nil }
        var joined = takeLine()
        joined.append(contentsOf: chunk)
        return joined
    }

    /// Moves the completed line out of `partial` (so a callback may use the receiver freely).
    mutating func takeLine() -> [UInt8] {
        var line: [UInt8] = []
        swap(&line, &partial)
        return line
    }

    /// Gives a delivered line's storage back, so the next partial line does not allocate.
    mutating func recycle(_ line: inout [UInt8]) {
        guard partial.isEmpty, partial.capacity < line.capacity else { return }
        line.removeAll(keepingCapacity: true)
        swap(&line, &partial)
    }
}

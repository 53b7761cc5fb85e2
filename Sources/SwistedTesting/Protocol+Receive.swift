import Swisted

extension Protocol {
    /// Delivers `bytes` to `dataReceived` as one chunk, as a transport would.
    /// - Throws: what `dataReceived` throws.
    public func receive(_ bytes: some Collection<UInt8>) throws {
        let chunk = Array(bytes)
        try chunk.withUnsafeBufferPointer { try dataReceived($0.span) }
    }

    /// Delivers the UTF-8 bytes of `string` as one chunk.
    public func receive(_ string: String) throws {
        try receive(Array(string.utf8))
    }

    /// Delivers `bytes` in chunks of `chunkSize` bytes (the last may be shorter):
    /// with 1, one byte at a time, as Twisted asks protocol tests to try.
    public func receive(_ bytes: some Collection<UInt8>, chunkSize: Int) throws {
        precondition(chunkSize > 0, "chunkSize must be positive")
        let all = Array(bytes)
        var start = 0
        while start < all.count {
            let end = min(start + chunkSize, all.count)
            try all.withUnsafeBufferPointer { try dataReceived(UnsafeBufferPointer(rebasing: $0[start..<end]).span) }
            start = end
        }
    }

    /// Delivers the UTF-8 bytes of `string` in chunks of `chunkSize` bytes.
    public func receive(_ string: String, chunkSize: Int) throws {
        try receive(Array(string.utf8), chunkSize: chunkSize)
    }

    /// Delivers `bytes` cut at the given offsets (sorted or not; out-of-range
    /// and repeated offsets are ignored), so each piece is one `dataReceived`.
    public func receive(_ bytes: some Collection<UInt8>, splitAt offsets: [Int]) throws {
        let all = Array(bytes)
        let cuts = Set(offsets.filter { $0 > 0 && $0 < all.count }).sorted() + [all.count]
        var start = 0
        for end in cuts {
            try all.withUnsafeBufferPointer { try dataReceived(UnsafeBufferPointer(rebasing: $0[start..<end]).span) }
            start = end
        }
    }
}

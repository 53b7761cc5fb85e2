/// Bytes fed back in while a read is being parsed (a callback calling
/// `dataReceived`, as Twisted's `setLineMode(extra)` does): queued, and
/// parsed after the read in progress, in order. Part of a receiver's state.
///
/// Threading: the receiver's (reactor thread only).
struct ReentryQueue {
    /// A read is being parsed.
    var busy = false
    /// Bytes fed in meanwhile.
    var pending: [UInt8] = []
}

/// A framing receiver that parses reads with `parse`, one at a time, and
/// queues what arrives re-entrantly (``ReentryQueue``): the one
/// `dataReceived` loop of LineReceiver, NetstringReceiver and IntNStringReceiver.
protocol ReentrantParser: AnyObject {
    var reentry: ReentryQueue { get set }
    /// Parses one read (or one queued batch). Never called re-entrantly.
    func parse(_ chunk: UnsafeBufferPointer<UInt8>) throws
}

extension ReentrantParser {
    /// Parses `data`, or queues it if a parse is in progress; the outermost
    /// call then parses what was queued, until nothing is left or `stop()`
    /// says the receiver is done (a broken peer, say).
    @inline(__always)
    func feed(_ data: Span<UInt8>, stop: () -> Bool = { false }) throws {
        if reentry.busy {
            data.withUnsafeBufferPointer { reentry.pending.append(contentsOf: $0) }
            return
        }
        reentry.busy = true
        defer { reentry.busy = false }
        try data.withUnsafeBufferPointer { try parse($0) }
        while !reentry.pending.isEmpty, !stop() {
            var more: [UInt8] = []
            swap(&more, &reentry.pending)
            try more.withUnsafeBufferPointer { try parse($0) }
        }
    }
}

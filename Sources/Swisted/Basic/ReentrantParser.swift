/// Bytes a receiver holds back from parsing: fed in while a read is being
/// parsed (a callback calling `dataReceived`, as Twisted's
/// `setLineMode(extra)` does), queued and parsed after the read in progress,
/// in order; and, while delivery is paused (the receiver's
/// `pauseProducing()`), everything not yet delivered. Part of a receiver's state.
///
/// Threading: the receiver's (reactor thread only).
struct ReentryQueue {
    /// A read is being parsed.
    var busy = false
    /// Delivery is paused: nothing is parsed until it resumes.
    var paused = false
    /// The waiting bytes, from `start` on, in order: the undelivered rest of
    /// a read that a pause stopped, then what was fed in while a read was
    /// being parsed or while paused.
    private var pending: [UInt8] = []
    private var start = 0
    /// While waiting bytes are parsed (taken out by ``takeNext()``): how
    /// many, so a pause among them keeps their tail where it is instead of
    /// copying it (a receiver paused after every line of a large read stays
    /// linear).
    private var ownedCount: Int?
    /// Set by ``hold(_:)`` while waiting bytes are parsed: the length of their tail to keep.
    private var ownedTail: Int?

    /// Bytes waiting.
    var count: Int { pending.count - start }

    /// Queues `data` behind what waits.
    mutating func append(_ data: UnsafeBufferPointer<UInt8>) {
        pending.append(contentsOf: data)
    }

    /// Keeps `rest`, the end of the bytes being parsed that a pause left
    /// undelivered, ahead of what arrived after it.
    mutating func hold(_ rest: UnsafeBufferPointer<UInt8>) {
        if let owned = ownedCount, rest.count <= owned {
            ownedTail = rest.count  // the same bytes as the tail of the chunk taken out: kept by didParse
        } else {
            pending = Array(rest) + pending[start...]
            start = 0
        }
    }

    /// Takes every waiting byte, in order (clearLineBuffer, a broken peer).
    mutating func takeAll() -> [UInt8] {
        let all = start == 0 ? pending : Array(pending[start...])
        pending = []
        start = 0
        return all
    }

    /// The waiting bytes, taken out to be parsed (`bytes[start...]`); nil if none.
    fileprivate mutating func takeNext() -> (bytes: [UInt8], start: Int)? {
        guard start < pending.count else { return nil }
        defer {
            pending = []
            start = 0
        }
        return (pending, start)
    }

    /// Brackets the parse of `chunk[from...]`, taken by ``takeNext()``: a
    /// pause among those bytes makes their tail the waiting bytes again,
    /// ahead of any fed in meanwhile.
    fileprivate mutating func willParse(_ chunk: [UInt8], from first: Int) {
        ownedCount = chunk.count - first
        ownedTail = nil
    }

    fileprivate mutating func didParse(_ chunk: [UInt8]) {
        ownedCount = nil
        guard let tail = ownedTail else { return }
        ownedTail = nil
        if pending.isEmpty {
            pending = chunk
            start = chunk.count - tail
        } else {
            pending = Array(chunk.suffix(tail)) + pending[start...]
            start = 0
        }
    }
}

/// A framing receiver that parses reads with `parse`, one at a time, and
/// queues what arrives re-entrantly (``ReentryQueue``): the one
/// `dataReceived` loop of LineReceiver, NetstringReceiver and IntNStringReceiver,
/// and the delivery pause of the first and last (Twisted's `_PauseableMixin`).
protocol ReentrantParser: AnyObject {
    var reentry: ReentryQueue { get set }
    /// Parses one read (or one queued batch). Never called re-entrantly.
    /// While ``ReentryQueue/paused`` it delivers nothing more and hands the
    /// rest of the read to ``ReentryQueue/hold(_:)``.
    func parse(_ chunk: UnsafeBufferPointer<UInt8>) throws
}

extension ReentrantParser {
    /// Parses `data`, or queues it if a parse is in progress or delivery is
    /// paused; the outermost call then parses what was queued, until nothing
    /// is left, delivery is paused, or `stop()` says the receiver is done (a
    /// broken peer, say).
    @inline(__always)
    func feed(_ data: Span<UInt8>, stop: () -> Bool = { false }) throws {
        if reentry.busy || reentry.paused {
            data.withUnsafeBufferPointer { reentry.append($0) }
            return
        }
        reentry.busy = true
        defer { reentry.busy = false }
        try data.withUnsafeBufferPointer { try parse($0) }
        if reentry.count > 0 { try parsePending(stop: stop) }  // usually nothing waits: no call per read
    }

    private func parsePending(stop: () -> Bool) throws {
        while !reentry.paused, !stop(), let (chunk, start) = reentry.takeNext() {
            reentry.willParse(chunk, from: start)
            defer { reentry.didParse(chunk) }
            try chunk.withUnsafeBufferPointer { try parse(UnsafeBufferPointer(rebasing: $0[start...])) }
        }
    }

    /// Resumes delivery and delivers what was held back. Inside a callback
    /// of this receiver the parse in progress goes on by itself.
    private func resumeDelivery() throws {
        reentry.paused = false
        guard !reentry.busy else { return }
        reentry.busy = true
        defer { reentry.busy = false }
        try parsePending(stop: { false })
    }
}

extension ReentrantParser where Self: Protocol {
    /// `pauseProducing()` of a pausable receiver: no more deliveries, and
    /// the transport stops reading.
    func pauseDelivery() {
        reentry.paused = true
        transport?.pauseProducing()
    }

    /// `resumeProducing()` of a pausable receiver: the transport reads
    /// again, and what was held back is delivered now (Twisted calls
    /// `dataReceived(b"")`); a callback that throws meanwhile fails the
    /// connection as in `dataReceived`.
    func resumeDeliveryAndReading() {
        transport?.resumeProducing()
        guard connected else {  // after connectionLost nothing more is delivered
            reentry.paused = false
            return
        }
        do {
            try resumeDelivery()
        } catch {
            callbackFailed(error, in: "resumeProducing")
        }
    }

    /// `stopProducing()` of a pausable receiver: no more deliveries, and the
    /// transport stops (closes).
    func stopDelivery() {
        reentry.paused = true
        transport?.stopProducing()
    }
}

/// A transport that closes with a given error as the reason, as a throw
/// from a protocol callback closes a connection: Swisted's stream transports
/// (the error is logged) and SwistedTesting's in-memory ones.
package protocol ClosesWithError: AnyObject {
    /// Closes at once with `error` as `connectionLost`'s reason; `callback`
    /// of `protocolType` is what threw, for the log.
    func closeWithError(_ error: any Error, in callback: String, of protocolType: Any.Type)
}

extension StreamConnection: ClosesWithError {
    func closeWithError(_ error: any Error, in callback: String, of protocolType: Any.Type) {
        fail(error, in: callback, of: protocolType)
    }
}

extension Protocol {
    /// A callback run outside a read (from `resumeProducing()`) threw: what
    /// a throw from `dataReceived` does. The transport (through protocol
    /// wrappers) closes with the error as the reason (a real connection logs
    /// it); another kind of transport is aborted and the error written to
    /// standard error, so it is never lost.
    func callbackFailed(_ error: any Error, in callback: String) {
        var inner = transport
        while let wrapper = inner as? ProtocolWrapper { inner = wrapper.transport }
        if let closing = inner as? any ClosesWithError {
            closing.closeWithError(error, in: callback, of: type(of: self))
            return
        }
        reportToStandardError("Swisted: unhandled error in \(type(of: self)).\(callback): \(error); aborting the connection")
        transport?.abortConnection()
    }
}

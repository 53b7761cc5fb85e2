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
    /// Bytes fed in meanwhile, or held back while paused, in arrival order.
    var pending: [UInt8] = []

    /// Keeps `rest`, the end of the read being parsed that a pause left
    /// undelivered, ahead of what arrived after it.
    mutating func hold(_ rest: UnsafeBufferPointer<UInt8>) {
        pending.insert(contentsOf: rest, at: 0)
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
            data.withUnsafeBufferPointer { reentry.pending.append(contentsOf: $0) }
            return
        }
        reentry.busy = true
        defer { reentry.busy = false }
        try data.withUnsafeBufferPointer { try parse($0) }
        try parsePending(stop: stop)
    }

    private func parsePending(stop: () -> Bool) throws {
        while !reentry.pending.isEmpty, !reentry.paused, !stop() {
            var more: [UInt8] = []
            swap(&more, &reentry.pending)
            try more.withUnsafeBufferPointer { try parse($0) }
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

extension Protocol {
    /// A callback run outside a read (from `resumeProducing()`) threw: what
    /// a throw from `dataReceived` does. On a real connection (also through
    /// protocol wrappers) the error is logged and the connection closed with
    /// it as the reason; on any other transport it is aborted.
    func callbackFailed(_ error: any Error, in callback: String) {
        var inner = transport
        while let wrapper = inner as? ProtocolWrapper { inner = wrapper.transport }
        if let stream = inner as? StreamConnection {
            stream.fail(error, in: callback)
        } else {
            transport?.abortConnection()
        }
    }
}

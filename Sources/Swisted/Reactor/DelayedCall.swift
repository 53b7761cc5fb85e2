/// A call scheduled with ``Reactor/callLater(_:_:)``: Twisted's `IDelayedCall`.
///
/// Cancel it, move it (`reset`, `delay`) or ask whether it is still due
/// (`active`). Calls due at the same time run in the order they were scheduled.
///
/// Threading: reactor thread only, like the reactor's other non-`Sendable` API.
public final class DelayedCall {
    enum State { case pending, called, cancelled }

    /// When the call is due, on the scheduler's clock (``Reactor/seconds()``).
    public private(set) var time: Double
    package var sequence: UInt64
    package var heapIndex = -1
    var state = State.pending
    var function: (() throws -> Void)?
    // Weak: a strong reference made a cycle (queue -> pending call ->
    // queue) that leaked every reactor or clock dropped with calls still
    // pending (LeakSanitizer); unowned crashed on cancel() after the reactor
    // or clock was gone. Weak does neither: such a call just stops being due.
    weak var queue: TimerQueue?

    init(time: Double, sequence: UInt64, queue: TimerQueue, function: @escaping () throws -> Void) {
        self.time = time
        self.sequence = sequence
        self.queue = queue
        self.function = function
    }

    /// The time the call is due, as ``Reactor/seconds()`` counts it.
    public func getTime() -> Double { time }

    /// True until the call has run or been cancelled.
    public var active: Bool { state == .pending }

    /// Cancels the call: it will not run.
    /// - Throws: ``AlreadyCalled`` if it has run, ``AlreadyCancelled`` if it was cancelled.
    public func cancel() throws {
        try checkPending()
        state = .cancelled
        function = nil
        queue?.remove(self)
    }

    /// Reschedules the call to run `seconds` from now.
    /// - Throws: ``AlreadyCalled`` or ``AlreadyCancelled`` as ``cancel()`` does.
    public func reset(_ seconds: Double) throws {
        try checkPending()
        guard let queue else { return }
        queue.reschedule(self, to: queue.now() + max(0, seconds))
    }

    /// Postpones the call by `seconds` (negative brings it forward).
    /// - Throws: ``AlreadyCalled`` or ``AlreadyCancelled`` as ``cancel()`` does.
    public func delay(_ seconds: Double) throws {
        try checkPending()
        queue?.reschedule(self, to: time + seconds)
    }

    private func checkPending() throws {
        switch state {
        case .pending: return
        case .called: throw AlreadyCalled()
        case .cancelled: throw AlreadyCancelled()
        }
    }

    package func setTime(_ newTime: Double) { time = newTime }
}

/// A min-heap of ``DelayedCall``s ordered by (time, scheduling order): the
/// timer store of a reactor (and of the test clock). Calls with the same time
/// run first-scheduled first. Reactor thread only.
package final class TimerQueue {
    private var heap: [DelayedCall] = []
    private var nextSequence: UInt64 = 0
    /// The clock the queue schedules against.
    package let now: () -> Double
    /// Told when the earliest due time may have moved earlier (the reactor re-arms its uv timer).
    package var earliestMovedEarlier: ((Double) -> Void)?

    package init(now: @escaping () -> Double) {
        self.now = now
    }

    deinit {
        // The reactor or clock is gone: its pending calls will never run.
        // Drop their closures, so whatever they capture (a factory holding
        // the call, a connector) is not kept alive in a cycle through them.
        for call in heap {
            call.state = .cancelled
            call.function = nil
        }
    }

    package var count: Int { heap.count }
    package var earliestTime: Double? { heap.first?.time }
    package var pendingCalls: [DelayedCall] { heap.sorted { precedes($0, $1) } }

    package func schedule(at time: Double, _ function: @escaping () throws -> Void) -> DelayedCall {
        let call = DelayedCall(time: time, sequence: nextSequence, queue: self, function: function)
        nextSequence &+= 1
        call.heapIndex = heap.count
        heap.append(call)
        siftUp(heap.count - 1)
        if heap[0] === call { earliestMovedEarlier?(time) }
        return call
    }

    func remove(_ call: DelayedCall) {
        let index = call.heapIndex
        guard index >= 0, index < heap.count, heap[index] === call else { return }
        let last = heap.removeLast()
        call.heapIndex = -1
        if index < heap.count {
            heap[index] = last
            last.heapIndex = index
            siftDown(index)
            siftUp(last.heapIndex)
        }
    }

    func reschedule(_ call: DelayedCall, to time: Double) {
        remove(call)
        call.setTime(time)
        // A moved call is ordered as if scheduled now, as in Twisted.
        call.sequence = nextSequence
        nextSequence &+= 1
        call.heapIndex = heap.count
        heap.append(call)
        siftUp(heap.count - 1)
        if heap[0] === call { earliestMovedEarlier?(time) }
    }

    /// Runs every call due at `now` that was scheduled before this method
    /// started (a call scheduled by a running call, even with delay 0, waits
    /// for the next round, so a zero-delay loop cannot starve the reactor).
    /// Errors thrown by calls go to `onError`; the rest still run.
    package func runDue(at now: Double, onError: (any Error) -> Void) {
        let limit = nextSequence
        while let head = heap.first, head.time <= now, head.sequence < limit {
            remove(head)
            head.state = .called
            let function = head.function
            head.function = nil
            do {
                try function?()
            } catch {
                onError(error)
            }
        }
    }

    @inline(__always)
    private func precedes(_ a: DelayedCall, _ b: DelayedCall) -> Bool {
        a.time < b.time || (a.time == b.time && a.sequence < b.sequence)
    }

    private func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard precedes(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            heap[child].heapIndex = child
            heap[parent].heapIndex = parent
            child = parent
        }
    }

    private func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var smallest = left
            let right = left + 1
            if right < heap.count, precedes(heap[right], heap[left]) { smallest = right }
            guard precedes(heap[smallest], heap[parent]) else { break }
            heap.swapAt(smallest, parent)
            heap[smallest].heapIndex = smallest
            heap[parent].heapIndex = parent
            parent = smallest
        }
    }
}

// LoopingCall on a test clock (and once on a real reactor, for interval 0).

import Swisted
import SwistedTesting
import Testing

@Suite("LoopingCall")
struct LoopingCallTests {
    @Test("start(now: true) calls at once, then once per interval; stop ends it with success")
    func countsAndStop() throws {
        let clock = Clock()
        var calls: [Double] = []
        let loop = LoopingCall(clock) { calls.append(clock.seconds()) }
        var outcome: Result<Void, any Error>?
        try loop.start(1, completion: { outcome = $0 })
        #expect(calls == [0])
        #expect(loop.running)
        try clock.advance(1)
        try clock.advance(1)
        #expect(calls == [0, 1, 2])
        loop.stop()
        #expect(!loop.running)
        #expect(throws: Never.self) { try outcome?.get() }
        #expect(outcome != nil)
        try clock.advance(5)
        #expect(calls == [0, 1, 2])
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("start(now: false) waits one interval first")
    func notNow() throws {
        let clock = Clock()
        var calls = 0
        let loop = LoopingCall(clock) { calls += 1 }
        try loop.start(2, now: false)
        #expect(calls == 0)
        try clock.advance(1.9)
        #expect(calls == 0)
        try clock.advance(0.1)
        #expect(calls == 1)
    }

    @Test("calls stay on the grid: a late call does not shift the next one")
    func staysOnGrid() throws {
        let clock = Clock()
        var calls: [Double] = []
        let loop = LoopingCall(clock) { calls.append(clock.seconds()) }
        try loop.start(1)
        try clock.advance(1.3)  // runs the t=1 call at 1.3
        try clock.advance(0.7)  // the next is due at 2.0, not 2.3
        #expect(calls == [0, 1.3, 2.0])
    }

    @Test("withCount reports intervals skipped during a stall, and 1 normally")
    func withCount() throws {
        let clock = Clock()
        var counts: [Int] = []
        let loop = LoopingCall.withCount(clock) { counts.append($0) }
        try loop.start(1)
        try clock.advance(1)
        try clock.advance(3.5)  // a stall: three intervals passed
        try clock.advance(0.5)
        #expect(counts == [1, 1, 3, 1])
    }

    @Test("an error thrown by the function stops the loop and reaches the completion")
    func errorStops() throws {
        struct Boom: Error {}
        let clock = Clock()
        var calls = 0
        let loop = LoopingCall(clock) {
            calls += 1
            if calls == 3 { throw Boom() }
        }
        var outcome: Result<Void, any Error>?
        try loop.start(1, completion: { outcome = $0 })
        try clock.pump([1, 1, 1, 1])
        #expect(calls == 3)
        #expect(!loop.running)
        #expect(throws: Boom.self) { try outcome?.get() }
    }

    @Test("stop from inside the function ends the loop after that call")
    func stopInside() throws {
        let clock = Clock()
        var calls = 0
        var loop: LoopingCall!
        defer { loop = nil }  // its function captures it: break the cycle
        loop = LoopingCall(clock) {
            calls += 1
            if calls == 2 { loop.stop() }
        }
        var completed = 0
        try loop.start(1, completion: { _ in completed += 1 })
        try clock.pump([1, 1, 1])
        #expect(calls == 2)
        #expect(completed == 1)
    }

    @Test("a negative interval or a second start throws; interval 0 is allowed")
    func startErrors() throws {
        let clock = Clock()
        let loop = LoopingCall(clock) {}
        #expect(throws: LoopingCall.StartError.self) { try loop.start(-1) }
        #expect(!loop.running)
        try loop.start(1)
        #expect(throws: LoopingCall.StartError.self) { try loop.start(1) }
        loop.stop()
    }

    @Test("interval 0 on a real reactor calls once per loop iteration until stopped")
    func zeroIntervalOnReactor() throws {
        let reactor = Reactor()
        var calls = 0
        var loop: LoopingCall!
        defer { loop = nil }  // its function captures it: break the cycle
        loop = LoopingCall(reactor) {
            calls += 1
            if calls == 50 {
                loop.stop()
                try reactor.stop()
            }
        }
        var done = false
        try loop.start(0, completion: { _ in done = true })
        let watchdog = reactor.callLater(5) { try reactor.stop() }
        try reactor.run()
        #expect(watchdog.active)
        try watchdog.cancel()  // else the reactor keeps it, and its closure keeps the reactor
        #expect(calls == 50)
        #expect(done)
    }
}

@Suite("DelayedCall lifetime")
struct DelayedCallLifetimeTests {
    final class Tracker {}

    @Test("a clock dropped with a call pending frees the call and its closure (no cycle through the timer queue)")
    func droppedClockFreesPendingCalls() {
        weak var tracked: Tracker?
        do {
            let clock = Clock()
            let tracker = Tracker()
            tracked = tracker
            clock.callLater(10) { _ = tracker }
        }
        #expect(tracked == nil)
    }

    @Test("a call kept past its clock is cancelled with it, frees its closure, and answers cancel() without a crash")
    func pendingCallDoesNotOutliveItsClock() throws {
        weak var tracked: Tracker?
        var call: DelayedCall?
        do {
            let clock = Clock()
            let tracker = Tracker()
            tracked = tracker
            call = clock.callLater(10) { _ = tracker }
        }
        // The clock is gone, so the call will never run: it is cancelled and
        // its closure (with what it captured) is released, though the call object lives on.
        #expect(call?.active == false)
        #expect(tracked == nil)
        #expect(throws: AlreadyCancelled.self) { try call?.cancel() }
        #expect(throws: AlreadyCancelled.self) { try call?.reset(1) }
    }
}

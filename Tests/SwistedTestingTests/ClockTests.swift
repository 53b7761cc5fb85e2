// SwistedTesting's Clock: the reactor's DelayedCall semantics, with time moved by hand.
import Swisted
import SwistedTesting
import Testing

@Suite("Clock")
struct ClockTests {
    @Test("calls run when the clock reaches their time, in time order")
    func runsInOrder() throws {
        let clock = Clock()
        var log: [String] = []
        clock.callLater(2) { log.append("two") }
        clock.callLater(1) { log.append("one") }
        clock.callLater(3) { log.append("three") }
        try clock.advance(1.5)
        #expect(log == ["one"])
        try clock.advance(1.5)
        #expect(log == ["one", "two", "three"])
        #expect(clock.seconds() == 3)
    }

    @Test("same-time calls run in scheduling order; advance(0) runs what is due now")
    func sameTime() throws {
        let clock = Clock(start: 100)
        var log: [Int] = []
        for index in 0..<5 { clock.callLater(0) { log.append(index) } }
        try clock.advance(0)
        #expect(log == [0, 1, 2, 3, 4])
        #expect(clock.seconds() == 100)
    }

    @Test("cancel, reset and delay behave as on the reactor")
    func delayedCallSemantics() throws {
        let clock = Clock()
        var log: [String] = []
        let cancelled = clock.callLater(1) { log.append("cancelled") }
        let moved = clock.callLater(1) { log.append("moved") }
        let delayed = clock.callLater(1) { log.append("delayed") }
        try cancelled.cancel()
        try moved.reset(5)
        try delayed.delay(2)
        #expect(delayed.getTime() == 3)
        #expect(throws: AlreadyCancelled.self) { try cancelled.cancel() }
        try clock.advance(3)
        #expect(log == ["delayed"])
        #expect(!delayed.active)
        #expect(throws: AlreadyCalled.self) { try delayed.reset(1) }
        try clock.advance(2)
        #expect(log == ["delayed", "moved"])
    }

    @Test("getDelayedCalls lists what is pending, earliest first")
    func delayedCalls() throws {
        let clock = Clock()
        let late = clock.callLater(9) {}
        let early = clock.callLater(1) {}
        #expect(clock.getDelayedCalls().map { $0 === early || $0 === late } == [true, true])
        #expect(clock.getDelayedCalls().first === early)
        try clock.advance(1)
        #expect(clock.getDelayedCalls().count == 1)
        #expect(clock.getDelayedCalls().first === late)
    }

    @Test("a call scheduled by a running call runs in the same advance if it is due")
    func chained() throws {
        let clock = Clock()
        var log: [Double] = []
        // Unowned: the call at 5 s is still pending at the end, and the
        // clock keeps it: a strong capture would keep the clock alive.
        clock.callLater(1) { [unowned clock] in
            log.append(clock.seconds())
            clock.callLater(0) { log.append(clock.seconds()) }
            clock.callLater(5) { log.append(clock.seconds()) }
        }
        try clock.advance(2)
        #expect(log == [2, 2])
    }

    @Test("pump advances step by step, as a LoopingCall would see it")
    func pump() throws {
        let clock = Clock()
        var ticks: [Double] = []
        func tick() { ticks.append(clock.seconds()); clock.callLater(1) { tick() } }
        clock.callLater(1) { tick() }
        try clock.pump([1, 1, 1, 0.5])
        #expect(ticks == [1, 2, 3])
        // The next tick is pending, and it captures the clock that keeps it.
        for call in clock.getDelayedCalls() { try call.cancel() }
    }

    @Test("an error from a call is thrown by advance after the other due calls ran")
    func errors() throws {
        struct Boom: Error {}
        let clock = Clock()
        var ran = false
        clock.callLater(1) { throw Boom() }
        clock.callLater(1) { ran = true }
        #expect(throws: Boom.self) { try clock.advance(1) }
        #expect(ran)
    }

    @Test("code written against ReactorTime runs on a Clock and on a Reactor")
    func reactorTime() throws {
        func timeout(_ time: any ReactorTime, after seconds: Double, _ action: @escaping () -> Void) -> DelayedCall {
            time.callLater(seconds) { action() }
        }
        let clock = Clock()
        var fired = false
        let call = timeout(clock, after: 30) { fired = true }
        #expect(clock.getDelayedCalls().count == 1)
        try clock.advance(29.9)
        #expect(!fired && call.active)
        try clock.advance(0.1)
        #expect(fired)

        let reactor = Reactor()
        var reactorFired = false
        _ = timeout(reactor, after: 0) { reactorFired = true; try? reactor.stop() }
        #expect(reactor.getDelayedCalls().count == 1)
        try reactor.run()
        #expect(reactorFired)
    }
}

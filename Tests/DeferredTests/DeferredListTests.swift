import Glibc
import Swisted
import SwistedTesting
import Testing

@Suite("gatherResults and DeferredList")
struct DeferredListTests {
    @Test("gatherResults fires with the values in the order given, whatever order they fire in")
    func gatherInOrder() throws {
        let ds = (0..<3).map { _ in Deferred<Int>() }
        let outcome = Outcome<[Int]>()
        gatherResults(ds).record(into: outcome)
        try ds[2].callback(30)
        try ds[0].callback(10)
        #expect(outcome.count == 0)
        try ds[1].callback(20)
        #expect(outcome.values == [[10, 20, 30]])
        gatherResults([Deferred<Int>]()).record(into: outcome)
        #expect(outcome.values.last == [])
    }

    @Test("gatherResults fails with FirstError (error and index) on the first failure")
    func gatherFirstError() throws {
        let log = TestLog()
        let outcome = Outcome<[Int]>()
        do {
            let ds = (0..<3).map { _ in Deferred<Int>() }
            for d in ds { d.logger = log.logger }
            gatherResults(ds, consumeErrors: true).record(into: outcome)
            try ds[0].callback(1)
            try ds[1].errback(Boom(tag: 1))
            try ds[2].errback(Boom(tag: 2))
        }
        #expect(outcome.errors.count == 1)
        let first = try #require(outcome.errors.first as? FirstError)
        #expect(first.index == 1)
        #expect(first.error as? Boom == Boom(tag: 1))
        #expect(log.messages.isEmpty, "consumeErrors: the constituents' errors count as handled")
    }

    @Test("Without consumeErrors the constituents' errors stay theirs, and are logged if nobody handles them")
    func gatherKeepsErrors() throws {
        let log = TestLog()
        let outcome = Outcome<[Int]>()
        do {
            let ds = (0..<2).map { _ in Deferred<Int>() }
            for d in ds { d.logger = log.logger }
            gatherResults(ds).record(into: outcome)
            try ds[0].errback(Boom(tag: 1))
            try ds[1].errback(Boom(tag: 2))
        }
        #expect((outcome.errors.first as? FirstError)?.index == 0)
        #expect(log.messages.count == 2)
    }

    @Test("DeferredList reports each outcome in order; fireOnOneErrback fails at the first error")
    func deferredList() throws {
        let ds = (0..<3).map { _ in Deferred<Int>() }
        let outcome = Outcome<[Result<Int, any Error>]>()
        DeferredList(ds, consumeErrors: true).record(into: outcome)
        try ds[1].errback(Boom(tag: 5))
        try ds[0].callback(1)
        try ds[2].callback(3)
        let results = try #require(outcome.values.first)
        #expect(results.count == 3)
        #expect((try? results[0].get()) == 1)
        #expect(throws: Boom(tag: 5)) { try results[1].get() }
        #expect((try? results[2].get()) == 3)

        let es = (0..<2).map { _ in Deferred<Int>() }
        let failFast = Outcome<[Result<Int, any Error>]>()
        DeferredList(es, fireOnOneErrback: true, consumeErrors: true).record(into: failFast)
        try es[1].errback(Boom(tag: 6))
        #expect((failFast.errors.first as? FirstError)?.index == 1)
        try es[0].callback(0)  // after the list fired: nothing more happens
        #expect(failFast.count == 1)

        let empty = Outcome<[Result<Int, any Error>]>()
        DeferredList([Deferred<Int>]()).record(into: empty)
        #expect(empty.values.first?.isEmpty == true)
    }

    @Test("DeferredList(firstOf:) fires with the first value and its index; if all fail, AllFailedError")
    func firstOf() throws {
        let ds = (0..<3).map { _ in Deferred<Int>() }
        let outcome = Outcome<(value: Int, index: Int)>()
        DeferredList(firstOf: ds, consumeErrors: true).record(into: outcome)
        try ds[0].errback(Boom())
        try ds[2].callback(7)
        try ds[1].callback(8)
        #expect(outcome.values.count == 1)
        #expect(outcome.values.first?.value == 7)
        #expect(outcome.values.first?.index == 2)

        let es = (0..<2).map { _ in Deferred<Int>() }
        let allFailed = Outcome<(value: Int, index: Int)>()
        DeferredList(firstOf: es, consumeErrors: true).record(into: allFailed)
        try es[0].errback(Boom(tag: 1))
        try es[1].errback(Boom(tag: 2))
        let error = try #require(allFailed.errors.first as? AllFailedError)
        #expect(error.errors.compactMap { $0 as? Boom } == [Boom(tag: 1), Boom(tag: 2)])
    }

    @Test("Cancelling a gatherResults Deferred cancels every Deferred in it")
    func cancelGather() throws {
        var cancelled: [Int] = []
        let ds = (0..<3).map { index in Deferred<Int>(canceller: { _ in cancelled.append(index) }) }
        try ds[0].callback(0)
        let outcome = Outcome<[Int]>()
        let all = gatherResults(ds, consumeErrors: true)
        all.record(into: outcome)
        all.cancel()
        #expect(cancelled == [1, 2])
        let first = try #require(outcome.errors.first as? FirstError)
        #expect(first.error is CancelledError)
    }
}

@Suite("deferLater")
struct DeferLaterTests {
    @Test("deferLater fires after the delay with what the function returns, or its error")
    func firesAfterDelay() throws {
        let clock = Clock()
        let outcome = Outcome<Int>()
        deferLater(clock, 5) { 42 }.record(into: outcome)
        deferLater(clock, 5) { () throws -> Int in throw Boom(tag: 1) }.record(into: outcome)
        try clock.advance(4.9)
        #expect(outcome.count == 0)
        try clock.advance(0.1)
        #expect(outcome.values == [42])
        #expect(outcome.errors.first as? Boom == Boom(tag: 1))
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("Cancelling deferLater cancels the delayed call: the function never runs")
    func cancel() throws {
        let clock = Clock()
        var ran = false
        let outcome = Outcome<Void>()
        let d = deferLater(clock, 1) { ran = true }
        d.record(into: outcome)
        #expect(clock.getDelayedCalls().count == 1)
        d.cancel()
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(2)
        #expect(!ran)
        #expect(outcome.errors.first is CancelledError)
    }

    @Test("deferLater on a real reactor fires on the reactor's thread")
    func realReactor() throws {
        let reactor = Reactor()
        let testThread = currentThread()
        var got: Int?
        var onReactorThread = false
        deferLater(reactor, 0.01) { 7 }.addCallback { [unowned reactor] (value: Int) in
            got = value
            onReactorThread = pthread_equal(currentThread(), testThread) != 0 && reactor.running
            try reactor.stop()
        }
        try runReactor(reactor)
        #expect(got == 7)
        #expect(onReactorThread)
    }
}

@Suite("addTimeout")
struct AddTimeoutTests {
    @Test("A Deferred that does not fire in time is cancelled and fails with DeferredTimeoutError")
    func timesOut() throws {
        let clock = Clock()
        var cancelled = false
        let d = Deferred<Int>(canceller: { _ in cancelled = true })
        let outcome = Outcome<Int>()
        d.addTimeout(2, clock).record(into: outcome)
        try clock.advance(1.9)
        #expect(outcome.count == 0)
        try clock.advance(0.1)
        #expect(cancelled)
        #expect((outcome.errors.first as? DeferredTimeoutError)?.seconds == 2)
    }

    @Test("A Deferred that fires in time keeps its result, and the timeout call is cancelled")
    func firesInTime() throws {
        let clock = Clock()
        let d = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.addTimeout(2, clock).record(into: outcome)
        try d.callback(5)
        #expect(clock.getDelayedCalls().isEmpty)
        #expect(outcome.values == [5])

        // A CancelledError not caused by the timeout stays a CancelledError.
        let e = Deferred<Int>()
        let cancelled = Outcome<Int>()
        e.addTimeout(2, clock).record(into: cancelled)
        e.cancel()
        #expect(cancelled.errors.first is CancelledError)
        #expect(clock.getDelayedCalls().isEmpty)
    }
}

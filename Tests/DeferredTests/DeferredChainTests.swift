import Swisted
import Testing

@Suite("Deferred: the callback chain")
struct DeferredChainTests {
    @Test("Callbacks run in order, whether added before or after the Deferred fired")
    func callbacksRunInOrder() throws {
        let d = Deferred<Int>()
        var seen: [Int] = []
        d.addCallback { value in seen.append(value); return value + 1 }
        #expect(seen.isEmpty)
        try d.callback(1)
        #expect(seen == [1])
        d.addCallback { value in seen.append(value); return value * 10 }
        d.addCallback { value in seen.append(value); return value }
        #expect(seen == [1, 2, 20])
        #expect(d.called)
    }

    @Test("A callback that throws sends the chain to the errbacks; an errback that returns a value recovers it")
    func errbackRecovery() throws {
        let d = Deferred<Int>()
        var skipped = false
        var caught: Boom?
        let outcome = Outcome<Int>()
        d.addCallback { _ -> Int in throw Boom(tag: 1) }
        d.addCallback { value -> Int in skipped = true; return value }
        d.addErrback { error -> Int in
            caught = error as? Boom
            return 42
        }
        d.addErrback { _ -> Int in skipped = true; return 0 }
        d.record(into: outcome)
        try d.callback(1)
        #expect(caught == Boom(tag: 1))
        #expect(!skipped, "a callback after the error and an errback after the recovery must both be skipped")
        #expect(outcome.values == [42])
        #expect(outcome.errors.isEmpty)
    }

    @Test("An errback that throws keeps the chain failed, with the new error")
    func errbackRethrows() throws {
        let d = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.addErrback { _ -> Int in throw Boom(tag: 2) }.record(into: outcome)
        try d.errback(Boom(tag: 1))
        #expect(outcome.errors.count == 1)
        #expect(outcome.errors.first as? Boom == Boom(tag: 2))
    }

    @Test("addBoth sees values and errors; addCallbacks runs exactly one of its pair")
    func addBothAndAddCallbacks() throws {
        var both: [String] = []
        let good = Deferred<Int>.succeed(5)
        good.addBoth { result -> Int in
            both.append("\(try result.get())")
            return 6
        }
        let bad = Deferred<Int>.fail(Boom())
        bad.addBoth { result -> Int in
            if case .failure = result { both.append("error") }
            return 0
        }
        #expect(both == ["5", "error"])

        var ran: [String] = []
        let d = Deferred<Int>()
        d.addCallbacks({ value -> Int in ran.append("callback \(value)"); throw Boom() },
                       errback: { _ in ran.append("errback"); return 0 })
        d.addCallbacks({ value in ran.append("callback \(value)"); return value },
                       errback: { _ in ran.append("errback"); return 7 })
        try d.callback(3)
        #expect(ran == ["callback 3", "errback"])
    }

    @Test("A type-changing step returns a Deferred of the new type that continues the chain")
    func typeChangingSteps() throws {
        let d = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.addCallback { value in String(repeating: "x", count: value) }
            .addCallback { (text: String) in text.count * 2 }
            .record(into: outcome)
        try d.callback(4)
        #expect(outcome.values == [8])

        // An error passes through type-changing callbacks to the errback at the end.
        let e = Deferred<Int>()
        let texts = Outcome<String>()
        e.addCallback { value in "\(value)" }
            .addErrback { _ in "recovered" }
            .record(into: texts)
        try e.errback(Boom())
        #expect(texts.values == ["recovered"])
    }

    @Test("A same-type step returns the Deferred itself; a type-changing one a new Deferred, the original keeping its result")
    func sameTypeIsSelf() throws {
        let d = Deferred<Int>()
        #expect(d.addCallback { $0 + 1 } === d)
        #expect(d.addErrback { _ in 0 } === d)
        #expect(d.addBoth { (result: Result<Int, any Error>) in try result.get() } === d)
        let text = d.addCallback { "\($0)" }
        let outcome = Outcome<Int>()
        let texts = Outcome<String>()
        text.record(into: texts)
        try d.callback(1)
        d.record(into: outcome)
        #expect(texts.values == ["2"])
        #expect(outcome.values == [2], "steps added to the original after a type change see its own result")
    }

    @Test("Multi-statement closures without a return type compile and resolve (Void steps, Void Deferreds)")
    func voidClosures() throws {
        var log: [String] = []
        let d = Deferred<Int>()
        let done = d.addCallback { value in
            log.append("got \(value)")
            log.append("no return statement")
        }
        done.addCallback {
            log.append("void step")
            log.append("on a Deferred<Void>")
        }
        done.addErrback { error in
            log.append("errback \(error)")
            log.append("recovers with ()")
        }
        try d.callback(3)
        #expect(log == ["got 3", "no return statement", "void step", "on a Deferred<Void>"])
    }

    @Test("callback or errback on a fired Deferred throws AlreadyCalledError")
    func alreadyCalled() throws {
        let d = Deferred<Int>()
        try d.callback(1)
        #expect(throws: AlreadyCalledError.self) { try d.callback(2) }
        #expect(throws: AlreadyCalledError.self) { try d.errback(Boom()) }
        var seen: [Int] = []
        d.addCallback { seen.append($0); return $0 }
        #expect(seen == [1], "the first result stands")
    }

    @Test("succeed and fail make fired Deferreds")
    func succeedAndFail() {
        let outcome = Outcome<String>()
        Deferred.succeed("hi").record(into: outcome)
        Deferred<String>.fail(Boom(tag: 3)).record(into: outcome)
        #expect(outcome.values == ["hi"])
        #expect(outcome.errors.first as? Boom == Boom(tag: 3))
    }
}

@Suite("Deferred: chaining on returned Deferreds, pause and unpause")
struct DeferredNestingTests {
    @Test("A callback that returns a pending Deferred pauses the chain until that one fires")
    func pausesOnReturnedDeferred() throws {
        let outer = Deferred<Int>()
        let inner = Deferred<Int>()
        let outcome = Outcome<Int>()
        outer.addCallback { _ in inner }
        outer.addCallback { $0 + 1 }
        outer.record(into: outcome)
        try outer.callback(1)
        #expect(outer.paused)
        #expect(outcome.count == 0)
        try inner.callback(10)
        #expect(!outer.paused)
        #expect(outcome.values == [11])
    }

    @Test("A returned Deferred that already fired is used at once; its error becomes the chain's")
    func firedInnerUsedAtOnce() throws {
        let outcome = Outcome<Int>()
        let d = Deferred<Int>.succeed(1)
        d.addCallback { _ in Deferred<Int>.fail(Boom(tag: 9)) }.record(into: outcome)
        #expect(outcome.errors.first as? Boom == Boom(tag: 9))
    }

    @Test("A type-changing callback may return a Deferred of the new type")
    func typeChangingReturnsDeferred() throws {
        let d = Deferred<Int>()
        let inner = Deferred<String>()
        let outcome = Outcome<String>()
        d.addCallback { _ in inner }.addCallback { $0 + "!" }.record(into: outcome)
        try d.callback(0)
        #expect(outcome.count == 0)
        try inner.callback("done")
        #expect(outcome.values == ["done!"])
    }

    @Test("An errback may return a Deferred (a retry) that recovers the chain")
    func errbackReturnsDeferred() throws {
        let d = Deferred<Int>()
        let retry = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.addErrback { _ in retry }.record(into: outcome)
        try d.errback(Boom())
        try retry.callback(5)
        #expect(outcome.values == [5])
    }

    @Test("A callback returning the Deferred it belongs to fails the chain instead of hanging")
    func returnsItself() throws {
        let d = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.addCallback { _ in d }
        d.record(into: outcome)
        try d.callback(1)
        #expect(outcome.errors.first is DeferredReturnedItself)
    }

    @Test("Ten thousand nested Deferreds finish without growing the call stack")
    func deepNesting() throws {
        // Each step waits on the next Deferred; the last one fires and the
        // whole cascade unwinds: iterative, not one frame per level.
        let count = 10_000
        let leaves = (0..<count).map { _ in Deferred<Int>() }
        for index in 0..<(count - 1) {
            leaves[index].addCallback { _ in leaves[index + 1] }
        }
        let outcome = Outcome<Int>()
        leaves[0].addCallback { $0 + 1 }.record(into: outcome)
        for index in 0..<count - 1 { try leaves[index].callback(0) }
        #expect(outcome.count == 0)
        try leaves[count - 1].callback(41)
        #expect(outcome.values == [42])
    }

    @Test("pause holds the chain; each pause needs an unpause; extra unpauses are ignored")
    func pauseUnpause() throws {
        let d = Deferred<Int>()
        var seen: [Int] = []
        d.pause()
        d.pause()
        d.addCallback { seen.append($0); return $0 }
        try d.callback(1)
        #expect(seen.isEmpty)
        d.unpause()
        #expect(seen.isEmpty)
        d.unpause()
        #expect(seen == [1])
        d.unpause()
        d.addCallback { seen.append($0 + 1); return $0 }
        #expect(seen == [1, 2])
    }

    @Test("chainDeferred fires the other Deferred with this chain's result")
    func chainDeferred() throws {
        let a = Deferred<Int>()
        let b = Deferred<Int>()
        let outcome = Outcome<Int>()
        b.record(into: outcome)
        a.chainDeferred(b)
        try a.errback(Boom(tag: 4))
        #expect(outcome.errors.first as? Boom == Boom(tag: 4))
    }

    @Test("Re-entrancy: a callback may add callbacks, cancel, or fire the same Deferred")
    func reentrancy() throws {
        let d = Deferred<Int>()
        var order: [String] = []
        d.addCallback { value in
            order.append("first")
            d.addCallback { order.append("added inside"); return $0 }
            d.cancel()  // already fired: nothing to cancel
            try d.callback(99)  // AlreadyCalledError becomes the chain's error
            return value
        }
        let outcome = Outcome<Int>()
        d.addErrback { error in
            order.append("errback \(error is AlreadyCalledError)")
            return 0
        }
        try d.callback(1)
        d.record(into: outcome)
        // The callback added inside the first one joined the end of the chain, after the errback.
        #expect(order == ["first", "errback true", "added inside"])
        #expect(outcome.values == [0])
        let e = Deferred<Int>()
        var inner: [String] = []
        e.addCallback { v in e.addCallback { inner.append("late \($0)"); return $0 }; return v + 1 }
        try e.callback(1)
        #expect(inner == ["late 2"])
    }
}

@Suite("Deferred: cancel")
struct DeferredCancelTests {
    @Test("cancel without canceller fails with CancelledError and swallows the one late callback")
    func cancelWithoutCanceller() throws {
        let d = Deferred<Int>()
        let outcome = Outcome<Int>()
        d.record(into: outcome)
        d.cancel()
        #expect(outcome.errors.first is CancelledError)
        try d.callback(1)  // the work finishing later: ignored once
        #expect(throws: AlreadyCalledError.self) { try d.callback(2) }
        #expect(outcome.count == 1)
    }

    @Test("The canceller runs; if it does not fire the Deferred, CancelledError; if it does, its result stands")
    func canceller() throws {
        var cancelled = 0
        let d = Deferred<Int>(canceller: { _ in cancelled += 1 })
        let outcome = Outcome<Int>()
        d.record(into: outcome)
        d.cancel()
        d.cancel()
        #expect(cancelled == 1)
        #expect(outcome.errors.first is CancelledError)
        #expect(throws: AlreadyCalledError.self) { try d.callback(1) }

        let e = Deferred<Int>(canceller: { try? $0.callback(-1) })
        let values = Outcome<Int>()
        e.record(into: values)
        e.cancel()
        #expect(values.values == [-1])
    }

    @Test("Cancelling a Deferred that waits on a returned Deferred cancels that one")
    func cancelPropagatesToInner() throws {
        var innerCancelled = false
        let inner = Deferred<Int>(canceller: { _ in innerCancelled = true })
        let outer = Deferred<Int>()
        let outcome = Outcome<Int>()
        outer.addCallback { _ in inner }.record(into: outcome)
        try outer.callback(0)
        outer.cancel()
        #expect(innerCancelled)
        #expect(outcome.errors.first is CancelledError)
    }

    @Test("Cancelling a chain that waits on a Deferred nobody holds any more carries on with CancelledError")
    func cancelWaitingOnVanished() throws {
        let outer = Deferred<Int>()
        let outcome = Outcome<Int>()
        weak var vanished: Deferred<Int>?
        outer.addCallback { _ in
            let inner = Deferred<Int>()
            vanished = inner
            return inner
        }.record(into: outcome)
        try outer.callback(0)
        #expect(vanished == nil, "nothing holds the inner Deferred (the waiting chain refers to it weakly)")
        #expect(outer.paused)
        outer.cancel()
        #expect(!outer.paused)
        #expect(outcome.errors.first is CancelledError)
    }

    @Test("Cancelling the Deferred a type-changing step returned cancels the original")
    func cancelDerived() throws {
        var cancelled = false
        let d = Deferred<Int>(canceller: { _ in cancelled = true })
        let outcome = Outcome<String>()
        let derived = d.addCallback { "\($0)" }
        derived.record(into: outcome)
        derived.cancel()
        #expect(cancelled)
        #expect(outcome.errors.first is CancelledError)
    }
}

import Foundation
import Synchronization
import Testing
@testable import Swisted

/// Runs `reactor` on this thread, failing the test (and stopping) if it is
/// still running after `limit` seconds, so a bug cannot hang the suite.
private func runBounded(_ reactor: Reactor, limit: Double = 5, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let watchdog = reactor.callLater(limit) {
        Issue.record("reactor still running after \(limit) s", sourceLocation: sourceLocation)
        try reactor.stop()
    }
    try reactor.run()
    if watchdog.active { try watchdog.cancel() }
}

/// Collects log lines a reactor reports.
private final class LogRecorder {
    var lines: [String] = []
    func attach(to reactor: Reactor) {
        reactor.logHandler = { [unowned self] in self.lines.append($0) }
    }
}

@Suite("Reactor: running, stopping and running again")
struct ReactorRunTests {
    @Test("run returns after stop, and a stopped reactor runs again")
    func runStopRunAgain() throws {
        let reactor = Reactor()
        var runs = 0
        reactor.callLater(0) { runs += 1; try reactor.stop() }
        try runBounded(reactor)
        #expect(runs == 1)
        #expect(!reactor.running)
        reactor.callLater(0) { runs += 1; try reactor.stop() }
        try runBounded(reactor)
        #expect(runs == 2)
        #expect(reactor.openHandleCount == 0)
    }

    @Test("stop when not running throws ReactorNotRunning")
    func stopWhenNotRunning() {
        let reactor = Reactor()
        #expect(throws: ReactorNotRunning.self) { try reactor.stop() }
    }

    @Test("a second stop while stopping throws ReactorNotRunning")
    func secondStopThrows() throws {
        let reactor = Reactor()
        var second: (any Error)?
        reactor.callLater(0) {
            try reactor.stop()
            do { try reactor.stop() } catch { second = error }
        }
        try runBounded(reactor)
        #expect(second is ReactorNotRunning)
    }

    @Test("run while running throws ReactorAlreadyRunning and leaves the loop intact")
    func runWhileRunning() throws {
        let reactor = Reactor()
        var nested: (any Error)?
        var laterRan = false
        reactor.callLater(0) {
            do { try reactor.run() } catch { nested = error }
            reactor.callLater(0.01) { laterRan = true; try reactor.stop() }
        }
        try runBounded(reactor)
        #expect(nested is ReactorAlreadyRunning)
        #expect(laterRan)
    }

    @Test("run from another thread while running throws ReactorAlreadyRunning")
    func runFromOtherThreadWhileRunning() throws {
        let reactor = Reactor()
        let outcome = Mutex<String>("not run")
        reactor.callWhenRunning {
            let thread = Thread {
                do { try reactor.run(); outcome.withLock { $0 = "ran" } } catch {
                    outcome.withLock { $0 = "\(type(of: error))" }
                }
                reactor.callFromThread { try reactor.stop() }
            }
            thread.start()
        }
        try runBounded(reactor)
        #expect(outcome.withLock { $0 } == "ReactorAlreadyRunning")
    }

    @Test("several reactors run at once, each on its own thread")
    func severalReactors() throws {
        let done = Mutex(0)
        let finished = DispatchGroup()
        for index in 0..<3 {
            finished.enter()
            Thread {
                let reactor = Reactor()
                reactor.callLater(0.01 * Double(index)) {
                    done.withLock { $0 += 1 }
                    try reactor.stop()
                }
                try? reactor.run()
                finished.leave()
            }.start()
        }
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(done.withLock { $0 } == 3)
    }

    @Test("seconds() is monotonic and counts in seconds")
    func secondsIsMonotonic() throws {
        let reactor = Reactor()
        let start = reactor.seconds()
        var fired = 0.0
        reactor.callLater(0.05) { fired = reactor.seconds(); try reactor.stop() }
        try runBounded(reactor)
        #expect(fired - start >= 0.05)
        #expect(fired - start < 2)
    }
}

@Suite("Reactor: delayed calls")
struct DelayedCallTests {
    @Test("a call in the far future (1e20 s) arms the timer without overflow and never fires")
    func farFuture() throws {
        let reactor = Reactor()
        var fired = false
        let far = reactor.callLater(1e20) { fired = true }
        reactor.callLater(0.01) { [unowned reactor] in try reactor.stop() }
        try runBounded(reactor)
        #expect(!fired)
        #expect(far.active)
        try far.cancel()
    }

    @Test("calls due at the same time run in the order they were scheduled")
    func sameDeadlineFIFO() throws {
        let reactor = Reactor()
        var order: [Int] = []
        // One deadline for all: schedule against a fixed absolute time.
        let due = reactor.seconds() + 0.02
        for index in 0..<100 {
            let call = reactor.callLater(1) { order.append(index) }
            try call.reset(0)  // moves it; then pin the exact same time for all
            reactor.timers.reschedule(call, to: due)
        }
        reactor.callLater(0.05) { try reactor.stop() }
        try runBounded(reactor)
        #expect(order == Array(0..<100))
    }

    @Test("calls run in deadline order")
    func deadlineOrder() throws {
        let reactor = Reactor()
        var order: [String] = []
        reactor.callLater(0.03) { order.append("c") }
        reactor.callLater(0.01) { order.append("a") }
        reactor.callLater(0.02) { order.append("b") }
        reactor.callLater(0) { order.append("zero") }
        reactor.callLater(0.05) { try reactor.stop() }
        try runBounded(reactor)
        #expect(order == ["zero", "a", "b", "c"])
    }

    @Test("a cancelled call does not run; cancelling twice throws AlreadyCancelled")
    func cancel() throws {
        let reactor = Reactor()
        var ran = false
        let call = reactor.callLater(0.01) { ran = true }
        #expect(call.active)
        try call.cancel()
        #expect(!call.active)
        #expect(throws: AlreadyCancelled.self) { try call.cancel() }
        #expect(throws: AlreadyCancelled.self) { try call.reset(1) }
        #expect(throws: AlreadyCancelled.self) { try call.delay(1) }
        reactor.callLater(0.03) { try reactor.stop() }
        try runBounded(reactor)
        #expect(!ran)
    }

    @Test("cancel, reset and delay of a call that ran throw AlreadyCalled")
    func alreadyCalled() throws {
        let reactor = Reactor()
        let call = reactor.callLater(0) {}
        reactor.callLater(0.01) { try reactor.stop() }
        try runBounded(reactor)
        #expect(!call.active)
        #expect(throws: AlreadyCalled.self) { try call.cancel() }
        #expect(throws: AlreadyCalled.self) { try call.reset(1) }
        #expect(throws: AlreadyCalled.self) { try call.delay(1) }
    }

    @Test("reset and delay move a pending call")
    func resetAndDelay() throws {
        let reactor = Reactor()
        var order: [String] = []
        let early = reactor.callLater(0.01) { order.append("was early") }
        reactor.callLater(0.03) { order.append("middle") }
        let late = reactor.callLater(0.06) { order.append("was late") }
        try early.reset(0.05)  // now after "middle"
        let before = late.getTime()
        try late.delay(-0.055)  // now first
        #expect(abs(late.getTime() - (before - 0.055)) < 1e-9)
        reactor.callLater(0.08) { try reactor.stop() }
        try runBounded(reactor)
        #expect(order == ["was late", "middle", "was early"])
    }

    @Test("a delayed call does not run before its time")
    func notEarly() throws {
        let reactor = Reactor()
        var lateness: [Double] = []
        for delay in [0.001, 0.0025, 0.01, 0.0301] {
            let due = reactor.seconds() + delay
            reactor.callLater(delay) { lateness.append(reactor.seconds() - due) }
        }
        reactor.callLater(0.05) { try reactor.stop() }
        try runBounded(reactor)
        #expect(lateness.count == 4)
        #expect(lateness.allSatisfy { $0 >= 0 })
    }

    @Test("a call scheduled with delay 0 from a call runs in a later round, so a zero-delay loop cannot starve I/O")
    func zeroDelayLoopDoesNotStarve() throws {
        let reactor = Reactor()
        var spins = 0
        let crossThreadRan = ReactorBound(false, reactor: reactor)
        func spin() {
            spins += 1
            if crossThreadRan.value { try? reactor.stop(); return }
            reactor.callLater(0, spin)
        }
        reactor.callLater(0, spin)
        reactor.callWhenRunning {
            Thread { reactor.callFromThread { crossThreadRan.value = true } }.start()
        }
        try runBounded(reactor)
        #expect(crossThreadRan.value)
        #expect(spins >= 1)
    }

    @Test("an error thrown by a delayed call is logged and later calls still run")
    func throwingCallIsLogged() throws {
        struct Boom: Error {}
        let reactor = Reactor()
        let log = LogRecorder()
        log.attach(to: reactor)
        var after = false
        reactor.callLater(0) { throw Boom() }
        reactor.callLater(0) { after = true }
        reactor.callLater(0.01) { try reactor.stop() }
        try runBounded(reactor)
        #expect(after)
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("Boom") == true)
    }

    @Test("a timer that stops the reactor does not lose the calls due with it, nor later ones")
    func timerStopsReactor() throws {
        let reactor = Reactor()
        var order: [String] = []
        reactor.callLater(0) { order.append("stop"); try reactor.stop() }
        reactor.callLater(0) { order.append("same round") }
        reactor.callLater(0.02) { order.append("next run"); try reactor.stop() }
        try runBounded(reactor)
        #expect(order == ["stop", "same round"])
        try runBounded(reactor)
        #expect(order == ["stop", "same round", "next run"])
    }
}

@Suite("Reactor: callFromThread")
struct CallFromThreadTests {
    /// Reactor-thread bookkeeping for the ordering test.
    final class Tally {
        var lastSeen: [Int]
        var outOfOrder = 0
        var total = 0
        init(threads: Int) { lastSeen = [Int](repeating: -1, count: threads) }
    }

    @Test("8 threads × 10,000 calls all run, in order per thread")
    func manyThreads() throws {
        let reactor = Reactor()
        let threads = 8, perThread = 10_000
        let tally = ReactorBound(Tally(threads: threads), reactor: reactor)
        reactor.callWhenRunning {
            for thread in 0..<threads {
                Thread {
                    for index in 0..<perThread {
                        reactor.callFromThread {
                            let state = tally.value
                            if state.lastSeen[thread] + 1 != index { state.outOfOrder += 1 }
                            state.lastSeen[thread] = index
                            state.total += 1
                            if state.total == threads * perThread { try reactor.stop() }
                        }
                    }
                }.start()
            }
        }
        try runBounded(reactor, limit: 20)
        #expect(tally.value.total == threads * perThread)
        #expect(tally.value.outOfOrder == 0)
        #expect(tally.value.lastSeen == [Int](repeating: perThread - 1, count: threads))
    }

    @Test("calls made before run wait for it, and run on the reactor thread")
    func beforeRun() throws {
        let reactor = Reactor()
        let ranOn = Mutex<String>("")
        let thread = Thread {
            reactor.callFromThread {
                ranOn.withLock { $0 = Thread.current.name ?? "unnamed" }
                try reactor.stop()
            }
        }
        thread.start()
        while !thread.isFinished { usleep(100) }  // the call is queued before run starts
        Thread.current.name = "reactor-thread-\(UUID())"
        let expected = Thread.current.name!
        try runBounded(reactor)
        #expect(ranOn.withLock { $0 } == expected)
    }

    @Test("an error thrown by a call from another thread is logged")
    func throwingCall() throws {
        struct Boom: Error {}
        let reactor = Reactor()
        let log = LogRecorder()
        log.attach(to: reactor)
        reactor.callFromThread { throw Boom() }
        reactor.callFromThread { try reactor.stop() }
        try runBounded(reactor)
        #expect(log.lines.count == 1)
        #expect(log.lines.first?.contains("callFromThread") == true)
    }
}

@Suite("Reactor: system event triggers")
struct SystemEventTests {
    @Test("startup and shutdown triggers fire in phase order, every run")
    func phases() throws {
        let reactor = Reactor()
        var events: [String] = []
        reactor.addSystemEventTrigger(.after, .startup) { events.append("after startup") }
        reactor.addSystemEventTrigger(.before, .startup) { events.append("before startup") }
        reactor.addSystemEventTrigger(.during, .startup) { events.append("during startup") }
        reactor.addSystemEventTrigger(.after, .shutdown) { events.append("after shutdown") }
        reactor.addSystemEventTrigger(.during, .shutdown) { events.append("during shutdown") }
        reactor.addSystemEventTrigger(.before, .shutdown) { events.append("before shutdown") }
        reactor.callLater(0) { events.append("running"); try reactor.stop() }
        try runBounded(reactor)
        let oneRun = ["before startup", "during startup", "after startup", "running",
                      "before shutdown", "during shutdown", "after shutdown"]
        #expect(events == oneRun)
        reactor.callLater(0) { events.append("running"); try reactor.stop() }
        try runBounded(reactor)
        #expect(events == oneRun + oneRun)
    }

    @Test("a removed trigger does not fire")
    func remove() throws {
        let reactor = Reactor()
        var fired = false
        let id = reactor.addSystemEventTrigger(.before, .shutdown) { fired = true }
        #expect(reactor.removeSystemEventTrigger(id))
        #expect(!reactor.removeSystemEventTrigger(id))
        reactor.callLater(0) { try reactor.stop() }
        try runBounded(reactor)
        #expect(!fired)
    }

    @Test("callWhenRunning runs once when the reactor starts, at once when it runs already")
    func callWhenRunning() throws {
        let reactor = Reactor()
        var calls: [String] = []
        reactor.callWhenRunning {
            calls.append("start")
            reactor.callWhenRunning { calls.append("immediately") }
            calls.append("after nested")
            try reactor.stop()
        }
        try runBounded(reactor)
        #expect(calls == ["start", "immediately", "after nested"])
        reactor.callLater(0) { try reactor.stop() }
        try runBounded(reactor)
        #expect(calls == ["start", "immediately", "after nested"])
    }

    @Test("stop inside a startup trigger still shuts down cleanly")
    func stopDuringStartup() throws {
        let reactor = Reactor()
        var shutdown = false
        reactor.addSystemEventTrigger(.after, .shutdown) { shutdown = true }
        reactor.callWhenRunning { try reactor.stop() }
        try runBounded(reactor)
        #expect(shutdown)
        #expect(!reactor.running)
    }

    @Test("an error thrown by a trigger is logged and the other triggers fire")
    func throwingTrigger() throws {
        struct Boom: Error {}
        let reactor = Reactor()
        let log = LogRecorder()
        log.attach(to: reactor)
        var second = false
        reactor.addSystemEventTrigger(.before, .startup) { throw Boom() }
        reactor.addSystemEventTrigger(.before, .startup) { second = true }
        reactor.callWhenRunning { try reactor.stop() }
        try runBounded(reactor)
        #expect(second)
        #expect(log.lines.count == 1)
    }
}

@Suite("Reactor: threading contract")
struct ThreadingContractTests {
    @Test("reactor-thread API called from another thread traps in debug builds, naming the call and callFromThread")
    func offThreadCallTraps() async throws {
        #if DEBUG
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let reactor = Reactor()
            let running = DispatchSemaphore(value: 0)
            reactor.callWhenRunning { running.signal() }
            Thread { try? reactor.run() }.start()
            running.wait()
            reactor.callLater(1) {}  // wrong thread: must trap
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("callLater"))
        #expect(stderr.contains("callFromThread"))
        #endif
    }
}

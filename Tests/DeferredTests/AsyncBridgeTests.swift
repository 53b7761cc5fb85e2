import Glibc
import Swisted
import Synchronization
import Testing

@Suite("Deferred: async/await bridges")
struct AsyncBridgeTests {
    @Test("await value returns a fired Deferred's value, or throws its error")
    func awaitFired() async throws {
        let d = Deferred<Int>.succeed(3)
        #expect(try await d.value == 3)
        let f = Deferred<Int>.fail(Boom(tag: 1))
        await #expect(throws: Boom(tag: 1)) { try await f.value }
    }

    @Test("await value waits for a pending Deferred, fired by other code of the same actor")
    @MainActor
    func awaitPending() async throws {
        let d = Deferred<String>()
        let later = d.addCallback { $0 + "!" }
        Task { @MainActor in try d.callback("hello") }
        #expect(try await later.value == "hello!")
        // Steps added after an await still see the result.
        let outcome = Outcome<String>()
        later.record(into: outcome)
        #expect(outcome.values == ["hello!"])
    }

    @Test("An awaited error counts as handled: nothing is logged")
    @MainActor
    func awaitedErrorHandled() async throws {
        let log = TestLog()
        do {
            let d = Deferred<Int>()
            d.logger = log.logger
            Task { @MainActor in try d.errback(Boom(tag: 2)) }
            await #expect(throws: Boom(tag: 2)) { try await d.value }
        }
        #expect(log.messages.isEmpty, "\(log.messages)")
    }

    @Test("Cancelling the awaiting task cancels the Deferred; value throws CancelledError")
    @MainActor
    func cancelAwaitingTask() async throws {
        var cancellerRan = false
        let d = Deferred<Int>(canceller: { _ in cancellerRan = true })
        var task: Task<Int, any Error>?
        // The test resumes only once the task has given up the main actor,
        // i.e. is suspended inside value.
        await withCheckedContinuation { (started: CheckedContinuation<Void, Never>) in
            task = Task { @MainActor in
                started.resume()
                return try await d.value
            }
        }
        #expect(!d.called)
        task!.cancel()
        let result = await task!.result
        #expect(throws: CancelledError.self) { try result.get() }
        #expect(cancellerRan)
        #expect(d.called)
    }

    @Test("A canceller that fires a value on cancel: the cancelled await returns that value")
    @MainActor
    func cancellerValue() async throws {
        let d = Deferred<Int>(canceller: { try? $0.callback(-1) })
        let task = Task { @MainActor in
            withUnsafeCurrentTask { $0?.cancel() }  // already cancelled when it awaits
            return try await d.value
        }
        #expect(try await task.value == -1)
    }

    @Test("Deferred(reactor) { async } fires on the reactor's thread with the closure's value or error")
    func fromAsyncClosure() async throws {
        struct Seen: Sendable {
            var report: RunReport
            var onReactorThread: [Bool] = []
            var values: [Int] = []
            var errors: [Boom] = []
        }
        let seen = try await onOwnThread { () throws -> Seen in
            let reactor = Reactor()
            let reactorThread = currentThread()
            var onReactorThread: [Bool] = []
            let outcome = Outcome<Int>()
            let good = Deferred(reactor) { () async throws -> Int in
                await Task.yield()  // suspends, and resumes on the reactor
                return 21
            }
            let bad = Deferred(reactor) { () async throws -> Int in throw Boom(tag: 3) }
            let both = DeferredList([good.addCallback { $0 * 2 }, bad], consumeErrors: true)
            both.addCallback { [unowned reactor] results in
                onReactorThread.append(pthread_equal(currentThread(), reactorThread) != 0 && reactor.running)
                for result in results {
                    switch result {
                    case .success(let value): outcome.values.append(value)
                    case .failure(let error): outcome.errors.append(error)
                    }
                }
                try reactor.stop()
            }
            let report = try runReactorReporting(reactor)
            return Seen(report: report, onReactorThread: onReactorThread, values: outcome.values,
                        errors: outcome.errors.compactMap { $0 as? Boom })
        }
        #expect(!seen.report.watchdogFired)
        #expect(seen.report.openHandles == 0)
        #expect(seen.onReactorThread == [true])
        #expect(seen.values == [42])
        #expect(seen.errors == [Boom(tag: 3)])
    }

    @Test("Cancelling a Deferred made from an async closure cancels its task")
    func cancelAsyncClosure() async throws {
        struct Seen: Sendable {
            var report: RunReport
            var taskSawCancellation: Bool
            var cancelledErrors: Int
            var otherOutcomes: Int
        }
        let seen = try await onOwnThread { () throws -> Seen in
            let reactor = Reactor()
            let sawCancellation = Atomic<Bool>(false)
            let outcome = Outcome<Int>()
            let d = Deferred(reactor) { () async throws -> Int in
                // Waits until the task is cancelled (and nothing else): no
                // timer, no thread of Swift's global pool involved.
                let waiter = CancellationWaiter()
                await withTaskCancellationHandler {
                    await withCheckedContinuation { waiter.install($0) }
                } onCancel: {
                    waiter.cancelled()
                }
                sawCancellation.store(Task.isCancelled, ordering: .relaxed)
                reactor.callFromThread { try reactor.stop() }
                throw CancellationError()
            }
            d.record(into: outcome)
            reactor.callWhenRunning { d.cancel() }
            let report = try runReactorReporting(reactor)
            return Seen(report: report, taskSawCancellation: sawCancellation.load(ordering: .relaxed),
                        cancelledErrors: outcome.errors.filter { $0 is CancelledError }.count,
                        otherOutcomes: outcome.values.count + outcome.errors.filter { !($0 is CancelledError) }.count)
        }
        #expect(!seen.report.watchdogFired)
        #expect(seen.report.openHandles == 0)
        #expect(seen.taskSawCancellation)
        #expect(seen.cancelledErrors == 1)
        #expect(seen.otherOutcomes == 0)
    }
}

/// An actor whose executor is the reactor: it runs on the reactor's thread,
/// where Deferreds live, so it awaits them with no hop.
private actor OnReactor {
    let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }
    init(_ reactor: Reactor) { self.reactor = reactor }

    /// Awaits a Deferred fired by a reactor timer; reports the value and
    /// whether the code before and after the await ran on `reactorThread`.
    func awaitTimer(reactorThread: pthread_t) async throws -> (value: Int, before: Bool, after: Bool) {
        let before = pthread_equal(currentThread(), reactorThread) != 0
        let d = deferLater(reactor, 0.001) { 5 }.addCallback { $0 * 2 }
        let value = try await d.value
        let after = pthread_equal(currentThread(), reactorThread) != 0
        return (value, before, after)
    }
}

@Suite("Deferred: awaited from an actor on the reactor's executor")
struct ReactorActorAwaitTests {
    @Test("An actor on the reactor's executor awaits a Deferred on the reactor thread, before and after the await")
    func actorAwaits() async throws {
        struct Seen: Sendable {
            var report: RunReport
            var value: Int?
            var before = false
            var after = false
        }
        let seen = try await onOwnThread { () throws -> Seen in
            let reactor = Reactor()
            let reactorThread = currentThread()
            let actor = OnReactor(reactor)
            let box = SendableBox<(value: Int, before: Bool, after: Bool)?>(nil)
            reactor.callWhenRunning {
                // Started on the reactor too: no thread of Swift's global pool
                // is needed (other tests may be blocking them all).
                Task(executorPreference: reactor) {
                    let result = try? await actor.awaitTimer(reactorThread: reactorThread)
                    box.set(result)
                    reactor.callFromThread { try reactor.stop() }
                }
            }
            let report = try runReactorReporting(reactor)
            let result = box.get()
            return Seen(report: report, value: result?.value, before: result?.before ?? false, after: result?.after ?? false)
        }
        #expect(!seen.report.watchdogFired)
        #expect(seen.report.openHandles == 0)
        #expect(seen.value == 10)
        #expect(seen.before)
        #expect(seen.after)
    }
}

/// A value handed between threads under a lock.
final class SendableBox<T: Sendable>: Sendable {
    private let storage: Mutex<T>
    init(_ value: T) { storage = Mutex(value) }
    func set(_ value: T) { storage.withLock { $0 = value } }
    func get() -> T { storage.withLock { $0 } }
}

/// Resumes a continuation when the task is cancelled, whichever comes first.
final class CancellationWaiter: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<Void, Never>?, cancelled: Bool)>((nil, false))
    func install(_ continuation: CheckedContinuation<Void, Never>) {
        let resumeNow = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.continuation = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }
    func cancelled() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.cancelled = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }
}

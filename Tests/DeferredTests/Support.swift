import Foundation
import Glibc
import InMemoryLogging
import Logging
import Swisted
import Testing

struct Boom: Error, Equatable {
    var tag = 0
}

/// A logger of its own for each test, so tests running in parallel never
/// see each other's entries (SwistedLog.logger is process-wide).
struct TestLog {
    let handler = InMemoryLogHandler()
    var logger: Logger { Logger(label: "deferred-test") { _ in handler } }
    var messages: [String] { handler.entries.map { $0.message.description } }
}

/// Runs `reactor` until the test stops it; a watchdog stops it after
/// `timeLimit` seconds and fails the test. Checks no handle is left open.
func runReactor(_ reactor: Reactor, timeLimit: Double = 5, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let report = try runReactorReporting(reactor, timeLimit: timeLimit)
    #expect(!report.watchdogFired, "the watchdog stopped the reactor: the test never finished by itself", sourceLocation: sourceLocation)
    #expect(report.openHandles == 0, sourceLocation: sourceLocation)
}

/// What a chain delivered to its last step.
final class Outcome<Value> {
    var values: [Value] = []
    var errors: [any Error] = []
    var count: Int { values.count + errors.count }
}

extension Deferred {
    /// Records what reaches this point of the chain, handling errors.
    @discardableResult
    func record(into outcome: Outcome<Value>) -> Deferred<Void> {
        addCallbacks({ value in outcome.values.append(value) }, errback: { error in outcome.errors.append(error) })
    }
}

func currentThread() -> pthread_t { pthread_self() }

/// Runs `body` on a thread of its own and returns what it returns.
///
/// For tests whose reactor waits on Swift tasks (`Deferred(reactor) { ... }`):
/// a synchronous test runs on a thread of the cooperative pool, and a
/// reactor blocking that thread in run() could starve the very tasks it
/// waits for on a two-core machine. A program runs its reactor on the main
/// thread, outside the pool, as this does.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.start()
    }
}

/// What running a reactor to its end showed (checked by the test on its own thread).
struct RunReport: Sendable {
    var watchdogFired: Bool
    var openHandles: Int
}

/// Runs `reactor` until stopped, with a watchdog; reports instead of expecting
/// (expectations belong on the test's own task).
func runReactorReporting(_ reactor: Reactor, timeLimit: Double = 5) throws -> RunReport {
    final class Flag { var fired = false }
    let watchdog = Flag()
    let call = reactor.callLater(timeLimit) { [unowned reactor] in
        watchdog.fired = true
        try? reactor.stop()
    }
    try reactor.run()
    if call.active { try? call.cancel() }
    return RunReport(watchdogFired: watchdog.fired, openHandles: reactor.openHandleCount)
}

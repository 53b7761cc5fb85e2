// Helpers for the async API tests: a reactor running on its own thread
// (swap for the reactor's own runInBackground once it lands), reactor-thread
// hops, and condition waits that poll on reactor timer events (no sleeps).

import Glibc
@testable import Swisted
import Testing

/// A reactor run by a background pthread, with a watchdog: after `timeLimit`
/// seconds it stops the reactor, and ``stop()`` reports it.
final class ReactorThread: Sendable {
    let reactor = Reactor()
    private let finished = Locked<(result: Finish?, waiter: CheckedContinuation<Finish, Never>?)>((nil, nil))

    struct Finish: Sendable {
        var watchdogFired: Bool
        var openHandles: Int
    }

    /// Starts the reactor on a new thread and returns once it runs.
    static func start(timeLimit: Double = 20) async -> ReactorThread {
        let thread = ReactorThread()
        await thread.run(timeLimit: timeLimit)
        return thread
    }

    private func run(timeLimit: Double) async {
        let reactor = reactor
        let fired = Locked(false)
        // Set up before run(): this thread owns the reactor until the new one takes it.
        let watchdog = reactor.callLater(timeLimit) {
            fired.withLock { $0 = true }
            try? reactor.stop()
        }
        let watchdogBox = UncheckedBox(watchdog)
        await withCheckedContinuation { (running: CheckedContinuation<Void, Never>) in
            reactor.callWhenRunning { running.resume() }
            spawnThread { [self] in
                do { try reactor.run() } catch { Issue.record("reactor.run failed: \(error)") }
                // Stopped: this thread may use the reactor again.
                if watchdogBox.value.active { try? watchdogBox.value.cancel() }
                let result = Finish(watchdogFired: fired.withLock { $0 }, openHandles: reactor.openHandleCount)
                let waiter = finished.withLock { state -> CheckedContinuation<Finish, Never>? in
                    state.result = result
                    return state.waiter
                }
                waiter?.resume(returning: result)
            }
        }
    }

    /// Stops the reactor, waits for run() to return, and checks it stopped by
    /// itself (not the watchdog) with every handle closed.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) async {
        let reactor = reactor
        reactor.callFromThread { try? reactor.stop() }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Finish, Never>) in
            let done = finished.withLock { state -> Finish? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
        #expect(!result.watchdogFired, "the watchdog stopped the reactor: the test never finished by itself", sourceLocation: sourceLocation)
        #expect(result.openHandles == 0, "handles left open after run() returned", sourceLocation: sourceLocation)
    }

    /// Runs `body` on the reactor thread and returns its result.
    func onReactor<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let reactor = reactor
        return try await withCheckedThrowingContinuation { continuation in
            reactor.callFromThread {
                continuation.resume(with: Result { try body() })
            }
        }
    }

    /// Waits until `condition` holds on the reactor thread, checking every
    /// millisecond from a reactor timer; fails the test after `timeLimit` s.
    func eventually(_ what: String, timeLimit: Double = 10, sourceLocation: SourceLocation = #_sourceLocation,
                    _ condition: @escaping @Sendable () -> Bool) async {
        let reactor = reactor
        let met = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            reactor.callFromThread {
                let deadline = reactor.seconds() + timeLimit
                let check = Recurring()
                check.body = {
                    if condition() {
                        check.body = nil
                        continuation.resume(returning: true)
                    } else if reactor.seconds() > deadline {
                        check.body = nil
                        continuation.resume(returning: false)
                    } else {
                        reactor.callLater(0.001) { check.body?() }
                    }
                }
                check.body?()
            }
        }
        #expect(met, "timed out waiting until \(what)", sourceLocation: sourceLocation)
    }
}

/// A self-rescheduling reactor-thread closure (reactor thread only).
final class Recurring {
    var body: (() -> Void)?
}

/// Carries a reactor-thread value through a `@Sendable` closure that only
/// uses it on the reactor thread (or after the reactor stopped).
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

private final class ThreadBody: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body` on a new detached pthread.
func spawnThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { argument in
        let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
        body.body()
        return nil
    }, box)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(thread)
}

/// The byte at `offset` of a test stream: a pattern with a long period, so
/// a lost, repeated or reordered chunk shows.
func patternByte(_ offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (offset &* 7) ^ (offset >> 9))
}

func pattern(from start: Int = 0, count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for index in 0..<count { buffer[index] = patternByte(start + index) }
        initialized = count
    }
}

/// Counts bytes and checks them against the pattern as they arrive.
struct PatternChecker {
    var received = 0
    var mismatches = 0

    mutating func check(_ chunk: [UInt8]) {
        let start = received
        chunk.withUnsafeBufferPointer { bytes in
            for index in 0..<bytes.count where bytes[index] != patternByte(start + index) {
                mismatches += 1
            }
        }
        received += chunk.count
    }
}

/// A Unix socket path in a fresh temporary directory.
func temporarySocketPath() -> String {
    var template = Array("/tmp/swisted-async-XXXXXX".utf8CString)
    let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return directory + "/s"
}

/// A blocking raw TCP client socket connected to 127.0.0.1:`port` (the
/// kernel completes the handshake from the listen backlog).
func rawConnect(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket failed: \(errno)")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    precondition(rc == 0, "connect failed: \(errno)")
    return fd
}

/// Closes `fd` with SO_LINGER 0, so the kernel sends a reset.
func resetAndClose(_ fd: Int32) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    close(fd)
}

// Helpers for the async API tests: a reactor running on its own thread
// (runInBackground) with a watchdog, reactor-thread hops, and condition waits
// that poll on reactor timer events (no sleeps).

import Glibc
@testable import Swisted
import Testing

/// A reactor run on its own thread by ``Reactor/runInBackground(name:installSignalHandlers:)``,
/// with a watchdog: after `timeLimit` seconds it stops the reactor, and
/// ``stop()`` reports it.
final class BackgroundReactor: Sendable {
    let reactor = Reactor()
    private let thread: ReactorThread?
    private let watchdogFired = Locked(false)
    private let watchdog: UncheckedBox<DelayedCall?>

    /// Starts the reactor on a new thread and returns once it runs.
    static func start(timeLimit: Double = 20) async -> BackgroundReactor {
        BackgroundReactor(timeLimit: timeLimit)
    }

    private init(timeLimit: Double) {
        let reactor = reactor
        let fired = watchdogFired
        // Set up before it runs: this thread owns the reactor until runInBackground.
        watchdog = UncheckedBox(reactor.callLater(timeLimit) {
            fired.withLock { $0 = true }
            try? reactor.stop()
        })
        do {
            thread = try reactor.runInBackground(name: "async-tests")
        } catch {
            Issue.record("runInBackground failed: \(error)")
            thread = nil
        }
    }

    /// Stops the reactor, waits for run() to return, and checks it stopped by
    /// itself (not the watchdog) with every handle closed.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) async {
        await thread?.stop()
        // Stopped: this thread may use the reactor again.
        if let call = watchdog.value, call.active { try? call.cancel() }
        #expect(!watchdogFired.withLock { $0 }, "the watchdog stopped the reactor: the test never finished by itself", sourceLocation: sourceLocation)
        #expect(reactor.openHandleCount == 0, "handles left open after run() returned", sourceLocation: sourceLocation)
    }

    /// Runs `body` on the reactor thread and returns its result.
    func onReactor<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await reactor.submit(body)
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

/// A connected pair through a listener: `client` connected to `listener`,
/// and `server`, the listener's first accepted connection.
struct ConnectedAsyncPair {
    let listener: AsyncListener
    let client: AsyncConnection
    let server: AsyncConnection

    /// The three, for `let (listener, client, server) = ...`.
    var parts: (AsyncListener, AsyncConnection, AsyncConnection) { (listener, client, server) }

    /// Over a Unix socket in a fresh temporary directory (small kernel
    /// buffers, no TCP autotuning: write queues fill deterministically).
    static func unix(on thread: BackgroundReactor) async throws -> ConnectedAsyncPair {
        let path = temporarySocketPath()
        let listener = try await thread.reactor.listen(unixPath: path)
        let client = try await thread.reactor.connect(unixPath: path)
        return try await accept(listener, client)
    }

    /// Over TCP on 127.0.0.1 (port 0), the listener's connections using `options`.
    static func tcp(on thread: BackgroundReactor, options: AsyncConnection.Options = .init()) async throws -> ConnectedAsyncPair {
        let listener = try await thread.reactor.listen(port: 0, interface: "127.0.0.1", options: options)
        let client = try await thread.reactor.connect(host: "127.0.0.1", port: listener.port)
        return try await accept(listener, client)
    }

    private static func accept(_ listener: AsyncListener, _ client: AsyncConnection) async throws -> ConnectedAsyncPair {
        var accepted = listener.makeAsyncIterator()
        let server = try #require(try await accepted.next())
        return ConnectedAsyncPair(listener: listener, client: client, server: server)
    }
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

// Reliability under hostile conditions (issue #8): SIGPIPE, a peer that
// stops reading, closing or stopping from inside every kind of callback,
// and stopping the reactor with connections open. Running out of file
// descriptors is tested in a child process: see EMFILETests.swift.

import Glibc
import Swisted
import Testing

// MARK: Helpers

/// CPU time this thread has used, in seconds (`CLOCK_THREAD_CPUTIME_ID`):
/// the reactor runs on the test's thread, so this is the reactor's CPU time,
/// whatever other tests do meanwhile.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// The port a socket is bound to (`getsockname`), or nil.
func localPort(_ fd: Int32) -> Int? {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard rc == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The port of a connected socket's peer (`getpeername`), or nil.
func peerPort(_ fd: Int32) -> Int? {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
    }
    guard rc == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The descriptor of this process's loopback TCP socket bound to `local` and
/// connected to `peer` (to reach the socket under a Swisted transport).
func socketDescriptor(local: Int, peer: Int) -> Int32? {
    for fd in Int32(3)..<Int32(65536) where fcntl(fd, F_GETFD) >= 0 {
        if localPort(fd) == local, peerPort(fd) == peer { return fd }
    }
    return nil
}

/// The blocking raw client of ``serveOneRawClient(_:onMade:)``.
final class RawClient {
    /// Its descriptor; -1 before it connected and once closed.
    var fd: Int32 = -1

    /// Closes it with SO_LINGER 0: the server's socket gets an RST.
    func reset() {
        Raw.setLingerZero(fd)
        close(fd)
        fd = -1
    }
}

/// Runs `reactor` with a TCP server on 127.0.0.1 (port 0) whose protocols
/// are ``Probe``s, and one raw client that connects once the reactor runs.
/// `onMade` runs in the server probe's `connectionMade`; the probe's
/// `connectionLost` stops listening and stops the reactor. Returns the
/// server's first probe, after closing the raw client if it is still open.
func serveOneRawClient(_ reactor: Reactor,
                       onMade: @escaping (_ probe: Probe, _ client: RawClient, _ port: ListeningPort) -> Void) throws -> Probe {
    let client = RawClient()
    var listening: ListeningPort?
    defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
    let server = RecordingFactory()
    server.build = { _ in
        let probe = Probe()
        probe.onMade = { probe in onMade(probe, client, listening!) }
        probe.onLost = { _, _ in
            listening?.stopListening()
            try? reactor.stop()
        }
        return probe
    }
    let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
    listening = port
    reactor.callWhenRunning { client.fd = Raw.connect(port: port.portNumber) }
    try runReactor(reactor)
    if client.fd >= 0 { close(client.fd) }
    return try #require(server.probes.first)
}

// MARK: SIGPIPE

@Suite("Reliability: SIGPIPE")
struct SigpipeTests {
    @Test("A write to a connection the peer reset gives connectionLost(ConnectionLost) with ECONNRESET or EPIPE; the process lives")
    func writesAfterPeerReset() throws {
        let reactor = Reactor()
        var writes = 0
        // The last write call may still be pending when run() returns: it
        // holds the reactor (a cycle through the reactor's timers). Cancel it.
        var nextWrite: DelayedCall?
        defer { if let call = nextWrite, call.active { try? call.cancel() } }
        let probe = try serveOneRawClient(reactor) { probe, client, _ in
            // Reading paused: only the writes can notice the reset.
            probe.transport!.pauseProducing()
            client.reset()
            func writeMore() {
                guard probe.lostCount == 0, writes < 10_000 else { return }
                writes += 1
                probe.transport!.write(pattern(count: 4096))
                nextWrite = reactor.callLater(0) { writeMore() }
            }
            writeMore()
        }

        #expect(probe.lostCount == 1)
        let lost = try #require(probe.lostReason as? ConnectionLost, "saw \(String(describing: probe.lostReason))")
        #expect(lost.underlying == .connectionReset || lost.underlying == .brokenPipe, "saw \(lost)")
        #expect(writes < 10_000, "the transport never noticed the reset")
    }

    @Test("A write after the reset was already reported gets EPIPE (the kernel raises SIGPIPE, which the reactor ignores): ConnectionLost(EPIPE)")
    func writeGetsEPIPE() throws {
        let reactor = Reactor()
        var consumed: Int32 = -1
        let probe = try serveOneRawClient(reactor) { probe, client, port in
            // The socket under our transport (found before the reset: a reset socket has no peer name).
            guard let fd = socketDescriptor(local: port.portNumber, peer: localPort(client.fd)!) else {
                Issue.record("cannot find the server's socket")
                return
            }
            client.reset()
            // Wait (poll, bounded) until the reset reached our socket, then
            // take the pending ECONNRESET off it, as a read would: the next
            // write() gets EPIPE, and Linux raises SIGPIPE with it.
            var events = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&events, 1, 3000)
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            consumed = error
            probe.transport!.write("into the void")
        }

        #expect(consumed == ECONNRESET)
        #expect(probe.lostCount == 1)
        let lost = try #require(probe.lostReason as? ConnectionLost, "saw \(String(describing: probe.lostReason))")
        #expect(lost.underlying == .brokenPipe, "saw \(lost)")
    }
}

// MARK: A peer that stops reading

/// A push producer that writes `chunk`-sized blocks for as long as it is not paused.
private final class Flood: PushProducer {
    let transport: any Transport
    let chunk: [UInt8]
    var paused = false
    var stopped = false
    var pauses = 0
    var resumes = 0
    var stops = 0
    var written = 0
    var maxBufferSize = 0

    init(_ transport: any Transport, chunk: Int) {
        self.transport = transport
        self.chunk = pattern(count: chunk)
    }

    func produce() {
        while !paused, !stopped, written < 256 * 1024 * 1024 {
            transport.write(chunk)
            written += chunk.count
            maxBufferSize = max(maxBufferSize, transport.bufferSize)
        }
    }

    func pauseProducing() { paused = true; pauses += 1 }
    func resumeProducing() { paused = false; resumes += 1; produce() }
    func stopProducing() { stopped = true; stops += 1 }
}

@Suite("Reliability: a peer that stops reading")
struct PeerStopsReadingTests {
    /// Serves one raw client that never reads. `onMade` starts writing;
    /// after a settling time the test samples the buffer and this thread's
    /// CPU time over a window, then aborts the connection.
    private struct Outcome {
        var bufferBefore = -1
        var bufferAfter = -1
        var cpu = 0.0
        var wall = 0.0
        var bufferAtLost = -1
        var probe: Probe?
    }

    private func serveSilentPeer(_ start: @escaping (Probe) -> Void) throws -> Outcome {
        let reactor = Reactor()
        var rawClient: Int32 = -1
        var outcome = Outcome()
        var listening: ListeningPort?
        defer { listening = nil }  // the server's closures reach it, and it holds the server
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                start(probe)
                // Settle (the kernel buffers fill at once on loopback), then a quiet window.
                reactor.callLater(0.3) {
                    outcome.bufferBefore = probe.transport!.bufferSize
                    let cpu0 = threadCPUSeconds(), wall0 = reactor.seconds()
                    reactor.callLater(0.3) {
                        outcome.cpu = threadCPUSeconds() - cpu0
                        outcome.wall = reactor.seconds() - wall0
                        outcome.bufferAfter = probe.transport!.bufferSize
                        probe.transport!.abortConnection()
                    }
                }
            }
            probe.onLost = { probe, _ in
                outcome.bufferAtLost = probe.transport!.bufferSize
                listening?.stopListening()
                try? reactor.stop()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        reactor.callWhenRunning {
            rawClient = Raw.tcpSocket()
            Raw.setReceiveBuffer(rawClient, bytes: 4096)
            _ = Raw.connect(rawClient, port: port.portNumber)
        }
        try runReactor(reactor)
        if rawClient >= 0 { close(rawClient) }
        outcome.probe = server.probes.first
        return outcome
    }

    @Test("Without a producer the buffer holds what was written and no more, does not move, the reactor idles; abortConnection frees it")
    func withoutProducer() throws {
        let blob = pattern(count: 4 * 1024 * 1024)
        let outcome = try serveSilentPeer { probe in probe.transport!.write(blob) }

        #expect(outcome.bufferBefore > 0, "the kernel took all 4 MiB from a peer that never reads?")
        #expect(outcome.bufferBefore <= blob.count)
        #expect(outcome.bufferAfter == outcome.bufferBefore, "bytes moved to a peer that does not read")
        // The reactor waited in poll: well under half the window on the CPU (a spin would be ~100 %).
        #expect(outcome.cpu < outcome.wall * 0.5, "cpu \(outcome.cpu) s over \(outcome.wall) s")
        #expect(outcome.bufferAtLost == 0)
        let probe = try #require(outcome.probe)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionAborted)
    }

    @Test("With a push producer the buffer stays within high water + one chunk, the producer pauses once and is not resumed; abort stops it once")
    func withPushProducer() throws {
        var flood: Flood?
        let chunk = 16 * 1024
        let outcome = try serveSilentPeer { probe in
            let producer = Flood(probe.transport!, chunk: chunk)
            flood = producer
            try! probe.transport!.registerProducer(producer, streaming: true)
            producer.produce()
        }

        let producer = try #require(flood)
        let highWater = 64 * 1024
        #expect(producer.maxBufferSize <= highWater + chunk, "buffer reached \(producer.maxBufferSize)")
        #expect(outcome.bufferBefore <= highWater + chunk)
        #expect(outcome.bufferAfter == outcome.bufferBefore)
        #expect(producer.pauses == 1)
        #expect(producer.resumes == 0)
        #expect(producer.stops == 1)
        #expect(outcome.cpu < outcome.wall * 0.5, "cpu \(outcome.cpu) s over \(outcome.wall) s")
        #expect(outcome.bufferAtLost == 0)
        let probe = try #require(outcome.probe)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionAborted)
    }
}

// MARK: Closing and stopping from inside every callback

/// Where the test acts from.
enum CallbackSite: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case connectionMade, dataReceived, otherConnectionLost, timer, buildProtocol, clientConnectionFailed
    var testDescription: String { rawValue }
}

/// What the test does there.
enum CloseAction: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case loseConnection, abortConnection, reactorStop
    var testDescription: String { rawValue }
}

@Suite("Reliability: closing and stopping from inside every callback")
struct CloseFromCallbackTests {
    /// Connection A (the first one) is the victim. In `connectionMade` and
    /// `dataReceived` the action is on A itself, from A's own callback; in
    /// the other sites it is on A from a callback of something else: B's
    /// `connectionLost` (the client closes B), a timer, `buildProtocol` for
    /// B, `clientConnectionFailed` of an attempt to a closed port.
    @Test("no crash, connectionLost exactly once everywhere, every handle closed", arguments: CallbackSite.allCases, CloseAction.allCases)
    func closeFrom(site: CallbackSite, action: CloseAction) throws {
        let reactor = Reactor()
        let log = LogCapture(reactor)
        let server = RecordingFactory()
        let client = RecordingFactory()
        let failing = RecordingFactory()
        var acted = 0
        var stopError: (any Error)?
        let refusedPort = try freePort(reactor)
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let victimClosed = Countdown(2) { try? reactor.stop() }

        func act(on victim: Probe) {
            acted += 1
            switch action {
            case .loseConnection: victim.transport!.loseConnection()
            case .abortConnection: victim.transport!.abortConnection()
            case .reactorStop:
                do { try reactor.stop() } catch { stopError = error }
            }
        }
        func connectB() { reactor.connectTCP("127.0.0.1", port.portNumber, client) }

        server.build = { _ in
            let probe = Probe()
            let isVictim = server.buildCount == 1
            if isVictim {
                probe.onLost = { _, _ in victimClosed.tick() }
                switch site {
                case .connectionMade: probe.onMade = { act(on: $0) }
                case .dataReceived:
                    probe.onData = { probe, _ in if probe.dataCount == 1 { act(on: probe) } }
                case .otherConnectionLost, .buildProtocol: probe.onMade = { _ in connectB() }
                case .timer: probe.onMade = { probe in reactor.callLater(0) { act(on: probe) } }
                case .clientConnectionFailed:
                    probe.onMade = { _ in reactor.connectTCP("127.0.0.1", refusedPort, failing) }
                }
            } else {
                if site == .otherConnectionLost {
                    probe.onLost = { _, _ in act(on: server.probes[0]) }
                }
                if site == .buildProtocol {
                    act(on: server.probes[0])
                }
            }
            return probe
        }
        client.build = { _ in
            let probe = Probe()
            if client.buildCount == 1 {
                probe.onLost = { _, _ in victimClosed.tick() }
                if site == .dataReceived { probe.onMade = { $0.transport!.write("x") } }
            } else if site == .otherConnectionLost {
                probe.onMade = { $0.transport!.loseConnection() }
            }
            return probe
        }
        failing.build = { _ in Probe() }
        failing.onFailed = { _, _ in act(on: server.probes[0]) }
        // The closures reach their own factories (server.probes, client.buildCount)
        // and the port (connectB): drop them at the end, or they keep it all alive.
        defer {
            server.build = nil
            client.build = nil
            failing.onFailed = nil
        }

        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(acted == 1)
        #expect(stopError == nil)
        #expect(log.messages.isEmpty, "logged: \(log.messages)")
        let expectedConnections = (site == .otherConnectionLost || site == .buildProtocol) ? 2 : 1
        #expect(server.probes.count == expectedConnections)
        // A stop while B's client side is still connecting fails that attempt (UserError) instead.
        #expect(client.probes.count + client.failedCount == expectedConnections)
        if client.failedCount > 0 {
            #expect(client.failedReason is UserError, "saw \(String(describing: client.failedReason))")
            #expect(action == .reactorStop)
        }
        for probe in server.probes + client.probes {
            #expect(probe.madeCount == 1)
            #expect(probe.lostCount == 1, "a protocol saw connectionLost \(probe.lostCount) times")
        }
        #expect(client.lostCount == client.probes.count, "clientConnectionLost once per connection")
        #expect(failing.failedCount == (site == .clientConnectionFailed ? 1 : 0))
        #expect(server.startCount == 1)
        #expect(server.stopCount == 1, "the port was closed by the shutdown")
        let victim = try #require(server.probes.first)
        switch action {
        case .loseConnection: #expect(victim.lostReason is ConnectionDone, "saw \(String(describing: victim.lostReason))")
        case .abortConnection: #expect(victim.lostReason is ConnectionAborted, "saw \(String(describing: victim.lostReason))")
        case .reactorStop: #expect(victim.lostReason is ConnectionLost, "saw \(String(describing: victim.lostReason))")
        }
    }
}

// MARK: Stopping with connections open

@Suite("Reliability: reactor.stop() with connections open")
struct StopWithConnectionsOpenTests {
    @Test("shutdown triggers run in order, every transport gets connectionLost(ConnectionLost) once, every handle closes, the loop closes")
    func stopWithConnectionsOpen() throws {
        weak var weakReactor: Reactor?
        var events: [String] = []
        let server = RecordingFactory()
        let client = RecordingFactory()
        let connections = 5
        do {
            let reactor = Reactor()
            weakReactor = reactor
            reactor.addSystemEventTrigger(.before, .shutdown) { [unowned reactor] in
                events.append("before shutdown: \(reactor.openHandleCount) handles")
            }
            reactor.addSystemEventTrigger(.during, .shutdown) { events.append("during shutdown") }
            reactor.addSystemEventTrigger(.after, .shutdown) { [unowned reactor] in
                events.append("after shutdown: \(reactor.openHandleCount) handles")
            }
            // A pending delayed call does not keep the loop from closing.
            reactor.callLater(3600) {}
            let allMade = Countdown(2 * connections) { [unowned reactor] in try? reactor.stop() }
            server.build = { _ in
                let probe = Probe()
                probe.onMade = { _ in allMade.tick() }
                return probe
            }
            client.build = { _ in
                let probe = Probe()
                probe.onMade = { probe in allMade.tick(); probe.transport!.write("unanswered") }
                return probe
            }
            let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
            for _ in 0..<connections {
                reactor.connectTCP("127.0.0.1", port.portNumber, client)
            }
            try runReactor(reactor)
            // A protocol keeps its (closed) transport, which holds the reactor.
            for probe in server.probes + client.probes { probe.transport = nil }
        }
        // Reactor.deinit closes the loop and asserts uv_loop_close == 0 (no UV_EBUSY).
        #expect(weakReactor == nil, "the reactor was not freed")
        // 1 port + 5 server + 5 client connections open when shutdown began; none after.
        #expect(events == ["before shutdown: \(1 + 2 * connections) handles", "during shutdown", "after shutdown: 0 handles"])
        #expect(server.probes.count == connections)
        #expect(client.probes.count == connections)
        for probe in server.probes + client.probes {
            #expect(probe.lostCount == 1)
            #expect(probe.lostReason is ConnectionLost, "saw \(String(describing: probe.lostReason))")
        }
        #expect(client.lostCount == connections)
        #expect(server.stopCount == 1)
        #expect(client.stopCount == 1)
    }
}

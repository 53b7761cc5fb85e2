// Producers and consumers, paused reading and half-close on real loopback
// connections: Twisted's IConsumer/IPushProducer/IPullProducer and
// IHalfCloseableProtocol.

import Glibc
import Swisted
import Testing

/// A long stream with a period of 65,521 bytes (prime, so chunk borders
/// never line up with it): byte `i` is `periodic[i % period]`. Verified with
/// memcmp, so 64 MiB check fast even in debug builds.
private enum Periodic {
    static let period = 65_521
    /// Two periods back to back, so any slice of up to one period is contiguous.
    static let doubled: [UInt8] = {
        let one = pattern(count: period)
        return one + one
    }()

    static func slice(at offset: Int, count: Int) -> ArraySlice<UInt8> {
        let start = offset % period
        return doubled[start..<(start + count)]
    }

    /// Whether `bytes` equal the stream at `offset`.
    static func matches(_ bytes: Span<UInt8>, at offset: Int) -> Bool {
        var checked = 0
        return bytes.withUnsafeBytes { received in
            while checked < received.count {
                let count = min(period, received.count - checked)
                let ok = slice(at: offset + checked, count: count).withUnsafeBytes { expected in
                    memcmp(received.baseAddress! + checked, expected.baseAddress!, count) == 0
                }
                if !ok { return false }
                checked += count
            }
            return true
        }
    }
}

/// Counts and checks a periodic stream, and reads slowly: every MiB it
/// stops reading (pauses its transport) for 5 ms.
private final class SlowPeriodicReader: Protocol {
    var received = 0
    var mismatches = 0
    var readPauses = 0
    var lostReason: (any Error)?
    private var nextPause = 1 << 20

    override func dataReceived(_ data: Span<UInt8>) throws {
        if !Periodic.matches(data, at: received) { mismatches += 1 }
        received += data.count
        if received >= nextPause {
            nextPause += 1 << 20
            readPauses += 1
            let transport = transport!
            transport.pauseProducing()
            // Weak: the last pause may still be pending when the connection and
            // the reactor stop; a strong capture would keep the transport,
            // and through it the reactor that keeps this call, alive for good.
            (factory as! ReactorFactory).reactor.callLater(0.005) { [weak transport] in transport?.resumeProducing() }
        }
    }

    override func connectionLost(_ reason: any Error) {
        lostReason = reason
        try? (factory as! ReactorFactory).reactor.stop()
    }
}

private final class ReactorFactory: ClientFactory {
    let reactor: Reactor
    var built: [Protocol] = []
    init(reactor: Reactor, protocolType: Protocol.Type) {
        self.reactor = reactor
        super.init(protocolType: protocolType)
    }
    override func buildProtocol(_ address: any Address) -> Protocol? {
        let proto = super.buildProtocol(address)
        if let proto { built.append(proto) }
        return proto
    }
}

/// A push producer that writes `total` bytes of a source in `chunk`-byte
/// pieces as fast as the transport lets it, then unregisters and
/// (optionally) loses the connection.
private final class FirehoseProducer: PushProducer {
    let transport: any Transport
    let total: Int
    let source: (Int, Int) -> ArraySlice<UInt8>
    let chunk: Int
    var offset = 0
    var paused = false
    var pauses = 0
    var resumes = 0
    var stops = 0
    var maxBufferSize = 0
    var loseWhenDone = true

    init(transport: any Transport, data: [UInt8], chunk: Int) {
        self.transport = transport
        self.total = data.count
        self.source = { offset, count in data[offset..<(offset + count)] }
        self.chunk = chunk
    }

    init(transport: any Transport, total: Int, chunk: Int, source: @escaping (Int, Int) -> ArraySlice<UInt8>) {
        self.transport = transport
        self.total = total
        self.source = source
        self.chunk = chunk
    }

    func produce() {
        while !paused, offset < total {
            let count = min(chunk, total - offset)
            source(offset, count).withUnsafeBytes { transport.write($0) }
            offset += count
            maxBufferSize = max(maxBufferSize, transport.bufferSize)
        }
        if offset == total, !paused {
            offset += 1  // done once
            transport.unregisterProducer()
            if loseWhenDone { transport.loseConnection() }
        }
    }

    func pauseProducing() { paused = true; pauses += 1 }
    func resumeProducing() { paused = false; resumes += 1; produce() }
    func stopProducing() { stops += 1 }
}

/// A pull producer (a FileSender in spirit): one chunk per resumeProducing.
private final class ChunkPuller: PullProducer {
    let transport: any Transport
    let data: [UInt8]
    let chunk: Int
    var offset = 0
    var calls = 0

    init(transport: any Transport, data: [UInt8], chunk: Int) {
        self.transport = transport
        self.data = data
        self.chunk = chunk
    }

    func resumeProducing() {
        calls += 1
        guard offset < data.count else {
            transport.unregisterProducer()
            transport.loseConnection()
            return
        }
        let end = min(offset + chunk, data.count)
        data[offset..<end].withUnsafeBytes { transport.write($0) }
        offset = end
    }

    func stopProducing() {}
}

@Suite("Flow control: producers and consumers")
struct ProducerTests {
    @Test("a fast push producer into a slow reader: the buffer stays under high water + one chunk, pauses and resumes match, 64 MiB arrive in order")
    func firehose() throws {
        let total = 64 * 1024 * 1024, chunk = 16 * 1024
        let reactor = Reactor()
        var producer: FirehoseProducer?
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let firehose = FirehoseProducer(transport: probe.transport!, total: total, chunk: chunk, source: Periodic.slice)
                producer = firehose
                try probe.transport!.registerProducer(firehose, streaming: true)
                firehose.produce()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = ReactorFactory(reactor: reactor, protocolType: SlowPeriodicReader.self)
        defer { client.built.removeAll() }  // each protocol holds its factory: break the cycle
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor, timeLimit: 60)
        let received = try #require(client.built.first as? SlowPeriodicReader)
        let firehose = try #require(producer)
        #expect(received.received == total)
        #expect(received.mismatches == 0)
        #expect(received.lostReason is ConnectionDone)
        #expect(firehose.pauses > 0)
        #expect(firehose.resumes == firehose.pauses)
        #expect(firehose.maxBufferSize <= 64 * 1024 + chunk)
        #expect(firehose.stops == 0)  // it unregistered before the connection ended
        #expect(received.readPauses > 0)
    }

    @Test("loseConnection with a producer registered waits for it to unregister; nothing is lost")
    func loseWaitsForProducer() throws {
        let data = pattern(count: 300_000)
        let reactor = Reactor()
        var order: [String] = []
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let transport = probe.transport!
                let firehose = FirehoseProducer(transport: transport, data: data, chunk: 10_000)
                firehose.loseWhenDone = false
                try transport.registerProducer(firehose, streaming: true)
                transport.loseConnection()  // before a single byte: must wait
                order.append("loseConnection")
                #expect(transport.disconnecting)
                // The producer writes later, from timers, then unregisters.
                func step() {
                    if firehose.offset >= data.count {
                        order.append("unregister")
                        transport.unregisterProducer()
                        return
                    }
                    if !firehose.paused {
                        let end = min(firehose.offset + 30_000, data.count)
                        data[firehose.offset..<end].withUnsafeBytes { transport.write($0) }
                        firehose.offset = end
                    }
                    reactor.callLater(0.001, step)
                }
                reactor.callLater(0.001, step)
            }
            probe.onLost = { _, _ in order.append("server connectionLost") }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(client.probes.first?.received == data)
        #expect(client.probes.first?.lostReason is ConnectionDone)
        #expect(order == ["loseConnection", "unregister", "server connectionLost"])
    }

    @Test("a pull producer is asked for a chunk each time the buffer is empty, until it unregisters")
    func pullProducer() throws {
        let data = pattern(count: 1_000_000)
        let reactor = Reactor()
        var puller: ChunkPuller?
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let producer = ChunkPuller(transport: probe.transport!, data: data, chunk: 8192)
                puller = producer
                try probe.transport!.registerProducer(producer, streaming: false)
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(client.probes.first?.received == data)
        let expectedCalls = (data.count + 8191) / 8192 + 1  // one per chunk, one to learn it is done
        #expect(puller?.calls == expectedCalls)
    }

    @Test("registering a second producer, or one of the wrong kind, throws ProducerError; a lost connection stops the producer once")
    func registrationErrorsAndStop() throws {
        let reactor = Reactor()
        var errors: [String] = []
        var producer: FirehoseProducer?
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let transport = probe.transport!
                let first = FirehoseProducer(transport: transport, data: [], chunk: 1)
                producer = first
                try transport.registerProducer(first, streaming: true)
                do { try transport.registerProducer(FirehoseProducer(transport: transport, data: [], chunk: 1), streaming: true) } catch {
                    errors.append("\(error)")
                }
                transport.unregisterProducer()
                do { try transport.registerProducer(first, streaming: false) } catch { errors.append("\(error)") }
                do { try transport.registerProducer(ChunkPuller(transport: transport, data: [], chunk: 1), streaming: true) } catch {
                    errors.append("\(error)")
                }
                try transport.registerProducer(first, streaming: true)
            }
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.abortConnection() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(errors.count == 3)
        #expect(errors[0].contains("never unregistered"))
        #expect(errors[1].contains("not a PullProducer"))
        #expect(errors[2].contains("not a PushProducer"))
        #expect(producer?.stops == 1)
    }
}

@Suite("Flow control: pausing reads")
struct PauseReadingTests {
    @Test("a transport paused as a producer delivers no data until resumed, then all of it")
    func pauseReading() throws {
        let reactor = Reactor()
        var deliveredWhilePaused = -1
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write("hello while you were paused") }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.pauseProducing()
                // Loopback delivers within microseconds; 50 ms of silence shows reading is off.
                reactor.callLater(0.05) {
                    deliveredWhilePaused = probe.dataCount
                    probe.transport!.resumeProducing()
                }
            }
            probe.onData = { probe, _ in
                if probe.receivedString == "hello while you were paused" { probe.transport!.loseConnection() }
            }
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(deliveredWhilePaused == 0)
        #expect(client.probes.first?.receivedString == "hello while you were paused")
    }
}

/// A probe that opts in to half-close and records both halves.
private class HalfCloseProbe: Protocol, HalfCloseableProtocol {
    var events: [String] = []
    var received: [UInt8] = []
    var onReadLost: ((HalfCloseProbe) -> Void)?
    var onLost: (() -> Void)?
    var lostReason: (any Error)?

    override func dataReceived(_ data: Span<UInt8>) throws { received += data.array }
    func readConnectionLost() { events.append("readConnectionLost"); onReadLost?(self) }
    func writeConnectionLost() { events.append("writeConnectionLost") }
    override func connectionLost(_ reason: any Error) {
        events.append("connectionLost")
        lostReason = reason
        onLost?()
    }
}

@Suite("Flow control: half-close")
struct HalfCloseTests {
    @Test("client loseWriteConnection → server readConnectionLost, replies; both get connectionLost once")
    func halfClose() throws {
        let reactor = Reactor()
        let done = Countdown(2) { try? reactor.stop() }
        var serverProbe: HalfCloseProbe?
        let server = RecordingFactory()
        server.build = { _ in
            let probe = HalfCloseProbe()
            probe.onReadLost = { probe in
                // The request is complete (EOF); the reply still goes out.
                probe.transport!.write("reply to " + String(decoding: probe.received, as: UTF8.self))
                probe.transport!.loseConnection()
            }
            probe.onLost = { done.tick() }
            serverProbe = probe
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        var clientProbe: HalfCloseProbe?
        final class Client: HalfCloseProbe {
            override func connectionMade() throws {
                transport!.write("request")
                transport!.loseWriteConnection()
                transport!.write("ignored after loseWriteConnection")
            }
        }
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Client()
            probe.onLost = { done.tick() }
            clientProbe = probe
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(serverProbe?.received == Array("request".utf8))
        #expect(clientProbe?.received == Array("reply to request".utf8))
        #expect(serverProbe?.events == ["readConnectionLost", "connectionLost"])
        // Our write side closed first; then the server's close is the client's read side ending.
        #expect(clientProbe?.events == ["writeConnectionLost", "readConnectionLost", "connectionLost"])
        #expect(clientProbe?.lostReason is ConnectionDone)
        #expect(serverProbe?.lostReason is ConnectionDone)
    }

    @Test("a protocol that does not opt in sees the peer's half-close as the end of the connection")
    func notOptedIn() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in Probe() }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write("bye")
                probe.transport!.loseWriteConnection()
            }
            return probe
        }
        let done = Countdown(2) { try? reactor.stop() }
        client.onLost = { _, _ in done.tick() }
        server.build = { _ in
            let probe = Probe()
            probe.onLost = { _, _ in done.tick() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(server.probes.first?.receivedString == "bye")
        #expect(server.probes.first?.lostReason is ConnectionDone)
        #expect(server.probes.first?.lostCount == 1)
        #expect(client.probes.first?.lostCount == 1)
    }
}

// ThrottlingFactory (Twisted's bandwidth throttling) in memory, a test Clock
// for the seconds, and once on loopback with a real reactor.

import Swisted
import SwistedTesting
import Testing

/// A push producer that records its calls.
private final class Pusher: PushProducer {
    var events: [String] = []
    func pauseProducing() { events.append("pause") }
    func resumeProducing() { events.append("resume") }
    func stopProducing() { events.append("stop") }
}

/// A pull producer that records its calls.
private final class Puller: PullProducer {
    var requests = 0
    var stopped = false
    func resumeProducing() { requests += 1 }
    func stopProducing() { stopped = true }
}

private func echoFactory() -> Factory {
    Factory.forProtocol(Recorder.self)  // echoes (PoliciesMemoryTests)
}

/// Builds the one protocol it was given (server or client side).
private final class OneProtocolFactory: ClientFactory {
    let proto: Protocol
    init(_ proto: Protocol) {
        self.proto = proto
        super.init(protocolType: nil)
    }
    override func buildProtocol(_ address: any Address) -> Protocol? { proto }
}

/// Ends every connection of `factory` as its transport would (the factory
/// and its wrappers hold each other until then).
private func closeAll(_ factory: ThrottlingFactory) {
    for wrapper in factory.protocols { wrapper.connectionLost(ConnectionDone()) }
}

/// A connection of `factory` on a fresh StringTransport.
private func connect(_ factory: ThrottlingFactory) throws -> (wrapper: ThrottlingProtocol, transport: StringTransport) {
    let wrapper = try #require(factory.buildProtocol(IPv4Address(type: .tcp, host: "10.0.0.1", port: 40000)) as? ThrottlingProtocol)
    let transport = StringTransport()
    try wrapper.makeConnection(transport)
    return (wrapper, transport)
}

@Suite("ThrottlingFactory: bandwidth limits (in memory, with a test Clock)")
struct ThrottlingTests {
    @Test("reads over the limit pause every connection for the excess time, then all read again")
    func readsOverTheLimit() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, readLimit: 100)
        defer { closeAll(factory) }
        let (a, ta) = try connect(factory)
        let (_, tb) = try connect(factory)
        try a.receive(Array(repeating: 1, count: 250))
        #expect(factory.readThisSecond == 250)
        #expect(ta.producerState == .producing)
        try clock.advance(1)  // the check: 250 > 100, paused for 250 / 100 - 1 = 1.5 s
        #expect(factory.readsThrottled)
        #expect(ta.producerState == .paused && tb.producerState == .paused)
        #expect(factory.readThisSecond == 0)
        try clock.advance(1.4)
        #expect(ta.producerState == .paused)
        try clock.advance(0.1)
        #expect(!factory.readsThrottled)
        #expect(ta.producerState == .producing && tb.producerState == .producing)
        #expect((a.wrappedProtocol as? Recorder)?.received.count == 250)  // nothing read was held back
    }

    @Test("reads within the limit are never throttled; the count starts again each second")
    func readsWithinTheLimit() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, readLimit: 100)
        defer { closeAll(factory) }
        let (a, ta) = try connect(factory)
        for _ in 0..<5 {
            try a.receive(Array(repeating: 1, count: 100))  // exactly the limit
            try clock.advance(1)
            #expect(ta.producerState == .producing)
            #expect(!factory.readsThrottled)
        }
    }

    @Test("a connection made while reads are throttled starts paused, and reads again with the others")
    func newConnectionWhileThrottled() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, readLimit: 10)
        defer { closeAll(factory) }
        let (a, _) = try connect(factory)
        try a.receive(Array(repeating: 1, count: 30))
        try clock.advance(1)  // throttled for 2 s
        let (_, late) = try connect(factory)
        #expect(late.producerState == .paused)
        try clock.advance(2)
        #expect(late.producerState == .producing)
    }

    @Test("unthrottling does not resume a connection whose protocol paused its own reading")
    func protocolPauseSurvivesUnthrottle() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: Factory.forProtocol(PausingLines.self), clock: clock, readLimit: 10)
        defer { closeAll(factory) }
        let (wrapper, transport) = try connect(factory)
        let receiver = try #require(wrapper.wrappedProtocol as? PausingLines)
        try wrapper.receive("0123456789012345\r\nstop\r\nlater\r\n")
        #expect(receiver.paused)  // "stop" paused the receiver, and through the wrapper the transport
        try clock.advance(1)  // 33 bytes > 10: throttled for 2.3 s
        try clock.advance(2.3)
        #expect(!factory.readsThrottled)
        #expect(transport.producerState == .paused)  // still paused: the receiver's own pause
        receiver.resumeProducing()
        #expect(transport.producerState == .producing)
        #expect(receiver.lines == ["0123456789012345", "stop", "later"])
    }

    @Test("a receiver that resumes while reads are throttled stays paused until the throttle lifts")
    func protocolResumeWhileThrottled() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, readLimit: 10)
        defer { closeAll(factory) }
        let (wrapper, transport) = try connect(factory)
        try wrapper.receive(Array(repeating: 1, count: 20))
        try clock.advance(1)  // throttled for 1 s
        wrapper.pauseProducing()   // as the wrapped protocol would, through its transport
        wrapper.resumeProducing()
        #expect(transport.producerState == .paused)
        try clock.advance(1)
        #expect(transport.producerState == .producing)
    }

    @Test("writes over the limit pause a push producer; one its transport paused stays paused after unthrottling")
    func writesOverTheLimitPauseThePushProducer() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, writeLimit: 100)
        defer { closeAll(factory) }
        let (wrapper, transport) = try connect(factory)
        let producer = Pusher()
        try wrapper.registerProducer(producer, streaming: true)
        wrapper.write(Array(repeating: 7, count: 300))
        #expect(factory.writtenThisSecond == 300)
        #expect(transport.value().count == 300)  // plain writes are counted, never held back
        try clock.advance(1)  // throttled for 2 s
        #expect(factory.writesThrottled)
        #expect(producer.events == ["pause"])
        let gate = try #require(transport.producer as? any PushProducer)
        gate.pauseProducing()  // the transport's high-water mark: no second pause reaches the producer
        try clock.advance(2)   // unthrottled, but the transport still holds it
        #expect(producer.events == ["pause"])
        gate.resumeProducing()  // the buffer drained
        #expect(producer.events == ["pause", "resume"])
        wrapper.unregisterProducer()
        #expect(transport.producer == nil)
    }

    @Test("a pull producer's requests wait while writes are throttled; the waiting one is passed on after")
    func pullProducerWaitsWhileThrottled() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, writeLimit: 10)
        defer { closeAll(factory) }
        let (wrapper, transport) = try connect(factory)
        let producer = Puller()
        try wrapper.registerProducer(producer, streaming: false)
        let gate = try #require(transport.producer as? any PullProducer)
        gate.resumeProducing()
        #expect(producer.requests == 1)
        wrapper.write(Array(repeating: 7, count: 50))
        try clock.advance(1)  // throttled for 4 s
        gate.resumeProducing()
        gate.resumeProducing()
        #expect(producer.requests == 1)
        try clock.advance(4)
        #expect(producer.requests == 2)
        transport.producer?.stopProducing()
        #expect(producer.stopped)
    }

    @Test("a producer of the wrong kind for streaming is refused, as by the transport itself")
    func wrongProducerKind() throws {
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: Clock(), writeLimit: 10)
        defer { closeAll(factory) }
        let (wrapper, transport) = try connect(factory)
        #expect(throws: ProducerError.self) { try wrapper.registerProducer(Puller(), streaming: true) }
        #expect(throws: ProducerError.self) { try wrapper.registerProducer(Pusher(), streaming: false) }
        #expect(transport.producer == nil)
    }

    @Test("the last connection gone, nothing stays scheduled and the counts reset")
    func checksStopWithTheLastConnection() throws {
        let clock = Clock()
        let factory = ThrottlingFactory(wrapping: echoFactory(), clock: clock, readLimit: 10, writeLimit: 10)
        defer { closeAll(factory) }
        #expect(clock.getDelayedCalls().isEmpty)
        let (a, _) = try connect(factory)
        let (b, _) = try connect(factory)
        #expect(clock.getDelayedCalls().count == 2)  // one read check, one write check
        try a.receive(Array(repeating: 1, count: 50))
        try clock.advance(1)  // throttled: unthrottle calls pending too
        #expect(clock.getDelayedCalls().count == 4)
        a.connectionLost(ConnectionDone())
        #expect(clock.getDelayedCalls().count == 4)
        b.connectionLost(ConnectionDone())
        #expect(clock.getDelayedCalls().isEmpty)
        #expect(!factory.readsThrottled && !factory.writesThrottled)
        #expect(factory.readThisSecond == 0 && factory.writtenThisSecond == 0)
        let (_, fresh) = try connect(factory)  // a new first connection starts the checks again, unthrottled
        #expect(fresh.producerState == .producing)
        #expect(clock.getDelayedCalls().count == 2)
    }

    @Test("stacked on LimitConnectionsFactory: both policies apply to the same connections")
    func stackedWithConnectionLimits() throws {
        let clock = Clock()
        let limited = LimitConnectionsFactory(wrapping: echoFactory(), maxConnections: 1)
        let factory = ThrottlingFactory(wrapping: limited, clock: clock, readLimit: 10)
        defer { closeAll(factory) }
        let (a, ta) = try connect(factory)
        #expect(factory.buildProtocol(IPv4Address(type: .tcp, host: "10.0.0.2", port: 1)) == nil)  // over the limit
        try a.receive(Array(repeating: 1, count: 20))
        #expect(ta.value().count == 20)  // echoed through both wrappers
        try clock.advance(1)
        #expect(ta.producerState == .paused)
        a.connectionLost(ConnectionDone())
        #expect(limited.connectionCount == 0)
    }
}

/// Keeps lines; "stop" pauses it.
final class PausingLines: LineReceiver {
    var lines: [String] = []
    override func lineReceived(_ line: Span<UInt8>) throws {
        lines.append(line.string)
        if line.string == "stop" { pauseProducing() }
    }
}

@Suite("ThrottlingFactory on loopback")
struct ThrottlingLoopbackTests {
    @Test("a server over its read limit stops reading its socket until the throttle lifts; every byte arrives")
    func serverReadThrottle() throws {
        let reactor = Reactor()
        let clock = Clock()  // the throttle's seconds, moved by the test from reactor callbacks
        final class Sink: Protocol {
            var received = 0
            var onData: (Sink) throws -> Void = { _ in }
            override func dataReceived(_ data: Span<UInt8>) throws {
                received += data.count
                try onData(self)
            }
        }
        final class Writer: Protocol {
            override func connectionMade() throws { transport!.write(Array(repeating: 1, count: 2000)) }
        }
        let sink = Sink()
        let factory = ThrottlingFactory(wrapping: OneProtocolFactory(sink), clock: clock, readLimit: 1000)
        let port = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        let writer = Writer()
        let client = OneProtocolFactory(writer)
        var stages: [String] = []
        sink.onData = { sink in
            if sink.received == 2000 {
                try clock.advance(1)  // the second ends: 2000 > 1000, no reading for 1 s (clock time)
                stages.append(factory.readsThrottled ? "throttled" : "not throttled")
                writer.transport!.write(Array(repeating: 2, count: 3000))
                // The 3000 bytes reach the server's socket within this window; a
                // throttled server leaves them there.
                reactor.callLater(0.05) {
                    stages.append(sink.received == 2000 ? "held" : "read while throttled")
                    try clock.advance(1)
                    stages.append(factory.readsThrottled ? "still throttled" : "unthrottled")
                }
            } else if sink.received == 5000 {
                stages.append("all 5000 bytes")
                port.stopListening()
                try reactor.stop()
            }
        }
        reactor.connectTCP("127.0.0.1", (port.getHost() as! IPv4Address).port, client)
        let watchdog = reactor.callLater(5) {
            Issue.record("still running after 5 s: \(stages)")
            try reactor.stop()
        }
        try reactor.run()
        if watchdog.active { try watchdog.cancel() }
        sink.onData = { _ in }  // it holds the port, which holds the factory, which holds the sink
        #expect(sink.received == 5000)
        #expect(stages == ["throttled", "held", "unthrottled", "all 5000 bytes"])
    }
}

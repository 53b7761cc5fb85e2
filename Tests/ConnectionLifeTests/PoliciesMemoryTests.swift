// The policies (idle timeouts, wrapping, connection limits) in memory: a
// test Clock for time, StringTransport(WithDisconnection) for connections.

import Swisted
import SwistedTesting
import Testing

private func peer(_ host: String, _ port: Int = 40000) -> IPv4Address {
    IPv4Address(type: .tcp, host: host, port: port)
}

/// Counts its own timeouts; the default action can be kept or replaced.
private final class Session: TimingOutProtocol {
    var timeouts = 0
    var lost: [any Error] = []
    var received: [UInt8] = []
    var closeOnTimeout = true

    override func dataReceived(_ data: Span<UInt8>) throws {
        resetTimeout()
        received += data.array
    }

    override func timeoutConnection() {
        timeouts += 1
        if closeOnTimeout { super.timeoutConnection() }
    }

    override func connectionLost(_ reason: any Error) {
        lost.append(reason)
        super.connectionLost(reason)
    }
}

/// Echoes, and records what happens to it (the throttling tests use it too).
final class Recorder: Protocol {
    var received: [UInt8] = []
    var lost: [any Error] = []
    var madeWithTransport: (any Transport)?
    override func connectionMade() throws { madeWithTransport = transport }
    override func dataReceived(_ data: Span<UInt8>) throws {
        received += data.array
        transport!.write(data)
    }
    override func connectionLost(_ reason: any Error) { lost.append(reason) }
}

private final class CountingFactory: Factory {
    var starts = 0
    var stops = 0
    var refuse = false
    override func startFactory() { starts += 1 }
    override func stopFactory() { stops += 1 }
    override func buildProtocol(_ address: any Address) -> Protocol? {
        refuse ? nil : super.buildProtocol(address)
    }
}

@Suite("IdleTimeout")
struct IdleTimeoutTests {
    @Test("setTimeout arms the timer, returns the previous period; it fires once after a full idle period")
    func firesAfterPeriod() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock) { fired += 1 }
        #expect(!idle.isPending)
        #expect(idle.setTimeout(10) == nil)
        #expect(idle.isPending)
        #expect(idle.deadline == 10)
        try clock.advance(9.9)
        #expect(fired == 0)
        try clock.advance(0.1)
        #expect(fired == 1)
        #expect(!idle.isPending)
        #expect(idle.period == 10, "the period stays after expiry, as Twisted's timeOut")
        try clock.advance(100)
        #expect(fired == 1)
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("resetTimeout restarts the count from now; after expiry it does nothing")
    func resetRestarts() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock, period: 5) { fired += 1 }
        try clock.advance(4)
        idle.resetTimeout()
        #expect(idle.deadline == 9)
        try clock.advance(4)
        idle.resetTimeout()
        try clock.advance(4.9)
        #expect(fired == 0)
        try clock.advance(0.1)
        #expect(fired == 1)
        idle.resetTimeout()
        #expect(!idle.isPending, "a reset after expiry does not re-arm")
        try clock.advance(10)
        #expect(fired == 1)
    }

    @Test("setTimeout(nil) disables and returns the old period; setTimeout re-arms after disable and after expiry")
    func disableAndRearm() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock) { fired += 1 }
        idle.setTimeout(3)
        #expect(idle.setTimeout(nil) == 3)
        #expect(!idle.isPending)
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(10)
        #expect(fired == 0)
        #expect(idle.setTimeout(2) == nil)
        try clock.advance(2)
        #expect(fired == 1)
        #expect(idle.setTimeout(1) == 2, "re-armed after expiry")
        try clock.advance(1)
        #expect(fired == 2)
    }

    @Test("setTimeout while pending moves the deadline to now + the new period (one call, not two)")
    func setWhilePendingMoves() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock, period: 10) { fired += 1 }
        try clock.advance(3)
        #expect(idle.setTimeout(2) == 10)
        #expect(idle.deadline == 5)
        #expect(clock.getDelayedCalls().count == 1)
        try clock.advance(2)
        #expect(fired == 1)
    }

    @Test("cancelTimeout disables and forgets the period; calling it twice is harmless")
    func cancel() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock, period: 1) { fired += 1 }
        idle.cancelTimeout()
        idle.cancelTimeout()
        #expect(idle.period == nil)
        try clock.advance(5)
        #expect(fired == 0)
    }

    @Test("onTimeout may re-arm the timer from inside the callback")
    func rearmInsideCallback() throws {
        let clock = Clock()
        var fired = 0
        var idle: IdleTimeout?
        idle = IdleTimeout(clock: clock, period: 1) {
            fired += 1
            if fired < 3 { idle?.setTimeout(1) }
        }
        try clock.advance(1)
        try clock.advance(1)
        try clock.advance(1)
        try clock.advance(1)
        #expect(fired == 3)
        idle = nil
    }

    @Test("negative periods count as 0; NaN and infinity leave it disarmed without crashing")
    func oddPeriods() throws {
        let clock = Clock()
        var fired = 0
        let idle = IdleTimeout(clock: clock) { fired += 1 }
        idle.setTimeout(-5)
        try clock.advance(0)
        #expect(fired == 1)
        idle.setTimeout(.nan)
        #expect(!idle.isPending)
        idle.setTimeout(.infinity)
        #expect(!idle.isPending)
        idle.setTimeout(1e300)
        #expect(idle.deadline == 1e9, "capped far below what the reactor's millisecond conversion can take")
        idle.setTimeout(.infinity)
        idle.resetTimeout()
        try clock.advance(1e9)
        #expect(fired == 1)
        #expect(idle.period == .infinity)
    }

    @Test("a LineReceiver subclass owns an IdleTimeout: lines keep it open, silence closes it")
    func withLineReceiver() throws {
        final class Chat: LineReceiver {
            var clock: (any ReactorTime)?
            var idle: IdleTimeout?
            var lines: [String] = []
            override func connectionMade() throws {
                guard let clock else { return }
                idle = IdleTimeout(clock: clock) { [weak self] in self?.transport?.loseConnection() }
                idle!.setTimeout(60)
            }
            override func lineReceived(_ line: Span<UInt8>) throws {
                idle?.resetTimeout()
                lines.append(line.string)
            }
            override func connectionLost(_ reason: any Error) {
                idle?.cancelTimeout()
            }
        }
        let clock = Clock()
        let chat = Chat()
        chat.clock = clock
        let transport = StringTransportWithDisconnection()
        try transport.connect(chat)
        for index in 0..<3 {
            try clock.advance(59)
            try chat.receive("line \(index)\r\n", chunkSize: 1)
        }
        #expect(!transport.disconnecting)
        try clock.advance(60)
        #expect(transport.loseConnectionCalled)
        #expect(chat.lines == ["line 0", "line 1", "line 2"])
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("dropping the IdleTimeout cancels its call and frees what onTimeout captured")
    func droppingCancels() throws {
        final class Owner {}
        let clock = Clock()
        var fired = false
        weak var weakOwner: Owner?
        do {
            let owner = Owner()
            weakOwner = owner
            let idle = IdleTimeout(clock: clock, period: 1) { [owner] in _ = owner; fired = true }
            #expect(idle.isPending)
        }
        #expect(weakOwner == nil)
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(5)
        #expect(!fired)
    }
}

@Suite("TimingOutProtocol")
struct TimingOutProtocolTests {
    private func connected(_ clock: Clock) throws -> (Session, StringTransportWithDisconnection) {
        let session = Session()
        session.clock = clock
        let transport = StringTransportWithDisconnection()
        try transport.connect(session)
        return (session, transport)
    }

    @Test("by default the timeout closes the connection with loseConnection (Twisted's TimeoutMixin)")
    func defaultLosesConnection() throws {
        let clock = Clock()
        let (session, transport) = try connected(clock)
        #expect(session.setTimeout(3) == nil)
        #expect(session.timeOut == 3)
        try clock.advance(2.9)
        #expect(!transport.disconnecting)
        try clock.advance(0.1)
        #expect(session.timeouts == 1)
        #expect(transport.loseConnectionCalled)
        #expect(!transport.abortConnectionCalled)
        #expect(session.lost.count == 1)
        #expect(session.lost.first is ConnectionDone)
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("resetTimeout on data keeps an active connection open; silence then closes it")
    func activityKeepsItOpen() throws {
        let clock = Clock()
        let (session, transport) = try connected(clock)
        session.setTimeout(1)
        for _ in 0..<20 {
            try clock.advance(0.5)
            try session.receive("x")
        }
        #expect(session.timeouts == 0)
        #expect(session.received.count == 20)
        try clock.advance(1)
        #expect(session.timeouts == 1)
        #expect(transport.loseConnectionCalled)
    }

    @Test("setTimeout(nil) disables, re-arms later, and returns the previous period")
    func disableAndRearm() throws {
        let clock = Clock()
        let (session, transport) = try connected(clock)
        // Close at the end: an open in-memory connection keeps transport and protocol alive (a cycle).
        defer { transport.loseConnection() }
        session.closeOnTimeout = false
        session.setTimeout(1)
        #expect(session.setTimeout(nil) == 1)
        try clock.advance(5)
        #expect(session.timeouts == 0)
        #expect(session.setTimeout(2) == nil)
        try clock.advance(2)
        #expect(session.timeouts == 1)
        #expect(!session.timeoutPending)
        session.setTimeout(2)
        try clock.advance(2)
        #expect(session.timeouts == 2)
    }

    @Test("connectionLost cancels the timer: nothing fires for a closed connection")
    func lostCancels() throws {
        let clock = Clock()
        let (session, transport) = try connected(clock)
        session.setTimeout(1)
        transport.abortConnection()
        #expect(session.lost.first is ConnectionAborted)
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(5)
        #expect(session.timeouts == 0)
    }

    @Test("a subclass that forgets super.connectionLost still never times out once disconnected")
    func forgetfulSubclass() throws {
        final class Forgetful: TimingOutProtocol {
            var timeouts = 0
            override func timeoutConnection() { timeouts += 1 }
            override func connectionLost(_ reason: any Error) {}
        }
        let clock = Clock()
        let proto = Forgetful()
        proto.clock = clock
        let transport = StringTransportWithDisconnection()
        try transport.connect(proto)
        proto.setTimeout(1)
        transport.loseConnection()
        try clock.advance(2)
        #expect(proto.timeouts == 0)
    }

    @Test("without a clock or a reactor transport, setTimeout leaves it disarmed instead of crashing")
    func noClock() throws {
        let proto = Session()
        try proto.makeConnection(StringTransport())
        #expect(proto.setTimeout(1) == nil)
        #expect(!proto.timeoutPending)
        #expect(proto.timeOut == nil)
    }

    @Test("abortTimeout aborts a connection still open that long after the timeout's loseConnection")
    func abortAfterGrace() throws {
        let clock = Clock()
        let session = Session()
        session.clock = clock
        session.abortTimeout = 2
        let transport = StringTransport()  // loseConnection never completes: a peer that does not read
        try session.makeConnection(transport)
        session.setTimeout(1)
        try clock.advance(1)
        #expect(transport.loseConnectionCalled)
        #expect(!transport.abortConnectionCalled)
        try clock.advance(1.9)
        #expect(!transport.abortConnectionCalled)
        try clock.advance(0.1)
        #expect(transport.abortConnectionCalled)
    }

    @Test("with abortTimeout, a connection that closes in time is not aborted and leaves nothing scheduled")
    func noAbortWhenClosed() throws {
        let clock = Clock()
        let (session, transport) = try connected(clock)
        session.abortTimeout = 2
        session.setTimeout(1)
        try clock.advance(1)
        #expect(transport.loseConnectionCalled)
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(5)
        #expect(!transport.abortConnectionCalled)
    }

    @Test("a pending timer does not keep the protocol alive")
    func noRetainCycle() throws {
        let clock = Clock()
        weak var weakSession: Session?
        do {
            let session = Session()
            session.clock = clock
            try session.makeConnection(StringTransport())
            session.setTimeout(10)
            weakSession = session
        }
        #expect(weakSession == nil)
        #expect(clock.getDelayedCalls().isEmpty)
        try clock.advance(20)
    }
}

@Suite("TimeoutFactory and ProtocolWrapper")
struct TimeoutFactoryTests {
    private func build(_ factory: Factory, period: Double = 5, clock: Clock) throws
        -> (TimeoutProtocol, Recorder, StringTransportWithDisconnection) {
        let timeouts = TimeoutFactory(wrapping: factory, timeoutPeriod: period, clock: clock)
        let wrapper = try #require(timeouts.buildProtocol(peer("10.0.0.1")) as? TimeoutProtocol)
        let inner = try #require(wrapper.wrappedProtocol as? Recorder)
        let transport = StringTransportWithDisconnection()
        try transport.connect(wrapper)
        return (wrapper, inner, transport)
    }

    @Test("the wrapped protocol is unchanged: it gets the bytes, its writes reach the real transport, the wrapper is its transport")
    func passesThrough() throws {
        let clock = Clock()
        let (wrapper, inner, transport) = try build(Factory.forProtocol(Recorder.self), clock: clock)
        // Close at the end: an open in-memory connection keeps transport, wrapper and factory alive (a cycle).
        defer { transport.loseConnection() }
        #expect(inner.madeWithTransport as? TimeoutProtocol === wrapper)
        #expect(inner.connected)
        try wrapper.receive("hello", chunkSize: 1)
        #expect(inner.received == Array("hello".utf8))
        #expect(transport.string == "hello")
        #expect(wrapper.getPeer().description == transport.getPeer().description)
        #expect(wrapper.getHost().description == transport.getHost().description)
    }

    @Test("an idle connection is closed after the period; the wrapped protocol hears connectionLost once")
    func idleClosed() throws {
        let clock = Clock()
        let (wrapper, inner, transport) = try build(Factory.forProtocol(Recorder.self), period: 5, clock: clock)
        #expect(wrapper.timeoutPending)
        try clock.advance(4.9)
        #expect(!transport.disconnecting)
        try clock.advance(0.1)
        #expect(transport.loseConnectionCalled)
        #expect(inner.lost.count == 1)
        #expect(inner.lost.first is ConnectionDone)
        #expect(!inner.connected)
        #expect(wrapper.wrappedProtocol == nil, "the wrapper lets go of the protocol once lost")
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("received data and the wrapped protocol's own writes both reset the timer")
    func dataAndWritesReset() throws {
        let clock = Clock()
        let (wrapper, _, transport) = try build(Factory.forProtocol(Recorder.self), period: 1, clock: clock)
        for _ in 0..<5 {
            try clock.advance(0.9)
            try wrapper.receive("a")
        }
        for _ in 0..<5 {
            try clock.advance(0.9)
            wrapper.write("server says hi")
        }
        #expect(!transport.disconnecting)
        try clock.advance(1)
        #expect(transport.loseConnectionCalled)
    }

    @Test("the wrapped protocol can change or disable its timeout through its transport")
    func wrappedChangesTimeout() throws {
        let clock = Clock()
        let (wrapper, inner, transport) = try build(Factory.forProtocol(Recorder.self), period: 1, clock: clock)
        let seen = inner.transport as? TimeoutProtocol
        #expect(seen?.setTimeout(nil) == 1)
        try clock.advance(100)
        #expect(!transport.disconnecting)
        seen?.setTimeout(2)
        #expect(wrapper.timeoutPeriod == 2)
        try clock.advance(2)
        #expect(transport.loseConnectionCalled)
        #expect(wrapper.timeoutPeriod == nil, "connectionLost cancels and forgets the period")
    }

    @Test("a closed connection cancels the timer; aborts pass through")
    func abortCancels() throws {
        let clock = Clock()
        let (wrapper, inner, transport) = try build(Factory.forProtocol(Recorder.self), period: 1, clock: clock)
        inner.transport!.abortConnection()
        #expect(transport.abortConnectionCalled)
        #expect(wrapper.disconnecting)
        #expect(inner.lost.first is ConnectionAborted)
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("TimeoutFactory's abortTimeout aborts a connection whose loseConnection does not complete")
    func factoryAbortTimeout() throws {
        let clock = Clock()
        let factory = TimeoutFactory(wrapping: Factory.forProtocol(Recorder.self), timeoutPeriod: 1, abortTimeout: 3, clock: clock)
        let wrapper = try #require(factory.buildProtocol(peer("10.0.0.1")))
        let transport = StringTransport()
        try wrapper.makeConnection(transport)
        try clock.advance(1)
        #expect(transport.loseConnectionCalled)
        try clock.advance(3)
        #expect(transport.abortConnectionCalled)
        wrapper.connectionLost(ConnectionAborted())
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("a custom timeoutProtocolType decides what a timeout does")
    func customTimeoutAction() throws {
        final class Goodbye: TimeoutProtocol {
            override func timeoutConnection() {
                write("idle too long\r\n")
                abortConnection()
            }
        }
        let clock = Clock()
        let factory = TimeoutFactory(wrapping: Factory.forProtocol(Recorder.self), timeoutPeriod: 1, clock: clock)
        factory.timeoutProtocolType = Goodbye.self
        let wrapper = try #require(factory.buildProtocol(peer("10.0.0.1")) as? Goodbye)
        let transport = StringTransportWithDisconnection()
        try transport.connect(wrapper)
        try clock.advance(1)
        #expect(transport.string == "idle too long\r\n")
        #expect(transport.abortConnectionCalled)
    }

    @Test("start, stop and refusals pass through to the wrapped factory")
    func factoryPassThrough() throws {
        let inner = CountingFactory(protocolType: Recorder.self)
        let wrapping = WrappingFactory(wrapping: inner)
        wrapping.doStart()
        wrapping.doStart()
        #expect(inner.starts == 1)
        wrapping.doStop()
        wrapping.doStop()
        #expect(inner.stops == 1)
        inner.refuse = true
        #expect(wrapping.buildProtocol(peer("10.0.0.1")) == nil)
    }

    @Test("WrappingFactory registers each connection once and unregisters it exactly once")
    func registerUnregister() throws {
        final class Watching: WrappingFactory {
            var registered = 0
            var unregistered = 0
            override func registerProtocol(_ wrapper: ProtocolWrapper) { registered += 1 }
            override func unregisterProtocol(_ wrapper: ProtocolWrapper) { unregistered += 1 }
        }
        let factory = Watching(wrapping: Factory.forProtocol(Recorder.self))
        let wrapper = try #require(factory.buildProtocol(peer("10.0.0.1")) as? ProtocolWrapper)
        let transport = StringTransportWithDisconnection()
        try transport.connect(wrapper)
        #expect(factory.registered == 1)
        #expect(factory.protocols.count == 1)
        transport.loseConnection()
        wrapper.connectionLost(ConnectionDone())  // a second, stray call changes nothing
        #expect(factory.unregistered == 1)
        #expect(factory.protocols.isEmpty)
    }

    @Test("a wrapped factory that keeps its protocols makes no cycle: after connectionLost the wrapping factory is freed")
    func keptProtocolsMakeNoCycle() throws {
        // A factory that keeps every protocol it built (as many do). Its
        // protocols keep their transport, the wrapper, which pointed back to
        // the wrapping factory: a cycle once the connection was over.
        final class Keeping: Factory {
            var built: [Protocol] = []
            override func buildProtocol(_ address: any Address) -> Protocol? {
                let proto = Recorder()
                built.append(proto)
                return proto
            }
        }
        let clock = Clock()
        weak var weakWrapping: WrappingFactory?
        weak var weakKeeping: Keeping?
        weak var weakWrapper: Protocol?
        do {
            let keeping = Keeping()
            let wrapping = LimitConnectionsFactory(wrapping: TimeoutFactory(wrapping: keeping, timeoutPeriod: 5, clock: clock),
                                                   maxConnections: 3)
            weakWrapping = wrapping
            weakKeeping = keeping
            let wrapper = try #require(wrapping.buildProtocol(peer("10.0.0.1")) as? ProtocolWrapper)
            weakWrapper = wrapper
            let transport = StringTransportWithDisconnection()
            try transport.connect(wrapper)
            #expect(wrapper.factory === wrapping, "the wrapper knows its factory while connected")
            transport.loseConnection()
            #expect(wrapper.factory == nil)
            #expect(keeping.built.count == 1)
            #expect(keeping.built.first?.transport is TimeoutProtocol, "the kept protocol still has its (wrapper) transport")
        }
        #expect(weakWrapping == nil, "the wrapping factory outlived the test: a cycle through the kept protocol")
        #expect(weakKeeping == nil)
        #expect(weakWrapper == nil)
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("after connectionLost nothing keeps the wrapper or the wrapped protocol alive")
    func noLeakAfterLost() throws {
        let clock = Clock()
        let factory = LimitConnectionsFactory(wrapping: TimeoutFactory(wrapping: Factory.forProtocol(Recorder.self),
                                                                       timeoutPeriod: 5, clock: clock),
                                              maxConnections: 3)
        weak var weakOuter: Protocol?
        weak var weakInner: Protocol?
        weak var weakApp: Protocol?
        do {
            let outer = try #require(factory.buildProtocol(peer("10.0.0.1")) as? ProtocolWrapper)
            let inner = try #require(outer.wrappedProtocol as? TimeoutProtocol)
            weakOuter = outer
            weakInner = inner
            weakApp = inner.wrappedProtocol
            let transport = StringTransportWithDisconnection()
            try transport.connect(outer)
            #expect(clock.getDelayedCalls().count == 1)
            transport.loseConnection()
        }
        #expect(weakOuter == nil)
        #expect(weakInner == nil)
        #expect(weakApp == nil)
        #expect(clock.getDelayedCalls().isEmpty)
        #expect(factory.connectionCount == 0)
        #expect(factory.protocols.isEmpty)
    }

    @Test("a wrapper with no connection answers safely")
    func unconnectedWrapper() throws {
        let wrapper = ProtocolWrapper()
        wrapper.write("ignored")
        wrapper.loseConnection()
        #expect(wrapper.disconnecting)
        #expect(wrapper.bufferSize == 0)
        #expect(wrapper.getPeer().description == "NotConnectedAddress()")
        #expect(throws: ProducerError.self) { try wrapper.registerProducer(wrapper, streaming: true) }
        try wrapper.receive("nothing to deliver to")
        wrapper.connectionLost(ConnectionDone())
    }
}

@Suite("LimitConnectionsFactory (in memory)")
struct LimitConnectionsMemoryTests {
    /// Closes the connections a test left open: each open in-memory one keeps
    /// its transport, wrapper and the factory alive (they reference each other).
    private func closeAll(_ factory: LimitConnectionsFactory) {
        for wrapper in factory.protocols { wrapper.transport?.loseConnection() }
        #expect(factory.protocols.isEmpty)
    }

    private func accept(_ factory: LimitConnectionsFactory, from host: String) throws -> StringTransportWithDisconnection? {
        guard let proto = factory.buildProtocol(peer(host)) else { return nil }
        let transport = StringTransportWithDisconnection(peer: peer(host))
        try transport.connect(proto)
        return transport
    }

    @Test("over the overall limit buildProtocol refuses; a lost connection frees its place")
    func overallLimit() throws {
        let factory = LimitConnectionsFactory(wrapping: Factory.forProtocol(Recorder.self), maxConnections: 2)
        let first = try #require(try accept(factory, from: "10.0.0.1"))
        let second = try #require(try accept(factory, from: "10.0.0.2"))
        #expect(try accept(factory, from: "10.0.0.3") == nil)
        #expect(factory.connectionCount == 2)
        #expect(factory.refusedCount == 1)
        first.loseConnection()
        #expect(factory.connectionCount == 1)
        let third = try #require(try accept(factory, from: "10.0.0.3"))
        second.abortConnection()
        third.loseConnection()
        #expect(factory.connectionCount == 0)
        #expect(factory.peerConnectionCounts.isEmpty)
    }

    @Test("the per-peer limit counts each host apart; IPv4-mapped IPv6 counts as its IPv4 host")
    func perPeerLimit() throws {
        let factory = LimitConnectionsFactory(wrapping: Factory.forProtocol(Recorder.self), maxConnectionsPerPeer: 2)
        defer { closeAll(factory) }
        let a1 = try #require(try accept(factory, from: "10.0.0.1"))
        _ = try #require(try accept(factory, from: "10.0.0.1"))
        #expect(factory.buildProtocol(IPv6Address(type: .tcp, host: "::ffff:10.0.0.1", port: 1)) == nil)
        _ = try #require(try accept(factory, from: "10.0.0.2"))
        #expect(factory.peerConnectionCounts == ["10.0.0.1": 2, "10.0.0.2": 1])
        #expect(factory.connectionCount(for: peer("10.0.0.1", 9)) == 2)
        a1.loseConnection()
        #expect(factory.peerConnectionCounts == ["10.0.0.1": 1, "10.0.0.2": 1])
        #expect(try accept(factory, from: "10.0.0.1") != nil)
    }

    @Test("each connection counts down exactly once, however often connectionLost is called")
    func exactlyOnce() throws {
        let factory = LimitConnectionsFactory(wrapping: Factory.forProtocol(Recorder.self), maxConnections: 5)
        defer { closeAll(factory) }
        let wrapper = try #require(factory.buildProtocol(peer("10.0.0.1")) as? ProtocolWrapper)
        let transport = StringTransportWithDisconnection()
        try transport.connect(wrapper)
        _ = try #require(try accept(factory, from: "10.0.0.2"))
        #expect(factory.connectionCount == 2)
        transport.loseConnection()
        wrapper.connectionLost(ConnectionDone())
        wrapper.connectionLost(ConnectionLost(detail: "again"))
        #expect(factory.connectionCount == 1)
        #expect(factory.peerConnectionCounts == ["10.0.0.2": 1])
    }

    @Test("an overflow protocol gets refused connections, counted apart, not using up the limit")
    func overflow() throws {
        final class Busy: Protocol {
            override func connectionMade() throws {
                transport!.write("busy\r\n")
                transport!.loseConnection()
            }
        }
        let factory = LimitConnectionsFactory(wrapping: Factory.forProtocol(Recorder.self), maxConnections: 1,
                                              overflowProtocolType: Busy.self)
        let first = try #require(try accept(factory, from: "10.0.0.1"))
        let busyProto = try #require(factory.buildProtocol(peer("10.0.0.2")))
        #expect(factory.overflowCount == 1)
        let busyTransport = StringTransport()
        try busyProto.makeConnection(busyTransport)
        #expect(busyTransport.string == "busy\r\n")
        #expect(busyTransport.loseConnectionCalled)
        busyProto.connectionLost(ConnectionDone())
        #expect(factory.overflowCount == 0)
        #expect(factory.connectionCount == 1)
        #expect(factory.refusedCount == 1)
        first.loseConnection()
        #expect(factory.connectionCount == 0)
    }

    @Test("a connection the wrapped factory refuses is not counted")
    func wrappedRefusalNotCounted() {
        let inner = CountingFactory(protocolType: Recorder.self)
        inner.refuse = true
        let factory = LimitConnectionsFactory(wrapping: inner, maxConnections: 1)
        #expect(factory.buildProtocol(peer("10.0.0.1")) == nil)
        #expect(factory.connectionCount == 0)
        #expect(factory.refusedCount == 0)
    }
}

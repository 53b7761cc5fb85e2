import InMemoryLogging
import Logging
import ServiceLifecycle
import Swisted
import SwistedServiceLifecycle
import Synchronization
import Testing

/// What happened on the reactor thread, for the test task to wait on and read.
private final class Events: Sendable {
    let stream: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private let received = Mutex<[UInt8]>([])
    init() { (stream, continuation) = AsyncStream.makeStream() }
    func add(_ event: String) { continuation.yield(event) }
    func addBytes(_ bytes: [UInt8]) { received.withLock { $0 += bytes } }
    var bytes: [UInt8] { received.withLock { $0 } }
    /// Waits until `count` events equal to `event` arrived.
    func wait(for event: String, count: Int) async {
        var seen = 0
        for await next in stream where next == event {
            seen += 1
            if seen == count { return }
        }
    }
}

/// Server side: says goodbye and closes when graceful shutdown starts, if `polite`.
private final class Session: Protocol, GracefulShutdownAware {
    let events: Events
    let polite: Bool
    init(events: Events, polite: Bool) {
        self.events = events
        self.polite = polite
        super.init()
    }
    required init() { fatalError("built by SessionFactory") }
    override func connectionMade() throws { events.add("made") }
    func gracefulShutdownStarted() {
        events.add("notified")
        if polite {
            transport!.write("bye\n")
            transport!.loseConnection()
        }
    }
    override func connectionLost(_ reason: any Error) { events.add("server lost: \(type(of: reason))") }
}

private final class SessionFactory: ServerFactory {
    let events: Events
    let polite: Bool
    init(events: Events, polite: Bool) {
        self.events = events
        self.polite = polite
        super.init()
    }
    override func buildProtocol(_ address: any Address) -> Protocol? { Session(events: events, polite: polite) }
}

/// Client side: records what it receives; never closes by itself.
private final class Listener: Protocol {
    let events: Events
    init(events: Events) {
        self.events = events
        super.init()
    }
    required init() { fatalError("built by ListenerFactory") }
    override func connectionMade() throws { events.add("made") }
    override func dataReceived(_ data: Span<UInt8>) throws { events.addBytes(data.array) }
    override func connectionLost(_ reason: any Error) { events.add("client lost: \(type(of: reason))") }
}

private final class ListenerFactory: ClientFactory {
    let events: Events
    init(events: Events) {
        self.events = events
        super.init()
    }
    override func buildProtocol(_ address: any Address) -> Protocol? { Listener(events: events) }
}

/// Sets up a server and one client connection on `reactor` (not yet running).
private func setUp(_ reactor: Reactor, events: Events, polite: Bool) throws {
    let port = try reactor.listenTCP(0, SessionFactory(events: events, polite: polite), interface: "127.0.0.1")
    reactor.connectTCP("127.0.0.1", (port.getHost() as! IPv4Address).port, ListenerFactory(events: events))
}

@Suite("ReactorService under a ServiceGroup")
struct ReactorServiceTests {
    @Test("Graceful shutdown: an aware connection says goodbye and closes; the service ends without waiting for the grace period")
    func gracefulFinishesEarly() async throws {
        let reactor = Reactor()
        let events = Events()
        try setUp(reactor, events: events, polite: true)
        let group = ServiceGroup(services: [ReactorService(reactor: reactor, gracePeriod: .seconds(30))],
                                 gracefulShutdownSignals: [], logger: Logger(label: "test"))
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await events.wait(for: "made", count: 2)
            let start = clock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(clock.now - start < .seconds(10), "ended long before the 30 s grace period")
        }
        #expect(events.bytes == Array("bye\n".utf8))
        #expect(!reactor.running)
        #expect(reactor.openHandleCount == 0)
    }

    @Test("Graceful shutdown: connections still open when the grace period ends are closed, and the logger says so")
    func graceExpires() async throws {
        let reactor = Reactor()
        let events = Events()
        try setUp(reactor, events: events, polite: false)
        let logs = InMemoryLogHandler()
        let service = ReactorService(reactor: reactor, gracePeriod: .milliseconds(200), logger: Logger(label: "test") { _ in logs })
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await events.wait(for: "made", count: 2)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(events.bytes.isEmpty)
        #expect(!reactor.running)
        #expect(reactor.openHandleCount == 0)
        let notices = logs.entries.filter { $0.level == .notice }
        #expect(notices.count == 1)
        #expect(notices.first?.metadata["connections"] == "2")
    }

    @Test("Cancelling the task running the service stops the reactor at once")
    func cancellation() async throws {
        let reactor = Reactor()
        let events = Events()
        try setUp(reactor, events: events, polite: true)
        let service = ReactorService(reactor: reactor, gracePeriod: .seconds(30))
        let task = Task { try await service.run() }
        await events.wait(for: "made", count: 2)
        task.cancel()
        try await task.value
        #expect(!reactor.running)
        #expect(reactor.openHandleCount == 0)
        #expect(events.bytes.isEmpty, "no graceful goodbye on cancellation")
    }
}

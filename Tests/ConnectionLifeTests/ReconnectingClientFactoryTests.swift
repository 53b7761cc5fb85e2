// ReconnectingClientFactory's back-off on a test clock, with connectors
// from a MemoryReactor (no sockets).

import Swisted
import SwistedTesting
import Testing

private func connectCalls(_ reactor: MemoryReactor) -> Int {
    reactor.connectorCalls.filter { $0.call == .connect }.count
}

@Suite("ReconnectingClientFactory")
struct ReconnectingClientFactoryTests {
    @Test("Twisted's defaults")
    func defaults() {
        let factory = ReconnectingClientFactory()
        #expect(factory.initialDelay == 1.0)
        #expect(factory.factor == 2.7182818284590451)
        #expect(factory.jitter == 0.11962656472)
        #expect(factory.maxDelay == 3600)
        #expect(factory.maxRetries == nil)
        #expect(factory.continueTrying)
    }

    @Test("without jitter, delays grow by the factor up to maxDelay, and each retry reconnects the connector")
    func delaysFollowTheAlgorithm() throws {
        let reactor = MemoryReactor()
        let factory = ReconnectingClientFactory()
        factory.clock = reactor.clock
        factory.jitter = 0
        factory.maxDelay = 100
        let connector = reactor.connectTCP("127.0.0.1", 9, factory)
        var delays: [Double] = []
        for attempt in 1...6 {
            factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
            let pending = try #require(reactor.clock.getDelayedCalls().first)
            delays.append(pending.getTime() - reactor.clock.seconds())
            try reactor.clock.advance(delays.last!)
            #expect(connectCalls(reactor) == attempt)
        }
        var expected: [Double] = []
        var delay = 1.0
        for _ in 1...6 { delay = min(delay * 2.7182818284590451, 100); expected.append(delay) }
        #expect(zip(delays, expected).allSatisfy { abs($0 - $1) < 1e-9 })
        #expect(delays.last == 100)
        #expect(factory.retries == 6)
    }

    @Test("with a seeded generator the jittered delays repeat, and stay near the un-jittered ones")
    func jitterIsSeeded() throws {
        func delays(seed: UInt64) throws -> [Double] {
            let reactor = MemoryReactor()
            let factory = ReconnectingClientFactory()
            factory.clock = reactor.clock
            factory.randomNumbers = SeededRandom(seed: seed)
            let connector = reactor.connectTCP("127.0.0.1", 9, factory)
            var result: [Double] = []
            for _ in 1...5 {
                factory.clientConnectionLost(connector, reason: ConnectionLost())
                let pending = try #require(reactor.clock.getDelayedCalls().first)
                result.append(pending.getTime() - reactor.clock.seconds())
                try reactor.clock.advance(result.last!)
            }
            return result
        }
        let first = try delays(seed: 42)
        #expect(try delays(seed: 42) == first)
        #expect(try delays(seed: 7) != first)
        #expect(first.allSatisfy { $0 > 0 })
    }

    @Test("maxRetries caps the attempts")
    func maxRetries() throws {
        let reactor = MemoryReactor()
        let factory = ReconnectingClientFactory()
        factory.clock = reactor.clock
        factory.jitter = 0
        factory.maxRetries = 3
        let connector = reactor.connectTCP("127.0.0.1", 9, factory)
        for _ in 1...5 {
            factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
            try reactor.clock.advance(10_000)
        }
        #expect(connectCalls(reactor) == 3)
    }

    @Test("stopTrying cancels a scheduled retry and stops an attempt in progress; resetDelay starts over")
    func stopTryingAndReset() throws {
        let reactor = MemoryReactor()
        let factory = ReconnectingClientFactory()
        factory.clock = reactor.clock
        factory.jitter = 0
        let connector = reactor.connectTCP("127.0.0.1", 9, factory)
        factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
        factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
        #expect(factory.retries == 2)
        factory.stopTrying()
        #expect(reactor.clock.getDelayedCalls().allSatisfy { !$0.active })
        try reactor.clock.advance(10_000)
        #expect(connectCalls(reactor) == 0)
        factory.clientConnectionLost(connector, reason: ConnectionLost())
        #expect(reactor.clock.getDelayedCalls().isEmpty)  // no retry after stopTrying
        factory.resetDelay()
        #expect(factory.delay == 1.0 && factory.retries == 0 && factory.continueTrying)
        factory.clientConnectionLost(connector, reason: ConnectionLost())
        let next = try #require(reactor.clock.getDelayedCalls().first)
        #expect(abs(next.getTime() - reactor.clock.seconds() - 2.7182818284590451) < 1e-9)
        // The clock keeps the pending retry, which keeps the connector, which
        // keeps the factory, which keeps the clock: cancel it.
        factory.stopTrying()
    }

    @Test("factory and connector are freed once the program lets go of them (factory.connector does not keep its connector)")
    func freedAfterUse() throws {
        weak var weakFactory: ReconnectingClientFactory?
        weak var weakConnector: Connector?
        do {
            let reactor = MemoryReactor()
            let factory = ReconnectingClientFactory()
            factory.clock = reactor.clock
            factory.jitter = 0
            let connector = reactor.connectTCP("127.0.0.1", 9, factory)
            factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
            try reactor.clock.advance(10_000)  // the retry runs: connector.connect()
            #expect(connectCalls(reactor) == 1)
            #expect(factory.connector === connector)
            weakFactory = factory
            weakConnector = connector
        }
        #expect(weakFactory == nil)
        #expect(weakConnector == nil)
    }

    @Test("a retry still pending keeps its connector until it runs, with no other reference to either")
    func pendingRetryKeepsConnector() throws {
        let clock = Clock()
        let idle = Reactor()  // never run: the connector only reports its calls
        var connects = 0
        weak var weakConnector: Connector?
        weak var weakFactory: ReconnectingClientFactory?
        do {
            let factory = ReconnectingClientFactory()
            factory.clock = clock
            factory.jitter = 0
            let connector = Connector(reactor: idle, host: "127.0.0.1", port: 9, factory: factory, timeout: nil, bindAddress: nil)
            connector.memoryCalls = { _, call in
                if case .connect = call { connects += 1 }
            }
            factory.clientConnectionFailed(connector, reason: ConnectionRefusedError())
            weakConnector = connector
            weakFactory = factory
        }
        #expect(weakConnector != nil)  // held by the pending retry alone
        #expect(weakFactory?.connector != nil)
        try clock.advance(10_000)
        #expect(connects == 1)
        #expect(clock.getDelayedCalls().isEmpty)
        #expect(weakConnector == nil)  // the retry ran: nothing holds it now
        #expect(weakFactory == nil)
    }
}

import KeyValue
import Logging
import ServiceLifecycle
import Swisted
import SwistedServiceLifecycle
import Testing

@Suite("The key-value example: an actor on the reactor executor, a ServiceGroup, an AsyncConnection client")
struct KeyValueExampleTests {
    @Test("Commands over loopback; the actor is shared with async code; graceful shutdown tells idle clients and ends the group")
    func commandsAndGracefulShutdown() async throws {
        let reactor = Reactor()
        let store = KeyValueStore(reactor: reactor)
        let port = try reactor.listenTCP(0, KeyValueFactory(store: store), interface: "127.0.0.1")
        let portNumber = (port.getHost() as! IPv4Address).port
        let group = ServiceGroup(services: [ReactorService(reactor: reactor, gracePeriod: .seconds(20))],
                                 gracefulShutdownSignals: [], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }

            var client = try await KeyValueClient.connect(reactor, host: "127.0.0.1", port: portNumber)
            #expect(try await client.send("SET greeting hello there") == "OK")
            #expect(try await client.send("GET greeting") == "VALUE hello there")
            #expect(try await client.send("GET missing") == "NOT_FOUND")
            #expect(try await client.send("SET other 1") == "OK")
            #expect(try await client.send("DEL other") == "DELETED")
            #expect(try await client.send("COUNT") == "COUNT 1")
            #expect(try await client.send("FROB") == "ERROR unknown command or wrong arguments: FROB")
            // Other async code reaches the same actor with await (a hop to the reactor thread).
            #expect(await store.count == 1)
            #expect(await store.commandsServed == 7)

            var idle = try await KeyValueClient.connect(reactor, host: "127.0.0.1", port: portNumber)
            #expect(try await idle.send("COUNT") == "COUNT 1")
            await group.triggerGracefulShutdown()
            #expect(try await idle.nextLine() == "SHUTTING_DOWN")
            #expect(try await idle.nextLine() == nil, "the server closed after saying so")
            #expect(try await client.nextLine() == "SHUTTING_DOWN")
            // These clients run on the same reactor, so they are open connections too:
            // closing them lets the graceful shutdown end well before its 20 s.
            await idle.connection.close()
            await client.connection.close()
            let clock = ContinuousClock()
            let start = clock.now
            try await tasks.waitForAll()
            #expect(clock.now - start < .seconds(10))
        }
        #expect(!reactor.running)
        #expect(reactor.openHandleCount == 0)
    }

    @Test("QUIT closes; an over-long line gets an error and closes that connection only")
    func quitAndOverlongLine() async throws {
        let reactor = Reactor()
        let store = KeyValueStore(reactor: reactor)
        let port = try reactor.listenTCP(0, KeyValueFactory(store: store), interface: "127.0.0.1")
        let portNumber = (port.getHost() as! IPv4Address).port
        let background = try reactor.runInBackground()
        var quitter = try await KeyValueClient.connect(reactor, host: "127.0.0.1", port: portNumber)
        #expect(try await quitter.send("QUIT") == "BYE")
        #expect(try await quitter.nextLine() == nil)

        var other = try await KeyValueClient.connect(reactor, host: "127.0.0.1", port: portNumber)
        var flooder = try await KeyValueClient.connect(reactor, host: "127.0.0.1", port: portNumber)
        #expect(try await flooder.send("SET k " + String(repeating: "x", count: 10_000)) == "ERROR line longer than 4096 bytes")
        #expect(try await flooder.nextLine() == nil)
        #expect(try await other.send("SET k v") == "OK", "the other connection is unaffected")
        await other.connection.close()
        await background.stop()
        #expect(reactor.openHandleCount == 0)
    }
}

import Glibc
import Synchronization
import Testing
@testable import Swisted

/// An actor that lives on a reactor's thread.
private actor OnReactor {
    let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }
    var received = 0
    var port: ListeningPort?

    init(_ reactor: Reactor) { self.reactor = reactor }

    func threadID() -> UInt { UInt(pthread_self()) }

    func isOnReactorThread() -> Bool { reactor.isRunningOnCurrentThread }

    /// Listens with a protocol that reports each chunk into this actor synchronously.
    func listen() throws -> Int {
        let factory = ActorEchoFactory(room: self)
        let port = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
        self.port = port
        return (port.getHost() as! IPv4Address).port
    }

    func count(_ bytes: Int) { received += bytes }

    /// Stops and forgets the port: it holds the factory, which holds this actor.
    func stopListening() {
        port?.stopListening()
        port = nil
    }
}

/// Echoes, and counts bytes into the actor without a hop (assumeIsolated).
private final class ActorEcho: Protocol {
    override func dataReceived(_ data: Span<UInt8>) throws {
        let count = data.count
        (factory as! ActorEchoFactory).room.assumeIsolated { $0.count(count) }
        transport!.write(data)
    }
}

private final class ActorEchoFactory: ServerFactory {
    let room: OnReactor
    init(room: OnReactor) {
        self.room = room
        super.init(protocolType: ActorEcho.self)
    }
}

/// Sends `message` once connected, finishes the continuation when it all came back.
private final class OneShotClient: Protocol {
    var message: [UInt8] = []
    var received: [UInt8] = []
    var done: ((Result<[UInt8], any Error>) -> Void)?
    override func connectionMade() throws { transport!.write(message) }
    override func dataReceived(_ data: Span<UInt8>) throws {
        received += data.array
        if received.count == message.count { transport!.loseConnection() }
    }
    override func connectionLost(_ reason: any Error) {
        done?(.success(received))
        done = nil
    }
}

@Suite("Reactor as a Swift executor, runInBackground and submit")
struct ExecutorTests {
    @Test("runInBackground runs the reactor on another thread; submit returns values and errors; stop() waits for shutdown")
    func backgroundSubmitStop() async throws {
        struct Nope: Error {}
        let reactor = Reactor()
        let background = try reactor.runInBackground(name: "swisted-test")
        let here = UInt(pthread_self())
        let there = try await reactor.submit { UInt(pthread_self()) }
        #expect(there != here)
        #expect(try await reactor.submit { reactor.running })
        await #expect(throws: Nope.self) { try await reactor.submit { throw Nope() } }
        await background.stop()
        #expect(!reactor.running)
        #expect(reactor.openHandleCount == 0)
        #expect(throws: ReactorAlreadyRunning.self) {
            // Running again in the background works once the first run ended; twice at once does not.
            let again = try reactor.runInBackground()
            defer { again.stopAndWait() }
            _ = try reactor.runInBackground()
        }
    }

    @Test("once stop() returns, the reactor's thread holds no reference to it: dropping the last one frees it at once (200 reactors)")
    func stopReleasesTheReactor() async throws {
        var stillAlive = 0
        for _ in 0..<200 {
            weak var released: Reactor?
            do {
                let reactor = Reactor()
                released = reactor
                let background = try reactor.runInBackground(name: "swisted-test")
                await background.stop()
            }
            if released != nil { stillAlive += 1 }
        }
        #expect(stillAlive == 0, "\(stillAlive) of 200 reactors outlived their last reference")
    }

    @Test("An actor whose executor is the reactor runs on the reactor thread, and protocols enter it with assumeIsolated")
    func actorOnReactor() async throws {
        let reactor = Reactor()
        let background = try reactor.runInBackground()
        let room = OnReactor(reactor)
        let reactorThread = try await reactor.submit { UInt(pthread_self()) }
        #expect(await room.threadID() == reactorThread)
        #expect(await room.isOnReactorThread())

        let port = try await room.listen()
        let echoed: [UInt8] = try await withCheckedThrowingContinuation { continuation in
            reactor.callFromThread {
                let message = pattern(count: 100_000)
                let client = OneShotClient()
                client.message = message
                client.done = { continuation.resume(with: $0) }
                reactor.connectTCP("127.0.0.1", port, FixedProtocolFactory(client))
            }
        }
        #expect(echoed == pattern(count: 100_000))
        #expect(await room.received == 100_000)
        await room.stopListening()
        await background.stop()
        #expect(reactor.openHandleCount == 0)
    }

    @Test("Task(executorPreference: reactor) runs nonisolated async code on the reactor thread")
    func taskExecutorPreference() async throws {
        let reactor = Reactor()
        let background = try reactor.runInBackground()
        let onReactor = await Task(executorPreference: reactor) {
            reactor.isRunningOnCurrentThread
        }.value
        #expect(onReactor)
        await background.stop()
    }

    @Test("Jobs and submits made before the reactor runs wait for it, then run")
    func jobsWaitForRun() async throws {
        let reactor = Reactor()
        let room = OnReactor(reactor)
        let waiting = Task { try await reactor.submit { 42 } }
        let actorCall = Task { await room.isOnReactorThread() }
        let background = try reactor.runInBackground()
        #expect(try await waiting.value == 42)
        #expect(await actorCall.value)
        await background.stop()
    }

    @Test("10,000 submits from 4 tasks all run on the reactor thread, in order per task")
    func manySubmits() async throws {
        let reactor = Reactor()
        let background = try reactor.runInBackground()
        let seen = ReactorBox4()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    for index in 0..<2_500 {
                        try await reactor.submit { seen.record(task: task, index: index, onReactor: reactor.isRunningOnCurrentThread) }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(seen.snapshot() == Array(repeating: 2_500, count: 4))
        #expect(seen.outOfOrder.load(ordering: .relaxed) == 0)
        #expect(seen.offReactor.load(ordering: .relaxed) == 0)
        await background.stop()
    }
}

/// Counts per task, checking order; touched only on the reactor thread (checked).
private final class ReactorBox4: Sendable {
    private let counts = Mutex([0, 0, 0, 0])
    let outOfOrder = Atomic(0)
    let offReactor = Atomic(0)
    func record(task: Int, index: Int, onReactor: Bool) {
        if !onReactor { offReactor.add(1, ordering: .relaxed) }
        counts.withLock {
            if $0[task] != index { outOfOrder.add(1, ordering: .relaxed) }
            $0[task] += 1
        }
    }
    func snapshot() -> [Int] { counts.withLock { $0 } }
}

/// A client factory that hands out one given protocol.
private final class FixedProtocolFactory: ClientFactory {
    private var proto: Protocol?
    init(_ proto: Protocol) {
        self.proto = proto
        super.init()
    }
    override func buildProtocol(_ address: any Address) -> Protocol? {
        defer { proto = nil }
        proto?.factory = self
        return proto
    }
}

// The poetry server and client in one process, one reactor, over loopback.
import PoetryClient
import PoetryServer
import Swisted
import Testing

/// A poetry server on an ephemeral loopback port, its log captured.
private func serve(_ poem: [UInt8], delay: Double, numBytes: Int = 10, on reactor: Reactor) throws -> (port: Int, log: Lines) {
    let factory = PoetryFactory(poem: poem, delay: delay, numBytes: numBytes, reactor: reactor)
    let log = Lines()
    factory.output = { log.append($0) }
    let port = try reactor.listenTCP(0, factory, interface: "127.0.0.1")
    return ((port.getHost() as! IPv4Address).port, log)
}

/// Parses `Task N: got B bytes of poetry from IPv4Address(type='TCP', host='127.0.0.1', port=P)`.
private func chunkLine(_ line: String) -> (task: Int, bytes: Int, port: Int)? {
    guard let match = line.wholeMatch(of: /Task (\d+): got (\d+) bytes of poetry from IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)/) else {
        return nil
    }
    return (Int(match.1)!, Int(match.2)!, Int(match.3)!)
}

@Suite("Poetry server and client over loopback, one reactor")
struct PoetryLoopbackTests {
    @Test("slow and fast servers, and a dead port: every poem whole, one failure, the reactor stops once, after the last")
    func slowFastAndDead() throws {
        let reactor = Reactor()
        let cafe = try Poems.bytes("cafe-at-midnight.txt")
        let long = try Poems.bytes("night-shift.txt")
        let slow = try serve(cafe, delay: 0.005, numBytes: 7, on: reactor)  // splits UTF-8 sequences
        let fast = try serve(long, delay: 0, on: reactor)
        let dead = try deadPort(reactor)

        let factory = PoetryClientFactory(poetryCount: 3, reactor: reactor)
        let lines = Lines()
        factory.output = { lines.append($0) }
        var stops = 0
        var pendingAtStop = -1
        // Unowned: the reactor keeps its triggers and the factory holds the reactor.
        reactor.addSystemEventTrigger(.before, .shutdown) { [unowned factory] in
            stops += 1
            pendingAtStop = factory.poetryCount
        }
        for port in [slow.port, fast.port, dead] {
            reactor.connectTCP("127.0.0.1", port, factory)
        }
        try runBounded(reactor)

        #expect(stops == 1)
        #expect(pendingAtStop == 0)
        #expect(factory.failures == 1)
        #expect(lines.all.filter { $0 == "Failed to connect to: IPv4Address(type='TCP', host='127.0.0.1', port=\(dead))" }.count == 1)

        let chunks = lines.all.compactMap(chunkLine)
        #expect(Set(chunks.map(\.task)) == [1, 2])
        var taskOfPort: [Int: Int] = [:]
        for chunk in chunks { taskOfPort[chunk.port] = chunk.task }
        let slowTask = try #require(taskOfPort[slow.port])
        let fastTask = try #require(taskOfPort[fast.port])
        #expect(factory.poems[slowTask] == cafe)
        #expect(factory.poems[fastTask] == long)
        // 7-byte writes; on a loaded machine loopback delivery can be deferred
        // (ksoftirqd), so two writes may arrive in one read: only "many small
        // chunks" is certain.
        #expect(chunks.filter { $0.task == slowTask }.count > cafe.count / 14)
        #expect(chunks.filter { $0.task == slowTask }.map(\.bytes).reduce(0, +) == cafe.count)
        #expect(chunks.filter { $0.task == fastTask }.map(\.bytes).reduce(0, +) == long.count)
        #expect(chunks.filter { $0.task == fastTask }.count >= 2)  // bigger than one 64 KiB read

        let report = lines.all.filter { $0.hasSuffix("characters of poetry") }
        #expect(report == [1, 2].map { task in "Task \(task): \(pythonLength(factory.poems[task]!)) characters of poetry" })
        #expect(lines.all.suffix(2) == report[...])  // the report comes last, after every chunk
        #expect(slow.log.all.count == 1 && slow.log.all[0].hasPrefix("Somebody at IPv4Address(type='TCP', host='127.0.0.1', port="))
        #expect(reactor.openHandleCount == 0)
    }

    @Test("many clients of one slow server, each at its own place; one leaving early ends only its own transfer")
    func clientLeavesEarly() throws {
        let reactor = Reactor()
        let poem = try Poems.bytes("slow-server.txt")
        let server = try serve(poem, delay: 0.002, numBytes: 25, on: reactor)

        /// Hangs up after its first chunk.
        final class Quitter: Protocol {
            var received = 0
            override func dataReceived(_ data: Span<UInt8>) throws {
                received += data.count
                transport!.abortConnection()
            }
        }
        final class QuitterFactory: ClientFactory {
            var protocols: [Quitter] = []
            override func buildProtocol(_ address: any Address) -> Protocol? {
                let proto = Quitter()
                protocols.append(proto)
                return proto
            }
        }
        let quitters = QuitterFactory()
        for _ in 0..<3 { reactor.connectTCP("127.0.0.1", server.port, quitters) }

        let factory = PoetryClientFactory(poetryCount: 4, reactor: reactor)
        factory.output = { _ in }
        for _ in 0..<4 { reactor.connectTCP("127.0.0.1", server.port, factory) }
        try runBounded(reactor)

        #expect(factory.failures == 0)
        #expect(factory.poems.count == 4)
        #expect(factory.poems.values.allSatisfy { $0 == poem })
        #expect(quitters.protocols.count == 3)
        #expect(quitters.protocols.allSatisfy { $0.received > 0 && $0.received < poem.count })
        #expect(server.log.all.count == 7)
    }

    @Test("an empty poem: the server hangs up at once, the client reports 0 characters")
    func emptyPoem() throws {
        let reactor = Reactor()
        let slow = try serve([], delay: 0.01, on: reactor)
        let fast = try serve([], delay: 0, on: reactor)
        let factory = PoetryClientFactory(poetryCount: 2, reactor: reactor)
        let lines = Lines()
        factory.output = { lines.append($0) }
        reactor.connectTCP("127.0.0.1", slow.port, factory)
        reactor.connectTCP("127.0.0.1", fast.port, factory)
        try runBounded(reactor)
        #expect(lines.all == ["Task 1: 0 characters of poetry", "Task 2: 0 characters of poetry"])
        #expect(factory.failures == 0)
    }
}

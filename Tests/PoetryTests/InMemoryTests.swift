// The slow poetry server and get-poetry's protocol talking in memory:
// SwistedTesting's ConnectedPair moves the bytes, its Clock moves time.
// No socket, no real second passes.
import PoetryClient
import PoetryServer
import Swisted
import SwistedTesting
import Testing

@Suite("Poetry server and client in memory")
struct PoetryInMemoryTests {
    @Test("the slow server sends numBytes every delay seconds; the client gets the whole poem")
    func slowServer() throws {
        let poem = try Poems.bytes("cafe-at-midnight.txt")
        let clock = Clock()
        let serverFactory = PoetryFactory(poem: poem, delay: 0.5, numBytes: 100, reactor: clock)
        var serverLines: [String] = []
        serverFactory.output = { serverLines.append($0) }
        let clientFactory = PoetryClientFactory(poetryCount: 1, reactor: Reactor())
        let lines = Lines()
        clientFactory.output = { lines.append($0) }

        let client = clientFactory.buildProtocol(IPv4Address(type: .tcp, host: "127.0.0.1", port: 8000))!
        let server = serverFactory.buildProtocol(IPv4Address(type: .tcp, host: "127.0.0.1", port: 54321))!
        let pair = ConnectedPair(server: server, client: client)
        var steps = 0
        pair.flush()
        while !pair.isClosed, steps < 10_000 {
            try clock.advance(0.5)
            pair.flush()
            steps += 1
        }
        let chunks = (poem.count + 99) / 100
        #expect(clientFactory.poems[1] == poem)
        #expect(steps == chunks - 1)
        #expect(clock.seconds() == Double(chunks - 1) * 0.5)
        #expect(lines.all.filter { $0.hasPrefix("Task 1: got 100 bytes") }.count == poem.count / 100)
        #expect(serverLines == ["Somebody at IPv4Address(type='TCP', host='127.0.0.1', port=54321) wants poetry!"])
        #expect(clock.getDelayedCalls().isEmpty)
    }

    @Test("a client that hangs up early cancels the server's next chunk")
    func earlyHangUp() throws {
        let clock = Clock()
        let serverFactory = PoetryFactory(poem: Array(repeating: 65, count: 1000), delay: 1, numBytes: 10, reactor: clock)
        serverFactory.output = { _ in }
        final class Impatient: Protocol {
            override func dataReceived(_ data: Span<UInt8>) throws { transport!.loseConnection() }
        }
        let pair = ConnectedPair(server: serverFactory.buildProtocol(IPv4Address(type: .tcp, host: "127.0.0.1", port: 1))!, client: Impatient())
        pair.flush()
        #expect(pair.isClosed)
        #expect(clock.getDelayedCalls().isEmpty)
    }
}

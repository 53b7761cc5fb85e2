// PoetryProtocol and PoetryClientFactory driven by hand, over SwistedTesting's StringTransport.
import PoetryClient
import Swisted
import SwistedTesting
import Testing

private let peer = IPv4Address(type: .tcp, host: "127.0.0.1", port: 10001)

/// A factory expecting `count` poems, with its output captured.
private func makeFactory(_ count: Int, reactor: Reactor = Reactor()) -> (PoetryClientFactory, Lines) {
    let factory = PoetryClientFactory(poetryCount: count, reactor: reactor)
    let lines = Lines()
    factory.output = { lines.append($0) }
    return (factory, lines)
}

@Suite("get-poetry's protocol and factory, in memory")
struct PoetryClientTests {
    @Test("buildProtocol numbers the tasks 1, 2, 3 and sets the factory")
    func taskNumbering() throws {
        let (factory, _) = makeFactory(3)
        let protocols = (1...3).map { _ in factory.buildProtocol(peer) as! PoetryClient.PoetryProtocol }
        #expect(protocols.map(\.taskNum) == [1, 2, 3])
        #expect(protocols.allSatisfy { $0.factory === factory })
        #expect(factory.taskNum == 4)
    }

    @Test("a poem is put together from chunks of any size", arguments: [1, 2, 3, 7, 10, 64, 1000, 65536, 100_000])
    func chunkAccumulation(chunkSize: Int) throws {
        let poem = try Poems.bytes("cafe-at-midnight.txt") + Poems.bytes("night-shift.txt")
        let (factory, lines) = makeFactory(1)
        let proto = factory.buildProtocol(peer) as! PoetryClient.PoetryProtocol
        try proto.makeConnection(StringTransport(peer: peer))
        var chunks = 0
        for start in stride(from: 0, to: poem.count, by: chunkSize) {
            try proto.receive(poem[start..<min(start + chunkSize, poem.count)])
            chunks += 1
        }
        proto.connectionLost(ConnectionDone())

        #expect(factory.poems[1] == poem)
        #expect(factory.failures == 0)
        #expect(lines.all.count == chunks + 1)
        #expect(lines.all.first == "Task 1: got \(min(chunkSize, poem.count)) bytes of poetry from IPv4Address(type='TCP', host='127.0.0.1', port=10001)")
        #expect(lines.all.last == "Task 1: \(pythonLength(poem)) characters of poetry")
    }

    @Test("non-ASCII bytes survive chunks that split UTF-8 sequences; characters counted as Python does")
    func nonASCII() throws {
        let poem = Array("夜 ночь ☾ 🙂 crème brûlée\n".utf8)
        let (factory, lines) = makeFactory(1)
        let proto = factory.buildProtocol(peer) as! PoetryClient.PoetryProtocol
        try proto.makeConnection(StringTransport(peer: peer))
        for byte in poem { try proto.receive([byte]) }  // every multi-byte character is split
        proto.connectionLost(ConnectionDone())
        #expect(factory.poems[1] == poem)
        #expect(characterCount(poem) == 24)  // Python: len("夜 ночь ☾ 🙂 crème brûlée\n") == 24
        #expect(lines.all.last == "Task 1: 24 characters of poetry")
    }

    @Test("the report lists every poem received, in task order, once all tasks are done")
    func reportOrder() throws {
        let (factory, lines) = makeFactory(3)
        let protocols = (1...3).map { _ in factory.buildProtocol(peer) as! PoetryClient.PoetryProtocol }
        for proto in protocols { try proto.makeConnection(StringTransport(peer: peer)) }
        try protocols[2].receive(Array("three".utf8))
        try protocols[0].receive(Array("one".utf8))
        protocols[2].connectionLost(ConnectionDone())
        protocols[0].connectionLost(ConnectionDone())
        #expect(!lines.all.contains { $0.hasSuffix("characters of poetry") })  // task 2 still running
        try protocols[1].receive(Array("two!".utf8))
        protocols[1].connectionLost(ConnectionDone())
        #expect(Array(lines.all.suffix(3)) == [
            "Task 1: 3 characters of poetry",
            "Task 2: 4 characters of poetry",
            "Task 3: 5 characters of poetry",
        ])
        #expect(factory.poetryCount == 0)
    }

    @Test("a download cut short is reported, and counted as a failure")
    func cutShort() throws {
        let (factory, lines) = makeFactory(1)
        let proto = factory.buildProtocol(peer) as! PoetryClient.PoetryProtocol
        try proto.makeConnection(StringTransport(peer: peer))
        try proto.receive(Array("half a po".utf8))
        proto.connectionLost(ConnectionLost())
        #expect(factory.poems[1] == Array("half a po".utf8))
        #expect(factory.failures == 1)
        #expect(lines.all.last == "Task 1: 9 characters of poetry")
    }
}

@Suite("Command-line helpers")
struct PoetryHelperTests {
    @Test("addresses parse as [HOST:]PORT, IPv6 in brackets")
    func addresses() throws {
        #expect(try parseAddress("10001") == ("127.0.0.1", 10001))
        #expect(try parseAddress("localhost:10002") == ("localhost", 10002))
        #expect(try parseAddress("192.0.2.7:10003") == ("192.0.2.7", 10003))
        #expect(try parseAddress("[::1]:10004") == ("::1", 10004))
        #expect(try parseAddress(":10005") == ("127.0.0.1", 10005))
        #expect(try parseAddress("0") == ("127.0.0.1", 0))
        #expect(try parseAddress("65535").port == 65535)
    }

    @Test("nonsense addresses are refused with a message", arguments: [
        "notaport", "host:99999", "99999", "host:", "", "::1:10001", "[::1]", "[::1]10001", "[::1:10001", "host:-1", "host:1e3", "host:٣",
    ])
    func badAddresses(text: String) {
        #expect(throws: AddressError.self) { try parseAddress(text) }
    }

    @Test("elapsed time prints as Python's timedelta")
    func elapsed() {
        #expect(formatElapsed(2.103) == "0:00:02.103000")
        #expect(formatElapsed(2) == "0:00:02")
        #expect(formatElapsed(0) == "0:00:00")
        #expect(formatElapsed(0.000001) == "0:00:00.000001")
        #expect(formatElapsed(3725.5) == "1:02:05.500000")
        #expect(formatElapsed(86_400 + 61) == "1 day, 0:01:01")
        #expect(formatElapsed(2 * 86_400) == "2 days, 0:00:00")
    }
}

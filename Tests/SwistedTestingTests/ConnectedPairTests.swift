// SwistedTesting's ConnectedPair: two protocols wired through memory.
import Swisted
import SwistedTesting
import Testing

@Suite("ConnectedPair")
struct ConnectedPairTests {
    final class Echo: Protocol {
        override func dataReceived(_ data: Span<UInt8>) throws { transport!.write(data) }
    }

    @Test("writes are delivered to the other side on pump, not before")
    func deliversOnPump() throws {
        let client = Recorder()
        client.onMade = { $0.transport!.write("hello") }
        let pair = ConnectedPair(server: Echo(), client: client)
        #expect(client.received.isEmpty)
        pair.pump()
        #expect(client.received == Array("hello".utf8))
        #expect(!pair.pump())
    }

    @Test("chunkSize delivers writes in pieces of that size")
    func chunked() throws {
        let server = Recorder()
        var pieces = 0
        server.onData = { _, _ in pieces += 1 }
        let client = Recorder()
        client.onMade = { $0.transport!.write("0123456789") }
        let pair = ConnectedPair(server: server, client: client)
        pair.chunkSize = 3
        pair.flush()
        #expect(server.received == Array("0123456789".utf8))
        #expect(pieces == 4)
    }

    @Test("loseConnection delivers what was written, then both sides get ConnectionDone")
    func loseConnection() throws {
        let client = Recorder()
        client.onMade = { proto in
            proto.transport!.write("last words")
            proto.transport!.loseConnection()
        }
        let server = Recorder()
        let pair = ConnectedPair(server: server, client: client)
        pair.flush()
        #expect(server.received == Array("last words".utf8))
        #expect(server.lostReasons.count == 1 && server.lostReasons[0] is ConnectionDone)
        #expect(client.lostReasons.count == 1 && client.lostReasons[0] is ConnectionDone)
        #expect(pair.isClosed)
    }

    @Test("abortConnection drops unsent bytes: ConnectionAborted here, ConnectionLost there")
    func abort() throws {
        let client = Recorder()
        client.onMade = { proto in
            proto.transport!.write("never sent")
            proto.transport!.abortConnection()
        }
        let server = Recorder()
        let pair = ConnectedPair(server: server, client: client)
        pair.flush()
        #expect(server.received.isEmpty)
        #expect(client.lostReasons.first is ConnectionAborted)
        #expect(server.lostReasons.first is ConnectionLost)
    }

    @Test("a throw from dataReceived closes that side with the error as reason, as the reactor does")
    func throwCloses() throws {
        struct Bad: Error {}
        let server = Recorder()
        server.onData = { _, _ in throw Bad() }
        let client = Recorder()
        client.onMade = { $0.transport!.write("x") }
        let pair = ConnectedPair(server: server, client: client)
        pair.flush()
        #expect(server.lostReasons.count == 1 && server.lostReasons[0] is Bad)
        #expect(client.lostReasons.count == 1 && client.lostReasons[0] is ConnectionDone)
        #expect(pair.errors.count == 1 && pair.errors[0].side == "server")
    }

    @Test("addresses: each side's peer is the other's host")
    func addresses() {
        let pair = ConnectedPair(server: Protocol(), client: Protocol())
        #expect(pair.serverTransport.getPeer().description == pair.clientTransport.getHost().description)
        #expect(pair.clientTransport.getPeer().description == "IPv4Address(type='TCP', host='127.0.0.1', port=8000)")
    }

    @Test("a pair, its ends and its protocols are freed once the test lets go of the pair (no end/protocol cycle)")
    func freedAfterUse() {
        weak var server: Protocol?
        weak var client: Protocol?
        weak var serverEnd: ConnectedPair.End?
        weak var clientEnd: ConnectedPair.End?
        do {
            let recorder = Recorder()
            recorder.onMade = { $0.transport!.write("ping") }
            let pair = ConnectedPair(server: Echo(), client: recorder)
            pair.flush()
            #expect(recorder.received == Array("ping".utf8))
            #expect(pair.server.transport === pair.serverTransport)
            #expect(pair.serverTransport.proto === pair.server)
            server = pair.server
            client = pair.client
            serverEnd = pair.serverTransport
            clientEnd = pair.clientTransport
        }
        #expect(server == nil)
        #expect(client == nil)
        #expect(serverEnd == nil)
        #expect(clientEnd == nil)
    }
}

// SwistedTesting's StringTransport and StringTransportWithDisconnection, by themselves.
import Swisted
import SwistedTesting
import Testing

/// Records its life, for the kit's tests.
final class Recorder: Protocol {
    var received: [UInt8] = []
    var lostReasons: [any Error] = []
    var onData: ((Recorder, [UInt8]) throws -> Void)?
    var onMade: ((Recorder) throws -> Void)?
    override func connectionMade() throws { try onMade?(self) }
    override func dataReceived(_ data: Span<UInt8>) throws {
        received += data.array
        try onData?(self, data.array)
    }
    override func connectionLost(_ reason: any Error) { lostReasons.append(reason) }
}

@Suite("StringTransport")
struct StringTransportTests {
    @Test("records every write in order; value() and clear()")
    func recordsWrites() {
        let transport = StringTransport()
        transport.write("hello ")
        transport.write([119, 111])
        transport.write(Array("rld".utf8)[...])
        #expect(transport.string == "hello world")
        #expect(transport.writeCount == 3)
        transport.clear()
        #expect(transport.value().isEmpty)
        transport.writeSequence([[1], [2, 3]])
        #expect(transport.value() == [1, 2, 3])
    }

    @Test("loseConnection sets disconnecting; later writes are ignored, as on a real transport")
    func loseConnection() {
        let transport = StringTransport()
        transport.write("before")
        transport.loseConnection()
        transport.write("after")
        #expect(transport.string == "before")
        #expect(transport.disconnecting)
        #expect(transport.loseConnectionCalled)
        #expect(!transport.abortConnectionCalled)
    }

    @Test("abortConnection is recorded apart from loseConnection")
    func abortConnection() {
        let transport = StringTransport()
        transport.abortConnection()
        #expect(transport.disconnecting)
        #expect(transport.abortConnectionCalled)
        #expect(!transport.loseConnectionCalled)
    }

    @Test("getPeer, getHost and bufferSize are what the test says")
    func configurable() {
        let transport = StringTransport(peer: IPv6Address(type: .tcp, host: "::1", port: 7))
        #expect(transport.getPeer().description == "IPv6Address(type='TCP', host='::1', port=7, flowInfo=0, scopeID=0)")
        #expect(transport.getHost().description == "IPv4Address(type='TCP', host='10.0.0.2', port=54321)")
        transport.host = IPv4Address(type: .tcp, host: "192.0.2.1", port: 80)
        #expect((transport.getHost() as! IPv4Address).port == 80)
        #expect(transport.bufferSize == 0)
        transport.reportedBufferSize = 65536
        #expect(transport.bufferSize == 65536)
    }

    @Test("producer registration is recorded; a second one or the wrong kind is refused")
    func producers() throws {
        final class Push: PushProducer {
            func pauseProducing() {}
            func resumeProducing() {}
            func stopProducing() {}
        }
        final class Pull: PullProducer {
            func resumeProducing() {}
            func stopProducing() {}
        }
        let transport = StringTransport()
        let producer = Push()
        try transport.registerProducer(producer, streaming: true)
        #expect(transport.producer === producer)
        #expect(transport.streaming == true)
        #expect(throws: ProducerError.self) { try transport.registerProducer(Pull(), streaming: false) }
        transport.unregisterProducer()
        #expect(transport.producer == nil)
        #expect(transport.streaming == nil)
        #expect(throws: ProducerError.self) { try transport.registerProducer(Pull(), streaming: true) }
        try transport.registerProducer(Pull(), streaming: false)
        #expect(transport.producerEvents == ["register(streaming: true)", "unregister", "register(streaming: false)"])
    }

    @Test("pause, resume and stop on the transport itself are recorded; loseWriteConnection stops writes")
    func transportAsProducer() {
        let transport = StringTransport()
        transport.pauseProducing()
        #expect(transport.producerState == .paused)
        transport.resumeProducing()
        #expect(transport.producerState == .producing)
        transport.stopProducing()
        #expect(transport.producerState == .stopped)
        transport.write("a")
        transport.loseWriteConnection()
        transport.write("b")
        #expect(transport.string == "a")
        #expect(transport.loseWriteConnectionCalled && !transport.disconnecting)
    }

    @Test("a protocol on it talks as it would on TCP")
    func drivesAProtocol() throws {
        final class Echo: Protocol {
            override func dataReceived(_ data: Span<UInt8>) throws { transport!.write(data) }
        }
        let transport = StringTransport()
        let proto = Echo()
        try proto.makeConnection(transport)
        try proto.receive("ping", chunkSize: 1)
        #expect(transport.string == "ping")
        #expect(transport.writeCount == 4)
        #expect(proto.connected)
    }

    @Test("receive(splitAt:) cuts where asked and ignores nonsense offsets")
    func splitAt() throws {
        let proto = Recorder()
        var pieces: [[UInt8]] = []
        proto.onData = { _, bytes in pieces.append(bytes) }
        try proto.makeConnection(StringTransport())
        try proto.receive([1, 2, 3, 4, 5], splitAt: [3, 1, 1, 0, 9, -2])
        #expect(pieces == [[1], [2, 3], [4, 5]])
    }
}

@Suite("StringTransportWithDisconnection")
struct StringTransportWithDisconnectionTests {
    @Test("loseConnection calls connectionLost once, with ConnectionDone")
    func loseConnection() throws {
        let transport = StringTransportWithDisconnection()
        let proto = Recorder()
        try transport.connect(proto)
        proto.transport!.write("bye")
        transport.loseConnection()
        transport.loseConnection()
        transport.abortConnection()
        #expect(proto.lostReasons.count == 1)
        #expect(proto.lostReasons.first is ConnectionDone)
        #expect(!proto.connected)
        #expect(transport.string == "bye")
    }

    @Test("abortConnection calls connectionLost once, with ConnectionAborted")
    func abortConnection() throws {
        let transport = StringTransportWithDisconnection()
        let proto = Recorder()
        try transport.connect(proto)
        transport.abortConnection()
        #expect(proto.lostReasons.count == 1)
        #expect(proto.lostReasons.first is ConnectionAborted)
    }

    @Test("a protocol closing itself from dataReceived hears connectionLost")
    func closeFromCallback() throws {
        let transport = StringTransportWithDisconnection()
        let proto = Recorder()
        proto.onData = { proto, _ in proto.transport!.loseConnection() }
        try transport.connect(proto)
        try proto.receive("x")
        #expect(proto.lostReasons.count == 1)
    }
}

// Pausing a receiver's delivery (Twisted's _PauseableMixin on LineReceiver and
// IntNStringReceiver): pauseProducing from a callback holds the rest of the
// read back, resumeProducing delivers it, in order.
import Swisted
import SwistedTesting
import Testing

@Suite("Pausing a receiver's delivery")
struct ReceiverPauseTests {
    @Test("pauseProducing inside lineReceived holds the rest of the read; resumeProducing delivers it in order")
    func lineReceiverPauseHoldsTheRest() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.onLine = { proto, line in if line == bytes("b") { proto.pauseProducing() } }
        try proto.receive("a\r\nb\r\nc\r\nd\r\npart")
        #expect(proto.strings == ["a", "b"])
        #expect(proto.paused)
        #expect(transport.producerState == .paused)
        #expect(proto.bufferedByteCount == 10)  // "c\r\nd\r\npart"
        try proto.receive("ial\r\ne\r\n")  // still paused: kept, not delivered
        #expect(proto.strings == ["a", "b"])
        proto.resumeProducing()
        #expect(proto.strings == ["a", "b", "c", "d", "partial", "e"])
        #expect(!proto.paused)
        #expect(transport.producerState == .producing)
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("pausing after every line and resuming from outside delivers the same lines at every chunking",
          arguments: [1, 2, 3, 7, 1000])
    func lineReceiverPauseEveryLine(chunkSize: Int) throws {
        let stream = bytes("one\r\ntwo\r\n\r\nthree\r\nfour and more\r\nfive")
        let proto = LineRecorder()
        try attach(proto)
        proto.onLine = { proto, _ in proto.pauseProducing() }
        var resumes = 0
        var offset = 0
        while offset < stream.count {
            let end = min(offset + chunkSize, stream.count)
            try proto.receive(stream[offset..<end])
            offset = end
            while proto.paused {
                let before = proto.lines.count
                proto.resumeProducing()
                resumes += 1
                #expect(proto.lines.count <= before + 1)  // one line per resume: it pauses again
            }
        }
        #expect(proto.strings == ["one", "two", "", "three", "four and more"])
        #expect(resumes == 5)
        #expect(proto.bufferedByteCount == 4)  // "five"
    }

    @Test("pause and resume inside the same callback deliver on without holding anything")
    func pauseAndResumeInOneCallback() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.onLine = { proto, _ in
            proto.pauseProducing()
            proto.resumeProducing()
        }
        try proto.receive("a\r\nb\r\nc\r\n")
        #expect(proto.strings == ["a", "b", "c"])
        #expect(!proto.paused)
        #expect(transport.producerState == .producing)
    }

    @Test("a mode switch made while pausing applies to the held bytes on resume")
    func rawModeAcrossAPause() throws {
        let proto = LineRecorder()
        try attach(proto)
        proto.onLine = { proto, line in
            if line == bytes("RAW") {
                proto.setRawMode()
                proto.pauseProducing()
            }
        }
        try proto.receive("x\r\nRAW\r\nbinary\r\nbytes")
        #expect(proto.strings == ["x", "RAW"])
        #expect(proto.raw.isEmpty)
        try proto.receive("!")
        proto.resumeProducing()
        #expect(proto.raw == bytes("binary\r\nbytes!"))
    }

    @Test("bytes fed back in (setLineMode(extra:)) while pausing come after the held rest of the read, as in Twisted")
    func reentryWhilePaused() throws {
        let proto = LineRecorder()
        try attach(proto)
        proto.onLine = { proto, line in
            if line == bytes("a") {
                proto.pauseProducing()
                try proto.setLineMode(extra: bytes("extra\r\n"))
            }
        }
        try proto.receive("a\r\nb\r\n")
        #expect(proto.strings == ["a"])
        proto.resumeProducing()
        #expect(proto.strings == ["a", "b", "extra"])
    }

    @Test("stopProducing stops delivery and the transport")
    func stopProducing() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.onLine = { proto, _ in proto.stopProducing() }
        try proto.receive("a\r\nb\r\n")
        #expect(proto.strings == ["a"])
        #expect(proto.paused)
        #expect(transport.producerState == .stopped)
    }

    @Test("a callback that throws during resumeProducing closes an in-memory transport with that error")
    func throwDuringResumeInMemory() throws {
        struct Refused: Error {}
        let proto = LineRecorder()
        let transport = StringTransportWithDisconnection()
        try transport.connect(proto)
        proto.onLine = { proto, line in
            if line == bytes("a") { proto.pauseProducing() }
            if line == bytes("bad") { throw Refused() }
        }
        try proto.receive("a\r\nbad\r\nc\r\n")
        #expect(!transport.abortConnectionCalled)
        proto.resumeProducing()
        #expect(transport.abortConnectionCalled)
        #expect(transport.closeError is Refused)
        #expect(proto.lostReason is Refused)
        #expect(proto.strings == ["a", "bad"])
    }

    @Test("IntNStringReceiver: a stringReceived that throws during resumeProducing closes with that error")
    func intNThrowDuringResume() throws {
        struct Refused: Error {}
        final class Refusing: IntNStringReceiver {
            var strings: [[UInt8]] = []
            var lostReason: (any Error)?
            override func stringReceived(_ string: Span<UInt8>) throws {
                strings.append(string.array)
                if string.count == 1 { pauseProducing() }
                if string.count == 3 { throw Refused() }
            }
            override func connectionLost(_ reason: any Error) { lostReason = reason }
        }
        let proto = Refusing(prefixLength: 2)
        let transport = StringTransportWithDisconnection()
        try transport.connect(proto)
        try proto.receive(lengthPrefixed(bytes("x"), width: 2) + lengthPrefixed(bytes("bad"), width: 2) + lengthPrefixed(bytes("never"), width: 2))
        #expect(proto.strings == [bytes("x")])
        proto.resumeProducing()
        #expect(proto.strings == [bytes("x"), bytes("bad")])
        #expect(proto.lostReason is Refused)
        #expect(transport.closeError is Refused)
    }

    @Test("after connectionLost, resumeProducing delivers nothing more, in line mode and in raw mode", arguments: [false, true])
    func resumeAfterConnectionLost(raw: Bool) throws {
        let proto = LineRecorder()
        let transport = StringTransportWithDisconnection()
        try transport.connect(proto)
        proto.onLine = { proto, _ in
            if raw { proto.setRawMode() }
            proto.pauseProducing()
        }
        try proto.receive("first\r\nsecond\r\nmore")
        transport.loseConnection()
        #expect(proto.lostReason is ConnectionDone)
        proto.resumeProducing()
        #expect(proto.strings == ["first"])
        #expect(proto.raw.isEmpty)
        #expect(!proto.paused)
    }

    @Test("resumeProducing when not paused delivers nothing and only resumes the transport")
    func resumeWhenNotPaused() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        try proto.receive("a\r\npart")
        proto.resumeProducing()
        #expect(proto.strings == ["a"])
        #expect(proto.bufferedByteCount == 4)
        #expect(transport.producerState == .producing)
    }

    @Test("registered as another transport's producer: that transport's pause, resume and stop act on the receiver")
    func registeredAsAProducer() throws {
        let proto = LineRecorder()
        let own = try attach(proto)
        let other = StringTransport()  // the consumer: say, the other side of a proxy
        try other.registerProducer(proto, streaming: true)
        let producer = try #require(other.producer as? any PushProducer)
        try proto.receive("a\r\n")
        producer.pauseProducing()  // the consumer is full
        try proto.receive("b\r\nc\r\n")
        #expect(proto.strings == ["a"])
        #expect(own.producerState == .paused)
        producer.resumeProducing()  // drained
        #expect(proto.strings == ["a", "b", "c"])
        #expect(own.producerState == .producing)
        producer.stopProducing()  // the consumer closed: so does the receiver's connection
        #expect(own.producerState == .stopped)
        try proto.receive("d\r\n")
        #expect(proto.strings == ["a", "b", "c"])
    }

    @Test("IntNStringReceiver: pauseProducing inside stringReceived holds the rest; resume delivers it in order",
          arguments: [1, 2, 4])
    func intNPause(width: Int) throws {
        final class Pausing: IntNStringReceiver {
            var strings: [[UInt8]] = []
            override func stringReceived(_ string: Span<UInt8>) throws {
                strings.append(string.array)
                if string.count == 1 { pauseProducing() }  // pause after each 1-byte frame
            }
        }
        let proto = Pausing(prefixLength: width)
        let transport = try attach(proto)
        let frames: [[UInt8]] = [bytes("x"), bytes("long"), bytes("y"), bytes("z"), bytes("end")]
        let stream = frames.flatMap { lengthPrefixed($0, width: width) }
        try proto.receive(stream.dropLast(2))  // the last frame split
        #expect(proto.strings == [bytes("x")])
        #expect(transport.producerState == .paused)
        proto.resumeProducing()
        #expect(proto.strings == [bytes("x"), bytes("long"), bytes("y")])
        proto.resumeProducing()
        #expect(proto.strings == [bytes("x"), bytes("long"), bytes("y"), bytes("z")])
        proto.resumeProducing()
        try proto.receive(stream.suffix(2))
        #expect(proto.strings == frames)
        #expect(!proto.paused)
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("a receiver is a push producer")
    func receiversArePushProducers() {
        let producers: [any PushProducer] = [LineRecorder(), IntNRecorder(prefixLength: 2)]
        #expect(producers.count == 2)
    }
}

@Suite("Pausing a receiver on a real connection")
struct ReceiverPauseLoopbackTests {
    /// A line server that pauses on line "1" and resumes from a delayed call
    /// (outside any callback); `onLine` runs for every line.
    final class PausingServer: LineReceiver {
        var lines: [String] = []
        var linesWhenResumed = -1
        var lostReason: (any Error)?
        var onLine: (PausingServer, String) throws -> Void = { _, _ in }
        let reactor: Reactor
        init(reactor: Reactor) {
            self.reactor = reactor
            super.init()
        }
        required init() { fatalError("built with init(reactor:)") }

        override func lineReceived(_ line: Span<UInt8>) throws {
            let text = line.string
            lines.append(text)
            if text == "1" {
                pauseProducing()
                reactor.callLater(0) { [unowned self] in
                    linesWhenResumed = lines.count
                    resumeProducing()
                }
            }
            try onLine(self, text)
        }

        override func connectionLost(_ reason: any Error) { lostReason = reason }
    }

    @Test("100 pipelined lines: none delivered while paused, all in order after resumeProducing")
    func pipelinedLinesWaitForResume() throws {
        let reactor = Reactor()
        let all = (1...100).map(String.init)
        var server: PausingServer?
        let run = try LoopbackRun.run(send: bytes(all.map { $0 + "\r\n" }.joined()), reactor: reactor) {
            let proto = PausingServer(reactor: reactor)
            proto.onLine = { proto, line in if line == "100" { proto.transport!.loseConnection() } }
            server = proto
            return proto
        } collect: { _, _ in }
        let proto = try #require(server)
        #expect(proto.linesWhenResumed == 1)
        #expect(proto.lines == all)
        #expect(proto.lostReason is ConnectionDone)
        #expect(run.logged.isEmpty)
    }

    @Test("a line callback that throws during resumeProducing closes that connection with the error, logged")
    func throwDuringResumeClosesTheConnection() throws {
        struct Refused: Error, CustomStringConvertible { var description: String { "refused" } }
        let reactor = Reactor()
        var server: PausingServer?
        let run = try LoopbackRun.run(send: bytes("1\r\n2\r\n3\r\n"), reactor: reactor) {
            let proto = PausingServer(reactor: reactor)
            proto.onLine = { _, line in if line == "2" { throw Refused() } }
            server = proto
            return proto
        } collect: { _, _ in }
        let proto = try #require(server)
        #expect(proto.lines == ["1", "2"])
        #expect(proto.lostReason is Refused)
        #expect(run.logged.contains { $0.contains("PausingServer.resumeProducing") && $0.contains("refused") })
    }
}

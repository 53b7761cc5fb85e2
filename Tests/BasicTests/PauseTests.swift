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

    @Test("a callback that throws during resumeProducing aborts an in-memory transport")
    func throwDuringResumeInMemory() throws {
        struct Refused: Error {}
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.onLine = { proto, line in
            if line == bytes("a") { proto.pauseProducing() }
            if line == bytes("bad") { throw Refused() }
        }
        try proto.receive("a\r\nbad\r\nc\r\n")
        #expect(!transport.abortConnectionCalled)
        proto.resumeProducing()
        #expect(transport.abortConnectionCalled)
        #expect(proto.strings == ["a", "bad"])
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

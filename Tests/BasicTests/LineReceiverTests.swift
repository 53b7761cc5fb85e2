// LineReceiver: lines, limits, mode switches, re-entry, sending.
import Swisted
import SwistedTesting
import Testing

@Suite("LineReceiver")
struct LineReceiverTests {
    @Test("lines are split on \\r\\n and delivered without the delimiter")
    func splitsLines() throws {
        let proto = LineRecorder()
        try attach(proto)
        try proto.receive("hello\r\nworld\r\n\r\npartial")
        #expect(proto.strings == ["hello", "world", ""])
        #expect(proto.bufferedByteCount == 7)
        try proto.receive("\r\n")
        #expect(proto.strings == ["hello", "world", "", "partial"])
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("a delimiter split between reads is found, whatever the chunk size", arguments: [1, 2, 3, 5, 7])
    func delimiterAcrossReads(chunkSize: Int) throws {
        let proto = LineRecorder()
        try attach(proto)
        try proto.receive(bytes("one\r\ntwo\r\r\nthree\r\n\n\r\n"), chunkSize: chunkSize)
        #expect(proto.strings == ["one", "two\r", "three", "\n"])
    }

    @Test("a delimiter changed between reads splits the kept bytes too, as Twisted does", arguments: [1, 1000])
    func delimiterChangedBetweenReads(chunkSize: Int) throws {
        let proto = LineRecorder()
        try attach(proto)
        try proto.receive(bytes("one\r\ntwo<END>three<E"), chunkSize: chunkSize)
        proto.delimiter = bytes("<END>")  // changed from outside a callback (a timer, say)
        try proto.receive(bytes("ND>four\r\n<END>"), chunkSize: chunkSize)
        #expect(proto.strings == ["one", "two", "three", "four\r\n"])
    }

    @Test("a custom multi-byte delimiter works across reads")
    func customDelimiter() throws {
        let proto = LineRecorder()
        proto.delimiter = bytes("<END>")
        try attach(proto)
        try proto.receive(bytes("a<EN<END>b<<END><END>"), chunkSize: 1)
        #expect(proto.strings == ["a<EN", "b<", ""])
        let whole = LineRecorder()
        whole.delimiter = bytes("<END>")
        try attach(whole)
        try whole.receive("a<EN<END>b<<END><END>")
        #expect(whole.strings == ["a<EN", "b<", ""])
    }

    @Test("a line of exactly maxLength bytes is accepted at every chunking", arguments: [1, 3, 10, 10_000])
    func maxLengthAccepted(chunkSize: Int) throws {
        let proto = LineRecorder()
        proto.maxLength = 10
        try attach(proto)
        try proto.receive(bytes("0123456789\r\n"), chunkSize: chunkSize)
        #expect(proto.strings == ["0123456789"])
        #expect(proto.exceeded.isEmpty)
    }

    @Test("a line one byte over maxLength throws LineTooLongError at every chunking", arguments: [1, 3, 11, 10_000])
    func maxLengthPlusOneRejected(chunkSize: Int) throws {
        let proto = LineRecorder()
        proto.maxLength = 10
        try attach(proto)
        let error = #expect(throws: LineTooLongError.self) {
            try proto.receive(bytes("0123456789X\r\n"), chunkSize: chunkSize)
        }
        #expect(error?.maxLength == 10)
        #expect((error?.length ?? 0) >= 11)
        #expect(error?.description.hasPrefix("Line too long") == true)
        #expect(proto.lines.isEmpty)
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("without a delimiter, the buffer never holds more than maxLength + delimiter - 1 bytes")
    func unboundedLineStopsAtLimit() throws {
        let proto = LineRecorder()
        proto.maxLength = 100
        try attach(proto)
        try proto.receive([UInt8](repeating: 65, count: 100))
        try proto.receive([13])  // could still be a 100-byte line
        #expect(proto.bufferedByteCount == 101)
        #expect(throws: LineTooLongError.self) { try proto.receive([65]) }
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("lineLengthExceeded may skip the line and carry on")
    func tolerantOverride() throws {
        let proto = LineRecorder()
        proto.maxLength = 4
        proto.tolerant = true
        try attach(proto)
        try proto.receive("ok\r\ntoo long\r\n")
        try proto.receive("ok2\r\n")
        #expect(proto.strings == ["ok", "ok2"])
        #expect(proto.exceeded == [bytes("too long\r\n")])
    }

    @Test("a throw from dataReceived closes the connection with LineTooLongError as reason, over loopback")
    func reasonOverTCP() throws {
        let server = try LoopbackRun.lineServer(maxLength: 8, send: bytes("short\r\nmuch too long for this\r\n"))
        #expect(server.lines == [bytes("short")])
        #expect(server.lostReason is LineTooLongError)
        #expect(server.logged.contains { $0.contains("Line too long") })
    }

    @Test("no line is delivered once the transport is disconnecting")
    func stopsWhenDisconnecting() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.onLine = { proto, line in if line == bytes("quit") { proto.transport!.loseConnection() } }
        try proto.receive("a\r\nquit\r\nb\r\nc\r\n")
        #expect(proto.strings == ["a", "quit"])
        #expect(transport.loseConnectionCalled)
    }

    @Test("setRawMode inside lineReceived sends the rest of the read to rawDataReceived")
    func rawModeMidBuffer() throws {
        for chunkSize in [1, 2, 100] {
            let proto = LineRecorder()
            try attach(proto)
            proto.onLine = { proto, line in if line == bytes("RAW") { proto.setRawMode() } }
            try proto.receive(bytes("x\r\nRAW\r\nraw bytes\r\nstill raw"), chunkSize: chunkSize)
            #expect(proto.strings == ["x", "RAW"])
            #expect(proto.raw == bytes("raw bytes\r\nstill raw"))
            #expect(!proto.lineMode)
        }
    }

    @Test("setLineMode(extra:) inside rawDataReceived parses the extra bytes as lines, in order")
    func backToLineMode() throws {
        for chunkSize in [1, 4, 100] {
            let proto = Switcher()
            try attach(proto)
            try proto.receive(bytes("a\r\nRAW 5\r\n12\r\n4b\r\nRAW 0\r\nc\r\nRAW 3\r\nxyzd\r\n"), chunkSize: chunkSize)
            #expect(proto.events == ["line a", "line RAW 5", "raw 12\r\n4", "line b", "line RAW 0", "line c", "line RAW 3", "raw xyz", "line d"])
        }
    }

    @Test("setRawMode outside a read delivers the kept partial line as raw data first")
    func rawModeWithPartialLine() throws {
        let proto = LineRecorder()
        try attach(proto)
        try proto.receive("half")
        proto.setRawMode()
        try proto.receive(" and more")
        #expect(proto.raw == bytes("half and more"))
        #expect(proto.lines.isEmpty)
    }

    @Test("clearLineBuffer inside lineReceived returns the rest of the read and drops it")
    func clearLineBufferInside() throws {
        let proto = LineRecorder()
        try attach(proto)
        var cleared: [UInt8] = []
        proto.onLine = { proto, line in if line == bytes("stop") { cleared = proto.clearLineBuffer() } }
        try proto.receive("a\r\nstop\r\nb\r\nc")
        #expect(proto.strings == ["a", "stop"])
        #expect(cleared == bytes("b\r\nc"))
        #expect(proto.bufferedByteCount == 0)
        try proto.receive("d\r\n")
        #expect(proto.strings == ["a", "stop", "d"])
    }

    @Test("clearLineBuffer outside a read returns the partial line")
    func clearLineBufferOutside() throws {
        let proto = LineRecorder()
        try attach(proto)
        try proto.receive("x\r\npart")
        #expect(proto.clearLineBuffer() == bytes("part"))
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("dataReceived called from inside lineReceived is queued behind the current read")
    func reentry() throws {
        let proto = LineRecorder()
        try attach(proto)
        proto.onLine = { proto, line in if line == bytes("inject") { try proto.receive("injected\r\n") } }
        try proto.receive("inject\r\nafter\r\n")
        #expect(proto.strings == ["inject", "after", "injected"])
    }

    @Test("sendLine writes the line and the delimiter in one write")
    func sendLine() throws {
        let proto = LineRecorder()
        let transport = try attach(proto)
        proto.sendLine("hello")
        proto.sendLine(bytes("bytes"))
        #expect(transport.string == "hello\r\nbytes\r\n")
        #expect(transport.writeCount == 2)
    }

    @Test("raw data without a rawDataReceived override throws NotImplementedError")
    func rawNotImplemented() throws {
        final class Bare: LineReceiver {}
        let proto = Bare()
        try attach(proto)
        proto.setRawMode()
        let error = #expect(throws: NotImplementedError.self) { try proto.receive("x") }
        #expect(error?.description == "Bare.rawDataReceived is not implemented: override it.")
    }
}

/// Switches to raw mode for N bytes on "RAW N", then back with the rest as extra.
final class Switcher: LineReceiver {
    var events: [String] = []
    private var rawRemaining = 0
    private var rawBytes: [UInt8] = []

    override func lineReceived(_ line: Span<UInt8>) throws {
        let text = line.string
        events.append("line \(text)")
        if text.hasPrefix("RAW "), let count = Int(text.dropFirst(4)), count > 0 {
            rawRemaining = count
            setRawMode()
        }
    }

    override func rawDataReceived(_ data: Span<UInt8>) throws {
        let all = data.array
        let take = min(rawRemaining, all.count)
        rawBytes += all[0..<take]
        rawRemaining -= take
        if rawRemaining == 0 {
            events.append("raw " + String(decoding: rawBytes, as: UTF8.self))
            rawBytes = []
            try setLineMode(extra: Array(all[take...]))
        }
    }
}

@Suite("LineReceiver through a ConnectedPair")
struct LineReceiverPairTests {
    /// Answers an over-long line, then closes cleanly (Twisted's way).
    final class Polite: LineReceiver {
        var lines: [String] = []
        override func lineReceived(_ line: Span<UInt8>) throws { lines.append(line.string) }
        override func lineLengthExceeded(_ line: Span<UInt8>) throws {
            sendLine("ERR line too long")
            transport!.loseConnection()
        }
    }

    @Test("an override can answer a too-long line and close cleanly; the answer arrives")
    func answerThenClose() throws {
        let server = Polite()
        server.maxLength = 8
        let client = LineRecorder()
        let pair = ConnectedPair(server: server, client: client)
        pair.chunkSize = 3
        client.sendLine("hello")
        client.sendLine("far too long for eight")
        pair.flush()
        #expect(server.lines == ["hello"])
        #expect(client.strings == ["ERR line too long"])
        #expect(client.lostReason is ConnectionDone)
        #expect(pair.isClosed)
    }

    @Test("with the default handler the error is the server's reason; the client sees a clean close")
    func defaultHandler() throws {
        let server = LineRecorder()
        server.maxLength = 4
        let client = LineRecorder()
        let pair = ConnectedPair(server: server, client: client)
        client.sendLine("toolong")
        pair.flush()
        #expect(server.lostReason is LineTooLongError)
        #expect(client.lostReason is ConnectionDone)
        #expect(pair.errors.count == 1)
    }
}

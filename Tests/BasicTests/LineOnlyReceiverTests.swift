// LineOnlyReceiver: the line-only variant.
import Swisted
import SwistedTesting
import Testing

@Suite("LineOnlyReceiver")
struct LineOnlyReceiverTests {
    @Test("lines are split at every chunking", arguments: [1, 2, 3, 1000])
    func splits(chunkSize: Int) throws {
        let proto = LineOnlyRecorder()
        try attach(proto)
        try proto.receive(bytes("a\r\n\r\nbc\r\r\n"), chunkSize: chunkSize)
        #expect(proto.lines == [bytes("a"), [], bytes("bc\r")])
    }

    @Test("a delimiter changed between reads splits the kept bytes too, as Twisted does")
    func delimiterChangedBetweenReads() throws {
        let proto = LineOnlyRecorder()
        try attach(proto)
        try proto.receive(bytes("one\r\ntwo|three|fo"))  // "two|three|fo" is kept under \r\n
        proto.delimiter = bytes("|")                         // changed from outside a callback (a timer, say)
        try proto.receive(bytes("ur|"))
        #expect(proto.lines == [bytes("one"), bytes("two"), bytes("three"), bytes("four")])
        proto.delimiter = bytes("\r\n")                      // and back, with nothing kept: no effect
        try proto.receive(bytes("five\r\n"))
        #expect(proto.lines.last == bytes("five"))
    }

    @Test("maxLength bytes are accepted, one more throws LineTooLongError", arguments: [1, 1000])
    func limits(chunkSize: Int) throws {
        let proto = LineOnlyRecorder()
        proto.maxLength = 5
        try attach(proto)
        try proto.receive(bytes("12345\r\n"), chunkSize: chunkSize)
        #expect(proto.lines == [bytes("12345")])
        let error = #expect(throws: LineTooLongError.self) { try proto.receive(bytes("123456\r\n"), chunkSize: chunkSize) }
        #expect(error?.maxLength == 5)
    }

    @Test("sendLine appends the delimiter; no line is delivered once disconnecting")
    func sendAndStop() throws {
        final class Quit: LineOnlyReceiver {
            var lines: [String] = []
            override func lineReceived(_ line: Span<UInt8>) throws {
                lines.append(line.string)
                sendLine("bye")
                transport!.loseConnection()
            }
        }
        let proto = Quit()
        let transport = try attach(proto)
        try proto.receive("one\r\ntwo\r\n")
        #expect(proto.lines == ["one"])
        #expect(transport.string == "bye\r\n")
    }
}

// Int8/16/32StringReceiver: one implementation, three prefix widths.
import Swisted
import SwistedTesting
import Testing

@Suite("IntNStringReceiver")
struct IntNStringReceiverTests {
    @Test("the subclasses differ only in prefix width")
    func widths() {
        #expect(Int8StringReceiver().prefixLength == 1)
        #expect(Int16StringReceiver().prefixLength == 2)
        #expect(Int32StringReceiver().prefixLength == 4)
        #expect(Int8StringReceiver().prefixLimit == 255)
        #expect(Int16StringReceiver().prefixLimit == 65535)
        #expect(Int32StringReceiver().maxLength == 99999)
    }

    @Test("frames are parsed at every chunking", arguments: [1, 2, 4])
    func parses(width: Int) throws {
        for chunkSize in [1, 3, 1000] {
            let proto = IntNRecorder(prefixLength: width)
            try attach(proto)
            let frames = [bytes("hello"), [], bytes("a"), [UInt8](repeating: 7, count: 200)]
            try proto.receive(frames.flatMap { lengthPrefixed($0, width: width) }, chunkSize: chunkSize)
            #expect(proto.strings == frames)
            #expect(proto.bufferedByteCount == 0)
        }
    }

    @Test("a prefix over maxLength throws LengthLimitExceededError before keeping any payload")
    func lengthLimit() throws {
        for chunkSize in [1, 1000] {
            let proto = IntNRecorder(prefixLength: 4)
            proto.maxLength = 10
            try attach(proto)
            let error = #expect(throws: LengthLimitExceededError.self) {
                try proto.receive(lengthPrefixed(bytes("ok"), width: 4) + [0, 0, 0, 11] + bytes("0123"), chunkSize: chunkSize)
            }
            #expect(error?.length == 11)
            #expect(error?.maxLength == 10)
            #expect(error?.description == "Frame too long: the peer announced 11 bytes, the maximum is 10.")
            #expect(proto.strings == [bytes("ok")])
            #expect(proto.bufferedByteCount <= 4)
        }
    }

    @Test("a frame of exactly maxLength bytes is accepted")
    func maxLengthAccepted() throws {
        let proto = IntNRecorder(prefixLength: 2)
        proto.maxLength = 10
        try attach(proto)
        try proto.receive(lengthPrefixed(bytes("0123456789"), width: 2), chunkSize: 1)
        #expect(proto.strings == [bytes("0123456789")])
    }

    @Test("sendString writes a big-endian prefix and the payload, in one write")
    func sendString() throws {
        let proto = Int32Recorder()
        let transport = try attach(proto)
        try proto.sendString([UInt8](repeating: 1, count: 258))
        #expect(Array(transport.value().prefix(4)) == [0, 0, 1, 2])
        #expect(transport.value().count == 262)
        #expect(transport.writeCount == 1)
    }

    @Test("sendString throws StringTooLongError past the prefix's range or maxLength, and writes nothing")
    func stringTooLong() throws {
        let small = Int8StringReceiver()
        let transport = try attach(small)
        try small.sendString([UInt8](repeating: 0, count: 255))
        transport.clear()
        let error = #expect(throws: StringTooLongError.self) { try small.sendString([UInt8](repeating: 0, count: 256)) }
        #expect(error?.limit == 255)
        let big = Int32StringReceiver()
        big.maxLength = 100
        let bigTransport = try attach(big)
        #expect(throws: StringTooLongError.self) { try big.sendString(String(repeating: "x", count: 101)) }
        #expect(transport.value().isEmpty)
        #expect(bigTransport.value().isEmpty)
    }

    @Test("no string is delivered once the transport is disconnecting")
    func stopsWhenDisconnecting() throws {
        final class Quitter: Int16StringReceiver {
            var strings: [[UInt8]] = []
            override func stringReceived(_ string: Span<UInt8>) throws {
                strings.append(string.array)
                transport!.loseConnection()
            }
        }
        let proto = Quitter()
        try attach(proto)
        try proto.receive(lengthPrefixed(bytes("a"), width: 2) + lengthPrefixed(bytes("b"), width: 2))
        #expect(proto.strings == [bytes("a")])
    }
}

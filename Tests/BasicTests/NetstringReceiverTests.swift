// NetstringReceiver: strings, and every way a peer can break the format.
import Swisted
import SwistedTesting
import Testing

@Suite("NetstringReceiver")
struct NetstringReceiverTests {
    @Test("netstrings are parsed at every chunking, the empty one included", arguments: [1, 2, 5, 1000])
    func parses(chunkSize: Int) throws {
        let proto = NetstringRecorder()
        try attach(proto)
        try proto.receive(bytes("5:hello,0:,12:hello world!,"), chunkSize: chunkSize)
        #expect(proto.strings == [bytes("hello"), [], bytes("hello world!")])
        #expect(!proto.brokenPeer)
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("a string of exactly maxLength bytes is accepted")
    func maxLengthAccepted() throws {
        let proto = NetstringRecorder()
        proto.maxLength = 10
        try attach(proto)
        try proto.receive(netstring(bytes("0123456789")), chunkSize: 3)
        #expect(proto.strings == [bytes("0123456789")])
    }

    @Test("each broken input closes with a NetstringParseError naming what was wrong", arguments: [
        ("01:x,", "the length has a leading zero"),
        ("00:,", "the length has a leading zero"),
        ("1a:x,", "byte 97 in the length, where ':' should follow the digits"),
        ("x:", "byte 120 where a length should start"),
        (":x,", "no length before ':'"),
        ("3:abcX", "missing ',' after 3 bytes"),
        ("3:abc:", "missing ',' after 3 bytes"),
        ("100000:", "the length is over the maximum of 99999"),
        ("99999999999999999999999999", "the length is over the maximum of 99999"),
        ("5 :hello,", "byte 32 in the length, where ':' should follow the digits"),
    ])
    func brokenPeer(input: String, reason: String) throws {
        for chunkSize in [1, 1000] {
            let proto = NetstringRecorder()
            try attach(proto)
            let error = #expect(throws: NetstringParseError.self) { try proto.receive(bytes(input), chunkSize: chunkSize) }
            #expect(error?.reason == reason, "input \(input), chunk size \(chunkSize)")
            #expect(proto.brokenPeer)
            #expect(proto.bufferedByteCount == 0)
            // Everything after is ignored, never parsed.
            try proto.receive("5:hello,")
            #expect(proto.strings.isEmpty)
        }
    }

    @Test("a length over the maximum is refused as soon as the digits say so, before any payload")
    func earlyLengthCheck() throws {
        let proto = NetstringRecorder()
        proto.maxLength = 50
        try attach(proto)
        try proto.receive("5")
        #expect(throws: NetstringParseError.self) { try proto.receive("1") }
    }

    @Test("sendString writes length:bytes, in one write")
    func sendString() throws {
        let proto = NetstringRecorder()
        let transport = try attach(proto)
        proto.sendString("hello")
        proto.sendString([UInt8]())
        #expect(transport.string == "5:hello,0:,")
        #expect(transport.writeCount == 2)
    }

    @Test("no string is delivered once the transport is disconnecting")
    func stopsWhenDisconnecting() throws {
        let proto = NetstringRecorder()
        try attach(proto)
        proto.onString = { proto, _ in proto.transport!.loseConnection() }
        try proto.receive("1:a,1:b,")
        #expect(proto.strings == [bytes("a")])
    }
}

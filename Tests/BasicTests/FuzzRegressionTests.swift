// Bugs the fuzz targets (Fuzz/, `make fuzz`) found in the framing receivers,
// each reproduced here so it stays fixed.
@testable import Swisted
import SwistedTesting
import Testing

@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Fuzz/lines: with a partial line kept and raw mode set between reads,
    /// the kept bytes went to rawDataReceived alone; a switch back to line
    /// mode there with `setLineMode(extra:)` then parsed the rest of the read
    /// before the extra bytes, reordering the stream.
    @Test("setLineMode(extra:) from raw data that began as a kept partial line keeps the stream in order")
    func rawKeptThenLineModeKeepsOrder() throws {
        final class TakeOne: LineReceiver {
            var events: [String] = []
            override func lineReceived(_ line: Span<UInt8>) throws { events.append("line \(line.string)") }
            override func rawDataReceived(_ data: Span<UInt8>) throws {
                let all = data.array
                events.append("raw \(String(decoding: all.prefix(1), as: UTF8.self))")
                try setLineMode(extra: Array(all.dropFirst()))  // one raw byte, the rest back to line mode
            }
        }
        let proto = TakeOne()
        try attach(proto)
        try proto.receive("Xab")       // kept: no delimiter yet
        proto.setRawMode()
        try proto.receive("c\r\nd\r\n")
        #expect(proto.events == ["raw X", "line abc", "line d"])
    }

    /// A review against Twisted's algorithm: bytes fed in from a line
    /// callback (`setLineMode(extra:)`) and then raw mode: Twisted's one
    /// buffer hands them to `rawDataReceived` with the rest of the read, so a
    /// raw callback that goes back to line mode puts its extra bytes before
    /// them. Swisted delivered only the rest of the read, and the fed-in
    /// bytes came first.
    @Test("bytes fed in before a switch to raw mode go to rawDataReceived with the rest of the read, as in Twisted")
    func fedInBytesGoRawWithTheRest() throws {
        final class Switcher: LineReceiver {
            var events: [String] = []
            override func lineReceived(_ line: Span<UInt8>) throws {
                events.append("line \(line.string)")
                if line.string == "A" {
                    try setLineMode(extra: Array("X\r\n".utf8))
                    setRawMode()
                }
            }
            override func rawDataReceived(_ data: Span<UInt8>) throws {
                let bytes = data.array
                events.append("raw \(String(decoding: bytes, as: UTF8.self).debugDescription)")
                try setLineMode(extra: Array(bytes.dropFirst(2)))
            }
        }
        let proto = Switcher()
        try attach(proto)
        try proto.receive("A\r\nrrL1\r\n")
        #expect(proto.events == ["line A", "raw \"rrL1\\r\\nX\\r\\n\"", "line L1", "line X"])
    }

    @Test("LineReceiver with maxLength = Int.max (no limit) keeps a line without a delimiter")
    func lineReceiverNoLimit() throws {
        let proto = LineRecorder()
        proto.maxLength = .max
        try attach(proto)
        try proto.receive(Array(repeating: UInt8(ascii: "x"), count: 100), chunkSize: 7)
        #expect(proto.lines.isEmpty)
        #expect(proto.bufferedByteCount == 100)
        try proto.receive("\r\n")
        #expect(proto.lines == [Array(repeating: UInt8(ascii: "x"), count: 100)])
        #expect(proto.exceeded.isEmpty)
    }

    @Test("LineOnlyReceiver with maxLength = Int.max (no limit) keeps a line without a delimiter")
    func lineOnlyReceiverNoLimit() throws {
        let proto = LineOnlyRecorder()
        proto.maxLength = .max
        try attach(proto)
        try proto.receive(Array(repeating: UInt8(ascii: "y"), count: 50), chunkSize: 3)
        try proto.receive("\r\n")
        #expect(proto.lines == [Array(repeating: UInt8(ascii: "y"), count: 50)])
        #expect(proto.exceeded == 0)
    }

    @Test("NetstringReceiver with maxLength = Int.max: a length past Int.max is a broken peer, not an overflow")
    func netstringLengthOverflow() throws {
        let proto = NetstringRecorder()
        proto.maxLength = .max
        try attach(proto)
        try proto.receive("5:hello,")
        let error = #expect(throws: NetstringParseError.self) {
            try proto.receive(String(repeating: "9", count: 25) + ":")
        }
        #expect(error?.reason == "the length is over the maximum of \(Int.max)")
        #expect(proto.brokenPeer)
        #expect(proto.strings == [bytes("hello")])
    }

    @Test("NetstringReceiver: a length over a small maxLength is still refused at the digit that passes it")
    func netstringLimitAtDigit() throws {
        let proto = NetstringRecorder()
        proto.maxLength = 5
        try attach(proto)
        try proto.receive("5:hello,")
        #expect(throws: NetstringParseError.self) { try proto.receive("6") }
        let zero = NetstringRecorder()
        zero.maxLength = 0
        try attach(zero)
        try zero.receive("0:,")
        #expect(throws: NetstringParseError.self) { try zero.receive("1") }
        #expect(zero.strings == [[]])
    }

    /// Fuzz/lines, netstring, intn: bytes a callback fed back (re-entry,
    /// e.g. `setLineMode(extra:)`) before calling loseConnection were still
    /// parsed after the current read, delivering a line or string while the
    /// transport was disconnecting.
    @Test("LineReceiver: no line from re-entered bytes once the transport is disconnecting")
    func lineReceiverReentryThenLose() throws {
        final class GiveBackAndClose: LineReceiver {
            var lines: [String] = []
            override func lineReceived(_ line: Span<UInt8>) throws {
                lines.append(line.string)
                if line.string == "raw" { setRawMode() }
            }
            override func rawDataReceived(_ data: Span<UInt8>) throws {
                try setLineMode(extra: data.array)  // all back to line mode...
                transport?.loseConnection()          // ...then close
            }
        }
        let proto = GiveBackAndClose()
        try attach(proto)
        try proto.receive("raw\r\nlate\r\nlater\r\n")
        #expect(proto.lines == ["raw"])

        let injector = LineRecorder()
        try attach(injector)
        injector.onLine = { proto, _ in
            try proto.receive("injected\r\n")
            proto.transport?.loseConnection()
        }
        try injector.receive("first\r\n")
        #expect(injector.strings == ["first"])
    }

    @Test("NetstringReceiver: no string from re-entered bytes once the transport is disconnecting")
    func netstringReentryThenLose() throws {
        let proto = NetstringRecorder()
        try attach(proto)
        proto.onString = { proto, _ in
            try proto.receive(netstring(bytes("injected")))
            proto.transport?.loseConnection()
        }
        try proto.receive(netstring(bytes("first")) + netstring(bytes("second")))
        #expect(proto.strings == [bytes("first")])
    }

    @Test("IntNStringReceiver: no string from re-entered bytes once the transport is disconnecting", arguments: [1, 2, 3, 4])
    func intNReentryThenLose(width: Int) throws {
        final class Injector: IntNStringReceiver {
            var strings: [[UInt8]] = []
            override func stringReceived(_ string: Span<UInt8>) throws {
                strings.append(string.array)
                try receive(lengthPrefixed(bytes("injected"), width: prefixLength))
                transport?.loseConnection()
            }
        }
        let proto = Injector(prefixLength: width)
        try attach(proto)
        try proto.receive(lengthPrefixed(bytes("first"), width: width) + lengthPrefixed(bytes("second"), width: width))
        #expect(proto.strings == [bytes("first")])
    }

    /// Fuzz/address: C reads a String only up to its first NUL, so
    /// "127.0.0.1\0junk" passed as 127.0.0.1 (listenTCP's interface,
    /// connectTCP's host, UDP destinations).
    @Test("an IP literal with a NUL byte in it is not an IP literal")
    func literalWithNul() throws {
        #expect(SocketAddress(ipLiteral: "127.0.0.1\0junk", port: 80) == nil)
        #expect(SocketAddress(ipLiteral: "::1\0junk", port: 80) == nil)
        #expect(SocketAddress(listenInterface: "127.0.0.1\0", port: 0) == nil)
        #expect(SocketAddress(ipLiteral: "127.0.0.1", port: 80)?.ipString == "127.0.0.1")
    }

    /// Fuzz/address: uv_ip6_addr cuts the part before a `%zone` to 39 bytes,
    /// so 39 valid bytes followed by junk passed as an address.
    @Test("an IPv6 literal with junk before its %zone is not an IP literal")
    func zonedLiteralWithJunk() throws {
        let full = "0000:0000:0000:0000:0000:0000:0000:0001"  // 39 bytes
        #expect(SocketAddress(ipLiteral: full + "XXXX%lo", port: 80) == nil)
        #expect(SocketAddress(ipLiteral: full + "%lo", port: 80)?.isIPv6 == true)
        #expect(SocketAddress(ipLiteral: "fe80::1%lo", port: 80)?.isIPv6 == true)
    }
}

// Recording receivers and stream splitting (with SwistedTesting's SeededRandom) for
// the framing tests. Everything runs in memory on SwistedTesting's
// StringTransport, except the one loopback file.
import Swisted
import SwistedTesting
import Testing

/// Where to cut a stream of `count` bytes: the whole stream, every byte,
/// or a few random points, chosen by `strategy`.
func cuts(_ count: Int, strategy: Int, _ random: inout SeededRandom) -> [Int] {
    switch strategy % 4 {
    case 0: return []                                      // one piece
    case 1: return Array(0..<count)                        // one byte at a time
    case 2: return (0..<Int.random(in: 1...4, using: &random)).map { _ in Int.random(in: 0...max(0, count), using: &random) }
    default: return (0..<Int.random(in: 1...max(1, count / 3 + 1), using: &random)).map { _ in Int.random(in: 0...max(0, count), using: &random) }
    }
}

/// A LineReceiver that keeps every line and runs the test's closure.
final class LineRecorder: LineReceiver {
    var lines: [[UInt8]] = []
    var raw: [UInt8] = []
    var exceeded: [[UInt8]] = []
    var onLine: ((LineRecorder, [UInt8]) throws -> Void)?
    /// Skip too-long lines and carry on instead of closing (for the garbage tests).
    var tolerant = false

    override func lineReceived(_ line: Span<UInt8>) throws {
        let bytes = line.array
        lines.append(bytes)
        try onLine?(self, bytes)
    }

    override func rawDataReceived(_ data: Span<UInt8>) throws {
        raw += data.array
    }

    override func lineLengthExceeded(_ line: Span<UInt8>) throws {
        exceeded.append(line.array)
        if !tolerant { try super.lineLengthExceeded(line) }
    }

    var lostReason: (any Error)?
    override func connectionLost(_ reason: any Error) { lostReason = reason }

    var strings: [String] { lines.map { String(decoding: $0, as: UTF8.self) } }
}

final class LineOnlyRecorder: LineOnlyReceiver {
    var lines: [[UInt8]] = []
    var exceeded = 0
    var tolerant = false
    override func lineReceived(_ line: Span<UInt8>) throws { lines.append(line.array) }
    override func lineLengthExceeded(_ line: Span<UInt8>) throws {
        exceeded += 1
        if !tolerant { try super.lineLengthExceeded(line) }
    }
}

final class NetstringRecorder: NetstringReceiver {
    var strings: [[UInt8]] = []
    var onString: ((NetstringRecorder, [UInt8]) throws -> Void)?
    override func stringReceived(_ string: Span<UInt8>) throws {
        let bytes = string.array
        strings.append(bytes)
        try onString?(self, bytes)
    }

    var lostReason: (any Error)?
    override func connectionLost(_ reason: any Error) { lostReason = reason }
}

/// Records strings for any prefix width (`IntNStringReceiver(prefixLength:)`).
final class IntNRecorder: IntNStringReceiver {
    var strings: [[UInt8]] = []
    var exceeded: [Int] = []
    var tolerant = false
    var onString: ((IntNRecorder) -> Void)?
    override func stringReceived(_ string: Span<UInt8>) throws {
        strings.append(string.array)
        onString?(self)
    }
    override func lengthLimitExceeded(_ length: Int) throws {
        exceeded.append(length)
        if !tolerant { try super.lengthLimitExceeded(length) }
    }
}

final class Int32Recorder: Int32StringReceiver {
    var strings: [[UInt8]] = []
    override func stringReceived(_ string: Span<UInt8>) throws { strings.append(string.array) }
}

/// `proto` on a fresh StringTransport.
@discardableResult
func attach(_ proto: Protocol) throws -> StringTransport {
    let transport = StringTransport()
    try proto.makeConnection(transport)
    return transport
}

func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

/// Big-endian length prefix of `width` bytes, then the payload.
func lengthPrefixed(_ payload: [UInt8], width: Int) -> [UInt8] {
    (0..<width).reversed().map { UInt8(truncatingIfNeeded: payload.count >> (8 * $0)) } + payload
}

func netstring(_ payload: [UInt8]) -> [UInt8] {
    bytes("\(payload.count):") + payload + bytes(",")
}

// 10 MiB of random bytes, in random-sized reads, into every receiver:
// never a crash, and never more kept than the limit allows.
import Swisted
import SwistedTesting
import Testing

private let garbageSize = 10 * 1024 * 1024

/// Feeds `garbageSize` random bytes in reads of 1...65536 bytes (as the
/// reactor's 64 KiB slab would), catching the errors a real transport would
/// close on, and checks the buffer bound after every read. Returns the error count.
private func feedGarbage(_ proto: Protocol, seed: UInt64, bound: Int, buffered: () -> Int) throws -> Int {
    var random = SeededRandom(seed: seed)
    let garbage = random.bytes(garbageSize)
    var errors = 0
    var start = 0
    var worst = 0
    while start < garbage.count {
        let end = min(garbage.count, start + Int.random(in: 1...65536, using: &random))
        do {
            try garbage.withUnsafeBufferPointer { try proto.dataReceived(UnsafeBufferPointer(rebasing: $0[start..<end]).span) }
        } catch {
            errors += 1
        }
        worst = max(worst, buffered())
        start = end
    }
    #expect(worst <= bound, "kept \(worst) bytes, the bound is \(bound) (seed \(seed))")
    return errors
}

@Suite("10 MiB of garbage")
struct GarbageTests {
    @Test("LineReceiver skipping too-long lines never keeps more than maxLength + 1 bytes")
    func lineReceiver() throws {
        let proto = LineRecorder()
        proto.tolerant = true
        proto.maxLength = 16384
        try attach(proto)
        _ = try feedGarbage(proto, seed: 1, bound: 16384 + 1) { proto.bufferedByteCount }
        #expect(!proto.exceeded.isEmpty)
    }

    @Test("LineReceiver with the default handler throws LineTooLongError, and the bound holds")
    func lineReceiverDefault() throws {
        let proto = LineRecorder()
        try attach(proto)
        let errors = try feedGarbage(proto, seed: 2, bound: 16384 + 1) { proto.bufferedByteCount }
        #expect(errors > 0)
    }

    @Test("LineOnlyReceiver never keeps more than maxLength + 1 bytes")
    func lineOnlyReceiver() throws {
        let proto = LineOnlyRecorder()
        proto.tolerant = true
        try attach(proto)
        _ = try feedGarbage(proto, seed: 3, bound: 16384 + 1) { proto.bufferedByteCount }
        #expect(proto.exceeded > 0)
    }

    @Test("NetstringReceiver gives up on the first broken byte and keeps nothing")
    func netstringReceiver() throws {
        let proto = NetstringRecorder()
        try attach(proto)
        let errors = try feedGarbage(proto, seed: 4, bound: 99999) { proto.bufferedByteCount }
        #expect(errors == 1)
        #expect(proto.brokenPeer)
        #expect(proto.bufferedByteCount == 0)
    }

    @Test("IntNStringReceiver of each width never keeps more than prefix + maxLength bytes", arguments: [1, 2, 4])
    func intNReceiver(width: Int) throws {
        let proto = IntNRecorder(prefixLength: width)
        proto.tolerant = true
        try attach(proto)
        _ = try feedGarbage(proto, seed: 10 + UInt64(width), bound: width + proto.maxLength) { proto.bufferedByteCount }
        if width == 4 { #expect(!proto.exceeded.isEmpty) }
        if width < 4 { #expect(!proto.strings.isEmpty) }
    }
}

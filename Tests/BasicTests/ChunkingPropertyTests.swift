// "Works at every chunking", as a property: random frames are encoded, the
// stream is cut at random points (one piece, one byte at a time, a few cuts,
// many cuts), and the frames received must equal the frames sent. A fixed
// seed makes every run the same; a failure prints the seed and the case.
import Swisted
import SwistedTesting
import Testing

private let cases = 400

/// A line of 0...maxLength bytes over an alphabet rich in \r and \n, never containing "\r\n".
private func randomLine(maxLength: Int, _ random: inout SeededRandom) -> [UInt8] {
    let alphabet: [UInt8] = [13, 10, 13, 65, 66, 0, 255, 32]
    var line: [UInt8] = []
    let length = Int.random(in: 0...maxLength, using: &random)
    while line.count < length {
        let byte = alphabet.randomElement(using: &random)!
        if byte == 10, line.last == 13 { continue }
        line.append(byte)
    }
    return line
}

/// Runs `check` for `cases` random cases; stops at the first failure, naming seed and case.
/// A throw from `check` (a receiver refusing valid input) is a failure too.
private func forAll(seed: UInt64, _ check: (inout SeededRandom, Int) throws -> String?) {
    var random = SeededRandom(seed: seed)
    for index in 0..<cases {
        do {
            if let failure = try check(&random, index) {
                Issue.record("seed \(seed), case \(index): \(failure)")
                return
            }
        } catch {
            Issue.record("seed \(seed), case \(index): threw \(error)")
            return
        }
    }
}

@Suite("Every receiver works at every chunking (property tests)")
struct ChunkingPropertyTests {
    @Test("LineReceiver: random lines, random cuts")
    func lineReceiver() throws {
        forAll(seed: 0x5EED_0001) { (random: inout SeededRandom, index: Int) throws -> String? in
            let maxLength = Int.random(in: 1...64, using: &random)
            var lines: [[UInt8]] = []
            for _ in 0..<Int.random(in: 0...12, using: &random) { lines.append(randomLine(maxLength: maxLength, &random)) }
            let stream: [UInt8] = lines.flatMap { line -> [UInt8] in line + [13, 10] }
            let cutPoints = cuts(stream.count, strategy: index, &random)
            let proto = LineRecorder()
            proto.maxLength = maxLength
            try attach(proto)
            try proto.receive(stream, splitAt: cutPoints)
            let ok = proto.lines == lines && proto.bufferedByteCount == 0
            return ok ? nil : "lines \(lines), cuts \(cutPoints.sorted()), got \(proto.lines)"
        }
    }

    @Test("LineReceiver: random switches between line and raw mode, random cuts")
    func lineReceiverModes() throws {
        forAll(seed: 0x5EED_0002) { (random: inout SeededRandom, index: Int) throws -> String? in
            var expected: [String] = []
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                if Bool.random(using: &random) {
                    let line = String(decoding: randomLine(maxLength: 6, &random), as: UTF8.self)
                    stream += bytes(line + "\r\n")
                    expected.append("line \(line)")
                } else {
                    let raw = String((0..<Int.random(in: 1...9, using: &random)).map { _ in "r\r\n".randomElement(using: &random)! })
                    stream += bytes("RAW \(raw.utf8.count)\r\n") + bytes(raw)
                    expected += ["line RAW \(raw.utf8.count)", "raw \(raw)"]
                }
            }
            let cutPoints = cuts(stream.count, strategy: index, &random)
            let proto = Switcher()
            try attach(proto)
            try proto.receive(stream, splitAt: cutPoints)
            return proto.events == expected ? nil : "stream \(stream), cuts \(cutPoints.sorted()), got \(proto.events)"
        }
    }

    @Test("LineOnlyReceiver: random lines, random cuts")
    func lineOnlyReceiver() throws {
        forAll(seed: 0x5EED_0003) { (random: inout SeededRandom, index: Int) throws -> String? in
            let maxLength = Int.random(in: 1...64, using: &random)
            var lines: [[UInt8]] = []
            for _ in 0..<Int.random(in: 0...12, using: &random) { lines.append(randomLine(maxLength: maxLength, &random)) }
            let stream: [UInt8] = lines.flatMap { line -> [UInt8] in line + [13, 10] }
            let cutPoints = cuts(stream.count, strategy: index, &random)
            let proto = LineOnlyRecorder()
            proto.maxLength = maxLength
            try attach(proto)
            try proto.receive(stream, splitAt: cutPoints)
            let ok = proto.lines == lines && proto.bufferedByteCount == 0
            return ok ? nil : "lines \(lines), cuts \(cutPoints.sorted()), got \(proto.lines)"
        }
    }

    @Test("NetstringReceiver: random strings, random cuts")
    func netstringReceiver() throws {
        forAll(seed: 0x5EED_0004) { (random: inout SeededRandom, index: Int) throws -> String? in
            let strings = (0..<Int.random(in: 0...10, using: &random)).map { _ in random.bytes(Int.random(in: 0...300, using: &random)) }
            let stream = strings.flatMap(netstring)
            let cutPoints = cuts(stream.count, strategy: index, &random)
            let proto = NetstringRecorder()
            try attach(proto)
            try proto.receive(stream, splitAt: cutPoints)
            return proto.strings == strings && proto.bufferedByteCount == 0 ? nil : "strings \(strings.map(\.count)), cuts \(cutPoints.sorted())"
        }
    }

    @Test("Int8/16/32StringReceiver: random frames, random cuts", arguments: [1, 2, 4])
    func intNReceiver(width: Int) throws {
        forAll(seed: 0x5EED_0010 + UInt64(width)) { (random: inout SeededRandom, index: Int) throws -> String? in
            let limit = width == 1 ? 255 : 600
            let strings = (0..<Int.random(in: 0...10, using: &random)).map { _ in random.bytes(Int.random(in: 0...limit, using: &random)) }
            let stream = strings.flatMap { lengthPrefixed($0, width: width) }
            let cutPoints = cuts(stream.count, strategy: index, &random)
            let proto = IntNRecorder(prefixLength: width)
            try attach(proto)
            try proto.receive(stream, splitAt: cutPoints)
            return proto.strings == strings && proto.bufferedByteCount == 0 ? nil : "strings \(strings.map(\.count)), cuts \(cutPoints.sorted())"
        }
    }

    @Test("LineReceiver and IntNStringReceiver: random pauses inside callbacks, resumed between reads or not")
    func pauses() throws {
        /// Feeds `stream` cut at `cutPoints` to `proto`, resuming after a piece
        /// with probability 1/2 while paused, and at the end until it stays resumed.
        func feed(_ proto: some Protocol & PushProducer, paused: () -> Bool, _ stream: [UInt8],
                  _ cutPoints: [Int], _ random: inout SeededRandom) throws {
            let ends = Set(cutPoints.filter { $0 > 0 && $0 < stream.count }).sorted() + [stream.count]
            var start = 0
            for end in ends {
                try stream.withUnsafeBufferPointer { try proto.dataReceived(UnsafeBufferPointer(rebasing: $0[start..<end]).span) }
                start = end
                if paused(), Bool.random(using: &random) { proto.resumeProducing() }
            }
            while paused() { proto.resumeProducing() }
        }
        forAll(seed: 0x5EED_0020) { (random: inout SeededRandom, index: Int) throws -> String? in
            var lines: [[UInt8]] = []
            for _ in 0..<Int.random(in: 0...12, using: &random) { lines.append(randomLine(maxLength: 16, &random)) }
            let stream: [UInt8] = lines.flatMap { line -> [UInt8] in line + [13, 10] }
            let cutPoints = cuts(stream.count, strategy: index, &random)
            var pauses = SeededRandom(seed: UInt64(index))
            let proto = LineRecorder()
            try attach(proto)
            var deliveredWhilePaused = false
            proto.onLine = { proto, _ in
                deliveredWhilePaused = deliveredWhilePaused || proto.paused
                if Int.random(in: 0..<3, using: &pauses) == 0 { proto.pauseProducing() }
            }
            try feed(proto, paused: { proto.paused }, stream, cutPoints, &random)
            let ok = proto.lines == lines && proto.bufferedByteCount == 0 && !deliveredWhilePaused
            return ok ? nil : "lines \(lines), cuts \(cutPoints.sorted()), got \(proto.lines), delivered while paused: \(deliveredWhilePaused)"
        }
        for width in [1, 2, 4] {
            forAll(seed: 0x5EED_0030 + UInt64(width)) { (random: inout SeededRandom, index: Int) throws -> String? in
                let strings = (0..<Int.random(in: 0...10, using: &random)).map { _ in random.bytes(Int.random(in: 0...40, using: &random)) }
                let stream = strings.flatMap { lengthPrefixed($0, width: width) }
                let cutPoints = cuts(stream.count, strategy: index, &random)
                var pauses = SeededRandom(seed: UInt64(index))
                let proto = IntNRecorder(prefixLength: width)
                try attach(proto)
                var deliveredWhilePaused = false
                proto.onString = { proto in
                    deliveredWhilePaused = deliveredWhilePaused || proto.paused
                    if Int.random(in: 0..<3, using: &pauses) == 0 { proto.pauseProducing() }
                }
                try feed(proto, paused: { proto.paused }, stream, cutPoints, &random)
                let ok = proto.strings == strings && proto.bufferedByteCount == 0 && !deliveredWhilePaused
                return ok ? nil : "strings \(strings.map(\.count)), cuts \(cutPoints.sorted()), delivered while paused: \(deliveredWhilePaused)"
            }
        }
    }

    @Test("what sendLine and sendString write parses back into the same frames")
    func sendersRoundTrip() throws {
        forAll(seed: 0x5EED_0020) { (random: inout SeededRandom, index: Int) throws -> String? in
            let payloads = (0..<Int.random(in: 1...6, using: &random)).map { _ in randomLine(maxLength: 40, &random) }
            let lineOut = LineRecorder(), netOut = NetstringRecorder(), intOut = Int32Recorder()
            let lineT = try attach(lineOut), netT = try attach(netOut), intT = try attach(intOut)
            for payload in payloads {
                lineOut.sendLine(payload)
                netOut.sendString(payload)
                try intOut.sendString(payload)
            }
            let lineIn = LineRecorder(), netIn = NetstringRecorder(), intIn = Int32Recorder()
            try attach(lineIn); try attach(netIn); try attach(intIn)
            try lineIn.receive(lineT.value(), splitAt: cuts(lineT.value().count, strategy: index, &random))
            try netIn.receive(netT.value(), splitAt: cuts(netT.value().count, strategy: index, &random))
            try intIn.receive(intT.value(), splitAt: cuts(intT.value().count, strategy: index, &random))
            return lineIn.lines == payloads && netIn.strings == payloads && intIn.strings == payloads ? nil : "payloads \(payloads)"
        }
    }
}

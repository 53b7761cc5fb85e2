// Feeds the same byte streams, cut into the same 64 KiB reads (the size of
// the reactor's read slab), to Swisted's receivers and to SwiftNIO's frame
// decoders, and reports throughput (MB/s, best of 5 runs) and allocations
// per frame (LD_PRELOAD counter from tools/malloc-counter.c; "n/a" without it).
//
// Both sides parse bytes already in memory: Swisted gets a Span per read,
// as from its read slab; NIO gets a ByteBuffer per read, sliced beforehand.
// NIO runs its decoders as they are used, in a ByteToMessageHandler on an
// EmbeddedChannel, with a final handler counting the frames; the line
// decoder also runs bare, in NIOSingleStepByteToMessageProcessor.
import Glibc
import NIOCore
import NIOEmbedded
import NIOExtras
import Swisted

let streamSize = 32 * 1024 * 1024
let readSize = 64 * 1024
let runs = 5

// MARK: Measuring

nonisolated(unsafe) let mallocCounter: UnsafeMutablePointer<UInt>? = dlsym(nil, "framing_bench_mallocs")?.assumingMemoryBound(to: UInt.self)

func mallocs() -> UInt { mallocCounter?.pointee ?? 0 }

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

struct Result {
    var seconds = Double.infinity
    var frames = 0
    var allocations: UInt = 0
}

/// Runs `body` (which returns its frame count) `runs` times after a warm-up; keeps the best time.
func measure(_ body: () throws -> Int) rethrows -> Result {
    var result = Result()
    _ = try body()
    for _ in 0..<runs {
        let before = mallocs()
        let start = now()
        let frames = try body()
        let elapsed = now() - start
        let allocations = mallocs() - before
        if elapsed < result.seconds {
            result = Result(seconds: elapsed, frames: frames, allocations: allocations)
        }
    }
    return result
}

// MARK: Swisted

final class NullTransport: Transport {
    func write(_ data: UnsafeRawBufferPointer) {}
    func loseConnection() {}
    func abortConnection() {}
    func getPeer() -> any Address { IPv4Address(type: .tcp, host: "127.0.0.1", port: 1) }
    func getHost() -> any Address { IPv4Address(type: .tcp, host: "127.0.0.1", port: 2) }
    var bufferSize: Int { 0 }
    var disconnecting: Bool { false }
    func loseWriteConnection() {}
    func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {}
    func unregisterProducer() {}
    var writeHighWaterMark = 64 * 1024
    var writeLowWaterMark = 16 * 1024
    func pauseProducing() {}
    func resumeProducing() {}
    func stopProducing() {}
}

final class CountingLines: LineReceiver {
    var frames = 0
    var bytes = 0
    override func lineReceived(_ line: Span<UInt8>) {
        frames += 1
        bytes &+= line.count
    }
}

final class CountingStrings: Int32StringReceiver {
    var frames = 0
    var bytes = 0
    override func stringReceived(_ string: Span<UInt8>) {
        frames += 1
        bytes &+= string.count
    }
}

func feedSwisted(_ stream: [UInt8], lines: Bool) throws -> Int {
    let proto: Protocol = lines ? CountingLines() : CountingStrings()
    try proto.makeConnection(NullTransport())
    try stream.withUnsafeBufferPointer { all in
        var start = 0
        while start < all.count {
            let end = min(start + readSize, all.count)
            try proto.dataReceived(UnsafeBufferPointer(rebasing: all[start..<end]).span)
            start = end
        }
    }
    return lines ? (proto as! CountingLines).frames : (proto as! CountingStrings).frames
}

// MARK: SwiftNIO

final class CountingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var frames = 0
    var bytes = 0
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        frames += 1
        bytes &+= frame.readableBytes
    }
}

func feedNIO(_ reads: [ByteBuffer], lines: Bool) throws -> Int {
    let channel = EmbeddedChannel()
    let counter = CountingHandler()
    if lines {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
    } else {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes, lengthFieldEndianness: .big)))
    }
    try channel.pipeline.syncOperations.addHandler(counter)
    for read in reads {
        try channel.writeInbound(read)
    }
    _ = try channel.finish()
    return counter.frames
}

/// LineBasedFrameDecoder without a pipeline: NIO's single-step processor,
/// the leanest way NIO offers to run it (LengthFieldBasedFrameDecoder has none).
func feedNIOSingleStep(_ reads: [ByteBuffer]) throws -> Int {
    let processor = NIOSingleStepByteToMessageProcessor(LineBasedFrameDecoder())
    var frames = 0
    var bytes = 0
    for read in reads {
        try processor.process(buffer: read) { frame in
            frames += 1
            bytes &+= frame.readableBytes
        }
    }
    return frames &+ (bytes & 0)
}

// MARK: The streams

/// Frames of `size` payload bytes until the stream holds `streamSize` bytes.
func makeStream(frameSize size: Int, lines: Bool) -> [UInt8] {
    var frame: [UInt8] = []
    if !lines { frame += [UInt8(size >> 24 & 0xFF), UInt8(size >> 16 & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF)] }
    frame += (0..<size).map { UInt8(ascii: "a") + UInt8($0 % 26) }
    if lines { frame += Array("\r\n".utf8) }
    var stream: [UInt8] = []
    stream.reserveCapacity(streamSize + frame.count)
    while stream.count + frame.count <= streamSize { stream += frame }
    return stream
}

func slices(_ stream: [UInt8]) -> [ByteBuffer] {
    let all = ByteBuffer(bytes: stream)
    return stride(from: 0, to: stream.count, by: readSize).map {
        all.getSlice(at: $0, length: min(readSize, stream.count - $0))!
    }
}

/// `value` with `digits` decimals (no Foundation).
func fixed(_ value: Double, digits: Int) -> String {
    let scale = (0..<digits).reduce(1) { result, _ in result * 10 }
    let scaled = Int((value * Double(scale)).rounded())
    let fraction = String(scaled % scale)
    return "\(scaled / scale)." + String(repeating: "0", count: digits - fraction.count) + fraction
}

func row(_ name: String, _ size: Int, _ bytes: Int, _ result: Result) -> String {
    let megabytes = Double(bytes) / 1_000_000 / result.seconds
    let perFrame = mallocCounter == nil ? "n/a" : fixed(Double(result.allocations) / Double(max(1, result.frames)), digits: 6)
    func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
    return "| \(pad(name, 40)) | \(pad(String(size), 6)) | \(pad(String(Int(megabytes.rounded())), 7)) | \(pad(String(result.frames), 8)) | \(pad(String(result.allocations), 7)) | \(perFrame) |"
}

print("Framing throughput: \(streamSize / 1024 / 1024) MiB per run, \(readSize / 1024) KiB reads, best of \(runs); allocation counter: \(mallocCounter == nil ? "absent (run with LD_PRELOAD)" : "on")")
print("| parser | frame | MB/s | frames | mallocs | mallocs/frame |")
print("|---|---|---|---|---|---|")
for lines in [true, false] {
    for size in [16, 256, 4096] {
        let stream = makeStream(frameSize: size, lines: lines)
        let reads = slices(stream)
        let swisted = try measure { try feedSwisted(stream, lines: lines) }
        let nio = try measure { try feedNIO(reads, lines: lines) }
        precondition(swisted.frames == nio.frames, "frame counts differ: \(swisted.frames) vs \(nio.frames)")
        print(row(lines ? "Swisted LineReceiver" : "Swisted Int32StringReceiver", size, stream.count, swisted))
        print(row(lines ? "NIO LineBasedFrameDecoder (pipeline)" : "NIO LengthFieldBasedFrameDecoder (pipeline)", size, stream.count, nio))
        if lines {
            let single = try measure { try feedNIOSingleStep(reads) }
            precondition(single.frames == swisted.frames)
            print(row("NIO LineBasedFrameDecoder (single step)", size, stream.count, single))
        }
    }
}

// Shared by every fuzz target (compiled into each one; see Fuzz/run.sh).
//
// Input layout, common to the framing targets: a few header bytes that the
// target reads with `FuzzInput` (options, limits, a script of what the
// callbacks do), then a chunk plan (`ChunkPlan`), then the bytes that the
// receiver gets, cut into reads as the plan says. Everything after the header
// is the stream; a short input just means defaults.

import Swisted
import SwistedTesting

/// A failed invariant: print what and where (fatalError's message), then trap, which libFuzzer
/// reports as a crash (and saves the input).
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #file, line: UInt = #line) {
    if !condition() {
        fatalError("FUZZ INVARIANT FAILED: \(message())", file: file, line: line)
    }
}

/// Reads header values from the front of the input; past the end it gives zeros.
struct FuzzInput {
    let bytes: [UInt8]
    var position = 0

    init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func take(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        for _ in 0..<count { out.append(byte()) }
        return out
    }

    /// Everything not yet read.
    var rest: [UInt8] { position < bytes.count ? Array(bytes[position...]) : [] }
}

/// How the stream is cut into reads: one byte `n` (0...7 used), then `n`
/// lengths, one byte each; read `i` is `lengths[i % n]` bytes long, and a
/// length of 0 means "the rest". No lengths: the whole stream in one read.
struct ChunkPlan {
    var lengths: [Int] = []

    init(_ input: inout FuzzInput) {
        let count = Int(input.byte() % 8)
        lengths = input.take(count).map(Int.init)
    }

    func ranges(_ total: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var index = 0
        while start < total {
            var length = lengths.isEmpty ? 0 : lengths[index % lengths.count]
            if length == 0 { length = total - start }
            let end = min(start + length, total)
            out.append(start..<end)
            start = end
            index += 1
        }
        return out
    }
}

/// A `StringTransport` that plays the part of a real transport's ending:
/// a throw from `dataReceived` closes the connection (connectionLost with the
/// error), `loseConnection` stops reads and closes once the driver is done.
/// Counts `connectionLost` calls: exactly one per connection.
final class FuzzTransport: StringTransport {
    var proto: Protocol?
    private(set) var lostCount = 0
    private(set) var closed = false

    /// Runs `send` (a receiver's sendLine or sendString, named `what`) and
    /// checks that it wrote exactly `bytes` (nothing once disconnecting).
    func checkWrites(_ bytes: [UInt8], by what: String, _ send: () -> Void) {
        let before = value()
        send()
        let expected = disconnecting ? before : before + bytes
        check(value() == expected, "\(what) wrote \(show(value())), expected \(show(expected))")
    }

    func close(_ reason: any Error) {
        guard !closed else { return }
        closed = true
        lostCount += 1
        guard let proto else { return }
        self.proto = nil  // as a real transport lets go of its protocol
        proto.connected = false
        proto.connectionLost(reason)
    }
}

/// Feeds `stream` to `proto` in the reads `plan` gives, as a transport does:
/// no read once `loseConnection` was called or after a throw; the first throw
/// closes the connection with that error; at the end the connection closes.
/// `beforeRead(i)` runs before read `i` (a place for "the application"
/// to act between reads), `afterReads` after the last one. Returns the
/// error that closed it, if one did.
@discardableResult
func drive(_ proto: Protocol, _ transport: FuzzTransport, _ stream: [UInt8], _ plan: ChunkPlan,
           beforeRead: (Int) -> Void = { _ in }, afterReads: () -> Void = {}) -> (any Error)? {
    transport.proto = proto
    try! proto.makeConnection(transport)
    var failure: (any Error)?
    for (index, range) in plan.ranges(stream.count).enumerated() {
        if transport.disconnecting || transport.closed { break }
        beforeRead(index)
        if transport.disconnecting || transport.closed { break }
        do {
            try stream.withUnsafeBufferPointer { try proto.dataReceived(UnsafeBufferPointer(rebasing: $0[range]).span) }
        } catch {
            failure = error
            transport.close(error)
            break
        }
    }
    if failure == nil, !transport.disconnecting, !transport.closed { afterReads() }
    transport.close(failure ?? ConnectionDone())
    check(transport.lostCount == 1, "connectionLost called \(transport.lostCount) times")
    return failure
}

/// The same driving for a model: `receive` is its `dataReceived`.
@discardableResult
func driveModel(_ stream: [UInt8], _ plan: ChunkPlan, disconnecting: () -> Bool,
                beforeRead: (Int) -> Void = { _ in }, afterReads: () -> Void = {},
                receive: ([UInt8]) throws -> Void) -> (any Error)? {
    for (index, range) in plan.ranges(stream.count).enumerated() {
        if disconnecting() { break }
        beforeRead(index)
        if disconnecting() { break }
        do { try receive(Array(stream[range])) } catch { return error }
    }
    if !disconnecting() { afterReads() }
    return nil
}

/// What a pausable receiver (Swisted's or a model) offers the driver: its
/// delivery pause, and a resume that says whether the connection survived
/// it (a callback that throws during `resumeProducing` fails it).
protocol PauseDriven: AnyObject {
    var isPaused: Bool { get }
    func resume() -> Bool
}

/// A model of a pausable receiver: its resume is Swisted's (unpause, then
/// parse what waits; a callback that throws fails the connection).
protocol PausableModel: PauseDriven {
    var isPaused: Bool { get set }
    func dataReceived(_ data: [UInt8]) throws
    /// A callback threw while resuming: the connection is failing.
    func resumeFailed()
}

extension PausableModel {
    func resume() -> Bool {
        isPaused = false
        do {
            try dataReceived([])
            return true
        } catch {
            resumeFailed()
            return false
        }
    }
}

/// Resumes `receiver` if it is paused (with `untilDone`, again while it
/// pauses anew); false if the connection failed meanwhile.
func resumeIfPaused(_ receiver: any PauseDriven, untilDone: Bool = false) -> Bool {
    repeat {
        guard receiver.isPaused else { return true }
        if !receiver.resume() { return false }
    } while untilDone
    return true
}

/// The event both sides record when a callback threw during `resumeProducing`.
let failedDuringResume = Event.failed("a callback threw during resumeProducing")

/// Byte arrays, printed short for failure messages.
func show(_ bytes: [UInt8]) -> String {
    let text = bytes.prefix(64).map { $0 >= 32 && $0 < 127 ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }.joined()
    return "\(bytes.count)B \"\(text)\(bytes.count > 64 ? "..." : "")\""
}

/// What a receiver did, in order: compared between Swisted and the model.
enum Event: Equatable, CustomStringConvertible {
    case line([UInt8])
    case raw([UInt8])
    case exceeded([UInt8])
    case string([UInt8])
    case tooLong(Int)
    case cleared([UInt8])
    case failed(String)

    var description: String {
        switch self {
        case .line(let b): return "line(\(show(b)))"
        case .raw(let b): return "raw(\(show(b)))"
        case .exceeded(let b): return "exceeded(\(show(b)))"
        case .string(let b): return "string(\(show(b)))"
        case .tooLong(let n): return "tooLong(\(n))"
        case .cleared(let b): return "cleared(\(show(b)))"
        case .failed(let s): return "failed(\(s))"
        }
    }
}

/// Appends `event`, merging consecutive raw data (raw data may come in any cuts).
func record(_ events: inout [Event], _ event: Event) {
    if case .raw(let more) = event {
        if more.isEmpty { return }
        if case .raw(let before)? = events.last {
            events[events.count - 1] = .raw(before + more)
            return
        }
    }
    events.append(event)
}

/// Checks the two event lists are equal; on a difference prints both around the first mismatch.
func compare(_ actual: [Event], _ expected: [Event], _ what: String) {
    guard actual != expected else { return }
    var first = 0
    while first < min(actual.count, expected.count), actual[first] == expected[first] { first += 1 }
    let from = max(0, first - 3)
    check(false, """
        \(what): Swisted and the model differ at event \(first)
          swisted: \(actual[from..<min(actual.count, first + 3)].map(\.description))
          model:   \(expected[from..<min(expected.count, first + 3)].map(\.description))
        """)
}

/// Index of the first `needle` in `hay`, or nil (plain search for the models).
func firstIndex(of needle: [UInt8], in hay: [UInt8]) -> Int? {
    guard !needle.isEmpty, hay.count >= needle.count else { return nil }
    for start in 0...(hay.count - needle.count) where hay[start] == needle[0] {
        if Array(hay[start..<start + needle.count]) == needle { return start }
    }
    return nil
}

/// Limits a target can pick (small ones reach the limit paths; the last
/// one is "no limit" as a user might write it).
let maxLengthChoices = [0, 1, 2, 3, 5, 8, 16, 100, 255, 16384, 99999, Int.max]

/// Delimiters a line target can pick (the default `\r\n`, one byte, and
/// longer ones whose prefixes repeat, to stress the split-delimiter path).
let delimiterChoices: [[UInt8]] = [
    Array("\r\n".utf8), Array("\n".utf8), Array("\0".utf8), Array("aab".utf8),
    Array("abab".utf8), Array("\r\n\r\n".utf8), Array("xyzxy".utf8), Array("aaaa".utf8),
]

/// The models' re-entrancy rule, as the receivers have it: bytes fed back in
/// while a read is being processed (a callback calling `dataReceived`) are
/// queued and processed after it, in order, unless `stop` says the model is
/// done (broken or closed).
final class ReentrantInput {
    private var queue: [UInt8] = []
    private var busy = false

    func feed(_ data: [UInt8], stop: () -> Bool = { false }, _ process: ([UInt8]) throws -> Void) rethrows {
        if busy {
            queue += data
            return
        }
        busy = true
        defer { busy = false }
        try process(data)
        while !queue.isEmpty, !stop() {
            let more = queue
            queue = []
            try process(more)
        }
    }

    /// Takes the bytes queued behind the read in progress (clearLineBuffer).
    func takeQueued() -> [UInt8] {
        defer { queue = [] }
        return queue
    }
}

/// The script of a length-framed receiver's target (netstrings, IntN): records
/// each string delivered, checks it, and says what the callback does next,
/// cycling through the header's ops. `frame` frames a string the way the
/// receiver under test reads it (for the re-injection op).
class StringScript {
    let ops: [(kind: UInt8, arg: UInt8)]
    let frame: ([UInt8]) -> [UInt8]
    var events: [Event] = []
    var count = 0
    var injections = 0

    init(ops: [(kind: UInt8, arg: UInt8)], frame: @escaping ([UInt8]) -> [UInt8]) {
        self.ops = ops
        self.frame = frame
    }

    /// What the callback should do after recording `string`.
    enum Action { case none, lose, send, inject([UInt8]), limit(Int), pause }

    func string(_ string: [UInt8], maxLength: Int, disconnecting: Bool) -> Action {
        check(!disconnecting, "a string was delivered while disconnecting: \(show(string))")
        check(string.count <= maxLength, "string of \(string.count) > maxLength \(maxLength)")
        record(&events, .string(string))
        let number = count
        count += 1
        guard !ops.isEmpty else { return .none }
        let op = ops[number % ops.count]
        switch op.kind % 5 {
        case 1: return .lose
        case 2: return .send
        case 3:
            guard injections < 8 else { return .none }
            injections += 1
            // The string framed again (an IntN prefix may wrap), or its bare bytes (likely broken).
            return .inject(op.arg % 2 == 0 ? frame(string) : string)
        case 4: return .limit(maxLengthChoices[Int(op.arg) % maxLengthChoices.count])
        case 0 where op.arg % 4 == 3: return .pause  // pausable receivers pause their delivery
        default: return .none
        }
    }
}

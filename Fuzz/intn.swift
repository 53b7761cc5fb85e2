// Fuzz target: Int8/16/32StringReceiver (and the 3-byte IntNStringReceiver):
// frames split across reads, prefixes over the limit, re-entry from
// stringReceived, loseConnection and limit changes, the three ways to handle
// a length over the limit, delivery paused from stringReceived (resumed
// before the next read, and at the end until it stays resumed).
//
// Swisted's receiver and a plain model (read the prefix, wait for the frame)
// run the same script; their events must be equal. Direct checks: no string
// while disconnecting or paused or longer than maxLength, sendString writes prefix +
// bytes (or throws StringTooLongError and writes nothing), connectionLost once.
//
// Header: [prefix width+limit] [on length over the limit] [op count]
//         (op kind, op arg)*  then the chunk plan, then the stream.

import Swisted
import SwistedTesting

/// The IntN target's script: re-injects strings with a `prefixLength`-byte
/// prefix, and says how a length over the limit is handled.
final class IntNScript: StringScript {
    let onTooLong: Int

    init(ops: [(kind: UInt8, arg: UInt8)], prefixLength: Int, onTooLong: Int) {
        self.onTooLong = onTooLong
        super.init(ops: ops) { prefixed($0, prefixLength: prefixLength) }
    }

    /// Returns true when the default (throwing) handling is wanted; `lose` for the third way.
    func tooLong(_ length: Int) -> (useDefault: Bool, lose: Bool) {
        record(&events, .tooLong(length))
        switch onTooLong {
        case 0: return (true, false)
        case 1: return (false, false)
        default: return (false, true)
        }
    }
}

/// `bytes` with a big-endian length prefix of `prefixLength` bytes (truncated if it does not fit).
func prefixed(_ bytes: [UInt8], prefixLength: Int) -> [UInt8] {
    var out: [UInt8] = []
    for index in stride(from: prefixLength - 1, through: 0, by: -1) {
        out.append(UInt8(truncatingIfNeeded: bytes.count >> (8 * index)))
    }
    return out + bytes
}

final class FuzzIntNReceiver: IntNStringReceiver, PauseDriven {
    var script: IntNScript!
    var lost = false
    var fuzzTransport: FuzzTransport { transport as! FuzzTransport }

    init(prefix: Int) { super.init(prefixLength: prefix) }
    required init() { super.init() }

    var isPaused: Bool { paused }
    /// False if a callback threw meanwhile: `resumeProducing` then aborts the transport.
    func resume() -> Bool {
        resumeProducing()
        return !fuzzTransport.abortConnectionCalled
    }

    override func stringReceived(_ string: Span<UInt8>) throws {
        check(!lost, "stringReceived after connectionLost")
        check(!paused, "stringReceived while paused")
        let bytes = string.withUnsafeBufferPointer { Array($0) }
        switch script.string(bytes, maxLength: maxLength,
                             disconnecting: transport?.disconnecting ?? true) {
        case .none: break
        case .lose: transport?.loseConnection()
        case .send:
            let before = fuzzTransport.value()
            let limit = min(prefixLimit, maxLength)
            do {
                try sendString(bytes)
                check(bytes.count <= limit, "sendString accepted \(bytes.count) bytes over the limit \(limit)")
                let expected = fuzzTransport.disconnecting ? before : before + prefixed(bytes, prefixLength: prefixLength)
                check(fuzzTransport.value() == expected, "sendString wrote \(show(fuzzTransport.value())), expected \(show(expected))")
            } catch {
                check(bytes.count > limit, "sendString refused \(bytes.count) bytes, the limit is \(limit)")
                check(error.limit == limit && error.length == bytes.count, "wrong StringTooLongError \(error)")
                check(fuzzTransport.value() == before, "sendString wrote after refusing")
            }
        case .inject(let extra): try extra.withUnsafeBufferPointer { try dataReceived($0.span) }
        case .limit(let limit): maxLength = limit
        case .pause: pauseProducing()
        }
    }
    override func lengthLimitExceeded(_ length: Int) throws {
        check(!lost, "lengthLimitExceeded after connectionLost")
        check(length > maxLength, "lengthLimitExceeded(\(length)) within maxLength \(maxLength)")
        let (useDefault, lose) = script.tooLong(length)
        if useDefault { try super.lengthLimitExceeded(length) }
        if lose { transport?.loseConnection() }
    }
    override func connectionLost(_ reason: any Error) {
        check(!lost, "connectionLost twice")
        lost = true
    }
}

/// The documented behaviour: read a prefix, wait for the whole frame, deliver;
/// a prefix over the limit drops the rest of that read. Bytes given to
/// dataReceived from inside a callback wait until the current read is done;
/// while paused, nothing is parsed.
final class ModelIntNReceiver: PausableModel {
    let script: IntNScript
    let prefixLength: Int
    var maxLength: Int
    var disconnecting = false
    var isPaused = false
    private var buffer: [UInt8] = []
    private let input = ReentrantInput()

    init(script: IntNScript, prefixLength: Int, maxLength: Int) {
        self.script = script
        self.prefixLength = prefixLength
        self.maxLength = maxLength
    }

    func dataReceived(_ data: [UInt8]) throws {
        try input.feed(data) { try process($0) }
    }

    func resumeFailed() { disconnecting = true }

    private func process(_ data: [UInt8]) throws {
        buffer += data
        while !disconnecting, !isPaused {
            guard buffer.count >= prefixLength else { return }
            let length = buffer[..<prefixLength].reduce(0) { $0 << 8 | Int($1) }
            if length > maxLength {
                buffer = []
                let (useDefault, lose) = script.tooLong(length)
                if useDefault { throw LengthLimitExceededError(length: length, maxLength: maxLength) }
                if lose { disconnecting = true }
                return
            }
            guard buffer.count >= prefixLength + length else { return }
            let string = Array(buffer[prefixLength..<prefixLength + length])
            buffer.removeFirst(prefixLength + length)
            switch script.string(string, maxLength: maxLength, disconnecting: disconnecting) {
            case .none, .send: break
            case .lose: disconnecting = true
            case .inject(let extra): try dataReceived(extra)
            case .limit(let limit): maxLength = limit
            case .pause: isPaused = true
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIntN(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let setup = input.byte()
    let prefixLength = [1, 2, 4, 3][Int(setup & 3)]
    let maxLength = maxLengthChoices[Int(setup >> 2) % maxLengthChoices.count]
    let onTooLong = Int(input.byte() % 3)
    let opCount = Int(input.byte() % 16)
    var ops: [(kind: UInt8, arg: UInt8)] = []
    for _ in 0..<opCount { ops.append((input.byte(), input.byte())) }
    let plan = ChunkPlan(&input)
    let stream = input.rest

    // Int8/16/32StringReceiver are IntNStringReceiver with prefixLength 1/2/4
    // and nothing else (checked here); the receiver under test is built the same way.
    check(Int8StringReceiver().prefixLength == 1 && Int16StringReceiver().prefixLength == 2
          && Int32StringReceiver().prefixLength == 4, "the width of an IntN class")
    let real = FuzzIntNReceiver(prefix: prefixLength)
    real.maxLength = maxLength
    real.script = IntNScript(ops: ops, prefixLength: prefixLength, onTooLong: onTooLong)
    func resuming(_ receiver: any PauseDriven, _ script: IntNScript, untilDone: Bool) {
        if !resumeIfPaused(receiver, untilDone: untilDone) { record(&script.events, failedDuringResume) }
    }
    if let error = drive(real, FuzzTransport(), stream, plan,
                         beforeRead: { _ in resuming(real, real.script, untilDone: false) },
                         afterReads: { resuming(real, real.script, untilDone: true) }) {
        check(error is LengthLimitExceededError, "unexpected error \(error)")
        record(&real.script.events, .failed("\(error)"))
    }
    check(real.lost, "connectionLost was not called")

    let modelScript = IntNScript(ops: ops, prefixLength: prefixLength, onTooLong: onTooLong)
    let model = ModelIntNReceiver(script: modelScript, prefixLength: prefixLength, maxLength: maxLength)
    if let error = driveModel(stream, plan, disconnecting: { model.disconnecting },
                              beforeRead: { _ in resuming(model, modelScript, untilDone: false) },
                              afterReads: { resuming(model, modelScript, untilDone: true) },
                              receive: model.dataReceived) {
        record(&modelScript.events, .failed("\(error)"))
    }

    compare(real.script.events, modelScript.events, "IntNStringReceiver(prefixLength: \(prefixLength))")
    return 0
}

// Fuzz target: LineOnlyReceiver (any delimiter and limit, lines split across
// reads, loseConnection and limit changes from lineReceived, the three ways to
// handle a long line).
//
// Swisted's receiver and a plain model (a buffer split at the first
// delimiter) run the same script; their events must be equal. Direct checks:
// no line while disconnecting, none longer than maxLength or containing the
// delimiter, sendLine writes line + delimiter, connectionLost exactly once.
//
// Header: [delimiter+limit] [on long line] [op count] (op kind, op arg)*
//         then the chunk plan, then the stream.

import Swisted
import SwistedTesting

final class LineOnlyScript {
    let ops: [(kind: UInt8, arg: UInt8)]
    let onLongLine: Int
    var events: [Event] = []
    var lineCount = 0

    init(ops: [(kind: UInt8, arg: UInt8)], onLongLine: Int) {
        self.ops = ops
        self.onLongLine = onLongLine
    }

    /// `line` arrived; `maxLength`/`delimiter` in force; returns the new maxLength, if changed.
    func line(_ line: [UInt8], delimiter: [UInt8], maxLength: Int, disconnecting: Bool,
              lose: () -> Void, send: ([UInt8]) -> Void) -> Int? {
        check(!disconnecting, "a line was delivered while disconnecting: \(show(line))")
        check(line.count <= maxLength, "line of \(line.count) > maxLength \(maxLength)")
        check(firstIndex(of: delimiter, in: line) == nil, "line contains its delimiter: \(show(line))")
        record(&events, .line(line))
        let number = lineCount
        lineCount += 1
        guard !ops.isEmpty else { return nil }
        let op = ops[number % ops.count]
        switch op.kind % 4 {
        case 1: lose()
        case 2: send(line)
        case 3: return maxLengthChoices[Int(op.arg) % maxLengthChoices.count]
        default: break
        }
        return nil
    }

    /// Returns true when the default (throwing) handling is wanted.
    func exceeded(_ data: [UInt8], lose: () -> Void, send: ([UInt8]) -> Void) -> Bool {
        record(&events, .exceeded(data))
        switch onLongLine {
        case 0: return true
        case 1: return false
        default:
            send(Array("too long".utf8))
            lose()
            return false
        }
    }
}

final class FuzzLineOnlyReceiver: LineOnlyReceiver {
    var script: LineOnlyScript!
    var lost = false
    var fuzzTransport: FuzzTransport { transport as! FuzzTransport }

    private func lose() { transport?.loseConnection() }
    private func send(_ line: [UInt8]) {
        fuzzTransport.checkWrites(line + delimiter, by: "sendLine") { sendLine(line) }
    }

    override func lineReceived(_ line: Span<UInt8>) throws {
        check(!lost, "lineReceived after connectionLost")
        let bytes = line.withUnsafeBufferPointer { Array($0) }
        if let newLimit = script.line(bytes, delimiter: delimiter, maxLength: maxLength,
                                      disconnecting: transport?.disconnecting ?? true, lose: lose, send: send) {
            maxLength = newLimit
        }
    }
    override func lineLengthExceeded(_ line: Span<UInt8>) throws {
        check(!lost, "lineLengthExceeded after connectionLost")
        if script.exceeded(line.withUnsafeBufferPointer { Array($0) }, lose: lose, send: send) {
            try super.lineLengthExceeded(line)
        }
    }
    override func connectionLost(_ reason: any Error) {
        check(!lost, "connectionLost twice")
        lost = true
    }
}

/// The documented behaviour: the bytes kept plus the new read, split at the
/// first delimiter, line by line, until the transport is disconnecting.
final class ModelLineOnlyReceiver {
    let script: LineOnlyScript
    let delimiter: [UInt8]
    var maxLength: Int
    var disconnecting = false
    private var buffer: [UInt8] = []

    init(script: LineOnlyScript, delimiter: [UInt8], maxLength: Int) {
        self.script = script
        self.delimiter = delimiter
        self.maxLength = maxLength
    }

    func dataReceived(_ data: [UInt8]) throws {
        buffer += data
        let d = delimiter.count
        while !disconnecting {
            guard let end = firstIndex(of: delimiter, in: buffer) else {
                if buffer.count - d >= maxLength { try exceeded() }
                return
            }
            if end > maxLength { return try exceeded() }
            let line = Array(buffer[..<end])
            buffer.removeFirst(end + d)
            if let newLimit = script.line(line, delimiter: delimiter, maxLength: maxLength, disconnecting: disconnecting,
                                          lose: { disconnecting = true }, send: { _ in }) {
                maxLength = newLimit
            }
        }
    }

    private func exceeded() throws {
        let all = buffer
        buffer = []
        if script.exceeded(all, lose: { disconnecting = true }, send: { _ in }) {
            throw LineTooLongError(length: all.count, maxLength: maxLength)
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLineOnly(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let setup = input.byte()
    let delimiter = delimiterChoices[Int(setup & 7)]
    let maxLength = maxLengthChoices[Int(setup >> 3) % maxLengthChoices.count]
    let onLongLine = Int(input.byte() % 3)
    let opCount = Int(input.byte() % 16)
    var ops: [(kind: UInt8, arg: UInt8)] = []
    for _ in 0..<opCount { ops.append((input.byte(), input.byte())) }
    let plan = ChunkPlan(&input)
    let stream = input.rest

    let real = FuzzLineOnlyReceiver()
    real.delimiter = delimiter
    real.maxLength = maxLength
    real.script = LineOnlyScript(ops: ops, onLongLine: onLongLine)
    let realError = drive(real, FuzzTransport(), stream, plan)
    if let realError {
        check(realError is LineTooLongError, "unexpected error \(realError)")
        record(&real.script.events, .failed("\(realError)"))
    }
    check(real.lost, "connectionLost was not called")

    let modelScript = LineOnlyScript(ops: ops, onLongLine: onLongLine)
    let model = ModelLineOnlyReceiver(script: modelScript, delimiter: delimiter, maxLength: maxLength)
    if let error = driveModel(stream, plan, disconnecting: { model.disconnecting }, receive: model.dataReceived) {
        record(&modelScript.events, .failed("\(error)"))
    }

    compare(real.script.events, modelScript.events, "LineOnlyReceiver")
    return 0
}

// Fuzz target: LineReceiver (line mode, raw mode switching both ways, delimiter
// and limit changes from callbacks, clearLineBuffer, re-entry through
// setLineMode(extra:), loseConnection, the three ways to handle a long line,
// delivery paused from a callback: resumed before the next read, and at the
// end until it stays resumed).
//
// The input drives the same script on Swisted's LineReceiver and on a plain
// model of what its documentation promises (a byte buffer split at the first
// delimiter, Twisted's algorithm); the events of both must be equal. Direct
// checks too: no line while disconnecting or paused, no line longer than maxLength or
// containing the delimiter, sendLine writes line + delimiter, connectionLost once.
//
// Header: [delimiter+limit] [on long line] [raw-between-reads mask] [raw length]
//         [op count] (op kind, op arg)*  then the chunk plan, then the stream.

import Swisted
import SwistedTesting

/// What the script needs from a receiver, Swisted's or the model.
protocol LineDriven: PauseDriven {
    var currentDelimiter: [UInt8] { get set }
    var currentMaxLength: Int { get set }
    var isDisconnecting: Bool { get }
    var inLineMode: Bool { get }
    func switchToRaw()
    func switchToLine(extra: [UInt8]) throws
    func clearBuffer() -> [UInt8]
    func lose()
    /// Sends `line`; Swisted's side checks what was written.
    func send(_ line: [UInt8])
    func pause()
}

/// What the callbacks do, decided by line number and by stream position in
/// raw mode, so that it does not depend on how the stream was cut.
final class LineScript {
    let ops: [(kind: UInt8, arg: UInt8)]
    let onLongLine: Int
    let rawLength: Int?
    var events: [Event] = []
    var lineCount = 0
    var injections = 0
    /// Raw bytes still to take before going back to line mode (nil: stay raw).
    var rawRemaining: Int?
    weak var target: (any LineDriven)!

    init(ops: [(kind: UInt8, arg: UInt8)], onLongLine: Int, rawLength: Int?) {
        self.ops = ops
        self.onLongLine = onLongLine
        self.rawLength = rawLength
    }

    func enterRaw(_ length: Int?) {
        guard target.inLineMode else { return }
        rawRemaining = length
        target.switchToRaw()
    }

    func line(_ line: [UInt8]) throws {
        check(!target.isDisconnecting, "a line was delivered while disconnecting: \(show(line))")
        check(!target.isPaused, "a line was delivered while paused: \(show(line))")
        check(line.count <= target.currentMaxLength, "line of \(line.count) > maxLength \(target.currentMaxLength)")
        check(firstIndex(of: target.currentDelimiter, in: line) == nil, "line contains its delimiter: \(show(line))")
        record(&events, .line(line))
        let number = lineCount
        lineCount += 1
        guard !ops.isEmpty else { return }
        let op = ops[number % ops.count]
        switch op.kind % 8 {
        case 1: enterRaw(op.arg == 255 ? nil : Int(op.arg))
        case 2: target.currentDelimiter = delimiterChoices[Int(op.arg) % delimiterChoices.count]
        case 3: target.lose()
        case 4: record(&events, .cleared(target.clearBuffer()))
        case 5:
            // Inject bytes (Twisted's setLineMode(extra:) while in line mode): they queue behind
            // the rest. A few times only: injected lines inject again.
            guard injections < 8 else { break }
            injections += 1
            let extra = op.arg % 2 == 0 ? line : line.reversed() + target.currentDelimiter
            try target.switchToLine(extra: extra)
        case 6: target.currentMaxLength = maxLengthChoices[Int(op.arg) % maxLengthChoices.count]
        case 7: target.send(line)
        case 0 where op.arg % 4 == 3: target.pause()
        default: break
        }
    }

    func raw(_ data: [UInt8]) throws {
        check(!target.inLineMode, "raw data in line mode")
        check(!target.isPaused, "raw data delivered while paused")
        let take = rawRemaining.map { min($0, data.count) } ?? data.count
        record(&events, .raw(Array(data[..<take])))
        guard let remaining = rawRemaining else { return }
        rawRemaining = remaining - take
        if rawRemaining == 0 {
            rawRemaining = nil
            try target.switchToLine(extra: Array(data[take...]))
        }
    }

    /// Returns true when the default (throwing) handling is wanted.
    func exceeded(_ data: [UInt8]) -> Bool {
        record(&events, .exceeded(data))
        switch onLongLine {
        case 0: return true
        case 1: return false  // skip it and carry on
        default:
            target.send(Array("too long".utf8))
            target.lose()
            return false
        }
    }
}

final class FuzzLineReceiver: LineReceiver, LineDriven {
    var script: LineScript!
    var stringTransport: FuzzTransport { transport as! FuzzTransport }
    var lost = false

    var currentDelimiter: [UInt8] {
        get { delimiter }
        set { delimiter = newValue }
    }
    var currentMaxLength: Int {
        get { maxLength }
        set { maxLength = newValue }
    }
    var isDisconnecting: Bool { transport?.disconnecting ?? true }
    var inLineMode: Bool { lineMode }
    func switchToRaw() { setRawMode() }
    func switchToLine(extra: [UInt8]) throws { try setLineMode(extra: extra) }
    func clearBuffer() -> [UInt8] { clearLineBuffer() }
    func lose() { transport?.loseConnection() }
    func send(_ line: [UInt8]) {
        stringTransport.checkWrites(line + delimiter, by: "sendLine") { sendLine(line) }
    }
    var isPaused: Bool { paused }
    func pause() { pauseProducing() }
    /// False if a callback threw meanwhile: `resumeProducing` then aborts the transport.
    func resume() -> Bool {
        resumeProducing()
        return !stringTransport.abortConnectionCalled
    }

    override func lineReceived(_ line: Span<UInt8>) throws {
        check(!lost, "lineReceived after connectionLost")
        try script.line(line.withUnsafeBufferPointer { Array($0) })
    }
    override func rawDataReceived(_ data: Span<UInt8>) throws {
        check(!lost, "rawDataReceived after connectionLost")
        try script.raw(data.withUnsafeBufferPointer { Array($0) })
    }
    override func lineLengthExceeded(_ line: Span<UInt8>) throws {
        check(!lost, "lineLengthExceeded after connectionLost")
        if script.exceeded(line.withUnsafeBufferPointer { Array($0) }) { try super.lineLengthExceeded(line) }
    }
    override func connectionLost(_ reason: any Error) {
        check(!lost, "connectionLost twice")
        lost = true
    }
}

/// The documented behaviour, written as plainly as possible: a buffer split
/// at the first delimiter; raw mode hands over the whole buffer and the queued bytes; bytes given
/// to dataReceived from inside a callback wait until the current read is
/// done; while paused, nothing is parsed.
final class ModelLineReceiver: LineDriven, PausableModel {
    var script: LineScript!
    var currentDelimiter: [UInt8] = Array("\r\n".utf8)
    var currentMaxLength = 16384
    var isDisconnecting = false
    var inLineMode = true
    var isPaused = false
    private var buffer: [UInt8] = []
    private let input = ReentrantInput()

    func switchToRaw() { inLineMode = false }
    func switchToLine(extra: [UInt8]) throws {
        inLineMode = true
        if !extra.isEmpty { try dataReceived(extra) }
    }
    func clearBuffer() -> [UInt8] {
        defer { buffer = [] }
        return buffer + input.takeQueued()
    }
    func lose() { isDisconnecting = true }
    func send(_ line: [UInt8]) {}
    func pause() { isPaused = true }
    func resumeFailed() { isDisconnecting = true }

    func dataReceived(_ data: [UInt8]) throws {
        try input.feed(data) { try process($0) }
    }

    private func process(_ data: [UInt8]) throws {
        buffer += data
        while !buffer.isEmpty, !isPaused {
            if !inLineMode {
                let all = buffer + input.takeQueued()  // Twisted's one buffer: the queued bytes too
                buffer = []
                try script.raw(all)
                continue
            }
            if isDisconnecting { return }
            let d = currentDelimiter.count
            guard let end = firstIndex(of: currentDelimiter, in: buffer) else {
                if buffer.count - d >= currentMaxLength { try exceeded() }
                return
            }
            if end > currentMaxLength { return try exceeded() }
            let line = Array(buffer[..<end])
            buffer.removeFirst(end + d)
            try script.line(line)
            if isDisconnecting { return }
        }
    }

    private func exceeded() throws {
        let all = buffer
        buffer = []
        if script.exceeded(all) { throw LineTooLongError(length: all.count, maxLength: currentMaxLength) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLines(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let setup = input.byte()
    let delimiter = delimiterChoices[Int(setup & 7)]
    let maxLength = maxLengthChoices[Int(setup >> 3) % maxLengthChoices.count]
    let onLongLine = Int(input.byte() % 3)
    let rawBetweenReads = input.byte()
    let rawLengthByte = input.byte()
    let rawLength: Int? = rawLengthByte == 255 ? nil : Int(rawLengthByte)
    let opCount = Int(input.byte() % 16)
    var ops: [(kind: UInt8, arg: UInt8)] = []
    for _ in 0..<opCount { ops.append((input.byte(), input.byte())) }
    let plan = ChunkPlan(&input)
    let stream = input.rest

    func betweenReads(_ script: LineScript) -> (Int) -> Void {
        { index in
            if !resumeIfPaused(script.target) { return record(&script.events, failedDuringResume) }
            if index > 0, rawBetweenReads & (1 << UInt8(index % 8)) != 0 { script.enterRaw(rawLength) }
        }
    }
    func afterReads(_ script: LineScript) -> () -> Void {
        { if !resumeIfPaused(script.target, untilDone: true) { record(&script.events, failedDuringResume) } }
    }

    // Swisted.
    let real = FuzzLineReceiver()
    real.delimiter = delimiter
    real.maxLength = maxLength
    let realScript = LineScript(ops: ops, onLongLine: onLongLine, rawLength: rawLength)
    realScript.target = real
    real.script = realScript
    let transport = FuzzTransport()
    let realError = drive(real, transport, stream, plan, beforeRead: betweenReads(realScript),
                          afterReads: afterReads(realScript))
    if let realError {
        check(realError is LineTooLongError, "unexpected error \(realError)")
        record(&realScript.events, .failed("\(realError)"))
    }
    check(real.lost, "connectionLost was not called")

    // The model.
    let model = ModelLineReceiver()
    model.currentDelimiter = delimiter
    model.currentMaxLength = maxLength
    let modelScript = LineScript(ops: ops, onLongLine: onLongLine, rawLength: rawLength)
    modelScript.target = model
    model.script = modelScript
    if let error = driveModel(stream, plan, disconnecting: { model.isDisconnecting },
                              beforeRead: betweenReads(modelScript), afterReads: afterReads(modelScript),
                              receive: model.dataReceived) {
        record(&modelScript.events, .failed("\(error)"))
    }

    compare(realScript.events, modelScript.events, "LineReceiver")
    return 0
}

// Fuzz target: NetstringReceiver (valid and broken netstrings split across
// reads, re-entry from stringReceived, loseConnection and limit changes).
//
// Swisted's receiver and a plain model (parse the buffer from the start each
// time) run the same script; their events must be equal, including where a
// broken peer is detected. Direct checks: no string while disconnecting or
// longer than maxLength, sendString writes `<len>:<bytes>,`, a broken peer
// throws NetstringParseError and sets brokenPeer, connectionLost exactly once.
//
// Header: [limit] [op count] (op kind, op arg)*  then the chunk plan, then the stream.

import Swisted
import SwistedTesting

/// The netstring target's script: re-injects strings as netstrings.
final class NetstringScript: StringScript {
    init(ops: [(kind: UInt8, arg: UInt8)]) { super.init(ops: ops, frame: netstring) }
}

func netstring(_ bytes: [UInt8]) -> [UInt8] {
    Array(String(bytes.count).utf8) + [UInt8(ascii: ":")] + bytes + [UInt8(ascii: ",")]
}

final class FuzzNetstringReceiver: NetstringReceiver {
    var script: NetstringScript!
    var lost = false
    var fuzzTransport: FuzzTransport { transport as! FuzzTransport }

    override func stringReceived(_ string: Span<UInt8>) throws {
        check(!lost, "stringReceived after connectionLost")
        check(!brokenPeer, "stringReceived from a broken peer")
        let bytes = string.withUnsafeBufferPointer { Array($0) }
        switch script.string(bytes, maxLength: maxLength, disconnecting: transport?.disconnecting ?? true) {
        case .none, .pause: break  // a NetstringReceiver does not pause its delivery (as in Twisted)
        case .lose: transport?.loseConnection()
        case .send:
            fuzzTransport.checkWrites(netstring(bytes), by: "sendString") { sendString(bytes) }
        case .inject(let extra): try extra.withUnsafeBufferPointer { try dataReceived($0.span) }
        case .limit(let limit): maxLength = limit
        }
    }
    override func connectionLost(_ reason: any Error) {
        check(!lost, "connectionLost twice")
        lost = true
    }
}

/// The documented behaviour, parsed from the start of the buffer every time:
/// `<digits>:<length bytes>,`, no leading zero, the length at most maxLength
/// (a broken peer as soon as the digits say otherwise). Bytes given to
/// dataReceived from inside a callback wait until the current read is done.
final class ModelNetstringReceiver {
    let script: NetstringScript
    var maxLength: Int
    var disconnecting = false
    var broken = false
    private var buffer: [UInt8] = []
    private let input = ReentrantInput()

    init(script: NetstringScript, maxLength: Int) {
        self.script = script
        self.maxLength = maxLength
    }

    struct Broken: Error {}

    func dataReceived(_ data: [UInt8]) throws {
        guard !broken else { return }
        try input.feed(data, stop: { broken }) { try process($0) }
    }

    private func fail() -> Broken {
        broken = true
        return Broken()
    }

    private func process(_ data: [UInt8]) throws {
        buffer += data
        while !disconnecting {
            var index = 0
            var length = 0
            var digits = 0
            while true {
                guard index < buffer.count else { return }  // more digits to come
                let byte = buffer[index]
                if byte == UInt8(ascii: ":") {
                    if digits == 0 { throw fail() }
                    break
                }
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw fail() }
                if digits == 1, length == 0 { throw fail() }
                let digit = Int(byte - UInt8(ascii: "0"))
                if length > (maxLength - digit) / 10 || digit > maxLength { throw fail() }
                length = length * 10 + digit
                digits += 1
                index += 1
            }
            let start = index + 1
            guard buffer.count > start + length else { return }
            guard buffer[start + length] == UInt8(ascii: ",") else { throw fail() }
            let string = Array(buffer[start..<start + length])
            buffer.removeFirst(start + length + 1)
            switch script.string(string, maxLength: maxLength, disconnecting: disconnecting) {
            case .none, .send, .pause: break
            case .lose: disconnecting = true
            case .inject(let extra): try dataReceived(extra)
            case .limit(let limit): maxLength = limit
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetstring(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let maxLength = maxLengthChoices[Int(input.byte()) % maxLengthChoices.count]
    let opCount = Int(input.byte() % 16)
    var ops: [(kind: UInt8, arg: UInt8)] = []
    for _ in 0..<opCount { ops.append((input.byte(), input.byte())) }
    let plan = ChunkPlan(&input)
    let stream = input.rest

    let real = FuzzNetstringReceiver()
    real.maxLength = maxLength
    real.script = NetstringScript(ops: ops)
    if let error = drive(real, FuzzTransport(), stream, plan) {
        check(error is NetstringParseError, "unexpected error \(error)")
        check(real.brokenPeer, "NetstringParseError without brokenPeer")
        record(&real.script.events, .failed("broken"))
    } else {
        check(!real.brokenPeer, "brokenPeer without an error")
    }
    check(real.lost, "connectionLost was not called")

    let modelScript = NetstringScript(ops: ops)
    let model = ModelNetstringReceiver(script: modelScript, maxLength: maxLength)
    if driveModel(stream, plan, disconnecting: { model.disconnecting }, receive: model.dataReceived) != nil {
        record(&modelScript.events, .failed("broken"))
    }

    compare(real.script.events, modelScript.events, "NetstringReceiver")
    return 0
}

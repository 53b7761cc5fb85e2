// The poetry client of Dave Peticolas's "Twisted Introduction" (get-poetry,
// PoetryProtocol and PoetryClientFactory), in Swisted. One factory for all
// the servers; it numbers the tasks as it builds one protocol per connection.
import Glibc
import Swisted

/// One download: collects the poem from one server as it trickles in.
public final class PoetryProtocol: Protocol {
    /// The bytes received so far. A chunk may end in the middle of a UTF-8
    /// character, so the poem is kept as bytes and decoded only at the end.
    public var poem: [UInt8] = []
    /// Set by the factory in `buildProtocol`: 1, 2, 3...
    public var taskNum = 0

    public override func dataReceived(_ data: Span<UInt8>) throws {
        poem += data.array
        poetryFactory.output("Task \(taskNum): got \(data.count) bytes of poetry from \(transport!.getPeer())")
    }

    public override func connectionLost(_ reason: any Error) {
        poemReceived(poem, reason: reason)
    }

    func poemReceived(_ poem: [UInt8], reason: any Error) {
        poetryFactory.poemFinished(taskNum, poem, complete: reason is ConnectionDone)
    }

    private var poetryFactory: PoetryClientFactory { factory as! PoetryClientFactory }
}

/// Builds a ``PoetryProtocol`` for each connection, keeps the poems, and
/// stops the reactor once every address has given a poem or failed.
public final class PoetryClientFactory: ClientFactory {
    /// The number the next protocol gets.
    public var taskNum = 1
    /// Addresses still downloading (or still connecting).
    public private(set) var poetryCount: Int
    /// The poems received, by task number.
    public private(set) var poems: [Int: [UInt8]] = [:]
    /// Destinations that could not be reached, and downloads cut short.
    public private(set) var failures = 0
    /// Where the report lines go: standard output, a line at a time.
    public var output: (String) -> Void = { line in
        print(line)
        fflush(nil)  // when piped, each line still shows as it happens
    }

    private let reactor: Reactor

    public init(poetryCount: Int, reactor: Reactor) {
        self.poetryCount = poetryCount
        self.reactor = reactor
        super.init(protocolType: PoetryProtocol.self)
    }

    public override func buildProtocol(_ address: any Address) -> Protocol? {
        let proto = super.buildProtocol(address) as! PoetryProtocol
        proto.taskNum = taskNum
        taskNum += 1
        return proto
    }

    /// One address is done: with its poem, or (no arguments) with nothing.
    public func poemFinished(_ taskNum: Int? = nil, _ poem: [UInt8]? = nil, complete: Bool = true) {
        if let taskNum, let poem {
            poems[taskNum] = poem
        }
        if !complete || poem == nil {
            failures += 1
        }
        poetryCount -= 1
        if poetryCount == 0 {
            report()
            try? reactor.stop()
        }
    }

    /// One line per poem, in task order: its length in characters.
    public func report() {
        for (taskNum, poem) in poems.sorted(by: { $0.key < $1.key }) {
            output("Task \(taskNum): \(characterCount(poem)) characters of poetry")
        }
    }

    public override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        output("Failed to connect to: \(connector.getDestination())")
        poemFinished()
    }
}

/// The length of a UTF-8 poem as Python's `len()` counts it: Unicode code points.
public func characterCount(_ poem: [UInt8]) -> Int {
    String(decoding: poem, as: UTF8.self).unicodeScalars.count
}

/// A command-line address that is not `[HOST:]PORT`.
public struct AddressError: Error, CustomStringConvertible {
    public let description: String
}

/// Parses `[HOST:]PORT` as get-poetry takes it: `10001`, `localhost:10001`,
/// `127.0.0.1:10001`, `[::1]:10001`. The host defaults to 127.0.0.1.
public func parseAddress(_ text: String) throws(AddressError) -> (host: String, port: Int) {
    var host = "127.0.0.1"
    var port = Substring(text)
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"),
              text[text.index(after: close)...].hasPrefix(":") else {
            throw AddressError(description: "Bad address \(text): write an IPv6 address as [HOST]:PORT.")
        }
        host = String(text[text.index(after: text.startIndex)..<close])
        port = text[text.index(close, offsetBy: 2)...]
    } else if let colon = text.firstIndex(of: ":") {
        if !text[colon...].dropFirst().allSatisfy({ $0 != ":" }) {
            throw AddressError(description: "Bad address \(text): write an IPv6 address in brackets, [HOST]:PORT.")
        }
        if colon != text.startIndex { host = String(text[..<colon]) }
        port = text[text.index(after: colon)...]
    }
    guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }) else {
        throw AddressError(description: "Ports must be integers: \(text)")
    }
    guard let number = Int(port), number <= 65535 else {
        throw AddressError(description: "Ports must be in 0...65535: \(text)")
    }
    return (host, number)
}

/// Formats a duration as Python prints a `datetime.timedelta`:
/// `0:00:02.103000`, or `0:00:02` when there are no microseconds.
public func formatElapsed(_ seconds: Double) -> String {
    var micro = Int((max(0, seconds) * 1_000_000).rounded())
    let days = micro / 86_400_000_000
    micro %= 86_400_000_000
    let hours = micro / 3_600_000_000
    let minutes = micro / 60_000_000 % 60
    let wholeSeconds = micro / 1_000_000 % 60
    micro %= 1_000_000
    func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    var text = "\(hours):\(pad(minutes, 2)):\(pad(wholeSeconds, 2))"
    if micro != 0 { text += "." + pad(micro, 6) }
    if days != 0 { text = "\(days) day\(days == 1 ? "" : "s"), " + text }
    return text
}

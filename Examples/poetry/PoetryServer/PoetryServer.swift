// The poetry server of the "Twisted Introduction": the fast one (write the
// whole poem, hang up) and the slow one (a few bytes every so often), on
// reactor timers, so one process serves many clients at once, each at its
// own place in the poem.
import Glibc
import Swisted

/// Sends the poem to one client.
public final class PoetryProtocol: Protocol {
    /// How much of the poem this client has been sent.
    public private(set) var position = 0
    private var nextChunk: DelayedCall?

    public override func connectionMade() throws {
        let factory = poetryFactory
        factory.output("Somebody at \(transport!.getPeer()) wants poetry!")
        if factory.delay == 0 {
            transport!.write(factory.poem)
            transport!.loseConnection()
        } else {
            sendNextChunk()
        }
    }

    /// Writes the next `numBytes` bytes; hangs up after the last, else comes back in `delay` seconds.
    private func sendNextChunk() {
        let factory = poetryFactory
        let end = min(position + factory.numBytes, factory.poem.count)
        transport!.write(factory.poem[position..<end])
        position = end
        if position == factory.poem.count {
            transport!.loseConnection()
        } else {
            nextChunk = factory.reactor.callLater(factory.delay) { [weak self] in
                self?.sendNextChunk()
            }
        }
    }

    public override func connectionLost(_ reason: any Error) {
        // A client that leaves early ends only its own transfer.
        if let nextChunk, nextChunk.active {
            try? nextChunk.cancel()
        }
        nextChunk = nil
    }

    private var poetryFactory: PoetryFactory { factory as! PoetryFactory }
}

/// Holds the poem and how to serve it; builds a ``PoetryProtocol`` per client.
public final class PoetryFactory: ServerFactory {
    public let poem: [UInt8]
    /// Seconds between chunks; 0 sends the whole poem at once.
    public let delay: Double
    /// Bytes per chunk in slow mode.
    public let numBytes: Int
    /// Schedules the slow mode's chunks: the program's `Reactor`, or a
    /// SwistedTesting `Clock` in tests.
    public let reactor: any ReactorTime
    /// Where the log lines go: standard output, a line at a time.
    public var output: (String) -> Void = { line in
        print(line)
        fflush(nil)
    }

    public init(poem: [UInt8], delay: Double, numBytes: Int, reactor: any ReactorTime) {
        self.poem = poem
        self.delay = delay
        self.numBytes = numBytes
        self.reactor = reactor
        super.init(protocolType: PoetryProtocol.self)
    }

}

/// A poetry file that cannot be read.
public struct PoemFileError: Error, CustomStringConvertible {
    public let description: String
}

/// Reads a whole file as bytes, with the system's reason on failure
/// (`No such file or directory`, `Is a directory`, `Permission denied`).
public func readPoem(_ path: String) throws(PoemFileError) -> [UInt8] {
    func failure() -> PoemFileError {
        PoemFileError(description: "cannot read \(path): \(String(cString: strerror(errno)))")
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure() }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw failure()
        }
        if count == 0 { return bytes }
        bytes += buffer[..<count]
    }
}

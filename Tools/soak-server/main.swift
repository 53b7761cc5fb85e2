// The soak server: a Swisted echo server under `make soak`, with a control
// port that reports its counters. Started by soak-driver; see Tools/README.md.
//
//   soak-server [--port N] [--control-port N]
//
// Prints one line when both ports listen:
//   soak-server echo=PORT control=PORT
// then serves until SIGTERM or SIGINT, when the reactor stops. On the way
// out it checks that every handle was closed and exits 0, or 1 if not (or
// if any unexpected error was seen).
//
// Threading: everything here runs on the reactor's thread (main).
import Glibc
import Swisted

// MARK: Counters

/// What the server counts, reported by the control port's `stats` command.
/// Reactor thread only.
final class Counters {
    var made = 0
    var lost = 0
    /// connectionLost reasons.
    var lostDone = 0
    var lostReset = 0
    var lostOther = 0
    var bytesEchoed = 0
    /// Times the echo paused reading because its write buffer passed the high-water mark.
    var pauses = 0
    /// The most bytes one connection's transport held unsent (its `bufferSize`) after a write.
    var maxBuffered = 0
    var halfCloses = 0
    /// Lines the reactor logged (every one of them is unexpected here) and
    /// connections lost for a reason other than a clean close or a reset.
    var unexpected = 0

    /// Counts an unexpected error and writes it to standard error.
    func unexpected(_ message: String) {
        unexpected += 1
        say("soak-server: unexpected: \(message)", to: 2)
    }
}

// MARK: Faults

/// A fault to plant on purpose, to see the soak catch it (SOAK_FAULT; see
/// Tools/README.md). None by default.
enum Fault: String {
    case none
    /// Keeps 4 KiB per connection forever: RSS grows.
    case leakMemory = "leak-memory"
    /// Opens /dev/null on every 100th connection and never closes it: fds grow.
    case leakFD = "leak-fd"
    /// Flips the first byte echoed on every 1000th connection.
    case corrupt
    /// Every 1000th connection ignores the peer's EOF and stays open.
    case hold

    static let current: Fault = {
        guard let name = getenv("SOAK_FAULT").map({ String(cString: $0) }), !name.isEmpty else { return .none }
        guard let fault = Fault(rawValue: name) else {
            say("soak-server: unknown SOAK_FAULT \(name)", to: 2)
            exit(2)
        }
        return fault
    }()
}

/// What the leak-memory fault keeps.
nonisolated(unsafe) var leaked: [[UInt8]] = []

// MARK: Echo

/// Echoes every byte back, with bounded memory: the protocol registers as
/// its transport's push producer and passes pause/resume on to the
/// transport's reading, so reading stops while more than the high-water mark
/// (64 KiB) waits to be sent; a slow reader cannot make the server buffer
/// more than one read (64 KiB) beyond it. On the peer's EOF it unregisters,
/// finishes sending what it echoed, then closes.
final class SoakEcho: Protocol, HalfCloseableProtocol, PushProducer {
    var counters: Counters { (factory as! SoakEchoFactory).counters }
    /// Which connection this is (1, 2, ...), for the planted faults.
    private var number = 0
    private var echoed = 0

    override func connectionMade() throws {
        counters.made += 1
        number = counters.made
        switch Fault.current {
        case .leakMemory: leaked.append([UInt8](repeating: 1, count: 4096))
        case .leakFD where number % 100 == 0: _ = open("/dev/null", O_RDONLY)
        default: break
        }
        // Ourselves as the producer: pausing us pauses the transport's reading.
        try transport!.registerProducer(self, streaming: true)
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        counters.bytesEchoed += data.count
        if Fault.current == .corrupt, number % 1000 == 0, echoed == 0 {
            var copy = data.array
            copy[0] ^= 0xff
            transport!.write(copy)
        } else {
            transport!.write(data)
        }
        echoed += data.count
        counters.maxBuffered = max(counters.maxBuffered, transport!.bufferSize)
    }

    func pauseProducing() {
        counters.pauses += 1
        transport?.pauseProducing()
    }

    func resumeProducing() {
        transport?.resumeProducing()
    }

    func stopProducing() {}

    /// The peer shut down its write side: everything it sent has been
    /// echoed or queued; close once it is sent.
    func readConnectionLost() {
        counters.halfCloses += 1
        if Fault.current == .hold, number % 1000 == 0 { return }
        transport!.unregisterProducer()
        transport!.loseConnection()
    }

    func writeConnectionLost() {}

    override func connectionLost(_ reason: any Error) {
        counters.lost += 1
        switch reason {
        case is ConnectionDone:
            counters.lostDone += 1
        case let lost as ConnectionLost where lost.underlying == .connectionReset || lost.underlying == .brokenPipe:
            // A client that closes with SO_LINGER 0 (the abort and reset
            // scenarios) shows up as one of these two.
            counters.lostReset += 1
        default:
            counters.lostOther += 1
            counters.unexpected("echo connection from \(transport.map { "\($0.getPeer())" } ?? "?") lost: \(reason)")
        }
    }
}

final class SoakEchoFactory: ServerFactory {
    let counters: Counters

    init(counters: Counters) {
        self.counters = counters
        super.init(protocolType: SoakEcho.self)
    }
}

// MARK: Control

/// The control port's protocol: `stats\n` → one line of `key=value` pairs.
/// Anything else → `error unknown command`.
final class Control: LineReceiver {
    required init() {
        super.init()
        delimiter = Array("\n".utf8)
        maxLength = 256
    }

    override func lineReceived(_ line: Span<UInt8>) throws {
        let command = line.string.trimmingSuffix("\r")
        let factory = factory as! ControlFactory
        switch command {
        case "stats":
            sendLine(factory.statsLine())
        default:
            sendLine("error unknown command")
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}

final class ControlFactory: ServerFactory {
    let counters: Counters
    let reactor: Reactor

    init(counters: Counters, reactor: Reactor) {
        self.counters = counters
        self.reactor = reactor
        super.init(protocolType: Control.self)
    }

    func statsLine() -> String {
        let c = counters
        let pairs: [(String, Int)] = [
            ("fds", openFileDescriptors()),
            ("handles", reactor.openHandleCount),
            ("rss", residentBytes()),
            ("made", c.made),
            ("lost", c.lost),
            ("open", c.made - c.lost),
            ("lost_done", c.lostDone),
            ("lost_reset", c.lostReset),
            ("lost_other", c.lostOther),
            ("bytes", c.bytesEchoed),
            ("pauses", c.pauses),
            ("max_buffered", c.maxBuffered),
            ("half_closes", c.halfCloses),
            ("unexpected", c.unexpected),
        ]
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
    }
}

// MARK: Process figures

/// Open file descriptors of this process: the entries of /proc/self/fd,
/// less the one `opendir` itself holds while counting. -1 if unreadable.
func openFileDescriptors() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if name != ".", name != ".." { count += 1 }
    }
    return count - 1
}

/// Resident set size in bytes (second field of /proc/self/statm, in pages). -1 if unreadable.
func residentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return -1 }
    let fields = String(decoding: buffer[..<n], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return -1 }
    return pages * sysconf(Int32(_SC_PAGESIZE))
}

/// Writes `text` and a newline to a file descriptor (1: stdout, 2: stderr), unbuffered.
func say(_ text: String, to fd: Int32 = 1) {
    var line = text + "\n"
    line.withUTF8 { buffer in _ = write(fd, buffer.baseAddress, buffer.count) }
}

// MARK: Main

func parsePort(_ name: String, in arguments: [String]) -> Int {
    guard let index = arguments.firstIndex(of: name) else { return 0 }
    guard index + 1 < arguments.count, let port = Int(arguments[index + 1]), (0...65535).contains(port) else {
        say("soak-server: \(name) needs a port number (0...65535)", to: 2)
        exit(2)
    }
    return port
}

let arguments = Array(CommandLine.arguments.dropFirst())
if Fault.current != .none { say("soak-server: planting fault \(Fault.current.rawValue)", to: 2) }
let reactor = Reactor()
let counters = Counters()
reactor.logHandler = { message in counters.unexpected(message) }

let echoPort: ListeningPort
let controlPort: ListeningPort
do {
    echoPort = try reactor.listenTCP(parsePort("--port", in: arguments), SoakEchoFactory(counters: counters),
                                     backlog: 1024, interface: "127.0.0.1")
    controlPort = try reactor.listenTCP(parsePort("--control-port", in: arguments),
                                        ControlFactory(counters: counters, reactor: reactor),
                                        backlog: 16, interface: "127.0.0.1")
} catch {
    say("soak-server: \(error)", to: 2)
    exit(2)
}
say("soak-server echo=\((echoPort.getHost() as! any IPAddress).port) control=\((controlPort.getHost() as! any IPAddress).port)")

do {
    try reactor.run(installSignalHandlers: true)
} catch {
    say("soak-server: \(error)", to: 2)
    exit(2)
}

// Stopped: every port and connection must be closed now.
let leftHandles = reactor.openHandleCount
say("soak-server stopped: handles=\(leftHandles) made=\(counters.made) lost=\(counters.lost) unexpected=\(counters.unexpected)")
exit(leftHandles == 0 && counters.made == counters.lost && counters.unexpected == 0 ? 0 : 1)

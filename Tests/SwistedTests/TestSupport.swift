// Shared helpers for the TCP transport tests: recording protocols and
// factories, a watchdog'd reactor run, and raw POSIX sockets for the cases
// Swisted itself cannot produce (a peer that never reads, a reset, a full
// accept queue). Everything here is loopback only.

import Glibc
import Swisted
import Testing

// MARK: Running a reactor

/// Runs `reactor` on this thread until something calls `stop()`, with a
/// watchdog: after `timeLimit` seconds the test fails and the reactor stops,
/// so a bug can never hang the suite. Afterwards checks that the reactor is
/// stopped and every handle was closed.
func runReactor(_ reactor: Reactor, timeLimit: Double = 5, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let watchdog = Watchdog()
    let call = reactor.callLater(timeLimit) { [unowned reactor] in
        watchdog.fired = true
        try? reactor.stop()
    }
    try reactor.run()
    if call.active { try? call.cancel() }
    #expect(!watchdog.fired, "the watchdog stopped the reactor after \(timeLimit) s: the test never finished by itself", sourceLocation: sourceLocation)
    #expect(!reactor.running, sourceLocation: sourceLocation)
    #expect(reactor.openHandleCount == 0, "handles left open after run() returned", sourceLocation: sourceLocation)
}

final class Watchdog {
    var fired = false
}

/// Everything the reactor logged through `logHandler`.
final class LogCapture {
    var messages: [String] = []

    init(_ reactor: Reactor) {
        reactor.logHandler = { [unowned self] message in self.messages.append(message) }
    }
}

/// Runs `action` once, when `tick()` has been called `count` times.
final class Countdown {
    private var remaining: Int
    private let action: () -> Void
    init(_ count: Int, _ action: @escaping () -> Void) {
        remaining = count
        self.action = action
    }
    func tick() {
        remaining -= 1
        if remaining == 0 { action() }
    }
}

/// An ordered list of events, to assert on order and counts.
final class EventLog {
    var events: [String] = []
    func add(_ event: String) { events.append(event) }
    func count(_ event: String) -> Int { events.filter { $0 == event }.count }
}

// MARK: Protocols

/// Echoes every byte back.
final class Echo: Protocol {
    override func dataReceived(_ data: Span<UInt8>) throws {
        transport!.write(data)
    }
}

/// A protocol that records everything that happens to it and runs the
/// test's closures. Closures get the probe as an argument (no cycles).
final class Probe: Protocol {
    var onMade: ((Probe) throws -> Void)?
    var onData: ((Probe, [UInt8]) throws -> Void)?
    var onLost: ((Probe, any Error) -> Void)?
    /// Keeps only a running count and checksum of received bytes (for big transfers).
    var keepBytes = true

    private(set) var madeCount = 0
    private(set) var dataCount = 0
    private(set) var lostCount = 0
    private(set) var lostReason: (any Error)?
    private(set) var received: [UInt8] = []
    private(set) var receivedCount = 0
    /// Position-sensitive check of the bytes received so far (see `patternByte`).
    private(set) var patternMismatches = 0
    var log: EventLog?
    var name = "proto"

    override func connectionMade() throws {
        madeCount += 1
        log?.add("\(name).connectionMade")
        try onMade?(self)
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        dataCount += 1
        let bytes = data.array
        if keepBytes {
            received += bytes
        } else {
            var offset = receivedCount
            var mismatches = 0
            bytes.withUnsafeBufferPointer { buffer in
                for byte in buffer {
                    if byte != patternByte(offset) { mismatches += 1 }
                    offset += 1
                }
            }
            patternMismatches += mismatches
        }
        receivedCount += bytes.count
        try onData?(self, bytes)
    }

    override func connectionLost(_ reason: any Error) {
        lostCount += 1
        lostReason = reason
        log?.add("\(name).connectionLost")
        onLost?(self, reason)
        // The last callback: drop the closures, so one that captures a port,
        // connector or factory holding this probe (RecordingFactory keeps
        // its protocols) makes no cycle that outlives the test.
        onMade = nil
        onData = nil
        onLost = nil
    }

    var receivedString: String { String(decoding: received, as: UTF8.self) }
}

/// The byte at `offset` of the test pattern: position-dependent, so a lost,
/// duplicated or reordered chunk shows up as mismatches.
@inline(__always)
func patternByte(_ offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: offset &* 7 &+ (offset >> 13))
}

func pattern(count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for index in 0..<count { buffer[index] = patternByte(index) }
        initialized = count
    }
}

// MARK: Factories

/// A client (or server) factory that counts every call and runs the test's closures.
final class RecordingFactory: ClientFactory {
    var build: ((any Address) -> Protocol?)?
    var onStartedConnecting: ((Connector) -> Void)?
    var onFailed: ((Connector, any Error) -> Void)?
    var onLost: ((Connector, any Error) -> Void)?
    var log: EventLog?

    private(set) var startCount = 0
    private(set) var stopCount = 0
    private(set) var buildCount = 0
    private(set) var startedConnectingCount = 0
    private(set) var failedCount = 0
    private(set) var lostCount = 0
    private(set) var failedReason: (any Error)?
    private(set) var lostReason: (any Error)?
    private(set) var builtAddresses: [String] = []
    /// The protocols `build` returned, in order.
    private(set) var protocols: [Protocol] = []

    init() { super.init() }

    override func buildProtocol(_ address: any Address) -> Protocol? {
        buildCount += 1
        builtAddresses.append(address.description)
        log?.add("buildProtocol")
        let proto = build.map { $0(address) } ?? super.buildProtocol(address)
        if let proto { protocols.append(proto) }
        return proto
    }

    override func startFactory() {
        startCount += 1
        log?.add("startFactory")
    }

    override func stopFactory() {
        stopCount += 1
        log?.add("stopFactory")
    }

    override func startedConnecting(_ connector: Connector) {
        startedConnectingCount += 1
        log?.add("startedConnecting")
        onStartedConnecting?(connector)
    }

    override func clientConnectionFailed(_ connector: Connector, reason: any Error) {
        failedCount += 1
        failedReason = reason
        log?.add("clientConnectionFailed")
        onFailed?(connector, reason)
    }

    override func clientConnectionLost(_ connector: Connector, reason: any Error) {
        lostCount += 1
        lostReason = reason
        log?.add("clientConnectionLost")
        onLost?(connector, reason)
    }

    var probes: [Probe] { protocols.compactMap { $0 as? Probe } }
}

// MARK: Addresses

extension ListeningPort {
    /// The port number the system gave (IPv4 or IPv6).
    var portNumber: Int { (getHost() as! any IPAddress).port }
}

/// Probes once whether this machine has an IPv6 loopback to listen on.
func ipv6LoopbackAvailable() -> Bool {
    let reactor = Reactor()
    reactor.logHandler = { _ in }
    let available: Bool
    do {
        let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "::1")
        port.stopListening()
        available = true
    } catch {
        available = false
    }
    reactor.callWhenRunning { try reactor.stop() }
    try? reactor.run()
    return available
}

// MARK: Raw POSIX sockets (loopback only)

enum Raw {
    /// A blocking IPv4 TCP socket, closed on exec (child processes the tests
    /// start must not inherit it).
    static func tcpSocket() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket() failed: errno \(errno)")
        return fd
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
        return address
    }

    /// A socket bound to 127.0.0.1 on an ephemeral port and listening with
    /// `backlog`, never accepting. Returns the socket and its port.
    static func listener(backlog: Int32) -> (fd: Int32, port: Int) {
        let fd = tcpSocket()
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(bound == 0, "bind failed: errno \(errno)")
        precondition(listen(fd, backlog) == 0, "listen failed: errno \(errno)")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        precondition(named == 0, "getsockname failed: errno \(errno)")
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Connects a new socket to 127.0.0.1:`port`. Blocking unless `nonBlocking`
    /// (then the connect may still be in progress). Returns the socket.
    static func connect(port: Int, nonBlocking: Bool = false) -> Int32 {
        let fd = tcpSocket()
        return connect(fd, port: port, nonBlocking: nonBlocking)
    }

    static func connect(_ fd: Int32, port: Int, nonBlocking: Bool = false) -> Int32 {
        if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        var address = loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(rc == 0 || (nonBlocking && errno == EINPROGRESS), "connect failed: errno \(errno)")
        return fd
    }

    /// Makes the next `close` send a reset (RST) instead of a FIN.
    static func setLingerZero(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        let rc = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        precondition(rc == 0, "setsockopt(SO_LINGER) failed: errno \(errno)")
    }

    /// Shrinks the receive buffer so a peer that does not read fills up quickly.
    static func setReceiveBuffer(_ fd: Int32, bytes: Int32) {
        var size = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Connections completed and waiting in a listening socket's accept queue (Linux TCP_INFO).
    static func acceptQueueLength(_ fd: Int32) -> Int {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 else { return -1 }
        return Int(info.tcpi_unacked)  // for a listening socket: sk_ack_backlog
    }

    /// Reads whatever is available without blocking; returns the byte count (0 if none, -1 at EOF or error).
    static func readAvailable(_ fd: Int32, into sink: inout [UInt8]) -> Int {
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                sink += buffer[0..<n]
                total += n
                continue
            }
            if n == 0 { return total > 0 ? total : -1 }
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? total : (total > 0 ? total : -1)
        }
    }
}

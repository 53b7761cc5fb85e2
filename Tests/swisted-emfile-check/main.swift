// swisted-emfile-check: a Swisted server that runs out of file descriptors
// on purpose, started by Tests/SwistedTests/EMFILETests.swift as a child
// process (the low RLIMIT_NOFILE must not touch the test process).
//
//     swisted-emfile-check libuv-reserve|own-reserve FREE [UNIX-SOCKET-PATH]
//
// It listens on 127.0.0.1 (port 0), or on the Unix socket given, lowers its soft RLIMIT_NOFILE so that
// exactly FREE descriptor numbers are left free, prints
// `PORT <port> FREE <free> LIMIT <limit>` (port 0 for a Unix socket) and serves until told to quit.
//
// Modes:
// - libuv-reserve: nothing special; libuv's reserve descriptor (opened with
//   the first stream handle) sits below the limit, so libuv's own EMFILE
//   trick handles running out: extra connections are accepted and closed.
// - own-reserve: libuv's reserve is made to sit above the limit (the first
//   stream handle is made while 64 placeholder descriptors fill the low
//   numbers, which are then closed), so freeing it frees no usable number
//   and libuv reports EMFILE to the port: the port's own reserve must
//   handle it (see ListeningPort, "Running out of file descriptors").
//
// Every connection speaks lines:
//   echo TEXT      -> TEXT
//   stats          -> open <connections> logs <log lines>   (answered in a later
//                     loop round, after the connections that arrived with it)
//   await-open N   -> open <connections>, once at most N connections are open
//   cpu SECONDS    -> cpu <process CPU seconds> wall <seconds>, over a window of
//                     SECONDS starting now (getrusage)
//   quit           -> bye, then the reactor stops
// After the reactor stopped it prints `LOG <line>` per logged line,
// `HANDLES <reactor.openHandleCount>`, then `DONE`.

import Glibc
import Swisted

func say(_ line: String) {
    print(line)
    fflush(nil)
}

let arguments = CommandLine.arguments
guard arguments.count == 3 || arguments.count == 4, ["libuv-reserve", "own-reserve"].contains(arguments[1]),
      let free = Int(arguments[2]), free > 0 else {
    say("usage: swisted-emfile-check libuv-reserve|own-reserve FREE [UNIX-SOCKET-PATH]")
    exit(2)
}
let mode = arguments[1]
let unixPath = arguments.count == 4 ? arguments[3] : nil

func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

// Descriptors inherited from the test process (its sockets, if the spawn
// left them open) would blur the count below, and would keep the test
// process's own sockets alive: close them first.
for fd in Int32(3)..<Int32(4096) where isOpen(fd) { close(fd) }

func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Shared state (one thread: the reactor runs on the main thread).
final class Server {
    let reactor: Reactor
    var logs: [String] = []
    var open = 0
    var openWaiters: [(limit: Int, reply: () -> Void)] = []

    init(reactor: Reactor) {
        self.reactor = reactor
    }

    func connectionsChanged() {
        let ready = openWaiters.filter { open <= $0.limit }
        openWaiters.removeAll { open <= $0.limit }
        for waiter in ready { waiter.reply() }
    }
}

final class LineServer: Protocol {
    var server: Server!  // set by LineFactory
    var buffer: [UInt8] = []

    override func connectionMade() throws {
        server.open += 1
    }

    override func connectionLost(_ reason: any Error) {
        server.open -= 1
        server.connectionsChanged()
    }

    override func dataReceived(_ data: Span<UInt8>) throws {
        buffer += data.array
        while let newline = buffer.firstIndex(of: 10) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeSubrange(...newline)
            handle(line)
        }
    }

    func reply(_ line: String) {
        transport?.write(line + "\n")
    }

    func handle(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        let rest = words.count > 1 ? words[1] : ""
        let reactor = server.reactor
        switch words.first ?? "" {
        case "echo":
            reply(rest)
        case "stats":
            reactor.callLater(0) { [self] in reply("open \(server.open) logs \(server.logs.count)") }
        case "await-open":
            let limit = Int(rest) ?? 0
            server.openWaiters.append((limit, { [self] in reply("open \(server.open)") }))
            server.connectionsChanged()
        case "cpu":
            let window = Double(rest) ?? 0.5
            let cpu = processCPUSeconds(), wall = reactor.seconds()
            reactor.callLater(window) { [self] in
                reply("cpu \(processCPUSeconds() - cpu) wall \(reactor.seconds() - wall)")
            }
        case "quit":
            reply("bye")
            reactor.callLater(0) { try reactor.stop() }
        default:
            reply("unknown \(line)")
        }
    }
}

final class LineFactory: Factory {
    let server: Server
    init(_ server: Server) {
        self.server = server
        super.init()
    }
    override func buildProtocol(_ address: any Address) -> Protocol? {
        let proto = LineServer()
        proto.server = server
        return proto
    }
}

// Everything lives in this function's scope, so the reactor, its ports and
// any calls still pending are freed before the process exits: LeakSanitizer
// cannot see Swift's weak-reference side tables (a DelayedCall's weak queue,
// the port's [weak self] retry call) inside objects still alive at exit (in
// globals) and would report each side table as a leak.
func serve() throws -> (logs: [String], handles: Int) {
    let reactor = Reactor()
    let server = Server(reactor: reactor)
    reactor.logHandler = { server.logs.append($0) }

    if mode == "own-reserve" {
        var placeholders: [Int32] = []
        for _ in 0..<64 { placeholders.append(open("/dev/null", O_RDONLY | O_CLOEXEC)) }
        // libuv opens its reserve with the first stream handle: now, above the placeholders.
        let first = try reactor.listenTCP(0, Factory(), interface: "127.0.0.1")
        first.stopListening()
        for fd in placeholders where fd >= 0 { close(fd) }
    }

    let port = try unixPath.map { try reactor.listenUNIX($0, LineFactory(server)) }
        ?? reactor.listenTCP(0, LineFactory(server), interface: "127.0.0.1")
    let portNumber = (port.getHost() as? any IPAddress)?.port ?? 0

    // The lowest limit that leaves exactly `free` descriptor numbers free below it.
    var limit: Int32 = 0
    var found = 0
    while found < free {
        if !isOpen(limit) { found += 1 }
        limit += 1
    }
    var resourceLimit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &resourceLimit)
    resourceLimit.rlim_cur = rlim_t(limit)
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &resourceLimit) == 0 else {
        say("setrlimit failed: errno \(errno)")
        exit(1)
    }
    if mode == "own-reserve" {
        // libuv's reserve must sit above the limit for this mode to mean anything.
        let above = (limit..<(limit + 256)).contains { fd in
            var target = [CChar](repeating: 0, count: 64)
            let n = readlink("/proc/self/fd/\(fd)", &target, 63)
            return n > 0 && String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "/dev/null"
        }
        guard above else {
            say("libuv's reserve descriptor is not above the limit \(limit)")
            exit(1)
        }
    }

    say("PORT \(portNumber) FREE \(free) LIMIT \(limit)")
    try reactor.run()
    // Break the cycles that only matter at exit: the log handler holds the
    // server, which holds the reactor; waiters hold their connections.
    reactor.logHandler = nil
    server.openWaiters.removeAll()
    return (server.logs, reactor.openHandleCount)
}

let (logs, handles) = try serve()
for line in logs { say("LOG \(line)") }
say("HANDLES \(handles)")
say("DONE")
exit(0)

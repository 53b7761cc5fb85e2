// Running out of file descriptors while accepting (EMFILE): the server is
// the `swisted-emfile-check` helper, a child process with a low
// RLIMIT_NOFILE (the limit never touches this test process). This side
// opens connections past its limit with blocking loopback sockets and
// checks, over those same connections: no crash, no spinning (the child's
// CPU time over a window while at the limit), the existing connections
// still echo, and new connections are served once descriptors are free.

import Foundation
import Glibc
import Testing

/// The directory holding the built executables: the test bundle's own (`.build/debug`).
let helperDirectory: URL = {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: me).deletingLastPathComponent()
}()

/// A blocking loopback TCP connection that speaks lines; every read gives up after 10 s.
private final class LineConnection {
    enum Reply: Equatable {
        case line(String)
        case closed  // EOF or reset: the server dropped the connection
        case timedOut
    }

    private(set) var fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to 127.0.0.1:`port`.
    init(port: Int) {
        fd = LineConnection.socket(AF_INET)
        _ = Raw.connect(fd, port: port)
    }

    /// Connects to the Unix socket at `path`.
    init(unixPath path: String) {
        fd = LineConnection.socket(AF_UNIX)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            let bytes = Array(path.utf8)
            precondition(bytes.count < buffer.count, "socket path too long")
            buffer.copyBytes(from: bytes)
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        precondition(rc == 0, "connect(\(path)) failed: errno \(errno)")
    }

    private static func socket(_ family: Int32) -> Int32 {
        let fd = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket() failed: errno \(errno)")
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    @discardableResult
    func send(_ line: String) -> Bool {
        let bytes = Array((line + "\n").utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    func readLine() -> Reply {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return .line(line)
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer += chunk[..<n]
            } else if n == 0 {
                return .closed
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                return .timedOut
            } else {
                return .closed  // ECONNRESET
            }
        }
    }

    func ask(_ line: String) -> Reply {
        send(line)
        return readLine()
    }
}

/// The helper process, killed after `limit` seconds whatever happens.
private final class Helper {
    let process = Process()
    private let output = Pipe()
    private var pending: [UInt8] = []
    private(set) var lines: [String] = []

    init(mode: String, free: Int, unixPath: String? = nil, limit: Double = 30) throws {
        try #require(helperBuilt, "swisted-emfile-check is not built; run `swift build --build-tests` (or `make test`) first")
        process.executableURL = helperDirectory.appendingPathComponent("swisted-emfile-check")
        process.arguments = [mode, String(free)] + (unixPath.map { [$0] } ?? [])
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) { kill(pid, SIGKILL) }
    }

    /// The next line it printed, or nil at its end.
    func readLine() -> String? {
        while true {
            if let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                lines.append(line)
                return line
            }
            let data = output.fileHandleForReading.availableData
            if data.isEmpty {
                if pending.isEmpty { return nil }
                let line = String(decoding: pending, as: UTF8.self)
                pending = []
                lines.append(line)
                return line
            }
            pending += data
        }
    }

    /// Reads everything up to its end and waits for it to exit.
    func finish() -> Int32 {
        while readLine() != nil {}
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// `PORT p FREE k LIMIT l` → (p, k).
private func parseBanner(_ line: String?) -> (port: Int, free: Int)? {
    guard let words = line?.split(separator: " "), words.count == 6, words[0] == "PORT", words[2] == "FREE",
          let port = Int(words[1]), let free = Int(words[3]) else { return nil }
    return (port, free)
}

/// `cpu C wall W` → (C, W).
private func parseCPU(_ reply: LineConnection.Reply) -> (cpu: Double, wall: Double)? {
    guard case .line(let line) = reply else { return nil }
    let words = line.split(separator: " ")
    guard words.count == 4, words[0] == "cpu", let cpu = Double(words[1]), let wall = Double(words[3]) else { return nil }
    return (cpu, wall)
}

private let helperBuilt = FileManager.default.isExecutableFile(atPath: helperDirectory.appendingPathComponent("swisted-emfile-check").path)

/// The kind of socket the helper listens on.
enum SocketFamily: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case tcp, unix
    var testDescription: String { rawValue }
}

/// The helper, started listening on `family`, and how to connect to it.
private struct Server {
    let helper: Helper
    let free: Int
    let connect: () -> LineConnection
    private let directory: String?

    init(mode: String, family: SocketFamily) throws {
        var unixPath: String?
        if family == .unix {
            var template = Array("/tmp/swisted-emfile-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            let directory = try #require(made.map { String(cString: $0) }, "mkdtemp failed: errno \(errno)")
            self.directory = directory
            unixPath = directory + "/socket"
        } else {
            directory = nil
        }
        helper = try Helper(mode: mode, free: 8, unixPath: unixPath)
        let banner = try #require(parseBanner(helper.readLine()), "helper said: \(helper.lines)")
        free = banner.free
        if let unixPath {
            connect = { LineConnection(unixPath: unixPath) }
        } else {
            connect = { LineConnection(port: banner.port) }
        }
    }

    /// Removes the Unix socket's directory (the socket file is gone once the port closed).
    func cleanUp() {
        guard let directory else { return }
        unlink(directory + "/socket")
        rmdir(directory)
    }
}

@Suite("Reliability: out of file descriptors on accept (child process with a low RLIMIT_NOFILE)")
struct EMFILETests {
    /// Opens connections until one is not served; returns the served ones
    /// (which answered `echo`) and the reply of the first one that was not.
    private func fill(_ server: Server, upTo maximum: Int) -> (served: [LineConnection], extra: LineConnection, reply: LineConnection.Reply) {
        var served: [LineConnection] = []
        while true {
            let connection = server.connect()
            if served.count >= maximum {
                return (served, connection, .timedOut)  // not asked: the caller decides
            }
            let reply = connection.ask("echo \(served.count)")
            guard reply == .line("\(served.count)") else { return (served, connection, reply) }
            served.append(connection)
        }
    }

    /// Fills every free descriptor of an own-reserve server, then sends on
    /// one more connection: that one is accepted into the port's reserve
    /// descriptor and held, not served (accepting pauses, one log line).
    private func fillPastOwnReserve(_ server: Server) throws -> (served: [LineConnection], held: LineConnection, control: LineConnection) {
        let free = server.free
        let (served, held, _) = fill(server, upTo: free)
        #expect(served.count == free)
        let control = try #require(served.first)
        held.send("echo held")
        #expect(control.ask("stats") == .line("open \(free) logs 1"))
        return (served, held, control)
    }

    /// Waits for the helper to end (after `quit`): it must exit 0 with no
    /// handle left open. Returns its log lines.
    private func finish(_ helper: Helper) -> [String] {
        #expect(helper.finish() == 0, "helper output: \(helper.lines)")
        #expect(helper.lines.suffix(2) == ["HANDLES 0", "DONE"], "\(helper.lines)")
        return helper.lines.filter { $0.hasPrefix("LOG ") }
    }

    @Test("libuv's reserve: connections past the limit are closed at once, the server idles, the others echo, and it accepts again",
          arguments: SocketFamily.allCases)
    func libuvReserve(family: SocketFamily) throws {
        let server = try Server(mode: "libuv-reserve", family: family)
        defer { server.cleanUp() }
        let helper = server.helper
        let free = server.free

        // Every free descriptor number takes one connection: `free` are served.
        let (served, extra, extraReply) = fill(server, upTo: free + 2)
        #expect(served.count == free)
        #expect(extraReply == .closed, "the connection past the limit: \(extraReply)")
        extra.close()
        let control = try #require(served.first)

        // More connections keep coming while at the limit (each is dropped), then a quiet window.
        let more = (0..<5).map { _ in server.connect() }
        for connection in more {
            #expect(connection.ask("echo dropped?") == .closed)
        }
        let usage = try #require(parseCPU(control.ask("cpu 0.5")))
        #expect(usage.cpu < usage.wall * 0.5, "the server used \(usage.cpu) s of CPU in \(usage.wall) s at the limit")
        for connection in more { connection.close() }

        // The connections it had are untouched.
        for (index, connection) in served.enumerated() {
            #expect(connection.ask("echo still \(index)") == .line("still \(index)"))
        }

        // Two close; once the server saw it, new connections are served again.
        served[1].close()
        served[2].close()
        #expect(control.ask("await-open \(free - 2)") == .line("open \(free - 2)"))
        let again = server.connect()
        #expect(again.ask("echo back") == .line("back"))

        #expect(control.ask("quit") == .line("bye"))
        let logs = finish(helper)
        #expect(logs.isEmpty, "libuv handled it silently; logged: \(logs)")
    }

    @Test("the port's own reserve: when libuv's cannot help, accepting pauses (no spin, one log line), the others echo, and the held connection is served once descriptors free up",
          arguments: SocketFamily.allCases)
    func ownReserve(family: SocketFamily) throws {
        let server = try Server(mode: "own-reserve", family: family)
        defer { server.cleanUp() }
        let helper = server.helper
        let free = server.free

        // One more than fits: accepted into the port's reserve descriptor and held, not served.
        let (served, held, control) = try fillPastOwnReserve(server)

        let usage = try #require(parseCPU(control.ask("cpu 0.5")))
        #expect(usage.cpu < usage.wall * 0.5, "the server used \(usage.cpu) s of CPU in \(usage.wall) s while paused")

        for (index, connection) in served.enumerated() {
            #expect(connection.ask("echo still \(index)") == .line("still \(index)"))
        }

        // Four close: the port takes its reserve back and serves the held connection.
        for connection in served[1...4] { connection.close() }
        #expect(control.ask("await-open \(free - 4)") == .line("open \(free - 4)"))
        #expect(held.readLine() == .line("held"))
        #expect(control.ask("stats") == .line("open \(free - 3) logs 2"))
        let again = server.connect()
        #expect(again.ask("echo back") == .line("back"))

        #expect(control.ask("quit") == .line("bye"))
        let logs = finish(helper)
        #expect(logs.count == 2, "\(logs)")
        #expect(logs.first?.contains("out of file descriptors") == true && logs.first?.contains("pausing accepts") == true, "\(logs)")
        #expect(logs.last?.contains("free again") == true, "\(logs)")
    }

    @Test("the port's own reserve: reactor.stop() while accepting is paused closes the held connection and every handle",
          arguments: SocketFamily.allCases)
    func ownReserveStopWhilePaused(family: SocketFamily) throws {
        let server = try Server(mode: "own-reserve", family: family)
        defer { server.cleanUp() }
        let helper = server.helper

        let (_, held, control) = try fillPastOwnReserve(server)

        #expect(control.ask("quit") == .line("bye"))
        // libuv held it; closing the port closed it, unanswered.
        #expect(held.readLine() == .closed)
        let logs = finish(helper)
        #expect(logs.count == 1, "\(logs)")
    }
}

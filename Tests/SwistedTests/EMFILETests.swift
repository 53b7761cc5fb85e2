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
private let helperDirectory: URL = {
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

    init(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket() failed: errno \(errno)")
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = Raw.connect(fd, port: port)
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

    init(mode: String, free: Int, limit: Double = 30) throws {
        try #require(helperBuilt, "swisted-emfile-check is not built; run `swift build --build-tests` (or `make test`) first")
        process.executableURL = helperDirectory.appendingPathComponent("swisted-emfile-check")
        process.arguments = [mode, String(free)]
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

@Suite("Reliability: out of file descriptors on accept (child process with a low RLIMIT_NOFILE)")
struct EMFILETests {
    /// Opens connections until one is not served; returns the served ones
    /// (which answered `echo`) and the reply of the first one that was not.
    private func fill(port: Int, upTo maximum: Int) -> (served: [LineConnection], extra: LineConnection, reply: LineConnection.Reply) {
        var served: [LineConnection] = []
        while true {
            let connection = LineConnection(port: port)
            if served.count >= maximum {
                return (served, connection, .timedOut)  // not asked: the caller decides
            }
            let reply = connection.ask("echo \(served.count)")
            guard reply == .line("\(served.count)") else { return (served, connection, reply) }
            served.append(connection)
        }
    }

    @Test("libuv's reserve: connections past the limit are closed at once, the server idles, the others echo, and it accepts again")
    func libuvReserve() throws {
        let helper = try Helper(mode: "libuv-reserve", free: 8)
        let banner = try #require(parseBanner(helper.readLine()), "helper said: \(helper.lines)")

        // Every free descriptor number takes one connection: `free` are served.
        let (served, extra, extraReply) = fill(port: banner.port, upTo: banner.free + 2)
        #expect(served.count == banner.free)
        #expect(extraReply == .closed, "the connection past the limit: \(extraReply)")
        extra.close()
        let control = try #require(served.first)

        // More connections keep coming while at the limit (each is dropped), then a quiet window.
        let more = (0..<5).map { _ in LineConnection(port: banner.port) }
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
        #expect(control.ask("await-open \(banner.free - 2)") == .line("open \(banner.free - 2)"))
        let again = LineConnection(port: banner.port)
        #expect(again.ask("echo back") == .line("back"))

        #expect(control.ask("quit") == .line("bye"))
        #expect(helper.finish() == 0, "helper output: \(helper.lines)")
        let logs = helper.lines.filter { $0.hasPrefix("LOG ") }
        #expect(logs.isEmpty, "libuv handled it silently; logged: \(logs)")
        #expect(helper.lines.suffix(2) == ["HANDLES 0", "DONE"], "\(helper.lines)")
    }

    @Test("the port's own reserve: when libuv's cannot help, accepting pauses (no spin, one log line), the others echo, and the held connection is served once descriptors free up")
    func ownReserve() throws {
        let helper = try Helper(mode: "own-reserve", free: 8)
        let banner = try #require(parseBanner(helper.readLine()), "helper said: \(helper.lines)")

        let (served, held, _) = fill(port: banner.port, upTo: banner.free)
        #expect(served.count == banner.free)
        let control = try #require(served.first)

        // One more: accepted into the port's reserve descriptor and held, not served.
        held.send("echo held")
        #expect(control.ask("stats") == .line("open \(banner.free) logs 1"))

        let usage = try #require(parseCPU(control.ask("cpu 0.5")))
        #expect(usage.cpu < usage.wall * 0.5, "the server used \(usage.cpu) s of CPU in \(usage.wall) s while paused")

        for (index, connection) in served.enumerated() {
            #expect(connection.ask("echo still \(index)") == .line("still \(index)"))
        }

        // Four close: the port takes its reserve back and serves the held connection.
        for connection in served[1...4] { connection.close() }
        #expect(control.ask("await-open \(banner.free - 4)") == .line("open \(banner.free - 4)"))
        #expect(held.readLine() == .line("held"))
        #expect(control.ask("stats") == .line("open \(banner.free - 3) logs 2"))
        let again = LineConnection(port: banner.port)
        #expect(again.ask("echo back") == .line("back"))

        #expect(control.ask("quit") == .line("bye"))
        #expect(helper.finish() == 0, "helper output: \(helper.lines)")
        let logs = helper.lines.filter { $0.hasPrefix("LOG ") }
        #expect(logs.count == 2, "\(logs)")
        #expect(logs.first?.contains("out of file descriptors") == true && logs.first?.contains("pausing accepts") == true, "\(logs)")
        #expect(logs.last?.contains("free again") == true, "\(logs)")
        #expect(helper.lines.suffix(2) == ["HANDLES 0", "DONE"], "\(helper.lines)")
    }

    @Test("the port's own reserve: reactor.stop() while accepting is paused closes the held connection and every handle")
    func ownReserveStopWhilePaused() throws {
        let helper = try Helper(mode: "own-reserve", free: 8)
        let banner = try #require(parseBanner(helper.readLine()), "helper said: \(helper.lines)")

        let (served, held, _) = fill(port: banner.port, upTo: banner.free)
        #expect(served.count == banner.free)
        let control = try #require(served.first)
        held.send("echo held")
        #expect(control.ask("stats") == .line("open \(banner.free) logs 1"))

        #expect(control.ask("quit") == .line("bye"))
        // libuv held it; closing the port closed it, unanswered.
        #expect(held.readLine() == .closed)
        #expect(helper.finish() == 0, "helper output: \(helper.lines)")
        let logs = helper.lines.filter { $0.hasPrefix("LOG ") }
        #expect(logs.count == 1, "\(logs)")
        #expect(helper.lines.suffix(2) == ["HANDLES 0", "DONE"], "\(helper.lines)")
    }
}

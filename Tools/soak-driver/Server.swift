// The soak server as a child process, and its control port.
import Glibc

extension String {
    /// One decimal place.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}

/// soak-server, started with posix_spawn; its stdout comes to us through a pipe.
struct ServerProcess {
    let pid: pid_t
    let echoPort: Int
    let controlPort: Int
    private let output: Int32

    /// Starts the server and reads the ports from its first line. Exits the driver (status 2) on failure.
    init(path: String) {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { fail("pipe: \(errnoName(errno))") }
        // Neither end leaks into the child as is (dup2 gives it a fresh fd 1).
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        for pointer in argv { free(pointer) }
        close(pipeEnds[1])
        guard rc == 0 else { fail("cannot start \(path): \(String(cString: strerror(rc)))") }
        pid = child
        output = pipeEnds[0]
        guard let line = ServerProcess.readLine(output, timeout: 30),
              line.hasPrefix("soak-server "),
              let echo = ServerProcess.value("echo", in: line),
              let control = ServerProcess.value("control", in: line) else {
            kill(child, SIGKILL)
            fail("soak-server did not report its ports")
        }
        echoPort = echo
        controlPort = control
    }

    static func value(_ key: String, in line: String) -> Int? {
        for pair in line.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }

    /// Reads one line (without the newline) within `timeout` seconds.
    static func readLine(_ fd: Int32, timeout: Double) -> String? {
        var bytes: [UInt8] = []
        let giveUp = now() + timeout
        var byte: UInt8 = 0
        while now() < giveUp {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) >= 0 || errno == EINTR else { return nil }
            if pfd.revents == 0 { continue }
            let n = read(fd, &byte, 1)
            if n <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }

    /// SIGTERM, then wait (10 s at most, then SIGKILL). Returns the exit
    /// status (-1 if killed or stopped by a signal) and what it printed meanwhile.
    func terminate() -> (status: Int32, lines: [String]) {
        kill(pid, SIGTERM)
        var lines: [String] = []
        while let line = ServerProcess.readLine(output, timeout: 10) { lines.append(line) }
        var status: Int32 = 0
        let giveUp = now() + 10
        while waitpid(pid, &status, WNOHANG) == 0 {
            if now() > giveUp {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                lines.append("(killed: it did not stop within 10 s of SIGTERM)")
                return (-1, lines)
            }
            usleep(10_000)
        }
        close(output)
        // WIFEXITED / WEXITSTATUS by hand (they are macros).
        return (status & 0x7f == 0 ? (status >> 8) & 0xff : -1, lines)
    }
}

/// The persistent connection to the server's control port.
struct ControlConnection {
    let fd: Int32

    init(port: Int) {
        do {
            fd = try connectLoopback(port: port, timeout: 10)
        } catch {
            fail("control port: \(error.what)")
        }
    }

    /// Asks `stats`; returns the key=value pairs. Exits the driver (status 2) if the server does not answer.
    func stats() -> [String: Int] {
        let command = Array("stats\n".utf8)
        guard send(fd, command, command.count, Int32(MSG_NOSIGNAL)) == command.count else {
            fail("control port: send: \(errnoName(errno))")
        }
        guard let line = ServerProcess.readLine(fd, timeout: 10) else { fail("control port: no answer to stats") }
        var stats: [String: Int] = [:]
        for pair in line.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { stats[String(parts[0])] = value }
        }
        return stats
    }

    func close() { _ = Glibc.close(fd) }
}

// Raw loopback sockets for the load driver: Glibc calls and poll(2), no Swisted.
import Glibc

/// Writes `text` and a newline to a file descriptor (1: stdout, 2: stderr), unbuffered.
func say(_ text: String, to fd: Int32 = 1) {
    var line = text + "\n"
    line.withUTF8 { buffer in _ = write(fd, buffer.baseAddress, buffer.count) }
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// `ECONNRESET`-style name of an errno value.
func errnoName(_ code: Int32) -> String {
    switch code {
    case ECONNRESET: return "ECONNRESET"
    case EPIPE: return "EPIPE"
    case ECONNREFUSED: return "ECONNREFUSED"
    case ETIMEDOUT: return "ETIMEDOUT"
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
    case EMFILE: return "EMFILE"
    case ENOBUFS: return "ENOBUFS"
    case EINTR: return "EINTR"
    default: return "errno \(code)"
    }
}

/// A failed step of a scenario, named so that failures of one kind add up.
struct Failure: Error {
    let what: String
    /// A byte came back that was not the one sent (or more came back than was sent).
    var corrupt = false
}

/// Opens a non-blocking TCP connection to 127.0.0.1:`port`, waiting at most
/// `timeout` seconds. `receiveBuffer` > 0 sets SO_RCVBUF before connecting.
func connectLoopback(port: Int, timeout: Double, receiveBuffer: Int32 = 0) throws(Failure) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw Failure(what: "socket: \(errnoName(errno))") }
    if receiveBuffer > 0 {
        var size = receiveBuffer
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc == 0 { return fd }
    guard errno == EINPROGRESS else {
        let what = errnoName(errno)
        close(fd)
        throw Failure(what: "connect: \(what)")
    }
    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    let ready = poll(&pfd, 1, Int32(timeout * 1000))
    if ready <= 0 {
        close(fd)
        throw Failure(what: "connect: timed out")
    }
    var error: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
    if error != 0 {
        close(fd)
        throw Failure(what: "connect: \(errnoName(error))")
    }
    return fd
}

/// Closes with SO_LINGER 0: the kernel drops what is unsent and sends a reset.
func resetClose(_ fd: Int32) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    close(fd)
}

/// The bytes every connection sends: a fixed pseudo-random table, read from
/// a per-connection start offset. Its length is not a power of two, so a
/// 1 MiB exchange wraps around it at an odd place; a byte lost, repeated or
/// reordered shows up as a mismatch.
struct Pattern: Sendable {
    let bytes: [UInt8]

    init(seed: UInt64) {
        var generator = SplitMix(seed: seed)
        var bytes = [UInt8](repeating: 0, count: (1 << 20) + 1021)
        for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: generator.next() >> 24) }
        self.bytes = bytes
    }

    var count: Int { bytes.count }
}

/// A small, fast, seeded generator (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A number in `range`.
    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}

/// One client connection carrying the pattern from `start`: what was sent,
/// what came back (verified byte for byte as it arrives).
struct Exchange {
    let fd: Int32
    let start: Int
    var sent = 0
    var received = 0
    var sentFIN = false
    var sawEOF = false

    /// How the exchange is driven.
    struct Plan {
        /// Bytes to send in all.
        var total: Int
        /// Stop (successfully) once this many bytes came back (nil: `total`).
        var stopAfterReceiving: Int? = nil
        /// shutdown(SHUT_WR) once everything is sent, then read to EOF.
        var halfClose = false
        /// Read at most this much per recv ...
        var readChunk = 256 * 1024
        /// ... and sleep this long after each (a slow reader).
        var readPause: useconds_t = 0
    }

    /// Sends and receives, interleaved (poll), until the plan is done.
    /// Throws on any socket error, an unexpected EOF, a byte that is not
    /// the one sent, or when `deadline` passes.
    mutating func run(_ plan: Plan, pattern: Pattern, buffer: UnsafeMutableRawBufferPointer, deadline: Double) throws(Failure) {
        let stopAt = min(plan.stopAfterReceiving ?? plan.total, plan.total)
        while true {
            if plan.halfClose {
                if sawEOF {
                    guard received == plan.total else {
                        throw Failure(what: "EOF after \(received) of \(plan.total) bytes")
                    }
                    return
                }
            } else if received >= stopAt {
                return
            }
            if plan.halfClose, sent == plan.total, !sentFIN {
                guard shutdown(fd, Int32(SHUT_WR)) == 0 else { throw Failure(what: "shutdown: \(errnoName(errno))") }
                sentFIN = true
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN) | (sent < plan.total ? Int16(POLLOUT) : 0), revents: 0)
            let remaining = deadline - now()
            guard remaining > 0 else {
                throw Failure(what: "timed out (sent \(sent), received \(received) of \(plan.total))")
            }
            let ready = poll(&pfd, 1, Int32(min(remaining, 1) * 1000) + 1)
            if ready < 0 {
                if errno == EINTR { continue }
                throw Failure(what: "poll: \(errnoName(errno))")
            }
            if ready == 0 { continue }
            if sent < plan.total, pfd.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                try send(plan.total, pattern)
            }
            if pfd.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                try receive(plan, pattern, buffer)
                if plan.readPause > 0 { usleep(plan.readPause) }
            }
        }
    }

    private mutating func send(_ total: Int, _ pattern: Pattern) throws(Failure) {
        let index = (start + sent) % pattern.count
        let length = min(total - sent, pattern.count - index, 256 * 1024)
        let n = pattern.bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + index, length, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            throw Failure(what: "send: \(errnoName(errno))")
        }
        sent += n
    }

    private mutating func receive(_ plan: Plan, _ pattern: Pattern, _ buffer: UnsafeMutableRawBufferPointer) throws(Failure) {
        let n = recv(fd, buffer.baseAddress!, min(plan.readChunk, buffer.count), 0)
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            throw Failure(what: "recv: \(errnoName(errno))")
        }
        if n == 0 {
            guard plan.halfClose, sentFIN else {
                throw Failure(what: "EOF from the server after \(received) of \(plan.total) bytes")
            }
            sawEOF = true
            return
        }
        guard received + n <= sent else {
            throw Failure(what: "received \(received + n) bytes, more than the \(sent) sent", corrupt: true)
        }
        // Compare with the pattern, in pieces where it wraps.
        var offset = 0
        while offset < n {
            let index = (start + received + offset) % pattern.count
            let length = min(n - offset, pattern.count - index)
            let same = pattern.bytes.withUnsafeBytes { memcmp(buffer.baseAddress! + offset, $0.baseAddress! + index, length) == 0 }
            guard same else { throw Failure(what: "wrong byte within bytes \(received + offset)..<\(received + offset + length)", corrupt: true) }
            offset += length
        }
        received += n
    }
}

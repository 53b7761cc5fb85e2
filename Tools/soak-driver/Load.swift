// The mixed load: workers, each on its own thread, run scenarios picked at
// random (seeded) until the deadline, and count what happened.
import Glibc

/// The scenarios of the mix.
enum Kind: String, CaseIterable, Sendable {
    case echo1B = "echo 1 B"
    case echo1K = "echo 1 KiB"
    case echo64K = "echo 64 KiB"
    case echo1M = "echo 1 MiB"
    case churn = "connect/close"
    case halfClose = "half-close"
    case abort = "abort mid-echo"
    case resetMidWrite = "reset mid-write"
    case slowReader = "slow reader"

    /// How often each is picked, relative to the others. A slow reader
    /// takes about a second, a hundred times longer than the others: one
    /// worker runs only those (see `runWorker`), the rest never pick it.
    var weight: Int {
        switch self {
        case .echo1B: 15
        case .echo1K: 15
        case .echo64K: 10
        case .echo1M: 3
        case .churn: 20
        case .halfClose: 10
        case .abort: 8
        case .resetMidWrite: 5
        case .slowReader: 0
        }
    }

    /// True for the scenarios that close with a reset on purpose.
    var resets: Bool { self == .abort || self == .resetMidWrite }
}

/// Counts for one scenario kind.
struct KindStats {
    var connections = 0
    /// Bytes sent on connections that ran to the end, and of those, bytes
    /// that came back and matched (must be equal).
    var sent = 0
    var verified = 0
    /// Bytes sent and bytes verified on connections we reset on purpose
    /// (not all of them can come back).
    var sentBeforeReset = 0
    var verifiedBeforeReset = 0
    /// Resets we caused (SO_LINGER 0): on purpose, or closing a connection that failed.
    var resetsCaused = 0
    /// Connections on which a byte came back that was not the one sent.
    var corrupt = 0
    /// Anything else that went wrong, by what went wrong: unexpected.
    var errors: [String: Int] = [:]

    mutating func add(_ other: KindStats) {
        connections += other.connections
        sent += other.sent
        verified += other.verified
        sentBeforeReset += other.sentBeforeReset
        verifiedBeforeReset += other.verifiedBeforeReset
        resetsCaused += other.resetsCaused
        corrupt += other.corrupt
        for (what, count) in other.errors { errors[what, default: 0] += count }
    }

    var errorCount: Int { errors.values.reduce(0, +) }
}

/// Counts per kind for a worker or a whole run.
struct LoadStats {
    var kinds: [Kind: KindStats] = [:]

    mutating func add(_ other: LoadStats) {
        for (kind, stats) in other.kinds { kinds[kind, default: KindStats()].add(stats) }
    }

    var total: KindStats {
        var sum = KindStats()
        for stats in kinds.values { sum.add(stats) }
        return sum
    }
}

/// What a worker needs: where to connect, the shared pattern, when to stop.
struct LoadPlan: Sendable {
    let port: Int
    let pattern: Pattern
    let until: Double
    let seed: UInt64
    /// Run each kind once, in order, before picking at random (the warm-up
    /// uses it so every code path has run before the first measurement).
    let everyKindFirst: Bool
}

/// One worker: runs scenarios until `plan.until`, returns its counts.
/// Worker 0 of several runs slow readers only, one after the other.
func runWorker(_ plan: LoadPlan, index: Int, of count: Int) -> LoadStats {
    var random = SplitMix(seed: plan.seed &+ UInt64(index) &* 0x1000_0000_01B3)
    var stats = LoadStats()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    defer { buffer.deallocate() }
    let totalWeight = Kind.allCases.reduce(0) { $0 + $1.weight }
    var queue = plan.everyKindFirst ? Kind.allCases : []
    while now() < plan.until {
        let kind: Kind
        if !queue.isEmpty {
            kind = queue.removeFirst()
        } else if index == 0 {
            kind = count > 1 ? .slowReader : Kind.allCases[random.next(in: 0...(Kind.allCases.count - 1))]
        } else {
            var pick = random.next(in: 0...(totalWeight - 1))
            var chosen = Kind.echo1B
            for candidate in Kind.allCases {
                if pick < candidate.weight { chosen = candidate; break }
                pick -= candidate.weight
            }
            kind = chosen
        }
        var kindStats = stats.kinds[kind, default: KindStats()]
        do {
            try runScenario(kind, plan, &random, buffer, &kindStats)
        } catch {
            kindStats.errors["\(kind.rawValue): \(error.what)", default: 0] += 1
        }
        stats.kinds[kind] = kindStats
    }
    return stats
}

/// Per connection: a connection that takes longer than this has failed.
let connectionDeadline = 30.0

private func runScenario(_ kind: Kind, _ plan: LoadPlan, _ random: inout SplitMix,
                         _ buffer: UnsafeMutableRawBufferPointer, _ stats: inout KindStats) throws(Failure) {
    // A small receive buffer (a small TCP window) makes the server's own
    // write buffer fill: slow readers, and a quarter of the resets mid-write.
    let smallWindow = kind == .slowReader || (kind == .resetMidWrite && random.next() % 4 == 0)
    let fd = try connectLoopback(port: plan.port, timeout: 10, receiveBuffer: smallWindow ? 4096 : 0)
    stats.connections += 1
    var exchange = Exchange(fd: fd, start: random.next(in: 0...(plan.pattern.count - 1)))
    let deadline = now() + connectionDeadline

    /// Sends `size` bytes, reads them all back (and, half-closing, the server's EOF), closes normally.
    func echo(_ size: Int, halfClose: Bool = false, readChunk: Int = 256 * 1024, readPause: useconds_t = 0) throws(Failure) {
        try exchange.run(.init(total: size, halfClose: halfClose, readChunk: readChunk, readPause: readPause),
                         pattern: plan.pattern, buffer: buffer, deadline: deadline)
        close(fd)
        stats.sent += exchange.sent
        stats.verified += exchange.received
    }

    do {
        switch kind {
        case .echo1B: try echo(1)
        case .echo1K: try echo(1024)
        case .echo64K: try echo(64 * 1024)
        case .echo1M: try echo(1024 * 1024)
        case .slowReader:
            // 4 MiB read 8 KiB at a time, a millisecond's pause after each
            // read. On loopback the server's socket send buffer starts at about
            // 2.5 MiB (ten 64 KiB segments, doubled), so less would never fill
            // the server's own write buffer. Every other one half-closes once
            // it has sent everything: the server sees that EOF only after it
            // resumed reading, and must still flush its buffer before closing.
            try echo(4 * 1024 * 1024, halfClose: random.next() & 1 == 0, readChunk: 8192, readPause: 1000)
        case .halfClose:
            try echo(random.next(in: 0...(256 * 1024)), halfClose: true)
        case .churn:
            // Half of them say nothing at all; the others one small echo.
            if random.next() & 1 == 0 {
                close(fd)
            } else {
                try echo(16)
            }
        case .abort:
            // Reset somewhere in the middle of a 256 KiB echo, once part of it came back.
            let total = 256 * 1024
            let cut = random.next(in: 1...(total - 1))
            try exchange.run(.init(total: total, stopAfterReceiving: cut), pattern: plan.pattern, buffer: buffer, deadline: deadline)
            resetClose(fd)
            stats.resetsCaused += 1
            stats.sentBeforeReset += exchange.sent
            stats.verifiedBeforeReset += exchange.received
        case .resetMidWrite:
            // Push without reading any of the echo until the socket stays
            // full, then reset. 1 MiB: the reset hits the server while it
            // writes to us. With the small window, up to 8 MiB: the server's
            // socket buffer fills, then its own, and it stops reading (paused)
            // before the reset comes.
            let sent = try pushWithoutReading(fd, total: smallWindow ? 8 << 20 : 1 << 20, start: exchange.start, pattern: plan.pattern)
            resetClose(fd)
            stats.resetsCaused += 1
            stats.sentBeforeReset += sent
        }
    } catch {
        // A failed connection is reset, so it leaves nothing behind in the
        // server either; the server counts it among the resets.
        resetClose(fd)
        stats.resetsCaused += 1
        if error.corrupt { stats.corrupt += 1 }
        throw error
    }
}

/// Sends the pattern until `total` bytes are out or the socket stays full for
/// 20 ms (the server stopped reading because we never read). Returns the bytes sent.
private func pushWithoutReading(_ fd: Int32, total: Int, start: Int, pattern: Pattern) throws(Failure) -> Int {
    var sent = 0
    while sent < total {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let ready = poll(&pfd, 1, 20)
        if ready < 0 {
            if errno == EINTR { continue }
            throw Failure(what: "poll: \(errnoName(errno))")
        }
        if ready == 0 { break }  // full: the point where the reset is meant to land
        let index = (start + sent) % pattern.count
        let length = min(total - sent, pattern.count - index, 256 * 1024)
        let n = pattern.bytes.withUnsafeBytes { send(fd, $0.baseAddress! + index, length, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { continue }
            throw Failure(what: "send: \(errnoName(errno))")
        }
        sent += n
    }
    return sent
}

/// Runs `count` workers on threads of their own and adds up their counts.
func runLoad(_ plan: LoadPlan, workers count: Int) -> LoadStats {
    let results = (0..<count).map { _ in WorkerResult() }
    let threads = (0..<count).map { index in
        startThread { results[index].stats = runWorker(plan, index: index, of: count) }
    }
    var total = LoadStats()
    for (index, thread) in threads.enumerated() {
        pthread_join(thread, nil)
        total.add(results[index].stats)
    }
    return total
}

/// A worker's counts, written by its thread before it ends and read after
/// `pthread_join`, which orders the two (hence @unchecked).
final class WorkerResult: @unchecked Sendable {
    var stats = LoadStats()
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a POSIX thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    precondition(rc == 0, "soak-driver: pthread_create failed: \(rc)")
    return thread
}

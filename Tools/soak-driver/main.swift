// The soak driver: starts soak-server, loads it for SOAK_SECONDS with a
// mixed load of raw loopback sockets (no Swisted on this side), and checks
// that the server ends as it began. Exit status 0 only if every check passed.
//
//   soak-driver [path/to/soak-server]        (default: next to this executable)
//
// Environment:
//   SOAK_SECONDS     load duration in seconds (default 45)
//   SOAK_WORKERS     concurrent client threads (default 8)
//   SOAK_RSS_MIB     allowed RSS growth of the server, MiB (default 8)
//   SOAK_SEED        seed of the scenario mix and the byte pattern (default 1)
import Glibc

signal(SIGPIPE, SIG_IGN)

func environment(_ name: String, default value: Int) -> Int {
    guard let text = getenv(name).map({ String(cString: $0) }) else { return value }
    guard let number = Int(text), number >= 0 else {
        say("soak-driver: \(name)=\(text) is not a whole number", to: 2)
        exit(2)
    }
    return number
}

let seconds = environment("SOAK_SECONDS", default: 45)
let workers = max(1, environment("SOAK_WORKERS", default: 8))
let rssBoundMiB = environment("SOAK_RSS_MIB", default: 8)
let seed = UInt64(environment("SOAK_SEED", default: 1))
let warmUpSeconds = 2.0

func fail(_ message: String) -> Never {
    say("soak-driver: \(message)", to: 2)
    exit(2)
}

// MARK: Start the server

let serverPath: String = {
    if CommandLine.arguments.count > 1 { return CommandLine.arguments[1] }
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { fail("cannot find my own path; give the soak-server path as an argument") }
    let me = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(me[..<me.lastIndex(of: "/")!]) + "/soak-server"
}()

let server = ServerProcess(path: serverPath)
say("soak: server pid \(server.pid), echo port \(server.echoPort), control port \(server.controlPort)")
say("soak: \(workers) workers, \(seconds) s of load after a \(Int(warmUpSeconds)) s warm-up, seed \(seed)")

// One control connection for the whole run, so it is there in both snapshots.
let control = ControlConnection(port: server.controlPort)
let pattern = Pattern(seed: seed)

/// Waits (bounded) until the server has no echo connection left, and returns its stats then.
@MainActor func settledStats(within limit: Double = 30) -> [String: Int] {
    let giveUp = now() + limit
    while true {
        let stats = control.stats()
        if stats["open"] == 0 || now() > giveUp { return stats }
        usleep(20_000)
    }
}

// MARK: Warm-up, snapshot, load, snapshot

let warmUp = runLoad(LoadPlan(port: server.echoPort, pattern: pattern, until: now() + warmUpSeconds,
                              seed: seed &+ 999, everyKindFirst: true), workers: workers)
let before = settledStats()
let started = now()
let load = runLoad(LoadPlan(port: server.echoPort, pattern: pattern, until: started + Double(seconds),
                            seed: seed, everyKindFirst: false), workers: workers)
let loadSeconds = now() - started
let settleStarted = now()
let after = settledStats()
let settleSeconds = now() - settleStarted

// MARK: Report

func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
    let gap = String(repeating: " ", count: max(0, width - text.count))
    return left ? text + gap : gap + text
}

func mib(_ bytes: Int) -> String {
    let tenths = (bytes * 10 + (1 << 19)) >> 20
    return "\(tenths / 10).\(tenths % 10) MiB"
}

say("")
say(pad("scenario", 16, left: true) + pad("conns", 9) + pad("sent", 14) + pad("verified", 14)
      + pad("resets", 8) + pad("errors", 8))
for kind in Kind.allCases {
    let stats = load.kinds[kind] ?? KindStats()
    let sent = stats.sent + stats.sentBeforeReset
    let verified = stats.verified + stats.verifiedBeforeReset
    say(pad(kind.rawValue, 16, left: true) + pad("\(stats.connections)", 9) + pad("\(sent)", 14)
          + pad("\(verified)", 14) + pad("\(stats.resetsCaused)", 8) + pad("\(stats.errorCount)", 8))
}
let total = load.total
say(pad("total", 16, left: true) + pad("\(total.connections)", 9) + pad("\(total.sent + total.sentBeforeReset)", 14)
      + pad("\(total.verified + total.verifiedBeforeReset)", 14) + pad("\(total.resetsCaused)", 8) + pad("\(total.errorCount)", 8))
say("")
say("load: \(String(format1: loadSeconds)) s, \(total.connections) connections (\(Int(Double(total.connections) / loadSeconds))/s), "
      + "\(mib(total.verified + total.verifiedBeforeReset)) echoed and verified; "
      + "warm-up \(warmUp.total.connections) connections; server settled in \(String(format1: settleSeconds)) s")

@MainActor func delta(_ key: String) -> Int { (after[key] ?? 0) - (before[key] ?? 0) }

say("")
say(pad("server", 16, left: true) + pad("before", 14) + pad("after", 14))
for key in ["fds", "handles", "rss", "open", "made", "lost_done", "lost_reset", "lost_other", "bytes", "half_closes", "pauses", "max_buffered", "unexpected"] {
    say(pad(key, 16, left: true) + pad("\(before[key] ?? -1)", 14) + pad("\(after[key] ?? -1)", 14))
}

// MARK: Checks

/// The checks that failed, so far.
final class Checklist {
    var failures: [String] = []

    func check(_ ok: Bool, _ what: String) {
        say("  [\(ok ? "ok" : "FAIL")] \(what)")
        if !ok { failures.append(what) }
    }
}
let checklist = Checklist()
@MainActor func check(_ ok: Bool, _ what: String) { checklist.check(ok, what) }

say("")
say("checks:")
for (what, count) in (warmUp.total.errors.merging(load.total.errors, uniquingKeysWith: +)).sorted(by: { $0.key < $1.key }) {
    say("  unexpected client error x\(count): \(what)")
}
let corrupt = warmUp.total.corrupt + total.corrupt
check(total.sent == total.verified && corrupt == 0,
      "every byte sent came back in order: \(total.verified) of \(total.sent) on completed connections, "
      + "\(corrupt) connections with a wrong byte")
check(warmUp.total.errorCount == 0 && total.errorCount == 0,
      "no unexpected client errors (\(warmUp.total.errorCount + total.errorCount))")
check(after["unexpected"] == 0 && after["lost_other"] == 0,
      "no unexpected server errors (\(after["unexpected"] ?? -1) logged, \(after["lost_other"] ?? -1) connections lost for another reason than EOF or reset)")
check(after["open"] == 0, "the server closed every connection (\(after["open"] ?? -1) open)")
check(delta("made") == total.connections,
      "the server accepted every connection the clients made (\(delta("made")) of \(total.connections))")
check(delta("lost_reset") <= total.resetsCaused,
      "resets seen by the server (\(delta("lost_reset"))) are no more than those the clients caused (\(total.resetsCaused))")
let slowReaders = load.kinds[.slowReader]?.connections ?? 0
check(slowReaders == 0 || delta("pauses") > 0,
      "the server's write buffer filled (slow readers, resets mid-write): it paused reading \(delta("pauses")) times")
// The echo pauses reading above the 64 KiB high-water mark, and one read
// adds at most the reactor's 64 KiB read buffer: 128 KiB per connection.
check((after["max_buffered"] ?? Int.max) <= 128 * 1024,
      "no connection held more than 128 KiB unsent (most: \(after["max_buffered"] ?? -1) bytes)")
check(before["fds"] != nil && after["fds"] == before["fds"],
      "open fds after == before (\(after["fds"] ?? -1), \(before["fds"] ?? -1))")
check(before["handles"] != nil && after["handles"] == before["handles"],
      "live libuv handles after == before (\(after["handles"] ?? -1), \(before["handles"] ?? -1))")
let rssGrowth = (after["rss"] ?? Int.max / 2) - (before["rss"] ?? 0)
check(rssGrowth <= rssBoundMiB << 20,
      "RSS grew by \(mib(rssGrowth)), within the bound of \(rssBoundMiB) MiB (before \(mib(before["rss"] ?? 0)), after \(mib(after["rss"] ?? 0)))")

control.close()
let (status, lastLines) = server.terminate()
for line in lastLines { say("  \(line)") }
check(status == 0, "the server stopped on SIGTERM and exited 0 (status \(status))")

say("")
if checklist.failures.isEmpty {
    say("soak: PASS")
    exit(0)
} else {
    say("soak: FAIL (\(checklist.failures.count) check\(checklist.failures.count == 1 ? "" : "s"))")
    exit(1)
}

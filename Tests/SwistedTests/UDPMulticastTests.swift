// UDP multicast and broadcast, run where they cannot reach a real network:
// each test starts the `swisted-netns-check` helper inside a private network
// namespace it creates (`unshare -n`), where `lo` is the only interface.
// This test process itself never joins a group or sends a broadcast.
//
// Not tested: IPv6 multicast. Linux delivers no IPv6 multicast over `lo`
// (tried with ff02::1, ff12::/ff15::/ff1e:: groups, a ff00::/8 route on lo
// and lo's MULTICAST flag: nothing arrives, from Python sockets either), and
// a namespace has no other interface to use.

import Foundation
import Testing

/// The directory holding the built executables: the test bundle's own (`.build/debug`).
private let binDirectory: URL = {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: me).deletingLastPathComponent()
}()

private struct Finished {
    let status: Int32
    let output: String
    var lines: [String] { output.split(separator: "\n").map(String.init) }
}

/// Runs `/bin/sh -c script` inside a new network namespace (`unshare` with
/// `flags`), with `arguments` as `$0`, `$1`, ...; killed after `limit` seconds.
private func inNetworkNamespace(_ flags: [String], _ script: String, _ arguments: [String] = [], limit: Double = 20) throws -> Finished {
    let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("swisted-netns-\(UUID().uuidString)")
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outputURL) }
    let output = try FileHandle(forWritingTo: outputURL)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
    process.arguments = flags + ["/bin/sh", "-c", script] + arguments
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    let done = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in done.signal() }
    try process.run()
    if done.wait(timeout: .now() + limit) == .timedOut {
        kill(process.processIdentifier, SIGKILL)
        done.wait()
    }
    // Also after the termination handler ran: Foundation's Process on Linux
    // keeps itself alive (a run loop source holding it) until this sees the
    // exit; skipping it leaked every Process (LeakSanitizer).
    process.waitUntilExit()
    try output.close()
    let text = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
    return Finished(status: process.terminationStatus, output: text)
}

/// How this process can create a network namespace and bring `lo` up in it:
/// `unshare -n` (root, or CAP_SYS_ADMIN), else `unshare -r -n` (an
/// unprivileged user namespace, where the system allows them); nil if
/// neither works (or `unshare` or `ip` is missing).
private let namespaceFlags: [String]? = {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return nil }
    return [["-n"], ["-r", "-n"]].first { flags in
        (try? inNetworkNamespace(flags, "ip link set lo up", limit: 10).status) == 0
    }
}()

/// Runs one scenario of the helper in a fresh namespace: `lo` up, multicast routed to it.
private func runScenario(_ scenario: String) throws -> Finished {
    let helper = binDirectory.appendingPathComponent("swisted-netns-check")
    guard FileManager.default.isExecutableFile(atPath: helper.path) else {
        Issue.record("\(helper.path) is not built; run `swift build` (or `make test`) first")
        return Finished(status: -1, output: "")
    }
    return try inNetworkNamespace(namespaceFlags ?? ["-n"], "ip link set lo up && ip route add 224.0.0.0/4 dev lo && exec \"$0\" \"$1\"", [helper.path, scenario])
}

@Suite("UDP multicast and broadcast (in a private network namespace)",
       .enabled(if: namespaceFlags != nil, "cannot create a network namespace here (`unshare -n` needs root or CAP_SYS_ADMIN, `unshare -r -n` unprivileged user namespaces; both need `ip`)"))
struct UDPMulticastTests {
    @Test("Multicast on lo: a member receives a group datagram; after leaveGroup it does not; TTL and loopback mode read back")
    func multicast() throws {
        let result = try runScenario("multicast")
        #expect(result.status == 0, "swisted-netns-check multicast failed:\n\(result.output)")
        #expect(!result.output.contains("FAILED"), "\(result.output)")
        for expected in [
            "ok: the multicast TTL starts at 1",
            "ok: setTTL(3) sets the multicast TTL to 3",
            "ok: loopback mode starts on",
            "ok: setLoopbackMode(false) turns it off",
            "ok: setLoopbackMode(true) turns it on again",
            "ok: after leaveGroup, a datagram to the group is not received (got [\"to the group\", \"marker\"])",
            "ok: startProtocol and stopProtocol ran once for each port",
            "ok: no libuv handle left open",
        ] {
            #expect(result.lines.contains(expected), "missing line \(expected) in:\n\(result.output)")
        }
        #expect(result.lines.contains { $0.hasPrefix("ok: a member of 239.255.42.1 receives a datagram sent to the group, from IPv4Address(type='UDP', host='127.0.0.1', port=") },
                "\(result.output)")
    }

    @Test("listenMultiple on lo: two ports on one port number both receive a group datagram; getOutgoingInterface reads back")
    func listenMultiple() throws {
        let result = try runScenario("multiple")
        #expect(result.status == 0, "swisted-netns-check multiple failed:\n\(result.output)")
        #expect(!result.output.contains("FAILED"), "\(result.output)")
        for expected in [
            "ok: getOutgoingInterface is 0.0.0.0 until set",
            "ok: getOutgoingInterface reads back 127.0.0.1",
            "ok: two ports on port",
            "ok: no libuv handle left open",
        ] {
            #expect(result.output.contains(expected), "missing \"\(expected)\" in:\n\(result.output)")
        }
    }

    @Test("Broadcast on lo: EACCES until setBroadcastAllowed(true), then a port bound to every interface receives it")
    func broadcast() throws {
        let result = try runScenario("broadcast")
        #expect(result.status == 0, "swisted-netns-check broadcast failed:\n\(result.output)")
        #expect(!result.output.contains("FAILED"), "\(result.output)")
        for expected in [
            "ok: broadcast starts forbidden",
            "ok: writing to a broadcast address before setBroadcastAllowed(true) throws EACCES (got EACCES: permission denied)",
            "ok: setBroadcastAllowed(true) allows it",
            "ok: a port bound to every interface receives a broadcast datagram",
            "ok: startProtocol and stopProtocol ran once",
            "ok: no libuv handle left open",
        ] {
            #expect(result.lines.contains(expected), "missing line \(expected) in:\n\(result.output)")
        }
    }
}

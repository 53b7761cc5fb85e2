// swisted-netns-check: the UDP multicast (one port; several on one port
// number with listenMultiple) and broadcast scenarios, run by
// Tests/SwistedTests/UDPMulticastTests.swift inside a private network
// namespace it creates:
//
//     unshare -n sh -c 'ip link set lo up; ip route add 224.0.0.0/4 dev lo; exec swisted-netns-check multicast'
//
// It refuses to run where any interface other than `lo` exists (that is,
// outside a fresh namespace), so its datagrams can never reach a real
// network. Prints one line per check; exits 0 when every check passed,
// 1 on a failed check, 2 on bad usage or an unsafe environment.

import Glibc
import Swisted

nonisolated(unsafe) var failures = 0  // one thread: the reactor runs on the main thread

func check(_ condition: Bool, _ what: String) {
    print(condition ? "ok: \(what)" : "FAILED: \(what)")
    if !condition { failures += 1 }
}

/// The network interfaces of this process's namespace (/proc/net/dev is per namespace; /sys/class/net is not).
func interfaces() -> [String] {
    guard let file = fopen("/proc/net/dev", "r") else { return ["<unreadable /proc/net/dev>"] }
    defer { fclose(file) }
    var names: [String] = []
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    var number = 0
    while getline(&line, &capacity, file) > 0 {
        number += 1
        guard number > 2, let line else { continue }  // two header lines
        let text = String(cString: line)
        if let colon = text.firstIndex(of: ":") {
            names.append(text[..<colon].trimmingCharacters())
        }
    }
    free(line)
    return names
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// Records a port's life and datagrams; runs the scenario's next step on each datagram.
final class Recorder: DatagramProtocol {
    var starts = 0
    var stops = 0
    var datagrams: [(text: String, from: String)] = []
    var onDatagram: ((Recorder) throws -> Void)?

    override func startProtocol() { starts += 1 }
    override func stopProtocol() {
        stops += 1
        // The port has closed: drop the closure, which captures the ports
        // (and a port keeps its protocol): else the cycle keeps the ports and
        // the reactor alive, and LeakSanitizer fails the run.
        onDatagram = nil
    }
    override func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {
        datagrams.append((data.string, "\(address)"))
        try onDatagram?(self)
    }
}

/// Runs the reactor until a scenario stops it, with a watchdog.
func run(_ reactor: Reactor) {
    var timedOut = false
    let watchdog = reactor.callLater(5) {
        timedOut = true
        try? reactor.stop()
    }
    do { try reactor.run() } catch { check(false, "reactor.run: \(error)") }
    if watchdog.active { try? watchdog.cancel() }
    check(!timedOut, "the scenario finished before the 5 s watchdog")
    check(reactor.openHandleCount == 0, "no libuv handle left open")
}

func errorDescription(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}

/// IPv4 multicast on lo: join, receive, TTL and loopback options, leave.
func multicastV4() throws {
    let group = "239.255.42.1"
    let reactor = Reactor()
    reactor.logHandler = { print("log: \($0)") }
    let receiving = Recorder()
    let sending = Recorder()
    let receiver = try reactor.listenUDP(0, receiving, interface: "")
    let sender = try reactor.listenUDP(0, sending, interface: "127.0.0.1")
    let receiverPort = (receiver.getHost() as! IPv4Address).port
    let senderPort = (sender.getHost() as! IPv4Address).port

    try receiver.joinGroup(group, interface: "127.0.0.1")
    try sender.setOutgoingInterface("127.0.0.1")
    check(try sender.getTTL() == 1, "the multicast TTL starts at 1")
    try sender.setTTL(3)
    check(try sender.getTTL() == 3, "setTTL(3) sets the multicast TTL to 3")
    check(try sender.getLoopbackMode(), "loopback mode starts on")
    try sender.setLoopbackMode(false)
    check(try !sender.getLoopbackMode(), "setLoopbackMode(false) turns it off")
    try sender.setLoopbackMode(true)
    check(try sender.getLoopbackMode(), "setLoopbackMode(true) turns it on again")

    receiving.onDatagram = { recorder in
        switch recorder.datagrams.count {
        case 1:
            // Left the group: a datagram to the group must not arrive, the
            // unicast marker sent after it must (it arrives after anything
            // sent before it on lo).
            try receiver.leaveGroup(group, interface: "127.0.0.1")
            try sender.write("after leaving", to: group, port: receiverPort)
            try sender.write("marker", to: "127.0.0.1", port: receiverPort)
        default:
            receiver.stopListening()
            sender.stopListening()
            try reactor.stop()
        }
    }
    try sender.write("to the group", to: group, port: receiverPort)
    run(reactor)

    let from = "IPv4Address(type='UDP', host='127.0.0.1', port=\(senderPort))"
    check(receiving.datagrams.first?.text == "to the group" && receiving.datagrams.first?.from == from,
          "a member of \(group) receives a datagram sent to the group, from \(from)")
    check(receiving.datagrams.count == 2 && receiving.datagrams.last?.text == "marker",
          "after leaveGroup, a datagram to the group is not received (got \(receiving.datagrams.map(\.text)))")
    check(receiving.starts == 1 && receiving.stops == 1 && sending.starts == 1 && sending.stops == 1,
          "startProtocol and stopProtocol ran once for each port")
}

/// listenMulticast(listenMultiple: true): two ports on one port number, each
/// a member of the group, both receive a datagram sent to it.
func multiple() throws {
    let group = "239.255.42.2"
    let reactor = Reactor()
    reactor.logHandler = { print("log: \($0)") }
    let first = Recorder()
    let second = Recorder()
    let sending = Recorder()
    let firstPort = try reactor.listenMulticast(0, first, interface: "", listenMultiple: true)
    let number = (firstPort.getHost() as! IPv4Address).port
    let secondPort = try reactor.listenMulticast(number, second, interface: "", listenMultiple: true)
    try firstPort.joinGroup(group, interface: "127.0.0.1")
    try secondPort.joinGroup(group, interface: "127.0.0.1")
    let sender = try reactor.listenUDP(0, sending, interface: "127.0.0.1")
    check(try sender.getOutgoingInterface() == "0.0.0.0", "getOutgoingInterface is 0.0.0.0 until set")
    try sender.setOutgoingInterface("127.0.0.1")
    check(try sender.getOutgoingInterface() == "127.0.0.1", "getOutgoingInterface reads back 127.0.0.1")
    var heard = 0
    let stopAfterBoth: (Recorder) throws -> Void = { _ in
        heard += 1
        guard heard == 2 else { return }
        firstPort.stopListening()
        secondPort.stopListening()
        sender.stopListening()
        try reactor.stop()
    }
    first.onDatagram = stopAfterBoth
    second.onDatagram = stopAfterBoth
    try sender.write("to both", to: group, port: number)
    run(reactor)
    check(first.datagrams.map(\.text) == ["to both"] && second.datagrams.map(\.text) == ["to both"],
          "two ports on port \(number) (listenMultiple) both receive the group's datagram (got \(first.datagrams.map(\.text)), \(second.datagrams.map(\.text)))")
}

/// Broadcast on lo's 127.255.255.255: refused until allowed, then delivered.
func broadcast() throws {
    let reactor = Reactor()
    reactor.logHandler = { print("log: \($0)") }
    let receiving = Recorder()
    let sending = Recorder()
    let receiver = try reactor.listenUDP(0, receiving, interface: "")
    let sender = try reactor.listenUDP(0, sending, interface: "127.0.0.1")
    let receiverPort = (receiver.getHost() as! IPv4Address).port

    check(try !sender.getBroadcastAllowed(), "broadcast starts forbidden")
    let refused = errorDescription { try sender.write("too early", to: "127.255.255.255", port: receiverPort) }
    check(refused == "EACCES: permission denied", "writing to a broadcast address before setBroadcastAllowed(true) throws EACCES (got \(refused ?? "no error"))")
    try sender.setBroadcastAllowed(true)
    check(try sender.getBroadcastAllowed(), "setBroadcastAllowed(true) allows it")

    receiving.onDatagram = { _ in
        receiver.stopListening()
        sender.stopListening()
        try reactor.stop()
    }
    try sender.write("to everyone", to: "127.255.255.255", port: receiverPort)
    run(reactor)
    check(receiving.datagrams.map(\.text) == ["to everyone"], "a port bound to every interface receives a broadcast datagram")
    check(receiving.starts == 1 && receiving.stops == 1, "startProtocol and stopProtocol ran once")
}

let arguments = CommandLine.arguments.dropFirst()
guard !arguments.isEmpty, arguments.allSatisfy({ ["multicast", "multiple", "broadcast"].contains($0) }) else {
    print("usage: swisted-netns-check multicast|multiple|broadcast ...   (inside `unshare -n`)")
    exit(2)
}
let found = interfaces()
guard found == ["lo"] else {
    print("refusing to run: this network namespace has interfaces \(found); run me inside `unshare -n` where lo is the only one")
    exit(2)
}
for scenario in arguments {
    do {
        switch scenario {
        case "multicast": try multicastV4()
        case "multiple": try multiple()
        default: try broadcast()
        }
    } catch {
        check(false, "\(scenario): \(error)")
    }
}
exit(failures == 0 ? 0 : 1)

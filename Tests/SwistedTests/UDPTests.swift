// UDP ports over loopback (127.0.0.1 and ::1 only): echo, addresses,
// connected mode, errors, the protocol's life cycle. Multicast and broadcast
// run in a private network namespace: see UDPMulticastTests.swift.

import Glibc
import Swisted
import Testing

/// A datagram protocol that records everything that happens to it and runs
/// the test's closures (which get the recorder as an argument: no cycles).
final class DatagramProbe: DatagramProtocol {
    var onStart: ((DatagramProbe) throws -> Void)?
    var onDatagram: ((DatagramProbe, [UInt8], any Address) throws -> Void)?
    var onRefused: ((DatagramProbe) -> Void)?
    var onStop: ((DatagramProbe) -> Void)?
    var log: EventLog?
    var name = "proto"

    private(set) var startCount = 0
    private(set) var stopCount = 0
    private(set) var refusedCount = 0
    private(set) var datagrams: [[UInt8]] = []
    private(set) var senders: [String] = []
    /// Whether `transport` was set inside startProtocol and nil inside stopProtocol (Twisted's order).
    private(set) var transportInStart = false
    private(set) var transportInStop = true

    override func startProtocol() {
        startCount += 1
        transportInStart = transport != nil
        log?.add("\(name).startProtocol")
        do { try onStart?(self) } catch { Issue.record("onStart threw \(error)") }
    }

    override func stopProtocol() {
        stopCount += 1
        transportInStop = transport != nil
        log?.add("\(name).stopProtocol")
        onStop?(self)
        // The port has closed: nothing calls these again. Dropping them
        // breaks port -> protocol -> closure -> port, the cycle a closure
        // that captures its own port would make (the port keeps its
        // protocol): LeakSanitizer reported every such test. A probe reused
        // on a new port needs its closures set again.
        onStart = nil
        onDatagram = nil
        onRefused = nil
        onStop = nil
    }

    override func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {
        let bytes = data.array
        datagrams.append(bytes)
        senders.append(address.description)
        log?.add("\(name).datagramReceived")
        try onDatagram?(self, bytes, address)
    }

    override func connectionRefused() {
        refusedCount += 1
        log?.add("\(name).connectionRefused")
        onRefused?(self)
    }

    var texts: [String] { datagrams.map { String(decoding: $0, as: UTF8.self) } }
}

/// Sends every datagram back to where it came from.
final class DatagramEcho: DatagramProtocol {
    private(set) var startCount = 0
    private(set) var stopCount = 0
    override func startProtocol() { startCount += 1 }
    override func stopProtocol() { stopCount += 1 }
    override func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {
        try transport!.write(data, to: address)
    }
}

extension UDPPort {
    /// The port number the system gave (IPv4 or IPv6).
    var portNumber: Int { (getHost() as! any IPAddress).port }
}

/// The error `body` throws, or nil.
func thrownError(_ body: () throws -> Void) -> (any Error)? {
    do { try body() } catch { return error }
    return nil
}

/// A UDP port number on 127.0.0.1 that nothing listens on: one the system just gave out, closed again.
func closedUDPPort(_ reactor: Reactor) throws -> Int {
    let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
    let number = port.portNumber
    port.stopListening()
    return number
}

private let ipv6Available = ipv6LoopbackAvailable()

@Suite("UDP ports")
struct UDPTests {
    // MARK: Echo and addresses

    @Test("A datagram echoed over IPv4 loopback comes back whole, from the server's address", arguments: ["127.0.0.1"])
    func echoIPv4(host: String) throws {
        try echo(host: host)
    }

    @Test("A datagram echoed over IPv6 loopback comes back whole, from the server's address",
          .enabled(if: ipv6Available, "this machine has no IPv6 loopback (::1)"))
    func echoIPv6() throws {
        try echo(host: "::1")
    }

    private func echo(host: String) throws {
        let reactor = Reactor()
        let server = DatagramEcho()
        let client = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: host)
        let clientPort = try reactor.listenUDP(0, client, interface: host)
        client.onDatagram = { _, _, _ in
            serverPort.stopListening()
            clientPort.stopListening()
            try reactor.stop()
        }
        try clientPort.write("hello, echo", to: host, port: serverPort.portNumber)
        try runReactor(reactor)

        let expectedSender = host == "::1"
            ? "IPv6Address(type='UDP', host='::1', port=\(serverPort.portNumber), flowInfo=0, scopeID=0)"
            : "IPv4Address(type='UDP', host='127.0.0.1', port=\(serverPort.portNumber))"
        #expect(client.texts == ["hello, echo"])
        #expect(client.senders == [expectedSender])
        #expect(server.startCount == 1 && server.stopCount == 1)
        #expect(client.startCount == 1 && client.stopCount == 1)
    }

    @Test("getHost after binding port 0 gives the loopback address and the port the system chose")
    func getHostAfterPortZero() throws {
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let host = try #require(port.getHost() as? IPv4Address)
        #expect(host.type == .udp)
        #expect(host.host == "127.0.0.1")
        #expect(host.port > 0)
        #expect(port.getHost().description == "IPv4Address(type='UDP', host='127.0.0.1', port=\(host.port))")
        var v6: IPv6Address?
        if ipv6Available {
            let port6 = try reactor.listenUDP(0, DatagramProtocol(), interface: "::1")
            v6 = port6.getHost() as? IPv6Address
            port6.stopListening()
        }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        if ipv6Available {
            let v6 = try #require(v6)
            #expect(v6.type == .udp && v6.host == "::1" && v6.port > 0)
        }
    }

    @Test("Datagrams from two senders are reported with each sender's own address, in order")
    func sendersAreTold() throws {
        let reactor = Reactor()
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let a = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let b = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        // One at a time, each sent when the last arrived, so the order is known.
        let plan: [(UDPPort, String)] = [(a, "a1"), (b, "b1"), (a, "a2"), (a, "a3"), (b, "b2")]
        server.onDatagram = { probe, _, _ in
            if probe.datagrams.count < plan.count {
                let (sender, text) = plan[probe.datagrams.count]
                try sender.write(text, to: "127.0.0.1", port: serverPort.portNumber)
            } else {
                for port in [serverPort, a, b] { port.stopListening() }
                try reactor.stop()
            }
        }
        try plan[0].0.write(plan[0].1, to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)

        func address(_ port: UDPPort) -> String { "IPv4Address(type='UDP', host='127.0.0.1', port=\(port.portNumber))" }
        #expect(server.texts == plan.map(\.1))
        #expect(server.senders == plan.map { address($0.0) })
    }

    @Test("An empty datagram is delivered as an empty span")
    func emptyDatagram() throws {
        let reactor = Reactor()
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { _, _, _ in
            serverPort.stopListening()
            client.stopListening()
            try reactor.stop()
        }
        try client.write([UInt8](), to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)
        #expect(server.datagrams == [[]])
    }

    @Test("The largest IPv4 datagram (65507 bytes) arrives whole with maxPacketSize 65536")
    func largestDatagram() throws {
        let reactor = Reactor()
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1", maxPacketSize: 65536)
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { _, _, _ in
            serverPort.stopListening()
            client.stopListening()
            try reactor.stop()
        }
        let big = pattern(count: 65507)
        try client.write(big, to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)
        #expect(server.datagrams.count == 1)
        #expect(server.datagrams.first == big)
    }

    // MARK: Life cycle

    @Test("startProtocol runs once inside listenUDP with the transport set; stopProtocol once after close, with it cleared")
    func startAndStopOnce() throws {
        let reactor = Reactor()
        let log = EventLog()
        let probe = DatagramProbe()
        probe.log = log
        let port = try reactor.listenUDP(0, probe, interface: "127.0.0.1")
        log.add("listenUDP returned")
        var completions = 0
        reactor.callWhenRunning {
            port.stopListening { completions += 1; log.add("completion") }
            port.stopListening { completions += 1 }  // again: only adds the completion
            port.stopListening()
            log.add("stopListening returned")
        }
        reactor.addSystemEventTrigger(.before, .shutdown) { [weak port] in port?.stopListening() }  // after close: nothing (weak: the reactor keeps its triggers, the port holds the reactor)
        reactor.callLater(0) {
            // The close callback has run by the next loop iteration's timers at the latest;
            // stop from a later one so the completions are in.
            reactor.callLater(0) { try reactor.stop() }
        }
        try runReactor(reactor)

        #expect(log.events == ["proto.startProtocol", "listenUDP returned", "stopListening returned", "proto.stopProtocol", "completion"])
        #expect(probe.startCount == 1)
        #expect(probe.stopCount == 1)
        #expect(completions == 2)
        #expect(probe.transportInStart)
        #expect(!probe.transportInStop)
        #expect(probe.transport == nil)
        #expect(probe.numPorts == 0)
    }

    @Test("A reactor shutdown closes an open UDP port: stopProtocol runs once, no handle is left")
    func shutdownClosesPort() throws {
        let reactor = Reactor()
        let probe = DatagramProbe()
        try reactor.listenUDP(0, probe, interface: "127.0.0.1")  // never stopped by the test
        var stoppedBeforeAfterShutdown = false
        reactor.addSystemEventTrigger(.after, .shutdown) { stoppedBeforeAfterShutdown = probe.stopCount == 1 }
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
        #expect(probe.startCount == 1)
        #expect(probe.stopCount == 1)
        #expect(stoppedBeforeAfterShutdown)
    }

    @Test("A protocol can serve a new port after its first one closed")
    func protocolReusedAfterClose() throws {
        let reactor = Reactor()
        let probe = DatagramProbe()
        let first = try reactor.listenUDP(0, probe, interface: "127.0.0.1")
        var second: UDPPort?
        defer { second = nil }  // closures kept by what it holds capture it: break the cycle
        first.stopListening {
            second = try? reactor.listenUDP(0, probe, interface: "127.0.0.1")
            second?.stopListening { try? reactor.stop() }
        }
        try runReactor(reactor)
        #expect(second != nil)
        #expect(probe.startCount == 2)
        #expect(probe.stopCount == 2)
    }

    @Test("stopListening inside datagramReceived: no later datagram is delivered")
    func stopInsideDatagramReceived() throws {
        let reactor = Reactor()
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { _, _, _ in serverPort.stopListening() }
        server.onStop = { _ in
            client.stopListening()
            try? reactor.stop()
        }
        // All three are queued at the server's socket before the loop reads any.
        for text in ["one", "two", "three"] {
            try client.write(text, to: "127.0.0.1", port: serverPort.portNumber)
        }
        try runReactor(reactor)
        #expect(server.texts == ["one"])
        #expect(server.stopCount == 1)
    }

    // MARK: Errors

    @Test("An error thrown by datagramReceived is logged and the port keeps receiving")
    func throwingDatagramReceived() throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }
        let reactor = Reactor()
        let logs = LogCapture(reactor)
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { probe, bytes, _ in
            if probe.datagrams.count == 1 {
                try client.write("second", to: "127.0.0.1", port: serverPort.portNumber)
                throw Boom()
            }
            serverPort.stopListening()
            client.stopListening()
            try reactor.stop()
        }
        try client.write("first", to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)

        #expect(server.texts == ["first", "second"])
        #expect(logs.messages == ["Unhandled error in DatagramProbe.datagramReceived (from IPv4Address(type='UDP', host='127.0.0.1', port=\(client.portNumber))): boom; the port keeps receiving"])
        #expect(server.stopCount == 1)
    }

    @Test("A datagram longer than maxPacketSize is logged and dropped; one of exactly maxPacketSize arrives")
    func datagramOverMaxPacketSize() throws {
        let reactor = Reactor()
        let logs = LogCapture(reactor)
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1", maxPacketSize: 100)
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        server.onDatagram = { _, _, _ in
            serverPort.stopListening()
            client.stopListening()
            try reactor.stop()
        }
        try client.write(pattern(count: 101), to: "127.0.0.1", port: serverPort.portNumber)
        try client.write(pattern(count: 100), to: "127.0.0.1", port: serverPort.portNumber)
        try runReactor(reactor)

        #expect(server.datagrams == [pattern(count: 100)])
        #expect(logs.messages == ["Swisted: dropped a datagram from IPv4Address(type='UDP', host='127.0.0.1', port=\(client.portNumber)) to IPv4Address(type='UDP', host='127.0.0.1', port=\(serverPort.portNumber)): longer than maxPacketSize (100 bytes)"])
        #expect(serverPort.maxPacketSize == 100)
    }

    @Test("A datagram over the UDP limit throws MessageLengthError before anything is sent")
    func messageTooLong() throws {
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let error = thrownError { try port.write(pattern(count: 65508), to: "127.0.0.1", port: port.portNumber) }
        var error6: (any Error)?
        if ipv6Available {
            let port6 = try reactor.listenUDP(0, DatagramProtocol(), interface: "::1")
            error6 = thrownError { try port6.write(pattern(count: 65528), to: "::1", port: port6.portNumber) }
            port6.stopListening()
        }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let tooLong = try #require(error as? MessageLengthError)
        #expect(tooLong.length == 65508)
        #expect(tooLong.limit == 65507)
        #expect(tooLong.description == "Message is too long to send: 65508 bytes (the limit is 65507).")
        if ipv6Available {
            #expect((error6 as? MessageLengthError)?.limit == 65527)
        }
    }

    @Test("A host name where an IP literal is needed throws InvalidAddressError", arguments: ["localhost", "example.com", "1.2.3", "999.1.1.1"])
    func hostNameIsInvalid(host: String) throws {
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let writeError = thrownError { try port.write("x", to: host, port: 9) }
        let connectError = thrownError { try port.connect(host, 9) }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let invalid = try #require(writeError as? InvalidAddressError)
        #expect(invalid.address == host)
        #expect(invalid.description == "Invalid address \(host): not an IPv4 or IPv6 address (UDP ports take IP addresses, not host names).")
        #expect((connectError as? InvalidAddressError)?.address == host)
    }

    @Test("Other bad destinations throw InvalidAddressError: wrong family, port out of range, not an IP address")
    func otherInvalidDestinations() throws {
        struct Elsewhere: Address { var description: String { "Elsewhere()" } }
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let wrongFamily = thrownError { try port.write("x", to: "::1", port: 9) }
        let outOfRange = thrownError { try port.write("x", to: "127.0.0.1", port: 70000) }
        let notIP = thrownError { try port.write("x", to: Elsewhere()) }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        #expect((wrongFamily as? InvalidAddressError)?.reason == "an IPv4 port cannot send to an IPv6 address")
        #expect((outOfRange as? InvalidAddressError)?.reason == "port must be in 0...65535")
        #expect((notIP as? InvalidAddressError)?.reason == "a UDP destination must be an IPv4Address or IPv6Address")
    }

    @Test("listenUDP on a bad interface throws CannotListenError carrying InvalidAddressError, and never starts the protocol")
    func badInterface() throws {
        let reactor = Reactor()
        let probe = DatagramProbe()
        var caught: CannotListenError?
        do { try reactor.listenUDP(0, probe, interface: "not-an-ip") } catch { caught = error }
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
        let error = try #require(caught)
        #expect(error.underlying is InvalidAddressError)
        #expect(probe.startCount == 0 && probe.stopCount == 0)
    }

    @Test("Binding a UDP port that is in use throws CannotListenError with EADDRINUSE")
    func doubleBind() throws {
        let reactor = Reactor()
        let first = DatagramProbe()
        let second = DatagramProbe()
        let taken = try reactor.listenUDP(0, first, interface: "127.0.0.1")
        var caught: CannotListenError?
        do { try reactor.listenUDP(taken.portNumber, second, interface: "127.0.0.1") } catch { caught = error }
        taken.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        let error = try #require(caught)
        #expect(error.port == taken.portNumber)
        #expect((error.underlying as? UVError) == .addressInUse)
        #expect(error.description == "Couldn't listen on 127.0.0.1:\(taken.portNumber): EADDRINUSE: address already in use.")
        #expect(second.startCount == 0 && second.stopCount == 0)
        #expect(first.startCount == 1 && first.stopCount == 1)
    }

    @Test("listenMulticast with listenMultiple shares a port number with another such port; without it, EADDRINUSE")
    func listenMultipleSharesAPort() throws {
        let reactor = Reactor()
        let first = try reactor.listenMulticast(0, DatagramProtocol(), interface: "127.0.0.1", listenMultiple: true)
        let number = first.portNumber
        let second = try reactor.listenMulticast(number, DatagramProtocol(), interface: "127.0.0.1", listenMultiple: true)
        var plain: CannotListenError?
        var single: CannotListenError?
        do { try reactor.listenUDP(number, DatagramProtocol(), interface: "127.0.0.1") } catch { plain = error }
        do { try reactor.listenMulticast(number, DatagramProtocol(), interface: "127.0.0.1") } catch { single = error }
        let secondNumber = second.portNumber
        first.stopListening()
        second.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
        #expect(secondNumber == number)
        #expect((plain?.underlying as? UVError) == .addressInUse)
        #expect((single?.underlying as? UVError) == .addressInUse)
    }

    @Test("getOutgoingInterface reads back setOutgoingInterface: IPv4 0.0.0.0 until set, IPv6 :: until set")
    func outgoingInterfaceReadsBack() throws {
        let reactor = Reactor()
        let v4 = try reactor.listenMulticast(0, DatagramProtocol(), interface: "127.0.0.1")
        let v6 = try reactor.listenMulticast(0, DatagramProtocol(), interface: "::1")
        let v4Before = try v4.getOutgoingInterface()
        try v4.setOutgoingInterface("127.0.0.1")
        let v4After = try v4.getOutgoingInterface()
        let v6Before = try v6.getOutgoingInterface()
        try v6.setOutgoingInterface("::%lo")
        let v6After = try v6.getOutgoingInterface()
        v4.stopListening()
        v6.stopListening()
        let closed = thrownError { _ = try v4.getOutgoingInterface() }
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
        #expect(v4Before == "0.0.0.0")
        #expect(v4After == "127.0.0.1")
        #expect(v6Before == "::")
        #expect(v6After == "::%lo")
        #expect((closed as? UVError)?.name == "EBADF")
    }

    @Test("After stopListening, write and connect throw NotListeningError and the options throw EBADF")
    func callsAfterStopListening() throws {
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let number = port.portNumber
        port.stopListening()
        let inClosing = thrownError { try port.write("late", to: "127.0.0.1", port: number) }
        var afterClose: (any Error)?
        var connectAfterClose: (any Error)?
        var optionAfterClose: (any Error)?
        port.stopListening {
            afterClose = thrownError { try port.write("later", to: "127.0.0.1", port: number) }
            connectAfterClose = thrownError { try port.connect("127.0.0.1", number) }
            optionAfterClose = thrownError { try port.setBroadcastAllowed(true) }
            try? reactor.stop()
        }
        try runReactor(reactor)

        #expect((inClosing as? NotListeningError)?.description == "Cannot write: the port is not listening (stopListening() was called).")
        #expect(afterClose is NotListeningError)
        #expect((connectAfterClose as? NotListeningError)?.operation == "connect")
        #expect((optionAfterClose as? UVError)?.name == "EBADF")
    }

    @Test("Bad multicast arguments fail before any group is joined: MulticastJoinError, InvalidAddressError, EINVAL")
    func badMulticastArguments() throws {
        // Every call here fails before (or as) the kernel checks it: no group
        // is joined and nothing is sent, so this runs outside a namespace.
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        func joinError(_ group: String, _ interface: String = "") -> MulticastJoinError? {
            do { try port.joinGroup(group, interface: interface) } catch { return error }
            return nil
        }
        let hostName = joinError("all-hosts.example")
        let v6Group = joinError("ff12::1")
        let badInterface = joinError("239.255.42.1", "eth-zero")
        let notAGroup = joinError("127.0.0.1")
        var leaveError: MulticastJoinError?
        do { try port.leaveGroup("not-a-group") } catch { leaveError = error }
        let ttlZero = thrownError { try port.setTTL(0) }
        let ttlTooBig = thrownError { try port.setTTL(256) }
        let outgoingName = thrownError { try port.setOutgoingInterface("localhost") }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        #expect(hostName?.underlying is InvalidAddressError)
        #expect(hostName?.description == "Multicast group all-hosts.example: Invalid address all-hosts.example: not an IPv4 or IPv6 address (multicast groups are IP addresses, not host names).")
        #expect((v6Group?.underlying as? InvalidAddressError)?.reason == "an IPv4 port cannot join an IPv6 group")
        #expect((badInterface?.underlying as? InvalidAddressError)?.address == "eth-zero")
        #expect(badInterface?.interface == "eth-zero")
        #expect((notAGroup?.underlying as? UVError) == .invalidArgument)
        #expect(leaveError?.underlying is InvalidAddressError)
        #expect((ttlZero as? UVError) == .invalidArgument)
        #expect((ttlTooBig as? UVError) == .invalidArgument)
        #expect((outgoingName as? InvalidAddressError)?.address == "localhost")
    }

    // MARK: Connected mode

    @Test("A connected port writing to a closed port on 127.0.0.1 hears connectionRefused once, and stays open")
    func connectedPortHearsRefusal() throws {
        let reactor = Reactor()
        let dead = try closedUDPPort(reactor)
        let probe = DatagramProbe()
        let port = try reactor.listenUDP(0, probe, interface: "127.0.0.1")
        var writeAfterRefusal: (any Error)?
        probe.onRefused = { _ in
            // Still open: one more write goes out (and will be refused again, after we closed).
            writeAfterRefusal = thrownError { try port.write("still here") }
            port.stopListening()
            try? reactor.stop()
        }
        try port.connect("127.0.0.1", dead)
        // One write, then the loop: the refusal comes through the receive
        // path (EPOLLERR, then recvmsg fails with ECONNREFUSED).
        try port.write("anyone there?")
        try runReactor(reactor)

        #expect(probe.refusedCount == 1)
        #expect(writeAfterRefusal == nil)
        #expect(probe.datagrams.isEmpty)
        #expect(probe.stopCount == 1)
    }

    @Test("A port that is not connected never hears connectionRefused")
    func unconnectedPortIgnoresRefusal() throws {
        let reactor = Reactor()
        let dead = try closedUDPPort(reactor)
        let probe = DatagramProbe()
        let port = try reactor.listenUDP(0, probe, interface: "127.0.0.1")
        let witness = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        // The datagram to the dead port, then one to ourselves: if the refusal
        // were reported, it would come before our own datagram.
        probe.onDatagram = { _, _, _ in
            port.stopListening()
            witness.stopListening()
            try reactor.stop()
        }
        try port.write("anyone there?", to: "127.0.0.1", port: dead)
        try witness.write("marker", to: "127.0.0.1", port: port.portNumber)
        try runReactor(reactor)
        #expect(probe.refusedCount == 0)
        #expect(probe.texts == ["marker"])
    }

    @Test("A connected port sends without an address, receives from its peer, and reports the local address")
    func connectedExchange() throws {
        let reactor = Reactor()
        let server = DatagramEcho()
        let client = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let clientPort = try reactor.listenUDP(0, client, interface: "")
        try clientPort.connect("127.0.0.1", serverPort.portNumber)
        let hostAfterConnect = clientPort.getHost().description
        let again = thrownError { try clientPort.connect("127.0.0.1", serverPort.portNumber) }
        let elsewhere = thrownError { try clientPort.write("x", to: "127.0.0.1", port: 9) }
        client.onDatagram = { probe, _, _ in
            if probe.datagrams.count == 1 {
                // Writing to the peer's own address is allowed too.
                try clientPort.write("two", to: "127.0.0.1", port: serverPort.portNumber)
                return
            }
            serverPort.stopListening()
            clientPort.stopListening()
            try reactor.stop()
        }
        try clientPort.write("one")
        try runReactor(reactor)

        #expect(client.texts == ["one", "two"])
        #expect(client.senders == Array(repeating: "IPv4Address(type='UDP', host='127.0.0.1', port=\(serverPort.portNumber))", count: 2))
        #expect(hostAfterConnect == "IPv4Address(type='UDP', host='127.0.0.1', port=\(clientPort.portNumber))")
        #expect(again is AlreadyConnectedError)
        #expect((elsewhere as? InvalidAddressError) != nil)
    }

    @Test("A port that is not connected, written to without an address, throws EDESTADDRREQ")
    func writeWithoutAddressUnconnected() throws {
        let reactor = Reactor()
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        let error = thrownError { try port.write("where to?") }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)
        #expect((error as? UVError)?.name == "EDESTADDRREQ")
    }

    // MARK: The queued send path

    @Test("Datagrams that take the queued path (copied into a send request) arrive whole and in order")
    func queuedSendsArriveInOrder() throws {
        let reactor = Reactor()
        let server = DatagramProbe()
        let serverPort = try reactor.listenUDP(0, server, interface: "127.0.0.1")
        let client = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        client._alwaysQueueSends = true
        server.onDatagram = { probe, _, _ in
            guard probe.datagrams.count == 3 else { return }
            serverPort.stopListening()
            client.stopListening()
            try reactor.stop()
        }
        for text in ["one", "two", "three"] {
            try client.write(text, to: "127.0.0.1", port: serverPort.portNumber)
        }
        try runReactor(reactor)
        #expect(server.texts == ["one", "two", "three"])
    }

    @Test("A queued datagram that fails is logged; closing with datagrams queued logs nothing")
    func queuedSendFailures() throws {
        let reactor = Reactor()
        let logs = LogCapture(reactor)
        let port = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        port._alwaysQueueSends = true
        let closing = try reactor.listenUDP(0, DatagramProtocol(), interface: "127.0.0.1")
        closing._alwaysQueueSends = true
        // Port 0 is no destination (EINVAL), found only when libuv sends it.
        try port.write("nowhere", to: "127.0.0.1", port: 0)
        for _ in 0..<3 { try closing.write("dropped", to: "127.0.0.1", port: 0) }
        closing.stopListening()
        reactor.callLater(0) { reactor.callLater(0) {
            port.stopListening()
            try reactor.stop()
        } }
        try runReactor(reactor)
        #expect(logs.messages == ["Swisted: a queued datagram on IPv4Address(type='UDP', host='127.0.0.1', port=\(port.portNumber)) could not be sent: EINVAL: invalid argument"])
    }
}

@Suite("UDP connected mode: refusals on the send path")
struct UDPSendPathRefusalTests {
    @Test("A refusal the kernel reports on a send reaches connectionRefused from inside write, not as a throw")
    func refusalOnSend() throws {
        let reactor = Reactor()
        let dead = try closedUDPPort(reactor)
        let probe = DatagramProbe()
        let port = try reactor.listenUDP(0, probe, interface: "127.0.0.1")
        try port.connect("127.0.0.1", dead)
        // The reactor does not run in between, so the receive path cannot
        // report anything: a refusal seen here came from a send. On loopback
        // the ICMP answer to one datagram is handled before the next send
        // (softirq), so the second write normally sees it; allow a few more.
        var writes = 0
        var thrown: (any Error)?
        while probe.refusedCount == 0, writes < 100, thrown == nil {
            writes += 1
            thrown = thrownError { try port.write("anyone there?") }
        }
        port.stopListening()
        reactor.callWhenRunning { try reactor.stop() }
        try runReactor(reactor)

        #expect(thrown == nil)
        #expect(probe.refusedCount == 1)
        #expect(writes >= 2)
    }
}

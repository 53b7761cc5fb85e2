// Data over real loopback TCP connections: echo, big transfers, addresses,
// buffering.

import Glibc
import Swisted
import Testing

@Suite("TCP data transfer")
struct TCPEchoTests {
    @Test("An echo round trip over 127.0.0.1 returns exactly the bytes sent")
    func echoRoundTripIPv4() throws {
        let reactor = Reactor()
        let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        let message = Array("Hello, Swisted! \u{1F600}".utf8) + [0, 255, 13, 10]
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { $0.transport!.write(message) }
            probe.onData = { probe, _ in
                if probe.received.count >= message.count { probe.transport!.loseConnection() }
            }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        let probe = try #require(client.probes.first)
        #expect(probe.received == message)
        #expect(probe.madeCount == 1)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionDone)
        #expect(client.buildCount == 1)
        #expect(client.lostCount == 1)
        #expect(client.failedCount == 0)
    }

    @Test("16 MiB written by the server before loseConnection arrive whole and in order, then ConnectionDone")
    func bigTransferThenLoseConnection() throws {
        let reactor = Reactor()
        let size = 16 * 1024 * 1024
        let blob = pattern(count: size)
        var listening: ListeningPort?
        defer { listening = nil }  // closures kept by what it holds capture it: break the cycle
        let bothClosed = Countdown(2) {
            listening?.stopListening()
            try? reactor.stop()
        }
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write(blob)
                probe.transport!.loseConnection()
            }
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        listening = port
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.keepBytes = false
            probe.onLost = { _, _ in bothClosed.tick() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor, timeLimit: 10)

        let receiver = try #require(client.probes.first)
        #expect(receiver.receivedCount == size)
        #expect(receiver.patternMismatches == 0)
        #expect(receiver.lostCount == 1)
        #expect(receiver.lostReason is ConnectionDone)
        let sender = try #require(server.probes.first)
        #expect(sender.lostCount == 1)
        #expect(sender.lostReason is ConnectionDone)
    }

    @Test("getPeer and getHost print like Twisted: IPv4Address(type='TCP', host='127.0.0.1', port=N)")
    func addressesPrintLikeTwisted() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        var serverHost = "", serverPeer = ""
        var clientHost: (any Address)?, clientPeer = ""
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                serverHost = probe.transport!.getHost().description
                serverPeer = probe.transport!.getPeer().description
                probe.transport!.loseConnection()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                clientHost = probe.transport!.getHost()
                clientPeer = probe.transport!.getPeer().description
            }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        let p = port.portNumber
        #expect(port.getHost().description == "IPv4Address(type='TCP', host='127.0.0.1', port=\(p))")
        #expect(serverHost == "IPv4Address(type='TCP', host='127.0.0.1', port=\(p))")
        #expect(clientPeer == "IPv4Address(type='TCP', host='127.0.0.1', port=\(p))")
        let local = try #require(clientHost as? IPv4Address)
        #expect(local.host == "127.0.0.1")
        #expect(local.port > 0 && local.port != p)
        #expect(local.description == "IPv4Address(type='TCP', host='127.0.0.1', port=\(local.port))")
        #expect(serverPeer == local.description)
        #expect(server.builtAddresses == [local.description])
        #expect(client.builtAddresses == ["IPv4Address(type='TCP', host='127.0.0.1', port=\(p))"])
    }

    @Test("An echo round trip over ::1 works and getPeer prints an IPv6Address",
          .enabled(if: ipv6LoopbackAvailable(), "this machine has no IPv6 loopback (listenTCP on ::1 failed)"))
    func echoRoundTripIPv6() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in Echo() }
        let port = try reactor.listenTCP(0, server, interface: "::1")
        let message = Array("over IPv6".utf8)
        var peer = "", host = ""
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                peer = probe.transport!.getPeer().description
                host = probe.transport!.getHost().description
                probe.transport!.write(message)
            }
            probe.onData = { probe, _ in
                if probe.received.count >= message.count { probe.transport!.loseConnection() }
            }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("::1", port.portNumber, client)
        try runReactor(reactor)

        let p = port.portNumber
        let probe = try #require(client.probes.first)
        #expect(probe.received == message)
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionDone)
        #expect(port.getHost().description == "IPv6Address(type='TCP', host='::1', port=\(p), flowInfo=0, scopeID=0)")
        #expect(peer == "IPv6Address(type='TCP', host='::1', port=\(p), flowInfo=0, scopeID=0)")
        #expect(host.hasPrefix("IPv6Address(type='TCP', host='::1', port="))
        #expect(server.builtAddresses == [host])
    }

    @Test("A write after loseConnection is ignored: the peer receives only what came before")
    func writeAfterLoseConnectionIsIgnored() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        var disconnectingAfterLose = false
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write("before")
                probe.transport!.loseConnection()
                disconnectingAfterLose = probe.transport!.disconnecting
                probe.transport!.write("after")
                probe.transport!.loseConnection()  // again: nothing happens
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in Probe() }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(disconnectingAfterLose)
        let probe = try #require(client.probes.first)
        #expect(probe.receivedString == "before")
        #expect(probe.lostCount == 1)
        #expect(probe.lostReason is ConnectionDone)
        #expect(server.probes.first?.lostCount == 1)
    }

    @Test("bufferSize is above 0 while a big write waits for a peer that does not read, and 0 once drained")
    func bufferSizeTracksPendingWrites() throws {
        let reactor = Reactor()
        let size = 8 * 1024 * 1024
        let blob = pattern(count: size)
        var rawClient: Int32 = -1
        var sizeAfterWrite = -1
        var drainedSize = -1
        var peerBytes: [UInt8] = []
        peerBytes.reserveCapacity(size)
        let server = RecordingFactory()
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let transport = probe.transport!
                transport.write(blob)
                sizeAfterWrite = transport.bufferSize
                // Now let the peer read, a loop iteration at a time, until everything is through.
                func drainStep() {
                    let got = Raw.readAvailable(rawClient, into: &peerBytes)
                    if got < 0 {
                        Issue.record("the raw peer saw EOF or an error while draining")
                        try? reactor.stop()
                        return
                    }
                    if peerBytes.count == size, transport.bufferSize == 0 {
                        drainedSize = transport.bufferSize
                        transport.loseConnection()
                        return
                    }
                    reactor.callLater(0) { drainStep() }
                }
                reactor.callLater(0) { drainStep() }
            }
            probe.onLost = { _, _ in
                port.stopListening()
                try? reactor.stop()
            }
            return probe
        }
        reactor.callWhenRunning {
            // A blocking connect to a listening loopback port completes at once (before any accept).
            rawClient = Raw.connect(port: port.portNumber)
        }
        try runReactor(reactor, timeLimit: 10)
        if rawClient >= 0 { close(rawClient) }
        server.build = nil  // it captures the port, which holds the factory: break the cycle

        #expect(sizeAfterWrite > 0)
        #expect(sizeAfterWrite <= size)
        #expect(drainedSize == 0)
        #expect(peerBytes == blob)
        #expect(server.probes.first?.lostCount == 1)
        #expect(server.probes.first?.lostReason is ConnectionDone)
    }

    @Test("writeSequence sends its chunks in order, as one write would")
    func writeSequenceInOrder() throws {
        let reactor = Reactor()
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.writeSequence([Array("one,".utf8), [], Array("two,".utf8), Array("three".utf8)])
                probe.transport!.loseConnection()
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in Probe() }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(client.probes.first?.receivedString == "one,two,three")
    }

    @Test("TCP options can be set on an open connection and throw once it is closed")
    func tcpOptions() throws {
        let reactor = Reactor()
        let port = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        var openErrors: [String] = []
        var isTCP = false
        var closedError: (any Error)?
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                guard let tcp = probe.transport as? any TCPTransport else { return }
                isTCP = true
                do { try tcp.setTcpNoDelay(true) } catch { openErrors.append("\(error)") }
                do { try tcp.setTcpKeepAlive(true, delay: 30) } catch { openErrors.append("\(error)") }
                do { try tcp.setTcpNoDelay(false) } catch { openErrors.append("\(error)") }
                probe.transport!.loseConnection()
            }
            probe.onLost = { probe, _ in
                do { try (probe.transport as! any TCPTransport).setTcpNoDelay(true) } catch { closedError = error }
            }
            return probe
        }
        client.onLost = { _, _ in
            port.stopListening()
            try? reactor.stop()
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)

        #expect(isTCP)
        #expect(openErrors.isEmpty)
        #expect(closedError is UVError)
    }
}

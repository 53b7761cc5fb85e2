// The flow-control API in real use: a TCP proxy whose two sides pace each
// other, and a file streamed by a pull producer.

import Foundation
import Glibc
import Swisted
import Testing

/// Records how full the proxy's buffer toward the client gets.
private final class MeasuringProxyClient: ProxyClient {
    nonisolated(unsafe) static var maxBufferTowardClient = 0
    override func dataReceived(_ data: Span<UInt8>) throws {
        try super.dataReceived(data)
        if let size = peer?.transport?.bufferSize {
            MeasuringProxyClient.maxBufferTowardClient = max(MeasuringProxyClient.maxBufferTowardClient, size)
        }
    }
}

@Suite("Proxy and FileSender", .serialized)
struct ProxyAndFileSenderTests {
    @Test("a proxy couples its two sides: 8 MiB echoed through it to a slow reader arrive intact, and its buffer stays bounded")
    func proxyWithSlowReader() throws {
        let reactor = Reactor()
        let echo = try reactor.listenTCP(0, Factory.forProtocol(Echo.self), interface: "127.0.0.1")
        let proxyFactory = ProxyFactory(reactor: reactor, host: "127.0.0.1", port: echo.portNumber)
        proxyFactory.clientProtocolType = MeasuringProxyClient.self
        MeasuringProxyClient.maxBufferTowardClient = 0
        let proxy = try reactor.listenTCP(0, proxyFactory, interface: "127.0.0.1")

        let total = 8 * 1024 * 1024
        let data = pattern(count: total)
        let client = RecordingFactory()
        var nextPause = 256 * 1024
        client.build = { _ in
            let probe = Probe()
            probe.keepBytes = false
            probe.onMade = { $0.transport!.write(data) }
            probe.onData = { probe, _ in
                if probe.receivedCount >= nextPause {
                    nextPause += 256 * 1024
                    probe.transport!.pauseProducing()
                    // Weak: the last one is still pending when the reactor stops; it
                    // would keep the probe, its transport and the reactor alive.
                    reactor.callLater(0.002) { [weak probe] in probe?.transport?.resumeProducing() }
                }
                if probe.receivedCount == total { probe.transport!.loseConnection() }
            }
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", proxy.portNumber, client)
        try runReactor(reactor, timeLimit: 30)
        let probe = try #require(client.probes.first)
        #expect(probe.receivedCount == total)
        #expect(probe.patternMismatches == 0)
        #expect(probe.lostReason is ConnectionDone)
        // High-water mark plus at most one read (64 KiB) written after it was passed.
        #expect(MeasuringProxyClient.maxBufferTowardClient > 0)
        #expect(MeasuringProxyClient.maxBufferTowardClient <= 64 * 1024 + 64 * 1024)
    }

    @Test("when one side of the proxy closes, the other side flushes and closes too")
    func proxyClosesBothSides() throws {
        let reactor = Reactor()
        let upstream = RecordingFactory()
        upstream.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                probe.transport!.write("goodbye from upstream")
                probe.transport!.loseConnection()
            }
            return probe
        }
        let backend = try reactor.listenTCP(0, upstream, interface: "127.0.0.1")
        let proxy = try reactor.listenTCP(0, ProxyFactory(reactor: reactor, host: "127.0.0.1", port: backend.portNumber), interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in Probe() }
        client.onLost = { _, _ in try? reactor.stop() }
        reactor.connectTCP("127.0.0.1", proxy.portNumber, client)
        try runReactor(reactor)
        #expect(client.probes.first?.receivedString == "goodbye from upstream")
        #expect(client.probes.first?.lostReason is ConnectionDone)
    }

    @Test("FileSender streams a file larger than its chunk, byte for byte, then reports the size")
    func fileSender() throws {
        let contents = pattern(count: 1_000_003)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swisted-filesender-\(UUID().uuidString)").path
        try Data(contents).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let reactor = Reactor()
        var outcome: Result<Int, any Error>?
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                let transport = probe.transport!
                try FileSender(chunkSize: 16 * 1024).beginFileTransfer(path: path, to: transport) { result in
                    outcome = result
                    transport.loseConnection()
                }
            }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in Probe() }
        client.onLost = { _, _ in try? reactor.stop() }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect(client.probes.first?.received == contents)
        #expect(try outcome?.get() == contents.count)
    }

    @Test("FileSender: a missing file throws ENOENT; a lost consumer ends the transfer with a failure")
    func fileSenderErrors() throws {
        let reactor = Reactor()
        var missing: (any Error)?
        var stopped: Result<Int, any Error>?
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swisted-filesender-\(UUID().uuidString)").path
        try Data(pattern(count: 4 * 1024 * 1024)).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let server = RecordingFactory()
        server.build = { _ in
            let probe = Probe()
            probe.onMade = { probe in
                do { try FileSender().beginFileTransfer(path: "/nonexistent/file", to: probe.transport!) { _ in } } catch { missing = error }
                try FileSender().beginFileTransfer(path: path, to: probe.transport!) { result in stopped = result }
            }
            probe.onLost = { _, _ in try? reactor.stop() }
            return probe
        }
        let port = try reactor.listenTCP(0, server, interface: "127.0.0.1")
        let client = RecordingFactory()
        client.build = { _ in
            let probe = Probe()
            probe.onData = { probe, _ in probe.transport!.abortConnection() }
            return probe
        }
        reactor.connectTCP("127.0.0.1", port.portNumber, client)
        try runReactor(reactor)
        #expect((missing as? UVError) == UVError(code: -ENOENT))
        #expect(throws: ConnectionLost.self) { try stopped?.get() }
    }
}

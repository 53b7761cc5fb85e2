// MemoryReactor.listenUDP: a datagram protocol tested without sockets.
import Swisted
import SwistedTesting
import Testing

/// Code under test: a protocol that answers every datagram, bound through the interface.
private final class Pong: DatagramProtocol {
    var started = 0
    override func startProtocol() {
        started += 1
        try? (transport as? any MulticastTransport)?.joinGroup("239.1.2.3", interface: "")
    }
    override func datagramReceived(_ data: Span<UInt8>, from address: any Address) throws {
        try transport!.write("pong " + data.string, to: address)
    }
}

private func bind(_ proto: DatagramProtocol, on reactor: some ReactorUDP) throws -> any MulticastTransport {
    try reactor.listenUDP(9999, proto, interface: "127.0.0.1", maxPacketSize: 512)
}

@Suite("MemoryReactor: UDP")
struct MemoryUDPTests {
    @Test("listenUDP is recorded with its arguments; the fake port records what the protocol sends and joins")
    func listenUDP() throws {
        let reactor = MemoryReactor()
        let pong = Pong()
        let port = try bind(pong, on: reactor)
        #expect(reactor.udpServers.count == 1)
        let server = try #require(reactor.udpServers.first)
        #expect(server.port == 9999 && server.interface == "127.0.0.1" && server.maxPacketSize == 512)
        #expect(server.proto === pong)
        #expect(port.getHost().description == "IPv4Address(type='UDP', host='127.0.0.1', port=9999)")
        #expect(pong.started == 0)  // not started by listenUDP, as in Twisted

        pong.makeConnection(server.udpPort)
        #expect(pong.started == 1)
        #expect(server.udpPort.groups == ["239.1.2.3"])
        let peer = IPv4Address(type: .udp, host: "127.0.0.1", port: 4000)
        try pong.receive("ping", from: peer)
        #expect(server.udpPort.written.map { String(decoding: $0.bytes, as: UTF8.self) } == ["pong ping"])
        #expect(server.udpPort.written.first?.address?.description == peer.description)

        port.stopListening()
        #expect(server.udpPort.stopListeningCount == 1)
        #expect(throws: NotListeningError.self) { try server.udpPort.write([1], to: peer) }
    }

    @Test("listenError makes the next listenUDP fail")
    func listenError() {
        let reactor = MemoryReactor()
        reactor.listenError = CannotListenError(interface: "", port: 53, underlying: UVError.permissionDenied)
        #expect(throws: CannotListenError.self) { try reactor.listenUDP(53, Pong(), interface: "", maxPacketSize: 8192) }
        #expect(reactor.udpServers.isEmpty)
    }
}

extension DatagramProtocol {
    /// Delivers one datagram, as the port would.
    fileprivate func receive(_ text: String, from address: any Address) throws {
        let bytes = Array(text.utf8)
        try datagramReceived(bytes.span, from: address)
    }
}

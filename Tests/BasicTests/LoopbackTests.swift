// The receivers on real TCP connections: a framing error closes only that
// connection, with the error as connectionLost's reason, and is logged.
import Swisted
import Testing

/// A client that writes `bytes` once connected and waits for the server to hang up.
final class Sender: Protocol {
    var bytes: [UInt8] = []
    override func connectionMade() throws { transport!.write(bytes) }
}

/// What a server-side receiver saw in one loopback run.
struct LoopbackRun {
    var lines: [[UInt8]] = []
    var strings: [[UInt8]] = []
    var lostReason: (any Error)?
    var logged: [String] = []

    /// Runs a LineRecorder server with `maxLength`; a client sends `send`.
    static func lineServer(maxLength: Int, send: [UInt8]) throws -> LoopbackRun {
        try run(send: send) {
            let proto = LineRecorder()
            proto.maxLength = maxLength
            return proto
        } collect: { proto, run in
            run.lines = (proto as! LineRecorder).lines
            run.lostReason = (proto as! LineRecorder).lostReason
        }
    }

    /// Runs a NetstringRecorder server; a client sends `send`.
    static func netstringServer(send: [UInt8]) throws -> LoopbackRun {
        try run(send: send) { NetstringRecorder() } collect: { proto, run in
            run.strings = (proto as! NetstringRecorder).strings
            run.lostReason = (proto as! NetstringRecorder).lostReason
        }
    }

    /// A server built by `make` on `reactor`; a client sends `send` and waits for the server to hang up.
    static func run(send: [UInt8], reactor: Reactor = Reactor(), make: @escaping () -> Protocol,
                    collect: @escaping (Protocol, inout LoopbackRun) -> Void) throws -> LoopbackRun {
        var result = LoopbackRun()
        var logged: [String] = []
        reactor.logHandler = { logged.append($0) }
        final class Server: Factory {
            var made: Protocol?
            let make: () -> Protocol
            init(_ make: @escaping () -> Protocol) { self.make = make; super.init() }
            override func buildProtocol(_ address: any Address) -> Protocol? { made = make(); return made }
        }
        let serverFactory = Server(make)
        let port = try reactor.listenTCP(0, serverFactory, interface: "127.0.0.1")
        final class Client: ClientFactory {
            var bytes: [UInt8] = []
            var done: () -> Void = {}
            override func buildProtocol(_ address: any Address) -> Protocol? {
                let proto = Sender()
                proto.bytes = bytes
                return proto
            }
            override func clientConnectionLost(_ connector: Connector, reason: any Error) { done() }
            override func clientConnectionFailed(_ connector: Connector, reason: any Error) { done() }
        }
        let client = Client()
        client.bytes = send
        client.done = { port.stopListening(); try? reactor.stop() }
        reactor.connectTCP("127.0.0.1", (port.getHost() as! IPv4Address).port, client)
        let watchdog = reactor.callLater(5) {
            Issue.record("loopback run still going after 5 s")
            try reactor.stop()
        }
        try reactor.run()
        if watchdog.active { try watchdog.cancel() }
        #expect(reactor.openHandleCount == 0)
        if let proto = serverFactory.made { collect(proto, &result) }
        result.logged = logged
        return result
    }
}

@Suite("Framing errors on real connections")
struct FramingLoopbackTests {
    @Test("a broken netstring closes the connection with NetstringParseError as reason")
    func brokenNetstring() throws {
        let run = try LoopbackRun.netstringServer(send: bytes("5:hello,01:x,"))
        #expect(run.strings == [bytes("hello")])
        let error = try #require(run.lostReason as? NetstringParseError)
        #expect(error.reason == "the length has a leading zero")
        #expect(run.logged.contains { $0.contains("Broken netstring from the peer: the length has a leading zero.") })
    }
}

// Small helpers for the poetry tests: an in-memory transport, the poems on
// disk, a bounded reactor run.
import Foundation
import Swisted
import Testing

/// A transport that keeps what is written and how the connection was closed.
/// Enough to drive a protocol by hand; no reactor involved.
final class MemoryTransport: Transport {
    var written: [UInt8] = []
    var disconnecting = false
    var aborted = false
    let peer: any Address
    let host: any Address

    init(peer: any Address = IPv4Address(type: .tcp, host: "127.0.0.1", port: 10001),
         host: any Address = IPv4Address(type: .tcp, host: "127.0.0.1", port: 54321)) {
        self.peer = peer
        self.host = host
    }

    func write(_ data: UnsafeRawBufferPointer) {
        guard !disconnecting else { return }
        written += data
    }
    func loseConnection() { disconnecting = true }
    func abortConnection() { disconnecting = true; aborted = true }
    func getPeer() -> any Address { peer }
    func getHost() -> any Address { host }
    var bufferSize: Int { 0 }
    func loseWriteConnection() {}
    func registerProducer(_ producer: any Producer, streaming: Bool) throws(ProducerError) {}
    func unregisterProducer() {}
    var writeHighWaterMark = 64 * 1024
    var writeLowWaterMark = 16 * 1024
    func pauseProducing() {}
    func resumeProducing() {}
    func stopProducing() { loseConnection() }
}

extension Protocol {
    /// Delivers `bytes` to `dataReceived` as one chunk.
    func receive(_ bytes: some Collection<UInt8>) throws {
        let chunk = Array(bytes)
        try dataReceived(chunk.span)
    }
}

/// Collects output lines (a factory's `output`).
final class Lines {
    var all: [String] = []
    func append(_ line: String) { all.append(line) }
}

/// The poems shipped with the example.
enum Poems {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples/poetry/poems")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: directory.appendingPathComponent(name)))
    }
}

/// Runs `reactor`, failing the test and stopping it if it still runs after `limit` seconds.
func runBounded(_ reactor: Reactor, limit: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let watchdog = reactor.callLater(limit) {
        Issue.record("reactor still running after \(limit) s", sourceLocation: sourceLocation)
        try reactor.stop()
    }
    try reactor.run()
    if watchdog.active { try watchdog.cancel() }
}

/// A loopback port where nothing listens: one the system just gave out, closed again.
func deadPort(_ reactor: Reactor) throws -> Int {
    let port = try reactor.listenTCP(0, Factory(), interface: "127.0.0.1")
    let number = (port.getHost() as! IPv4Address).port
    port.stopListening()
    return number
}

/// Python's `len()` of a UTF-8 text: code points.
func pythonLength(_ bytes: [UInt8]) -> Int {
    String(decoding: bytes, as: UTF8.self).unicodeScalars.count
}

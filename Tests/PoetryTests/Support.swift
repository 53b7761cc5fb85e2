// Small helpers for the poetry tests: the poems on disk, a bounded reactor
// run. In-memory transports come from SwistedTesting.
import Foundation
import Swisted
import Testing

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

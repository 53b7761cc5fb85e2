// A small key-value server: an actor on the reactor's executor holds the
// data; each connection's protocol calls into it synchronously (no thread
// hop, no await) because both run on the reactor thread. Other async code
// (an admin task, metrics) reaches the same actor with a plain `await`.
//
// The line protocol, one command per line, one reply line each:
//   SET key value   -> OK
//   GET key         -> VALUE value | NOT_FOUND
//   DEL key         -> DELETED | NOT_FOUND
//   COUNT           -> COUNT n
//   QUIT            -> BYE, then the server closes
//   anything else   -> ERROR what was wrong
import Swisted

/// The store. Its executor is the reactor's, so it runs on the reactor thread.
///
/// Threading: an actor; from the reactor thread (protocol callbacks) enter it
/// synchronously with `assumeIsolated`, from anywhere else with `await`.
/// `execute` throws nothing: a bad command gets an `ERROR ...` reply.
public actor KeyValueStore {
    public let reactor: Reactor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }
    private var values: [String: String] = [:]
    /// Commands served, for the admin side.
    public private(set) var commandsServed = 0

    public init(reactor: Reactor) { self.reactor = reactor }

    /// The number of keys.
    public var count: Int { values.count }

    /// Runs one command line; returns the reply and whether to close.
    public func execute(_ line: Substring) -> (reply: String, close: Bool) {
        commandsServed += 1
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        switch (parts.first?.uppercased(), parts.count) {
        case ("SET", 3):
            values[String(parts[1])] = String(parts[2])
            return ("OK", false)
        case ("GET", 2):
            return (values[String(parts[1])].map { "VALUE \($0)" } ?? "NOT_FOUND", false)
        case ("DEL", 2):
            return (values.removeValue(forKey: String(parts[1])) == nil ? "NOT_FOUND" : "DELETED", false)
        case ("COUNT", 1):
            return ("COUNT \(values.count)", false)
        case ("QUIT", 1):
            return ("BYE", true)
        case (nil, _):
            return ("ERROR empty command", false)
        default:
            return ("ERROR unknown command or wrong arguments: \(parts[0])", false)
        }
    }
}

/// One client connection: lines in, replies out, through the store.
/// On graceful shutdown it says so and closes after the current reply.
/// A line over 4,096 bytes gets an `ERROR` reply and closes that connection.
///
/// Threading: reactor thread only, like every protocol.
public final class KeyValueProtocol: LineOnlyReceiver, GracefulShutdownAware {
    override public func connectionMade() throws {
        delimiter = Array("\n".utf8)
        maxLength = 4096
    }

    override public func lineReceived(_ line: Span<UInt8>) throws {
        var text = Substring(line.string)
        if text.last == "\r" { text.removeLast() }
        let store = (factory as! KeyValueFactory).store
        // Same thread, same executor: enter the actor synchronously.
        let (reply, close) = store.assumeIsolated { $0.execute(text) }
        sendLine(reply)
        if close { transport?.loseConnection() }
    }

    override public func lineLengthExceeded(_ line: Span<UInt8>) throws {
        sendLine("ERROR line longer than \(maxLength) bytes")
        transport?.loseConnection()
    }

    public func gracefulShutdownStarted() {
        sendLine("SHUTTING_DOWN")
        transport?.loseConnection()
    }
}

/// Builds a ``KeyValueProtocol`` per connection, all sharing one store.
/// Threading: reactor thread only.
public final class KeyValueFactory: ServerFactory {
    public let store: KeyValueStore
    public init(store: KeyValueStore) {
        self.store = store
        super.init(protocolType: KeyValueProtocol.self)
    }
}

/// A client for the key-value server, written with ``AsyncConnection``: one
/// command out, one reply line back.
///
/// Threading: use from one task at a time (it is a value holding a read
/// position); the connection underneath is `Sendable`. `connect` and `send`
/// throw what ``AsyncConnection`` throws (connect errors, `ConnectionLost`).
public struct KeyValueClient {
    public let connection: AsyncConnection
    private var inbound: AsyncConnection.Inbound.AsyncIterator
    private var buffered: [UInt8] = []

    /// Connects to a server on `host`:`port` through `reactor` (which must be running, e.g. in the background).
    public static func connect(_ reactor: Reactor, host: String, port: Int) async throws -> KeyValueClient {
        KeyValueClient(connection: try await reactor.connect(host: host, port: port))
    }

    public init(connection: AsyncConnection) {
        self.connection = connection
        self.inbound = connection.inbound.makeAsyncIterator()
    }

    /// Sends one command line and returns the reply line (without its newline),
    /// or nil if the server closed the connection first.
    public mutating func send(_ command: String) async throws -> String? {
        try await connection.write(command + "\n")
        return try await nextLine()
    }

    /// The next line the server sends, or nil at the end of the connection.
    public mutating func nextLine() async throws -> String? {
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return line
            }
            guard let chunk = try await inbound.next() else { return nil }
            buffered += chunk
        }
    }
}

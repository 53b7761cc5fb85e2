import Swisted

/// A ``StringTransport`` that also ends the protocol's life:
/// ``loseConnection()`` calls its `connectionLost` with `ConnectionDone`,
/// ``abortConnection()`` with `ConnectionAborted` (or the error a receiver's
/// callback threw while resuming, ``StringTransport/closeError``), once (Twisted's
/// `StringTransportWithDisconnection`).
///
/// Set ``protocol`` (or attach with ``connect(_:)``) before closing.
open class StringTransportWithDisconnection: StringTransport {
    /// The protocol to tell; released after its `connectionLost`.
    public var `protocol`: Protocol?

    /// Sets ``protocol`` and calls `proto.makeConnection(self)`.
    /// - Throws: what `connectionMade` throws.
    public func connect(_ proto: Protocol) throws {
        self.protocol = proto
        try proto.makeConnection(self)
    }

    open override func loseConnection() {
        let first = !disconnecting
        super.loseConnection()
        if first { end(ConnectionDone()) }
    }

    open override func abortConnection() {
        let first = !disconnecting
        super.abortConnection()
        if first { end(closeError ?? ConnectionAborted()) }
    }

    private func end(_ reason: any Error) {
        guard let proto = self.protocol, proto.connected else { return }
        self.protocol = nil
        proto.connected = false
        proto.connectionLost(reason)
    }
}

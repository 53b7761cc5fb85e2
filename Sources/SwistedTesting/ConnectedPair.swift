import Swisted

/// A server protocol and a client protocol talking through in-memory
/// transports: Twisted's `iosim.connectedServerAndClient` / `loopback`.
/// Nothing moves until ``pump()``: each round delivers what each side wrote
/// to the other (optionally in ``chunkSize`` pieces), then any close.
///
/// ```swift
/// let pair = try ConnectedPair(server: Echo(), client: Hello())
/// pair.flush()                                // until nothing moves
/// #expect(pair.clientTransport.closed)
/// ```
///
/// Close semantics follow Swisted's TCP transport:
/// - `loseConnection()`: what was written before it is delivered, then both
///   protocols get `connectionLost` with `ConnectionDone`.
/// - `abortConnection()`: unsent bytes are dropped; that side gets
///   `ConnectionAborted`, the other `ConnectionLost`.
/// - a throw from `dataReceived` (a framing error, say) closes the
///   receiving side with the error as reason, as the reactor does; the other
///   side gets `ConnectionDone`. The errors are collected in ``errors``.
///
/// Threading: not thread-safe; use it from one thread.
public final class ConnectedPair {
    /// One end of a ``ConnectedPair``: a ``StringTransport`` whose bytes the pair moves.
    public final class End: StringTransport {
        /// The protocol on this end.
        ///
        /// Unowned: the protocol holds this end as its `transport`, so a
        /// strong reference back made a cycle that kept both protocols,
        /// their factories and clocks alive after the test (LeakSanitizer).
        /// The pair owns the protocols (``ConnectedPair/server``,
        /// ``ConnectedPair/client``); an end read after its pair and
        /// protocol are gone traps instead of reading freed memory.
        public unowned let proto: Protocol
        /// True once this end's protocol got `connectionLost`.
        public private(set) var closed = false
        /// Why this end closed, once ``closed``.
        public private(set) var reason: (any Error)?
        fileprivate var failure: (any Error)?

        fileprivate init(proto: Protocol, host: any Address, peer: any Address) {
            self.proto = proto
            super.init(peer: peer, host: host)
        }

        fileprivate func close(_ reason: any Error) {
            guard !closed else { return }
            closed = true
            self.reason = reason
            proto.connected = false
            proto.connectionLost(reason)
        }
    }

    /// The server's end: its transport, and (``End/proto``) the server protocol.
    public let serverTransport: End
    /// The client's end.
    public let clientTransport: End
    /// The server protocol (the pair keeps it alive).
    public let server: Protocol
    /// The client protocol (the pair keeps it alive).
    public let client: Protocol

    /// Deliver writes in pieces of this many bytes (nil: each side's pending bytes in one piece).
    public var chunkSize: Int?

    /// Errors thrown by `connectionMade` or `dataReceived`, with the side that threw.
    public private(set) var errors: [(side: String, error: any Error)] = []

    /// Connects `server` and `client`: the server's `makeConnection` runs
    /// first, then the client's. A throw from `connectionMade` closes that
    /// side at the next ``pump()`` with the error as reason.
    public init(server: Protocol, client: Protocol,
                serverAddress: any Address = IPv4Address(type: .tcp, host: "127.0.0.1", port: 8000),
                clientAddress: any Address = IPv4Address(type: .tcp, host: "127.0.0.1", port: 54321)) {
        self.server = server
        self.client = client
        serverTransport = End(proto: server, host: serverAddress, peer: clientAddress)
        clientTransport = End(proto: client, host: clientAddress, peer: serverAddress)
        for (end, side) in [(serverTransport, "server"), (clientTransport, "client")] {
            do {
                try end.proto.makeConnection(end)
            } catch {
                errors.append((side, error))
                end.failure = error
            }
        }
    }

    /// Both ends closed.
    public var isClosed: Bool { serverTransport.closed && clientTransport.closed }

    /// One round: delivers client → server bytes, then server → client, then
    /// closes whatever asked to close. Returns true if anything happened.
    @discardableResult
    public func pump() -> Bool {
        var moved = deliver(from: clientTransport, to: serverTransport, side: "server")
        moved = deliver(from: serverTransport, to: clientTransport, side: "client") || moved
        moved = settleCloses() || moved
        return moved
    }

    /// Pumps until a round moves nothing (at most `maxRounds`, which traps:
    /// two protocols that talk forever are a bug in the test).
    public func flush(maxRounds: Int = 10_000) {
        for _ in 0..<maxRounds where !pump() { return }
        preconditionFailure("ConnectedPair.flush: still talking after \(maxRounds) rounds")
    }

    private func deliver(from sender: End, to receiver: End, side: String) -> Bool {
        guard !sender.closed, !receiver.closed, sender.failure == nil else { return false }
        let bytes = sender.value()
        guard !bytes.isEmpty else { return false }
        sender.clear()
        // Aborted on either side, or failed: the bytes are never delivered.
        guard receiver.failure == nil, !receiver.abortConnectionCalled, !sender.abortConnectionCalled else { return true }
        let step = chunkSize ?? bytes.count
        var start = 0
        while start < bytes.count {
            let end = min(start + step, bytes.count)
            do {
                try bytes.withUnsafeBufferPointer { try receiver.proto.dataReceived(UnsafeBufferPointer(rebasing: $0[start..<end]).span) }
            } catch {
                errors.append((side, error))
                receiver.failure = error
                return true
            }
            // The real transport stops delivering after loseConnection too.
            if receiver.disconnecting { break }
            start = end
        }
        return true
    }

    private func settleCloses() -> Bool {
        var moved = false
        for (end, other) in [(serverTransport, clientTransport), (clientTransport, serverTransport)] where !end.closed {
            if let failure = end.failure {
                end.close(failure)
                other.close(ConnectionDone())
                moved = true
            } else if end.abortConnectionCalled {
                end.close(ConnectionAborted())
                other.close(ConnectionLost(detail: "the peer aborted the connection"))
                moved = true
            } else if end.loseConnectionCalled, end.value().isEmpty {
                end.close(ConnectionDone())
                other.close(ConnectionDone())
                moved = true
            }
        }
        return moved
    }
}

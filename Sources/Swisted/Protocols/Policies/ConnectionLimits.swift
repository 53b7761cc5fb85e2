// Connection limits: Twisted's LimitTotalConnectionsFactory, the
// maxConnectionCount of ThrottlingFactory and LimitConnectionsByPeer
// (twisted.protocols.policies), as one wrapping factory.

/// How a ``LimitConnectionsFactory`` counted a wrapper it built, so the
/// count goes down exactly once when that connection is lost.
enum ConnectionLimitToken {
    case counted(peer: String)
    case overflow
}

/// Limits how many connections another factory serves at once, overall
/// (``maxConnections``: Twisted's `LimitTotalConnectionsFactory` and
/// `ThrottlingFactory.maxConnectionCount`) and per peer host
/// (``maxConnectionsPerPeer``: Twisted's `LimitConnectionsByPeer`, keyed by
/// the peer's IP address without its port).
///
/// A connection over either limit is refused: `buildProtocol` returns nil and
/// the listening port closes it at once, before any protocol sees it (the
/// client sees its connection end). Or, with an ``overflowProtocolType``, that
/// protocol gets the connection instead, to say something before closing
/// (Twisted's `overflowProtocol`); it should close promptly, for example
/// write a line and `loseConnection()` in `connectionMade`. The other
/// connections are untouched either way.
///
/// ```swift
/// let limited = LimitConnectionsFactory(wrapping: Factory.forProtocol(Echo.self),
///                                       maxConnections: 1000, maxConnectionsPerPeer: 10)
/// try reactor.listenTCP(8000, limited)
/// ```
///
/// Counting: a served connection counts from `buildProtocol` (so the decision
/// for the next one already sees it) until its `connectionLost`, whatever
/// ended it (a clean close, an abort, a reset, a timeout, a callback that
/// threw, the reactor stopping); each connection counts down exactly once.
/// Overflow connections are counted apart (``overflowCount``) and do not use
/// up the limits. A peer's entry is removed when its count reaches 0.
///
/// Peers are keyed by ``IPAddress/host``, with an IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`) counted as its IPv4 address; addresses that are not IP
/// (Unix sockets) are keyed by their description, so all unnamed Unix peers
/// share one count.
///
/// Combine with other wrappers freely, e.g.
/// `LimitConnectionsFactory(wrapping: TimeoutFactory(wrapping: app, timeoutPeriod: 30), maxConnectionsPerPeer: 4)`.
///
/// Threading: reactor thread only.
open class LimitConnectionsFactory: WrappingFactory {
    /// The most connections served at once; nil for no overall limit.
    public var maxConnections: Int?

    /// The most connections served at once from one peer host; nil for no per-peer limit.
    public var maxConnectionsPerPeer: Int?

    /// A protocol to give refused connections instead of closing them at
    /// once; nil (the default) closes them. Built with `init()`, its
    /// ``Protocol/factory`` set to this factory.
    public var overflowProtocolType: Protocol.Type?

    /// Connections being served now (built and not yet lost), overflow ones excluded.
    public private(set) var connectionCount = 0

    /// Overflow connections open now (see ``overflowProtocolType``).
    public private(set) var overflowCount = 0

    /// Connections refused (or handed to the overflow protocol) so far.
    public private(set) var refusedCount = 0

    private var perPeer: [String: Int] = [:]

    /// Limits the connections served by `wrappedFactory`.
    public init(wrapping wrappedFactory: Factory, maxConnections: Int? = nil, maxConnectionsPerPeer: Int? = nil,
                overflowProtocolType: Protocol.Type? = nil) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerPeer = maxConnectionsPerPeer
        self.overflowProtocolType = overflowProtocolType
        super.init(wrapping: wrappedFactory)
    }

    /// Connections being served now for each peer host (only hosts with at least one).
    public var peerConnectionCounts: [String: Int] { perPeer }

    /// Connections being served now from `address`'s host.
    public func connectionCount(for address: any Address) -> Int {
        perPeer[Self.peerKey(address)] ?? 0
    }

    /// Serves the connection from `address` if both limits allow (counting
    /// it), else refuses it: nil, or a wrapped ``overflowProtocolType``.
    /// Also nil, uncounted, if the wrapped factory refuses it.
    open override func buildProtocol(_ address: any Address) -> Protocol? {
        let key = Self.peerKey(address)
        let overTotal = maxConnections.map { connectionCount >= $0 } ?? false
        let overPeer = maxConnectionsPerPeer.map { (perPeer[key] ?? 0) >= $0 } ?? false
        if overTotal || overPeer {
            refusedCount += 1
            connectionRefused(address)
            guard let overflowProtocolType else { return nil }
            let proto = overflowProtocolType.init()
            proto.factory = self
            let wrapper = wrap(proto)
            wrapper.limitToken = .overflow
            overflowCount += 1
            return wrapper
        }
        guard let proto = wrappedFactory.buildProtocol(address) else { return nil }
        let wrapper = wrap(proto)
        wrapper.limitToken = .counted(peer: key)
        connectionCount += 1
        perPeer[key, default: 0] += 1
        return wrapper
    }

    /// A connection from `address` is over a limit and is being refused
    /// (before the overflow protocol, if any, is built). Does nothing by default.
    open func connectionRefused(_ address: any Address) {}

    /// Counts the connection down, once (the token is cleared).
    override func countDown(_ wrapper: ProtocolWrapper) {
        guard let token = wrapper.limitToken else { return }
        wrapper.limitToken = nil
        switch token {
        case .counted(let key):
            connectionCount -= 1
            let remaining = (perPeer[key] ?? 1) - 1
            perPeer[key] = remaining > 0 ? remaining : nil
        case .overflow:
            overflowCount -= 1
        }
    }

    /// The per-peer key of `address`: its IP host (IPv4-mapped IPv6 as IPv4), else its description.
    static func peerKey(_ address: any Address) -> String {
        guard let ip = address as? any IPAddress else { return address.description }
        let host = ip.host
        let mappedPrefix = "::ffff:"
        if host.lowercased().hasPrefix(mappedPrefix), host.contains(".") {
            return String(host.dropFirst(mappedPrefix.count))
        }
        return host
    }
}

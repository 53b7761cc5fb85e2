import Swisted

/// The port a ``MemoryReactor`` returns from `listenUDP`: it records every
/// datagram written and every option set, and sends nothing. Like
/// Twisted's MemoryReactor, `listenUDP` does not start the protocol; call
/// `proto.makeConnection(port)` yourself to run `startProtocol` against it.
///
/// Threading: not thread-safe; use it from one thread.
public final class MemoryUDPPort: MulticastTransport {
    /// A datagram written through the port, and where to (nil: the connected peer).
    public struct Datagram: Sendable {
        public let bytes: [UInt8]
        public let address: (any Address)?
    }

    private let address: any Address
    /// Every datagram written, in order.
    public private(set) var written: [Datagram] = []
    /// The `connect(host, port)` calls, in order.
    public private(set) var connects: [(host: String, port: Int)] = []
    /// Groups joined and not left.
    public private(set) var groups: Set<String> = []
    public private(set) var broadcastAllowed = false
    public private(set) var ttl = 1
    public private(set) var loopbackMode = true
    public private(set) var outgoingInterface = ""
    /// How many times `stopListening` was called.
    public private(set) var stopListeningCount = 0

    init(address: any Address) { self.address = address }

    public func write(_ datagram: UnsafeRawBufferPointer, to address: (any Address)?) throws {
        guard stopListeningCount == 0 else { throw NotListeningError(operation: "write") }
        written.append(Datagram(bytes: Array(datagram), address: address))
    }

    public func connect(_ host: String, _ port: Int) throws {
        connects.append((host, port))
    }

    public func getHost() -> any Address { address }

    public func stopListening(_ completion: (() -> Void)?) {
        stopListeningCount += 1
        completion?()
    }

    public func setBroadcastAllowed(_ enabled: Bool) throws(UVError) { broadcastAllowed = enabled }
    public func getBroadcastAllowed() throws(UVError) -> Bool { broadcastAllowed }
    public func joinGroup(_ group: String, interface: String) throws(MulticastJoinError) { groups.insert(group) }
    public func leaveGroup(_ group: String, interface: String) throws(MulticastJoinError) { groups.remove(group) }
    public func setTTL(_ ttl: Int) throws(UVError) { self.ttl = ttl }
    public func getTTL() throws(UVError) -> Int { ttl }
    public func setLoopbackMode(_ enabled: Bool) throws(UVError) { loopbackMode = enabled }
    public func getLoopbackMode() throws(UVError) -> Bool { loopbackMode }
    public func setOutgoingInterface(_ interface: String) throws { outgoingInterface = interface }
    /// ``outgoingInterface``, or the system's choice (`0.0.0.0`, `::` on an IPv6 port) until set.
    public func getOutgoingInterface() throws(UVError) -> String {
        if !outgoingInterface.isEmpty { return outgoingInterface }
        return address is IPv6Address ? "::" : "0.0.0.0"
    }
}

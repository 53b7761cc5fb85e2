import Swisted

/// The port a ``MemoryReactor`` returns from `listenTCP`: Twisted's `_FakePort`.
public final class MemoryListeningPort: ListeningPortProtocol {
    private let address: any Address
    /// How many times `stopListening` was called.
    public private(set) var stopListeningCount = 0

    init(address: any Address) { self.address = address }

    /// The address `listenTCP` was asked for (`0.0.0.0` for every interface).
    public func getHost() -> any Address { address }

    /// Records the call and runs `completion` at once.
    public func stopListening(_ completion: (() -> Void)? = nil) {
        stopListeningCount += 1
        completion?()
    }

    /// True once `stopListening` was called.
    public var stopped: Bool { stopListeningCount > 0 }
}

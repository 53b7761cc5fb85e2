import Logging
import ServiceLifecycle
import Swisted

/// Runs a Swisted ``Reactor`` as a swift-service-lifecycle `Service`, so a
/// `ServiceGroup` starts it, and shuts it down gracefully on SIGTERM or when
/// the group asks.
///
/// `run()` starts the reactor on a thread of its own
/// (``Reactor/runInBackground(name:installSignalHandlers:)``). On graceful
/// shutdown it calls ``Reactor/stopGracefully(gracePeriod:completion:)``:
/// every port stops listening at once, protocols that adopt
/// ``GracefulShutdownAware`` hear it, open connections get `gracePeriod` to
/// finish, the rest are closed, and the reactor stops; then `run()` returns.
/// If the task running the service is cancelled, the reactor stops at once
/// (connections are closed without a grace period). If something stops the
/// reactor by itself, `run()` returns too.
///
/// ```swift
/// let reactor = Reactor()
/// try reactor.listenTCP(8000, Factory.forProtocol(Echo.self))   // set up before the group runs
/// let group = ServiceGroup(
///     services: [ReactorService(reactor: reactor, gracePeriod: .seconds(10))],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger)
/// try await group.run()
/// ```
///
/// Threading: `Sendable`. Set up ports and connections before `run()` (the
/// reactor is not running yet, so any one thread may) or, once it runs, from
/// the reactor thread: ``Reactor/submit(_:)``, ``Reactor/callFromThread(_:)``
/// or an actor on the reactor's executor.
public struct ReactorService: Service {
    /// The reactor this service runs.
    public let reactor: Reactor
    /// How long open connections may take to finish after a graceful shutdown begins.
    public let gracePeriod: Duration
    private let logger: Logger?

    /// A service that runs `reactor`.
    /// - Parameters:
    ///   - gracePeriod: how long connections may take to finish on graceful shutdown.
    ///   - logger: when given, becomes the reactor's ``Reactor/logger`` (set
    ///     when `run()` starts) and reports connections still open at the end of the grace period.
    public init(reactor: Reactor, gracePeriod: Duration = .seconds(10), logger: Logger? = nil) {
        self.reactor = reactor
        self.gracePeriod = gracePeriod
        self.logger = logger
    }

    /// Runs the reactor until graceful shutdown, cancellation, or the reactor stops by itself.
    /// - Throws: ``ReactorAlreadyRunning`` if the reactor already runs;
    ///   `UVError` if the system cannot make a thread.
    public func run() async throws {
        let reactor = reactor
        let logger = logger
        if let logger { reactor.logger = logger }
        let seconds = Double(gracePeriod.components.seconds) + Double(gracePeriod.components.attoseconds) / 1e18
        let thread = try reactor.runInBackground(name: "swisted-reactor")
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await thread.waitUntilStopped()
            } onGracefulShutdown: {
                reactor.callFromThread {
                    reactor.stopGracefully(gracePeriod: seconds) { stillOpen in
                        if stillOpen > 0 {
                            logger?.notice("Swisted: grace period over, closing connections still open", metadata: ["connections": "\(stillOpen)"])
                        }
                    }
                }
            }
        } onCancel: {
            reactor.callFromThread { if reactor.running { try reactor.stop() } }
        }
    }
}

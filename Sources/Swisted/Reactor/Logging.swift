import Logging

/// The logger of Swisted objects that belong to no reactor (a ``Deferred``
/// whose error nobody handled, a factory with nothing to build). Reactors log
/// through their own ``Reactor/logger``.
///
/// Thread-safe: any thread may read or replace it. The default,
/// `Logger(label: "swisted")`, follows the program's `LoggingSystem.bootstrap`.
public enum SwistedLog {
    private static let shared = Locked(Logger(label: "swisted"))

    /// The logger used for errors of objects without a reactor.
    public static var logger: Logger {
        get { shared.withLock { $0 } }
        set { shared.withLock { $0 = newValue } }
    }
}

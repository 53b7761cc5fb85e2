import CLibUV
import Glibc

/// A reactor running on a thread of its own: for embedding Swisted in a
/// program whose main thread does something else (an async `main`, a
/// service group, a test). Start one with ``Reactor/runInBackground(name:installSignalHandlers:)``.
///
/// From other threads and tasks, reach the reactor through
/// ``Reactor/callFromThread(_:)``, ``Reactor/submit(_:)``, or an actor whose
/// executor is the reactor (see ``Reactor/asUnownedSerialExecutor()``).
///
/// Threading: `Sendable`; every method may be called from any thread or task
/// except the reactor's own thread (which would wait for itself).
public final class ReactorThread: Sendable {
    /// The reactor this thread runs.
    public let reactor: Reactor
    private let finished: Latch

    fileprivate init(reactor: Reactor, finished: Latch) {
        self.reactor = reactor
        self.finished = finished
    }

    /// Stops the reactor, if it still runs, and returns once its
    /// ``Reactor/run(installSignalHandlers:)`` has returned: shutdown
    /// triggers ran, every connection got `connectionLost`, every handle is closed.
    public func stop() async {
        requestStop()
        await finished.wait()
    }

    /// ``stop()`` for threads outside Swift concurrency: blocks the calling thread.
    public func stopAndWait() {
        requestStop()
        finished.waitBlocking()
    }

    /// Returns once the reactor has stopped by itself (something called
    /// ``Reactor/stop()`` on its thread) and finished shutting down.
    public func waitUntilStopped() async {
        await finished.wait()
    }

    private func requestStop() {
        precondition(!reactor.isRunningOnCurrentThread, "Swisted: ReactorThread.stop called on the reactor's own thread; call reactor.stop() there")
        // Weak: if the reactor stopped by itself, nothing runs this call
        // again, and a strong capture would keep the reactor alive through
        // its own queue (a cycle: it leaked).
        reactor.callFromThread { [weak reactor] in
            if let reactor, reactor.running { try reactor.stop() }
        }
    }
}

extension Reactor {
    /// Runs this reactor on a new thread and returns once it is running
    /// (its startup triggers have fired).
    ///
    /// From then on the reactor belongs to that thread: reach it with
    /// ``callFromThread(_:)``, ``submit(_:)`` or actors on its executor, and
    /// stop it with ``ReactorThread/stop()``.
    ///
    /// Threading: call on the thread that owns the reactor while it is not
    /// running (usually the one that created it).
    /// - Parameters:
    ///   - name: the thread's name as the system shows it (first 15 bytes).
    ///   - installSignalHandlers: as for ``run(installSignalHandlers:)``.
    /// - Throws: ``ReactorAlreadyRunning`` if the reactor is already running;
    ///   ``UVError`` if the system cannot create a thread.
    public func runInBackground(name: String = "swisted-reactor", installSignalHandlers: Bool = false) throws -> ReactorThread {
        guard runningThread.load(ordering: .acquiring) == 0, !running else { throw ReactorAlreadyRunning() }
        let started = Latch()
        let finished = Latch()
        let startFailure = ReactorBox<ReactorAlreadyRunning?>(nil)
        callWhenRunning { started.signal() }
        let body = ThreadBody(finished: finished) { [self] in
            swisted_set_thread_name(name)
            do throws(ReactorAlreadyRunning) {
                try run(installSignalHandlers: installSignalHandlers)
            } catch {
                startFailure.value = error
                started.signal()
            }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let context = Unmanaged.passRetained(body).toOpaque()
        let rc: Int32 = pthread_create(&thread, &attributes, { context in
            let finished: Latch
            do {
                let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
                finished = body.finished
                body.function()
            }
            // The body, and the reactor its function holds, are released:
            // whoever waited for `finished` may drop the last reference.
            finished.signal()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            let code: Int32 = -rc
            throw UVError(code: code)
        }
        started.waitBlocking()
        if let failure = startFailure.value { throw failure }
        return ReactorThread(reactor: self, finished: finished)
    }
}

/// The closure a new thread runs, and the latch it opens once the closure
/// (and all it captured) is released.
private final class ThreadBody: Sendable {
    let finished: Latch
    let function: @Sendable () -> Void
    init(finished: Latch, _ function: @escaping @Sendable () -> Void) {
        self.finished = finished
        self.function = function
    }
}

/// A value written by one thread before it signals a ``Latch`` and read by
/// another after waiting on it (the latch's lock orders the two).
private final class ReactorBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Opens once; threads block and tasks suspend until it does.
/// A ``Locked`` state and a ``Condition`` (pthread both), so ThreadSanitizer
/// sees the ordering.
/// Threading: any thread.
final class Latch: Sendable {
    private struct State {
        var open = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Locked(State())
    private let opened = Condition()

    func signal() {
        let waiting = state.withLock { state in
            state.open = true
            let waiting = state.waiters
            state.waiters = []
            opened.broadcast()
            return waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    func waitBlocking() {
        state.wait(on: opened) { $0.open }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let isOpen = state.withLock { state in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if isOpen { continuation.resume() }
        }
    }
}

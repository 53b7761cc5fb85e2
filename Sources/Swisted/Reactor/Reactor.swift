import CLibUV
import Glibc
import Logging
import Synchronization

/// The event loop: Twisted's reactor, on one libuv `uv_loop_t`.
///
/// A reactor runs timers (``callLater(_:_:)``), listening ports
/// (``listenTCP(_:_:backlog:interface:)``) and connections
/// (``connectTCP(_:_:_:timeout:bindAddress:)``), and delivers every protocol
/// callback on the thread that called ``run(installSignalHandlers:)``.
/// Several reactors may live in one process, each run by its own thread.
///
/// ```swift
/// let reactor = Reactor()
/// try reactor.listenTCP(8000, Factory.forProtocol(Echo.self))
/// try reactor.run()
/// ```
///
/// ## Threading contract
/// A reactor and everything attached to it (ports, connectors, transports,
/// protocols, factories, delayed calls) belong to the reactor's thread: the
/// thread inside `run()` while it runs, and the thread that sets it up before
/// that. The one door in from other threads is ``callFromThread(_:)``.
/// Debug builds check this: calling reactor-thread API from another thread
/// while the reactor runs traps with a message naming the call.
///
/// ## Memory
/// A reactor keeps what is still to do: delayed calls until they run or are
/// cancelled, system event triggers until removed, connection attempts made
/// during shutdown until the next `run()`, and its ``logHandler``. Ports,
/// connectors and transports hold their reactor. So a closure kept by the
/// reactor that captures the reactor, or anything holding it (a port, a
/// connector, a transport, a protocol or factory that keeps one), is a
/// reference cycle: dropping the reactor with such a closure still pending
/// never frees it. Capture `[unowned reactor]` (or `[weak port]`, ...) in
/// those closures, or cancel and remove what is left once `run()` returns.
/// Likewise a port keeps its factory (a UDP port its protocol) even once
/// closed, as in Twisted: a closure kept by the factory or protocol that
/// captures the port is a cycle too.
///
/// SIGPIPE is ignored for the whole process when the first reactor is
/// created, so writing to a reset connection reports `ConnectionLost`
/// (`EPIPE`) instead of killing the process.
public final class Reactor: @unchecked Sendable {
    // @unchecked Sendable: the reference may cross threads so that other
    // threads can reach callFromThread (guarded by a pthread mutex and uv_async_send,
    // libuv's one thread-safe call). Everything else is reactor-thread state,
    // checked by assertOnReactorThread in debug builds.

    let loop: UnsafeMutablePointer<uv_loop_t>
    let wakeup: UnsafeMutablePointer<uv_async_t>
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private let idle: UnsafeMutablePointer<uv_idle_t>
    private var signalHandles: [UnsafeMutablePointer<uv_signal_t>] = []

    /// The one read buffer every stream of this reactor reads into. libuv
    /// delivers each read synchronously before asking for the next buffer,
    /// so one slab serves every connection.
    let readSlab: UnsafeMutableRawPointer
    static let readSlabSize = 64 * 1024
    /// One read array of the async layer that a read did not use (the socket
    /// was drained), kept for the next connection that reads into its own
    /// array (``ConnectionCore/readBuffer()``): at most one per reactor, so
    /// idle connections hold none and a large read does not allocate twice.
    /// Reactor thread only.
    var spareReadArray: [UInt8] = []
    /// The chunk last copied out of the read slab for an async reader of
    /// this reactor's connections, kept so that the next small read is
    /// copied into its memory if the reader has let it go by then
    /// (``ConnectionCore/arrayCopy(of:)``): an echo-like reader drops each chunk
    /// before the next read, so its reads allocate and free nothing (glibc
    /// serves a 1 KiB array from its bins, not its per-thread cache: the
    /// allocation and free cost the async echo ~1 µs per round trip, more
    /// in cache misses than in instructions). At most one per reactor.
    /// Reactor thread only.
    var recycledChunk: [UInt8] = []
    /// An async read callback is running (``asyncRead(_:)``): work queued
    /// meanwhile runs at its end, in ``runSoonAfterRead()``.
    private var inAsyncRead = false
    /// Whether chunks are recycled (``recycledChunk``): not under
    /// ThreadSanitizer, which does not see the ordering of Swift's
    /// reference counts (the reader's last release on another thread, then
    /// the reactor's uniqueness check) and would report the reuse as a race.
    let recyclesChunks = !swisted_thread_sanitizer_active()

    let crossThreadJobs = CrossThreadQueue()
    private var spareJobs: [CrossThreadQueue.Job] = []
    /// The pthread running the reactor, or 0 when it is not running.
    let runningThread = Atomic<UInt>(0)

    private enum State { case idle, running, shuttingDown }
    private var state = State.idle
    private var stopRequested = false
    /// A ``stopGracefully(gracePeriod:completion:)`` is under way.
    var stoppingGracefully = false

    package let timers: TimerQueue
    private var armedTime = Double.infinity
    // `@exclusivity(unchecked)` on the per-job queues below: reactor-thread
    // only, and `runSoon` takes each batch out before running it, so no access
    // overlaps another; the dynamic check cost ~80 instructions per access.
    @exclusivity(unchecked) private var soon: [() -> Void] = []
    /// Executor jobs enqueued on the reactor thread itself: run from the idle
    /// phase (or at the end of an async read callback, `runSoonAfterRead`),
    /// with no lock and no wake-up syscall.
    @exclusivity(unchecked) var localJobs = LocalJobQueue()
    /// Set by `resume(_:with:isolated:)` while it resumes a task waiting
    /// isolated to the serial executor: that task (its address); its enqueue
    /// then queues an isolated job.
    @exclusivity(unchecked) var wakingIsolated: UnsafeRawPointer?
    /// The reactor as the serial executor of actors (see `ReactorSerialExecutor`);
    /// set at the end of `init`, never changed.
    private(set) var serialExecutor: ReactorSerialExecutor!
    /// ``asUnownedSerialExecutor()``'s value, made once (actors ask for it at
    /// every hop, and the async API at every wait of an actor).
    private(set) var unownedSerialExecutor: UnownedSerialExecutor!
    /// ``asUnownedTaskExecutor()``'s value, made once (set with the above).
    private(set) var unownedTaskExecutor: UnownedTaskExecutor!
    private var triggers: [Trigger] = []
    private var nextTriggerID = 0

    /// Connectors between `connect()` and the outcome: stopped when the reactor shuts down.
    var connectorsInProgress: [ObjectIdentifier: Connector] = [:]

    /// Resolves host names for ``connectTCP(_:_:_:timeout:bindAddress:)``.
    /// Replace it to control name resolution (tests, caches, custom lookup);
    /// the default, ``UVNameResolver``, uses `uv_getaddrinfo`.
    /// Reactor thread only.
    public var resolver: any NameResolver = UVNameResolver()

    /// Where the reactor reports errors nobody else handles: errors thrown by
    /// protocols, delayed calls and triggers, failed accepts. Each goes out at
    /// `.error` level with metadata where known (`peer`, `protocol`); what the
    /// reactor did about a problem on its own goes out lower: accepting again
    /// after failed accepts or file-descriptor exhaustion at `.notice`, a
    /// datagram dropped for its size and a ``ReconnectingClientFactory``
    /// giving up at `.warning`. The default,
    /// `Logger(label: "swisted")`, writes wherever the program's
    /// `LoggingSystem.bootstrap` sends logs (swift-log's default: standard error).
    /// Reactor thread only.
    public var logger = Logger(label: "swisted")

    /// When set, receives each message (one line, metadata folded in) instead of
    /// ``logger``: the plain hook for tests and small programs. Reactor thread only.
    public var logHandler: ((String) -> Void)?

    private static let sigpipeIgnored: Void = swisted_ignore_sigpipe()

    /// Creates a reactor with its own libuv loop. It does nothing until ``run(installSignalHandlers:)``.
    ///
    /// Traps only if libuv cannot create a loop at all (no file descriptors
    /// left for epoll): there is nothing useful a program can do without one.
    public init() {
        Reactor.sigpipeIgnored
        loop = .allocate(capacity: 1)
        let rc = uv_loop_init(loop)
        precondition(rc == 0, "Swisted: uv_loop_init failed: \(UVError(code: rc))")
        readSlab = .allocate(byteCount: Reactor.readSlabSize, alignment: 16)
        wakeup = UVHandle.allocate(uv_async_t.self)
        timer = UVHandle.allocate(uv_timer_t.self)
        idle = UVHandle.allocate(uv_idle_t.self)
        timers = TimerQueue(now: { Double(uv_hrtime()) / 1_000_000_000 })

        // These three cannot fail on an initialized loop (libuv returns 0
        // unconditionally for timer and idle; async only fails if its eventfd
        // cannot be made, checked below).
        let asyncRC = uv_async_init(loop, wakeup, reactorWakeupCallback)
        precondition(asyncRC == 0, "Swisted: uv_async_init failed: \(UVError(code: asyncRC))")
        uvMustSucceed(uv_timer_init(loop, timer), "uv_timer_init")
        uvMustSucceed(uv_idle_init(loop, idle), "uv_idle_init")
        // The reactor's own handles never keep the loop alive by themselves:
        // while running, run() refs the wakeup handle to block in poll.
        uv_unref(UVHandle.asHandle(wakeup))
        uv_unref(UVHandle.asHandle(timer))
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        timers.earliestMovedEarlier = { [unowned self] time in self.armTimer(for: time) }
        serialExecutor = ReactorSerialExecutor(reactor: self)
        unownedSerialExecutor = UnownedSerialExecutor(ordinary: serialExecutor)
        unownedTaskExecutor = UnownedTaskExecutor(ordinary: self)
    }

    deinit {
        // No transport or port can be open here: each holds the reactor.
        for handle in [UVHandle.asHandle(wakeup), UVHandle.asHandle(timer), UVHandle.asHandle(idle)] {
            uv_close(handle, freeInternalHandle)
        }
        while uv_run(loop, UV_RUN_DEFAULT) != 0 {}
        let rc = uv_loop_close(loop)
        assert(rc == 0, "Swisted: uv_loop_close failed: \(UVError(code: rc))")
        if rc == 0 { loop.deallocate() }  // else leak the loop rather than free memory libuv uses
        readSlab.deallocate()
    }

    /// Reactor from a handle's loop (internal handles have no owner of their own).
    @inline(__always)
    static func of(_ loop: UnsafeMutablePointer<uv_loop_t>) -> Unmanaged<Reactor> {
        Unmanaged<Reactor>.fromOpaque(loop.pointee.data)
    }

    // MARK: Running and stopping

    /// True from ``run(installSignalHandlers:)`` until shutdown begins after ``stop()``.
    /// Reactor thread only.
    public var running: Bool { state == .running }

    /// Runs the event loop on the calling thread until ``stop()``.
    ///
    /// Fires the startup triggers (``callWhenRunning(_:)`` and
    /// ``addSystemEventTrigger(_:_:_:)``), then serves timers, ports and
    /// connections. After `stop()` it fires the shutdown triggers, closes
    /// every port, connection and connection attempt (each transport gets
    /// `connectionLost` once, with ``ConnectionLost``), waits for libuv to
    /// finish closing them, and returns. Pending delayed calls are kept: a
    /// stopped reactor can be run again.
    ///
    /// - Parameter installSignalHandlers: when true, SIGINT and SIGTERM stop the
    ///   reactor (libuv `uv_signal_t`) for as long as this call runs.
    /// - Throws: ``ReactorAlreadyRunning`` if the reactor is already running,
    ///   on this thread or another.
    public func run(installSignalHandlers: Bool = false) throws(ReactorAlreadyRunning) {
        let me = UInt(pthread_self())
        guard runningThread.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing).exchanged else {
            throw ReactorAlreadyRunning()
        }
        defer { runningThread.store(0, ordering: .releasing) }
        guard state == .idle else { throw ReactorAlreadyRunning() }  // run() from inside a shutdown trigger
        let outerReactor = WakeUpHook.enter(self)
        defer { WakeUpHook.leave(restoring: outerReactor) }

        state = .running
        stopRequested = false
        if installSignalHandlers { startSignalHandlers() }
        uv_ref(UVHandle.asHandle(wakeup))
        if let earliest = timers.earliestTime { armTimer(for: earliest) }
        let waiting = connectorsAwaitingRun
        connectorsAwaitingRun = []
        for connector in waiting { connector.reactorStarted() }
        fireSystemEvent(.startup)

        while !stopRequested {
            uv_run(loop, UV_RUN_DEFAULT)
        }
        shutDown()
    }

    /// Asks the reactor to stop: ``run(installSignalHandlers:)`` shuts down and
    /// returns after the current loop iteration. May be called from inside any callback.
    ///
    /// Reactor thread only; from another thread use
    /// `reactor.callFromThread { try reactor.stop() }`.
    /// - Throws: ``ReactorNotRunning`` if the reactor is not running or is already stopping.
    public func stop() throws(ReactorNotRunning) {
        assertOnReactorThread()
        guard state == .running, !stopRequested else { throw ReactorNotRunning() }
        stopRequested = true
        uv_stop(loop)
    }

    private func shutDown() {
        state = .shuttingDown
        fire(.before, .shutdown)
        fire(.during, .shutdown)
        stopSignalHandlers()
        uvMustSucceed(uv_timer_stop(timer), "uv_timer_stop")
        armedTime = .infinity
        uv_unref(UVHandle.asHandle(wakeup))
        drain()
        fire(.after, .shutdown)
        drain()
        state = .idle
    }

    /// Closes every port, connection and connection attempt, and runs the
    /// loop until nothing but the reactor's own (unreferenced) handles is
    /// left: close callbacks, cancelled requests, queued internal calls.
    ///
    /// Callbacks that run meanwhile may open things again (a port opened in
    /// `connectionLost`): each pass closes those too, so shutdown always ends.
    /// Connection attempts started during shutdown make no handle: they wait
    /// for the next `run()` (see `Connector.connect()`), so a factory that
    /// reconnects from `clientConnectionLost` cannot keep the loop alive.
    private func drain() {
        repeat {
            disconnectAll()
        } while uv_run(loop, UV_RUN_ONCE) != 0
    }

    /// True while `run()` shuts down after `stop()`.
    var isShuttingDown: Bool { state == .shuttingDown }

    /// Connection attempts made during shutdown, to start when the reactor runs again.
    var connectorsAwaitingRun: [Connector] = []

    /// Closes every port, connection and connection attempt (reactor shutdown).
    private func disconnectAll() {
        for connector in Array(connectorsInProgress.values) {
            connector.reactorWillShutDown()
        }
        for owner in openHandleOwners() {
            owner.reactorWillShutDown()
        }
    }

    /// The objects owning this loop's handles that are not closing (ports,
    /// connections, connection attempts), in libuv's walk order.
    func openHandleOwners() -> [HandleOwning] {
        var owners: [HandleOwning] = []
        withUnsafeMutablePointer(to: &owners) { pointer in
            uv_walk(loop, { handle, arg in
                guard let handle, uv_is_closing(handle) == 0, let owner = UVHandle.owner(of: handle) else { return }
                arg!.assumingMemoryBound(to: [HandleOwning].self).pointee.append(owner)
            }, pointer)
        }
        return owners
    }

    /// The number of libuv handles on this reactor's loop that belong to
    /// ports, transports and connection attempts (the reactor's own wakeup,
    /// timer and idle handles are not counted). After `run()` returns it is 0:
    /// every handle was closed. Reactor thread only.
    public var openHandleCount: Int {
        assertOnReactorThread()
        var count = 0
        withUnsafeMutablePointer(to: &count) { pointer in
            uv_walk(loop, { handle, arg in
                guard let handle, handle.pointee.data != nil else { return }
                arg!.assumingMemoryBound(to: Int.self).pointee += 1
            }, pointer)
        }
        return count
    }

    // MARK: Signals

    private func startSignalHandlers() {
        for signum in [SIGINT, SIGTERM] {
            _ = swisted_unblock_signal(signum)
            let handle = UVHandle.allocate(uv_signal_t.self)
            uvMustSucceed(uv_signal_init(loop, handle), "uv_signal_init")
            let rc = uv_signal_start(handle, reactorSignalCallback, signum)
            if rc != 0 {
                logError("Swisted: cannot handle signal \(signum): \(UVError(code: rc))")
                uv_close(UVHandle.asHandle(handle), freeInternalHandle)
                continue
            }
            uv_unref(UVHandle.asHandle(handle))
            signalHandles.append(handle)
        }
    }

    private func stopSignalHandlers() {
        for handle in signalHandles {
            uv_close(UVHandle.asHandle(handle), freeInternalHandle)
        }
        signalHandles.removeAll()
    }

    fileprivate func signalReceived() {
        try? stop()
    }

    // MARK: Time

    /// Seconds on a monotonic clock (`uv_hrtime`), the clock ``callLater(_:_:)``
    /// and ``DelayedCall/getTime()`` use. Any thread.
    public func seconds() -> Double {
        Double(uv_hrtime()) / 1_000_000_000
    }

    /// Schedules `function` to run on the reactor thread `seconds` from now
    /// (negative counts as 0). Calls due at the same time run in the order
    /// they were scheduled. An error thrown by `function` is logged and the
    /// reactor carries on.
    ///
    /// Reactor thread only. Returns the ``DelayedCall``, to cancel or move it.
    @discardableResult
    public func callLater(_ seconds: Double, _ function: @escaping () throws -> Void) -> DelayedCall {
        assertOnReactorThread()
        return timers.schedule(at: self.seconds() + max(0, seconds), function)
    }

    private func armTimer(for time: Double) {
        guard time < armedTime, !firingTimers else { return }  // timerFired re-arms after its round
        armedTime = time
        uv_update_time(loop)
        // Clamped: a far-future call (callLater(1e20)) must not overflow UInt64.
        let milliseconds = min(max(0, ((time - seconds()) * 1000).rounded(.up)), 1e15)
        uvMustSucceed(uv_timer_start(timer, reactorTimerCallback, UInt64(milliseconds), 0), "uv_timer_start")
    }

    /// True while timerFired runs a round, inside libuv's timer callback.
    private var firingTimers = false

    fileprivate func timerFired() {
        armedTime = .infinity
        guard state == .running else { return }  // delayed calls wait for the next run()
        firingTimers = true
        timers.runDue(at: seconds()) { error in
            self.logError("Unhandled error in a delayed call: \(error)")
        }
        firingTimers = false
        // A call not yet due (libuv timers have millisecond resolution) or
        // scheduled during this round: wake up again for it.
        guard let earliest = timers.earliestTime else { return }
        if earliest > seconds() {
            armTimer(for: earliest)
        } else {
            // Due now (a callLater(0) chain). On libuv 1.44 a 0 ms timer
            // started inside the timer callback runs again in the same
            // uv__run_timers pass, so I/O would never be polled (and stop()
            // never seen). Arm it from the idle phase instead: the loop
            // polls I/O first, then runs the next round.
            callSoon { [unowned self] in
                if self.state == .running, let earliest = self.timers.earliestTime { self.armTimer(for: earliest) }
            }
        }
    }

    // MARK: Internal deferral

    /// Runs `function` on the reactor thread at the next loop iteration,
    /// before polling (libuv idle handle). Used to deliver outcomes
    /// asynchronously, also during shutdown when delayed calls are paused.
    func callSoon(_ function: @escaping () -> Void) {
        soon.append(function)
        if soon.count == 1 { startIdle() }
    }

    /// Makes the loop's idle phase run ``runSoon()`` (work is queued), unless
    /// an async read callback is running: its end runs that work
    /// (``runSoonAfterRead()``) and starts the idle handle only for what is
    /// left then (no idle start and stop per read).
    func startIdle() {
        guard !inAsyncRead else { return }
        uvMustSucceed(uv_idle_start(idle, reactorIdleCallback), "uv_idle_start")  // no-op if already started
    }

    fileprivate func runSoon() {
        if !soon.isEmpty {
            let batch = soon
            soon.removeAll(keepingCapacity: true)
            for function in batch { function() }
        }
        if !localJobs.isEmpty { runJobBatch() }
        if soon.isEmpty && localJobs.isEmpty {
            uvMustSucceed(uv_idle_stop(idle), "uv_idle_stop")  // no-op if not started
        } else {
            startIdle()  // work queued by this round waits for the next
        }
    }

    /// Runs the executor jobs queued on this thread so far (jobs they queue
    /// wait for the next batch).
    private func runJobBatch() {
        #if DEBUG
        assert(!runningJobBatch, "Swisted: a job batch ran inside another (a nested loop run?)")
        runningJobBatch = true
        defer { runningJobBatch = false }
        #endif
        // Each access is its own statement: a job may queue the next batch.
        let count = localJobs.startBatch()
        var index = 0
        while index < count {
            runJob(localJobs.batchJob(index))
            index += 1
        }
    }

    /// Runs `read`, an async read callback's work, then
    /// ``runSoonAfterRead()``: work queued during `read` runs there, without
    /// starting the idle handle for it. Reactor thread.
    func asyncRead(_ read: () -> Void) {
        inAsyncRead = true
        read()
        inAsyncRead = false
        runSoonAfterRead()
    }

    /// Runs the idle phase's work now (``callSoon(_:)`` functions, then one
    /// batch of executor jobs, in that order as always), at the end of a
    /// read callback of the async API, after its protocol callback returned:
    /// the task that read woke runs, and usually writes its answer, before
    /// libuv reads the socket again. A read that filled the buffer is read
    /// again at once; with the answer not yet written, that read finds
    /// nothing in a request-response exchange (one `read` and one
    /// `epoll_wait` more per request), while the callback API answers inside
    /// its callback. Other work queued on this thread runs then too,
    /// earlier than the idle phase would have run it. Reactor thread.
    private func runSoonAfterRead() {
        guard !soon.isEmpty || !localJobs.isEmpty else { return }
        jobBatchesRunAfterRead &+= 1
        runSoon()
    }

    // MARK: Threads

    /// Runs `function` on the reactor thread, soon: the one reactor API that
    /// any thread may call, at any time, from many threads at once.
    ///
    /// Calls run in the order they were made (FIFO, so in order per thread).
    /// The reactor is woken through one `uv_async_t`; calls made while it is
    /// not running wait for the next ``run(installSignalHandlers:)``. An error
    /// thrown by `function` is logged.
    public func callFromThread(_ function: @escaping @Sendable () throws -> Void) {
        crossThreadJobs.append(.call(function))
        uvMustSucceed(uv_async_send(wakeup), "uv_async_send")
    }

    fileprivate func runCrossThreadJobs() {
        var jobs = spareJobs
        crossThreadJobs.take(into: &jobs)
        for job in jobs {
            switch job {
            case .call(let function):
                do { try function() } catch { logError("Unhandled error in callFromThread: \(error)") }
            case .job(let job):
                crossThreadExecutorJobs += 1
                runJob(job)
            }
        }
        jobs.removeAll(keepingCapacity: true)
        spareJobs = jobs
    }

    /// Swift concurrency jobs that reached the reactor from another thread
    /// (a task coming back from the global pool, say), since it was made.
    /// Reactor thread. For tests: a hop-free path keeps it still.
    package private(set) var crossThreadExecutorJobs = 0
    /// Swift concurrency jobs the reactor ran, since it was made. Reactor
    /// thread. For tests: a task waiting for data costs one per wake-up.
    /// `@exclusivity(unchecked)`: reactor thread only, one increment per job.
    @exclusivity(unchecked) package internal(set) var executorJobsRun = 0
    /// Rounds of the idle phase's work run at the end of an async read
    /// callback (``runSoonAfterRead()``), since it was made. Reactor thread.
    /// For tests.
    @exclusivity(unchecked) package private(set) var jobBatchesRunAfterRead = 0
    #if DEBUG
    /// True while `runJobBatch` runs (debug check: batches never nest).
    private var runningJobBatch = false
    #endif

    /// True only on the thread inside ``run(installSignalHandlers:)``.
    var isRunningOnCurrentThread: Bool {
        runningThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// True on the thread running the reactor, and on any thread while it is not running.
    var isOnReactorThread: Bool {
        let owner = runningThread.load(ordering: .relaxed)
        return owner == 0 || owner == UInt(pthread_self())
    }

    /// Debug builds: traps when reactor-thread API is called from another thread.
    @inline(__always)
    func assertOnReactorThread(_ function: StaticString = #function, file: StaticString = #fileID, line: UInt = #line) {
        assert(isOnReactorThread, "Swisted: \(function) was called off the reactor thread. Reactor-thread API (reactor, ports, connectors, transports, protocols, delayed calls) must be called on the thread running the reactor; from other threads use reactor.callFromThread { }.", file: file, line: line)
    }

    // MARK: System events

    /// Twisted's three phases of a system event.
    public enum Phase: Sendable, Hashable { case before, during, after }
    /// The reactor's system events: starting to run, and shutting down after ``stop()``.
    public enum SystemEvent: Sendable, Hashable { case startup, shutdown }

    /// Identifies a trigger added with ``addSystemEventTrigger(_:_:_:)``, to remove it.
    public struct TriggerID: Hashable, Sendable {
        fileprivate let value: Int
    }

    private struct Trigger {
        let id: Int
        let phase: Phase
        let event: SystemEvent
        let once: Bool
        let function: () throws -> Void
    }

    /// Calls `function` in `phase` of `event`, every time the event happens
    /// (startup: each ``run(installSignalHandlers:)``; shutdown: each stop).
    /// Before-shutdown triggers run while connections are still open; after
    /// during-shutdown triggers every port and connection is closed; after-shutdown
    /// triggers run once all of them got `connectionLost`. Errors thrown are logged.
    /// Reactor thread only.
    @discardableResult
    public func addSystemEventTrigger(_ phase: Phase, _ event: SystemEvent, _ function: @escaping () throws -> Void) -> TriggerID {
        assertOnReactorThread()
        return addTrigger(phase, event, once: false, function)
    }

    /// Removes a trigger. Returns false if it was not registered (already removed, or a
    /// ``callWhenRunning(_:)`` call that has run). Reactor thread only.
    @discardableResult
    public func removeSystemEventTrigger(_ id: TriggerID) -> Bool {
        assertOnReactorThread()
        guard let index = triggers.firstIndex(where: { $0.id == id.value }) else { return false }
        triggers.remove(at: index)
        return true
    }

    /// Calls `function` once the reactor is running: at once if it runs
    /// already, else when ``run(installSignalHandlers:)`` starts (once, not
    /// on every later run). Reactor thread only.
    public func callWhenRunning(_ function: @escaping () throws -> Void) {
        assertOnReactorThread()
        if state == .running {
            do { try function() } catch { logError("Unhandled error in callWhenRunning: \(error)") }
        } else {
            addTrigger(.after, .startup, once: true, function)
        }
    }

    @discardableResult
    private func addTrigger(_ phase: Phase, _ event: SystemEvent, once: Bool, _ function: @escaping () throws -> Void) -> TriggerID {
        nextTriggerID += 1
        triggers.append(Trigger(id: nextTriggerID, phase: phase, event: event, once: once, function: function))
        return TriggerID(value: nextTriggerID)
    }

    private func fireSystemEvent(_ event: SystemEvent) {
        fire(.before, event)
        fire(.during, event)
        fire(.after, event)
    }

    private func fire(_ phase: Phase, _ event: SystemEvent) {
        let due = triggers.filter { $0.phase == phase && $0.event == event }
        triggers.removeAll { $0.once && $0.phase == phase && $0.event == event }
        for trigger in due {
            // A trigger removed by an earlier one in this round does not run.
            if !trigger.once, !triggers.contains(where: { $0.id == trigger.id }) { continue }
            do { try trigger.function() } catch {
                logError("Unhandled error in \(phase) \(event) trigger: \(error)")
            }
        }
    }

    // MARK: Errors

    /// Reports an error nobody else handles, through ``logHandler`` if set,
    /// else ``logger`` at `.error`.
    func logError(_ message: String, metadata: Logger.Metadata = [:]) {
        log(.error, message, metadata: metadata)
    }

    /// Reports what the reactor did on its own (a recovery, a give-up the
    /// user configured), through ``logHandler`` if set, else ``logger`` at `level`.
    func log(_ level: Logger.Level, _ message: String, metadata: Logger.Metadata = [:]) {
        if let logHandler {
            logHandler(message)
        } else {
            logger.log(level: level, "\(message)", metadata: metadata)
        }
    }
}

// The reactor's own handles have no owner object (`data == nil`): their
// callbacks find the reactor through `handle->loop->data`.

private func reactorWakeupCallback(_ handle: UnsafeMutablePointer<uv_async_t>?) {
    Reactor.of(handle!.pointee.loop)._withUnsafeGuaranteedRef { $0.runCrossThreadJobs() }
}

private func reactorTimerCallback(_ handle: UnsafeMutablePointer<uv_timer_t>?) {
    Reactor.of(handle!.pointee.loop)._withUnsafeGuaranteedRef { $0.timerFired() }
}

private func reactorIdleCallback(_ handle: UnsafeMutablePointer<uv_idle_t>?) {
    Reactor.of(handle!.pointee.loop)._withUnsafeGuaranteedRef { $0.runSoon() }
}

private func reactorSignalCallback(_ handle: UnsafeMutablePointer<uv_signal_t>?, _ signum: Int32) {
    Reactor.of(handle!.pointee.loop)._withUnsafeGuaranteedRef { $0.signalReceived() }
}

private func freeInternalHandle(_ handle: UnsafeMutablePointer<uv_handle_t>?) {
    handle?.deallocate()
}

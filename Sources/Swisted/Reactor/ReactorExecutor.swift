import CLibUV
import Glibc

// MARK: The reactor as a Swift executor

/// The reactor is a Swift `SerialExecutor` and `TaskExecutor`: jobs given to
/// it run on the reactor's thread, between I/O callbacks, one at a time.
///
/// An actor whose executor is the reactor's runs on the reactor thread, so it
/// may call transports, protocols and the reactor synchronously, and a
/// protocol callback may enter it with `assumeIsolated` with no thread hop:
///
/// ```swift
/// actor ChatRoom {
///     let reactor: Reactor
///     nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }
///     var members: [Protocol] = []
///     func broadcast(_ line: String) { for member in members { member.transport?.write(line) } }
/// }
/// // inside a protocol's dataReceived (on the reactor thread):
/// room.assumeIsolated { $0.broadcast(line) }
/// ```
///
/// `Task(executorPreference: reactor) { ... }` runs nonisolated async code
/// on the reactor thread the same way.
///
/// Jobs enqueued from the reactor thread itself run at the next loop
/// iteration, before polling (no lock, no system call), or, when a read of
/// the async connection API woke them, at the end of that read's callback
/// (so an answer is written before libuv reads the socket again, as a
/// protocol's `dataReceived` would write it); jobs from other
/// threads enter through the same `uv_async_t` wake-up as
/// ``callFromThread(_:)``, in one FIFO with it. Neither allocates per job.
/// Jobs wait while the reactor is not running and run at the next
/// ``run(installSignalHandlers:)``: a reactor that never runs never runs them.
///
/// Nonisolated async code in such a task (the async connection API, say)
/// runs on the reactor thread *as nonisolated code*: calling from it into
/// nonisolated async functions makes no hop; only entering an actor does.
///
/// An actor on the reactor needs no executor preference for its tasks
/// (`Task { await actor.serve() }`): a task waiting in it through the async
/// connection API (``AsyncConnection``'s `inbound`, `write`, `close`, an
/// ``AsyncListener``'s connections, ``listen(port:interface:backlog:maxPendingConnections:options:)``,
/// ``connect(host:port:timeout:bindAddress:options:)``) is woken on the
/// reactor thread, isolated to the actor, as one job (``resume(_:with:isolated:)``;
/// without a preference through Swift's global-enqueue hook, see
/// ``WakeUpHook``). Other awaits in such a task (`Task.sleep`, another
/// task's value, a continuation you resume yourself) resume on the global
/// pool first and hop back: give the task the reactor as preference
/// (`Task(executorPreference: reactor)`) if it awaits those often.
/// (Internally, actor jobs reach the reactor through a separate serial
/// executor object, ``asUnownedSerialExecutor()``, so the reactor can run
/// each job in the context it was enqueued for.)
///
/// Threading: `enqueue` may be called from any thread (Swift calls it).
extension Reactor: SerialExecutor, TaskExecutor {
    /// Schedules a Swift concurrency job on the reactor thread. Any thread.
    ///
    /// Jobs enqueued here (a task whose executor preference is the reactor)
    /// run as nonisolated code with the reactor as task executor; actor jobs
    /// come through ``asUnownedSerialExecutor()`` and run isolated to it.
    public func enqueue(_ job: consuming ExecutorJob) {
        schedule(UnownedJob(job), .nonisolated)
    }

    /// Queues a job for the reactor thread: locally (no lock, no wake-up)
    /// when called on it, else through the cross-thread queue. `context`:
    /// `.isolated` for an actor's job (enqueued on
    /// ``asUnownedSerialExecutor()``), `.nonisolated` for the job of a task
    /// preferring the reactor.
    ///
    /// An actor's job runs with no task executor, as the runtime runs
    /// actors' jobs. The task ``resume(_:with:isolated:)`` is waking comes
    /// here (as a task's job, `.nonisolated`) if it prefers the reactor
    /// (tasks without a preference go to the global enqueue instead, see
    /// ``WakeUpHook``): it runs isolated, with the reactor as task executor
    /// too (``JobContext``). A task preferring the reactor that enters an
    /// actor on it otherwise may take one or two extra jobs (Swift switches
    /// where the two differ) until its first such wake-up.
    func schedule(_ job: UnownedJob, _ context: JobContext) {
        if isRunningOnCurrentThread {
            queueLocally(job, isWaking(job) ? .isolatedPreferringReactor : context)
        } else {
            crossThreadJobs.append(.job(ReactorJob(job: job, context: context)))
            uvMustSucceed(uv_async_send(wakeup), "uv_async_send")
        }
    }

    /// Queues `job` to run on this thread in the idle phase. Reactor thread.
    @inline(__always)
    private func queueLocally(_ job: UnownedJob, _ context: JobContext) {
        if localJobs.append(ReactorJob(job: job, context: context)) { startIdle() }
    }

    /// True if `job` is the task ``resume(_:with:isolated:)`` is waking; the
    /// mark is consumed (one enqueue per wake-up). Reactor thread.
    @inline(__always)
    private func isWaking(_ job: UnownedJob) -> Bool {
        guard let waking = wakingIsolated, waking == job.address else { return false }
        wakingIsolated = nil
        return true
    }

    /// Takes the global-pool enqueue of the task ``resume(_:with:isolated:)``
    /// is waking, if `job` is that task (``WakeUpHook``): such a task has no
    /// executor preference (with one, its job would have come to
    /// ``enqueue(_:)``), so its job runs isolated to the reactor's serial
    /// executor with no task executor. False otherwise (the caller passes
    /// the job on to the global pool). Reactor thread.
    func takeWakeUp(_ job: UnownedJob) -> Bool {
        guard isWaking(job) else { return false }
        queueLocally(job, .isolated)
        return true
    }

    /// This reactor as the executor of an actor (`unownedExecutor`): every
    /// actor using it runs on the reactor thread, serialized with the
    /// reactor's callbacks and with each other.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        unownedSerialExecutor
    }

    /// True if `actor` runs on this reactor's serial executor (its
    /// `unownedExecutor` is ``asUnownedSerialExecutor()``). Any thread.
    func isSerialExecutor(of actor: (any Actor)?) -> Bool {
        guard let actor else { return false }
        return actor.unownedExecutor.asSerialExecutor() === serialExecutor
    }

    /// Resumes a suspended consumer's `continuation` with `result`, from the
    /// reactor thread. `isolated`: the consumer waits in code isolated to
    /// this reactor's serial executor (an actor on it). A resumed
    /// continuation re-enqueues its task as nonisolated work: on its
    /// preferred executor (the reactor's ``enqueue(_:)``), or on the global
    /// pool if it has none; the task's first step is then back into the
    /// actor, a second job (or a hop to a pool thread and back). Marking that
    /// task's enqueue runs it isolated to the serial executor at once, on the
    /// reactor thread, with the task executor its preference calls for
    /// (``JobContext``; the global enqueue is taken by ``WakeUpHook``). Only
    /// that task's job is taken (a continuation is its task). Tasks that
    /// wait in nonisolated code are resumed as before: for them an isolated
    /// job would cost the second job instead.
    @inline(__always)
    func resume<T, E>(_ continuation: UnsafeContinuation<T, E>, with result: sending Result<T, E>, isolated: Bool) {
        guard isolated, isRunningOnCurrentThread else { return continuation.resume(with: result) }
        wakingIsolated = unsafeBitCast(continuation, to: UnsafeRawPointer.self)
        continuation.resume(with: result)
        // Not consumed if the task went to another executor, or was not
        // suspended yet (it then goes on without an enqueue).
        wakingIsolated = nil
    }

    /// This reactor as a task executor preference (`Task(executorPreference:)`).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        unownedTaskExecutor
    }

    /// Traps unless called on the thread running this reactor: what
    /// `assumeIsolated` and `preconditionIsolated` rely on.
    public func checkIsolated() {
        precondition(isRunningOnCurrentThread, "Swisted: expected to run on the reactor's thread (inside reactor.run())")
    }

    /// True on the thread running this reactor (inside ``run(installSignalHandlers:)``).
    public func isIsolatingCurrentContext() -> Bool? {
        isRunningOnCurrentThread
    }

    /// Runs one job on this thread in its ``JobContext``: a task's job as
    /// nonisolated code on the reactor as task executor (its nonisolated
    /// async calls then need no executor switch), an actor's job isolated to
    /// the reactor's serial executor, with the reactor as task executor or
    /// none.
    func runJob(_ job: ReactorJob) {
        executorJobsRun &+= 1
        switch job.context {
        case .nonisolated:
            job.job.runSynchronously(on: unownedTaskExecutor)
        case .isolatedPreferringReactor:
            job.job.runSynchronously(isolatedTo: unownedSerialExecutor, taskExecutor: unownedTaskExecutor)
        case .isolated:
            job.job.runSynchronously(on: unownedSerialExecutor)
        }
    }
}

/// How the reactor runs a Swift concurrency job. At every executor check
/// Swift compares the task executor the job runs on with its task's
/// preference, and switches (one more job) where they differ: a job should
/// run with the reactor as task executor exactly when its task prefers the
/// reactor.
enum JobContext: UInt8 {
    /// A job of a task preferring the reactor (enqueued on the reactor as
    /// task executor): nonisolated code, the reactor as task executor.
    case nonisolated
    /// An actor's job (isolated to the reactor's serial executor) whose task
    /// prefers the reactor: the reactor as task executor too.
    case isolatedPreferringReactor
    /// An actor's job whose task has no preference (or another): no task
    /// executor, as the runtime runs actors' jobs.
    case isolated
}

extension UnownedJob {
    /// The job's address: for a task's job, the task (what a continuation
    /// of that task holds, see ``Reactor/resume(_:with:isolated:)``).
    var address: UnsafeRawPointer { unsafeBitCast(self, to: UnsafeRawPointer.self) }
}

/// A Swift concurrency job for the reactor, and the context to run it in.
struct ReactorJob {
    let job: UnownedJob
    let context: JobContext
}

/// The executor jobs enqueued on the reactor thread itself, run in batches
/// from the idle phase (jobs enqueued while a batch runs wait for the next
/// one, so I/O runs in between). Two arrays swap roles per batch and keep
/// their storage: queueing and running a job neither allocates nor clears
/// the array (`removeAll(keepingCapacity:)` cost ~60 instructions a batch).
///
/// Threading: reactor thread only (a `Reactor` field).
struct LocalJobQueue {
    /// The batch being filled: its first `filled` elements (the rest are
    /// stale and overwritten).
    private var filling: [ReactorJob] = []
    private var filled = 0
    /// The batch being run: its first elements, as many as ``startBatch()`` returned.
    private var batch: [ReactorJob] = []

    var isEmpty: Bool { filled == 0 }

    /// Queues `job`; true if it is the first of the next batch.
    @inline(__always)
    mutating func append(_ job: ReactorJob) -> Bool {
        if filled < filling.count {
            filling[filled] = job
        } else {
            filling.append(job)
        }
        filled += 1
        return filled == 1
    }

    /// Makes the queued jobs the batch to run and returns how many there
    /// are; jobs queued from now on go to the next batch.
    mutating func startBatch() -> Int {
        let count = filled
        swap(&filling, &batch)
        filled = 0
        return count
    }

    /// Job `index` of the batch ``startBatch()`` started.
    func batchJob(_ index: Int) -> ReactorJob {
        batch[index]
    }
}

/// The serial-executor face of a ``Reactor``: what
/// ``Reactor/asUnownedSerialExecutor()`` returns, so the reactor can tell an
/// actor's jobs (enqueued here) from the jobs of tasks that merely prefer it
/// as task executor (enqueued on the reactor itself). Both run on the
/// reactor thread, in one FIFO.
///
/// Threading: any thread (Swift calls `enqueue`, the isolation checks).
final class ReactorSerialExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked Sendable: one immutable reference.
    /// The reactor owns this object and outlives every use of it (actors
    /// hold the reactor to name their executor).
    unowned let reactor: Reactor

    init(reactor: Reactor) {
        self.reactor = reactor
    }

    func enqueue(_ job: consuming ExecutorJob) {
        reactor.schedule(UnownedJob(job), .isolated)
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        reactor.checkIsolated()
    }

    func isIsolatingCurrentContext() -> Bool? {
        reactor.isIsolatingCurrentContext()
    }
}

// MARK: Submitting work from async code

extension Reactor {
    /// Runs `body` on the reactor thread and returns its value (or throws its
    /// error) to the awaiting task: the async form of ``callFromThread(_:)``.
    ///
    /// Called on the reactor thread (from an actor on the reactor's executor,
    /// say), `body` runs at once with no hop. Otherwise it runs at the
    /// reactor's next wake-up, or when the reactor next runs if it is not
    /// running. `body` is `sending`: it may capture values that the caller
    /// hands over (built before the call and not used after), such as a new
    /// factory; its result must be `Sendable`.
    ///
    /// ```swift
    /// let port = try await reactor.submit { try reactor.listenTCP(0, Factory.forProtocol(Echo.self)).getHost() }
    /// ```
    ///
    /// Threading: any thread, any task. Cancelling the awaiting task does not
    /// cancel `body`: it runs, and its result is returned.
    /// - Throws: whatever `body` throws.
    public func submit<T: Sendable>(_ body: sending @escaping () throws -> T) async throws -> T {
        if isRunningOnCurrentThread { return try body() }
        nonisolated(unsafe) let body = body  // `sending`: no one else holds it
        return try await withCheckedThrowingContinuation { continuation in
            callFromThread { continuation.resume(with: Result { try body() }) }
        }
    }
}

import CLibUV
import Glibc

/// Lets an actor on a reactor be woken on the reactor thread when its task
/// has no executor preference.
///
/// A suspended task resumed through a continuation is enqueued as
/// nonisolated work: on its preferred task executor, or, without one, on
/// Swift's global pool, from where its next step hops back into its actor
/// (two thread switches per wake-up). When the async connection API wakes a
/// task that waits isolated to an actor on the reactor
/// (``Reactor/resume(isolated:_:)``, on the reactor thread), that enqueue is
/// taken here instead and runs as one job on the reactor, isolated to the
/// actor: the same place the task's next step would have gone, without the
/// round trip through the pool.
///
/// It uses the runtime's global-enqueue hook, which is process-wide: the
/// hook is installed once, the first time a reactor runs, and passes every
/// other job on unchanged (to the hook installed before it, if any, else to
/// the global pool), at the cost of one thread-local lookup. If other code
/// later replaces the hook without passing jobs on, such wake-ups take the
/// pool round trip again: slower, still correct.
///
/// Threading: `enter`/`leave` on the thread running the reactor; the hook on
/// any thread (Swift calls it).
enum WakeUpHook {
    typealias Original = @convention(thin) (UnownedJob) -> Void
    typealias Hook = @convention(thin) (UnownedJob, Original) -> Void

    /// The reactor running on each thread (`Unmanaged`, unretained: set only
    /// while its `run()` is on the stack).
    private static let runningReactor: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, nil)
        precondition(rc == 0, "Swisted: pthread_key_create failed (\(rc))")
        return key
    }()

    /// The hook that was installed before this one, if any: jobs not taken
    /// here go on to it. Written once, before the hook is published.
    nonisolated(unsafe) private static var previous: Hook?

    /// Installs the hook, once per process.
    private static let installed: Void = {
        let hook: Hook = { job, original in
            // The reactor is alive while its run() is on this thread's stack: no retain.
            if let raw = pthread_getspecific(WakeUpHook.runningReactor),
               Unmanaged<Reactor>.fromOpaque(raw)._withUnsafeGuaranteedRef({ $0.takeWakeUp(job) }) {
                return
            }
            if let previous = WakeUpHook.previous { previous(job, original) } else { original(job) }
        }
        let slot = swisted_swift_task_enqueue_global_hook()
        let mine = unsafeBitCast(hook, to: UnsafeMutableRawPointer.self)
        var expected: UnsafeMutableRawPointer? = slot.pointee
        while true {
            previous = expected.map { unsafeBitCast($0, to: Hook.self) }
            if swisted_compare_exchange_pointer(slot, &expected, mine) { break }
        }
    }()

    /// Marks `reactor` as running on this thread (installing the hook the
    /// first time); returns what was marked before, for ``leave(restoring:)``.
    static func enter(_ reactor: Reactor) -> UnsafeMutableRawPointer? {
        _ = installed
        let outer = pthread_getspecific(runningReactor)
        let rc = pthread_setspecific(runningReactor, Unmanaged.passUnretained(reactor).toOpaque())
        precondition(rc == 0, "Swisted: pthread_setspecific failed (\(rc))")
        return outer
    }

    /// Undoes ``enter(_:)``.
    static func leave(restoring outer: UnsafeMutableRawPointer?) {
        let rc = pthread_setspecific(runningReactor, outer)
        precondition(rc == 0, "Swisted: pthread_setspecific failed (\(rc))")
    }
}

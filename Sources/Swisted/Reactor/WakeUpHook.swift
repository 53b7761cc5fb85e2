import CLibUV
import Glibc
import Synchronization

/// Lets an actor on a reactor be woken on the reactor thread when its task
/// has no executor preference.
///
/// A suspended task resumed through a continuation is enqueued as
/// nonisolated work: on its preferred task executor, or, without one, on
/// Swift's global pool, from where its next step hops back into its actor
/// (two thread switches per wake-up). When the async connection API wakes a
/// task that waits isolated to an actor on the reactor
/// (``Reactor/resume(_:with:isolated:)``, on the reactor thread), that
/// task's enqueue is taken here instead and runs as one job on the reactor,
/// isolated to the actor: the same place the task's next step would have
/// gone, without the round trip through the pool. Only that task's job is
/// taken (the reactor compares the job with the continuation's task).
///
/// It uses the runtime's global-enqueue hook, which is process-wide: the
/// hook is installed once, the first time a reactor runs, and passes every
/// other job on unchanged, to the hook that was installed before it, if
/// any, else to the global pool. That costs every global enqueue in the
/// process a thread-local lookup, two loads and an indirect call. If other
/// code later replaces the hook, such wake-ups take the pool round trip
/// again: slower, still correct. It is never installed again (the other
/// hook may pass jobs on to this one: installing over it would make a
/// loop), and never removed (a hook installed after it may pass jobs to it).
///
/// Threading: `enter`/`leave` on the thread running the reactor; the hook on
/// any thread (Swift calls it).
package enum WakeUpHook {
    /// The runtime's own global enqueue, as the hook receives it.
    package typealias Original = @convention(thin) (UnownedJob) -> Void
    /// A global-enqueue hook (`swift_task_enqueueGlobal_hook`'s type).
    package typealias Hook = @convention(thin) (UnownedJob, Original) -> Void

    /// The reactor running on each thread (`Unmanaged`, unretained: set only
    /// while its `run()` is on the stack).
    private static let runningReactor: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, nil)
        precondition(rc == 0, "Swisted: pthread_key_create failed (\(rc))")
        return key
    }()

    /// The hook that was installed before this one (its address, 0: none):
    /// jobs not taken here go on to it. Stored before the hook is published.
    private static let previous = Atomic<UInt>(0)

    /// This hook.
    private static let hook: Hook = { job, original in
        // The reactor is alive while its run() is on this thread's stack: no retain.
        if let raw = pthread_getspecific(WakeUpHook.runningReactor),
           Unmanaged<Reactor>.fromOpaque(raw)._withUnsafeGuaranteedRef({ $0.takeWakeUp(job) }) {
            return
        }
        let previous = WakeUpHook.previous.load(ordering: .acquiring)
        if previous != 0 {
            unsafeBitCast(previous, to: Hook.self)(job, original)
        } else {
            original(job)
        }
    }

    /// Installs the hook, once per process, chaining to what is there.
    private static let installed: Void = {
        let slot = swisted_swift_task_enqueue_global_hook()
        let mine = unsafeBitCast(hook, to: UnsafeMutableRawPointer.self)
        var expected: UnsafeMutableRawPointer? = slot.pointee
        while true {
            previous.store(UInt(bitPattern: expected), ordering: .releasing)
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

import Glibc

/// State shared between threads, behind a pthread mutex: the one lock type
/// of Swisted (the cross-thread job queue, the async layer, the Deferred
/// await bridge, ``SwistedLog``, ``Latch``).
///
/// A pthread mutex rather than the standard library's `Synchronization.Mutex`:
/// ThreadSanitizer intercepts pthread locks, but not the precompiled futex
/// lock inside `Mutex`, and reported its critical sections as races.
///
/// Threading: any thread. `body` runs with the lock held: it must not call
/// out (no continuation resumes, no reactor calls) and must not re-enter.
final class Locked<State>: @unchecked Sendable {
    // @unchecked Sendable: `state` is only touched with `mutex` held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// `@exclusivity(unchecked)`: the mutex already makes every access
    /// exclusive (and `body` must not re-enter), so the runtime's dynamic
    /// exclusivity check (~80 instructions per access) proves nothing here.
    @exclusivity(unchecked) private var state: State

    init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "Swisted: pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` on the state with the lock held.
    @inline(__always)
    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }

    /// Blocks the calling thread until `isReady` holds for the state,
    /// re-checking each time `condition` is broadcast (``Condition/broadcast()``,
    /// called with this lock held, i.e. inside ``withLock(_:)``).
    func wait(on condition: Condition, until isReady: (State) -> Bool) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !isReady(state) { pthread_cond_wait(condition.cond, mutex) }
    }
}

/// A pthread condition variable, used with a ``Locked`` (see
/// ``Locked/wait(on:until:)``).
/// Threading: any thread.
final class Condition: @unchecked Sendable {
    // @unchecked Sendable: a pthread condition is made to be shared.
    fileprivate let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        cond = .allocate(capacity: 1)
        let rc = pthread_cond_init(cond, nil)
        precondition(rc == 0, "Swisted: pthread_cond_init failed: \(rc)")
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    /// Wakes every thread blocked in ``Locked/wait(on:until:)`` on it.
    func broadcast() {
        pthread_cond_broadcast(cond)
    }
}

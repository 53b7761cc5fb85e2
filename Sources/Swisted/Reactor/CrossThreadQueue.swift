import Glibc

/// The jobs other threads hand to a reactor (`callFromThread`), behind a
/// pthread mutex: appended from any thread, taken by the reactor thread in
/// one swap per wake-up (no allocation per job beyond the closure, none for
/// executor jobs).
///
/// A pthread mutex rather than the standard library's `Mutex`: ThreadSanitizer
/// intercepts pthread locks, but not the precompiled futex lock inside
/// `Synchronization.Mutex`, and reported its critical sections as races.
final class CrossThreadQueue: @unchecked Sendable {
    /// A `callFromThread` closure, or a Swift concurrency job for the reactor
    /// as executor (a pointer: no allocation per job). One queue keeps the two
    /// in the order they were made.
    enum Job {
        case call(@Sendable () throws -> Void)
        case job(ReactorJob)
    }
    // @unchecked Sendable: `jobs` is only touched with `lock` held.
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var jobs: [Job] = []

    init() {
        lock = .allocate(capacity: 1)
        let rc = pthread_mutex_init(lock, nil)
        precondition(rc == 0, "Swisted: pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    /// Adds a job (any thread).
    func append(_ job: Job) {
        pthread_mutex_lock(lock)
        jobs.append(job)
        pthread_mutex_unlock(lock)
    }

    /// Swaps the queued jobs with `spare` (an empty array whose capacity is reused).
    func take(into spare: inout [Job]) {
        pthread_mutex_lock(lock)
        swap(&jobs, &spare)
        pthread_mutex_unlock(lock)
    }
}

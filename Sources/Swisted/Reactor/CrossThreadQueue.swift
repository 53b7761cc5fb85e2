/// The jobs other threads hand to a reactor (`callFromThread`), behind a
/// ``Locked`` (a pthread mutex, visible to ThreadSanitizer): appended from
/// any thread, taken by the reactor thread in one swap per wake-up (no
/// allocation per job beyond the closure, none for executor jobs).
///
/// Threading: any thread.
final class CrossThreadQueue: Sendable {
    /// A `callFromThread` closure, or a Swift concurrency job for the reactor
    /// as executor (a pointer: no allocation per job). One queue keeps the two
    /// in the order they were made.
    enum Job {
        case call(@Sendable () throws -> Void)
        case job(ReactorJob)
    }

    private let jobs = Locked<[Job]>([])

    /// Adds a job (any thread).
    @inline(__always)
    func append(_ job: Job) {
        jobs.withLock { $0.append(job) }
    }

    /// Swaps the queued jobs with `spare` (an empty array whose capacity is reused).
    @inline(__always)
    func take(into spare: inout [Job]) {
        jobs.withLock { swap(&$0, &spare) }
    }
}

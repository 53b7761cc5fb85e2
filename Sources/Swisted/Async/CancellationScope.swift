import CLibUV

/// `withTaskCancellationHandler` for the waits of the async API, without
/// its executor checks.
///
/// The standard library's `withTaskCancellationHandler` is not inlinable
/// and takes an `isolation:` parameter, so every call switches to that
/// isolation on entry and again after its operation returns, and its
/// operation closure checks once more on entry. With a task executor
/// preference (how tasks run on a reactor) each check reads the preference
/// under the task's status-record lock: three of the six executor checks of
/// an `inbound` read, ~1,100 of the async echo's ~7,500 instructions per
/// round trip (callgrind). This scope calls the two runtime entry points
/// that function is made of, `swift_task_addCancellationHandler` and
/// `swift_task_removeCancellationHandler` (exported by the concurrency
/// runtime since Swift 5.5; the standard library declares them with this
/// signature: a Swift closure in, the record's address out), from inlined
/// code, so a wait costs its continuation's suspension and nothing more.
///
/// Swift refuses a `@_silgen_name` declaration of a runtime symbol (a
/// warning now, an error later), so the linker resolves their addresses in
/// the C shim, and they are called through `@convention(thin)` function types.
enum CancellationScope {
    typealias Add = @convention(thin) (() -> Void) -> UnsafeRawPointer
    typealias Remove = @convention(thin) (UnsafeRawPointer) -> Void

    @inline(__always)
    static var add: Add { unsafeBitCast(swisted_swift_task_add_cancellation_handler(), to: Add.self) }

    @inline(__always)
    static var remove: Remove { unsafeBitCast(swisted_swift_task_remove_cancellation_handler(), to: Remove.self) }

    typealias GetCurrent = @convention(thin) () -> UnsafeRawPointer?
    typealias IsCancelled = @convention(thin) (UnsafeRawPointer) -> Bool

    /// `Task.isCancelled`, from the runtime's two entry points it is made of
    /// (`swift_task_getCurrent`, `swift_task_isCancelled`): the standard
    /// library's is not inlinable and retains and releases the task (~120
    /// instructions a call; the async write and every wait ask it).
    /// False outside a task.
    @inline(__always)
    static var currentTaskIsCancelled: Bool {
        let current = unsafeBitCast(swisted_swift_task_get_current(), to: GetCurrent.self)
        guard let task = current() else { return false }
        return unsafeBitCast(swisted_swift_task_is_cancelled(), to: IsCancelled.self)(task)
    }
}

/// Suspends the current task with a continuation, as
/// `withUnsafeThrowingContinuation` does (`body` runs at once, here, and
/// resumes the continuation now or later, exactly once), with `onCancel`
/// registered as the task's cancellation handler until the task resumes,
/// as `withTaskCancellationHandler` around it would (``CancellationScope``
/// says why this one exists). `onCancel` runs on the cancelling thread, or
/// at once, here, if the task is cancelled already; it must only do
/// thread-safe work.
///
/// The task suspends in the caller's isolation: the continuation is made
/// in this function's body (not in a closure, where `#isolation` is nil),
/// so an actor's task does not switch to the generic executor to suspend
/// (on the reactor, a job) and back after resuming (another).
///
/// Threading: a task. The handler lives in this frame; its record is
/// removed before this returns, as the standard library's is.
@inline(__always)
nonisolated(nonsending) func withCancellationHandler<T>(
    onCancel: @Sendable () -> Void,
    suspending body: (UnsafeContinuation<T, any Error>) -> Void
) async throws -> T {
    let record = CancellationScope.add(onCancel)
    defer { CancellationScope.remove(record) }
    return try await withUnsafeThrowingContinuation(body)
}

// The one header Swisted's Swift code imports libuv through.
// Only helpers that Swift cannot express well live here; everything else
// is plain libuv, called from Sources/Swisted/Handles and Transports.
#ifndef SWISTED_CLIBUV_SHIM_H
#define SWISTED_CLIBUV_SHIM_H

#include <uv.h>
#include <signal.h>
#include <stdbool.h>
#include <pthread.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <netdb.h>
#include <sys/prctl.h>

/// Ignores SIGPIPE for the whole process, so a write to a socket the peer
/// has reset gives EPIPE (reported as ConnectionLost) instead of killing us.
/// `signal` and `SIG_IGN` are macros Swift cannot call portably.
static inline void swisted_ignore_sigpipe(void) {
    signal(SIGPIPE, SIG_IGN);
}

/// Unblocks `signum` for the calling thread. A process may start with
/// SIGINT/SIGTERM blocked (inherited from a parent thread's mask, as with
/// Foundation's Process); a reactor asked to handle them must receive them.
static inline int swisted_unblock_signal(int signum) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signum);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/// Names the calling thread as tools show it (`top -H`, gdb): at most 15
/// bytes are kept. `pthread_setname_np` needs _GNU_SOURCE, which Swift's
/// Glibc module does not define.
static inline void swisted_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

/// The addresses of the Swift concurrency runtime's two cancellation-handler
/// entry points (what `withTaskCancellationHandler` is made of), resolved by
/// the linker. Swift refuses to name runtime symbols itself; it calls these
/// through `@convention(thin)` function types of the signature the standard
/// library declares for them (Sources/Swisted/Async/CancellationScope.swift).
static inline const void * _Nonnull swisted_swift_task_add_cancellation_handler(void) {
    extern void swift_task_addCancellationHandler(void);
    return (const void *)&swift_task_addCancellationHandler;
}

static inline const void * _Nonnull swisted_swift_task_remove_cancellation_handler(void) {
    extern void swift_task_removeCancellationHandler(void);
    return (const void *)&swift_task_removeCancellationHandler;
}

/// True in a program built with ThreadSanitizer: its runtime, linked into
/// the program, defines `__tsan_init`; elsewhere this weak reference is null.
static inline bool swisted_thread_sanitizer_active(void) {
    extern void __tsan_init(void) __attribute__((weak));
    return &__tsan_init != 0;
}

/// The addresses of `swift_task_getCurrent` (the running task, or null) and
/// `swift_task_isCancelled` (what `Task.isCancelled` is made of, without its
/// retain and release of the task), called the same way.
static inline const void * _Nonnull swisted_swift_task_get_current(void) {
    extern void swift_task_getCurrent(void);
    return (const void *)&swift_task_getCurrent;
}

static inline const void * _Nonnull swisted_swift_task_is_cancelled(void) {
    extern void swift_task_isCancelled(void);
    return (const void *)&swift_task_isCancelled;
}

/// The address of the Swift concurrency runtime's global-enqueue hook (a
/// function pointer the runtime calls, if set, for every job it would give
/// the global pool), resolved by the linker; Swift refuses to name runtime
/// symbols itself. Sources/Swisted/Reactor/WakeUpHook.swift installs it.
static inline void * _Nullable * _Nonnull swisted_swift_task_enqueue_global_hook(void) {
    extern void *swift_task_enqueueGlobal_hook;
    return &swift_task_enqueueGlobal_hook;
}

/// Atomically replaces `*slot` by `desired` if it holds `*expected`; else
/// stores what it holds in `*expected`. True if replaced.
static inline _Bool swisted_compare_exchange_pointer(void * _Nullable * _Nonnull slot,
                                                     void * _Nullable * _Nonnull expected,
                                                     void * _Nullable desired) {
    return __atomic_compare_exchange_n(slot, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

#endif

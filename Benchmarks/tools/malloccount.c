/*
 * malloccount.so: LD_PRELOAD allocation counter for the echo benchmarks.
 *
 * Counts calls to malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign, valloc (and free, separately) in the whole process, forwarding to
 * glibc's __libc_* implementations (no dlsym, so no bootstrap problem).
 * On SIGUSR2, and at exit, appends one line to the file named by
 * $MALLOCCOUNT_FILE:
 *     allocs=<N> malloc=<N> calloc=<N> realloc=<N> memalign=<N> free=<N>
 * The signal handler only uses async-signal-safe calls (open/write/close).
 *
 * Build: gcc -O2 -shared -fPIC -o malloccount.so malloccount.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t n_malloc, n_calloc, n_realloc, n_memalign, n_free;
static char out_path[4096];

#define INC(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

void *malloc(size_t n) { INC(n_malloc); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { INC(n_calloc); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { INC(n_realloc); return __libc_realloc(p, n); }
void free(void *p) { if (p) INC(n_free); __libc_free(p); }
void *memalign(size_t al, size_t n) { INC(n_memalign); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { INC(n_memalign); return __libc_memalign(al, n); }
void *valloc(size_t n) { INC(n_memalign); return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n); }
int posix_memalign(void **out, size_t al, size_t n) {
    INC(n_memalign);
    if (al < sizeof(void *) || (al & (al - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(al, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}

static char *put_u64(char *p, uint64_t v) {
    char tmp[24];
    int i = 0;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (i) *p++ = tmp[--i];
    return p;
}

static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }

static void dump(void) {
    if (!out_path[0]) return;
    int saved = errno;
    uint64_t m = LOAD(n_malloc), c = LOAD(n_calloc), r = LOAD(n_realloc), a = LOAD(n_memalign), f = LOAD(n_free);
    char line[256], *p = line;
    p = put_str(p, "allocs="); p = put_u64(p, m + c + r + a);
    p = put_str(p, " malloc="); p = put_u64(p, m);
    p = put_str(p, " calloc="); p = put_u64(p, c);
    p = put_str(p, " realloc="); p = put_u64(p, r);
    p = put_str(p, " memalign="); p = put_u64(p, a);
    p = put_str(p, " free="); p = put_u64(p, f);
    *p++ = '\n';
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)(p - line));
        (void)w;
        close(fd);
    }
    errno = saved;
}

static void on_usr2(int sig) { (void)sig; dump(); }

__attribute__((constructor)) static void init(void) {
    const char *f = getenv("MALLOCCOUNT_FILE");
    if (f && strlen(f) < sizeof out_path) strcpy(out_path, f);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
}

__attribute__((destructor)) static void fini(void) { dump(); }

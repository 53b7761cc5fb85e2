// An LD_PRELOAD allocation counter: every malloc-family call bumps one
// counter, which the benchmark reads through dlsym("framing_bench_mallocs").
// Single-threaded use only (the benchmark is), so a plain counter does.
#define _GNU_SOURCE
#include <stddef.h>
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

unsigned long framing_bench_mallocs = 0;

void *malloc(size_t size) { framing_bench_mallocs++; return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { framing_bench_mallocs++; return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { framing_bench_mallocs++; return __libc_realloc(p, size); }
void *memalign(size_t align, size_t size) { framing_bench_mallocs++; return __libc_memalign(align, size); }
void *aligned_alloc(size_t align, size_t size) { framing_bench_mallocs++; return __libc_memalign(align, size); }
int posix_memalign(void **out, size_t align, size_t size) {
    framing_bench_mallocs++;
    void *p = __libc_memalign(align, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) { __libc_free(p); }

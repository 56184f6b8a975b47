/* Two callers share one allocation helper; only `keeper` keeps what it gets. Built by
 * tests/tests/profile.rs with frame pointers (the profiler unwinds by them).
 *
 * keeper keeps 256 KiB records: above glibc's mmap threshold, each is a fresh mapping whose
 * pages are touched for the first time. churner takes a 32 KiB scratch buffer and frees it:
 * the heap hands the same, already touched, memory back each time. Growth is keeper's.
 * argv[1]: microseconds between rounds (default 20000: 12.8 MiB/s for 20 s, then flat). */
#include <stdlib.h>
#include <unistd.h>

#define KEEP_BYTES (256 * 1024)
#define SCRATCH_BYTES (32 * 1024)
#define MAX_KEPT 1024

static char *kept[MAX_KEPT];
static int nkept;

__attribute__((noinline)) static char *fill(size_t n) {
    char *p = malloc(n);
    if (!p) abort();
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)i;
    p[n - 1] = 1;
    return p;
}

__attribute__((noinline)) void keeper(void) {
    if (nkept < MAX_KEPT) kept[nkept++] = fill(KEEP_BYTES);
}

__attribute__((noinline)) void churner(void) {
    char *p = fill(SCRATCH_BYTES);
    free(p);
}

int main(int argc, char **argv) {
    useconds_t pause = argc > 1 ? (useconds_t)atol(argv[1]) : 20000;
    for (;;) {
        keeper();
        churner();
        usleep(pause);
    }
}

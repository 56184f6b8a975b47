// Workload helpers for `cargo xtask bench`, built with cc into target/bench/ at bench time.
//
//   helpers malloc SECONDS          after a line on stdin: malloc/touch/free churn for SECONDS,
//                                   then prints "ops_per_sec N", "ops N" and "cpu_secs S" (its
//                                   own user + system time over the loop, for the bench's
//                                   throughput per CPU-second); waiting for stdin lets a
//                                   per-pid tracer such as bcc's memleak attach first
//   helpers pace OPS_PER_SEC SECONDS  mmap + touch + munmap of one page, paced to OPS_PER_SEC;
//                                   prints "ops N"
//   helpers madvise SECONDS         madvise(DONTNEED) on one page as fast as it goes, the page
//                                   touched again one call in 64 (so the call has work to do
//                                   now and then): about one event per call; prints "ops N"
//   helpers mmap SECONDS lazy|populate|bare  mmap + write + munmap of one page as fast as it
//                                   goes, the page allocated at the write (lazy, as allocators
//                                   map) or inside mmap (MAP_POPULATE); bare: mmap + munmap,
//                                   never written, no page allocated; prints "ops N"
//   helpers forkpause N             forks N children that pause(), prints "ready N" and pauses;
//                                   the bench kills the whole process group
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// User + system CPU time of the whole process so far (BPF programs run in its syscalls and
// faults count as its system time, which is what the bench measures).
static double cpu_secs(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// A ring of 4096 live blocks of 16 B .. 256 KiB; each op frees the oldest and allocates a new
// one, writing every page of it (so small blocks come from brk, large ones from mmap).
static int malloc_churn(double secs) {
    enum { SLOTS = 4096 };
    static void *slots[SLOTS];
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    uint64_t rng = 0x9e3779b97f4a7c15ull, ops = 0;
    double cpu0 = cpu_secs();
    double start = now(), end = start + secs;
    for (;;) {
        for (int i = 0; i < 1024; i++, ops++) {
            uint64_t r = xorshift(&rng);
            size_t size = (size_t)16 << (r % 15);
            size_t slot = (r >> 8) % SLOTS;
            free(slots[slot]);
            char *p = malloc(size);
            if (!p)
                return 1;
            for (size_t off = 0; off < size; off += 4096)
                p[off] = (char)off;
            slots[slot] = p;
        }
        if (now() >= end)
            break;
    }
    double wall = now() - start, cpu = cpu_secs() - cpu0;
    printf("ops_per_sec %.0f\nops %llu\ncpu_secs %.6f\nwall_secs %.6f\n", ops / wall,
           (unsigned long long)ops, cpu, wall);
    return 0;
}

static int pace(double rate, double secs) {
    double start = now(), end = start + secs;
    uint64_t done = 0;
    struct timespec tick = {0, 1000000};
    for (double t = start; t < end; t = now()) {
        uint64_t due = (uint64_t)((t - start) * rate);
        for (; done < due; done++) {
            char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return 1;
            p[0] = 1;
            munmap(p, 4096);
        }
        nanosleep(&tick, NULL);
    }
    printf("ops %llu\n", (unsigned long long)done);
    return 0;
}

static int madvise_storm(double secs) {
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    double end = now() + secs;
    uint64_t done = 0;
    do {
        for (int i = 0; i < 1024; i++) {
            if ((i & 63) == 0)
                *(volatile char *)p = 1;
            madvise(p, 4096, MADV_DONTNEED);
        }
        done += 1024;
    } while (now() < end);
    printf("ops %llu\n", (unsigned long long)done);
    return 0;
}

static int mmap_storm(double secs, const char *mode) {
    int populate = !strcmp(mode, "populate"), write = strcmp(mode, "bare") != 0;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    double end = now() + secs;
    uint64_t done = 0;
    do {
        for (int i = 0; i < 1024; i++) {
            char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, flags, -1, 0);
            if (p == MAP_FAILED)
                return 1;
            if (write)
                p[0] = 1;
            munmap(p, 4096);
        }
        done += 1024;
    } while (now() < end);
    printf("ops %llu\n", (unsigned long long)done);
    return 0;
}

static _Noreturn void forkpause(long n) {
    long made = 0;
    for (; made < n; made++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            break;
        }
        if (pid == 0) {
            for (;;)
                pause();
        }
    }
    printf("ready %ld\n", made);
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "malloc"))
        return malloc_churn(atof(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "pace"))
        return pace(atof(argv[2]), atof(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "madvise"))
        return madvise_storm(atof(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "mmap"))
        return mmap_storm(atof(argv[2]), argv[3]);
    if (argc >= 3 && !strcmp(argv[1], "forkpause"))
        forkpause(atol(argv[2]));
    fprintf(stderr, "usage: helpers malloc SECS | pace OPS_PER_SEC SECS | madvise SECS | mmap SECS lazy|populate|bare | forkpause N\n");
    return 2;
}

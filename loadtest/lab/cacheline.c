/* cacheline — the argument behind "on multicore, multi-process beats multi-thread": is
 * the cost in sharing data between cores, or in being threads?  Two workers each add 1
 * to a counter ITERS times with an atomic fetch-add, in five arrangements:
 *
 *   threads-shared    2 threads, one counter                  (the data travels between cores)
 *   procs-shared      2 processes, one counter in MAP_SHARED  (the same, across processes)
 *   threads-false     2 threads, two counters in one cache line (false sharing)
 *   threads-percore   2 threads, a counter each, 64 bytes apart
 *   procs-percore     2 processes, a counter each, 64 bytes apart
 *
 * `cacheline MODE ITERS` prints one JSON line: {"mode","iters","seconds","ns_per_op","total"}.
 * The total is checked: every add must be counted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the counters must be lock-free to work across processes");

struct cacheline_shared {
    _Atomic long long go;                  /* the start line, so both workers race from one moment */
    _Atomic long long one;                 /* the shared counter */
    _Alignas(64) _Atomic long long a;      /* per-worker counters, each on its own line */
    _Alignas(64) _Atomic long long b;
    _Alignas(64) _Atomic long long pair[2]; /* two counters in one line */
};

static struct cacheline_shared *cl;
static long long cl_iters;

static void cacheline_spin(_Atomic long long *counter)
{
    while (!atomic_load_explicit(&cl->go, memory_order_acquire)) {
    }
    for (long long i = 0; i < cl_iters; i++) atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

static _Atomic long long *cacheline_target(const char *mode, int who)
{
    if (strstr(mode, "shared")) return &cl->one;
    if (strstr(mode, "false")) return &cl->pair[who];
    return who ? &cl->b : &cl->a;
}

static const char *cl_mode;
static void *cacheline_thread(void *arg)
{
    cacheline_spin(cacheline_target(cl_mode, (int)(long)arg));
    return NULL;
}

static double cacheline_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s threads-shared|procs-shared|threads-false|threads-percore|procs-percore ITERS\n",
                argv[0]);
        return 2;
    }
    cl_mode = argv[1];
    cl_iters = atoll(argv[2]);
    cl = mmap(NULL, sizeof *cl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cl == MAP_FAILED) return 2;
    memset(cl, 0, sizeof *cl);
    int procs = strncmp(cl_mode, "procs", 5) == 0;
    pid_t pids[2];
    pthread_t threads[2];
    for (int w = 0; w < 2; w++) {
        if (procs) {
            pids[w] = fork();
            if (pids[w] == 0) {
                cacheline_spin(cacheline_target(cl_mode, w));
                _exit(0);
            }
        } else {
            pthread_create(&threads[w], NULL, cacheline_thread, (void *)(long)w);
        }
    }
    usleep(20000); /* both workers are at the start line */
    double t0 = cacheline_now();
    atomic_store_explicit(&cl->go, 1, memory_order_release);
    for (int w = 0; w < 2; w++) {
        if (procs)
            waitpid(pids[w], NULL, 0);
        else
            pthread_join(threads[w], NULL);
    }
    double secs = cacheline_now() - t0;
    long long total = cl->one + cl->a + cl->b + cl->pair[0] + cl->pair[1];
    printf("{\"mode\":\"%s\",\"iters\":%lld,\"seconds\":%.6f,\"ns_per_op\":%.3f,\"total\":%lld}\n", cl_mode,
           cl_iters, secs, secs * 1e9 / (2.0 * (double)cl_iters), total);
    return total == 2 * cl_iters ? 0 : 1;
}

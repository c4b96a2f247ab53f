/* shm — see shm.h. */
#include "shm.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

#define SHM_ALIGN 64
#define SHM_NAMES 16

/* The region starts with this header; allocations follow it. */
struct shm_header {
    _Atomic size_t used; /* bytes handed out, header included */
    size_t size;
    _Atomic uint64_t recoveries;
    pthread_mutex_t names_mu;
    struct {
        char name[32];
        void *block;
    } names[SHM_NAMES];
};

static struct shm_header *shm_region; /* inherited across fork: same address everywhere */

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
               "counters shared between processes must be lock-free atomics (a lock-based "
               "atomic would keep its lock in one process's memory)");

bool shm_start(size_t size)
{
    if (shm_region) return true;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    struct shm_header *h = p;
    h->size = size;
    atomic_init(&h->used, (sizeof *h + SHM_ALIGN - 1) / SHM_ALIGN * SHM_ALIGN);
    shm_region = h;
    shm_mutex_init(&h->names_mu);
    return true;
}

bool shm_active(void) { return shm_region != NULL; }

void *shm_calloc(size_t n, size_t size)
{
    if (!shm_region) return calloc(n, size);
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = (n * size + SHM_ALIGN - 1) / SHM_ALIGN * SHM_ALIGN;
    size_t at = atomic_fetch_add(&shm_region->used, bytes);
    if (at + bytes > shm_region->size || at + bytes < at) {
        LOG_ERROR("shm: the shared region (%zu bytes) is full", shm_region->size);
        return NULL;
    }
    return (char *)shm_region + at; /* fresh anonymous pages read as zero */
}

void shm_free(void *p)
{
    if (!shm_region) free(p);
}

void *shm_named(const char *name, size_t size, void (*init)(void *, void *), void *arg, bool *fresh)
{
    *fresh = true;
    if (!shm_region) {
        void *b = calloc(1, size);
        if (b && init) init(b, arg);
        return b;
    }
    void *block = NULL;
    shm_lock(&shm_region->names_mu);
    int i = 0;
    for (; i < SHM_NAMES && shm_region->names[i].block; i++) {
        if (strcmp(shm_region->names[i].name, name) == 0) {
            block = shm_region->names[i].block;
            *fresh = false;
            break;
        }
    }
    if (!block && i < SHM_NAMES && (block = shm_calloc(1, size))) {
        if (init) init(block, arg); /* under names_mu: no one sees it half made */
        snprintf(shm_region->names[i].name, sizeof shm_region->names[i].name, "%s", name);
        shm_region->names[i].block = block;
    }
    shm_unlock(&shm_region->names_mu);
    return block;
}

void shm_mutex_init(pthread_mutex_t *m)
{
    if (!shm_region) {
        pthread_mutex_init(m, NULL);
        return;
    }
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

void shm_cond_init(pthread_cond_t *c, bool monotonic)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    if (monotonic) pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (shm_region) pthread_condattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

void shm_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        /* Its holder died inside: what it guarded may be half-changed.  The lock
         * itself is made usable again; the counters are rebuilt from the database
         * after every death (proc.c), which repairs the rest. */
        pthread_mutex_consistent(m);
        if (shm_region) atomic_fetch_add(&shm_region->recoveries, 1);
        LOG_WARN("shm: recovered a lock whose holder died");
    } else if (rc != 0) {
        LOG_FATAL("shm: pthread_mutex_lock: %s", strerror(rc));
    }
}

void shm_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

static int shm_my_slot;

void shm_set_slot(int slot)
{
    if (slot >= 0 && slot < SHM_PROCS) shm_my_slot = slot;
}

int shm_slot(void) { return shm_my_slot; }

uint64_t shm_recoveries(void) { return shm_region ? atomic_load(&shm_region->recoveries) : 0; }

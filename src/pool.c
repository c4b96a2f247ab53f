/* pool — see pool.h.
 *
 * One mutex guards the FIFO.  Workers take up to POOL_GRAB jobs per lock round so
 * that, under a crowd, the lock and the condition variable are touched once per
 * handful of jobs; producers signal only when some worker is asleep.  The slot
 * counter is a separate atomic so that refusing a request when full (the common
 * case under overload) never takes the lock.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define POOL_GRAB 16

struct pool_worker {
    struct pool *pool;
    size_t index;
    pthread_t thread;
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct pool_job *head, *tail; /* guarded by mu */
    size_t sleeping;              /* guarded by mu */
    bool stopping;                /* guarded by mu */
    _Atomic bool refusing;
    _Atomic size_t used; /* slots claimed: queued + reserved */
    size_t capacity;
    struct pool_hooks hooks;
    size_t nworkers;
    struct pool_worker *workers;
};

static uint64_t pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *pool_main(void *p_)
{
    struct pool_worker *w = p_;
    struct pool *p = w->pool;
    pthread_setname_np(pthread_self(), "fs-worker");
    void *state = p->hooks.worker_new ? p->hooks.worker_new(p->hooks.arg, w->index) : NULL;
    struct pool_job *grab[POOL_GRAB];
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&p->mu);
        /* While stopping, a worker stays until no producer holds a claimed slot:
         * that slot's job is still coming and must run. */
        while (!p->head && !(p->stopping && atomic_load(&p->used) == 0)) {
            p->sleeping++;
            pthread_cond_wait(&p->wake, &p->mu);
            p->sleeping--;
        }
        while (p->head && n < POOL_GRAB) {
            grab[n++] = p->head;
            p->head = p->head->next;
        }
        if (!p->head) p->tail = NULL;
        atomic_fetch_sub(&p->used, n);
        bool done = n == 0;
        if (done) pthread_cond_broadcast(&p->wake); /* the others may now stop too */
        pthread_mutex_unlock(&p->mu);
        if (done) break;
        for (size_t i = 0; i < n; i++) grab[i]->run(grab[i], state);
        if (p->hooks.after_round) p->hooks.after_round(p->hooks.arg, state);
    }
    if (p->hooks.worker_free) p->hooks.worker_free(state);
    return NULL;
}

struct pool *pool_new(size_t workers, size_t capacity, const struct pool_hooks *hooks)
{
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->workers = calloc(workers, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->capacity = capacity;
    if (hooks) p->hooks = *hooks;
    for (; p->nworkers < workers; p->nworkers++) {
        struct pool_worker *w = &p->workers[p->nworkers];
        w->pool = p;
        w->index = p->nworkers;
        if (pthread_create(&w->thread, NULL, pool_main, w) != 0) {
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

bool pool_reserve(struct pool *p)
{
    size_t used = atomic_load_explicit(&p->used, memory_order_relaxed);
    do {
        if (used >= p->capacity) return false;
    } while (!atomic_compare_exchange_weak(&p->used, &used, used + 1));
    /* Claim first, then look at `refusing` (both sequentially consistent): either
     * pool_free's workers see our claim and wait for the job, or we see the flag
     * and back out.  Neither can miss the other. */
    if (atomic_load(&p->refusing)) {
        pool_unreserve(p);
        return false;
    }
    return true;
}

void pool_unreserve(struct pool *p)
{
    atomic_fetch_sub(&p->used, 1);
    if (atomic_load(&p->refusing)) {
        pthread_mutex_lock(&p->mu); /* a stopping worker may be waiting for this slot */
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

void pool_submit(struct pool *p, struct pool_job *job)
{
    job->next = NULL;
    pool_submit_chain(p, job, job, 1);
}

void pool_submit_chain(struct pool *p, struct pool_job *first, struct pool_job *last, size_t n)
{
    uint64_t now = pool_now_ns();
    for (struct pool_job *j = first; j; j = j->next) j->enqueued_ns = now;
    last->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail) p->tail->next = first;
    else p->head = first;
    p->tail = last;
    /* One worker per POOL_GRAB jobs is enough; waking more only adds switches. */
    if (p->sleeping) {
        if (n > POOL_GRAB && p->sleeping > 1) pthread_cond_broadcast(&p->wake);
        else pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->mu);
}

size_t pool_depth(struct pool *p) { return atomic_load_explicit(&p->used, memory_order_relaxed); }

size_t pool_capacity(struct pool *p) { return p->capacity; }

void pool_stop(struct pool *p)
{
    atomic_store(&p->refusing, true);
    pthread_mutex_lock(&p->mu);
    bool joined = p->stopping;
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (joined) return;
    for (size_t i = 0; i < p->nworkers; i++) pthread_join(p->workers[i].thread, NULL);
}

void pool_free(struct pool *p)
{
    if (!p) return;
    pool_stop(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

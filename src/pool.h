/* pool — a fixed set of worker threads behind a bounded FIFO queue.
 *
 * Bounded by design: a producer first claims a slot with pool_reserve() and, when
 * the queue is full, answers 503 at once instead of letting the queue grow.  A
 * claimed slot must be used (pool_submit) or given back (pool_unreserve).  Jobs are
 * intrusive: the caller owns the memory and must keep it alive until run() has
 * been called.  A leaf module (no application headers).
 */
#ifndef FLASHSALE_POOL_H
#define FLASHSALE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool_job {
    struct pool_job *next;
    /* Called on a worker thread with that worker's state (see pool_new). */
    void (*run)(struct pool_job *job, void *worker);
    uint64_t enqueued_ns; /* set by pool_submit (CLOCK_MONOTONIC) */
};

struct pool;

/* What each worker thread does around its jobs; any hook may be NULL. */
struct pool_hooks {
    /* First, on the worker: its state, passed to every run() and to the others. */
    void *(*worker_new)(void *arg, size_t index);
    /* After each handful of jobs taken in one round: a place to hand their
     * results on in one go (arg is the hooks' arg, state the worker's). */
    void (*after_round)(void *arg, void *state);
    /* Last, when the worker exits. */
    void (*worker_free)(void *state);
    void *arg;
};

/* Starts `workers` threads.  hooks may be NULL.  Returns NULL on failure (nothing
 * left running). */
struct pool *pool_new(size_t workers, size_t capacity, const struct pool_hooks *hooks);

/* Claims a queue slot; false when the queue is full or the pool is stopping. */
bool pool_reserve(struct pool *p);
void pool_unreserve(struct pool *p);

/* Queues a job into a slot claimed by pool_reserve().  Never fails. */
void pool_submit(struct pool *p, struct pool_job *job);

/* Queues n jobs linked through next (first..last), each in its own claimed slot,
 * under one lock and at most one wake-up. */
void pool_submit_chain(struct pool *p, struct pool_job *first, struct pool_job *last, size_t n);

/* Jobs queued or claimed but not yet picked up by a worker. */
size_t pool_depth(struct pool *p);
size_t pool_capacity(struct pool *p);

/* Refuses new reservations, runs every job already queued and joins the workers.
 * The pool stays valid (pool_reserve says false) until pool_free.  Idempotent. */
void pool_stop(struct pool *p);

/* pool_stop, then frees the pool. */
void pool_free(struct pool *p);

#endif

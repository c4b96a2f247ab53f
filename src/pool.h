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

/* Starts `workers` threads.  Each calls worker_new(arg, index) first and keeps the
 * returned pointer as its state; worker_free(state) runs when it exits.  Either
 * hook may be NULL.  Returns NULL on failure (nothing left running). */
struct pool *pool_new(size_t workers, size_t capacity, void *(*worker_new)(void *arg, size_t index),
                      void (*worker_free)(void *state), void *arg);

/* Claims a queue slot; false when the queue is full or the pool is stopping. */
bool pool_reserve(struct pool *p);
void pool_unreserve(struct pool *p);

/* Queues a job into a slot claimed by pool_reserve().  Never fails. */
void pool_submit(struct pool *p, struct pool_job *job);

/* Jobs queued or claimed but not yet picked up by a worker. */
size_t pool_depth(struct pool *p);
size_t pool_capacity(struct pool *p);

/* Refuses new reservations, runs every job already queued and joins the workers.
 * The pool stays valid (pool_reserve says false) until pool_free.  Idempotent. */
void pool_stop(struct pool *p);

/* pool_stop, then frees the pool. */
void pool_free(struct pool *p);

#endif

/* ratelimit — token buckets by key (a user id, a client address), in fixed memory.
 *
 * Each key gets a bucket of `burst` tokens refilled at `rate` per second; a request
 * takes one.  The table never grows: 64k buckets in 4-way sets, and a newcomer takes
 * the slot of the fullest bucket in its set (a full bucket knows nothing a fresh one
 * does not), so a bot inventing keys cannot exhaust memory.  Thread-safe (striped
 * locks).  A leaf module.
 */
#ifndef FLASHSALE_RATELIMIT_H
#define FLASHSALE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit;

/* NULL when out of memory.  rate > 0 tokens per second, burst >= 1. */
/* name: with --model processes, every process that asks for the same name gets
 * the same table in shared memory (shm.h), so a limit holds across processes. */
struct ratelimit *ratelimit_new(const char *name, double rate, double burst);
void ratelimit_free(struct ratelimit *rl);

/* Takes a token for key (len bytes, at most 64 are used) at monotonic time now_ns.
 * False when the bucket is empty; *retry_after_s then says in how many whole
 * seconds (at least 1) a token will be there. */
bool ratelimit_take(struct ratelimit *rl, const char *key, size_t len, uint64_t now_ns,
                    int *retry_after_s);

#endif

/* ratelimit — see ratelimit.h. */
#include "ratelimit.h"
#include "hash.h"
#include "shm.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RATELIMIT_SETS 16384 /* a power of two */
#define RATELIMIT_WAYS 4
#define RATELIMIT_STRIPES 256
#define RATELIMIT_KEY 64

struct ratelimit_bucket {
    uint64_t hash;
    uint64_t stamp_ns; /* when tokens was last brought up to date; 0 = empty slot */
    double tokens;
    uint8_t len;
    char key[RATELIMIT_KEY];
};

struct ratelimit {
    double rate, burst;
    pthread_mutex_t stripes[RATELIMIT_STRIPES];
    struct ratelimit_bucket buckets[RATELIMIT_SETS][RATELIMIT_WAYS];
};

struct ratelimit_init {
    double rate, burst;
};

static void ratelimit_init(void *block, void *arg)
{
    struct ratelimit *rl = block;
    const struct ratelimit_init *in = arg;
    rl->rate = in->rate;
    rl->burst = in->burst < 1 ? 1 : in->burst;
    for (int i = 0; i < RATELIMIT_STRIPES; i++) shm_mutex_init(&rl->stripes[i]);
}

struct ratelimit *ratelimit_new(const char *name, double rate, double burst)
{
    bool fresh; /* another process may have made it: one limit for the service */
    return shm_named(name, sizeof(struct ratelimit), ratelimit_init, &(struct ratelimit_init){rate, burst}, &fresh);
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl || shm_active()) return;
    for (int i = 0; i < RATELIMIT_STRIPES; i++) pthread_mutex_destroy(&rl->stripes[i]);
    free(rl);
}

/* The bucket's tokens as of now.  A caller reads the clock before it waits for the
 * stripe lock, so another one may have stamped the bucket later than now: that is no
 * time passed, never a (wrapped, unsigned) eternity that would refill it. */
static double ratelimit_level(const struct ratelimit *rl, const struct ratelimit_bucket *b, uint64_t now_ns)
{
    if (!b->stamp_ns) return rl->burst;
    double passed = now_ns > b->stamp_ns ? (double)(now_ns - b->stamp_ns) : 0;
    double t = b->tokens + passed / 1e9 * rl->rate;
    return t > rl->burst ? rl->burst : t;
}

bool ratelimit_take(struct ratelimit *rl, const char *key, size_t len, uint64_t now_ns,
                    int *retry_after_s)
{
    if (len > RATELIMIT_KEY) len = RATELIMIT_KEY;
    uint64_t h = hash_bytes(HASH_FNV_OFFSET, key, len);
    size_t set = (size_t)hash_fold(h) & (RATELIMIT_SETS - 1);
    pthread_mutex_t *mu = &rl->stripes[set % RATELIMIT_STRIPES];
    shm_lock(mu);
    struct ratelimit_bucket *ways = rl->buckets[set], *b = NULL, *fullest = &ways[0];
    for (int w = 0; w < RATELIMIT_WAYS && !b; w++) {
        if (ways[w].stamp_ns && ways[w].hash == h && ways[w].len == len && memcmp(ways[w].key, key, len) == 0)
            b = &ways[w];
        else if (ratelimit_level(rl, &ways[w], now_ns) > ratelimit_level(rl, fullest, now_ns))
            fullest = &ways[w];
    }
    if (!b) { /* a newcomer: take over the fullest (or an empty) slot */
        b = fullest;
        b->hash = h;
        b->len = (uint8_t)len;
        memcpy(b->key, key, len);
        b->tokens = rl->burst;
        b->stamp_ns = now_ns;
    }
    b->tokens = ratelimit_level(rl, b, now_ns);
    if (now_ns > b->stamp_ns) b->stamp_ns = now_ns; /* stamps never go back */
    bool ok = b->tokens >= 1;
    if (ok) b->tokens -= 1;
    else *retry_after_s = (int)ceil((1 - b->tokens) / rl->rate) > 0 ? (int)ceil((1 - b->tokens) / rl->rate) : 1;
    pthread_mutex_unlock(mu);
    return ok;
}

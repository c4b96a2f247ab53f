/* test_ratelimit — buckets fill, empty, refill with time, keys stay apart, memory stays fixed. */
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"
#include "unit.h"

#define SEC 1000000000ull

static int take(struct ratelimit *rl, const char *key, uint64_t now, int *retry)
{
    return ratelimit_take(rl, key, strlen(key), now, retry);
}

static void test_burst_then_refill(void)
{
    struct ratelimit *rl = ratelimit_new("test", 2, 5); /* 2/s, bursts of 5 */
    int retry = 0;
    uint64_t t = 100 * SEC;
    for (int i = 0; i < 5; i++) CHECK(take(rl, "alice", t, &retry));
    CHECK(!take(rl, "alice", t, &retry));
    CHECK_EQ_INT(retry, 1);
    CHECK(take(rl, "bob", t, &retry)); /* another key has its own bucket */
    t += SEC / 2;                      /* half a second: one token back */
    CHECK(take(rl, "alice", t, &retry));
    CHECK(!take(rl, "alice", t, &retry));
    t += 10 * SEC; /* long idle: full again, never more than the burst */
    for (int i = 0; i < 5; i++) CHECK(take(rl, "alice", t, &retry));
    CHECK(!take(rl, "alice", t, &retry));
    ratelimit_free(rl);
}

static void test_slow_rate_retry_after(void)
{
    struct ratelimit *rl = ratelimit_new("test", 0.1, 1); /* one per ten seconds */
    int retry = 0;
    CHECK(take(rl, "k", SEC, &retry));
    CHECK(!take(rl, "k", SEC, &retry));
    CHECK_EQ_INT(retry, 10);
    CHECK(!take(rl, "k", 6 * SEC, &retry));
    CHECK(retry >= 5 && retry <= 6);
    CHECK(take(rl, "k", 12 * SEC, &retry));
    ratelimit_free(rl);
}

static void test_many_keys_fixed_memory(void)
{
    /* a million invented keys: none is refused its first request, and a key that
     * keeps coming back is still limited afterwards */
    struct ratelimit *rl = ratelimit_new("test", 1, 3);
    int retry = 0;
    char key[32];
    uint64_t t = SEC;
    for (int i = 0; i < 3; i++) CHECK(take(rl, "regular", t, &retry));
    CHECK(!take(rl, "regular", t, &retry));
    for (int i = 0; i < 1000000; i++) {
        snprintf(key, sizeof key, "bot-%d", i);
        CHECK(take(rl, key, t, &retry));
    }
    ratelimit_free(rl);
}

static void test_long_keys_truncated(void)
{
    struct ratelimit *rl = ratelimit_new("test", 1, 1);
    int retry = 0;
    char a[100], b[100];
    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    b[99] = 'y'; /* differs only past the 64 bytes used */
    CHECK(ratelimit_take(rl, a, sizeof a, SEC, &retry));
    CHECK(!ratelimit_take(rl, b, sizeof b, SEC, &retry));
    ratelimit_free(rl);
}

static void test_clock_read_before_the_lock(void)
{
    /* Callers read the clock, then wait for the stripe lock, so a later stamp may already
     * be there: an earlier now must refill nothing (it once wrapped to a full bucket). */
    struct ratelimit *rl = ratelimit_new("test", 3, 3);
    int retry = 0;
    uint64_t t = 50 * SEC;
    for (int i = 0; i < 3; i++) CHECK(take(rl, "ip", t + SEC / 1000, &retry));
    CHECK(!take(rl, "ip", t, &retry));
    CHECK(!take(rl, "ip", t + SEC / 2000, &retry));
    CHECK_EQ_INT(retry, 1);
    CHECK(take(rl, "ip", t + SEC / 1000 + SEC / 3 + SEC / 100, &retry)); /* a third of a second on: one */
    CHECK(!take(rl, "ip", t + SEC / 1000 + SEC / 3 + SEC / 100, &retry));
    ratelimit_free(rl);
}

int main(void)
{
    return unit_run(((const struct unit_case[]){{"burst_then_refill", test_burst_then_refill},
                                                {"slow_rate_retry_after", test_slow_rate_retry_after},
                                                {"many_keys_fixed_memory", test_many_keys_fixed_memory},
                                                {"long_keys_truncated", test_long_keys_truncated},
                                                {"clock_read_before_the_lock", test_clock_read_before_the_lock},
                                                {NULL, NULL}}));
}

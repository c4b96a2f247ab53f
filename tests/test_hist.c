/* test_hist — bucket edges, resolution, quantiles, count_le, view arithmetic. */
#include <stdlib.h>

#include "hist.h"
#include "unit.h"

#define US 1000ull
#define TOP_US (1ull << 30) /* upper edge of the last bucket */

/* The index a value landed in, found by recording it into an empty histogram. */
static int bucket_of(uint64_t ns)
{
    static struct hist h;
    memset(&h, 0, sizeof h);
    hist_record(&h, ns);
    for (int i = 0; i < HIST_BUCKETS; i++)
        if (atomic_load(&h.counts[i])) return i;
    return -1;
}

static void test_edges_monotonic(void)
{
    CHECK_EQ_INT(hist_bucket_upper_ns(0), 1 * US);
    CHECK_EQ_INT(hist_bucket_upper_ns(15), 16 * US);
    CHECK_EQ_INT(hist_bucket_upper_ns(16), 17 * US);
    CHECK_EQ_INT(hist_bucket_upper_ns(31), 32 * US);
    CHECK_EQ_INT(hist_bucket_upper_ns(32), 34 * US);
    CHECK_EQ_INT(hist_bucket_upper_ns(HIST_BUCKETS - 1), TOP_US * US);
    for (int i = 1; i < HIST_BUCKETS; i++) {
        uint64_t lo = hist_bucket_upper_ns(i - 1), hi = hist_bucket_upper_ns(i);
        CHECK(hi > lo);
        /* above the linear part a bucket is at most 1/16 of its lower edge wide */
        if (i >= HIST_SUB) CHECK((hi - lo) * 16 <= lo);
    }
}

/* Each value's bucket has upper edge >= value and the previous edge <= value, and
 * from 16 µs on the edge is within 7% of the value. */
static void check_value(uint64_t ns)
{
    int i = bucket_of(ns);
    CHECK(i >= 0 && i < HIST_BUCKETS);
    uint64_t up = hist_bucket_upper_ns(i);
    uint64_t prev = i ? hist_bucket_upper_ns(i - 1) : 0;
    if (!(up > ns && prev <= ns)) {
        UNIT_FAILF("%llu ns in bucket %d (%llu..%llu ns)",
                 (unsigned long long)ns, i, (unsigned long long)prev, (unsigned long long)up);
    }
    if (ns >= 16 * US && (double)up > (double)ns * 1.07) {
        UNIT_FAILF("%llu ns: upper edge %llu is over 7%% above",
                 (unsigned long long)ns, (unsigned long long)up);
    }
}

static void test_values_land_right(void)
{
    static const uint64_t fixed[] = {0,          1,           999,        1000,       1999,
                                     15 * US,    16 * US - 1, 16 * US,    16999,      17 * US,
                                     31999,      32 * US,     33 * US,    34 * US,    100 * US,
                                     1000 * US,  1023999,     1024 * US,  123456789,  1000000000,
                                     60000000000ull, (TOP_US - 1) * US};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) check_value(fixed[k]);
    /* every edge and its neighbours */
    for (int i = 0; i < HIST_BUCKETS; i++) {
        uint64_t e = hist_bucket_upper_ns(i);
        if (e < TOP_US * US) check_value(e);
        check_value(e - 1);
    }
    unsigned seed = 7;
    for (int k = 0; k < 200000; k++) {
        uint64_t ns = ((uint64_t)rand_r(&seed) << 20 | (uint64_t)rand_r(&seed)) %
                      (TOP_US * US >> (rand_r(&seed) % 40));
        check_value(ns);
    }
}

/* Beyond the range, values go into the last bucket instead of out of bounds. */
static void test_overflow_clamped(void)
{
    CHECK_EQ_INT(bucket_of(TOP_US * US), HIST_BUCKETS - 1);
    CHECK_EQ_INT(bucket_of(UINT64_MAX), HIST_BUCKETS - 1);
    CHECK_EQ_INT(bucket_of(UINT64_MAX / 2), HIST_BUCKETS - 1);
}

static void view_of(struct hist_view *v, const struct hist *h)
{
    memset(v, 0, sizeof *v);
    hist_view_add(v, h);
}

static struct hist h1, h2;
static struct hist_view v1, v2, vd;

static void near(uint64_t got_ns, double want_ns, double tol)
{
    if ((double)got_ns < want_ns * (1 - tol) || (double)got_ns > want_ns * (1 + tol)) {
        UNIT_FAILF("got %llu ns, want %.0f ns +- %.0f%%",
                 (unsigned long long)got_ns, want_ns, tol * 100);
    }
}

static void test_quantiles_uniform(void)
{
    memset(&h1, 0, sizeof h1);
    view_of(&v1, &h1);
    CHECK_EQ_INT(hist_view_quantile(&v1, 0.5), 0); /* empty */
    for (uint64_t us = 1; us <= 1000; us++) hist_record(&h1, us * US);
    view_of(&v1, &h1);
    CHECK_EQ_INT(v1.total, 1000);
    CHECK_EQ_INT(v1.sum_ns, 500500 * US);
    near(hist_view_quantile(&v1, 0.5), 500 * US, 0.07);
    near(hist_view_quantile(&v1, 0.9), 900 * US, 0.07);
    near(hist_view_quantile(&v1, 0.99), 990 * US, 0.07);
    near(hist_view_quantile(&v1, 1.0), 1000 * US, 0.07);
    near(hist_view_quantile(&v1, 0.1), 100 * US, 0.07);
    CHECK(hist_view_quantile(&v1, 1.0) >= 1000 * US);
    CHECK_EQ_INT(hist_view_quantile(&v1, 0.0001), 2 * US); /* rank 1: value 1 µs, edge 2 µs */
    /* quantiles never decrease with q */
    uint64_t last = 0;
    for (double q = 0.01; q <= 1.0; q += 0.01) {
        uint64_t x = hist_view_quantile(&v1, q);
        CHECK(x >= last);
        last = x;
    }
}

static void test_quantiles_skewed(void)
{
    /* 99 fast (50 µs) and 1 slow (20 ms): p50 fast, p99 fast, p100 slow */
    memset(&h1, 0, sizeof h1);
    for (int i = 0; i < 99; i++) hist_record(&h1, 50 * US);
    hist_record(&h1, 20000 * US);
    view_of(&v1, &h1);
    near(hist_view_quantile(&v1, 0.5), 50 * US, 0.07);
    near(hist_view_quantile(&v1, 0.99), 50 * US, 0.07);
    near(hist_view_quantile(&v1, 1.0), 20000 * US, 0.07);
    /* one value: every quantile is its bucket */
    memset(&h1, 0, sizeof h1);
    hist_record(&h1, 777 * US);
    view_of(&v1, &h1);
    CHECK_EQ_INT(hist_view_quantile(&v1, 0.01), hist_view_quantile(&v1, 1.0));
    near(hist_view_quantile(&v1, 0.5), 777 * US, 0.07);
}

static void test_count_le(void)
{
    memset(&h1, 0, sizeof h1);
    for (uint64_t us = 1; us <= 1000; us++) hist_record(&h1, us * US);
    view_of(&v1, &h1);
    CHECK_EQ_INT(hist_view_count_le(&v1, 0), 0);
    CHECK_EQ_INT(hist_view_count_le(&v1, 1 * US), 0);  /* bucket 0 (edge 1 µs) is empty */
    CHECK_EQ_INT(hist_view_count_le(&v1, 2 * US), 1);  /* 1 µs, edge 2 µs */
    CHECK_EQ_INT(hist_view_count_le(&v1, 16 * US), 15);
    CHECK_EQ_INT(hist_view_count_le(&v1, 1024 * US), 1000);
    CHECK_EQ_INT(hist_view_count_le(&v1, UINT64_MAX), 1000);
    /* whole buckets only: 512 µs is an edge, so exactly 1..511 count */
    CHECK_EQ_INT(hist_view_count_le(&v1, 512 * US), 511);
    CHECK_EQ_INT(hist_view_count_le(&v1, 512 * US + 1), 511); /* next edge is 544 µs */
    uint64_t last = 0;
    for (uint64_t ns = 0; ns < 1100 * US; ns += 7 * US) {
        uint64_t n = hist_view_count_le(&v1, ns);
        CHECK(n >= last && n <= ns / US); /* never counts a value above ns */
        last = n;
    }
}

static void test_view_add_and_diff(void)
{
    memset(&h1, 0, sizeof h1);
    memset(&h2, 0, sizeof h2);
    for (int i = 0; i < 10; i++) hist_record(&h1, 100 * US);
    for (int i = 0; i < 5; i++) hist_record(&h2, 3000 * US);
    struct hist_view *sum = &v2;
    memset(sum, 0, sizeof *sum);
    hist_view_add(sum, &h1);
    hist_view_add(sum, &h2);
    CHECK_EQ_INT(sum->total, 15);
    CHECK_EQ_INT(sum->sum_ns, 10 * 100 * US + 5 * 3000 * US);

    /* earlier snapshot v1, then more values; diff = only the new ones */
    view_of(&v1, &h1);
    for (int i = 0; i < 4; i++) hist_record(&h1, 7000 * US);
    hist_record(&h1, 100 * US);
    view_of(&v2, &h1);
    memset(&vd, 0xff, sizeof vd);
    hist_view_diff(&vd, &v2, &v1);
    CHECK_EQ_INT(vd.total, 5);
    CHECK_EQ_INT(vd.sum_ns, 4 * 7000 * US + 100 * US);
    CHECK_EQ_INT(vd.counts[bucket_of(100 * US)], 1);
    CHECK_EQ_INT(vd.counts[bucket_of(7000 * US)], 4);
    near(hist_view_quantile(&vd, 1.0), 7000 * US, 0.07);
    near(hist_view_quantile(&vd, 0.2), 100 * US, 0.07);
    /* a view minus itself is empty */
    hist_view_diff(&vd, &v2, &v2);
    CHECK_EQ_INT(vd.total, 0);
    CHECK_EQ_INT(vd.sum_ns, 0);
    CHECK_EQ_INT(hist_view_quantile(&vd, 0.5), 0);
}

static const struct unit_case cases[] = {
    {"edges_monotonic", test_edges_monotonic},
    {"values_land_right", test_values_land_right},
    {"overflow_clamped", test_overflow_clamped},
    {"quantiles_uniform", test_quantiles_uniform},
    {"quantiles_skewed", test_quantiles_skewed},
    {"count_le", test_count_le},
    {"view_add_and_diff", test_view_add_and_diff},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

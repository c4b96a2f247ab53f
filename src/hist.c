/* hist — see hist.h.
 *
 * Values are bucketed in microseconds: bucket index = 16 * floor(log2(us)) + the
 * next four bits below the leading one, so each power of two has 16 buckets.
 */
#include "hist.h"

#include <string.h>

static int hist_index(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < HIST_SUB) return (int)us; /* 0..15 µs map one to one */
    int log2 = 63 - __builtin_clzll(us);
    int sub = (int)((us >> (log2 - 4)) & (HIST_SUB - 1));
    int i = (log2 - 3) * HIST_SUB + sub;
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

uint64_t hist_bucket_upper_ns(int i)
{
    if (i < HIST_SUB) return (uint64_t)(i + 1) * 1000;
    int log2 = i / HIST_SUB + 3, sub = i % HIST_SUB;
    uint64_t lower_us = ((uint64_t)(HIST_SUB + sub)) << (log2 - 4);
    return (lower_us + (1ull << (log2 - 4))) * 1000;
}

void hist_record(struct hist *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->counts[hist_index(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void hist_view_add(struct hist_view *v, const struct hist *h)
{
    for (int i = 0; i < HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        v->counts[i] += c;
        v->total += c;
    }
    v->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

void hist_view_diff(struct hist_view *v, const struct hist_view *a, const struct hist_view *b)
{
    v->total = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        v->counts[i] = a->counts[i] - b->counts[i];
        v->total += v->counts[i];
    }
    v->sum_ns = a->sum_ns - b->sum_ns;
}

uint64_t hist_view_quantile(const struct hist_view *v, double q)
{
    if (!v->total) return 0;
    uint64_t rank = (uint64_t)(q * (double)v->total + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += v->counts[i];
        if (seen >= rank) return hist_bucket_upper_ns(i);
    }
    return hist_bucket_upper_ns(HIST_BUCKETS - 1);
}

uint64_t hist_view_count_le(const struct hist_view *v, uint64_t ns)
{
    uint64_t n = 0;
    for (int i = 0; i < HIST_BUCKETS && hist_bucket_upper_ns(i) <= ns; i++) n += v->counts[i];
    return n;
}

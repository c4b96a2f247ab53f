/* hist — a log-linear latency histogram (about 6% resolution, 1 µs to ~17 min).
 *
 * Counters are relaxed atomics: writers (usually one thread per histogram, see
 * metrics.c's shards) never wait, and readers may sum histograms at any time
 * without locks.  A leaf module.
 */
#ifndef FLASHSALE_HIST_H
#define FLASHSALE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB 16                       /* buckets per power of two */
#define HIST_POWERS 27                    /* 16 µs .. 2^30 µs above the 16 linear buckets */
#define HIST_BUCKETS (HIST_SUB * HIST_POWERS)

struct hist {
    _Atomic uint64_t counts[HIST_BUCKETS];
    _Atomic uint64_t sum_ns;
};

/* A plain copy or sum of histograms, for computing. */
struct hist_view {
    uint64_t counts[HIST_BUCKETS];
    uint64_t sum_ns;
    uint64_t total;
};

/* Records one value.  Thread-safe. */
void hist_record(struct hist *h, uint64_t ns);

/* Adds h into v (v->total included). */
void hist_view_add(struct hist_view *v, const struct hist *h);

/* v = a - b, bucket by bucket (a later view minus an earlier one). */
void hist_view_diff(struct hist_view *v, const struct hist_view *a, const struct hist_view *b);

/* The q-quantile (0 < q <= 1) in nanoseconds: the upper edge of the bucket holding
 * it; 0 when the view is empty. */
uint64_t hist_view_quantile(const struct hist_view *v, double q);

/* How many recorded values are <= ns (counted by whole buckets: a bucket counts
 * when its upper edge is <= ns). */
uint64_t hist_view_count_le(const struct hist_view *v, uint64_t ns);

/* Upper edge in nanoseconds of bucket i. */
uint64_t hist_bucket_upper_ns(int i);

#endif

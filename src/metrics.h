/* metrics — counters and latency histograms, as Prometheus text and dashboard stats.
 *
 * Process-wide, like a registry (service-wide with --model processes: the state
 * lives in shared memory, shm.h, when metrics_init runs after shm_start): any thread records with metrics_*() at the cost
 * of a few relaxed atomic adds into its own shard (threads get shards round-robin,
 * so two threads rarely share a cache line).  Readers sum the shards.  The main
 * thread calls metrics_tick() once a second to keep a minute of per-second history
 * for the dashboard.
 */
#ifndef FLASHSALE_METRICS_H
#define FLASHSALE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "route.h"

enum metrics_counter {
    METRIC_ORDERS,         /* orders committed */
    METRIC_UNITS,          /* units in committed orders */
    METRIC_SOLD_OUT,       /* purchases refused: sold out */
    METRIC_LIMIT,          /* purchases refused: per-user limit */
    METRIC_NOT_OPEN,       /* purchases refused: sale not started or ended */
    METRIC_OVERLOADED,     /* purchases refused: queue full or waited too long */
    METRIC_RATE_LIMITED,   /* requests refused by a rate limit */
    METRIC_STORE_ERRORS,   /* batches whose COMMIT failed */
    METRIC_REPLAYS,        /* idempotent replays */
    METRIC_PAID,           /* orders paid */
    METRIC_CANCELLED,      /* orders cancelled (units returned) */
    METRIC_EXPIRED,        /* orders expired unpaid (units returned) */
    METRIC_REBUILDS,       /* --model processes: memory rebuilt from the database */
    METRIC_WORKER_RESTARTS, /* --model processes: worker processes started again */
    METRIC_WRITER_RESTARTS, /* --model processes: writer processes started again */
    METRIC_COUNTERS
};

void metrics_init(void);

/* One answered request: its route, status and time from first byte to answer. */
void metrics_request(enum route route, int status, uint64_t latency_ns);

void metrics_count(enum metrics_counter c, uint64_t n);

/* One group commit of n purchases (and how long the transaction took). */
void metrics_batch(size_t n, uint64_t commit_ns);

/* Snapshot for the per-second history; main thread only. */
void metrics_tick(void);

/* Totals since start. */
uint64_t metrics_total(enum metrics_counter c);

/* Writes the service's counters and histograms in Prometheus text format. */
void metrics_prometheus(FILE *out);

/* Writes the dashboard's JSON fields (no braces): uptime, rates and latency of the
 * last complete second, totals, and the per-second history of the last minute. */
void metrics_stats_json(FILE *out);

/* Seconds since metrics_init(). */
double metrics_uptime(void);

#endif

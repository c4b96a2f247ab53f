/* render — the service's answers as text: sales, orders, audits, /api/v1/stats,
 * /metrics (error bodies are outcome.c's).
 *
 * Reads only: the in-memory sales (lock-free) and the metrics registry.  Writes to
 * a FILE* the caller owns (an open_memstream) or to a caller's buffer.
 */
#ifndef FLASHSALE_RENDER_H
#define FLASHSALE_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "inventory.h"
#include "store.h"

/* The service-wide figures the stats and /metrics show beside the sales. */
struct render_service {
    const char *store, *inventory, *durability;
    size_t queue_depth, queue_capacity, store_backlog;
    const char *model; /* --model */
    int64_t processes; /* worker processes (--model processes), else 0 */
};

/* GET /healthz's body into buf; its length (0 if it did not fit). */
size_t render_healthz(char *buf, size_t size);

/* One sale as JSON, its status as of unix second now. */
void render_sale(FILE *out, const struct sale *s, int64_t now);

/* {"sales":[...]} */
void render_sales(FILE *out, struct inventory *inv, int64_t now);

/* The order as JSON into buf; returns the length (0 if it did not fit).
 * as_created renders it as first acknowledged (pending or confirmed, unpaid), so
 * a replayed Idempotency-Key gets the same bytes whatever happened since.  token
 * (the order's, see ordertoken.h) is included as "order_token" unless NULL. */
size_t render_order(const struct store_order *o, bool as_created, const char *token, char *buf, size_t size);
/* The order's Location, "/api/v1/orders/<id>", into buf; its length (0 if it does not fit). */
size_t render_order_location(const struct store_order *o, char *buf, size_t size);

/* One audit: the database's facts and memory's counters at one commit. */
struct render_audit {
    int64_t sale_id;
    const struct store_audit *au;
    int64_t mem_stock_left, mem_sold;
    uint64_t age_ms;       /* how much older than the request the snapshot is */
    bool shared;           /* several nodes on one database: memory is not judged */
    const char *inventory; /* the strategy's name */
};

/* The audit as JSON into buf, with its verdict ("consistent", memory "agrees");
 * returns the length (truncated to size-1 at worst). */
size_t render_audit(const struct render_audit *a, char *buf, size_t size);

/* The dashboard's snapshot: the service, metrics_stats_json(), every sale. */
void render_stats(FILE *out, struct inventory *inv, const struct render_service *svc, int64_t now);

/* Prometheus text: metrics_prometheus() plus the queue and per-sale gauges. */
void render_metrics(FILE *out, struct inventory *inv, const struct render_service *svc);

#endif

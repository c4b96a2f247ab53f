/* metrics — see metrics.h. */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hist.h"
#include "shm.h"

#define METRICS_SHARDS 32
#define METRICS_HISTORY 60
#define METRICS_BATCH_BUCKETS 12 /* batch sizes 1, 2, 4, ... 1024, more */

/* The statuses the service answers with; anything else counts as "other". */
static const int metrics_statuses[] = {200, 201, 400, 401, 403, 404, 405,
                                       409, 413, 415, 429, 500, 503};
#define METRICS_STATUSES (int)(sizeof metrics_statuses / sizeof metrics_statuses[0] + 1)

struct metrics_shard {
    _Atomic uint64_t requests[ROUTE_COUNT][METRICS_STATUSES];
    struct hist latency[ROUTE_COUNT];
    _Atomic uint64_t counters[METRIC_COUNTERS];
    _Atomic uint64_t batches[METRICS_BATCH_BUCKETS];
    _Atomic uint64_t batch_purchases;
    struct hist commit_latency;
} __attribute__((aligned(64)));

/* One second of history for the dashboard. */
struct metrics_second {
    int64_t unix_s;
    double requests, orders, sold_out, overloaded; /* per second */
    double p50_ms, p99_ms; /* purchase latency in that second; negative = no purchase */
};

/* In shared memory with --model processes (shm.h): every process records into
 * it and reads the whole service from it. */
static struct metrics_state {
    struct metrics_shard *shards;
    _Atomic unsigned next_shard;
    uint64_t started_ns;

    pthread_mutex_t history_mu; /* guards everything below */
    struct metrics_second history[METRICS_HISTORY];
    int history_len, history_next;
    uint64_t last_requests, last_counters[METRIC_COUNTERS];
    struct hist_view *last_latency;
    uint64_t last_tick_ns;
} *M;

static _Thread_local struct metrics_shard *metrics_my_shard;

void metrics_init(void)
{
    M = shm_calloc(1, sizeof *M);
    if (!M) abort();
    M->shards = shm_calloc(METRICS_SHARDS, sizeof *M->shards);
    M->last_latency = shm_calloc(1, sizeof *M->last_latency);
    if (!M->shards || !M->last_latency) abort();
    M->started_ns = M->last_tick_ns = clock_mono_ns();
    shm_mutex_init(&M->history_mu);
}

static struct metrics_shard *metrics_shard(void)
{
    if (!metrics_my_shard) {
        unsigned i = atomic_fetch_add_explicit(&M->next_shard, 1, memory_order_relaxed);
        metrics_my_shard = &M->shards[i % METRICS_SHARDS];
    }
    return metrics_my_shard;
}

static int metrics_status_slot(int status)
{
    for (int i = 0; i < METRICS_STATUSES - 1; i++)
        if (metrics_statuses[i] == status) return i;
    return METRICS_STATUSES - 1;
}

void metrics_request(enum route route, int status, uint64_t latency_ns)
{
    struct metrics_shard *s = metrics_shard();
    atomic_fetch_add_explicit(&s->requests[route][metrics_status_slot(status)], 1,
                              memory_order_relaxed);
    hist_record(&s->latency[route], latency_ns);
}

void metrics_count(enum metrics_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&metrics_shard()->counters[c], n, memory_order_relaxed);
}

void metrics_batch(size_t n, uint64_t commit_ns)
{
    struct metrics_shard *s = metrics_shard();
    int b = 0;
    while (b < METRICS_BATCH_BUCKETS - 1 && ((size_t)1 << b) < n) b++;
    atomic_fetch_add_explicit(&s->batches[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->batch_purchases, n, memory_order_relaxed);
    hist_record(&s->commit_latency, commit_ns);
}

#define METRICS_SUM(expr)                                                                          \
    ({                                                                                             \
        uint64_t sum_ = 0;                                                                         \
        for (int k_ = 0; k_ < METRICS_SHARDS; k_++) {                                              \
            struct metrics_shard *sh_ = &M->shards[k_];                                       \
            sum_ += atomic_load_explicit(&sh_->expr, memory_order_relaxed);                        \
        }                                                                                          \
        sum_;                                                                                      \
    })

uint64_t metrics_total(enum metrics_counter c) { return METRICS_SUM(counters[c]); }

static uint64_t metrics_requests_total(void)
{
    uint64_t n = 0;
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int st = 0; st < METRICS_STATUSES; st++) n += METRICS_SUM(requests[r][st]);
    return n;
}

double metrics_uptime(void) { return (double)(clock_mono_ns() - M->started_ns) / 1e9; }

void metrics_tick(void)
{
    struct hist_view *now = calloc(1, sizeof *now), *delta = calloc(1, sizeof *delta);
    if (!now || !delta) goto out;
    for (int k = 0; k < METRICS_SHARDS; k++) hist_view_add(now, &M->shards[k].latency[ROUTE_ORDER_CREATE]);
    uint64_t requests = metrics_requests_total();
    uint64_t counters[METRIC_COUNTERS];
    for (int c = 0; c < METRIC_COUNTERS; c++) counters[c] = metrics_total((enum metrics_counter)c);
    uint64_t t = clock_mono_ns();

    shm_lock(&M->history_mu);
    double secs = (double)(t - M->last_tick_ns) / 1e9;
    if (secs <= 0) secs = 1;
    hist_view_diff(delta, now, M->last_latency);
    struct metrics_second *sec = &M->history[M->history_next];
    sec->unix_s = clock_wall_ms() / 1000;
    sec->requests = (double)(requests - M->last_requests) / secs;
    sec->orders = (double)(counters[METRIC_ORDERS] - M->last_counters[METRIC_ORDERS]) / secs;
    sec->sold_out = (double)(counters[METRIC_SOLD_OUT] - M->last_counters[METRIC_SOLD_OUT]) / secs;
    sec->overloaded =
        (double)(counters[METRIC_OVERLOADED] - M->last_counters[METRIC_OVERLOADED]) / secs;
    sec->p50_ms = delta->total ? (double)hist_view_quantile(delta, 0.50) / 1e6 : -1;
    sec->p99_ms = delta->total ? (double)hist_view_quantile(delta, 0.99) / 1e6 : -1;
    M->history_next = (M->history_next + 1) % METRICS_HISTORY;
    if (M->history_len < METRICS_HISTORY) M->history_len++;
    M->last_requests = requests;
    memcpy(M->last_counters, counters, sizeof counters);
    memcpy(M->last_latency, now, sizeof *now);
    M->last_tick_ns = t;
    pthread_mutex_unlock(&M->history_mu);
out:
    free(now);
    free(delta);
}

static void metrics_histogram(FILE *out, const char *name, const char *labels,
                              const struct hist_view *v)
{
    static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                (unsigned long long)hist_view_count_le(v, (uint64_t)(bounds[i] * 1e9)));
    fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)v->total);
    fprintf(out, "%s_sum%s%s%s %.9f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
            (double)v->sum_ns / 1e9);
    fprintf(out, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
            (unsigned long long)v->total);
}

void metrics_prometheus(FILE *out)
{
    static const struct {
        const char *name, *help;
    } counters[METRIC_COUNTERS] = {
        [METRIC_ORDERS] = {"flashsale_orders_total", "Orders committed to the database."},
        [METRIC_UNITS] = {"flashsale_units_sold_total", "Units in committed orders."},
        [METRIC_SOLD_OUT] = {"flashsale_sold_out_rejections_total", "Purchases refused as sold out."},
        [METRIC_LIMIT] = {"flashsale_limit_rejections_total",
                          "Purchases refused by the per-user limit."},
        [METRIC_NOT_OPEN] = {"flashsale_not_open_rejections_total",
                             "Purchases refused because the sale was not open."},
        [METRIC_OVERLOADED] = {"flashsale_overload_rejections_total",
                               "Purchases refused with 503 because the queue was full or slow."},
        [METRIC_RATE_LIMITED] = {"flashsale_rate_limited_total", "Requests refused by a rate limit."},
        [METRIC_STORE_ERRORS] = {"flashsale_store_errors_total",
                                 "Group commits that failed (their purchases answered 503)."},
        [METRIC_REPLAYS] = {"flashsale_idempotent_replays_total",
                            "Purchases answered by replaying an earlier order."},
        [METRIC_PAID] = {"flashsale_orders_paid_total", "Pending orders paid in time."},
        [METRIC_CANCELLED] = {"flashsale_orders_cancelled_total",
                              "Pending orders cancelled; their units went back on sale."},
        [METRIC_EXPIRED] = {"flashsale_orders_expired_total",
                            "Pending orders not paid in time; their units went back on sale."},
        [METRIC_REBUILDS] = {"flashsale_counter_rebuilds_total",
                             "Times memory was rebuilt from the database after a process died (--model processes)."},
        [METRIC_WORKER_RESTARTS] = {NULL, NULL}, /* one family with a label, below */
        [METRIC_WRITER_RESTARTS] = {NULL, NULL},
    };
    fprintf(out, "# HELP flashsale_uptime_seconds Seconds since the service started.\n"
                 "# TYPE flashsale_uptime_seconds gauge\nflashsale_uptime_seconds %.3f\n",
            metrics_uptime());
    fprintf(out,
            "# HELP flashsale_process_restarts_total Processes the supervisor started again after they died "
            "(--model processes).\n# TYPE flashsale_process_restarts_total counter\n"
            "flashsale_process_restarts_total{kind=\"worker\"} %llu\n"
            "flashsale_process_restarts_total{kind=\"writer\"} %llu\n",
            (unsigned long long)metrics_total(METRIC_WORKER_RESTARTS),
            (unsigned long long)metrics_total(METRIC_WRITER_RESTARTS));
    fprintf(out,
            "# HELP flashsale_lock_recoveries_total Shared locks taken over from a process that died holding "
            "them.\n# TYPE flashsale_lock_recoveries_total counter\nflashsale_lock_recoveries_total %llu\n",
            (unsigned long long)shm_recoveries());
    for (int c = 0; c < METRIC_COUNTERS; c++)
        if (counters[c].name)
        fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[c].name,
                counters[c].help, counters[c].name, counters[c].name,
                (unsigned long long)metrics_total((enum metrics_counter)c));

    fprintf(out, "# HELP flashsale_requests_total HTTP requests answered, by route and status.\n"
                 "# TYPE flashsale_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT; r++) {
        for (int st = 0; st < METRICS_STATUSES; st++) {
            uint64_t n = METRICS_SUM(requests[r][st]);
            if (!n) continue;
            char status[8];
            if (st < METRICS_STATUSES - 1) snprintf(status, sizeof status, "%d", metrics_statuses[st]);
            else snprintf(status, sizeof status, "other");
            fprintf(out, "flashsale_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                    route_name((enum route)r), status, (unsigned long long)n);
        }
    }

    struct hist_view *v = calloc(1, sizeof *v);
    if (!v) return;
    fprintf(out, "# HELP flashsale_request_duration_seconds Time from a request's first byte to its answer.\n"
                 "# TYPE flashsale_request_duration_seconds histogram\n");
    for (int r = 0; r < ROUTE_COUNT; r++) {
        memset(v, 0, sizeof *v);
        for (int k = 0; k < METRICS_SHARDS; k++) hist_view_add(v, &M->shards[k].latency[r]);
        if (!v->total) continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_name((enum route)r));
        metrics_histogram(out, "flashsale_request_duration_seconds", labels, v);
    }
    memset(v, 0, sizeof *v);
    for (int k = 0; k < METRICS_SHARDS; k++) hist_view_add(v, &M->shards[k].commit_latency);
    fprintf(out, "# HELP flashsale_commit_duration_seconds Time of one group-commit transaction.\n"
                 "# TYPE flashsale_commit_duration_seconds histogram\n");
    metrics_histogram(out, "flashsale_commit_duration_seconds", "", v);
    free(v);

    fprintf(out, "# HELP flashsale_commit_batch_size Purchases per group commit.\n"
                 "# TYPE flashsale_commit_batch_size histogram\n");
    uint64_t cumulative = 0;
    for (int b = 0; b < METRICS_BATCH_BUCKETS - 1; b++) {
        cumulative += METRICS_SUM(batches[b]);
        fprintf(out, "flashsale_commit_batch_size_bucket{le=\"%d\"} %llu\n", 1 << b,
                (unsigned long long)cumulative);
    }
    cumulative += METRICS_SUM(batches[METRICS_BATCH_BUCKETS - 1]);
    fprintf(out, "flashsale_commit_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
    fprintf(out, "flashsale_commit_batch_size_sum %llu\nflashsale_commit_batch_size_count %llu\n",
            (unsigned long long)METRICS_SUM(batch_purchases), (unsigned long long)cumulative);
}

/* A latency, or null for a second without purchases (0 would read as "instant"). */
static void metrics_ms(FILE *out, const char *key, double ms)
{
    if (ms < 0) fprintf(out, "\"%s\":null", key);
    else fprintf(out, "\"%s\":%.3f", key, ms);
}

void metrics_stats_json(FILE *out)
{
    shm_lock(&M->history_mu);
    struct metrics_second last = {0};
    if (M->history_len)
        last = M->history[(M->history_next + METRICS_HISTORY - 1) % METRICS_HISTORY];
    if (!M->history_len) last.p50_ms = last.p99_ms = -1;
    fprintf(out,
            "\"uptime_s\":%.1f,\"requests_per_s\":%.1f,\"orders_per_s\":%.1f,"
            "\"sold_out_per_s\":%.1f,\"overloaded_per_s\":%.1f,",
            metrics_uptime(), last.requests, last.orders, last.sold_out, last.overloaded);
    metrics_ms(out, "latency_p50_ms", last.p50_ms);
    fputc(',', out);
    metrics_ms(out, "latency_p99_ms", last.p99_ms);
    fputc(',', out);
    fprintf(out, "\"history\":[");
    for (int i = 0; i < M->history_len; i++) {
        int at = (M->history_next - M->history_len + i + METRICS_HISTORY) % METRICS_HISTORY;
        const struct metrics_second *s = &M->history[at];
        fprintf(out,
                "%s{\"t\":%lld,\"requests_per_s\":%.1f,\"orders_per_s\":%.1f,\"sold_out_per_s\":%.1f,"
                "\"overloaded_per_s\":%.1f,",
                i ? "," : "", (long long)s->unix_s, s->requests, s->orders, s->sold_out, s->overloaded);
        metrics_ms(out, "p50_ms", s->p50_ms);
        fputc(',', out);
        metrics_ms(out, "p99_ms", s->p99_ms);
        fputc('}', out);
    }
    pthread_mutex_unlock(&M->history_mu);
    fprintf(out, "],\"totals\":{\"requests\":%llu,\"orders\":%llu,\"units_sold\":%llu,"
                 "\"sold_out\":%llu,\"limit_exceeded\":%llu,\"overloaded\":%llu,\"rate_limited\":%llu}",
            (unsigned long long)metrics_requests_total(),
            (unsigned long long)metrics_total(METRIC_ORDERS),
            (unsigned long long)metrics_total(METRIC_UNITS),
            (unsigned long long)metrics_total(METRIC_SOLD_OUT),
            (unsigned long long)metrics_total(METRIC_LIMIT),
            (unsigned long long)metrics_total(METRIC_OVERLOADED),
            (unsigned long long)metrics_total(METRIC_RATE_LIMITED));
}

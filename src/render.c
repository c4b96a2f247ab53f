/* render — see render.h.  Plain fprintf: the shapes are fixed and small, and
 * jansson would allocate a tree per answer for nothing.  The purchase answer, the
 * one on the hot path, is put together by hand (render_buf below). */
#include "render.h"

#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "outcome.h"
#include "version.h"

static void render_string(FILE *out, const char *s)
{
    char buf[2 * PAYLOAD_NAME_MAX * 3 + 8];
    outcome_json_escape(buf, 0, sizeof buf, s);
    fprintf(out, "\"%s\"", buf);
}

static void render_time_or_null(FILE *out, const char *key, int64_t unix_s)
{
    if (unix_s) fprintf(out, ",\"%s\":%lld", key, (long long)unix_s);
    else fprintf(out, ",\"%s\":null", key);
}

void render_sale(FILE *out, const struct sale *s, int64_t now)
{
    int64_t left = atomic_load_explicit(&s->stock_left, memory_order_relaxed);
    fprintf(out, "{\"id\":%lld,\"name\":", (long long)s->id);
    render_string(out, s->name);
    fprintf(out,
            ",\"stock_total\":%lld,\"stock_left\":%lld,\"sold\":%lld,\"oversold\":%lld,"
            "\"per_user_limit\":%lld,\"status\":\"%s\"",
            (long long)s->stock_total, (long long)(left > 0 ? left : 0),
            (long long)atomic_load_explicit(&s->sold, memory_order_relaxed),
            (long long)inventory_oversold(s), (long long)s->per_user_limit,
            inventory_status(s, now));
    render_time_or_null(out, "starts_at", s->starts_at);
    render_time_or_null(out, "ends_at", s->ends_at);
    fprintf(out,
            ",\"payment_window\":%lld,\"pending\":%lld,\"paid\":%lld,\"expired\":%lld,"
            "\"cancelled\":%lld}",
            (long long)s->payment_window, (long long)atomic_load_explicit(&s->pending, memory_order_relaxed),
            (long long)atomic_load_explicit(&s->paid, memory_order_relaxed),
            (long long)atomic_load_explicit(&s->expired, memory_order_relaxed),
            (long long)atomic_load_explicit(&s->cancelled, memory_order_relaxed));
}

/* Appends to an answer being built: a literal, a JSON-escaped string, a number.
 * The purchase answer is built 65k times a second on the I/O thread, so by hand:
 * snprintf's format parsing was a visible part of its cost. */
struct render_buf {
    char *p, *end; /* end leaves room for the NUL */
    bool full;
};

static void render_put(struct render_buf *b, const char *s, size_t n)
{
    if ((size_t)(b->end - b->p) < n) {
        b->full = true;
        return;
    }
    memcpy(b->p, s, n);
    b->p += n;
}

#define RENDER_LIT(b, lit) render_put((b), (lit), sizeof(lit) - 1)

static void render_int(struct render_buf *b, int64_t v)
{
    char tmp[24], *t = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do *--t = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--t = '-';
    render_put(b, t, (size_t)(tmp + sizeof tmp - t));
}

/* A JSON string (escaped, quoted), or null for a time of 0 when nullable. */
static void render_time(struct render_buf *b, int64_t ms, bool nullable)
{
    if (!ms && nullable) return RENDER_LIT(b, "null");
    char t[48];
    size_t n = clock_rfc3339(ms, t, sizeof t);
    RENDER_LIT(b, "\"");
    render_put(b, t, n);
    RENDER_LIT(b, "\"");
}

size_t render_order(const struct store_order *o, bool as_created, const char *token, char *buf, size_t size)
{
    if (!size) return 0;
    char user[PAYLOAD_USER_MAX * 6 + 1];
    size_t user_len = outcome_json_escape(user, 0, sizeof user, o->user_id);
    const char *status = store_status_name(o->status);
    if (as_created) status = o->expires_at ? "pending" : "confirmed";
    struct render_buf b = {buf, buf + size - 1, false};
    RENDER_LIT(&b, "{\"order_id\":");
    render_int(&b, o->id);
    if (token) {
        RENDER_LIT(&b, ",\"order_token\":\"");
        render_put(&b, token, strlen(token));
        RENDER_LIT(&b, "\"");
    }
    RENDER_LIT(&b, ",\"sale_id\":");
    render_int(&b, o->sale_id);
    RENDER_LIT(&b, ",\"user_id\":\"");
    render_put(&b, user, user_len);
    RENDER_LIT(&b, "\",\"quantity\":");
    render_int(&b, o->quantity);
    RENDER_LIT(&b, ",\"status\":\"");
    render_put(&b, status, strlen(status));
    RENDER_LIT(&b, "\",\"created_at\":");
    render_time(&b, o->created_at, false);
    RENDER_LIT(&b, ",\"expires_at\":");
    render_time(&b, o->expires_at, true);
    RENDER_LIT(&b, ",\"paid_at\":");
    render_time(&b, as_created ? 0 : o->paid_at, true);
    RENDER_LIT(&b, "}");
    *b.p = 0;
    return b.full ? 0 : (size_t)(b.p - buf);
}

size_t render_order_location(const struct store_order *o, char *buf, size_t size)
{
    if (!size) return 0;
    struct render_buf b = {buf, buf + size - 1, false};
    RENDER_LIT(&b, "/api/v1/orders/");
    render_int(&b, o->id);
    *b.p = 0;
    return b.full ? 0 : (size_t)(b.p - buf);
}

/* Every sale, comma-separated. */
static void render_sale_items(FILE *out, struct inventory *inv, int64_t now)
{
    int64_t max = inventory_max_id(inv);
    bool first = true;
    for (int64_t id = 1; id <= max; id++) {
        struct sale *s = inventory_get(inv, id);
        if (!s) continue;
        if (!first) fputc(',', out);
        render_sale(out, s, now);
        first = false;
    }
}

void render_sales(FILE *out, struct inventory *inv, int64_t now)
{
    fputs("{\"sales\":[", out);
    render_sale_items(out, inv, now);
    fputs("]}", out);
}

void render_stats(FILE *out, struct inventory *inv, const struct render_service *svc, int64_t now)
{
    fprintf(out, "{\"store\":\"%s\",\"inventory\":\"%s\",\"durability\":\"%s\",\"model\":\"%s\","
                 "\"processes\":%lld,\"queue_depth\":%zu,\"queue_capacity\":%zu,\"store_backlog\":%zu,",
            svc->store, svc->inventory, svc->durability, svc->model ? svc->model : "threads",
            (long long)svc->processes, svc->queue_depth, svc->queue_capacity, svc->store_backlog);
    metrics_stats_json(out);
    fputs(",\"sales\":[", out);
    render_sale_items(out, inv, now);
    fputs("]}", out);
}

void render_metrics(FILE *out, struct inventory *inv, const struct render_service *svc)
{
    metrics_prometheus(out);
    version_prometheus(out);
    fprintf(out,
            "# HELP flashsale_queue_depth Purchases waiting for a worker.\n"
            "# TYPE flashsale_queue_depth gauge\nflashsale_queue_depth %zu\n"
            "# HELP flashsale_queue_capacity Most purchases that may wait.\n"
            "# TYPE flashsale_queue_capacity gauge\nflashsale_queue_capacity %zu\n"
            "# HELP flashsale_store_backlog Jobs waiting for the next group commit.\n"
            "# TYPE flashsale_store_backlog gauge\nflashsale_store_backlog %zu\n"
            "# HELP flashsale_inventory_info The inventory strategy in use.\n"
            "# TYPE flashsale_inventory_info gauge\nflashsale_inventory_info{strategy=\"%s\"} 1\n",
            svc->queue_depth, svc->queue_capacity, svc->store_backlog, svc->inventory);
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"flashsale_sale_stock", "Units the sale was created with (its stock_total; a gauge, so no _total)."},
        {"flashsale_sale_stock_left", "Units not yet reserved or sold."},
        {"flashsale_sale_sold", "Units in committed orders."},
        {"flashsale_oversold", "Units sold beyond the stock. Must read 0."},
        {"flashsale_sale_pending", "Units in orders waiting for payment."},
        {"flashsale_sale_paid", "Units in paid orders."},
        {"flashsale_sale_expired", "Units in orders that expired unpaid (back on sale)."},
        {"flashsale_sale_cancelled", "Units in cancelled orders (back on sale)."},
    };
    int64_t max = inventory_max_id(inv);
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help, gauges[g].name);
        for (int64_t id = 1; id <= max; id++) {
            struct sale *s = inventory_get(inv, id);
            if (!s) continue;
            const _Atomic int64_t *by_status[] = {&s->pending, &s->paid, &s->expired, &s->cancelled};
            int64_t v = g == 0 ? s->stock_total
                      : g == 1 ? atomic_load(&s->stock_left)
                      : g == 2 ? atomic_load(&s->sold)
                      : g == 3 ? inventory_oversold(s)
                               : atomic_load(by_status[g - 4]);
            fprintf(out, "%s{sale=\"%lld\"} %lld\n", gauges[g].name, (long long)id, (long long)v);
        }
    }
}

size_t render_audit(const struct render_audit *a, char *body, size_t size)
{
    const struct store_audit *au = a->au;
    int64_t oversold = au->units_sold > au->stock_total ? au->units_sold - au->stock_total : 0;
    /* Memory agrees when it counts the same sales as the database and shows no more
     * stock than the database has: the difference is purchases in flight.  With
     * several nodes on one database memory is a cache refreshed every second, so
     * only the database's own facts are judged ("agrees": null). */
    bool memory_agrees = a->shared || (a->mem_sold == au->units_sold && a->mem_stock_left >= 0 &&
                                       a->mem_stock_left <= au->stock_left);
    /* stock_total == stock_left + pending + paid + confirmed, and no late payment */
    bool consistent = au->stock_left + au->units_sold == au->stock_total &&
                      au->pending + au->paid + au->confirmed == au->units_sold && oversold == 0 &&
                      au->users_over_limit == 0 && au->paid_late == 0 && memory_agrees;
    int n = snprintf(body, size,
                     "{\"sale_id\":%lld,\"stock_total\":%lld,\"stock_left\":%lld,\"units_sold\":%lld,"
                     "\"orders\":%lld,\"oversold\":%lld,\"users_over_limit\":%lld,"
                     "\"consistent\":%s,\"age_ms\":%llu,\"pending\":%lld,\"paid\":%lld,\"confirmed\":%lld,"
                     "\"expired\":%lld,\"cancelled\":%lld,\"paid_after_expiry\":%lld,"
                     "\"memory\":{\"stock_left\":%lld,\"sold\":%lld,\"in_flight\":%lld,\"agrees\":%s},"
                     "\"inventory\":\"%s\"}",
                     (long long)a->sale_id, (long long)au->stock_total, (long long)au->stock_left,
                     (long long)au->units_sold, (long long)au->orders, (long long)oversold,
                     (long long)au->users_over_limit, consistent ? "true" : "false", (unsigned long long)a->age_ms,
                     (long long)au->pending, (long long)au->paid, (long long)au->confirmed,
                     (long long)au->expired, (long long)au->cancelled, (long long)au->paid_late,
                     (long long)a->mem_stock_left, (long long)a->mem_sold,
                     (long long)(au->stock_left - a->mem_stock_left),
                     a->shared ? "null" : memory_agrees ? "true" : "false", a->inventory);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

size_t render_healthz(char *buf, size_t size)
{
    int n = snprintf(buf, size, "{\"status\":\"ok\"}");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

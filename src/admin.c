/* admin — the operator's endpoints, on workers: create a sale, reset it (after
 * its purchases in flight have drained), and the audit that compares the database
 * with memory at one commit.  See api_int.h for what it shares with api.c. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "clock.h"
#include "log.h"
#include "payload.h"
#include "render.h"

#define ADMIN_RESET_WAIT_MS 5000

/* ---- create and reset ------------------------------------------------------------ */

static bool admin_token_ok(struct api *a, struct http_request *r)
{
    const char *h = http_header(r, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    /* Constant time in the token's length: every byte is compared, whatever matches. */
    size_t n = strlen(h);
    unsigned char diff = (unsigned char)(n != a->token_len);
    for (size_t i = 0; i < a->token_len; i++)
        diff |= (unsigned char)(a->token[i] ^ (i < n ? h[i] : 0));
    return diff == 0;
}

/* Completes a deferred call with a sale's JSON. */
static void admin_complete_sale(struct api_call *c, int status, struct sale *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return api_complete_outcome(c, OUTCOME_INTERNAL, "out of memory");
    api_sale_reply_fill(out, s);
    fclose(out);
    char location[64];
    snprintf(location, sizeof location, "/api/v1/sales/%lld", (long long)s->id);
    http_complete(c->req, status, buf, len, status == 201 ? "Location" : NULL, location);
    free(buf);
}

static void admin_create_run(struct pool_job *job, void *worker)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
    api_worker_round_done(worker);
    struct store_sale *row = &c->sj.u.sale;
    const struct payload_sale *in = &c->new_sale;
    memset(row, 0, sizeof *row);
    memcpy(row->name, in->name, sizeof row->name);
    row->stock_total = in->stock;
    row->per_user_limit = in->per_user_limit;
    row->starts_at = in->starts_at;
    row->ends_at = in->ends_at;
    row->payment_window = in->payment_window;
    c->sj.op = STORE_CREATE_SALE;
    enum outcome o = inventory_max_id(a->inv) >= INVENTORY_MAX_SALES ? OUTCOME_TOO_MANY_SALES
                                                                      : store_run(a->store, &c->sj);
    if (o == OUTCOME_OK && !inventory_add(a->inv, row)) o = OUTCOME_TOO_MANY_SALES;
    if (o == OUTCOME_OK) {
        LOG_INFO("api: created sale %lld \"%s\" with %lld units", (long long)row->id, row->name,
                 (long long)row->stock_total);
        admin_complete_sale(c, 201, inventory_get(a->inv, row->id));
    } else {
        api_complete_outcome(c, o, NULL);
    }
    free(c);
}

static void admin_reset_run(struct pool_job *job, void *worker)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
    api_worker_round_done(worker); /* purchases we hold would keep the sale busy */
    struct sale *s = c->sale;
    if (!inventory_pause(s, ADMIN_RESET_WAIT_MS)) {
        api_complete_outcome(c, OUTCOME_RESETTING, "purchases did not drain in time; retry");
        free(c);
        return;
    }
    c->sj.op = STORE_RESET_SALE;
    c->sj.u.sale_id = s->id;
    enum outcome o = store_run(a->store, &c->sj);
    if (o == OUTCOME_OK) inventory_reset(a->inv, s);
    inventory_unpause(s);
    if (o == OUTCOME_OK) {
        LOG_INFO("api: reset sale %lld", (long long)s->id);
        admin_complete_sale(c, 200, s);
    } else {
        api_complete_outcome(c, o, NULL);
    }
    free(c);
}

void admin_post(struct api *a, struct http_request *r, enum route route, int64_t id)
{
    if (!admin_token_ok(a, r)) return api_refuse(a, r, OUTCOME_UNAUTHORIZED, NULL);
    struct sale *sale = NULL;
    if (route == ROUTE_RESET && !(sale = inventory_get(a->inv, id)))
        return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
    enum outcome o = OUTCOME_OK;
    struct payload_sale in;
    char msg[256];
    if (route == ROUTE_SALES) {
        o = api_body_checks(r);
        if (o != OUTCOME_OK) return api_refuse(a, r, o, NULL);
        size_t len;
        const char *body = http_body(r, &len);
        o = payload_sale_parse(body, len, &in, msg, sizeof msg);
        if (o != OUTCOME_OK) return api_refuse(a, r, o, msg);
    } else if (http_body_too_large(r)) {
        return api_refuse(a, r, OUTCOME_TOO_LARGE, NULL);
    }
    struct api_call *c = api_call_new(a, r, route == ROUTE_SALES ? admin_create_run : admin_reset_run);
    if (!c) return api_refuse(a, r, OUTCOME_INTERNAL, "out of memory");
    c->sale = sale;
    if (route == ROUTE_SALES) c->new_sale = in;
    api_enqueue(a, r, c);
}

/* ---- audit -------------------------------------------------------------------------- */

struct admin_memory {
    struct sale *sale;
    int64_t stock_left, sold;
};

static void admin_audit_snapshot(void *ctx)
{
    struct admin_memory *m = ctx;
    m->stock_left = atomic_load(&m->sale->stock_left);
    m->sold = atomic_load(&m->sale->sold);
}

static void admin_audit_run(struct pool_job *job, void *worker)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
    struct store_audit au = {0};
    struct admin_memory mem = {.sale = c->sale};
    struct api_thread *t = worker;
    api_worker_round_done(t);
    enum outcome o = t->conn ? store_audit(a->store, t->conn, c->sale->id, &au, admin_audit_snapshot, &mem)
                             : OUTCOME_UNAVAILABLE;
    if (o != OUTCOME_OK) {
        api_complete_outcome(c, o, NULL);
        free(c);
        return;
    }
    int64_t oversold = au.units_sold > au.stock_total ? au.units_sold - au.stock_total : 0;
    /* Memory agrees when it counts the same sales as the database and shows no more
     * stock than the database has: the difference is purchases in flight.  With
     * several nodes on one database memory is a cache refreshed every second, so
     * only the database's own facts are judged ("agrees": null). */
    bool shared = store_shared(a->store);
    bool memory_agrees = shared || (mem.sold == au.units_sold && mem.stock_left >= 0 &&
                                    mem.stock_left <= au.stock_left);
    /* stock_total == stock_left + pending + paid + confirmed, and no late payment */
    bool consistent = au.stock_left + au.units_sold == au.stock_total &&
                      au.pending + au.paid + au.confirmed == au.units_sold && oversold == 0 &&
                      au.users_over_limit == 0 && au.paid_late == 0 && memory_agrees;
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "{\"sale_id\":%lld,\"stock_total\":%lld,\"stock_left\":%lld,\"units_sold\":%lld,"
                     "\"orders\":%lld,\"oversold\":%lld,\"users_over_limit\":%lld,"
                     "\"consistent\":%s,\"pending\":%lld,\"paid\":%lld,\"confirmed\":%lld,"
                     "\"expired\":%lld,\"cancelled\":%lld,\"paid_after_expiry\":%lld,"
                     "\"memory\":{\"stock_left\":%lld,\"sold\":%lld,\"in_flight\":%lld,\"agrees\":%s},"
                     "\"inventory\":\"%s\"}",
                     (long long)c->sale->id, (long long)au.stock_total, (long long)au.stock_left,
                     (long long)au.units_sold, (long long)au.orders, (long long)oversold,
                     (long long)au.users_over_limit, consistent ? "true" : "false",
                     (long long)au.pending, (long long)au.paid, (long long)au.confirmed,
                     (long long)au.expired, (long long)au.cancelled, (long long)au.paid_late,
                     (long long)mem.stock_left, (long long)mem.sold,
                     (long long)(au.stock_left - mem.stock_left),
                     shared ? "null" : memory_agrees ? "true" : "false",
                     config_name("inventory", inventory_strategy(a->inv)));
    http_complete(c->req, 200, body, (size_t)n, NULL, NULL);
    free(c);
}

void admin_audit(struct api *a, struct http_request *r, int64_t sale_id)
{
    struct sale *s = inventory_get(a->inv, sale_id);
    if (!s) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
    struct api_call *c = api_call_new(a, r, admin_audit_run);
    if (!c) return api_refuse(a, r, OUTCOME_INTERNAL, "out of memory");
    c->sale = s;
    api_enqueue(a, r, c);
}

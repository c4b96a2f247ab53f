/* admin — the operator's endpoints (create a sale, reset it) and the public audit,
 * all off the purchase path.  See api_int.h for what it shares with api.c.
 *
 * Every admin job runs on the admin thread: a pool of one worker with a database
 * connection of its own and a lower CPU priority (nice ADMIN_NICE), so no job of
 * the operator's, and no audit anyone asks for, ever holds a purchase worker.  A
 * reset waits there, without polling, for the sale's purchases in flight to be
 * answered (inventory_pause); a create or a reset waits there for its commit.
 * Their memory updates run in the commit's done() callback, under the commit lock,
 * like every other change that memory follows (a refresh from PostgreSQL then
 * cannot land between the commit and the memory change, see inventory_sync).
 *
 * The audit needs no credentials and scans the sale's orders: on a sale of 200,000
 * orders that is ~0.2 s of one core.  So, per sale:
 *   - at most one run at a time, on the admin thread;
 *   - a caller is answered from the last run's result at once when no commit has
 *     touched the sale since that result's snapshot and the snapshot is at most
 *     ADMIN_AUDIT_MAX_AGE_MS old (single node only: another node's commits do not
 *     show in memory's version, nor does anything else that bypassed memory);
 *   - otherwise it parks (suspended, no thread waits) and is answered by the run in
 *     flight if that run's snapshot is at most ADMIN_AUDIT_MAX_AGE_MS older than
 *     the request, else by the next run, which starts when the one in flight ends;
 *   - the answer's "age_ms" says how much older than the request its snapshot is:
 *     0 when it reflects every commit made before the request arrived;
 *   - at most ADMIN_AUDIT_PARKED_MAX callers park in all; beyond, 503 overloaded
 *     with Retry-After (the callers, not the operator, decide how many there are).
 * A caller alone (asking, buying, asking again) always gets a fresh answer.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api_int.h"
#include "clock.h"
#include "log.h"
#include "payload.h"
#include "render.h"

#define ADMIN_RESET_WAIT_MS 5000
#define ADMIN_QUEUE 1024            /* admin jobs queued; beyond, 503 */
#define ADMIN_NICE 19               /* below the purchase path's threads */
#define ADMIN_AUDIT_MAX_AGE_MS 1000 /* oldest snapshot a parked caller is answered from */
#define ADMIN_AUDIT_PARKED_MAX 512  /* audit callers suspended at once, over all sales */

/* ---- the admin thread --------------------------------------------------------------- */

struct admin_waiter {
    struct http_request *req;
    uint64_t arrived_ns;
    struct admin_waiter *next;
};

/* One audit: the database's facts and memory's counters at one commit. */
struct admin_result {
    struct store_audit au;
    int64_t mem_stock_left, mem_sold;
    uint64_t version;     /* the sale's version at the snapshot */
    uint64_t snapshot_ns; /* CLOCK_MONOTONIC at the snapshot */
};

/* A sale's audits; created at its first audit, kept until exit; under admin.mu. */
struct admin_audit {
    struct pool_job job; /* the run: queued or running while `running` */
    struct admin *admin;
    struct sale *sale;
    bool running, have;
    uint64_t run_snapshot_ns; /* the run in flight's snapshot, 0 until taken */
    struct admin_result last;
    struct admin_waiter *current; /* answered by the run in flight */
    struct admin_waiter *next;    /* need a run that starts after them */
};

struct admin {
    struct api *api;
    struct pool *pool;
    pthread_mutex_t mu;
    size_t parked;
    struct admin_audit **audits; /* by sale id */
};

/* The admin thread's state is its database connection (NULL when it could not
 * open one: audits then answer 503). */
static void *admin_thread_new(void *arg, size_t index)
{
    struct admin *ad = arg;
    pthread_setname_np(pthread_self(), "fs-admin");
    /* nice is per thread on Linux: only this one gets lower. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), ADMIN_NICE) != 0)
        LOG_WARN("admin: cannot lower the admin thread's priority");
    return store_conn_open(ad->api->store);
}

static void admin_thread_free(void *state) { store_conn_close(state); }

struct admin *admin_new(struct api *a)
{
    struct admin *ad = calloc(1, sizeof *ad);
    if (!ad) return NULL;
    ad->api = a;
    pthread_mutex_init(&ad->mu, NULL);
    ad->audits = calloc(INVENTORY_MAX_SALES + 1, sizeof *ad->audits);
    struct pool_hooks hooks = {admin_thread_new, NULL, admin_thread_free, ad};
    if (ad->audits) ad->pool = pool_new(1, ADMIN_QUEUE, &hooks);
    if (!ad->pool) {
        admin_free(ad);
        return NULL;
    }
    return ad;
}

void admin_drain(struct admin *ad)
{
    if (ad) pool_stop(ad->pool);
}

void admin_free(struct admin *ad)
{
    if (!ad) return;
    if (ad->pool) pool_free(ad->pool); /* runs what is queued: every parked caller is answered */
    for (int64_t i = 0; ad->audits && i <= INVENTORY_MAX_SALES; i++) free(ad->audits[i]);
    free(ad->audits);
    pthread_mutex_destroy(&ad->mu);
    free(ad);
}

/* Answers a deferred request with an outcome's JSON, from any thread. */
static void admin_complete_outcome(struct http_request *r, enum outcome o, const char *msg)
{
    char body[512];
    size_t len = outcome_json(o, msg, body, sizeof body);
    bool retry = outcome_status(o) == 503;
    http_complete(r, outcome_status(o), body, len, retry ? "Retry-After" : NULL, retry ? "1" : NULL);
}

/* Queues c on the admin thread, or answers 503 when its queue is full. */
static void admin_enqueue(struct api *a, struct http_request *r, struct api_call *c)
{
    if (!pool_reserve(a->admin->pool)) {
        free(c);
        return api_refuse(a, r, OUTCOME_OVERLOADED, "too many admin jobs queued; retry");
    }
    http_defer(r); /* before queueing: the admin thread may answer at once */
    pool_submit(a->admin->pool, &c->job);
}

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

/* On the writer after COMMIT, under the commit lock.  A refresh from the database
 * (PostgreSQL) may have published the new sale already: it is the same sale. */
static void admin_create_done(struct store_job *sj)
{
    struct api_call *c = sj->ctx;
    if (sj->outcome != OUTCOME_OK) return;
    c->sale = inventory_publish(c->api->inv, &sj->u.sale);
    if (!c->sale) sj->outcome = OUTCOME_TOO_MANY_SALES;
}

static void admin_create_run(struct pool_job *job, void *conn)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
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
    c->sj.done = admin_create_done;
    c->sj.ctx = c;
    enum outcome o = inventory_max_id(a->inv) >= INVENTORY_MAX_SALES ? OUTCOME_TOO_MANY_SALES
                                                                      : store_run(a->store, &c->sj);
    if (o == OUTCOME_OK) {
        LOG_INFO("api: created sale %lld \"%s\" with %lld units", (long long)row->id, row->name,
                 (long long)row->stock_total);
        admin_complete_sale(c, 201, c->sale);
    } else {
        api_complete_outcome(c, o, NULL);
    }
    free(c);
}

/* On the writer after COMMIT, under the commit lock: memory follows at once. */
static void admin_reset_done(struct store_job *sj)
{
    struct api_call *c = sj->ctx;
    if (sj->outcome == OUTCOME_OK) inventory_reset(c->api->inv, c->sale);
}

static void admin_reset_run(struct pool_job *job, void *conn)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
    struct sale *s = c->sale;
    if (!inventory_pause(s, ADMIN_RESET_WAIT_MS)) {
        api_complete_outcome(c, OUTCOME_RESETTING, "purchases did not drain in time; retry");
        free(c);
        return;
    }
    c->sj.op = STORE_RESET_SALE;
    c->sj.u.sale_id = s->id;
    c->sj.done = admin_reset_done;
    c->sj.ctx = c;
    enum outcome o = store_run(a->store, &c->sj);
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
    admin_enqueue(a, r, c);
}

/* ---- audit -------------------------------------------------------------------------- */

struct admin_snapshot {
    struct admin_audit *audit;
    struct admin_result *result;
};

/* Under the commit lock, at the instant the database snapshot is taken. */
static void admin_audit_snapshot(void *ctx)
{
    struct admin_snapshot *snap = ctx;
    struct sale *s = snap->audit->sale;
    struct admin_result *res = snap->result;
    res->mem_stock_left = atomic_load(&s->stock_left);
    res->mem_sold = atomic_load(&s->sold);
    res->version = atomic_load(&s->version);
    res->snapshot_ns = clock_mono_ns();
    pthread_mutex_lock(&snap->audit->admin->mu);
    snap->audit->run_snapshot_ns = res->snapshot_ns;
    pthread_mutex_unlock(&snap->audit->admin->mu);
}

static size_t admin_audit_render(struct api *a, struct sale *s, const struct admin_result *res, uint64_t age_ms,
                                 char *body, size_t size)
{
    const struct store_audit *au = &res->au;
    int64_t oversold = au->units_sold > au->stock_total ? au->units_sold - au->stock_total : 0;
    /* Memory agrees when it counts the same sales as the database and shows no more
     * stock than the database has: the difference is purchases in flight.  With
     * several nodes on one database memory is a cache refreshed every second, so
     * only the database's own facts are judged ("agrees": null). */
    bool shared = store_shared(a->store);
    bool memory_agrees = shared || (res->mem_sold == au->units_sold && res->mem_stock_left >= 0 &&
                                    res->mem_stock_left <= au->stock_left);
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
                     (long long)s->id, (long long)au->stock_total, (long long)au->stock_left,
                     (long long)au->units_sold, (long long)au->orders, (long long)oversold,
                     (long long)au->users_over_limit, consistent ? "true" : "false", (unsigned long long)age_ms,
                     (long long)au->pending, (long long)au->paid, (long long)au->confirmed,
                     (long long)au->expired, (long long)au->cancelled, (long long)au->paid_late,
                     (long long)res->mem_stock_left, (long long)res->mem_sold,
                     (long long)(au->stock_left - res->mem_stock_left),
                     shared ? "null" : memory_agrees ? "true" : "false",
                     inventory_traits(a->inv)->name);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

/* How much older than the request its answer's snapshot is, in ms. */
static uint64_t admin_audit_age_ms(uint64_t arrived_ns, uint64_t snapshot_ns)
{
    return arrived_ns > snapshot_ns ? (arrived_ns - snapshot_ns) / 1000000u : 0;
}

/* On the admin thread: one run for every caller parked on it. */
static void admin_audit_run(struct pool_job *job, void *conn)
{
    struct admin_audit *audit = (struct admin_audit *)job;
    struct admin *ad = audit->admin;
    struct api *a = ad->api;
    struct admin_result res = {0};
    struct admin_snapshot snap = {audit, &res};
    enum outcome o = conn ? store_audit(a->store, conn, audit->sale->id, &res.au, admin_audit_snapshot, &snap)
                          : OUTCOME_UNAVAILABLE;
    struct admin_waiter *answer, *refused = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ad->mu);
    if (o == OUTCOME_OK) {
        audit->last = res;
        audit->have = true;
    }
    answer = audit->current;
    audit->current = audit->next; /* they arrived during this run: the next one is theirs */
    audit->next = NULL;
    audit->run_snapshot_ns = 0;
    /* Decided under the lock: once `running` is false, an I/O thread may start
     * the next run itself. */
    bool again = audit->current && pool_reserve(ad->pool);
    audit->running = again;
    if (!again) { /* nobody waits, or the service is stopping */
        refused = audit->current;
        audit->current = NULL;
    }
    for (struct admin_waiter *w = answer; w; w = w->next) n++;
    for (struct admin_waiter *w = refused; w; w = w->next) n++;
    ad->parked -= n;
    pthread_mutex_unlock(&ad->mu);
    if (again) pool_submit(ad->pool, &audit->job);

    for (struct admin_waiter *w = answer, *next; w; w = next) {
        next = w->next;
        if (o == OUTCOME_OK) {
            char body[1024];
            size_t len = admin_audit_render(a, audit->sale, &res, admin_audit_age_ms(w->arrived_ns, res.snapshot_ns),
                                            body, sizeof body);
            http_complete(w->req, 200, body, len, NULL, NULL);
        } else {
            admin_complete_outcome(w->req, o, o == OUTCOME_NOT_FOUND ? "no such sale" : NULL);
        }
        free(w);
    }
    for (struct admin_waiter *w = refused, *next; w; w = next) {
        next = w->next;
        admin_complete_outcome(w->req, OUTCOME_OVERLOADED, "the service is stopping");
        free(w);
    }
}

void admin_audit(struct api *a, struct http_request *r, int64_t sale_id)
{
    struct sale *s = inventory_get(a->inv, sale_id);
    if (!s) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
    struct admin *ad = a->admin;
    uint64_t now = clock_mono_ns();
    uint64_t version = atomic_load(&s->version); /* after any commit whose answer the caller has */
    bool exact_known = !store_shared(a->store);
    pthread_mutex_lock(&ad->mu);
    struct admin_audit *audit = ad->audits[s->id];
    if (!audit && (audit = calloc(1, sizeof *audit))) {
        audit->admin = ad;
        audit->sale = s;
        audit->job.run = admin_audit_run;
        ad->audits[s->id] = audit;
    }
    if (!audit) {
        pthread_mutex_unlock(&ad->mu);
        return api_refuse(a, r, OUTCOME_INTERNAL, "out of memory");
    }
    if (exact_known && audit->have && audit->last.version == version &&
        admin_audit_age_ms(now, audit->last.snapshot_ns) <= ADMIN_AUDIT_MAX_AGE_MS) {
        /* No commit of this node touched the sale since that snapshot, which is young:
         * memory's version cannot see what bypassed memory (a row written by hand, a
         * bug), the very thing an audit is for, so a run reads the database again
         * once the snapshot is older than a caller may be answered from. */
        struct admin_result res = audit->last;
        pthread_mutex_unlock(&ad->mu);
        char body[1024];
        size_t len = admin_audit_render(a, s, &res, admin_audit_age_ms(now, res.snapshot_ns), body, sizeof body);
        return http_reply(r, 200, body, len, NULL);
    }
    struct admin_waiter *w = ad->parked < ADMIN_AUDIT_PARKED_MAX ? malloc(sizeof *w) : NULL;
    bool start = w && !audit->running;
    if (!w || (start && !pool_reserve(ad->pool))) {
        pthread_mutex_unlock(&ad->mu);
        free(w);
        return api_refuse(a, r, OUTCOME_OVERLOADED, "too many audits waiting; retry");
    }
    w->req = r;
    w->arrived_ns = now;
    uint64_t snap = audit->run_snapshot_ns;
    struct admin_waiter **list = start || !snap || snap >= now ||
                                         now - snap <= (uint64_t)ADMIN_AUDIT_MAX_AGE_MS * 1000000u
                                     ? &audit->current
                                     : &audit->next;
    w->next = *list;
    *list = w;
    ad->parked++;
    if (start) audit->running = true;
    http_defer(r); /* before the admin thread can see it */
    pthread_mutex_unlock(&ad->mu);
    if (start) pool_submit(ad->pool, &audit->job);
}

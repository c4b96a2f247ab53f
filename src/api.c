/* api — see api.h.
 *
 * A purchase, step by step (checks in the documented order):
 *   I/O thread   route -> sale exists (404) -> Content-Type (415) -> body size (413)
 *                -> JSON (400) -> window (409) -> per-user limit (409) -> stock (409)
 *                -> admitted (not resetting) -> a queue slot (else 503) -> suspend
 *   worker       waited too long? (503) -> Idempotency-Key seen? (replay)
 *                -> inventory_reserve (strategy) -> store_submit
 *   writer       BEGIN, guarded UPDATE + INSERT for each purchase, COMMIT
 *   writer       api_purchase_done: commit or release the reservation in memory
 *   I/O thread   api_purchase_answer: the 201 (or refusal) rendered, then resumed
 * With --inventory sqlite the worker runs the transaction itself instead.  The
 * operator's endpoints (create, reset, audit) are in admin.c.
 */
#include "api.h"
#include "api_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "assets.h"
#include "clock.h"
#include "hash.h"
#include "hmac.h"
#include "log.h"
#include "metrics.h"
#include "payload.h"
#include "pool.h"
#include "ratelimit.h"
#include "render.h"
#include "route.h"

/* Runs fill(out, arg) into a memory stream and answers status with it. */
void api_reply_stream(struct http_request *r, int status, const char *content_type,
                             void (*fill)(FILE *, void *), void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) {
        http_reply(r, 500, "{\"error\":\"internal_error\",\"message\":\"out of memory\"}", 52, NULL);
        return;
    }
    fill(out, arg);
    fclose(out);
    const char *headers[] = {"Content-Type", content_type, "Cache-Control", "no-store", NULL};
    http_reply(r, status, buf, len, headers);
    free(buf);
}

/* ---- refusals ------------------------------------------------------------------ */

static const char *api_retry_after(enum outcome o)
{
    return outcome_status(o) == 503 || o == OUTCOME_RATE_LIMITED ? "1" : NULL;
}

static void api_count_refusal(enum outcome o)
{
    switch (o) {
    case OUTCOME_SOLD_OUT: metrics_count(METRIC_SOLD_OUT, 1); break;
    case OUTCOME_LIMIT_EXCEEDED: metrics_count(METRIC_LIMIT, 1); break;
    case OUTCOME_NOT_STARTED:
    case OUTCOME_ENDED: metrics_count(METRIC_NOT_OPEN, 1); break;
    case OUTCOME_OVERLOADED: metrics_count(METRIC_OVERLOADED, 1); break;
    default: break;
    }
}

/* Answers an outcome on the I/O thread; msg NULL uses the prebuilt default. */
void api_refuse(struct api *a, struct http_request *r, enum outcome o, const char *msg)
{
    api_count_refusal(o);
    if (!msg) {
        http_reply_canned(r, a->canned[o]);
        return;
    }
    char body[512];
    size_t len = outcome_json(o, msg, body, sizeof body);
    const char *headers[] = {"Retry-After", api_retry_after(o), NULL};
    http_reply(r, outcome_status(o), body, len, headers[1] ? headers : NULL);
}

static void api_refuse_method(struct http_request *r, const char *allow)
{
    char body[256];
    size_t len = outcome_json(OUTCOME_METHOD, NULL, body, sizeof body);
    const char *headers[] = {"Allow", allow, NULL};
    http_reply(r, 405, body, len, headers);
}

static void api_refuse_retry(struct http_request *r, enum outcome o, int seconds)
{
    char body[256], retry[16];
    size_t len = outcome_json(o, NULL, body, sizeof body);
    snprintf(retry, sizeof retry, "%d", seconds);
    const char *headers[] = {"Retry-After", retry, NULL};
    api_count_refusal(o);
    http_reply(r, outcome_status(o), body, len, headers);
}

/* With --user-secret, a buyer proves the user id was issued to them:
 *   X-User-Token: <expiry unix seconds>.<hex HMAC-SHA256(secret, user_id "\n" expiry)>
 * A front end that authenticates its users signs it; a bot cannot invent ids. */
static bool api_token_ok(struct api *a, struct http_request *r, const char *user)
{
    const char *tok = http_header(r, "X-User-Token");
    if (!tok) return false;
    char *dot;
    long long expires = strtoll(tok, &dot, 10);
    if (dot == tok || *dot != '.' || expires <= clock_wall_ms() / 1000 || strlen(dot + 1) != 2 * HMAC_SHA256_LEN)
        return false;
    char msg[PAYLOAD_USER_MAX + 24];
    int n = snprintf(msg, sizeof msg, "%s\n%lld", user, expires);
    uint8_t want[HMAC_SHA256_LEN], got[HMAC_SHA256_LEN];
    hmac_sha256(a->cfg->user_secret, strlen(a->cfg->user_secret), msg, (size_t)n, want);
    for (int i = 0; i < HMAC_SHA256_LEN; i++) {
        unsigned hi, lo;
        if (sscanf(dot + 1 + 2 * i, "%1x%1x", &hi, &lo) != 2) return false;
        got[i] = (uint8_t)(hi * 16 + lo);
    }
    return hmac_equal(want, got, sizeof want);
}

/* The checks every request naming a user goes through after its body parsed:
 * the signed token (401) and the per-user rate (429).  False when refused. */
static bool api_user_checks(struct api *a, struct http_request *r, const char *user)
{
    if (a->cfg->user_secret[0] && !api_token_ok(a, r, user)) {
        api_refuse(a, r, OUTCOME_BAD_TOKEN, NULL);
        return false;
    }
    int retry;
    if (a->user_rate && !ratelimit_take(a->user_rate, user, strlen(user), clock_mono_ns(), &retry)) {
        metrics_count(METRIC_RATE_LIMITED, 1);
        api_refuse_retry(r, OUTCOME_RATE_LIMITED, retry);
        return false;
    }
    return true;
}

/* Answers a deferred call from a worker or the writer, and frees it. */
void api_complete_outcome(struct api_call *c, enum outcome o, const char *msg)
{
    char body[512];
    size_t len = outcome_json(o, msg, body, sizeof body);
    api_count_refusal(o);
    const char *retry = api_retry_after(o);
    http_complete(c->req, outcome_status(o), body, len, retry ? "Retry-After" : NULL, retry);
}

/* ---- request checks shared by the POST routes ------------------------------------ */

/* outcome.c's 413 message names the limit in words. */
_Static_assert(HTTP_BODY_MAX == 16 * 1024, "the 413 message in outcome.c says 16 KiB");

/* 415 then 413: the checks every JSON body goes through, in the documented order. */
enum outcome api_body_checks(struct http_request *r)
{
    if (!payload_content_type_ok(http_header(r, "Content-Type"))) return OUTCOME_MEDIA_TYPE;
    if (http_body_too_large(r) || http_content_length(r) > HTTP_BODY_MAX) return OUTCOME_TOO_LARGE;
    return OUTCOME_OK;
}

struct api_call *api_call_new(struct api *a, struct http_request *r,
                                     void (*run)(struct pool_job *, void *))
{
    struct api_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->api = a;
    c->req = r;
    c->job.run = run;
    return c;
}

/* --model thread-per-connection: the connection's own thread is the worker.  It
 * runs c's job (for a purchase, the reservation, exactly as a worker would),
 * hands what it collected to the writer, then sleeps until the writer answers:
 * nothing is acknowledged before COMMIT, and the group commit still batches
 * every connection thread's purchases.  The pool has no workers in this mode;
 * its slot only bounds the calls in flight (--queue) and refuses them once
 * draining, as in the threaded model. */
static void api_run_here(struct http_request *r, struct api_call *c)
{
    struct api_thread *t = http_thread_state(r);
    http_defer(r);
    c->job.next = NULL;
    c->job.enqueued_ns = clock_mono_ns();
    c->job.run(&c->job, t); /* may complete r already (a refusal) and free c */
    api_worker_round_done(t);
    http_wait(r);
}

/* Suspends r and queues c for a worker (at the end of this I/O round), or
 * answers 503 when the queue is full.  False when refused (c is freed). */
bool api_enqueue(struct api *a, struct http_request *r, struct api_call *c)
{
    if (!pool_reserve(a->pool)) {
        free(c);
        api_refuse(a, r, OUTCOME_OVERLOADED, NULL);
        return false;
    }
    if (a->cfg->model == MODEL_THREAD_PER_CONNECTION) {
        api_run_here(r, c);
        pool_unreserve(a->pool);
        return true;
    }
    /* Suspend before queueing: once queued, a worker may complete it at once. */
    http_defer(r);
    struct api_thread *t = http_thread_state(r);
    c->job.next = NULL;
    if (t->queued_last) t->queued_last->next = &c->job;
    else t->queued_first = &c->job;
    t->queued_last = &c->job;
    t->queued++;
    return true;
}

/* End of an I/O round: hand the collected calls to the workers. */
static void api_io_round_done(void *ctx, void *state)
{
    struct api *a = ctx;
    struct api_thread *t = state;
    if (!t->queued) return;
    pool_submit_chain(a->pool, t->queued_first, t->queued_last, t->queued);
    t->queued_first = t->queued_last = NULL;
    t->queued = 0;
}

/* End of a worker round (and before any job that waits for the writer): hand the
 * collected purchases to the writer. */
void api_worker_round_done(void *state)
{
    struct api_thread *t = state;
    if (!t->commits) return;
    store_submit_chain(t->commit_store, t->commit_first, t->commit_last, t->commits);
    t->commit_first = t->commit_last = NULL;
    t->commits = 0;
}

/* ---- purchases ------------------------------------------------------------------- */

/* On the I/O thread (http_complete_later): the answer to a finished purchase. */
static void api_purchase_answer(struct http_request *r, void *arg)
{
    struct api_call *c = arg;
    struct store_purchase *p = &c->sj.u.purchase;
    if (c->sj.outcome == OUTCOME_OK) {
        char body[512], location[64], token[ORDERTOKEN_LEN + 1];
        ordertoken_make(&c->api->order_tokens, p->order.id, token);
        size_t len = render_order(&p->order, true, token, body, sizeof body);
        render_order_location(&p->order, location, sizeof location);
        http_complete(r, 201, body, len, "Location", location);
    } else {
        api_complete_outcome(c, c->sj.outcome, NULL);
    }
    free(c);
}

/* ---- retries with an Idempotency-Key, while the first try is in flight ---------- */

static struct api_call **api_keys_bucket(struct api *a, const struct store_purchase *p)
{
    uint64_t h = hash_str(hash_str(HASH_FNV_OFFSET ^ (uint64_t)p->sale_id, p->user_id), p->idem_key);
    return &a->keys[hash_fold(h) % API_KEY_BUCKETS];
}

static bool api_keys_same(const struct store_purchase *x, const struct store_purchase *y)
{
    return x->sale_id == y->sale_id && strcmp(x->user_id, y->user_id) == 0 && strcmp(x->idem_key, y->idem_key) == 0;
}

/* On a worker, before the reservation: true when c is now the try in flight for
 * its key; false when another try is, and c will get that try's answer
 * (api_keys_settle).  The claim comes first so that a retry can never meet the
 * first try's units in memory without also finding the first try here. */
static bool api_keys_claim(struct api *a, struct api_call *c)
{
    struct api_call **bucket = api_keys_bucket(a, &c->sj.u.purchase);
    pthread_mutex_lock(&a->keys_mu);
    struct api_call *first = *bucket;
    while (first && !api_keys_same(&first->sj.u.purchase, &c->sj.u.purchase)) first = first->key_next;
    if (first) {
        c->follow_next = first->followers;
        first->followers = c;
    } else {
        c->keyed = true;
        c->key_next = *bucket;
        *bucket = c;
    }
    pthread_mutex_unlock(&a->keys_mu);
    return !first;
}

/* c's answer is known (o, and its order when OUTCOME_OK): c leaves the table and
 * every retry that followed it gets the same answer, as a replay.  On the writer
 * (under the commit lock) or on a worker. */
static void api_keys_settle(struct api *a, struct api_call *c, enum outcome o)
{
    if (!c->keyed) return;
    pthread_mutex_lock(&a->keys_mu);
    struct api_call **at = api_keys_bucket(a, &c->sj.u.purchase);
    while (*at != c) at = &(*at)->key_next;
    *at = c->key_next;
    struct api_call *f = c->followers;
    c->followers = NULL;
    c->keyed = false;
    pthread_mutex_unlock(&a->keys_mu);
    while (f) {
        struct api_call *next = f->follow_next;
        f->sj.outcome = o;
        if (o == OUTCOME_OK) {
            f->sj.u.purchase.order = c->sj.u.purchase.order;
            f->sj.u.purchase.replayed = true;
            metrics_count(METRIC_REPLAYS, 1);
        }
        inventory_leave(f->sale);
        http_complete_later(f->req, api_purchase_answer, f);
        f = next;
    }
}

/* On the writer thread after COMMIT (or on the worker, for --inventory sqlite):
 * memory follows the database here, under the commit lock; the answer is built
 * on the I/O thread, so the next group commit does not wait for it. */
static void api_purchase_done(struct store_job *sj)
{
    struct api_call *c = sj->ctx;
    struct api *a = c->api;
    struct store_purchase *p = &sj->u.purchase;
    bool sold = sj->outcome == OUTCOME_OK && !p->replayed;
    if (sold) {
        inventory_commit(a->inv, c->sale, p->user_id, p->quantity, p->order.expires_at != 0);
        metrics_count(METRIC_ORDERS, 1);
        metrics_count(METRIC_UNITS, (uint64_t)p->quantity);
    } else if (c->reserved) {
        inventory_release(a->inv, c->sale, p->user_id, p->quantity);
    }
    if (sj->outcome == OUTCOME_OK && p->replayed) metrics_count(METRIC_REPLAYS, 1);
    api_keys_settle(a, c, sj->outcome);
    inventory_leave(c->sale);
    http_complete_later(c->req, api_purchase_answer, c);
}

/* On a worker: sj goes to the writer with the rest of this round's jobs. */
static void api_commit_later(struct api_thread *t, struct store_job *sj)
{
    sj->next = NULL;
    if (t->commit_last) t->commit_last->next = sj;
    else t->commit_first = sj;
    t->commit_last = sj;
    t->commits++;
}

/* On a worker. */
static void api_purchase_run(struct pool_job *job, void *worker)
{
    struct api_call *c = (struct api_call *)job;
    struct api *a = c->api;
    struct api_thread *t = worker;
    struct store_conn *conn = t->conn;
    struct store_purchase *p = &c->sj.u.purchase;
    enum outcome o = OUTCOME_OK;

    if (clock_mono_ns() - job->enqueued_ns > (uint64_t)a->cfg->queue_timeout_ms * 1000000u) {
        o = OUTCOME_OVERLOADED; /* the client has waited long enough; nothing was reserved */
    } else if (p->idem_key[0]) {
        o = conn ? store_order_by_key(conn, p->sale_id, p->user_id, p->idem_key, &p->order)
                 : OUTCOME_UNAVAILABLE;
        if (o == OUTCOME_OK) {
            p->replayed = true;
            c->sj.outcome = OUTCOME_OK;
            api_purchase_done(&c->sj); /* nothing was reserved, nothing to release */
            return;
        }
        o = o == OUTCOME_NOT_FOUND ? OUTCOME_OK : o;
    }
    /* A retry would be refused on what its first try holds (memory's units, or on
     * PostgreSQL the first try's uncommitted row): it follows the try in flight
     * instead and gets the same answer. */
    if (o == OUTCOME_OK && p->idem_key[0] && !api_keys_claim(a, c)) return;
    if (o == OUTCOME_OK) {
        o = inventory_reserve(a->inv, c->sale, p->user_id, p->quantity, clock_wall_ms() / 1000,
                              &p->unguarded_stock_left);
    }
    if (o != OUTCOME_OK && c->keyed && conn &&
        store_order_by_key(conn, p->sale_id, p->user_id, p->idem_key, &p->order) == OUTCOME_OK) {
        /* A try with this key committed between our look and our claim. */
        p->replayed = true;
        c->sj.outcome = OUTCOME_OK;
        api_purchase_done(&c->sj);
        return;
    }
    if (o != OUTCOME_OK) {
        api_keys_settle(a, c, o);
        api_complete_outcome(c, o, NULL);
        inventory_leave(c->sale);
        free(c);
        return;
    }
    c->reserved = true;
    if (inventory_traits(a->inv)->sql_decides) {
        if (conn) {
            store_purchase_now(a->store, conn, &c->sj);
        } else {
            c->sj.outcome = OUTCOME_UNAVAILABLE;
            api_purchase_done(&c->sj);
        }
    } else {
        api_commit_later(t, &c->sj);
    }
}

static void api_purchase(struct api *a, struct http_request *r, int64_t sale_id)
{
    struct sale *sale = inventory_get(a->inv, sale_id);
    if (!sale) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
    enum outcome o = api_body_checks(r);
    if (o != OUTCOME_OK) return api_refuse(a, r, o, NULL);

    struct payload_order order;
    char msg[256];
    size_t len;
    const char *body = http_body(r, &len);
    o = payload_order_parse(body, len, &order, msg, sizeof msg);
    if (o != OUTCOME_OK) return api_refuse(a, r, o, msg);
    const char *key = http_header(r, "Idempotency-Key");
    if (key && !payload_key_ok(key))
        return api_refuse(a, r, OUTCOME_INVALID, "Idempotency-Key must be 1 to 128 printable ASCII characters");
    if (!api_user_checks(a, r, order.user_id)) return;

    /* A refused request with a key may be the retry of an order this user has or is
     * getting: only a worker, which looks the key up, can tell.  The units are read
     * after the check, so a first try that reserved in between is seen.  Everyone
     * else meets the fast path. */
    o = inventory_check(a->inv, sale, order.user_id, order.quantity, clock_wall_ms() / 1000);
    if (o != OUTCOME_OK && key && inventory_units(a->inv, sale, order.user_id) > 0) o = OUTCOME_OK;
    if (o != OUTCOME_OK) return api_refuse(a, r, o, NULL);
    if (!inventory_admit(sale)) return api_refuse(a, r, OUTCOME_RESETTING, NULL);
    struct api_call *c = api_call_new(a, r, api_purchase_run);
    if (!c) {
        inventory_leave(sale);
        return api_refuse(a, r, OUTCOME_INTERNAL, "out of memory");
    }
    c->sale = sale;
    c->sj.op = STORE_PURCHASE;
    c->sj.done = api_purchase_done;
    c->sj.ctx = c;
    struct store_purchase *p = &c->sj.u.purchase;
    p->sale_id = sale->id;
    memcpy(p->user_id, order.user_id, sizeof p->user_id);
    p->quantity = order.quantity;
    if (key) snprintf(p->idem_key, sizeof p->idem_key, "%s", key);
    p->per_user_limit = sale->per_user_limit;
    p->payment_window = sale->payment_window;
    p->unguarded = inventory_traits(a->inv)->blind_write;
    p->limit_held = inventory_traits(a->inv)->holds_limit;
    if (!api_enqueue(a, r, c)) inventory_leave(sale);
}

/* ---- the payment window: pay, cancel, expire ---------------------------------- */

/* On the writer thread after COMMIT: memory follows what the database did. */
static void api_settle_done(struct store_job *sj)
{
    struct api_call *c = sj->ctx;
    struct api *a = c->api;
    struct store_settle *t = &sj->u.settle;
    bool committed = sj->outcome == OUTCOME_OK || sj->outcome == OUTCOME_ORDER_EXPIRED;
    struct sale *sale = committed ? inventory_get(a->inv, t->order.sale_id) : NULL;
    if (sale && t->paid_now) {
        inventory_paid(sale, t->order.quantity);
        metrics_count(METRIC_PAID, 1);
    }
    if (sale && t->returned) {
        bool expired = strcmp(t->order.status, "expired") == 0;
        inventory_give_back(a->inv, sale, t->order.user_id, t->order.quantity, expired);
        metrics_count(expired ? METRIC_EXPIRED : METRIC_CANCELLED, 1);
    }
    if (sj->outcome == OUTCOME_OK) {
        char body[512];
        size_t len = render_order(&t->order, false, NULL, body, sizeof body);
        http_complete(c->req, 200, body, len, NULL, NULL);
    } else {
        api_complete_outcome(c, sj->outcome, sj->outcome == OUTCOME_NOT_FOUND ? "no such order" : NULL);
    }
    free(c);
}

/* On a worker: queue for the writer with this round's purchases. */
static void api_settle_run(struct pool_job *job, void *worker)
{
    struct api_call *c = (struct api_call *)job;
    struct api_thread *t = worker;
    c->sj.next = NULL;
    if (t->commit_last) t->commit_last->next = &c->sj;
    else t->commit_first = &c->sj;
    t->commit_last = &c->sj;
    t->commits++;
}

/* An order is read, paid or cancelled only with its token (X-Order-Token, from
 * the purchase answer).  Without it the answer is the one for an order that does
 * not exist, so walking the ids learns nothing, and no database is touched. */
static bool api_order_token_ok(const struct api *a, struct http_request *r, int64_t order_id)
{
    return ordertoken_check(&a->order_tokens, order_id, http_header(r, "X-Order-Token"));
}

/* Pay or cancel: the token (404), 415, 413, the body (400), then, when the body
 * names a user (optional: the token is the proof), the user's checks (401, 429);
 * the writer answers 403 when that user is not the order's. */
static void api_settle(struct api *a, struct http_request *r, enum route route, int64_t order_id)
{
    if (!api_order_token_ok(a, r, order_id)) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such order");
    enum outcome o = api_body_checks(r);
    if (o != OUTCOME_OK) return api_refuse(a, r, o, NULL);
    char user[PAYLOAD_USER_MAX + 1] = "", msg[256];
    size_t len;
    const char *body = http_body(r, &len);
    o = len ? payload_user_parse(body, len, user, msg, sizeof msg) : OUTCOME_OK;
    if (o != OUTCOME_OK) return api_refuse(a, r, o, msg);
    /* With --user-secret the X-User-Token proves a user id, and the writer checks
     * that id against the order: so the id stays required there. */
    if (!user[0] && a->cfg->user_secret[0])
        return api_refuse(a, r, OUTCOME_INVALID, "'user_id' is required (with its X-User-Token)");
    if (user[0] && !api_user_checks(a, r, user)) return;
    struct api_call *c = api_call_new(a, r, api_settle_run);
    if (!c) return api_refuse(a, r, OUTCOME_INTERNAL, "out of memory");
    c->sj.op = route == ROUTE_PAY ? STORE_PAY : STORE_CANCEL;
    c->sj.done = api_settle_done;
    c->sj.ctx = c;
    c->sj.u.settle.order_id = order_id;
    memcpy(c->sj.u.settle.user_id, user, sizeof user);
    api_enqueue(a, r, c);
}

/* The sweeper's job, one at a time: the writer expires what is due and memory
 * gives the units back. */
static void api_sweep_done(struct store_job *sj)
{
    struct api *a = sj->ctx;
    struct store_sweep *sw = &sj->u.sweep;
    for (size_t i = 0; sj->outcome == OUTCOME_OK && i < sw->n; i++) {
        struct sale *sale = inventory_get(a->inv, sw->rows[i].sale_id);
        if (!sale) continue;
        inventory_give_back(a->inv, sale, sw->rows[i].user_id, sw->rows[i].quantity, true);
        metrics_count(METRIC_EXPIRED, 1);
    }
    if (sw->n) LOG_DEBUG("api: the sweeper expired %zu orders", sw->n);
    free(sw->rows);
    free(sj);
    atomic_store(&a->sweeping, false);
}

void api_sweep(struct api *a)
{
    if (!inventory_has_windows(a->inv) || atomic_exchange(&a->sweeping, true)) return;
    struct store_job *sj = calloc(1, sizeof *sj);
    if (!sj) {
        atomic_store(&a->sweeping, false);
        return;
    }
    sj->op = STORE_SWEEP;
    sj->u.sweep.now_ms = clock_wall_ms();
    sj->u.sweep.max = 4096;
    sj->done = api_sweep_done;
    sj->ctx = a;
    store_submit(a->store, sj);
}

/* ---- reads on the I/O thread -------------------------------------------------------- */

void api_sale_reply_fill(FILE *out, void *arg)
{
    render_sale(out, arg, clock_wall_ms() / 1000);
}

static void api_order_get(struct api *a, struct http_request *r, int64_t id)
{
    if (!api_order_token_ok(a, r, id)) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such order");
    struct store_conn *conn = ((struct api_thread *)http_thread_state(r))->conn;
    struct store_order o;
    enum outcome out = conn ? store_order_get(conn, id, &o) : OUTCOME_UNAVAILABLE;
    if (out != OUTCOME_OK) return api_refuse(a, r, out, out == OUTCOME_NOT_FOUND ? "no such order" : NULL);
    char body[512];
    size_t len = render_order(&o, false, NULL, body, sizeof body);
    http_reply(r, 200, body, len, NULL);
}

struct api_list {
    struct api *api;
    int64_t now;
};

static struct render_service api_service(const struct api *a)
{
    return (struct render_service){store_kind(a->store), inventory_traits(a->inv)->name,
                                   config_name("durability", a->cfg->durability), pool_depth(a->pool),
                                   pool_capacity(a->pool), store_backlog(a->store)};
}

static void api_sales_list_fill(FILE *out, void *arg)
{
    struct api_list *l = arg;
    render_sales(out, l->api->inv, l->now);
}

static void api_stats_fill(FILE *out, void *arg)
{
    struct api_list *l = arg;
    struct render_service svc = api_service(l->api);
    render_stats(out, l->api->inv, &svc, l->now);
}

static void api_metrics_fill(FILE *out, void *arg)
{
    struct api_list *l = arg;
    struct render_service svc = api_service(l->api);
    render_metrics(out, l->api->inv, &svc);
}

static void api_static(struct api *a, struct http_request *r)
{
    struct assets_file f;
    if (assets_open(a->cfg->static_dir, http_path(r), &f) != 0)
        return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such file");
    const char *inm = http_header(r, "If-None-Match");
    const char *headers[] = {"Content-Type", f.content_type, "Cache-Control", f.cache_control,
                             "ETag", f.etag, "X-Content-Type-Options", "nosniff", NULL};
    if (inm && strcmp(inm, f.etag) == 0) {
        /* The 200's validators, and no body headers that lie: libmicrohttpd sends no
         * body with a 304 but always a Content-Length, so it is the 200's (RFC 9110
         * §8.6), and there is no Content-Type. */
        http_reply_fd(r, 304, f.fd, f.size, headers + 2);
        return;
    }
    http_reply_fd(r, 200, f.fd, f.size, headers);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void api_handle(void *ctx, struct http_request *r, enum http_phase phase)
{
    struct api *a = ctx;
    /* Only a declared oversized body is answered before it arrives (and the
     * connection then closes); everything else waits for the whole request, so
     * the headers phase routes nothing unless Content-Length is too large. */
    if (phase == HTTP_HEADERS && http_content_length(r) <= HTTP_BODY_MAX) return;
    struct route_match m;
    enum outcome o = route_match(route_method(http_method(r)), http_path(r), &m);
    http_set_label(r, (int)m.route);
    if (phase == HTTP_HEADERS) {
        if (o != OUTCOME_OK) return;
        if (m.route == ROUTE_ORDER_CREATE && !inventory_get(a->inv, m.id))
            return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
        if ((m.route == ROUTE_PAY || m.route == ROUTE_CANCEL) && !api_order_token_ok(a, r, m.id))
            return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such order");
        if (!payload_content_type_ok(http_header(r, "Content-Type")))
            return api_refuse(a, r, OUTCOME_MEDIA_TYPE, NULL);
        return api_refuse(a, r, OUTCOME_TOO_LARGE, NULL);
    }
    if (o == OUTCOME_METHOD) return api_refuse_method(r, m.allow);
    if (o != OUTCOME_OK) return api_refuse(a, r, o, NULL);
    if (a->ip_rate && m.route != ROUTE_HEALTHZ && m.route != ROUTE_METRICS && m.route != ROUTE_STATIC) {
        char addr[64];
        size_t n = http_client_address(r, addr, sizeof addr);
        int retry;
        if (n && !ratelimit_take(a->ip_rate, addr, n, clock_mono_ns(), &retry)) {
            metrics_count(METRIC_RATE_LIMITED, 1);
            return api_refuse_retry(r, OUTCOME_RATE_LIMITED, retry);
        }
    }
    bool admin_route = m.route == ROUTE_RESET || (m.route == ROUTE_SALES && route_method(http_method(r)) == METHOD_POST);
    if (admin_route && !a->cfg->admin) return api_refuse(a, r, OUTCOME_NOT_FOUND, "admin endpoints are off");

    struct api_list list = {a, clock_wall_ms() / 1000};
    switch (m.route) {
    case ROUTE_ORDER_CREATE: return api_purchase(a, r, m.id);
    case ROUTE_HEALTHZ: return http_reply_canned(r, a->healthz);
    case ROUTE_SALE: {
        struct sale *s = inventory_get(a->inv, m.id);
        if (!s) return api_refuse(a, r, OUTCOME_NOT_FOUND, "no such sale");
        return api_reply_stream(r, 200, "application/json", api_sale_reply_fill, s);
    }
    case ROUTE_SALES:
        if (admin_route) return admin_post(a, r, m.route, m.id);
        return api_reply_stream(r, 200, "application/json", api_sales_list_fill, &list);
    case ROUTE_RESET: return admin_post(a, r, m.route, m.id);
    case ROUTE_STATS: return api_reply_stream(r, 200, "application/json", api_stats_fill, &list);
    case ROUTE_METRICS:
        return api_reply_stream(r, 200, "text/plain; version=0.0.4; charset=utf-8", api_metrics_fill, &list);
    case ROUTE_ORDER: return api_order_get(a, r, m.id);
    case ROUTE_PAY:
    case ROUTE_CANCEL: return api_settle(a, r, m.route, m.id);
    case ROUTE_AUDIT: return admin_audit(a, r, m.id);
    case ROUTE_STATIC: return api_static(a, r);
    default: return api_refuse(a, r, OUTCOME_NOT_FOUND, NULL);
    }
}

static void api_finished(void *ctx, struct http_request *r, int status, uint64_t latency_ns)
{
    if (status) metrics_request((enum route)http_label(r), status, latency_ns);
}

/* Workers and I/O threads each read through their own connection. */
static void *api_thread_start(void *ctx)
{
    struct api *a = ctx;
    struct api_thread *t = calloc(1, sizeof *t);
    if (!t) LOG_FATAL("api: out of memory");
    t->conn = store_conn_open(a->store);
    t->commit_store = a->store;
    return t;
}

static void api_thread_stop(void *ctx, void *state)
{
    struct api_thread *t = state;
    store_conn_close(t->conn);
    free(t);
}

static void *api_worker_new(void *ctx, size_t index) { return api_thread_start(ctx); }

static void api_worker_free(void *state) { api_thread_stop(NULL, state); }

struct http_hooks api_http_hooks(struct api *a)
{
    return (struct http_hooks){.handle = api_handle,
                               .finished = api_finished,
                               .round_done = api_io_round_done,
                               .thread_start = api_thread_start,
                               .thread_stop = api_thread_stop,
                               .ctx = a};
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static int api_make_token(char *out, size_t size)
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return -1;
    for (size_t i = 0; i < sizeof raw && 2 * i + 2 < size; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

struct api *api_new(const struct config *cfg, struct inventory *inv, struct store *store)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->cfg = cfg;
    a->inv = inv;
    a->store = store;
    pthread_mutex_init(&a->keys_mu, NULL);
    if (cfg->admin_token[0]) {
        snprintf(a->token, sizeof a->token, "%s", cfg->admin_token);
    } else if (api_make_token(a->token, sizeof a->token) == 0) {
        if (cfg->admin) LOG_INFO("admin token (generated, shown once): %s", a->token);
    } else {
        LOG_ERROR("api: cannot generate an admin token");
        free(a);
        return NULL;
    }
    a->token_len = strlen(a->token);
    _Static_assert(STORE_SECRET_LEN == ORDERTOKEN_SECRET_LEN, "the store keeps the order tokens' secret");
    ordertoken_init(&a->order_tokens, store_order_secret(store));
    for (int o = 1; o < OUTCOME_COUNT; o++) {
        char body[256];
        size_t len = outcome_json((enum outcome)o, NULL, body, sizeof body);
        const char *retry = api_retry_after((enum outcome)o);
        const char *headers[] = {"Retry-After", retry, NULL};
        if (o == OUTCOME_UNAUTHORIZED) { /* RFC 9110 §15.5.2: a 401 names the scheme it wants */
            headers[0] = "WWW-Authenticate";
            headers[1] = "Bearer realm=\"flashsale admin\"";
        }
        a->canned[o] = http_canned_new(outcome_status((enum outcome)o), body, len, headers[1] ? headers : NULL);
    }
    a->healthz = http_canned_new(200, "{\"status\":\"ok\"}", 15, NULL);
    /* A second's worth of requests may come at once (at least one). */
    if (cfg->user_rate) a->user_rate = ratelimit_new((double)cfg->user_rate, (double)cfg->user_rate);
    if (cfg->ip_rate) a->ip_rate = ratelimit_new((double)cfg->ip_rate, (double)cfg->ip_rate);
    if ((cfg->user_rate && !a->user_rate) || (cfg->ip_rate && !a->ip_rate)) {
        api_free(a);
        return NULL;
    }
    struct pool_hooks hooks = {api_worker_new, api_worker_round_done, api_worker_free, a};
    /* Thread-per-connection: no worker pool, the connection threads do its work. */
    size_t workers = cfg->model == MODEL_THREAD_PER_CONNECTION ? 0 : (size_t)cfg->workers;
    a->pool = pool_new(workers, (size_t)cfg->queue, &hooks);
    a->admin = a->pool ? admin_new(a) : NULL;
    if (!a->pool || !a->admin || !a->healthz) {
        api_free(a);
        return NULL;
    }
    return a;
}

void api_drain(struct api *a)
{
    pool_stop(a->pool);
    admin_drain(a->admin);
}

void api_free(struct api *a)
{
    if (!a) return;
    pool_free(a->pool);
    admin_free(a->admin);
    for (int o = 0; o < OUTCOME_COUNT; o++) http_canned_free(a->canned[o]);
    http_canned_free(a->healthz);
    ratelimit_free(a->user_rate);
    ratelimit_free(a->ip_rate);
    memset(a->token, 0, sizeof a->token);
    memset(&a->order_tokens, 0, sizeof a->order_tokens);
    pthread_mutex_destroy(&a->keys_mu);
    free(a);
}

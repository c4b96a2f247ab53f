/* call — see call.h. */
#include "call.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hmac.h"
#include "metrics.h"
#include "payload.h"
#include "ratelimit.h"

/* Each I/O thread's and worker's own: its database connection, and the jobs it
 * produced during one round of its loop, handed on together at the end of the
 * round (one lock and at most one wake-up per round instead of per job: under a
 * crowd, thread switches are where the time goes). */
struct call_thread {
    struct store_conn *conn; /* NULL when it could not be opened: answers 503 */
    struct pool_job *queued_first, *queued_last; /* I/O thread -> pool */
    size_t queued;
    struct store_job *commit_first, *commit_last; /* worker -> writer */
    size_t commits;
};

/* The default refusals, built once: a crowd's sold_out answers cost no
 * formatting.  Constants after call_init (libmicrohttpd reference-counts a
 * response under its own lock, so one is queued on many threads at once). */
static struct http_canned *call_canned[OUTCOME_COUNT];

int call_init(void)
{
    for (int o = 1; o < OUTCOME_COUNT; o++) {
        char body[256], retry[12];
        const char *h[OUTCOME_HEADERS_MAX];
        size_t len = outcome_json((enum outcome)o, NULL, body, sizeof body);
        size_t n = outcome_headers((enum outcome)o, 0, NULL, retry, h);
        call_canned[o] = http_canned_new(outcome_status((enum outcome)o), body, len, n ? h : NULL);
        if (!call_canned[o]) return -1;
    }
    return 0;
}

void call_deinit(void)
{
    for (int o = 0; o < OUTCOME_COUNT; o++) {
        http_canned_free(call_canned[o]);
        call_canned[o] = NULL;
    }
}

static void call_count_refusal(enum outcome o)
{
    switch (o) {
    case OUTCOME_SOLD_OUT: metrics_count(METRIC_SOLD_OUT, 1); break;
    case OUTCOME_LIMIT_EXCEEDED: metrics_count(METRIC_LIMIT, 1); break;
    case OUTCOME_NOT_STARTED:
    case OUTCOME_ENDED: metrics_count(METRIC_NOT_OPEN, 1); break;
    case OUTCOME_OVERLOADED: metrics_count(METRIC_OVERLOADED, 1); break;
    case OUTCOME_RATE_LIMITED: metrics_count(METRIC_RATE_LIMITED, 1); break;
    default: break;
    }
}

/* A deferred answer carries at most one header (http_complete's); the
 * dispatcher answers 401 and 405, the only ones with more, before any deferral. */
static void call_send(struct http_request *r, int status, const char *body, size_t len, const char **h)
{
    if (http_is_deferred(r)) {
        assert(!h[0] || !h[2]);
        http_complete(r, status, body, len, h[0], h[1]);
    } else {
        http_reply(r, status, body, len, h[0] ? h : NULL);
    }
}

void call_answer(struct http_request *r, const struct answer *a)
{
    if (a->outcome != OUTCOME_OK) {
        enum outcome o = a->outcome;
        call_count_refusal(o);
        if (!a->message && !a->retry_after && !a->allow && !http_is_deferred(r) && call_canned[o])
            return http_reply_canned(r, call_canned[o]);
        char body[512], retry[12];
        const char *h[OUTCOME_HEADERS_MAX];
        size_t len = outcome_json(o, a->message, body, sizeof body);
        outcome_headers(o, a->retry_after, a->allow, retry, h);
        return call_send(r, outcome_status(o), body, len, h);
    }
    const char *h[16];
    size_t n = 0;
    if (a->content_type) {
        h[n++] = "Content-Type";
        h[n++] = a->content_type;
    }
    if (a->no_store) {
        h[n++] = "Cache-Control";
        h[n++] = "no-store";
    }
    if (a->location) {
        h[n++] = "Location";
        h[n++] = a->location;
    }
    for (const char *const *x = a->headers; x && x[0] && n + 3 < sizeof h / sizeof h[0]; x += 2) {
        h[n++] = x[0];
        h[n++] = x[1];
    }
    h[n] = NULL;
    int status = a->status ? a->status : 200;
    if (a->file) {
        assert(!http_is_deferred(r)); /* files are answered on the I/O thread */
        return http_reply_fd(r, status, a->fd, a->file_size, h);
    }
    call_send(r, status, a->body, a->len, h);
}

void call_answer_rendered(struct http_request *r, const struct answer *a, void (*fill)(FILE *out, void *arg),
                          void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
    fill(out, arg);
    fclose(out);
    struct answer full = *a;
    full.body = buf;
    full.len = len;
    call_answer(r, &full);
    free(buf);
}

static void call_later_fill(struct http_request *r, void *arg)
{
    struct call *c = arg;
    c->later(c);
}

void call_answer_later(struct call *c, void (*answer)(struct call *c))
{
    c->later = answer;
    http_complete_later(c->req, call_later_fill, c);
}

/* ---- calls on the workers --------------------------------------------------------- */

struct call *call_new(const struct call_env *env, struct http_request *r, size_t size,
                      void (*run)(struct pool_job *, void *))
{
    assert(size >= sizeof(struct call));
    struct call *c = calloc(1, size);
    if (!c) return NULL;
    c->env = env;
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
static void call_run_here(struct call *c)
{
    struct http_request *r = c->req;
    const struct call_env *env = c->env;
    struct call_thread *t = http_thread_state(r);
    http_defer(r);
    c->job.next = NULL;
    c->job.enqueued_ns = clock_mono_ns();
    c->job.run(&c->job, t); /* may complete r already (a refusal) and free c */
    call_thread_round_done(env, t);
    http_wait(r);
}

bool call_enqueue(struct call *c)
{
    struct http_request *r = c->req;
    if (!pool_reserve(c->env->workers)) {
        free(c);
        call_refuse(r, OUTCOME_OVERLOADED, NULL);
        return false;
    }
    if (c->env->cfg->model == MODEL_THREAD_PER_CONNECTION) {
        struct pool *workers = c->env->workers; /* c may be freed by its job */
        call_run_here(c);
        pool_unreserve(workers);
        return true;
    }
    /* Suspend before queueing: once queued, a worker may complete it at once. */
    http_defer(r);
    struct call_thread *t = http_thread_state(r);
    c->job.next = NULL;
    if (t->queued_last) t->queued_last->next = &c->job;
    else t->queued_first = &c->job;
    t->queued_last = &c->job;
    t->queued++;
    return true;
}

void call_commit_later(void *worker, struct store_job *sj)
{
    struct call_thread *t = worker;
    sj->next = NULL;
    if (t->commit_last) t->commit_last->next = sj;
    else t->commit_first = sj;
    t->commit_last = sj;
    t->commits++;
}

struct store_conn *call_conn(const struct http_request *r)
{
    return ((struct call_thread *)http_thread_state(r))->conn;
}

struct store_conn *call_worker_conn(void *worker) { return ((struct call_thread *)worker)->conn; }

/* ---- checks shared by the handlers ------------------------------------------------- */

/* A hex digit's value, or -1. */
static int call_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* With --user-secret, a buyer proves the user id was issued to them:
 *   X-User-Token: <expiry unix seconds>.<hex HMAC-SHA256(secret, user_id "\n" expiry)>
 * A front end that authenticates its users signs it; a bot cannot invent ids. */
static bool call_user_token_ok(const struct call_env *env, const struct http_request *r, const char *user)
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
    hmac_sha256_keyed(&env->user_key, msg, (size_t)n, want); /* two blocks: the pads were hashed at start */
    for (int i = 0; i < HMAC_SHA256_LEN; i++) {
        int hi = call_hex(dot[1 + 2 * i]), lo = call_hex(dot[2 + 2 * i]);
        if (hi < 0 || lo < 0) return false;
        got[i] = (uint8_t)(hi * 16 + lo);
    }
    return hmac_equal(want, got, sizeof want);
}

bool call_user_checks(const struct call_env *env, struct http_request *r, const char *user)
{
    if (env->cfg->user_secret[0] && !call_user_token_ok(env, r, user)) {
        call_refuse(r, OUTCOME_BAD_TOKEN, NULL);
        return false;
    }
    int retry;
    if (env->user_rate && !ratelimit_take(env->user_rate, user, strlen(user), clock_mono_ns(), &retry)) {
        call_answer(r, &(struct answer){.outcome = OUTCOME_RATE_LIMITED, .retry_after = retry});
        return false;
    }
    return true;
}

/* Without the token the answer is the one for an order that does not exist, so
 * walking the ids learns nothing, and no database is touched. */
bool call_order_token_ok(const struct call_env *env, const struct http_request *r, int64_t order_id)
{
    return ordertoken_check(&env->order_tokens, order_id, http_header(r, "X-Order-Token"));
}

/* ---- per-thread state --------------------------------------------------------------- */

struct call_thread *call_thread_new(const struct call_env *env)
{
    struct call_thread *t = calloc(1, sizeof *t);
    if (t) t->conn = store_conn_open(env->store);
    return t;
}

void call_thread_free(struct call_thread *t)
{
    if (!t) return;
    assert(!t->queued && !t->commits); /* handed on at the end of every round */
    store_conn_close(t->conn);
    free(t);
}

void call_thread_round_done(const struct call_env *env, struct call_thread *t)
{
    if (t->queued) {
        pool_submit_chain(env->workers, t->queued_first, t->queued_last, t->queued);
        t->queued_first = t->queued_last = NULL;
        t->queued = 0;
    }
    if (t->commits) {
        store_submit_chain(env->store, t->commit_first, t->commit_last, t->commits);
        t->commit_first = t->commit_last = NULL;
        t->commits = 0;
    }
}

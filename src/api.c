/* api — see api.h.
 *
 * The dispatcher.  api_commands below is the whole API as data: for each route
 * (route.c matches the path) and method, the handler and how the request is
 * treated before it runs.  api_handle reads the row and nothing else decides:
 *
 *   headers phase   only a declared oversized body is answered before it arrives
 *                   (then the connection closes): the row's existence check
 *                   (JSON bodies only: 404 first, as it would be with the body),
 *                   Content-Type (415), else 413.
 *   body phase      404 / 405 (route.c, Allow) -> per-IP rate (API_IP_RATE, 429)
 *                   -> admin endpoints on (API_ADMIN, else 404) -> bearer token
 *                   (API_ADMIN, 401) -> the row's existence check (404) ->
 *                   Content-Type (API_JSON, 415) -> body size (API_JSON or
 *                   API_BOUNDED, 413) -> the handler.
 *
 * A handler marked API_LATER may suspend the request and answer it from another
 * thread; no other handler may (asserted).  The metrics label is the route.
 */
#include "api.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "admin.h"
#include "call.h"
#include "clock.h"
#include "hmac.h"
#include "log.h"
#include "metrics.h"
#include "orders.h"
#include "payload.h"
#include "purchase.h"
#include "ratelimit.h"
#include "reads.h"
#include "route.h"

/* What a row asks of the dispatcher before its handler runs. */
enum api_flags {
    API_IP_RATE = 1 << 0, /* counts against the client address's rate (--ip-rate) */
    API_ADMIN = 1 << 1,   /* an operator's endpoint: --admin and the bearer token */
    API_JSON = 1 << 2,    /* a JSON body: Content-Type (415) and size (413) checked */
    API_BOUNDED = 1 << 3, /* no body expected, but one over HTTP_BODY_MAX is 413 */
    API_LATER = 1 << 4,   /* may be answered later, from a worker, the writer or the admin thread */
};

/* What must exist before anything else about the request matters (404). */
enum api_exists {
    API_EXISTS_NONE,
    API_EXISTS_SALE,  /* the {id} is a sale in memory: "no such sale" */
    API_EXISTS_ORDER, /* the X-Order-Token matches the {id}: "no such order" */
};

typedef void (*api_handler)(const struct call_env *env, struct http_request *r, int64_t id);

struct api_command {
    enum route route;
    enum route_method method; /* METHOD_GET serves HEAD too */
    api_handler handle;
    unsigned flags;
    enum api_exists exists;
};

static const struct api_command api_commands[] = {
    /* route (its path in route.c), method, handler, flags, what must exist first */
    /* GET /healthz */
    {ROUTE_HEALTHZ, METHOD_GET, reads_healthz, 0, API_EXISTS_NONE},
    /* GET /metrics */
    {ROUTE_METRICS, METHOD_GET, reads_metrics, 0, API_EXISTS_NONE},
    /* GET / and the dashboard's files: any path outside /api/ */
    {ROUTE_STATIC, METHOD_GET, reads_static, 0, API_EXISTS_NONE},
    /* GET /api/v1/stats */
    {ROUTE_STATS, METHOD_GET, reads_stats, API_IP_RATE, API_EXISTS_NONE},
    /* GET /api/v1/sales */
    {ROUTE_SALES, METHOD_GET, reads_sales, API_IP_RATE, API_EXISTS_NONE},
    /* GET /api/v1/sales/{id} */
    {ROUTE_SALE, METHOD_GET, reads_sale, API_IP_RATE, API_EXISTS_SALE},
    /* POST /api/v1/sales/{id}/orders: a purchase, answered after its COMMIT */
    {ROUTE_ORDER_CREATE, METHOD_POST, purchase_create, API_IP_RATE | API_JSON | API_LATER, API_EXISTS_SALE},
    /* GET /api/v1/orders/{id} (X-Order-Token) */
    {ROUTE_ORDER, METHOD_GET, orders_get, API_IP_RATE, API_EXISTS_ORDER},
    /* POST /api/v1/orders/{id}/pay (X-Order-Token) */
    {ROUTE_PAY, METHOD_POST, orders_pay, API_IP_RATE | API_JSON | API_LATER, API_EXISTS_ORDER},
    /* POST /api/v1/orders/{id}/cancel (X-Order-Token) */
    {ROUTE_CANCEL, METHOD_POST, orders_cancel, API_IP_RATE | API_JSON | API_LATER, API_EXISTS_ORDER},
    /* GET /api/v1/sales/{id}/audit: public, on the admin thread */
    {ROUTE_AUDIT, METHOD_GET, admin_audit, API_IP_RATE | API_LATER, API_EXISTS_SALE},
    /* POST /api/v1/sales (Authorization: Bearer) */
    {ROUTE_SALES, METHOD_POST, admin_create, API_IP_RATE | API_ADMIN | API_JSON | API_LATER, API_EXISTS_NONE},
    /* POST /api/v1/sales/{id}/reset (Authorization: Bearer) */
    {ROUTE_RESET, METHOD_POST, admin_reset, API_IP_RATE | API_ADMIN | API_BOUNDED | API_LATER, API_EXISTS_SALE},
};

struct api {
    struct call_env env; /* what the handlers get */
    struct ratelimit *ip_rate; /* NULL = no limit */
    char token[128];           /* the admin bearer token */
    size_t token_len;
    _Atomic bool sweeping; /* a sweep job is queued or running */
    /* The row of each (route, GET/POST), found once at start. */
    const struct api_command *by_route[ROUTE_COUNT][2];
};

/* outcome.c's 413 message names the limit in words. */
_Static_assert(HTTP_BODY_MAX == 16 * 1024, "the 413 message in outcome.c says 16 KiB");

/* ---- the checks a row asks for ------------------------------------------------------ */

static enum outcome api_exists(const struct api *a, const struct http_request *r, enum api_exists what, int64_t id,
                               const char **msg)
{
    switch (what) {
    case API_EXISTS_SALE:
        *msg = "no such sale";
        return inventory_get(a->env.inv, id) ? OUTCOME_OK : OUTCOME_NOT_FOUND;
    case API_EXISTS_ORDER:
        *msg = "no such order";
        return call_order_token_ok(&a->env, r, id) ? OUTCOME_OK : OUTCOME_NOT_FOUND;
    case API_EXISTS_NONE: break;
    }
    return OUTCOME_OK;
}

/* Constant time in the token's length: every byte is compared, whatever matches. */
static bool api_admin_token_ok(const struct api *a, const struct http_request *r)
{
    const char *h = http_header(r, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    bool same_len = strlen(h) == a->token_len;
    return hmac_equal(a->token, same_len ? h : a->token, a->token_len) && same_len;
}

static bool api_ip_rate_ok(struct api *a, const struct http_request *r, int *retry)
{
    char addr[64];
    size_t n = http_client_address(r, addr, sizeof addr);
    return !n || ratelimit_take(a->ip_rate, addr, n, clock_mono_ns(), retry);
}

/* ---- dispatch ------------------------------------------------------------------------ */

/* The headers phase, only for a declared body over HTTP_BODY_MAX. */
static void api_refuse_early(struct api *a, struct http_request *r, const struct api_command *cmd, int64_t id)
{
    const char *msg = NULL;
    if (cmd && (cmd->flags & API_JSON) && api_exists(a, r, cmd->exists, id, &msg) != OUTCOME_OK)
        return call_refuse(r, OUTCOME_NOT_FOUND, msg);
    if (!payload_content_type_ok(http_header(r, "Content-Type"))) return call_refuse(r, OUTCOME_MEDIA_TYPE, NULL);
    call_refuse(r, OUTCOME_TOO_LARGE, NULL);
}

static void api_handle(void *ctx, struct http_request *r, enum http_phase phase)
{
    struct api *a = ctx;
    if (phase == HTTP_HEADERS && http_content_length(r) <= HTTP_BODY_MAX) return;
    enum route_method method = route_method(http_method(r));
    struct route_match m;
    enum outcome o = route_match(method, http_path(r), &m);
    http_set_label(r, (int)m.route);
    const struct api_command *cmd = o == OUTCOME_OK ? a->by_route[m.route][method == METHOD_POST] : NULL;
    if (phase == HTTP_HEADERS) {
        if (o == OUTCOME_OK) api_refuse_early(a, r, cmd, m.id);
        return; /* a 404 or 405 is answered once the body is in (and dropped) */
    }
    if (o == OUTCOME_METHOD)
        return call_answer(r, &(struct answer){.outcome = OUTCOME_METHOD, .allow = m.allow});
    if (o != OUTCOME_OK || !cmd) return call_refuse(r, OUTCOME_NOT_FOUND, NULL);

    int retry;
    if ((cmd->flags & API_IP_RATE) && a->ip_rate && !api_ip_rate_ok(a, r, &retry))
        return call_answer(r, &(struct answer){.outcome = OUTCOME_RATE_LIMITED, .retry_after = retry});
    if ((cmd->flags & API_ADMIN) && !a->env.cfg->admin)
        return call_refuse(r, OUTCOME_NOT_FOUND, "admin endpoints are off");
    if ((cmd->flags & API_ADMIN) && !api_admin_token_ok(a, r)) return call_refuse(r, OUTCOME_UNAUTHORIZED, NULL);
    const char *msg = NULL;
    if ((o = api_exists(a, r, cmd->exists, m.id, &msg)) != OUTCOME_OK) return call_refuse(r, o, msg);
    if ((cmd->flags & API_JSON) && !payload_content_type_ok(http_header(r, "Content-Type")))
        return call_refuse(r, OUTCOME_MEDIA_TYPE, NULL);
    if ((cmd->flags & API_JSON) && (http_body_too_large(r) || http_content_length(r) > HTTP_BODY_MAX))
        return call_refuse(r, OUTCOME_TOO_LARGE, NULL);
    if ((cmd->flags & API_BOUNDED) && http_body_too_large(r)) return call_refuse(r, OUTCOME_TOO_LARGE, NULL);

    cmd->handle(&a->env, r, m.id);
    assert((cmd->flags & API_LATER) || !http_is_deferred(r)); /* the table says who may answer later */
}

static void api_finished(void *ctx, struct http_request *r, int status, uint64_t latency_ns)
{
    if (status) metrics_request((enum route)http_label(r), status, latency_ns);
}

/* ---- threads ------------------------------------------------------------------------- */

/* I/O threads and workers each read through their own database connection. */
static void *api_thread_start(void *ctx)
{
    struct api *a = ctx;
    struct call_thread *t = call_thread_new(&a->env);
    if (!t) LOG_FATAL("api: out of memory");
    return t;
}

static void api_thread_stop(void *ctx, void *state) { call_thread_free(state); }

/* End of an I/O round or a worker round: hand on what the thread collected. */
static void api_round_done(void *ctx, void *state)
{
    struct api *a = ctx;
    call_thread_round_done(&a->env, state);
}

static void *api_worker_new(void *ctx, size_t index) { return api_thread_start(ctx); }

static void api_worker_free(void *state) { call_thread_free(state); }

struct http_hooks api_http_hooks(struct api *a)
{
    return (struct http_hooks){.handle = api_handle,
                               .finished = api_finished,
                               .round_done = api_round_done,
                               .thread_start = api_thread_start,
                               .thread_stop = api_thread_stop,
                               .ctx = a};
}

void api_sweep(struct api *a) { orders_sweep(&a->env, &a->sweeping); }

/* ---- lifecycle ----------------------------------------------------------------------- */

int api_make_token(char *out, size_t size)
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
    a->env.cfg = cfg;
    hmac_sha256_key_init(&a->env.user_key, cfg->user_secret, strlen(cfg->user_secret));
    a->env.inv = inv;
    a->env.store = store;
    for (size_t i = 0; i < sizeof api_commands / sizeof api_commands[0]; i++) {
        const struct api_command *cmd = &api_commands[i];
        assert(!a->by_route[cmd->route][cmd->method == METHOD_POST]); /* one row per route and method */
        a->by_route[cmd->route][cmd->method == METHOD_POST] = cmd;
    }
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
    ordertoken_init(&a->env.order_tokens, store_order_secret(store));
    /* A second's worth of requests may come at once (at least one). */
    if (cfg->user_rate) a->env.user_rate = ratelimit_new("rate:user", (double)cfg->user_rate, (double)cfg->user_rate);
    if (cfg->ip_rate) a->ip_rate = ratelimit_new("rate:ip", (double)cfg->ip_rate, (double)cfg->ip_rate);
    a->env.keys = purchase_keys_new();
    if (call_init() != 0 || !a->env.keys || (cfg->user_rate && !a->env.user_rate) || (cfg->ip_rate && !a->ip_rate)) {
        api_free(a);
        return NULL;
    }
    struct pool_hooks hooks = {api_worker_new, api_round_done, api_worker_free, a};
    /* Thread-per-connection: no worker pool, the connection threads do its work. */
    size_t workers = cfg->model == MODEL_THREAD_PER_CONNECTION ? 0 : (size_t)cfg->workers;
    a->env.workers = pool_new(workers, (size_t)cfg->queue, &hooks);
    a->env.admin = a->env.workers ? admin_new(&a->env) : NULL;
    if (!a->env.workers || !a->env.admin) {
        api_free(a);
        return NULL;
    }
    return a;
}

void api_drain(struct api *a)
{
    pool_stop(a->env.workers);
    admin_drain(a->env.admin);
}

void api_free(struct api *a)
{
    if (!a) return;
    if (a->env.workers) pool_free(a->env.workers);
    admin_free(a->env.admin);
    call_deinit();
    purchase_keys_free(a->env.keys);
    ratelimit_free(a->env.user_rate);
    ratelimit_free(a->ip_rate);
    memset(a->token, 0, sizeof a->token);
    memset(&a->env.order_tokens, 0, sizeof a->env.order_tokens);
    free(a);
}

/* admin — see admin.h.
 *
 * Every admin job runs on the admin thread: a pool of one worker with a database
 * connection of its own and a lower CPU priority (nice ADMIN_NICE), so no job of
 * the operator's, and no audit anyone asks for, ever holds a purchase worker.  A
 * reset waits there, without polling, for the sale's purchases in flight to be
 * answered (inventory_pause); a create or a reset waits there for its commit.
 * Their memory updates run in the store's follower (inventory_follow) just before
 * the commit's done(), under the commit lock, like every other change that memory
 * follows (a refresh from PostgreSQL then
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
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "admin.h"
#include "clock.h"
#include "log.h"
#include "payload.h"
#include "reads.h"
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

/* A create or a reset on its way: the call, and the new sale's fields. */
struct admin_job {
    struct call call;
    struct payload_sale new_sale;
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
    const struct call_env *env;
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
    return store_conn_open(ad->env->store);
}

static void admin_thread_free(void *state) { store_conn_close(state); }

struct admin *admin_new(const struct call_env *env)
{
    struct admin *ad = calloc(1, sizeof *ad);
    if (!ad) return NULL;
    ad->env = env;
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

/* Queues c on the admin thread, or answers 503 when its queue is full. */
static void admin_enqueue(struct call *c)
{
    struct http_request *r = c->req;
    if (!pool_reserve(c->env->admin->pool)) {
        free(c);
        return call_refuse(r, OUTCOME_OVERLOADED, "too many admin jobs queued; retry");
    }
    http_defer(r); /* before queueing: the admin thread may answer at once */
    pool_submit(c->env->admin->pool, &c->job);
}

/* ---- create and reset ------------------------------------------------------------ */

/* Answers a deferred call with a sale's JSON (201 with its Location, or 200). */
static void admin_answer_sale(struct call *c, int status, struct sale *s)
{
    char location[64];
    snprintf(location, sizeof location, "/api/v1/sales/%lld", (long long)s->id);
    call_answer_rendered(c->req, &(struct answer){.status = status, .location = status == 201 ? location : NULL},
                         reads_sale_fill, s);
}

/* After COMMIT, the sale published (inventory_follow, which turns a sale memory
 * cannot hold into OUTCOME_TOO_MANY_SALES). */
static void admin_create_done(struct store_job *sj)
{
    struct call *c = sj->ctx;
    if (sj->outcome != OUTCOME_OK) return;
    c->sale = inventory_get(c->env->inv, sj->u.sale.id);
    if (!c->sale) sj->outcome = OUTCOME_TOO_MANY_SALES;
}

static void admin_create_run(struct pool_job *job, void *conn)
{
    struct call *c = (struct call *)job;
    const struct call_env *env = c->env;
    struct store_sale *row = &c->sj.u.sale;
    const struct payload_sale *in = &((struct admin_job *)c)->new_sale;
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
    enum outcome o = inventory_max_id(env->inv) >= INVENTORY_MAX_SALES ? OUTCOME_TOO_MANY_SALES
                                                                        : store_run(env->store, &c->sj);
    if (o == OUTCOME_OK) {
        LOG_INFO("api: created sale %lld \"%s\" with %lld units", (long long)row->id, row->name,
                 (long long)row->stock_total);
        admin_answer_sale(c, 201, c->sale);
    } else {
        call_refuse(c->req, o, NULL);
    }
    free(c);
}

static void admin_reset_run(struct pool_job *job, void *conn)
{
    struct call *c = (struct call *)job;
    struct sale *s = c->sale;
    if (!inventory_pause(s, ADMIN_RESET_WAIT_MS)) {
        call_refuse(c->req, OUTCOME_RESETTING, "purchases did not drain in time; retry");
        free(c);
        return;
    }
    c->sj.op = STORE_RESET_SALE;
    c->sj.u.sale_id = s->id;
    c->sj.done = NULL; /* memory follows in inventory_follow */
    c->sj.ctx = c;
    enum outcome o = store_run(c->env->store, &c->sj);
    inventory_unpause(s);
    if (o == OUTCOME_OK) {
        LOG_INFO("api: reset sale %lld", (long long)s->id);
        admin_answer_sale(c, 200, s);
    } else {
        call_refuse(c->req, o, NULL);
    }
    free(c);
}

void admin_create(const struct call_env *env, struct http_request *r, int64_t id)
{
    struct payload_sale in;
    char msg[256];
    size_t len;
    const char *body = http_body(r, &len);
    enum outcome o = payload_sale_parse(body, len, &in, msg, sizeof msg);
    if (o != OUTCOME_OK) return call_refuse(r, o, msg);
    struct call *c = call_new(env, r, sizeof(struct admin_job), admin_create_run);
    if (!c) return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
    ((struct admin_job *)c)->new_sale = in;
    admin_enqueue(c);
}

void admin_reset(const struct call_env *env, struct http_request *r, int64_t sale_id)
{
    struct sale *sale = inventory_get(env->inv, sale_id);
    if (!sale) return call_refuse(r, OUTCOME_NOT_FOUND, "no such sale");
    struct call *c = call_new(env, r, sizeof *c, admin_reset_run);
    if (!c) return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
    c->sale = sale;
    admin_enqueue(c);
}

/* ---- audit -------------------------------------------------------------------------- */

struct admin_snapshot {
    struct admin_audit *audit;
    struct admin_result *result;
};

/* Memory as the follower read it at the instant of the database snapshot. */
static void admin_audit_snapshot(void *ctx, const struct store_memory *mem)
{
    struct admin_snapshot *snap = ctx;
    struct admin_result *res = snap->result;
    res->mem_stock_left = mem->stock_left;
    res->mem_sold = mem->sold;
    res->version = mem->version;
    res->snapshot_ns = mem->at_ns;
    pthread_mutex_lock(&snap->audit->admin->mu);
    snap->audit->run_snapshot_ns = res->snapshot_ns;
    pthread_mutex_unlock(&snap->audit->admin->mu);
}

static size_t admin_audit_render(const struct admin *ad, const struct sale *s, const struct admin_result *res,
                                 uint64_t age_ms, char *body, size_t size)
{
    struct render_audit in = {s->id,         &res->au,
                              res->mem_stock_left, res->mem_sold,
                              age_ms,        store_shared(ad->env->store),
                              inventory_traits(ad->env->inv)->name};
    return render_audit(&in, body, size);
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
    struct admin_result res = {0};
    struct admin_snapshot snap = {audit, &res};
    enum outcome o = conn ? store_audit(ad->env->store, conn, audit->sale->id, &res.au, admin_audit_snapshot, &snap)
                          : OUTCOME_UNAVAILABLE;
    struct admin_waiter *answer, *refused = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ad->mu);
    assert(audit->running); /* one run per sale at a time: this one */
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
    assert(ad->parked >= n);
    ad->parked -= n;
    pthread_mutex_unlock(&ad->mu);
    if (again) pool_submit(ad->pool, &audit->job);

    for (struct admin_waiter *w = answer, *next; w; w = next) {
        next = w->next;
        if (o == OUTCOME_OK) {
            char body[1024];
            size_t len = admin_audit_render(ad, audit->sale, &res,
                                            admin_audit_age_ms(w->arrived_ns, res.snapshot_ns), body, sizeof body);
            call_answer(w->req, &(struct answer){.body = body, .len = len});
        } else {
            call_refuse(w->req, o, o == OUTCOME_NOT_FOUND ? "no such sale" : NULL);
        }
        free(w);
    }
    for (struct admin_waiter *w = refused, *next; w; w = next) {
        next = w->next;
        call_refuse(w->req, OUTCOME_OVERLOADED, "the service is stopping");
        free(w);
    }
}

void admin_audit(const struct call_env *env, struct http_request *r, int64_t sale_id)
{
    struct sale *s = inventory_get(env->inv, sale_id);
    if (!s) return call_refuse(r, OUTCOME_NOT_FOUND, "no such sale");
    struct admin *ad = env->admin;
    uint64_t now = clock_mono_ns();
    uint64_t version = atomic_load(&s->version); /* after any commit whose answer the caller has */
    bool exact_known = !store_shared(env->store);
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
        return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
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
        size_t len = admin_audit_render(ad, s, &res, admin_audit_age_ms(now, res.snapshot_ns), body, sizeof body);
        return call_answer(r, &(struct answer){.body = body, .len = len});
    }
    struct admin_waiter *w = ad->parked < ADMIN_AUDIT_PARKED_MAX ? malloc(sizeof *w) : NULL;
    bool start = w && !audit->running;
    if (!w || (start && !pool_reserve(ad->pool))) {
        pthread_mutex_unlock(&ad->mu);
        free(w);
        return call_refuse(r, OUTCOME_OVERLOADED, "too many audits waiting; retry");
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

/* orders — see orders.h. */
#include "orders.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "payload.h"
#include "render.h"

void orders_get(const struct call_env *env, struct http_request *r, int64_t order_id)
{
    struct store_conn *conn = call_conn(r);
    struct store_order o;
    enum outcome out = conn ? store_order_get(conn, order_id, &o) : OUTCOME_UNAVAILABLE;
    if (out != OUTCOME_OK) return call_refuse(r, out, out == OUTCOME_NOT_FOUND ? "no such order" : NULL);
    char body[512];
    size_t len = render_order(&o, false, NULL, body, sizeof body);
    call_answer(r, &(struct answer){.body = body, .len = len});
}

/* On the I/O thread (call_answer_later): the paid or cancelled order, or why not. */
static void orders_settle_answer(struct call *c)
{
    if (c->sj.outcome == OUTCOME_OK) {
        char body[512];
        size_t len = render_order(&c->sj.u.settle.order, false, NULL, body, sizeof body);
        call_answer(c->req, &(struct answer){.body = body, .len = len});
    } else {
        call_refuse(c->req, c->sj.outcome, c->sj.outcome == OUTCOME_NOT_FOUND ? "no such order" : NULL);
    }
    free(c);
}

/* After COMMIT, memory having followed (inventory_follow): the answer. */
static void orders_settle_done(struct store_job *sj)
{
    call_answer_later(sj->ctx, orders_settle_answer);
}

/* On a worker: to the writer with this round's purchases. */
static void orders_settle_run(struct pool_job *job, void *worker)
{
    struct call *c = (struct call *)job;
    call_commit_later(worker, &c->sj);
}

/* The body names a user only optionally (the token is the proof); when it does,
 * the user's checks (401, 429) apply, and the writer answers 403 when that user
 * is not the order's. */
static void orders_settle(const struct call_env *env, struct http_request *r, enum store_op op, int64_t order_id)
{
    char user[PAYLOAD_USER_MAX + 1] = "", msg[256];
    size_t len;
    const char *body = http_body(r, &len);
    enum outcome o = len ? payload_user_parse(body, len, user, msg, sizeof msg) : OUTCOME_OK;
    if (o != OUTCOME_OK) return call_refuse(r, o, msg);
    /* With --user-secret the X-User-Token proves a user id, and the writer checks
     * that id against the order: so the id stays required there. */
    if (!user[0] && env->cfg->user_secret[0])
        return call_refuse(r, OUTCOME_INVALID, "'user_id' is required (with its X-User-Token)");
    if (user[0] && !call_user_checks(env, r, user)) return;
    struct call *c = call_new(env, r, sizeof *c, orders_settle_run);
    if (!c) return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
    c->sj.op = op;
    c->sj.done = orders_settle_done;
    c->sj.ctx = c;
    c->sj.u.settle.order_id = order_id;
    memcpy(c->sj.u.settle.user_id, user, sizeof user);
    call_enqueue(c);
}

void orders_pay(const struct call_env *env, struct http_request *r, int64_t order_id)
{
    orders_settle(env, r, STORE_PAY, order_id);
}

void orders_cancel(const struct call_env *env, struct http_request *r, int64_t order_id)
{
    orders_settle(env, r, STORE_CANCEL, order_id);
}

/* ---- the sweeper ------------------------------------------------------------------ */

struct orders_sweep {
    struct store_job sj;
    const struct call_env *env;
    _Atomic bool *busy;
};

/* On the writer, what it expired being back in memory (inventory_follow). */
static void orders_sweep_done(struct store_job *sj)
{
    struct orders_sweep *job = sj->ctx;
    struct store_sweep *sw = &sj->u.sweep;
    if (sw->n) LOG_DEBUG("orders: the sweeper expired %zu orders", sw->n);
    free(sw->rows);
    atomic_store(job->busy, false);
    free(job);
}

void orders_sweep(const struct call_env *env, _Atomic bool *busy)
{
    if (!inventory_has_windows(env->inv) || atomic_exchange(busy, true)) return;
    struct orders_sweep *job = calloc(1, sizeof *job);
    if (!job) {
        atomic_store(busy, false);
        return;
    }
    job->env = env;
    job->busy = busy;
    job->sj.op = STORE_SWEEP;
    job->sj.u.sweep.now_ms = clock_wall_ms();
    job->sj.u.sweep.max = 4096;
    job->sj.done = orders_sweep_done;
    job->sj.ctx = job;
    store_submit(env->store, &job->sj);
}

/* purchase — see purchase.h. */
#include "purchase.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hash.h"
#include "metrics.h"
#include "payload.h"
#include "render.h"
#include "shm.h"

#define PURCHASE_KEY_BUCKETS 256
#define PURCHASE_SHARED_KEYS 4096 /* keys in flight across processes; a power of two */
#define PURCHASE_SHARED_PROBE 16
#define PURCHASE_SHARED_HOLD_NS 30000000000u /* a claim whose process died lapses after this */

/* One purchase on its way: the call, and its place among the tries of its key. */
struct purchase {
    struct call call;
    bool reserved; /* the inventory holds a claim for this purchase */
    bool keyed;    /* in the keys table: tries with the same key follow this one */
    uint64_t shared_hash; /* its claim in the shared table (--model processes), 0 = none */
    struct purchase *key_next;  /* the bucket's chain */
    struct purchase *followers; /* retries waiting for this try's answer */
    struct purchase *follow_next;
};

/* Purchases with an Idempotency-Key, from their claim on a worker to their
 * answer, hashed by (sale, user, key): a retry finds the try in flight. */
struct purchase_keys {
    pthread_mutex_t mu;
    struct purchase *buckets[PURCHASE_KEY_BUCKETS];
    struct purchase_shared *shared; /* --model processes: one for every process; else NULL */
};

/* Keys in flight in any process, by hash, lock-free: a slot is taken by a
 * compare-and-swap from 0 and given back by storing 0. */
struct purchase_shared {
    struct {
        _Atomic uint64_t hash;
        _Atomic uint64_t until_ns; /* CLOCK_MONOTONIC: past it, the claim has lapsed */
    } slots[PURCHASE_SHARED_KEYS];
};

struct purchase_keys *purchase_keys_new(void)
{
    struct purchase_keys *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    pthread_mutex_init(&k->mu, NULL);
    if (shm_active()) {
        bool fresh;
        k->shared = shm_named("purchase:keys", sizeof *k->shared, NULL, NULL, &fresh);
        if (!k->shared) {
            free(k);
            return NULL;
        }
    }
    return k;
}

/* True when this try now holds hash across processes (or the table has no room:
 * then nothing is held, and the database's unique key still keeps one order). */
static bool purchase_shared_claim(struct purchase_shared *t, uint64_t hash, bool *held)
{
    uint64_t now = clock_mono_ns();
    *held = false;
    for (int i = 0; i < PURCHASE_SHARED_PROBE; i++) {
        size_t at = (size_t)(hash + (uint64_t)i) & (PURCHASE_SHARED_KEYS - 1);
        uint64_t h = atomic_load(&t->slots[at].hash);
        if (h == hash && atomic_load(&t->slots[at].until_ns) > now) return false; /* another try has it */
        if (h != 0 && atomic_load(&t->slots[at].until_ns) <= now) /* lapsed: its process died */
            atomic_compare_exchange_strong(&t->slots[at].hash, &h, 0), h = atomic_load(&t->slots[at].hash);
        if (h != 0) continue;
        atomic_store(&t->slots[at].until_ns, now + PURCHASE_SHARED_HOLD_NS);
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&t->slots[at].hash, &zero, hash)) {
            *held = true;
            return true;
        }
        if (zero == hash) return false; /* another try took it first */
    }
    return true;
}

static void purchase_shared_release(struct purchase_shared *t, uint64_t hash)
{
    for (int i = 0; i < PURCHASE_SHARED_PROBE; i++) {
        size_t at = (size_t)(hash + (uint64_t)i) & (PURCHASE_SHARED_KEYS - 1);
        uint64_t h = hash;
        if (atomic_compare_exchange_strong(&t->slots[at].hash, &h, 0)) return;
    }
}

void purchase_keys_free(struct purchase_keys *k)
{
    if (!k) return;
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* On the I/O thread (call_answer_later): the answer to a finished purchase. */
static void purchase_answer(struct call *c)
{
    struct store_purchase *p = &c->sj.u.purchase;
    if (c->sj.outcome == OUTCOME_OK) {
        char body[512], location[64], token[ORDERTOKEN_LEN + 1];
        ordertoken_make(&c->env->order_tokens, p->order.id, token);
        size_t len = render_order(&p->order, true, token, body, sizeof body);
        render_order_location(&p->order, location, sizeof location);
        call_answer(c->req, &(struct answer){.status = 201, .body = body, .len = len, .location = location});
    } else {
        call_refuse(c->req, c->sj.outcome, NULL);
    }
    free(c);
}

/* ---- retries with an Idempotency-Key, while the first try is in flight ---------- */

static struct purchase **purchase_keys_bucket(struct purchase_keys *k, const struct store_purchase *p)
{
    uint64_t h = hash_str(hash_str(HASH_FNV_OFFSET ^ (uint64_t)p->sale_id, p->user_id), p->idem_key);
    return &k->buckets[hash_fold(h) % PURCHASE_KEY_BUCKETS];
}

static bool purchase_keys_same(const struct store_purchase *x, const struct store_purchase *y)
{
    return x->sale_id == y->sale_id && strcmp(x->user_id, y->user_id) == 0 && strcmp(x->idem_key, y->idem_key) == 0;
}

/* On a worker, before the reservation: true when pc is now the try in flight for
 * its key; false when another try is, and pc will get that try's answer
 * (purchase_keys_settle).  The claim comes first so that a retry can never meet
 * the first try's units in memory without also finding the first try here. */
static bool purchase_keys_claim(struct purchase_keys *k, struct purchase *pc)
{
    const struct store_purchase *p = &pc->call.sj.u.purchase;
    struct purchase **bucket = purchase_keys_bucket(k, p);
    pthread_mutex_lock(&k->mu);
    struct purchase *first = *bucket;
    while (first && !purchase_keys_same(&first->call.sj.u.purchase, p)) first = first->key_next;
    if (first) {
        pc->follow_next = first->followers;
        first->followers = pc;
    } else {
        pc->keyed = true;
        pc->key_next = *bucket;
        *bucket = pc;
    }
    pthread_mutex_unlock(&k->mu);
    return !first;
}

/* pc's answer is known (o, and its order when OUTCOME_OK): pc leaves the table and
 * every retry that followed it gets the same answer, as a replay.  On the writer
 * (under the commit lock) or on a worker. */
static void purchase_keys_settle(struct purchase_keys *k, struct purchase *pc, enum outcome o)
{
    if (!pc->keyed) return;
    if (pc->shared_hash) purchase_shared_release(k->shared, pc->shared_hash);
    pc->shared_hash = 0;
    pthread_mutex_lock(&k->mu);
    struct purchase **at = purchase_keys_bucket(k, &pc->call.sj.u.purchase);
    while (*at != pc) at = &(*at)->key_next;
    *at = pc->key_next;
    struct purchase *f = pc->followers;
    pc->followers = NULL;
    pc->keyed = false;
    pthread_mutex_unlock(&k->mu);
    while (f) {
        struct purchase *next = f->follow_next;
        assert(!f->reserved && !f->keyed); /* a follower never reached the inventory */
        f->call.sj.outcome = o;
        if (o == OUTCOME_OK) {
            f->call.sj.u.purchase.order = pc->call.sj.u.purchase.order;
            f->call.sj.u.purchase.replayed = true;
            metrics_count(METRIC_REPLAYS, 1);
        }
        inventory_leave(f->call.sale);
        call_answer_later(&f->call, purchase_answer);
        f = next;
    }
}

/* After COMMIT (or a refusal), just after memory followed the database
 * (inventory_follow, run by the store: on the writer thread, on the worker when
 * SQL decides, or in the writer process with --model processes, whose answer
 * then arrives here on this process's ipc thread).  The answer is built on the
 * I/O thread, so the next group commit does not wait for it. */
static void purchase_done(struct store_job *sj)
{
    struct purchase *pc = sj->ctx;
    struct call *c = &pc->call;
    const struct call_env *env = c->env;
    struct store_purchase *p = &sj->u.purchase;
    assert(p->reserved == pc->reserved); /* the follower settled what this purchase holds */
    if (sj->outcome == OUTCOME_OK && p->replayed) metrics_count(METRIC_REPLAYS, 1);
    purchase_keys_settle(env->keys, pc, sj->outcome);
    assert(!pc->keyed && !pc->followers); /* every retry that followed it has its answer */
    inventory_leave(c->sale);
    call_answer_later(c, purchase_answer);
}

/* On a worker. */
static void purchase_run(struct pool_job *job, void *worker)
{
    struct purchase *pc = (struct purchase *)job;
    struct call *c = &pc->call;
    const struct call_env *env = c->env;
    struct store_conn *conn = call_worker_conn(worker);
    struct store_purchase *p = &c->sj.u.purchase;
    enum outcome o = OUTCOME_OK;

    if (clock_mono_ns() - job->enqueued_ns > (uint64_t)env->cfg->queue_timeout_ms * 1000000u) {
        o = OUTCOME_OVERLOADED; /* the client has waited long enough; nothing was reserved */
    } else if (p->idem_key[0]) {
        o = conn ? store_order_by_key(conn, p->sale_id, p->user_id, p->idem_key, &p->order)
                 : OUTCOME_UNAVAILABLE;
        if (o == OUTCOME_OK) {
            p->replayed = true;
            c->sj.outcome = OUTCOME_OK;
            purchase_done(&c->sj); /* nothing was reserved, nothing for memory to follow */
            return;
        }
        o = o == OUTCOME_NOT_FOUND ? OUTCOME_OK : o;
    }
    /* A retry would be refused on what its first try holds (memory's units, or on
     * PostgreSQL the first try's uncommitted row): it follows the try in flight
     * instead and gets the same answer. */
    if (o == OUTCOME_OK && p->idem_key[0] && !purchase_keys_claim(env->keys, pc)) return;
    if (o == OUTCOME_OK && pc->keyed && env->keys->shared && conn) {
        /* Another process may have a try with this key in flight: wait for it to end
         * (as a follower here would), then its order is in the database. */
        uint64_t h = hash_str(hash_str(HASH_FNV_OFFSET ^ (uint64_t)p->sale_id, p->user_id), p->idem_key) | 1;
        uint64_t give_up = job->enqueued_ns + (uint64_t)env->cfg->queue_timeout_ms * 1000000u;
        bool held, waited = false;
        while (!purchase_shared_claim(env->keys->shared, h, &held) && clock_mono_ns() < give_up) {
            waited = true;
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL); /* rare: a retry racing its first try on another process */
        }
        if (held) pc->shared_hash = h;
        if (waited && store_order_by_key(conn, p->sale_id, p->user_id, p->idem_key, &p->order) == OUTCOME_OK) {
            p->replayed = true;
            c->sj.outcome = OUTCOME_OK;
            purchase_done(&c->sj); /* nothing reserved; settles the followers and the claim */
            return;
        }
    }
    bool ledger_full = false;
    if (o == OUTCOME_OK) {
        o = inventory_reserve(env->inv, c->sale, p->user_id, p->quantity, clock_wall_ms() / 1000,
                              &p->unguarded_stock_left);
        /* From the reservation, unavailable means one thing: no room in memory's
         * ledger (the fixed table of --model processes, or malloc failing). */
        ledger_full = o == OUTCOME_UNAVAILABLE;
    }
    if (o != OUTCOME_OK && pc->keyed && conn &&
        store_order_by_key(conn, p->sale_id, p->user_id, p->idem_key, &p->order) == OUTCOME_OK) {
        /* A try with this key committed between our look and our claim. */
        p->replayed = true;
        c->sj.outcome = OUTCOME_OK;
        purchase_done(&c->sj); /* nothing reserved */
        return;
    }
    if (o != OUTCOME_OK) {
        purchase_keys_settle(env->keys, pc, o);
        call_refuse(c->req, o,
                    ledger_full ? "the per-user ledger is full (--ledger-entries); nothing was sold, retry later"
                                : NULL);
        inventory_leave(c->sale);
        free(pc);
        return;
    }
    pc->reserved = p->reserved = true;
    if (inventory_traits(env->inv)->sql_decides) {
        if (conn) {
            store_purchase_now(env->store, conn, &c->sj);
        } else {
            c->sj.outcome = OUTCOME_UNAVAILABLE;
            inventory_follow(env->inv, &c->sj); /* gives the claim back */
            purchase_done(&c->sj);
        }
    } else {
        call_commit_later(worker, &c->sj);
    }
}

void purchase_create(const struct call_env *env, struct http_request *r, int64_t sale_id)
{
    struct sale *sale = inventory_get(env->inv, sale_id);
    if (!sale) return call_refuse(r, OUTCOME_NOT_FOUND, "no such sale");
    struct payload_order order;
    char msg[256];
    size_t len;
    const char *body = http_body(r, &len);
    enum outcome o = payload_order_parse(body, len, &order, msg, sizeof msg);
    if (o != OUTCOME_OK) return call_refuse(r, o, msg);
    const char *key = http_header(r, "Idempotency-Key");
    if (key && !payload_key_ok(key))
        return call_refuse(r, OUTCOME_INVALID, "Idempotency-Key must be 1 to 128 printable ASCII characters");
    if (!call_user_checks(env, r, order.user_id)) return;

    /* A refused request with a key may be the retry of an order this user has or is
     * getting: only a worker, which looks the key up, can tell.  The units are read
     * after the check, so a first try that reserved in between is seen.  Everyone
     * else meets the fast path. */
    o = inventory_check(env->inv, sale, order.user_id, order.quantity, clock_wall_ms() / 1000);
    if (o != OUTCOME_OK && key && inventory_units(env->inv, sale, order.user_id) > 0) o = OUTCOME_OK;
    if (o != OUTCOME_OK) return call_refuse(r, o, NULL);
    if (!inventory_admit(sale))
        return call_refuse(r, OUTCOME_RESETTING,
                           inventory_frozen(env->inv) ? "the service is rebuilding its counters after a process "
                                                        "restart; nothing was sold, retry shortly"
                                                      : NULL);
    struct call *c = call_new(env, r, sizeof(struct purchase), purchase_run);
    if (!c) {
        inventory_leave(sale);
        return call_refuse(r, OUTCOME_INTERNAL, "out of memory");
    }
    c->sale = sale;
    c->sj.op = STORE_PURCHASE;
    c->sj.done = purchase_done;
    c->sj.ctx = c;
    struct store_purchase *p = &c->sj.u.purchase;
    p->sale_id = sale->id;
    memcpy(p->user_id, order.user_id, sizeof p->user_id);
    p->quantity = order.quantity;
    if (key) snprintf(p->idem_key, sizeof p->idem_key, "%s", key);
    p->per_user_limit = sale->per_user_limit;
    p->payment_window = sale->payment_window;
    p->unguarded = inventory_traits(env->inv)->blind_write;
    p->limit_held = inventory_traits(env->inv)->holds_limit;
    if (!call_enqueue(c)) inventory_leave(sale);
}

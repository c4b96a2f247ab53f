/* inventory — see inventory.h.  The four strategies sit side by side below, each
 * as reserve / commit / release. */
#include <assert.h>
#include "inventory.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "shm.h"

struct inventory_strategy {
    struct inventory_traits traits; /* what the rest of the program may know (inventory.h) */
    enum outcome (*reserve)(struct inventory *, struct sale *, const char *, int64_t, int64_t *);
    void (*commit)(struct inventory *, struct sale *, const char *, int64_t);
    void (*release)(struct inventory *, struct sale *, const char *, int64_t);
    /* Units of a committed order coming back (cancelled, expired). */
    void (*give_back)(struct inventory *, struct sale *, const char *, int64_t);
};

struct inventory {
    const struct inventory_strategy *strategy;
    enum config_inventory kind;
    struct ledger *ledger;
    _Atomic int64_t max_id;
    _Atomic int64_t windows; /* sales with a payment window */
    struct sale *_Atomic *sales; /* INVENTORY_MAX_SALES + 1 slots, by id */
    /* --model processes: no purchase is admitted while true (a rebuild waits for
     * the admitted ones to leave), and each process counts its admitted purchases
     * in its own slot, so a dead process's count can be told apart. */
    bool processes; /* made by inventory_new_shared for processes: count per process */
    _Atomic bool frozen;
    _Atomic uint64_t freezes; /* inventory_freeze's generation */
    _Atomic int64_t inflight[INVENTORY_PROCS];
};

/* FLASHSALE_TEST_PARK: a purchase by this user parks holding its lock (tests only). */
static const char *inventory_park_user;

/* The test hook: parks the calling thread for good, holding `what`. */
static void inventory_park(const char *user, const char *what)
{
    if (!inventory_park_user || strcmp(user, inventory_park_user) != 0) return;
    LOG_WARN("test hook: parked holding %s (pid %d)", what, (int)getpid());
    for (;;) pause();
}

static enum outcome inventory_from_ledger(enum ledger_result r)
{
    switch (r) {
    case LEDGER_OK: return OUTCOME_OK;
    case LEDGER_OVER_LIMIT: return OUTCOME_LIMIT_EXCEEDED;
    case LEDGER_REFUSED: return OUTCOME_SOLD_OUT;
    case LEDGER_NO_MEMORY: return OUTCOME_UNAVAILABLE;
    }
    return OUTCOME_INTERNAL;
}

/* Sold and orders move together on every strategy's commit. */
static void inventory_count_sold(struct sale *s, int64_t q)
{
    atomic_fetch_add(&s->sold, q);
    atomic_fetch_add(&s->orders, 1);
}

/* A change the database also has (see struct sale): under the commit lock. */
static void inventory_touch(struct sale *s)
{
    atomic_fetch_add(&s->version, 1);
    atomic_store(&s->changed_ns, clock_mono_ns());
}

/* ---- atomic: lock-free compare-and-swap on the stock ------------------------ */

struct atomic_take {
    _Atomic int64_t *left;
    int64_t q;
    const char *user;
};

/* Takes q units if at least q are left; the counter can never go below zero.
 * Runs under the user's ledger stripe lock. */
static bool atomic_take(void *ctx)
{
    struct atomic_take *t = ctx;
    int64_t left = atomic_load(t->left);
    while (left >= t->q) {
        if (atomic_compare_exchange_weak(t->left, &left, left - t->q)) {
            /* The hook parks with the units taken and the ledger not yet told: what a
             * death here leaves behind, only a rebuild gives back. */
            inventory_park(t->user, "a ledger stripe lock");
            return true;
        }
    }
    return false;
}

static enum outcome atomic_reserve(struct inventory *inv, struct sale *s, const char *user,
                                   int64_t q, int64_t *unguarded_left)
{
    struct atomic_take t = {&s->stock_left, q, user};
    return inventory_from_ledger(ledger_reserve(inv->ledger, s->id, user, q, s->per_user_limit,
                                                atomic_take, &t));
}

static void atomic_commit(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    inventory_count_sold(s, q);
}

static void atomic_release(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    ledger_add(inv->ledger, s->id, user, -q);
    atomic_fetch_add(&s->stock_left, q);
}

/* ---- mutex: the same decisions under one lock per sale ---------------------- */

static enum outcome mutex_reserve(struct inventory *inv, struct sale *s, const char *user,
                                  int64_t q, int64_t *unguarded_left)
{
    enum outcome o = OUTCOME_OK;
    shm_lock(&s->mu);
    int64_t units = ledger_units(inv->ledger, s->id, user);
    int64_t left = atomic_load_explicit(&s->stock_left, memory_order_relaxed);
    if (q > s->per_user_limit || units > s->per_user_limit - q) o = OUTCOME_LIMIT_EXCEEDED;
    else if (left < q) o = OUTCOME_SOLD_OUT;
    else if (!ledger_add(inv->ledger, s->id, user, q)) o = OUTCOME_UNAVAILABLE;
    else atomic_store_explicit(&s->stock_left, left - q, memory_order_relaxed);
    if (o == OUTCOME_OK) inventory_park(user, "the sale's mutex"); /* units taken, lock held */
    pthread_mutex_unlock(&s->mu);
    return o;
}

static void mutex_release(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    shm_lock(&s->mu);
    ledger_add(inv->ledger, s->id, user, -q);
    atomic_store_explicit(&s->stock_left,
                          atomic_load_explicit(&s->stock_left, memory_order_relaxed) + q,
                          memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
}

/* ---- sqlite: the database decides; memory follows the commits --------------- */

static enum outcome sqlite_reserve(struct inventory *inv, struct sale *s, const char *user,
                                   int64_t q, int64_t *unguarded_left)
{
    return OUTCOME_OK;
}

static void sqlite_commit(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    ledger_add(inv->ledger, s->id, user, q);
    /* Memory follows the COMMIT, and news of that COMMIT (a sold-out notice, a
     * re-read row) can arrive first and already count these units: never below 0,
     * which would only ever understate what is left. */
    int64_t left = atomic_load(&s->stock_left);
    while (!atomic_compare_exchange_weak(&s->stock_left, &left, left > q ? left - q : 0)) {
    }
    inventory_count_sold(s, q);
}

static void sqlite_release(struct inventory *inv, struct sale *s, const char *user, int64_t q) {}

/* The database already put the units back; memory follows, as after a purchase. */
static void sqlite_give_back(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    ledger_add(inv->ledger, s->id, user, -q);
    atomic_fetch_add(&s->stock_left, q);
}

/* ---- unsafe: check-then-act with a gap, the bug every flash sale starts with -- */

static enum outcome unsafe_reserve(struct inventory *inv, struct sale *s, const char *user,
                                   int64_t q, int64_t *unguarded_left)
{
    /* Relaxed loads and stores: no undefined behaviour in C, but nothing makes the
     * read-check-write one step, so two buyers can both see the last unit. */
    int64_t units = ledger_units(inv->ledger, s->id, user);
    int64_t left = atomic_load_explicit(&s->stock_left, memory_order_relaxed);
    if (q > s->per_user_limit || units > s->per_user_limit - q) return OUTCOME_LIMIT_EXCEEDED;
    if (left < q) return OUTCOME_SOLD_OUT;
    sched_yield(); /* "business logic" between the check and the write */
    atomic_store_explicit(&s->stock_left, left - q, memory_order_relaxed);
    ledger_add(inv->ledger, s->id, user, q);
    *unguarded_left = left - q;
    return OUTCOME_OK;
}

static void unsafe_release(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    ledger_add(inv->ledger, s->id, user, -q);
    atomic_store_explicit(&s->stock_left,
                          atomic_load_explicit(&s->stock_left, memory_order_relaxed) + q,
                          memory_order_relaxed);
}

static const struct inventory_strategy inventory_strategies[] = {
    /*                     name      fast  sql    limit  blind  workers */
    [INVENTORY_ATOMIC] = {{"atomic", true, false, true, false, 1},
                          atomic_reserve, atomic_commit, atomic_release, atomic_release},
    [INVENTORY_MUTEX] = {{"mutex", true, false, true, false, 1},
                         mutex_reserve, atomic_commit, mutex_release, mutex_release},
    [INVENTORY_SQLITE] = {{"sqlite", true, true, false, false, 1},
                          sqlite_reserve, sqlite_commit, sqlite_release, sqlite_give_back},
    /* With one worker its read-check-write would never interleave: 4 buyers race. */
    [INVENTORY_UNSAFE] = {{"unsafe", false, false, false, true, 4},
                          unsafe_reserve, atomic_commit, unsafe_release, unsafe_release},
};

/* ---- the rest is shared by every strategy ----------------------------------- */

struct inventory *inventory_new(enum config_inventory strategy)
{
    return inventory_new_shared(strategy, 0);
}

struct inventory *inventory_new_shared(enum config_inventory strategy, size_t ledger_entries)
{
    struct inventory *inv = shm_calloc(1, sizeof *inv);
    if (!inv) return NULL;
    inv->kind = strategy;
    inv->strategy = &inventory_strategies[strategy];
    inv->processes = ledger_entries != 0;
    inv->ledger = ledger_entries ? ledger_new_fixed(ledger_entries) : ledger_new();
    inv->sales = shm_calloc(INVENTORY_MAX_SALES + 1, sizeof *inv->sales);
    inventory_park_user = getenv("FLASHSALE_TEST_PARK");
    if (inventory_park_user && !*inventory_park_user) inventory_park_user = NULL;
    if (!inv->ledger || !inv->sales) {
        inventory_free(inv);
        return NULL;
    }
    return inv;
}

static void inventory_sale_free(struct sale *s)
{
    if (shm_active()) return; /* in the shared region for the region's life */
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->drain_mu);
    pthread_cond_destroy(&s->drained);
    free(s);
}

void inventory_free(struct inventory *inv)
{
    if (!inv) return;
    if (shm_active()) return; /* other processes may still use it */
    if (inv->sales) {
        for (int64_t i = 1; i <= INVENTORY_MAX_SALES; i++) {
            struct sale *s = atomic_load(&inv->sales[i]);
            if (!s) continue;
            inventory_sale_free(s);
        }
    }
    free(inv->sales);
    ledger_free(inv->ledger);
    free(inv);
}

enum config_inventory inventory_strategy(const struct inventory *inv) { return inv->kind; }

const struct inventory_traits *inventory_traits_of(enum config_inventory kind)
{
    assert((unsigned)kind < sizeof inventory_strategies / sizeof inventory_strategies[0]);
    return &inventory_strategies[kind].traits;
}

const struct inventory_traits *inventory_traits(const struct inventory *inv) { return &inv->strategy->traits; }

/* A sale's counters as the database's row has them, the gate at stock_left (a
 * publish, a refresh from other nodes, a rebuild). */
static void inventory_counters_from(struct sale *s, const struct store_sale *row, int64_t stock_left)
{
    atomic_store(&s->stock_left, stock_left);
    atomic_store(&s->sold, row->sold);
    atomic_store(&s->orders, row->orders);
    atomic_store(&s->pending, row->pending);
    atomic_store(&s->paid, row->paid);
    atomic_store(&s->expired, row->expired);
    atomic_store(&s->cancelled, row->cancelled);
}

/* Publishes a new sale for row in its slot unless one is there: *found is then
 * the sale already published.  NULL (and *found NULL) when out of range or memory. */
static struct sale *inventory_insert(struct inventory *inv, const struct store_sale *row, struct sale **found)
{
    *found = NULL;
    if (row->id < 1 || row->id > INVENTORY_MAX_SALES) return NULL;
    if ((*found = atomic_load(&inv->sales[row->id]))) return NULL;
    struct sale *s = shm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->inv = inv;
    s->id = row->id;
    memcpy(s->name, row->name, sizeof s->name);
    s->stock_total = row->stock_total;
    s->per_user_limit = row->per_user_limit;
    s->starts_at = row->starts_at;
    s->ends_at = row->ends_at;
    s->payment_window = row->payment_window;
    s->created_at = row->created_at;
    inventory_counters_from(s, row, row->stock_left);
    atomic_init(&s->changed_ns, clock_mono_ns());
    shm_mutex_init(&s->mu);
    shm_mutex_init(&s->drain_mu);
    shm_cond_init(&s->drained, true);
    /* Publish: the fields above are visible first.  Two publishers of one id (a
     * creator and a refresh of the database) race here; one wins, the other
     * frees its copy and gets the winner's. */
    struct sale *none = NULL;
    if (!atomic_compare_exchange_strong(&inv->sales[row->id], &none, s)) {
        inventory_sale_free(s);
        *found = none;
        return NULL;
    }
    if (s->payment_window) atomic_fetch_add(&inv->windows, 1);
    int64_t max = atomic_load(&inv->max_id);
    while (max < row->id && !atomic_compare_exchange_weak(&inv->max_id, &max, row->id)) {}
    return s;
}

bool inventory_add(struct inventory *inv, const struct store_sale *row)
{
    struct sale *found;
    return inventory_insert(inv, row, &found) != NULL;
}

struct sale *inventory_publish(struct inventory *inv, const struct store_sale *row)
{
    struct sale *found, *s = inventory_insert(inv, row, &found);
    return s ? s : found;
}

bool inventory_hold(struct inventory *inv, int64_t sale_id, const char *user, int64_t units)
{
    if (ledger_add(inv->ledger, sale_id, user, units)) return true;
    if (!shm_active()) LOG_FATAL("inventory: out of memory while loading the ledger");
    return false;
}

struct sale *inventory_get(struct inventory *inv, int64_t id)
{
    if (id < 1 || id > INVENTORY_MAX_SALES) return NULL;
    return atomic_load_explicit(&inv->sales[id], memory_order_acquire);
}

int64_t inventory_max_id(struct inventory *inv) { return atomic_load(&inv->max_id); }

const char *inventory_status(const struct sale *s, int64_t now)
{
    if (s->ends_at && now >= s->ends_at) return "ended";
    if (atomic_load_explicit(&s->stock_left, memory_order_relaxed) <= 0) return "sold_out";
    if (s->starts_at && now < s->starts_at) return "upcoming";
    return "open";
}

int64_t inventory_oversold(const struct sale *s)
{
    int64_t over = atomic_load_explicit(&s->sold, memory_order_relaxed) - s->stock_total;
    return over > 0 ? over : 0;
}

static enum outcome inventory_window(const struct sale *s, int64_t now)
{
    if (s->starts_at && now < s->starts_at) return OUTCOME_NOT_STARTED;
    if (s->ends_at && now >= s->ends_at) return OUTCOME_ENDED;
    return OUTCOME_OK;
}

enum outcome inventory_check(struct inventory *inv, struct sale *s, const char *user, int64_t q,
                             int64_t now)
{
    enum outcome o = inventory_window(s, now);
    if (o != OUTCOME_OK || !inv->strategy->traits.fast_path) return o;
    /* Both reads may be stale by the time the purchase runs.  A refusal may race
     * a unit coming back (a failed write releasing it): the buyer is told
     * sold_out a moment early, never sold something that is not there. */
    if (q > s->per_user_limit || ledger_units(inv->ledger, s->id, user) > s->per_user_limit - q)
        return OUTCOME_LIMIT_EXCEEDED;
    if (atomic_load_explicit(&s->stock_left, memory_order_relaxed) < q) return OUTCOME_SOLD_OUT;
    return OUTCOME_OK;
}

bool inventory_admit(struct sale *s)
{
    /* A paused sale is refused without touching the count: a crowd refused while
     * paused would otherwise keep `active` above 0 and starve the reset waiting
     * for it.  Only buyers that looked before the pause count themselves. */
    struct inventory *inv = s->inv;
    if (atomic_load(&s->paused) || atomic_load(&inv->frozen)) return false;
    /* Count first, then look (both sequentially consistent): inventory_pause sets
     * the flag, then waits for the count, so one of the two always sees the other;
     * a rebuild likewise freezes, then waits for every live process's count. */
    if (inv->processes) atomic_fetch_add(&inv->inflight[shm_slot()], 1); /* one line for all: processes only */
    atomic_fetch_add(&s->active[shm_slot()], 1);
    if (!atomic_load(&s->paused) && !atomic_load(&inv->frozen)) return true;
    inventory_leave(s);
    return false;
}

void inventory_leave(struct sale *s)
{
    /* Leave first, then look (both sequentially consistent), the mirror of
     * inventory_admit: the last to leave a paused sale wakes the reset. */
    atomic_fetch_sub(&s->active[shm_slot()], 1);
    if (s->inv->processes) atomic_fetch_sub(&s->inv->inflight[shm_slot()], 1);
    if (atomic_load(&s->paused) && inventory_active(s) == 0) {
        shm_lock(&s->drain_mu);
        pthread_cond_broadcast(&s->drained);
        pthread_mutex_unlock(&s->drain_mu);
    }
}

enum outcome inventory_reserve(struct inventory *inv, struct sale *s, const char *user, int64_t q,
                               int64_t now, int64_t *unguarded_left)
{
    enum outcome o = inventory_window(s, now);
    if (o != OUTCOME_OK) return o;
    o = inv->strategy->reserve(inv, s, user, q, unguarded_left);
    if (o == OUTCOME_OK) atomic_fetch_add(&s->reserved, q);
    return o;
}

void inventory_commit(struct inventory *inv, struct sale *s, const char *user, int64_t q, bool pending)
{
    int64_t was = atomic_fetch_sub(&s->reserved, q);
    assert(was >= q); /* a commit settles only what a reservation took */
    (void)was;
    inv->strategy->commit(inv, s, user, q);
    if (pending) atomic_fetch_add(&s->pending, q);
    inventory_touch(s);
}

void inventory_paid(struct sale *s, int64_t q)
{
    atomic_fetch_sub(&s->pending, q);
    atomic_fetch_add(&s->paid, q);
    inventory_touch(s);
}

void inventory_give_back(struct inventory *inv, struct sale *s, const char *user, int64_t q, bool expired)
{
    inv->strategy->give_back(inv, s, user, q);
    assert(inv->strategy->traits.blind_write || atomic_load(&s->stock_left) >= 0);
    atomic_fetch_sub(&s->sold, q);
    atomic_fetch_sub(&s->orders, 1);
    atomic_fetch_sub(&s->pending, q);
    atomic_fetch_add(expired ? &s->expired : &s->cancelled, q);
    inventory_touch(s);
}

bool inventory_has_windows(struct inventory *inv) { return atomic_load(&inv->windows) > 0; }

void inventory_release(struct inventory *inv, struct sale *s, const char *user, int64_t q)
{
    int64_t was = atomic_fetch_sub(&s->reserved, q);
    assert(was >= q); /* a release gives back only what a reservation took */
    (void)was;
    inv->strategy->release(inv, s, user, q);
    /* Units came back, so the stock cannot be below zero now, except in the race
     * that exists to show it. */
    assert(inv->strategy->traits.blind_write || atomic_load(&s->stock_left) >= 0);
}

void inventory_sync(struct inventory *inv, const struct store_sale *row, uint64_t read_ns)
{
    struct sale *s = inventory_get(inv, row->id);
    if (!s) {
        if (!inventory_publish(inv, row)) LOG_WARN("inventory: cannot hold sale %lld", (long long)row->id);
        return;
    }
    /* Created, sold, reset or given back here after the row was read: memory is
     * newer than the row. */
    if (atomic_load(&s->changed_ns) >= read_ns) return;
    int64_t gate = row->stock_left - atomic_load(&s->reserved);
    inventory_counters_from(s, row, gate > 0 ? gate : 0);
}

void inventory_sold_out(struct inventory *inv, int64_t sale_id, uint64_t read_ns)
{
    struct sale *s = inventory_get(inv, sale_id);
    /* Not over a local reset (or units back) that may be newer than the news. */
    if (s && atomic_load(&s->changed_ns) < read_ns) atomic_store(&s->stock_left, 0);
}

void inventory_forget(struct inventory *inv, int64_t sale_id) { ledger_clear_sale(inv->ledger, sale_id); }

/* True when nothing admitted is left.  A purchase that looked just before the
 * pause counts itself in `active` for a moment (inventory_admit): the count may
 * read 1 just after the last real purchase left and woke us, so look a few times
 * before waiting for the next wake-up. */
static bool inventory_drained(struct sale *s)
{
    for (int i = 0; i < 64; i++) {
        if (inventory_active(s) == 0) return true;
        sched_yield();
    }
    return false;
}

bool inventory_pause(struct sale *s, int timeout_ms)
{
    bool was = false;
    if (!atomic_compare_exchange_strong(&s->paused, &was, true)) return false; /* reset under way */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* The look yields the CPU (this runs at nice 19), so it is made without
     * drain_mu: the last purchase to leave locks it, on the writer under the commit
     * lock, and must not wait for this thread to be scheduled again.  The lock is
     * taken only to look once more and wait: the leaver broadcasts under it, so its
     * wake-up cannot fall between that look and the wait.  `drained` is what the
     * look saw: a purchase that looked just before the pause may still count itself in
     * `active` just after, and is then refused. */
    bool drained;
    int rc = 0;
    while (!(drained = inventory_drained(s)) && rc != ETIMEDOUT) {
        shm_lock(&s->drain_mu);
        if (inventory_active(s) != 0) rc = pthread_cond_timedwait(&s->drained, &s->drain_mu, &until);
        if (rc == EOWNERDEAD) pthread_mutex_consistent(&s->drain_mu), rc = 0;
        pthread_mutex_unlock(&s->drain_mu);
    }
    if (!drained) atomic_store(&s->paused, false);
    return drained;
}

void inventory_reset(struct inventory *inv, struct sale *s)
{
    ledger_clear_sale(inv->ledger, s->id);
    atomic_store(&s->stock_left, s->stock_total);
    atomic_store(&s->sold, 0);
    atomic_store(&s->orders, 0);
    atomic_store(&s->pending, 0);
    atomic_store(&s->paid, 0);
    atomic_store(&s->expired, 0);
    atomic_store(&s->cancelled, 0);
    inventory_touch(s);
}

void inventory_unpause(struct sale *s) { atomic_store(&s->paused, false); }

int64_t inventory_users_over_limit(struct inventory *inv, struct sale *s)
{
    return ledger_over_limit(inv->ledger, s->id, s->per_user_limit);
}

int64_t inventory_units(struct inventory *inv, struct sale *s, const char *user)
{
    return ledger_units(inv->ledger, s->id, user);
}

/* ---- memory follows the database ------------------------------------------------ */

void inventory_follow(void *ctx, struct store_job *job)
{
    struct inventory *inv = ctx;
    switch (job->op) {
    case STORE_PURCHASE: {
        struct store_purchase *p = &job->u.purchase;
        struct sale *s = inventory_get(inv, p->sale_id);
        bool sold = job->outcome == OUTCOME_OK && !p->replayed;
        assert(!sold || p->reserved); /* only a purchase that reserved can be committed */
        if (!s) return;
        if (sold) {
            inventory_commit(inv, s, p->user_id, p->quantity, p->order.expires_at != 0);
            metrics_count(METRIC_ORDERS, 1);
            metrics_count(METRIC_UNITS, (uint64_t)p->quantity);
        } else if (p->reserved) {
            inventory_release(inv, s, p->user_id, p->quantity);
        }
        return;
    }
    case STORE_PAY:
    case STORE_CANCEL: {
        struct store_settle *t = &job->u.settle;
        bool committed = job->outcome == OUTCOME_OK || job->outcome == OUTCOME_ORDER_EXPIRED;
        struct sale *s = committed ? inventory_get(inv, t->order.sale_id) : NULL;
        if (s && t->paid_now) {
            inventory_paid(s, t->order.quantity);
            metrics_count(METRIC_PAID, 1);
        }
        if (s && t->returned) {
            /* The store returns units only when it closed a pending order: as expired
             * exactly when it answers order_expired (store_settle), else cancelled. */
            bool expired = job->outcome == OUTCOME_ORDER_EXPIRED;
            inventory_give_back(inv, s, t->order.user_id, t->order.quantity, expired);
            metrics_count(expired ? METRIC_EXPIRED : METRIC_CANCELLED, 1);
        }
        return;
    }
    case STORE_SWEEP: {
        struct store_sweep *sw = &job->u.sweep;
        for (size_t i = 0; job->outcome == OUTCOME_OK && i < sw->n; i++) {
            struct sale *s = inventory_get(inv, sw->rows[i].sale_id);
            if (!s) continue;
            inventory_give_back(inv, s, sw->rows[i].user_id, sw->rows[i].quantity, true);
            metrics_count(METRIC_EXPIRED, 1);
        }
        return;
    }
    case STORE_CREATE_SALE:
        /* A refresh from the database (PostgreSQL) may have published it first: the same sale. */
        if (job->outcome == OUTCOME_OK && !inventory_publish(inv, &job->u.sale))
            job->outcome = OUTCOME_TOO_MANY_SALES;
        return;
    case STORE_RESET_SALE:
        if (job->outcome == OUTCOME_OK) {
            struct sale *s = inventory_get(inv, job->u.sale_id);
            if (s) inventory_reset(inv, s);
        }
        return;
    }
}

void inventory_memory(void *ctx, int64_t sale_id, struct store_memory *out)
{
    struct sale *s = inventory_get(ctx, sale_id);
    memset(out, 0, sizeof *out);
    if (s) {
        out->stock_left = atomic_load(&s->stock_left);
        out->sold = atomic_load(&s->sold);
        out->version = atomic_load(&s->version);
    }
    out->at_ns = clock_mono_ns();
}

/* ---- --model processes: the freeze and the rebuild ------------------------------ */

uint64_t inventory_freeze(struct inventory *inv)
{
    uint64_t g = atomic_fetch_add(&inv->freezes, 1) + 1;
    atomic_store(&inv->frozen, true);
    return g;
}

void inventory_thaw(struct inventory *inv, uint64_t generation)
{
    if (atomic_load(&inv->freezes) != generation) return;
    atomic_store(&inv->frozen, false);
    /* A freeze that came between the look and the store: it stays frozen. */
    if (atomic_load(&inv->freezes) != generation) atomic_store(&inv->frozen, true);
}

int64_t inventory_active(const struct sale *s)
{
    int64_t n = 0;
    for (int p = 0; p < SHM_PROCS; p++) n += atomic_load(&s->active[p]);
    return n;
}

bool inventory_frozen(const struct inventory *inv) { return atomic_load(&inv->frozen); }

int64_t inventory_inflight(const struct inventory *inv, int slot) { return atomic_load(&inv->inflight[slot]); }

void inventory_forget_process(struct inventory *inv, int slot)
{
    /* Its purchases can never leave now: neither its count nor its column of each
     * sale's admitted purchases may hold a reset or a rebuild up. */
    atomic_store(&inv->inflight[slot], 0);
    for (int64_t id = 1; id <= inventory_max_id(inv); id++) {
        struct sale *s = inventory_get(inv, id);
        if (s) atomic_store(&s->active[slot], 0);
    }
}

void inventory_rebuild_begin(struct inventory *inv)
{
    assert(atomic_load(&inv->frozen)); /* nothing admitted may move memory meanwhile */
    ledger_clear_all(inv->ledger);
}

void inventory_rebuild_sale(struct inventory *inv, const struct store_sale *row)
{
    struct sale *s = inventory_get(inv, row->id);
    if (!s) {
        if (!inventory_add(inv, row)) LOG_WARN("inventory: cannot hold sale %lld", (long long)row->id);
        return;
    }
    /* Whatever a dead process had admitted, reserved or half-changed is gone: the
     * database's row is the whole truth, and nothing is in flight. */
    inventory_counters_from(s, row, row->stock_left);
    atomic_store(&s->reserved, 0); /* nothing is in flight: no process has a claim */
    inventory_touch(s);
}

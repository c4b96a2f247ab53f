/* test_inventory — the four strategies' reserve/commit/release, the windows, the
 * fast-path check, pause/reset, and a crowd of threads against atomic and mutex. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "inventory.h"
#include "unit.h"

#define NOW 1700000000 /* "now" in unix seconds for every window test */

static const enum config_inventory all_strategies[] = {INVENTORY_ATOMIC, INVENTORY_MUTEX,
                                                       INVENTORY_SQLITE, INVENTORY_UNSAFE};

static struct store_sale row_of(int64_t id, int64_t stock, int64_t limit)
{
    struct store_sale r = {.id = id, .stock_total = stock, .stock_left = stock, .per_user_limit = limit,
                           .created_at = (int64_t)NOW * 1000};
    snprintf(r.name, sizeof r.name, "sale %lld", (long long)id);
    return r;
}

static struct sale *publish(struct inventory *inv, struct store_sale r)
{
    CHECK(inventory_add(inv, &r));
    struct sale *s = inventory_get(inv, r.id);
    CHECK(s != NULL);
    return s;
}

static int64_t left_of(struct sale *s) { return atomic_load(&s->stock_left); }
static int64_t sold_of(struct sale *s) { return atomic_load(&s->sold); }
static int64_t orders_of(struct sale *s) { return atomic_load(&s->orders); }

/* A pending order paid, another expired and a third cancelled: every strategy puts
 * the returned units back on sale at once and lets the user buy again. */
static void test_payment_window(void)
{
    for (size_t k = 0; k < 4; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        CHECK(!inventory_has_windows(inv));
        struct store_sale r = row_of(1, 3, 1);
        r.payment_window = 60;
        struct sale *s = publish(inv, r);
        CHECK(inventory_has_windows(inv));
        const char *users[] = {"ann", "bob", "cat"};
        for (int i = 0; i < 3; i++) {
            int64_t unguarded = 0;
            CHECK_EQ_INT(inventory_reserve(inv, s, users[i], 1, NOW, &unguarded), OUTCOME_OK);
            inventory_commit(inv, s, users[i], 1, true);
        }
        CHECK_EQ_INT(atomic_load(&s->pending), 3);
        CHECK_EQ_INT(left_of(s), 0);
        inventory_paid(s, 1);
        inventory_give_back(inv, s, "bob", 1, true);
        inventory_give_back(inv, s, "cat", 1, false);
        CHECK_EQ_INT(atomic_load(&s->pending), 0);
        CHECK_EQ_INT(atomic_load(&s->paid), 1);
        CHECK_EQ_INT(atomic_load(&s->expired), 1);
        CHECK_EQ_INT(atomic_load(&s->cancelled), 1);
        CHECK_EQ_INT(sold_of(s), 1);
        CHECK_EQ_INT(orders_of(s), 1);
        CHECK_EQ_INT(left_of(s), 2);
        CHECK_EQ_INT(inventory_units(inv, s, "bob"), 0);
        /* back on sale at once: the fast path and a new reservation see it */
        CHECK_EQ_INT(inventory_check(inv, s, "bob", 1, NOW), OUTCOME_OK);
        int64_t unguarded = 0;
        CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &unguarded), OUTCOME_OK);
        /* ann still holds her paid unit (unsafe has no fast path to say so) */
        if (all_strategies[k] != INVENTORY_UNSAFE)
            CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_LIMIT_EXCEEDED);
        inventory_free(inv);
    }
}

static void test_new_add_get(void)
{
    for (size_t k = 0; k < 4; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        CHECK(inv != NULL);
        CHECK_EQ_INT(inventory_strategy(inv), all_strategies[k]);
        CHECK_EQ_INT(inventory_max_id(inv), 0);
        CHECK(inventory_get(inv, 1) == NULL);
        CHECK(inventory_get(inv, 0) == NULL);
        CHECK(inventory_get(inv, -1) == NULL);
        CHECK(inventory_get(inv, INVENTORY_MAX_SALES + 1) == NULL);

        struct store_sale r = row_of(3, 10, 2);
        r.starts_at = 5;
        r.ends_at = 6;
        r.payment_window = 60;
        r.stock_left = 7;
        r.sold = 3;
        r.orders = 2;
        struct sale *s = publish(inv, r);
        CHECK_EQ_INT(s->id, 3);
        CHECK_EQ_STR(s->name, "sale 3");
        CHECK_EQ_INT(s->stock_total, 10);
        CHECK_EQ_INT(left_of(s), 7);
        CHECK_EQ_INT(sold_of(s), 3);
        CHECK_EQ_INT(orders_of(s), 2);
        CHECK_EQ_INT(s->per_user_limit, 2);
        CHECK_EQ_INT(s->starts_at, 5);
        CHECK_EQ_INT(s->ends_at, 6);
        CHECK_EQ_INT(s->payment_window, 60);
        CHECK_EQ_INT(s->created_at, (int64_t)NOW * 1000);
        CHECK_EQ_INT(inventory_max_id(inv), 3);

        CHECK(!inventory_add(inv, &r)); /* the same id twice */
        r = row_of(0, 1, 1);
        CHECK(!inventory_add(inv, &r));
        r = row_of(-4, 1, 1);
        CHECK(!inventory_add(inv, &r));
        r = row_of(INVENTORY_MAX_SALES + 1, 1, 1);
        CHECK(!inventory_add(inv, &r));
        r = row_of(INVENTORY_MAX_SALES, 1, 1);
        CHECK(inventory_add(inv, &r));
        CHECK_EQ_INT(inventory_max_id(inv), INVENTORY_MAX_SALES);
        r = row_of(2, 1, 1);
        CHECK(inventory_add(inv, &r));
        CHECK_EQ_INT(inventory_max_id(inv), INVENTORY_MAX_SALES); /* never goes down */
        CHECK(inventory_get(inv, 1) == NULL);
        CHECK(inventory_get(inv, 2) != NULL);
        inventory_free(inv);
    }
    inventory_free(NULL);
}

/* ---- reserve / commit / release, one thread ------------------------------------ */

/* atomic and mutex: reserve claims stock and units; commit counts; release gives both back. */
static void test_guarded_reserve_commit_release(void)
{
    for (size_t k = 0; k < 2; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        struct sale *s = publish(inv, row_of(1, 5, 2));
        int64_t ul = -1;
        CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 2, NOW, &ul), OUTCOME_OK);
        CHECK_EQ_INT(left_of(s), 3);
        CHECK_EQ_INT(inventory_units(inv, s, "ann"), 2);
        CHECK_EQ_INT(sold_of(s), 0); /* not sold until committed */
        inventory_commit(inv, s, "ann", 2, false);
        CHECK_EQ_INT(sold_of(s), 2);
        CHECK_EQ_INT(orders_of(s), 1);
        CHECK_EQ_INT(left_of(s), 3);

        CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 1, NOW, &ul), OUTCOME_LIMIT_EXCEEDED);
        CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 3, NOW, &ul), OUTCOME_LIMIT_EXCEEDED);
        CHECK_EQ_INT(left_of(s), 3);

        /* release: stock and units come back, and the user may buy again */
        CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 2, NOW, &ul), OUTCOME_OK);
        CHECK_EQ_INT(left_of(s), 1);
        inventory_release(inv, s, "bob", 2);
        CHECK_EQ_INT(left_of(s), 3);
        CHECK_EQ_INT(inventory_units(inv, s, "bob"), 0);
        CHECK_EQ_INT(sold_of(s), 2);
        CHECK_EQ_INT(orders_of(s), 1);
        CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 2, NOW, &ul), OUTCOME_OK);
        inventory_commit(inv, s, "bob", 2, false);

        /* sold out: one left, two wanted */
        CHECK_EQ_INT(inventory_reserve(inv, s, "cat", 2, NOW, &ul), OUTCOME_SOLD_OUT);
        CHECK_EQ_INT(inventory_units(inv, s, "cat"), 0);
        CHECK_EQ_INT(left_of(s), 1);
        CHECK_EQ_INT(inventory_reserve(inv, s, "cat", 1, NOW, &ul), OUTCOME_OK);
        inventory_commit(inv, s, "cat", 1, false);
        CHECK_EQ_INT(left_of(s), 0);
        CHECK_EQ_INT(inventory_reserve(inv, s, "dan", 1, NOW, &ul), OUTCOME_SOLD_OUT);
        CHECK_EQ_INT(sold_of(s), 5);
        CHECK_EQ_INT(orders_of(s), 3);
        CHECK_EQ_INT(inventory_oversold(s), 0);
        CHECK_EQ_INT(inventory_users_over_limit(inv, s), 0);
        inventory_free(inv);
    }
}

/* sqlite: memory does not decide; it follows the commits. */
static void test_sqlite_strategy(void)
{
    struct inventory *inv = inventory_new(INVENTORY_SQLITE);
    struct sale *s = publish(inv, row_of(1, 2, 1));
    int64_t ul = -1;
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 1, NOW, &ul), OUTCOME_OK);
    CHECK_EQ_INT(left_of(s), 2); /* nothing claimed in memory */
    CHECK_EQ_INT(inventory_units(inv, s, "ann"), 0);
    inventory_commit(inv, s, "ann", 1, false);
    CHECK_EQ_INT(left_of(s), 1);
    CHECK_EQ_INT(inventory_units(inv, s, "ann"), 1);
    CHECK_EQ_INT(sold_of(s), 1);
    CHECK_EQ_INT(orders_of(s), 1);
    /* the database refused: release changes nothing */
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &ul), OUTCOME_OK);
    inventory_release(inv, s, "bob", 1);
    CHECK_EQ_INT(left_of(s), 1);
    CHECK_EQ_INT(inventory_units(inv, s, "bob"), 0);
    /* reserve never refuses on memory, but the fast path does */
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 1, NOW, &ul), OUTCOME_OK);
    CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_LIMIT_EXCEEDED);
    inventory_commit(inv, s, "bob", 1, false);
    CHECK_EQ_INT(left_of(s), 0);
    CHECK_EQ_INT(inventory_check(inv, s, "cat", 1, NOW), OUTCOME_SOLD_OUT);
    inventory_free(inv);
}

/* sqlite strategy on PostgreSQL: the sold-out notice of a COMMIT can reach memory
 * before the writer applies that COMMIT there; memory must not go below zero
 * (it did, and the next refused buyer's release hit the assert). */
static void test_sqlite_news_before_commit(void)
{
    struct inventory *inv = inventory_new(INVENTORY_SQLITE);
    struct sale *s = publish(inv, row_of(1, 1, 1));
    int64_t ul = -1;
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 1, NOW, &ul), OUTCOME_OK);
    /* The database sold the last unit; its notice is heard before memory commits. */
    inventory_sold_out(inv, s->id, atomic_load(&s->changed_ns) + 1);
    CHECK_EQ_INT(left_of(s), 0);
    inventory_commit(inv, s, "ann", 1, false);
    CHECK_EQ_INT(left_of(s), 0);
    CHECK_EQ_INT(sold_of(s), 1);
    /* The next buyer is refused by the database: its release finds a sane stock. */
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &ul), OUTCOME_OK);
    inventory_release(inv, s, "bob", 1);
    CHECK_EQ_INT(left_of(s), 0);
    CHECK_EQ_INT(inventory_check(inv, s, "cat", 1, NOW), OUTCOME_SOLD_OUT);
    inventory_free(inv);
}

/* unsafe, one thread: the same answers as a guarded strategy, plus the blind
 * stock value it reports for the database. */
static void test_unsafe_strategy(void)
{
    struct inventory *inv = inventory_new(INVENTORY_UNSAFE);
    struct sale *s = publish(inv, row_of(1, 3, 2));
    int64_t ul = -1;
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 2, NOW, &ul), OUTCOME_OK);
    CHECK_EQ_INT(ul, 1);
    CHECK_EQ_INT(left_of(s), 1);
    CHECK_EQ_INT(inventory_units(inv, s, "ann"), 2);
    inventory_commit(inv, s, "ann", 2, false);
    CHECK_EQ_INT(sold_of(s), 2);
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 1, NOW, &ul), OUTCOME_LIMIT_EXCEEDED);
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 2, NOW, &ul), OUTCOME_SOLD_OUT);
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &ul), OUTCOME_OK);
    CHECK_EQ_INT(ul, 0);
    inventory_release(inv, s, "bob", 1);
    CHECK_EQ_INT(left_of(s), 1);
    CHECK_EQ_INT(inventory_units(inv, s, "bob"), 0);
    /* the fast path never refuses on stock or limit: there is none */
    atomic_store(&s->stock_left, 0);
    CHECK_EQ_INT(inventory_check(inv, s, "bob", 1, NOW), OUTCOME_OK);
    CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_OK);
    CHECK_EQ_INT(inventory_check(inv, s, "ann", 100, NOW), OUTCOME_OK);
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &ul), OUTCOME_SOLD_OUT);
    inventory_free(inv);
}

/* ---- windows ------------------------------------------------------------------- */

static void test_windows(void)
{
    for (size_t k = 0; k < 4; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        struct store_sale r = row_of(1, 10, 5);
        r.starts_at = NOW + 100;
        struct sale *future = publish(inv, r);
        r = row_of(2, 10, 5);
        r.ends_at = NOW - 1;
        struct sale *past = publish(inv, r);
        r = row_of(3, 10, 5);
        r.starts_at = NOW;
        r.ends_at = NOW + 1;
        struct sale *now = publish(inv, r);
        r = row_of(4, 10, 5);
        r.ends_at = NOW;
        struct sale *ends_now = publish(inv, r);
        int64_t ul = -1;

        CHECK_EQ_INT(inventory_check(inv, future, "u", 1, NOW), OUTCOME_NOT_STARTED);
        CHECK_EQ_INT(inventory_reserve(inv, future, "u", 1, NOW, &ul), OUTCOME_NOT_STARTED);
        CHECK_EQ_INT(inventory_check(inv, future, "u", 1, NOW + 99), OUTCOME_NOT_STARTED);
        CHECK_EQ_INT(inventory_check(inv, future, "u", 1, NOW + 100), OUTCOME_OK);
        CHECK_EQ_INT(inventory_check(inv, past, "u", 1, NOW), OUTCOME_ENDED);
        CHECK_EQ_INT(inventory_reserve(inv, past, "u", 1, NOW, &ul), OUTCOME_ENDED);
        CHECK_EQ_INT(inventory_check(inv, past, "u", 1, NOW - 2), OUTCOME_OK);
        CHECK_EQ_INT(inventory_check(inv, ends_now, "u", 1, NOW), OUTCOME_ENDED); /* end is exclusive */
        CHECK_EQ_INT(inventory_reserve(inv, ends_now, "u", 1, NOW, &ul), OUTCOME_ENDED);
        CHECK_EQ_INT(inventory_check(inv, now, "u", 1, NOW), OUTCOME_OK); /* start is inclusive */
        CHECK_EQ_INT(inventory_check(inv, now, "u", 1, NOW + 1), OUTCOME_ENDED);
        /* refused by window: nothing claimed */
        CHECK_EQ_INT(left_of(future), 10);
        CHECK_EQ_INT(left_of(past), 10);
        CHECK_EQ_INT(left_of(ends_now), 10);
        CHECK_EQ_INT(inventory_units(inv, future, "u"), 0);
        CHECK_EQ_INT(inventory_reserve(inv, now, "u", 1, NOW, &ul), OUTCOME_OK);
        inventory_free(inv);
    }
}

/* ---- the fast path ------------------------------------------------------------- */

static void test_check_changes_nothing(void)
{
    for (size_t k = 0; k < 2; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        struct sale *s = publish(inv, row_of(1, 3, 2));
        int64_t ul;
        CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_OK);
        CHECK_EQ_INT(inventory_check(inv, s, "ann", 2, NOW), OUTCOME_OK);
        CHECK_EQ_INT(inventory_check(inv, s, "ann", 3, NOW), OUTCOME_LIMIT_EXCEEDED); /* q > limit */
        CHECK_EQ_INT(left_of(s), 3);
        CHECK_EQ_INT(inventory_units(inv, s, "ann"), 0);
        CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 2, NOW, &ul), OUTCOME_OK);
        CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_LIMIT_EXCEEDED);
        CHECK_EQ_INT(inventory_check(inv, s, "bob", 2, NOW), OUTCOME_SOLD_OUT);
        CHECK_EQ_INT(inventory_check(inv, s, "bob", 1, NOW), OUTCOME_OK);
        CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, NOW, &ul), OUTCOME_OK);
        /* limit is checked before stock */
        CHECK_EQ_INT(inventory_check(inv, s, "ann", 1, NOW), OUTCOME_LIMIT_EXCEEDED);
        CHECK_EQ_INT(inventory_check(inv, s, "cat", 1, NOW), OUTCOME_SOLD_OUT);
        CHECK_EQ_INT(left_of(s), 0);
        CHECK_EQ_INT(inventory_units(inv, s, "ann"), 2);
        CHECK_EQ_INT(inventory_units(inv, s, "bob"), 1);
        CHECK_EQ_INT(inventory_units(inv, s, "cat"), 0);
        CHECK_EQ_INT(sold_of(s), 0);
        CHECK_EQ_INT(inventory_users_over_limit(inv, s), 0);
        inventory_free(inv);
    }
}

/* ---- status, oversold, hold --------------------------------------------------- */

static void test_status(void)
{
    struct inventory *inv = inventory_new(INVENTORY_ATOMIC);
    struct store_sale r = row_of(1, 10, 1);
    struct sale *open = publish(inv, r);
    r = row_of(2, 10, 1);
    r.starts_at = NOW + 10;
    struct sale *upcoming = publish(inv, r);
    r = row_of(3, 10, 1);
    r.stock_left = 0;
    struct sale *sold_out = publish(inv, r);
    r = row_of(4, 10, 1);
    r.ends_at = NOW;
    struct sale *ended = publish(inv, r);
    r = row_of(5, 10, 1);
    r.ends_at = NOW - 5;
    r.stock_left = 0;
    struct sale *ended_sold_out = publish(inv, r);
    r = row_of(6, 10, 1);
    r.starts_at = NOW + 10;
    r.stock_left = 0;
    struct sale *upcoming_empty = publish(inv, r);

    CHECK_EQ_STR(inventory_status(open, NOW), "open");
    CHECK_EQ_STR(inventory_status(upcoming, NOW), "upcoming");
    CHECK_EQ_STR(inventory_status(upcoming, NOW + 10), "open");
    CHECK_EQ_STR(inventory_status(sold_out, NOW), "sold_out");
    CHECK_EQ_STR(inventory_status(ended, NOW), "ended");
    CHECK_EQ_STR(inventory_status(ended, NOW - 1), "open");
    CHECK_EQ_STR(inventory_status(ended_sold_out, NOW), "ended"); /* ended wins */
    CHECK_EQ_STR(inventory_status(upcoming_empty, NOW), "sold_out");
    int64_t ul;
    for (int i = 0; i < 10; i++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", i);
        CHECK_EQ_INT(inventory_reserve(inv, open, user, 1, NOW, &ul), OUTCOME_OK);
    }
    CHECK_EQ_STR(inventory_status(open, NOW), "sold_out");
    inventory_free(inv);
}

static void test_oversold_and_hold(void)
{
    struct inventory *inv = inventory_new(INVENTORY_ATOMIC);
    struct store_sale r = row_of(1, 10, 2);
    r.sold = 10;
    r.stock_left = 0;
    struct sale *full = publish(inv, r);
    CHECK_EQ_INT(inventory_oversold(full), 0);
    r = row_of(2, 10, 2);
    r.sold = 13;
    r.stock_left = 0;
    struct sale *over = publish(inv, r);
    CHECK_EQ_INT(inventory_oversold(over), 3);
    r = row_of(3, 10, 2);
    struct sale *fresh = publish(inv, r);
    CHECK_EQ_INT(inventory_oversold(fresh), 0);

    /* hold restores units at start: the limit then counts them */
    inventory_hold(inv, 3, "ann", 2);
    inventory_hold(inv, 3, "bob", 3); /* loaded over the limit: the audit sees it */
    CHECK_EQ_INT(inventory_units(inv, fresh, "ann"), 2);
    CHECK_EQ_INT(inventory_check(inv, fresh, "ann", 1, NOW), OUTCOME_LIMIT_EXCEEDED);
    int64_t ul;
    CHECK_EQ_INT(inventory_reserve(inv, fresh, "ann", 1, NOW, &ul), OUTCOME_LIMIT_EXCEEDED);
    CHECK_EQ_INT(inventory_users_over_limit(inv, fresh), 1);
    CHECK_EQ_INT(inventory_users_over_limit(inv, over), 0);
    inventory_free(inv);
}

/* ---- admit / leave / pause / reset ---------------------------------------------- */

static void sleep_ms(int ms) { nanosleep(&(struct timespec){0, ms * 1000000L}, NULL); }

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *leave_later(void *arg)
{
    sleep_ms(50);
    inventory_leave(arg);
    return NULL;
}

static void test_pause_waits_for_active(void)
{
    for (size_t k = 0; k < 4; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        struct sale *s = publish(inv, row_of(1, 5, 5));
        CHECK(inventory_admit(s));
        CHECK_EQ_INT(inventory_active(s), 1);
        pthread_t th;
        uint64_t t0 = now_ms();
        CHECK_EQ_INT(pthread_create(&th, NULL, leave_later, s), 0);
        CHECK(inventory_pause(s, 5000));
        uint64_t waited = now_ms() - t0;
        pthread_join(th, NULL);
        CHECK(waited >= 40); /* it did wait for the purchase to leave */
        CHECK_EQ_INT(inventory_active(s), 0);
        CHECK(!inventory_admit(s));  /* paused: refused */
        CHECK_EQ_INT(inventory_active(s), 0); /* and not counted */
        CHECK(!inventory_pause(s, 10)); /* a second reset while one is under way */
        CHECK(!inventory_admit(s));
        inventory_unpause(s);
        CHECK(inventory_admit(s));
        inventory_leave(s);
        inventory_free(inv);
    }
}

/* The reset's look at `active` yields the CPU, on the admin thread at nice 19.  The
 * purchase leaving last (on the writer, under the commit lock) must not wait for
 * that thread to be scheduled again: it must never find drain_mu held across a
 * yield.  The test's sched_yield stands for the yield that takes long: on the
 * pausing thread it lets the last purchase leave and waits (2 s at most) for it. */
static struct {
    _Atomic(pthread_t *) pauser; /* whose sched_yield is slow; NULL: none */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool go, left, blocked;
} yield_hook = {NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false};

int sched_yield(void)
{
    pthread_t *p = atomic_load(&yield_hook.pauser);
    if (p && pthread_equal(*p, pthread_self())) {
        atomic_store(&yield_hook.pauser, NULL); /* once */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        pthread_mutex_lock(&yield_hook.mu);
        yield_hook.go = true;
        pthread_cond_broadcast(&yield_hook.cond);
        while (!yield_hook.left && pthread_cond_timedwait(&yield_hook.cond, &yield_hook.mu, &until) == 0) {}
        yield_hook.blocked = !yield_hook.left;
        pthread_mutex_unlock(&yield_hook.mu);
    }
    return (int)syscall(SYS_sched_yield);
}

static void *leave_when_told(void *arg)
{
    pthread_mutex_lock(&yield_hook.mu);
    while (!yield_hook.go) pthread_cond_wait(&yield_hook.cond, &yield_hook.mu);
    pthread_mutex_unlock(&yield_hook.mu);
    inventory_leave(arg); /* the last purchase: it wakes the reset */
    pthread_mutex_lock(&yield_hook.mu);
    yield_hook.left = true;
    pthread_cond_broadcast(&yield_hook.cond);
    pthread_mutex_unlock(&yield_hook.mu);
    return NULL;
}

static void test_pause_yields_without_the_lock(void)
{
    struct inventory *inv = inventory_new(INVENTORY_ATOMIC);
    struct sale *s = publish(inv, row_of(1, 5, 5));
    CHECK(inventory_admit(s));
    pthread_t self = pthread_self(), th;
    CHECK_EQ_INT(pthread_create(&th, NULL, leave_when_told, s), 0);
    atomic_store(&yield_hook.pauser, &self);
    CHECK(inventory_pause(s, 5000));
    pthread_join(th, NULL);
    CHECK(yield_hook.go);       /* the pause did look, and yield, while the purchase was in */
    CHECK(!yield_hook.blocked); /* and the purchase left meanwhile, not after */
    inventory_unpause(s);
    inventory_free(inv);
}

static void test_pause_timeout(void)
{
    struct inventory *inv = inventory_new(INVENTORY_ATOMIC);
    struct sale *s = publish(inv, row_of(1, 5, 5));
    CHECK(inventory_admit(s));
    uint64_t t0 = now_ms();
    CHECK(!inventory_pause(s, 20));
    CHECK(now_ms() - t0 >= 15);
    CHECK(inventory_admit(s)); /* unpaused again after the timeout */
    inventory_leave(s);
    inventory_leave(s);
    CHECK(inventory_pause(s, 0)); /* nothing active: at once */
    inventory_unpause(s);
    inventory_free(inv);
}

static void test_reset(void)
{
    for (size_t k = 0; k < 4; k++) {
        struct inventory *inv = inventory_new(all_strategies[k]);
        struct sale *s = publish(inv, row_of(1, 4, 2));
        struct sale *other = publish(inv, row_of(2, 4, 2));
        int64_t ul;
        const char *users[] = {"a", "b"};
        for (int i = 0; i < 2; i++) {
            CHECK_EQ_INT(inventory_reserve(inv, s, users[i], 2, NOW, &ul), OUTCOME_OK);
            inventory_commit(inv, s, users[i], 2, false);
        }
        CHECK_EQ_INT(inventory_reserve(inv, other, "a", 1, NOW, &ul), OUTCOME_OK);
        inventory_commit(inv, other, "a", 1, false);
        CHECK_EQ_INT(left_of(s), 0);
        CHECK_EQ_INT(sold_of(s), 4);
        CHECK(inventory_pause(s, 100));
        inventory_reset(inv, s);
        inventory_unpause(s);
        CHECK_EQ_INT(left_of(s), 4);
        CHECK_EQ_INT(sold_of(s), 0);
        CHECK_EQ_INT(orders_of(s), 0);
        CHECK_EQ_INT(inventory_units(inv, s, "a"), 0);
        CHECK_EQ_INT(inventory_units(inv, s, "b"), 0);
        CHECK_EQ_STR(inventory_status(s, NOW), "open");
        /* the other sale is untouched */
        CHECK_EQ_INT(inventory_units(inv, other, "a"), 1);
        CHECK_EQ_INT(left_of(other), 3);
        CHECK_EQ_INT(sold_of(other), 1);
        /* and buying starts over */
        CHECK(inventory_admit(s));
        CHECK_EQ_INT(inventory_check(inv, s, "a", 2, NOW), OUTCOME_OK);
        CHECK_EQ_INT(inventory_reserve(inv, s, "a", 2, NOW, &ul), OUTCOME_OK);
        inventory_leave(s);
        inventory_free(inv);
    }
}

/* ---- the crowd: 8 threads, stock 1000, 20000 attempts, limit 2 ------------------ */

enum { CROWD_THREADS = 8, ATTEMPTS = 20000, STOCK = 1000, LIMIT = 2, SHARED_USERS = 300 };

struct crowd {
    struct inventory *inv;
    struct sale *s;
    _Atomic int64_t ok, ok_units, sold_out, over, other;
    _Atomic int64_t shared_units[SHARED_USERS];
};

struct crowd_arg {
    struct crowd *c;
    int index;
};

static void *crowd_buyer(void *arg_)
{
    struct crowd_arg *a = arg_;
    struct crowd *c = a->c;
    unsigned seed = 99u + (unsigned)a->index;
    char user[32];
    for (int i = 0; i < ATTEMPTS / CROWD_THREADS; i++) {
        int shared = -1;
        if (i % 2) { /* half the attempts from 300 users everyone shares */
            shared = (int)(rand_r(&seed) % SHARED_USERS);
            snprintf(user, sizeof user, "shared-%d", shared);
        } else { /* half from users seen once */
            snprintf(user, sizeof user, "t%d-%d", a->index, i);
        }
        int64_t q = 1 + (int64_t)(rand_r(&seed) % 3); /* 3 > limit: always refused */
        int64_t ul;
        if (!inventory_admit(c->s)) {
            atomic_fetch_add(&c->other, 1);
            continue;
        }
        if (inventory_check(c->inv, c->s, user, q, NOW) == OUTCOME_LIMIT_EXCEEDED && q > LIMIT) {
            atomic_fetch_add(&c->over, 1);
            inventory_leave(c->s);
            continue;
        }
        enum outcome o = inventory_reserve(c->inv, c->s, user, q, NOW, &ul);
        if (o == OUTCOME_OK) {
            /* every fifth claim is "refused by the database" and released */
            if (rand_r(&seed) % 5 == 0) {
                inventory_release(c->inv, c->s, user, q);
            } else {
                inventory_commit(c->inv, c->s, user, q, false);
                atomic_fetch_add(&c->ok, 1);
                atomic_fetch_add(&c->ok_units, q);
                if (shared >= 0) atomic_fetch_add(&c->shared_units[shared], q);
            }
        } else if (o == OUTCOME_SOLD_OUT) {
            atomic_fetch_add(&c->sold_out, 1);
        } else if (o == OUTCOME_LIMIT_EXCEEDED) {
            atomic_fetch_add(&c->over, 1);
        } else {
            atomic_fetch_add(&c->other, 1);
        }
        inventory_leave(c->s);
    }
    return NULL;
}

static void crowd_run(enum config_inventory strategy)
{
    static struct crowd c;
    memset(&c, 0, sizeof c);
    c.inv = inventory_new(strategy);
    c.s = publish(c.inv, row_of(1, STOCK, LIMIT));
    pthread_t th[CROWD_THREADS];
    struct crowd_arg args[CROWD_THREADS];
    for (int i = 0; i < CROWD_THREADS; i++) {
        args[i] = (struct crowd_arg){&c, i};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, crowd_buyer, &args[i]), 0);
    }
    for (int i = 0; i < CROWD_THREADS; i++) pthread_join(th[i], NULL);

    CHECK_EQ_INT(atomic_load(&c.other), 0);
    CHECK_EQ_INT(sold_of(c.s), STOCK);           /* exactly the stock: no more, no less */
    CHECK_EQ_INT(atomic_load(&c.ok_units), STOCK);
    CHECK_EQ_INT(orders_of(c.s), atomic_load(&c.ok));
    CHECK_EQ_INT(left_of(c.s), 0);
    CHECK_EQ_INT(inventory_oversold(c.s), 0);
    CHECK_EQ_INT(inventory_users_over_limit(c.inv, c.s), 0);
    CHECK(atomic_load(&c.sold_out) > 0);
    CHECK(atomic_load(&c.over) > 0);
    char user[32];
    for (int u = 0; u < SHARED_USERS; u++) {
        snprintf(user, sizeof user, "shared-%d", u);
        int64_t units = inventory_units(c.inv, c.s, user);
        CHECK(units <= LIMIT);
        CHECK_EQ_INT(units, atomic_load(&c.shared_units[u]));
    }
    inventory_free(c.inv);
}

static void test_crowd_atomic(void) { crowd_run(INVENTORY_ATOMIC); }
static void test_crowd_mutex(void) { crowd_run(INVENTORY_MUTEX); }

/* A reset racing the crowd: pause drains the admitted buyers, and while paused
 * nobody gets in, so the reset never loses a purchase in flight. */
struct reset_race {
    struct inventory *inv;
    struct sale *s;
    _Atomic int stop;
    _Atomic int64_t in_pause_admits;
    _Atomic int paused_now;
};

static void *reset_buyer(void *arg)
{
    struct reset_race *r = arg;
    char user[32];
    for (int i = 0; !atomic_load(&r->stop); i++) {
        snprintf(user, sizeof user, "b%d", i % 50);
        if (!inventory_admit(r->s)) continue;
        if (atomic_load(&r->paused_now)) atomic_fetch_add(&r->in_pause_admits, 1);
        int64_t ul;
        if (inventory_reserve(r->inv, r->s, user, 1, NOW, &ul) == OUTCOME_OK)
            inventory_release(r->inv, r->s, user, 1);
        inventory_leave(r->s);
    }
    return NULL;
}

static void test_pause_against_crowd(void)
{
    static struct reset_race r;
    memset(&r, 0, sizeof r);
    r.inv = inventory_new(INVENTORY_ATOMIC);
    r.s = publish(r.inv, row_of(1, 20, 1));
    pthread_t th[4];
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(pthread_create(&th[i], NULL, reset_buyer, &r), 0);
    int paused = 0;
    for (int round = 0; round < 50; round++) {
        if (inventory_pause(r.s, 2000)) {
            paused++;
            atomic_store(&r.paused_now, 1);
            /* `active` may read 1 here: a refused admit counts, looks, un-counts */
            sleep_ms(1);
            atomic_store(&r.paused_now, 0);
            inventory_reset(r.inv, r.s);
            inventory_unpause(r.s);
        }
        sleep_ms(1);
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK_EQ_INT(paused, 50);
    CHECK_EQ_INT(atomic_load(&r.in_pause_admits), 0);
    CHECK_EQ_INT(left_of(r.s), 20);
    inventory_free(r.inv);
}

/* A crowd refused while paused must not starve the reset: refused buyers must not
 * count themselves in `active` (they used to, for a moment each, so under a crowd
 * the pause rarely read 0 and timed out).  Deterministic on the fixed code: once
 * every knocker has begun an attempt after the pause, `active` must read 0 at
 * every look, however the threads are scheduled. */
#define KNOCKERS 8
struct knockers {
    struct sale *s;
    _Atomic int stop;
    _Atomic long tries[KNOCKERS];
};

struct knocker_arg {
    struct knockers *k;
    int i;
};

static void *knocker(void *arg)
{
    struct knocker_arg *a = arg;
    while (!atomic_load(&a->k->stop)) {
        if (inventory_admit(a->k->s)) inventory_leave(a->k->s);
        atomic_fetch_add(&a->k->tries[a->i], 1);
    }
    return NULL;
}

/* Until every knocker has finished `more` attempts after `since` (a generous
 * deadline: this only waits for threads to be scheduled). */
static void knockers_wait(struct knockers *k, const long *since, long more, long *nonzero)
{
    time_t deadline = time(NULL) + 120;
    for (long spins = 0; spins % 1024 || time(NULL) < deadline; spins++) {
        if (inventory_active(k->s) != 0) (*nonzero)++;
        int behind = 0;
        for (int i = 0; i < KNOCKERS; i++) behind += atomic_load(&k->tries[i]) < since[i] + more;
        if (!behind) return;
        if (spins % 64 == 0) sched_yield();
    }
    UNIT_FAILF("knockers did not run");
}

static void test_pause_not_starved_by_refused(void)
{
    static struct knockers k;
    memset(&k, 0, sizeof k);
    struct inventory *inv = inventory_new(INVENTORY_ATOMIC);
    k.s = publish(inv, row_of(1, 20, 1));
    pthread_t th[KNOCKERS];
    struct knocker_arg args[KNOCKERS];
    for (int i = 0; i < KNOCKERS; i++) {
        args[i] = (struct knocker_arg){&k, i};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, knocker, &args[i]), 0);
    }
    long since[KNOCKERS], nonzero = 0, ignored = 0;
    for (int i = 0; i < KNOCKERS; i++) since[i] = atomic_load(&k.tries[i]);
    knockers_wait(&k, since, 100, &ignored); /* all knocking */
    CHECK(inventory_pause(k.s, 60000));       /* generous: nothing real is admitted */
    for (int i = 0; i < KNOCKERS; i++) since[i] = atomic_load(&k.tries[i]);
    knockers_wait(&k, since, 2, &ignored);    /* each has looked at the flag since */
    for (int i = 0; i < KNOCKERS; i++) since[i] = atomic_load(&k.tries[i]);
    knockers_wait(&k, since, 2000, &nonzero); /* 2000 refusals each, watched */
    inventory_unpause(k.s);
    atomic_store(&k.stop, 1);
    for (int i = 0; i < KNOCKERS; i++) pthread_join(th[i], NULL);
    CHECK_EQ_INT(nonzero, 0);
    CHECK_EQ_INT(inventory_active(k.s), 0);
    inventory_free(inv);
}

static const struct unit_case cases[] = {
    {"new_add_get", test_new_add_get},
    {"payment_window", test_payment_window},
    {"guarded_reserve_commit_release", test_guarded_reserve_commit_release},
    {"sqlite_strategy", test_sqlite_strategy},
    {"sqlite_news_before_commit", test_sqlite_news_before_commit},
    {"unsafe_strategy", test_unsafe_strategy},
    {"windows", test_windows},
    {"check_changes_nothing", test_check_changes_nothing},
    {"status", test_status},
    {"oversold_and_hold", test_oversold_and_hold},
    {"pause_waits_for_active", test_pause_waits_for_active},
    {"pause_timeout", test_pause_timeout},
    {"pause_yields_without_the_lock", test_pause_yields_without_the_lock},
    {"reset", test_reset},
    {"crowd_atomic", test_crowd_atomic},
    {"crowd_mutex", test_crowd_mutex},
    {"pause_against_crowd", test_pause_against_crowd},
    {"pause_not_starved_by_refused", test_pause_not_starved_by_refused},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

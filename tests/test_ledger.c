/* test_ledger — per-user units: reserve/add/clear/over_limit, and many threads.
 *
 * ledger_over_limit(l, sale, -1) counts every entry of the sale (units > -1), so
 * the tests use it to see that entries reaching 0 are really dropped. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ledger.h"
#include "unit.h"

struct take_ctx {
    int calls;
    bool answer;
};

static bool take_fixed(void *ctx)
{
    struct take_ctx *t = ctx;
    t->calls++;
    return t->answer;
}

static int64_t entries(struct ledger *l, int64_t sale) { return ledger_over_limit(l, sale, -1); }

static void test_unknown_is_zero(void)
{
    struct ledger *l = ledger_new();
    CHECK(l != NULL);
    CHECK_EQ_INT(ledger_units(l, 1, "nobody"), 0);
    CHECK_EQ_INT(ledger_units(l, 1, ""), 0);
    CHECK_EQ_INT(ledger_over_limit(l, 1, 0), 0);
    CHECK_EQ_INT(entries(l, 1), 0);
    ledger_clear_sale(l, 1); /* on an empty ledger */
    ledger_free(l);
    ledger_free(NULL);
}

static void test_reserve_under_limit(void)
{
    struct ledger *l = ledger_new();
    struct take_ctx t = {0, true};
    CHECK_EQ_INT(ledger_reserve(l, 1, "alice", 1, 3, take_fixed, &t), LEDGER_OK);
    CHECK_EQ_INT(t.calls, 1);
    CHECK_EQ_INT(ledger_units(l, 1, "alice"), 1);
    CHECK_EQ_INT(ledger_reserve(l, 1, "alice", 2, 3, take_fixed, &t), LEDGER_OK); /* exactly 3 */
    CHECK_EQ_INT(t.calls, 2);
    CHECK_EQ_INT(ledger_units(l, 1, "alice"), 3);
    CHECK_EQ_INT(ledger_units(l, 2, "alice"), 0); /* other sale */
    CHECK_EQ_INT(ledger_units(l, 1, "alicE"), 0); /* other user */
    CHECK_EQ_INT(ledger_over_limit(l, 1, 3), 0);
    CHECK_EQ_INT(ledger_over_limit(l, 1, 2), 1);
    ledger_free(l);
}

/* Over the limit: refused before take() runs, nothing changes. */
static void test_reserve_over_limit(void)
{
    struct ledger *l = ledger_new();
    struct take_ctx t = {0, true};
    CHECK_EQ_INT(ledger_reserve(l, 1, "bob", 3, 2, take_fixed, &t), LEDGER_OVER_LIMIT); /* q > limit */
    CHECK_EQ_INT(t.calls, 0);
    CHECK_EQ_INT(entries(l, 1), 0);
    CHECK_EQ_INT(ledger_reserve(l, 1, "bob", 2, 2, take_fixed, &t), LEDGER_OK);
    CHECK_EQ_INT(ledger_reserve(l, 1, "bob", 1, 2, take_fixed, &t), LEDGER_OVER_LIMIT);
    CHECK_EQ_INT(t.calls, 1);
    CHECK_EQ_INT(ledger_units(l, 1, "bob"), 2);
    /* a huge q or limit does not overflow the comparison */
    CHECK_EQ_INT(ledger_reserve(l, 1, "bob", INT64_MAX, 2, take_fixed, &t), LEDGER_OVER_LIMIT);
    CHECK_EQ_INT(ledger_reserve(l, 1, "carol", INT64_MAX, INT64_MAX, take_fixed, &t), LEDGER_OK);
    CHECK_EQ_INT(ledger_reserve(l, 1, "carol", 1, INT64_MAX, take_fixed, &t), LEDGER_OVER_LIMIT);
    CHECK_EQ_INT(t.calls, 2);
    ledger_free(l);
}

/* take() says no: LEDGER_REFUSED, units unchanged, no empty entry left behind. */
static void test_take_refused(void)
{
    struct ledger *l = ledger_new();
    struct take_ctx no = {0, false}, yes = {0, true};
    CHECK_EQ_INT(ledger_reserve(l, 1, "dave", 1, 5, take_fixed, &no), LEDGER_REFUSED);
    CHECK_EQ_INT(no.calls, 1);
    CHECK_EQ_INT(ledger_units(l, 1, "dave"), 0);
    CHECK_EQ_INT(entries(l, 1), 0);
    CHECK_EQ_INT(ledger_reserve(l, 1, "dave", 2, 5, take_fixed, &yes), LEDGER_OK);
    CHECK_EQ_INT(ledger_reserve(l, 1, "dave", 1, 5, take_fixed, &no), LEDGER_REFUSED);
    CHECK_EQ_INT(ledger_units(l, 1, "dave"), 2);
    CHECK_EQ_INT(entries(l, 1), 1);
    ledger_free(l);
}

static void test_add(void)
{
    struct ledger *l = ledger_new();
    CHECK(ledger_add(l, 1, "erin", 3));
    CHECK_EQ_INT(ledger_units(l, 1, "erin"), 3);
    CHECK(ledger_add(l, 1, "erin", -1));
    CHECK_EQ_INT(ledger_units(l, 1, "erin"), 2);
    CHECK(ledger_add(l, 1, "erin", -2)); /* to 0: dropped */
    CHECK_EQ_INT(ledger_units(l, 1, "erin"), 0);
    CHECK_EQ_INT(entries(l, 1), 0);
    CHECK(ledger_add(l, 1, "erin", 1));
    CHECK(ledger_add(l, 1, "erin", -5)); /* below 0: dropped too */
    CHECK_EQ_INT(entries(l, 1), 0);
    CHECK(ledger_add(l, 1, "ghost", -1)); /* unknown, negative: nothing to do */
    CHECK(ledger_add(l, 1, "ghost", 0));
    CHECK_EQ_INT(entries(l, 1), 0);
    /* a release after a reservation gives the limit back */
    struct take_ctx yes = {0, true};
    CHECK_EQ_INT(ledger_reserve(l, 1, "erin", 1, 1, take_fixed, &yes), LEDGER_OK);
    CHECK_EQ_INT(ledger_reserve(l, 1, "erin", 1, 1, take_fixed, &yes), LEDGER_OVER_LIMIT);
    CHECK(ledger_add(l, 1, "erin", -1));
    CHECK_EQ_INT(ledger_reserve(l, 1, "erin", 1, 1, take_fixed, &yes), LEDGER_OK);
    ledger_free(l);
}

static void test_clear_sale_only_that_sale(void)
{
    struct ledger *l = ledger_new();
    char user[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof user, "u%d", i);
        CHECK(ledger_add(l, 1, user, 1));
        CHECK(ledger_add(l, 2, user, 2));
    }
    CHECK_EQ_INT(entries(l, 1), 2000);
    CHECK_EQ_INT(entries(l, 2), 2000);
    ledger_clear_sale(l, 1);
    CHECK_EQ_INT(entries(l, 1), 0);
    CHECK_EQ_INT(entries(l, 2), 2000);
    CHECK_EQ_INT(ledger_units(l, 1, "u7"), 0);
    CHECK_EQ_INT(ledger_units(l, 2, "u7"), 2);
    CHECK_EQ_INT(ledger_over_limit(l, 2, 1), 2000);
    /* the cleared sale is usable again */
    CHECK(ledger_add(l, 1, "u7", 1));
    CHECK_EQ_INT(ledger_units(l, 1, "u7"), 1);
    ledger_free(l);
}

/* 100k users: every stripe grows its buckets several times; nothing is lost. */
static void test_many_users(void)
{
    enum { N = 100000 };
    struct ledger *l = ledger_new();
    char user[32];
    for (int i = 0; i < N; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        CHECK(ledger_add(l, 5, user, 1 + i % 3));
    }
    CHECK_EQ_INT(entries(l, 5), N);
    CHECK_EQ_INT(ledger_over_limit(l, 5, 2), N / 3); /* i % 3 == 2 */
    for (int i = 0; i < N; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        if (ledger_units(l, 5, user) != 1 + i % 3) CHECK_EQ_INT(ledger_units(l, 5, user), 1 + i % 3);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(user, sizeof user, "user-%d", i);
        CHECK(ledger_add(l, 5, user, -(1 + i % 3)));
    }
    CHECK_EQ_INT(entries(l, 5), N / 2);
    CHECK_EQ_INT(ledger_units(l, 5, "user-1"), 2);
    CHECK_EQ_INT(ledger_units(l, 5, "user-2"), 0);
    ledger_free(l); /* ASan/LSan: frees every remaining entry */
}

/* ---- concurrency --------------------------------------------------------------
 * 8 threads reserve for the same 500 users against one shared atomic stock. */

enum { THREADS = 8, USERS = 500, ROUNDS = 4000, LIMIT = 3, STOCK = 1200 };

struct shared {
    struct ledger *l;
    _Atomic int64_t stock;
    _Atomic int64_t ok_units, refused, over;
};

struct stock_take {
    _Atomic int64_t *left;
    int64_t q;
};

static bool take_stock(void *ctx)
{
    struct stock_take *t = ctx;
    int64_t left = atomic_load(t->left);
    while (left >= t->q)
        if (atomic_compare_exchange_weak(t->left, &left, left - t->q)) return true;
    return false;
}

struct worker {
    struct shared *sh;
    unsigned seed;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    char user[32];
    for (int i = 0; i < ROUNDS; i++) {
        int u = (int)(rand_r(&w->seed) % USERS);
        int64_t q = 1 + rand_r(&w->seed) % 2;
        snprintf(user, sizeof user, "buyer-%d", u);
        struct stock_take t = {&sh->stock, q};
        switch (ledger_reserve(sh->l, 1, user, q, LIMIT, take_stock, &t)) {
        case LEDGER_OK: atomic_fetch_add(&sh->ok_units, q); break;
        case LEDGER_REFUSED: atomic_fetch_add(&sh->refused, 1); break;
        case LEDGER_OVER_LIMIT: atomic_fetch_add(&sh->over, 1); break;
        case LEDGER_NO_MEMORY: break;
        }
        /* some give a unit back, as a failed store write would */
        if (i % 7 == 0 && ledger_units(sh->l, 1, user) > 0) {
            /* only safe to release what this thread knows it holds: reserve 1, release 1 */
            struct stock_take t1 = {&sh->stock, 1};
            if (ledger_reserve(sh->l, 1, user, 1, LIMIT, take_stock, &t1) == LEDGER_OK) {
                ledger_add(sh->l, 1, user, -1);
                atomic_fetch_add(&sh->stock, 1);
            }
        }
    }
    return NULL;
}

static void test_concurrent_reserve(void)
{
    struct shared sh = {.l = ledger_new()};
    atomic_init(&sh.stock, STOCK);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){&sh, 1234u + (unsigned)i};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

    int64_t sum = 0;
    char user[32];
    for (int u = 0; u < USERS; u++) {
        snprintf(user, sizeof user, "buyer-%d", u);
        int64_t units = ledger_units(sh.l, 1, user);
        CHECK(units >= 0 && units <= LIMIT);
        sum += units;
    }
    int64_t left = atomic_load(&sh.stock);
    CHECK(left >= 0);
    CHECK_EQ_INT(sum, STOCK - left);
    CHECK_EQ_INT(sum, atomic_load(&sh.ok_units));
    CHECK_EQ_INT(ledger_over_limit(sh.l, 1, LIMIT), 0);
    /* 500 users x 3 = 1500 > 1200 units: the stock ran out, and limits were hit */
    CHECK(atomic_load(&sh.refused) > 0);
    CHECK(atomic_load(&sh.over) > 0);
    CHECK_EQ_INT(left, 0);
    ledger_free(sh.l);
}

static const struct unit_case cases[] = {
    {"unknown_is_zero", test_unknown_is_zero},
    {"reserve_under_limit", test_reserve_under_limit},
    {"reserve_over_limit", test_reserve_over_limit},
    {"take_refused", test_take_refused},
    {"add", test_add},
    {"clear_sale_only_that_sale", test_clear_sale_only_that_sale},
    {"many_users", test_many_users},
    {"concurrent_reserve", test_concurrent_reserve},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

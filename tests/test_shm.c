/* test_shm — the shared-memory structures of --model processes, hammered by forked
 * processes.
 *
 * ThreadSanitizer sees threads, not processes: it cannot report a race between two
 * processes on a MAP_SHARED page.  These cases take its place for what processes
 * share: each forks PROCS children (after shm_start, as the supervisor does) that
 * race on one sale, one ledger, one metrics registry or one address table, then
 * checks exact totals in the parent.  A lost update anywhere shows as a wrong
 * count; the unsafe strategy is there to prove the cases can see one.  One case
 * kills a process holding the sale's robust mutex and checks the next locker
 * goes on.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gate.h"
#include "inventory.h"
#include "metrics.h"
#include "ratelimit.h"
#include "shm.h"
#include "unit.h"

#define PROCS 4
#define REGION ((size_t)256 << 20)

/* Forks n children running fn(i); true when all exited 0. */
static bool run_children(int n, void (*fn)(int i, void *arg), void *arg)
{
    pid_t pids[16];
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            shm_set_slot(i + 1);
            fn(i, arg);
            _exit(0);
        }
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        int st;
        ok &= waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    return ok;
}

static struct store_sale sale_row(int64_t id, int64_t stock, int64_t limit)
{
    struct store_sale r;
    memset(&r, 0, sizeof r);
    r.id = id;
    snprintf(r.name, sizeof r.name, "shared %lld", (long long)id);
    r.stock_total = r.stock_left = stock;
    r.per_user_limit = limit;
    return r;
}

/* ---- purchases across processes ------------------------------------------------- */

#define USERS 3000 /* each child walks every user: the ledger sees 4 buyers per user */
#define STOCK 5000
#define LIMIT 2

struct crowd {
    struct inventory *inv;
    struct sale *s;
    _Atomic int64_t ok, limit, sold_out;
};

/* One child: every user tries to buy one unit, and the winners commit. */
static void crowd_child(int i, void *arg)
{
    struct crowd *c = arg;
    for (int u = 0; u < USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", (u + i * 7) % USERS);
        int64_t unguarded = 0;
        if (!inventory_admit(c->s)) _exit(3);
        enum outcome o = inventory_reserve(c->inv, c->s, user, 1, 0, &unguarded);
        if (o == OUTCOME_OK) {
            inventory_commit(c->inv, c->s, user, 1, false);
            atomic_fetch_add(&c->ok, 1);
        } else if (o == OUTCOME_LIMIT_EXCEEDED) {
            atomic_fetch_add(&c->limit, 1);
        } else if (o == OUTCOME_SOLD_OUT) {
            atomic_fetch_add(&c->sold_out, 1);
        } else {
            _exit(4);
        }
        inventory_leave(c->s);
    }
}

static struct crowd *crowd_run(enum config_inventory kind)
{
    CHECK(shm_start(REGION));
    struct crowd *c = shm_calloc(1, sizeof *c);
    c->inv = inventory_new_shared(kind, 1 << 16);
    CHECK(c->inv != NULL);
    struct store_sale row = sale_row(1, STOCK, LIMIT);
    CHECK(inventory_add(c->inv, &row));
    c->s = inventory_get(c->inv, 1);
    CHECK(run_children(PROCS, crowd_child, c));
    return c;
}

/* PROCS x USERS = 12,000 tries for 5,000 units, at most 2 per user: exactly 5,000 sold,
 * nobody over the limit, and memory's counters agree with the tally. */
static void check_exact(enum config_inventory kind)
{
    struct crowd *c = crowd_run(kind);
    int64_t sold = atomic_load(&c->s->sold);
    CHECK_EQ_INT(atomic_load(&c->ok), STOCK);
    CHECK_EQ_INT(sold, STOCK);
    CHECK_EQ_INT(atomic_load(&c->s->stock_left), 0);
    CHECK_EQ_INT(atomic_load(&c->s->reserved), 0);
    CHECK_EQ_INT(inventory_active(c->s), 0);
    CHECK_EQ_INT(inventory_oversold(c->s), 0);
    CHECK_EQ_INT(inventory_users_over_limit(c->inv, c->s), 0);
    CHECK_EQ_INT(atomic_load(&c->ok) + atomic_load(&c->limit) + atomic_load(&c->sold_out), PROCS * USERS);
    int64_t units = 0;
    for (int u = 0; u < USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", u);
        units += inventory_units(c->inv, c->s, user);
    }
    CHECK_EQ_INT(units, STOCK); /* the shared ledger holds every unit, once */
}

static void test_atomic_exact_across_processes(void) { check_exact(INVENTORY_ATOMIC); }
static void test_mutex_exact_across_processes(void) { check_exact(INVENTORY_MUTEX); }

/* The control: the deliberate race loses updates between processes too.  Its
 * read-check-write yields in the middle, so 4 processes on 2 cores interleave;
 * over a few runs at least one oversells (each run alone usually does). */
static void test_unsafe_races_across_processes(void)
{
    int64_t worst = 0;
    for (int run = 0; run < 5 && worst == 0; run++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct crowd *c = crowd_run(INVENTORY_UNSAFE);
            int64_t over = atomic_load(&c->ok) - STOCK;
            _exit(over > 0 ? 10 : 0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 10) worst = 1;
    }
    CHECK(worst > 0);
}

/* ---- a holder dies inside the robust mutex ------------------------------------------ */

static void test_dead_holder_lock_recovered(void)
{
    setenv("FLASHSALE_TEST_PARK", "parker", 1);
    CHECK(shm_start(REGION));
    struct inventory *inv = inventory_new_shared(INVENTORY_MUTEX, 1 << 12);
    unsetenv("FLASHSALE_TEST_PARK");
    struct store_sale row = sale_row(1, 10, 5);
    CHECK(inventory_add(inv, &row));
    struct sale *s = inventory_get(inv, 1);
    pid_t pid = fork();
    if (pid == 0) {
        shm_set_slot(1);
        int64_t u;
        inventory_reserve(inv, s, "parker", 1, 0, &u); /* parks holding s->mu */
        _exit(1);
    }
    /* Until the child holds the lock (a liveness bound, not a speed claim). */
    double until = unit_now() + 30;
    int rc;
    while ((rc = pthread_mutex_trylock(&s->mu)) == 0 && unit_now() < until) {
        pthread_mutex_unlock(&s->mu);
        usleep(1000);
    }
    CHECK_EQ_INT(rc, EBUSY);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    uint64_t before = shm_recoveries();
    int64_t u;
    CHECK_EQ_INT(inventory_reserve(inv, s, "ann", 2, 0, &u), OUTCOME_OK); /* EOWNERDEAD, repaired */
    CHECK_EQ_INT(shm_recoveries(), before + 1);
    CHECK_EQ_INT(inventory_reserve(inv, s, "bob", 1, 0, &u), OUTCOME_OK); /* and usable after */
    CHECK_EQ_INT(shm_recoveries(), before + 1);
}

/* ---- the fixed ledger table ----------------------------------------------------------- */

static void test_ledger_full_refuses_without_taking_stock(void)
{
    CHECK(shm_start(REGION));
    struct inventory *inv = inventory_new_shared(INVENTORY_ATOMIC, 1024); /* 256 stripes x 16 */
    struct store_sale row = sale_row(1, 1000000, 1);
    CHECK(inventory_add(inv, &row));
    struct sale *s = inventory_get(inv, 1);
    int ok = 0, full = 0;
    for (int u = 0; u < 20000; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        int64_t g;
        enum outcome o = inventory_reserve(inv, s, user, 1, 0, &g);
        if (o == OUTCOME_OK) ok++;
        else if (o == OUTCOME_UNAVAILABLE) full++;
    }
    CHECK(ok <= 4096 && ok >= 1024); /* the table, no more, no less than asked */
    CHECK_EQ_INT(ok + full, 20000);
    CHECK_EQ_INT(atomic_load(&s->stock_left), 1000000 - ok); /* a refusal took nothing */
}

/* ---- metrics and addresses ---------------------------------------------------------- */

static void metrics_child(int i, void *arg)
{
    for (int k = 0; k < 100000; k++) metrics_count(METRIC_ORDERS, 1);
}

static void test_metrics_sum_every_process(void)
{
    CHECK(shm_start(REGION));
    metrics_init();
    CHECK(run_children(PROCS, metrics_child, NULL));
    CHECK_EQ_INT(metrics_total(METRIC_ORDERS), PROCS * 100000);
}

struct addresses {
    _Atomic int taken;
};

static void address_child(int i, void *arg)
{
    struct addresses *a = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
    for (int k = 0; k < 50; k++)
        if (gate_address_take((struct sockaddr *)&sa, 20)) atomic_fetch_add(&a->taken, 1);
}

static void test_address_limit_holds_across_processes(void)
{
    CHECK(shm_start(REGION));
    struct addresses *a = shm_calloc(1, sizeof *a);
    CHECK(run_children(PROCS, address_child, a));
    CHECK_EQ_INT(atomic_load(&a->taken), 20); /* 200 tries from 4 processes, one limit */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)};
    gate_address_put((struct sockaddr *)&sa); /* slot 0 holds none of them: nothing changes */
    CHECK(!gate_address_take((struct sockaddr *)&sa, 20));
    /* The processes exited without closing: once the supervisor forgets their slots,
     * the address has room again; one closed by its owner gives one back. */
    for (int slot = 1; slot <= PROCS; slot++) gate_address_forget(slot);
    CHECK(gate_address_take((struct sockaddr *)&sa, 2));
    CHECK(gate_address_take((struct sockaddr *)&sa, 2));
    CHECK(!gate_address_take((struct sockaddr *)&sa, 2));
    gate_address_put((struct sockaddr *)&sa);
    CHECK(gate_address_take((struct sockaddr *)&sa, 2));
}

static void test_named_blocks_are_shared(void)
{
    CHECK(shm_start(REGION));
    bool fresh;
    int *x = shm_named("test:x", sizeof *x, NULL, NULL, &fresh);
    CHECK(fresh);
    *x = 7;
    pid_t pid = fork();
    if (pid == 0) {
        bool f;
        int *y = shm_named("test:x", sizeof *y, NULL, NULL, &f);
        _exit(!f && y == x && *y == 7 ? (*y = 8, 0) : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(*x, 8);
}

/* Review: a named block (shm_named) is handed to other processes as soon as its
 * creator has it, before the creator initialized it.  Here PROCS processes start
 * together (as the supervisor's workers do, each calling api_new -> ratelimit_new)
 * and each takes one token for its own key right away: a process that found the
 * limiter made but not yet set up (rate and burst 0, locks not yet process-shared)
 * is refused its very first request.  A race: it failed 7 runs in 8 here. */
static void ratelimit_race_child(int i, void *arg)
{
    _Atomic int *shared = arg; /* [0] ready, [1] refused, [2] trial */
    atomic_fetch_add(&shared[0], 1);
    while (atomic_load(&shared[0]) < 2 * PROCS) {
    }
    char name[32], key[32];
    snprintf(name, sizeof name, "rate:race%d", atomic_load(&shared[2]));
    snprintf(key, sizeof key, "user-%d", i);
    struct ratelimit *rl = ratelimit_new(name, 1000, 1000);
    int retry = 0;
    if (!rl || !ratelimit_take(rl, key, strlen(key), 1000000000u, &retry)) atomic_fetch_add(&shared[1], 1);
}

static void test_named_ratelimit_ready_for_every_process(void)
{
    CHECK(shm_start(REGION));
    void *shared_arg = shm_calloc(3, sizeof(_Atomic int));
    _Atomic int *shared = shared_arg;
    CHECK(shared != NULL);
    for (int trial = 0; trial < 15; trial++) { /* shm_named keeps at most 16 names */
        atomic_store(&shared[0], 0);
        atomic_store(&shared[2], trial);
        CHECK(run_children(2 * PROCS, ratelimit_race_child, shared_arg));
    }
    CHECK_EQ_INT(atomic_load(&shared[1]), 0);
}

static const struct unit_case cases[] = {
    {"atomic_exact_across_processes", test_atomic_exact_across_processes},
    {"mutex_exact_across_processes", test_mutex_exact_across_processes},
    {"unsafe_races_across_processes", test_unsafe_races_across_processes},
    {"dead_holder_lock_recovered", test_dead_holder_lock_recovered},
    {"ledger_full_refuses_without_taking_stock", test_ledger_full_refuses_without_taking_stock},
    {"metrics_sum_every_process", test_metrics_sum_every_process},
    {"address_limit_holds_across_processes", test_address_limit_holds_across_processes},
    {"named_blocks_are_shared", test_named_blocks_are_shared},
    {"named_ratelimit_ready_for_every_process", test_named_ratelimit_ready_for_every_process},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

/* test_store — the SQLite store against a real file in a temporary folder: the
 * SQL guard on stock and per-user limit (or on stock alone behind a memory gate), the
 * per-user index per strategy, idempotent replays, reset, load after a
 * restart, audit numbers, the schema version gate, done() once and under the
 * commit lock.  Rows are checked with sqlite3 directly where that says more than
 * the store's own answers. */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "unit.h"

static char dir[64];
static int db_seq;

/* A fresh database path in the temporary folder.  Every case runs in its own forked
 * child (unit.h), so the pid keeps paths of different cases apart. */
static const char *new_db_path(void)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/t%d-%d.db", dir, (int)getpid(), ++db_seq);
    return path;
}

struct opened {
    struct config cfg;
    struct store *st;
};

/* config_parse over a NULL-terminated list of literals (it takes char **, as main does). */
static int parse_args(struct config *cfg, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    for (; args[argc] && argc < 31; argc++) argv[argc] = (char *)(uintptr_t)args[argc];
    argv[argc] = NULL;
    FILE *null = fopen("/dev/null", "w");
    int r = config_parse(cfg, argc, argv, null);
    fclose(null);
    return r;
}

/* The store as the service opens it for --inventory `inventory`. */
static struct store *open_for(struct opened *o, const char *path, const char *demo_stock,
                              const char *inventory)
{
    int r = parse_args(&o->cfg, (const char *const[]){"x", "--db", path, "--batch", "64",
                                                      "--demo-stock", demo_stock, "--durability",
                                                      "full", "--log-level", "error", "--inventory",
                                                      inventory, NULL});
    CHECK_EQ_INT(r, 0);
    char err[256] = "";
    o->st = store_open(&o->cfg, err, sizeof err);
    if (!o->st) {
        UNIT_FAILF("store_open(%s): %s", path, err);
    }
    return o->st;
}

static struct store *open_at(struct opened *o, const char *path, const char *demo_stock)
{
    return open_for(o, path, demo_stock, "atomic");
}

static void close_store(struct opened *o)
{
    store_close(o->st);
    o->st = NULL;
    config_deinit(&o->cfg);
}

/* One integer from SQL on a separate connection (NULL reads as 0, no row as -1). */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return -2;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -3;
    }
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int sql_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) return -1;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int64_t create_sale(struct store *st, const char *name, int64_t stock, int64_t limit,
                           int64_t window)
{
    struct store_job job = {.op = STORE_CREATE_SALE};
    snprintf(job.u.sale.name, sizeof job.u.sale.name, "%s", name);
    job.u.sale.stock_total = stock;
    job.u.sale.per_user_limit = limit;
    job.u.sale.payment_window = window;
    CHECK_EQ_INT(store_run(st, &job), OUTCOME_OK);
    CHECK(job.u.sale.id >= 1);
    CHECK_EQ_INT(job.u.sale.stock_left, stock);
    CHECK(job.u.sale.created_at > 1600000000000LL);
    return job.u.sale.id;
}

static void purchase_init(struct store_job *job, int64_t sale, const char *user, int64_t q,
                          int64_t limit, const char *key)
{
    memset(job, 0, sizeof *job);
    job->op = STORE_PURCHASE;
    job->u.purchase.sale_id = sale;
    snprintf(job->u.purchase.user_id, sizeof job->u.purchase.user_id, "%s", user);
    job->u.purchase.quantity = q;
    job->u.purchase.per_user_limit = limit;
    snprintf(job->u.purchase.idem_key, sizeof job->u.purchase.idem_key, "%s", key ? key : "");
}

static enum outcome buy(struct store *st, int64_t sale, const char *user, int64_t q, int64_t limit,
                        const char *key, struct store_purchase *out)
{
    struct store_job job;
    purchase_init(&job, sale, user, q, limit, key);
    enum outcome o = store_run(st, &job);
    if (out) *out = job.u.purchase;
    return o;
}

/* ---- done() bookkeeping for store_submit --------------------------------------- */

struct tally {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, ok, sold_out, limit, other;
};

static void tally_done(struct store_job *job)
{
    struct tally *t = job->ctx;
    pthread_mutex_lock(&t->mu);
    t->done++;
    (void)(job->outcome == OUTCOME_OK ? t->ok++
           : job->outcome == OUTCOME_SOLD_OUT ? t->sold_out++
           : job->outcome == OUTCOME_LIMIT_EXCEEDED ? t->limit++
                                                      : t->other++);
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

static void tally_wait(struct tally *t, int n)
{
    pthread_mutex_lock(&t->mu);
    while (t->done < n) pthread_cond_wait(&t->cond, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

#define TALLY_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0}

/* ---- tests -------------------------------------------------------------------- */

static void test_schema_and_demo(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "5");
    CHECK_EQ_INT(sql_int(path, "PRAGMA user_version"), 3);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM sales"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 5);
    CHECK_EQ_INT(sql_int(path, "SELECT per_user_limit FROM sales WHERE id = 1"), 1);
    struct store_conn *c = store_conn_open(o.st);
    CHECK(c != NULL);
    char mode[16] = "";
    sqlite3 *db;
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *stm;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stm, NULL), SQLITE_OK);
    if (sqlite3_step(stm) == SQLITE_ROW) snprintf(mode, sizeof mode, "%s", sqlite3_column_text(stm, 0));
    sqlite3_finalize(stm);
    sqlite3_close(db);
    CHECK_EQ_STR(mode, "wal");
    store_conn_close(c);
    close_store(&o);
    /* reopened: the demo sale is not created twice, the version stays */
    open_at(&o, path, "5");
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM sales"), 1);
    CHECK_EQ_INT(sql_int(path, "PRAGMA user_version"), 3);
    close_store(&o);
    /* demo-stock 0: no demo sale */
    path = new_db_path();
    open_at(&o, path, "0");
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM sales"), 0);
    close_store(&o);
}

/* The schema of the first release (version 1): orders had no closed_at. */
static const char schema_v1[] =
    "CREATE TABLE sales (id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),"
    " stock_total INTEGER NOT NULL CHECK (stock_total > 0), stock_left INTEGER NOT NULL CHECK (stock_left >= 0),"
    " per_user_limit INTEGER NOT NULL DEFAULT 1 CHECK (per_user_limit >= 1), starts_at INTEGER, ends_at INTEGER,"
    " payment_window INTEGER NOT NULL DEFAULT 0 CHECK (payment_window >= 0), created_at INTEGER NOT NULL);"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, sale_id INTEGER NOT NULL REFERENCES sales(id),"
    " user_id TEXT NOT NULL CHECK (length(CAST(user_id AS BLOB)) BETWEEN 1 AND 64),"
    " quantity INTEGER NOT NULL CHECK (quantity >= 1), status TEXT NOT NULL DEFAULT 'confirmed'"
    " CHECK (status IN ('pending', 'paid', 'confirmed', 'cancelled', 'expired')), idempotency_key TEXT,"
    " created_at INTEGER NOT NULL, expires_at INTEGER, paid_at INTEGER);"
    "CREATE INDEX orders_sale_user ON orders (sale_id, user_id);"
    "CREATE UNIQUE INDEX orders_idempotency ON orders (sale_id, user_id, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX orders_pending_expiry ON orders (expires_at) WHERE status = 'pending';"
    "INSERT INTO sales VALUES (1, 'Old sale', 10, 7, 2, NULL, NULL, 0, 1);"
    "INSERT INTO orders (sale_id, user_id, quantity, created_at) VALUES (1, 'a', 2, 1), (1, 'b', 1, 2);"
    "PRAGMA user_version = 1;";

/* A database written by version 1 is migrated at start, its data intact. */
static void test_migrates_v1(void)
{
    const char *path = new_db_path();
    CHECK_EQ_INT(sql_exec(path, schema_v1), 0);
    struct opened o;
    open_at(&o, path, "0");
    CHECK_EQ_INT(sql_int(path, "PRAGMA user_version"), 3);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM pragma_table_info('orders') WHERE name = 'closed_at'"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT length(value) FROM meta WHERE name = 'order_secret'"), 32);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE closed_at IS NULL"), 2);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 7);
    /* and it keeps working: a purchase on the old sale */
    CHECK_EQ_INT(buy(o.st, 1, "c", 1, 2, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 6);
    close_store(&o);
    CHECK_EQ_INT(sql_int(path, "SELECT integrity_check = 'ok' FROM pragma_integrity_check"), 1);
}

static void test_newer_schema_refused(void)
{
    const char *path = new_db_path();
    CHECK_EQ_INT(sql_exec(path, "CREATE TABLE x(a); PRAGMA user_version = 4;"), 0);
    struct config cfg;
    CHECK_EQ_INT(parse_args(&cfg, (const char *const[]){"x", "--db", path, "--log-level", "error", NULL}), 0);
    char err[256] = "";
    struct store *st = store_open(&cfg, err, sizeof err);
    CHECK(st == NULL);
    CHECK(strstr(err, "schema version 4") != NULL);
    CHECK_EQ_INT(sql_int(path, "PRAGMA user_version"), 4); /* left alone */
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'sales'"), 0);

    /* not a database at all */
    const char *junk = new_db_path();
    FILE *f = fopen(junk, "w");
    fputs("this is not an SQLite database, just some text that is long enough......", f);
    fclose(f);
    free(cfg.db);
    cfg.db = strdup(junk);
    err[0] = 0;
    st = store_open(&cfg, err, sizeof err);
    CHECK(st == NULL);
    CHECK(err[0] != 0);
    /* a folder that does not exist */
    free(cfg.db);
    cfg.db = strdup("/nonexistent-dir/x/y.db");
    err[0] = 0;
    CHECK(store_open(&cfg, err, sizeof err) == NULL);
    CHECK(err[0] != 0);
    config_deinit(&cfg);
}

/* The order secret: made once (32 bytes, not all alike), then the same at every
 * start; another database gets another one. */
static void test_order_secret(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    uint8_t first[STORE_SECRET_LEN], zero[STORE_SECRET_LEN] = {0};
    memcpy(first, store_order_secret(o.st), sizeof first);
    CHECK(memcmp(first, zero, sizeof zero) != 0);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM meta"), 1);
    close_store(&o);
    open_at(&o, path, "0");
    CHECK(memcmp(store_order_secret(o.st), first, sizeof first) == 0);
    close_store(&o);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM meta"), 1);
    const char *other = new_db_path();
    open_at(&o, other, "0");
    CHECK(memcmp(store_order_secret(o.st), first, sizeof first) != 0);
    close_store(&o);
    /* a damaged secret is refused, not silently replaced (that would void every token) */
    CHECK_EQ_INT(sql_exec(path, "UPDATE meta SET value = x'00' WHERE name = 'order_secret';"), 0);
    struct config cfg;
    CHECK_EQ_INT(parse_args(&cfg, (const char *const[]){"x", "--db", path, "--log-level", "error", NULL}), 0);
    char err[256] = "";
    CHECK(store_open(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "order secret") != NULL);
    config_deinit(&cfg);
}

static void test_create_sale_rows(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    struct store_job job = {.op = STORE_CREATE_SALE};
    snprintf(job.u.sale.name, sizeof job.u.sale.name, "Sneakers");
    job.u.sale.stock_total = 7;
    job.u.sale.per_user_limit = 2;
    job.u.sale.starts_at = 1700000000;
    job.u.sale.ends_at = 1800000000;
    job.u.sale.payment_window = 300;
    job.u.sale.id = 999; /* ignored */
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    CHECK_EQ_INT(job.u.sale.id, 1);
    int64_t second = create_sale(o.st, "Second", 3, 1, 0);
    CHECK_EQ_INT(second, 2);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_total FROM sales WHERE id = 1"), 7);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 7);
    CHECK_EQ_INT(sql_int(path, "SELECT per_user_limit FROM sales WHERE id = 1"), 2);
    CHECK_EQ_INT(sql_int(path, "SELECT starts_at FROM sales WHERE id = 1"), 1700000000);
    CHECK_EQ_INT(sql_int(path, "SELECT ends_at FROM sales WHERE id = 1"), 1800000000);
    CHECK_EQ_INT(sql_int(path, "SELECT payment_window FROM sales WHERE id = 1"), 300);
    CHECK_EQ_INT(sql_int(path, "SELECT starts_at IS NULL AND ends_at IS NULL FROM sales WHERE id = 2"), 1);
    /* the schema's CHECKs: a sale with no stock is refused, nothing is stored */
    struct store_job bad = {.op = STORE_CREATE_SALE};
    snprintf(bad.u.sale.name, sizeof bad.u.sale.name, "Empty");
    bad.u.sale.stock_total = 0;
    bad.u.sale.per_user_limit = 1;
    enum outcome bad_o = store_run(o.st, &bad);
    CHECK_EQ_INT(bad_o, OUTCOME_INVALID); /* a CHECK failure undoes only that job */
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM sales"), 2);
    /* and the store still works after that failed batch */
    CHECK_EQ_INT(create_sale(o.st, "Third", 1, 1, 0), 3);
    close_store(&o);
}

/* 50 purchases of 1 for a stock of 10, from 5 threads submitting at once. */
struct submitter {
    struct store *st;
    int64_t sale;
    struct store_job *jobs;
    struct tally *t;
    int base;
};

static void *submit_ten(void *arg)
{
    struct submitter *s = arg;
    for (int i = 0; i < 10; i++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", s->base + i);
        purchase_init(&s->jobs[i], s->sale, user, 1, 1, NULL);
        s->jobs[i].done = tally_done;
        s->jobs[i].ctx = s->t;
        store_submit(s->st, &s->jobs[i]);
    }
    return NULL;
}

static void test_guarded_never_oversells(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Ten", 10, 1, 0);
    static struct store_job jobs[50];
    struct tally t = TALLY_INIT;
    pthread_t th[5];
    struct submitter sub[5];
    for (int i = 0; i < 5; i++) {
        sub[i] = (struct submitter){o.st, sale, jobs + i * 10, &t, i * 10};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, submit_ten, &sub[i]), 0);
    }
    for (int i = 0; i < 5; i++) pthread_join(th[i], NULL);
    tally_wait(&t, 50);
    CHECK_EQ_INT(t.done, 50);
    CHECK_EQ_INT(t.ok, 10);
    CHECK_EQ_INT(t.sold_out, 40);
    CHECK_EQ_INT(t.other, 0);
    CHECK_EQ_INT(store_backlog(o.st), 0);
    int64_t ids_ok = 0;
    for (int i = 0; i < 50; i++) {
        if (jobs[i].outcome != OUTCOME_OK) continue;
        CHECK(jobs[i].u.purchase.order.id > 0);
        CHECK_EQ_STR(store_status_name(jobs[i].u.purchase.order.status), "confirmed");
        CHECK_EQ_INT(jobs[i].u.purchase.order.expires_at, 0);
        CHECK(!jobs[i].u.purchase.replayed);
        ids_ok++;
    }
    CHECK_EQ_INT(ids_ok, 10);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 0);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE sale_id = 1"), 10);
    CHECK_EQ_INT(sql_int(path, "SELECT sum(quantity) FROM orders WHERE sale_id = 1"), 10);
    CHECK_EQ_INT(sql_int(path, "SELECT count(DISTINCT user_id) FROM orders"), 10);
    /* bigger than what is left: refused whole, not partly filled */
    int64_t two = create_sale(o.st, "Two", 2, 5, 0);
    CHECK_EQ_INT(buy(o.st, two, "x", 3, 5, NULL, NULL), OUTCOME_SOLD_OUT);
    CHECK_EQ_INT(buy(o.st, two, "x", 2, 5, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, two, "y", 1, 5, NULL, NULL), OUTCOME_SOLD_OUT);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 2"), 0);
    /* an unknown sale: nothing to take, and said so */
    CHECK_EQ_INT(buy(o.st, 77, "x", 1, 5, NULL, NULL), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE sale_id = 77"), 0);
    close_store(&o);
}

/* The limit decided in SQL, as --inventory sqlite has it (limit_held false). */
static void test_per_user_limit(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_for(&o, path, "0", "sqlite");
    int64_t one = create_sale(o.st, "One each", 100, 1, 0);
    CHECK_EQ_INT(buy(o.st, one, "ann", 1, 1, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, one, "ann", 1, 1, NULL, NULL), OUTCOME_LIMIT_EXCEEDED);
    CHECK_EQ_INT(buy(o.st, one, "bob", 2, 1, NULL, NULL), OUTCOME_LIMIT_EXCEEDED); /* q > limit */
    CHECK_EQ_INT(buy(o.st, one, "bob", 1, 1, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 98);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE user_id = 'ann'"), 1);

    /* limit 3, in the same batch: submitted together, the SQL still sums */
    int64_t three = create_sale(o.st, "Three each", 100, 3, 0);
    static struct store_job jobs[6];
    struct tally t = TALLY_INIT;
    for (int i = 0; i < 6; i++) {
        purchase_init(&jobs[i], three, "cat", 1, 3, NULL);
        jobs[i].done = tally_done;
        jobs[i].ctx = &t;
        store_submit(o.st, &jobs[i]);
    }
    tally_wait(&t, 6);
    CHECK_EQ_INT(t.ok, 3);
    CHECK_EQ_INT(t.limit, 3);
    CHECK_EQ_INT(sql_int(path, "SELECT sum(quantity) FROM orders WHERE sale_id = 2 AND user_id = 'cat'"), 3);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 2"), 97);
    /* cancelled orders no longer count toward the limit */
    CHECK_EQ_INT(sql_exec(path, "UPDATE orders SET status = 'cancelled' WHERE sale_id = 2 AND user_id = 'cat'"), 0);
    CHECK_EQ_INT(buy(o.st, three, "cat", 3, 3, NULL, NULL), OUTCOME_OK);
    /* the limit is per sale */
    CHECK_EQ_INT(buy(o.st, three, "ann", 1, 3, NULL, NULL), OUTCOME_OK);
    close_store(&o);
}

/* With a memory gate (limit_held) SQL re-checks the stock and nothing else: the
 * ledger, not the database, holds users to the limit. */
static void test_stock_only_guard(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Gated", 3, 1, 0);
    struct store_job job;
    enum outcome want[] = {OUTCOME_OK, OUTCOME_OK, OUTCOME_SOLD_OUT};
    for (int i = 0; i < 3; i++) {
        purchase_init(&job, sale, "ann", i < 2 ? 1 : 2, 1, NULL);
        job.u.purchase.limit_held = true;
        CHECK_EQ_INT(store_run(o.st, &job), want[i]); /* ann twice: the ledger's call, not SQL's */
    }
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 1);
    purchase_init(&job, 99, "ann", 1, 1, NULL);
    job.u.purchase.limit_held = true;
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 2);
    close_store(&o);
}

/* orders_sale_user exists exactly while --inventory sqlite runs. */
static void test_user_index_follows_strategy(void)
{
    const char *path = new_db_path();
    static const char has[] = "SELECT count(*) FROM sqlite_master WHERE name = 'orders_sale_user'";
    static const struct {
        const char *inventory;
        int64_t index;
    } steps[] = {{"atomic", 0}, {"sqlite", 1}, {"sqlite", 1}, {"mutex", 0}, {"unsafe", 0}, {"sqlite", 1}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct opened o;
        open_for(&o, path, "5", steps[i].inventory);
        CHECK_EQ_INT(sql_int(path, has), steps[i].index);
        CHECK_EQ_INT(buy(o.st, 1, "ann", 1, 1, NULL, NULL), i == 0 ? OUTCOME_OK : OUTCOME_LIMIT_EXCEEDED);
        close_store(&o);
    }
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 1);
}

static void test_idempotency(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Keys", 10, 2, 0);
    int64_t other = create_sale(o.st, "Other", 10, 2, 0);
    struct store_purchase a, b, c, d, e;
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 2, "k-1", &a), OUTCOME_OK);
    CHECK(!a.replayed);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 2, "k-1", &b), OUTCOME_OK);
    CHECK(b.replayed);
    CHECK_EQ_INT(b.order.id, a.order.id);
    CHECK_EQ_INT(b.order.quantity, 1);
    CHECK_EQ_STR(b.order.user_id, "ann");
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 9); /* taken once */
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 1);
    /* a replay is answered even once the limit is reached */
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 2, "k-2", NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 2, "k-1", &b), OUTCOME_OK);
    CHECK(b.replayed);
    CHECK_EQ_INT(b.order.id, a.order.id);
    /* another user with the same key: a new order */
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 2, "k-1", &c), OUTCOME_OK);
    CHECK(!c.replayed);
    CHECK(c.order.id != a.order.id);
    /* the same user and key in another sale: a new order */
    CHECK_EQ_INT(buy(o.st, other, "ann", 1, 2, "k-1", &d), OUTCOME_OK);
    CHECK(!d.replayed);
    CHECK(d.order.id != a.order.id && d.order.id != c.order.id);
    /* no key: never a replay */
    CHECK_EQ_INT(buy(o.st, other, "ann", 1, 2, NULL, &e), OUTCOME_OK);
    CHECK(!e.replayed);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 5);
    /* two jobs with one key in one batch: the second replays the first */
    static struct store_job jobs[2];
    struct tally t = TALLY_INIT;
    for (int i = 0; i < 2; i++) {
        purchase_init(&jobs[i], other, "zed", 1, 2, "same");
        jobs[i].done = tally_done;
        jobs[i].ctx = &t;
        store_submit(o.st, &jobs[i]);
    }
    tally_wait(&t, 2);
    CHECK_EQ_INT(t.ok, 2);
    CHECK(!jobs[0].u.purchase.replayed);
    CHECK(jobs[1].u.purchase.replayed);
    CHECK_EQ_INT(jobs[1].u.purchase.order.id, jobs[0].u.purchase.order.id);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE user_id = 'zed'"), 1);

    /* store_order_by_key */
    struct store_conn *conn = store_conn_open(o.st);
    CHECK(conn != NULL);
    struct store_order ord;
    CHECK_EQ_INT(store_order_by_key(conn, sale, "ann", "k-1", &ord), OUTCOME_OK);
    CHECK_EQ_INT(ord.id, a.order.id);
    CHECK_EQ_INT(ord.sale_id, sale);
    CHECK_EQ_INT(store_order_by_key(conn, sale, "bob", "k-1", &ord), OUTCOME_OK);
    CHECK_EQ_INT(ord.id, c.order.id);
    CHECK_EQ_INT(store_order_by_key(conn, sale, "ann", "k-404", &ord), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(store_order_by_key(conn, sale, "nobody", "k-1", &ord), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(store_order_by_key(conn, 99, "ann", "k-1", &ord), OUTCOME_NOT_FOUND);
    store_conn_close(conn);
    close_store(&o);
}

static void test_order_get(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t final_sale = create_sale(o.st, "Final", 10, 2, 0);
    int64_t pending_sale = create_sale(o.st, "Pay later", 10, 2, 600);
    struct store_purchase p1, p2;
    CHECK_EQ_INT(buy(o.st, final_sale, "ann", 2, 2, NULL, &p1), OUTCOME_OK);
    struct store_job job;
    purchase_init(&job, pending_sale, "bob", 1, 2, NULL);
    job.u.purchase.payment_window = 600;
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    p2 = job.u.purchase;
    CHECK_EQ_STR(store_status_name(p2.order.status), "pending");
    CHECK_EQ_INT(p2.order.expires_at, p2.order.created_at + 600000);

    struct store_conn *c = store_conn_open(o.st);
    struct store_order ord;
    memset(&ord, 0, sizeof ord);
    CHECK_EQ_INT(store_order_get(c, p1.order.id, &ord), OUTCOME_OK);
    CHECK_EQ_INT(ord.id, p1.order.id);
    CHECK_EQ_INT(ord.sale_id, final_sale);
    CHECK_EQ_STR(ord.user_id, "ann");
    CHECK_EQ_INT(ord.quantity, 2);
    CHECK_EQ_STR(store_status_name(ord.status), "confirmed");
    CHECK_EQ_INT(ord.created_at, p1.order.created_at);
    CHECK_EQ_INT(ord.expires_at, 0);
    CHECK_EQ_INT(ord.paid_at, 0);
    CHECK_EQ_INT(store_order_get(c, p2.order.id, &ord), OUTCOME_OK);
    CHECK_EQ_STR(store_status_name(ord.status), "pending");
    CHECK_EQ_STR(ord.user_id, "bob");
    CHECK_EQ_INT(ord.expires_at, p2.order.expires_at);
    CHECK_EQ_INT(store_order_get(c, 12345, &ord), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(store_order_get(c, 0, &ord), OUTCOME_NOT_FOUND);
    store_conn_close(c);
    store_conn_close(NULL);
    close_store(&o);
}

static void test_reset(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Reset me", 5, 5, 0);
    int64_t keep = create_sale(o.st, "Keep me", 5, 5, 0);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 3, 5, "key", NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 2, 5, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, keep, "ann", 1, 5, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "cat", 1, 5, NULL, NULL), OUTCOME_SOLD_OUT);
    struct store_job job = {.op = STORE_RESET_SALE, .u.sale_id = sale};
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE sale_id = 1"), 0);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 5);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE sale_id = 2"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 2"), 4);
    /* the key is free again, the limit starts over */
    struct store_purchase p;
    CHECK_EQ_INT(buy(o.st, sale, "ann", 5, 5, "key", &p), OUTCOME_OK);
    CHECK(!p.replayed);
    struct store_job missing = {.op = STORE_RESET_SALE, .u.sale_id = 404};
    CHECK_EQ_INT(store_run(o.st, &missing), OUTCOME_NOT_FOUND);
    close_store(&o);
}

/* An order id is never given twice (its token is derived from it): a reset that
 * deletes the newest orders must not let SQLite's max(id) + 1 hand their ids out
 * again, within a run or after a restart, however many resets come in a row. */
static void test_reset_never_reuses_ids(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Reset me", 10, 10, 0);
    struct store_purchase p;
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 10, NULL, &p), OUTCOME_OK);
    CHECK_EQ_INT(p.order.id, 3);
    struct store_job job = {.op = STORE_RESET_SALE, .u.sale_id = sale};
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 10, NULL, &p), OUTCOME_OK);
    CHECK_EQ_INT(p.order.id, 4);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 10, NULL, &p), OUTCOME_OK);
    CHECK_EQ_INT(p.order.id, 5);
    /* two resets in a row, then a restart before the next order */
    job = (struct store_job){.op = STORE_RESET_SALE, .u.sale_id = sale};
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    job = (struct store_job){.op = STORE_RESET_SALE, .u.sale_id = sale};
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    close_store(&o);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 0);
    open_at(&o, path, "0");
    CHECK_EQ_INT(buy(o.st, sale, "cat", 1, 10, NULL, &p), OUTCOME_OK);
    CHECK_EQ_INT(p.order.id, 6);
    /* a refused first order after a reset (a schema CHECK) leaves the floor for the next */
    job = (struct store_job){.op = STORE_RESET_SALE, .u.sale_id = sale};
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    CHECK(buy(o.st, sale, "", 1, 10, NULL, &p) != OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "dan", 1, 10, NULL, &p), OUTCOME_OK);
    CHECK_EQ_INT(p.order.id, 7);
    close_store(&o);
    CHECK_EQ_INT(sql_int(path, "SELECT integrity_check = 'ok' FROM pragma_integrity_check"), 1);
}

/* A purchase whose INSERT breaks a schema CHECK (empty user id) is undone to its
 * savepoint: its stock UPDATE is rolled back, the rest of the batch commits. */
static void test_savepoint_undoes_one_job(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Savepoints", 10, 5, 0);
    static struct store_job jobs[3];
    struct tally t = TALLY_INIT;
    const char *users[] = {"ann", "", "bob"};
    for (int i = 0; i < 3; i++) {
        purchase_init(&jobs[i], sale, users[i], 2, 5, NULL);
        jobs[i].done = tally_done;
        jobs[i].ctx = &t;
        store_submit(o.st, &jobs[i]);
    }
    tally_wait(&t, 3);
    CHECK_EQ_INT(jobs[0].outcome, OUTCOME_OK);
    CHECK_EQ_INT(jobs[1].outcome, OUTCOME_INTERNAL);
    CHECK_EQ_INT(jobs[2].outcome, OUTCOME_OK);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 6);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 2);
    close_store(&o);
}

/* The unsafe strategy's blind write: stock set to the given value, no guard. */
static void test_unguarded_write(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Unsafe", 3, 1, 0);
    struct store_job job;
    purchase_init(&job, sale, "ann", 1, 1, NULL);
    job.u.purchase.unguarded = true;
    job.u.purchase.unguarded_stock_left = 2;
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    purchase_init(&job, sale, "ann", 1, 1, NULL); /* over the limit, but unguarded */
    job.u.purchase.unguarded = true;
    job.u.purchase.unguarded_stock_left = 2; /* the lost update */
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 2);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 2);
    close_store(&o);
}

/* ---- audit ----------------------------------------------------------------------- */

static void count_snapshot(void *ctx, const struct store_memory *mem) { (*(int *)ctx)++; }

static void test_audit(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Audited", 10, 2, 0);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 2, 2, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 2, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 2, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "cat", 1, 2, NULL, NULL), OUTCOME_OK);
    struct store_conn *c = store_conn_open(o.st);
    struct store_audit a;
    memset(&a, 0xee, sizeof a);
    int snaps = 0;
    CHECK_EQ_INT(store_audit(o.st, c, sale, &a, count_snapshot, &snaps), OUTCOME_OK);
    CHECK_EQ_INT(snaps, 1);
    CHECK_EQ_INT(a.stock_total, 10);
    CHECK_EQ_INT(a.stock_left, 5);
    CHECK_EQ_INT(a.per_user_limit, 2);
    CHECK_EQ_INT(a.units_sold, 5);
    CHECK_EQ_INT(a.orders, 4);
    CHECK_EQ_INT(a.users_over_limit, 0);
    /* a row slipped past the guard: the audit sees the user over the limit;
     * cancelled orders do not count */
    CHECK_EQ_INT(sql_exec(path, "INSERT INTO orders (sale_id, user_id, quantity, status, created_at)"
                                " VALUES (1, 'ann', 1, 'confirmed', 1),"
                                " (1, 'cat', 5, 'cancelled', 1)"),
                 0);
    CHECK_EQ_INT(store_audit(o.st, c, sale, &a, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(a.units_sold, 6);
    CHECK_EQ_INT(a.orders, 5);
    CHECK_EQ_INT(a.users_over_limit, 1);
    CHECK_EQ_INT(store_audit(o.st, c, 404, &a, count_snapshot, &snaps), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(snaps, 1); /* no snapshot for a missing sale */
    /* the connection is still usable after NOT_FOUND (its read transaction ended) */
    CHECK_EQ_INT(store_audit(o.st, c, sale, &a, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "dan", 1, 2, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(store_audit(o.st, c, sale, &a, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(a.stock_left, 4); /* sees the new commit: no stale snapshot kept open */
    store_conn_close(c);
    close_store(&o);
}

/* A commit under way when an audit starts (its fsync, say) is waited out, not
 * counted as a miss: an audit that took the commit lock instead would hold it on the
 * admin thread at nice 19, and the writer would wait for that thread's CPU.  The
 * probe: from inside the snapshot, a commit must get through (it cannot while the
 * audit holds the lock). */
struct slow_commit {
    atomic_int started, finished;
};

static void slow_done(struct store_job *job)
{
    struct slow_commit *sc = job->ctx;
    atomic_store(&sc->started, 1);
    nanosleep(&(struct timespec){0, 300000000}, NULL); /* far beyond the audit's old patience */
    atomic_store(&sc->finished, 1);
}

struct probe {
    struct store *st;
    int64_t sale;
    int calls;
    bool committed; /* the probe's commit got through while the snapshot ran */
};

/* The follower's memory read, which runs at the audit's snapshot. */
static void probe_snapshot(void *ctx, int64_t sale_id, struct store_memory *out)
{
    struct probe *pr = ctx;
    memset(out, 0, sizeof *out);
    if (pr->calls++) return; /* once: the audit then retries over the probe's own commit */
    static struct store_job job; /* static, both: they may outlive this call */
    static struct tally t = TALLY_INIT;
    purchase_init(&job, pr->sale, "probe", 1, 5, NULL);
    job.done = tally_done;
    job.ctx = &t;
    store_submit(pr->st, &job);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2; /* a liveness bound: the probe alone needs milliseconds */
    pthread_mutex_lock(&t.mu);
    while (t.done == 0 && pthread_cond_timedwait(&t.cond, &t.mu, &until) == 0) {}
    pr->committed = t.done == 1;
    pthread_mutex_unlock(&t.mu); /* not in time: the audit holds the commit lock */
}

static void test_audit_waits_out_a_commit(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Slow", 10, 5, 0);
    struct store_conn *c = store_conn_open(o.st);
    CHECK(c != NULL);
    struct slow_commit sc = {0, 0};
    static struct store_job slow;
    purchase_init(&slow, sale, "slow", 1, 5, NULL);
    slow.done = slow_done;
    slow.ctx = &sc;
    store_submit(o.st, &slow);
    while (!atomic_load(&sc.started)) sched_yield();
    struct probe pr = {o.st, sale, 0, false};
    store_follow(o.st, &(struct store_follower){NULL, probe_snapshot, &pr});
    struct store_audit a;
    CHECK_EQ_INT(store_audit(o.st, c, sale, &a, NULL, NULL), OUTCOME_OK);
    CHECK(atomic_load(&sc.finished)); /* the snapshot came after the slow commit */
    CHECK(pr.committed);              /* and the audit never held the commit lock */
    CHECK(pr.calls >= 2);             /* the probe's commit overtook the first snapshot */
    CHECK_EQ_INT(a.units_sold, 2);    /* both commits, seen from the one it kept */
    CHECK_EQ_INT(a.stock_left, 8);
    store_conn_close(c);
    close_store(&o);
}

/* ---- load after restart ------------------------------------------------------------ */

struct loaded {
    int nsales;
    struct store_sale sales[8];
    int nheld;
    struct {
        int64_t sale;
        char user[PAYLOAD_USER_MAX + 1];
        int64_t units;
    } held[16];
};

static void load_each(void *ctx, const struct store_sale *s)
{
    struct loaded *l = ctx;
    if (l->nsales < 8) l->sales[l->nsales] = *s;
    l->nsales++;
}

static void load_held(void *ctx, int64_t sale, const char *user, int64_t units)
{
    struct loaded *l = ctx;
    if (l->nheld < 16) {
        l->held[l->nheld].sale = sale;
        snprintf(l->held[l->nheld].user, sizeof l->held[0].user, "%s", user);
        l->held[l->nheld].units = units;
    }
    l->nheld++;
}

static int64_t held_units(const struct loaded *l, int64_t sale, const char *user)
{
    for (int i = 0; i < l->nheld && i < 16; i++)
        if (l->held[i].sale == sale && strcmp(l->held[i].user, user) == 0) return l->held[i].units;
    return -1;
}

static void test_load_after_reopen(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "5"); /* demo sale 1 */
    struct store_job job = {.op = STORE_CREATE_SALE};
    snprintf(job.u.sale.name, sizeof job.u.sale.name, "Windowed");
    job.u.sale.stock_total = 10;
    job.u.sale.per_user_limit = 3;
    job.u.sale.starts_at = 1700000000;
    job.u.sale.ends_at = 1700000600;
    job.u.sale.payment_window = 60;
    CHECK_EQ_INT(store_run(o.st, &job), OUTCOME_OK);
    int64_t sale = job.u.sale.id;
    CHECK_EQ_INT(sale, 2);
    CHECK_EQ_INT(buy(o.st, 1, "ann", 1, 1, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 2, 3, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 3, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "bob", 3, 3, NULL, NULL), OUTCOME_OK);
    CHECK_EQ_INT(buy(o.st, sale, "cat", 1, 3, NULL, NULL), OUTCOME_OK);
    close_store(&o);
    /* cat's order was cancelled while the service was down: its unit is not held
     * (the store counts live orders only; stock_left is as the row says) */
    CHECK_EQ_INT(sql_exec(path, "UPDATE orders SET status = 'cancelled' WHERE user_id = 'cat'"), 0);

    open_at(&o, path, "5");
    static struct loaded l;
    memset(&l, 0, sizeof l);
    CHECK_EQ_INT(store_load(o.st, load_each, load_held, &l), 0);
    CHECK_EQ_INT(l.nsales, 2);
    CHECK_EQ_INT(l.sales[0].id, 1);
    CHECK_EQ_STR(l.sales[0].name, "Demo sale");
    CHECK_EQ_INT(l.sales[0].stock_total, 5);
    CHECK_EQ_INT(l.sales[0].stock_left, 4);
    CHECK_EQ_INT(l.sales[0].sold, 1);
    CHECK_EQ_INT(l.sales[0].orders, 1);
    CHECK_EQ_INT(l.sales[0].starts_at, 0);
    CHECK_EQ_INT(l.sales[0].ends_at, 0);
    const struct store_sale *s2 = &l.sales[1];
    CHECK_EQ_INT(s2->id, 2);
    CHECK_EQ_STR(s2->name, "Windowed");
    CHECK_EQ_INT(s2->stock_total, 10);
    CHECK_EQ_INT(s2->stock_left, 3);
    CHECK_EQ_INT(s2->per_user_limit, 3);
    CHECK_EQ_INT(s2->starts_at, 1700000000);
    CHECK_EQ_INT(s2->ends_at, 1700000600);
    CHECK_EQ_INT(s2->payment_window, 60);
    CHECK(s2->created_at > 1600000000000LL);
    CHECK_EQ_INT(s2->sold, 6);
    CHECK_EQ_INT(s2->orders, 3);
    CHECK_EQ_INT(l.nheld, 3);
    CHECK_EQ_INT(held_units(&l, 1, "ann"), 1);
    CHECK_EQ_INT(held_units(&l, 2, "ann"), 3);
    CHECK_EQ_INT(held_units(&l, 2, "bob"), 3);
    CHECK_EQ_INT(held_units(&l, 2, "cat"), -1);
    /* the guard still holds after the restart */
    CHECK_EQ_INT(buy(o.st, sale, "ann", 1, 3, NULL, NULL), OUTCOME_LIMIT_EXCEEDED);
    close_store(&o);
}

/* ---- store_purchase_now on a reader's connection ---------------------------------- */

static _Atomic int now_done_calls;

static void now_done(struct store_job *job)
{
    atomic_fetch_add(&now_done_calls, 1);
    (void)job;
}

struct now_thread {
    struct store *st;
    int64_t sale;
    int index;
    int ok, sold_out, other;
};

static void *buy_now(void *arg)
{
    struct now_thread *n = arg;
    struct store_conn *c = store_conn_open(n->st);
    if (!c) {
        n->other = 1000;
        return NULL;
    }
    for (int i = 0; i < 10; i++) {
        struct store_job job;
        char user[32];
        snprintf(user, sizeof user, "n%d-%d", n->index, i);
        purchase_init(&job, n->sale, user, 1, 1, NULL);
        job.done = now_done;
        enum outcome o = store_purchase_now(n->st, c, &job);
        if (o != job.outcome) n->other += 1000;
        if (o == OUTCOME_OK) n->ok++;
        else if (o == OUTCOME_SOLD_OUT) n->sold_out++;
        else n->other++;
    }
    store_conn_close(c);
    return NULL;
}

static void test_purchase_now(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Now", 3, 1, 0);
    struct store_conn *c = store_conn_open(o.st);
    CHECK(c != NULL);
    atomic_store(&now_done_calls, 0);
    struct store_job job;
    purchase_init(&job, sale, "ann", 1, 1, "nk");
    job.done = now_done;
    CHECK_EQ_INT(store_purchase_now(o.st, c, &job), OUTCOME_OK);
    CHECK_EQ_INT(atomic_load(&now_done_calls), 1);
    CHECK(job.u.purchase.order.id > 0);
    int64_t first = job.u.purchase.order.id;
    purchase_init(&job, sale, "ann", 1, 1, NULL);
    job.done = now_done;
    CHECK_EQ_INT(store_purchase_now(o.st, c, &job), OUTCOME_LIMIT_EXCEEDED);
    CHECK_EQ_INT(atomic_load(&now_done_calls), 2); /* done() on refusals too */
    purchase_init(&job, sale, "ann", 1, 1, "nk");
    job.done = now_done;
    CHECK_EQ_INT(store_purchase_now(o.st, c, &job), OUTCOME_OK);
    CHECK(job.u.purchase.replayed);
    CHECK_EQ_INT(job.u.purchase.order.id, first);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 2);
    /* the writer and this connection interleave without losing a unit */
    CHECK_EQ_INT(buy(o.st, sale, "bob", 1, 1, NULL, NULL), OUTCOME_OK);
    purchase_init(&job, sale, "cat", 1, 1, NULL);
    job.done = NULL;
    CHECK_EQ_INT(store_purchase_now(o.st, c, &job), OUTCOME_OK);
    purchase_init(&job, sale, "dan", 1, 1, NULL);
    CHECK_EQ_INT(store_purchase_now(o.st, c, &job), OUTCOME_SOLD_OUT);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 1"), 0);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 3);
    store_conn_close(c);

    /* 4 threads, each on its own connection, 40 buyers for 25 units */
    int64_t crowd = create_sale(o.st, "Crowd now", 25, 1, 0);
    struct now_thread nt[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        nt[i] = (struct now_thread){o.st, crowd, i, 0, 0, 0};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, buy_now, &nt[i]), 0);
    }
    int ok = 0, sold_out = 0, other = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += nt[i].ok;
        sold_out += nt[i].sold_out;
        other += nt[i].other;
    }
    CHECK_EQ_INT(other, 0);
    CHECK_EQ_INT(ok, 25);
    CHECK_EQ_INT(sold_out, 15);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales WHERE id = 2"), 0);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders WHERE sale_id = 2"), 25);
    close_store(&o);
}

/* store_close runs every job still queued before it stops the writer. */
static void test_close_drains_queue(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    int64_t sale = create_sale(o.st, "Drain", 100, 1, 0);
    static struct store_job jobs[200];
    struct tally t = TALLY_INIT;
    for (int i = 0; i < 200; i++) {
        char user[32];
        snprintf(user, sizeof user, "d%d", i);
        purchase_init(&jobs[i], sale, user, 1, 1, NULL);
        jobs[i].done = tally_done;
        jobs[i].ctx = &t;
        store_submit(o.st, &jobs[i]);
    }
    close_store(&o); /* no wait before closing */
    CHECK_EQ_INT(t.done, 200);
    CHECK_EQ_INT(t.ok, 100);
    CHECK_EQ_INT(t.sold_out, 100);
    CHECK_EQ_INT(sql_int(path, "SELECT count(*) FROM orders"), 100);
    CHECK_EQ_INT(sql_int(path, "SELECT stock_left FROM sales"), 0);
}

/* ---- invariants where threads meet ------------------------------------------------ */

struct held_probe {
    struct store *st;
    _Atomic int calls, held;
};

static void held_done(struct store_job *job)
{
    struct held_probe *p = job->ctx;
    atomic_fetch_add(&p->calls, 1);
    if (store_commit_held(p->st)) atomic_fetch_add(&p->held, 1);
}

/* done() runs once per job and under the commit lock, whichever thread commits:
 * the writer (through store_run's queue) or a worker's own connection
 * (store_purchase_now), a sale or a refusal alike. */
static void test_done_under_commit_lock(void)
{
    const char *path = new_db_path();
    struct opened o;
    open_at(&o, path, "0");
    CHECK_EQ_STR(store_kind(o.st), "sqlite"); /* a path, not a URI */
    CHECK(!store_shared(o.st));
    int64_t sale = create_sale(o.st, "Held", 2, 1, 0);
    struct store_conn *c = store_conn_open(o.st);
    CHECK(c != NULL);
    static const struct {
        const char *user;
        bool now; /* store_purchase_now on c, else the writer */
        enum outcome want;
    } cases[] = {
        {"ann", false, OUTCOME_OK},
        {"bob", true, OUTCOME_OK},
        {"cat", false, OUTCOME_SOLD_OUT},
        {"dan", true, OUTCOME_SOLD_OUT},
        {"ann", true, OUTCOME_SOLD_OUT}, /* stock first: the limit is held in memory */
    };
    struct held_probe p = {.st = o.st};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct store_job job;
        purchase_init(&job, sale, cases[i].user, 1, 1, NULL);
        job.u.purchase.limit_held = true;
        job.done = held_done;
        job.ctx = &p;
        enum outcome got = cases[i].now ? store_purchase_now(o.st, c, &job) : store_run(o.st, &job);
        CHECK_EQ_INT(got, cases[i].want);
        CHECK(job.finished);
        CHECK_EQ_INT(atomic_load(&p.calls), (int)i + 1);
        CHECK_EQ_INT(atomic_load(&p.held), (int)i + 1);
        CHECK(!store_commit_held(o.st)); /* and let go after */
    }
    store_conn_close(c);
    close_store(&o);
}

/* ---- setup --------------------------------------------------------------------------- */

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Every status the schema allows reads back as itself; anything else is refused. */
static void test_status_names(void)
{
    static const char *const names[] = {"pending", "paid", "confirmed", "cancelled", "expired"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum store_status st;
        CHECK(store_status_parse(names[i], &st));
        CHECK_EQ_STR(store_status_name(st), names[i]);
    }
    static const char *const bad[] = {"", "Pending", "pending ", "refunded", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum store_status st = STORE_PAID;
        CHECK(!store_status_parse(bad[i], &st));
        CHECK(st == STORE_PAID); /* untouched */
    }
}

static const struct unit_case cases[] = {
    {"status_names", test_status_names},
    {"schema_and_demo", test_schema_and_demo},
    {"migrates_v1", test_migrates_v1},
    {"newer_schema_refused", test_newer_schema_refused},
    {"order_secret", test_order_secret},
    {"create_sale_rows", test_create_sale_rows},
    {"guarded_never_oversells", test_guarded_never_oversells},
    {"per_user_limit", test_per_user_limit},
    {"stock_only_guard", test_stock_only_guard},
    {"user_index_follows_strategy", test_user_index_follows_strategy},
    {"idempotency", test_idempotency},
    {"order_get", test_order_get},
    {"reset", test_reset},
    {"reset_never_reuses_ids", test_reset_never_reuses_ids},
    {"savepoint_undoes_one_job", test_savepoint_undoes_one_job},
    {"unguarded_write", test_unguarded_write},
    {"audit", test_audit},
    {"audit_waits_out_a_commit", test_audit_waits_out_a_commit},
    {"load_after_reopen", test_load_after_reopen},
    {"purchase_now", test_purchase_now},
    {"close_drains_queue", test_close_drains_queue},
    {"done_under_commit_lock", test_done_under_commit_lock},
    {NULL, NULL}};

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/flashsale-test-store-XXXXXX");
    if (!mkdtemp(dir)) return 2;
    metrics_init(); /* the writer records batch sizes and commit times */
    log_threshold = LOG_LEVEL_ERROR;
    int r = unit_run(cases);
    remove_dir();
    return r;
}

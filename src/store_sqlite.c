/* store_sqlite — the SQLite backend of store (see store_int.h).
 *
 * WAL mode, synchronous FULL (or NORMAL with --durability normal), statements
 * prepared once per connection.  The guard on every purchase is SQL:
 *   UPDATE sales SET stock_left = stock_left - :q WHERE id = :sale AND stock_left >= :q
 *     [AND :q + (the user's live units in the sale) <= per_user_limit]
 * with CHECK (stock_left >= 0) in the schema as the last line.  The bracketed part
 * only when no memory ledger held the limit (store_purchase.limit_held false).  Automatic checkpoints
 * are off: they would run inside some unlucky COMMIT and stall every purchase
 * queued behind it; housekeep() runs PASSIVE checkpoints from a connection and a
 * thread of their own instead, beside the writer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include "clock.h"
#include "inventory.h"
#include "log.h"
#include "schema_sql.h"
#include "store_int.h"

#define SQLITE_SCHEMA_VERSION 3

/* Each migration takes a database from version - 1 to version (sql/migrations/). */
static const struct {
    int version;
    const char *sql;
} sqlite_migrations[] = {
    {2, migrate_sqlite_002},
    {3, migrate_sqlite_003},
};

enum sqlite_stmt {
    ST_BEGIN, ST_BEGIN_READ, ST_COMMIT, ST_ROLLBACK,
    ST_ORDER_BY_KEY, ST_USER_UNITS, ST_TAKE_STOCK, ST_TAKE_STOCK_ONLY, ST_GIVE_BACK, ST_BLIND_STOCK, ST_INSERT_ORDER, ST_ORDER_GET,
    ST_SALE_INSERT, ST_SALE_ROW, ST_RESET_ORDERS, ST_RESET_STOCK, ST_AUDIT_UNITS, ST_AUDIT_OVER,
    ST_PAY, ST_CLOSE, ST_DUE, ST_AUDIT_STATUS, ST_MAX_ORDER, ST_SET_FLOOR, ST_COUNT
};

static const char *const sqlite_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_ORDER_BY_KEY] = "SELECT " STORE_SQL_ORDER " FROM orders"
                        " WHERE sale_id = ?1 AND user_id = ?2 AND idempotency_key = ?3",
    [ST_USER_UNITS] = "SELECT COALESCE(SUM(quantity), 0), (SELECT per_user_limit FROM sales WHERE id = ?1)"
                      " FROM orders WHERE sale_id = ?1 AND user_id = ?2 AND status IN " STORE_SQL_LIVE,
    /* The guard, stock and per-user limit in one statement: it changes a row only
     * when both allow the purchase. */
    [ST_TAKE_STOCK] = "UPDATE sales SET stock_left = stock_left - ?1"
                      " WHERE id = ?2 AND stock_left >= ?1 AND ?1 + (SELECT COALESCE(SUM(quantity), 0)"
                      " FROM orders WHERE sale_id = ?2 AND user_id = ?3 AND status IN " STORE_SQL_LIVE ")"
                      " <= per_user_limit",
    /* The same with the limit left to the memory ledger (store_purchase.limit_held). */
    [ST_TAKE_STOCK_ONLY] = "UPDATE sales SET stock_left = stock_left - ?1 WHERE id = ?2 AND stock_left >= ?1",
    [ST_GIVE_BACK] = "UPDATE sales SET stock_left = stock_left + ?1 WHERE id = ?2",
    [ST_BLIND_STOCK] = "UPDATE sales SET stock_left = ?1 WHERE id = ?2",
    /* ?8, the id, is NULL (max(id) + 1) except for the first order after a reset
     * (sqlite_id_floor) */
    [ST_INSERT_ORDER] = "INSERT INTO orders (sale_id, user_id, quantity, status, idempotency_key,"
                        " created_at, expires_at, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_ORDER_GET] = "SELECT " STORE_SQL_ORDER " FROM orders WHERE id = ?1",
    [ST_SALE_INSERT] = "INSERT INTO sales (name, stock_total, stock_left, per_user_limit, starts_at,"
                       " ends_at, payment_window, created_at) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_SALE_ROW] = "SELECT stock_total, stock_left, per_user_limit FROM sales WHERE id = ?1",
    [ST_RESET_ORDERS] = "DELETE FROM orders WHERE sale_id = ?1",
    [ST_RESET_STOCK] = "UPDATE sales SET stock_left = stock_total WHERE id = ?1",
    [ST_AUDIT_UNITS] = "SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM orders"
                       " WHERE sale_id = ?1 AND status IN " STORE_SQL_LIVE,
    /* The payment window: each guarded by status = 'pending', so an order changes
     * state once, and a late payment loses to the deadline. */
    [ST_PAY] = "UPDATE orders SET status = 'paid', paid_at = ?2"
               " WHERE id = ?1 AND status = 'pending' AND expires_at > ?2",
    [ST_CLOSE] = "UPDATE orders SET status = ?2, closed_at = ?3 WHERE id = ?1 AND status = 'pending'",
    [ST_DUE] = "SELECT id, sale_id, user_id, quantity FROM orders"
               " WHERE status = 'pending' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
    [ST_AUDIT_STATUS] = "SELECT"
                        " COALESCE(SUM(CASE WHEN status = 'pending' THEN quantity END), 0),"
                        " COALESCE(SUM(CASE WHEN status = 'paid' THEN quantity END), 0),"
                        " COALESCE(SUM(CASE WHEN status = 'confirmed' THEN quantity END), 0),"
                        " COALESCE(SUM(CASE WHEN status = 'expired' THEN quantity END), 0),"
                        " COALESCE(SUM(CASE WHEN status = 'cancelled' THEN quantity END), 0),"
                        " COUNT(CASE WHEN status = 'paid' AND paid_at >= expires_at THEN 1 END)"
                        " FROM orders WHERE sale_id = ?1",
    [ST_MAX_ORDER] = "SELECT COALESCE(MAX(id), 0), (SELECT value FROM meta WHERE name = 'order_id_floor')"
                     " FROM orders",
    [ST_SET_FLOOR] = "INSERT OR REPLACE INTO meta (name, value) VALUES ('order_id_floor', ?1)",
    [ST_AUDIT_OVER] = "SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE sale_id = ?1 AND status IN " STORE_SQL_LIVE
                      " GROUP BY user_id HAVING SUM(quantity) > ?2)",
};

/* An order id is never handed out twice: an order's token is derived from its id,
 * so a reused id would let whoever kept a deleted order's token open a stranger's
 * new order.  SQLite gives a new row max(id) + 1, which after a reset that deleted
 * the newest orders is an id used before (AUTOINCREMENT would prevent that, for a
 * write to sqlite_sequence on every purchase).  So a reset keeps the highest id it
 * removed (meta 'order_id_floor', read again at start), and the next order is
 * inserted above it by hand; after that one, max(id) + 1 is new again.  0 = no
 * floor pending.  One per process: one database per process (the writer's lock
 * file), and setup() loads it. */
static _Atomic int64_t sqlite_id_floor;

struct store_conn {
    const struct store_backend *be; /* first, see store_int.h */
    sqlite3 *db;
    int64_t floor_taken; /* this transaction inserted above sqlite_id_floor: give it back on rollback */
    int lock_fd; /* the writer's: flock on "<db>.lock" for the whole run, else -1 */
    int wal_pages; /* the WAL's length after this connection's last commit */
    sqlite3_stmt *st[ST_COUNT];
};

/* Steps a statement that returns no row (or whose rows are ignored) and resets
 * it.  Returns the SQLite result code of the step (SQLITE_DONE on success). */
static int sqlite_exec(struct store_conn *c, enum sqlite_stmt which)
{
    sqlite3_stmt *st = c->st[which];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) rc = SQLITE_DONE;
    if (rc != SQLITE_DONE) LOG_WARN("sqlite: %s: %s", sqlite_sql[which], sqlite3_errmsg(c->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static void sqlite_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int sqlite_prepare(struct store_conn *c, char *err, size_t err_size);
static int sqlite_order_ids(struct store_conn *c, int64_t *top, int64_t *floor);
static int sqlite_wal_hook(void *arg, sqlite3 *db, const char *name, int pages);
static enum outcome sqlite_order_get(struct store_conn *c, int64_t id, struct store_order *out);

static void sqlite_disconnect(struct store_conn *c)
{
    if (!c) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    if (c->lock_fd >= 0) close(c->lock_fd);
    free(c);
}

/* SQLite counts every allocation under one process-wide mutex unless told not to;
 * the writer and the I/O threads would contend on it for nothing.  Must run
 * before SQLite initializes (it is harmlessly refused afterwards). */
static void sqlite_configure_once(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

static struct store_conn *sqlite_connect(const struct config *cfg, bool writer, char *err,
                                         size_t err_size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_configure_once);
    struct store_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    c->be = &store_sqlite;
    c->lock_fd = -1;
    if (writer) {
        /* Two servers on one file would each trust their own memory gate.  A lock
         * file (not the database: closing any descriptor of it would drop
         * SQLite's own POSIX locks) makes the second one refuse to start. */
        char lock_path[4096];
        snprintf(lock_path, sizeof lock_path, "%s.lock", cfg->db);
        c->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (c->lock_fd < 0 || flock(c->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            snprintf(err, err_size, "%s is in use by another flashsale (%s: %s)", cfg->db, lock_path,
                     strerror(errno));
            sqlite_disconnect(c);
            return NULL;
        }
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(cfg->db, &c->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "cannot open %s: %s", cfg->db,
                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite_disconnect(c);
        return NULL;
    }
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;"
             " PRAGMA wal_autocheckpoint = 0;",
             cfg->durability == DURABILITY_FULL ? "FULL" : "NORMAL");
    sqlite3_busy_timeout(c->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "cannot configure %s: %s", cfg->db, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite_disconnect(c);
        return NULL;
    }
    if (writer) sqlite3_wal_hook(c->db, sqlite_wal_hook, c);
    /* The writer's connection prepares in setup(), once the tables exist; every
     * other connection opens after that. */
    if (!writer && sqlite_prepare(c, err, err_size) != 0) {
        sqlite_disconnect(c);
        return NULL;
    }
    return c;
}

/* Statements are prepared after setup() has created the tables. */
static int sqlite_prepare(struct store_conn *c, char *err, size_t err_size)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (c->st[i]) continue;
        if (sqlite3_prepare_v3(c->db, sqlite_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, err_size, "cannot prepare '%s': %s", sqlite_sql[i], sqlite3_errmsg(c->db));
            return -1;
        }
    }
    return 0;
}

static int sqlite_user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Runs sql and sets user_version in one transaction: all of it or none. */
static int sqlite_schema_step(struct store_conn *c, const char *sql, int version, char *err,
                              size_t err_size)
{
    char *msg = NULL, set[64];
    snprintf(set, sizeof set, "PRAGMA user_version = %d;", version);
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, set, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "cannot bring the schema to version %d: %s", version, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* orders_sale_user (see sql/schema.sql) exists exactly while the database decides
 * the per-user limit itself (--inventory sqlite): every other strategy holds users
 * to the limit in memory and would only pay for the index on every purchase. */
static int sqlite_user_index(struct store_conn *c, bool wanted, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    bool present = false;
    if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'orders_sale_user'",
                           -1, &st, NULL) == SQLITE_OK)
        present = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (present == wanted) return 0;
    char *msg = NULL;
    if (sqlite3_exec(c->db,
                     wanted ? "CREATE INDEX orders_sale_user ON orders (sale_id, user_id)"
                            : "DROP INDEX orders_sale_user",
                     NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "cannot %s index orders_sale_user: %s", wanted ? "create" : "drop", msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    LOG_INFO("store: %s the per-user index orders_sale_user (%s)", wanted ? "created" : "dropped",
             wanted ? "--inventory sqlite checks the limit in SQL" : "the memory ledger holds the limit");
    return 0;
}

/* The order secret from table meta, made and kept there at the first start (the
 * writer's file lock makes this process the only one that could). */
static int sqlite_order_secret(struct store_conn *c, uint8_t secret[STORE_SECRET_LEN], char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "SELECT value FROM meta WHERE name = 'order_secret'", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == STORE_SECRET_LEN;
    if (found) memcpy(secret, sqlite3_column_blob(st, 0), STORE_SECRET_LEN);
    sqlite3_finalize(st);
    if (found) return 0;
    if (rc != SQLITE_DONE) {
        snprintf(err, err_size, "cannot read the order secret: %s",
                 rc == SQLITE_ROW ? "it is not 32 bytes" : sqlite3_errmsg(c->db));
        return -1;
    }
    if (getrandom(secret, STORE_SECRET_LEN, 0) != STORE_SECRET_LEN) {
        snprintf(err, err_size, "cannot make the order secret: %s", strerror(errno));
        return -1;
    }
    rc = sqlite3_prepare_v2(c->db, "INSERT INTO meta (name, value) VALUES ('order_secret', ?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, secret, STORE_SECRET_LEN, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, err_size, "cannot keep the order secret: %s", sqlite3_errmsg(c->db));
        return -1;
    }
    LOG_INFO("store: made the order secret");
    return 0;
}

static enum outcome sqlite_setup(struct store_conn *c, const struct config *cfg, uint8_t secret[STORE_SECRET_LEN],
                                 char *err, size_t err_size)
{
    int version = sqlite_user_version(c->db);
    if (version < 0 || version > SQLITE_SCHEMA_VERSION) {
        snprintf(err, err_size, "%s has schema version %d; this flashsale knows up to %d", cfg->db,
                 version, SQLITE_SCHEMA_VERSION);
        return OUTCOME_UNAVAILABLE;
    }
    char *msg = NULL;
    if (version == 0) {
        if (sqlite_schema_step(c, schema_sqlite_sql, SQLITE_SCHEMA_VERSION, err, err_size) != 0)
            return OUTCOME_UNAVAILABLE;
        LOG_INFO("store: created schema version %d in %s", SQLITE_SCHEMA_VERSION, cfg->db);
    }
    for (size_t i = 0; i < sizeof sqlite_migrations / sizeof sqlite_migrations[0]; i++) {
        if (sqlite_migrations[i].version <= sqlite_user_version(c->db)) continue;
        if (sqlite_schema_step(c, sqlite_migrations[i].sql, sqlite_migrations[i].version, err,
                               err_size) != 0)
            return OUTCOME_UNAVAILABLE;
        LOG_INFO("store: migrated %s to schema version %d", cfg->db, sqlite_migrations[i].version);
    }
    if (sqlite_order_secret(c, secret, err, err_size) != 0) return OUTCOME_UNAVAILABLE;
    /* The per-user index serves only a strategy whose limit SQL decides. */
    bool index = inventory_traits_of((enum config_inventory)cfg->inventory)->sql_decides;
    if (sqlite_user_index(c, index, err, err_size) != 0) return OUTCOME_UNAVAILABLE;
    if (sqlite_prepare(c, err, err_size) != 0) return OUTCOME_UNAVAILABLE;
    int64_t top, floor;
    if (sqlite_order_ids(c, &top, &floor) != 0) {
        snprintf(err, err_size, "cannot read the order ids: %s", sqlite3_errmsg(c->db));
        return OUTCOME_UNAVAILABLE;
    }
    atomic_store(&sqlite_id_floor, floor > top ? floor : 0);
    if (cfg->demo_stock > 0) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO sales (id, name, stock_total, stock_left, per_user_limit, created_at)"
                 " SELECT 1, 'Demo sale', %lld, %lld, 1, %lld WHERE NOT EXISTS (SELECT 1 FROM sales)",
                 (long long)cfg->demo_stock, (long long)cfg->demo_stock, (long long)clock_wall_ms());
        if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, err_size, "cannot create the demo sale: %s", msg ? msg : "?");
            sqlite3_free(msg);
            return OUTCOME_UNAVAILABLE;
        }
        if (sqlite3_changes(c->db)) LOG_INFO("store: created demo sale 1 with %lld units", (long long)cfg->demo_stock);
    }
    return OUTCOME_OK;
}

static enum outcome sqlite_begin(struct store_conn *c)
{
    return sqlite_exec(c, ST_BEGIN) == SQLITE_DONE ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

static enum outcome sqlite_commit(struct store_conn *c)
{
    if (sqlite_exec(c, ST_COMMIT) != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    c->floor_taken = 0; /* the order above the floor is durable */
    return OUTCOME_OK;
}

/* The floor this connection took comes back when its order did not stay. */
static void sqlite_floor_return(struct store_conn *c)
{
    int64_t none = 0;
    if (c->floor_taken) atomic_compare_exchange_strong(&sqlite_id_floor, &none, c->floor_taken);
    c->floor_taken = 0;
}

static void sqlite_rollback(struct store_conn *c)
{
    sqlite_floor_return(c); /* before ROLLBACK lets another writer in */
    /* After some errors SQLite has already rolled back; ROLLBACK would then fail. */
    if (!sqlite3_get_autocommit(c->db)) sqlite_exec(c, ST_ROLLBACK);
}

/* The highest order id and the recorded floor (0 when none); -1 on failure. */
static int sqlite_order_ids(struct store_conn *c, int64_t *top, int64_t *floor)
{
    sqlite3_stmt *st = c->st[ST_MAX_ORDER];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *top = sqlite3_column_int64(st, 0);
        *floor = sqlite3_column_int64(st, 1);
    }
    sqlite_done(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static void sqlite_read_order(sqlite3_stmt *st, struct store_order *o)
{
    o->id = sqlite3_column_int64(st, 0);
    o->sale_id = sqlite3_column_int64(st, 1);
    snprintf(o->user_id, sizeof o->user_id, "%s", (const char *)sqlite3_column_text(st, 2));
    o->quantity = sqlite3_column_int64(st, 3);
    store_read_status(o, (const char *)sqlite3_column_text(st, 4));
    o->created_at = sqlite3_column_int64(st, 5);
    o->expires_at = sqlite3_column_int64(st, 6);
    o->paid_at = sqlite3_column_int64(st, 7);
}

/* Finds an order by Idempotency-Key.  OUTCOME_OK (found), NOT_FOUND or UNAVAILABLE. */
static enum outcome sqlite_order_by_key(struct store_conn *c, int64_t sale_id, const char *user,
                                        const char *key, struct store_order *out)
{
    sqlite3_stmt *st = c->st[ST_ORDER_BY_KEY];
    sqlite3_bind_int64(st, 1, sale_id);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) sqlite_read_order(st, out);
    sqlite_done(st);
    return rc == SQLITE_ROW ? OUTCOME_OK : rc == SQLITE_DONE ? OUTCOME_NOT_FOUND : OUTCOME_UNAVAILABLE;
}

/* Why the guarded UPDATE changed nothing: the limit (checked first, as the API
 * documents) or the stock. */
static enum outcome sqlite_refusal(struct store_conn *c, struct store_purchase *p)
{
    if (p->limit_held) { /* only the stock was checked: sold out, or no such sale */
        sqlite3_stmt *row = c->st[ST_SALE_ROW];
        sqlite3_bind_int64(row, 1, p->sale_id);
        int rc = sqlite3_step(row);
        sqlite_done(row);
        return rc == SQLITE_ROW ? OUTCOME_SOLD_OUT : rc == SQLITE_DONE ? OUTCOME_NOT_FOUND : OUTCOME_UNAVAILABLE;
    }
    sqlite3_stmt *st = c->st[ST_USER_UNITS];
    sqlite3_bind_int64(st, 1, p->sale_id);
    sqlite3_bind_text(st, 2, p->user_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t units = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t limit = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    bool no_sale = rc == SQLITE_ROW && sqlite3_column_type(st, 1) == SQLITE_NULL;
    sqlite_done(st);
    if (rc != SQLITE_ROW) return OUTCOME_UNAVAILABLE;
    if (no_sale) return OUTCOME_NOT_FOUND;
    return p->quantity > limit || units > limit - p->quantity ? OUTCOME_LIMIT_EXCEEDED : OUTCOME_SOLD_OUT;
}

/* One purchase inside the open transaction: the guarded UPDATE, then the INSERT.
 * Business refusals come back as their outcome with nothing written; database
 * failures as OUTCOME_UNAVAILABLE (the caller rolls the batch back).  Two
 * statements in the common case, no savepoint: a refused UPDATE writes nothing,
 * and the one write that could need undoing (an INSERT refused by a constraint
 * after the UPDATE) is undone by hand. */
static enum outcome sqlite_purchase(struct store_conn *c, struct store_purchase *p)
{
    sqlite3_stmt *st;
    int rc;
    if (!p->unguarded) {
        st = c->st[p->limit_held ? ST_TAKE_STOCK_ONLY : ST_TAKE_STOCK];
        sqlite3_bind_int64(st, 1, p->quantity);
        sqlite3_bind_int64(st, 2, p->sale_id);
        if (!p->limit_held) sqlite3_bind_text(st, 3, p->user_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite_done(st);
        if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
        if (sqlite3_changes(c->db) == 0) return sqlite_refusal(c, p);
    } else {
        st = c->st[ST_BLIND_STOCK];
        sqlite3_bind_int64(st, 1, p->unguarded_stock_left);
        sqlite3_bind_int64(st, 2, p->sale_id);
        rc = sqlite3_step(st);
        sqlite_done(st);
        if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    }

    struct store_order *o = &p->order;
    o->sale_id = p->sale_id;
    snprintf(o->user_id, sizeof o->user_id, "%s", p->user_id);
    o->quantity = p->quantity;
    o->created_at = clock_wall_ms();
    o->expires_at = p->payment_window ? o->created_at + p->payment_window * 1000 : 0;
    o->paid_at = 0;
    o->status = p->payment_window ? STORE_PENDING : STORE_CONFIRMED;
    st = c->st[ST_INSERT_ORDER];
    sqlite3_bind_int64(st, 1, o->sale_id);
    sqlite3_bind_text(st, 2, o->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, o->quantity);
    sqlite3_bind_text(st, 4, store_status_name(o->status), -1, SQLITE_STATIC);
    if (p->idem_key[0]) sqlite3_bind_text(st, 5, p->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, o->created_at);
    if (o->expires_at) sqlite3_bind_int64(st, 7, o->expires_at);
    /* a plain load first: the exchange, a write to shared memory, only after a reset */
    int64_t floor = atomic_load_explicit(&sqlite_id_floor, memory_order_relaxed), top = 0, kept;
    if (floor) floor = atomic_exchange(&sqlite_id_floor, 0);
    if (floor) { /* the first order after a reset: above every id ever given */
        c->floor_taken = floor;
        if (sqlite_order_ids(c, &top, &kept) != 0) {
            sqlite_done(st);
            sqlite_floor_return(c);
            return OUTCOME_UNAVAILABLE;
        }
        sqlite3_bind_int64(st, 8, (top > floor ? top : floor) + 1);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT)
        LOG_WARN("store: an order row was refused: %s", sqlite3_errmsg(c->db));
    sqlite_done(st);
    if (rc != SQLITE_DONE) sqlite_floor_return(c);
    if (rc == SQLITE_CONSTRAINT && !p->unguarded) {
        st = c->st[ST_GIVE_BACK];
        sqlite3_bind_int64(st, 1, p->quantity);
        sqlite3_bind_int64(st, 2, p->sale_id);
        rc = sqlite3_step(st);
        sqlite_done(st);
        return rc == SQLITE_DONE ? OUTCOME_INTERNAL : OUTCOME_UNAVAILABLE;
    }
    if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    o->id = sqlite3_last_insert_rowid(c->db);
    return OUTCOME_OK;
}

static enum outcome sqlite_create_sale(struct store_conn *c, struct store_sale *s)
{
    sqlite3_stmt *st = c->st[ST_SALE_INSERT];
    s->created_at = clock_wall_ms();
    s->stock_left = s->stock_total;
    sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, s->stock_total);
    sqlite3_bind_int64(st, 3, s->per_user_limit);
    if (s->starts_at) sqlite3_bind_int64(st, 4, s->starts_at);
    if (s->ends_at) sqlite3_bind_int64(st, 5, s->ends_at);
    sqlite3_bind_int64(st, 6, s->payment_window);
    sqlite3_bind_int64(st, 7, s->created_at);
    int rc = sqlite3_step(st);
    sqlite_done(st);
    /* A CHECK refusing the row is this job's fault alone: undo it, keep the batch. */
    if (rc == SQLITE_CONSTRAINT) return OUTCOME_INVALID;
    if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    s->id = sqlite3_last_insert_rowid(c->db);
    return OUTCOME_OK;
}

static enum outcome sqlite_reset_sale(struct store_conn *c, int64_t sale_id)
{
    int64_t top, after, floor;
    if (sqlite_order_ids(c, &top, &floor) != 0) return OUTCOME_UNAVAILABLE;
    sqlite3_bind_int64(c->st[ST_RESET_ORDERS], 1, sale_id);
    if (sqlite_exec(c, ST_RESET_ORDERS) != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    if (sqlite_order_ids(c, &after, &floor) != 0) return OUTCOME_UNAVAILABLE;
    int64_t pending = atomic_load(&sqlite_id_floor);
    if (pending > top) top = pending; /* an earlier reset's floor, not yet passed */
    if (after < top) { /* the newest orders are gone: keep their ids from coming back */
        sqlite3_bind_int64(c->st[ST_SET_FLOOR], 1, top);
        if (sqlite_exec(c, ST_SET_FLOOR) != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
        /* Set before COMMIT; should this batch roll back, the rows are still there
         * and the floor only repeats what max(id) says. */
        atomic_store(&sqlite_id_floor, top);
    }
    sqlite3_bind_int64(c->st[ST_RESET_STOCK], 1, sale_id);
    if (sqlite_exec(c, ST_RESET_STOCK) != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    return sqlite3_changes(c->db) ? OUTCOME_OK : OUTCOME_NOT_FOUND;
}

/* Closes a pending order (status 'cancelled' or 'expired') and gives its units
 * back to the sale, in the current transaction.  *closed false: someone else
 * already had (nothing given back twice). */
static enum outcome sqlite_close_order(struct store_conn *c, const struct store_order *o, enum store_status status,
                                       int64_t now, bool *closed)
{
    sqlite3_stmt *st = c->st[ST_CLOSE];
    sqlite3_bind_int64(st, 1, o->id);
    sqlite3_bind_text(st, 2, store_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = sqlite3_step(st);
    sqlite_done(st);
    if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    *closed = sqlite3_changes(c->db) == 1;
    if (!*closed) return OUTCOME_OK;
    st = c->st[ST_GIVE_BACK];
    sqlite3_bind_int64(st, 1, o->quantity);
    sqlite3_bind_int64(st, 2, o->sale_id);
    rc = sqlite3_step(st);
    sqlite_done(st);
    return rc == SQLITE_DONE ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

static enum outcome sqlite_pay_order(struct store_conn *c, const struct store_order *o, int64_t now, bool *paid)
{
    sqlite3_stmt *st = c->st[ST_PAY];
    sqlite3_bind_int64(st, 1, o->id);
    sqlite3_bind_int64(st, 2, now);
    int rc = sqlite3_step(st);
    sqlite_done(st);
    if (rc != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    *paid = sqlite3_changes(c->db) == 1;
    return OUTCOME_OK;
}

/* The sweeper: expire what is due, oldest first, at most sw->max per job. */
static enum outcome sqlite_sweep(struct store_conn *c, struct store_sweep *sw)
{
    sw->rows = calloc(sw->max ? sw->max : 1, sizeof *sw->rows);
    if (!sw->rows) return OUTCOME_UNAVAILABLE;
    sqlite3_stmt *st = c->st[ST_DUE];
    sqlite3_bind_int64(st, 1, sw->now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)sw->max);
    struct store_order due[64];
    int rc;
    /* In chunks: the statement must be reset before the UPDATEs touch its rows. */
    size_t chunk;
    do {
        chunk = 0;
        while (chunk < 64 && sw->n + chunk < sw->max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct store_order *o = &due[chunk++];
            o->id = sqlite3_column_int64(st, 0);
            o->sale_id = sqlite3_column_int64(st, 1);
            snprintf(o->user_id, sizeof o->user_id, "%s", (const char *)sqlite3_column_text(st, 2));
            o->quantity = sqlite3_column_int64(st, 3);
        }
        sqlite_done(st);
        for (size_t i = 0; i < chunk; i++) {
            bool closed = false;
            if (sqlite_close_order(c, &due[i], STORE_EXPIRED, sw->now_ms, &closed) != OUTCOME_OK)
                return OUTCOME_UNAVAILABLE;
            if (!closed) continue;
            struct store_expired *e = &sw->rows[sw->n++];
            e->sale_id = due[i].sale_id;
            e->quantity = due[i].quantity;
            memcpy(e->user_id, due[i].user_id, sizeof e->user_id);
        }
        sqlite3_bind_int64(st, 1, sw->now_ms);
        sqlite3_bind_int64(st, 2, (int64_t)(sw->max - sw->n));
    } while (chunk == 64 && sw->n < sw->max);
    return OUTCOME_OK;
}

/* One purchase at a time (batch_buys false): each is its own guarded UPDATE. */
static enum outcome sqlite_buy(struct store_conn *c, struct store_job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        jobs[i]->outcome = sqlite_purchase(c, &jobs[i]->u.purchase);
        if (jobs[i]->outcome == OUTCOME_UNAVAILABLE) return OUTCOME_UNAVAILABLE;
    }
    return OUTCOME_OK;
}

/* The WAL restarts from its beginning only when a write transaction begins after
 * every frame was copied back, which a busy writer never waits for: the
 * housekeeper keeps copying, and past SQLITE_WAL_RESTART_PAGES the writer runs one
 * PASSIVE checkpoint itself, between batches.  Most frames are already copied by
 * then, so it is short, and the file stops growing. */
#define SQLITE_WAL_RESTART_PAGES 8192

static int sqlite_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    ((struct store_conn *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

static void sqlite_after_commit(struct store_conn *c)
{
    if (c->wal_pages < SQLITE_WAL_RESTART_PAGES) return;
    c->wal_pages = 0;
    if (sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) != SQLITE_OK)
        LOG_WARN("store: checkpoint: %s", sqlite3_errmsg(c->db));
}

static void sqlite_housekeep(struct store_conn *c, const struct store_events *ev)
{
    /* PASSIVE copies what it can without blocking the writer or readers; the
     * writer restarts the WAL from its start once everything was copied. */
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
        LOG_WARN("store: checkpoint: %s", sqlite3_errmsg(c->db));
}

static enum outcome sqlite_load(struct store_conn *c, void (*each)(void *, const struct store_sale *),
                                void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    static const char sales_sql[] =
        "SELECT s.id, s.name, s.stock_total, s.stock_left, s.per_user_limit, s.starts_at,"
        " s.ends_at, s.payment_window, s.created_at,"
        " COALESCE(SUM(CASE WHEN o.status IN " STORE_SQL_LIVE " THEN o.quantity END), 0),"
        " COUNT(CASE WHEN o.status IN " STORE_SQL_LIVE " THEN 1 END),"
        " COALESCE(SUM(CASE WHEN o.status = 'pending' THEN o.quantity END), 0),"
        " COALESCE(SUM(CASE WHEN o.status = 'paid' THEN o.quantity END), 0),"
        " COALESCE(SUM(CASE WHEN o.status = 'expired' THEN o.quantity END), 0),"
        " COALESCE(SUM(CASE WHEN o.status = 'cancelled' THEN o.quantity END), 0)"
        " FROM sales s LEFT JOIN orders o ON o.sale_id = s.id GROUP BY s.id ORDER BY s.id";
    static const char held_sql[] = "SELECT sale_id, user_id, SUM(quantity) FROM orders"
                                   " WHERE status IN " STORE_SQL_LIVE " GROUP BY sale_id, user_id";
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(c->db, sales_sql, -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_sale s = {0};
        s.id = sqlite3_column_int64(st, 0);
        snprintf(s.name, sizeof s.name, "%s", (const char *)sqlite3_column_text(st, 1));
        s.stock_total = sqlite3_column_int64(st, 2);
        s.stock_left = sqlite3_column_int64(st, 3);
        s.per_user_limit = sqlite3_column_int64(st, 4);
        s.starts_at = sqlite3_column_int64(st, 5);
        s.ends_at = sqlite3_column_int64(st, 6);
        s.payment_window = sqlite3_column_int64(st, 7);
        s.created_at = sqlite3_column_int64(st, 8);
        s.sold = sqlite3_column_int64(st, 9);
        s.orders = sqlite3_column_int64(st, 10);
        s.pending = sqlite3_column_int64(st, 11);
        s.paid = sqlite3_column_int64(st, 12);
        s.expired = sqlite3_column_int64(st, 13);
        s.cancelled = sqlite3_column_int64(st, 14);
        each(ctx, &s);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == SQLITE_DONE) rc = sqlite3_prepare_v2(c->db, held_sql, -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        held(ctx, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
             sqlite3_column_int64(st, 2));
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_DONE) {
        LOG_ERROR("store: loading sales failed: %s", sqlite3_errmsg(c->db));
        return OUTCOME_UNAVAILABLE;
    }
    return OUTCOME_OK;
}

static enum outcome sqlite_order_get(struct store_conn *c, int64_t id, struct store_order *out)
{
    sqlite3_stmt *st = c->st[ST_ORDER_GET];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) sqlite_read_order(st, out);
    sqlite_done(st);
    return rc == SQLITE_ROW ? OUTCOME_OK : rc == SQLITE_DONE ? OUTCOME_NOT_FOUND : OUTCOME_UNAVAILABLE;
}

static enum outcome sqlite_audit_begin(struct store_conn *c, int64_t sale_id, struct store_audit *out)
{
    if (sqlite_exec(c, ST_BEGIN_READ) != SQLITE_DONE) return OUTCOME_UNAVAILABLE;
    sqlite3_stmt *st = c->st[ST_SALE_ROW];
    sqlite3_bind_int64(st, 1, sale_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->stock_total = sqlite3_column_int64(st, 0);
        out->stock_left = sqlite3_column_int64(st, 1);
        out->per_user_limit = sqlite3_column_int64(st, 2);
    }
    sqlite_done(st);
    if (rc != SQLITE_ROW) sqlite_exec(c, ST_ROLLBACK);
    return rc == SQLITE_ROW ? OUTCOME_OK : rc == SQLITE_DONE ? OUTCOME_NOT_FOUND : OUTCOME_UNAVAILABLE;
}

static enum outcome sqlite_audit_finish(struct store_conn *c, int64_t sale_id, struct store_audit *out)
{
    sqlite3_stmt *st = c->st[ST_AUDIT_UNITS];
    sqlite3_bind_int64(st, 1, sale_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->orders = sqlite3_column_int64(st, 0);
        out->units_sold = sqlite3_column_int64(st, 1);
    }
    sqlite_done(st);
    if (rc == SQLITE_ROW) {
        st = c->st[ST_AUDIT_STATUS];
        sqlite3_bind_int64(st, 1, sale_id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            out->pending = sqlite3_column_int64(st, 0);
            out->paid = sqlite3_column_int64(st, 1);
            out->confirmed = sqlite3_column_int64(st, 2);
            out->expired = sqlite3_column_int64(st, 3);
            out->cancelled = sqlite3_column_int64(st, 4);
            out->paid_late = sqlite3_column_int64(st, 5);
        }
        sqlite_done(st);
    }
    if (rc == SQLITE_ROW) {
        st = c->st[ST_AUDIT_OVER];
        sqlite3_bind_int64(st, 1, sale_id);
        sqlite3_bind_int64(st, 2, out->per_user_limit);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) out->users_over_limit = sqlite3_column_int64(st, 0);
        sqlite_done(st);
    }
    sqlite_exec(c, ST_COMMIT);
    return rc == SQLITE_ROW ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

const struct store_backend store_sqlite = {
    .kind = "sqlite",
    .schemes = NULL, /* any path that no other backend claims */
    .shared = false, /* the writer's lock file keeps other processes out */
    .batch_buys = false,
    .buy_replays = false,
    .housekeep_ms = 200,
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .setup = sqlite_setup,
    .load = sqlite_load,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .buy = sqlite_buy,
    .create_sale = sqlite_create_sale,
    .reset_sale = sqlite_reset_sale,
    .sweep = sqlite_sweep,
    /* one writer at a time: reading the order is enough to own it */
    .order_lock = sqlite_order_get,
    .order_close = sqlite_close_order,
    .order_pay = sqlite_pay_order,
    .order_get = sqlite_order_get,
    .order_by_key = sqlite_order_by_key,
    .audit_begin = sqlite_audit_begin,
    .audit_finish = sqlite_audit_finish,
    .housekeep = sqlite_housekeep,
    .after_commit = sqlite_after_commit,
};

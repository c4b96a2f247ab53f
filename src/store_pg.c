/* store_pg — the PostgreSQL backend of store (see store_int.h), for several nodes
 * on one database (--db postgresql://...).
 *
 * The database is the arbiter across nodes: a group commit sends all its purchases
 * to flashsale_buy() (sql/schema_pg.sql) in one round trip, where each is guarded
 * by the sale's row lock and a fresh count of the user's live units; nothing is
 * acknowledged before COMMIT.  Purchases are sorted by sale before the call so
 * batches lock sale rows in one order; a deadlock or serialization failure anyway
 * makes store.c run the batch again.
 *
 * Memory on each node is a cache: the housekeeper's connection LISTENs on channel
 * 'flashsale' (soldout:<id>, changed:<id>, reset:<id>, each followed by :<origin>,
 * the sending process's random id; sent by whichever node made the change, at its
 * COMMIT) and re-reads every sale once a second, and hands what it learns to
 * store_events, with the time before it read: memory changed after that is newer
 * and is not overwritten.  A node hears its own news too; memory already did what
 * those say, and a reset's forgetting of the per-user ledger must then not run
 * again over purchases made since.
 *
 * A lost link (the database restarted, the network cut it) is mended here, at
 * the next use of the connection outside a transaction (pg_ready): PQreset,
 * then the statements are prepared again.  Never inside one: what the
 * transaction had done died with the link, or, when the link died after COMMIT
 * was sent, nobody here knows yet whether it committed.  That one the writer
 * asks about once the link is mended (pg_committed: txid_status() of the id
 * pg_begin noted), and answers 201 or 503 by what the database says; while
 * nobody can tell, nobody is told 201.  The verdict is the first new order's row,
 * not txid_status() alone: a crash can lose the WAL of a transaction that never
 * committed, and the server then hands its id to another one.
 * A link that stays silent (a network cut that drops packets rather than
 * resetting) is given up after PG_ANSWER_MS, and the server ends a transaction
 * whose node went silent after PG_IDLE_IN_TXN, so that its row locks do not stop
 * the other nodes for as long as the cut lasts.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "schema_sql.h"
#include "store_int.h"

#define PG_SCHEMA_VERSION 2
#define PG_RECONNECT_MS 100 /* least time between two tries to mend one lost link */
#define PG_CONNECT_TIMEOUT "3" /* s, unless the URI says otherwise: a dead host must not hold a thread */
#define PG_ANSWER_MS 10000      /* an answer slower than this: the link is given up (503) */
/* Our transactions never wait on us for more than moments; the server ends one
 * that does (a node cut off mid-transaction), freeing its locks.  Shorter than
 * PG_ANSWER_MS, so another node's lock wait ends before it gives up. */
#define PG_IDLE_IN_TXN "-c idle_in_transaction_session_timeout=5000"
#define PG_REFRESH_EVERY 100 /* housekeeping rounds (of .housekeep_ms, below) between full refreshes */
#define SALE_COLUMNS                                                                         \
    "s.id, s.name, s.stock_total, s.stock_left, s.per_user_limit, coalesce(s.starts_at, 0)," \
    " coalesce(s.ends_at, 0), s.payment_window, s.created_at,"                               \
    " coalesce(sum(o.quantity) FILTER (WHERE o.status IN " STORE_SQL_LIVE "), 0),"           \
    " count(o.id) FILTER (WHERE o.status IN " STORE_SQL_LIVE "),"                            \
    " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'pending'), 0),"                     \
    " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'paid'), 0),"                        \
    " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'expired'), 0),"                     \
    " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'cancelled'), 0)"

struct store_conn {
    const struct store_backend *be; /* first, see store_int.h */
    PGconn *pg;
    bool retry;     /* the last failure was a deadlock or serialization failure */
    bool listening; /* the housekeeper's: LISTEN flashsale is on */
    bool in_txn;    /* between pg_begin and pg_commit/pg_rollback: never reconnect */
    int64_t xid;    /* txid_current() of the transaction pg_begin opened; 0 = none */
    bool committing; /* its COMMIT was sent */
    unsigned rounds;
    uint64_t round_ns; /* the housekeeper's: when its last round began */
    uint64_t lost_ns, next_try_ns; /* since when the link is down (0 = up); when to try mending it again */
};

/* This process, in the notifications it sends. */
static unsigned long long pg_origin;
static pthread_once_t pg_origin_once = PTHREAD_ONCE_INIT;

static void pg_origin_init(void)
{
    if (getrandom(&pg_origin, sizeof pg_origin, 0) != (ssize_t)sizeof pg_origin)
        pg_origin = ((unsigned long long)getpid() << 32) ^ (unsigned long long)clock_mono_ns();
}

static const struct {
    const char *name, *sql;
} pg_statements[] = {
    {"order_get", "SELECT " STORE_SQL_ORDER " FROM orders WHERE id = $1"},
    {"order_lock", "SELECT " STORE_SQL_ORDER " FROM orders WHERE id = $1 FOR UPDATE"},
    {"order_by_key", "SELECT " STORE_SQL_ORDER " FROM orders"
                     " WHERE sale_id = $1 AND user_id = $2 AND idempotency_key = $3"},
    {"buy", "SELECT idx, outcome, order_id, quantity, status, created_at, coalesce(expires_at, 0)"
            " FROM flashsale_buy($1, $2, $3, $4, $5, $6, $7, $8)"},
    {"sale_insert", "INSERT INTO sales (name, stock_total, stock_left, per_user_limit, starts_at,"
                    " ends_at, payment_window, created_at)"
                    " VALUES ($1, $2, $2, $3, nullif($4, 0), nullif($5, 0), $6, $7) RETURNING id"},
    {"reset_orders", "DELETE FROM orders WHERE sale_id = $1"},
    {"reset_stock", "UPDATE sales SET stock_left = stock_total WHERE id = $1"},
    {"pay", "UPDATE orders SET status = 'paid', paid_at = $2"
            " WHERE id = $1 AND status = 'pending' AND expires_at > $2"},
    {"close", "UPDATE orders SET status = $2, closed_at = $3 WHERE id = $1 AND status = 'pending'"},
    {"give_back", "UPDATE sales SET stock_left = stock_left + $1 WHERE id = $2"},
    {"sweep", "UPDATE orders SET status = 'expired', closed_at = $1 WHERE id IN"
              " (SELECT id FROM orders WHERE status = 'pending' AND expires_at <= $1"
              "  ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
              " RETURNING sale_id, user_id, quantity"},
    {"notify", "SELECT pg_notify('flashsale', $1)"},
    {"txid_status", "SELECT txid_status($1)"},
    {"order_there", "SELECT 1 FROM orders WHERE id = $1 AND sale_id = $2 AND user_id = $3 AND created_at = $4"},
    {"sale_row", "SELECT stock_total, stock_left, per_user_limit FROM sales WHERE id = $1"},
    {"audit_status", "SELECT"
                     " coalesce(sum(quantity) FILTER (WHERE status = 'pending'), 0),"
                     " coalesce(sum(quantity) FILTER (WHERE status = 'paid'), 0),"
                     " coalesce(sum(quantity) FILTER (WHERE status = 'confirmed'), 0),"
                     " coalesce(sum(quantity) FILTER (WHERE status = 'expired'), 0),"
                     " coalesce(sum(quantity) FILTER (WHERE status = 'cancelled'), 0),"
                     " count(*) FILTER (WHERE status = 'paid' AND paid_at >= expires_at),"
                     " count(*) FILTER (WHERE status IN " STORE_SQL_LIVE ")"
                     " FROM orders WHERE sale_id = $1"},
    {"audit_over", "SELECT count(*) FROM (SELECT 1 FROM orders WHERE sale_id = $1 AND status IN " STORE_SQL_LIVE
                   " GROUP BY user_id HAVING sum(quantity) > $2) t"},
    {"sales_all", "SELECT " SALE_COLUMNS " FROM sales s LEFT JOIN orders o ON o.sale_id = s.id"
                  " GROUP BY s.id ORDER BY s.id"},
    {"sale_one", "SELECT " SALE_COLUMNS " FROM sales s LEFT JOIN orders o ON o.sale_id = s.id"
                 " WHERE s.id = $1 GROUP BY s.id"},
    {"held", "SELECT sale_id, user_id, sum(quantity) FROM orders WHERE status IN " STORE_SQL_LIVE
             " GROUP BY sale_id, user_id"},
};

/* ---- small helpers ------------------------------------------------------------- */

static int64_t pg_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* True for SQLSTATEs worth running the batch again for. */
static bool pg_retryable(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0);
}

/* After a PQsend*() that returned `sent`: the last result of what was sent, as
 * PQexec() would give it, waiting at most PG_ANSWER_MS.  A silent link is then
 * given up: shut down under libpq, which finds it dead (CONNECTION_BAD, so
 * pg_ready mends it), and the caller gets an error result or NULL. */
static PGresult *pg_answer(struct store_conn *c, int sent)
{
    if (!sent) return NULL;
    uint64_t deadline = clock_mono_ns() + PG_ANSWER_MS * 1000000ull;
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c->pg)) { /* else PQgetResult() would wait, without a bound */
            uint64_t now = clock_mono_ns();
            struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
            int got = now < deadline ? poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) : 0;
            if (got < 0 && errno == EINTR) continue;
            if (got == 0) {
                LOG_WARN("pg: no answer in %d ms; giving the link up", PG_ANSWER_MS);
                shutdown(PQsocket(c->pg), SHUT_RDWR);
            }
            if (!PQconsumeInput(c->pg)) break; /* PQgetResult says why, at once */
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r) return last;
        PQclear(last);
        last = r;
    }
}

/* Runs a prepared statement with text parameters; NULL (and a logged warning,
 * c->retry set when worth retrying) unless it returned `want`. */
static PGresult *pg_run(struct store_conn *c, const char *name, int n, const char *const *values,
                        ExecStatusType want)
{
    PGresult *r = pg_answer(c, PQsendQueryPrepared(c->pg, name, n, values, NULL, NULL, 0));
    if (PQresultStatus(r) == want) return r;
    c->retry = pg_retryable(r);
    LOG_WARN("pg: %s: %s", name, PQerrorMessage(c->pg));
    PQclear(r);
    return NULL;
}

static int pg_exec(struct store_conn *c, const char *sql)
{
    PGresult *r = pg_answer(c, PQsendQuery(c->pg, sql));
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        c->retry = pg_retryable(r);
        LOG_WARN("pg: %s: %s", sql, PQerrorMessage(c->pg));
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static void pg_notify(struct store_conn *c, const char *what, int64_t sale_id)
{
    char msg[64];
    pthread_once(&pg_origin_once, pg_origin_init);
    snprintf(msg, sizeof msg, "%s:%lld:%llx", what, (long long)sale_id, pg_origin);
    const char *v[] = {msg};
    PGresult *r = pg_run(c, "notify", 1, v, PGRES_TUPLES_OK);
    PQclear(r);
}

#define PG_NUM(buf, v) (snprintf((buf), sizeof(buf), "%lld", (long long)(v)), (buf))

/* ---- connections and schema ------------------------------------------------------ */

static void pg_disconnect(struct store_conn *c)
{
    if (!c) return;
    PQfinish(c->pg);
    free(c);
}

static int pg_prepare(struct store_conn *c, char *err, size_t err_size)
{
    for (size_t i = 0; i < sizeof pg_statements / sizeof pg_statements[0]; i++) {
        PGresult *r = pg_answer(c, PQsendPrepare(c->pg, pg_statements[i].name, pg_statements[i].sql, 0, NULL));
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(err, err_size, "cannot prepare %s: %s", pg_statements[i].name, PQerrorMessage(c->pg));
            PQclear(r);
            return -1;
        }
        PQclear(r);
    }
    return 0;
}

static struct store_conn *pg_connect(const struct config *cfg, bool writer, char *err, size_t err_size)
{
    struct store_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    c->be = &store_pg;
    /* connect_timeout first, so that the URI's own wins. */
    const char *const keys[] = {"connect_timeout", "options", "dbname", NULL};
    const char *const values[] = {PG_CONNECT_TIMEOUT, PG_IDLE_IN_TXN, cfg->db, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        snprintf(err, err_size, "cannot connect to PostgreSQL: %s", PQerrorMessage(c->pg));
        pg_disconnect(c);
        return NULL;
    }
    /* Statements are prepared after setup() created the function they call. */
    if (!writer && pg_prepare(c, err, err_size) != 0) {
        pg_disconnect(c);
        return NULL;
    }
    return c;
}

/* Outside a transaction only: 0 when c's link is up, mending it first if it was
 * lost; -1 while it stays down.  Tries are spaced by PG_RECONNECT_MS, or by as
 * long as the last failed try took (a silent host: connect_timeout), so that a
 * database that is down costs a refused connect now and then, not per request,
 * and a thread spends at most half its time waiting on a silent one. */
static int pg_ready(struct store_conn *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK && !c->lost_ns) return 0;
    uint64_t now = clock_mono_ns();
    if (c->in_txn || (c->lost_ns && now < c->next_try_ns)) return -1;
    if (!c->lost_ns) {
        c->lost_ns = now;
        LOG_WARN("pg: the connection is lost (%s); reconnecting", PQerrorMessage(c->pg));
    }
    if (PQstatus(c->pg) != CONNECTION_OK) PQreset(c->pg);
    uint64_t took = clock_mono_ns() - now;
    c->next_try_ns = clock_mono_ns() + (took > PG_RECONNECT_MS * 1000000ull ? took : PG_RECONNECT_MS * 1000000ull);
    if (PQstatus(c->pg) != CONNECTION_OK) return -1;
    /* up again, but the statements are not: prepare them (from scratch, if an
     * earlier try got halfway) */
    char err[256] = "DEALLOCATE failed";
    if (pg_exec(c, "DEALLOCATE ALL") != 0 || pg_prepare(c, err, sizeof err) != 0) {
        LOG_WARN("pg: reconnected, but %s", err);
        return -1;
    }
    LOG_INFO("pg: reconnected after %.1f s", (double)(clock_mono_ns() - c->lost_ns) / 1e9);
    c->lost_ns = 0;
    c->listening = false; /* LISTEN again; what was said meanwhile is lost, so re-read all */
    return 0;
}

/* For a first statement that changes nothing (BEGIN, a read): when it failed on a
 * link that was already dead (unnoticed while idle), mend the link and run it
 * once more.  Anything else must not be run twice. */
static bool pg_again(struct store_conn *c)
{
    return PQstatus(c->pg) == CONNECTION_BAD && pg_ready(c) == 0;
}

/* The order secret every node shares: the first node to start inserts its own
 * random bytes, every later one (or a racer, should the lock ever be skipped)
 * reads the row that is there. */
static int pg_order_secret(struct store_conn *c, uint8_t secret[STORE_SECRET_LEN], char *err, size_t err_size)
{
    uint8_t mine[STORE_SECRET_LEN];
    char hex[2 * STORE_SECRET_LEN + 3] = "\\x";
    if (getrandom(mine, sizeof mine, 0) != (ssize_t)sizeof mine) {
        snprintf(err, err_size, "cannot make the order secret: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < STORE_SECRET_LEN; i++) snprintf(hex + 2 + 2 * i, 3, "%02x", mine[i]);
    memset(mine, 0, sizeof mine);
    const char *v[] = {hex};
    PGresult *r = PQexecParams(c->pg,
                               "INSERT INTO flashsale_meta (name, value) VALUES ('order_secret', $1::bytea)"
                               " ON CONFLICT (name) DO NOTHING",
                               1, NULL, v, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (ok && strcmp(PQcmdTuples(r), "1") == 0) LOG_INFO("store: made the order secret");
    PQclear(r);
    memset(hex, 0, sizeof hex);
    /* Binary result: the bytes as they are. */
    r = ok ? PQexecParams(c->pg, "SELECT value FROM flashsale_meta WHERE name = 'order_secret'", 0, NULL, NULL,
                          NULL, NULL, 1)
           : NULL;
    ok = ok && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
         PQgetlength(r, 0, 0) == STORE_SECRET_LEN;
    if (ok) memcpy(secret, PQgetvalue(r, 0, 0), STORE_SECRET_LEN);
    else snprintf(err, err_size, "cannot read the order secret: %s", PQerrorMessage(c->pg));
    PQclear(r);
    return ok ? 0 : -1;
}

static enum outcome pg_setup(struct store_conn *c, const struct config *cfg, uint8_t secret[STORE_SECRET_LEN],
                             char *err, size_t err_size)
{
    /* One node at a time: the first creates, the others find it done. */
    if (pg_exec(c, "SELECT pg_advisory_lock(715517)") != 0) {
        snprintf(err, err_size, "cannot take the schema lock: %s", PQerrorMessage(c->pg));
        return OUTCOME_UNAVAILABLE;
    }
    enum outcome rc = OUTCOME_UNAVAILABLE;
    PGresult *r = PQexec(c->pg, schema_pg_sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, err_size, "cannot create the schema: %s", PQerrorMessage(c->pg));
        goto out;
    }
    PQclear(r);
    r = PQexec(c->pg, "SELECT coalesce(max(version), 0) FROM flashsale_schema");
    int version = PQresultStatus(r) == PGRES_TUPLES_OK ? (int)pg_int(r, 0, 0) : -1;
    if (version > PG_SCHEMA_VERSION || version < 0) {
        snprintf(err, err_size, "the database has schema version %d; this flashsale knows up to %d", version,
                 PG_SCHEMA_VERSION);
        goto out;
    }
    /* Version 2 added flashsale_meta (created above with the rest); a version 1
     * database needs nothing else, and an older flashsale, which would serve
     * orders without asking for their tokens, now refuses to start on it. */
    if (version < PG_SCHEMA_VERSION && pg_exec(c, "INSERT INTO flashsale_schema VALUES (2)") != 0) goto out;
    if (pg_order_secret(c, secret, err, err_size) != 0) goto out;
    if (pg_prepare(c, err, err_size) != 0) goto out;
    if (cfg->demo_stock > 0) {
        char sql[320];
        snprintf(sql, sizeof sql,
                 "INSERT INTO sales (name, stock_total, stock_left, per_user_limit, created_at)"
                 " SELECT 'Demo sale', %lld, %lld, 1, %lld WHERE NOT EXISTS (SELECT 1 FROM sales)",
                 (long long)cfg->demo_stock, (long long)cfg->demo_stock, (long long)clock_wall_ms());
        if (pg_exec(c, sql) != 0) goto out;
    }
    rc = OUTCOME_OK;
out:
    PQclear(r);
    pg_exec(c, "SELECT pg_advisory_unlock(715517)");
    return rc;
}

static enum outcome pg_begin(struct store_conn *c)
{
    c->retry = false;
    c->xid = 0;
    c->committing = false;
    if (pg_ready(c) != 0) return OUTCOME_UNAVAILABLE;
    /* one round trip: the id is what pg_committed asks about if the COMMIT's answer is lost */
    static const char begin[] = "BEGIN; SELECT txid_current()";
    PGresult *r = pg_answer(c, PQsendQuery(c->pg, begin));
    if (PQresultStatus(r) != PGRES_TUPLES_OK && pg_again(c)) {
        PQclear(r);
        r = pg_answer(c, PQsendQuery(c->pg, begin));
    }
    c->in_txn = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (c->in_txn) c->xid = pg_int(r, 0, 0);
    else LOG_WARN("pg: BEGIN: %s", PQerrorMessage(c->pg));
    PQclear(r);
    return c->in_txn ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

/* Only a transaction whose COMMIT was sent can have committed. */
static int64_t pg_txn(struct store_conn *c) { return c->committing ? c->xid : 0; }

/* After a failed COMMIT of transaction xid, whose jobs are given: OUTCOME_OK if
 * it committed all the same (the answer was lost with the link), NOT_FOUND if
 * not, or if that can no longer be told (no new order among the jobs to look
 * for), UNAVAILABLE while it cannot be told yet (the database out of reach, or the
 * transaction still open on a link that went silent: the server ends it within
 * PG_IDLE_IN_TXN). */
static enum outcome pg_committed(struct store_conn *c, int64_t xid, struct store_job *const *jobs, size_t n)
{
    if (!xid) return OUTCOME_NOT_FOUND; /* its COMMIT was never sent */
    if (pg_ready(c) != 0) return OUTCOME_UNAVAILABLE;
    char a[24], b[24], d[24];
    const char *v[] = {PG_NUM(a, xid)};
    PGresult *r = pg_run(c, "txid_status", 1, v, PGRES_TUPLES_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    bool open = PQgetisnull(r, 0, 0) || strcmp(PQgetvalue(r, 0, 0), "in progress") == 0;
    PQclear(r);
    if (open) return OUTCOME_UNAVAILABLE; /* its id may be another's by now (see the top); either way, ask later */
    const struct store_purchase *p = NULL;
    for (size_t i = 0; i < n && !p; i++)
        if (jobs[i]->op == STORE_PURCHASE && jobs[i]->outcome == OUTCOME_OK && !jobs[i]->u.purchase.replayed)
            p = &jobs[i]->u.purchase;
    if (!p) return OUTCOME_NOT_FOUND;
    const char *w[] = {PG_NUM(a, p->order.id), PG_NUM(b, p->sale_id), p->user_id, PG_NUM(d, p->order.created_at)};
    r = pg_run(c, "order_there", 4, w, PGRES_TUPLES_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    enum outcome o = PQntuples(r) > 0 ? OUTCOME_OK : OUTCOME_NOT_FOUND;
    PQclear(r);
    return o;
}

static enum outcome pg_commit(struct store_conn *c)
{
    c->in_txn = false; /* whatever the answer: after a lost one, the link is mended at the next BEGIN */
    c->committing = true;
    return pg_exec(c, "COMMIT") == 0 ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

static void pg_rollback(struct store_conn *c)
{
    /* A lost link has rolled back by itself (or committed: see the top). */
    c->in_txn = false;
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) pg_exec(c, "ROLLBACK");
}

static bool pg_retry(struct store_conn *c) { return c->retry; }

/* ---- orders ---------------------------------------------------------------------- */

static void pg_read_order(const PGresult *r, int row, struct store_order *o)
{
    o->id = pg_int(r, row, 0);
    o->sale_id = pg_int(r, row, 1);
    snprintf(o->user_id, sizeof o->user_id, "%s", PQgetvalue(r, row, 2));
    o->quantity = pg_int(r, row, 3);
    store_read_status(o, PQgetvalue(r, row, 4));
    o->created_at = pg_int(r, row, 5);
    o->expires_at = pg_int(r, row, 6);
    o->paid_at = pg_int(r, row, 7);
}

static enum outcome pg_order_query(struct store_conn *c, const char *stmt, int n, const char *const *v,
                                   struct store_order *out)
{
    bool alone = !c->in_txn; /* not the settle's lock, which must stay in its transaction */
    if (alone && pg_ready(c) != 0) return OUTCOME_UNAVAILABLE;
    PGresult *r = pg_run(c, stmt, n, v, PGRES_TUPLES_OK);
    if (!r && alone && pg_again(c)) r = pg_run(c, stmt, n, v, PGRES_TUPLES_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    enum outcome o = PQntuples(r) ? OUTCOME_OK : OUTCOME_NOT_FOUND;
    if (o == OUTCOME_OK) pg_read_order(r, 0, out);
    PQclear(r);
    return o;
}

static enum outcome pg_order_get(struct store_conn *c, int64_t id, struct store_order *out)
{
    char a[24];
    const char *v[] = {PG_NUM(a, id)};
    return pg_order_query(c, "order_get", 1, v, out);
}

static enum outcome pg_order_by_key(struct store_conn *c, int64_t sale_id, const char *user,
                                    const char *key, struct store_order *out)
{
    char a[24];
    const char *v[] = {PG_NUM(a, sale_id), user, key};
    return pg_order_query(c, "order_by_key", 3, v, out);
}

/* ---- purchases: one round trip per batch ----------------------------------------- */

/* Appends s to an array literal as a quoted element ("a\"b"), or NULL. */
static void pg_array_add(FILE *f, bool first, const char *s)
{
    fputc(first ? '{' : ',', f);
    if (!s) {
        fputs("NULL", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int pg_by_sale(const void *a, const void *b)
{
    const struct store_job *x = *(struct store_job *const *)a, *y = *(struct store_job *const *)b;
    return (x->u.purchase.sale_id > y->u.purchase.sale_id) - (x->u.purchase.sale_id < y->u.purchase.sale_id);
}

static enum outcome pg_outcome_named(const char *name)
{
    if (strcmp(name, "ok") == 0 || strcmp(name, "replay") == 0) return OUTCOME_OK;
    if (strcmp(name, "sold_out") == 0) return OUTCOME_SOLD_OUT;
    if (strcmp(name, "limit_exceeded") == 0) return OUTCOME_LIMIT_EXCEEDED;
    if (strcmp(name, "not_found") == 0) return OUTCOME_NOT_FOUND;
    return OUTCOME_INTERNAL;
}

/* Every purchase of a batch in one call (batch_buys), replays included
 * (buy_replays): flashsale_buy looks each Idempotency-Key up itself. */
static enum outcome pg_buy(struct store_conn *c, struct store_job **buys, size_t n)
{
    qsort(buys, n, sizeof *buys, pg_by_sale); /* lock sale rows in one order */
    for (size_t i = 0; i < n; i++) buys[i]->outcome = OUTCOME_INTERNAL; /* unless flashsale_buy says otherwise */
    char *text[7] = {0};
    size_t len[7];
    FILE *f[7];
    for (int k = 0; k < 7; k++) f[k] = open_memstream(&text[k], &len[k]);
    for (size_t i = 0; i < n; i++) {
        struct store_purchase *p = &buys[i]->u.purchase;
        char num[24];
        pg_array_add(f[0], i == 0, PG_NUM(num, p->sale_id));
        pg_array_add(f[1], i == 0, p->user_id);
        pg_array_add(f[2], i == 0, PG_NUM(num, p->quantity));
        pg_array_add(f[3], i == 0, p->idem_key[0] ? p->idem_key : NULL);
        pg_array_add(f[4], i == 0, PG_NUM(num, p->payment_window));
        pg_array_add(f[5], i == 0, p->unguarded ? "f" : "t");
        pg_array_add(f[6], i == 0, PG_NUM(num, p->unguarded_stock_left));
    }
    for (int k = 0; k < 7; k++) {
        fputc('}', f[k]);
        fclose(f[k]);
    }
    char now[24];
    const char *v[] = {text[0], text[1], text[2], text[3], text[4], text[5], text[6], PG_NUM(now, clock_wall_ms())};
    PGresult *r = pg_run(c, "buy", 8, v, PGRES_TUPLES_OK);
    for (int k = 0; k < 7; k++) free(text[k]);
    if (!r) return OUTCOME_UNAVAILABLE;
    for (int row = 0; row < PQntuples(r); row++) {
        size_t i = (size_t)pg_int(r, row, 0) - 1;
        if (i >= n) continue;
        struct store_job *job = buys[i];
        struct store_purchase *p = &job->u.purchase;
        const char *outcome = PQgetvalue(r, row, 1);
        job->outcome = pg_outcome_named(outcome);
        p->replayed = strcmp(outcome, "replay") == 0;
        if (job->outcome != OUTCOME_OK) continue;
        struct store_order *o = &p->order;
        o->id = pg_int(r, row, 2);
        o->sale_id = p->sale_id;
        snprintf(o->user_id, sizeof o->user_id, "%s", p->user_id);
        o->quantity = pg_int(r, row, 3);
        store_read_status(o, PQgetvalue(r, row, 4));
        o->created_at = pg_int(r, row, 5);
        o->expires_at = pg_int(r, row, 6);
        o->paid_at = 0;
    }
    PQclear(r);
    return OUTCOME_OK;
}

/* ---- admin and the payment window --------------------------------------------- */

static enum outcome pg_create_sale(struct store_conn *c, struct store_sale *s)
{
    char a[24], b[24], d[24], e[24], g[24], h[24];
    s->created_at = clock_wall_ms();
    s->stock_left = s->stock_total;
    const char *v[] = {s->name, PG_NUM(a, s->stock_total), PG_NUM(b, s->per_user_limit), PG_NUM(d, s->starts_at),
                       PG_NUM(e, s->ends_at), PG_NUM(g, s->payment_window), PG_NUM(h, s->created_at)};
    PGresult *r = pg_run(c, "sale_insert", 7, v, PGRES_TUPLES_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    s->id = pg_int(r, 0, 0);
    PQclear(r);
    pg_notify(c, "changed", s->id);
    return OUTCOME_OK;
}

static enum outcome pg_reset_sale(struct store_conn *c, int64_t sale_id)
{
    char a[24];
    const char *v[] = {PG_NUM(a, sale_id)};
    PGresult *r = pg_run(c, "reset_orders", 1, v, PGRES_COMMAND_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    PQclear(r);
    r = pg_run(c, "reset_stock", 1, v, PGRES_COMMAND_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    bool found = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (found) pg_notify(c, "reset", sale_id);
    return found ? OUTCOME_OK : OUTCOME_NOT_FOUND;
}

/* Closes a pending order and gives its units back; *closed says whether this call did. */
static enum outcome pg_close_order(struct store_conn *c, const struct store_order *o, enum store_status status,
                                   int64_t now, bool *closed)
{
    char a[24], b[24], q[24];
    const char *v[] = {PG_NUM(a, o->id), store_status_name(status), PG_NUM(b, now)};
    PGresult *r = pg_run(c, "close", 3, v, PGRES_COMMAND_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    *closed = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!*closed) return OUTCOME_OK;
    const char *g[] = {PG_NUM(q, o->quantity), PG_NUM(a, o->sale_id)};
    r = pg_run(c, "give_back", 2, g, PGRES_COMMAND_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    PQclear(r);
    pg_notify(c, "changed", o->sale_id);
    return OUTCOME_OK;
}

/* The row lock orders this against every node's sweeper and payments. */
static enum outcome pg_order_lock(struct store_conn *c, int64_t id, struct store_order *out)
{
    char a[24];
    const char *v[] = {PG_NUM(a, id)};
    return pg_order_query(c, "order_lock", 1, v, out);
}

static enum outcome pg_pay_order(struct store_conn *c, const struct store_order *o, int64_t now, bool *paid)
{
    char a[24], b[24];
    const char *v[] = {PG_NUM(a, o->id), PG_NUM(b, now)};
    PGresult *r = pg_run(c, "pay", 2, v, PGRES_COMMAND_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    *paid = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return OUTCOME_OK;
}

/* SKIP LOCKED: the sweepers of several nodes share the work, each order once. */
static enum outcome pg_sweep(struct store_conn *c, struct store_sweep *sw)
{
    free(sw->rows); /* a retried batch starts over */
    sw->n = 0;
    sw->rows = calloc(sw->max ? sw->max : 1, sizeof *sw->rows);
    if (!sw->rows) return OUTCOME_UNAVAILABLE;
    char a[24], b[24];
    const char *v[] = {PG_NUM(a, sw->now_ms), PG_NUM(b, (int64_t)sw->max)};
    PGresult *r = pg_run(c, "sweep", 2, v, PGRES_TUPLES_OK);
    if (!r) return OUTCOME_UNAVAILABLE;
    for (int row = 0; row < PQntuples(r) && sw->n < sw->max; row++) {
        struct store_expired *e = &sw->rows[sw->n++];
        e->sale_id = pg_int(r, row, 0);
        snprintf(e->user_id, sizeof e->user_id, "%s", PQgetvalue(r, row, 1));
        e->quantity = pg_int(r, row, 2);
    }
    PQclear(r);
    for (size_t i = 0; i < sw->n; i++) {
        char q[24], s[24];
        const char *g[] = {PG_NUM(q, sw->rows[i].quantity), PG_NUM(s, sw->rows[i].sale_id)};
        r = pg_run(c, "give_back", 2, g, PGRES_COMMAND_OK);
        if (!r) return OUTCOME_UNAVAILABLE;
        PQclear(r);
        if (i == 0 || sw->rows[i].sale_id != sw->rows[i - 1].sale_id) pg_notify(c, "changed", sw->rows[i].sale_id);
    }
    return OUTCOME_OK;
}

/* ---- loading, auditing, listening ------------------------------------------------ */

static void pg_read_sale(const PGresult *r, int row, struct store_sale *s)
{
    memset(s, 0, sizeof *s);
    s->id = pg_int(r, row, 0);
    snprintf(s->name, sizeof s->name, "%s", PQgetvalue(r, row, 1));
    s->stock_total = pg_int(r, row, 2);
    s->stock_left = pg_int(r, row, 3);
    s->per_user_limit = pg_int(r, row, 4);
    s->starts_at = pg_int(r, row, 5);
    s->ends_at = pg_int(r, row, 6);
    s->payment_window = pg_int(r, row, 7);
    s->created_at = pg_int(r, row, 8);
    s->sold = pg_int(r, row, 9);
    s->orders = pg_int(r, row, 10);
    s->pending = pg_int(r, row, 11);
    s->paid = pg_int(r, row, 12);
    s->expired = pg_int(r, row, 13);
    s->cancelled = pg_int(r, row, 14);
}

static enum outcome pg_load(struct store_conn *c, void (*each)(void *, const struct store_sale *),
                            void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    if (pg_ready(c) != 0 || pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ") != 0) return OUTCOME_UNAVAILABLE;
    PGresult *r = pg_run(c, "sales_all", 0, NULL, PGRES_TUPLES_OK);
    for (int row = 0; r && row < PQntuples(r); row++) {
        struct store_sale s;
        pg_read_sale(r, row, &s);
        each(ctx, &s);
    }
    int rc = r ? 0 : -1;
    PQclear(r);
    r = rc == 0 ? pg_run(c, "held", 0, NULL, PGRES_TUPLES_OK) : NULL;
    for (int row = 0; r && row < PQntuples(r); row++)
        held(ctx, pg_int(r, row, 0), PQgetvalue(r, row, 1), pg_int(r, row, 2));
    if (!r) rc = -1;
    PQclear(r);
    pg_exec(c, "COMMIT");
    return rc == 0 ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
}

static enum outcome pg_audit_begin(struct store_conn *c, int64_t sale_id, struct store_audit *out)
{
    if (pg_ready(c) != 0) return OUTCOME_UNAVAILABLE;
    if (pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ") != 0 &&
        !(pg_again(c) && pg_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ") == 0))
        return OUTCOME_UNAVAILABLE;
    char a[24];
    const char *v[] = {PG_NUM(a, sale_id)};
    PGresult *r = pg_run(c, "sale_row", 1, v, PGRES_TUPLES_OK);
    enum outcome o = !r ? OUTCOME_UNAVAILABLE : PQntuples(r) ? OUTCOME_OK : OUTCOME_NOT_FOUND;
    if (o == OUTCOME_OK) {
        out->stock_total = pg_int(r, 0, 0);
        out->stock_left = pg_int(r, 0, 1);
        out->per_user_limit = pg_int(r, 0, 2);
    }
    PQclear(r);
    if (o != OUTCOME_OK) pg_exec(c, "ROLLBACK");
    return o;
}

static enum outcome pg_audit_finish(struct store_conn *c, int64_t sale_id, struct store_audit *out)
{
    char a[24], b[24];
    const char *v[] = {PG_NUM(a, sale_id), PG_NUM(b, out->per_user_limit)};
    PGresult *r = pg_run(c, "audit_status", 1, v, PGRES_TUPLES_OK);
    enum outcome o = r ? OUTCOME_OK : OUTCOME_UNAVAILABLE;
    if (r) {
        out->pending = pg_int(r, 0, 0);
        out->paid = pg_int(r, 0, 1);
        out->confirmed = pg_int(r, 0, 2);
        out->expired = pg_int(r, 0, 3);
        out->cancelled = pg_int(r, 0, 4);
        out->paid_late = pg_int(r, 0, 5);
        out->orders = pg_int(r, 0, 6);
        out->units_sold = out->pending + out->paid + out->confirmed;
        PQclear(r);
        r = pg_run(c, "audit_over", 2, v, PGRES_TUPLES_OK);
        if (r) out->users_over_limit = pg_int(r, 0, 0);
        else o = OUTCOME_UNAVAILABLE;
        PQclear(r);
    }
    pg_exec(c, "COMMIT");
    return o;
}

static void pg_refresh(struct store_conn *c, const struct store_events *ev, int64_t sale_id)
{
    char a[24];
    const char *v[] = {PG_NUM(a, sale_id)};
    uint64_t read_ns = clock_mono_ns();
    PGresult *r = sale_id ? pg_run(c, "sale_one", 1, v, PGRES_TUPLES_OK) : pg_run(c, "sales_all", 0, NULL, PGRES_TUPLES_OK);
    for (int row = 0; r && row < PQntuples(r); row++) {
        struct store_sale s;
        pg_read_sale(r, row, &s);
        ev->sale(ev->ctx, &s, read_ns);
    }
    PQclear(r);
}

static void pg_housekeep(struct store_conn *c, const struct store_events *ev)
{
    if (!ev || pg_ready(c) != 0) return;
    pthread_once(&pg_origin_once, pg_origin_init);
    if (!c->listening) {
        c->round_ns = clock_mono_ns();
        c->listening = pg_exec(c, "LISTEN flashsale") == 0;
        if (!c->listening) return;
        pg_refresh(c, ev, 0); /* what changed while nobody listened */
    }
    /* Every notification handled now reached this connection after the last
     * round began (libpq also reads them during that round's queries). */
    uint64_t heard_ns = c->round_ns;
    c->round_ns = clock_mono_ns();
    if (!PQconsumeInput(c->pg)) LOG_WARN("pg: listening: %s", PQerrorMessage(c->pg));
    for (PGnotify *n; (n = PQnotifies(c->pg)); PQfreemem(n)) {
        char what[16];
        long long id;
        unsigned long long origin = 0;
        if (sscanf(n->extra, "%15[^:]:%lld:%llx", what, &id, &origin) < 2) continue;
        if (strcmp(what, "soldout") == 0) ev->sold_out(ev->ctx, id, heard_ns);
        else if (strcmp(what, "reset") == 0 && origin != pg_origin) ev->reset(ev->ctx, id);
        if (strcmp(what, "soldout") != 0) pg_refresh(c, ev, id);
    }
    if (++c->rounds % PG_REFRESH_EVERY == 0) pg_refresh(c, ev, 0);
}

static const char *const pg_schemes[] = {"postgresql://", "postgres://", NULL};

const struct store_backend store_pg = {
    .kind = "postgresql",
    .schemes = pg_schemes,
    .shared = true,
    .batch_buys = true,
    .buy_replays = true,
    .housekeep_ms = 10,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .setup = pg_setup,
    .load = pg_load,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .retryable = pg_retry,
    .txn = pg_txn,
    .committed = pg_committed,
    .buy = pg_buy,
    .create_sale = pg_create_sale,
    .reset_sale = pg_reset_sale,
    .sweep = pg_sweep,
    .order_lock = pg_order_lock,
    .order_close = pg_close_order,
    .order_pay = pg_pay_order,
    .order_get = pg_order_get,
    .order_by_key = pg_order_by_key,
    .audit_begin = pg_audit_begin,
    .audit_finish = pg_audit_finish,
    .housekeep = pg_housekeep,
};

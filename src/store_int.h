/* store_int — what a storage backend provides (store_sqlite.c, store_pg.c):
 * primitives only.
 *
 * store.c owns the sequencing: the queue, the writer thread, the commit lock,
 * which primitive runs when (a pay or a cancel is lock, decide, then close or pay;
 * a purchase with an Idempotency-Key is look it up, then buy) and the public
 * functions.  A backend only talks to its database and never calls into store.c;
 * where backends differ, a capability field below says so.
 *
 * One return convention: a primitive that can fail returns an enum outcome:
 * OUTCOME_OK; a business refusal of that job alone, with nothing of it written
 * (sold_out, limit_exceeded, not_found, invalid, ...); or OUTCOME_UNAVAILABLE when
 * the database failed, and the open transaction must be rolled back.  Results go
 * out through pointers.  What cannot fail returns void; retryable() and txn() are
 * questions, answered by a value.
 *
 * Every function gets the connection it runs on; a connection is used by one
 * thread at a time.  Each backend's struct store_conn begins with its backend.
 */
#ifndef FLASHSALE_STORE_INT_H
#define FLASHSALE_STORE_INT_H

#include "store.h"

/* A status as the database holds it.  The schema's CHECK allows only the five names,
 * so another one is a damaged row: it reads as confirmed, which nobody can pay or
 * cancel, rather than as something that gives units back. */
static inline void store_read_status(struct store_order *o, const char *name)
{
    if (!store_status_parse(name, &o->status)) o->status = STORE_CONFIRMED;
}

struct store_backend {
    /* ---- capabilities -------------------------------------------------------- */
    const char *kind;           /* "sqlite", "postgresql": store_kind() */
    const char *const *schemes; /* cfg->db prefixes it takes, NULL-terminated; NULL = any path */
    bool shared;                /* other nodes may write the database: memory is its cache */
    bool batch_buys;            /* buy() takes a batch's purchases in one call, after its other jobs */
    bool buy_replays;           /* buy() itself replays an Idempotency-Key it has seen */
    int housekeep_ms;           /* how often housekeep() runs */

    /* ---- connections and schema ---------------------------------------------- */
    /* A new connection (writer: the group-commit writer's, tuned for writing), or
     * NULL with a reason in err. */
    struct store_conn *(*connect)(const struct config *cfg, bool writer, char *err, size_t err_size);
    void (*disconnect)(struct store_conn *c);
    /* On the writer's connection: creates or migrates the schema and the demo sale,
     * and reads the order secret (made once for the database when missing). */
    enum outcome (*setup)(struct store_conn *c, const struct config *cfg, uint8_t secret[STORE_SECRET_LEN],
                          char *err, size_t err_size);
    /* Reads every sale, then every (sale, user) with live units. */
    enum outcome (*load)(struct store_conn *c, void (*each)(void *, const struct store_sale *),
                         void (*held)(void *, int64_t, const char *, int64_t), void *ctx);

    /* ---- transactions -------------------------------------------------------- */
    enum outcome (*begin)(struct store_conn *c); /* BEGIN IMMEDIATE (a write transaction) */
    enum outcome (*commit)(struct store_conn *c);
    void (*rollback)(struct store_conn *c); /* harmless when nothing is open */
    /* Whether the last failure on c is worth running the batch again for
     * (PostgreSQL: deadlock, serialization failure).  May be NULL: never. */
    bool (*retryable)(struct store_conn *c);

    /* When a COMMIT's answer can be lost with the link (PostgreSQL): txn() is the
     * id of the transaction whose COMMIT was last sent on c (0 = none), and
     * committed() says after a failed COMMIT whether that transaction, which ran
     * these jobs, committed all the same: OUTCOME_OK yes; OUTCOME_NOT_FOUND no (or
     * no longer knowable); OUTCOME_UNAVAILABLE not known yet (the database out of
     * reach).  Both may be NULL: a failed COMMIT then committed nothing. */
    int64_t (*txn)(struct store_conn *c);
    enum outcome (*committed)(struct store_conn *c, int64_t txn, struct store_job *const *jobs, size_t n);

    /* ---- jobs, inside the open transaction ------------------------------------ */
    /* n purchases: sets each job's outcome (and its order when OUTCOME_OK);
     * OUTCOME_UNAVAILABLE when the database failed.  n is 1 unless batch_buys. */
    enum outcome (*buy)(struct store_conn *c, struct store_job **jobs, size_t n);
    enum outcome (*create_sale)(struct store_conn *c, struct store_sale *sale); /* fills id, created_at */
    enum outcome (*reset_sale)(struct store_conn *c, int64_t sale_id);
    enum outcome (*sweep)(struct store_conn *c, struct store_sweep *sw);
    /* The payment window: the order, locked against other writers until the
     * transaction ends; pending -> status ("cancelled" or "expired") with its units
     * back on sale (*closed false: it was no longer pending); pending -> paid if
     * still before its deadline (*paid says whether it changed). */
    enum outcome (*order_lock)(struct store_conn *c, int64_t id, struct store_order *out);
    enum outcome (*order_close)(struct store_conn *c, const struct store_order *o, enum store_status status,
                                int64_t now, bool *closed);
    enum outcome (*order_pay)(struct store_conn *c, const struct store_order *o, int64_t now, bool *paid);

    /* ---- reads, on any thread's connection ------------------------------------ */
    enum outcome (*order_get)(struct store_conn *c, int64_t id, struct store_order *out);
    enum outcome (*order_by_key)(struct store_conn *c, int64_t sale_id, const char *user,
                                 const char *key, struct store_order *out);
    /* Opens a read transaction and reads the sale's row (the snapshot point); on
     * failure the transaction is already ended. */
    enum outcome (*audit_begin)(struct store_conn *c, int64_t sale_id, struct store_audit *out);
    /* Reads the rest in the same snapshot and ends the transaction. */
    enum outcome (*audit_finish)(struct store_conn *c, int64_t sale_id, struct store_audit *out);

    /* ---- upkeep ---------------------------------------------------------------- */
    /* Every housekeep_ms on a connection and a thread of its own, so the writer
     * never waits for it (SQLite: WAL checkpoints; PostgreSQL: what other nodes
     * changed, told to ev, NULL until store_listen).  May be NULL. */
    void (*housekeep)(struct store_conn *c, const struct store_events *ev);
    /* On the writer, after a commit whose answers are out: bounded, usually
     * instant (SQLite: let the WAL restart).  May be NULL. */
    void (*after_commit)(struct store_conn *c);
};

/* SQL both backends share: the statuses whose units are sold, and an order's
 * columns in the order their read_order functions expect. */
#define STORE_SQL_LIVE "('pending','paid','confirmed')"
#define STORE_SQL_ORDER "id, sale_id, user_id, quantity, status, created_at, expires_at, paid_at"

/* The backend of a connection (see the top), so store.c can dispatch on it alone. */
#define STORE_BACKEND(conn) (*(const struct store_backend *const *)(const void *)(conn))

extern const struct store_backend store_sqlite;
extern const struct store_backend store_pg;

#endif

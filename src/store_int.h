/* store_int — what a storage backend implements (store_sqlite.c, store_pg.c).
 *
 * store.c owns the queue, the writer thread, the commit lock and the public
 * functions; a backend only talks to its database.  Every function gets the
 * connection it runs on; a connection is used by one thread at a time.
 */
#ifndef FLASHSALE_STORE_INT_H
#define FLASHSALE_STORE_INT_H

#include "store.h"

struct store_backend {
    /* The payment window's primitives, inside the open transaction (store_settle
     * puts them together): the order, locked against other writers until the
     * transaction ends; pending -> status ("cancelled" or "expired") with its
     * units back on sale, *closed false if it was no longer pending; pending ->
     * paid if still before its deadline, *paid says whether it changed.  The two
     * writers return 0, or -1 when the database failed. */
    enum outcome (*order_lock)(struct store_conn *c, int64_t id, struct store_order *out);
    int (*order_close)(struct store_conn *c, const struct store_order *o, const char *status,
                       int64_t now, bool *closed);
    int (*order_pay)(struct store_conn *c, const struct store_order *o, int64_t now, bool *paid);

    /* How often housekeep() runs. */
    int housekeep_ms;

    /* A new connection; writer = the group-commit writer's (tuned for writing). */
    struct store_conn *(*connect)(const struct config *cfg, bool writer, char *err, size_t err_size);
    void (*disconnect)(struct store_conn *c);

    /* Creates or migrates the schema and the demo sale, and reads the order
     * secret into secret (creating it, once for the database, when missing); on
     * the writer's connection. */
    int (*setup)(struct store_conn *c, const struct config *cfg, uint8_t secret[STORE_SECRET_LEN], char *err,
                 size_t err_size);

    /* BEGIN IMMEDIATE / COMMIT / ROLLBACK; 0 or -1. */
    int (*begin)(struct store_conn *c);
    int (*commit)(struct store_conn *c);
    void (*rollback)(struct store_conn *c);

    /* True when the last failure on c is worth running the batch again for
     * (PostgreSQL: deadlock, serialization failure).  May be NULL. */
    bool (*retryable)(struct store_conn *c);

    /* When a COMMIT's answer can be lost with the link (PostgreSQL): txn() is the
     * id of the transaction whose COMMIT was last sent (0 = none), and committed()
     * says after a failed COMMIT whether that transaction, which ran these jobs,
     * committed all the same: 1 yes, 0 no (or no longer knowable), -1 not known
     * yet (the database out of reach).  Both may be NULL: a failed COMMIT then
     * committed nothing. */
    int64_t (*txn)(struct store_conn *c);
    int (*committed)(struct store_conn *c, int64_t txn, struct store_job *const *jobs, size_t n);

    /* Applies one job inside the open transaction.  A business refusal
     * (sold_out, limit_exceeded, invalid) leaves nothing of this job written and
     * the rest of the batch intact.  OUTCOME_UNAVAILABLE means the database failed
     * and the whole transaction must be rolled back. */
    enum outcome (*apply)(struct store_conn *c, struct store_job *job);

    /* The same for a whole batch at once (setting each job's outcome), when the
     * backend can do better than one job at a time; 0, or -1 when the database
     * failed.  May be NULL. */
    int (*apply_batch)(struct store_conn *c, struct store_job **jobs, size_t n);

    /* Housekeeping on a connection of its own, called every housekeep_ms by a
     * thread of its own, so the writer never waits for it (SQLite: WAL
     * checkpoints; PostgreSQL: what other nodes changed, told to ev, which is
     * NULL until store_listen).  May be NULL. */
    void (*housekeep)(struct store_conn *c, const struct store_events *ev);

    /* On the writer, after a commit whose answers are already out: bounded,
     * usually instant upkeep (SQLite: let the WAL restart).  May be NULL. */
    void (*after_commit)(struct store_conn *c);

    int (*load)(struct store_conn *c, void (*each)(void *, const struct store_sale *),
                void (*held)(void *, int64_t, const char *, int64_t), void *ctx);
    enum outcome (*order_get)(struct store_conn *c, int64_t id, struct store_order *out);
    enum outcome (*order_by_key)(struct store_conn *c, int64_t sale_id, const char *user,
                                 const char *key, struct store_order *out);

    /* Opens a read transaction and reads the sale's row (the snapshot point). */
    enum outcome (*audit_begin)(struct store_conn *c, int64_t sale_id, struct store_audit *out);
    /* Reads the rest in the same snapshot and ends the transaction. */
    enum outcome (*audit_finish)(struct store_conn *c, int64_t sale_id, struct store_audit *out);
};

/* Pay or cancel (STORE_PAY, STORE_CANCEL) inside the open transaction: decided
 * and sequenced once for every backend, from the order_* primitives above.  A
 * backend's apply() calls it. */
enum outcome store_settle(struct store_conn *c, struct store_settle *t, bool pay);

/* Every backend's struct store_conn begins with its backend, so that store.c can
 * dispatch on a connection alone. */
#define STORE_BACKEND(conn) (*(const struct store_backend *const *)(const void *)(conn))

extern const struct store_backend store_sqlite;
extern const struct store_backend store_pg;

#endif

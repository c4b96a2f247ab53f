/* store — durable sales and orders: the source of truth.
 *
 * One writer thread owns the writing connection and group-commits: it takes every
 * queued job (up to --batch), runs them in one BEGIN IMMEDIATE ... COMMIT, each
 * purchase guarded in SQL (the stock always; the per-user limit only when no memory
 * ledger holds it: store_purchase.limit_held) so that a refusal writes nothing and
 * leaves the rest of the batch alone, and only after COMMIT returns
 * calls each job's done().  Nothing is acknowledged before that.  If COMMIT fails,
 * every job of the batch ends OUTCOME_UNAVAILABLE; if its answer was lost with the
 * link (PostgreSQL), done() waits until the database tells whether it committed
 * (see store.c), at most about 10 s.
 *
 * Other threads read through their own struct store_conn (one per thread; SQLite
 * in WAL mode lets readers run beside the writer).  The sqlite inventory strategy
 * also writes through its worker's connection, one transaction per purchase
 * (store_purchase_now).
 *
 * The commit lock: every COMMIT and the done() callbacks after it run under it,
 * and store_audit() opens its read snapshot while no one holds it (a seqlock
 * beside the lock; the lock itself only after a few misses), so an audit sees
 * memory and database at the same commit and, as a rule, never holds the writer up.
 *
 * Ownership: jobs belong to the caller and must stay alive until done() has been
 * called; done() may free them.  Rows are plain structs copied out.
 */
#ifndef FLASHSALE_STORE_H
#define FLASHSALE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "outcome.h"
#include "payload.h"

struct store;
struct store_conn;

struct store_sale {
    int64_t id;
    char name[PAYLOAD_NAME_MAX + 1];
    int64_t stock_total, stock_left, per_user_limit;
    int64_t starts_at, ends_at; /* unix seconds, 0 = none */
    int64_t payment_window;     /* seconds, 0 = orders final at once */
    int64_t created_at;         /* unix ms */
    int64_t sold;               /* units in live orders (pending, paid, confirmed) */
    int64_t orders;             /* live orders */
    /* units by status; sold = pending + paid + confirmed */
    int64_t pending, paid, expired, cancelled;
};

struct store_order {
    int64_t id, sale_id;
    char user_id[PAYLOAD_USER_MAX + 1];
    int64_t quantity;
    char status[12];                   /* pending|paid|confirmed|cancelled|expired */
    int64_t created_at, expires_at, paid_at; /* unix ms; 0 = none */
};

struct store_purchase {
    int64_t sale_id;
    char user_id[PAYLOAD_USER_MAX + 1];
    int64_t quantity;
    char idem_key[PAYLOAD_KEY_MAX + 1]; /* "" = no Idempotency-Key */
    int64_t per_user_limit;
    int64_t payment_window;
    /* The caller's memory ledger has already held the user to the limit: the
     * SQLite store then re-checks only the stock (PostgreSQL, shared by nodes
     * with a ledger each, always checks both). */
    bool limit_held;
    /* The unsafe strategy's blind write: set stock_left to this value, with no
     * guard on stock or per-user limit.  Teaching only. */
    bool unguarded;
    int64_t unguarded_stock_left;
    /* Out: the order (new or, when replayed, the earlier one). */
    struct store_order order;
    bool replayed;
};

struct store_audit {
    int64_t stock_total, stock_left, per_user_limit;
    int64_t units_sold, orders, users_over_limit;
    int64_t pending, paid, confirmed, expired, cancelled; /* units by status */
    int64_t paid_late; /* paid orders whose payment came at or after expiry: must be 0 */
};

/* Pay or cancel one order (its token was checked before). */
struct store_settle {
    int64_t order_id;
    char user_id[PAYLOAD_USER_MAX + 1]; /* must be the order's user; "" = not given */
    struct store_order order; /* out: the order as it is now */
    bool paid_now;            /* out: this job moved it from pending to paid */
    bool returned;            /* out: this job gave its units back (cancelled or expired) */
};

/* One order the sweeper expired. */
struct store_expired {
    int64_t sale_id;
    char user_id[PAYLOAD_USER_MAX + 1];
    int64_t quantity;
};

/* Expire pending orders whose window has passed, returning their units. */
struct store_sweep {
    int64_t now_ms;
    size_t max;                 /* at most this many per job */
    struct store_expired *rows; /* out: malloc'd by the store, freed by the caller */
    size_t n;                   /* out */
};

enum store_op {
    STORE_PURCHASE,
    STORE_CREATE_SALE,
    STORE_RESET_SALE,
    STORE_PAY,
    STORE_CANCEL,
    STORE_SWEEP
};

struct store_job {
    struct store_job *next;
    enum store_op op;
    enum outcome outcome; /* out */
    union {
        struct store_purchase purchase;
        struct store_sale sale; /* create: in (id ignored) and out */
        int64_t sale_id;        /* reset */
        struct store_settle settle; /* pay, cancel */
        struct store_sweep sweep;
    } u;
    /* Called once after COMMIT (or on failure), under the commit lock: on the writer
     * for a queued job, on the calling worker for store_purchase_now().  (A caller
     * that settles a job without the store, as a replayed Idempotency-Key does,
     * calls its own done() without the lock.)  Must not block. */
    void (*done)(struct store_job *job);
    void *ctx; /* the caller's */
};

/* What other nodes sharing the database did (PostgreSQL), for memory to follow.
 * Called on the store's housekeeping thread, under the commit lock (so memory
 * follows the database in one order with this node's own commits).  read_ns:
 * CLOCK_MONOTONIC just before the database was read (or the news received);
 * whatever memory changed at or after it may be newer than what is told. */
struct store_events {
    void (*sale)(void *ctx, const struct store_sale *row, uint64_t read_ns); /* a sale as the database has it */
    void (*sold_out)(void *ctx, int64_t sale_id, uint64_t read_ns);
    void (*reset)(void *ctx, int64_t sale_id); /* by another node */
    void *ctx;
};

/* Opens (creating or migrating the schema) the database of cfg->db — a file path
 * for SQLite, a postgresql:// URI for PostgreSQL — and starts the writer thread.
 * Returns NULL and writes a reason into err on failure. */
struct store *store_open(const struct config *cfg, char *err, size_t err_size);

/* The database's order secret: 32 random bytes made once, at the first start,
 * and kept in the database (one for every node sharing it), from which order
 * tokens are derived (ordertoken.h).  Valid until store_close. */
#define STORE_SECRET_LEN 32
const uint8_t *store_order_secret(const struct store *s);

/* Runs every queued job, stops the writer, closes the database. */
void store_close(struct store *s);

/* Calls each() for every sale and then held() for every (sale, user) with live
 * units; used once at start to rebuild the in-memory counters.  Returns 0 or -1. */
int store_load(struct store *s, void (*each)(void *ctx, const struct store_sale *sale),
               void (*held)(void *ctx, int64_t sale_id, const char *user, int64_t units), void *ctx);

/* Queues a job for the next group commit.  Never blocks on I/O. */
void store_submit(struct store *s, struct store_job *job);

/* Queues n jobs linked through next (first..last) under one lock. */
void store_submit_chain(struct store *s, struct store_job *first, struct store_job *last, size_t n);

/* Queues a job and waits until it is done; returns its outcome.  job->done may be
 * NULL.  For admin operations, never on an I/O thread. */
enum outcome store_run(struct store *s, struct store_job *job);

/* A connection for the calling thread.  NULL on failure. */
struct store_conn *store_conn_open(struct store *s);
void store_conn_close(struct store_conn *c);

enum outcome store_order_get(struct store_conn *c, int64_t id, struct store_order *out);

/* The order that an Idempotency-Key already names, if any (OUTCOME_NOT_FOUND). */
enum outcome store_order_by_key(struct store_conn *c, int64_t sale_id, const char *user,
                                const char *key, struct store_order *out);

/* One purchase in its own BEGIN IMMEDIATE transaction on c (the sqlite strategy);
 * calls job->done after COMMIT under the commit lock, as the writer would, or
 * (a COMMIT whose answer was lost) later on the writer thread.  Returns the job's
 * outcome as far as known now. */
enum outcome store_purchase_now(struct store *s, struct store_conn *c, struct store_job *job);

/* Recomputes a sale from the database.  snapshot(ctx) is called under the commit
 * lock at the instant the read snapshot is taken, to read memory counters that
 * match it.  OUTCOME_NOT_FOUND when the sale does not exist. */
enum outcome store_audit(struct store *s, struct store_conn *c, int64_t sale_id,
                         struct store_audit *out, void (*snapshot)(void *ctx), void *ctx);

/* True when other nodes may write the same database (PostgreSQL): memory is then
 * a cache of it, refreshed through store_listen. */
bool store_shared(const struct store *s);

/* Starts telling ev (copied) what other nodes change.  Call once, after loading. */
void store_listen(struct store *s, const struct store_events *ev);

/* "sqlite" or "postgresql". */
const char *store_kind(const struct store *s);

/* Queue length of the writer, for metrics. */
size_t store_backlog(struct store *s);

#endif

/* store — durable sales and orders: the source of truth.
 *
 * One writer thread owns the writing connection and group-commits: it takes every
 * queued job (up to --batch), runs them in one BEGIN IMMEDIATE ... COMMIT, each
 * purchase guarded in SQL (the stock always; the per-user limit only when no memory
 * ledger holds it: store_purchase.limit_held) so that a refusal writes nothing and
 * leaves the rest of the batch alone, and only after COMMIT returns calls each
 * job's done().  Nothing is acknowledged before that.  If COMMIT fails, every job
 * of the batch ends OUTCOME_UNAVAILABLE; if its answer was lost with the link
 * (PostgreSQL), done() waits until the database tells whether it committed (see
 * store.c), at most about 10 s.
 *
 * Other threads read through a struct store_conn of their own (SQLite in WAL mode
 * lets readers run beside the writer).  The sqlite inventory strategy also writes
 * through its worker's connection, one transaction per purchase
 * (store_purchase_now).
 *
 * The commit lock: every COMMIT and the done() calls after it run under it, and
 * store_audit() opens its read snapshot while no one holds it (a seqlock beside
 * the lock; the lock itself only after a few misses), so an audit sees memory and
 * database at the same commit and, as a rule, never holds the writer up.
 *
 * Ownership: a job belongs to its caller and must stay alive until its done()
 * has run; done() may free it.  A struct store_conn belongs to the thread that
 * opened it.  Rows are plain structs copied out; the one exception,
 * store_sweep.rows, is malloc'd by the store and freed by the caller.
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

/* An order's status.  Its name (store_status_name) is what SQL stores and the JSON
 * says; the rest of the program compares the enum. */
enum store_status { STORE_PENDING, STORE_PAID, STORE_CONFIRMED, STORE_CANCELLED, STORE_EXPIRED };
const char *store_status_name(enum store_status s);
/* The status called name; false for a name the schema does not allow. */
bool store_status_parse(const char *name, enum store_status *s);

struct store_order {
    int64_t id, sale_id;
    char user_id[PAYLOAD_USER_MAX + 1];
    int64_t quantity;
    enum store_status status;
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
    /* The caller's memory holds a claim for it (inventory_reserve): the follower
     * settles it (commit or release) when the job finishes. */
    bool reserved;
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
    struct store_expired *rows; /* out: the caller frees it (see the top) */
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
    /* Called by the store exactly once, after COMMIT (or on failure), under the
     * commit lock: on the writer for a queued job, on the calling thread for
     * store_purchase_now() (on the writer if its COMMIT's answer was lost).  Must
     * not block.  (A caller that settles a job without the store, as a replayed
     * Idempotency-Key does, calls its own done() without the lock.) */
    void (*done)(struct store_job *job);
    void *ctx;     /* the caller's */
    bool finished; /* the store's: done() was called; a job is submitted fresh (false) */
};

/* Memory's side of an audit, read at the instant of its database snapshot. */
struct store_memory {
    int64_t stock_left, sold;
    uint64_t version; /* the sale's count of changes (inventory.h) */
    uint64_t at_ns;   /* CLOCK_MONOTONIC when read */
};

/* Who keeps memory in step with the database (inventory.c), set once with
 * store_follow before the first job: follow() runs for every finished job, under
 * the commit lock, just before its done() (and in the writer process for jobs
 * that came from a worker process, whose done() then runs there); memory() reads
 * a sale's counters at an audit's snapshot. */
struct store_follower {
    void (*follow)(void *ctx, struct store_job *job);
    void (*memory)(void *ctx, int64_t sale_id, struct store_memory *out);
    void *ctx;
};
void store_follow(struct store *s, const struct store_follower *f);

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

/* Opens cfg->db (an SQLite file path or a postgresql:// URI), creating or
 * migrating its schema, and starts the writer; NULL with a reason in err. */
struct store *store_open(const struct config *cfg, char *err, size_t err_size);

/* --model processes, in a worker process: the same interface, served by the
 * writer process over ipc (ipc.h); the database is never opened here.  secret is
 * the order secret the writer published.  Jobs end UNAVAILABLE while the writer
 * is away.  NULL when out of memory. */
struct ipc_client;
struct store *store_open_remote(const struct config *cfg, struct ipc_client *link, const uint8_t *secret);

/* The order secret (ordertoken.h): made once per database, shared by its nodes;
 * valid until store_close. */
#define STORE_SECRET_LEN 32
const uint8_t *store_order_secret(const struct store *s);

/* Runs every queued job, stops the writer, closes the database. */
void store_close(struct store *s);

/* At start: each() for every sale, then held() per (sale, user) with live units; 0 or -1. */
int store_load(struct store *s, void (*each)(void *ctx, const struct store_sale *sale),
               void (*held)(void *ctx, int64_t sale_id, const char *user, int64_t units), void *ctx);

/* Queues a job for the next group commit; never blocks on I/O. */
void store_submit(struct store *s, struct store_job *job);

/* Queues n jobs linked through next (first..last) under one lock. */
void store_submit_chain(struct store *s, struct store_job *first, struct store_job *last, size_t n);

/* Queues a job and waits for it; its outcome (done may be NULL).  Admin thread
 * and tests only: never on an I/O thread, a purchase worker or the writer. */
enum outcome store_run(struct store *s, struct store_job *job);

/* A connection for the calling thread, or NULL (logged); closed by that thread. */
struct store_conn *store_conn_open(struct store *s);
void store_conn_close(struct store_conn *c);

/* The order with this id: OUTCOME_OK, OUTCOME_NOT_FOUND or OUTCOME_UNAVAILABLE. */
enum outcome store_order_get(struct store_conn *c, int64_t id, struct store_order *out);

/* The order an Idempotency-Key already names: OUTCOME_OK, _NOT_FOUND or _UNAVAILABLE. */
enum outcome store_order_by_key(struct store_conn *c, int64_t sale_id, const char *user,
                                const char *key, struct store_order *out);

/* One purchase in its own transaction on c (the sqlite strategy), done() called
 * under the commit lock as the writer would (or, when the COMMIT's answer was
 * lost, later on the writer); returns the job's outcome as far as known now. */
enum outcome store_purchase_now(struct store *s, struct store_conn *c, struct store_job *job);

/* Recomputes a sale from the database; snapshot(ctx, mem) gets memory's side as
 * the follower read it at the instant of the read snapshot (zero without a
 * follower).  OUTCOME_NOT_FOUND: no such sale. */
enum outcome store_audit(struct store *s, struct store_conn *c, int64_t sale_id, struct store_audit *out,
                         void (*snapshot)(void *ctx, const struct store_memory *mem), void *ctx);

/* --model processes, in the writer: the audit's database side and memory's side
 * for a worker process (ipc.c). */
enum outcome store_audit_memory(struct store *s, struct store_conn *c, int64_t sale_id, struct store_audit *out,
                                struct store_memory *mem);

/* --model processes, in the writer, with every process frozen (inventory.h):
 * under the commit lock, each() for every sale and held() per (sale, user) as
 * store_load, so memory is rebuilt between two commits.  0 or -1. */
int store_reload(struct store *s, void (*begin)(void *ctx), void (*each)(void *ctx, const struct store_sale *sale),
                 void (*held)(void *ctx, int64_t sale_id, const char *user, int64_t units), void *ctx);

/* True when other nodes may write the database (PostgreSQL): memory is its cache. */
bool store_shared(const struct store *s);

/* Starts telling ev (copied) what other nodes change; once, after store_load. */
void store_listen(struct store *s, const struct store_events *ev);

/* "sqlite" or "postgresql". */
const char *store_kind(const struct store *s);

/* Queue length of the writer, for metrics. */
size_t store_backlog(struct store *s);

/* True when the calling thread holds the commit lock: for asserts in done() and
 * store_events callbacks. */
bool store_commit_held(const struct store *s);

#endif

/* inventory — the sales in memory and the four strategies that guard their stock.
 *
 * The in-memory gate lets the flash-crowd majority be refused without touching
 * the database: a purchase is first reserved here (stock and per-user limit), then
 * made durable by the store, then committed here (or released if the store
 * refused it).  The strategies, chosen with --inventory:
 *   atomic  compare-and-swap on the stock counter, never below zero; per-user
 *           units in the striped ledger, checked under the user's stripe lock
 *   mutex   the same under one pthread mutex per sale
 *   sqlite  no memory gate: the database transaction decides; memory follows
 *           after each commit (the classic database-only design)
 *   unsafe  read, check, yield, write: a deliberate lost-update race, and a
 *           blind write to the database.  It oversells; that is the lesson.
 *
 * Threads: any thread may call anything here.  struct sale is published once and
 * never freed while the service runs, so readers need no lock to find one; its
 * immutable fields (id, name, totals, window) never change after publishing, and
 * the counters are atomics.
 */
#ifndef FLASHSALE_INVENTORY_H
#define FLASHSALE_INVENTORY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "outcome.h"
#include "shm.h"
#include "store.h"

#define INVENTORY_MAX_SALES 65536
#define INVENTORY_PROCS SHM_PROCS /* --model processes: a count per process slot (shm.h) */

struct inventory;

struct sale {
    /* immutable once published */
    struct inventory *inv; /* the inventory that published it */
    int64_t id;
    char name[PAYLOAD_NAME_MAX + 1];
    int64_t stock_total, per_user_limit, starts_at, ends_at, payment_window, created_at;
    /* counters */
    _Atomic int64_t stock_left; /* the gate: units not reserved by anyone */
    _Atomic int64_t sold;       /* units in live orders: pending + paid + confirmed */
    _Atomic int64_t orders;     /* live orders */
    _Atomic int64_t pending, paid, expired, cancelled; /* units by status */
    /* Purchases admitted and not yet answered, a column per process slot (shm.h): a
     * dead process's column is forgotten, the others' never touched. */
    _Atomic int64_t active[SHM_PROCS];
    _Atomic int64_t reserved;   /* units reserved here and not yet committed or released */
    _Atomic bool paused;        /* a reset is waiting for `active` to drain */
    pthread_mutex_t mu;         /* the mutex strategy's lock */
    pthread_mutex_t drain_mu;   /* a reset waits on `drained` for `active` to reach 0 */
    pthread_cond_t drained;
    /* Local changes that the database also has (a commit, a unit back, a payment,
     * a reset, the sale's creation), made under the store's commit lock: `version`
     * counts them (an audit whose snapshot saw this version is still exact while
     * it holds), `changed_ns` says when the last one was (CLOCK_MONOTONIC), so that
     * a refresh read from the database before it cannot overwrite it. */
    _Atomic uint64_t version;
    _Atomic uint64_t changed_ns;
};

/* NULL when out of memory. */
struct inventory *inventory_new(enum config_inventory strategy);

/* The same in shared memory (shm.h) for --model processes, before the fork: the
 * sales, their counters and locks, and a fixed ledger of ledger_entries (sale,
 * user) pairs (a purchase that finds it full is refused 503, unavailable).
 * ledger_entries 0 means the growing ledger of one process. */
struct inventory *inventory_new_shared(enum config_inventory strategy, size_t ledger_entries);

void inventory_free(struct inventory *inv);

enum config_inventory inventory_strategy(const struct inventory *inv);

/* A strategy as data: what the rest of the program needs to know of it, so that no
 * module outside inventory.c asks which strategy runs.  Static; never freed. */
struct inventory_traits {
    const char *name;
    bool fast_path;   /* the I/O thread may refuse on memory alone (sold out, over the limit) */
    bool sql_decides; /* no memory gate: each purchase is its own transaction, on its worker */
    bool holds_limit; /* the memory ledger holds the per-user limit; SQL re-checks the stock only */
    bool blind_write; /* memory's stock is written to SQL unguarded: the deliberate race */
    int min_workers;  /* workers it needs to show what it shows (unsafe: buyers must race) */
};
const struct inventory_traits *inventory_traits_of(enum config_inventory kind);
const struct inventory_traits *inventory_traits(const struct inventory *inv);

/* Publishes a sale loaded or created in the store.  False when its id is beyond
 * INVENTORY_MAX_SALES, is already published, or memory ran out. */
bool inventory_add(struct inventory *inv, const struct store_sale *row);

/* The same for a sale this node just created, which a refresh of the database
 * (PostgreSQL) may have published first: the sale as published, whoever did it;
 * NULL when its id is beyond INVENTORY_MAX_SALES or memory ran out. */
struct sale *inventory_publish(struct inventory *inv, const struct store_sale *row);

/* Restores a user's live units at start.  False when the fixed ledger of
 * --model processes is full (the caller says so once); one process's ledger grows. */
bool inventory_hold(struct inventory *inv, int64_t sale_id, const char *user, int64_t units);

/* The sale, or NULL.  Lock-free. */
struct sale *inventory_get(struct inventory *inv, int64_t id);

/* Highest sale id published (for listing: ids 1..max, skipping holes). */
int64_t inventory_max_id(struct inventory *inv);

/* "upcoming", "open", "sold_out" or "ended" at unix second now. */
const char *inventory_status(const struct sale *s, int64_t now);

/* Units sold beyond the stock: 0 unless something oversold. */
int64_t inventory_oversold(const struct sale *s);

/* The fast path, on an I/O thread: would this purchase be refused right now?
 * Returns the refusal (window, per-user limit, stock, in that order) or
 * OUTCOME_OK.  Changes nothing.  For the unsafe strategy only the window is
 * checked here: its purchases must all reach the race. */
enum outcome inventory_check(struct inventory *inv, struct sale *s, const char *user, int64_t q,
                             int64_t now);

/* Purchases admitted and not yet answered, in every process. */
int64_t inventory_active(const struct sale *s);

/* Admission against a concurrent reset: true and counted in `active`, or false
 * when the sale is paused.  Every admitted purchase ends with inventory_leave(). */
bool inventory_admit(struct sale *s);
void inventory_leave(struct sale *s);

/* Claims q units for user under the strategy.  On OUTCOME_OK the claim must end
 * with inventory_commit() or inventory_release().  For unsafe, *unguarded_left is
 * the stock value it wrote back (the blind write for the database). */
enum outcome inventory_reserve(struct inventory *inv, struct sale *s, const char *user, int64_t q,
                               int64_t now, int64_t *unguarded_left);

/* The order is committed in the database: count it as sold (and as pending when
 * it waits for payment). */
void inventory_commit(struct inventory *inv, struct sale *s, const char *user, int64_t q, bool pending);

/* A pending order was paid. */
void inventory_paid(struct sale *s, int64_t q);

/* A pending order was cancelled or expired in the database: its units are for
 * sale again, at once (stock, the user's ledger, the counters). */
void inventory_give_back(struct inventory *inv, struct sale *s, const char *user, int64_t q, bool expired);

/* True when some sale has a payment window (the sweeper has work to look for). */
bool inventory_has_windows(struct inventory *inv);

/* The database did not take it (refused, failed or replayed): give the claim back. */
void inventory_release(struct inventory *inv, struct sale *s, const char *user, int64_t q);

/* Reset, in three steps: pause (new purchases refused) and wait until admitted
 * ones are answered (false after timeout_ms, unpaused again; the last one to leave
 * wakes the wait, nothing polls); the caller resets the database and, under the
 * commit lock, inventory_reset() restores memory; then inventory_unpause(). */
bool inventory_pause(struct sale *s, int timeout_ms);
void inventory_reset(struct inventory *inv, struct sale *s);
void inventory_unpause(struct sale *s);

/* The user's units in the sale by the in-memory ledger (reserved or sold). */
int64_t inventory_units(struct inventory *inv, struct sale *s, const char *user);

/* Several nodes on one database (PostgreSQL): memory follows what the database
 * says.  inventory_sync publishes a sale new to this node or refreshes its
 * counters (the gate becomes the database's stock less what this node has in
 * flight); inventory_sold_out closes the gate at once; inventory_forget drops the
 * sale's per-user ledger after another node reset it.  read_ns is when the
 * database was read (CLOCK_MONOTONIC, taken before the read): a sale changed here
 * at or after it is newer than what was read, and is left alone (the next refresh
 * catches up).  Call under the store's commit lock, like every local change.  The
 * database stays the arbiter: a stale gate only changes which purchases reach it. */
void inventory_sync(struct inventory *inv, const struct store_sale *row, uint64_t read_ns);
void inventory_sold_out(struct inventory *inv, int64_t sale_id, uint64_t read_ns);
void inventory_forget(struct inventory *inv, int64_t sale_id);

/* The store's follower (store.h): memory follows what the database did with a
 * finished job (a sale, units back, a reset, a publish), and the counters an
 * audit compares, read at its snapshot.  ctx is the inventory.  Under the commit
 * lock, in the process that owns the store. */
void inventory_follow(void *ctx, struct store_job *job);
void inventory_memory(void *ctx, int64_t sale_id, struct store_memory *out);

/* --model processes.  After a process died, memory is rebuilt from the database:
 * freeze (inventory_admit refuses), forget the dead process's counts, wait until
 * every live process's count of admitted purchases (inventory_inflight) is 0, then
 * under the commit lock: rebuild_begin, rebuild_sale per row and inventory_hold
 * per (sale, user) with live units; thaw.  Each freeze returns a generation; a
 * thaw with an older one (another death came since) leaves purchases frozen for
 * the rebuild that death asks for. */
uint64_t inventory_freeze(struct inventory *inv);
void inventory_thaw(struct inventory *inv, uint64_t generation);
bool inventory_frozen(const struct inventory *inv);
int64_t inventory_inflight(const struct inventory *inv, int slot);
void inventory_forget_process(struct inventory *inv, int slot);
void inventory_rebuild_begin(struct inventory *inv);
void inventory_rebuild_sale(struct inventory *inv, const struct store_sale *row);

/* Users holding more than the limit, by the in-memory ledger (audit). */
int64_t inventory_users_over_limit(struct inventory *inv, struct sale *s);

#endif

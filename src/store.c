/* store — see store.h.  The group-commit writer, the commit lock and the order
 * in which a backend's primitives run live here; the SQL lives in the backends
 * (store_sqlite.c, store_pg.c; see store_int.h).
 *
 * Writer loop: wait for jobs; take up to --batch of them; BEGIN; apply each;
 * take the commit lock; COMMIT; call every job's done(); release the lock.
 * While one batch commits, the next accumulates, so under load the batch grows
 * by itself and one fsync is shared by many purchases.
 *
 * A transaction in doubt: its COMMIT was sent and the link died before the
 * answer (PostgreSQL).  Its jobs are neither answered nor released: they are
 * parked (by the writer, or by a worker of the sqlite strategy), the writer
 * goes on with new batches and asks the backend at every turn whether that
 * transaction committed (every STORE_DOUBT_ASK_MS when idle: the database tells
 * nobody by itself), and answers them by what the database says, or 503 after
 * STORE_DOUBT_MS if the database stays out of reach.  Never 201 unless the
 * database said it committed.
 *
 * Asserted where threads meet: the commit path runs on the writer thread only
 * (store_on_writer), done() runs under the commit lock and once per job
 * (store_finish), and the commit lock knows its holder (store_commit_held).
 * The checks compare a thread id or a flag: nothing per purchase that costs a
 * lock or a system call.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ipc.h"
#include "log.h"
#include "metrics.h"
#include "store_int.h"

struct store {
    const struct store_backend *be;
    const struct config *cfg;
    struct ipc_client *remote;      /* a worker process's store: the writer process serves it */
    struct store_follower follower; /* memory's side (store_follow) */
    struct store_conn *writer_conn; /* owned by the writer thread after start */
    pthread_t writer;
    size_t batch_max;
    struct store_job **buys; /* the writer's: a batch's purchases, when be->batch_buys */

    pthread_mutex_t mu; /* guards the queue and `stopping` */
    pthread_cond_t wake;
    struct store_job *head, *tail;
    _Atomic size_t backlog;
    bool stopping, writer_waiting;

    pthread_mutex_t commit_mu; /* see store.h: done() callbacks and audit snapshots */
    _Atomic(const void *) commit_holder; /* &store_thread of the thread holding commit_mu, or NULL */
    /* Odd while someone holds commit_mu to change the database or memory: an audit
     * reads it around its snapshot instead of taking the lock (store_audit). */
    _Atomic uint64_t commit_seq;
    /* An audit waits out a commit under way here rather than polling commit_seq;
     * store_commit_leave wakes it, at the cost of one load while none waits. */
    pthread_mutex_t audit_mu;
    pthread_cond_t audit_wake; /* on CLOCK_MONOTONIC */
    _Atomic int audit_waiters;
    uint8_t order_secret[STORE_SECRET_LEN];

    pthread_t housekeeper; /* runs be->housekeep on its own connection */
    struct store_events events;   /* the caller's */
    struct store_events locked;   /* what the backend calls: events under the commit lock */
    _Atomic bool listening; /* events is set */
    pthread_cond_t housekeep_wake; /* its own: a signal meant for the writer must
                                    * never wake the housekeeper instead */
    struct store_conn *housekeep_conn;
    bool housekeeping;

    struct store_doubt *doubts; /* under mu; see the top */
};

/* Jobs whose transaction may have committed: until when to ask. */
struct store_doubt {
    struct store_doubt *next;
    int64_t txn;
    uint64_t until_ns;
    size_t n;
    struct store_job *jobs[];
};

#define STORE_RETRIES 3 /* runs of a batch that hit a deadlock before giving up */
#define STORE_AUDIT_TRIES 16 /* lock-free snapshots an audit tries before taking the lock */
#define STORE_AUDIT_WAIT_NS 1000000000u /* and how long it waits for commits under way */
#define STORE_DOUBT_MS 10000 /* how long jobs in doubt wait to learn whether they committed */
#define STORE_DOUBT_ASK_MS 50 /* how often an idle writer asks about them */

/* For store_run(): a job plus a flag to wait on. */
struct store_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool finished;
    void (*done)(struct store_job *);
    void *ctx;
};

/* One per thread; its address names the thread that holds the commit lock. */
static _Thread_local char store_thread;

static bool store_on_writer(const struct store *s) { return pthread_equal(pthread_self(), s->writer); }

bool store_commit_held(const struct store *s)
{
    return atomic_load_explicit(&s->commit_holder, memory_order_relaxed) == &store_thread;
}

/* The commit lock itself: store_audit takes it to read, changing nothing. */
static void store_commit_lock(struct store *s)
{
    assert(!store_commit_held(s)); /* not recursive: a done() must not take it again */
    pthread_mutex_lock(&s->commit_mu);
    atomic_store_explicit(&s->commit_holder, &store_thread, memory_order_relaxed);
}

static void store_commit_unlock(struct store *s)
{
    assert(store_commit_held(s));
    atomic_store_explicit(&s->commit_holder, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&s->commit_mu);
}

/* The commit lock for changing the database or memory under it: commit_seq is
 * odd in between, for store_audit's seqlock. */
static void store_commit_enter(struct store *s)
{
    store_commit_lock(s);
    atomic_fetch_add(&s->commit_seq, 1);
}

static void store_commit_leave(struct store *s)
{
    atomic_fetch_add(&s->commit_seq, 1);
    store_commit_unlock(s);
    /* Both sequentially consistent, as in store_commit_wait: either this load
     * sees the waiter, or the waiter sees commit_seq move. */
    if (atomic_load(&s->audit_waiters)) {
        pthread_mutex_lock(&s->audit_mu);
        pthread_cond_broadcast(&s->audit_wake);
        pthread_mutex_unlock(&s->audit_mu);
    }
}

/* Without the commit lock: waits until commit_seq has moved from `seq` (the
 * commit under way left) or CLOCK_MONOTONIC passes until_ns; false on the latter. */
static bool store_commit_wait(struct store *s, uint64_t seq, uint64_t until_ns)
{
    struct timespec until = {(time_t)(until_ns / 1000000000u), (long)(until_ns % 1000000000u)};
    int rc = 0;
    atomic_fetch_add(&s->audit_waiters, 1);
    pthread_mutex_lock(&s->audit_mu);
    while (atomic_load(&s->commit_seq) == seq && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->audit_wake, &s->audit_mu, &until);
    pthread_mutex_unlock(&s->audit_mu);
    atomic_fetch_sub(&s->audit_waiters, 1);
    return rc != ETIMEDOUT;
}

/* Hands n jobs back through their done(), under the commit lock, each once. */
static void store_finish(struct store *s, struct store_job **jobs, size_t n)
{
    assert(store_commit_held(s));
    for (size_t i = 0; i < n; i++) {
        assert(!jobs[i]->finished);
        jobs[i]->finished = true; /* before done(), which may free the job */
        if (s->follower.follow) s->follower.follow(s->follower.ctx, jobs[i]);
        if (jobs[i]->done) jobs[i]->done(jobs[i]);
    }
}

/* What paying or cancelling does to an order as it stands at now (ms). */
enum store_settle_step {
    SETTLE_NOTHING, /* answer the outcome, change nothing */
    SETTLE_PAY,     /* pending -> paid */
    SETTLE_CANCEL,  /* pending -> cancelled, units back */
    SETTLE_EXPIRE   /* pending past its deadline -> expired, units back */
};

static const char *const store_status_names[] = {
    [STORE_PENDING] = "pending", [STORE_PAID] = "paid", [STORE_CONFIRMED] = "confirmed",
    [STORE_CANCELLED] = "cancelled", [STORE_EXPIRED] = "expired",
};

const char *store_status_name(enum store_status s)
{
    assert((unsigned)s < sizeof store_status_names / sizeof store_status_names[0]);
    return store_status_names[s];
}

bool store_status_parse(const char *name, enum store_status *s)
{
    for (size_t i = 0; name && i < sizeof store_status_names / sizeof store_status_names[0]; i++)
        if (strcmp(name, store_status_names[i]) == 0) {
            *s = (enum store_status)i;
            return true;
        }
    return false;
}

static enum store_settle_step store_settle_step(const struct store_order *o, const char *user, bool pay,
                                                int64_t now, enum outcome *outcome)
{
    bool pending = o->status == STORE_PENDING;
    *outcome = OUTCOME_OK;
    if (user[0] && strcmp(o->user_id, user) != 0) {
        *outcome = OUTCOME_FORBIDDEN;
        return SETTLE_NOTHING;
    }
    /* The deadline wins over a late payment, whichever request finds it first. */
    if (pending && o->expires_at && o->expires_at <= now) {
        *outcome = OUTCOME_ORDER_EXPIRED;
        return SETTLE_EXPIRE;
    }
    if (o->status == STORE_EXPIRED) {
        *outcome = OUTCOME_ORDER_EXPIRED;
        return SETTLE_NOTHING;
    }
    bool cancelled = o->status == STORE_CANCELLED;
    if (pay) {
        /* paying twice, or a confirmed order: nothing to do, say how it stands */
        if (cancelled) *outcome = OUTCOME_ORDER_CANCELLED;
        return pending ? SETTLE_PAY : SETTLE_NOTHING;
    }
    if (!pending && !cancelled) *outcome = OUTCOME_ORDER_FINAL; /* paid or confirmed */
    return pending ? SETTLE_CANCEL : SETTLE_NOTHING;           /* cancelling twice is fine */
}

/* Pay or cancel inside the open transaction, from the backend's order_*
 * primitives: lock the order, decide, then change it. */
static enum outcome store_settle(const struct store_backend *be, struct store_conn *c, struct store_settle *t,
                                 bool pay)
{
    struct store_order *o = &t->order;
    enum outcome got = be->order_lock(c, t->order_id, o);
    if (got != OUTCOME_OK) return got;
    int64_t now = clock_wall_ms();
    switch (store_settle_step(o, t->user_id, pay, now, &got)) {
    case SETTLE_NOTHING: break;
    case SETTLE_EXPIRE:
    case SETTLE_CANCEL: {
        enum store_status status = got == OUTCOME_ORDER_EXPIRED ? STORE_EXPIRED : STORE_CANCELLED;
        if (be->order_close(c, o, status, now, &t->returned) != OUTCOME_OK) return OUTCOME_UNAVAILABLE;
        o->status = status;
        break;
    }
    case SETTLE_PAY:
        if (be->order_pay(c, o, now, &t->paid_now) != OUTCOME_OK) return OUTCOME_UNAVAILABLE;
        o->status = STORE_PAID;
        o->paid_at = now;
        break;
    }
    return got;
}

/* One purchase: an Idempotency-Key seen before replays its order and touches
 * nothing (looked up here unless the backend's buy does it itself). */
static enum outcome store_buy(const struct store_backend *be, struct store_conn *c, struct store_job *job)
{
    struct store_purchase *p = &job->u.purchase;
    if (p->idem_key[0] && !be->buy_replays) {
        enum outcome o = be->order_by_key(c, p->sale_id, p->user_id, p->idem_key, &p->order);
        if (o == OUTCOME_OK) p->replayed = true;
        if (o != OUTCOME_NOT_FOUND) return o;
    }
    enum outcome o = be->buy(c, &job, 1);
    return o == OUTCOME_OK ? job->outcome : o;
}

/* One job inside the open transaction on c: its outcome, OUTCOME_UNAVAILABLE
 * when the database failed. */
static enum outcome store_apply(const struct store_backend *be, struct store_conn *c, struct store_job *job)
{
    switch (job->op) {
    case STORE_PURCHASE: return store_buy(be, c, job);
    case STORE_CREATE_SALE: return be->create_sale(c, &job->u.sale);
    case STORE_RESET_SALE: return be->reset_sale(c, job->u.sale_id);
    case STORE_PAY: return store_settle(be, c, &job->u.settle, true);
    case STORE_CANCEL: return store_settle(be, c, &job->u.settle, false);
    case STORE_SWEEP: return be->sweep(c, &job->u.sweep);
    }
    return OUTCOME_INTERNAL;
}

/* On the writer: BEGIN and every job of the batch, setting each outcome; the
 * purchases together at the end when the backend takes them in one call.
 * OUTCOME_UNAVAILABLE when the database failed (the transaction is still open). */
static enum outcome store_apply_batch(struct store *s, struct store_job **jobs, size_t n)
{
    assert(store_on_writer(s) && n <= s->batch_max);
    const struct store_backend *be = s->be;
    struct store_conn *c = s->writer_conn;
    if (be->begin(c) != OUTCOME_OK) return OUTCOME_UNAVAILABLE;
    size_t nbuys = 0;
    for (size_t i = 0; i < n; i++) {
        if (be->batch_buys && jobs[i]->op == STORE_PURCHASE) {
            s->buys[nbuys++] = jobs[i];
            continue;
        }
        jobs[i]->outcome = store_apply(be, c, jobs[i]);
        if (jobs[i]->outcome == OUTCOME_UNAVAILABLE) return OUTCOME_UNAVAILABLE;
    }
    return nbuys ? be->buy(c, s->buys, nbuys) : OUTCOME_OK;
}

/* Parks n jobs of transaction txn (see the top); false when out of memory. */
static bool store_doubt(struct store *s, struct store_job **jobs, size_t n, int64_t txn)
{
    struct store_doubt *d = malloc(sizeof *d + n * sizeof *jobs);
    if (!d) return false;
    d->txn = txn;
    d->until_ns = clock_mono_ns() + STORE_DOUBT_MS * 1000000ull;
    d->n = n;
    memcpy(d->jobs, jobs, n * sizeof *jobs);
    LOG_WARN("store: a commit of %zu jobs lost its answer; asking whether it committed", n);
    pthread_mutex_lock(&s->mu);
    d->next = s->doubts;
    s->doubts = d;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return true;
}

/* After a failed COMMIT on c, under the commit lock: OUTCOME_OK when its
 * transaction committed all the same (the answer was lost, not the work);
 * OUTCOME_NOT_FOUND when it did not; OUTCOME_UNAVAILABLE when nobody can tell
 * yet: then the jobs are parked for store_resolve, and the caller must not
 * finish them. */
static enum outcome store_verdict(struct store *s, struct store_conn *c, struct store_job **jobs, size_t n)
{
    assert(store_commit_held(s));
    int64_t txn = s->be->committed ? s->be->txn(c) : 0;
    enum outcome got = txn ? s->be->committed(c, txn, jobs, n) : OUTCOME_NOT_FOUND;
    if (got == OUTCOME_UNAVAILABLE && !store_doubt(s, jobs, n, txn)) got = OUTCOME_NOT_FOUND;
    return got;
}

/* On the writer: answers the jobs in doubt whose fate the database can tell
 * now, or, past their time, refuses them. */
static void store_resolve(struct store *s)
{
    assert(store_on_writer(s));
    pthread_mutex_lock(&s->mu);
    struct store_doubt *list = s->doubts;
    s->doubts = NULL;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        struct store_doubt *d = list;
        list = d->next;
        enum outcome got = s->be->committed(s->writer_conn, d->txn, d->jobs, d->n);
        if (got == OUTCOME_UNAVAILABLE && clock_mono_ns() < d->until_ns) {
            pthread_mutex_lock(&s->mu);
            d->next = s->doubts;
            s->doubts = d;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        LOG_WARN("store: a commit of %zu jobs whose answer was lost %s", d->n,
                 got == OUTCOME_OK          ? "had committed: answered"
                 : got == OUTCOME_NOT_FOUND ? "had not committed: refused with 503"
                                            : "is still unknown: refused with 503");
        store_commit_enter(s);
        if (got != OUTCOME_OK) {
            for (size_t i = 0; i < d->n; i++) d->jobs[i]->outcome = OUTCOME_UNAVAILABLE;
            metrics_count(METRIC_STORE_ERRORS, 1);
        }
        store_finish(s, d->jobs, d->n);
        store_commit_leave(s);
        free(d);
    }
}

/* One group commit, on the writer.  The commit lock is held from COMMIT to the
 * last done(), so an audit's snapshot sees the database and memory both changed
 * or neither; a batch that hit a deadlock runs again, without the lock. */
static void store_commit_batch(struct store *s, struct store_job **jobs, size_t n)
{
    assert(store_on_writer(s));
    uint64_t t0 = clock_mono_ns();
    struct store_conn *c = s->writer_conn;
    enum outcome o;
    for (int attempt = 1;; attempt++) {
        o = store_apply_batch(s, jobs, n);
        store_commit_enter(s);
        if (o == OUTCOME_OK) o = s->be->commit(c);
        if (o == OUTCOME_OK) break;
        bool again = attempt < STORE_RETRIES && s->be->retryable && s->be->retryable(c);
        s->be->rollback(c);
        if (!again) break;
        store_commit_leave(s);
        LOG_WARN("store: a group commit of %zu jobs hit a deadlock; running it again", n);
    }
    if (o != OUTCOME_OK) {
        o = store_verdict(s, c, jobs, n);
        if (o == OUTCOME_UNAVAILABLE) { /* in doubt: store_resolve answers them */
            store_commit_leave(s);
            return;
        }
        if (o == OUTCOME_OK) LOG_WARN("store: a group commit of %zu jobs lost its answer, but had committed", n);
    }
    if (o != OUTCOME_OK) {
        /* Nothing of this batch is durable: refuse every job, so each caller gives
         * its reservation back and nobody is told "sold". */
        for (size_t i = 0; i < n; i++) jobs[i]->outcome = OUTCOME_UNAVAILABLE;
        metrics_count(METRIC_STORE_ERRORS, 1);
        LOG_ERROR("store: a group commit of %zu jobs failed; all refused with 503", n);
    }
    metrics_batch(n, clock_mono_ns() - t0);
    store_finish(s, jobs, n);
    store_commit_leave(s);
    if (s->be->after_commit) s->be->after_commit(c);
}

/* pthread_cond_timedwait for ms from now: 0, or ETIMEDOUT. */
static int store_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mu, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    return pthread_cond_timedwait(cond, mu, &until);
}

static void *store_writer_main(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "fs-writer");
    struct store_job **jobs = calloc(s->batch_max, sizeof *jobs);
    s->buys = s->be->batch_buys ? calloc(s->batch_max, sizeof *s->buys) : NULL;
    if (!jobs || (s->be->batch_buys && !s->buys)) LOG_FATAL("store: out of memory for the writer");
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&s->mu);
        /* Wait for jobs, or until stopping with nothing in doubt; with jobs in
         * doubt, ask about them again every STORE_DOUBT_ASK_MS even when idle. */
        bool asking = false;
        while (!s->head && !(s->stopping && !s->doubts) && !asking) {
            s->writer_waiting = true;
            if (s->doubts) asking = store_wait_ms(&s->wake, &s->mu, STORE_DOUBT_ASK_MS) != 0;
            else pthread_cond_wait(&s->wake, &s->mu);
            s->writer_waiting = false;
        }
        while (s->head && n < s->batch_max) {
            jobs[n++] = s->head;
            s->head = s->head->next;
        }
        if (!s->head) s->tail = NULL;
        bool doubting = s->doubts != NULL;
        bool over = n == 0 && s->stopping && !doubting; /* nothing left */
        pthread_mutex_unlock(&s->mu);
        if (over) break;
        if (doubting) store_resolve(s);
        if (n == 0) continue;
        atomic_fetch_sub_explicit(&s->backlog, n, memory_order_relaxed);
        store_commit_batch(s, jobs, n);
    }
    free(jobs);
    free(s->buys);
    assert(!s->doubts);
    return NULL;
}

static void *store_housekeeper_main(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "fs-housekeep");
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        store_wait_ms(&s->housekeep_wake, &s->mu, s->be->housekeep_ms);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->mu);
        s->be->housekeep(s->housekeep_conn, atomic_load(&s->listening) ? &s->locked : NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The backend whose scheme cfg->db starts with (postgresql://...), else the one
 * that takes any path (an SQLite file). */
static const struct store_backend *store_backend_for(const char *db)
{
    static const struct store_backend *const backends[] = {&store_pg, &store_sqlite};
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const char *const *scheme = backends[i]->schemes;
        if (!scheme) return backends[i];
        for (; *scheme; scheme++)
            if (strncmp(db, *scheme, strlen(*scheme)) == 0) return backends[i];
    }
    return NULL; /* unreachable while one backend takes any path */
}

struct store *store_open(const struct config *cfg, char *err, size_t err_size)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    s->be = store_backend_for(cfg->db);
    s->cfg = cfg;
    s->batch_max = (size_t)cfg->batch;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->housekeep_wake, NULL);
    pthread_mutex_init(&s->commit_mu, NULL);
    pthread_mutex_init(&s->audit_mu, NULL);
    pthread_condattr_t mono;
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&s->audit_wake, &mono);
    pthread_condattr_destroy(&mono);
    s->writer_conn = s->be->connect(cfg, true, err, err_size);
    if (!s->writer_conn || s->be->setup(s->writer_conn, cfg, s->order_secret, err, err_size) != OUTCOME_OK ||
        pthread_create(&s->writer, NULL, store_writer_main, s) != 0) {
        if (s->writer_conn) s->be->disconnect(s->writer_conn);
        free(s);
        return NULL;
    }
    if (s->be->housekeep) {
        s->housekeep_conn = s->be->connect(cfg, false, err, err_size);
        s->housekeeping = s->housekeep_conn &&
                          pthread_create(&s->housekeeper, NULL, store_housekeeper_main, s) == 0;
        if (!s->housekeeping) LOG_WARN("store: no housekeeping thread: %s", err);
    }
    return s;
}

struct store *store_open_remote(const struct config *cfg, struct ipc_client *link, const uint8_t *secret)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->be = store_backend_for(cfg->db); /* what it is, for store_kind and store_shared */
    s->cfg = cfg;
    s->remote = link;
    memcpy(s->order_secret, secret, sizeof s->order_secret);
    return s;
}

void store_follow(struct store *s, const struct store_follower *f) { s->follower = *f; }

const uint8_t *store_order_secret(const struct store *s) { return s->order_secret; }

void store_close(struct store *s)
{
    if (!s) return;
    if (s->remote) { /* the link is its owner's (proc.c) */
        free(s);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_cond_signal(&s->housekeep_wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    assert(!s->head); /* the writer ran every queued job before it ended */
    if (s->housekeeping) pthread_join(s->housekeeper, NULL);
    if (s->housekeep_conn) s->be->disconnect(s->housekeep_conn);
    s->be->disconnect(s->writer_conn);
    pthread_mutex_destroy(&s->commit_mu);
    pthread_cond_destroy(&s->audit_wake);
    pthread_mutex_destroy(&s->audit_mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->housekeep_wake);
    pthread_mutex_destroy(&s->mu);
    memset(s->order_secret, 0, sizeof s->order_secret);
    free(s);
}

/* store_load, and store_reload when locked: begin() (may be NULL) and the load
 * under the commit lock, on a connection of their own. */
static int store_load_all(struct store *s, bool locked, void (*begin)(void *),
                          void (*each)(void *, const struct store_sale *),
                          void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    char err[256];
    struct store_conn *c = s->be->connect(s->cfg, false, err, sizeof err);
    if (!c) {
        LOG_ERROR("store: %s", err);
        return -1;
    }
    /* Under the lock no commit lands between the read and memory, and every
     * commit before it has had its follow(). */
    if (locked) store_commit_enter(s);
    if (begin) begin(ctx);
    enum outcome o = s->be->load(c, each, held, ctx);
    if (locked) store_commit_leave(s);
    s->be->disconnect(c);
    return o == OUTCOME_OK ? 0 : -1;
}

int store_load(struct store *s, void (*each)(void *, const struct store_sale *),
               void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    return store_load_all(s, false, NULL, each, held, ctx);
}

void store_submit(struct store *s, struct store_job *job)
{
    store_submit_chain(s, job, job, 1);
}

void store_submit_chain(struct store *s, struct store_job *first, struct store_job *last, size_t n)
{
    assert(!first->finished && !last->finished); /* a job is queued once, and fresh */
    last->next = NULL;
    if (s->remote) {
        /* Jobs the link could not send end here as the writer would end them:
         * memory follows (a purchase's reservation is given back), then done(). */
        for (struct store_job *j = ipc_submit(s->remote, first, n), *next; j; j = next) {
            next = j->next;
            j->finished = true;
            if (s->follower.follow) s->follower.follow(s->follower.ctx, j);
            if (j->done) j->done(j);
        }
        return;
    }
    atomic_fetch_add_explicit(&s->backlog, n, memory_order_relaxed);
    pthread_mutex_lock(&s->mu);
    if (s->tail) s->tail->next = first;
    else s->head = first;
    s->tail = last;
    if (s->writer_waiting) pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

static void store_run_done(struct store_job *job)
{
    struct store_waiter *w = job->ctx;
    job->ctx = w->ctx;
    if (w->done) w->done(job);
    pthread_mutex_lock(&w->mu);
    w->finished = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

enum outcome store_run(struct store *s, struct store_job *job)
{
    assert(!store_on_writer(s) && !store_commit_held(s)); /* it would wait for itself */
    struct store_waiter w = {.done = job->done, .ctx = job->ctx};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    job->done = store_run_done;
    job->ctx = &w;
    store_submit(s, job);
    pthread_mutex_lock(&w.mu);
    while (!w.finished) pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    job->done = w.done;
    return job->outcome;
}

struct store_conn *store_conn_open(struct store *s)
{
    if (s->remote) return ipc_conn_open(s->remote);
    char err[256];
    struct store_conn *c = s->be->connect(s->cfg, false, err, sizeof err);
    if (!c) LOG_ERROR("store: cannot open a connection: %s", err);
    return c;
}

void store_conn_close(struct store_conn *c)
{
    if (c) STORE_BACKEND(c)->disconnect(c);
}

enum outcome store_order_get(struct store_conn *c, int64_t id, struct store_order *out)
{
    return STORE_BACKEND(c)->order_get(c, id, out);
}

enum outcome store_order_by_key(struct store_conn *c, int64_t sale_id, const char *user,
                                const char *key, struct store_order *out)
{
    return STORE_BACKEND(c)->order_by_key(c, sale_id, user, key, out);
}

enum outcome store_purchase_now(struct store *s, struct store_conn *c, struct store_job *job)
{
    assert(job->op == STORE_PURCHASE && c != s->writer_conn && !job->finished);
    if (s->remote) { /* the writer process's group commit decides, guarded in SQL */
        store_submit(s, job);
        return OUTCOME_OK;
    }
    if (s->be->begin(c) != OUTCOME_OK) job->outcome = OUTCOME_UNAVAILABLE;
    else if ((job->outcome = store_buy(s->be, c, job)) != OUTCOME_OK) s->be->rollback(c);
    /* COMMIT and the memory update under one lock, as the writer does, so an audit
     * never sees one without the other; a refusal finishes under it too, as on
     * the writer. */
    store_commit_enter(s);
    if (job->outcome == OUTCOME_OK && s->be->commit(c) != OUTCOME_OK) {
        s->be->rollback(c);
        enum outcome got = store_verdict(s, c, &job, 1);
        if (got == OUTCOME_UNAVAILABLE) { /* in doubt: answered later, on the writer */
            store_commit_leave(s);
            return OUTCOME_UNAVAILABLE;
        }
        if (got != OUTCOME_OK) job->outcome = OUTCOME_UNAVAILABLE;
    }
    enum outcome o = job->outcome; /* done() may free the job */
    store_finish(s, &job, 1);
    store_commit_leave(s);
    return o;
}

/* At an audit's snapshot: memory's side, by the follower. */
static void store_audit_read_memory(const struct store *s, int64_t sale_id, struct store_memory *mem)
{
    if (s->follower.memory) s->follower.memory(s->follower.ctx, sale_id, mem);
    else *mem = (struct store_memory){.at_ns = clock_mono_ns()};
}

enum outcome store_audit(struct store *s, struct store_conn *c, int64_t sale_id, struct store_audit *out,
                         void (*snapshot)(void *, const struct store_memory *), void *ctx)
{
    struct store_memory mem;
    enum outcome o = s->remote ? ipc_audit(c, sale_id, out, &mem) : store_audit_memory(s, c, sale_id, out, &mem);
    if (o == OUTCOME_OK && snapshot) snapshot(ctx, &mem);
    return o;
}

enum outcome store_audit_memory(struct store *s, struct store_conn *c, int64_t sale_id, struct store_audit *out,
                                struct store_memory *mem)
{
    assert(!store_commit_held(s));
    /* A seqlock over the commit lock: the snapshot and memory were read while no
     * commit was between its COMMIT and its memory update when commit_seq was even
     * and the same before and after.  An audit may run at low priority, and a
     * low-priority thread holding the commit lock would make the writer wait for
     * the CPU it does not get; so it takes the lock only after a few misses. */
    enum outcome o = OUTCOME_UNAVAILABLE;
    bool consistent = false;
    /* A commit under way (its fsync, say) is waited out, not counted as a miss:
     * under a crowd one is under way most of the time, and counting it took the
     * lock in a fifth of the runs.  Only snapshots a commit overtook count. */
    uint64_t give_up = clock_mono_ns() + STORE_AUDIT_WAIT_NS;
    for (int misses = 0; misses < STORE_AUDIT_TRIES && !consistent;) {
        uint64_t before = atomic_load(&s->commit_seq);
        if (before & 1) {
            if (!store_commit_wait(s, before, give_up)) break;
            continue;
        }
        o = s->be->audit_begin(c, sale_id, out);
        if (o == OUTCOME_OK) store_audit_read_memory(s, sale_id, mem);
        consistent = atomic_load(&s->commit_seq) == before;
        if (o != OUTCOME_OK) return o; /* audit_begin ended its transaction */
        if (!consistent) s->be->rollback(c), misses++;
    }
    if (!consistent) {
        store_commit_lock(s); /* no change under it: commit_seq stays */
        o = s->be->audit_begin(c, sale_id, out);
        if (o == OUTCOME_OK) store_audit_read_memory(s, sale_id, mem);
        store_commit_unlock(s);
        if (o != OUTCOME_OK) return o;
    }
    return s->be->audit_finish(c, sale_id, out);
}

bool store_shared(const struct store *s) { return s->be->shared; }

const char *store_kind(const struct store *s) { return s->be->kind; }

/* The backend reads the database without the commit lock and tells memory under
 * it: a local commit and the news of another node's never interleave in memory. */
static void store_event_sale(void *ctx, const struct store_sale *row, uint64_t read_ns)
{
    struct store *s = ctx;
    store_commit_enter(s);
    s->events.sale(s->events.ctx, row, read_ns);
    store_commit_leave(s);
}

static void store_event_sold_out(void *ctx, int64_t sale_id, uint64_t read_ns)
{
    struct store *s = ctx;
    store_commit_enter(s);
    s->events.sold_out(s->events.ctx, sale_id, read_ns);
    store_commit_leave(s);
}

static void store_event_reset(void *ctx, int64_t sale_id)
{
    struct store *s = ctx;
    store_commit_enter(s);
    s->events.reset(s->events.ctx, sale_id);
    store_commit_leave(s);
}

void store_listen(struct store *s, const struct store_events *ev)
{
    s->events = *ev;
    s->locked = (struct store_events){store_event_sale, store_event_sold_out, store_event_reset, s};
    atomic_store(&s->listening, true); /* publishes events to the housekeeper */
}

int store_reload(struct store *s, void (*begin)(void *), void (*each)(void *, const struct store_sale *),
                 void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    return store_load_all(s, true, begin, each, held, ctx);
}

size_t store_backlog(struct store *s)
{
    if (s->remote) return ipc_backlog(s->remote);
    return atomic_load_explicit(&s->backlog, memory_order_relaxed);
}

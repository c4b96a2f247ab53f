/* store — see store.h.  The group-commit writer and the commit lock live here;
 * the SQL lives in the backend (store_sqlite.c).
 *
 * Writer loop: wait for jobs; take up to --batch of them; BEGIN; apply each;
 * COMMIT; then, under the commit lock, call every job's done().  While one batch
 * commits, the next accumulates, so under load the batch grows by itself and one
 * fsync is shared by many purchases.
 *
 * A transaction in doubt: its COMMIT was sent and the link died before the
 * answer (PostgreSQL).  Its jobs are neither answered nor released: they are
 * parked (by the writer, or by a worker of the sqlite strategy), the writer
 * goes on with new batches and asks the backend at every turn whether that
 * transaction committed, and answers them by what the database says, or 503
 * after STORE_DOUBT_MS if the database stays out of reach.  Never 201 unless
 * the database said it committed.
 */
#include "store.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store_int.h"

struct store {
    const struct store_backend *be;
    const struct config *cfg;
    struct store_conn *writer_conn; /* owned by the writer thread after start */
    pthread_t writer;
    size_t batch_max;

    pthread_mutex_t mu; /* guards the queue and `stopping` */
    pthread_cond_t wake;
    struct store_job *head, *tail;
    _Atomic size_t backlog;
    bool stopping, writer_waiting;

    pthread_mutex_t commit_mu; /* see store.h: done() callbacks and audit snapshots */
    /* Odd while someone holds commit_mu to change the database or memory: an audit
     * reads it around its snapshot instead of taking the lock (store_audit). */
    _Atomic uint64_t commit_seq;
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

/* For store_run(): a job plus a flag to wait on. */
struct store_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool finished;
    void (*done)(struct store_job *);
    void *ctx;
};

/* The commit lock, for changing the database or memory under it. */
static void store_commit_enter(struct store *s)
{
    pthread_mutex_lock(&s->commit_mu);
    atomic_fetch_add(&s->commit_seq, 1);
}

static void store_commit_leave(struct store *s)
{
    atomic_fetch_add(&s->commit_seq, 1);
    pthread_mutex_unlock(&s->commit_mu);
}

static void store_finish(struct store_job **jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->done) jobs[i]->done(jobs[i]);
}

/* One group commit, on the writer thread only: BEGIN, every job, then COMMIT
 * under the commit lock; false when anything failed (then rolled back).  *retry
 * says whether running it again may succeed. */
static bool store_try_batch(struct store *s, struct store_job **jobs, size_t n, bool *retry)
{
    struct store_conn *c = s->writer_conn;
    bool failed = s->be->begin(c) != 0;
    if (!failed && s->be->apply_batch) {
        failed = s->be->apply_batch(c, jobs, n) != 0;
    } else {
        for (size_t i = 0; i < n && !failed; i++) {
            jobs[i]->outcome = s->be->apply(c, jobs[i]);
            failed = jobs[i]->outcome == OUTCOME_UNAVAILABLE;
        }
    }
    /* COMMIT and the memory updates under one lock: an audit taking its snapshot
     * sees both or neither.  The caller unlocks after done(). */
    store_commit_enter(s);
    if (!failed) failed = s->be->commit(c) != 0;
    if (failed) {
        *retry = s->be->retryable && s->be->retryable(c);
        s->be->rollback(c);
    }
    return !failed;
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

/* On the writer: answers the jobs in doubt whose fate the database can tell
 * now, or, past their time, refuses them. */
static void store_resolve(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    struct store_doubt *list = s->doubts;
    s->doubts = NULL;
    pthread_mutex_unlock(&s->mu);
    while (list) {
        struct store_doubt *d = list;
        list = d->next;
        int got = s->be->committed(s->writer_conn, d->txn, d->jobs, d->n);
        if (got < 0 && clock_mono_ns() < d->until_ns) {
            pthread_mutex_lock(&s->mu);
            d->next = s->doubts;
            s->doubts = d;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        LOG_WARN("store: a commit of %zu jobs whose answer was lost %s", d->n,
                 got > 0    ? "had committed: answered"
                 : got == 0 ? "had not committed: refused with 503"
                            : "is still unknown: refused with 503");
        store_commit_enter(s); /* memory follows a commit: an audit must see it under way */
        if (got <= 0) {
            for (size_t i = 0; i < d->n; i++) d->jobs[i]->outcome = OUTCOME_UNAVAILABLE;
            metrics_count(METRIC_STORE_ERRORS, 1);
        }
        store_finish(d->jobs, d->n);
        store_commit_leave(s);
        free(d);
    }
}

static bool store_doubting(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    bool any = s->doubts != NULL;
    pthread_mutex_unlock(&s->mu);
    return any;
}

static void store_commit_batch(struct store *s, struct store_job **jobs, size_t n)
{
    uint64_t t0 = clock_mono_ns();
    bool retry = false, ok;
    for (int attempt = 1; !(ok = store_try_batch(s, jobs, n, &retry)) && retry && attempt < STORE_RETRIES;
         attempt++) {
        store_commit_leave(s);
        LOG_WARN("store: a group commit of %zu jobs hit a deadlock; running it again", n);
    }
    int64_t txn = !ok && s->be->committed ? s->be->txn(s->writer_conn) : 0;
    int got = txn ? s->be->committed(s->writer_conn, txn, jobs, n) : 0;
    if (got > 0) {
        ok = true; /* its answer was lost, not its work */
        LOG_WARN("store: a group commit of %zu jobs lost its answer, but had committed", n);
    } else if (got < 0) {
        /* Leave and enter, not unlock and lock: commit_seq must not stay odd. */
        store_commit_leave(s);
        if (store_doubt(s, jobs, n, txn)) return;
        store_commit_enter(s);
    }
    if (!ok) {
        /* Nothing of this batch is durable: refuse every job, so each caller gives
         * its reservation back and nobody is told "sold". */
        for (size_t i = 0; i < n; i++) jobs[i]->outcome = OUTCOME_UNAVAILABLE;
        metrics_count(METRIC_STORE_ERRORS, 1);
        LOG_ERROR("store: a group commit of %zu jobs failed; all refused with 503", n);
    }
    metrics_batch(n, clock_mono_ns() - t0);
    store_finish(jobs, n);
    store_commit_leave(s);
    if (s->be->after_commit) s->be->after_commit(s->writer_conn);
}

static void *store_writer_main(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "fs-writer");
    struct store_job **jobs = calloc(s->batch_max, sizeof *jobs);
    if (!jobs) LOG_FATAL("store: out of memory for the writer");
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping) {
            s->writer_waiting = true;
            if (s->doubts) { /* ask again soon, even with nothing to do */
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += 50 * 1000000L;
                until.tv_sec += until.tv_nsec / 1000000000L;
                until.tv_nsec %= 1000000000L;
                int rc = pthread_cond_timedwait(&s->wake, &s->mu, &until);
                s->writer_waiting = false;
                if (rc != 0) break;
                continue;
            }
            pthread_cond_wait(&s->wake, &s->mu);
            s->writer_waiting = false;
        }
        while (s->head && n < s->batch_max) {
            jobs[n++] = s->head;
            s->head = s->head->next;
        }
        if (!s->head) s->tail = NULL;
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        store_resolve(s);
        if (n == 0 && stopping && store_doubting(s)) {
            nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL); /* ask again until their time is up */
            continue;
        }
        if (n == 0 && stopping) break; /* nothing left */
        if (n == 0) continue;
        atomic_fetch_sub_explicit(&s->backlog, n, memory_order_relaxed);
        store_commit_batch(s, jobs, n);
    }
    free(jobs);
    assert(!s->doubts);
    return NULL;
}

static void *store_housekeeper_main(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "fs-housekeep");
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += s->be->housekeep_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->housekeep_wake, &s->mu, &until);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->mu);
        s->be->housekeep(s->housekeep_conn, atomic_load(&s->listening) ? &s->locked : NULL);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

struct store *store_open(const struct config *cfg, char *err, size_t err_size)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    /* A URI picks PostgreSQL; anything else is an SQLite file. */
    s->be = strncmp(cfg->db, "postgresql://", 13) == 0 || strncmp(cfg->db, "postgres://", 11) == 0
                ? &store_pg
                : &store_sqlite;
    s->cfg = cfg;
    s->batch_max = (size_t)cfg->batch;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->housekeep_wake, NULL);
    pthread_mutex_init(&s->commit_mu, NULL);
    s->writer_conn = s->be->connect(cfg, true, err, err_size);
    if (!s->writer_conn || s->be->setup(s->writer_conn, cfg, s->order_secret, err, err_size) != 0 ||
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

const uint8_t *store_order_secret(const struct store *s) { return s->order_secret; }

void store_close(struct store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    pthread_cond_signal(&s->housekeep_wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    if (s->housekeeping) pthread_join(s->housekeeper, NULL);
    if (s->housekeep_conn) s->be->disconnect(s->housekeep_conn);
    s->be->disconnect(s->writer_conn);
    pthread_mutex_destroy(&s->commit_mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->housekeep_wake);
    pthread_mutex_destroy(&s->mu);
    memset(s->order_secret, 0, sizeof s->order_secret);
    free(s);
}

int store_load(struct store *s, void (*each)(void *, const struct store_sale *),
               void (*held)(void *, int64_t, const char *, int64_t), void *ctx)
{
    char err[256];
    struct store_conn *c = s->be->connect(s->cfg, false, err, sizeof err);
    if (!c) {
        LOG_ERROR("store: %s", err);
        return -1;
    }
    int rc = s->be->load(c, each, held, ctx);
    s->be->disconnect(c);
    return rc;
}

void store_submit(struct store *s, struct store_job *job)
{
    store_submit_chain(s, job, job, 1);
}

void store_submit_chain(struct store *s, struct store_job *first, struct store_job *last, size_t n)
{
    last->next = NULL;
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
    assert(job->op == STORE_PURCHASE);
    bool locked = false;
    if (s->be->begin(c) != 0) {
        job->outcome = OUTCOME_UNAVAILABLE;
    } else if ((job->outcome = s->be->apply(c, job)) != OUTCOME_OK) {
        s->be->rollback(c);
    } else {
        /* COMMIT and the memory update under one lock, as the writer does, so an
         * audit never sees one without the other. */
        store_commit_enter(s);
        locked = true;
        if (s->be->commit(c) != 0) {
            s->be->rollback(c);
            int64_t txn = s->be->committed ? s->be->txn(c) : 0;
            int got = txn ? s->be->committed(c, txn, &job, 1) : 0;
            if (got < 0) {
                store_commit_leave(s); /* commit_seq must not stay odd */
                if (store_doubt(s, &job, 1, txn)) return OUTCOME_UNAVAILABLE; /* answered later */
                store_commit_enter(s);
            }
            if (got <= 0) job->outcome = OUTCOME_UNAVAILABLE;
        }
    }
    enum outcome o = job->outcome; /* done() may free the job */
    if (job->done) job->done(job);
    if (locked) store_commit_leave(s);
    return o;
}

enum outcome store_audit(struct store *s, struct store_conn *c, int64_t sale_id,
                         struct store_audit *out, void (*snapshot)(void *), void *ctx)
{
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
            if (clock_mono_ns() > give_up) break;
            nanosleep(&(struct timespec){0, 100000}, NULL);
            continue;
        }
        o = s->be->audit_begin(c, sale_id, out);
        if (o == OUTCOME_OK && snapshot) snapshot(ctx);
        consistent = atomic_load(&s->commit_seq) == before;
        if (o != OUTCOME_OK) return o; /* audit_begin ended its transaction */
        if (!consistent) s->be->rollback(c), misses++;
    }
    if (!consistent) {
        pthread_mutex_lock(&s->commit_mu);
        o = s->be->audit_begin(c, sale_id, out);
        if (o == OUTCOME_OK && snapshot) snapshot(ctx);
        pthread_mutex_unlock(&s->commit_mu);
        if (o != OUTCOME_OK) return o;
    }
    return s->be->audit_finish(c, sale_id, out);
}

/* What paying or cancelling does to an order as it stands at now (ms). */
enum store_settle_step {
    SETTLE_NOTHING, /* answer the outcome, change nothing */
    SETTLE_PAY,     /* pending -> paid */
    SETTLE_CANCEL,  /* pending -> cancelled, units back */
    SETTLE_EXPIRE   /* pending past its deadline -> expired, units back */
};

static enum store_settle_step store_settle_step(const struct store_order *o, const char *user, bool pay,
                                                int64_t now, enum outcome *outcome)
{
    bool pending = strcmp(o->status, "pending") == 0;
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
    if (strcmp(o->status, "expired") == 0) {
        *outcome = OUTCOME_ORDER_EXPIRED;
        return SETTLE_NOTHING;
    }
    bool cancelled = strcmp(o->status, "cancelled") == 0;
    if (pay) {
        /* paying twice, or a confirmed order: nothing to do, say how it stands */
        if (cancelled) *outcome = OUTCOME_ORDER_CANCELLED;
        return pending ? SETTLE_PAY : SETTLE_NOTHING;
    }
    if (!pending && !cancelled) *outcome = OUTCOME_ORDER_FINAL; /* paid or confirmed */
    return pending ? SETTLE_CANCEL : SETTLE_NOTHING;           /* cancelling twice is fine */
}

enum outcome store_settle(struct store_conn *c, struct store_settle *t, bool pay)
{
    const struct store_backend *be = STORE_BACKEND(c);
    struct store_order *o = &t->order;
    enum outcome got = be->order_lock(c, t->order_id, o);
    if (got != OUTCOME_OK) return got;
    int64_t now = clock_wall_ms();
    switch (store_settle_step(o, t->user_id, pay, now, &got)) {
    case SETTLE_NOTHING: break;
    case SETTLE_EXPIRE:
    case SETTLE_CANCEL: {
        const char *status = got == OUTCOME_ORDER_EXPIRED ? "expired" : "cancelled";
        if (be->order_close(c, o, status, now, &t->returned) != 0) return OUTCOME_UNAVAILABLE;
        snprintf(o->status, sizeof o->status, "%s", status);
        break;
    }
    case SETTLE_PAY:
        if (be->order_pay(c, o, now, &t->paid_now) != 0) return OUTCOME_UNAVAILABLE;
        snprintf(o->status, sizeof o->status, "paid");
        o->paid_at = now;
        break;
    }
    return got;
}

bool store_shared(const struct store *s) { return s->be == &store_pg; }

const char *store_kind(const struct store *s) { return s->be == &store_pg ? "postgresql" : "sqlite"; }

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

size_t store_backlog(struct store *s)
{
    return atomic_load_explicit(&s->backlog, memory_order_relaxed);
}

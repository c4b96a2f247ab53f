/* test_pool — every job runs exactly once, the bound holds, stop drains. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "pool.h"
#include "unit.h"

static void sleep_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL); }

struct job {
    struct pool_job base; /* first: run() gets &base */
    _Atomic int runs;
    _Atomic int *done_total;
    void *worker_seen;
};

static void job_run(struct pool_job *pj, void *worker)
{
    struct job *j = (struct job *)pj;
    j->worker_seen = worker;
    atomic_fetch_add(&j->runs, 1);
    if (j->done_total) atomic_fetch_add(j->done_total, 1);
}

static void job_init(struct job *j, _Atomic int *total)
{
    memset(j, 0, sizeof *j);
    j->base.run = job_run;
    j->done_total = total;
}

/* Waits up to 5 s for *counter to reach want. */
static bool wait_for(_Atomic int *counter, int want)
{
    for (int i = 0; i < 5000 && atomic_load(counter) < want; i++) sleep_ms(1);
    return atomic_load(counter) >= want;
}

/* ---- every job exactly once, from several producers ------------------------- */

enum { PRODUCERS = 4, PER_PRODUCER = 20000 };

struct producer {
    struct pool *p;
    struct job *jobs;
    _Atomic int *total;
};

static void *produce(void *arg)
{
    struct producer *pr = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        while (!pool_reserve(pr->p)) sched_yield(); /* full: wait for the workers */
        job_init(&pr->jobs[i], pr->total);
        pool_submit(pr->p, &pr->jobs[i].base);
    }
    return NULL;
}

static void test_all_jobs_once(void)
{
    _Atomic int total = 0;
    struct pool *p = pool_new(3, 64, NULL);
    CHECK(p != NULL);
    CHECK_EQ_INT(pool_capacity(p), 64);
    struct job *jobs = calloc(PRODUCERS * PER_PRODUCER, sizeof *jobs);
    pthread_t th[PRODUCERS];
    struct producer pr[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (struct producer){p, jobs + i * PER_PRODUCER, &total};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) pthread_join(th[i], NULL);
    pool_free(p); /* runs what is still queued */
    CHECK_EQ_INT(atomic_load(&total), PRODUCERS * PER_PRODUCER);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        if (atomic_load(&jobs[i].runs) != 1) CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
    free(jobs);
}

/* ---- capacity ------------------------------------------------------------------- */

static void test_capacity(void)
{
    struct pool *p = pool_new(1, 4, NULL);
    CHECK(p != NULL);
    for (int i = 0; i < 4; i++) CHECK(pool_reserve(p));
    CHECK_EQ_INT(pool_depth(p), 4);
    CHECK(!pool_reserve(p));
    CHECK(!pool_reserve(p));
    pool_unreserve(p);
    CHECK_EQ_INT(pool_depth(p), 3);
    CHECK(pool_reserve(p));
    CHECK(!pool_reserve(p));
    /* a submitted job keeps its slot until a worker picks it up */
    _Atomic int total = 0;
    struct job j;
    job_init(&j, &total);
    pool_submit(p, &j.base);
    CHECK(wait_for(&total, 1));
    for (int i = 0; i < 100 && pool_depth(p) != 3; i++) sleep_ms(1);
    CHECK_EQ_INT(pool_depth(p), 3);
    CHECK(pool_reserve(p));
    CHECK(!pool_reserve(p));
    for (int i = 0; i < 4; i++) pool_unreserve(p);
    CHECK_EQ_INT(pool_depth(p), 0);
    pool_free(p);
}

/* Jobs waiting behind a blocked worker hold their slots: the queue is full at
 * capacity queued jobs, and frees up as they run. */
static _Atomic int gate_open;

static void gate_run(struct pool_job *pj, void *worker)
{
    while (!atomic_load(&gate_open)) sleep_ms(1);
    job_run(pj, worker);
}

static void test_capacity_with_queued_jobs(void)
{
    _Atomic int total = 0;
    atomic_store(&gate_open, 0);
    struct pool *p = pool_new(1, 3, NULL);
    struct job blocker, q[3];
    job_init(&blocker, &total);
    blocker.base.run = gate_run;
    CHECK(pool_reserve(p));
    pool_submit(p, &blocker.base);
    for (int i = 0; i < 1000 && pool_depth(p) != 0; i++) sleep_ms(1); /* picked up, blocked */
    CHECK_EQ_INT(pool_depth(p), 0);
    for (int i = 0; i < 3; i++) {
        CHECK(pool_reserve(p));
        job_init(&q[i], &total);
        pool_submit(p, &q[i].base);
    }
    CHECK(!pool_reserve(p)); /* three queued: full */
    CHECK_EQ_INT(atomic_load(&total), 0);
    atomic_store(&gate_open, 1);
    CHECK(wait_for(&total, 4));
    pool_free(p);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(atomic_load(&q[i].runs), 1);
}

/* ---- stop ------------------------------------------------------------------------ */

static void test_stop_drains_then_refuses(void)
{
    _Atomic int total = 0;
    atomic_store(&gate_open, 0);
    struct pool *p = pool_new(2, 1000, NULL);
    static struct job jobs[500];
    for (int i = 0; i < 500; i++) {
        CHECK(pool_reserve(p));
        job_init(&jobs[i], &total);
        jobs[i].base.run = gate_run; /* held until stop is under way */
        pool_submit(p, &jobs[i].base);
    }
    atomic_store(&gate_open, 1);
    pool_stop(p);
    CHECK_EQ_INT(atomic_load(&total), 500);
    for (int i = 0; i < 500; i++) CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
    CHECK(!pool_reserve(p));
    CHECK_EQ_INT(pool_depth(p), 0);
    pool_stop(p); /* idempotent */
    CHECK(!pool_reserve(p));
    pool_free(p);
}

/* A slot claimed before pool_stop: stop waits for its job, which still runs. */
struct stopper {
    struct pool *p;
    _Atomic int finished;
};

static void *stop_thread(void *arg)
{
    struct stopper *s = arg;
    pool_stop(s->p);
    atomic_store(&s->finished, 1);
    return NULL;
}

static void test_reserved_before_stop_runs(void)
{
    _Atomic int total = 0;
    struct stopper s = {.p = pool_new(2, 8, NULL)};
    CHECK(s.p != NULL);
    CHECK(pool_reserve(s.p));
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, stop_thread, &s), 0);
    sleep_ms(50);
    CHECK(!pool_reserve(s.p)); /* stopping: new claims refused */
    CHECK_EQ_INT(atomic_load(&s.finished), 0); /* still waiting for our job */
    struct job j;
    job_init(&j, &total);
    pool_submit(s.p, &j.base);
    pthread_join(th, NULL);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK_EQ_INT(atomic_load(&s.finished), 1);
    pool_free(s.p);
}

/* A slot claimed before stop and given back also lets stop finish. */
static void test_unreserve_during_stop(void)
{
    struct stopper s = {.p = pool_new(1, 8, NULL)};
    CHECK(pool_reserve(s.p));
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, stop_thread, &s), 0);
    sleep_ms(30);
    CHECK_EQ_INT(atomic_load(&s.finished), 0);
    pool_unreserve(s.p);
    pthread_join(th, NULL);
    CHECK_EQ_INT(atomic_load(&s.finished), 1);
    pool_free(s.p);
}

/* ---- worker hooks ------------------------------------------------------------------ */

enum { HOOK_WORKERS = 5 };

struct hooks {
    _Atomic int created, freed, rounds;
    _Atomic int by_index[HOOK_WORKERS];
    int states[HOOK_WORKERS];
    _Atomic int freed_by_index[HOOK_WORKERS];
};

/* A chain of jobs submitted in one call: each runs exactly once. */
static void test_submit_chain(void)
{
    struct pool *p = pool_new(2, 100, NULL);
    CHECK(p != NULL);
    _Atomic int total = 0;
    static struct job jobs[100];
    for (int i = 0; i < 100; i++) {
        CHECK(pool_reserve(p));
        job_init(&jobs[i], &total);
        jobs[i].base.next = i + 1 < 100 ? &jobs[i + 1].base : NULL;
    }
    CHECK(!pool_reserve(p)); /* all 100 slots are claimed */
    pool_submit_chain(p, &jobs[0].base, &jobs[99].base, 100);
    pool_free(p);
    CHECK_EQ_INT(atomic_load(&total), 100);
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
}

static void *hook_new(void *arg, size_t index)
{
    struct hooks *h = arg;
    atomic_fetch_add(&h->created, 1);
    if (index < HOOK_WORKERS) atomic_fetch_add(&h->by_index[index], 1);
    h->states[index % HOOK_WORKERS] = (int)index;
    return &h->states[index % HOOK_WORKERS];
}

static struct hooks *hooks_for_free;

static void hook_after_round(void *arg, void *state)
{
    struct hooks *h = arg; /* the hooks' arg reaches after_round too */
    atomic_fetch_add(&h->rounds, 1);
}

static void hook_free(void *state)
{
    int *s = state;
    atomic_fetch_add(&hooks_for_free->freed, 1);
    atomic_fetch_add(&hooks_for_free->freed_by_index[*s], 1);
}

static void test_worker_hooks(void)
{
    static struct hooks h;
    memset(&h, 0, sizeof h);
    hooks_for_free = &h;
    struct pool_hooks ph = {hook_new, hook_after_round, hook_free, &h};
    struct pool *p = pool_new(HOOK_WORKERS, 256, &ph);
    CHECK(p != NULL);
    /* jobs see a worker's state */
    _Atomic int total = 0;
    static struct job jobs[200];
    for (int i = 0; i < 200; i++) {
        CHECK(pool_reserve(p));
        job_init(&jobs[i], &total);
        pool_submit(p, &jobs[i].base);
    }
    pool_free(p);
    CHECK_EQ_INT(atomic_load(&total), 200);
    CHECK_EQ_INT(atomic_load(&h.created), HOOK_WORKERS);
    CHECK_EQ_INT(atomic_load(&h.freed), HOOK_WORKERS);
    /* after_round ran after every round of jobs: at least one, at most one per job */
    CHECK(atomic_load(&h.rounds) >= 1 && atomic_load(&h.rounds) <= 200);
    for (int i = 0; i < HOOK_WORKERS; i++) {
        CHECK_EQ_INT(atomic_load(&h.by_index[i]), 1);
        CHECK_EQ_INT(atomic_load(&h.freed_by_index[i]), 1);
    }
    for (int i = 0; i < 200; i++) {
        int *state = jobs[i].worker_seen;
        CHECK(state >= &h.states[0] && state < &h.states[HOOK_WORKERS]);
    }
}

/* NULL hooks: workers get a NULL state. */
static void test_null_hooks(void)
{
    _Atomic int total = 0;
    struct pool *p = pool_new(2, 4, NULL);
    struct job j;
    job_init(&j, &total);
    j.worker_seen = &j;
    CHECK(pool_reserve(p));
    pool_submit(p, &j.base);
    pool_free(p);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK(j.worker_seen == NULL);
    CHECK(j.base.enqueued_ns > 0);
    pool_free(NULL);
}

static const struct unit_case cases[] = {
    {"all_jobs_once", test_all_jobs_once},
    {"submit_chain", test_submit_chain},
    {"capacity", test_capacity},
    {"capacity_with_queued_jobs", test_capacity_with_queued_jobs},
    {"stop_drains_then_refuses", test_stop_drains_then_refuses},
    {"reserved_before_stop_runs", test_reserved_before_stop_runs},
    {"unreserve_during_stop", test_unreserve_during_stop},
    {"worker_hooks", test_worker_hooks},
    {"null_hooks", test_null_hooks},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

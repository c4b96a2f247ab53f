/* storebench — the raw store ceiling: flashsale's own group-committing writer with
 * no HTTP at all, for `make bench` to put beside the HTTP figures.
 *
 * One producer keeps --inflight purchases queued (as that many concurrent buyers
 * would), each a distinct user of one big sale; the writer group-commits them
 * exactly as the service does with its default --inventory atomic (the stock-guarded
 * UPDATE, the INSERT; the per-user limit is the ledger's).
 * Prints committed purchases per second, as text or (--json) one JSON object.
 *
 *   storebench [--seconds S] [--inflight N] [--batch N] [--durability full|normal] [--json]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

static _Atomic long storebench_done_count, storebench_failed;
static pthread_mutex_t storebench_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t storebench_cond = PTHREAD_COND_INITIALIZER;
static long storebench_inflight;

static void storebench_done(struct store_job *job)
{
    if (job->outcome == OUTCOME_OK) atomic_fetch_add(&storebench_done_count, 1);
    else atomic_fetch_add(&storebench_failed, 1);
    free(job);
    pthread_mutex_lock(&storebench_mu);
    storebench_inflight--;
    pthread_cond_signal(&storebench_cond);
    pthread_mutex_unlock(&storebench_mu);
}

int main(int argc, char **argv)
{
    double seconds = 3;
    long inflight = 256;
    const char *batch = "1024", *durability = "full";
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) inflight = atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = argv[++i];
        else if (!strcmp(argv[i], "--durability") && i + 1 < argc) durability = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: storebench [--seconds S] [--inflight N] [--batch N] "
                            "[--durability full|normal] [--json]\n");
            return 2;
        }
    }
    char dir[] = "/tmp/storebench-XXXXXX", db[64];
    if (!mkdtemp(dir)) return 1;
    snprintf(db, sizeof db, "%s/bench.db", dir);
    char cmdline[512];
    snprintf(cmdline, sizeof cmdline, "storebench --db %s --batch %s --durability %s --demo-stock 0 --log-level warn",
             db, batch, durability);
    char *args[16];
    int nargs = 0;
    for (char *tok = strtok(cmdline, " "); tok && nargs < 15; tok = strtok(NULL, " ")) args[nargs++] = tok;
    args[nargs] = NULL;
    struct config cfg;
    if (config_parse(&cfg, nargs, args, stderr) != 0) return 2;
    metrics_init();
    char err[256];
    struct store *s = store_open(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "storebench: %s\n", err);
        return 1;
    }
    struct store_job create = {.op = STORE_CREATE_SALE};
    snprintf(create.u.sale.name, sizeof create.u.sale.name, "bench");
    create.u.sale.stock_total = 1000000000;
    create.u.sale.per_user_limit = 1;
    if (store_run(s, &create) != OUTCOME_OK) return 1;

    uint64_t t0 = clock_mono_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    long n = 0;
    while (clock_mono_ns() < end) {
        pthread_mutex_lock(&storebench_mu);
        while (storebench_inflight >= inflight) pthread_cond_wait(&storebench_cond, &storebench_mu);
        storebench_inflight++;
        pthread_mutex_unlock(&storebench_mu);
        struct store_job *job = calloc(1, sizeof *job);
        if (!job) return 1;
        job->op = STORE_PURCHASE;
        job->done = storebench_done;
        struct store_purchase *p = &job->u.purchase;
        p->sale_id = create.u.sale.id;
        snprintf(p->user_id, sizeof p->user_id, "bench-%ld", n++);
        p->quantity = 1;
        p->per_user_limit = 1;
        p->limit_held = true; /* as the default strategy does: its ledger held the limit */
        store_submit(s, job);
    }
    store_close(s); /* commits everything still queued */
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    long done = atomic_load(&storebench_done_count);
    if (json)
        printf("{\"committed\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"per_second\":%.0f,"
               "\"inflight\":%ld,\"batch\":%s,\"durability\":\"%s\"}\n",
               done, atomic_load(&storebench_failed), secs, done / secs, inflight, batch, durability);
    else
        printf("storebench: %ld purchases committed in %.2f s = %.0f/s (in flight %ld, batch <= %s, "
               "synchronous %s)\n",
               done, secs, done / secs, inflight, batch, durability);
    config_deinit(&cfg);
    unlink(db);
    char side[80];
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    rmdir(dir);
    return 0;
}

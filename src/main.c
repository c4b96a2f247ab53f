/* main — wires the modules together, and owns start-up and shutdown.
 *
 * Start: config -> store (schema, demo sale) -> inventory rebuilt from the store
 * -> api (worker pool) -> http (I/O threads).  The main thread then only ticks the
 * per-second metrics, queues the expiry sweep every --sweep-ms, and waits for
 * SIGTERM/SIGINT with sigtimedwait: the signals are blocked in every thread, so
 * no handler ever runs.
 * Shutdown, in this order (libmicrohttpd aborts if stopped with a suspended
 * connection, so every deferred request must be answered first):
 *   stop accepting -> workers finish the queue -> the writer commits and answers
 *   it -> answers leave -> I/O threads stop -> the store closes.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "inventory.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "store.h"
#include "version.h"

#define MAIN_DRAIN_MS 8000 /* of the 10 s a supervisor usually allows after SIGTERM */

static void main_load_sale(void *ctx, const struct store_sale *row)
{
    if (!inventory_add(ctx, row)) LOG_FATAL("cannot hold sale %lld in memory", (long long)row->id);
}

static void main_load_held(void *ctx, int64_t sale_id, const char *user, int64_t units)
{
    inventory_hold(ctx, sale_id, user, units);
}

/* Other nodes' changes (PostgreSQL), from the store's housekeeping thread. */
static void main_sale_changed(void *ctx, const struct store_sale *row, uint64_t read_ns)
{
    inventory_sync(ctx, row, read_ns);
}
static void main_sold_out(void *ctx, int64_t sale_id, uint64_t read_ns) { inventory_sold_out(ctx, sale_id, read_ns); }
static void main_reset(void *ctx, int64_t sale_id) { inventory_forget(ctx, sale_id); }

/* 10,000 connections need more descriptors than the usual soft limit of 1024. */
static void main_raise_fd_limit(int64_t wanted)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t target = rl.rlim_max;
    if (rl.rlim_cur < target) {
        rl.rlim_cur = target;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((int64_t)rl.rlim_cur < wanted + 64)
        LOG_WARN("the descriptor limit (%llu) is below --max-connections %lld",
                 (unsigned long long)rl.rlim_cur, (long long)wanted);
}

int main(int argc, char **argv)
{
    struct config cfg;
    int rc = config_parse(&cfg, argc, argv, stderr);
    if (rc != 0) {
        if (rc == 2) version_print(stdout);
        config_deinit(&cfg);
        return rc > 0 ? 0 : 2;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL); /* inherited by every thread */
    signal(SIGPIPE, SIG_IGN);
    main_raise_fd_limit(cfg.max_connections);
    json_object_seed(0);
    if (cfg.model == MODEL_PROCESSES) { /* proc.h: the same service as processes */
        rc = proc_main(&cfg);
        config_deinit(&cfg);
        return rc;
    }
    metrics_init();

    if (inventory_traits_of((enum config_inventory)cfg.inventory)->blind_write) {
        LOG_WARN("**************************************************************");
        LOG_WARN("* --inventory unsafe: a deliberate read-check-write race with *");
        LOG_WARN("* no database guard.  This server WILL OVERSELL under load.   *");
        LOG_WARN("* For teaching only; watch flashsale_oversold and the audit.  *");
        LOG_WARN("**************************************************************");
    }
    char err[512];
    struct store *store = store_open(&cfg, err, sizeof err);
    if (!store) LOG_FATAL("store: %s", err);
    struct inventory *inv = inventory_new((enum config_inventory)cfg.inventory);
    if (!inv) LOG_FATAL("out of memory");
    store_follow(store, &(struct store_follower){inventory_follow, inventory_memory, inv});
    if (store_load(store, main_load_sale, main_load_held, inv) != 0)
        LOG_FATAL("cannot load sales from the %s store", store_kind(store));
    if (store_shared(store)) {
        struct store_events events = {main_sale_changed, main_sold_out, main_reset, inv};
        store_listen(store, &events);
    }
    struct api *api = api_new(&cfg, inv, store);
    if (!api) LOG_FATAL("cannot start the api");
    struct http_hooks hooks = api_http_hooks(api);
    struct http_server *http = http_start(&cfg, &hooks, err, sizeof err);
    if (!http) LOG_FATAL("http: %s", err);
    LOG_INFO("flashsale listening on http://%s:%d (store %s, inventory %s, durability %s, %lld sales, "
             "%lld io threads, %lld workers, queue %lld)",
             cfg.bind, http_port(http), store_kind(store), config_name("inventory", cfg.inventory),
             config_name("durability", cfg.durability), (long long)inventory_max_id(inv),
             (long long)cfg.io_threads, (long long)cfg.workers, (long long)cfg.queue);
    if (cfg.model == MODEL_THREAD_PER_CONNECTION)
        LOG_INFO("model thread-per-connection: a thread per connection (at most %lld), no worker pool",
                 (long long)cfg.max_connections);

    int sig = 0;
    uint64_t sweep_every = (uint64_t)cfg.sweep_ms * 1000000u;
    uint64_t next_tick = clock_mono_ns() + 1000000000u, next_sweep = clock_mono_ns() + sweep_every;
    while (!sig) {
        uint64_t now = clock_mono_ns();
        if (now >= next_tick) {
            metrics_tick();
            next_tick += 1000000000u;
            continue;
        }
        if (now >= next_sweep) {
            api_sweep(api);
            next_sweep = now + sweep_every;
            continue;
        }
        uint64_t wait = (next_tick < next_sweep ? next_tick : next_sweep) - now;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int got = sigtimedwait(&stop_signals, NULL, &ts);
        if (got > 0) sig = got;
    }

    LOG_INFO("%s: draining", strsignal(sig));
    uint64_t t0 = clock_mono_ns();
    http_quiesce(http);
    api_drain(api);
    http_stop(http, MAIN_DRAIN_MS);
    store_close(store);
    api_free(api);
    inventory_free(inv);
    LOG_INFO("stopped cleanly in %.0f ms", (double)(clock_mono_ns() - t0) / 1e6);
    config_deinit(&cfg);
    return 0;
}

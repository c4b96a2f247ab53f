/* proc — see proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "clock.h"
#include "gate.h"
#include "http.h"
#include "inventory.h"
#include "ipc.h"
#include "log.h"
#include "metrics.h"
#include "shm.h"
#include "store.h"

#define PROC_MAX_WORKERS (INVENTORY_PROCS - 1) /* slot 0 is the writer's */
#define PROC_DRAIN_MS 8000  /* of the 10 s a supervisor usually allows after SIGTERM */
#define PROC_REGION_BASE ((size_t)256 << 20) /* metrics, sales, rate limits: reserved, touched lazily */
#define PROC_LEDGER_SLOT 128                 /* bytes per ledger entry, with room */

/* What the processes share besides the inventory and the metrics. */
struct proc_shared {
    _Atomic bool writer_ready;
    _Atomic bool ready[INVENTORY_PROCS]; /* worker slot i answers requests */
    uint8_t secret[STORE_SECRET_LEN];    /* the order secret, published by the writer */
    struct ipc_rings *rings;             /* the workers' job rings, by slot */
};

/* The supervisor's state; each child gets a copy with the fork and uses what it needs. */
static struct {
    struct config *cfg;
    struct inventory *inv;
    struct proc_shared *ps;
    pid_t sup;
    int deaths[2]; /* a pipe: the supervisor writes a dead worker's pid, the writer reads */
    pid_t pids[INVENTORY_PROCS]; /* slot 0: the writer */
    uint64_t started_ns[INVENTORY_PROCS]; /* when each slot's process was started */
    size_t nworkers;
} proc;

static void proc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* In a new child: its name, and death with the supervisor. */
static void proc_child_setup(const char *name, int slot)
{
    prctl(PR_SET_NAME, name);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != proc.sup) _exit(1); /* the supervisor died before the line above */
    shm_set_slot(slot);
}

/* ---- the writer process ------------------------------------------------------------ */

static void proc_rebuild_begin(void *ctx) { inventory_rebuild_begin(ctx); }
static void proc_rebuild_sale(void *ctx, const struct store_sale *row) { inventory_rebuild_sale(ctx, row); }
static size_t proc_unheld; /* holders the fixed ledger could not take, in one rebuild */
static void proc_rebuild_held(void *ctx, int64_t sale_id, const char *user, int64_t units)
{
    if (!inventory_hold(ctx, sale_id, user, units)) proc_unheld++;
}

/* Memory from the database, once nothing is in flight: at the writer's start, and
 * after worker `dead` died (0: none).  Purchases are frozen meanwhile. */
static void proc_rebuild(struct store *store, struct ipc_server *server, pid_t dead)
{
    uint64_t t0 = clock_mono_ns(), warned = t0;
    uint64_t generation = inventory_freeze(proc.inv);
    for (;;) {
        bool idle = !dead || ipc_server_done_with(server, dead);
        for (int slot = 0; slot < INVENTORY_PROCS && idle; slot++) idle = inventory_inflight(proc.inv, slot) == 0;
        if (idle) break;
        if (clock_mono_ns() - warned > 5000000000u) {
            LOG_WARN("writer: still waiting for purchases in flight before the rebuild");
            warned = clock_mono_ns();
        }
        proc_sleep_ms(1); /* rare, and short: a purchase in flight ends within its queue timeout */
    }
    /* Purchases stay frozen until memory is whole again: a database out of reach
     * (PostgreSQL) is tried again, never guessed around. */
    proc_unheld = 0;
    for (int tries = 0; store_reload(store, proc_rebuild_begin, proc_rebuild_sale, proc_rebuild_held, proc.inv) != 0;
         tries++) {
        if (tries == 0) LOG_ERROR("writer: cannot read the database to rebuild memory; trying again");
        proc_sleep_ms(200);
    }
    /* One line, not one per holder.  Those users find no room in the ledger and are
     * refused 503 until room frees, never sold past their limit. */
    if (proc_unheld)
        LOG_ERROR("writer: the ledger is full (--ledger-entries %lld): %zu (sale, user) holders in the database "
                  "are not in memory; start with a larger --ledger-entries",
                  (long long)proc.cfg->ledger_entries, proc_unheld);
    inventory_thaw(proc.inv, generation); /* unless another death came meanwhile */
    if (dead || metrics_total(METRIC_WRITER_RESTARTS)) metrics_count(METRIC_REBUILDS, 1);
    LOG_INFO("writer: counters rebuilt from the database in %.1f ms", (double)(clock_mono_ns() - t0) / 1e6);
}

/* The sweeper's job: expired orders' units come back in inventory_follow. */
static void proc_sweep_done(struct store_job *sj)
{
    free(sj->u.sweep.rows);
    atomic_store((_Atomic bool *)sj->ctx, false);
    free(sj);
}

static void proc_sweep(struct store *store, _Atomic bool *busy)
{
    if (!inventory_has_windows(proc.inv) || atomic_exchange(busy, true)) return;
    struct store_job *sj = calloc(1, sizeof *sj);
    if (!sj) {
        atomic_store(busy, false);
        return;
    }
    sj->op = STORE_SWEEP;
    sj->u.sweep.now_ms = clock_wall_ms();
    sj->u.sweep.max = 4096;
    sj->done = proc_sweep_done;
    sj->ctx = busy;
    store_submit(store, sj);
}

/* Other nodes' changes (PostgreSQL), from the store's housekeeping thread. */
static void proc_sale_changed(void *ctx, const struct store_sale *row, uint64_t read_ns)
{
    inventory_sync(ctx, row, read_ns);
}
static void proc_sold_out(void *ctx, int64_t sale_id, uint64_t read_ns) { inventory_sold_out(ctx, sale_id, read_ns); }
static void proc_reset(void *ctx, int64_t sale_id) { inventory_forget(ctx, sale_id); }

static int proc_writer(void)
{
    proc_child_setup("fs-writer", 0);
    close(proc.deaths[1]);
    char err[512];
    struct store *store = store_open(proc.cfg, err, sizeof err);
    if (!store) LOG_FATAL("store: %s", err);
    memcpy(proc.ps->secret, store_order_secret(store), STORE_SECRET_LEN);
    store_follow(store, &(struct store_follower){inventory_follow, inventory_memory, proc.inv});
    struct ipc_server *server = ipc_server_start(store, proc.sup, proc.ps->rings, err, sizeof err);
    if (!server) LOG_FATAL("writer: %s", err);
    proc_rebuild(store, server, 0);
    if (store_shared(store))
        store_listen(store, &(struct store_events){proc_sale_changed, proc_sold_out, proc_reset, proc.inv});
    atomic_store(&proc.ps->writer_ready, true);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (sfd < 0) LOG_FATAL("writer: signalfd: %s", strerror(errno));
    _Atomic bool sweeping = false;
    uint64_t next_sweep = clock_mono_ns() + (uint64_t)proc.cfg->sweep_ms * 1000000u;
    for (;;) {
        uint64_t now = clock_mono_ns();
        if (now >= next_sweep) {
            proc_sweep(store, &sweeping);
            next_sweep = now + (uint64_t)proc.cfg->sweep_ms * 1000000u;
        }
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {proc.deaths[0], POLLIN, 0}};
        int wait_ms = (int)((next_sweep - now) / 1000000u) + 1;
        if (poll(p, 2, wait_ms) < 0 && errno != EINTR) break;
        if (p[0].revents & POLLIN) break;
        if (p[1].revents & POLLIN) {
            pid_t dead;
            if (read(proc.deaths[0], &dead, sizeof dead) == sizeof dead) proc_rebuild(store, server, dead);
        }
    }
    /* The workers drained first (the supervisor stops them before us): what they
     * sent is queued; store_close commits it. */
    uint64_t until = clock_mono_ns() + (uint64_t)PROC_DRAIN_MS * 1000000u;
    while (ipc_server_channels(server) && clock_mono_ns() < until) proc_sleep_ms(5);
    store_close(store);
    LOG_INFO("writer: stopped cleanly");
    return 0;
}

/* ---- a worker process ------------------------------------------------------------- */

static int proc_worker(int slot)
{
    char name[32]; /* the kernel keeps 15 bytes: fs-worker-63 fits */
    snprintf(name, sizeof name, "fs-worker-%d", (slot - 1) & 63);
    proc_child_setup(name, slot);
    close(proc.deaths[0]);
    close(proc.deaths[1]);
    /* The service's bounds split evenly, as the threaded model splits connections
     * among its I/O threads: N workers together take what one service would. */
    int64_t n = (int64_t)proc.nworkers;
    proc.cfg->max_connections = (proc.cfg->max_connections + n - 1) / n;
    proc.cfg->queue = (proc.cfg->queue + n - 1) / n;
    struct ipc_client *link = ipc_client_new(proc.sup, slot, proc.ps->rings);
    struct store *store = link ? store_open_remote(proc.cfg, link, proc.ps->secret) : NULL;
    /* For jobs that never reach the writer: their reservations are given back here. */
    if (store) store_follow(store, &(struct store_follower){inventory_follow, inventory_memory, proc.inv});
    struct api *api = store ? api_new(proc.cfg, proc.inv, store) : NULL;
    if (!api) LOG_FATAL("worker %d: cannot start", slot - 1);
    struct http_hooks hooks = api_http_hooks(api);
    char err[512];
    struct http_server *http = http_start(proc.cfg, &hooks, err, sizeof err);
    if (!http) LOG_FATAL("worker %d: http: %s", slot - 1, err);
    atomic_store(&proc.ps->ready[slot], true);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    while (sigwaitinfo(&stop, NULL) < 0) {
    }
    http_quiesce(http);
    api_drain(api);
    http_stop(http, PROC_DRAIN_MS);
    store_close(store);
    api_free(api);
    ipc_client_free(link);
    return 0;
}

/* ---- the supervisor ---------------------------------------------------------------- */

static pid_t proc_spawn(int slot)
{
    /* One that dies as it starts (a database that will not open) is started again
     * at most ten times a second, not in a tight loop. */
    uint64_t now = clock_mono_ns();
    if (proc.started_ns[slot] && now - proc.started_ns[slot] < 100000000u)
        proc_sleep_ms((int)((100000000u - (now - proc.started_ns[slot])) / 1000000u) + 1);
    proc.started_ns[slot] = clock_mono_ns();
    pid_t pid = fork();
    if (pid == 0) exit(slot == 0 ? proc_writer() : proc_worker(slot));
    if (pid < 0) LOG_ERROR("supervisor: fork: %s", strerror(errno));
    else proc.pids[slot] = pid;
    return pid;
}

static const char *proc_how(int status, char *buf, size_t size)
{
    if (WIFSIGNALED(status)) snprintf(buf, size, "signal %d", WTERMSIG(status));
    else snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    return buf;
}

/* A child died while the service runs: freeze, restart it, and have memory rebuilt. */
static void proc_restart(int slot, pid_t pid, int status)
{
    char how[32];
    inventory_freeze(proc.inv);
    if (slot == 0) {
        pid_t now = proc_spawn(0);
        metrics_count(METRIC_WRITER_RESTARTS, 1);
        LOG_WARN("supervisor: writer (pid %d) died (%s); restarted as pid %d", (int)pid,
                 proc_how(status, how, sizeof how), (int)now);
        return; /* the new writer rebuilds as it starts */
    }
    /* What it had admitted can never leave now; the writer rebuilds once the jobs
     * it had sent are finished. */
    inventory_forget_process(proc.inv, slot);
    gate_address_forget(slot); /* its connections died with it */
    atomic_store(&proc.ps->ready[slot], false);
    if (write(proc.deaths[1], &pid, sizeof pid) != sizeof pid) LOG_ERROR("supervisor: cannot tell the writer");
    pid_t now = proc_spawn(slot);
    metrics_count(METRIC_WORKER_RESTARTS, 1);
    LOG_WARN("supervisor: worker %d (pid %d) died (%s); restarted as pid %d", slot - 1, (int)pid,
             proc_how(status, how, sizeof how), (int)now);
}

static int proc_slot_of(pid_t pid)
{
    for (size_t i = 0; i <= proc.nworkers; i++)
        if (proc.pids[i] == pid) return (int)i;
    return -1;
}

/* Waits until every child in [from, to] has exited, up to timeout_ms; then kills
 * the rest.  True when they all exited by themselves with status 0. */
static bool proc_wait_exit(size_t from, size_t to, int timeout_ms)
{
    bool clean = true;
    uint64_t until = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        bool left = false;
        for (size_t i = from; i <= to; i++) left |= proc.pids[i] > 0;
        if (!left) return clean;
        if (clock_mono_ns() >= until) break;
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            int slot = proc_slot_of(pid);
            if (slot >= 0) proc.pids[slot] = 0;
            clean &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
        } else {
            proc_sleep_ms(5);
        }
    }
    for (size_t i = from; i <= to; i++)
        if (proc.pids[i] > 0) kill(proc.pids[i], SIGKILL), waitpid(proc.pids[i], NULL, 0), proc.pids[i] = 0;
    return false;
}

int proc_main(struct config *cfg)
{
    prctl(PR_SET_NAME, "fs-main");
    proc.cfg = cfg;
    proc.sup = getpid();
    proc.nworkers = (size_t)cfg->processes;
    if (proc.nworkers > PROC_MAX_WORKERS) proc.nworkers = PROC_MAX_WORKERS;
    if (!shm_start(PROC_REGION_BASE + (size_t)cfg->ledger_entries * PROC_LEDGER_SLOT +
                   ipc_rings_size(proc.nworkers + 1)))
        LOG_FATAL("cannot map the shared region: %s", strerror(errno));
    metrics_init();
    proc.inv = inventory_new_shared((enum config_inventory)cfg->inventory, (size_t)cfg->ledger_entries);
    proc.ps = shm_calloc(1, sizeof *proc.ps);
    if (!proc.inv || !proc.ps || !(proc.ps->rings = ipc_rings_new(proc.nworkers + 1)))
        LOG_FATAL("the shared region is too small");
    inventory_freeze(proc.inv); /* until the writer has loaded it */
    char err[512];
    if (!cfg->admin_token[0]) { /* one token for every worker, shown once */
        char token[64];
        if (api_make_token(token, sizeof token) != 0) LOG_FATAL("cannot generate an admin token");
        free(cfg->admin_token);
        cfg->admin_token = strdup(token);
        if (!cfg->admin_token) LOG_FATAL("out of memory");
        if (cfg->admin) LOG_INFO("admin token (generated, shown once): %s", token);
    }
    int port = http_reserve_port(cfg->bind, (int)cfg->port, err, sizeof err);
    if (port < 0) LOG_FATAL("http: %s", err);
    cfg->port = port;
    if (pipe2(proc.deaths, O_CLOEXEC) != 0) LOG_FATAL("pipe: %s", strerror(errno));

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    /* The writer first: workers need the order secret it reads from the database. */
    bool stopping = false, started = false;
    int sig = 0;
    if (proc_spawn(0) < 0) LOG_FATAL("cannot start the writer");
    uint64_t next_tick = clock_mono_ns() + 1000000000u;
    while (!stopping) {
        if (!started) {
            bool ready = atomic_load(&proc.ps->writer_ready);
            if (ready && !proc.pids[1])
                for (size_t i = 1; i <= proc.nworkers; i++) proc_spawn((int)i);
            for (size_t i = 1; i <= proc.nworkers && ready; i++) ready = atomic_load(&proc.ps->ready[i]);
            if (ready) {
                started = true;
                LOG_INFO("flashsale listening on http://%s:%d (store %s, inventory %s, durability %s, model processes: "
                         "%zu worker processes + 1 writer, %lld purchase threads each, queue %lld, ledger %lld)",
                         cfg->bind, port, strncmp(cfg->db, "postgres", 8) == 0 ? "postgresql" : "sqlite",
                         config_name("inventory", cfg->inventory), config_name("durability", cfg->durability),
                         proc.nworkers, (long long)cfg->workers, (long long)cfg->queue,
                         (long long)cfg->ledger_entries);
            }
        }
        uint64_t now = clock_mono_ns();
        if (now >= next_tick) {
            metrics_tick();
            next_tick += 1000000000u;
            /* A restart whose fork failed is tried again, or its slot would stay
             * empty for good (an empty writer slot freezes every purchase). */
            for (size_t i = 0; started && i <= proc.nworkers; i++)
                if (!proc.pids[i] && proc_spawn((int)i) > 0)
                    LOG_WARN("supervisor: slot %zu started again after a failed fork", i);
            continue;
        }
        uint64_t wait = started ? next_tick - now : 10000000u;
        if (wait > next_tick - now) wait = next_tick - now;
        struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int got = sigtimedwait(&sigs, NULL, &ts);
        if (got == SIGINT || got == SIGTERM) {
            sig = got;
            stopping = true;
        } else if (got == SIGCHLD) {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                int slot = proc_slot_of(pid);
                if (slot < 0) continue;
                proc.pids[slot] = 0;
                if (!started) LOG_FATAL("supervisor: a process died while starting; see above");
                proc_restart(slot, pid, status);
            }
        }
    }

    LOG_INFO("%s: draining", strsignal(sig));
    uint64_t t0 = clock_mono_ns();
    for (size_t i = 1; i <= proc.nworkers; i++)
        if (proc.pids[i] > 0) kill(proc.pids[i], SIGTERM);
    bool clean = proc_wait_exit(1, proc.nworkers, PROC_DRAIN_MS + 1000);
    if (proc.pids[0] > 0) kill(proc.pids[0], SIGTERM);
    clean &= proc_wait_exit(0, 0, PROC_DRAIN_MS + 1000);
    if (!clean) {
        LOG_ERROR("supervisor: a process did not stop cleanly (killed after %d ms, or it failed)", PROC_DRAIN_MS + 1000);
        return 1;
    }
    LOG_INFO("stopped cleanly in %.0f ms", (double)(clock_mono_ns() - t0) / 1e6);
    return 0;
}

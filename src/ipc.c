/* ipc — see ipc.h.
 *
 * Jobs travel in shared memory: per worker slot, a ring of job records to the
 * writer and a ring of results back (struct ipc_ring: one producer, one consumer,
 * C11 atomics), each with an eventfd that wakes its consumer only when it went to
 * sleep.  A job record is a job copied whole (its pointers mean nothing on the
 * other side and are never read there), named by a tag: an index into the
 * client's table of jobs in flight, bounded by the rings' size (IPC_TAGS), so
 * neither ring can ever be full; a job beyond it ends OUTCOME_OVERLOADED at once.
 *
 * Beside the rings, each job channel is a SOCK_SEQPACKET connection, which carries
 * no job: its hello names the worker, the writer's answer says the rings are
 * reset and the channel is open, and its end is how either side learns the other
 * died.  Reads (an order, a key, an audit) are request and reply on a SEQPACKET
 * read channel of the calling thread's.
 *
 * Who touches a slot's rings: the worker produces jobs and consumes results only
 * between the writer's answer and the end of the socket; the writer's channel
 * thread consumes jobs, and results are produced by done() under the store's
 * commit lock.  A new channel for a slot waits until the slot's previous one (a
 * dead worker's, still finishing its jobs) is gone, then resets both rings before
 * it answers, so two channels never share a ring.
 *
 * Locks (worker side): tag_mu guards the table and `connected`; send_mu guards
 * producing into the job ring and `gen`.  The reading thread never takes send_mu
 * while it reads results.
 */
#include "ipc.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"
#include "store_int.h"

#define IPC_BATCH 64          /* job records taken into the store in one chain */
#define IPC_TAGS 8192         /* jobs in flight per worker process: the rings' size, a power of two */
#define IPC_RECONNECT_MS 20   /* how often a link looks for a writer that is away */
#define IPC_READ_TIMEOUT_S 15 /* a read channel gives up on an answer after this */
#define IPC_OPEN_TIMEOUT_S 30 /* a job channel waits this long for the writer's answer */
#define IPC_CHANNELS 256      /* job channels a writer keeps track of */

enum ipc_kind {
    IPC_HELLO_JOBS = 1, /* the first message of a job channel: its pid and slot */
    IPC_HELLO_READS,    /* the first message of a read channel */
    IPC_OPEN,           /* writer -> worker: the slot's rings are reset, the channel is open */
    IPC_ORDER_GET,      /* read requests, one at a time, answered by IPC_REPLY */
    IPC_ORDER_BY_KEY,
    IPC_AUDIT,
    IPC_REPLY
};

struct ipc_head {
    uint32_t kind, n;
    int32_t pid, slot;
};

struct ipc_rec {
    uint64_t tag;
    struct store_job job;
};

struct ipc_read {
    int64_t id, sale_id;
    char user[PAYLOAD_USER_MAX + 1];
    char key[PAYLOAD_KEY_MAX + 1];
};

struct ipc_reply {
    int32_t outcome;
    struct store_order order;
    struct store_audit audit;
    struct store_memory mem;
};

/* One direction of a slot's job traffic (see the top). */
struct ipc_ring {
    _Atomic uint64_t head; /* records published by the producer */
    char pad1[56];
    _Atomic uint64_t tail; /* records taken by the consumer */
    _Atomic int waiting;   /* the consumer sleeps, or is about to: wake it */
    char pad2[52];
    int wake;              /* eventfd, made by ipc_rings_new before the fork */
    struct ipc_rec *recs;  /* IPC_TAGS */
};

struct ipc_rings {
    size_t nslots;
    struct {
        struct ipc_ring jobs, results;
    } slot[];
};

size_t ipc_rings_size(size_t nslots)
{
    return 64 + nslots * (sizeof(struct ipc_ring) * 2 + 2 * (IPC_TAGS * sizeof(struct ipc_rec) + 64)) + 4096;
}

struct ipc_rings *ipc_rings_new(size_t nslots)
{
    struct ipc_rings *r = shm_calloc(1, sizeof *r + nslots * sizeof r->slot[0]);
    if (!r) return NULL;
    r->nslots = nslots;
    for (size_t i = 0; i < nslots; i++) {
        struct ipc_ring *two[2] = {&r->slot[i].jobs, &r->slot[i].results};
        for (int k = 0; k < 2; k++) {
            two[k]->recs = shm_calloc(IPC_TAGS, sizeof *two[k]->recs);
            two[k]->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (!two[k]->recs || two[k]->wake < 0) return NULL;
        }
    }
    return r;
}

/* The producer's: false only if the ring is full, which the tags' bound prevents. */
static bool ipc_ring_push(struct ipc_ring *r, const struct ipc_rec *rec)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h - atomic_load_explicit(&r->tail, memory_order_acquire) >= IPC_TAGS) return false;
    r->recs[h & (IPC_TAGS - 1)] = *rec;
    atomic_store(&r->head, h + 1); /* sequentially consistent: ordered before the look at waiting */
    return true;
}

/* After pushing: wakes the consumer if it went to sleep (only the first push after
 * it did pays for the system call). */
static void ipc_ring_wake(struct ipc_ring *r)
{
    if (atomic_exchange(&r->waiting, 0)) eventfd_write(r->wake, 1);
}

/* The consumer's: the next record, or false when empty. */
static bool ipc_ring_pop(struct ipc_ring *r, struct ipc_rec *out)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t == atomic_load_explicit(&r->head, memory_order_acquire)) return false;
    *out = r->recs[t & (IPC_TAGS - 1)];
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return true;
}

/* The consumer, finding the ring empty: sleeps until a push, or until fd (the
 * channel's socket) has news.  False when the socket ended. */
static bool ipc_ring_sleep(struct ipc_ring *r, int fd)
{
    atomic_store(&r->waiting, 1);
    /* Announce, then look again: a push that came before the announcement is
     * seen here, one after it sees the announcement and writes the eventfd. */
    if (atomic_load(&r->head) != atomic_load_explicit(&r->tail, memory_order_relaxed)) {
        atomic_store(&r->waiting, 0);
        return true;
    }
    struct pollfd p[2] = {{r->wake, POLLIN, 0}, {fd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return false;
    if (p[0].revents & POLLIN) {
        eventfd_t v;
        eventfd_read(r->wake, &v);
    }
    atomic_store(&r->waiting, 0);
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        char b[64];
        ssize_t got = recv(fd, b, sizeof b, MSG_DONTWAIT); /* nothing is sent on an open channel */
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return false;
    }
    return true;
}

/* Both rings of a slot empty again, for a new channel (nobody else touches them). */
static void ipc_rings_reset(struct ipc_rings *rs, int slot)
{
    struct ipc_ring *two[2] = {&rs->slot[slot].jobs, &rs->slot[slot].results};
    for (int k = 0; k < 2; k++) {
        eventfd_t v;
        eventfd_read(two[k]->wake, &v);
        atomic_store(&two[k]->head, 0);
        atomic_store(&two[k]->tail, 0);
        atomic_store(&two[k]->waiting, 0);
    }
}

struct ipc_read_msg {
    struct ipc_head head;
    union {
        struct ipc_read read;
        struct ipc_reply reply;
    } u;
};

static void ipc_address(pid_t sup, struct sockaddr_un *a, socklen_t *len)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    /* Abstract: nothing in the file system to clean up after a kill -9. */
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "flashsale-%d", (int)sup);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* A connected channel that has said what it is; -1 when the writer is not there. */
static int ipc_dial(pid_t sup, uint32_t kind, int slot)
{
    struct sockaddr_un a;
    socklen_t len;
    ipc_address(sup, &a, &len);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ipc_head hello = {kind, 0, (int32_t)getpid(), slot};
    if (connect(fd, (struct sockaddr *)&a, len) != 0 || send(fd, &hello, sizeof hello, MSG_NOSIGNAL) != sizeof hello) {
        close(fd);
        return -1;
    }
    return fd;
}

static void ipc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ======================================================================== worker */

struct ipc_client {
    pid_t sup;
    int slot;
    struct ipc_ring *jobs, *results; /* this slot's */
    struct ipc_rings *rings;
    pthread_t reader;
    _Atomic bool stopping;

    pthread_mutex_t send_mu; /* guards producing into jobs, fd and opening */
    int fd;                  /* the job channel's socket; -1 while away */
    int opening;             /* the socket waiting for the writer's answer, or -1 */
    /* Channels lost so far: jobs tagged on one channel are never sent on the next
     * (their tags were ended and may already name other jobs). */
    _Atomic uint64_t gen;

    pthread_mutex_t tag_mu; /* guards what follows */
    bool connected;         /* jobs may be tagged and sent */
    struct store_job **tags; /* IPC_TAGS: the job in flight under each tag, or NULL */
    uint32_t *free_tags;     /* a stack of unused tags */
    size_t nfree;
    _Atomic size_t backlog;
};

/* Ends jobs the writer will never answer (done() as the store would call it). */
static void ipc_fail(struct store_job *list, enum outcome o)
{
    while (list) {
        struct store_job *next = list->next;
        list->outcome = o;
        list->finished = true;
        if (list->done) list->done(list);
        list = next;
    }
}

/* The writer went away: every job in flight ends unavailable (the rebuild that
 * follows repairs what their reservations left in memory). */
static void ipc_client_lost(struct ipc_client *c)
{
    struct store_job *failed = NULL;
    pthread_mutex_lock(&c->tag_mu);
    c->connected = false;
    for (uint32_t t = 0; t < IPC_TAGS; t++) {
        struct store_job *j = c->tags[t];
        if (!j) continue;
        c->tags[t] = NULL;
        c->free_tags[c->nfree++] = t;
        j->next = failed;
        failed = j;
    }
    atomic_store(&c->backlog, 0);
    pthread_mutex_unlock(&c->tag_mu);
    pthread_mutex_lock(&c->send_mu);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    atomic_fetch_add(&c->gen, 1);
    pthread_mutex_unlock(&c->send_mu);
    ipc_fail(failed, OUTCOME_UNAVAILABLE);
}

/* What the writer filled in, and only that: the rest of a job in flight is read
 * meanwhile by this process (a purchase's key, by a retry looking for it). */
static void ipc_copy_out(struct store_job *to, const struct store_job *from)
{
    switch (to->op) {
    case STORE_PURCHASE:
        to->u.purchase.order = from->u.purchase.order;
        to->u.purchase.replayed = from->u.purchase.replayed;
        return;
    case STORE_CREATE_SALE:
        to->u.sale = from->u.sale;
        return;
    case STORE_PAY:
    case STORE_CANCEL:
        to->u.settle.order = from->u.settle.order;
        to->u.settle.paid_now = from->u.settle.paid_now;
        to->u.settle.returned = from->u.settle.returned;
        return;
    case STORE_RESET_SALE:
    case STORE_SWEEP: /* a worker sends none */
        return;
    }
}

/* A job channel, open: the socket of a writer that has reset this slot's rings;
 * -1 when no writer answers. */
static int ipc_client_open(struct ipc_client *c)
{
    int fd = ipc_dial(c->sup, IPC_HELLO_JOBS, c->slot);
    if (fd < 0) return -1;
    pthread_mutex_lock(&c->send_mu);
    c->opening = fd; /* ipc_client_free may cut the wait short */
    bool stop = atomic_load(&c->stopping);
    pthread_mutex_unlock(&c->send_mu);
    if (stop) shutdown(fd, SHUT_RDWR);
    struct timeval tv = {IPC_OPEN_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct ipc_head open;
    ssize_t got;
    do got = recv(fd, &open, sizeof open, 0);
    while (got < 0 && errno == EINTR);
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_mutex_lock(&c->send_mu);
    c->opening = -1;
    pthread_mutex_unlock(&c->send_mu);
    if (got != sizeof open || open.kind != IPC_OPEN) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The link's thread: opens the channel, takes results, calls done(), and starts
 * over when the writer goes away. */
static void *ipc_client_main(void *arg)
{
    struct ipc_client *c = arg;
    while (!atomic_load(&c->stopping)) {
        int fd = ipc_client_open(c);
        if (fd < 0) {
            ipc_sleep_ms(IPC_RECONNECT_MS);
            continue;
        }
        pthread_mutex_lock(&c->send_mu);
        c->fd = fd;
        pthread_mutex_unlock(&c->send_mu);
        pthread_mutex_lock(&c->tag_mu);
        c->connected = true;
        pthread_mutex_unlock(&c->tag_mu);
        for (bool open = true;;) {
            struct ipc_rec r;
            if (!ipc_ring_pop(c->results, &r)) {
                if (!open) break; /* every result the writer published is delivered */
                /* Sleeps until a result or the socket's end.  After the end (the
                 * writer died) the ring is still read out: what it published before
                 * it died, committed orders among them, is answered; the rest ends
                 * 503 in ipc_client_lost. */
                open = ipc_ring_sleep(c->results, fd);
                continue;
            }
            pthread_mutex_lock(&c->tag_mu);
            struct store_job *j = r.tag < IPC_TAGS ? c->tags[r.tag] : NULL;
            if (j) {
                c->tags[r.tag] = NULL;
                c->free_tags[c->nfree++] = (uint32_t)r.tag;
                atomic_fetch_sub(&c->backlog, 1);
            }
            pthread_mutex_unlock(&c->tag_mu);
            if (!j) continue;
            j->outcome = r.job.outcome;
            ipc_copy_out(j, &r.job);
            j->finished = true;
            if (j->done) j->done(j);
        }
        ipc_client_lost(c);
    }
    return NULL;
}

struct ipc_client *ipc_client_new(pid_t sup, int slot, struct ipc_rings *rings)
{
    if (!rings || slot < 0 || (size_t)slot >= rings->nslots) return NULL;
    struct ipc_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sup = sup;
    c->slot = slot;
    c->rings = rings;
    c->jobs = &rings->slot[slot].jobs;
    c->results = &rings->slot[slot].results;
    c->fd = c->opening = -1;
    c->tags = calloc(IPC_TAGS, sizeof *c->tags);
    c->free_tags = malloc(IPC_TAGS * sizeof *c->free_tags);
    pthread_mutex_init(&c->send_mu, NULL);
    pthread_mutex_init(&c->tag_mu, NULL);
    if (!c->tags || !c->free_tags) goto fail;
    for (uint32_t t = 0; t < IPC_TAGS; t++) c->free_tags[t] = IPC_TAGS - 1 - t;
    c->nfree = IPC_TAGS;
    if (pthread_create(&c->reader, NULL, ipc_client_main, c) != 0) goto fail;
    return c;
fail:
    free(c->tags);
    free(c->free_tags);
    free(c);
    return NULL;
}

void ipc_client_free(struct ipc_client *c)
{
    if (!c) return;
    atomic_store(&c->stopping, true);
    pthread_mutex_lock(&c->send_mu);
    if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR); /* wakes the reader */
    if (c->opening >= 0) shutdown(c->opening, SHUT_RDWR); /* or ends its wait for the writer */
    pthread_mutex_unlock(&c->send_mu);
    pthread_join(c->reader, NULL);
    free(c->tags);
    free(c->free_tags);
    pthread_mutex_destroy(&c->send_mu);
    pthread_mutex_destroy(&c->tag_mu);
    free(c);
}

struct store_job *ipc_submit(struct ipc_client *c, struct store_job *first, size_t n)
{
    struct store_job *refused = NULL, *j = first;
    enum outcome why = OUTCOME_UNAVAILABLE;
    struct ipc_rec rec;
    while (n > 0) {
        struct store_job *next = j->next; /* read first: once pushed, j is the reader's */
        n--;
        pthread_mutex_lock(&c->tag_mu);
        uint64_t gen = atomic_load(&c->gen);
        bool tagged = c->connected && c->nfree;
        if (tagged) {
            uint32_t t = c->free_tags[--c->nfree];
            c->tags[t] = j;
            atomic_fetch_add(&c->backlog, 1);
            rec.tag = t;
            rec.job = *j;
        } else {
            why = c->connected ? OUTCOME_OVERLOADED : OUTCOME_UNAVAILABLE;
        }
        pthread_mutex_unlock(&c->tag_mu);
        if (!tagged) {
            j->next = refused;
            refused = j;
        } else {
            pthread_mutex_lock(&c->send_mu);
            /* A channel lost since the tag: the reader ended the job already. */
            if (atomic_load(&c->gen) == gen) {
                bool pushed = ipc_ring_push(c->jobs, &rec);
                assert(pushed); /* at most IPC_TAGS jobs are in flight, so in the ring */
                (void)pushed;
            }
            pthread_mutex_unlock(&c->send_mu);
        }
        j = next;
    }
    ipc_ring_wake(c->jobs); /* once for the whole chain */
    for (struct store_job *r = refused; r; r = r->next) r->outcome = why;
    return refused;
}

size_t ipc_backlog(struct ipc_client *c) { return atomic_load(&c->backlog); }

/* A thread's read channel, dispatched to by store.c like a database connection. */
struct store_conn {
    const struct store_backend *be; /* first: STORE_BACKEND */
    struct ipc_client *client;
    int fd; /* -1 until the first request, and after a failure */
};

static const struct store_backend ipc_backend;

struct store_conn *ipc_conn_open(struct ipc_client *c)
{
    struct store_conn *conn = calloc(1, sizeof *conn);
    if (!conn) return NULL;
    conn->be = &ipc_backend;
    conn->client = c;
    conn->fd = -1;
    return conn;
}

static void ipc_conn_close(struct store_conn *conn)
{
    if (conn->fd >= 0) close(conn->fd);
    free(conn);
}

/* One request and its reply on conn's channel; false when the channel failed. */
static bool ipc_ask_once(struct store_conn *conn, uint32_t kind, const struct ipc_read *req, struct ipc_reply *out)
{
    struct ipc_read_msg msg = {.head = {kind, 1, (int32_t)getpid(), conn->client->slot}, .u.read = *req};
    size_t len = sizeof msg.head + sizeof msg.u.read;
    ssize_t got = -1;
    if (send(conn->fd, &msg, len, MSG_NOSIGNAL) == (ssize_t)len) {
        do got = recv(conn->fd, &msg, sizeof msg, 0);
        while (got < 0 && errno == EINTR);
    }
    if (got != (ssize_t)(sizeof msg.head + sizeof msg.u.reply) || msg.head.kind != IPC_REPLY) {
        close(conn->fd); /* a late answer must not meet the next request */
        conn->fd = -1;
        return false;
    }
    *out = msg.u.reply;
    return true;
}

/* A request and its reply; OUTCOME_UNAVAILABLE when the writer is not there.  A
 * channel to a writer that has since died fails at once: one more try on a new
 * channel reaches the writer that replaced it. */
static enum outcome ipc_ask(struct store_conn *conn, uint32_t kind, const struct ipc_read *req, struct ipc_reply *out)
{
    for (int tries = 0; tries < 2; tries++) {
        bool fresh = conn->fd < 0;
        if (fresh) {
            conn->fd = ipc_dial(conn->client->sup, IPC_HELLO_READS, conn->client->slot);
            if (conn->fd < 0) return OUTCOME_UNAVAILABLE;
            struct timeval tv = {IPC_READ_TIMEOUT_S, 0};
            setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        }
        if (ipc_ask_once(conn, kind, req, out)) return (enum outcome)out->outcome;
        if (fresh) break;
    }
    return OUTCOME_UNAVAILABLE;
}

static enum outcome ipc_order_get(struct store_conn *conn, int64_t id, struct store_order *out)
{
    struct ipc_read req = {.id = id};
    struct ipc_reply rep;
    enum outcome o = ipc_ask(conn, IPC_ORDER_GET, &req, &rep);
    if (o == OUTCOME_OK) *out = rep.order;
    return o;
}

static enum outcome ipc_order_by_key(struct store_conn *conn, int64_t sale_id, const char *user, const char *key,
                                     struct store_order *out)
{
    struct ipc_read req = {.sale_id = sale_id};
    snprintf(req.user, sizeof req.user, "%s", user);
    snprintf(req.key, sizeof req.key, "%s", key);
    struct ipc_reply rep;
    enum outcome o = ipc_ask(conn, IPC_ORDER_BY_KEY, &req, &rep);
    if (o == OUTCOME_OK) *out = rep.order;
    return o;
}

enum outcome ipc_audit(struct store_conn *conn, int64_t sale_id, struct store_audit *out, struct store_memory *mem)
{
    assert(conn->be == &ipc_backend);
    struct ipc_read req = {.sale_id = sale_id};
    struct ipc_reply rep;
    enum outcome o = ipc_ask(conn, IPC_AUDIT, &req, &rep);
    if (o == OUTCOME_OK) {
        *out = rep.audit;
        *mem = rep.mem;
    }
    return o;
}

/* Only what store.c calls on a connection of a remote store. */
static const struct store_backend ipc_backend = {
    .kind = "ipc",
    .disconnect = ipc_conn_close,
    .order_get = ipc_order_get,
    .order_by_key = ipc_order_by_key,
};

/* ======================================================================== writer */

struct ipc_server {
    struct store *store;
    struct ipc_rings *rings;
    int listen_fd;
    pthread_t acceptor;
    pthread_mutex_t mu; /* guards chans and seq */
    struct ipc_chan *chans[IPC_CHANNELS];
    uint64_t seq; /* job channels registered so far */
};

/* A worker's job channel, from its hello until its last job's result. */
struct ipc_chan {
    struct ipc_server *server;
    int fd;
    pid_t pid;
    int slot;
    uint64_t seq; /* its order among the server's channels */
    struct ipc_ring *jobs, *results;
    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t idle; /* pending reached 0 */
    size_t pending;      /* jobs submitted, not yet done */
    bool open;           /* results go to the ring (false: the worker is gone) */
};

/* A job of a worker's, while the store has it. */
struct ipc_wjob {
    struct store_job sj;
    uint64_t tag;
    struct ipc_chan *chan;
};

/* In the writer, under the commit lock (so one producer per results ring), memory
 * having followed: the result to the worker.  Never blocks. */
static void ipc_wjob_done(struct store_job *sj)
{
    struct ipc_wjob *w = sj->ctx;
    struct ipc_chan *ch = w->chan;
    struct ipc_rec rec = {.tag = w->tag, .job = *sj};
    pthread_mutex_lock(&ch->mu);
    if (ch->open) {
        if (ipc_ring_push(ch->results, &rec)) ipc_ring_wake(ch->results);
        else LOG_ERROR("ipc: the results ring of worker %d is full", ch->slot); /* the tags' bound prevents it */
    }
    assert(ch->pending > 0);
    if (--ch->pending == 0) pthread_cond_signal(&ch->idle); /* under the lock: then ch may go */
    pthread_mutex_unlock(&ch->mu);
    free(w);
}

/* Jobs in: up to IPC_BATCH from the ring into the store, as one chain; how many. */
static size_t ipc_chan_take(struct ipc_chan *ch)
{
    struct store_job *first = NULL, *last = NULL;
    size_t n = 0;
    struct ipc_rec rec;
    while (n < IPC_BATCH && ipc_ring_pop(ch->jobs, &rec)) {
        struct ipc_wjob *w;
        while (!(w = malloc(sizeof *w))) ipc_sleep_ms(1); /* a job dropped here would never be answered */
        w->sj = rec.job;
        w->sj.next = NULL;
        w->sj.done = ipc_wjob_done;
        w->sj.ctx = w;
        w->sj.finished = false;
        if (w->sj.op == STORE_SWEEP) w->sj.u.sweep.rows = NULL, w->sj.u.sweep.n = 0;
        w->tag = rec.tag;
        w->chan = ch;
        if (last) last->next = &w->sj;
        else first = &w->sj;
        last = &w->sj;
        n++;
    }
    if (!n) return 0;
    pthread_mutex_lock(&ch->mu);
    ch->pending += n;
    pthread_mutex_unlock(&ch->mu);
    store_submit_chain(ch->server->store, first, last, n);
    return n;
}

/* True while an older channel of ch's slot is registered: a dead worker's, still
 * finishing its jobs.  Only older ones: two newer channels waiting on each other
 * would wait for ever. */
static bool ipc_slot_taken(struct ipc_chan *ch)
{
    struct ipc_server *s = ch->server;
    bool taken = false;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < IPC_CHANNELS; i++)
        if (s->chans[i] && s->chans[i]->seq < ch->seq && s->chans[i]->slot == ch->slot) taken = true;
    pthread_mutex_unlock(&s->mu);
    return taken;
}

/* False when ch's worker is gone (its socket ended), as it waits for its turn. */
static bool ipc_chan_alive(struct ipc_chan *ch, int wait_ms)
{
    struct pollfd p = {ch->fd, POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) return true;
    char b[64];
    ssize_t got = recv(ch->fd, b, sizeof b, MSG_DONTWAIT);
    return !(got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR));
}

static void *ipc_chan_main(void *arg)
{
    struct ipc_chan *ch = arg;
    bool alive = true;
    while (alive && ipc_slot_taken(ch)) alive = ipc_chan_alive(ch, 1); /* rare: right after a worker died */
    if (alive) {
        ipc_rings_reset(ch->server->rings, ch->slot);
        pthread_mutex_lock(&ch->mu);
        ch->open = true;
        pthread_mutex_unlock(&ch->mu);
    }
    struct ipc_head open = {IPC_OPEN, 0, (int32_t)getpid(), ch->slot};
    if (alive && send(ch->fd, &open, sizeof open, MSG_NOSIGNAL) == sizeof open) {
        for (;;) {
            if (!ipc_chan_take(ch) && !ipc_ring_sleep(ch->jobs, ch->fd)) break;
        }
    }
    /* The worker is gone: what it had published still commits (or not), unanswered.
     * (A channel that never opened owns no ring and takes nothing.) */
    while (alive && ipc_chan_take(ch)) {
    }
    struct ipc_server *s = ch->server;
    pthread_mutex_lock(&ch->mu);
    ch->open = false;
    while (ch->pending) pthread_cond_wait(&ch->idle, &ch->mu);
    pthread_mutex_unlock(&ch->mu);
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < IPC_CHANNELS; i++)
        if (s->chans[i] == ch) s->chans[i] = NULL;
    pthread_mutex_unlock(&s->mu);
    close(ch->fd);
    pthread_cond_destroy(&ch->idle);
    pthread_mutex_destroy(&ch->mu);
    free(ch);
    return NULL;
}

/* A read channel: one request, one reply, on a store connection of its own. */
static void *ipc_reads_main(void *arg)
{
    struct ipc_chan *ch = arg; /* only fd and server are used */
    struct store_conn *conn = store_conn_open(ch->server->store);
    struct ipc_read_msg msg;
    for (;;) {
        ssize_t got = recv(ch->fd, &msg, sizeof msg, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got != (ssize_t)(sizeof msg.head + sizeof msg.u.read)) break;
        struct ipc_read req = msg.u.read;
        struct ipc_reply rep;
        memset(&rep, 0, sizeof rep);
        enum outcome o = OUTCOME_UNAVAILABLE;
        req.user[sizeof req.user - 1] = req.key[sizeof req.key - 1] = '\0';
        if (conn && msg.head.kind == IPC_ORDER_GET) o = store_order_get(conn, req.id, &rep.order);
        else if (conn && msg.head.kind == IPC_ORDER_BY_KEY)
            o = store_order_by_key(conn, req.sale_id, req.user, req.key, &rep.order);
        else if (conn && msg.head.kind == IPC_AUDIT)
            o = store_audit_memory(ch->server->store, conn, req.sale_id, &rep.audit, &rep.mem);
        rep.outcome = (int32_t)o;
        msg.head = (struct ipc_head){IPC_REPLY, 1, (int32_t)getpid(), 0};
        msg.u.reply = rep;
        size_t len = sizeof msg.head + sizeof msg.u.reply;
        if (send(ch->fd, &msg, len, MSG_NOSIGNAL) != (ssize_t)len) break;
    }
    store_conn_close(conn);
    close(ch->fd);
    free(ch);
    return NULL;
}

static void *ipc_accept_main(void *arg)
{
    struct ipc_server *s = arg;
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
                if (errno != EINTR && errno != ECONNABORTED) ipc_sleep_ms(10);
                continue;
            }
            break;
        }
        struct ipc_head hello;
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); /* a hello arrives with the connect */
        ssize_t got = recv(fd, &hello, sizeof hello, 0);
        tv.tv_sec = 0;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct ipc_chan *ch = got == sizeof hello ? calloc(1, sizeof *ch) : NULL;
        if (!ch) {
            close(fd);
            continue;
        }
        ch->server = s;
        ch->fd = fd;
        ch->pid = hello.pid;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        bool started = false;
        if (hello.kind == IPC_HELLO_JOBS && hello.slot >= 0 && (size_t)hello.slot < s->rings->nslots) {
            ch->slot = hello.slot;
            ch->jobs = &s->rings->slot[hello.slot].jobs;
            ch->results = &s->rings->slot[hello.slot].results;
            pthread_mutex_init(&ch->mu, NULL);
            pthread_cond_init(&ch->idle, NULL);
            pthread_mutex_lock(&s->mu);
            size_t i = 0;
            while (i < IPC_CHANNELS && s->chans[i]) i++;
            if (i < IPC_CHANNELS) s->chans[i] = ch;
            ch->seq = ++s->seq;
            pthread_mutex_unlock(&s->mu);
            started = i < IPC_CHANNELS && pthread_create(&t, &attr, ipc_chan_main, ch) == 0;
            if (!started && i < IPC_CHANNELS) {
                pthread_mutex_lock(&s->mu);
                s->chans[i] = NULL;
                pthread_mutex_unlock(&s->mu);
            }
        } else if (hello.kind == IPC_HELLO_READS) {
            started = pthread_create(&t, &attr, ipc_reads_main, ch) == 0;
        }
        pthread_attr_destroy(&attr);
        if (!started) {
            LOG_WARN("ipc: cannot serve a channel of process %d", (int)hello.pid);
            close(fd);
            free(ch);
        }
    }
    return NULL;
}

struct ipc_server *ipc_server_start(struct store *store, pid_t sup, struct ipc_rings *rings, char *err,
                                    size_t err_size)
{
    struct ipc_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    s->store = store;
    s->rings = rings;
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_un a;
    socklen_t len;
    ipc_address(sup, &a, &len);
    s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, len) != 0 || listen(s->listen_fd, 512) != 0 ||
        pthread_create(&s->acceptor, NULL, ipc_accept_main, s) != 0) {
        snprintf(err, err_size, "cannot listen for worker processes: %s", strerror(errno));
        if (s->listen_fd >= 0) close(s->listen_fd);
        free(s);
        return NULL;
    }
    pthread_detach(s->acceptor);
    return s;
}

bool ipc_server_done_with(struct ipc_server *s, pid_t pid)
{
    bool done = true;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < IPC_CHANNELS; i++)
        if (s->chans[i] && s->chans[i]->pid == pid) done = false;
    pthread_mutex_unlock(&s->mu);
    return done;
}

size_t ipc_server_channels(struct ipc_server *s)
{
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < IPC_CHANNELS; i++) n += s->chans[i] != NULL;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ipc — see ipc.h.
 *
 * A message is a struct ipc_head and n records: job records (struct ipc_rec, a
 * job copied whole: its pointers mean nothing on the other side and are never
 * read there) or one read request / one reply.  Jobs are named by a tag, an index
 * into the client's table of jobs in flight, which is bounded (IPC_TAGS): a job
 * beyond it ends OUTCOME_OVERLOADED at once.
 *
 * Locks (worker side): tag_mu guards the table and `connected`; send_mu guards
 * the descriptor for sending.  The reading thread never takes send_mu while it
 * reads results, so a sender blocked on a full socket cannot stop the results
 * that would drain the writer's side of it.
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
#include "store_int.h"

#define IPC_BATCH 64          /* job records per message */
#define IPC_TAGS 65536        /* jobs in flight per worker process */
#define IPC_RECONNECT_MS 20   /* how often a link looks for a writer that is away */
#define IPC_READ_TIMEOUT_S 15 /* a read channel gives up on an answer after this */
#define IPC_CHANNELS 256      /* job channels a writer keeps track of */

enum ipc_kind {
    IPC_HELLO_JOBS = 1, /* the first message of a job channel: its pid */
    IPC_HELLO_READS,    /* the first message of a read channel */
    IPC_JOBS,           /* worker -> writer: n job records */
    IPC_RESULTS,        /* writer -> worker: n job records, finished */
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

struct ipc_jobs_msg {
    struct ipc_head head;
    struct ipc_rec recs[IPC_BATCH];
};

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
    pthread_t reader;
    _Atomic bool stopping;

    pthread_mutex_t send_mu; /* guards fd for sending */
    int fd;                  /* the job channel; -1 while away */
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

/* The link's thread: connects, reads results, calls done(), and starts over when
 * the writer goes away. */
static void *ipc_client_main(void *arg)
{
    struct ipc_client *c = arg;
    struct ipc_jobs_msg *msg = malloc(sizeof *msg);
    if (!msg) return NULL;
    while (!atomic_load(&c->stopping)) {
        int fd = ipc_dial(c->sup, IPC_HELLO_JOBS, c->slot);
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
        for (;;) {
            ssize_t got = recv(fd, msg, sizeof *msg, 0);
            if (got < 0 && errno == EINTR) continue;
            if (got < (ssize_t)sizeof msg->head || msg->head.kind != IPC_RESULTS ||
                (size_t)got != sizeof msg->head + msg->head.n * sizeof msg->recs[0])
                break; /* the end of the channel, or nonsense: start over */
            for (uint32_t i = 0; i < msg->head.n; i++) {
                const struct ipc_rec *r = &msg->recs[i];
                pthread_mutex_lock(&c->tag_mu);
                struct store_job *j = r->tag < IPC_TAGS ? c->tags[r->tag] : NULL;
                if (j) {
                    c->tags[r->tag] = NULL;
                    c->free_tags[c->nfree++] = (uint32_t)r->tag;
                    atomic_fetch_sub(&c->backlog, 1);
                }
                pthread_mutex_unlock(&c->tag_mu);
                if (!j) continue;
                j->outcome = r->job.outcome;
                j->u = r->job.u;
                j->finished = true;
                if (j->done) j->done(j);
            }
        }
        ipc_client_lost(c);
    }
    free(msg);
    return NULL;
}

struct ipc_client *ipc_client_new(pid_t sup, int slot)
{
    struct ipc_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sup = sup;
    c->slot = slot;
    c->fd = -1;
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
    pthread_mutex_unlock(&c->send_mu);
    pthread_join(c->reader, NULL);
    free(c->tags);
    free(c->free_tags);
    pthread_mutex_destroy(&c->send_mu);
    pthread_mutex_destroy(&c->tag_mu);
    free(c);
}

void ipc_submit(struct ipc_client *c, struct store_job *first, size_t n)
{
    struct ipc_jobs_msg *msg = malloc(sizeof *msg);
    struct store_job *refused = NULL, *j = first;
    enum outcome why = OUTCOME_UNAVAILABLE;
    while (n > 0) {
        size_t k = 0;
        pthread_mutex_lock(&c->tag_mu);
        uint64_t gen = atomic_load(&c->gen);
        for (; n > 0 && k < IPC_BATCH; n--) {
            struct store_job *next = j->next; /* read first: once sent, j is the reader's */
            if (!msg || !c->connected || !c->nfree) {
                why = !msg || !c->connected ? OUTCOME_UNAVAILABLE : OUTCOME_OVERLOADED;
                j->next = refused;
                refused = j;
            } else {
                uint32_t t = c->free_tags[--c->nfree];
                c->tags[t] = j;
                atomic_fetch_add(&c->backlog, 1);
                msg->recs[k].tag = t;
                msg->recs[k].job = *j;
                k++;
            }
            j = next;
        }
        pthread_mutex_unlock(&c->tag_mu);
        if (!k) continue;
        msg->head = (struct ipc_head){IPC_JOBS, (uint32_t)k, (int32_t)getpid(), c->slot};
        size_t len = sizeof msg->head + k * sizeof msg->recs[0];
        pthread_mutex_lock(&c->send_mu);
        /* A failed send means the writer is going away: the reader sees the end of
         * the channel and ends every tagged job, these included. */
        if (c->fd >= 0 && atomic_load(&c->gen) == gen && send(c->fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
            shutdown(c->fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->send_mu);
    }
    free(msg);
    ipc_fail(refused, why);
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
    int listen_fd;
    pthread_t acceptor;
    pthread_mutex_t mu; /* guards chans */
    struct ipc_chan *chans[IPC_CHANNELS];
};

/* A worker's job channel, from its first message until its last job's result. */
struct ipc_chan {
    struct ipc_server *server;
    int fd, wake; /* the socket; an eventfd done() pokes */
    pid_t pid;
    pthread_mutex_t mu; /* guards what follows */
    struct ipc_rec *out; /* results waiting to be sent */
    size_t nout, cap;
    size_t pending; /* jobs submitted, not yet done */
};

/* A job of a worker's, while the store has it. */
struct ipc_wjob {
    struct store_job sj;
    uint64_t tag;
    struct ipc_chan *chan;
};

/* In the writer, under the commit lock, memory having followed: the result goes to
 * the channel's thread.  Never blocks on the socket. */
static void ipc_wjob_done(struct store_job *sj)
{
    struct ipc_wjob *w = sj->ctx;
    struct ipc_chan *ch = w->chan;
    pthread_mutex_lock(&ch->mu);
    if (ch->nout == ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 256;
        struct ipc_rec *more = realloc(ch->out, cap * sizeof *more);
        if (more) ch->out = more, ch->cap = cap;
    }
    if (ch->nout < ch->cap) { /* else lost: the worker answers it when the channel ends */
        ch->out[ch->nout].tag = w->tag;
        ch->out[ch->nout].job = *sj;
        ch->nout++;
    }
    assert(ch->pending > 0);
    ch->pending--;
    pthread_mutex_unlock(&ch->mu);
    eventfd_write(ch->wake, 1);
    free(w);
}

/* Sends what done() queued, in messages of IPC_BATCH; false when the worker is gone. */
static bool ipc_chan_flush(struct ipc_chan *ch, struct ipc_jobs_msg *msg)
{
    pthread_mutex_lock(&ch->mu);
    struct ipc_rec *out = ch->out;
    size_t n = ch->nout;
    ch->out = NULL;
    ch->nout = ch->cap = 0;
    pthread_mutex_unlock(&ch->mu);
    bool ok = true;
    for (size_t i = 0; i < n && ok;) {
        size_t k = n - i < IPC_BATCH ? n - i : IPC_BATCH;
        msg->head = (struct ipc_head){IPC_RESULTS, (uint32_t)k, (int32_t)getpid(), 0};
        memcpy(msg->recs, out + i, k * sizeof *out);
        size_t len = sizeof msg->head + k * sizeof msg->recs[0];
        ok = send(ch->fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len;
        i += k;
    }
    free(out);
    return ok;
}

/* Jobs in: into the store, in one chain per message. */
static bool ipc_chan_take(struct ipc_chan *ch, struct ipc_jobs_msg *msg)
{
    ssize_t got;
    do got = recv(ch->fd, msg, sizeof *msg, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (got < (ssize_t)sizeof msg->head || msg->head.kind != IPC_JOBS || msg->head.n > IPC_BATCH ||
        (size_t)got != sizeof msg->head + msg->head.n * sizeof msg->recs[0])
        return false;
    struct store_job *first = NULL, *last = NULL;
    size_t n = 0;
    for (uint32_t i = 0; i < msg->head.n; i++) {
        struct ipc_wjob *w = malloc(sizeof *w);
        if (!w) continue; /* the worker's job stays in flight until the channel ends */
        w->sj = msg->recs[i].job;
        w->sj.next = NULL;
        w->sj.done = ipc_wjob_done;
        w->sj.ctx = w;
        w->sj.finished = false;
        if (w->sj.op == STORE_SWEEP) w->sj.u.sweep.rows = NULL, w->sj.u.sweep.n = 0;
        w->tag = msg->recs[i].tag;
        w->chan = ch;
        if (last) last->next = &w->sj;
        else first = &w->sj;
        last = &w->sj;
        n++;
    }
    if (!n) return true;
    pthread_mutex_lock(&ch->mu);
    ch->pending += n;
    pthread_mutex_unlock(&ch->mu);
    store_submit_chain(ch->server->store, first, last, n);
    return true;
}

static void *ipc_chan_main(void *arg)
{
    struct ipc_chan *ch = arg;
    struct ipc_jobs_msg *msg = malloc(sizeof *msg);
    bool open = msg != NULL;
    for (;;) {
        struct pollfd p[2] = {{ch->wake, POLLIN, 0}, {ch->fd, POLLIN, 0}};
        if (poll(p, open ? 2 : 1, -1) < 0 && errno != EINTR) break;
        if (p[0].revents & POLLIN) {
            eventfd_t v;
            eventfd_read(ch->wake, &v);
            if (open && !ipc_chan_flush(ch, msg)) open = false;
        }
        if (open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !ipc_chan_take(ch, msg)) open = false;
        if (!open) {
            /* The worker is gone: its jobs still commit (or not), unanswered. */
            pthread_mutex_lock(&ch->mu);
            bool idle = ch->pending == 0;
            pthread_mutex_unlock(&ch->mu);
            if (idle) break;
        }
    }
    struct ipc_server *s = ch->server;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < IPC_CHANNELS; i++)
        if (s->chans[i] == ch) s->chans[i] = NULL;
    pthread_mutex_unlock(&s->mu);
    close(ch->fd);
    close(ch->wake);
    free(ch->out);
    pthread_mutex_destroy(&ch->mu);
    free(ch);
    free(msg);
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
        if (hello.kind == IPC_HELLO_JOBS) {
            pthread_mutex_init(&ch->mu, NULL);
            ch->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            pthread_mutex_lock(&s->mu);
            size_t i = 0;
            while (i < IPC_CHANNELS && s->chans[i]) i++;
            if (i < IPC_CHANNELS && ch->wake >= 0) s->chans[i] = ch;
            pthread_mutex_unlock(&s->mu);
            started = i < IPC_CHANNELS && ch->wake >= 0 && pthread_create(&t, &attr, ipc_chan_main, ch) == 0;
            if (!started && i < IPC_CHANNELS) {
                pthread_mutex_lock(&s->mu);
                s->chans[i] = NULL;
                pthread_mutex_unlock(&s->mu);
            }
            if (!started && ch->wake >= 0) close(ch->wake);
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

struct ipc_server *ipc_server_start(struct store *store, pid_t sup, char *err, size_t err_size)
{
    struct ipc_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    s->store = store;
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

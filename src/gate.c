/* gate — see gate.h. */
#include "gate.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"
#include "framing.h"
#include "hash.h"
#include "shm.h"

/* The most of a first request the gate looks at: libmicrohttpd's per-connection
 * memory holds no larger header block anyway. */
#define GATE_PEEK 8192

struct gate_slot {
    int fd; /* -1 = free */
    uint64_t until_ns;
    socklen_t len;
    struct sockaddr_storage sa;
};

struct gate {
    int listen_fd, epoll_fd;
    bool listening, stopped;
    gate_admit_fn admit;
    void *ctx;
    uint64_t grace_ns, next_ns; /* next_ns: no grace ends before it */
    size_t nslots, held, free_hint;
    unsigned per_address; /* most connections one client address may have held (0 = no bound) */
    char peek[GATE_PEEK];
    struct gate_slot slots[];
};

static void gate_listen(struct gate *g, bool on)
{
    if (g->listening == on || g->stopped) return;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = GATE_TAG_LISTEN};
    if (epoll_ctl(g->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, g->listen_fd, &ev) == 0) g->listening = on;
}

struct gate *gate_new(int listen_fd, int epoll_fd, size_t slots, int grace_ms, gate_admit_fn admit,
                      void *ctx)
{
    struct gate *g = calloc(1, sizeof *g + slots * sizeof g->slots[0]);
    if (!g) return NULL;
    g->listen_fd = listen_fd;
    g->epoll_fd = epoll_fd;
    g->admit = admit;
    g->ctx = ctx;
    g->grace_ns = (uint64_t)grace_ms * 1000000u;
    g->nslots = slots;
    g->next_ns = UINT64_MAX;
    for (size_t i = 0; i < slots; i++) g->slots[i].fd = -1;
    gate_listen(g, true);
    if (!g->listening) {
        free(g);
        return NULL;
    }
    return g;
}

static void gate_release(struct gate *g, size_t i)
{
    epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, g->slots[i].fd, NULL);
    g->slots[i].fd = -1;
    g->held--;
    g->free_hint = i;
}

void gate_free(struct gate *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->nslots; i++)
        if (g->slots[i].fd >= 0) {
            close(g->slots[i].fd);
            g->slots[i].fd = -1;
        }
    gate_stop_listening(g);
    free(g);
}

void gate_stop_listening(struct gate *g)
{
    gate_listen(g, false);
    g->stopped = true;
}

void gate_limit_per_address(struct gate *g, unsigned limit) { g->per_address = limit; }

/* ---- counts per address, for the whole service ------------------------------------ */

#define GATE_ADDRESSES 8192 /* a power of two */
#define GATE_ADDRESS_PROBE 32

/* An address's connections, a column per process slot (shm.h), so that a process
 * that dies without closing its connections has its share forgotten, not kept. */
struct gate_address {
    _Atomic uint32_t key; /* 0 = never used */
    _Atomic int32_t open[SHM_PROCS];
};

struct gate_addresses {
    struct gate_address a[GATE_ADDRESSES];
};

/* One table for every I/O thread, and with a shared region for every process. */
static struct gate_addresses *gate_addresses(void)
{
    static struct gate_addresses *_Atomic table;
    struct gate_addresses *t = atomic_load(&table);
    if (t) return t;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    if (!(t = atomic_load(&table))) {
        bool fresh;
        t = shm_named("gate:addresses", sizeof *t, NULL, NULL, &fresh);
        atomic_store(&table, t);
    }
    pthread_mutex_unlock(&mu);
    return t;
}

static uint32_t gate_address_key(const struct sockaddr *sa)
{
    uint64_t h = HASH_FNV_OFFSET;
    if (sa->sa_family == AF_INET)
        h = hash_bytes(h, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, sizeof(struct in_addr));
    else if (sa->sa_family == AF_INET6)
        h = hash_bytes(h, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, sizeof(struct in6_addr));
    return (uint32_t)hash_fold(h) | 1; /* 0 is an unused entry */
}

static int64_t gate_address_open(const struct gate_address *e)
{
    int64_t n = 0;
    for (int p = 0; p < SHM_PROCS; p++) n += atomic_load_explicit(&e->open[p], memory_order_relaxed);
    return n;
}

/* The address's entry: its own, else one taken over (unused, or with nothing open),
 * else NULL (no room within the probe: not counted). */
static struct gate_address *gate_address_entry(struct gate_addresses *t, uint32_t key, bool take)
{
    for (int pass = 0; pass < (take ? 2 : 1); pass++) {
        for (int i = 0; i < GATE_ADDRESS_PROBE; i++) {
            struct gate_address *e = &t->a[(key + (uint32_t)i) & (GATE_ADDRESSES - 1)];
            uint32_t k = atomic_load(&e->key);
            if (k == key) return e;
            /* Two processes taking over one entry at once, or one closing there as it
             * is taken over, can blur a count: the limit is then a little loose. */
            if (pass == 1 && (k == 0 || gate_address_open(e) == 0) &&
                (atomic_compare_exchange_strong(&e->key, &k, key) || k == key))
                return e;
        }
    }
    return NULL;
}

bool gate_address_take(const struct sockaddr *sa, unsigned limit)
{
    if (!limit) return true;
    struct gate_addresses *t = gate_addresses();
    struct gate_address *e = t ? gate_address_entry(t, gate_address_key(sa), true) : NULL;
    if (!e) return true; /* not counted: libmicrohttpd's own per-thread limit still applies */
    if (gate_address_open(e) >= (int64_t)limit) return false;
    atomic_fetch_add(&e->open[shm_slot()], 1);
    return true;
}

void gate_address_put(const struct sockaddr *sa)
{
    struct gate_addresses *t = gate_addresses();
    struct gate_address *e = t ? gate_address_entry(t, gate_address_key(sa), false) : NULL;
    if (!e) return;
    _Atomic int32_t *mine = &e->open[shm_slot()];
    int32_t n = atomic_load(mine);
    while (n > 0 && !atomic_compare_exchange_weak(mine, &n, n - 1)) {
    }
}

void gate_address_forget(int slot)
{
    struct gate_addresses *t = gate_addresses();
    for (size_t i = 0; t && slot >= 0 && slot < SHM_PROCS && i < GATE_ADDRESSES; i++)
        if (atomic_load_explicit(&t->a[i].key, memory_order_relaxed)) atomic_store(&t->a[i].open[slot], 0);
}

/* The client's address, without the port. */
static bool gate_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

/* Whether sa already holds as many slots as one address may: held connections are not
 * libmicrohttpd's yet, so its --per-ip-limit cannot see them; without this, one
 * client could fill every slot and stop the gate accepting for everyone. */
static bool gate_address_full(const struct gate *g, const struct sockaddr_storage *sa)
{
    if (!g->per_address) return false;
    unsigned n = 0;
    for (size_t i = 0; i < g->nslots && n < g->per_address; i++)
        if (g->slots[i].fd >= 0 && gate_same_address(&g->slots[i].sa, sa)) n++;
    return n >= g->per_address;
}

static void gate_admit(struct gate *g, size_t i)
{
    struct gate_slot *s = &g->slots[i];
    int fd = s->fd;
    gate_release(g, i);
    g->admit(g->ctx, fd, (const struct sockaddr *)&s->sa, s->len);
}

/* Answers a refused first request and closes.  What the client sent is read
 * first: closing with unread bytes would reset the connection and could destroy
 * the answer before the client reads it. */
static void gate_refuse(struct gate *g, size_t i, enum framing_fault f)
{
    int fd = g->slots[i].fd;
    gate_release(g, i);
    /* Bounded: a client that keeps streaming must not keep the I/O thread here. */
    for (int k = 0; k < 16 && read(fd, g->peek, sizeof g->peek) > 0; k++) {}
    char body[256], msg[512];
    enum outcome o = framing_outcome(f);
    int b = (int)outcome_json(o, framing_message(f), body, sizeof body);
    int status = outcome_status(o);
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     status, status == 505 ? "HTTP Version Not Supported" : "Bad Request", b, body);
    assert(status == 400 || status == 505); /* framing_first_bytes' faults */
    if (b > 0 && n > 0 && (size_t)n < sizeof msg) {
        ssize_t w = send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* a fresh socket's buffer takes it whole, or the client is gone */
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void gate_first_bytes(struct gate *g, size_t i)
{
    ssize_t n = recv(g->slots[i].fd, g->peek, sizeof g->peek, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return; /* spurious: wait on */
    if (n <= 0) {                                             /* gone before a byte */
        int fd = g->slots[i].fd;
        gate_release(g, i);
        close(fd);
        return;
    }
    enum framing_fault f = framing_first_bytes(g->peek, (size_t)n);
    if (f == FRAMING_OK) gate_admit(g, i);
    else gate_refuse(g, i, f);
}

static void gate_accept(struct gate *g, size_t room)
{
    uint64_t until = clock_mono_ns() + g->grace_ns;
    while (room > 0 && g->held < g->nslots) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(g->listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: the next round tries again */
        }
        if (gate_address_full(g, &sa)) { /* as libmicrohttpd does past --per-ip-limit */
            close(fd);
            continue;
        }
        size_t i = g->free_hint;
        while (g->slots[i].fd >= 0) i = (i + 1) % g->nslots;
        struct gate_slot *s = &g->slots[i];
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = GATE_TAG_HELD + i};
        if (epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            g->admit(g->ctx, fd, (const struct sockaddr *)&sa, len); /* cannot watch it: no gate */
            room--;
            continue;
        }
        s->fd = fd;
        s->until_ns = until;
        if (until < g->next_ns) g->next_ns = until;
        s->len = len;
        memcpy(&s->sa, &sa, len);
        g->held++;
        g->free_hint = (i + 1) % g->nslots;
        room--;
    }
    if (room == 0 || g->held == g->nslots) gate_listen(g, false); /* back in gate_round */
}

void gate_event(struct gate *g, uint64_t tag, size_t room)
{
    if (tag == GATE_TAG_LISTEN) {
        if (!g->stopped) gate_accept(g, room > g->held ? room - g->held : 0);
        return;
    }
    size_t i = (size_t)(tag - GATE_TAG_HELD);
    if (i < g->nslots && g->slots[i].fd >= 0) gate_first_bytes(g, i);
}

int gate_round(struct gate *g, size_t room)
{
    if (!g->stopped && room > g->held && g->held < g->nslots) gate_listen(g, true);
    if (!g->held) return INT32_MAX;
    uint64_t now = clock_mono_ns();
    if (now < g->next_ns) return (int)((g->next_ns - now + 999999) / 1000000);
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < g->nslots; i++) {
        if (g->slots[i].fd < 0) continue;
        if (g->slots[i].until_ns <= now) gate_admit(g, i); /* silent so far: libmicrohttpd's timeouts apply */
        else if (g->slots[i].until_ns < next) next = g->slots[i].until_ns;
    }
    g->next_ns = next;
    if (next == UINT64_MAX) return INT32_MAX;
    uint64_t ms = (next - now + 999999) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

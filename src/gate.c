/* gate — see gate.h. */
#include "gate.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
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

/* ---- counts per address across processes ------------------------------------------- */

#define GATE_ADDRESSES 8192 /* a power of two */
#define GATE_ADDRESS_PROBE 32

/* One word per address, key in the high half and count in the low, so a take, a
 * put and taking over a slot whose count is 0 are each one compare-and-swap. */
struct gate_addresses {
    _Atomic uint64_t slots[GATE_ADDRESSES];
};

static struct gate_addresses *gate_addresses(void)
{
    static struct gate_addresses *shared; /* set in each process at its first call */
    if (!shared && shm_active()) {
        bool fresh;
        shared = shm_named("gate:addresses", sizeof *shared, &fresh);
    }
    return shared;
}

static uint32_t gate_address_key(const struct sockaddr *sa)
{
    uint64_t h = HASH_FNV_OFFSET;
    if (sa->sa_family == AF_INET)
        h = hash_bytes(h, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, sizeof(struct in_addr));
    else if (sa->sa_family == AF_INET6)
        h = hash_bytes(h, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, sizeof(struct in6_addr));
    return (uint32_t)hash_fold(h) | 1; /* 0 is an empty slot */
}

bool gate_address_take(const struct sockaddr *sa, unsigned limit)
{
    struct gate_addresses *t = gate_addresses();
    if (!t || !limit) return true;
    uint64_t key = gate_address_key(sa);
    /* Its own slot first; else one whose count is 0 (two processes adding the same
     * new address at once may split its count: the limit is then a little loose). */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < GATE_ADDRESS_PROBE; i++) {
            _Atomic uint64_t *slot = &t->slots[(key + (uint64_t)i) & (GATE_ADDRESSES - 1)];
            uint64_t w = atomic_load(slot);
            for (;;) {
                bool mine = w >> 32 == key, idle = (uint32_t)w == 0;
                if (pass == 0 ? !mine : !idle) break;
                if (mine && (uint32_t)w >= limit) return false;
                uint64_t next = mine ? w + 1 : key << 32 | 1;
                if (atomic_compare_exchange_weak(slot, &w, next)) return true;
            }
        }
    }
    return true; /* no room to count it: libmicrohttpd's per-process limit still applies */
}

void gate_address_put(const struct sockaddr *sa)
{
    struct gate_addresses *t = gate_addresses();
    if (!t) return;
    uint64_t key = gate_address_key(sa);
    for (int i = 0; i < GATE_ADDRESS_PROBE; i++) {
        _Atomic uint64_t *slot = &t->slots[(key + (uint64_t)i) & (GATE_ADDRESSES - 1)];
        uint64_t w = atomic_load(slot);
        while (w >> 32 == key && (uint32_t)w > 0)
            if (atomic_compare_exchange_weak(slot, &w, w - 1)) return;
    }
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

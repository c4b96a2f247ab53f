/* ipc — the hop a purchase makes in --model processes, from a worker process to the one
 * writer process and back, over the two designs issue 13 names:
 *
 *   seqpacket  a Unix-domain SOCK_SEQPACKET socketpair: one message per batch of k records,
 *              a blocking recv on each side (the kernel copies each message twice and wakes
 *              the sleeper)
 *   ring       two single-producer/single-consumer rings in one MAP_SHARED region, one each
 *              way, driven by C11 atomics; an eventfd per direction wakes the consumer, and
 *              only when it said it may sleep (its "waiting" flag)
 *
 * The parent plays the worker: it sends batches of k purchase records (400 bytes each, about
 * what a purchase carries over the hop: sale, user id, idempotency key, quantity) and the
 * child, the writer, answers each record with 160 bytes (the order, its token, the outcome).
 * Two phases, on the same pair of processes:
 *   latency     one batch in flight: ROUNDS round trips, their median and p99
 *   throughput  a pipeline of IPC_WINDOW batches in flight for SECONDS: records per second
 * Each phase also reads the CPU time both processes spent (the writer's through its CPU
 * clock), since on a machine whose cores are all busy, CPU per purchase is the cost.
 *
 * `ipc MODE K ROUNDS SECONDS [SPIN [WORKER_CPU WRITER_CPU]]` prints one JSON line.  SPIN
 * (ring only, default 0) is how many times a consumer (either side) polls its ring before
 * it goes to sleep; spin_us says how long that many polls last on this CPU when nothing
 * arrives.  The CPUs pin the two processes: left free, the scheduler mostly puts the woken
 * side on the waker's core, but not always, and a wake across cores costs several times
 * more here (a halted virtual CPU is woken through the hypervisor), so a free run's median
 * lands in one mode or the other; pinned, each placement is measured on its own.
 *
 * Correct or nothing: every record carries a sequence number and a check word, the writer
 * verifies each request, and the worker matches every answer to the request it sent, in
 * order, and counts both sides; exit 1 on any mismatch or miscount.  A peer that dies
 * cannot hang the other: the socket reports EOF or EPIPE, and a ring sleeper polls a
 * lifeline (a socketpair whose other end only the peer holds) beside its eventfd.  Exit 3
 * when the writer died.  Test hook: IPC_DIE_AFTER=N makes the writer _exit after N records.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IPC_REQ_BYTES 400
#define IPC_REP_BYTES 160
#define IPC_MAX_K 64
#define IPC_WINDOW 8   /* batches in flight in the throughput phase */
#define IPC_SLOTS 1024 /* records per ring */
#define IPC_WARMUP 200 /* round trips before the latency phase counts */
#define IPC_GOLDEN 0x9E3779B97F4A7C15ULL

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the ring's atomics must be lock-free to work across processes");
_Static_assert((IPC_SLOTS & (IPC_SLOTS - 1)) == 0, "the ring indexes with a mask");
_Static_assert(IPC_SLOTS >= IPC_WINDOW * IPC_MAX_K, "a full window fits a ring, so no producer waits for room");

struct ipc_req {
    uint64_t seq;
    uint64_t check; /* seq * IPC_GOLDEN: a torn or misplaced record shows */
    unsigned char body[IPC_REQ_BYTES - 16]; /* its last byte is seq's low byte */
};
struct ipc_rep {
    uint64_t seq;
    uint64_t order; /* seq * IPC_GOLDEN + 1: the writer read the request */
    unsigned char body[IPC_REP_BYTES - 16];
};
_Static_assert(sizeof(struct ipc_req) == IPC_REQ_BYTES, "a purchase record is 400 bytes");
_Static_assert(sizeof(struct ipc_rep) == IPC_REP_BYTES, "an answer record is 160 bytes");

/* One direction.  head is written by the consumer only, tail by the producer only, each on
 * its own cache line so the two sides do not bounce one line for two reasons. */
struct ipc_ring {
    _Alignas(64) _Atomic uint64_t head; /* next record the consumer reads */
    _Alignas(64) _Atomic uint64_t tail; /* next record the producer writes */
    _Alignas(64) _Atomic int waiting;   /* 1: the consumer may be asleep on its eventfd */
};

struct ipc_shared {
    struct ipc_ring to_writer, to_worker;
    struct ipc_req req_slots[IPC_SLOTS];
    struct ipc_rep rep_slots[IPC_SLOTS];
    _Atomic uint64_t served; /* records the writer answered */
    _Atomic uint64_t bad;    /* requests the writer found wrong */
};

/* One process's side of the hop. */
struct ipc_end {
    int ring;     /* 0: seqpacket, 1: ring */
    int sock;     /* seqpacket: this side's end */
    int lifeline; /* ring: POLLHUP when the peer is gone */
    int efd_in;   /* ring: wakes this side */
    int efd_out;  /* ring: wakes the peer */
    int spin;
    struct ipc_ring *in, *out;
    unsigned char *in_slots, *out_slots;
    size_t in_size, out_size;
};

static void ipc_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static double ipc_now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int ipc_peer_gone(const struct ipc_end *e)
{
    struct pollfd p = {e->lifeline, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* Sends n records as one message (seqpacket) or one publication (ring).  0, or -1 when
 * the peer is gone. */
static int ipc_send(struct ipc_end *e, const void *recs, int n)
{
    if (!e->ring) {
        ssize_t want = (ssize_t)(n * e->out_size), r;
        do r = send(e->sock, recs, (size_t)want, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        return r == want ? 0 : -1;
    }
    uint64_t tail = atomic_load_explicit(&e->out->tail, memory_order_relaxed);
    for (int i = 0; i < n; i++, tail++) {
        while (tail - atomic_load_explicit(&e->out->head, memory_order_acquire) >= IPC_SLOTS) {
            if (ipc_peer_gone(e)) return -1; /* cannot happen within a window; never hang */
            sched_yield();
        }
        memcpy(e->out_slots + (tail & (IPC_SLOTS - 1)) * e->out_size, (const unsigned char *)recs + i * e->out_size,
               e->out_size);
    }
    /* seq_cst store then seq_cst exchange, against the consumer's seq_cst store of waiting
     * then load of tail: one of the two sees the other, so a sleeper always gets its wake.
     * The exchange clears the flag, so of several publications while the consumer sleeps
     * only the first pays for the eventfd write. */
    atomic_store(&e->out->tail, tail);
    if (atomic_exchange(&e->out->waiting, 0)) {
        uint64_t one = 1;
        if (write(e->efd_out, &one, sizeof one) < 0 && errno != EAGAIN) return -1;
    }
    return 0;
}

/* Ring: waits until the producer published past head; 0 with *tail set, -1 when the peer
 * is gone and left nothing unread. */
static int ipc_ring_wait(struct ipc_end *e, uint64_t head, uint64_t *tail)
{
    for (int i = 0; i < e->spin; i++) {
        if ((*tail = atomic_load_explicit(&e->in->tail, memory_order_acquire)) != head) return 0;
        ipc_pause();
    }
    for (;;) {
        atomic_store(&e->in->waiting, 1);
        if ((*tail = atomic_load(&e->in->tail)) != head) {
            atomic_store_explicit(&e->in->waiting, 0, memory_order_relaxed);
            return 0;
        }
        struct pollfd p[2] = {{e->efd_in, POLLIN, 0}, {e->lifeline, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) return -1;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            if (read(e->efd_in, &v, sizeof v) < 0 && errno != EAGAIN) return -1;
        }
        atomic_store_explicit(&e->in->waiting, 0, memory_order_relaxed);
        if (p[1].revents) { /* the peer is gone: hand over what it published, then stop */
            *tail = atomic_load_explicit(&e->in->tail, memory_order_acquire);
            return *tail != head ? 0 : -1;
        }
    }
}

/* Receives up to max records (a seqpacket message holds one batch, at most IPC_MAX_K).
 * The count, or 0 when the peer is gone (EOF, error, or a dead ring producer). */
static int ipc_recv(struct ipc_end *e, void *recs, int max)
{
    if (!e->ring) {
        struct iovec iov = {recs, (size_t)max * e->in_size};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t r;
        do r = recvmsg(e->sock, &mh, 0);
        while (r < 0 && errno == EINTR);
        if (r <= 0) return 0;
        if ((mh.msg_flags & MSG_TRUNC) || r % (ssize_t)e->in_size) {
            fprintf(stderr, "ipc: a message of %zd bytes is not whole records\n", r);
            exit(1);
        }
        return (int)(r / (ssize_t)e->in_size);
    }
    uint64_t head = atomic_load_explicit(&e->in->head, memory_order_relaxed), tail;
    if (ipc_ring_wait(e, head, &tail) < 0) return 0;
    int n = tail - head < (uint64_t)max ? (int)(tail - head) : max;
    for (int i = 0; i < n; i++)
        memcpy((unsigned char *)recs + i * e->in_size, e->in_slots + ((head + i) & (IPC_SLOTS - 1)) * e->in_size,
               e->in_size);
    atomic_store_explicit(&e->in->head, head + n, memory_order_release);
    return n;
}

/* The writer: checks each request, answers it, until the worker is gone. */
static void ipc_writer(struct ipc_end *e, struct ipc_shared *sh)
{
    static struct ipc_req req[IPC_SLOTS];
    static struct ipc_rep rep[IPC_SLOTS];
    const char *die = getenv("IPC_DIE_AFTER");
    uint64_t die_after = die ? strtoull(die, NULL, 10) : 0, expect = 0, served = 0, bad = 0;
    for (;;) {
        int n = ipc_recv(e, req, e->ring ? IPC_SLOTS : IPC_MAX_K);
        if (n == 0) break;
        for (int i = 0; i < n; i++) {
            const struct ipc_req *q = &req[i];
            if (q->seq != expect || q->check != q->seq * IPC_GOLDEN ||
                q->body[sizeof q->body - 1] != (unsigned char)q->seq)
                bad++;
            expect = q->seq + 1;
            rep[i].seq = q->seq;
            rep[i].order = q->seq * IPC_GOLDEN + 1;
        }
        served += (uint64_t)n;
        atomic_store_explicit(&sh->served, served, memory_order_relaxed);
        atomic_store_explicit(&sh->bad, bad, memory_order_relaxed);
        if (die_after && served >= die_after) _exit(9);
        if (ipc_send(e, rep, n) < 0) break;
    }
}

/* The worker's bookkeeping: every answer matched to its request, in order. */
struct ipc_worker {
    struct ipc_end *e;
    uint64_t next_seq, next_reply, mismatched;
    struct ipc_req batch[IPC_MAX_K];
    struct ipc_rep reps[IPC_SLOTS];
};

static void ipc_worker_died(void)
{
    fprintf(stderr, "ipc: the writer died mid-run; the worker stopped instead of waiting forever\n");
    exit(3);
}

static void ipc_send_batch(struct ipc_worker *w, int k)
{
    for (int i = 0; i < k; i++) {
        struct ipc_req *q = &w->batch[i];
        q->seq = w->next_seq++;
        q->check = q->seq * IPC_GOLDEN;
        q->body[sizeof q->body - 1] = (unsigned char)q->seq;
    }
    if (ipc_send(w->e, w->batch, k) < 0) ipc_worker_died();
}

static int ipc_take_replies(struct ipc_worker *w)
{
    int n = ipc_recv(w->e, w->reps, w->e->ring ? IPC_SLOTS : IPC_MAX_K);
    if (n == 0) ipc_worker_died();
    for (int i = 0; i < n; i++, w->next_reply++)
        if (w->reps[i].seq != w->next_reply || w->reps[i].order != w->next_reply * IPC_GOLDEN + 1) w->mismatched++;
    return n;
}

/* Pins the calling process to one CPU; -1 leaves it free. */
static void ipc_pin(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) {
        perror("ipc: sched_setaffinity");
        exit(2);
    }
}

static int ipc_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long ipc_switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

int main(int argc, char **argv)
{
    if ((argc != 5 && argc != 6 && argc != 8) || (strcmp(argv[1], "seqpacket") && strcmp(argv[1], "ring"))) {
        fprintf(stderr, "usage: %s seqpacket|ring K ROUNDS SECONDS [SPIN [WORKER_CPU WRITER_CPU]]\n", argv[0]);
        return 2;
    }
    int k = atoi(argv[2]), rounds = atoi(argv[3]), spin = argc >= 6 ? atoi(argv[5]) : 0;
    int worker_cpu = argc == 8 ? atoi(argv[6]) : -1, writer_cpu = argc == 8 ? atoi(argv[7]) : -1;
    double seconds = atof(argv[4]);
    if (k < 1 || k > IPC_MAX_K || rounds < 1 || seconds <= 0 || spin < 0) {
        fprintf(stderr, "ipc: K from 1 to %d, ROUNDS >= 1, SECONDS > 0, SPIN >= 0\n", IPC_MAX_K);
        return 2;
    }
    alarm((unsigned)(120 + 4 * seconds)); /* a last resort: a bug here must not hang make lab */
    struct ipc_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 2;
    int sock[2], life[2];
    int efd_writer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), efd_worker = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) ||
        efd_writer < 0 || efd_worker < 0) {
        perror("ipc: setup");
        return 2;
    }
    int ring = strcmp(argv[1], "ring") == 0;
    if (!ring) spin = 0; /* a socket sleeps in recv: there is nothing to poll */
    struct ipc_end worker = {.ring = ring, .sock = sock[0], .lifeline = life[0], .efd_in = efd_worker,
                             .efd_out = efd_writer, .spin = spin, .in = &sh->to_worker, .out = &sh->to_writer,
                             .in_slots = (unsigned char *)sh->rep_slots, .out_slots = (unsigned char *)sh->req_slots,
                             .in_size = IPC_REP_BYTES, .out_size = IPC_REQ_BYTES};
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        struct ipc_end writer = {.ring = ring, .sock = sock[1], .lifeline = life[1], .efd_in = efd_writer,
                                 .efd_out = efd_worker, .spin = spin, .in = &sh->to_writer, .out = &sh->to_worker,
                                 .in_slots = (unsigned char *)sh->req_slots,
                                 .out_slots = (unsigned char *)sh->rep_slots, .in_size = IPC_REQ_BYTES,
                                 .out_size = IPC_REP_BYTES};
        close(sock[0]);
        close(life[0]); /* else the lifeline never hangs up */
        ipc_pin(writer_cpu);
        ipc_writer(&writer, sh);
        _exit(0);
    }
    close(sock[1]);
    close(life[1]);
    ipc_pin(worker_cpu);
    clockid_t writer_clock;
    if (clock_getcpuclockid(child, &writer_clock)) writer_clock = CLOCK_PROCESS_CPUTIME_ID; /* then the worker's only */

    static struct ipc_worker w;
    w.e = &worker;
    double *rtt = malloc(sizeof *rtt * (size_t)rounds);
    if (!rtt) return 2;
    for (int r = 0; r < IPC_WARMUP; r++) {
        ipc_send_batch(&w, k);
        for (int got = 0; got < k;) got += ipc_take_replies(&w);
    }
    long sw0 = ipc_switches();
    double cpu0 = ipc_now(CLOCK_PROCESS_CPUTIME_ID) + ipc_now(writer_clock);
    for (int r = 0; r < rounds; r++) {
        double t0 = ipc_now(CLOCK_MONOTONIC);
        ipc_send_batch(&w, k);
        for (int got = 0; got < k;) got += ipc_take_replies(&w);
        rtt[r] = ipc_now(CLOCK_MONOTONIC) - t0;
    }
    double lat_cpu = ipc_now(CLOCK_PROCESS_CPUTIME_ID) + ipc_now(writer_clock) - cpu0;
    long lat_switches = ipc_switches() - sw0;
    qsort(rtt, (size_t)rounds, sizeof *rtt, ipc_cmp);

    /* Throughput: keep IPC_WINDOW batches in flight until SECONDS are up, then drain. */
    uint64_t records = 0;
    int in_flight = 0;
    cpu0 = ipc_now(CLOCK_PROCESS_CPUTIME_ID) + ipc_now(writer_clock);
    double t0 = ipc_now(CLOCK_MONOTONIC), end = t0 + seconds, now = t0;
    for (;;) {
        if (now < end)
            for (; in_flight + k <= IPC_WINDOW * k; in_flight += k) ipc_send_batch(&w, k);
        else if (in_flight == 0)
            break;
        int n = ipc_take_replies(&w);
        in_flight -= n;
        records += (uint64_t)n;
        now = ipc_now(CLOCK_MONOTONIC);
    }
    double elapsed = now - t0;
    double tput_cpu = ipc_now(CLOCK_PROCESS_CPUTIME_ID) + ipc_now(writer_clock) - cpu0;

    /* The worker is done: closing its ends tells the writer (EOF, or a hung-up lifeline). */
    close(worker.sock);
    close(worker.lifeline);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ipc: the writer did not exit cleanly (status %d)\n", status);
        return 1;
    }
    uint64_t served = atomic_load(&sh->served), bad = atomic_load(&sh->bad);
    double spun = ipc_now(CLOCK_MONOTONIC); /* how long SPIN polls last here, when nothing comes */
    for (int i = 0; i < spin; i++) ipc_pause();
    spun = ipc_now(CLOCK_MONOTONIC) - spun;
    int ok = w.next_reply == w.next_seq && served == w.next_seq && bad == 0 && w.mismatched == 0;
    double p50 = rtt[rounds / 2], p99 = rtt[(int)((rounds - 1) * 0.99)];
    printf("{\"mode\":\"%s\",\"k\":%d,\"worker_cpu\":%d,\"writer_cpu\":%d,\"spin\":%d,\"spin_us\":%.2f,"
           "\"rounds\":%d,\"rtt_p50_us\":%.3f,\"rtt_p99_us\":%.3f,"
           "\"rtt_ns_per_record\":%.1f,\"switches_per_round\":%.3f,\"cpu_ns_per_round\":%.1f,"
           "\"seconds\":%.3f,\"records\":%llu,\"records_per_s\":%.0f,\"ns_per_record\":%.1f,\"cpu_ns_per_record\":%.1f,"
           "\"sent\":%llu,\"replied\":%llu,\"served\":%llu,\"mismatched\":%llu,\"bad\":%llu,\"ok\":%s}\n",
           argv[1], k, worker_cpu, writer_cpu, spin, spun * 1e6, rounds, p50 * 1e6, p99 * 1e6, p50 * 1e9 / k,
           (double)lat_switches / rounds,
           lat_cpu * 1e9 / rounds, elapsed, (unsigned long long)records, (double)records / elapsed,
           elapsed * 1e9 / (double)records, tput_cpu * 1e9 / (double)records, (unsigned long long)w.next_seq,
           (unsigned long long)w.next_reply, (unsigned long long)served, (unsigned long long)w.mismatched,
           (unsigned long long)bad, ok ? "true" : "false");
    free(rtt);
    return ok ? 0 : 1;
}

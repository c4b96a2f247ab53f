/*
 * loadgen.c - open-loop HTTP/1.1 load generator for the flashsale service.
 *
 * Why not wrk: wrk is closed-loop. When the server stalls, wrk stops sending,
 * so the stall never shows up in its latencies ("coordinated omission"). Flash
 * sale users do not wait for each other: here request i is *due* at
 * t0 + i/R whatever happens, and its latency is measured from that due time,
 * so time spent queued for a free connection counts as latency.
 *
 * Modes:
 *   --rate R    open loop: fixed arrival schedule over a keep-alive pool
 *   --burst N   connect N clients, then all of them send at one instant
 *   --rate 0    closed loop over --connections (wrk-like, for comparison)
 *
 * One thread, one epoll loop, one outstanding request per connection (no
 * pipelining). A timerfd gives sub-millisecond wakeups for the schedule.
 * An optional second thread polls the sale's stock with blocking GETs so a
 * slow answer never stalls the generator.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -o loadgen loadgen.c -lm
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long long u64;

#define NS_PER_S          1000000000LL
#define NS_PER_MS         1000000LL
#define MAX_HEADERS       16
#define RESP_LINE_CAP     128             /* longer header lines are truncated */
#define EVENTS_MAX        1024
#define TIMER_TAG         UINT32_MAX      /* epoll tag of the timerfd */
#define CHECK_EVERY_NS    (10 * NS_PER_MS) /* timeout scan period */
#define RECONNECT_BACKOFF (10 * NS_PER_MS) /* after a failed connect */
#define FD_RESERVE        32              /* fds kept for epoll, stdio, stock */

/* ---------------------------------------------------------------- options */

enum mode { MODE_RATE, MODE_CLOSED, MODE_BURST };
static const char *const mode_names[] = { "rate", "closed", "burst" };

struct target {
    struct sockaddr_in addr;
    char hostport[64];                   /* for the Host header */
};

static struct {
    struct target tgt;
    const char *path, *method, *body;    /* body NULL = no body */
    const char *headers[MAX_HEADERS];
    int nheaders;
    enum mode mode;
    double rate, duration_s;
    int connections, burst, rounds;
    int source_ips;                     /* spread over 127.0.0.1..N */
    int64_t timeout_ns;
    u64 users;                           /* 0 = a new user per request */
    char prefix[48];
    bool has_stock, json;
    struct target stock_tgt;
    const char *stock_path;
} opt;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void usage(void)
{
    printf(
"usage: loadgen [options]\n"
"  --url URL          target http://IPv4:PORT[/path]    (default http://127.0.0.1:8080)\n"
"  --rate R           open loop, R requests/s; 0 = closed loop      (default 1000)\n"
"  --burst N          open N connections, then one request on each at once\n"
"  --rounds K         burst rounds, each fired when the previous one ended (default 1)\n"
"  --connections C    max connections (default 1000 open loop, 64 closed loop)\n"
"  --duration S       seconds of load in rate / closed mode         (default 10)\n"
"  --timeout MS       per request (from intended send time) and per connect (default 10000)\n"
"  --method M         GET|POST|...                                  (default POST)\n"
"  --path P           request path               (default /api/v1/sales/1/orders)\n"
"  --body T           body template, %%s = user id (default {\"user_id\":\"%%s\"}; none for GET)\n"
"  --header 'N: V'    extra request header, repeatable (max %d)\n"
"  --users unique|N   new user id per request, or round-robin over N users (default unique)\n"
"  --user-prefix P    user id prefix, ids are P-<n>          (default random per run)\n"
"  --source-ips K     spread connections over source IPs 127.0.0.1..K (default 1);\n"
"                     helps beyond ~14k connections, changes what per-IP limits see\n"
"  --stock-url U      poll a JSON endpoint (path or URL) for \"stock_left\" every ~250 ms\n"
"  --json             print a JSON report on stdout\n"
"  --help             this text\n"
"Exit status: 0 ran, 2 bad arguments or no connection could be made.\n",
        MAX_HEADERS);
}

/* Parses "http://IPv4[:port][/path]"; *path gets the path part or NULL. */
static bool url_parse(const char *url, struct target *t, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *host = url + 7, *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    char buf[64];
    if (hlen == 0 || hlen >= sizeof buf)
        return false;
    memcpy(buf, host, hlen);
    buf[hlen] = '\0';
    memcpy(t->hostport, buf, hlen + 1);
    long port = 80;
    char *colon = strchr(buf, ':');
    if (colon) {
        char *end;
        *colon = '\0';
        port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535)
            return false;
    }
    memset(&t->addr, 0, sizeof t->addr);
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    if (strcmp(buf, "localhost") == 0)
        strcpy(buf, "127.0.0.1");
    if (inet_pton(AF_INET, buf, &t->addr.sin_addr) != 1)
        return false;
    *path = slash;
    return true;
}

static double arg_num(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die("bad value for --%s: '%s' (expected %g..%g)", flag, s, lo, hi);
    return v;
}

static void opts_defaults(void)
{
    const char *ignored;
    url_parse("http://127.0.0.1:8080", &opt.tgt, &ignored);
    opt.path = "/api/v1/sales/1/orders";
    opt.method = "POST";
    opt.rate = 1000;
    opt.duration_s = 10;
    opt.rounds = 1;
    opt.source_ips = 1;
    opt.timeout_ns = 10000 * NS_PER_MS;
    /* Random prefix so reruns against the same sale never reuse user ids. */
    uint32_t rnd;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (uint32_t)now_ns() ^ (uint32_t)getpid();
    snprintf(opt.prefix, sizeof opt.prefix, "lg%08x", rnd);
}

static void opts_parse(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", 1, 0, 'u'}, {"rate", 1, 0, 'r'}, {"burst", 1, 0, 'b'},
        {"rounds", 1, 0, 'k'}, {"connections", 1, 0, 'c'},
        {"duration", 1, 0, 'd'}, {"timeout", 1, 0, 't'},
        {"method", 1, 0, 'm'}, {"path", 1, 0, 'p'}, {"body", 1, 0, 'B'},
        {"header", 1, 0, 'H'}, {"users", 1, 0, 'U'},
        {"user-prefix", 1, 0, 'P'}, {"stock-url", 1, 0, 's'},
        {"source-ips", 1, 0, 'S'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *url_path = NULL, *stock = NULL;
    bool path_set = false, body_set = false, rate_set = false;
    int ch;

    opts_defaults();
    while ((ch = getopt_long(argc, argv, "u:r:b:c:d:t:m:p:H:jh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': if (!url_parse(optarg, &opt.tgt, &url_path)) die("bad --url '%s'", optarg); break;
        case 'r': opt.rate = arg_num("rate", optarg, 0, 1e7); rate_set = true; break;
        case 'b': opt.burst = (int)arg_num("burst", optarg, 1, 1e6); break;
        case 'k': opt.rounds = (int)arg_num("rounds", optarg, 1, 1e6); break;
        case 'c': opt.connections = (int)arg_num("connections", optarg, 1, 1e6); break;
        case 'd': opt.duration_s = arg_num("duration", optarg, 0.001, 1e6); break;
        case 't': opt.timeout_ns = (int64_t)(arg_num("timeout", optarg, 1, 1e9) * NS_PER_MS); break;
        case 'm': opt.method = optarg; break;
        case 'p': opt.path = optarg; path_set = true; break;
        case 'B': opt.body = optarg; body_set = true; break;
        case 'H':
            if (opt.nheaders == MAX_HEADERS || !strchr(optarg, ':'))
                die("bad or too many --header '%s'", optarg);
            opt.headers[opt.nheaders++] = optarg;
            break;
        case 'U':
            opt.users = strcmp(optarg, "unique") == 0 ? 0 : (u64)arg_num("users", optarg, 1, 1e15);
            break;
        case 'P':
            if (strlen(optarg) >= sizeof opt.prefix) die("--user-prefix too long");
            strcpy(opt.prefix, optarg);
            break;
        case 's': stock = optarg; break;
        case 'S': opt.source_ips = (int)arg_num("source-ips", optarg, 1, 254); break;
        case 'j': opt.json = true; break;
        case 'h': usage(); exit(0);
        default: die("unknown option");
        }
    }
    if (optind < argc)
        die("unexpected argument '%s'", argv[optind]);
    if (opt.burst && rate_set)
        die("--rate and --burst are exclusive");
    if (!path_set && url_path && strlen(url_path) > 1)
        opt.path = url_path;
    bool bodyless = strcmp(opt.method, "GET") == 0 || strcmp(opt.method, "HEAD") == 0;
    if (!body_set && !bodyless)
        opt.body = "{\"user_id\":\"%s\"}";
    opt.mode = opt.burst ? MODE_BURST : opt.rate > 0 ? MODE_RATE : MODE_CLOSED;
    if (opt.mode == MODE_BURST)
        opt.connections = opt.burst;
    else if (!opt.connections)
        opt.connections = opt.mode == MODE_RATE ? 1000 : 64;
    if (opt.source_ips > 1 && (ntohl(opt.tgt.addr.sin_addr.s_addr) >> 24) != 127)
        die("--source-ips needs a 127.x.x.x target");
    if (opt.source_ips == 1 && opt.connections > 12000)
        fprintf(stderr, "loadgen: hint: over ~14k connections from one source IP make connect() "
                "slow (kernel port search); consider --source-ips %d\n", opt.connections / 8000 + 1);
    if (stock) {
        opt.has_stock = true;
        opt.stock_tgt = opt.tgt;
        opt.stock_path = stock;
        if (stock[0] != '/' && (!url_parse(stock, &opt.stock_tgt, &opt.stock_path) || !opt.stock_path))
            die("bad --stock-url '%s'", stock);
    }
}

/* --------------------------------------------------------------- histogram */

/* Log-linear (HDR-style) buckets in microseconds: exact below 256 us, then
 * 128 linear sub-buckets per power of two, i.e. < 0.8% error up to ~268 s. */
#define HIST_SUB     128
#define HIST_BUCKETS (HIST_SUB * 22)

static struct {
    u64 count[HIST_BUCKETS];
    u64 n, max_us;
    double sum_us;
} hist;

static int hist_index(u64 us)
{
    if (us < 2 * HIST_SUB)
        return (int)us;
    int shift = 63 - __builtin_clzll(us) - 7;
    int idx = (shift + 1) * HIST_SUB + (int)((us >> shift) - HIST_SUB);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static u64 hist_bucket_mid(int idx)
{
    if (idx < 2 * HIST_SUB)
        return (u64)idx;
    int shift = idx / HIST_SUB - 1;
    u64 sub = (u64)(idx % HIST_SUB + HIST_SUB);
    return (sub << shift) + ((1ULL << shift) >> 1);
}

static void hist_add(u64 us)
{
    hist.count[hist_index(us)]++;
    hist.n++;
    hist.sum_us += (double)us;
    if (us > hist.max_us)
        hist.max_us = us;
}

static double hist_percentile_ms(double p)
{
    if (hist.n == 0)
        return 0;
    u64 target = (u64)ceil(p * (double)hist.n), seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += hist.count[i];
        if (seen >= target) {
            u64 v = hist_bucket_mid(i);
            return (double)(v < hist.max_us ? v : hist.max_us) / 1e3;
        }
    }
    return (double)hist.max_us / 1e3;
}

/* ------------------------------------------------------------------- stats */

static struct {
    u64 sent, completed, timeouts, timeouts_unsent;
    u64 err_connect, err_io, err_closed, err_parse;
    u64 connected_ever;
    int connect_errno;                  /* last connect failure, for the report */
    u64 status[1000];
    int64_t first_201, last_201, last_done;       /* absolute ns, 0 = none */
} st;

static u64 stats_errors(void)
{
    return st.err_connect + st.err_io + st.err_closed + st.err_parse;
}

static void stats_record(int status, int64_t latency_ns, int64_t now)
{
    st.completed++;
    st.status[status]++;
    hist_add(latency_ns > 0 ? (u64)latency_ns / 1000 : 0);
    if (status == 201) {
        if (!st.first_201)
            st.first_201 = now;
        st.last_201 = now;
    }
    st.last_done = now;
}

/* --------------------------------------------------------- response parser */

/* Streaming parser: bytes are consumed as they arrive, only the current
 * header line is buffered, so 20k connections cost a few MB. */
enum pstate { P_STATUS, P_HEADER, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA,
              P_CHUNK_END, P_TRAILER, P_UNTIL_CLOSE };
enum presult { PR_MORE, PR_DONE, PR_ERROR };

struct resp {
    uint8_t state;
    bool keep_alive, chunked, has_len;
    int status;
    u64 remaining;                      /* body or chunk bytes still due */
    size_t line_len;
    char line[RESP_LINE_CAP];
};

static bool req_is_head;                /* HEAD responses carry no body */

static void resp_reset(struct resp *r)
{
    r->state = P_STATUS;
    r->keep_alive = r->chunked = r->has_len = false;
    r->status = 0;
    r->remaining = 0;
    r->line_len = 0;
}

/* Case-insensitive "Name:" match; returns the value or NULL. */
static const char *resp_hdr_value(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

static void resp_header(struct resp *r, const char *s)
{
    const char *v;
    if ((v = resp_hdr_value(s, "content-length"))) {
        r->has_len = true;
        r->remaining = strtoull(v, NULL, 10);
    } else if ((v = resp_hdr_value(s, "transfer-encoding"))) {
        r->chunked = strcasestr(v, "chunked") != NULL;
    } else if ((v = resp_hdr_value(s, "connection"))) {
        if (strcasestr(v, "close"))
            r->keep_alive = false;
        else if (strcasestr(v, "keep-alive"))
            r->keep_alive = true;
    }
}

static enum presult resp_headers_done(struct resp *r)
{
    if (r->status < 200) {              /* 1xx interim: real answer follows */
        resp_reset(r);
        return PR_MORE;
    }
    if (req_is_head || r->status == 204 || r->status == 304)
        return PR_DONE;
    if (r->chunked) {
        r->state = P_CHUNK_SIZE;
        return PR_MORE;
    }
    if (r->has_len) {
        r->state = P_BODY;
        return r->remaining ? PR_MORE : PR_DONE;
    }
    r->keep_alive = false;              /* no length: body ends at EOF */
    r->state = P_UNTIL_CLOSE;
    return PR_MORE;
}

static enum presult resp_line(struct resp *r)
{
    char *s = r->line;
    size_t n = r->line_len;
    if (n && s[n - 1] == '\r')
        n--;
    s[n] = '\0';
    switch (r->state) {
    case P_STATUS:
        if (n == 0)
            return PR_MORE;             /* tolerate a stray CRLF */
        if (n < 12 || strncmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[9])
            || !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11]))
            return PR_ERROR;
        r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        if (r->status < 100)
            return PR_ERROR;
        r->keep_alive = s[7] == '1';    /* HTTP/1.0 closes unless told */
        r->state = P_HEADER;
        return PR_MORE;
    case P_HEADER:
        if (n == 0)
            return resp_headers_done(r);
        resp_header(r, s);
        return PR_MORE;
    case P_CHUNK_SIZE: {
        char *end;
        u64 size = strtoull(s, &end, 16);
        if (end == s)
            return PR_ERROR;
        r->remaining = size;
        r->state = size ? P_CHUNK_DATA : P_TRAILER;
        return PR_MORE;
    }
    case P_CHUNK_END:
        r->state = P_CHUNK_SIZE;
        return n == 0 ? PR_MORE : PR_ERROR;
    case P_TRAILER:
        return n == 0 ? PR_DONE : PR_MORE;
    default:
        return PR_ERROR;
    }
}

/* Feeds received bytes; bytes after a complete response are ignored
 * (we never pipeline, so there should be none). */
static enum presult resp_feed(struct resp *r, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (r->state == P_UNTIL_CLOSE)
            return PR_MORE;
        if (r->state == P_BODY || r->state == P_CHUNK_DATA) {
            size_t take = n - i;
            if (take > r->remaining)
                take = (size_t)r->remaining;
            i += take;
            r->remaining -= take;
            if (r->remaining == 0) {
                if (r->state == P_BODY)
                    return PR_DONE;
                r->state = P_CHUNK_END;
            }
            continue;
        }
        const char *nl = memchr(p + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (p + i)) : n - i;
        size_t room = RESP_LINE_CAP - 1 - r->line_len;
        memcpy(r->line + r->line_len, p + i, seg < room ? seg : room);
        r->line_len += seg < room ? seg : room;
        i += seg;
        if (!nl)
            break;
        i++;
        enum presult res = resp_line(r);
        r->line_len = 0;
        if (res != PR_MORE)
            return res;
    }
    return PR_MORE;
}

/* ----------------------------------------------------------------- request */

/* The request is fixed except the user id inside the body, so it is
 * assembled from pre-built pieces with memcpy. */
static struct {
    char *head;                         /* request line + fixed headers */
    size_t head_len;
    const char *pre, *post;             /* body around the "%s" */
    size_t pre_len, post_len;
    bool has_id;
    char *buf;
} req;

static void req_init(void)
{
    size_t cap = 512 + strlen(opt.path) + strlen(opt.method);
    for (int i = 0; i < opt.nheaders; i++)
        cap += strlen(opt.headers[i]) + 2;
    req.head = malloc(cap);
    int n = snprintf(req.head, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: loadgen\r\n"
                     "Connection: keep-alive\r\n", opt.method, opt.path, opt.tgt.hostport);
    bool has_ctype = false;
    for (int i = 0; i < opt.nheaders; i++) {
        n += snprintf(req.head + n, cap - (size_t)n, "%s\r\n", opt.headers[i]);
        has_ctype |= strncasecmp(opt.headers[i], "content-type:", 13) == 0;
    }
    if (opt.body && !has_ctype)
        n += snprintf(req.head + n, cap - (size_t)n, "Content-Type: application/json\r\n");
    req.head_len = (size_t)n;
    if (opt.body) {
        const char *mark = strstr(opt.body, "%s");
        req.has_id = mark != NULL;
        req.pre = opt.body;
        req.pre_len = mark ? (size_t)(mark - opt.body) : strlen(opt.body);
        req.post = mark ? mark + 2 : "";
        req.post_len = strlen(req.post);
    }
    req.buf = malloc(req.head_len + req.pre_len + req.post_len + 256);
    req_is_head = strcmp(opt.method, "HEAD") == 0;
    if (!req.head || !req.buf)
        die("out of memory");
}

/* Builds request number seq into req.buf and returns its length. */
static size_t req_build(u64 seq)
{
    char id[80];
    int idlen = 0;
    if (req.has_id)
        idlen = snprintf(id, sizeof id, "%s-%llu", opt.prefix, opt.users ? seq % opt.users : seq);
    char *p = req.buf;
    memcpy(p, req.head, req.head_len);
    p += req.head_len;
    if (!opt.body) {
        memcpy(p, "\r\n", 2);
        return (size_t)(p + 2 - req.buf);
    }
    p += sprintf(p, "Content-Length: %zu\r\n\r\n", req.pre_len + (size_t)idlen + req.post_len);
    memcpy(p, req.pre, req.pre_len);
    p += req.pre_len;
    memcpy(p, id, (size_t)idlen);
    p += idlen;
    memcpy(p, req.post, req.post_len);
    return (size_t)(p + req.post_len - req.buf);
}

/* ------------------------------------------------------------- connections */

enum cstate { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
    int fd;
    uint8_t state;
    bool in_idle;                       /* listed in idle stack (maybe stale) */
    bool write_failed;
    int64_t t_start;                    /* latency origin of in-flight request */
    int64_t deadline;                   /* connect or response deadline */
    char *out;                          /* unsent tail after a partial write */
    size_t out_len, out_off;
    struct resp resp;
};

static struct conn *conns;
static int nconns;
static int *idle_stack, idle_top;       /* LIFO: keeps few connections hot */
static int *free_stack, free_top;       /* closed slots */
static int n_open, n_connecting, n_busy, peak_open;
static int64_t reconnect_after;         /* backoff after a connect error */
static bool connect_failing;            /* last connect failed: probe singly */
static int g_epfd, g_timerfd;

/* Run state shared by the modes. */
static struct {
    int64_t start, t0, end, finish;     /* t0: origin of reported times */
    u64 total, due, dispatched;         /* rate mode schedule */
    u64 seq;                            /* next request number */
    int64_t next_check, next_progress, last_progress;
    u64 last_completed;
} run;
static volatile sig_atomic_t interrupted;

static void sched_conn_ready(struct conn *c, int64_t now);

static void conn_init(void)
{
    nconns = opt.connections;
    conns = calloc((size_t)nconns, sizeof *conns);
    idle_stack = calloc((size_t)nconns, sizeof *idle_stack);
    free_stack = calloc((size_t)nconns, sizeof *free_stack);
    if (!conns || !idle_stack || !free_stack)
        die("out of memory for %d connections", nconns);
    for (int i = nconns - 1; i >= 0; i--) {
        conns[i].fd = -1;
        free_stack[free_top++] = i;
    }
}

static void idle_push(struct conn *c)
{
    if (!c->in_idle) {
        c->in_idle = true;
        idle_stack[idle_top++] = (int)(c - conns);
    }
}

/* Entries go stale when a connection closes; they are skipped lazily. */
static struct conn *idle_pop(void)
{
    while (idle_top > 0) {
        struct conn *c = &conns[idle_stack[--idle_top]];
        c->in_idle = false;
        if (c->state == C_IDLE)
            return c;
    }
    return NULL;
}

static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_CONNECTING)
        n_connecting--;
    if (c->state == C_BUSY)
        n_busy--;
    n_open--;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->out);
    c->out = NULL;
    c->state = C_CLOSED;
    free_stack[free_top++] = (int)(c - conns);
}

static void conn_connect_failed(struct conn *c, int64_t now, int err)
{
    st.err_connect++;
    st.connect_errno = err;
    reconnect_after = now + RECONNECT_BACKOFF;
    connect_failing = true;
    conn_close(c);
}

static void conn_on_connected(struct conn *c, int64_t now)
{
    n_connecting--;
    c->state = C_IDLE;
    st.connected_ever++;
    connect_failing = false;
    if (n_open - n_connecting > peak_open)
        peak_open = n_open - n_connecting;
    sched_conn_ready(c, now);
}

/* While connects fail (server down), reconnect with one probe at a time so
 * the error count stays meaningful and no CPU is burnt on retries. */
static bool conn_open_allowed(int64_t now)
{
    return free_top > 0 && now >= reconnect_after && !(connect_failing && n_connecting > 0);
}

/* A non-blocking TCP socket, bound to its source IP if spreading; -1 and
 * errno set on failure. */
static int conn_socket(int idx)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.source_ips > 1) {
        /* Each source IP has its own ephemeral ports; the port is picked at
         * connect() time (NO_PORT), so the kernel's port search stays short. */
        struct sockaddr_in src = { .sin_family = AF_INET,
            .sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(idx % opt.source_ips)) };
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&src, sizeof src) < 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
    }
    return fd;
}

/* Opens a connection in a free slot; it becomes ready asynchronously. */
static bool conn_open_next(int64_t now)
{
    if (free_top == 0)
        return false;
    int idx = free_stack[--free_top];
    struct conn *c = &conns[idx];
    c->fd = conn_socket(idx);
    c->state = C_CONNECTING;
    c->deadline = now + opt.timeout_ns;
    n_open++;
    n_connecting++;
    int rc = c->fd < 0 ? -1 : connect(c->fd, (const struct sockaddr *)&opt.tgt.addr, sizeof opt.tgt.addr);
    if (rc < 0 && (c->fd < 0 || errno != EINPROGRESS)) {
        conn_connect_failed(c, now, errno);
        return false;
    }
    /* Edge-triggered, registered once: no epoll_ctl per request. */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                              .data.u32 = (uint32_t)idx };
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_connect_failed(c, now, errno);
        return false;
    }
    if (rc == 0)
        conn_on_connected(c, now);
    return true;
}

static void conn_read(struct conn *c, uint32_t events);

/* The server may have answered (413, 503) and closed before reading all of
 * the request: keep reading so that answer is still counted. */
static void conn_write_failed(struct conn *c)
{
    free(c->out);
    c->out = NULL;
    c->write_failed = true;
    conn_read(c, EPOLLRDHUP);
}

static void conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;                     /* EPOLLOUT will call us again */
        } else {
            conn_write_failed(c);
            return;
        }
    }
    free(c->out);
    c->out = NULL;
}

/* Sends request seq on an idle connection; latency is measured from t_start. */
static void conn_send(struct conn *c, u64 seq, int64_t t_start)
{
    size_t len = req_build(seq);
    c->state = C_BUSY;
    n_busy++;
    c->t_start = t_start;
    c->deadline = t_start + opt.timeout_ns;
    c->write_failed = false;
    resp_reset(&c->resp);
    st.sent++;
    ssize_t n = send(c->fd, req.buf, len, MSG_NOSIGNAL);
    if (n == (ssize_t)len)
        return;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_write_failed(c);
        return;
    }
    if (n < 0)
        n = 0;
    c->out_len = len - (size_t)n;
    c->out_off = 0;
    c->out = malloc(c->out_len);
    if (!c->out)
        die("out of memory");
    memcpy(c->out, req.buf + n, c->out_len);
}

static void conn_on_response(struct conn *c)
{
    int64_t now = now_ns();
    stats_record(c->resp.status, now - c->t_start, now);
    n_busy--;
    c->state = C_IDLE;
    /* An unsent request tail would be read as the next request: close. */
    if (!c->resp.keep_alive || c->out || c->write_failed) {
        conn_close(c);
        return;
    }
    sched_conn_ready(c, now);
}

static void conn_on_eof(struct conn *c, bool reset)
{
    if (c->state == C_BUSY && c->resp.state == P_UNTIL_CLOSE) {
        conn_on_response(c);            /* body delimited by close: done */
        return;
    }
    if (c->state == C_BUSY) {
        if (reset)
            st.err_io++;
        else
            st.err_closed++;
    }
    conn_close(c);                      /* idle keep-alive close is normal */
}

/* Returns false when the connection got closed. */
static bool conn_consume(struct conn *c, const char *p, size_t n)
{
    if (c->state != C_BUSY)
        return true;                    /* stray bytes while idle: ignore */
    enum presult r = resp_feed(&c->resp, p, n);
    if (r == PR_ERROR) {
        st.err_parse++;
        conn_close(c);
        return false;
    }
    if (r == PR_DONE)
        conn_on_response(c);
    return c->state != C_CLOSED;
}

static void conn_read(struct conn *c, uint32_t events)
{
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (!conn_consume(c, buf, (size_t)n))
                return;
            /* A short read drained the socket; with edge triggering the next
             * arrival re-arms us, unless a hangup is already pending. */
            if ((size_t)n < sizeof buf && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_on_eof(c, n < 0);
        return;
    }
}

static void conn_on_event(struct conn *c, uint32_t events)
{
    if (c->state == C_CLOSED)
        return;                         /* closed earlier in this batch */
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP)))
            conn_connect_failed(c, now_ns(), err ? err : ECONNREFUSED);
        else if (events & EPOLLOUT)
            conn_on_connected(c, now_ns());
        return;
    }
    if ((events & EPOLLOUT) && c->state == C_BUSY && c->out)
        conn_flush(c);
    if (c->state != C_CLOSED && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        conn_read(c, events);
}

/* Busy requests past their deadline are timeouts; their connection is
 * unusable (a late answer would be taken for the next one) and is closed. */
static void conn_check_timeouts(int64_t now)
{
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->deadline > now)
            continue;
        if (c->state == C_BUSY) {
            st.timeouts++;
            conn_close(c);
        } else if (c->state == C_CONNECTING) {
            conn_connect_failed(c, now, ETIMEDOUT);
        }
    }
}

/* -------------------------------------------------------------- event loop */

static void loop_init(void)
{
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    g_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TIMER_TAG };
    if (g_epfd < 0 || g_timerfd < 0 || epoll_ctl(g_epfd, EPOLL_CTL_ADD, g_timerfd, &ev) < 0)
        die("epoll/timerfd setup failed: %s", strerror(errno));
    /* Default 50 us timer slack would blur the arrival schedule. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

/* Waits for socket events or until the absolute time `until`. epoll_wait
 * only has millisecond resolution, hence the timerfd. */
static void loop_wait(int64_t until)
{
    static int64_t armed = -1;
    struct epoll_event evs[EVENTS_MAX];
    int timeout_ms = 0;
    if (until > now_ns()) {
        if (until != armed) {
            struct itimerspec its = { .it_value = { .tv_sec = until / NS_PER_S,
                                                    .tv_nsec = until % NS_PER_S } };
            timerfd_settime(g_timerfd, TFD_TIMER_ABSTIME, &its, NULL);
            armed = until;
        }
        timeout_ms = 1000;              /* safety net only */
    }
    int n = epoll_wait(g_epfd, evs, EVENTS_MAX, timeout_ms);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == TIMER_TAG) {
            uint64_t expirations;
            ssize_t r = read(g_timerfd, &expirations, sizeof expirations);
            (void)r;
            continue;
        }
        conn_on_event(&conns[evs[i].data.u32], evs[i].events);
    }
}

/* ------------------------------------------------------------ stock poller */

static _Atomic long long stock_left = -1;
static _Atomic long long stock_zero_at;  /* now_ns() when 0 was first seen */
static atomic_bool stock_stop;
static pthread_t stock_thread;

/* Finds "stock_left": N in a raw HTTP response; -1 if absent/incomplete. */
static long long stock_parse(const char *resp)
{
    const char *body = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) != 0 || !body || atoi(resp + 9) != 200)
        return -1;
    const char *p = strstr(body, "\"stock_left\"");
    if (!p)
        return -1;
    for (p += 12; *p == ' ' || *p == '\t'; p++) {}
    if (*p++ != ':')
        return -1;
    for (; *p == ' ' || *p == '\t'; p++) {}
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || *end == '\0')       /* number may continue: read more */
        return -1;
    return v;
}

/* One blocking GET on a fresh connection (HTTP/1.0: never chunked). */
static long long stock_fetch(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char buf[8192];
    int len = snprintf(buf, sizeof buf, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n",
                       opt.stock_path, opt.stock_tgt.hostport);
    long long v = -1;
    size_t got = 0;
    if (len > 0 && len < (int)sizeof buf
        && connect(fd, (const struct sockaddr *)&opt.stock_tgt.addr, sizeof opt.stock_tgt.addr) == 0
        && send(fd, buf, (size_t)len, MSG_NOSIGNAL) == len) {
        ssize_t n;
        while (v < 0 && got < sizeof buf - 1 && (n = recv(fd, buf + got, sizeof buf - 1 - got, 0)) > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            v = stock_parse(buf);
        }
    }
    close(fd);
    return v;
}

static void *stock_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stock_stop)) {
        long long v = stock_fetch();
        if (v >= 0) {
            long long none = 0;
            atomic_store(&stock_left, v);
            if (v == 0)
                atomic_compare_exchange_strong(&stock_zero_at, &none, (long long)now_ns());
        }
        struct timespec ts = { .tv_nsec = 50 * NS_PER_MS };
        for (int i = 0; i < 5 && !atomic_load(&stock_stop); i++)
            nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---------------------------------------------------------------- progress */

static void progress_print(int64_t now)
{
    u64 s2xx = 0;
    for (int i = 200; i < 300; i++)
        s2xx += st.status[i];
    u64 other = st.completed - s2xx - st.status[409] - st.status[503];
    double dt = (double)(now - run.last_progress) / 1e9;
    double rps = dt > 0 ? (double)(st.completed - run.last_completed) / dt : 0;
    char stock[48] = "";
    if (opt.has_stock)
        snprintf(stock, sizeof stock, " | stock_left %lld", atomic_load(&stock_left));
    bool tty = isatty(STDERR_FILENO);
    fprintf(stderr, "%s[%6.1fs] sent %llu done %llu %.0f/s | 2xx %llu 409 %llu 503 %llu other %llu"
            " | err %llu tmo %llu | conns %d (+%d connecting) backlog %llu%s%s",
            tty ? "\r" : "", (double)(now - run.start) / 1e9, st.sent, st.completed, rps,
            s2xx, st.status[409], st.status[503], other, stats_errors(), st.timeouts,
            n_open - n_connecting, n_connecting, run.due - run.dispatched, stock,
            tty ? "\033[K" : "\n");
    run.last_progress = now;
    run.last_completed = st.completed;
}

/* Timeout scan and progress line; returns when it next wants to run. */
static int64_t housekeeping(int64_t now)
{
    if (now >= run.next_check) {
        conn_check_timeouts(now);
        run.next_check = now + CHECK_EVERY_NS;
    }
    if (now >= run.next_progress) {
        progress_print(now);
        while (run.next_progress <= now)
            run.next_progress += NS_PER_S;
    }
    return run.next_check < run.next_progress ? run.next_check : run.next_progress;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ------------------------------------------------------- rate (open loop) */

static int64_t sched_due_time(u64 i)
{
    return run.t0 + (int64_t)((double)i * 1e9 / opt.rate);
}

/* A request still queued past its timeout would time out on the wire too;
 * drop it like a user who gave up, so an overload cannot grow forever. */
static void sched_drop_expired(int64_t now)
{
    while (run.dispatched < run.due && sched_due_time(run.dispatched) + opt.timeout_ns <= now) {
        run.dispatched++;
        st.timeouts++;
        st.timeouts_unsent++;
    }
}

/* A connection became free (just connected or got its answer). */
static void sched_conn_ready(struct conn *c, int64_t now)
{
    if (opt.mode == MODE_RATE) {
        sched_drop_expired(now);
        if (run.dispatched < run.due) {
            u64 i = run.dispatched++;
            conn_send(c, i, sched_due_time(i));
        } else {
            idle_push(c);
        }
    } else if (opt.mode == MODE_CLOSED && now < run.end && !interrupted) {
        conn_send(c, run.seq++, now);
    }                                   /* burst: fired by run_burst() */
}

static void sched_tick(int64_t now)
{
    while (run.due < run.total && sched_due_time(run.due) <= now)
        run.due++;
    sched_drop_expired(now);
    struct conn *c;
    while (run.dispatched < run.due && (c = idle_pop()) != NULL) {
        u64 i = run.dispatched++;
        conn_send(c, i, sched_due_time(i));
    }
    /* Open more only if the backlog exceeds connections already on the way. */
    while (run.due - run.dispatched > (u64)n_connecting && conn_open_allowed(now))
        if (!conn_open_next(now))
            break;
}

static void run_rate(void)
{
    run.total = (u64)llround(opt.rate * opt.duration_s);
    run.t0 = now_ns();
    while (!interrupted) {
        int64_t now = now_ns();
        sched_tick(now);
        int64_t wake = housekeeping(now);
        if (run.dispatched >= run.total && n_busy == 0)
            break;
        if (run.due < run.total)
            wake = min64(wake, sched_due_time(run.due));
        if (run.due > run.dispatched && reconnect_after > now)
            wake = min64(wake, reconnect_after);   /* backoff ends: reopen */
        loop_wait(wake);
    }
}

/* ----------------------------------------------------- closed loop (wrk) */

static void run_closed(void)
{
    run.t0 = now_ns();
    run.end = run.t0 + (int64_t)(opt.duration_s * NS_PER_S);
    while (!interrupted) {
        int64_t now = now_ns();
        if (now < run.end)
            while (conn_open_allowed(now) && conn_open_next(now)) {}
        int64_t wake = housekeeping(now);
        if (now >= run.end && n_busy == 0)
            break;
        if (now < run.end)
            wake = min64(wake, run.end);
        if (now < run.end && reconnect_after > now)
            wake = min64(wake, reconnect_after);
        loop_wait(wake);
    }
}

/* ------------------------------------------------------------------ burst */

/* Connects every closed slot (once per round: a failed slot goes back on
 * the free stack) and waits until none is still connecting. */
static int burst_connect(int round)
{
    int64_t t = now_ns();
    for (int attempts = free_top; attempts > 0; attempts--)
        conn_open_next(t);
    while (n_connecting > 0 && !interrupted)
        loop_wait(housekeeping(now_ns()));
    int ok = n_open - n_connecting;
    fprintf(stderr, "round %d: %d/%d connections up in %.1f ms\n", round + 1, ok, nconns,
            (double)(now_ns() - t) / 1e6);
    return ok;
}

static void run_burst(void)
{
    for (int r = 0; r < opt.rounds && !interrupted; r++) {
        if (burst_connect(r) == 0)
            break;
        /* Requests are sent back to back with no event handling between
         * them, and all are measured from this one instant. */
        int64_t t0 = now_ns();
        if (r == 0)
            run.t0 = t0;
        for (int i = 0; i < nconns; i++)
            if (conns[i].state == C_IDLE)
                conn_send(&conns[i], run.seq++, t0);
        fprintf(stderr, "round %d: all requests written in %.1f ms\n", r + 1,
                (double)(now_ns() - t0) / 1e6);
        while (n_busy > 0 && !interrupted)
            loop_wait(housekeeping(now_ns()));
    }
}

/* ----------------------------------------------------------------- report */

static double report_elapsed_s(void)
{
    int64_t end = st.last_done > run.t0 ? st.last_done : run.t0;
    if (opt.mode != MODE_BURST && !interrupted) {
        int64_t nominal = run.t0 + (int64_t)(opt.duration_s * NS_PER_S);
        end = end > nominal ? end : nominal;
    }
    end = min64(end, run.finish);
    return (double)(end - run.t0) / 1e9;
}

/* Writes a time relative to t0 in ms (or s), or "null"/"-" when unknown. */
static void report_time(FILE *f, int64_t t, double unit_ns, const char *none)
{
    if (t)
        fprintf(f, "%.3f", (double)(t > run.t0 ? t - run.t0 : 0) / unit_ns);
    else
        fputs(none, f);
}

static void report_human(double elapsed)
{
    FILE *f = stderr;
    fprintf(f, "\n== loadgen %s mode: ", mode_names[opt.mode]);
    if (opt.mode == MODE_RATE)
        fprintf(f, "%.0f req/s for %.1f s, max %d connections", opt.rate, opt.duration_s, nconns);
    else if (opt.mode == MODE_CLOSED)
        fprintf(f, "%d connections for %.1f s", nconns, opt.duration_s);
    else
        fprintf(f, "%d connections x %d round(s)", nconns, opt.rounds);
    fprintf(f, " (peak %d open)%s\n", peak_open, interrupted ? " INTERRUPTED" : "");
    fprintf(f, "sent        %llu\ncompleted   %llu  (%.1f req/s over %.3f s)\nstatus     ",
            st.sent, st.completed, elapsed > 0 ? (double)st.completed / elapsed : 0, elapsed);
    for (int i = 100; i < 1000; i++)
        if (st.status[i])
            fprintf(f, " %d: %llu", i, st.status[i]);
    fprintf(f, "\nerrors      %llu (connect %llu, reset %llu, closed %llu, parse %llu)",
            stats_errors(), st.err_connect, st.err_io, st.err_closed, st.err_parse);
    if (st.err_connect)
        fprintf(f, " last connect error: %s", strerror(st.connect_errno));
    fputc('\n', f);
    fprintf(f, "timeouts    %llu (%llu never sent: queued past --timeout)\n",
            st.timeouts, st.timeouts_unsent);
    fprintf(f, "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f%s\n",
            hist_percentile_ms(0.5), hist_percentile_ms(0.9), hist_percentile_ms(0.99),
            hist_percentile_ms(0.999), (double)hist.max_us / 1e3,
            hist.n ? hist.sum_us / (double)hist.n / 1e3 : 0.0,
            opt.mode == MODE_RATE ? "  (from intended send time)" : "");
    fputs("201         first ", f);
    report_time(f, st.first_201, 1e6, "-");
    fputs(" ms, last ", f);
    report_time(f, st.last_201, 1e6, "-");
    fputs(" ms", f);
    if (opt.has_stock) {
        fputs(", stock_left seen 0 at ", f);
        report_time(f, atomic_load(&stock_zero_at), 1e9, "-");
        fprintf(f, " s (last stock_left %lld)", atomic_load(&stock_left));
    }
    fputc('\n', f);
}

static void report_json(double elapsed)
{
    FILE *f = stdout;
    fprintf(f, "{\"mode\":\"%s\",\"connections\":%d,\"peak_connections\":%d,\"rate\":%g,"
            "\"duration_s\":%.3f,\"sent\":%llu,\"completed\":%llu,\"rps\":%.1f,\"status\":{",
            mode_names[opt.mode], nconns, peak_open, opt.mode == MODE_RATE ? opt.rate : 0.0,
            elapsed, st.sent, st.completed, elapsed > 0 ? (double)st.completed / elapsed : 0);
    const char *sep = "";
    for (int i = 100; i < 1000; i++)
        if (st.status[i]) {
            fprintf(f, "%s\"%d\":%llu", sep, i, st.status[i]);
            sep = ",";
        }
    fprintf(f, "},\"errors\":%llu,\"errors_detail\":{\"connect\":%llu,\"reset\":%llu,"
            "\"closed\":%llu,\"parse\":%llu},\"timeouts\":%llu,\"timeouts_unsent\":%llu,",
            stats_errors(), st.err_connect, st.err_io, st.err_closed, st.err_parse,
            st.timeouts, st.timeouts_unsent);
    fprintf(f, "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
            "\"max\":%.3f,\"mean\":%.3f},\"first_201_ms\":",
            hist_percentile_ms(0.5), hist_percentile_ms(0.9), hist_percentile_ms(0.99),
            hist_percentile_ms(0.999), (double)hist.max_us / 1e3,
            hist.n ? hist.sum_us / (double)hist.n / 1e3 : 0.0);
    report_time(f, st.first_201, 1e6, "null");
    fputs(",\"last_201_ms\":", f);
    report_time(f, st.last_201, 1e6, "null");
    fputs(",\"sold_out_after_s\":", f);
    report_time(f, opt.has_stock ? atomic_load(&stock_zero_at) : 0, 1e9, "null");
    fprintf(f, ",\"interrupted\":%s}\n", interrupted ? "true" : "false");
}

/* ------------------------------------------------------------------- main */

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Thousands of sockets need more than the usual 1024 descriptors. */
static void fd_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    long avail = (long)rl.rlim_cur - FD_RESERVE;
    if (opt.connections > avail) {
        fprintf(stderr, "loadgen: fd limit %ld: using %ld connections instead of %d\n",
                (long)rl.rlim_cur, avail, opt.connections);
        opt.connections = (int)avail;
    }
    if (opt.connections < 1)
        die("file descriptor limit too low");
}

int main(int argc, char **argv)
{
    opts_parse(argc, argv);
    struct sigaction sa = { .sa_handler = on_sigint };  /* no SA_RESTART */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fd_limit_raise();
    conn_init();
    req_init();
    loop_init();

    run.start = run.last_progress = now_ns();
    run.next_progress = run.start + NS_PER_S;
    if (opt.has_stock && pthread_create(&stock_thread, NULL, stock_main, NULL) != 0)
        opt.has_stock = false;
    if (opt.mode == MODE_RATE)
        run_rate();
    else if (opt.mode == MODE_CLOSED)
        run_closed();
    else
        run_burst();
    run.finish = now_ns();
    if (opt.has_stock) {
        atomic_store(&stock_stop, true);
        pthread_join(stock_thread, NULL);
    }
    if (isatty(STDERR_FILENO))
        fputc('\n', stderr);
    if (!st.connected_ever)
        fprintf(stderr, "loadgen: could not connect to %s\n", opt.tgt.hostport);
    double elapsed = report_elapsed_s();
    report_human(elapsed);
    if (opt.json)
        report_json(elapsed);
    return st.connected_ever ? 0 : 2;
}

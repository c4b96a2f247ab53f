/* http — see http.h. */
#include "http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "framing.h"
#include "gate.h"
#include "log.h"
#include "outcome.h"

#define HTTP_SMALL_BODY 512
#define HTTP_SMALL_ANSWER 512
#define HTTP_TICK_MS 100 /* longest sleep of an I/O loop: how fast it sees quiesce/stop */
/* libmicrohttpd's per-connection memory pool holds the request line, headers and
 * read buffer, and is zeroed whole after each request, so its size is resident for
 * every connection: 32 KiB by default = 320 MiB for 10,000 connections.  8 KiB holds
 * any sane request (nginx's default header limit is 8 KiB too); larger headers
 * are answered 431 by libmicrohttpd. */
#define HTTP_CONN_MEMORY 8192
/* New connections held for their first bytes (gate.h): at most this many per I/O
 * thread, each at most this long; then libmicrohttpd gets them as they are. */
#define HTTP_GATE_SLOTS 1024
#define HTTP_GATE_GRACE_MS 500

struct http_io {
    struct http_server *server;
    struct MHD_Daemon *daemon;
    int listen_fd; /* ours: the gate accepts from it, libmicrohttpd never sees it */
    int wait_fd;   /* our epoll set: the daemon's epoll descriptor, wake_fd and the gate's */
    struct gate *gate;
    unsigned limit; /* connections this thread's daemon takes */
    int wake_fd;   /* eventfd: the done list went from empty to not (see http_complete) */
    /* Deferred requests completed by other threads, newest first: the I/O thread
     * takes the whole list, fills and resumes them itself (http_resume_done). */
    _Atomic(struct http_request *) done;
    pthread_t thread;
    bool started, quiesced;
    void *state;
};

struct http_server {
    struct http_hooks hooks;
    int port;
    size_t nio;
    struct http_io *io;
    _Atomic bool quiesce, stop;
    _Atomic size_t deferred;
    /* --model thread-per-connection (http_tpc_*): one daemon, io[0], no loop of ours. */
    bool tpc;
    bool tpc_key_made;
    pthread_key_t tpc_key; /* each connection thread's hooks state */
    unsigned tpc_limit; /* --max-connections: the acceptor waits below it */
    unsigned per_ip;    /* --per-ip-limit, counted across processes too (gate_address_take) */
    _Atomic uint64_t tpc_started, tpc_closed; /* connections libmicrohttpd opened and closed */
};

struct http_request {
    struct http_io *io;
    struct MHD_Connection *conn;
    const char *method, *url; /* libmicrohttpd's, valid for the request */
    uint64_t started_ns;
    int status; /* what was queued; 0 = nothing yet */
    char *body;
    size_t body_len, body_cap;
    bool too_large, deferred;
    bool filling;   /* the I/O thread runs fill(): http_complete() only stores */
    bool completed; /* the answer fields below are written; I/O thread only */
    struct http_request *done_next;
    void (*fill)(struct http_request *r, void *arg);
    void *fill_arg;
    int answer_status;
    char *answer;
    size_t answer_len;
    char answer_hname[32], answer_hvalue[192];
    int label;
    bool started;        /* the handler has seen this request */
    const char *uri_end; /* where the raw request-target's C string ends */
    char small_body[HTTP_SMALL_BODY];
    char small_answer[HTTP_SMALL_ANSWER];
    /* Thread-per-connection only, set by http_defer: the connection's thread
     * sleeps on these until the answer is in (http_wait). */
    pthread_mutex_t tpc_mu;
    pthread_cond_t tpc_cv;
    bool tpc_woken;
};

struct http_canned {
    struct MHD_Response *response;
    int status;
};

/* ---- responses ---------------------------------------------------------------- */

static void http_add_headers(struct MHD_Response *resp, const char *const *headers, bool json)
{
    bool typed = false;
    for (const char *const *h = headers; h && h[0]; h += 2) {
        MHD_add_response_header(resp, h[0], h[1]);
        typed |= strcasecmp(h[0], "Content-Type") == 0;
    }
    if (!typed && json) MHD_add_response_header(resp, "Content-Type", "application/json");
}

/* Every answer, immediate or deferred, ends here or in http_reply_canned, on the
 * request's I/O thread: a request is answered exactly once. */
static void http_queue(struct http_request *r, int status, struct MHD_Response *resp)
{
    assert(!r->status);
    if (!resp) {
        LOG_ERROR("http: out of memory building a response");
        return; /* libmicrohttpd closes the connection */
    }
    if (MHD_queue_response(r->conn, (unsigned)status, resp) == MHD_YES) r->status = status;
}

void http_reply(struct http_request *r, int status, const char *body, size_t len,
                const char *const *headers)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (resp) http_add_headers(resp, headers, true);
    http_queue(r, status, resp);
    if (resp) MHD_destroy_response(resp);
}

void http_reply_fd(struct http_request *r, int status, int fd, uint64_t size,
                   const char *const *headers)
{
    struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
    if (!resp) close(fd);
    else http_add_headers(resp, headers, false);
    http_queue(r, status, resp);
    if (resp) MHD_destroy_response(resp);
}

struct http_canned *http_canned_new(int status, const char *body, size_t len,
                                    const char *const *headers)
{
    struct http_canned *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->status = status;
    c->response = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!c->response) {
        free(c);
        return NULL;
    }
    http_add_headers(c->response, headers, true);
    return c;
}

void http_canned_free(struct http_canned *c)
{
    if (!c) return;
    MHD_destroy_response(c->response);
    free(c);
}

void http_reply_canned(struct http_request *r, const struct http_canned *c)
{
    /* libmicrohttpd reference-counts responses under their own mutex, so one
     * response may be queued on many connections and threads at once. */
    assert(!r->status && !r->deferred);
    if (MHD_queue_response(r->conn, (unsigned)c->status, c->response) == MHD_YES) r->status = c->status;
}

/* ---- deferral --------------------------------------------------------------------- */

static void http_tpc_defer(struct http_request *r);
static void http_tpc_wake(struct http_request *r);

void http_defer(struct http_request *r)
{
    assert(!r->deferred && !r->status); /* deferred once, and only when unanswered */
    r->deferred = true;
    atomic_fetch_add(&r->io->server->deferred, 1);
    if (r->io->server->tpc) return http_tpc_defer(r);
    MHD_suspend_connection(r->conn);
}

/* Any thread: r onto its I/O thread's done list; the push that finds the list
 * empty wakes the loop, so a whole round of completions costs one wake-up. */
static void http_push_done(struct http_request *r)
{
    struct http_io *io = r->io;
    if (io->server->tpc) return http_tpc_wake(r);
    struct http_request *head = atomic_load_explicit(&io->done, memory_order_relaxed);
    do {
        r->done_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&io->done, &head, r, memory_order_release,
                                                    memory_order_relaxed));
    if (!head) {
        uint64_t one = 1;
        ssize_t w = write(io->wake_fd, &one, sizeof one);
        (void)w;
    }
}

/* The deferred answer's one header, cut to its fields' sizes like snprintf would. */
static void http_copy_header(struct http_request *r, const char *name, const char *value)
{
    size_t n = strnlen(name, sizeof r->answer_hname - 1), v = strnlen(value, sizeof r->answer_hvalue - 1);
    memcpy(r->answer_hname, name, n);
    r->answer_hname[n] = 0;
    memcpy(r->answer_hvalue, value, v);
    r->answer_hvalue[v] = 0;
}

void http_complete(struct http_request *r, int status, const char *body, size_t len,
                   const char *header_name, const char *header_value)
{
    assert(r->deferred && !r->answer); /* completed once */
    r->answer = len <= sizeof r->small_answer ? r->small_answer : malloc(len);
    if (!r->answer) { /* out of memory: say so rather than hang the client */
        r->answer = r->small_answer;
        status = 500;
        body = r->small_answer;
        len = outcome_json(OUTCOME_INTERNAL, "out of memory", r->small_answer, sizeof r->small_answer);
        header_name = NULL;
    }
    if (body != r->answer) memcpy(r->answer, body, len);
    r->answer_len = len;
    r->answer_status = status;
    r->answer_hname[0] = 0;
    if (header_name) http_copy_header(r, header_name, header_value);
    if (!r->filling) http_push_done(r);
}

void http_complete_later(struct http_request *r, void (*fill)(struct http_request *r, void *arg),
                         void *arg)
{
    assert(r->deferred && !r->answer && !r->fill); /* completed once */
    r->fill = fill;
    r->fill_arg = arg;
    http_push_done(r);
}

/* On the I/O thread, before MHD_run: every request on the done list gets its
 * answer (fill() runs here) and is resumed.  Resuming here rather than on the
 * completing thread keeps libmicrohttpd's resume lock between this thread and
 * itself: the writer never waits for it. */
static void http_resume_done(struct http_io *io)
{
    struct http_request *r = atomic_exchange_explicit(&io->done, NULL, memory_order_acquire);
    struct http_request *fifo = NULL; /* oldest first: answer in completion order */
    while (r) {
        struct http_request *next = r->done_next;
        r->done_next = fifo;
        fifo = r;
        r = next;
    }
    for (r = fifo; r; r = fifo) {
        fifo = r->done_next;
        if (r->fill) {
            r->filling = true;
            r->fill(r, r->fill_arg);
            if (!r->answer) { /* fill() broke its contract: still answer */
                char body[128];
                LOG_ERROR("http: a deferred request got no answer");
                http_complete(r, 500, body, outcome_json(OUTCOME_INTERNAL, "no answer", body, sizeof body),
                              NULL, NULL);
            }
            r->filling = false;
            r->fill = NULL;
        }
        r->completed = true;
        MHD_resume_connection(r->conn);
    }
}

/* On the I/O thread, after libmicrohttpd resumed the connection. */
static void http_send_completed(struct http_request *r)
{
    const char *headers[] = {r->answer_hname, r->answer_hvalue, NULL};
    if (!r->answer_hname[0]) headers[0] = NULL;
    http_reply(r, r->answer_status, r->answer, r->answer_len, headers);
    if (r->answer != r->small_answer) free(r->answer);
    r->answer = NULL;
    r->deferred = false;
    atomic_fetch_sub(&r->io->server->deferred, 1);
}

/* ---- accessors ------------------------------------------------------------------ */

const char *http_method(const struct http_request *r) { return r->method; }
const char *http_path(const struct http_request *r) { return r->url; }
const char *http_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
int64_t http_content_length(const struct http_request *r)
{
    const char *v = http_header(r, "Content-Length");
    if (!v) return -1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return (errno || end == v || *end || n < 0) ? INT64_MAX : n;
}
const char *http_body(const struct http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}
bool http_body_too_large(const struct http_request *r) { return r->too_large; }
bool http_is_deferred(const struct http_request *r) { return r->deferred; }
size_t http_client_address(const struct http_request *r, char *buf, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr || size < INET6_ADDRSTRLEN) return 0;
    const struct sockaddr *sa = ci->client_addr;
    const void *at = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr
                                               : (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    return inet_ntop(sa->sa_family, at, buf, (socklen_t)size) ? strlen(buf) : 0;
}
static void *http_tpc_state(struct http_server *s);
void *http_thread_state(const struct http_request *r)
{
    return r->io->server->tpc ? http_tpc_state(r->io->server) : r->io->state;
}
void http_set_label(struct http_request *r, int label) { r->label = label; }
int http_label(const struct http_request *r) { return r->label; }

/* ---- libmicrohttpd callbacks ----------------------------------------------------- */

static void http_append(struct http_request *r, const char *data, size_t len)
{
    if (r->too_large || len > HTTP_BODY_MAX - r->body_len) {
        r->too_large = true; /* keep reading and discarding: the answer is 413 */
        return;
    }
    if (r->body_len + len > r->body_cap) {
        char *grown = malloc(HTTP_BODY_MAX);
        if (!grown) {
            r->too_large = true;
            return;
        }
        memcpy(grown, r->body, r->body_len);
        if (r->body != r->small_body) free(r->body);
        r->body = grown;
        r->body_cap = HTTP_BODY_MAX;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
}

static enum MHD_Result http_framing_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                         size_t key_size, const char *value, size_t value_size)
{
    return framing_field(cls, key, key_size, value, value_size) ? MHD_YES : MHD_NO;
}

/* Refuses ambiguous framing before libmicrohttpd reads a body byte (see framing.h).
 * libmicrohttpd left the header block in place from the request line's method to
 * REQUEST_HEADER_SIZE bytes on; the scan checks each field against it. */
static enum framing_fault http_framing(struct http_request *r, const char *method, const char *version)
{
    const union MHD_ConnectionInfo *hs =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    struct framing_scan fs;
    framing_begin(&fs, version, hs ? method + hs->header_size : NULL);
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, http_framing_field, &fs);
    return framing_end(&fs);
}

/* Refuses r before the handler sees it (framing, a NUL in the request line) and
 * closes the connection: what follows on it cannot be trusted to be a request. */
static void http_refuse_closing(struct http_request *r, enum outcome o, const char *msg)
{
    char body[256];
    size_t len = outcome_json(o, msg, body, sizeof body);
    const char *close[] = {"Connection", "close", NULL};
    http_reply(r, outcome_status(o), body, len, close);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls)
{
    struct http_io *io = cls;
    struct http_hooks *hooks = &io->server->hooks;
    struct http_request *r = *con_cls;
    if (!r) return MHD_NO; /* http_uri_seen allocates it; out of memory there */
    if (!r->started) {
        r->started = true;
        r->conn = conn;
        r->method = method;
        r->url = url;
        /* libmicrohttpd hands the request-target over as a C string: a raw NUL
         * inside it would cut the path short ("/orders\0/x" routed as "/orders").
         * Its raw string must end right where the HTTP version begins. */
        if (r->uri_end + 1 != version) {
            http_refuse_closing(r, OUTCOME_INVALID, "the request line contains a NUL byte");
            return MHD_YES;
        }
        enum framing_fault f = http_framing(r, method, version);
        if (f != FRAMING_OK) {
            http_refuse_closing(r, framing_outcome(f), framing_message(f));
            return MHD_YES;
        }
        r->url = framing_path(url);
        hooks->handle(hooks->ctx, r, HTTP_HEADERS);
        return MHD_YES;
    }
    if (r->deferred) {
        if (r->completed) http_send_completed(r);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->status) http_append(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->status) return MHD_YES;
    hooks->handle(hooks->ctx, r, HTTP_BODY);
    if (r->deferred && io->server->tpc) http_wait(r); /* a thread per connection: it waits here */
    if (!r->status && !r->deferred) {
        LOG_ERROR("http: %s %s got no answer", method, url);
        char body[128];
        http_reply(r, 500, body, outcome_json(OUTCOME_INTERNAL, "no answer", body, sizeof body), NULL);
    }
    return MHD_YES;
}

/* libmicrohttpd calls this with the raw request-target, before it decodes or
 * splits anything; what it returns becomes the request's con_cls. */
static void *http_uri_seen(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_request *r = malloc(sizeof *r);
    if (!r) return NULL;
    memset(r, 0, offsetof(struct http_request, small_body));
    r->io = cls;
    r->conn = conn;
    r->started_ns = clock_mono_ns();
    r->body = r->small_body;
    r->body_cap = sizeof r->small_body;
    r->uri_end = uri + strlen(uri);
    return r;
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_io *io = cls;
    struct http_request *r = *con_cls;
    if (!r) return;
    if (r->deferred) {
        /* Completed and resumed, but the client left before the answer went out:
         * libmicrohttpd ends the request without calling the handler again. */
        if (r->answer && r->answer != r->small_answer) free(r->answer);
        atomic_fetch_sub(&io->server->deferred, 1);
    }
    io->server->hooks.finished(io->server->hooks.ctx, r, r->status, clock_mono_ns() - r->started_ns);
    if (r->body != r->small_body) free(r->body);
    free(r);
    *con_cls = NULL;
}

static int http_hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decoding of paths and query arguments.  libmicrohttpd's own decoder turns
 * "%00" into a NUL, which silently cuts the path short ("/index.html%00.js" would
 * serve index.html); here a decoded NUL becomes 0x01, which no route and no file
 * name accepts. */
static size_t http_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *out = s;
    for (const char *in = s; *in; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = http_hexval(in[1])) >= 0 && (lo = http_hexval(in[2])) >= 0) {
            char ch = (char)(hi * 16 + lo);
            *out++ = ch ? ch : 0x01;
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = 0;
    return (size_t)(out - s);
}

static void http_log(void *cls, const char *fmt, va_list ap)
{
    if (log_threshold > LOG_LEVEL_DEBUG) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    buf[strcspn(buf, "\n")] = 0;
    LOG_DEBUG("libmicrohttpd: %s", buf);
}

/* ---- event loops ------------------------------------------------------------------ */

/* How many more connections this thread's daemon takes now. */
static size_t http_room(struct http_io *io)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(io->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    unsigned now = di ? di->num_connections : 0;
    return now < io->limit ? io->limit - now : 0;
}

/* The gate's hand-over: libmicrohttpd reads the connection from its first byte
 * (and closes it when over its per-IP or connection limit). */
static void http_admit(void *ctx, int fd, const struct sockaddr *sa, socklen_t len)
{
    struct http_io *io = ctx;
    if (!gate_address_take(sa, io->server->per_ip)) { /* as libmicrohttpd does over its own limit */
        close(fd);
        return;
    }
    if (MHD_add_connection(io->daemon, fd, sa, len) != MHD_YES && io->server->per_ip) gate_address_put(sa);
}

/* A connection libmicrohttpd closes gives its address's count back (counted only
 * under --per-ip-limit: without one, a close costs nothing here). */
static void http_notify(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode code)
{
    const struct http_io *io = cls;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED || !io->server->per_ip) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) gate_address_put(ci->client_addr);
}

/* Stops taking connections on io: the gate owns the listening socket (libmicrohttpd has
 * none to give back), so it stops watching it and the socket is closed here. */
static void http_io_quiesce(struct http_io *io)
{
    gate_stop_listening(io->gate);
    close(io->listen_fd);
    io->listen_fd = -1;
    io->quiesced = true;
}

static void *http_io_main(void *arg)
{
    struct http_io *io = arg;
    struct http_server *s = io->server;
    pthread_setname_np(pthread_self(), "fs-io");
    if (s->hooks.thread_start) io->state = s->hooks.thread_start(s->hooks.ctx);
    struct epoll_event ev[64];
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->quiesce) && !io->quiesced) http_io_quiesce(io);
        int timeout = HTTP_TICK_MS, grace = gate_round(io->gate, http_room(io));
        if (grace < timeout) timeout = grace;
        MHD_UNSIGNED_LONG_LONG to;
        if (MHD_get_timeout(io->daemon, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)timeout)
            timeout = (int)to;
        int n = epoll_wait(io->wait_fd, ev, 64, timeout);
        if (n < 0 && errno != EINTR) LOG_ERROR("http: epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 == 1) {
                uint64_t count;
                ssize_t rd = read(io->wake_fd, &count, sizeof count);
                (void)rd;
            } else if (ev[i].data.u64 >= GATE_TAG_LISTEN) {
                gate_event(io->gate, ev[i].data.u64, http_room(io));
            }
        }
        http_resume_done(io);
        MHD_run(io->daemon);
        if (s->hooks.round_done) s->hooks.round_done(s->hooks.ctx, io->state);
    }
    if (s->hooks.thread_stop) s->hooks.thread_stop(s->hooks.ctx, io->state);
    return NULL;
}

/* SO_REUSEPORT lets a second process join our port silently and take half the
 * traffic.  Binding once without it first makes a taken port fail loudly; returns
 * the port to use (the free one the kernel chose when port is 0), or -1. */
static int http_claim_port(const char *addr, int port, char *err, size_t err_size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(err, err_size, "--bind '%s' is not an IPv4 address", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        snprintf(err, err_size, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* A non-blocking SO_REUSEPORT listening socket on addr:port; -1 on failure. */
static int http_listen(const char *addr, int port, char *err, size_t err_size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(err, err_size, "--bind '%s' is not an IPv4 address", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, err_size, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

int http_reserve_port(const char *addr, int port, char *err, size_t err_size)
{
    return http_claim_port(addr, port, err, err_size);
}

static struct http_server *http_tpc_start(struct http_server *s, const struct config *cfg, char *err,
                                          size_t err_size);

struct http_server *http_start(const struct config *cfg, const struct http_hooks *hooks, char *err,
                               size_t err_size)
{
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (cfg->model == MODEL_THREAD_PER_CONNECTION) {
        s->hooks = *hooks;
        return http_tpc_start(s, cfg, err, err_size);
    }
    s->hooks = *hooks;
    s->nio = (size_t)cfg->io_threads;
    s->per_ip = (unsigned)cfg->per_ip_limit;
    s->io = calloc(s->nio, sizeof *s->io);
    if (!s->io) goto fail;
    /* --model processes: the supervisor claimed the port (http_reserve_port) and
     * every worker process joins it. */
    s->port = cfg->model == MODEL_PROCESSES ? (int)cfg->port : http_claim_port(cfg->bind, (int)cfg->port, err, err_size);
    if (s->port < 0) goto fail;
    unsigned per_thread = (unsigned)((cfg->max_connections + (int64_t)s->nio - 1) / (int64_t)s->nio);
    for (size_t i = 0; i < s->nio; i++) s->io[i].listen_fd = s->io[i].wait_fd = s->io[i].wake_fd = -1;
    for (size_t i = 0; i < s->nio; i++) {
        struct http_io *io = &s->io[i];
        io->server = s;
        io->listen_fd = http_listen(cfg->bind, s->port, err, err_size);
        if (io->listen_fd < 0) goto fail;
        io->daemon = MHD_start_daemon(
            MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG |
                MHD_USE_NO_LISTEN_SOCKET,
            0, NULL, NULL, http_access, io, MHD_OPTION_CONNECTION_LIMIT, per_thread, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)HTTP_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)cfg->idle_timeout, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            (unsigned)cfg->per_ip_limit, MHD_OPTION_NOTIFY_COMPLETED, http_completed, io,
            MHD_OPTION_NOTIFY_CONNECTION, http_notify, io, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL, MHD_OPTION_UNESCAPE_CALLBACK,
            http_unescape, NULL, MHD_OPTION_URI_LOG_CALLBACK, http_uri_seen, io, MHD_OPTION_END);
        if (!io->daemon) {
            snprintf(err, err_size, "libmicrohttpd did not start");
            goto fail;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(io->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        io->wait_fd = epoll_create1(EPOLL_CLOEXEC);
        io->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
        struct epoll_event wake = {.events = EPOLLIN, .data.u64 = 1};
        if (!info || io->wait_fd < 0 || io->wake_fd < 0 ||
            epoll_ctl(io->wait_fd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0 ||
            epoll_ctl(io->wait_fd, EPOLL_CTL_ADD, io->wake_fd, &wake) != 0) {
            snprintf(err, err_size, "cannot watch libmicrohttpd's epoll descriptor: %s", strerror(errno));
            goto fail;
        }
        io->limit = per_thread;
        io->gate = gate_new(io->listen_fd, io->wait_fd, HTTP_GATE_SLOTS, HTTP_GATE_GRACE_MS, http_admit, io);
        if (!io->gate) {
            snprintf(err, err_size, "cannot watch the listening socket: %s", strerror(errno));
            goto fail;
        }
        gate_limit_per_address(io->gate, (unsigned)cfg->per_ip_limit);
    }
    for (size_t i = 0; i < s->nio; i++) {
        if (pthread_create(&s->io[i].thread, NULL, http_io_main, &s->io[i]) != 0) {
            snprintf(err, err_size, "cannot start an I/O thread");
            http_stop(s, 0);
            return NULL;
        }
        s->io[i].started = true;
    }
    return s;
fail:
    http_stop(s, 0);
    return NULL;
}

int http_port(const struct http_server *s) { return s->port; }

void http_quiesce(struct http_server *s) { atomic_store(&s->quiesce, true); }


static void http_tpc_stop(struct http_server *s, size_t stuck);

void http_stop(struct http_server *s, int timeout_ms)
{
    if (!s) return;
    http_quiesce(s);
    int waited = 0;
    for (; atomic_load(&s->deferred) > 0 && waited < timeout_ms; waited += 10)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    size_t stuck = atomic_load(&s->deferred);
    /* A short grace for the last answers to leave the socket buffers. */
    if (timeout_ms) nanosleep(&(struct timespec){0, 100000000}, NULL);
    atomic_store(&s->stop, true);
    if (s->tpc) return http_tpc_stop(s, stuck);
    for (size_t i = 0; i < s->nio; i++)
        if (s->io[i].started) pthread_join(s->io[i].thread, NULL);
    for (size_t i = 0; i < s->nio; i++) {
        struct http_io *io = &s->io[i];
        /* libmicrohttpd aborts the process when stopped with a suspended connection;
         * if one is stuck, leave the daemon to the exiting process. */
        gate_free(io->gate);
        if (io->listen_fd >= 0) close(io->listen_fd);
        if (io->daemon && !stuck) MHD_stop_daemon(io->daemon);
        if (io->wait_fd >= 0) close(io->wait_fd);
        if (io->wake_fd >= 0 && !stuck) close(io->wake_fd);
    }
    if (stuck) {
        /* A late completion would still push onto an I/O thread's done list and
         * write its eventfd: leave both to the exiting process. */
        LOG_WARN("http: %zu deferred requests never completed", stuck);
        return;
    }
    free(s->io);
    free(s);
}

/* ---- --model thread-per-connection ------------------------------------------------
 *
 * The design the service's founding text warns about, built to measure what it
 * costs: libmicrohttpd's own thread-per-connection mode.  One internal thread
 * accepts; every connection gets an OS thread of its own, which runs the handler
 * and, for a purchase, blocks in http_wait() until the group-committing writer has
 * answered.  There is no event loop of ours, no suspend/resume and no done list:
 * http_complete() wakes the sleeping connection thread directly.
 *
 * Bounded on purpose: at most --max-connections connections, so threads.  Our own
 * acceptor thread (http_tpc_accept) takes connections through the same gate as the
 * I/O threads (gate.h: framing refusals on the first bytes) and gives them to the
 * daemon with MHD_add_connection, counts them (MHD_OPTION_NOTIFY_CONNECTION) and stops
 * accepting at the limit, so new clients wait in the kernel's backlog as in the
 * threaded model: libmicrohttpd 0.9.75's listener in
 * this mode would accept them and close them at once.  A failed pthread_create
 * (thread or memory limits) closes that one connection; nothing crashes.  HTTP_TPC_STACK is set for 10,000 of
 * them: see its comment. */

/* Each connection thread's stack, reserved (virtual) in full and resident only as
 * far as it is touched.  glibc's default is the stack rlimit, usually 8 MiB: 10,000
 * threads would reserve 80 GiB of address space, which a strict overcommit policy
 * refuses.  The deepest path is jansson parsing a body nested 2,048 levels (its
 * limit; tests/test_api.py's deep_nesting sends one): measured with this build,
 * 160 KiB of stack crashes there, 192 KiB does not.  512 KiB leaves 2.5x that for
 * other compilers, libraries and sanitizer builds, and is 5 GiB of address space
 * (not memory) for 10,000 threads.  glibc puts a guard page below it: an overflow
 * faults instead of corrupting a neighbour. */
#ifndef HTTP_TPC_STACK /* -DHTTP_TPC_STACK=... to measure the headroom */
#define HTTP_TPC_STACK (512 * 1024)
#endif

struct http_tpc_state {
    struct http_server *server;
    void *state;
};

/* A connection thread exits (its client left, or the daemon stops): its state
 * (a store connection) goes with it. */
static void http_tpc_state_free(void *arg)
{
    struct http_tpc_state *t = arg;
    if (t->server->hooks.thread_stop) t->server->hooks.thread_stop(t->server->hooks.ctx, t->state);
    free(t);
}

/* The calling connection thread's state, made at its first request that asks:
 * a connection that only reads the dashboard never opens a store connection. */
static void *http_tpc_state(struct http_server *s)
{
    struct http_tpc_state *t = pthread_getspecific(s->tpc_key);
    if (t) return t->state;
    t = calloc(1, sizeof *t);
    if (!t) LOG_FATAL("http: out of memory");
    t->server = s;
    if (s->hooks.thread_start) t->state = s->hooks.thread_start(s->hooks.ctx);
    pthread_setspecific(s->tpc_key, t);
    return t->state;
}

static void http_tpc_defer(struct http_request *r)
{
    pthread_mutex_init(&r->tpc_mu, NULL);
    pthread_cond_init(&r->tpc_cv, NULL);
    r->tpc_woken = false;
}

/* Any thread (the writer, usually): the answer is in; wake the connection thread.
 * It cannot leave http_wait() before we unlock, so r outlives this call. */
static void http_tpc_wake(struct http_request *r)
{
    pthread_mutex_lock(&r->tpc_mu);
    r->tpc_woken = true;
    pthread_cond_signal(&r->tpc_cv);
    pthread_mutex_unlock(&r->tpc_mu);
}

void http_wait(struct http_request *r)
{
    if (!r->io->server->tpc || !r->deferred) return;
    pthread_mutex_lock(&r->tpc_mu);
    while (!r->tpc_woken) pthread_cond_wait(&r->tpc_cv, &r->tpc_mu);
    pthread_mutex_unlock(&r->tpc_mu);
    pthread_cond_destroy(&r->tpc_cv);
    pthread_mutex_destroy(&r->tpc_mu);
    if (r->fill) { /* http_complete_later: the answer is built here, as an I/O thread would */
        r->filling = true;
        r->fill(r, r->fill_arg);
        if (!r->answer) {
            char body[128];
            LOG_ERROR("http: a deferred request got no answer");
            http_complete(r, 500, body, outcome_json(OUTCOME_INTERNAL, "no answer", body, sizeof body), NULL,
                          NULL);
        }
        r->filling = false;
        r->fill = NULL;
    }
    r->completed = true;
    http_send_completed(r);
}

/* The acceptor: takes a connection only while fewer than --max-connections are
 * open, so the rest wait in the listen backlog.  At the limit it looks again every
 * millisecond (a connection's end is libmicrohttpd's to see and tell).  On
 * quiesce it closes the listening socket: new clients are refused, as in the
 * threaded model. */
static void http_tpc_notify(void *cls, struct MHD_Connection *c, void **socket_ctx,
                            enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    atomic_fetch_add(code == MHD_CONNECTION_NOTIFY_STARTED ? &s->tpc_started : &s->tpc_closed, 1);
}

/* How many more connections the limit allows now. */
static size_t http_tpc_room(struct http_server *s)
{
    uint64_t open = atomic_load(&s->tpc_started) - atomic_load(&s->tpc_closed);
    return open < s->tpc_limit ? s->tpc_limit - open : 0;
}

/* The gate's hand-over.  libmicrohttpd closes fd itself when it cannot take it
 * (per-IP limit, no thread).  It registers the connection on its own thread: wait
 * (10 ms at most, in case it refused it) until the count has it, or the next
 * look at the room could overshoot the limit. */
static void http_tpc_admit(void *ctx, int fd, const struct sockaddr *sa, socklen_t len)
{
    struct http_server *s = ctx;
    uint64_t started = atomic_load(&s->tpc_started);
    if (MHD_add_connection(s->io[0].daemon, fd, sa, len) != MHD_YES) return;
    uint64_t deadline = clock_mono_ns() + 10000000u;
    while (atomic_load(&s->tpc_started) == started && clock_mono_ns() < deadline) sched_yield();
}

/* The acceptor's loop: the same gate as an I/O thread's (framing refusals on the
 * first bytes), given room only below --max-connections.  At the limit it looks
 * again every millisecond (a connection's end is libmicrohttpd's to see and tell). */
static void *http_tpc_accept(void *arg)
{
    struct http_io *io = arg;
    struct http_server *s = io->server;
    pthread_setname_np(pthread_self(), "fs-accept");
    struct epoll_event ev[64];
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->quiesce) && !io->quiesced) http_io_quiesce(io);
        size_t room = http_tpc_room(s);
        int timeout = room ? HTTP_TICK_MS : 1, grace = gate_round(io->gate, room);
        if (grace < timeout) timeout = grace;
        int n = epoll_wait(io->wait_fd, ev, 64, timeout);
        if (n < 0 && errno != EINTR) LOG_ERROR("http: epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 >= GATE_TAG_LISTEN) gate_event(io->gate, ev[i].data.u64, http_tpc_room(s));
    }
    return NULL;
}

static struct http_server *http_tpc_start(struct http_server *s, const struct config *cfg, char *err,
                                          size_t err_size)
{
    s->tpc = true;
    s->nio = 1;
    s->io = calloc(1, sizeof *s->io);
    if (!s->io) goto fail;
    struct http_io *io = &s->io[0];
    io->server = s;
    io->listen_fd = io->wait_fd = io->wake_fd = -1;
    if (pthread_key_create(&s->tpc_key, http_tpc_state_free) != 0) {
        snprintf(err, err_size, "cannot create a thread key");
        goto fail;
    }
    s->tpc_key_made = true;
    s->port = http_claim_port(cfg->bind, (int)cfg->port, err, err_size);
    if (s->port < 0) goto fail;
    io->listen_fd = http_listen(cfg->bind, s->port, err, err_size);
    if (io->listen_fd < 0) goto fail;
    s->tpc_limit = (unsigned)cfg->max_connections;
    /* poll, not select: descriptors past 1023 are normal here.  epoll is not
     * offered in this mode: each thread waits on its own one socket.  http_tpc_accept
     * holds --max-connections; libmicrohttpd's own limit is only a backstop, twice
     * as high: it counts a closed connection until its listener has reaped it, and
     * would close new connections we took for a slot that is already free. */
    io->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
            MHD_USE_NO_LISTEN_SOCKET | MHD_USE_TURBO | MHD_USE_ERROR_LOG,
        0, NULL, NULL, http_access, io, MHD_OPTION_CONNECTION_LIMIT, 2 * s->tpc_limit, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)HTTP_TPC_STACK, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->per_ip_limit, MHD_OPTION_NOTIFY_COMPLETED, http_completed, io,
        MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL, MHD_OPTION_UNESCAPE_CALLBACK, http_unescape, NULL,
        MHD_OPTION_URI_LOG_CALLBACK, http_uri_seen, io, MHD_OPTION_NOTIFY_CONNECTION, http_tpc_notify, s,
        MHD_OPTION_END);
    if (!io->daemon) {
        snprintf(err, err_size, "libmicrohttpd did not start (thread-per-connection)");
        goto fail;
    }
    io->wait_fd = epoll_create1(EPOLL_CLOEXEC);
    io->gate = io->wait_fd < 0 ? NULL
                               : gate_new(io->listen_fd, io->wait_fd, HTTP_GATE_SLOTS, HTTP_GATE_GRACE_MS,
                                          http_tpc_admit, s);
    if (io->gate) gate_limit_per_address(io->gate, (unsigned)cfg->per_ip_limit);
    if (!io->gate) {
        snprintf(err, err_size, "cannot start the connection gate");
        goto fail;
    }
    if (pthread_create(&io->thread, NULL, http_tpc_accept, io) != 0) {
        snprintf(err, err_size, "cannot start the acceptor thread");
        goto fail;
    }
    io->started = true;
    return s;
fail:
    http_tpc_stop(s, 0);
    return NULL;
}


/* Stopping the daemon closes every connection and joins its thread; each thread's
 * state is freed on it (the key's destructor), before the store closes. */
static void http_tpc_stop(struct http_server *s, size_t stuck)
{
    struct http_io *io = s->io;
    if (stuck) {
        LOG_WARN("http: %zu deferred requests never completed", stuck);
        return; /* their threads still sleep on requests: leave all to the exiting process */
    }
    if (io && io->started) pthread_join(io->thread, NULL); /* s->stop is set */
    if (io && io->gate) gate_free(io->gate); /* closes what it still holds */
    if (io && io->daemon) MHD_stop_daemon(io->daemon);
    if (io && io->listen_fd >= 0) close(io->listen_fd);
    if (io && io->wait_fd >= 0) close(io->wait_fd);
    if (s->tpc_key_made) pthread_key_delete(s->tpc_key);
    free(s->io);
    free(s);
}

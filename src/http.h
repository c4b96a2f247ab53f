/* http — the HTTP front end: libmicrohttpd daemons driven by our own event loops.
 *
 * --io-threads threads each own one libmicrohttpd daemon (epoll, no internal
 * thread) and its own SO_REUSEPORT listening socket for the same port; the kernel
 * spreads connections across them.  The thread accepts them itself and holds
 * each until its first bytes (gate.h) before libmicrohttpd gets it.  Each thread
 * waits on its daemon's epoll descriptor and calls MHD_run(), which never blocks:
 * libmicrohttpd's own
 * blocking loop re-waits with the full timeout whenever epoll returns a full batch
 * of 128 events, a stall we measured at 128 x k busy keep-alive connections.
 *
 * A request reaches the handler twice: once when its headers are in (it may
 * refuse there, e.g. 413 on a large Content-Length), once when the whole body is
 * in (at most HTTP_BODY_MAX bytes are kept).  Before the first, http.c refuses
 * ambiguous framing itself (framing.h: 400/501 and close) and reduces an
 * absolute-form target to its path.  The handler answers with
 * http_reply*() on the spot, or calls http_defer() and later, from any thread,
 * http_complete(); the connection is suspended in between, so no I/O thread ever
 * waits.
 *
 * With --model thread-per-connection, libmicrohttpd gives each connection a thread
 * of its own instead: the handler runs there, and a deferred request is not
 * suspended but waited for on that thread (http_wait); hooks.round_done is never
 * called and thread_start runs lazily, at a connection thread's first
 * http_thread_state().
 *
 * Ownership: struct http_request belongs to http.c and lives until the request's
 * completion hook returns; pointers from http_method/path/header/body are
 * borrowed for that long.  Between http_defer() and http_complete() only the
 * completing thread may touch the request.
 */
#ifndef FLASHSALE_HTTP_H
#define FLASHSALE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define HTTP_BODY_MAX 16384

struct http_server;
struct http_request;
struct http_canned; /* a response built once and reused (thread-safe) */

enum http_phase { HTTP_HEADERS, HTTP_BODY };

struct http_hooks {
    /* Called on an I/O thread; must answer or defer in HTTP_BODY, may answer in
     * HTTP_HEADERS (which closes the connection after the answer). */
    void (*handle)(void *ctx, struct http_request *r, enum http_phase phase);
    /* Called on an I/O thread when the answer is sent (or the client went away):
     * status 0 means no answer was sent. */
    void (*finished)(void *ctx, struct http_request *r, int status, uint64_t latency_ns);
    /* Called on each I/O thread after every round of its event loop: work the
     * handlers collected (e.g. deferred requests) can be handed on in one go. */
    void (*round_done)(void *ctx, void *state);
    /* Per-thread state of each I/O thread, available as http_thread_state(). */
    void *(*thread_start)(void *ctx);
    void (*thread_stop)(void *ctx, void *state);
    void *ctx;
};

/* Binds and starts the I/O threads.  NULL and a reason in err on failure. */
struct http_server *http_start(const struct config *cfg, const struct http_hooks *hooks, char *err,
                               size_t err_size);

/* --model processes, in the supervisor: checks that addr:port is free and returns
 * it (a free one when port is 0), for every worker process to join with
 * SO_REUSEPORT; -1 and a reason in err. */
int http_reserve_port(const char *addr, int port, char *err, size_t err_size);

/* The port actually bound (useful with --port 0). */
int http_port(const struct http_server *s);

/* Stops accepting connections; requests on open connections are still served. */
void http_quiesce(struct http_server *s);

/* Waits up to timeout_ms for deferred requests to finish and answers to go out,
 * then closes every connection and frees the server. */
void http_stop(struct http_server *s, int timeout_ms);

/* Request accessors (I/O thread, or the completing thread while deferred). */
const char *http_method(const struct http_request *r);
const char *http_path(const struct http_request *r);
const char *http_header(const struct http_request *r, const char *name); /* NULL if absent */
int64_t http_content_length(const struct http_request *r);              /* -1 if absent */
const char *http_body(const struct http_request *r, size_t *len);
/* The client's address as text ("127.0.0.1"); returns its length, 0 if unknown. */
size_t http_client_address(const struct http_request *r, char *buf, size_t size);
bool http_body_too_large(const struct http_request *r);
/* True from http_defer() until the deferred answer is sent. */
bool http_is_deferred(const struct http_request *r);
void *http_thread_state(const struct http_request *r);
/* A number the handler keeps with the request (the api keeps its route). */
void http_set_label(struct http_request *r, int label);
int http_label(const struct http_request *r);

/* The primitives below are for one caller: call.c's call_answer(), the api's one
 * way to answer, picks among them (now or deferred, canned, file, body).
 *
 * Answers now (I/O thread only).  headers: name, value pairs, NULL-terminated, or
 * NULL.  The body is copied; Content-Type is application/json unless given. */
void http_reply(struct http_request *r, int status, const char *body, size_t len,
                const char *const *headers);

/* Answers with a file (sendfile); takes ownership of fd. */
void http_reply_fd(struct http_request *r, int status, int fd, uint64_t size,
                   const char *const *headers);

struct http_canned *http_canned_new(int status, const char *body, size_t len,
                                    const char *const *headers);
void http_canned_free(struct http_canned *c);
void http_reply_canned(struct http_request *r, const struct http_canned *c);

/* Suspends the request until http_complete(); I/O thread, handler only. */
void http_defer(struct http_request *r);

/* --model thread-per-connection, on the connection's thread after http_defer():
 * sleeps until http_complete(_later), builds and queues the answer.  http.c calls
 * it when the handler returns with the request deferred; a handler may call it
 * sooner (api does, to give its queue slot back after the answer).  Returns at
 * once in the threaded model, where the I/O thread resumes the request instead.
 * r may not be touched by anyone else afterwards. */
void http_wait(struct http_request *r);

/* Answers a deferred request from any thread; the body and header are copied.
 * After this call the caller must not touch r. */
void http_complete(struct http_request *r, int status, const char *body, size_t len,
                   const char *header_name, const char *header_value);

/* Answers a deferred request from any thread, but builds the answer on r's I/O
 * thread: fill(r, arg) runs there exactly once, soon, and must call
 * http_complete().  For answers made on the writer thread, whose time every
 * purchase in the next group commit waits for.  The caller must not touch r. */
void http_complete_later(struct http_request *r, void (*fill)(struct http_request *r, void *arg),
                         void *arg);

#endif

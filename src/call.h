/* call — one request's life inside the api, as the handler files see it
 * (reads.c, purchase.c, orders.c, admin.c; api.c finds the handler in its
 * command table and runs the checks the table asks for before calling it).
 *
 * A handler runs on the I/O thread that received the request, with the
 * service's parts (struct call_env, built and owned by api.c, read-only once the
 * service runs).  It answers at once with call_answer(), or hands the request on
 * as a struct call: call_enqueue() suspends it and queues it for a purchase
 * worker.  Whoever finishes a call answers it with call_answer() from any
 * thread, or has the answer rendered on the request's I/O thread with
 * call_answer_later() (the writer's time is every purchase's time).
 *
 * There is one way to answer: call_answer().  Immediate or deferred, it is sent
 * by the connection's I/O thread, exactly once (http.c asserts it).  A refusal's
 * status, error code, message, Retry-After, Allow and WWW-Authenticate come from
 * outcome.c's table; every other body is rendered by render.c.
 *
 * Ownership: a struct call belongs to the handler file from call_new() until it
 * is answered (then the file frees it, or call_enqueue() did when it refused);
 * the env and the request are borrowed.
 */
#ifndef FLASHSALE_CALL_H
#define FLASHSALE_CALL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "http.h"
#include "inventory.h"
#include "ordertoken.h"
#include "outcome.h"
#include "pool.h"
#include "store.h"

struct purchase_keys; /* purchase.c */
struct admin;         /* admin.c */
struct ratelimit;

/* The service's parts, for handlers.  Built by api_new, read-only afterwards. */
struct call_env {
    const struct config *cfg;
    struct inventory *inv;
    struct store *store;
    struct pool *workers;          /* the purchase workers */
    struct ratelimit *user_rate;   /* NULL = no per-user limit */
    struct ordertoken order_tokens; /* keyed by the database's order secret */
    struct hmac_sha256_key user_key; /* --user-secret with its pads hashed once (X-User-Token) */
    struct purchase_keys *keys;    /* purchases in flight by Idempotency-Key */
    struct admin *admin;           /* the admin thread and the audits */
};

/* What each I/O thread and each worker keeps (call.c): its own database
 * connection and the jobs it collected during one round of its loop. */
struct call_thread;

/* A request that leaves the I/O thread.  Handler files embed it first in their
 * own struct (call_new's size) to keep what their step needs. */
struct call {
    struct pool_job job; /* first: the pool hands back the call */
    struct store_job sj;
    const struct call_env *env;
    struct http_request *req;
    struct sale *sale;
    void (*later)(struct call *c); /* call_answer_later's */
};

/* An answer.  outcome OUTCOME_OK sends body (status 0 means 200); any other
 * outcome sends that refusal's JSON, with message instead of the default text
 * when not NULL, and retry_after seconds instead of the default Retry-After
 * when not 0.  Fields that do not apply stay zero. */
struct answer {
    enum outcome outcome;
    const char *message;
    int retry_after;
    const char *allow; /* 405's Allow */
    int status;
    const char *body;
    size_t len;
    const char *content_type; /* NULL = application/json */
    bool no_store;            /* Cache-Control: no-store */
    const char *location;
    bool file; /* the body is fd (taken), file_size bytes, sent with sendfile */
    int fd;
    uint64_t file_size;
    const char *const *headers; /* more name/value pairs, NULL-terminated; immediate answers only */
};

/* Builds the prebuilt refusals once, before the first request; call_deinit after
 * the last.  -1 when out of memory. */
int call_init(void);
void call_deinit(void);

/* The one way to answer r: at once on its I/O thread (in a handler), or, once r
 * was deferred, from any thread (the body is copied, sent by r's I/O thread).
 * Counts refusals in the metrics.  After a deferred answer, r is not the caller's. */
void call_answer(struct http_request *r, const struct answer *a);

static inline void call_refuse(struct http_request *r, enum outcome o, const char *message)
{
    call_answer(r, &(struct answer){.outcome = o, .message = message});
}

/* Answers a with a body that fill(out, arg) writes (render.c's FILE* renderers);
 * a's body fields are ignored.  500 when out of memory. */
void call_answer_rendered(struct http_request *r, const struct answer *a, void (*fill)(FILE *out, void *arg),
                          void *arg);

/* From any thread: c->req is answered on its I/O thread, where answer(c) runs
 * once, soon, and must call call_answer(c->req, ...) and free c. */
void call_answer_later(struct call *c, void (*answer)(struct call *c));

/* A call of size bytes (at least sizeof(struct call), zeroed) that will
 * run(job, worker state) on a worker; NULL when out of memory. */
struct call *call_new(const struct call_env *env, struct http_request *r, size_t size,
                      void (*run)(struct pool_job *, void *));

/* On the I/O thread: suspends c->req and queues c for a worker (handed on at the
 * end of this I/O round), or answers 503 when the queue is full.  False when
 * refused: c is freed. */
bool call_enqueue(struct call *c);

/* On a worker: sj goes to the writer with the rest of this round's jobs. */
void call_commit_later(void *worker, struct store_job *sj);

/* The store connection of the I/O thread answering r, or of a worker (state). */
struct store_conn *call_conn(const struct http_request *r);
struct store_conn *call_worker_conn(void *worker);

/* Every request naming a user after its body parsed: the signed X-User-Token when
 * --user-secret is set (401), then the per-user rate (429).  False when refused
 * (answered). */
bool call_user_checks(const struct call_env *env, struct http_request *r, const char *user);

/* An order is read, paid or cancelled only with its token (X-Order-Token). */
bool call_order_token_ok(const struct call_env *env, const struct http_request *r, int64_t order_id);

/* The per-thread state of I/O threads and workers (http and pool hooks, through
 * api.c), and the end of a round: hands what the thread collected on, to the
 * workers (I/O thread) or to the writer (worker; also before a job that waits
 * for the writer itself). */
struct call_thread *call_thread_new(const struct call_env *env);
void call_thread_free(struct call_thread *t);
void call_thread_round_done(const struct call_env *env, struct call_thread *t);

#endif

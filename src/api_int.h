/* api_int — what api.c and admin.c share: the api's state, the per-thread state,
 * a deferred call, and the helpers that answer and queue calls.  Not for any
 * other module: the rest of the program sees api.h. */
#ifndef FLASHSALE_API_INT_H
#define FLASHSALE_API_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "api.h"
#include "ordertoken.h"
#include "outcome.h"
#include "payload.h"
#include "pool.h"
#include "ratelimit.h"
#include "route.h"

#define API_KEY_BUCKETS 256

struct api {
    const struct config *cfg;
    struct inventory *inv;
    struct store *store;
    struct pool *pool;   /* the purchase workers */
    struct admin *admin; /* admin.c: the admin thread and the audits */
    char token[128];
    size_t token_len;
    struct http_canned *canned[OUTCOME_COUNT]; /* default error answers */
    struct http_canned *healthz;
    _Atomic bool sweeping; /* a sweep job is queued or running */
    struct ratelimit *user_rate, *ip_rate; /* NULL = no limit */
    struct ordertoken order_tokens; /* keyed by the database's order secret */
    /* Purchases with an Idempotency-Key, from their claim on a worker to their
     * answer, hashed by (sale, user, key): a retry finds the try in flight. */
    pthread_mutex_t keys_mu;
    struct api_call *keys[API_KEY_BUCKETS];
};

/* What each I/O thread and each worker keeps: its own database connection, and
 * the jobs it produced during one round of its loop, handed on together at the
 * end of the round (one lock and at most one wake-up per round instead of per
 * job: under a crowd, thread switches are where the time goes). */
struct api_thread {
    struct store_conn *conn;
    struct pool_job *queued_first, *queued_last; /* I/O thread -> pool */
    size_t queued;
    struct store_job *commit_first, *commit_last; /* worker -> writer */
    size_t commits;
    struct store *commit_store;
};

/* A request that leaves the I/O thread: a purchase, an admin write or an audit. */
struct api_call {
    struct pool_job job;
    struct store_job sj;
    struct api *api;
    struct http_request *req;
    struct sale *sale;
    bool reserved; /* the inventory holds a claim for this purchase */
    bool keyed;    /* in api.keys: tries with the same key follow this one */
    struct api_call *key_next;  /* the bucket's chain */
    struct api_call *followers; /* retries waiting for this try's answer */
    struct api_call *follow_next;
    struct payload_sale new_sale;
};

/* Answers on the I/O thread: an outcome's JSON (msg NULL = its default text). */
void api_refuse(struct api *a, struct http_request *r, enum outcome o, const char *msg);
/* Answers 200 with what fill(out, arg) writes into a memory stream. */
void api_reply_stream(struct http_request *r, int status, const char *content_type,
                      void (*fill)(FILE *out, void *arg), void *arg);
/* A sale's JSON (arg: struct sale *), for api_reply_stream. */
void api_sale_reply_fill(FILE *out, void *arg);
/* Content-Type and body size of a POST: OUTCOME_OK or the refusal. */
enum outcome api_body_checks(struct http_request *r);

/* A call that will run(job, worker state) on a worker; NULL when out of memory. */
struct api_call *api_call_new(struct api *a, struct http_request *r,
                              void (*run)(struct pool_job *, void *));
/* Suspends r and queues c (at the end of this I/O round), or answers 503 when the
 * queue is full.  False when refused (c is freed). */
bool api_enqueue(struct api *a, struct http_request *r, struct api_call *c);
/* On a worker: hands the purchases it collected to the writer now (before a job
 * that waits for the writer itself). */
void api_worker_round_done(void *state);
/* Answers a deferred call with an outcome's JSON, from any thread. */
void api_complete_outcome(struct api_call *c, enum outcome o, const char *msg);

/* admin.c: POST /sales and POST /sales/{id}/reset (route says which), and
 * GET /sales/{id}/audit; on the I/O thread, each queues its work to the admin
 * thread (never to a purchase worker), or answers the audit from its last run. */
void admin_post(struct api *a, struct http_request *r, enum route route, int64_t id);
void admin_audit(struct api *a, struct http_request *r, int64_t sale_id);
/* The admin thread: started by api_new (NULL when out of memory), drained after
 * the purchase workers (a reset may wait for their purchases), freed last. */
struct admin *admin_new(struct api *a);
void admin_drain(struct admin *ad);
void admin_free(struct admin *ad);

#endif

/* api — the REST API's dispatcher: the command table (api.c) that says, for each
 * route and method, which handler answers and what is checked first.
 *
 * Handlers live in one file per resource and see only call.h: reads.c (cheap
 * reads on the I/O thread), purchase.c (the purchase pipeline), orders.c (an
 * order, pay, cancel, the sweeper), admin.c (create, reset, audit, on the admin
 * thread).  The api owns the purchase worker pool and gives http its hooks.
 * Cheap reads and the fast refusals are answered on the I/O thread that received
 * the request; a purchase that may succeed, pay and cancel are deferred: the
 * connection is suspended, the call queued to a worker, then to the store's
 * writer (group commit), and answered after COMMIT.
 */
#ifndef FLASHSALE_API_H
#define FLASHSALE_API_H

#include "config.h"
#include "http.h"
#include "inventory.h"
#include "store.h"

struct api;

/* Starts the worker pool.  cfg, inv and store are borrowed and must outlive the
 * api.  NULL on failure. */
struct api *api_new(const struct config *cfg, struct inventory *inv, struct store *store);

/* A random admin token, 32 hex digits (size >= 33): what api_new makes when
 * --admin-token is empty (proc.c makes it once for all processes).  0 or -1. */
int api_make_token(char *out, size_t size);

/* The hooks to give http_start(). */
struct http_hooks api_http_hooks(struct api *a);

/* Queues one sweep of expired unpaid orders, unless one is still running or no
 * sale has a payment window.  Called by the main thread every --sweep-ms. */
void api_sweep(struct api *a);

/* Refuses new purchases (503) and runs every queued one to the store; once the
 * store has answered them (http_stop waits for that), the store can be closed.
 * The api keeps answering reads until api_free. */
void api_drain(struct api *a);

void api_free(struct api *a);

#endif

/* admin — the operator's endpoints (create a sale, reset it) and the public audit,
 * all off the purchase path (the design is at the top of admin.c).
 *
 * Handlers of api.c's command table (see call.h): the table has checked the
 * bearer token (401) and that admin endpoints are on, and the body's type and
 * size.  Each queues its work to the admin thread, never to a purchase worker,
 * or answers an audit from its last run.
 */
#ifndef FLASHSALE_ADMIN_H
#define FLASHSALE_ADMIN_H

#include <stdint.h>

#include "call.h"

/* The admin thread: NULL when out of memory.  env is borrowed and must outlive
 * it.  Drained after the purchase workers (a reset may wait for their
 * purchases), freed last: every parked audit is answered by then. */
struct admin *admin_new(const struct call_env *env);
void admin_drain(struct admin *ad);
void admin_free(struct admin *ad);

void admin_create(const struct call_env *env, struct http_request *r, int64_t id); /* POST /sales */
void admin_reset(const struct call_env *env, struct http_request *r, int64_t sale_id);
void admin_audit(const struct call_env *env, struct http_request *r, int64_t sale_id);

#endif

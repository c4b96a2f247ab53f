/* orders — an order after its purchase: GET /api/v1/orders/{id}, pay and cancel
 * within the payment window, and the sweeper that expires unpaid orders.  Every
 * request needs the order's token (X-Order-Token, checked by api.c's command
 * table before these run).  Pay and cancel run on the writer, in the group
 * commit with the purchases; memory follows in their done(), the answer is
 * rendered on the I/O thread. */
#ifndef FLASHSALE_ORDERS_H
#define FLASHSALE_ORDERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "call.h"

void orders_get(const struct call_env *env, struct http_request *r, int64_t order_id);
/* Pay or cancel (the route says which); api.c checked 404, 415 and 413. */
void orders_pay(const struct call_env *env, struct http_request *r, int64_t order_id);
void orders_cancel(const struct call_env *env, struct http_request *r, int64_t order_id);

/* Queues one sweep of expired unpaid orders to the writer unless *busy says one
 * is still running (the flag is cleared when it ends), or no sale has a window. */
void orders_sweep(const struct call_env *env, _Atomic bool *busy);

#endif

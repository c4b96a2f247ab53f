/* purchase — POST /api/v1/sales/{id}/orders, the hot path, step by step (checks
 * in the documented order):
 *   I/O thread   (api.c: route, per-IP rate, sale exists 404, Content-Type 415,
 *                body size 413) -> JSON (400) -> Idempotency-Key (400) -> user's
 *                token (401) and rate (429) -> window (409) -> per-user limit (409)
 *                -> stock (409) -> admitted (not resetting) -> a queue slot (else
 *                503) -> suspend
 *   worker       waited too long? (503) -> Idempotency-Key seen? (replay)
 *                -> inventory_reserve (strategy) -> to the writer
 *   writer       BEGIN, guarded UPDATE + INSERT for each purchase, COMMIT
 *   writer       inventory_follow: commit or release the reservation in memory
 *                (with --model processes: in the writer process, the result then
 *                returning to the worker's link thread); purchase_done
 *   I/O thread   purchase_answer: the 201 (or refusal) rendered, then resumed
 * With a strategy whose SQL decides (--inventory sqlite) the worker runs the
 * transaction itself instead.
 *
 * Retries with the same Idempotency-Key while the first try is in flight follow
 * that try and get its answer (struct purchase_keys, shared by every worker).
 * With --model processes a try in flight in another process is known by a small
 * table in shared memory: a retry waits (at most its queue timeout) for that try
 * to end, then finds its order by the key.
 */
#ifndef FLASHSALE_PURCHASE_H
#define FLASHSALE_PURCHASE_H

#include <stdint.h>

#include "call.h"

/* The table of purchases in flight by key; NULL when out of memory. */
struct purchase_keys *purchase_keys_new(void);
void purchase_keys_free(struct purchase_keys *k);

/* The handler (api.c checked the sale exists and the body's type and size). */
void purchase_create(const struct call_env *env, struct http_request *r, int64_t sale_id);

#endif

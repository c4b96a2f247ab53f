/* payload — parses and validates request bodies (JSON via jansson).
 *
 * Pure functions of (bytes, length): no I/O, no shared state, so they are unit-
 * tested by table and fuzzed.  On failure they return OUTCOME_INVALID and write a
 * message naming the offending field into msg.  Outputs are plain structs the
 * caller owns; nothing points into the JSON after return.
 */
#ifndef FLASHSALE_PAYLOAD_H
#define FLASHSALE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

#define PAYLOAD_USER_MAX 64     /* bytes of UTF-8 in a user id */
#define PAYLOAD_NAME_MAX 200    /* bytes of UTF-8 in a sale name */
#define PAYLOAD_KEY_MAX 128     /* bytes in an Idempotency-Key */

struct payload_order {
    char user_id[PAYLOAD_USER_MAX + 1];
    int64_t quantity;
};

struct payload_sale {
    char name[PAYLOAD_NAME_MAX + 1];
    int64_t stock;
    int64_t per_user_limit;
    int64_t starts_at;      /* unix seconds, 0 = none */
    int64_t ends_at;        /* unix seconds, 0 = none */
    int64_t payment_window; /* seconds, 0 = orders are final at once */
};

/* {"user_id": str, "quantity"?: int >= 1}.  Unknown keys are refused. */
enum outcome payload_order_parse(const char *body, size_t len, struct payload_order *out,
                                 char *msg, size_t msg_size);

/* {"user_id"?: str} — the body of pay and cancel; user_id is "" when absent or
 * null (the order token is the proof; a user id given must be the order's). */
enum outcome payload_user_parse(const char *body, size_t len, char *user_id, char *msg,
                                size_t msg_size);

/* {"name", "stock", "per_user_limit"?, "starts_at"?, "ends_at"?, "payment_window"?}. */
enum outcome payload_sale_parse(const char *body, size_t len, struct payload_sale *out, char *msg,
                                size_t msg_size);

/* True when s (len bytes, valid UTF-8) has no control character (C0, DEL, C1). */
bool payload_text_ok(const char *s, size_t len);

/* True for an Idempotency-Key: 1..128 bytes of printable ASCII. */
bool payload_key_ok(const char *key);

/* True for a Content-Type the API accepts: absent, application/json, with an
 * optional charset=utf-8 parameter (case-insensitive). */
bool payload_content_type_ok(const char *content_type);

#endif

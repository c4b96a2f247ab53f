/* ordertoken — the capability that names an order to its buyer.
 *
 * Order ids count up from 1, so an id proves nothing.  Every order also has a
 * token, the first 128 bits of HMAC-SHA256(secret, decimal order id) as 32
 * lowercase hex characters: the purchase answer gives it to the buyer, and
 * reading, paying or cancelling the order asks for it (X-Order-Token).  Derived,
 * not stored: no column and no write per purchase.  The secret is 32 random
 * bytes the database keeps (store_order_secret), so every node and every
 * restart makes the same tokens.  A leaf module (hmac only).
 */
#ifndef FLASHSALE_ORDERTOKEN_H
#define FLASHSALE_ORDERTOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "hmac.h"

#define ORDERTOKEN_SECRET_LEN 32
#define ORDERTOKEN_LEN 32 /* hex characters */

struct ordertoken {
    struct hmac_sha256_key key;
};

/* Prepares the key from the database's secret (the caller may wipe it after). */
void ordertoken_init(struct ordertoken *t, const uint8_t secret[ORDERTOKEN_SECRET_LEN]);

/* The token of order id into out (ORDERTOKEN_LEN characters and a NUL). */
void ordertoken_make(const struct ordertoken *t, int64_t id, char out[ORDERTOKEN_LEN + 1]);

/* True when given (NULL = none sent) is order id's token.  The comparison takes
 * the same time wherever the two differ. */
bool ordertoken_check(const struct ordertoken *t, int64_t id, const char *given);

#endif

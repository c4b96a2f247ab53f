/* hmac — SHA-256 and HMAC-SHA-256 (FIPS 180-4, RFC 2104), for signed purchase
 * tokens.  Small and dependency-free; checked against the RFC 4231 vectors in
 * tests/test_hmac.c.  A leaf module.
 */
#ifndef FLASHSALE_HMAC_H
#define FLASHSALE_HMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HMAC_SHA256_LEN 32

void hmac_sha256_digest(const void *data, size_t len, uint8_t out[HMAC_SHA256_LEN]);

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[HMAC_SHA256_LEN]);

/* A key with its HMAC pads already hashed: hmac_sha256_keyed() then costs two
 * SHA-256 blocks for a short message instead of four (the order tokens are made
 * on every purchase answer). */
struct hmac_sha256_key {
    uint32_t inner[8], outer[8];
};

void hmac_sha256_key_init(struct hmac_sha256_key *k, const void *key, size_t key_len);

/* The same bytes as hmac_sha256() with the key k was made from. */
void hmac_sha256_keyed(const struct hmac_sha256_key *k, const void *data, size_t len,
                       uint8_t out[HMAC_SHA256_LEN]);

/* Compares n bytes in time that does not depend on where they differ. */
bool hmac_equal(const void *a, const void *b, size_t n);

#endif

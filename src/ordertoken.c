/* ordertoken — see ordertoken.h. */
#include "ordertoken.h"

#include <string.h>

void ordertoken_init(struct ordertoken *t, const uint8_t secret[ORDERTOKEN_SECRET_LEN])
{
    hmac_sha256_key_init(&t->key, secret, ORDERTOKEN_SECRET_LEN);
}

void ordertoken_make(const struct ordertoken *t, int64_t id, char out[ORDERTOKEN_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    char num[24], *p = num + sizeof num;
    uint64_t u = id < 0 ? 0 - (uint64_t)id : (uint64_t)id;
    do *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (id < 0) *--p = '-';
    uint8_t mac[HMAC_SHA256_LEN];
    hmac_sha256_keyed(&t->key, p, (size_t)(num + sizeof num - p), mac);
    for (int i = 0; i < ORDERTOKEN_LEN / 2; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 15];
    }
    out[ORDERTOKEN_LEN] = 0;
}

bool ordertoken_check(const struct ordertoken *t, int64_t id, const char *given)
{
    /* The length is no secret: every token has the same one. */
    if (!given || strnlen(given, ORDERTOKEN_LEN + 1) != ORDERTOKEN_LEN) return false;
    char want[ORDERTOKEN_LEN + 1];
    ordertoken_make(t, id, want);
    return hmac_equal(want, given, ORDERTOKEN_LEN);
}

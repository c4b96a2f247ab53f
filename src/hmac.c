/* hmac — see hmac.h. */
#include "hmac.h"

#include <string.h>

struct hmac_sha256_ctx {
    uint32_t h[8];
    uint8_t block[64];
    size_t fill;
    uint64_t bytes;
};

static const uint32_t hmac_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t hmac_ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void hmac_block(struct hmac_sha256_ctx *c, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = hmac_ror(w[i - 15], 7) ^ hmac_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = hmac_ror(w[i - 2], 17) ^ hmac_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    /* Eight named words, not an array shifted each round: the compiler keeps them
     * in registers (the shifting array cost about half of an order token). */
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6],
             h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = hmac_ror(e, 6) ^ hmac_ror(e, 11) ^ hmac_ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + s1 + ch + hmac_k[i] + w[i];
        uint32_t s0 = hmac_ror(a, 2) ^ hmac_ror(a, 13) ^ hmac_ror(a, 22);
        uint32_t maj = (a & b) ^ (a & cc) ^ (b & cc);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + s0 + maj;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

static void hmac_init(struct hmac_sha256_ctx *c)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->fill = 0;
    c->bytes = 0;
}

static void hmac_update(struct hmac_sha256_ctx *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->bytes += len;
    while (len) {
        size_t n = 64 - c->fill < len ? 64 - c->fill : len;
        memcpy(c->block + c->fill, p, n);
        c->fill += n;
        p += n;
        len -= n;
        if (c->fill == 64) {
            hmac_block(c, c->block);
            c->fill = 0;
        }
    }
}

static void hmac_final(struct hmac_sha256_ctx *c, uint8_t out[HMAC_SHA256_LEN])
{
    uint64_t bits = c->bytes * 8;
    c->block[c->fill++] = 0x80;
    if (c->fill > 56) { /* no room for the length: one more block */
        memset(c->block + c->fill, 0, 64 - c->fill);
        hmac_block(c, c->block);
        c->fill = 0;
    }
    memset(c->block + c->fill, 0, 56 - c->fill);
    for (int i = 0; i < 8; i++) c->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    hmac_block(c, c->block);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void hmac_sha256_digest(const void *data, size_t len, uint8_t out[HMAC_SHA256_LEN])
{
    struct hmac_sha256_ctx c;
    hmac_init(&c);
    hmac_update(&c, data, len);
    hmac_final(&c, out);
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[HMAC_SHA256_LEN])
{
    uint8_t k[64] = {0}, pad[64], inner[HMAC_SHA256_LEN];
    if (key_len > 64) hmac_sha256_digest(key, key_len, k);
    else memcpy(k, key, key_len);
    struct hmac_sha256_ctx c;
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    hmac_init(&c);
    hmac_update(&c, pad, 64);
    hmac_update(&c, data, len);
    hmac_final(&c, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    hmac_init(&c);
    hmac_update(&c, pad, 64);
    hmac_update(&c, inner, sizeof inner);
    hmac_final(&c, out);
}

void hmac_sha256_key_init(struct hmac_sha256_key *k, const void *key, size_t key_len)
{
    uint8_t raw[64] = {0}, pad[64];
    if (key_len > 64) hmac_sha256_digest(key, key_len, raw);
    else memcpy(raw, key, key_len);
    struct hmac_sha256_ctx c;
    for (int i = 0; i < 64; i++) pad[i] = raw[i] ^ 0x36;
    hmac_init(&c);
    hmac_update(&c, pad, 64);
    memcpy(k->inner, c.h, sizeof k->inner);
    for (int i = 0; i < 64; i++) pad[i] = raw[i] ^ 0x5c;
    hmac_init(&c);
    hmac_update(&c, pad, 64);
    memcpy(k->outer, c.h, sizeof k->outer);
    memset(raw, 0, sizeof raw);
    memset(pad, 0, sizeof pad);
}

void hmac_sha256_keyed(const struct hmac_sha256_key *k, const void *data, size_t len,
                       uint8_t out[HMAC_SHA256_LEN])
{
    uint8_t inner[HMAC_SHA256_LEN];
    struct hmac_sha256_ctx c = {.fill = 0, .bytes = 64}; /* one block of pad already hashed */
    memcpy(c.h, k->inner, sizeof c.h);
    hmac_update(&c, data, len);
    hmac_final(&c, inner);
    c = (struct hmac_sha256_ctx){.fill = 0, .bytes = 64};
    memcpy(c.h, k->outer, sizeof c.h);
    hmac_update(&c, inner, sizeof inner);
    hmac_final(&c, out);
}

bool hmac_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) diff |= x[i] ^ y[i];
    return diff == 0;
}

/* hash — FNV-1a, the one string hash of the program (the ledger's stripes, the rate
 * limiter's sets, the Idempotency-Key table).  Header only: a leaf, no state.
 * Not for anything an attacker must not steer: tables that hash client input bound
 * their chains or sets instead. */
#ifndef FLASHSALE_HASH_H
#define FLASHSALE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_OFFSET 1469598103934665603u
#define HASH_FNV_PRIME 1099511628211u

/* h continued over len bytes of data. */
static inline uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * HASH_FNV_PRIME;
    return h;
}

/* h continued over a NUL-terminated string, then a separator byte, so that "ab"+"c"
 * and "a"+"bc" hash apart. */
static inline uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * HASH_FNV_PRIME;
    return (h ^ 0xff) * HASH_FNV_PRIME;
}

/* The high bits folded into the low ones, for tables indexed by the low bits. */
static inline uint64_t hash_fold(uint64_t h) { return h ^ (h >> 32); }

#endif

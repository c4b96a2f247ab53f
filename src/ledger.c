/* ledger — see ledger.h.
 *
 * 256 stripes, each a chained hash table with its own mutex and its own growing
 * bucket array.  The stripe is picked by the top bits of the key's hash and the
 * bucket by the low bits, so growth of one stripe never touches another.
 */
#include "ledger.h"
#include "hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LEDGER_STRIPES 256

struct ledger_entry {
    struct ledger_entry *next;
    uint64_t hash;
    int64_t sale;
    int64_t units;
    char user[];
};

struct ledger_stripe {
    pthread_mutex_t mu;
    struct ledger_entry **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first insert */
    size_t count;
} __attribute__((aligned(64)));

struct ledger {
    struct ledger_stripe stripes[LEDGER_STRIPES];
};

static uint64_t ledger_hash(int64_t sale, const char *user)
{
    uint64_t h = hash_str(HASH_FNV_OFFSET ^ (uint64_t)sale * 0x9e3779b97f4a7c15u, user);
    return h ^ (h >> 29);
}

struct ledger *ledger_new(void)
{
    struct ledger *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    for (int i = 0; i < LEDGER_STRIPES; i++) pthread_mutex_init(&l->stripes[i].mu, NULL);
    return l;
}

void ledger_free(struct ledger *l)
{
    if (!l) return;
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        struct ledger_stripe *s = &l->stripes[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (struct ledger_entry *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(l);
}

static struct ledger_stripe *ledger_stripe(struct ledger *l, uint64_t hash)
{
    return &l->stripes[hash >> 56];
}

/* Caller holds s->mu. */
static struct ledger_entry *ledger_find(struct ledger_stripe *s, uint64_t hash, int64_t sale,
                                        const char *user)
{
    if (!s->nbuckets) return NULL;
    for (struct ledger_entry *e = s->buckets[hash & (s->nbuckets - 1)]; e; e = e->next)
        if (e->hash == hash && e->sale == sale && strcmp(e->user, user) == 0) return e;
    return NULL;
}

/* Caller holds s->mu.  Returns NULL when out of memory. */
static struct ledger_entry *ledger_insert(struct ledger_stripe *s, uint64_t hash, int64_t sale,
                                          const char *user)
{
    if (s->count >= s->nbuckets) {
        size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
        struct ledger_entry **b = calloc(n, sizeof *b);
        if (!b) return NULL;
        for (size_t i = 0; i < s->nbuckets; i++) {
            for (struct ledger_entry *e = s->buckets[i], *next; e; e = next) {
                next = e->next;
                e->next = b[e->hash & (n - 1)];
                b[e->hash & (n - 1)] = e;
            }
        }
        free(s->buckets);
        s->buckets = b;
        s->nbuckets = n;
    }
    size_t len = strlen(user);
    struct ledger_entry *e = malloc(sizeof *e + len + 1);
    if (!e) return NULL;
    e->hash = hash;
    e->sale = sale;
    e->units = 0;
    memcpy(e->user, user, len + 1);
    e->next = s->buckets[hash & (s->nbuckets - 1)];
    s->buckets[hash & (s->nbuckets - 1)] = e;
    s->count++;
    return e;
}

/* Caller holds s->mu. */
static void ledger_remove(struct ledger_stripe *s, struct ledger_entry *gone)
{
    for (struct ledger_entry **p = &s->buckets[gone->hash & (s->nbuckets - 1)]; *p; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            s->count--;
            free(gone);
            return;
        }
    }
}

int64_t ledger_units(struct ledger *l, int64_t sale, const char *user)
{
    uint64_t h = ledger_hash(sale, user);
    struct ledger_stripe *s = ledger_stripe(l, h);
    pthread_mutex_lock(&s->mu);
    struct ledger_entry *e = ledger_find(s, h, sale, user);
    int64_t units = e ? e->units : 0;
    pthread_mutex_unlock(&s->mu);
    return units;
}

enum ledger_result ledger_reserve(struct ledger *l, int64_t sale, const char *user, int64_t q,
                                  int64_t limit, bool (*take)(void *ctx), void *ctx)
{
    uint64_t h = ledger_hash(sale, user);
    struct ledger_stripe *s = ledger_stripe(l, h);
    enum ledger_result r = LEDGER_REFUSED;
    pthread_mutex_lock(&s->mu);
    struct ledger_entry *e = ledger_find(s, h, sale, user);
    int64_t units = e ? e->units : 0;
    if (q > limit || units > limit - q) {
        r = LEDGER_OVER_LIMIT;
    } else if (!e && !(e = ledger_insert(s, h, sale, user))) {
        r = LEDGER_NO_MEMORY; /* checked before take(), so no stock is claimed */
    } else if (take(ctx)) {
        e->units += q;
        r = LEDGER_OK;
    } else if (e->units == 0) {
        ledger_remove(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

bool ledger_add(struct ledger *l, int64_t sale, const char *user, int64_t delta)
{
    uint64_t h = ledger_hash(sale, user);
    struct ledger_stripe *s = ledger_stripe(l, h);
    bool ok = true;
    pthread_mutex_lock(&s->mu);
    struct ledger_entry *e = ledger_find(s, h, sale, user);
    if (!e && delta > 0) e = ledger_insert(s, h, sale, user);
    if (e) {
        e->units += delta;
        if (e->units <= 0) ledger_remove(s, e);
    } else {
        ok = delta <= 0;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

void ledger_clear_sale(struct ledger *l, int64_t sale)
{
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        struct ledger_stripe *s = &l->stripes[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (struct ledger_entry **p = &s->buckets[b]; *p;) {
                struct ledger_entry *e = *p;
                if (e->sale == sale) {
                    *p = e->next;
                    s->count--;
                    free(e);
                } else {
                    p = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

int64_t ledger_over_limit(struct ledger *l, int64_t sale, int64_t limit)
{
    int64_t over = 0;
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        struct ledger_stripe *s = &l->stripes[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct ledger_entry *e = s->buckets[b]; e; e = e->next)
                over += e->sale == sale && e->units > limit;
        pthread_mutex_unlock(&s->mu);
    }
    return over;
}

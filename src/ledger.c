/* ledger — see ledger.h.
 *
 * 256 stripes, each a chained hash table with its own mutex and its own growing
 * bucket array.  The stripe is picked by the top bits of the key's hash and the
 * bucket by the low bits, so growth of one stripe never touches another.
 *
 * In shared memory (--model processes) nodes cannot come from malloc: each stripe
 * is instead a fixed slice of one open-addressing table sized at start, as
 * PostgreSQL sizes its lock table, with robust process-shared locks.  A slot is
 * written before it is marked used, so a process killed mid-insert leaves at most
 * an unused slot behind.
 */
#include "ledger.h"
#include "hash.h"
#include "shm.h"

#include <pthread.h>
#include <stdatomic.h>
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

enum ledger_slot_state { LEDGER_EMPTY, LEDGER_USED, LEDGER_GONE };

/* One entry of the fixed table. */
struct ledger_slot {
    uint64_t hash;
    int64_t sale;
    int64_t units;
    _Atomic uint8_t state; /* enum ledger_slot_state; set last */
    char user[LEDGER_USER_MAX + 1];
};

struct ledger_stripe {
    pthread_mutex_t mu;
    struct ledger_entry **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first insert */
    size_t count;
    struct ledger_slot *slots; /* fixed: this stripe's slice (a power of two), else NULL */
    size_t touched;            /* fixed: slots ever used since the last full clear */
} __attribute__((aligned(64)));

struct ledger {
    size_t per_stripe; /* fixed: slots per stripe; 0 = chained */
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

struct ledger *ledger_new_fixed(size_t entries)
{
    size_t per = 16;
    while (per * LEDGER_STRIPES < entries) per *= 2;
    struct ledger *l = shm_calloc(1, sizeof *l);
    struct ledger_slot *slots = l ? shm_calloc(per * LEDGER_STRIPES, sizeof *slots) : NULL;
    if (!slots) {
        shm_free(l);
        return NULL;
    }
    l->per_stripe = per;
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        shm_mutex_init(&l->stripes[i].mu);
        l->stripes[i].slots = slots + (size_t)i * per;
    }
    return l;
}

void ledger_free(struct ledger *l)
{
    if (!l) return;
    if (l->per_stripe) {
        if (!shm_active()) {
            free(l->stripes[0].slots);
            for (int i = 0; i < LEDGER_STRIPES; i++) pthread_mutex_destroy(&l->stripes[i].mu);
            free(l);
        }
        return;
    }
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

/* ---- the fixed table (caller holds s->mu) ------------------------------------- */

/* The slot holding (sale, user), or NULL; *free_slot (when not NULL) gets the first
 * reusable slot met on the way, NULL when the slice is full. */
static struct ledger_slot *ledger_slot_find(const struct ledger *l, struct ledger_stripe *s, uint64_t hash,
                                            int64_t sale, const char *user, struct ledger_slot **free_slot)
{
    size_t mask = l->per_stripe - 1;
    if (free_slot) *free_slot = NULL;
    for (size_t i = 0, at = hash & mask; i <= mask; i++, at = (at + 1) & mask) {
        struct ledger_slot *e = &s->slots[at];
        uint8_t st = atomic_load_explicit(&e->state, memory_order_relaxed);
        if (st == LEDGER_EMPTY) {
            if (free_slot && !*free_slot) *free_slot = e;
            return NULL;
        }
        if (st == LEDGER_GONE) {
            if (free_slot && !*free_slot) *free_slot = e;
            continue;
        }
        if (e->hash == hash && e->sale == sale && strcmp(e->user, user) == 0) return e;
    }
    return NULL;
}

static struct ledger_slot *ledger_slot_insert(struct ledger_stripe *s, struct ledger_slot *e, uint64_t hash,
                                              int64_t sale, const char *user)
{
    if (!e || strlen(user) > LEDGER_USER_MAX) return NULL;
    if (atomic_load_explicit(&e->state, memory_order_relaxed) == LEDGER_EMPTY) s->touched++;
    e->hash = hash;
    e->sale = sale;
    e->units = 0;
    strcpy(e->user, user);
    atomic_store_explicit(&e->state, LEDGER_USED, memory_order_release);
    return e;
}

/* Units of the entry; units 0 frees its slot. */
static void ledger_slot_set(struct ledger_slot *e, int64_t units)
{
    e->units = units;
    if (units <= 0) atomic_store_explicit(&e->state, LEDGER_GONE, memory_order_release);
}

static void ledger_lock(const struct ledger *l, struct ledger_stripe *s)
{
    if (l->per_stripe) shm_lock(&s->mu);
    else pthread_mutex_lock(&s->mu);
}

/* ---- the interface ------------------------------------------------------------ */

int64_t ledger_units(struct ledger *l, int64_t sale, const char *user)
{
    uint64_t h = ledger_hash(sale, user);
    struct ledger_stripe *s = ledger_stripe(l, h);
    int64_t units = 0;
    ledger_lock(l, s);
    if (l->per_stripe) {
        struct ledger_slot *e = ledger_slot_find(l, s, h, sale, user, NULL);
        units = e ? e->units : 0;
    } else {
        struct ledger_entry *e = ledger_find(s, h, sale, user);
        units = e ? e->units : 0;
    }
    pthread_mutex_unlock(&s->mu);
    return units;
}

/* The fixed table's reserve (see ledger_reserve); caller holds s->mu. */
static enum ledger_result ledger_slot_reserve(struct ledger *l, struct ledger_stripe *s, uint64_t h, int64_t sale,
                                              const char *user, int64_t q, int64_t limit, bool (*take)(void *),
                                              void *ctx)
{
    struct ledger_slot *room, *e = ledger_slot_find(l, s, h, sale, user, &room);
    int64_t units = e ? e->units : 0;
    if (q > limit || units > limit - q) return LEDGER_OVER_LIMIT;
    if (!e && !(room && strlen(user) <= LEDGER_USER_MAX)) return LEDGER_NO_MEMORY; /* before take() */
    if (!take(ctx)) return LEDGER_REFUSED;
    if (!e && !(e = ledger_slot_insert(s, room, h, sale, user))) return LEDGER_NO_MEMORY; /* checked above */
    ledger_slot_set(e, e->units + q);
    return LEDGER_OK;
}

enum ledger_result ledger_reserve(struct ledger *l, int64_t sale, const char *user, int64_t q,
                                  int64_t limit, bool (*take)(void *ctx), void *ctx)
{
    uint64_t h = ledger_hash(sale, user);
    struct ledger_stripe *s = ledger_stripe(l, h);
    enum ledger_result r = LEDGER_REFUSED;
    ledger_lock(l, s);
    if (l->per_stripe) {
        r = ledger_slot_reserve(l, s, h, sale, user, q, limit, take, ctx);
        pthread_mutex_unlock(&s->mu);
        return r;
    }
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
    ledger_lock(l, s);
    if (l->per_stripe) {
        struct ledger_slot *room, *e = ledger_slot_find(l, s, h, sale, user, &room);
        if (!e && delta > 0) e = ledger_slot_insert(s, room, h, sale, user);
        if (e) ledger_slot_set(e, e->units + delta);
        else ok = delta <= 0;
        pthread_mutex_unlock(&s->mu);
        return ok;
    }
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

/* Entries of the sale (every sale when sale is 0) leave the table. */
static void ledger_clear(struct ledger *l, int64_t sale)
{
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        struct ledger_stripe *s = &l->stripes[i];
        ledger_lock(l, s);
        /* A slice never used is never read: its pages stay untouched. */
        for (size_t b = 0; s->touched && b < l->per_stripe; b++) {
            struct ledger_slot *e = &s->slots[b];
            if (atomic_load_explicit(&e->state, memory_order_relaxed) == LEDGER_USED && (!sale || e->sale == sale))
                ledger_slot_set(e, 0);
        }
        if (!sale && s->touched) { /* no tombstones left */
            memset(s->slots, 0, l->per_stripe * sizeof *s->slots);
            s->touched = 0;
        }
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (struct ledger_entry **p = &s->buckets[b]; *p;) {
                struct ledger_entry *e = *p;
                if (!sale || e->sale == sale) {
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

void ledger_clear_sale(struct ledger *l, int64_t sale) { ledger_clear(l, sale); }

void ledger_clear_all(struct ledger *l) { ledger_clear(l, 0); }

int64_t ledger_over_limit(struct ledger *l, int64_t sale, int64_t limit)
{
    int64_t over = 0;
    for (int i = 0; i < LEDGER_STRIPES; i++) {
        struct ledger_stripe *s = &l->stripes[i];
        ledger_lock(l, s);
        for (size_t b = 0; s->touched && b < l->per_stripe; b++) {
            const struct ledger_slot *e = &s->slots[b];
            over += atomic_load_explicit(&e->state, memory_order_relaxed) == LEDGER_USED && e->sale == sale &&
                    e->units > limit;
        }
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct ledger_entry *e = s->buckets[b]; e; e = e->next)
                over += e->sale == sale && e->units > limit;
        pthread_mutex_unlock(&s->mu);
    }
    return over;
}

/* ledger — how many units each user holds in each sale, in memory.
 *
 * A hash table split into independently locked stripes: two users rarely share a
 * stripe, so buyers do not wait for each other.  Keys are (sale id, user id); user
 * ids are copied in.  Thread-safe (and process-safe when fixed, in shared memory).
 * A leaf module but for shm.h.
 */
#ifndef FLASHSALE_LEDGER_H
#define FLASHSALE_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ledger;

enum ledger_result { LEDGER_OK, LEDGER_OVER_LIMIT, LEDGER_REFUSED, LEDGER_NO_MEMORY };

#define LEDGER_USER_MAX 64 /* bytes of a user id the fixed table keeps (payload.h's limit) */

/* Returns NULL when out of memory.  Free with ledger_free(). */
struct ledger *ledger_new(void);

/* A fixed table of at least `entries` (sale, user) pairs from shm_calloc (shm.h),
 * for --model processes: LEDGER_NO_MEMORY once a pair finds its slice full.  NULL
 * when the memory is not there. */
struct ledger *ledger_new_fixed(size_t entries);
void ledger_free(struct ledger *l);

/* The user's units in the sale (0 when unknown). */
int64_t ledger_units(struct ledger *l, int64_t sale, const char *user);

/* Atomically for this user: if units + q > limit, LEDGER_OVER_LIMIT; else calls
 * take(ctx) (which may claim stock) and, if it returned true, adds q and returns
 * LEDGER_OK, else LEDGER_REFUSED (LEDGER_NO_MEMORY, without calling take, when a
 * new entry cannot be allocated).  take runs under the user's stripe lock: keep it
 * short and never call back into the ledger from it. */
enum ledger_result ledger_reserve(struct ledger *l, int64_t sale, const char *user, int64_t q,
                                  int64_t limit, bool (*take)(void *ctx), void *ctx);

/* Adds delta (may be negative) to the user's units; an entry reaching 0 is dropped.
 * Returns false only when out of memory. */
bool ledger_add(struct ledger *l, int64_t sale, const char *user, int64_t delta);

/* Drops every entry of the sale (a reset), or of every sale (a rebuild). */
void ledger_clear_sale(struct ledger *l, int64_t sale);
void ledger_clear_all(struct ledger *l);

/* Number of users in the sale holding more than limit units. */
int64_t ledger_over_limit(struct ledger *l, int64_t sale, int64_t limit);

#endif

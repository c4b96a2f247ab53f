/* clock — the two clocks the service uses.
 *
 * Wall time (clock_wall_ms) stamps orders and decides sale windows; the monotonic
 * clock (clock_mono_ns) measures latencies and deadlines, immune to clock steps.
 */
#ifndef FLASHSALE_CLOCK_H
#define FLASHSALE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t clock_mono_ns(void);

/* Writes unix milliseconds as RFC 3339 UTC ("2026-11-25T12:00:00.123Z") into buf
 * (at least 25 bytes).  Returns the length written. */
size_t clock_rfc3339(int64_t unix_ms, char *buf, size_t size);

#endif

/* clock — see clock.h. */
#include "clock.h"

#include <stdio.h>
#include <time.h>

int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes n digits of v, zero-padded, and returns the end. */
static char *clock_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + n;
}

/* Calendar arithmetic instead of gmtime_r(), which takes glibc's time-zone lock on
 * every call: every purchase answer formats its time.  Days to a civil date after
 * H. Hinnant's days_from_civil inverse (proleptic Gregorian, exact for 1970..9999). */
size_t clock_rfc3339(int64_t unix_ms, char *buf, size_t size)
{
    if (unix_ms >= 0 && unix_ms < INT64_C(253402300800000) && size > 24) {
        int64_t secs = unix_ms / 1000, days = secs / 86400, rem = secs % 86400;
        int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
        unsigned day = (unsigned)(doy - (153 * mp + 2) / 5 + 1), month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
        unsigned year = (unsigned)(yoe + era * 400 + (month <= 2));
        char *p = clock_digits(buf, year, 4);
        *p++ = '-';
        p = clock_digits(p, month, 2);
        *p++ = '-';
        p = clock_digits(p, day, 2);
        *p++ = 'T';
        p = clock_digits(p, (unsigned)(rem / 3600), 2);
        *p++ = ':';
        p = clock_digits(p, (unsigned)(rem / 60 % 60), 2);
        *p++ = ':';
        p = clock_digits(p, (unsigned)(rem % 60), 2);
        *p++ = '.';
        p = clock_digits(p, (unsigned)(unix_ms % 1000), 3);
        *p++ = 'Z';
        *p = 0;
        return (size_t)(p - buf);
    }
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03dZ", (int)(unix_ms % 1000));
    return n + (m > 0 ? (size_t)m : 0);
}

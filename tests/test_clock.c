/* test_clock — clock_rfc3339's calendar arithmetic against glibc's gmtime_r. */
#include <stdio.h>
#include <time.h>

#include "clock.h"
#include "unit.h"

/* What the arithmetic must agree with: gmtime_r + strftime. */
static void reference(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
}

static void test_known_values(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } table[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {999, "1970-01-01T00:00:00.999Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},  /* leap day of a 400-year leap year */
        {4107456000000, "2100-02-28T00:00:00.000Z"}, /* 2100 is not a leap year */
        {4107542400000, "2100-03-01T00:00:00.000Z"},
        {1795617753123, "2026-11-25T14:42:33.123Z"},
        {253402300799999, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char got[48];
        size_t n = clock_rfc3339(table[i].ms, got, sizeof got);
        CHECK_EQ_STR(got, table[i].want);
        CHECK_EQ_INT(n, strlen(table[i].want));
    }
}

/* Every day from 1970 to 2200 at a changing time of day, against the reference. */
static void test_agrees_with_gmtime(void)
{
    int bad = 0;
    for (int64_t day = 0; day < 84000; day++) {
        int64_t ms = day * 86400000 + (day * 7919 % 86400) * 1000 + day % 1000;
        char got[48], want[48];
        clock_rfc3339(ms, got, sizeof got);
        reference(ms, want, sizeof want);
        if (strcmp(got, want) != 0 && bad++ < 3) CHECK_EQ_STR(got, want);
    }
    CHECK_EQ_INT(bad, 0);
}

static const struct unit_case cases[] = {
    {"known_values", test_known_values},
    {"agrees_with_gmtime", test_agrees_with_gmtime},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

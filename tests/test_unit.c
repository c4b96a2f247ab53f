/* test_unit — the harness itself: a failing check, a crash and a deadlock each fail their
 * own case, and the run goes on; no case sees what an earlier one left behind. */
#include <pthread.h>

#include "unit.h"

static int leftover; /* set by one case; a later case must not see it */

static void case_pass(void) { leftover = 42; }
static void case_check(void) { CHECK_EQ_INT(1 + 1, 3); }
static void case_crash(void) { abort(); }
static void case_deadlock(void)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    pthread_mutex_lock(&mu); /* a default mutex locked twice: waits forever */
}

/* Table: the case, the result it must give, and a word its reason must contain. */
static const struct {
    struct unit_case c;
    enum unit_result want;
    const char *why_has;
} harness_cases[] = {
    {{"pass", case_pass}, UNIT_PASS, ""},
    {{"check", case_check}, UNIT_FAIL, "test_unit.c:10: 1 + 1 == 2, expected 3"},
    {{"crash", case_crash}, UNIT_CRASH, "signal 6"},
    {{"deadlock", case_deadlock}, UNIT_TIMEOUT, "timed out"},
};

static void test_outcomes(void)
{
    for (size_t i = 0; i < sizeof harness_cases / sizeof harness_cases[0]; i++) {
        char why[600];
        enum unit_result got = unit_run_case(&harness_cases[i].c, 1.0, why, sizeof why);
        if (got != harness_cases[i].want || !strstr(why, harness_cases[i].why_has))
            UNIT_FAILF("case %s: result %d (%.200s), expected %d with \"%s\"",
                       harness_cases[i].c.name, (int)got, why, (int)harness_cases[i].want,
                       harness_cases[i].why_has);
    }
}

static void test_isolated(void)
{
    char why[600];
    CHECK(unit_run_case(&harness_cases[0].c, 5.0, why, sizeof why) == UNIT_PASS);
    CHECK_EQ_INT(leftover, 0); /* the child's write stayed in the child */
}

int main(void)
{
    return unit_run((const struct unit_case[]){
        {"outcomes_of_pass_fail_crash_deadlock", test_outcomes},
        {"cases_are_isolated", test_isolated},
        {NULL, NULL}});
}

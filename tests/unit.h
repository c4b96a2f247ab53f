/* unit — the smallest test harness that does the job.
 *
 * A test file defines test functions and lists them in a table:
 *
 *     static void test_something(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(f(), 3); }
 *     int main(void) { return unit_run((const struct unit_case[]){
 *         {"something", test_something}, {NULL, NULL}}); }
 *
 * Each case prints "PASS <file>:<name>" or "FAIL <file>:<name>: <why>"; tests/run.sh
 * counts those lines.  A failed CHECK ends its case (longjmp) but not the run.
 */
#ifndef FLASHSALE_TEST_UNIT_H
#define FLASHSALE_TEST_UNIT_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

struct unit_case {
    const char *name;
    void (*fn)(void);
};

static jmp_buf unit_jump;
static char unit_why[512];

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(unit_why, sizeof unit_why, "%s:%d: CHECK(%s)", __FILE__, __LINE__, #cond);    \
            longjmp(unit_jump, 1);                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            snprintf(unit_why, sizeof unit_why, "%s:%d: %s == %lld, expected %s == %lld",          \
                     __FILE__, __LINE__, #a, a_, #b, b_);                                          \
            longjmp(unit_jump, 1);                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            snprintf(unit_why, sizeof unit_why, "%s:%d: %s == \"%.200s\", expected \"%.200s\"",    \
                     __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");              \
            longjmp(unit_jump, 1);                                                                 \
        }                                                                                          \
    } while (0)

/* One case.  Only volatile copies live across setjmp, so no optimisation level
 * (and no -Wclobbered) can lose them. */
static inline int unit_run_one(const char *base_arg, const struct unit_case *case_arg)
{
    const char *volatile base = base_arg;
    const struct unit_case *volatile c = case_arg;
    unit_why[0] = 0;
    if (setjmp(unit_jump) == 0) {
        c->fn();
        printf("PASS %s:%s\n", base, c->name);
        fflush(stdout);
        return 0;
    }
    printf("FAIL %s:%s: %s\n", base, c->name, unit_why);
    fflush(stdout);
    return 1;
}

static inline int unit_run_named(const char *file, const struct unit_case *cases)
{
    int failed = 0;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    for (const struct unit_case *c = cases; c->name; c++) failed += unit_run_one(base, c);
    return failed ? 1 : 0;
}

#define unit_run(cases) unit_run_named(__FILE__, cases)

#endif

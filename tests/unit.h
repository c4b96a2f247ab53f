/* unit — the smallest test harness that does the job, and one that cannot hang.
 *
 * A test file defines test functions and lists them in a table:
 *
 *     static void test_something(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(f(), 3); }
 *     int main(void) { return unit_run((const struct unit_case[]){
 *         {"something", test_something}, {NULL, NULL}}); }
 *
 * Each case prints "PASS <file>:<name>" or "FAIL <file>:<name>: <why>"; tests/run.sh
 * counts those lines.
 *
 * As in libuv's runner, every case runs in a forked child under a deadline
 * (UNIT_TIMEOUT seconds, 60 by default): a failed CHECK, a crash, a sanitizer report
 * (its non-zero exit) or a deadlock fails that case alone, and the run goes on to the
 * next.  A case therefore sees the state main() set up before unit_run, never what an
 * earlier case left behind.  The parent never starts a thread, so fork() is safe
 * under the sanitizers too.
 */
#ifndef FLASHSALE_TEST_UNIT_H
#define FLASHSALE_TEST_UNIT_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct unit_case {
    const char *name;
    void (*fn)(void);
};

enum unit_result { UNIT_PASS, UNIT_FAIL, UNIT_CRASH, UNIT_TIMEOUT };

static int unit_why_fd = -1; /* the child's end of the pipe its failure reason goes to */

/* Ends the child's case as failed, with the reason for the parent to print. */
static inline void unit_fail(const char *why)
{
    if (unit_why_fd >= 0) {
        ssize_t n = write(unit_why_fd, why, strlen(why));
        (void)n;
    }
    exit(1); /* exit, not _exit: sanitizers report at exit */
}

#define UNIT_FAILF(...)                                                                            \
    do {                                                                                           \
        char why_[512];                                                                            \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
        unit_fail(why_);                                                                           \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) UNIT_FAILF("%s:%d: CHECK(%s)", __FILE__, __LINE__, #cond);                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            UNIT_FAILF("%s:%d: %s == %lld, expected %s == %lld", __FILE__, __LINE__, #a, a_, #b,   \
                       b_);                                                                        \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            UNIT_FAILF("%s:%d: %s == \"%.200s\", expected \"%.200s\"", __FILE__, __LINE__, #a,     \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                    \
    } while (0)

static inline double unit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs one case in a child, waits at most timeout_s, and says how it ended; the reason
 * of a failure goes to why (always NUL-terminated). */
static inline enum unit_result unit_run_case(const struct unit_case *c, double timeout_s,
                                             char *why, size_t why_size)
{
    int fds[2];
    why[0] = 0;
    if (pipe(fds) != 0) {
        snprintf(why, why_size, "pipe: %s", strerror(errno));
        return UNIT_FAIL;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_size, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return UNIT_FAIL;
    }
    if (pid == 0) {
        close(fds[0]);
        unit_why_fd = fds[1];
        c->fn();
        exit(0);
    }
    close(fds[1]);
    int status = 0;
    double deadline = unit_now() + timeout_s;
    long nap_us = 50;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) break;
        if (got < 0 && errno != EINTR) break;
        if (unit_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(fds[0]);
            snprintf(why, why_size, "timed out after %.0f s (deadlock or hang?)", timeout_s);
            return UNIT_TIMEOUT;
        }
        usleep((useconds_t)nap_us);
        if (nap_us < 5000) nap_us *= 2;
    }
    ssize_t n = read(fds[0], why, why_size - 1);
    why[n > 0 ? n : 0] = 0;
    close(fds[0]);
    if (WIFSIGNALED(status)) {
        snprintf(why, why_size, "crashed: signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return UNIT_CRASH;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return UNIT_PASS;
    if (!why[0]) snprintf(why, why_size, "exited %d (a sanitizer report?)", WEXITSTATUS(status));
    return UNIT_FAIL;
}

static inline int unit_run_named(const char *file, const struct unit_case *cases)
{
    int failed = 0;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const char *env = getenv("UNIT_TIMEOUT");
    double timeout_s = env && atof(env) > 0 ? atof(env) : 60;
    for (const struct unit_case *c = cases; c->name; c++) {
        char why[600];
        if (unit_run_case(c, timeout_s, why, sizeof why) == UNIT_PASS) {
            printf("PASS %s:%s\n", base, c->name);
        } else {
            printf("FAIL %s:%s: %s\n", base, c->name, why);
            failed++;
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

#define unit_run(...) unit_run_named(__FILE__, __VA_ARGS__)

#endif

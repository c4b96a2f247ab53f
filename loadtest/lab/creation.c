/* creation — the primer's experiment: 1,000 × (create a task, write some memory, read it
 * back, exit), timed, with four ways to create the task:
 *
 *   fork         fork(); the child writes and reads in the parent's copied address space
 *   vfork        vfork() + exec of this program as a tiny helper (the parent waits)
 *   posix_spawn  posix_spawn() of the same helper (glibc uses clone(CLONE_VM|CLONE_VFORK))
 *   thread       pthread_create + join; the thread writes and reads
 *
 * `creation MODE N RSS_MIB` first touches RSS_MIB of memory in the parent, to show how
 * fork's cost grows with the parent's resident set while posix_spawn's does not.  Prints
 * one JSON line: {"mode","n","rss_mib","seconds"}.
 */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { WORK_BYTES = 64 * 1024 };

/* Writes a pattern into fresh memory and reads it back; 0 when it reads what it wrote. */
static int creation_work(void)
{
    unsigned char *p = malloc(WORK_BYTES);
    if (!p) return 1;
    for (size_t i = 0; i < WORK_BYTES; i++) p[i] = (unsigned char)(i * 31u);
    unsigned sum = 0, want = 0;
    for (size_t i = 0; i < WORK_BYTES; i++) {
        sum += p[i];
        want += (unsigned char)(i * 31u);
    }
    free(p);
    return sum == want ? 0 : 1;
}

static void *creation_thread(void *arg)
{
    (void)arg;
    return (void *)(long)creation_work();
}

static double creation_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One create-work-exit round; 0 on success. */
static int creation_once(const char *mode, char *self)
{
    char child[] = "--child"; /* exec's argv is char *const[]: no string literal in it */
    char *argv[] = {self, child, NULL};
    int status = 0;
    pid_t pid;
    if (strcmp(mode, "fork") == 0) {
        pid = fork();
        if (pid == 0) _exit(creation_work());
    } else if (strcmp(mode, "vfork") == 0) {
        pid = vfork();
        if (pid == 0) {
            execve(self, argv, environ);
            _exit(127);
        }
    } else if (strcmp(mode, "posix_spawn") == 0) {
        if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0) return 1;
    } else if (strcmp(mode, "thread") == 0) {
        pthread_t t;
        void *ret;
        if (pthread_create(&t, NULL, creation_thread, NULL) != 0) return 1;
        pthread_join(t, &ret);
        return (int)(long)ret;
    } else {
        return 1;
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--child") == 0) return creation_work();
    if (argc != 4) {
        fprintf(stderr, "usage: %s fork|vfork|posix_spawn|thread N RSS_MIB\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    long rss_mib = atol(argv[3]);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 2;
    self[len] = 0;
    char *ballast = NULL;
    if (rss_mib > 0) { /* resident, not just reserved: every page written */
        ballast = malloc((size_t)rss_mib << 20);
        if (!ballast) return 2;
        memset(ballast, 1, (size_t)rss_mib << 20);
    }
    double t0 = creation_now();
    for (int i = 0; i < n; i++)
        if (creation_once(mode, self) != 0) {
            fprintf(stderr, "creation: round %d of %s failed\n", i, mode);
            return 1;
        }
    double secs = creation_now() - t0;
    printf("{\"mode\":\"%s\",\"n\":%d,\"rss_mib\":%ld,\"seconds\":%.6f,\"ballast\":%d}\n", mode, n,
           rss_mib, secs, ballast ? ballast[rss_mib << 19] : 0);
    free(ballast);
    return 0;
}

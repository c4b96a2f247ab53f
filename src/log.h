/* log — one logging macro for the whole service.
 *
 * log_at() checks the level before formatting anything, so a disabled debug line
 * costs one comparison.  Lines go to stderr as "time level [file:line] message",
 * or with log_json (--log-format json) as one JSON object per line for log
 * collectors: {"time":"...Z","level":"info","msg":"...","file":"x.c","line":1}.
 * file:line is added for debug and fatal lines only.  A message is cut at 1 KiB
 * (a JSON line stays valid).  LOG_FATAL exits(1).
 * Thread-safe: each line is written with a single write(2).
 */
#ifndef FLASHSALE_LOG_H
#define FLASHSALE_LOG_H

#include <stdbool.h>
#include <stdlib.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_FATAL };

extern enum log_level log_threshold;
extern bool log_json; /* set once at start, before any thread */

/* Parses "debug|info|warn|error"; returns 0, or -1 for an unknown name. */
int log_set_level(const char *name);

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= log_threshold) log_write((level), __FILE__, __LINE__, __VA_ARGS__);         \
    } while (0)

#define LOG_DEBUG(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_WARN(...) log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_ERROR(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define LOG_FATAL(...)                                                                             \
    do {                                                                                           \
        log_write(LOG_LEVEL_FATAL, __FILE__, __LINE__, __VA_ARGS__);                               \
        exit(1);                                                                                   \
    } while (0)

#endif

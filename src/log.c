/* log — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LEVEL_INFO;
bool log_json = false;

static const char *const log_names[] = {"debug", "info", "warn", "error", "fatal"};

int log_set_level(const char *name)
{
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
        if (strcmp(name, log_names[i]) == 0) {
            log_threshold = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0. */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    unsigned cp = len == 2 ? (s[0] & 0x1fu) << 6 | (s[1] & 0x3fu)
                : len == 3 ? (s[0] & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu)
                           : (s[0] & 0x07u) << 18 | (s[1] & 0x3fu) << 12 | (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Appends text as the inside of a JSON string to out[*n..size), stopping (never
 * mid-escape) when full.  A message may carry anything a client sent, so control
 * bytes are escaped and invalid UTF-8 becomes U+FFFD: each line stays valid JSON. */
static void log_json_string(char *out, size_t *n, size_t size, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        char esc[8];
        size_t k = 1;
        const char *piece = esc;
        if (s[i] == '"' || s[i] == '\\') esc[0] = '\\', esc[1] = (char)s[i], esc[2] = 0;
        else if (s[i] == '\n') memcpy(esc, "\\n", 3);
        else if (s[i] == '\t') memcpy(esc, "\\t", 3);
        else if (s[i] < 0x20 || s[i] == 0x7f) snprintf(esc, sizeof esc, "\\u%04x", s[i]);
        else if (s[i] < 0x80) esc[0] = (char)s[i], esc[1] = 0;
        else if ((k = log_utf8_len(s + i, len - i)) != 0) piece = text + i;
        else k = 1, memcpy(esc, "\\ufffd", 7);
        size_t plen = piece == esc ? strlen(esc) : k;
        if (*n + plen >= size) return;
        memcpy(out + *n, piece, plen);
        *n += plen;
        i += k;
    }
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
    char buf[1024], stamp[40], where[128] = "";
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t s = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + s, sizeof stamp - s, ".%03ldZ", ts.tv_nsec / 1000000);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    bool with_where = level == LOG_LEVEL_DEBUG || level == LOG_LEVEL_FATAL;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t msg_len = m < 0 ? 0 : (size_t)m < sizeof buf ? (size_t)m : sizeof buf - 1;

    char out[1024 * 6 + 256];
    size_t n;
    if (log_json) {
        n = (size_t)snprintf(out, sizeof out, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", stamp,
                             log_names[level]);
        log_json_string(out, &n, sizeof out - sizeof where - 40, buf, msg_len);
        if (with_where) {
            n += (size_t)snprintf(out + n, sizeof out - n, "\",\"file\":\"");
            log_json_string(out, &n, sizeof out - 40, base, strlen(base));
            n += (size_t)snprintf(out + n, sizeof out - n, "\",\"line\":%d}", line);
        } else {
            out[n++] = '"', out[n++] = '}';
        }
    } else {
        if (with_where) snprintf(where, sizeof where, "[%s:%d] ", base, line);
        n = (size_t)snprintf(out, sizeof out, "%s %-5s %s%.*s", stamp, log_names[level], where, (int)msg_len,
                             buf);
        if (n >= sizeof out - 1) n = sizeof out - 2;
    }
    out[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, out, n);
    (void)w;
}

/* framing — see framing.h. */
#include "framing.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Each fault's outcome (its status and error code, from outcome.c) and its message. */
static const struct {
    enum outcome outcome;
    const char *message;
} framing_table[FRAMING_COUNT] = {
    [FRAMING_OK] = {OUTCOME_OK, "ok"},
    [FRAMING_LINES] = {OUTCOME_INVALID, "a header line is folded (obs-fold) or hides bytes behind a NUL"},
    [FRAMING_NAME] = {OUTCOME_INVALID, "a header name is not a token (whitespace before ':'?)"},
    [FRAMING_VALUE] = {OUTCOME_INVALID, "a header value contains CR, LF or another control byte"},
    [FRAMING_CL_AND_TE] = {OUTCOME_INVALID, "Content-Length and Transfer-Encoding must not be sent together"},
    [FRAMING_CL_REPEATED] = {OUTCOME_INVALID, "Content-Length must be sent once"},
    [FRAMING_CL_INVALID] = {OUTCOME_INVALID, "Content-Length must be a decimal number below 2^63"},
    [FRAMING_TE_REPEATED] = {OUTCOME_INVALID, "Transfer-Encoding must be sent once"},
    [FRAMING_TE_HTTP10] = {OUTCOME_INVALID, "Transfer-Encoding is not allowed in HTTP/1.0"},
    [FRAMING_TE_UNSUPPORTED] = {OUTCOME_NOT_IMPLEMENTED, "the only Transfer-Encoding served is chunked"},
    [FRAMING_HOST_MISSING] = {OUTCOME_INVALID, "HTTP/1.1 requires a Host header"},
    [FRAMING_HOST_REPEATED] = {OUTCOME_INVALID, "Host must be sent once"},
    [FRAMING_VERSION] = {OUTCOME_HTTP_VERSION, "only HTTP/1.0 and HTTP/1.1 are served"},
};

enum outcome framing_outcome(enum framing_fault f) { return framing_table[f].outcome; }
const char *framing_message(enum framing_fault f) { return framing_table[f].message; }

/* RFC 9110 §5.6.2 tchar. */
static bool framing_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool framing_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* How many NUL bytes start at p, before end. */
static size_t framing_zeros(const char *p, const char *end)
{
    size_t n = 0;
    while (p + n < end && p[n] == 0) n++;
    return n;
}

static bool framing_fail(struct framing_scan *s, enum framing_fault f)
{
    if (!s->fault) s->fault = f;
    return false;
}

void framing_begin(struct framing_scan *s, const char *version, const char *end)
{
    memset(s, 0, sizeof *s);
    s->http10 = strcmp(version, "HTTP/1.0") == 0;
    s->next = version + strlen(version);
    s->end = end;
    if (!end || end < s->next) s->fault = FRAMING_LINES;
}

/* 1*DIGIT and below 2^63, so it fits every signed 64-bit reader downstream. */
static bool framing_length_ok(const char *v, size_t len)
{
    if (len == 0 || len > 19) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    return n <= INT64_MAX;
}

bool framing_field(struct framing_scan *s, const char *name, size_t name_len, const char *value,
                   size_t value_len)
{
    if (s->fault) return false;
    /* Layout: the line starts right after the previous line's terminator, which is
     * the same width on every line (a request does not mix CRLF and LF). */
    if (name <= s->next || name >= s->end || framing_zeros(s->next, name) != (size_t)(name - s->next))
        return framing_fail(s, FRAMING_LINES);
    if (!s->eol) s->eol = (size_t)(name - s->next);
    if (s->eol > 2 || name != s->next + s->eol) return framing_fail(s, FRAMING_LINES);
    /* The name, its ':' (now NUL), optional spaces, the value, all inside the block. */
    const char *after = name + name_len;
    if (after >= s->end || *after || value <= after || value > s->end || value_len > (size_t)(s->end - value))
        return framing_fail(s, FRAMING_LINES);
    for (const char *p = after + 1; p < value; p++)
        if (*p != ' ' && *p != '\t') return framing_fail(s, FRAMING_LINES);
    s->next = value + value_len;
    s->fields++;

    if (name_len == 0) return framing_fail(s, FRAMING_NAME);
    for (size_t i = 0; i < name_len; i++)
        if (!framing_tchar((unsigned char)name[i])) return framing_fail(s, FRAMING_NAME);
    for (size_t i = 0; i < value_len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return framing_fail(s, FRAMING_VALUE);
    }

    if (framing_is(name, name_len, "Content-Length")) {
        s->content_length++;
        if (!framing_length_ok(value, value_len)) s->cl_invalid = true;
    } else if (framing_is(name, name_len, "Transfer-Encoding")) {
        s->transfer_encoding++;
        /* Exactly "chunked": "chunked, identity", "chunked " and "xchunked" are
         * codings libmicrohttpd would read until the client closes. */
        s->te_chunked = framing_is(value, value_len, "chunked");
    } else if (framing_is(name, name_len, "Host")) {
        s->host++;
    }
    return true;
}

enum framing_fault framing_end(struct framing_scan *s)
{
    if (s->fault) return s->fault;
    /* What follows the last line: its terminator and the empty line's, nothing else
     * (a value cut short by a NUL leaves its tail here). */
    size_t rest = (size_t)(s->end - s->next), z = framing_zeros(s->next, s->end);
    bool tail_ok = s->eol ? z == rest && rest == 2 * s->eol : z == rest && rest >= 2 && rest <= 4;
    if (!tail_ok) return s->fault = FRAMING_LINES;
    if (s->content_length && s->transfer_encoding) return s->fault = FRAMING_CL_AND_TE;
    if (s->content_length > 1) return s->fault = FRAMING_CL_REPEATED;
    if (s->transfer_encoding > 1) return s->fault = FRAMING_TE_REPEATED;
    if (s->transfer_encoding && s->http10) return s->fault = FRAMING_TE_HTTP10;
    if (s->transfer_encoding && !s->te_chunked) return s->fault = FRAMING_TE_UNSUPPORTED;
    if (s->cl_invalid) return s->fault = FRAMING_CL_INVALID;
    if (s->host > 1) return s->fault = FRAMING_HOST_REPEATED;
    if (!s->http10 && !s->host) return s->fault = FRAMING_HOST_MISSING;
    assert(s->content_length <= 1 && s->transfer_encoding <= 1);
    return FRAMING_OK;
}

const char *framing_path(const char *target)
{
    const char *rest;
    if (strncasecmp(target, "http://", 7) == 0) rest = target + 7;
    else if (strncasecmp(target, "https://", 8) == 0) rest = target + 8;
    else return target;
    const char *slash = strchr(rest, '/');
    return slash ? slash : "/";
}

/* The line starting at p (before end): its length without CR LF or LF; *next is
 * where the following line starts, NULL when the line is not complete. */
static size_t framing_line(const char *p, const char *end, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf) {
        *next = NULL;
        return (size_t)(end - p);
    }
    *next = lf + 1;
    return (size_t)(lf - p) - (lf > p && lf[-1] == '\r');
}

/* As libmicrohttpd reads a Content-Length: 1*DIGIT that fits 64 bits. */
static bool framing_uint64_ok(const char *v, size_t len)
{
    if (len == 0) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (n > (UINT64_MAX - d) / 10) return false;
        n = n * 10 + d;
    }
    return true;
}

enum framing_fault framing_first_bytes(const char *buf, size_t len)
{
    const char *end = buf + len, *p = buf, *next;
    size_t n = framing_line(p, end, &next);
    /* The request line's version is its last word, "HTTP/d.d" (libmicrohttpd
     * refuses any other major version than 1 before the service sees it). */
    if (len >= 16 && memcmp(buf, "PRI * HTTP/2.0\r\n", 16) == 0) return FRAMING_VERSION;
    if (!next) return FRAMING_OK;
    if (n >= 9 && memcmp(p + n - 9, " HTTP/", 6) == 0 && p[n - 2] == '.' && p[n - 3] >= '0' &&
        p[n - 3] <= '9' && p[n - 3] != '1')
        return FRAMING_VERSION;
    const char *length = NULL;
    size_t length_len = 0;
    bool coded = false;
    for (p = next; p; p = next) {
        n = framing_line(p, end, &next);
        if (!next) return FRAMING_OK; /* the block is not all here: libmicrohttpd reads on */
        if (n == 0) break;            /* the empty line: the block is complete */
        /* The gate sees the raw bytes: any NUL, even the one framing_end() cannot
         * see (right before a LF, where it looks like a CR). */
        if (memchr(p, 0, n)) return FRAMING_LINES;
        const char *colon = memchr(p, ':', n);
        if (!colon || p[0] == ' ' || p[0] == '\t') continue;
        size_t name_len = (size_t)(colon - p);
        if (framing_is(p, name_len, "Transfer-Encoding")) coded = true;
        if (!length && framing_is(p, name_len, "Content-Length")) {
            length = colon + 1;
            while (length < p + n && (*length == ' ' || *length == '\t')) length++;
            length_len = (size_t)(p + n - length);
        }
    }
    if (length && !coded && !framing_uint64_ok(length, length_len)) return FRAMING_CL_INVALID;
    return FRAMING_OK;
}

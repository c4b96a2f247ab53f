/* outcome — every way a request can end, and the one table that maps each to HTTP.
 *
 * Modules return an enum outcome; only this table knows the status code, the
 * machine-readable error code, the default human message and the headers a
 * refusal carries (Retry-After, WWW-Authenticate; Allow is the route's, passed in).
 * Error bodies are always {"error":"<code>","message":"<text>"}, written here only:
 * http.c, gate.c and framing.c name an outcome and never format one.
 */
#ifndef FLASHSALE_OUTCOME_H
#define FLASHSALE_OUTCOME_H

#include <stddef.h>

enum outcome {
    OUTCOME_OK,
    OUTCOME_INVALID,           /* 400 invalid_request */
    OUTCOME_UNAUTHORIZED,      /* 401 */
    OUTCOME_BAD_TOKEN,         /* 401 invalid_token: missing, forged or expired X-User-Token */
    OUTCOME_FORBIDDEN,         /* 403 */
    OUTCOME_NOT_FOUND,         /* 404 */
    OUTCOME_METHOD,            /* 405, with Allow */
    OUTCOME_SOLD_OUT,          /* 409 */
    OUTCOME_LIMIT_EXCEEDED,    /* 409 */
    OUTCOME_NOT_STARTED,       /* 409 sale_not_started */
    OUTCOME_ENDED,             /* 409 sale_ended */
    OUTCOME_ORDER_EXPIRED,     /* 409 */
    OUTCOME_ORDER_CANCELLED,   /* 409 */
    OUTCOME_ORDER_FINAL,       /* 409: paid or confirmed, cannot be cancelled */
    OUTCOME_TOO_MANY_SALES,    /* 409 */
    OUTCOME_TOO_LARGE,         /* 413 payload_too_large */
    OUTCOME_MEDIA_TYPE,        /* 415 unsupported_media_type */
    OUTCOME_RATE_LIMITED,      /* 429, with Retry-After */
    OUTCOME_INTERNAL,          /* 500 */
    OUTCOME_OVERLOADED,        /* 503, with Retry-After: queue full or waited too long */
    OUTCOME_UNAVAILABLE,       /* 503, with Retry-After: the store failed, nothing was sold */
    OUTCOME_RESETTING,         /* 503, with Retry-After: the sale is being reset */
    OUTCOME_NOT_IMPLEMENTED,   /* 501: a Transfer-Encoding the service does not serve (framing.h) */
    OUTCOME_HTTP_VERSION,      /* 505: not HTTP/1.x (framing.h) */
    OUTCOME_COUNT
};

int outcome_status(enum outcome o);

/* "sold_out", "invalid_request", ... */
const char *outcome_code(enum outcome o);

/* A sentence for people. */
const char *outcome_message(enum outcome o);

/* Writes {"error":code,"message":msg} into buf; msg NULL means the default message.
 * Returns the length (truncated to size-1 at worst). */
size_t outcome_json(enum outcome o, const char *msg, char *buf, size_t size);

/* The headers an answer with outcome o carries, as name/value pairs ending in NULL
 * (room for OUTCOME_HEADERS_MAX entries): Retry-After (retry_s seconds, or 1 when
 * retry_s is 0 and the outcome asks clients to come back: 429 and every 503), Allow
 * (allow, for 405 only, NULL otherwise) and WWW-Authenticate (401 unauthorized).
 * retry_buf holds the Retry-After text; h points into it and into static strings.
 * Returns the number of pairs. */
#define OUTCOME_HEADERS_MAX 7
size_t outcome_headers(enum outcome o, int retry_s, const char *allow, char retry_buf[12],
                       const char *h[OUTCOME_HEADERS_MAX]);

/* Appends s to buf as the inside of a JSON string (quotes not included), escaping
 * as needed; returns the new length, never writing past size-1. */
size_t outcome_json_escape(char *buf, size_t len, size_t size, const char *s);

#endif

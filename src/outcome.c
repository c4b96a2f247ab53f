/* outcome — see outcome.h. */
#include "outcome.h"

#include <assert.h>
#include <stdio.h>

static const struct {
    int status;
    const char *code;
    const char *message;
} outcome_table[OUTCOME_COUNT] = {
    [OUTCOME_OK] = {200, "ok", "ok"},
    [OUTCOME_INVALID] = {400, "invalid_request", "the request is not valid"},
    [OUTCOME_UNAUTHORIZED] = {401, "unauthorized", "a valid admin bearer token is required"},
    [OUTCOME_BAD_TOKEN] = {401, "invalid_token",
                           "a valid X-User-Token for this user_id is required"},
    [OUTCOME_FORBIDDEN] = {403, "forbidden", "this order belongs to another user"},
    [OUTCOME_NOT_FOUND] = {404, "not_found", "no such resource"},
    [OUTCOME_METHOD] = {405, "method_not_allowed", "this method is not allowed here"},
    [OUTCOME_SOLD_OUT] = {409, "sold_out", "not enough stock left"},
    [OUTCOME_LIMIT_EXCEEDED] = {409, "limit_exceeded",
                                "this purchase would pass the per-user limit of the sale"},
    [OUTCOME_NOT_STARTED] = {409, "sale_not_started", "the sale has not started yet"},
    [OUTCOME_ENDED] = {409, "sale_ended", "the sale has ended"},
    [OUTCOME_ORDER_EXPIRED] = {409, "order_expired", "the payment window of this order has passed"},
    [OUTCOME_ORDER_CANCELLED] = {409, "order_cancelled", "this order was cancelled"},
    [OUTCOME_ORDER_FINAL] = {409, "order_final", "this order is paid or final and cannot be cancelled"},
    [OUTCOME_TOO_MANY_SALES] = {409, "too_many_sales", "the service holds as many sales as it can"},
    [OUTCOME_TOO_LARGE] = {413, "payload_too_large", "the request body is over 16 KiB"},
    [OUTCOME_MEDIA_TYPE] = {415, "unsupported_media_type", "send Content-Type: application/json"},
    [OUTCOME_RATE_LIMITED] = {429, "rate_limited", "too many requests, slow down"},
    [OUTCOME_INTERNAL] = {500, "internal_error", "internal error"},
    [OUTCOME_OVERLOADED] = {503, "overloaded", "the service is at capacity, retry shortly"},
    [OUTCOME_UNAVAILABLE] = {503, "unavailable",
                             "the order could not be stored; nothing was sold, retry shortly"},
    [OUTCOME_RESETTING] = {503, "sale_resetting", "the sale is being reset, retry shortly"},
    [OUTCOME_NOT_IMPLEMENTED] = {501, "not_implemented", "this is not implemented"},
    [OUTCOME_HTTP_VERSION] = {505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served"},
};

int outcome_status(enum outcome o) { return outcome_table[o].status; }
const char *outcome_code(enum outcome o) { return outcome_table[o].code; }
const char *outcome_message(enum outcome o) { return outcome_table[o].message; }

size_t outcome_headers(enum outcome o, int retry_s, const char *allow, char retry_buf[12],
                       const char *h[OUTCOME_HEADERS_MAX])
{
    size_t n = 0;
    if (!retry_s && (outcome_table[o].status == 503 || o == OUTCOME_RATE_LIMITED)) retry_s = 1;
    if (retry_s) {
        snprintf(retry_buf, 12, "%d", retry_s);
        h[2 * n] = "Retry-After";
        h[2 * n++ + 1] = retry_buf;
    }
    assert(!allow || o == OUTCOME_METHOD); /* Allow belongs to a 405 only */
    if (allow) {
        h[2 * n] = "Allow";
        h[2 * n++ + 1] = allow;
    }
    if (o == OUTCOME_UNAUTHORIZED) { /* RFC 9110 §15.5.2: a 401 names the scheme it wants */
        h[2 * n] = "WWW-Authenticate";
        h[2 * n++ + 1] = "Bearer realm=\"flashsale admin\"";
    }
    h[2 * n] = NULL;
    return n;
}

size_t outcome_json_escape(char *buf, size_t len, size_t size, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p && len + 7 < size; p++) {
        if (*p == '"' || *p == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            len += (size_t)snprintf(buf + len, size - len, "\\u00%c%c", hex[*p >> 4], hex[*p & 15]);
        } else {
            buf[len++] = (char)*p;
        }
    }
    buf[len] = 0;
    return len;
}

size_t outcome_json(enum outcome o, const char *msg, char *buf, size_t size)
{
    int n = snprintf(buf, size, "{\"error\":\"%s\",\"message\":\"", outcome_table[o].code);
    if (n < 0 || (size_t)n >= size) return 0;
    size_t len = outcome_json_escape(buf, (size_t)n, size - 2, msg ? msg : outcome_table[o].message);
    buf[len++] = '"';
    buf[len++] = '}';
    buf[len] = 0;
    return len;
}

/* payload — see payload.h.
 *
 * Bodies are parsed with JSON_REJECT_DUPLICATES (jansson otherwise keeps the last
 * of two equal keys, so {"user_id":"a","user_id":"b"} would be ambiguous), and
 * integers are read as json_int_t and range-checked (jansson's "i" truncates).
 */
#include "payload.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PAYLOAD_MAX_STOCK 1000000000
#define PAYLOAD_MAX_TIME 253402300799 /* 9999-12-31T23:59:59Z */

bool payload_text_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) return false;
        /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F */
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) return false;
    }
    return true;
}

bool payload_key_ok(const char *key)
{
    size_t n = 0;
    for (; key[n]; n++)
        if (key[n] < 0x21 || key[n] > 0x7e || n >= PAYLOAD_KEY_MAX) return false;
    return n > 0;
}

bool payload_content_type_ok(const char *ct)
{
    if (!ct) return true;
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "application/json", 16) != 0) return false;
    ct += 16;
    while (*ct == ' ') ct++;
    if (*ct == 0) return true;
    if (*ct++ != ';') return false;
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "charset=", 8) != 0) return false;
    ct += 8;
    if (*ct == '"') ct++;
    if (strncasecmp(ct, "utf-8", 5) != 0) return false;
    ct += 5;
    if (*ct == '"') ct++;
    while (*ct == ' ') ct++;
    return *ct == 0;
}

__attribute__((format(printf, 3, 4))) static enum outcome payload_fail(char *msg, size_t msg_size,
                                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_size, fmt, ap);
    va_end(ap);
    return OUTCOME_INVALID;
}

/* Loads an object; on failure writes jansson's reason. */
static json_t *payload_load(const char *body, size_t len, char *msg, size_t msg_size)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        snprintf(msg, msg_size, "body is not valid JSON: %s", err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(msg, msg_size, "body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Every key of obj must be one of the NULL-terminated names. */
static enum outcome payload_known_keys(json_t *obj, const char *const *names, char *msg,
                                       size_t msg_size)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        const char *const *n = names;
        while (*n && strcmp(*n, key) != 0) n++;
        if (!*n) return payload_fail(msg, msg_size, "unknown field '%.64s'", key);
    }
    return OUTCOME_OK;
}

/* A required or optional (dflt used when absent or null) integer in [min, max]. */
static enum outcome payload_int(json_t *obj, const char *key, bool required, int64_t dflt,
                                int64_t min, int64_t max, int64_t *out, char *msg, size_t msg_size)
{
    json_t *v = json_object_get(obj, key);
    if (!v || (json_is_null(v) && !required)) {
        if (required) return payload_fail(msg, msg_size, "'%s' is required", key);
        *out = dflt;
        return OUTCOME_OK;
    }
    if (!json_is_integer(v)) return payload_fail(msg, msg_size, "'%s' must be an integer", key);
    json_int_t i = json_integer_value(v);
    if (i < min || i > max) {
        snprintf(msg, msg_size, "'%s' must be from %lld to %lld", key, (long long)min,
                 (long long)max);
        return OUTCOME_INVALID;
    }
    *out = (int64_t)i;
    return OUTCOME_OK;
}

/* A required string of 1..max bytes without control characters, copied to out. */
static enum outcome payload_text(json_t *obj, const char *key, size_t max, char *out, char *msg,
                                 size_t msg_size)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return payload_fail(msg, msg_size, "'%s' is required", key);
    if (!json_is_string(v)) return payload_fail(msg, msg_size, "'%s' must be a string", key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > max) {
        snprintf(msg, msg_size, "'%s' must be 1 to %zu bytes of UTF-8", key, max);
        return OUTCOME_INVALID;
    }
    if (!payload_text_ok(s, n))
        return payload_fail(msg, msg_size, "'%s' must not contain control characters", key);
    memcpy(out, s, n);
    out[n] = 0;
    return OUTCOME_OK;
}

enum outcome payload_order_parse(const char *body, size_t len, struct payload_order *out,
                                 char *msg, size_t msg_size)
{
    static const char *const keys[] = {"user_id", "quantity", NULL};
    json_t *root = payload_load(body, len, msg, msg_size);
    if (!root) return OUTCOME_INVALID;
    enum outcome o = payload_known_keys(root, keys, msg, msg_size);
    if (o == OUTCOME_OK)
        o = payload_text(root, "user_id", PAYLOAD_USER_MAX, out->user_id, msg, msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "quantity", false, 1, 1, INT64_MAX, &out->quantity, msg, msg_size);
    json_decref(root);
    return o;
}

enum outcome payload_user_parse(const char *body, size_t len, char *user_id, char *msg,
                                size_t msg_size)
{
    static const char *const keys[] = {"user_id", NULL};
    json_t *root = payload_load(body, len, msg, msg_size);
    if (!root) return OUTCOME_INVALID;
    enum outcome o = payload_known_keys(root, keys, msg, msg_size);
    json_t *v = json_object_get(root, "user_id");
    user_id[0] = 0;
    if (o == OUTCOME_OK && v && !json_is_null(v))
        o = payload_text(root, "user_id", PAYLOAD_USER_MAX, user_id, msg, msg_size);
    json_decref(root);
    return o;
}

enum outcome payload_sale_parse(const char *body, size_t len, struct payload_sale *out, char *msg,
                                size_t msg_size)
{
    static const char *const keys[] = {"name",    "stock",          "per_user_limit", "starts_at",
                                       "ends_at", "payment_window", NULL};
    json_t *root = payload_load(body, len, msg, msg_size);
    if (!root) return OUTCOME_INVALID;
    enum outcome o = payload_known_keys(root, keys, msg, msg_size);
    if (o == OUTCOME_OK) o = payload_text(root, "name", PAYLOAD_NAME_MAX, out->name, msg, msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "stock", true, 0, 1, PAYLOAD_MAX_STOCK, &out->stock, msg, msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "per_user_limit", false, 1, 1, PAYLOAD_MAX_STOCK,
                        &out->per_user_limit, msg, msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "starts_at", false, 0, 0, PAYLOAD_MAX_TIME, &out->starts_at, msg,
                        msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "ends_at", false, 0, 0, PAYLOAD_MAX_TIME, &out->ends_at, msg,
                        msg_size);
    if (o == OUTCOME_OK)
        o = payload_int(root, "payment_window", false, 0, 0, 30 * 86400, &out->payment_window, msg,
                        msg_size);
    if (o == OUTCOME_OK && out->ends_at && out->starts_at && out->ends_at <= out->starts_at)
        o = payload_fail(msg, msg_size, "'%s' must be after 'starts_at'", "ends_at");
    json_decref(root);
    return o;
}

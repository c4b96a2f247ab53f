/* test_payload — the body parsers and header validators, by table. */
#include <stdint.h>
#include <stdlib.h>

#include "payload.h"
#include "unit.h"

/* Parses a copy of exactly len bytes in its own allocation, so ASan sees any read
 * past the end (the parsers take a length, not a C string). */
static enum outcome order_parse(const char *body, size_t len, struct payload_order *out,
                                char *msg, size_t msg_size)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    enum outcome o = payload_order_parse(copy, len, out, msg, msg_size);
    free(copy);
    return o;
}

static enum outcome sale_parse(const char *body, struct payload_sale *out, char *msg)
{
    size_t len = strlen(body);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    enum outcome o = payload_sale_parse(copy, len, out, msg, 256);
    free(copy);
    return o;
}

/* ---- order ---------------------------------------------------------------- */

struct order_case {
    const char *body;
    enum outcome want;
    const char *user;   /* expected user_id when OK */
    int64_t quantity;   /* expected quantity when OK */
    const char *in_msg; /* expected substring of msg when INVALID, or NULL */
};

static void order_table(const struct order_case *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct payload_order out;
        memset(&out, 0x5a, sizeof out);
        char msg[256] = "";
        enum outcome o = order_parse(t[i].body, strlen(t[i].body), &out, msg, sizeof msg);
        if (o != t[i].want)
            UNIT_FAILF("case %zu '%s': outcome %d, want %d (msg '%s')", i, t[i].body, (int)o,
                  (int)t[i].want, msg);
        if (o == OUTCOME_OK && (strcmp(out.user_id, t[i].user) != 0 || out.quantity != t[i].quantity))
            UNIT_FAILF("case %zu '%s': got user '%s' quantity %lld", i, t[i].body, out.user_id,
                  (long long)out.quantity);
        if (o != OUTCOME_OK && (!msg[0] || (t[i].in_msg && !strstr(msg, t[i].in_msg))))
            UNIT_FAILF("case %zu '%s': msg '%s' lacks '%s'", i, t[i].body, msg,
                  t[i].in_msg ? t[i].in_msg : "(anything)");
    }
}

static void test_order_valid(void)
{
    static const struct order_case t[] = {
        {"{\"user_id\":\"alice\"}", OUTCOME_OK, "alice", 1, NULL},
        {"{\"user_id\":\"alice\",\"quantity\":3}", OUTCOME_OK, "alice", 3, NULL},
        {"{\"quantity\":2,\"user_id\":\"bob\"}", OUTCOME_OK, "bob", 2, NULL},
        {"{\"user_id\":\"a\",\"quantity\":null}", OUTCOME_OK, "a", 1, NULL},
        {"  {\"user_id\" : \"a\" , \"quantity\" : 1 }\n", OUTCOME_OK, "a", 1, NULL},
        {"{\"user_id\":\"a\",\"quantity\":9223372036854775807}", OUTCOME_OK, "a", INT64_MAX, NULL},
        {"{\"user_id\":\"caf\\u00e9\"}", OUTCOME_OK, "caf\xc3\xa9", 1, NULL},
        {"{\"user_id\":\"nb\\u00a0sp\"}", OUTCOME_OK, "nb\xc2\xa0sp", 1, NULL}, /* U+00A0 is not C1 */
        {"{\"user_id\":\"\xe2\x82\xac\"}", OUTCOME_OK, "\xe2\x82\xac", 1, NULL},
        {"{\"user_id\":\"\\ud83d\\ude00\"}", OUTCOME_OK, "\xf0\x9f\x98\x80", 1, NULL},
        {"{\"user_id\":\"a b\"}", OUTCOME_OK, "a b", 1, NULL},
    };
    order_table(t, sizeof t / sizeof t[0]);
}

static void test_order_broken_json(void)
{
    static const struct order_case t[] = {
        {"", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\"", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{'user_id':'a'}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{user_id:\"a\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\"} x", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\"}{}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":01}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":NaN}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"[]", OUTCOME_INVALID, NULL, 0, "JSON object"},
        {"[{\"user_id\":\"a\"}]", OUTCOME_INVALID, NULL, 0, "JSON object"},
        {"\"user_id\"", OUTCOME_INVALID, NULL, 0, "not valid JSON"}, /* top-level scalars: jansson refuses */
        {"null", OUTCOME_INVALID, NULL, 0, "not valid JSON"}, /* top-level scalars: jansson refuses */
        {"1", OUTCOME_INVALID, NULL, 0, "not valid JSON"}, /* top-level scalars: jansson refuses */
        {"true", OUTCOME_INVALID, NULL, 0, "not valid JSON"}, /* top-level scalars: jansson refuses */
    };
    order_table(t, sizeof t / sizeof t[0]);
}

static void test_order_fields(void)
{
    static const struct order_case t[] = {
        {"{}", OUTCOME_INVALID, NULL, 0, "'user_id' is required"},
        {"{\"quantity\":1}", OUTCOME_INVALID, NULL, 0, "'user_id' is required"},
        {"{\"user_id\":\"a\",\"user_id\":\"b\"}", OUTCOME_INVALID, NULL, 0, NULL},
        {"{\"user_id\":\"a\",\"quantity\":1,\"quantity\":2}", OUTCOME_INVALID, NULL, 0, NULL},
        {"{\"user_id\":\"a\",\"price\":1}", OUTCOME_INVALID, NULL, 0, "unknown field 'price'"},
        {"{\"user_id\":\"a\",\"User_id\":\"a\"}", OUTCOME_INVALID, NULL, 0, "unknown field"},
        {"{\"user_id\":\"a\",\"\":1}", OUTCOME_INVALID, NULL, 0, "unknown field"},
        {"{\"user_id\":1}", OUTCOME_INVALID, NULL, 0, "'user_id' must be a string"},
        {"{\"user_id\":null}", OUTCOME_INVALID, NULL, 0, "'user_id' must be a string"},
        {"{\"user_id\":[\"a\"]}", OUTCOME_INVALID, NULL, 0, "'user_id' must be a string"},
        {"{\"user_id\":{}}", OUTCOME_INVALID, NULL, 0, "'user_id' must be a string"},
        {"{\"user_id\":true}", OUTCOME_INVALID, NULL, 0, "'user_id' must be a string"},
        {"{\"user_id\":\"a\",\"quantity\":\"1\"}", OUTCOME_INVALID, NULL, 0, "'quantity' must be an integer"},
        {"{\"user_id\":\"a\",\"quantity\":1.0}", OUTCOME_INVALID, NULL, 0, "'quantity' must be an integer"},
        {"{\"user_id\":\"a\",\"quantity\":1e3}", OUTCOME_INVALID, NULL, 0, "'quantity' must be an integer"},
        {"{\"user_id\":\"a\",\"quantity\":true}", OUTCOME_INVALID, NULL, 0, "'quantity' must be an integer"},
        {"{\"user_id\":\"a\",\"quantity\":[1]}", OUTCOME_INVALID, NULL, 0, "'quantity' must be an integer"},
    };
    order_table(t, sizeof t / sizeof t[0]);
}

static void test_order_quantity_range(void)
{
    static const struct order_case t[] = {
        {"{\"user_id\":\"a\",\"quantity\":0}", OUTCOME_INVALID, NULL, 0, "'quantity' must be from 1"},
        {"{\"user_id\":\"a\",\"quantity\":-1}", OUTCOME_INVALID, NULL, 0, "'quantity' must be from 1"},
        {"{\"user_id\":\"a\",\"quantity\":-0}", OUTCOME_INVALID, NULL, 0, "'quantity' must be from 1"},
        {"{\"user_id\":\"a\",\"quantity\":-9223372036854775808}", OUTCOME_INVALID, NULL, 0,
         "'quantity' must be from 1"},
        {"{\"user_id\":\"a\",\"quantity\":4294967297}", OUTCOME_OK, "a", 4294967297LL, NULL},
        {"{\"user_id\":\"a\",\"quantity\":9223372036854775807}", OUTCOME_OK, "a", INT64_MAX, NULL},
        /* beyond int64: jansson refuses to load them at all */
        {"{\"user_id\":\"a\",\"quantity\":9223372036854775808}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":18446744073709551616}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":18446744073709551617}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":100000000000000000000000000000}", OUTCOME_INVALID, NULL, 0,
         "not valid JSON"},
        {"{\"user_id\":\"a\",\"quantity\":-9223372036854775809}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
    };
    order_table(t, sizeof t / sizeof t[0]);
}

/* Builds {"user_id":"<s>"}. */
static void user_body(char *buf, size_t size, const char *user)
{
    snprintf(buf, size, "{\"user_id\":\"%s\"}", user);
}

static void test_order_user_id_bytes(void)
{
    char user[256], body[512], msg[256];
    struct payload_order out;

    memset(user, 'u', 64);
    user[64] = 0;
    user_body(body, sizeof body, user);
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_OK);
    CHECK_EQ_STR(out.user_id, user);
    CHECK_EQ_INT(strlen(out.user_id), 64);

    memset(user, 'u', 65);
    user[65] = 0;
    user_body(body, sizeof body, user);
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_INVALID);
    CHECK(strstr(msg, "'user_id' must be 1 to 64 bytes") != NULL);

    user_body(body, sizeof body, "");
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_INVALID);
    CHECK(strstr(msg, "'user_id' must be 1 to 64 bytes") != NULL);

    /* 32 x U+00E9 = 64 bytes (32 characters): fine. */
    user[0] = 0;
    for (int i = 0; i < 32; i++) strcat(user, "\xc3\xa9");
    user_body(body, sizeof body, user);
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_OK);
    CHECK_EQ_STR(out.user_id, user);

    /* 33 x U+00E9 = 66 bytes but only 33 characters: refused, limits are bytes. */
    strcat(user, "\xc3\xa9");
    user_body(body, sizeof body, user);
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_INVALID);

    /* 63 ASCII + one 2-byte character = 65 bytes: refused. */
    memset(user, 'u', 63);
    strcpy(user + 63, "\xc3\xa9");
    user_body(body, sizeof body, user);
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_INVALID);

    /* 16 x 4-byte emoji = 64 bytes: fine; escaped form counts decoded bytes. */
    body[0] = 0;
    strcat(body, "{\"user_id\":\"");
    for (int i = 0; i < 16; i++) strcat(body, "\\ud83d\\ude00");
    strcat(body, "\"}");
    CHECK_EQ_INT(order_parse(body, strlen(body), &out, msg, sizeof msg), OUTCOME_OK);
    CHECK_EQ_INT(strlen(out.user_id), 64);
}

static void test_order_user_id_text(void)
{
    static const struct order_case t[] = {
        {"{\"user_id\":\"a\\u0001\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"\\u001f\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"a\\tb\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"a\\nb\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"a\\u007f\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"a\x7f\"}", OUTCOME_INVALID, NULL, 0, "control characters"}, /* raw DEL */
        {"{\"user_id\":\"a\\u0085\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"\\u0080\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"\\u009f\"}", OUTCOME_INVALID, NULL, 0, "control characters"},
        {"{\"user_id\":\"a\xc2\x85\"}", OUTCOME_INVALID, NULL, 0, "control characters"}, /* raw NEL */
        /* raw control bytes inside a JSON string are not JSON */
        {"{\"user_id\":\"a\x01\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\nb\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        /* NUL, invalid UTF-8, lone surrogates: jansson refuses */
        {"{\"user_id\":\"a\\u0000b\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\\u0000\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\xff\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"a\xc3\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\xc0\xaf\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\xed\xa0\x80\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\xf8\x88\x80\x80\x80\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\\ud800\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"user_id\":\"\\udc00x\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
        {"{\"us\xff\":\"a\"}", OUTCOME_INVALID, NULL, 0, "not valid JSON"},
    };
    order_table(t, sizeof t / sizeof t[0]);
}

/* The length is honoured: a prefix is parsed as the whole body, bytes after len
 * are never read (the copy in order_parse is exactly len bytes), and an embedded
 * NUL byte is not an early end. */
static void test_order_length(void)
{
    static const char body[] = "{\"user_id\":\"alice\"}";
    struct payload_order out;
    char msg[256];
    for (size_t len = 0; len < sizeof body - 1; len++)
        CHECK_EQ_INT(order_parse(body, len, &out, msg, sizeof msg), OUTCOME_INVALID);
    CHECK_EQ_INT(order_parse(body, sizeof body - 1, &out, msg, sizeof msg), OUTCOME_OK);
    CHECK_EQ_INT(order_parse(body, sizeof body, &out, msg, sizeof msg), OUTCOME_INVALID); /* + NUL */
    static const char with_nul[] = "{\"user_id\":\"a\"}\0garbage";
    CHECK_EQ_INT(order_parse(with_nul, sizeof with_nul - 1, &out, msg, sizeof msg), OUTCOME_INVALID);
}

/* A tiny message buffer truncates the message but never overflows it. */
static void test_small_msg_buffer(void)
{
    struct payload_order out;
    char msg[8];
    memset(msg, 'x', sizeof msg);
    static const char body[] = "{\"user_id\":\"a\",\"quantity\":0}";
    CHECK_EQ_INT(payload_order_parse(body, sizeof body - 1, &out, msg, 4), OUTCOME_INVALID);
    CHECK_EQ_INT(strlen(msg), 3);
    CHECK_EQ_INT(msg[4], 'x');
    static const char unknown[] = "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}";
    char big[256];
    CHECK_EQ_INT(payload_order_parse(unknown, sizeof unknown - 1, &out, big, sizeof big), OUTCOME_INVALID);
    CHECK(strstr(big, "unknown field") != NULL);
    CHECK(strlen(big) < 100); /* the key is cut at 64 bytes in the message */
}

/* ---- user (pay / cancel) ---------------------------------------------------- */

static void test_user_parse(void)
{
    static const struct {
        const char *body;
        enum outcome want;
        const char *user;
    } t[] = {
        {"{\"user_id\":\"bob\"}", OUTCOME_OK, "bob"},
        {"{\"user_id\":\"bob\",\"quantity\":1}", OUTCOME_INVALID, NULL},
        {"{\"user_id\":\"bob\",\"user_id\":\"bob\"}", OUTCOME_INVALID, NULL},
        {"{}", OUTCOME_OK, ""}, /* optional: the order token is the proof */
        {"{\"user_id\":null}", OUTCOME_OK, ""},
        {"{\"user_id\":\"\"}", OUTCOME_INVALID, NULL},
        {"{\"user_id\":7}", OUTCOME_INVALID, NULL},
        {"{\"user_id\":\"a\\u0085\"}", OUTCOME_INVALID, NULL},
        {"{\"user_id\":\"a\\u0000\"}", OUTCOME_INVALID, NULL},
        {"[\"bob\"]", OUTCOME_INVALID, NULL},
        {"{\"user_id\":\"bob\"", OUTCOME_INVALID, NULL},
        {"{\"user_id\":\"0123456789012345678901234567890123456789012345678901234567890123\"}",
         OUTCOME_OK, "0123456789012345678901234567890123456789012345678901234567890123"},
        {"{\"user_id\":\"01234567890123456789012345678901234567890123456789012345678901234\"}",
         OUTCOME_INVALID, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char user[PAYLOAD_USER_MAX + 1] = "", msg[256] = "";
        size_t len = strlen(t[i].body);
        char *copy = malloc(len);
        memcpy(copy, t[i].body, len);
        enum outcome o = payload_user_parse(copy, len, user, msg, sizeof msg);
        free(copy);
        if (o != t[i].want) UNIT_FAILF("case %zu '%s': outcome %d (msg '%s')", i, t[i].body, (int)o, msg);
        if (o == OUTCOME_OK) CHECK_EQ_STR(user, t[i].user);
        else CHECK(msg[0] != 0);
    }
}

/* ---- sale ------------------------------------------------------------------- */

struct sale_case {
    const char *body;
    enum outcome want;
    const char *in_msg;
    struct payload_sale expect; /* compared when OK (name included) */
};

static void sale_table(const struct sale_case *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct payload_sale out;
        memset(&out, 0x5a, sizeof out);
        char msg[256] = "";
        enum outcome o = sale_parse(t[i].body, &out, msg);
        if (o != t[i].want)
            UNIT_FAILF("case %zu '%s': outcome %d, want %d (msg '%s')", i, t[i].body, (int)o,
                  (int)t[i].want, msg);
        if (o == OUTCOME_OK) {
            const struct payload_sale *e = &t[i].expect;
            if (strcmp(out.name, e->name) != 0 || out.stock != e->stock ||
                out.per_user_limit != e->per_user_limit || out.starts_at != e->starts_at ||
                out.ends_at != e->ends_at || out.payment_window != e->payment_window)
                UNIT_FAILF("case %zu '%s': got name '%s' stock %lld limit %lld starts %lld ends %lld "
                      "window %lld",
                      i, t[i].body, out.name, (long long)out.stock, (long long)out.per_user_limit,
                      (long long)out.starts_at, (long long)out.ends_at,
                      (long long)out.payment_window);
        } else if (!msg[0] || (t[i].in_msg && !strstr(msg, t[i].in_msg))) {
            UNIT_FAILF("case %zu '%s': msg '%s' lacks '%s'", i, t[i].body, msg,
                  t[i].in_msg ? t[i].in_msg : "(anything)");
        }
    }
}

#define SALE(n, st, lim, s, e, w) {n, st, lim, s, e, w}

static void test_sale_valid_and_defaults(void)
{
    static const struct sale_case t[] = {
        {"{\"name\":\"x\",\"stock\":10}", OUTCOME_OK, NULL, SALE("x", 10, 1, 0, 0, 0)},
        {"{\"name\":\"x\",\"stock\":10,\"per_user_limit\":null,\"starts_at\":null,"
         "\"ends_at\":null,\"payment_window\":null}",
         OUTCOME_OK, NULL, SALE("x", 10, 1, 0, 0, 0)},
        {"{\"name\":\"Big\",\"stock\":1000000000,\"per_user_limit\":1000000000,"
         "\"starts_at\":1700000000,\"ends_at\":1700003600,\"payment_window\":600}",
         OUTCOME_OK, NULL, SALE("Big", 1000000000, 1000000000, 1700000000, 1700003600, 600)},
        {"{\"name\":\"x\",\"stock\":1,\"per_user_limit\":5}", OUTCOME_OK, NULL, SALE("x", 1, 5, 0, 0, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":0,\"ends_at\":0}", OUTCOME_OK, NULL,
         SALE("x", 1, 1, 0, 0, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"ends_at\":5}", OUTCOME_OK, NULL, SALE("x", 1, 1, 0, 5, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":5}", OUTCOME_OK, NULL, SALE("x", 1, 1, 5, 0, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":5,\"ends_at\":6}", OUTCOME_OK, NULL,
         SALE("x", 1, 1, 5, 6, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"ends_at\":253402300799}", OUTCOME_OK, NULL,
         SALE("x", 1, 1, 0, 253402300799, 0)},
        {"{\"name\":\"x\",\"stock\":1,\"payment_window\":2592000}", OUTCOME_OK, NULL,
         SALE("x", 1, 1, 0, 0, 2592000)},
        {"{\"name\":\"Caf\\u00e9 \xe2\x82\xac\",\"stock\":2}", OUTCOME_OK, NULL,
         SALE("Caf\xc3\xa9 \xe2\x82\xac", 2, 1, 0, 0, 0)},
    };
    sale_table(t, sizeof t / sizeof t[0]);
}

static void test_sale_refused(void)
{
    static const struct sale_case t[] = {
        {"{\"stock\":10}", OUTCOME_INVALID, "'name' is required", {.stock = 0}},
        {"{\"name\":\"x\"}", OUTCOME_INVALID, "'stock' is required", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":null}", OUTCOME_INVALID, "'stock' must be an integer", {.stock = 0}},
        {"{\"name\":\"\",\"stock\":1}", OUTCOME_INVALID, "'name' must be 1 to 200 bytes", {.stock = 0}},
        {"{\"name\":null,\"stock\":1}", OUTCOME_INVALID, "'name' must be a string", {.stock = 0}},
        {"{\"name\":\"a\\nb\",\"stock\":1}", OUTCOME_INVALID, "control characters", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":0}", OUTCOME_INVALID, "'stock' must be from 1 to 1000000000", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":-1}", OUTCOME_INVALID, "'stock' must be from 1", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1000000001}", OUTCOME_INVALID, "'stock' must be from 1", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":9223372036854775807}", OUTCOME_INVALID, "'stock'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":18446744073709551616}", OUTCOME_INVALID, "not valid JSON", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":\"10\"}", OUTCOME_INVALID, "'stock' must be an integer", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":10.5}", OUTCOME_INVALID, "'stock' must be an integer", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"per_user_limit\":0}", OUTCOME_INVALID, "'per_user_limit'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"per_user_limit\":-3}", OUTCOME_INVALID, "'per_user_limit'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"per_user_limit\":1000000001}", OUTCOME_INVALID,
         "'per_user_limit'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":-1}", OUTCOME_INVALID, "'starts_at'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":253402300800}", OUTCOME_INVALID, "'starts_at'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"ends_at\":253402300800}", OUTCOME_INVALID, "'ends_at'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":\"soon\"}", OUTCOME_INVALID, "'starts_at' must be an integer", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":10,\"ends_at\":10}", OUTCOME_INVALID,
         "'ends_at' must be after 'starts_at'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"starts_at\":10,\"ends_at\":9}", OUTCOME_INVALID,
         "'ends_at' must be after 'starts_at'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"payment_window\":-1}", OUTCOME_INVALID, "'payment_window'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"payment_window\":2592001}", OUTCOME_INVALID, "'payment_window'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"price\":3}", OUTCOME_INVALID, "unknown field 'price'", {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1,\"stock\":2}", OUTCOME_INVALID, NULL, {.stock = 0}},
        {"{\"name\":\"x\",\"stock\":1", OUTCOME_INVALID, "not valid JSON", {.stock = 0}},
        {"[{\"name\":\"x\",\"stock\":1}]", OUTCOME_INVALID, "JSON object", {.stock = 0}},
    };
    sale_table(t, sizeof t / sizeof t[0]);
}

static void test_sale_name_bytes(void)
{
    char name[256], body[512], msg[256];
    struct payload_sale out;
    memset(name, 'n', 200);
    name[200] = 0;
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"stock\":1}", name);
    CHECK_EQ_INT(sale_parse(body, &out, msg), OUTCOME_OK);
    CHECK_EQ_STR(out.name, name);
    name[200] = 'n';
    name[201] = 0;
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"stock\":1}", name);
    CHECK_EQ_INT(sale_parse(body, &out, msg), OUTCOME_INVALID);
    CHECK(strstr(msg, "'name' must be 1 to 200 bytes") != NULL);
}

/* ---- text, key, content type ------------------------------------------------ */

static void test_text_ok(void)
{
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } t[] = {
        {"abc", 3, true},
        {"", 0, true},
        {" ", 1, true},
        {"~", 1, true},
        {"a\x01", 2, false},
        {"\x1f", 1, false},
        {"\t", 1, false},
        {"\x7f", 1, false},
        {"\xc2\x80", 2, false},
        {"\xc2\x85", 2, false},
        {"\xc2\x9f", 2, false},
        {"\xc2\xa0", 2, true},
        {"\xc3\xa9", 2, true},
        {"\xc3\x85", 2, true},  /* U+00C5: 0x85 as a continuation of C3 is fine */
        {"\xe2\x82\xac", 3, true},
        {"ab\x01", 2, true},    /* only len bytes are looked at */
        {"a\xc2\x85", 2, true}, /* the C1 pair is cut by len */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (payload_text_ok(t[i].s, t[i].len) != t[i].ok) UNIT_FAILF("case %zu: want %d", i, t[i].ok);
}

static void test_key_ok(void)
{
    char key[200];
    CHECK(!payload_key_ok(""));
    CHECK(payload_key_ok("a"));
    CHECK(payload_key_ok("!~"));
    CHECK(payload_key_ok("550e8400-e29b-41d4-a716-446655440000"));
    memset(key, 'k', 128);
    key[128] = 0;
    CHECK(payload_key_ok(key));
    key[128] = 'k';
    key[129] = 0;
    CHECK(!payload_key_ok(key));
    memset(key, 'k', 199);
    key[199] = 0;
    CHECK(!payload_key_ok(key));
    CHECK(!payload_key_ok("a b"));
    CHECK(!payload_key_ok(" a"));
    CHECK(!payload_key_ok("a\t"));
    CHECK(!payload_key_ok("a\x7f"));
    CHECK(!payload_key_ok("a\x01"));
    CHECK(!payload_key_ok("caf\xc3\xa9")); /* ASCII only */
    CHECK(!payload_key_ok("\xff"));
}

static void test_content_type_ok(void)
{
    static const struct {
        const char *ct;
        bool ok;
    } t[] = {
        {NULL, true},
        {"application/json", true},
        {"APPLICATION/JSON", true},
        {"Application/JSON; charset=UTF-8", true},
        {"application/json; charset=utf-8", true},
        {"application/json;charset=utf-8", true},
        {"application/json; charset=\"utf-8\"", true},
        {"application/json ; charset=UTF-8 ", true},
        {" application/json", true},
        {"application/json   ", true},
        {"", false},
        {"application/json; charset=latin1", false},
        {"application/json; charset=iso-8859-1", false},
        {"application/json; charset=utf-16", false},
        {"application/json; charset=utf-8x", false},
        {"application/json; charset=utf-8; q=1", false},
        {"application/json; boundary=x", false},
        {"application/json;", false},
        {"application/json; charset=", false},
        {"text/plain", false},
        {"text/json", false},
        {"application/jsonx", false},
        {"application/json-patch+json", false},
        {"application/x-www-form-urlencoded", false},
        {"multipart/form-data; boundary=x", false},
        {"application/jso", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (payload_content_type_ok(t[i].ct) != t[i].ok)
            UNIT_FAILF("case %zu '%s': want %d", i, t[i].ct ? t[i].ct : "(null)", t[i].ok);
}

static const struct unit_case cases[] = {
    {"order_valid", test_order_valid},
    {"order_broken_json", test_order_broken_json},
    {"order_fields", test_order_fields},
    {"order_quantity_range", test_order_quantity_range},
    {"order_user_id_bytes", test_order_user_id_bytes},
    {"order_user_id_text", test_order_user_id_text},
    {"order_length", test_order_length},
    {"small_msg_buffer", test_small_msg_buffer},
    {"user_parse", test_user_parse},
    {"sale_valid_and_defaults", test_sale_valid_and_defaults},
    {"sale_refused", test_sale_refused},
    {"sale_name_bytes", test_sale_name_bytes},
    {"text_ok", test_text_ok},
    {"key_ok", test_key_ok},
    {"content_type_ok", test_content_type_ok},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

/* test_render — the purchase answer (render_order) against a table of orders,
 * and against what snprintf made of the same order before it was built by hand. */
#include <stdio.h>

#include "clock.h"
#include "outcome.h"
#include "render.h"
#include "unit.h"

/* The snprintf rendering render_order replaced (with the order token since). */
static size_t reference(const struct store_order *o, bool as_created, const char *token, char *buf, size_t size)
{
    char user[PAYLOAD_USER_MAX * 6 + 1], created[32], expires[48] = "null", paid[48] = "null";
    outcome_json_escape(user, 0, sizeof user, o->user_id);
    clock_rfc3339(o->created_at, created, sizeof created);
    if (o->expires_at) {
        expires[0] = '"';
        size_t n = 1 + clock_rfc3339(o->expires_at, expires + 1, sizeof expires - 2);
        snprintf(expires + n, sizeof expires - n, "\"");
    }
    const char *status = store_status_name(o->status);
    if (as_created) status = o->expires_at ? "pending" : "confirmed";
    else if (o->paid_at) {
        paid[0] = '"';
        size_t n = 1 + clock_rfc3339(o->paid_at, paid + 1, sizeof paid - 2);
        snprintf(paid + n, sizeof paid - n, "\"");
    }
    char tok[64] = "";
    if (token) snprintf(tok, sizeof tok, ",\"order_token\":\"%s\"", token);
    int n = snprintf(buf, size,
                     "{\"order_id\":%lld%s,\"sale_id\":%lld,\"user_id\":\"%s\",\"quantity\":%lld,"
                     "\"status\":\"%s\",\"created_at\":\"%s\",\"expires_at\":%s,\"paid_at\":%s}",
                     (long long)o->id, tok, (long long)o->sale_id, user, (long long)o->quantity, status,
                     created, expires, paid);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static void test_known_answer(void)
{
    struct store_order o = {.id = 42, .sale_id = 7, .quantity = 2, .created_at = 1795617753123};
    snprintf(o.user_id, sizeof o.user_id, "ann");
    o.status = STORE_CONFIRMED;
    char buf[512];
    size_t n = render_order(&o, true, NULL, buf, sizeof buf);
    CHECK_EQ_STR(buf, "{\"order_id\":42,\"sale_id\":7,\"user_id\":\"ann\",\"quantity\":2,\"status\":\"confirmed\","
                      "\"created_at\":\"2026-11-25T14:42:33.123Z\",\"expires_at\":null,\"paid_at\":null}");
    CHECK_EQ_INT(n, strlen(buf));
    n = render_order(&o, true, "0123456789abcdef0123456789abcdef", buf, sizeof buf);
    CHECK_EQ_STR(buf, "{\"order_id\":42,\"order_token\":\"0123456789abcdef0123456789abcdef\",\"sale_id\":7,"
                      "\"user_id\":\"ann\",\"quantity\":2,\"status\":\"confirmed\","
                      "\"created_at\":\"2026-11-25T14:42:33.123Z\",\"expires_at\":null,\"paid_at\":null}");
    CHECK_EQ_INT(n, strlen(buf));
}

static void test_agrees_with_snprintf(void)
{
    static const struct {
        const char *user, *status;
        int64_t id, quantity, created, expires, paid;
        bool as_created;
        const char *token;
    } table[] = {
        {"u1764081737-0-123456", "confirmed", 1, 1, 1795617753123, 0, 0, true, "7761b1cc25227dfca0bd6d972acc52ab"},
        {"u1764081737-0-123456", "confirmed", 1, 1, 1795617753123, 0, 0, true, NULL},
        {"kim", "pending", 9223372036854775807, 64, 1795617753000, 1795617813000, 0, true,
         "ffffffffffffffffffffffffffffffff"},
        {"kim", "paid", 12, 1, 1795617753000, 1795617813000, 1795617760001, false, NULL},
        {"kim", "paid", 12, 1, 1795617753000, 1795617813000, 1795617760001, true, "00000000000000000000000000000000"},
        {"a\"quote\\and\x01control", "expired", 3, 3, 1, 2, 0, false, NULL},
        {"\xe5\x8c\x97\xe4\xba\xac", "cancelled", 4, 1, 0, 0, 0, false, NULL},
        {"\xe5\x8c\x97\xe4\xba\xac", "pending", 4, 1, 0, 5, 0, true, "0123456789abcdef0123456789abcdef"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        struct store_order o = {.id = table[i].id, .sale_id = 5, .quantity = table[i].quantity,
                                .created_at = table[i].created, .expires_at = table[i].expires,
                                .paid_at = table[i].paid};
        snprintf(o.user_id, sizeof o.user_id, "%s", table[i].user);
        CHECK(store_status_parse(table[i].status, &o.status));
        char got[512], want[512];
        size_t n = render_order(&o, table[i].as_created, table[i].token, got, sizeof got);
        size_t m = reference(&o, table[i].as_created, table[i].token, want, sizeof want);
        CHECK_EQ_STR(got, want);
        CHECK_EQ_INT(n, m);
    }
}

static void test_location(void)
{
    struct store_order o = {.id = 9223372036854775807};
    char buf[64];
    CHECK_EQ_INT(render_order_location(&o, buf, sizeof buf), strlen("/api/v1/orders/9223372036854775807"));
    CHECK_EQ_STR(buf, "/api/v1/orders/9223372036854775807");
    o.id = 1;
    CHECK_EQ_INT(render_order_location(&o, buf, 16), 0); /* 16 bytes hold 15 characters, not 16 */
    CHECK_EQ_INT(render_order_location(&o, buf, 17), 16);
    CHECK_EQ_STR(buf, "/api/v1/orders/1");
}

/* Too small a buffer: 0, never a cut answer. */
static void test_too_small(void)
{
    struct store_order o = {.id = 1, .sale_id = 1, .quantity = 1, .created_at = 1};
    snprintf(o.user_id, sizeof o.user_id, "ann");
    char buf[40];
    CHECK_EQ_INT(render_order(&o, true, NULL, buf, sizeof buf), 0);
    CHECK_EQ_INT(render_order(&o, true, NULL, buf, 0), 0);
    char big[200]; /* room for the order, not for its token as well */
    size_t n = render_order(&o, true, NULL, big, sizeof big);
    CHECK(n > 0);
    CHECK_EQ_INT(render_order(&o, true, "0123456789abcdef0123456789abcdef", big, n + 20), 0);
}

static const struct unit_case cases[] = {
    {"known_answer", test_known_answer},
    {"agrees_with_snprintf", test_agrees_with_snprintf},
    {"too_small", test_too_small},
    {"location", test_location},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

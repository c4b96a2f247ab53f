/* test_route — route_match by table: every route, every method, every id shape. */
#include <stdint.h>

#include "route.h"
#include "unit.h"

struct route_case {
    enum route_method method;
    const char *path;
    enum outcome want;
    enum route route;
    int64_t id;
    const char *allow; /* NULL when none is expected */
};

static void route_check_table(const struct route_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct route_case *c = &cases[i];
        struct route_match m = {.route = ROUTE_COUNT, .id = -7, .allow = "junk"};
        enum outcome o = route_match(c->method, c->path, &m);
        if (o != c->want || m.route != c->route || m.id != c->id ||
            (c->allow == NULL) != (m.allow == NULL) ||
            (c->allow && strcmp(c->allow, m.allow) != 0)) {
            UNIT_FAILF("case %zu: method %d '%s': got outcome %d route %d id %lld allow '%s', "
                     "want %d %d %lld '%s'",
                     i, (int)c->method, c->path, (int)o, (int)m.route, (long long)m.id,
                     m.allow ? m.allow : "(null)", (int)c->want, (int)c->route, (long long)c->id,
                     c->allow ? c->allow : "(null)");
        }
    }
}

#define TABLE(t) route_check_table(t, sizeof t / sizeof t[0])

static void test_method_names(void)
{
    CHECK_EQ_INT(route_method("GET"), METHOD_GET);
    CHECK_EQ_INT(route_method("HEAD"), METHOD_HEAD);
    CHECK_EQ_INT(route_method("POST"), METHOD_POST);
    CHECK_EQ_INT(route_method("PUT"), METHOD_OTHER);
    CHECK_EQ_INT(route_method("DELETE"), METHOD_OTHER);
    CHECK_EQ_INT(route_method("get"), METHOD_OTHER); /* methods are case-sensitive */
    CHECK_EQ_INT(route_method(""), METHOD_OTHER);
    CHECK_EQ_INT(route_method("GETX"), METHOD_OTHER);
}

/* Every route of the table with each method: GET/HEAD-only routes, POST-only
 * routes and the one GET+POST route. */
static void test_every_route_every_method(void)
{
    static const char *const G = "GET, HEAD", *const P = "POST", *const GP = "GET, HEAD, POST";
    static const struct route_case t[] = {
        {METHOD_GET, "/healthz", OUTCOME_OK, ROUTE_HEALTHZ, 0, NULL},
        {METHOD_HEAD, "/healthz", OUTCOME_OK, ROUTE_HEALTHZ, 0, NULL},
        {METHOD_POST, "/healthz", OUTCOME_METHOD, ROUTE_HEALTHZ, 0, G},
        {METHOD_OTHER, "/healthz", OUTCOME_METHOD, ROUTE_HEALTHZ, 0, G},

        {METHOD_GET, "/metrics", OUTCOME_OK, ROUTE_METRICS, 0, NULL},
        {METHOD_HEAD, "/metrics", OUTCOME_OK, ROUTE_METRICS, 0, NULL},
        {METHOD_POST, "/metrics", OUTCOME_METHOD, ROUTE_METRICS, 0, G},
        {METHOD_OTHER, "/metrics", OUTCOME_METHOD, ROUTE_METRICS, 0, G},

        {METHOD_GET, "/api/v1/stats", OUTCOME_OK, ROUTE_STATS, 0, NULL},
        {METHOD_HEAD, "/api/v1/stats", OUTCOME_OK, ROUTE_STATS, 0, NULL},
        {METHOD_POST, "/api/v1/stats", OUTCOME_METHOD, ROUTE_STATS, 0, G},
        {METHOD_OTHER, "/api/v1/stats", OUTCOME_METHOD, ROUTE_STATS, 0, G},

        {METHOD_GET, "/api/v1/sales", OUTCOME_OK, ROUTE_SALES, 0, NULL},
        {METHOD_HEAD, "/api/v1/sales", OUTCOME_OK, ROUTE_SALES, 0, NULL},
        {METHOD_POST, "/api/v1/sales", OUTCOME_OK, ROUTE_SALES, 0, NULL},
        {METHOD_OTHER, "/api/v1/sales", OUTCOME_METHOD, ROUTE_SALES, 0, GP},

        {METHOD_GET, "/api/v1/sales/42", OUTCOME_OK, ROUTE_SALE, 42, NULL},
        {METHOD_HEAD, "/api/v1/sales/42", OUTCOME_OK, ROUTE_SALE, 42, NULL},
        {METHOD_POST, "/api/v1/sales/42", OUTCOME_METHOD, ROUTE_SALE, 42, G},
        {METHOD_OTHER, "/api/v1/sales/42", OUTCOME_METHOD, ROUTE_SALE, 42, G},

        {METHOD_POST, "/api/v1/sales/7/orders", OUTCOME_OK, ROUTE_ORDER_CREATE, 7, NULL},
        {METHOD_GET, "/api/v1/sales/7/orders", OUTCOME_METHOD, ROUTE_ORDER_CREATE, 7, P},
        {METHOD_HEAD, "/api/v1/sales/7/orders", OUTCOME_METHOD, ROUTE_ORDER_CREATE, 7, P},
        {METHOD_OTHER, "/api/v1/sales/7/orders", OUTCOME_METHOD, ROUTE_ORDER_CREATE, 7, P},

        {METHOD_GET, "/api/v1/sales/3/audit", OUTCOME_OK, ROUTE_AUDIT, 3, NULL},
        {METHOD_HEAD, "/api/v1/sales/3/audit", OUTCOME_OK, ROUTE_AUDIT, 3, NULL},
        {METHOD_POST, "/api/v1/sales/3/audit", OUTCOME_METHOD, ROUTE_AUDIT, 3, G},
        {METHOD_OTHER, "/api/v1/sales/3/audit", OUTCOME_METHOD, ROUTE_AUDIT, 3, G},

        {METHOD_POST, "/api/v1/sales/9/reset", OUTCOME_OK, ROUTE_RESET, 9, NULL},
        {METHOD_GET, "/api/v1/sales/9/reset", OUTCOME_METHOD, ROUTE_RESET, 9, P},
        {METHOD_HEAD, "/api/v1/sales/9/reset", OUTCOME_METHOD, ROUTE_RESET, 9, P},
        {METHOD_OTHER, "/api/v1/sales/9/reset", OUTCOME_METHOD, ROUTE_RESET, 9, P},

        {METHOD_GET, "/api/v1/orders/5", OUTCOME_OK, ROUTE_ORDER, 5, NULL},
        {METHOD_HEAD, "/api/v1/orders/5", OUTCOME_OK, ROUTE_ORDER, 5, NULL},
        {METHOD_POST, "/api/v1/orders/5", OUTCOME_METHOD, ROUTE_ORDER, 5, G},
        {METHOD_OTHER, "/api/v1/orders/5", OUTCOME_METHOD, ROUTE_ORDER, 5, G},

        {METHOD_POST, "/api/v1/orders/11/pay", OUTCOME_OK, ROUTE_PAY, 11, NULL},
        {METHOD_GET, "/api/v1/orders/11/pay", OUTCOME_METHOD, ROUTE_PAY, 11, P},
        {METHOD_HEAD, "/api/v1/orders/11/pay", OUTCOME_METHOD, ROUTE_PAY, 11, P},
        {METHOD_OTHER, "/api/v1/orders/11/pay", OUTCOME_METHOD, ROUTE_PAY, 11, P},

        {METHOD_POST, "/api/v1/orders/12/cancel", OUTCOME_OK, ROUTE_CANCEL, 12, NULL},
        {METHOD_GET, "/api/v1/orders/12/cancel", OUTCOME_METHOD, ROUTE_CANCEL, 12, P},
        {METHOD_HEAD, "/api/v1/orders/12/cancel", OUTCOME_METHOD, ROUTE_CANCEL, 12, P},
        {METHOD_OTHER, "/api/v1/orders/12/cancel", OUTCOME_METHOD, ROUTE_CANCEL, 12, P},
    };
    TABLE(t);
}

/* Ids: 1..INT64_MAX in decimal.  A leading zero is accepted by route_id (it only
 * counts digits and the value), so "01" is id 1; this asserts the current code. */
static void test_ids(void)
{
    static const struct route_case t[] = {
        {METHOD_GET, "/api/v1/sales/1", OUTCOME_OK, ROUTE_SALE, 1, NULL},
        {METHOD_GET, "/api/v1/sales/9223372036854775807", OUTCOME_OK, ROUTE_SALE, INT64_MAX, NULL},
        {METHOD_POST, "/api/v1/sales/9223372036854775807/orders", OUTCOME_OK, ROUTE_ORDER_CREATE,
         INT64_MAX, NULL},
        {METHOD_GET, "/api/v1/orders/9223372036854775807", OUTCOME_OK, ROUTE_ORDER, INT64_MAX, NULL},
        {METHOD_GET, "/api/v1/sales/01", OUTCOME_OK, ROUTE_SALE, 1, NULL},
        {METHOD_GET, "/api/v1/sales/0000000000000000001", OUTCOME_OK, ROUTE_SALE, 1, NULL}, /* 19 digits */
        {METHOD_GET, "/api/v1/sales/0", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/00", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/9223372036854775808", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/9999999999999999999", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/18446744073709551617", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/10000000000000000000", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/00000000000000000001", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL}, /* 20 digits */
        {METHOD_GET, "/api/v1/sales/-1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/+1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1a", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/a1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1.0", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/ 1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/0x1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales//orders", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_POST, "/api/v1/sales/0/orders", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_POST, "/api/v1/orders/-5/pay", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/orders/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
    };
    TABLE(t);
}

/* Trailing slashes, extra segments, near misses and the /api prefix. */
static void test_not_found(void)
{
    static const struct route_case t[] = {
        {METHOD_GET, "/api/v1/sales/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_POST, "/api/v1/sales/1/orders/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1/audit/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_POST, "/api/v1/orders/1/pay/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/stats/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1/orders/2", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales/1/order", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sale/1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/salesx", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/Sales", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v2/sales", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_POST, "/api/anything", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_OTHER, "/api/v1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "/api/v1/sales?x=1", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "healthz", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "api/v1/sales", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
        {METHOD_GET, "*", OUTCOME_NOT_FOUND, ROUTE_UNKNOWN, 0, NULL},
    };
    TABLE(t);
}

/* Everything else under / belongs to the dashboard: GET/HEAD ok, others 405.
 * Note: "/healthz/" and "/metrics/" fall through to static too (only /api/ paths
 * are 404 here); the static handler then answers 404 for a missing file. */
static void test_static(void)
{
    static const char *const G = "GET, HEAD";
    static const struct route_case t[] = {
        {METHOD_GET, "/", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_HEAD, "/", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/index.html", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/app.js", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/css/site.css", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/apix", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/api.html", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/healthz/", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_GET, "/metricsx", OUTCOME_OK, ROUTE_STATIC, 0, NULL},
        {METHOD_POST, "/", OUTCOME_METHOD, ROUTE_STATIC, 0, G},
        {METHOD_POST, "/index.html", OUTCOME_METHOD, ROUTE_STATIC, 0, G},
        {METHOD_OTHER, "/index.html", OUTCOME_METHOD, ROUTE_STATIC, 0, G},
    };
    TABLE(t);
}

static void test_route_names(void)
{
    static const struct {
        enum route r;
        const char *name;
    } t[] = {
        {ROUTE_UNKNOWN, "unknown"},     {ROUTE_STATIC, "static"},       {ROUTE_HEALTHZ, "healthz"},
        {ROUTE_METRICS, "metrics"},     {ROUTE_STATS, "stats"},         {ROUTE_SALES, "sales"},
        {ROUTE_SALE, "sale"},           {ROUTE_ORDER_CREATE, "order_create"},
        {ROUTE_AUDIT, "audit"},         {ROUTE_RESET, "reset"},         {ROUTE_ORDER, "order"},
        {ROUTE_PAY, "pay"},             {ROUTE_CANCEL, "cancel"},       {ROUTE_COUNT, "unknown"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK_EQ_STR(route_name(t[i].r), t[i].name);
}

/* A failed match leaves no stale id or allow behind. */
static void test_resets_match(void)
{
    struct route_match m;
    CHECK_EQ_INT(route_match(METHOD_POST, "/api/v1/orders/5", &m), OUTCOME_METHOD);
    CHECK(m.allow != NULL);
    CHECK_EQ_INT(route_match(METHOD_GET, "/api/nope", &m), OUTCOME_NOT_FOUND);
    CHECK_EQ_INT(m.route, ROUTE_UNKNOWN);
    CHECK_EQ_INT(m.id, 0);
    CHECK(m.allow == NULL);
}

static const struct unit_case cases[] = {
    {"method_names", test_method_names},
    {"every_route_every_method", test_every_route_every_method},
    {"ids", test_ids},
    {"not_found", test_not_found},
    {"static", test_static},
    {"route_names", test_route_names},
    {"resets_match", test_resets_match},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

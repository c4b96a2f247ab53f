/* route — see route.h.  The table below is the whole URL space of the service. */
#include "route.h"

#include <string.h>

enum route_allow { ALLOW_GET, ALLOW_POST, ALLOW_GET_POST };

static const struct {
    enum route route;
    const char *pattern; /* '#' stands for one {id} segment */
    enum route_allow allow;
    const char *name;
} route_table[] = {
    {ROUTE_HEALTHZ, "/healthz", ALLOW_GET, "healthz"},
    {ROUTE_METRICS, "/metrics", ALLOW_GET, "metrics"},
    {ROUTE_STATS, "/api/v1/stats", ALLOW_GET, "stats"},
    {ROUTE_SALES, "/api/v1/sales", ALLOW_GET_POST, "sales"},
    {ROUTE_SALE, "/api/v1/sales/#", ALLOW_GET, "sale"},
    {ROUTE_ORDER_CREATE, "/api/v1/sales/#/orders", ALLOW_POST, "order_create"},
    {ROUTE_AUDIT, "/api/v1/sales/#/audit", ALLOW_GET, "audit"},
    {ROUTE_RESET, "/api/v1/sales/#/reset", ALLOW_POST, "reset"},
    {ROUTE_ORDER, "/api/v1/orders/#", ALLOW_GET, "order"},
    {ROUTE_PAY, "/api/v1/orders/#/pay", ALLOW_POST, "pay"},
    {ROUTE_CANCEL, "/api/v1/orders/#/cancel", ALLOW_POST, "cancel"},
};

static const char *const route_allow_header[] = {"GET, HEAD", "POST", "GET, HEAD, POST"};

enum route_method route_method(const char *method)
{
    if (strcmp(method, "GET") == 0) return METHOD_GET;
    if (strcmp(method, "POST") == 0) return METHOD_POST;
    if (strcmp(method, "HEAD") == 0) return METHOD_HEAD;
    return METHOD_OTHER;
}

/* Parses 1..19 digits up to the next '/' or the end into 1..INT64_MAX.  Returns the
 * number of characters consumed, or 0 when the segment is not such an id. */
static size_t route_id(const char *p, int64_t *id)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; p[n] >= '0' && p[n] <= '9'; n++) {
        if (n == 19) return 0;
        v = v * 10 + (uint64_t)(p[n] - '0');
    }
    if (n == 0 || (p[n] && p[n] != '/') || v == 0 || v > (uint64_t)INT64_MAX) return 0;
    *id = (int64_t)v;
    return n;
}

/* Matches path against pattern; on success stores the id (if any). */
static int route_fits(const char *pattern, const char *path, int64_t *id)
{
    while (*pattern) {
        if (*pattern == '#') {
            size_t n = route_id(path, id);
            if (!n) return 0;
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return *path == 0;
}

enum outcome route_match(enum route_method method, const char *path, struct route_match *m)
{
    m->route = ROUTE_UNKNOWN;
    m->id = 0;
    m->allow = NULL;
    for (size_t i = 0; i < sizeof route_table / sizeof route_table[0]; i++) {
        int64_t id = 0;
        if (!route_fits(route_table[i].pattern, path, &id)) continue;
        m->route = route_table[i].route;
        m->id = id;
        enum route_allow allow = route_table[i].allow;
        int get_ok = allow != ALLOW_POST && (method == METHOD_GET || method == METHOD_HEAD);
        int post_ok = allow != ALLOW_GET && method == METHOD_POST;
        if (get_ok || post_ok) return OUTCOME_OK;
        m->allow = route_allow_header[allow];
        return OUTCOME_METHOD;
    }
    /* Everything outside the API and the two plain endpoints is the dashboard's. */
    if (path[0] == '/' && strncmp(path, "/api/", 5) != 0 && strcmp(path, "/api") != 0) {
        m->route = ROUTE_STATIC;
        if (method == METHOD_GET || method == METHOD_HEAD) return OUTCOME_OK;
        m->allow = route_allow_header[ALLOW_GET];
        return OUTCOME_METHOD;
    }
    return OUTCOME_NOT_FOUND;
}

const char *route_name(enum route r)
{
    if (r == ROUTE_STATIC) return "static";
    for (size_t i = 0; i < sizeof route_table / sizeof route_table[0]; i++)
        if (route_table[i].route == r) return route_table[i].name;
    return "unknown";
}

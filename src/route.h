/* route — maps (method, path) to one of the service's routes.
 *
 * Pure and allocation-free, so it is unit-tested by table and fuzzed.  Ids in
 * paths are decimal integers from 1 to 2^63-1; anything else is not_found.
 */
#ifndef FLASHSALE_ROUTE_H
#define FLASHSALE_ROUTE_H

#include <stdint.h>

#include "outcome.h"

enum route {
    ROUTE_UNKNOWN, /* no route matched: 404 */
    ROUTE_STATIC,  /* GET / and the dashboard's files */
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_STATS,
    ROUTE_SALES,        /* GET list, POST create (admin) */
    ROUTE_SALE,         /* GET /api/v1/sales/{id} */
    ROUTE_ORDER_CREATE, /* POST /api/v1/sales/{id}/orders */
    ROUTE_AUDIT,        /* GET /api/v1/sales/{id}/audit */
    ROUTE_RESET,        /* POST /api/v1/sales/{id}/reset (admin) */
    ROUTE_ORDER,        /* GET /api/v1/orders/{id} */
    ROUTE_PAY,          /* POST /api/v1/orders/{id}/pay */
    ROUTE_CANCEL,       /* POST /api/v1/orders/{id}/cancel */
    ROUTE_COUNT
};

enum route_method { METHOD_GET, METHOD_HEAD, METHOD_POST, METHOD_OTHER };

struct route_match {
    enum route route;
    int64_t id;        /* the {id} in the path, 0 when the route has none */
    const char *allow; /* the Allow header when the outcome is OUTCOME_METHOD */
};

enum route_method route_method(const char *method);

/* Fills m and returns OUTCOME_OK, OUTCOME_NOT_FOUND or OUTCOME_METHOD (m->allow set).
 * m->route is set even on OUTCOME_METHOD, for metrics. */
enum outcome route_match(enum route_method method, const char *path, struct route_match *m);

/* A short label for metrics: "sale", "order_create", ... */
const char *route_name(enum route r);

#endif

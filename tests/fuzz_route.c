/* fuzz_route — libFuzzer harness for the router (route.c).
 *
 * The input, cut at its first NUL, is the path; route_match runs with every
 * method.  Invariants: the outcome is OK, NOT_FOUND or METHOD; allow is set iff
 * the outcome is METHOD; an id is in 1..INT64_MAX exactly when the route has an
 * {id} segment (and the id's digits are in the path), otherwise 0; NOT_FOUND
 * means ROUTE_UNKNOWN; the route does not depend on the method; route_name never
 * returns NULL.  Built by tests/fuzz.sh: clang -fsanitize=fuzzer,address,undefined.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_route: invariant broken at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int fuzz_has_id(enum route r)
{
    return r == ROUTE_SALE || r == ROUTE_ORDER_CREATE || r == ROUTE_AUDIT || r == ROUTE_RESET ||
           r == ROUTE_ORDER || r == ROUTE_PAY || r == ROUTE_CANCEL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = malloc(size + 1); /* exact size: ASan sees any read past the NUL */
    if (!path) return 0;
    memcpy(path, data, size);
    path[size] = 0;

    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "get", ""};
    enum route first = ROUTE_COUNT;
    int64_t first_id = -1;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        enum route_method m = route_method(methods[i]);
        FUZZ_CHECK(m >= METHOD_GET && m <= METHOD_OTHER);
        struct route_match rm;
        memset(&rm, 0xA5, sizeof rm);
        enum outcome o = route_match(m, path, &rm);
        FUZZ_CHECK(o == OUTCOME_OK || o == OUTCOME_NOT_FOUND || o == OUTCOME_METHOD);
        FUZZ_CHECK(rm.route >= ROUTE_UNKNOWN && rm.route < ROUTE_COUNT);
        FUZZ_CHECK((rm.allow != NULL) == (o == OUTCOME_METHOD));
        if (rm.allow) FUZZ_CHECK(rm.allow[0] != 0);
        FUZZ_CHECK((o == OUTCOME_NOT_FOUND) == (rm.route == ROUTE_UNKNOWN));
        if (fuzz_has_id(rm.route)) {
            FUZZ_CHECK(rm.id >= 1 && rm.id <= INT64_MAX);
            char digits[24];
            snprintf(digits, sizeof digits, "%" PRId64, rm.id);
            FUZZ_CHECK(strstr(path, digits) != NULL); /* the id came from the path's digits */
        } else {
            FUZZ_CHECK(rm.id == 0);
        }
        if (rm.route == ROUTE_STATIC) FUZZ_CHECK(path[0] == '/' && strncmp(path, "/api/", 5) != 0);
        if (o == OUTCOME_OK && rm.route != ROUTE_STATIC)
            FUZZ_CHECK(strncmp(path, "/api/", 5) == 0 || strcmp(path, "/healthz") == 0 ||
                       strcmp(path, "/metrics") == 0);
        FUZZ_CHECK(route_name(rm.route) != NULL);
        if (first == ROUTE_COUNT) {
            first = rm.route;
            first_id = rm.id;
        } else {
            FUZZ_CHECK(rm.route == first && rm.id == first_id); /* the method never changes the match */
        }
    }
    free(path);
    return 0;
}

/* test_outcome — the one table from outcome to HTTP: status, JSON body and the
 * headers a refusal carries. */
#include "outcome.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* Every refusal's body is {"error":code,"message":text}, and the status is an error. */
static void test_every_row_is_an_error_with_json(void)
{
    for (int o = 1; o < OUTCOME_COUNT; o++) {
        char body[512], want[512];
        size_t len = outcome_json((enum outcome)o, NULL, body, sizeof body);
        snprintf(want, sizeof want, "{\"error\":\"%s\",\"message\":\"%s\"}", outcome_code((enum outcome)o),
                 outcome_message((enum outcome)o));
        CHECK_EQ_STR(body, want);
        CHECK_EQ_INT((int)len, (int)strlen(want));
        CHECK(outcome_status((enum outcome)o) >= 400 && outcome_status((enum outcome)o) <= 599);
    }
}

static void test_message_is_escaped(void)
{
    char body[128];
    outcome_json(OUTCOME_INVALID, "a \"quote\"\n", body, sizeof body);
    CHECK_EQ_STR(body, "{\"error\":\"invalid_request\",\"message\":\"a \\\"quote\\\"\\u000a\"}");
}

/* The headers each kind of refusal carries, as one string "Name: value; ...". */
static const struct {
    enum outcome o;
    int retry;
    const char *allow;
    const char *want;
} header_cases[] = {
    {OUTCOME_SOLD_OUT, 0, NULL, ""},
    {OUTCOME_NOT_FOUND, 0, NULL, ""},
    {OUTCOME_OVERLOADED, 0, NULL, "Retry-After: 1; "},
    {OUTCOME_UNAVAILABLE, 0, NULL, "Retry-After: 1; "},
    {OUTCOME_RESETTING, 0, NULL, "Retry-After: 1; "},
    {OUTCOME_RATE_LIMITED, 0, NULL, "Retry-After: 1; "},
    {OUTCOME_RATE_LIMITED, 7, NULL, "Retry-After: 7; "},
    {OUTCOME_METHOD, 0, "GET, HEAD", "Allow: GET, HEAD; "},
    {OUTCOME_UNAUTHORIZED, 0, NULL, "WWW-Authenticate: Bearer realm=\"flashsale admin\"; "},
    {OUTCOME_BAD_TOKEN, 0, NULL, ""},
    {OUTCOME_INTERNAL, 0, NULL, ""},
    {OUTCOME_NOT_IMPLEMENTED, 0, NULL, ""},
    {OUTCOME_HTTP_VERSION, 0, NULL, ""},
};

static void test_headers(void)
{
    for (size_t i = 0; i < sizeof header_cases / sizeof header_cases[0]; i++) {
        char retry[12], got[256] = "";
        const char *h[OUTCOME_HEADERS_MAX];
        size_t n = outcome_headers(header_cases[i].o, header_cases[i].retry, header_cases[i].allow, retry, h);
        for (size_t k = 0; k < n; k++) {
            size_t used = strlen(got);
            snprintf(got + used, sizeof got - used, "%s: %s; ", h[2 * k], h[2 * k + 1]);
        }
        CHECK(h[2 * n] == NULL);
        CHECK_EQ_STR(got, header_cases[i].want);
    }
}

static void test_framing_statuses(void)
{
    CHECK_EQ_INT(outcome_status(OUTCOME_NOT_IMPLEMENTED), 501);
    CHECK_EQ_INT(outcome_status(OUTCOME_HTTP_VERSION), 505);
    CHECK_EQ_STR(outcome_code(OUTCOME_HTTP_VERSION), "http_version_not_supported");
}

static const struct unit_case cases[] = {
    {"every_row_is_an_error_with_json", test_every_row_is_an_error_with_json},
    {"message_is_escaped", test_message_is_escaped},
    {"headers", test_headers},
    {"framing_statuses", test_framing_statuses},
    {NULL, NULL},
};

int main(void) { return unit_run(cases); }

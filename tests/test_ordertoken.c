/* test_ordertoken — tokens against HMAC-SHA256 computed the plain way (and by
 * Python's hmac module, for the fixed vector), and the checks that refuse. */
#include <stdio.h>
#include <string.h>

#include "ordertoken.h"
#include "unit.h"

static const uint8_t secret[ORDERTOKEN_SECRET_LEN] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};

/* hmac.new(bytes(range(32)), b"1", hashlib.sha256).hexdigest()[:32] */
static void test_known_answer(void)
{
    struct ordertoken t;
    ordertoken_init(&t, secret);
    char got[ORDERTOKEN_LEN + 1];
    ordertoken_make(&t, 1, got);
    CHECK_EQ_STR(got, "7761b1cc25227dfca0bd6d972acc52ab");
}

static void test_agrees_with_hmac(void)
{
    struct ordertoken t;
    ordertoken_init(&t, secret);
    static const int64_t ids[] = {1, 2, 9, 10, 99, 100, 123456789, INT64_MAX, 0, -7};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char num[24], want[ORDERTOKEN_LEN + 1], got[ORDERTOKEN_LEN + 1];
        int n = snprintf(num, sizeof num, "%lld", (long long)ids[i]);
        uint8_t mac[HMAC_SHA256_LEN];
        hmac_sha256(secret, sizeof secret, num, (size_t)n, mac);
        for (int k = 0; k < ORDERTOKEN_LEN / 2; k++) snprintf(want + 2 * k, 3, "%02x", mac[k]);
        ordertoken_make(&t, ids[i], got);
        CHECK_EQ_STR(got, want);
        CHECK(ordertoken_check(&t, ids[i], want));
    }
}

static void test_refused(void)
{
    struct ordertoken t, other;
    ordertoken_init(&t, secret);
    uint8_t s2[ORDERTOKEN_SECRET_LEN];
    memcpy(s2, secret, sizeof s2);
    s2[31] ^= 1;
    ordertoken_init(&other, s2);
    char tok[ORDERTOKEN_LEN + 1], tok2[ORDERTOKEN_LEN + 1], theirs[ORDERTOKEN_LEN + 1], longer[ORDERTOKEN_LEN + 2];
    ordertoken_make(&t, 5, tok);
    ordertoken_make(&t, 6, tok2);
    ordertoken_make(&other, 5, theirs);
    CHECK(strcmp(tok, tok2) != 0);
    CHECK(strcmp(tok, theirs) != 0);
    CHECK(!ordertoken_check(&t, 5, NULL));
    CHECK(!ordertoken_check(&t, 5, ""));
    CHECK(!ordertoken_check(&t, 5, tok2));   /* another order's token */
    CHECK(!ordertoken_check(&t, 5, theirs)); /* another database's token */
    char cut[ORDERTOKEN_LEN];
    memcpy(cut, tok, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    CHECK(!ordertoken_check(&t, 5, cut));
    snprintf(longer, sizeof longer, "%s0", tok);
    CHECK(!ordertoken_check(&t, 5, longer));
    char upper[ORDERTOKEN_LEN + 1];
    for (int i = 0; i <= ORDERTOKEN_LEN; i++) upper[i] = (char)(tok[i] >= 'a' && tok[i] <= 'f' ? tok[i] - 32 : tok[i]);
    if (strcmp(upper, tok) != 0) CHECK(!ordertoken_check(&t, 5, upper)); /* lowercase, as documented */
    for (int i = 0; i < ORDERTOKEN_LEN; i++) { /* one character off anywhere */
        char bad[ORDERTOKEN_LEN + 1];
        memcpy(bad, tok, sizeof bad);
        bad[i] = bad[i] == '0' ? '1' : '0';
        CHECK(!ordertoken_check(&t, 5, bad));
    }
    CHECK(ordertoken_check(&t, 5, tok));
}

static const struct unit_case cases[] = {
    {"known_answer", test_known_answer},
    {"agrees_with_hmac", test_agrees_with_hmac},
    {"refused", test_refused},
    {NULL, NULL}};

int main(void) { return unit_run(cases); }

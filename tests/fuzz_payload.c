/* fuzz_payload — libFuzzer harness for the request-body validators (payload.c).
 *
 * Every input is fed to each parser and predicate; on OUTCOME_OK the outputs must
 * satisfy what payload.h documents (lengths, no control characters, ranges), and
 * on failure the message must be a NUL-terminated, non-empty string.  Any broken
 * invariant aborts, which libFuzzer reports as a crash with the input saved.
 * Built by tests/fuzz.sh: clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "payload.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_payload: invariant broken at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
static bool fuzz_utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

/* A NUL-terminated string of 1..max bytes of UTF-8, valid for payload_text_ok. */
static void fuzz_text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    FUZZ_CHECK(n >= 1 && n <= max);
    FUZZ_CHECK(payload_text_ok(s, n));
    FUZZ_CHECK(fuzz_utf8_ok((const unsigned char *)s, n));
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        FUZZ_CHECK(ch >= 0x20 && ch != 0x7f);
    }
}

/* The message written on failure: terminated inside msg and not empty. */
static void fuzz_msg_ok(const char *msg, size_t size)
{
    size_t n = strnlen(msg, size);
    FUZZ_CHECK(n < size);
    FUZZ_CHECK(n > 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_object_seed(1); /* deterministic hashing: reproducible runs */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly size bytes: ASan catches a parser reading past len. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    char msg[256];

    /* Orders.  Fill the output with garbage first: OK must write every field. */
    struct payload_order order;
    memset(&order, 0xA5, sizeof order);
    memset(msg, 'x', sizeof msg);
    enum outcome o = payload_order_parse(body, size, &order, msg, sizeof msg);
    FUZZ_CHECK(o == OUTCOME_OK || o == OUTCOME_INVALID);
    if (o == OUTCOME_OK) {
        fuzz_text_ok(order.user_id, PAYLOAD_USER_MAX);
        FUZZ_CHECK(order.quantity >= 1);
    } else {
        fuzz_msg_ok(msg, sizeof msg);
    }

    /* Pay/cancel bodies: a user id at most.  Anything valid here that names a
     * user is a valid order. */
    char user[PAYLOAD_USER_MAX + 1];
    memset(user, 0xA5, sizeof user);
    memset(msg, 'x', sizeof msg);
    enum outcome ou = payload_user_parse(body, size, user, msg, sizeof msg);
    FUZZ_CHECK(ou == OUTCOME_OK || ou == OUTCOME_INVALID);
    if (ou == OUTCOME_OK) {
        if (user[0]) fuzz_text_ok(user, PAYLOAD_USER_MAX);
        if (user[0]) FUZZ_CHECK(o == OUTCOME_OK && strcmp(user, order.user_id) == 0 && order.quantity == 1);
    } else {
        fuzz_msg_ok(msg, sizeof msg);
    }

    /* Sales. */
    struct payload_sale sale;
    memset(&sale, 0xA5, sizeof sale);
    memset(msg, 'x', sizeof msg);
    enum outcome os = payload_sale_parse(body, size, &sale, msg, sizeof msg);
    FUZZ_CHECK(os == OUTCOME_OK || os == OUTCOME_INVALID);
    if (os == OUTCOME_OK) {
        fuzz_text_ok(sale.name, PAYLOAD_NAME_MAX);
        FUZZ_CHECK(sale.stock >= 1 && sale.stock <= 1000000000);
        FUZZ_CHECK(sale.per_user_limit >= 1 && sale.per_user_limit <= 1000000000);
        FUZZ_CHECK(sale.starts_at >= 0 && sale.starts_at <= 253402300799);
        FUZZ_CHECK(sale.ends_at >= 0 && sale.ends_at <= 253402300799);
        FUZZ_CHECK(!sale.starts_at || !sale.ends_at || sale.ends_at > sale.starts_at);
        FUZZ_CHECK(sale.payment_window >= 0 && sale.payment_window <= 30 * 86400);
    } else {
        fuzz_msg_ok(msg, sizeof msg);
    }

    /* payload_text_ok on the raw bytes: true iff no C0, DEL or C1 (C2 80..C2 9F). */
    bool text = payload_text_ok(body, size);
    bool expect = true;
    for (size_t i = 0; i < size; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch < 0x20 || ch == 0x7f) expect = false;
        if (ch == 0xc2 && i + 1 < size && data[i + 1] >= 0x80 && data[i + 1] <= 0x9f) expect = false;
    }
    FUZZ_CHECK(text == expect);

    /* The header predicates take C strings: the input up to its first NUL. */
    char *str = malloc(size + 1);
    if (str) {
        memcpy(str, data, size);
        str[size] = 0;
        size_t n = strlen(str);
        bool key = payload_key_ok(str);
        bool key_expect = n >= 1 && n <= PAYLOAD_KEY_MAX;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)str[i] < 0x21 || (unsigned char)str[i] > 0x7e) key_expect = false;
        FUZZ_CHECK(key == key_expect);
        if (payload_content_type_ok(str)) {
            /* Accepted means it starts (after spaces) with application/json. */
            const char *p = str;
            while (*p == ' ') p++;
            FUZZ_CHECK(strncasecmp(p, "application/json", 16) == 0);
            FUZZ_CHECK(strchr(p, '\r') == NULL && strchr(p, '\n') == NULL);
        }
        free(str);
    }
    FUZZ_CHECK(payload_content_type_ok(NULL));

    free(body);
    return 0;
}

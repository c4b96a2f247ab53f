/* test_hmac — SHA-256 (FIPS 180-2 examples) and HMAC-SHA-256 (RFC 4231 cases 1-4, 6, 7),
 * one-shot and with a prepared key. */
#include <stdio.h>
#include <string.h>

#include "hmac.h"
#include "unit.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_vectors(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t d[HMAC_SHA256_LEN];
        char h[65];
        hmac_sha256_digest(cases[i].in, strlen(cases[i].in), d);
        hex(d, sizeof d, h);
        CHECK_EQ_STR(h, cases[i].want);
    }
    /* the padding at every boundary: the length fits in the last block, or needs another */
    static const struct {
        size_t n;
        const char *want;
    } edges[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        char in[128];
        uint8_t d[HMAC_SHA256_LEN];
        char h[65];
        memset(in, 'a', edges[i].n);
        hmac_sha256_digest(in, edges[i].n, d);
        hex(d, sizeof d, h);
        CHECK_EQ_STR(h, edges[i].want);
    }
    /* a million 'a's crosses many blocks */
    static char million[1000000];
    memset(million, 'a', sizeof million);
    uint8_t d[HMAC_SHA256_LEN];
    char h[65];
    hmac_sha256_digest(million, sizeof million, d);
    hex(d, sizeof d, h);
    CHECK_EQ_STR(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_hmac_rfc4231(void)
{
    uint8_t key1[20], key3[20], key4[25], key6[131], data3[50], data4[50];
    memset(key1, 0x0b, sizeof key1);
    memset(key3, 0xaa, sizeof key3);
    for (int i = 0; i < 25; i++) key4[i] = (uint8_t)(i + 1);
    memset(key6, 0xaa, sizeof key6);
    memset(data3, 0xdd, sizeof data3);
    memset(data4, 0xcd, sizeof data4);
    static const char d7[] = "This is a test using a larger than block-size key and a larger than block-size"
                             " data. The key needs to be hashed before being used by the HMAC algorithm.";
    const struct {
        const void *key;
        size_t key_len;
        const void *data;
        size_t len;
        const char *want;
    } cases[] = {
        {key1, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", 4, "what do ya want for nothing?", 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {key3, 20, data3, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {key4, 25, data4, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {key6, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {key6, 131, d7, sizeof d7 - 1, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t d[HMAC_SHA256_LEN];
        char h[65];
        hmac_sha256(cases[i].key, cases[i].key_len, cases[i].data, cases[i].len, d);
        hex(d, sizeof d, h);
        CHECK_EQ_STR(h, cases[i].want);
        /* the same with the pads hashed once, ahead of time */
        struct hmac_sha256_key k;
        hmac_sha256_key_init(&k, cases[i].key, cases[i].key_len);
        memset(d, 0, sizeof d);
        hmac_sha256_keyed(&k, cases[i].data, cases[i].len, d);
        hex(d, sizeof d, h);
        CHECK_EQ_STR(h, cases[i].want);
    }
}

static void test_equal(void)
{
    CHECK(hmac_equal("abcd", "abcd", 4));
    CHECK(!hmac_equal("abcd", "abce", 4));
    CHECK(!hmac_equal("xbcd", "abcd", 4));
    CHECK(hmac_equal("", "", 0));
}

int main(void)
{
    return unit_run(((const struct unit_case[]){{"sha256_vectors", test_sha256_vectors},
                                                {"hmac_rfc4231", test_hmac_rfc4231},
                                                {"equal", test_equal},
                                                {NULL, NULL}}));
}

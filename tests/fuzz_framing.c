/* fuzz_framing — libFuzzer harness for framing.c.
 *
 * The input is a header block after "HTTP/1.1" (its terminator first), laid out
 * as libmicrohttpd parses it (tests/framing_layout.h) and scanned.  Invariants,
 * for every block libmicrohttpd itself would accept: the verdict is a known fault;
 * a NUL byte in the block (but NULs that end a line, which the in-place block may
 * not show: framing.h), a folded line, Content-Length together with
 * Transfer-Encoding, or a second Content-Length or Host is never OK, and a block
 * the scan passes with NULs that end a line is refused by the gate.  The same
 * bytes behind a request line go to framing_first_bytes (the gate's verdict: OK,
 * VERSION, LINES or CL_INVALID only), and cut at a NUL to framing_path (the path is a
 * suffix of the target, or "/").  ASan/UBSan watch every read stay in the block.
 * Built by tests/fuzz.sh: clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "framing.h"
#include "framing_layout.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_framing: invariant broken at line %d: %s\n", __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* How many lines of the block (after the request line) are named name. */
static int fuzz_count(const char *raw, size_t len, const char *name)
{
    size_t nl = strlen(name);
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] != '\n') continue;
        if (i + 1 + nl < len && strncasecmp(raw + i + 1, name, nl) == 0 && raw[i + 1 + nl] == ':') n++;
    }
    return n;
}

/* The gate's verdict on the same bytes behind a request line. */
static enum framing_fault framing_first_bytes_of(const char *raw, size_t len)
{
    static char req[LAYOUT_SIZE + 64];
    memcpy(req, "POST / ", 7);
    memcpy(req + 7, raw, len);
    return framing_first_bytes(req, len + 7);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char raw[LAYOUT_SIZE + 64];
    if (size > LAYOUT_SIZE - 16) return 0;
    memcpy(raw, "HTTP/1.1", 8);
    memcpy(raw + 8, data, size);
    size_t len = 8 + size;

    int verdict = layout_scan(raw, len);
    if (verdict >= 0) {
        FUZZ_CHECK(verdict < FRAMING_COUNT);
        /* Only the block libmicrohttpd parsed: up to and including the empty line. */
        size_t block = len;
        for (size_t i = 8; i + 1 < len; i++) {
            if (raw[i] == '\n' && raw[i + 1] == '\n') { block = i + 2; break; }
            if (raw[i] == '\n' && i + 2 < len && raw[i + 1] == '\r' && raw[i + 2] == '\n') { block = i + 3; break; }
        }
        /* NULs that end a line (only NULs between them and its LF or CRLF) hide
         * nothing, and the in-place block may not show them: "v\0\n" leaves the
         * bytes "v\r\n" leaves, and "v\0\r\n\n" those of "v\r\n\r\n".  The gate,
         * which sees the raw bytes, must refuse those; any other NUL hides bytes
         * and framing_end() must refuse it. */
        int hides = 0, ends_line = 0;
        for (size_t i = 0; i < block; i++) {
            if (raw[i] != 0) continue;
            size_t j = i;
            while (j < block && raw[j] == 0) j++;
            if (j < block && (raw[j] == '\n' || (raw[j] == '\r' && j + 1 < block && raw[j + 1] == '\n')))
                ends_line = 1;
            else
                hides = 1;
            i = j;
        }
        int folded = 0;
        for (size_t i = 8; i + 1 < block; i++)
            if (raw[i] == '\n' && (raw[i + 1] == ' ' || raw[i + 1] == '\t')) folded = 1;
        int cl = fuzz_count(raw, block, "Content-Length"), te = fuzz_count(raw, block, "Transfer-Encoding");
        int host = fuzz_count(raw, block, "Host");
        if (hides || folded || (cl && te) || cl > 1 || host > 1) FUZZ_CHECK(verdict != FRAMING_OK);
        if (ends_line && verdict == FRAMING_OK) FUZZ_CHECK(framing_first_bytes_of(raw, len) == FRAMING_LINES);
    }

    enum framing_fault first = framing_first_bytes_of(raw, len);
    FUZZ_CHECK(first == FRAMING_OK || first == FRAMING_VERSION || first == FRAMING_CL_INVALID ||
               first == FRAMING_LINES);

    static char target[LAYOUT_SIZE + 1];
    memcpy(target, data, size);
    target[size] = 0;
    const char *path = framing_path(target);
    size_t tl = strlen(target);
    FUZZ_CHECK(path == target || strcmp(path, "/") == 0 ||
               (path > target && path < target + tl && path[0] == '/'));
    return 0;
}

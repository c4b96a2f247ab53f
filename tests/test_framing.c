/* Unit tests of framing: a table of raw header blocks, each turned into the in-place
 * layout libmicrohttpd 0.9.75 leaves (tests/framing_layout.h: terminators and ':'
 * overwritten with NUL, a value measured with strlen, an obs-fold glued onto the
 * previous name), then scanned; the first bytes the gate decides on; absolute-form
 * paths. */
#include <stdlib.h>

#include "framing.h"
#include "framing_layout.h"
#include "unit.h"

/* The verdict on a raw block laid out as libmicrohttpd leaves it; every row is a
 * block libmicrohttpd itself accepts. */
static enum framing_fault scan_raw(const char *raw, size_t len)
{
    int verdict = layout_scan(raw, len);
    CHECK(verdict >= 0);
    return (enum framing_fault)verdict;
}

#define RAW(s) s, sizeof s - 1

static const struct {
    const char *name;
    const char *raw;
    size_t len;
    enum framing_fault want;
} cases[] = {
    {"plain_get", RAW("HTTP/1.1\r\nHost: t\r\n\r\n"), FRAMING_OK},
    {"bare_lf_lines", RAW("HTTP/1.1\nHost: t\nX-A: b\n\n"), FRAMING_OK},
    {"post_with_length", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 18\r\n\r\n"), FRAMING_OK},
    {"post_chunked", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n"), FRAMING_OK},
    {"http10_no_host", RAW("HTTP/1.0\r\n\r\n"), FRAMING_OK},
    {"http10_no_host_lf", RAW("HTTP/1.0\n\n"), FRAMING_OK},
    {"empty_value", RAW("HTTP/1.1\r\nHost: t\r\nX-Empty:\r\nX-B: c\r\n\r\n"), FRAMING_OK},
    {"trailing_spaces_kept", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b  \r\n\r\n"), FRAMING_OK},
    {"tab_in_value", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\tc\r\n\r\n"), FRAMING_OK},
    {"length_zero", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"), FRAMING_OK},
    {"length_max", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775807\r\n\r\n"), FRAMING_OK},
    {"cl_and_te", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
     FRAMING_CL_AND_TE},
    {"te_and_cl", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"),
     FRAMING_CL_AND_TE},
    {"cl_twice_different", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 18\r\n\r\n"),
     FRAMING_CL_REPEATED},
    {"cl_twice_equal", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\n"),
     FRAMING_CL_REPEATED},
    {"cl_list", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_negative", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_plus", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: +18\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_hex", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 0x12\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_suffix", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 18abc\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_empty", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_2_63", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 9223372036854775808\r\n\r\n"), FRAMING_CL_INVALID},
    {"cl_2_64", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\n"), FRAMING_CL_INVALID},
    {"te_gzip", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"), FRAMING_TE_UNSUPPORTED},
    {"te_xchunked", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"), FRAMING_TE_UNSUPPORTED},
    {"te_chunked_identity", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
     FRAMING_TE_UNSUPPORTED},
    {"te_identity_chunked", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n"),
     FRAMING_TE_UNSUPPORTED},
    {"te_trailing_space", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked \r\n\r\n"),
     FRAMING_TE_UNSUPPORTED},
    {"te_twice", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     FRAMING_TE_REPEATED},
    {"te_in_http10", RAW("HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), FRAMING_TE_HTTP10},
    {"host_missing", RAW("HTTP/1.1\r\nX-A: b\r\n\r\n"), FRAMING_HOST_MISSING},
    {"host_missing_no_fields", RAW("HTTP/1.1\r\n\r\n"), FRAMING_HOST_MISSING},
    {"host_twice", RAW("HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), FRAMING_HOST_REPEATED},
    {"host_twice_http10", RAW("HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"), FRAMING_HOST_REPEATED},
    {"fold_in_middle", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\nX-B: d\r\n\r\n"), FRAMING_LINES},
    {"fold_last", RAW("HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n ;x=y\r\n\r\n"), FRAMING_LINES},
    {"fold_splits_length", RAW("HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n 8\r\n\r\n"), FRAMING_LINES},
    {"fold_twice", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n d\r\n\r\n"), FRAMING_LINES},
    {"fold_tab", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\r\n\tc\r\n\r\n"), FRAMING_LINES},
    {"nul_in_value_middle", RAW("HTTP/1.1\r\nAuthorization: Bearer T\0junk\r\nHost: t\r\n\r\n"), FRAMING_LINES},
    {"nul_in_value_last", RAW("HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\0\r\n\r\n"), FRAMING_LINES},
    {"nul_in_value_last_lf", RAW("HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\0\n\n"), FRAMING_LINES},
    /* The NULs the in-place block cannot show, all ending a line: "b\0\n" leaves the
     * bytes "b\r\n" leaves, "b\0\r\n\n" and "b\0\0\n\n" those of "b\r\n\r\n" (the
     * gate refuses them in a first request: test_first_bytes). */
    {"nul_before_lf_looks_like_cr", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\0\n\r\n"), FRAMING_OK},
    {"nul_before_crlf_then_lf", RAW("HTTP/1.1\r\nHost:\0\r\n\n"), FRAMING_OK},
    {"nuls_before_lf_then_lf", RAW("HTTP/1.1\r\nHost: t\0\0\n\n"), FRAMING_OK},
    {"nul_before_crlf_then_crlf", RAW("HTTP/1.1\r\nHost: t\0\r\n\r\n"), FRAMING_LINES},
    {"crlf_then_lf", RAW("HTTP/1.1\r\nHost: t\r\n\n"), FRAMING_LINES},
    {"nul_after_colon", RAW("HTTP/1.1\r\nHost:\0 t\r\n\r\n"), FRAMING_LINES},
    {"mixed_line_endings", RAW("HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n"), FRAMING_LINES},
    {"bare_cr_in_value", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\rc\r\n\r\n"), FRAMING_VALUE},
    {"del_in_value", RAW("HTTP/1.1\r\nHost: t\r\nX-A: b\x7f\r\n\r\n"), FRAMING_VALUE},
    {"space_before_colon", RAW("HTTP/1.1\r\nHost : t\r\n\r\n"), FRAMING_NAME},
    {"empty_name", RAW("HTTP/1.1\r\nHost: t\r\n: v\r\n\r\n"), FRAMING_NAME},
    {"name_with_slash", RAW("HTTP/1.1\r\nHost: t\r\nX/A: v\r\n\r\n"), FRAMING_NAME},
};

/* The row the forked child scans: set by the parent before each fork (unit.h). */
static size_t table_row;

static void scan_table_row(void)
{
    enum framing_fault got = scan_raw(cases[table_row].raw, cases[table_row].len);
    if (got != cases[table_row].want)
        UNIT_FAILF("fault %d, expected %d", (int)got, (int)cases[table_row].want);
}

/* One PASS/FAIL line per row, so the count says how many blocks were tried; each row
 * runs in its own child, like every case. */
static int run_table(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[600];
        struct unit_case c = {cases[i].name, scan_table_row};
        table_row = i;
        if (unit_run_case(&c, 60, why, sizeof why) == UNIT_PASS) {
            printf("PASS test_framing.c:table:%s\n", cases[i].name);
        } else {
            printf("FAIL test_framing.c:table:%s: %s\n", cases[i].name, why);
            failed++;
        }
    }
    fflush(stdout);
    return failed;
}

static void test_unknown_end_is_a_fault(void)
{
    char version[] = "HTTP/1.1\0\0";
    struct framing_scan s;
    framing_begin(&s, version, NULL);
    CHECK_EQ_INT(framing_end(&s), FRAMING_LINES);
}

static void test_statuses(void)
{
    for (int f = 1; f < FRAMING_COUNT; f++) {
        int want = f == FRAMING_TE_UNSUPPORTED ? 501 : f == FRAMING_VERSION ? 505 : 400;
        CHECK_EQ_INT(outcome_status(framing_outcome((enum framing_fault)f)), want);
        CHECK(framing_message((enum framing_fault)f) && strchr(framing_message((enum framing_fault)f), '"') == NULL);
    }
    CHECK_EQ_STR(outcome_code(framing_outcome(FRAMING_TE_UNSUPPORTED)), "not_implemented");
    CHECK_EQ_STR(outcome_code(framing_outcome(FRAMING_CL_AND_TE)), "invalid_request");
    CHECK_EQ_STR(outcome_code(framing_outcome(FRAMING_VERSION)), "http_version_not_supported");
}

static void test_first_bytes(void)
{
    static const struct {
        const char *raw;
        size_t len;
        enum framing_fault want;
    } rows[] = {
        {RAW("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), FRAMING_OK},
        {RAW("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), FRAMING_VERSION},
        {RAW("PRI * HTTP/2.0\r\n"), FRAMING_VERSION},
        {RAW("PRI * HTTP/2"), FRAMING_OK}, /* not all here: libmicrohttpd decides */
        {RAW("GET / HTTP/2.0\r\nHost: t\r\n\r\n"), FRAMING_VERSION},
        {RAW("GET / HTTP/0.9\r\n\r\n"), FRAMING_VERSION},
        {RAW("GET / HTTP/1.0\n\n"), FRAMING_OK},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18\r\n\r\n"), FRAMING_OK},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\ncontent-length:18446744073709551615\r\n\r\n"), FRAMING_OK},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\n"), FRAMING_CL_INVALID},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n"), FRAMING_CL_INVALID},
        {RAW("POST / HTTP/1.1\nHost: t\nContent-Length: 0x12\n\n"), FRAMING_CL_INVALID},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18 \r\n\r\n"), FRAMING_CL_INVALID},
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length:\r\n\r\n"), FRAMING_CL_INVALID},
        /* Only the first Content-Length is libmicrohttpd's; the rest is framing_end()'s. */
        {RAW("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: -1\r\n\r\n"), FRAMING_OK},
        /* With a Transfer-Encoding libmicrohttpd ignores Content-Length. */
        {RAW("POST / HTTP/1.1\r\nContent-Length: -1\r\nTransfer-Encoding: chunked\r\n\r\n"), FRAMING_OK},
        /* Not complete: libmicrohttpd reads on, and answers itself if it must. */
        {RAW("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n"), FRAMING_OK},
        {RAW("GET / HTTP/1.1\r\nHo"), FRAMING_OK},
        {RAW("GET / HTTP/1.1\r\nHost: t\r\nX-A: b\0\n\r\n"), FRAMING_LINES},
        {RAW("GET / HTTP/1.1\r\nHost:\0\r\n\n"), FRAMING_LINES},
        {RAW("GET / HTTP/1.1\r\nHost: t\0\0\n\n"), FRAMING_LINES},
        {RAW("GET / HTTP/1.1\r\nAuthorization: Bearer T\0junk\r\nHost: t\r\n\r\n"), FRAMING_LINES},
        /* The request line's NUL is http.c's to refuse (it cuts the path short). */
        {RAW("GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n"), FRAMING_OK},
        {RAW("G"), FRAMING_OK},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum framing_fault got = framing_first_bytes(rows[i].raw, rows[i].len);
        if (got != rows[i].want) {
            UNIT_FAILF("row %zu (%.40s): fault %d, expected %d", i, rows[i].raw, (int)got,
                       (int)rows[i].want);
        }
    }
}

static void test_paths(void)
{
    static const struct {
        const char *target, *path;
    } paths[] = {
        {"/api/v1/sales/1", "/api/v1/sales/1"},
        {"http://h:8080/api/v1/sales/1", "/api/v1/sales/1"},
        {"HTTP://h/healthz", "/healthz"},
        {"https://h/", "/"},
        {"http://h", "/"},
        {"*", "*"},
        {"http:/x", "http:/x"},
        {"ftp://h/x", "ftp://h/x"},
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        CHECK_EQ_STR(framing_path(paths[i].target), paths[i].path);
}

static const struct unit_case unit_cases[] = {{"unknown_end_is_a_fault", test_unknown_end_is_a_fault},
                                              {"statuses", test_statuses},
                                              {"paths", test_paths},
                                              {"first_bytes", test_first_bytes},
                                              {NULL, NULL}};

int main(void)
{
    int failed = run_table();
    return unit_run(unit_cases) | (failed != 0);
}

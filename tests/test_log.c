/* test_log — the text and JSON line formats, and that a JSON line stays valid JSON
 * whatever bytes the message holds (jansson, which rejects invalid UTF-8 and raw
 * control characters, is the judge). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

/* Runs one log_write with stderr redirected; returns the bytes written (malloc'd). */
static char *capture(enum log_level level, const char *msg)
{
    FILE *tmp = tmpfile();
    if (!tmp) abort();
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    log_write(level, "src/some_module.c", 42, "%s", msg);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fileno(tmp), 0, SEEK_END);
    if (n < 0) abort();
    char *buf = calloc(1, (size_t)n + 1);
    if (!buf) abort();
    lseek(fileno(tmp), 0, SEEK_SET);
    if (read(fileno(tmp), buf, (size_t)n) != (ssize_t)n) abort();
    fclose(tmp);
    return buf;
}

static const struct {
    const char *name, *msg, *want; /* want: the "msg" field once decoded */
} log_cases[] = {
    {"plain", "store: ready", "store: ready"},
    {"quote_backslash", "path \"a\\b\"", "path \"a\\b\""},
    {"tab_newline_cr", "a\tb\nc\rd", "a\tb\nc\rd"},
    {"control_bytes", "\x01\x1f\x7f", "\x01\x1f\x7f"},
    {"utf8_kept", "caf\xc3\xa9 \xe7\xa7\x92\xe6\x9d\x80 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe7\xa7\x92\xe6\x9d\x80 \xf0\x9f\x98\x80"},
    {"invalid_byte", "a\xff" "b", "a\xef\xbf\xbd" "b"},
    {"truncated_sequence", "a\xc3", "a\xef\xbf\xbd"},
    {"overlong", "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"surrogate", "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"beyond_u10ffff", "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"empty", "", ""},
};

static void test_json_cases(void)
{
    log_json = true;
    for (size_t i = 0; i < sizeof log_cases / sizeof log_cases[0]; i++) {
        char *line = capture(LOG_LEVEL_WARN, log_cases[i].msg);
        size_t n = strlen(line);
        CHECK(n > 0 && line[n - 1] == '\n' && strchr(line, '\n') == line + n - 1); /* one line */
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) fprintf(stderr, "case %s: %s: %s", log_cases[i].name, err.text, line);
        CHECK(o != NULL);
        CHECK_EQ_STR(json_string_value(json_object_get(o, "msg")), log_cases[i].want);
        CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "warn");
        CHECK(json_object_get(o, "file") == NULL); /* file:line only on debug and fatal */
        CHECK_EQ_INT(json_object_size(o), 3);
        json_decref(o);
        free(line);
    }
    log_json = false;
}

/* Debug lines carry the file's base name and the line, as in the text format. */
static void test_json_debug_where(void)
{
    log_json = true;
    char *line = capture(LOG_LEVEL_DEBUG, "x");
    log_json = false;
    json_t *o = json_loads(line, 0, NULL);
    CHECK(o != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "file")), "some_module.c");
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "line")), 42);
    const char *t = json_string_value(json_object_get(o, "time"));
    CHECK(t && strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
    json_decref(o);
    free(line);
}

/* A message past the 1 KiB cut, all of it characters that need escaping: the line
 * is cut, but never inside an escape, and stays valid JSON. */
static void test_json_long_message(void)
{
    for (const char *fill = "\"\x01\xff"; *fill; fill++) {
        char msg[5000];
        memset(msg, *fill, sizeof msg - 1);
        msg[sizeof msg - 1] = 0;
        log_json = true;
        char *line = capture(LOG_LEVEL_ERROR, msg);
        log_json = false;
        json_t *o = json_loads(line, 0, NULL);
        CHECK(o != NULL);
        size_t len = strlen(json_string_value(json_object_get(o, "msg")));
        CHECK(len > 100 && len < 4000);
        json_decref(o);
        free(line);
    }
}

static void test_text_format(void)
{
    log_json = false;
    char *line = capture(LOG_LEVEL_INFO, "hello");
    CHECK(strlen(line) == 24 + 1 + 5 + 1 + 5 + 1); /* time, "info ", "hello\n" */
    CHECK(strcmp(line + 25, "info  hello\n") == 0);
    free(line);
    line = capture(LOG_LEVEL_DEBUG, "d");
    CHECK(strstr(line, " debug [some_module.c:42] d\n") != NULL);
    free(line);
}

static const struct unit_case cases[] = {
    {"json_cases", test_json_cases},
    {"json_debug_where", test_json_debug_where},
    {"json_long_message", test_json_long_message},
    {"text_format", test_text_format},
    {NULL, NULL},
};

int main(void) { return unit_run(cases); }

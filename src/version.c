/* version — see version.h. */
#include "version.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <sqlite3.h>

void version_libs(struct version_libs *out)
{
    out->microhttpd = MHD_get_version();
    out->sqlite = sqlite3_libversion();
    out->jansson = jansson_version_str();
    /* libpq encodes major*10000 + minor since 10, major*10000 + minor*100 + patch before. */
    int v = PQlibVersion();
    if (v >= 100000) snprintf(out->libpq, sizeof out->libpq, "%d.%d", v / 10000, v % 10000);
    else snprintf(out->libpq, sizeof out->libpq, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
}

void version_print(FILE *out)
{
    struct version_libs l;
    version_libs(&l);
    fprintf(out, "flashsale %s\nlibmicrohttpd %s\nSQLite %s\njansson %s\nlibpq %s\n", FLASHSALE_VERSION,
            l.microhttpd, l.sqlite, l.jansson, l.libpq);
}

/* Label values may not hold '"', '\\' or a newline unescaped; versions never do,
 * but a mangled library string must not break the whole scrape. */
static void version_label(FILE *out, const char *name, const char *value)
{
    fprintf(out, "%s=\"", name);
    for (const char *p = value; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', out);
        if (*p == '\n') fputs("\\n", out);
        else fputc(*p, out);
    }
    fputc('"', out);
}

void version_prometheus(FILE *out)
{
    struct version_libs l;
    version_libs(&l);
    fputs("# HELP flashsale_build_info The running version and the libraries it runs with (always 1).\n"
          "# TYPE flashsale_build_info gauge\nflashsale_build_info{",
          out);
    version_label(out, "version", FLASHSALE_VERSION);
    fputc(',', out);
    version_label(out, "libmicrohttpd", l.microhttpd);
    fputc(',', out);
    version_label(out, "sqlite", l.sqlite);
    fputc(',', out);
    version_label(out, "jansson", l.jansson);
    fputc(',', out);
    version_label(out, "libpq", l.libpq);
    fputs("} 1\n", out);
}

/* version — what this binary is, and the libraries it runs with.
 *
 * FLASHSALE_VERSION is the one place the version is written: --version, the man
 * page (config_man) and the flashsale_build_info metric all read it.  The library
 * versions are asked of the libraries loaded at run time, not of the headers
 * built against, so a shared library upgraded under the binary shows.
 * Every string returned is static or lives in the caller's struct.
 */
#ifndef FLASHSALE_VERSION_H
#define FLASHSALE_VERSION_H

#include <stdio.h>

#define FLASHSALE_VERSION "1.0.0"

struct version_libs {
    const char *microhttpd, *sqlite, *jansson; /* static strings of the libraries */
    char libpq[24];                            /* PQlibVersion() as "15.10" */
};

/* Fills out with the run-time versions of libmicrohttpd, SQLite, jansson and libpq. */
void version_libs(struct version_libs *out);

/* The --version text: "flashsale X.Y.Z" and one line per library. */
void version_print(FILE *out);

/* The flashsale_build_info gauge (HELP, TYPE and its one sample of value 1). */
void version_prometheus(FILE *out);

#endif

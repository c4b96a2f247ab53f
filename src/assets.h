/* assets — the dashboard's static files, served from --static.
 *
 * Only plain files under the folder, by a path of safe segments (no "..", no
 * hidden files, no backslashes or control characters); symbolic links that lead
 * outside the folder are refused too.  "/" is index.html.
 */
#ifndef FLASHSALE_ASSETS_H
#define FLASHSALE_ASSETS_H

#include <stdint.h>

struct assets_file {
    int fd;                   /* open, owned by the caller */
    uint64_t size;
    const char *content_type; /* static string */
    char etag[48];
    const char *cache_control;
};

/* Opens the file for url path under dir.  Returns 0, or -1 when there is no such
 * servable file (answer 404). */
int assets_open(const char *dir, const char *path, struct assets_file *out);

#endif

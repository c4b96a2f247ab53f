/* assets — see assets.h. */
#include "assets.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext, *type;
} assets_types[] = {
    {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},    {".json", "application/json"},
    {".svg", "image/svg+xml"},              {".png", "image/png"},
    {".ico", "image/x-icon"},               {".txt", "text/plain; charset=utf-8"},
    {".webmanifest", "application/manifest+json"},
};

/* Every segment: 1..255 bytes of [A-Za-z0-9._-], not starting with '.'. */
static int assets_path_ok(const char *path)
{
    if (path[0] != '/' || strlen(path) > 512) return 0;
    const char *seg = path + 1;
    for (;;) {
        size_t n = 0;
        while (seg[n] && seg[n] != '/') {
            char ch = seg[n];
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
            if (!ok) return 0;
            n++;
        }
        if (n == 0 || n > 255 || seg[0] == '.') return 0;
        if (!seg[n]) return 1;
        seg += n + 1;
    }
}

int assets_open(const char *dir, const char *path, struct assets_file *out)
{
    if (strcmp(path, "/") == 0) path = "/index.html";
    if (!assets_path_ok(path)) return -1;
    char full[PATH_MAX], real_dir[PATH_MAX], real_file[PATH_MAX];
    if (snprintf(full, sizeof full, "%s%s", dir, path) >= (int)sizeof full) return -1;
    if (!realpath(dir, real_dir) || !realpath(full, real_file)) return -1;
    size_t n = strlen(real_dir);
    if (strncmp(real_file, real_dir, n) != 0 || real_file[n] != '/') return -1;
    int fd = open(real_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    out->fd = fd;
    out->size = (uint64_t)st.st_size;
    out->content_type = "application/octet-stream";
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof assets_types / sizeof assets_types[0]; i++)
        if (strcmp(dot, assets_types[i].ext) == 0) out->content_type = assets_types[i].type;
    snprintf(out->etag, sizeof out->etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec);
    /* Revalidate every time (cheap with the ETag): a redeployed dashboard shows at once. */
    out->cache_control = "no-cache";
    return 0;
}

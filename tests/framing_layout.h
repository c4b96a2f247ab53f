/* framing_layout — lays a raw header block out in memory the way libmicrohttpd
 * 0.9.75 parses it in place, then runs framing's scan over it.  Shared by the unit
 * test (tests/test_framing.c) and the fuzzer (tests/fuzz_framing.c).
 *
 * What libmicrohttpd does (connection.c, get_next_header_line, process_header_line,
 * process_broken_line): a line ends at CRLF or at a bare LF, and each terminator
 * byte becomes NUL; the name ends at the first ':' of the line read as a C string
 * (a NUL before any ':' makes it refuse the request itself), which becomes NUL;
 * the value starts after SP/HTAB and is measured with strlen.  A line starting
 * with SP/HTAB (obs-fold) is glued onto the previous name: the name moves to a new
 * block (the old one zeroed), later folds append there, and the value pointer
 * stays where it was.
 */
#ifndef FLASHSALE_TEST_FRAMING_LAYOUT_H
#define FLASHSALE_TEST_FRAMING_LAYOUT_H

#include <stdint.h>
#include <string.h>

#include "framing.h"

#define LAYOUT_FIELDS 32
#define LAYOUT_SIZE 4096

/* raw: the request line's version ("HTTP/1.1"), its terminator, the header lines
 * and the empty line.  Returns framing's verdict, or -1 when libmicrohttpd itself
 * would refuse or not parse the block (so framing never sees it). */
static inline int layout_scan(const char *raw, size_t len)
{
    static char buf[LAYOUT_SIZE + 1], moved[LAYOUT_FIELDS][LAYOUT_SIZE + 1];
    if (len > LAYOUT_SIZE) return -1;
    memcpy(buf, raw, len);
    buf[len] = 0;
    char *lines[LAYOUT_FIELDS + 1];
    size_t n = 0, pos = 0;
    char *end = NULL;
    while (pos < len) {
        char *line = buf + pos;
        size_t i = pos;
        while (i < len && buf[i] != '\n' && !(buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')) i++;
        if (i == len) return -1; /* no terminator: not a complete block */
        int empty = i == pos;
        if (buf[i] == '\r') buf[i++] = 0;
        buf[i++] = 0;
        pos = i;
        if (empty && n > 0) {
            end = buf + pos;
            break;
        }
        if (empty || n == LAYOUT_FIELDS + 1) return -1;
        lines[n++] = line;
    }
    if (!end || strlen(lines[0]) != 8 || memcmp(lines[0], "HTTP/1.", 7) != 0) return -1;
    const char *name[LAYOUT_FIELDS], *value[LAYOUT_FIELDS];
    int folded[LAYOUT_FIELDS] = {0};
    size_t fields = 0;
    for (size_t i = 1; i < n; i++) {
        char *line = lines[i];
        if (line[0] == ' ' || line[0] == '\t') {
            if (!fields) return -1;
            char *tail = line;
            while (*tail == ' ' || *tail == '\t') tail++;
            char *m = moved[fields - 1];
            size_t nl = strlen(name[fields - 1]);
            if (!folded[fields - 1]) { /* the first fold moves the name, zeroing the old block */
                memcpy(m, name[fields - 1], nl + 1);
                memset((char *)(uintptr_t)name[fields - 1], 0, nl + 1);
                name[fields - 1] = m;
                folded[fields - 1] = 1;
            }
            if (nl + strlen(tail) > LAYOUT_SIZE) return -1;
            strcat(m, tail);
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon) return -1;
        *colon++ = 0;
        while (*colon == ' ' || *colon == '\t') colon++;
        name[fields] = line;
        value[fields] = colon;
        fields++;
    }
    struct framing_scan s;
    framing_begin(&s, lines[0], end);
    for (size_t i = 0; i < fields; i++)
        if (!framing_field(&s, name[i], strlen(name[i]), value[i], strlen(value[i]))) break;
    return (int)framing_end(&s);
}

#endif

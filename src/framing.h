/* framing — decides from a request's header block alone, before any body byte is
 * read, whether its message framing is unambiguous (RFC 9112 §6, §3.2, §5).
 *
 * A front end (nginx) and a back end that disagree on where a request ends let a
 * client smuggle a second request inside the first.  libmicrohttpd 0.9.75 accepts
 * the ambiguous cases (Content-Length with Transfer-Encoding, repeated or invalid
 * Content-Length, codings other than chunked, obs-fold, NUL in a value), so the
 * service refuses them itself: every fault here is answered with its status and
 * the connection closed.
 *
 * libmicrohttpd hides two of them from the header list it hands out: a NUL cuts a
 * value short (it measures values with strlen), and an obs-fold line is glued
 * onto the previous line's name.  Both show in the raw header block, which it
 * parses in place: every line terminator (CRLF or LF) and every name's ':' is
 * overwritten with NUL, a name starts right where the previous line ended, and its
 * value follows the name after optional spaces.  The scan walks the header list
 * against that block and calls any line that does not sit where it should a fault.
 * NULs that end a line can stay invisible there, when they take the place of a
 * terminator byte: "v\0\n" in a CRLF request leaves the bytes "v\r\n" leaves, and
 * a last line "v\0\r\n" before a bare-LF empty line those of "v\r\n\r\n".  They
 * hide nothing after them; the gate refuses them in a connection's first request,
 * where it sees the raw bytes.
 *
 * Pure, no allocation: the caller owns every pointer it passes, the scan keeps them
 * only until framing_end().
 */
#ifndef FLASHSALE_FRAMING_H
#define FLASHSALE_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

#include "outcome.h"

enum framing_fault {
    FRAMING_OK,
    FRAMING_LINES,          /* obs-fold, or bytes hidden behind a NUL: 400 */
    FRAMING_NAME,           /* a field name that is not a token (space before ':'): 400 */
    FRAMING_VALUE,          /* CR, LF or another control byte in a value: 400 */
    FRAMING_CL_AND_TE,      /* Content-Length and Transfer-Encoding together: 400 */
    FRAMING_CL_REPEATED,    /* two Content-Length fields, even equal ones: 400 */
    FRAMING_CL_INVALID,     /* not 1*DIGIT below 2^63: 400 */
    FRAMING_TE_REPEATED,    /* two Transfer-Encoding fields: 400 */
    FRAMING_TE_HTTP10,      /* Transfer-Encoding in an HTTP/1.0 request: 400 */
    FRAMING_TE_UNSUPPORTED, /* a coding other than exactly "chunked": 501 */
    FRAMING_HOST_MISSING,   /* HTTP/1.1 without Host: 400 */
    FRAMING_HOST_REPEATED,  /* two Host fields: 400 */
    FRAMING_VERSION,        /* not HTTP/1.x (the HTTP/2 preface): 505 */
    FRAMING_COUNT
};

/* One request's scan; storage owned by the caller, no _deinit needed. */
struct framing_scan {
    const char *next;     /* where the current line's terminator starts */
    const char *end;      /* one past the header block's final empty line */
    size_t eol;           /* bytes per line terminator: 2 (CRLF) or 1 (LF); 0 = not seen */
    bool http10;
    bool te_chunked;
    unsigned fields, content_length, transfer_encoding, host;
    bool cl_invalid;
    enum framing_fault fault; /* the first fault seen */
};

/* Starts a scan.  version: the request line's version as libmicrohttpd leaves it
 * in place ("HTTP/1.1" followed by its terminator); end: one past the whole header
 * block (version's request line start + libmicrohttpd's REQUEST_HEADER_SIZE), or
 * NULL when unknown, which is itself a FRAMING_LINES fault. */
void framing_begin(struct framing_scan *s, const char *version, const char *end);

/* Feeds the next header field, in the order received; false once a fault is known
 * (the caller may stop feeding). */
bool framing_field(struct framing_scan *s, const char *name, size_t name_len, const char *value,
                   size_t value_len);

/* The verdict after the last field: FRAMING_OK or the first fault. */
enum framing_fault framing_end(struct framing_scan *s);

/* The first bytes of a connection, as far as they arrived: FRAMING_VERSION for a
 * request line that is not HTTP/1.x (the HTTP/2 prior-knowledge preface),
 * FRAMING_LINES for a NUL in a complete first header block, and
 * FRAMING_CL_INVALID when that block has a first Content-Length libmicrohttpd
 * cannot parse (not 1*DIGIT below 2^64) and no Transfer-Encoding.  libmicrohttpd
 * answers the first and last on its own before any callback (see gate.h); every
 * other fault is framing_end()'s, so anything else is FRAMING_OK. */
enum framing_fault framing_first_bytes(const char *buf, size_t len);

/* How a fault is answered: its outcome (OUTCOME_INVALID 400, OUTCOME_NOT_IMPLEMENTED
 * 501 or OUTCOME_HTTP_VERSION 505; OUTCOME_OK for FRAMING_OK), whose status and
 * JSON come from outcome.c, and the message that says which fault it was. */
enum outcome framing_outcome(enum framing_fault f);
const char *framing_message(enum framing_fault f);

/* The path of a request-target: an absolute-form target ("http://host:port/p")
 * yields its path ("/p", or "/" when it has none); anything else is returned as is.
 * The result points into target (or is a static "/"). */
const char *framing_path(const char *target);

#endif

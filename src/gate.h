/* gate — holds each new connection until its first bytes arrive, and answers the
 * few first requests libmicrohttpd would otherwise answer on its own.
 *
 * libmicrohttpd 0.9.75 refuses two kinds of request while it parses, before any
 * callback of the service runs: the HTTP/2 prior-knowledge preface (its HTML 505)
 * and an invalid Content-Length without Transfer-Encoding (its HTML 400 with the
 * header block written twice).  The gate accepts connections itself, peeks at the
 * first bytes (framing_first_bytes()), answers those, and a NUL anywhere in the
 * header lines (raw bytes show what the parsed block cannot), with the service's
 * JSON and closes; every other connection is handed to libmicrohttpd (admit()) with its
 * bytes still unread.  Only the first request of a connection passes the gate.
 *
 * One gate per I/O thread, used by that thread only.  It owns the connections it
 * holds (closed by gate_free), not the listening socket nor the epoll set.
 */
#ifndef FLASHSALE_GATE_H
#define FLASHSALE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* epoll data.u64 tags the gate uses in the caller's epoll set: the listening
 * socket, and GATE_TAG_HELD + slot for a held connection.  Tags below are the
 * caller's. */
#define GATE_TAG_LISTEN 16
#define GATE_TAG_HELD 17

struct gate;

/* Hands a connection over (e.g. MHD_add_connection, which closes it on failure). */
typedef void (*gate_admit_fn)(void *ctx, int fd, const struct sockaddr *sa, socklen_t len);

/* A gate on listen_fd (non-blocking) that registers in epoll_fd; holds at most
 * slots connections, each for at most grace_ms.  NULL when out of memory. */
struct gate *gate_new(int listen_fd, int epoll_fd, size_t slots, int grace_ms, gate_admit_fn admit,
                      void *ctx);

/* Closes every held connection and frees the gate (not listen_fd). */
void gate_free(struct gate *g);

/* An epoll event whose tag is GATE_TAG_LISTEN or above.  room: how many more
 * connections the server takes now (0 stops accepting until gate_round). */
void gate_event(struct gate *g, uint64_t tag, size_t room);

/* Once per event-loop round: admits held connections past their grace and
 * listens again when there is room.  Returns the ms until the next grace ends
 * (INT32_MAX when nothing is held), for the loop's wait. */
int gate_round(struct gate *g, size_t room);

/* At most limit held connections per client address (0 = none): --per-ip-limit. */
void gate_limit_per_address(struct gate *g, unsigned limit);

/* --per-ip-limit for the whole service: connections per client address, counted
 * in one table for every I/O thread, and in shared memory (shm.h) for every
 * process of --model processes, so the limit holds across threads and processes
 * alike.  gate_address_take counts one more for sa unless it already has `limit`
 * (false: refuse it); gate_address_put gives one back when the connection closes;
 * gate_address_forget drops what a dead process's slot held.  Addresses are
 * hashed to 32 bits: two that collide share a count.  Lock-free, any thread. */
bool gate_address_take(const struct sockaddr *sa, unsigned limit);
void gate_address_put(const struct sockaddr *sa);
void gate_address_forget(int slot);

/* Stops accepting for good (quiesce); held connections are still admitted. */
void gate_stop_listening(struct gate *g);

#endif

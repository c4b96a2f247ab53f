/* ipc — the link between worker processes and the writer process (--model processes).
 *
 * Jobs and their results travel through two rings in shared memory per worker
 * (with an eventfd each to wake a sleeping consumer), measured cheaper per
 * purchase than a SOCK_SEQPACKET message (make lab LAB=processes; README).  Beside
 * them each worker keeps a Unix-domain SOCK_SEQPACKET socket to the writer on an
 * abstract address named after the supervisor, which carries no job: it opens the
 * channel, and a peer that dies is seen at once as the end of it, which is what a
 * worker needs to answer 503 rather than wait.  Reads (an order, a key, an audit)
 * are request and reply on a SEQPACKET socket of the calling thread's.
 *
 * Worker side (a store opened with store_open_remote): the link's thread takes
 * results and calls each job's done() (memory has already followed, in the
 * writer).  When the writer is away every job ends OUTCOME_UNAVAILABLE and reads
 * fail the same way; the link reconnects by itself.
 *
 * Writer side: a thread accepts channels and gives each a thread: a job channel's
 * takes jobs from its worker's ring into the real store, whose done() puts each
 * result in the worker's results ring; a read channel's runs each request on a
 * connection of its own.
 *
 * Ownership: the client and the server belong to their process's main thread.
 */
#ifndef FLASHSALE_IPC_H
#define FLASHSALE_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "outcome.h"
#include "store.h"

struct ipc_client;
struct ipc_server;
struct ipc_rings;

/* The rings of nslots worker slots, in shared memory (shm.h), made by the
 * supervisor before it forks (their eventfds are inherited).  NULL when out of
 * memory or descriptors. */
struct ipc_rings *ipc_rings_new(size_t nslots);

/* Bytes of the shared region ipc_rings_new(nslots) takes. */
size_t ipc_rings_size(size_t nslots);

/* ---- worker side ---- */

/* Starts the link of worker slot `slot` to the writer of supervisor `sup`; it
 * connects (and reconnects) by itself.  NULL when out of memory or threads. */
struct ipc_client *ipc_client_new(pid_t sup, int slot, struct ipc_rings *rings);
void ipc_client_free(struct ipc_client *c);

/* store_submit_chain's remote half: n jobs linked through next.  Returns the jobs
 * it could not send (the writer away, too many in flight), linked through next,
 * each with its outcome set: the caller finishes them (they never reached the
 * writer, so memory has not followed them). */
struct store_job *ipc_submit(struct ipc_client *c, struct store_job *first, size_t n);

/* store_conn_open's remote half: a read channel for the calling thread (the
 * store's connection functions dispatch to it).  NULL when out of memory. */
struct store_conn *ipc_conn_open(struct ipc_client *c);

/* store_audit's remote half: the database's side and memory's at its snapshot. */
enum outcome ipc_audit(struct store_conn *c, int64_t sale_id, struct store_audit *out, struct store_memory *mem);

/* Jobs this process sent the writer that have no result yet. */
size_t ipc_backlog(struct ipc_client *c);

/* ---- writer side ---- */

/* Listens for the workers of supervisor sup and serves them from store.  NULL
 * with a reason in err. */
struct ipc_server *ipc_server_start(struct store *store, pid_t sup, struct ipc_rings *rings, char *err,
                                    size_t err_size);

/* True when no channel of process pid is open and none of its jobs is unfinished
 * (a dead worker's last jobs have been committed or refused). */
bool ipc_server_done_with(struct ipc_server *s, pid_t pid);

/* Job channels open now. */
size_t ipc_server_channels(struct ipc_server *s);

#endif

/* ipc — the link between worker processes and the writer process (--model processes).
 *
 * Unix-domain SOCK_SEQPACKET sockets on an abstract address named after the
 * supervisor: messages keep their bounds, so one send carries a batch of jobs
 * and one recv takes it whole, and a peer that dies is seen at once as the end of
 * its socket, which is what the worker needs to answer 503 rather than wait
 * (README, "Threads or processes?", says why this won over a shared-memory ring).
 *
 * Worker side (a store opened with store_open_remote): one job channel per
 * process carries store jobs to the writer and their results back, in batches;
 * a thread of the link's reads the results and calls each job's done() (memory
 * has already followed, in the writer).  Each thread's store connection is a
 * channel of its own for reads (an order, a key, an audit), one request at a time.
 * When the writer is away every job ends OUTCOME_UNAVAILABLE and reads fail the
 * same way; the link reconnects by itself.
 *
 * Writer side: a thread accepts channels and gives each a thread: job channels
 * submit into the real store, whose done() queues the result for that channel's
 * thread to send; read channels run their request on a connection of their own.
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

/* ---- worker side ---- */

/* Starts the link of worker slot `slot` to the writer of supervisor `sup`; it
 * connects (and reconnects) by itself.  NULL when out of memory or threads. */
struct ipc_client *ipc_client_new(pid_t sup, int slot);
void ipc_client_free(struct ipc_client *c);

/* store_submit_chain's remote half: n jobs linked through next. */
void ipc_submit(struct ipc_client *c, struct store_job *first, size_t n);

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
struct ipc_server *ipc_server_start(struct store *store, pid_t sup, char *err, size_t err_size);

/* True when no channel of process pid is open and none of its jobs is unfinished
 * (a dead worker's last jobs have been committed or refused). */
bool ipc_server_done_with(struct ipc_server *s, pid_t pid);

/* Job channels open now. */
size_t ipc_server_channels(struct ipc_server *s);

#endif

/* proc — --model processes: a supervisor, N worker processes and one writer process.
 *
 * The supervisor (fs-main) maps the shared region (shm.h), builds the metrics and
 * the inventory in it, claims the port, and only then forks: no thread, database
 * connection or libmicrohttpd daemon exists yet, so none is ever carried across
 * fork().  The writer (fs-writer) opens the store, rebuilds memory from it and
 * serves the workers over ipc.h; each worker (fs-worker-<i>) runs the api on
 * its own daemon and SO_REUSEPORT socket, deciding purchases in shared memory and
 * sending them to the writer.
 *
 * When a child dies the supervisor freezes purchases (inventory_freeze), starts
 * it again and, for a worker, tells the writer, which waits for what was in
 * flight, rebuilds the counters from the database and unfreezes.  Children die
 * with the supervisor (PR_SET_PDEATHSIG).  SIGTERM: workers drain, then the writer.
 *
 * Ownership: proc_main owns everything it makes, in every process.
 */
#ifndef FLASHSALE_PROC_H
#define FLASHSALE_PROC_H

#include "config.h"

/* Runs the service as processes until SIGTERM/SIGINT (blocked by the caller);
 * the exit status.  Called instead of the threaded start, before metrics_init. */
int proc_main(struct config *cfg);

#endif

/* shm — one shared-memory region for --model processes, and the locks that live in it.
 *
 * The supervisor maps the region (MAP_SHARED | MAP_ANONYMOUS) before it forks, so
 * every process sees it at the same address: pointers into it are valid in all of
 * them, and in every process forked later (a restarted worker or writer).  Memory
 * is carved from it by a bump allocator and never given back, like the sales it
 * holds (published once, never freed while the service runs).  Without a region
 * (--model threads) shm_calloc is calloc and the locks are plain process-private
 * mutexes, so modules allocate through here and work in either model.
 *
 * Locks in the region are process-shared and robust: a process that dies holding
 * one hands EOWNERDEAD to the next locker, and shm_lock makes it consistent again
 * and counts it (shm_recoveries); what the lock guarded is repaired by rebuilding
 * the counters from the database, which the supervisor asks for after every death.
 *
 * Threads and processes: any.  Thread-safe and process-safe.
 */
#ifndef FLASHSALE_SHM_H
#define FLASHSALE_SHM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Maps a region of size bytes (reserved lazily: pages count once touched).  Once,
 * before any fork and before any module allocates; false when mmap failed. */
bool shm_start(size_t size);

/* True once shm_start succeeded (this process, or the one it was forked from). */
bool shm_active(void);

/* n zeroed objects of size bytes, 64-byte aligned: from the region when active
 * (NULL when it is full), else calloc.  Never freed while the region lives. */
void *shm_calloc(size_t n, size_t size);

/* free() for what shm_calloc gave outside a region; nothing inside one. */
void shm_free(void *p);

/* The same block of size bytes for the same name in every process, zeroed, then
 * init(block, arg) by whoever makes it (init may be NULL) before any other process
 * can get it: *fresh says whether this call made it.  Without a region: a new
 * block each time, always fresh.  At most 16 names. */
void *shm_named(const char *name, size_t size, void (*init)(void *block, void *arg), void *arg, bool *fresh);

/* A mutex (and condition variable) for memory from shm_calloc: process-shared and
 * robust when a region is active, plain otherwise. */
void shm_mutex_init(pthread_mutex_t *m);
void shm_cond_init(pthread_cond_t *c, bool monotonic);

/* pthread_mutex_lock that survives a holder's death (see the top). */
void shm_lock(pthread_mutex_t *m);
void shm_unlock(pthread_mutex_t *m);

/* --model processes: the supervisor's slots (the writer, up to 64 workers), and
 * this process's (0 outside that model).  Per-process counts in the region
 * (purchases admitted, connections per address) keep a column per slot, so a dead
 * process's share can be told apart and forgotten. */
#define SHM_PROCS 65
void shm_set_slot(int slot);
int shm_slot(void);

/* Locks recovered from dead holders, in every process. */
uint64_t shm_recoveries(void);

#endif

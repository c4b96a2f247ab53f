/* powerloss_vfs.c — a test-only SQLite VFS that cuts the power.
 *
 * kill -9 cannot test synchronous=FULL: the kernel still writes the page cache out,
 * so even writes that were never fsynced survive.  This shim, modelled on SQLite's
 * own crash-test VFS (test6.c), remembers every change to a database, WAL or journal
 * file that no xSync has made durable yet, and at a chosen moment "cuts the power":
 * it takes every such change back, lets a random subset of them reach the "disk"
 * after all (a disk may persist unsynced writes in any order), tears some of them
 * mid-write, removes files whose creation was never made durable, and kills the
 * process with SIGKILL so nothing else is flushed.  What is left on disk is what a
 * machine could hold after a power cut, and the next start must cope with it.
 *
 * Built as build/powerloss.so and LD_PRELOADed into the real build/flashsale: a
 * constructor registers this VFS, wrapping the default ("unix") one, as the new
 * default, so the server needs no change.  Settings, from the environment:
 *   POWERLOSS_AFTER=N        cut when the Nth write, truncate or sync arrives (that
 *                            operation never happens); unset or 0: never cut
 *   POWERLOSS_ARM=PATH       count operations only once PATH exists (the driver
 *                            creates it when the crowd is buying), so the cut lands
 *                            among purchases, not in the start's own writes
 *   POWERLOSS_SEED=S         seed for which unsynced changes survive and which tear
 *   POWERLOSS_IGNORE_SYNC=1  control case: an fsync makes nothing durable (a disk
 *                            that lies); acknowledged orders must then get lost
 *
 * With --model processes only the writer (fs-writer) opens the database, so the
 * cut happens there; the power goes for the whole group: the writer SIGKILLs the
 * supervisor first, whose death takes every other child with it (PDEATHSIG).
 *
 * The model (one process; the OS page cache is the real file):
 * - Writes go through to the real file at once, so every connection of the process
 *   reads them, as from a page cache.  Each tracked write also keeps the bytes it
 *   replaced (and the size before), so the file's last durable state can be
 *   rebuilt by undoing, newest first, every change since its last sync.
 * - xSync on any handle of a path makes every change to that path durable (fsync
 *   is per inode), and makes the file's own existence durable: SQLite's unix VFS
 *   fsyncs the directory on the first sync of a journal or WAL it created.
 * - xDelete is taken as durable at once (SQLite syncs the directory on deletes
 *   that matter); its file's pending changes are forgotten.
 * - The WAL index (-shm) is shared memory, not tracked: after a real power cut it
 *   is rebuilt from the WAL, and SQLite rebuilds it whenever a first connection
 *   opens the database.  The driver deletes it as well before restarting.
 * - Powersafe overwrite (SQLite's default assumption on unix): a torn write
 *   damages only bytes inside its own range, never its neighbours.
 *
 * Thread-safety: every tracked write, truncate and sync runs under one mutex, so
 * the cutting thread, which never lets it go, stops every other writer while it
 * rewrites the files.  Readers may still read meanwhile; nothing they do is
 * durable, and the process dies right after.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PL_SECTOR 512
#define PL_TRACKED                                                                                 \
    (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL)

enum pl_kind { PL_WRITE, PL_TRUNCATE, PL_RESIZE };

/* One change not yet made durable.  old holds the bytes it replaced (for a
 * truncate, the tail it cut off); new the bytes written. */
struct pl_change {
    enum pl_kind kind;
    int64_t off, len;
    unsigned char *old, *new;
    int64_t old_len;
    int64_t size_before, size_after;
};

/* One path's unsynced history, shared by every handle opened on it. */
struct pl_node {
    char *path;
    int fresh; /* created by this process, its directory entry not yet durable */
    struct pl_change *ch;
    size_t n, cap;
    struct pl_node *next;
};

struct pl_file {
    sqlite3_file base;
    sqlite3_file *real;
    struct pl_node *node; /* NULL: not tracked (temporary files) */
};

static pthread_mutex_t pl_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_vfs *pl_real;
static sqlite3_vfs pl_vfs;
static struct pl_node *pl_nodes;
static long pl_ops, pl_cut_at;
static const char *pl_arm; /* NULL once armed (or when never asked to wait) */
static int pl_ignore_sync;
static uint64_t pl_rng = 88172645463325252ull;

static uint64_t pl_rand(void)
{
    pl_rng ^= pl_rng << 13;
    pl_rng ^= pl_rng >> 7;
    pl_rng ^= pl_rng << 17;
    return pl_rng;
}

static void pl_say(const char *msg)
{
    ssize_t w = write(2, msg, strlen(msg));
    (void)w;
}

static void *pl_copy(const void *p, int64_t n)
{
    void *c = malloc(n > 0 ? (size_t)n : 1);
    if (!c) {
        pl_say("powerloss: out of memory\n");
        abort();
    }
    if (n > 0) memcpy(c, p, (size_t)n);
    return c;
}

/* Called with pl_mu held. */
static struct pl_node *pl_node_get(const char *path, int fresh)
{
    for (struct pl_node *n = pl_nodes; n; n = n->next)
        if (strcmp(n->path, path) == 0) {
            n->fresh |= fresh; /* deleted and created again */
            return n;
        }
    struct pl_node *n = calloc(1, sizeof *n);
    if (!n) abort();
    n->path = pl_copy(path, (int64_t)strlen(path) + 1);
    n->fresh = fresh;
    n->next = pl_nodes;
    pl_nodes = n;
    return n;
}

static void pl_node_forget(struct pl_node *n)
{
    for (size_t i = 0; i < n->n; i++) {
        free(n->ch[i].old);
        free(n->ch[i].new);
    }
    n->n = 0;
}

static void pl_node_add(struct pl_node *n, struct pl_change c)
{
    if (n->n == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 64;
        n->ch = realloc(n->ch, n->cap * sizeof *n->ch);
        if (!n->ch) abort();
    }
    n->ch[n->n++] = c;
}

static void pl_pwrite(int fd, const void *p, int64_t len, int64_t off)
{
    if (len > 0 && pwrite(fd, p, (size_t)len, off) != len) pl_say("powerloss: pwrite failed\n");
}

static void pl_truncate(int fd, int64_t size)
{
    if (ftruncate(fd, size) != 0) pl_say("powerloss: ftruncate failed\n");
}

/* What a disk may hold of one unsynced change: 0 nothing, 1 all, 2 torn. */
static int pl_fate(const struct pl_change *c)
{
    unsigned r = (unsigned)(pl_rand() % 8);
    if (r < 4) return 0;
    if (r < 7 || c->kind != PL_WRITE || c->len <= 1) return 1;
    return 2;
}

static void pl_redo(int fd, const struct pl_change *c, int fate)
{
    if (c->kind != PL_WRITE) {
        pl_truncate(fd, c->size_after);
        return;
    }
    if (fate == 1) {
        pl_pwrite(fd, c->new, c->len, c->off);
        return;
    }
    /* Torn: the sectors before a random point made it, the one at that point holds
     * garbage (inside the write's own range), the rest kept their old bytes. */
    int64_t at = c->off + (int64_t)(pl_rand() % (uint64_t)c->len);
    int64_t good = at - at % PL_SECTOR;
    if (good < c->off) good = c->off;
    int64_t bad_end = good + PL_SECTOR - good % PL_SECTOR;
    if (bad_end > c->off + c->len) bad_end = c->off + c->len;
    pl_pwrite(fd, c->new, good - c->off, c->off);
    unsigned char junk[PL_SECTOR];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)pl_rand();
    pl_pwrite(fd, junk, bad_end - good, good);
}

static void pl_undo(int fd, const struct pl_change *c)
{
    switch (c->kind) {
    case PL_WRITE:
        pl_pwrite(fd, c->old, c->old_len, c->off);
        if (c->size_after > c->size_before) pl_truncate(fd, c->size_before);
        break;
    case PL_TRUNCATE:
        pl_truncate(fd, c->size_before);
        pl_pwrite(fd, c->old, c->old_len, c->size_after);
        break;
    case PL_RESIZE:
        pl_truncate(fd, c->size_before);
        break;
    }
}

/* The power cut.  Runs with pl_mu held and never returns. */
static void pl_cut(void)
{
    long kept = 0, lost = 0, torn = 0, removed = 0, changes = 0, files = 0;
    for (struct pl_node *n = pl_nodes; n; n = n->next) {
        if (n->n == 0 && !n->fresh) continue;
        files++;
        changes += (long)n->n;
        if (n->fresh) { /* its directory entry never reached the disk */
            if (unlink(n->path) == 0) removed++;
            lost += (long)n->n;
            continue;
        }
        int fd = open(n->path, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        for (size_t i = n->n; i-- > 0;) pl_undo(fd, &n->ch[i]);
        for (size_t i = 0; i < n->n; i++) {
            int fate = pl_fate(&n->ch[i]);
            if (fate == 0) {
                lost++;
                continue;
            }
            pl_redo(fd, &n->ch[i], fate);
            kept += fate == 1;
            torn += fate == 2;
        }
        close(fd);
    }
    char msg[256];
    snprintf(msg, sizeof msg,
             "powerloss: cut at operation %ld: %ld unsynced changes in %ld files: %ld kept, "
             "%ld lost, %ld torn; %ld new files removed\n",
             pl_ops, changes, files, kept, lost, torn, removed);
    pl_say(msg);
    /* The process's name, not this thread's: the threads model names its commit
     * thread fs-writer too, and its parent is whoever started the server. */
    char name[32] = "";
    int cfd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (cfd >= 0) {
        ssize_t got = read(cfd, name, sizeof name - 1);
        name[got > 0 ? got : 0] = '\0';
        close(cfd);
    }
    pid_t parent = getppid(); /* 1 if the supervisor is already gone (PDEATHSIG is on its way) */
    if (strcmp(name, "fs-writer\n") == 0 && parent > 1) kill(parent, SIGKILL); /* no supervisor left restarting us */
    kill(getpid(), SIGKILL);
    _exit(137);
}

/* Counts one write, truncate or sync; cuts the power when it is the chosen one. */
static void pl_tick(void)
{
    if (pl_arm) {
        if (access(pl_arm, F_OK) != 0) return;
        pl_arm = NULL;
    }
    pl_ops++;
    if (pl_cut_at > 0 && pl_ops >= pl_cut_at) pl_cut();
}

static sqlite3_file *pl_real_file(sqlite3_file *f) { return ((struct pl_file *)f)->real; }

static int pl_close(sqlite3_file *f)
{
    /* Closing does not sync: the node keeps its unsynced changes. */
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xClose(r);
}

static int pl_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xRead(r, buf, amt, off);
}

static int pl_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
    struct pl_file *p = (struct pl_file *)f;
    sqlite3_file *r = p->real;
    if (!p->node) return r->pMethods->xWrite(r, buf, amt, off);
    pthread_mutex_lock(&pl_mu);
    pl_tick();
    sqlite3_int64 size = 0;
    int rc = r->pMethods->xFileSize(r, &size);
    struct pl_change c = {.kind = PL_WRITE, .off = off, .len = amt, .size_before = size};
    c.old_len = size > off ? (size - off < amt ? size - off : amt) : 0;
    c.old = malloc(c.old_len > 0 ? (size_t)c.old_len : 1);
    if (!c.old) abort();
    if (rc == SQLITE_OK && c.old_len > 0) rc = r->pMethods->xRead(r, c.old, (int)c.old_len, off);
    if (rc == SQLITE_OK) rc = r->pMethods->xWrite(r, buf, amt, off);
    if (rc == SQLITE_OK) {
        c.new = pl_copy(buf, amt);
        c.size_after = off + amt > size ? off + amt : size;
        pl_node_add(p->node, c);
    } else {
        free(c.old);
    }
    pthread_mutex_unlock(&pl_mu);
    return rc;
}

static int pl_truncate_file(sqlite3_file *f, sqlite3_int64 size)
{
    struct pl_file *p = (struct pl_file *)f;
    sqlite3_file *r = p->real;
    if (!p->node) return r->pMethods->xTruncate(r, size);
    pthread_mutex_lock(&pl_mu);
    pl_tick();
    sqlite3_int64 before = 0;
    int rc = r->pMethods->xFileSize(r, &before);
    struct pl_change c = {.kind = PL_TRUNCATE, .off = size, .size_before = before, .size_after = size};
    c.old_len = before > size ? before - size : 0;
    c.old = malloc(c.old_len > 0 ? (size_t)c.old_len : 1);
    if (!c.old) abort();
    if (rc == SQLITE_OK && c.old_len > 0) rc = r->pMethods->xRead(r, c.old, (int)c.old_len, size);
    if (rc == SQLITE_OK) rc = r->pMethods->xTruncate(r, size);
    if (rc == SQLITE_OK)
        pl_node_add(p->node, c);
    else
        free(c.old);
    pthread_mutex_unlock(&pl_mu);
    return rc;
}

static int pl_sync(sqlite3_file *f, int flags)
{
    struct pl_file *p = (struct pl_file *)f;
    sqlite3_file *r = p->real;
    if (!p->node) return r->pMethods->xSync(r, flags);
    pthread_mutex_lock(&pl_mu);
    pl_tick();
    int rc = r->pMethods->xSync(r, flags);
    if (rc == SQLITE_OK && !pl_ignore_sync) {
        pl_node_forget(p->node);
        p->node->fresh = 0;
    }
    pthread_mutex_unlock(&pl_mu);
    return rc;
}

static int pl_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xFileSize(r, size);
}

static int pl_lock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xLock(r, lock);
}

static int pl_unlock(sqlite3_file *f, int lock)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xUnlock(r, lock);
}

static int pl_check_reserved(sqlite3_file *f, int *out)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xCheckReservedLock(r, out);
}

static int pl_file_control(sqlite3_file *f, int op, void *arg)
{
    struct pl_file *p = (struct pl_file *)f;
    sqlite3_file *r = p->real;
    if (op != SQLITE_FCNTL_SIZE_HINT || !p->node) return r->pMethods->xFileControl(r, op, arg);
    /* A size hint may grow the file outside xWrite: undoable like a truncate. */
    pthread_mutex_lock(&pl_mu);
    sqlite3_int64 before = 0, after = 0;
    r->pMethods->xFileSize(r, &before);
    int rc = r->pMethods->xFileControl(r, op, arg);
    r->pMethods->xFileSize(r, &after);
    if (after != before) {
        struct pl_change c = {.kind = PL_RESIZE, .size_before = before, .size_after = after};
        pl_node_add(p->node, c);
    }
    pthread_mutex_unlock(&pl_mu);
    return rc;
}

static int pl_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xSectorSize(r);
}

static int pl_device(sqlite3_file *f)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xDeviceCharacteristics(r);
}

static int pl_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}

static int pl_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static void pl_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = pl_real_file(f);
    r->pMethods->xShmBarrier(r);
}

static int pl_shm_unmap(sqlite3_file *f, int del)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xShmUnmap(r, del);
}

static int pl_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xFetch(r, off, amt, pp);
}

static int pl_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = pl_real_file(f);
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods pl_methods = {
    3,           pl_close,          pl_read,      pl_write,          pl_truncate_file,
    pl_sync,     pl_file_size,      pl_lock,      pl_unlock,         pl_check_reserved,
    pl_file_control, pl_sector_size, pl_device,   pl_shm_map,        pl_shm_lock,
    pl_shm_barrier, pl_shm_unmap,   pl_fetch,     pl_unfetch,
};

static int pl_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    struct pl_file *p = (struct pl_file *)f;
    p->real = (sqlite3_file *)(p + 1);
    p->node = NULL;
    int tracked = name && (flags & PL_TRACKED);
    int existed = tracked && access(name, F_OK) == 0;
    int rc = pl_real->xOpen(pl_real, name, p->real, flags, out);
    if (rc != SQLITE_OK) {
        f->pMethods = NULL;
        return rc;
    }
    if (p->real->pMethods->iVersion < 3) {
        p->real->pMethods->xClose(p->real);
        f->pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    f->pMethods = &pl_methods;
    if (tracked) {
        pthread_mutex_lock(&pl_mu);
        p->node = pl_node_get(name, !existed);
        pthread_mutex_unlock(&pl_mu);
    }
    return SQLITE_OK;
}

static int pl_delete(sqlite3_vfs *vfs, const char *name, int dirsync)
{
    pthread_mutex_lock(&pl_mu);
    int rc = pl_real->xDelete(pl_real, name, dirsync);
    for (struct pl_node *n = pl_nodes; n; n = n->next)
        if (strcmp(n->path, name) == 0) {
            pl_node_forget(n);
            n->fresh = 0;
        }
    pthread_mutex_unlock(&pl_mu);
    return rc;
}

__attribute__((constructor)) static void pl_register(void)
{
    pl_real = sqlite3_vfs_find(NULL);
    if (!pl_real) {
        pl_say("powerloss: no default SQLite VFS\n");
        abort();
    }
    const char *s = getenv("POWERLOSS_AFTER");
    pl_cut_at = s ? atol(s) : 0;
    pl_arm = getenv("POWERLOSS_ARM");
    s = getenv("POWERLOSS_SEED");
    if (s && strtoull(s, NULL, 10)) pl_rng = strtoull(s, NULL, 10);
    s = getenv("POWERLOSS_IGNORE_SYNC");
    pl_ignore_sync = s && strcmp(s, "1") == 0;
    /* Copy every method (access, full path, randomness, time...) and replace the
     * two that create and remove files. */
    pl_vfs = *pl_real;
    pl_vfs.zName = "powerloss";
    pl_vfs.szOsFile = (int)sizeof(struct pl_file) + pl_real->szOsFile;
    pl_vfs.pNext = NULL;
    pl_vfs.xOpen = pl_open;
    pl_vfs.xDelete = pl_delete;
    if (sqlite3_vfs_register(&pl_vfs, 1) != SQLITE_OK) {
        pl_say("powerloss: cannot register the VFS\n");
        abort();
    }
    char msg[160];
    snprintf(msg, sizeof msg, "powerloss: shim active, cut at operation %ld%s\n", pl_cut_at,
             pl_ignore_sync ? ", fsync ignored" : "");
    pl_say(msg);
}

/*
 * io_engine: bulk file I/O for spill files and checkpoints (DESIGN.md §2, §7).
 *
 * One engine per thread that does I/O. Requests are plain (fd, buffer,
 * length, offset) records; the engine keeps at most `depth` of them in
 * flight, submits them in batches, resubmits the rest of a short read or
 * write (and -EAGAIN) from where it stopped, and reports each request once,
 * when all its bytes are done or it failed.
 *
 * Two implementations behind one interface, chosen at io_engine_open:
 * - io_uring (liburing): buffers handed to io_engine_open are registered with
 *   the ring, and a request whose buffer lies inside one of them goes out as
 *   READ_FIXED/WRITE_FIXED (no per-request page pinning); other buffers go
 *   out as plain READ/WRITE.
 * - pread/pwrite: used when io_uring is unavailable (io_uring_queue_init
 *   fails with ENOSYS, EPERM or EACCES, as under seccomp or with
 *   kernel.io_uring_disabled) or when asked for. Requests run one by one
 *   inside io_submit; io_reap hands back what completed.
 * io_engine_describe says which one runs and why, for the start-up log.
 *
 * O_DIRECT: files opened with io_open(..., IO_DIRECT) bypass the page cache;
 * their buffers, lengths and offsets must be multiples of IO_ALIGN (the
 * engine checks and refuses others with -EINVAL). Filesystems without
 * O_DIRECT (tmpfs before Linux 6.6) get a buffered descriptor instead, and
 * io_open says so through *direct.
 *
 * Threads: an engine is not thread-safe; use one per thread.
 * Rejected: a thread pool of pread workers as the fallback (the fallback is
 * for machines that forbid io_uring, where simplicity beats speed), and
 * registering whole layer blocks (that would pin the model store in RAM).
 */
#ifndef RAMTRAIN_STORAGE_IO_ENGINE_H
#define RAMTRAIN_STORAGE_IO_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IO_ALIGN 4096u            /* O_DIRECT granularity for buffers, lengths, offsets */
#define IO_DEFAULT_DEPTH 32u
#define IO_MAX_DEPTH 1024u
#define IO_MAX_REG_BUFS 64        /* buffers registered with the ring at open */
#define IO_MAX_CHUNK (1u << 30)   /* bytes per read/write: fits an SQE's 32-bit length and the
                                   * kernel's 1 GiB limit on one registered buffer */
#define IO_HUGE_BYTES (2u << 20)  /* io_alloc: from this size 2 MiB-aligned, huge-page advised */
#define IO_ENV "RAMTRAIN_IO"      /* uring, sync or auto: overrides IO_KIND_AUTO (see io_engine_open) */

typedef enum io_kind {
    IO_KIND_AUTO = 0,             /* io_uring when it works, else pread/pwrite */
    IO_KIND_URING,                /* io_uring or fail */
    IO_KIND_SYNC,                 /* pread/pwrite */
} io_kind;

typedef struct io_opts {
    io_kind kind;
    unsigned depth;               /* requests in flight at most; 0 means IO_DEFAULT_DEPTH */
    int n_bufs;                   /* buffers to register (io_uring only); 0..IO_MAX_REG_BUFS */
    void *const *bufs;            /* [n_bufs] start addresses */
    const size_t *buf_lens;       /* [n_bufs] lengths in bytes */
    size_t max_io_bytes;          /* bytes one read/write asks for at most; 0 means IO_MAX_CHUNK.
                                   * Rounded down to IO_ALIGN (at least IO_ALIGN) for O_DIRECT
                                   * files. Test hook: a small value makes every request a chain
                                   * of partial reads/writes, the path a short read takes. */
    unsigned fault_again_every;   /* test hook: every Nth answer that moved bytes is taken as
                                   * -EAGAIN and issued again (writes rewrite the same bytes); 0 off */
} io_opts;

/* Counters since io_engine_open, for tests and benchmarks. */
typedef struct io_stats {
    uint64_t reqs;                /* requests finished, failed ones included */
    uint64_t failed;              /* of which failed */
    uint64_t ios;                 /* reads/writes issued: SQEs, or pread/pwrite calls */
    uint64_t fixed;               /* of which READ_FIXED/WRITE_FIXED */
    uint64_t short_io;            /* answers with fewer bytes than asked: the rest was issued again */
    uint64_t again;               /* -EAGAIN answers issued again */
    uint64_t bytes;               /* bytes moved */
} io_stats;

typedef struct io_engine io_engine;

typedef struct io_req {
    int fd;
    bool write;                   /* false: read into buf; true: write from buf */
    void *buf;
    size_t len;                   /* bytes */
    uint64_t off;                 /* file offset in bytes */
    void *user;                   /* handed back by io_reap */
} io_req;

typedef struct io_done {
    void *user;                   /* the request's user pointer */
    int res;                      /* 0, or a negative errno (-EIO, or -ENODATA for a read past EOF) */
} io_done;

/* Opens an engine as o asks (o may be NULL: AUTO, default depth, no
 * registered buffers). With IO_KIND_AUTO a failure of io_uring setup or of
 * buffer registration falls back (to pread/pwrite, or to unregistered
 * buffers) and is recorded for io_engine_describe; with IO_KIND_URING it is
 * an error. When o->kind is IO_KIND_AUTO the environment variable
 * RAMTRAIN_IO (IO_ENV) may force the choice: "uring" acts as IO_KIND_URING,
 * "sync" as IO_KIND_SYNC, "auto" or unset/empty changes nothing; any other
 * value is -EINVAL. Registered buffers larger than IO_MAX_CHUNK are
 * registered in IO_MAX_CHUNK pieces; a request goes out fixed when it lies
 * inside one piece. *out is owned by the caller, freed with io_engine_close. */
int io_engine_open(const io_opts *o, io_engine **out, rt_err *err);

/* Waits for everything in flight, then frees the engine. NULL is fine. */
void io_engine_close(io_engine *e);

/* IO_KIND_URING or IO_KIND_SYNC: what actually runs. */
io_kind io_engine_kind(const io_engine *e);

/* One line for the start-up log, e.g. "io_uring, depth 32, 4 registered
 * buffers (64.0 MiB)" or "pread/pwrite (io_uring unavailable:
 * io_uring_queue_init: Operation not permitted)". Owned by e. */
const char *io_engine_describe(const io_engine *e);

/* Queues n requests. Blocks while `depth` requests are in flight (reaping
 * completions into an internal list that io_reap returns). Returns 0, or
 * -EINVAL (with err naming the request) for a misaligned O_DIRECT request
 * or a zero length, in which case none of the n was queued. */
int io_submit(io_engine *e, const io_req *reqs, int n, rt_err *err);

/* Returns up to max completed requests in done[], waiting until at least
 * min_wait have completed (or nothing is in flight). Returns the count. */
int io_reap(io_engine *e, io_done *done, int max, int min_wait);

/* Requests queued and not yet returned by io_reap. */
int io_pending(const io_engine *e);

/* Copies the engine's counters into *out. Does not block. */
void io_engine_stats(const io_engine *e, io_stats *out);

/* Runs n requests and waits for all of them: the blocking convenience form.
 * Returns 0, or the first failure's negative errno with err naming the file
 * offset and the error. Requests queued earlier by io_submit stay queued
 * for io_reap; io_run waits for its own n only. */
int io_run(io_engine *e, const io_req *reqs, int n, rt_err *err);

/* Opens path with flags (O_RDONLY, O_WRONLY|O_CREAT|O_TRUNC, ..., mode 0600
 * when creating). With direct true it asks for O_DIRECT and, when the
 * filesystem refuses it (EINVAL), opens without it; *direct (may be NULL)
 * says which it got. Only regular files and block devices are asked (O_DIRECT
 * on a pipe means packet mode). The fd is O_CLOEXEC. Returns an fd or a
 * negative errno with err naming path. */
int io_open(const char *path, int flags, bool want_direct, bool *direct, rt_err *err);

/* Allocates len bytes (rounded up to IO_ALIGN) aligned to IO_ALIGN, zeroed;
 * NULL on failure. Free with free(). From IO_HUGE_BYTES up the block is
 * rounded up to and aligned on IO_HUGE_BYTES and advised for transparent
 * huge pages (MADV_HUGEPAGE): a 1 MiB request then is one physically
 * contiguous DMA segment instead of 256 pages, which a device with a segment
 * limit splits (virtio-blk: 254) and the block layer cannot merge with its
 * neighbours. Blocks while the kernel faults (and may compact) the pages. */
void *io_alloc(size_t len);

#ifdef __cplusplus
}
#endif

#endif

/*
 * io_engine: io_uring and pread/pwrite behind one request/completion
 * interface (see io_engine.h).
 *
 * Every request in flight owns a slot (a fixed array of `depth`, with a free
 * list); the slot holds the request and how many of its bytes are done, and
 * its address is the SQE's user_data, so a completion finds its request with
 * no lookup. Each slot has at most one read/write in flight, which bounds the
 * SQEs outstanding by depth: the SQ ring (depth entries, rounded up to a power
 * of two by the kernel) can never be full and the CQ ring (twice that) can
 * never overflow. An answer moving fewer bytes than asked, or -EAGAIN, issues
 * the rest (or the same chunk) from the completion handler; a read answering
 * 0 before the request is done is -ENODATA (end of file), a write answering 0
 * is -EIO (it would never progress). New requests and these reissues are
 * prepared as SQEs and go to the kernel in one io_uring_submit per batch.
 *
 * Completions wait in a queue until io_reap takes them. Its room is reserved
 * before a request is queued (io_submit fails with -ENOMEM instead of losing a
 * completion later); it grows only when a caller queues far ahead of io_reap.
 * io_run marks its slots, counts them down itself and keeps the first
 * failure, so requests queued by io_submit before it stay for io_reap.
 *
 * The pread/pwrite engine shares the slot logic and runs each request to its
 * end inside io_submit; on -EAGAIN (a non-blocking descriptor) it waits in
 * poll() rather than spinning.
 *
 * io_alloc backs buffers from 2 MiB up with transparent huge pages. Measured
 * with bench_io on virtio-blk (254 segments at most): a 1 MiB READ_FIXED from
 * 4 KiB pages is 256 segments and went to the device as two requests, and
 * reads ran at 0.8x fio; from huge pages each request is one segment, the
 * scheduler merges neighbours up to 4 MiB, and both directions ran at 1.5 to
 * 2.5x fio (whose buffers are in 4 KiB pages). With buffers like fio's (4 KiB
 * pages, unregistered, a fresh process per pass) it measured 1.1 to 1.6x fio.
 *
 * Threads: an engine is used by one thread at a time and keeps no global
 * state. A ring error that leaves SQEs neither submitted nor failable (not
 * -EINTR, -EAGAIN or -EBUSY: a corrupted ring) aborts the process, since the
 * kernel may still be writing into the caller's buffers.
 *
 * Rejected: caching O_DIRECT per fd across calls (a closed and reused fd
 * number would carry the wrong answer; one fcntl per distinct fd per
 * io_submit call costs nothing next to the I/O), SQPOLL (a kernel thread
 * spinning per engine on a machine that trains on every core), and the
 * setup flags fio uses: SINGLE_ISSUER and DEFER_TASKRUN tie the ring to the
 * thread that opened it (an engine opened on one thread and fed by a worker
 * gets -EEXIST), and COOP_TASKRUN measured no faster at 1 MiB requests.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include "storage/io_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

struct io_slot {
    io_req req;     /* the caller's request, copied */
    size_t done;    /* bytes of req.len moved so far */
    size_t chunk;   /* bytes the read/write in flight asked for */
    int buf_index;  /* index into io_engine.iov of the piece holding req.buf[0..len), -1 when none */
    bool direct;    /* req.fd has O_DIRECT: chunks stay multiples of IO_ALIGN */
    bool run;       /* queued by io_run: reported to it, not to io_reap */
    int next_free;  /* free list link: index of the next free slot, -1 at the end */
};

struct io_engine {
    io_kind kind;             /* IO_KIND_URING or IO_KIND_SYNC */
    unsigned depth;           /* slots */
    size_t max_chunk;         /* bytes one read/write asks for at most */
    unsigned fault_every;     /* io_opts.fault_again_every */
    uint64_t fault_count;     /* answers seen by the fault hook */

    bool have_ring;
    struct io_uring ring;
    struct iovec *iov;        /* [n_iov] registered pieces, each <= IO_MAX_CHUNK bytes; NULL when none */
    int n_iov;

    struct io_slot *slots;    /* [depth] */
    int free_head;            /* first free slot, -1 when all are in flight */
    unsigned in_flight;       /* slots in use */

    io_done *done;            /* [done_cap] completions for io_reap: done[done_head .. +done_len) */
    size_t done_head, done_len, done_cap;
    int pending;              /* io_submit requests not yet returned by io_reap */

    int run_left;             /* io_run requests not finished yet */
    int run_res;              /* first failure among them, 0 when none */
    io_req run_fail;          /* the request that failed first */
    size_t run_fail_done;     /* bytes of it moved before it failed */

    io_stats stats;
    char desc[320];
};

/* ---- helpers ----------------------------------------------------------- */

/* The path behind fd for messages ("fd N" when /proc cannot say). */
static const char *io_fd_name(int fd, char *buf, size_t len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, len - 1);
    if (n <= 0) {
        snprintf(buf, len, "fd %d", fd);
        return buf;
    }
    buf[n] = '\0';
    return buf;
}

static void io_mib(char *buf, size_t len, uint64_t bytes)
{
    snprintf(buf, len, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
}

/* Aborts on a ring failure that cannot be recovered (see the design note). */
static void io_die(const char *what, int rc)
{
    fprintf(stderr, "io_engine: %s failed: %s; the ring is unusable and I/O may be in flight\n", what,
            strerror(-rc));
    abort();
}

static struct io_slot *io_slot_get(io_engine *e)
{
    int i = e->free_head;
    struct io_slot *s = &e->slots[i];
    e->free_head = s->next_free;
    e->in_flight++;
    return s;
}

static void io_slot_put(io_engine *e, struct io_slot *s)
{
    s->next_free = e->free_head;
    e->free_head = (int)(s - e->slots);
    e->in_flight--;
}

/* Makes room in the completion queue for `more` further entries. */
static int io_done_reserve(io_engine *e, size_t more)
{
    size_t need = (size_t)e->pending + more;
    if (need <= e->done_cap)
        return 0;
    size_t cap = e->done_cap ? e->done_cap : 64;
    while (cap < need)
        cap *= 2;
    io_done *d = malloc(cap * sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < e->done_len; i++)
        d[i] = e->done[(e->done_head + i) % e->done_cap];
    free(e->done);
    e->done = d;
    e->done_cap = cap;
    e->done_head = 0;
    return 0;
}

static void io_done_push(io_engine *e, void *user, int res)
{
    size_t at = (e->done_head + e->done_len) % e->done_cap;
    e->done[at] = (io_done){.user = user, .res = res};
    e->done_len++;
}

/* Reports s as finished with res (0 or a negative errno) and frees it. */
static void io_finish(io_engine *e, struct io_slot *s, int res)
{
    e->stats.reqs++;
    if (res < 0)
        e->stats.failed++;
    if (s->run) {
        if (res < 0 && e->run_res == 0) {
            e->run_res = res;
            e->run_fail = s->req;
            e->run_fail_done = s->done;
        }
        e->run_left--;
    } else {
        io_done_push(e, s->req.user, res);
    }
    io_slot_put(e, s);
}

/* Bytes the next read/write of s asks for. */
static size_t io_chunk_len(const io_engine *e, const struct io_slot *s)
{
    size_t cap = e->max_chunk;
    if (s->direct)
        cap = cap < IO_ALIGN ? IO_ALIGN : cap / IO_ALIGN * IO_ALIGN;
    size_t left = s->req.len - s->done;
    return left < cap ? left : cap;
}

/* Applies one answer (bytes moved, or a negative errno) to s. Returns true
 * when s is finished (and freed), false when its next chunk must be issued. */
static bool io_answer(io_engine *e, struct io_slot *s, int res)
{
    if (res > 0 && e->fault_every && ++e->fault_count % e->fault_every == 0)
        res = -EAGAIN;
    if (res == -EAGAIN || res == -EINTR) {
        e->stats.again++;
        return false;
    }
    if (res < 0) {
        io_finish(e, s, res);
        return true;
    }
    if (res == 0) {
        io_finish(e, s, s->req.write ? -EIO : -ENODATA);
        return true;
    }
    if ((size_t)res > s->chunk) {
        io_finish(e, s, -EIO); /* more than asked: never from a sane kernel */
        return true;
    }
    s->done += (size_t)res;
    e->stats.bytes += (uint64_t)res;
    if (s->done == s->req.len) {
        io_finish(e, s, 0);
        return true;
    }
    if ((size_t)res < s->chunk)
        e->stats.short_io++;
    return false;
}

/* The registered piece holding buf[0..len), -1 when none does. */
static int io_find_buf(const io_engine *e, const void *buf, size_t len)
{
    uintptr_t b = (uintptr_t)buf;
    for (int i = 0; i < e->n_iov; i++) {
        uintptr_t base = (uintptr_t)e->iov[i].iov_base;
        if (b >= base && b - base <= e->iov[i].iov_len && len <= e->iov[i].iov_len - (b - base))
            return i;
    }
    return -1;
}

/* Checks reqs[0..n) before any is queued; direct[i] gets whether reqs[i].fd
 * has O_DIRECT. */
static int io_check(const io_req *reqs, int n, bool *direct, rt_err *err)
{
    char name[256];
    int last_fd = -1, last_fl = 0;
    if (n < 0 || (n > 0 && reqs == NULL))
        return err_set(err, -EINVAL, "io_submit: %d requests at %p, expected a count >= 0 and an array",
                       n, (const void *)reqs);
    for (int i = 0; i < n; i++) {
        const io_req *r = &reqs[i];
        if (r->len == 0)
            return err_set(err, -EINVAL, "io_submit: request %d (%s, offset %llu): zero length", i,
                           io_fd_name(r->fd, name, sizeof name), (unsigned long long)r->off);
        if (r->buf == NULL)
            return err_set(err, -EINVAL, "io_submit: request %d (%s, offset %llu): NULL buffer", i,
                           io_fd_name(r->fd, name, sizeof name), (unsigned long long)r->off);
        if (r->off > (uint64_t)INT64_MAX || r->len > (uint64_t)INT64_MAX - r->off)
            return err_set(err, -EINVAL, "io_submit: request %d (%s): offset %llu + length %zu is past the "
                           "largest file offset", i, io_fd_name(r->fd, name, sizeof name),
                           (unsigned long long)r->off, r->len);
        if (r->fd != last_fd) {
            last_fd = r->fd;
            last_fl = fcntl(r->fd, F_GETFL);
            if (last_fl < 0)
                last_fl = 0; /* a bad fd fails in its completion, like any I/O error */
        }
        direct[i] = (last_fl & O_DIRECT) != 0;
        if (direct[i] && (((uintptr_t)r->buf | r->len | r->off) & (IO_ALIGN - 1)))
            return err_set(err, -EINVAL, "io_submit: request %d (%s, O_DIRECT): misaligned: buffer %p, "
                           "length %zu and offset %llu must all be multiples of %u", i, io_fd_name(r->fd, name, sizeof name),
                           r->buf, r->len, (unsigned long long)r->off, IO_ALIGN);
    }
    return 0;
}

/* ---- io_uring ---------------------------------------------------------- */

/* Prepares the next read/write of s as an SQE (submitted later, in a batch). */
static void iou_issue(io_engine *e, struct io_slot *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
    while (sqe == NULL) { /* cannot happen (see the design note); kept for safety */
        int rc = io_uring_submit(&e->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            io_die("io_uring_submit", rc);
        sqe = io_uring_get_sqe(&e->ring);
    }
    size_t n = io_chunk_len(e, s);
    uint8_t *p = (uint8_t *)s->req.buf + s->done; /* bytes */
    uint64_t off = s->req.off + s->done;
    s->chunk = n;
    if (s->buf_index >= 0) {
        if (s->req.write)
            io_uring_prep_write_fixed(sqe, s->req.fd, p, (unsigned)n, off, s->buf_index);
        else
            io_uring_prep_read_fixed(sqe, s->req.fd, p, (unsigned)n, off, s->buf_index);
        e->stats.fixed++;
    } else if (s->req.write) {
        io_uring_prep_write(sqe, s->req.fd, p, (unsigned)n, off);
    } else {
        io_uring_prep_read(sqe, s->req.fd, p, (unsigned)n, off);
    }
    io_uring_sqe_set_data(sqe, s);
    e->stats.ios++;
}

/* Submits the prepared SQEs, waits for at least `want` completions (0: does
 * not wait) and handles every completion that is ready, preparing and
 * submitting the reissues they ask for. */
static void iou_reap(io_engine *e, unsigned want)
{
    int rc = io_uring_submit_and_wait(&e->ring, want);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
        io_die("io_uring_submit_and_wait", rc);
    struct io_uring_cqe *cqes[64];
    unsigned n;
    while ((n = io_uring_peek_batch_cqe(&e->ring, cqes, 64)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            struct io_slot *s = io_uring_cqe_get_data(cqes[i]);
            if (!io_answer(e, s, cqes[i]->res))
                iou_issue(e, s);
        }
        io_uring_cq_advance(&e->ring, n);
    }
    if (io_uring_sq_ready(&e->ring) > 0) {
        rc = io_uring_submit(&e->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            io_die("io_uring_submit", rc);
    }
}

/* ---- pread/pwrite ------------------------------------------------------ */

static void sync_run(io_engine *e, struct io_slot *s)
{
    for (;;) {
        size_t n = io_chunk_len(e, s);
        uint8_t *p = (uint8_t *)s->req.buf + s->done; /* bytes */
        off_t off = (off_t)(s->req.off + s->done);
        s->chunk = n;
        ssize_t got = s->req.write ? pwrite(s->req.fd, p, n, off) : pread(s->req.fd, p, n, off);
        e->stats.ios++;
        int res = got < 0 ? -errno : (int)got;
        if (io_answer(e, s, res))
            return;
        if (res == -EAGAIN) {
            struct pollfd pfd = {.fd = s->req.fd, .events = s->req.write ? POLLOUT : POLLIN};
            poll(&pfd, 1, -1);
        }
    }
}

/* ---- queueing ---------------------------------------------------------- */

/* Puts reqs[0..n) (checked; direct[] from io_check) in flight, waiting for
 * free slots as needed. */
static void io_queue(io_engine *e, const io_req *reqs, const bool *direct, int n, bool run)
{
    for (int i = 0; i < n; i++) {
        if (e->kind == IO_KIND_URING)
            while (e->free_head < 0)
                iou_reap(e, 1);
        struct io_slot *s = io_slot_get(e);
        *s = (struct io_slot){
            .req = reqs[i],
            .buf_index = e->kind == IO_KIND_URING ? io_find_buf(e, reqs[i].buf, reqs[i].len) : -1,
            .direct = direct[i],
            .run = run,
            .next_free = -1,
        };
        if (e->kind == IO_KIND_URING)
            iou_issue(e, s);
        else
            sync_run(e, s);
    }
    if (e->kind == IO_KIND_URING)
        iou_reap(e, 0);
}

int io_submit(io_engine *e, const io_req *reqs, int n, rt_err *err)
{
    int rc = 0;
    bool *direct = NULL;
    if (n > 0 && (direct = malloc((size_t)n * sizeof *direct)) == NULL)
        return err_set(err, -ENOMEM, "io_submit: no memory for %d requests", n);
    rc = io_check(reqs, n, direct, err);
    if (rc < 0)
        goto cleanup;
    rc = io_done_reserve(e, (size_t)n);
    if (rc < 0) {
        err_set(err, rc, "io_submit: no memory to queue %d requests after %d pending", n, e->pending);
        goto cleanup;
    }
    e->pending += n;
    io_queue(e, reqs, direct, n, false);

cleanup:
    free(direct);
    return rc;
}

int io_reap(io_engine *e, io_done *done, int max, int min_wait)
{
    if (max <= 0)
        return 0;
    if (min_wait > max)
        min_wait = max;
    if (e->kind == IO_KIND_URING) {
        iou_reap(e, 0);
        while (e->done_len < (size_t)(min_wait > 0 ? min_wait : 0) && e->in_flight > 0)
            iou_reap(e, 1);
    }
    int k = 0;
    while (k < max && e->done_len > 0) {
        done[k++] = e->done[e->done_head];
        e->done_head = (e->done_head + 1) % e->done_cap;
        e->done_len--;
    }
    e->pending -= k;
    return k;
}

int io_pending(const io_engine *e)
{
    return e->pending;
}

void io_engine_stats(const io_engine *e, io_stats *out)
{
    *out = e->stats;
}

int io_run(io_engine *e, const io_req *reqs, int n, rt_err *err)
{
    int rc = 0;
    bool *direct = NULL;
    char name[256];
    if (n > 0 && (direct = malloc((size_t)n * sizeof *direct)) == NULL)
        return err_set(err, -ENOMEM, "io_run: no memory for %d requests", n);
    rc = io_check(reqs, n, direct, err);
    if (rc < 0)
        goto cleanup;
    e->run_left = n;
    e->run_res = 0;
    io_queue(e, reqs, direct, n, true);
    while (e->run_left > 0)
        iou_reap(e, 1); /* only io_uring leaves requests in flight */
    rc = e->run_res;
    if (rc < 0) {
        const io_req *r = &e->run_fail;
        const char *what = r->write ? "write" : "read";
        if (rc == -ENODATA)
            err_set(err, rc, "%s: read of %zu bytes at offset %llu: end of file after %zu bytes",
                    io_fd_name(r->fd, name, sizeof name), r->len, (unsigned long long)r->off,
                    e->run_fail_done);
        else
            err_set(err, rc, "%s: %s of %zu bytes at offset %llu failed at offset %llu: %s",
                    io_fd_name(r->fd, name, sizeof name), what, r->len, (unsigned long long)r->off,
                    (unsigned long long)(r->off + e->run_fail_done), strerror(-rc));
    }

cleanup:
    free(direct);
    return rc;
}

/* ---- open / close ------------------------------------------------------ */

/* The kind asked for: o's, or RAMTRAIN_IO's when o says AUTO. *why gets
 * where a forced choice came from ("" when none). */
static int io_pick_kind(io_kind asked, io_kind *kind, const char **why, rt_err *err)
{
    *kind = asked;
    *why = "";
    if (asked != IO_KIND_AUTO)
        return 0;
    const char *v = getenv(IO_ENV);
    if (v == NULL || v[0] == '\0' || strcmp(v, "auto") == 0)
        return 0;
    if (strcmp(v, "uring") == 0) {
        *kind = IO_KIND_URING;
        *why = IO_ENV "=uring";
    } else if (strcmp(v, "sync") == 0) {
        *kind = IO_KIND_SYNC;
        *why = IO_ENV "=sync";
    } else {
        return err_set(err, -EINVAL, "io_engine_open: environment %s=\"%s\": expected uring, sync or auto",
                       IO_ENV, v);
    }
    return 0;
}

/* Splits the caller's buffers into registrable pieces of at most IO_MAX_CHUNK. */
static int io_build_iov(io_engine *e, const io_opts *o, uint64_t *total, rt_err *err)
{
    int count = 0;
    *total = 0;
    for (int i = 0; i < o->n_bufs; i++) {
        if (o->bufs[i] == NULL || o->buf_lens[i] == 0)
            return err_set(err, -EINVAL, "io_engine_open: buffer %d is %p with %zu bytes, expected a non-empty "
                           "buffer", i, o->bufs[i], o->buf_lens[i]);
        size_t pieces = (o->buf_lens[i] + IO_MAX_CHUNK - 1) / IO_MAX_CHUNK;
        if (pieces > (size_t)(INT_MAX / 2 - count))
            return err_set(err, -EINVAL, "io_engine_open: buffer %d (%zu bytes) is too large to register", i,
                           o->buf_lens[i]);
        count += (int)pieces;
        *total += o->buf_lens[i];
    }
    if (count == 0)
        return 0;
    e->iov = calloc((size_t)count, sizeof *e->iov);
    if (e->iov == NULL)
        return err_set(err, -ENOMEM, "io_engine_open: no memory for %d buffer pieces", count);
    for (int i = 0; i < o->n_bufs; i++) {
        uint8_t *p = o->bufs[i]; /* bytes */
        size_t left = o->buf_lens[i];
        while (left > 0) {
            size_t n = left < IO_MAX_CHUNK ? left : IO_MAX_CHUNK;
            e->iov[e->n_iov++] = (struct iovec){.iov_base = p, .iov_len = n};
            p += n;
            left -= n;
        }
    }
    return 0;
}

int io_engine_open(const io_opts *o, io_engine **out, rt_err *err)
{
    static const io_opts defaults = {.kind = IO_KIND_AUTO};
    int rc = 0;
    io_kind kind;
    const char *why;
    char mib[32];
    io_engine *e = NULL;

    *out = NULL;
    if (o == NULL)
        o = &defaults;
    if (o->kind != IO_KIND_AUTO && o->kind != IO_KIND_URING && o->kind != IO_KIND_SYNC)
        return err_set(err, -EINVAL, "io_engine_open: kind %d, expected IO_KIND_AUTO, IO_KIND_URING or "
                       "IO_KIND_SYNC", (int)o->kind);
    if (o->depth > IO_MAX_DEPTH)
        return err_set(err, -EINVAL, "io_engine_open: depth %u is above IO_MAX_DEPTH (%u)", o->depth,
                       IO_MAX_DEPTH);
    if (o->n_bufs < 0 || o->n_bufs > IO_MAX_REG_BUFS || (o->n_bufs > 0 && (!o->bufs || !o->buf_lens)))
        return err_set(err, -EINVAL, "io_engine_open: %d buffers to register, expected 0..%d with bufs and "
                       "buf_lens arrays", o->n_bufs, IO_MAX_REG_BUFS);
    rc = io_pick_kind(o->kind, &kind, &why, err);
    if (rc < 0)
        return rc;

    e = calloc(1, sizeof *e);
    if (e == NULL)
        return err_set(err, -ENOMEM, "io_engine_open: no memory");
    e->depth = o->depth ? o->depth : IO_DEFAULT_DEPTH;
    e->max_chunk = o->max_io_bytes && o->max_io_bytes < IO_MAX_CHUNK ? o->max_io_bytes : IO_MAX_CHUNK;
    e->fault_every = o->fault_again_every;
    e->slots = calloc(e->depth, sizeof *e->slots);
    if (e->slots == NULL) {
        rc = err_set(err, -ENOMEM, "io_engine_open: no memory for %u slots", e->depth);
        goto cleanup;
    }
    for (unsigned i = 0; i < e->depth; i++)
        e->slots[i].next_free = i + 1 < e->depth ? (int)i + 1 : -1;
    e->free_head = 0;
    rc = io_done_reserve(e, 2 * (size_t)e->depth);
    if (rc < 0) {
        err_set(err, rc, "io_engine_open: no memory for the completion queue");
        goto cleanup;
    }

    if (kind == IO_KIND_SYNC) {
        e->kind = IO_KIND_SYNC;
        snprintf(e->desc, sizeof e->desc, "pread/pwrite (%s)", why[0] ? why : "IO_KIND_SYNC");
        goto cleanup;
    }

    rc = io_uring_queue_init(e->depth, &e->ring, 0);
    if (rc < 0) {
        if (kind == IO_KIND_AUTO && (rc == -ENOSYS || rc == -EPERM || rc == -EACCES)) {
            e->kind = IO_KIND_SYNC;
            snprintf(e->desc, sizeof e->desc, "pread/pwrite (io_uring unavailable: io_uring_queue_init: %s)",
                     strerror(-rc));
            rc = 0;
            goto cleanup;
        }
        err_set(err, rc, "io_engine_open: io_uring_queue_init (depth %u)%s%s: %s", e->depth, why[0] ? " with " : "",
                why, strerror(-rc));
        goto cleanup;
    }
    e->have_ring = true;
    e->kind = IO_KIND_URING;

    uint64_t total;
    rc = io_build_iov(e, o, &total, err);
    if (rc < 0)
        goto cleanup;
    io_mib(mib, sizeof mib, total);
    int wrote = snprintf(e->desc, sizeof e->desc, "io_uring%s%s%s, depth %u", why[0] ? " (" : "", why,
                         why[0] ? ")" : "", e->depth);
    size_t at = wrote > 0 && (size_t)wrote < sizeof e->desc ? (size_t)wrote : 0;
    if (e->n_iov == 0) {
        snprintf(e->desc + at, sizeof e->desc - at, ", no registered buffers");
        goto cleanup;
    }
    rc = io_uring_register_buffers(&e->ring, e->iov, (unsigned)e->n_iov);
    if (rc < 0) {
        char lim[64] = "";
        struct rlimit rl;
        if (rc == -ENOMEM && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            snprintf(lim, sizeof lim, ", RLIMIT_MEMLOCK %llu KiB", (unsigned long long)rl.rlim_cur / 1024);
        if (kind == IO_KIND_URING) {
            err_set(err, rc, "io_engine_open: io_uring_register_buffers (%d buffers, %s): %s%s", o->n_bufs, mib,
                    strerror(-rc), lim);
            goto cleanup;
        }
        snprintf(e->desc + at, sizeof e->desc - at,
                 ", unregistered buffers (io_uring_register_buffers of %d, %s: %s%s)", o->n_bufs, mib,
                 strerror(-rc), lim);
        free(e->iov);
        e->iov = NULL;
        e->n_iov = 0;
        rc = 0;
        goto cleanup;
    }
    snprintf(e->desc + at, sizeof e->desc - at, ", %d registered buffer%s (%s)", o->n_bufs,
             o->n_bufs == 1 ? "" : "s", mib);

cleanup:
    if (rc < 0) {
        io_engine_close(e);
        return rc;
    }
    *out = e;
    return 0;
}

void io_engine_close(io_engine *e)
{
    if (e == NULL)
        return;
    if (e->have_ring) {
        while (e->in_flight > 0)
            iou_reap(e, 1);
        io_uring_queue_exit(&e->ring);
    }
    free(e->iov);
    free(e->slots);
    free(e->done);
    free(e);
}

io_kind io_engine_kind(const io_engine *e)
{
    return e->kind;
}

const char *io_engine_describe(const io_engine *e)
{
    return e->desc;
}

/* ---- files and buffers ------------------------------------------------- */

int io_open(const char *path, int flags, bool want_direct, bool *direct, rt_err *err)
{
    bool got = false;
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (want_direct && fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        /* F_SETFL after a plain open rather than open(O_DIRECT) and a retry:
         * a failed first open may already have created the file, which a
         * retry with O_EXCL would then refuse. */
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
            got = true;
        else if (errno != EINVAL) {
            int rc = err_set(err, -errno, "%s: cannot set O_DIRECT: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
    }
    if (direct != NULL)
        *direct = got;
    return fd;
}

void *io_alloc(size_t len)
{
    size_t unit = len >= IO_HUGE_BYTES ? IO_HUGE_BYTES : IO_ALIGN; /* alignment and rounding, bytes */
    if (len > SIZE_MAX - unit)
        return NULL;
    size_t n = len == 0 ? unit : (len + unit - 1) / unit * unit;
    void *p = NULL;
    if (posix_memalign(&p, unit, n) != 0)
        return NULL;
    if (unit == IO_HUGE_BYTES)
        madvise(p, n, MADV_HUGEPAGE); /* advice only: with THP off the block stays in 4 KiB pages */
    memset(p, 0, n);
    return p;
}

/*
 * ps_store: one parameter-server shard (see ps_store.h).
 *
 * Memory: every block is one shared-memory object. The blocks whose whole
 * training state fits in ram_budget (in block order, after W, G and the
 * accumulators of all blocks, which must fit) keep master/m/v in the object;
 * the others are created without it and keep it in one spill file, an extent
 * of two slots per block at 4 KiB-aligned offsets (a slot: lb_layout.opt_bytes,
 * plus the fp32 master with fp32 compute, whose W is otherwise the master).
 * Three staging buffers of one slot carry spilled state through an optimizer
 * step: while block j is updated, block j+1's slot is being read and block
 * j-1's written back.
 *
 * Crash recovery (ps_store.h, Restarts). In-place updates of shared memory
 * (accum += G; the step of a resident block) run chunk by chunk under the
 * undo journal: per pool thread a record {next, undo} and an undo area of
 * ADAMW_CHUNK floats per array the operation rewrites. Thread v takes global
 * chunks v, v + n, v + 2n ... (the static split of adamw_pool_step) and for
 * each sets saved = 0, publishes undo = chunk + 1, runs the kernel's _undo
 * variant (adamw.h), which saves the old values into the undo area in the
 * same pass as it rewrites them, and publishes next + 1 (release stores; a
 * SIGKILL is precise, so a program-order prefix of the thread's stores is
 * what the next incarnation sees). A chunk is done iff it is among the first
 * `next` of its thread; the chunk in progress is the next one, and it may be
 * partly rewritten only if `undo` names it (so undo needs no clearing after
 * next + 1: a stale undo names a done chunk and is ignored).
 *
 * Partial undo: the kernel rewrites the chunk in ascending sub-blocks of 16
 * or 32 elements, and for each, in program order: the old values into the
 * undo area, saved = sub-block end - chunk start (between two release
 * fences), the new values. So at any kill point, with s = saved as left:
 *  - elements [0, s) of the chunk have their old values in the undo area
 *    (their undo stores precede the store of s), whether or not they were
 *    rewritten yet;
 *  - elements [s, end) were not rewritten (their array stores follow the
 *    store of a larger s), so they still hold their old values; the undo
 *    area there holds garbage: a previous chunk's values, or part of the
 *    current sub-block's;
 *  - saved = 0 is stored before undo = chunk + 1 (release), so a chunk named
 *    by undo never shows the previous chunk's count.
 * Recovery copies back exactly the first s elements of each array, which
 * restores the whole chunk to its old values; W is not saved (it is a
 * function of master, rewritten by the redo). This relies on x86's (and any
 * CPU's) retired stores surviving the kill and on the compiler not moving
 * the stores across the fences; on a weakly ordered CPU the fences are real
 * (dmb) and keep the order for any concurrent observer too.
 *
 * Recovery replays each crashed thread's remaining chunks as a
 * "virtual thread" on the current pool, journaling as it goes, so a kill
 * during recovery is recovered the same way. A spilled block's step needs no
 * undo: it computes from the slot version % 2 into staging, with each chunk
 * of the accumulator copied into a scratch area (the kernel zeroes the copy),
 * writes slot (version + 1) % 2, and its version store is the commit; the
 * accumulator is zeroed after that. W, the one array rewritten in place
 * there, is a function of the new master and is rewritten identically by a
 * redo.
 *
 * Rejected: spilling W. The worker streams W every micro-batch; the
 * optimizer state is touched once per step, so it is what belongs on NVMe.
 * Rejected: a redo log (write the new values to the journal, then copy):
 * it doubles the writes of every chunk; the undo copy is of data the kernel
 * is about to read anyway, into an area that stays in L2.
 */
#include "services/paramserver/ps_store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "services/common/log.h"
#include "services/common/rng.h"
#include "storage/checkpoint.h"
#include "storage/safetensors.h"
#include "storage/topo.h"

#define PS_STAGES 3                    /* staging buffers: read-ahead, update, write-back */
#define PS_IO_CHUNK (8u << 20)         /* bytes per spill I/O request */

#define PS_JOURNAL_MAGIC 0x4c4e524a54524d52ull /* "RMRTJRNL" little-endian */
#define PS_JOURNAL_VERSION 2u            /* 2: undo areas saved by the kernels, with `saved` */
#define PS_JOURNAL_ARRAYS 4            /* arrays a step rewrites: master, m, v, accum */

/* One (virtual) thread's progress through an operation. 64 bytes: threads
 * publish to their own cache line. */
typedef struct ps_jthread {
    _Atomic uint64_t next;             /* chunks of this thread's share done */
    _Atomic uint64_t undo;             /* global chunk + 1 whose old values the undo area
                                          holds (its first `saved` elements); 0: none */
    uint64_t saved;                    /* elements from the chunk's start whose old values
                                          are in the undo area (__atomic accesses; the
                                          kernel's progress count, adamw.h) */
    uint64_t pad[5];
} ps_jthread;

/* The journal object: this header, then cap_threads undo areas of
 * PS_JOURNAL_ARRAYS x ADAMW_CHUNK floats at PS_JOURNAL_UNDO_OFF. */
typedef struct ps_jhdr {
    uint64_t magic;                    /* PS_JOURNAL_MAGIC */
    uint32_t version;                  /* PS_JOURNAL_VERSION */
    uint32_t header_bytes;             /* sizeof(ps_jhdr) */
    uint32_t chunk;                    /* ADAMW_CHUNK */
    uint32_t cap_threads;              /* undo areas in the object */
    uint64_t map_bytes;                /* size of the object */
    _Atomic uint32_t op;               /* bs_op the records describe; IDLE: none */
    uint32_t block;                    /* model block index */
    uint64_t step;                     /* ACCUM: accum_step; STEP: the step applied */
    uint32_t micro, slot;              /* ACCUM: micro-batch and G slot */
    uint32_t n_threads;                /* threads (records) of the operation */
    uint32_t pad0;
    ps_jthread th[ADAMW_MAX_THREADS];
} ps_jhdr;

#define PS_JOURNAL_UNDO_OFF lb_align_up(sizeof(ps_jhdr), LB_ALIGN_TENSOR)
#define PS_JOURNAL_UNDO_BYTES ((uint64_t)PS_JOURNAL_ARRAYS * ADAMW_CHUNK * sizeof(float))

typedef enum ps_fault_kind {
    PS_FAULT_NONE = 0,
    PS_FAULT_ACCUM,
    PS_FAULT_STEP,
    PS_FAULT_SPILLWRITE,
} ps_fault_kind;

typedef struct ps_fault {
    ps_fault_kind kind;
    int block;
    uint32_t micro;
    uint64_t chunks;
} ps_fault;

typedef struct ps_stage {
    void *buf;                         /* opt_bytes of the largest spilled block, IO_ALIGN */
    int block;                         /* whose extent it holds; -1: none */
    bool writing;                      /* a write-back is in flight */
    int outstanding;                   /* requests in flight */
    int res;                           /* first failure of those requests */
} ps_stage;

struct ps_store {
    ps_config c;
    char run_id[BS_RUN_ID_LEN];
    int n_model_blocks;
    int first, n;                      /* blocks [first, first + n) */
    ps_block *blocks;                  /* [n] */
    adamw_pool *pool;
    io_engine *io;                     /* spill reads and writes */
    io_engine *ckpt_io;                /* checkpoint writes: a second ring, so a checkpoint's
                                          fill can read spilled state while its writes fly */
    topo *topo;
    int spill_fd;                      /* -1 without spill */
    char spill_path[4096];
    uint64_t spill_bytes;
    ps_stage stage[PS_STAGES];
    uint64_t stage_bytes;
    ckpt_staging ckpt_stage;           /* gather buffers of checkpoint writes */
    ps_jhdr *jh;                       /* the undo journal, mapped; NULL before it is opened */
    char journal_path[BS_NAME_LEN + 16];
    ps_fault fault;                    /* PS_ENV_FAULT; kind NONE when unset */
    int n_spilled;
    /* ApplyStep in progress */
    bool stepping;
    uint64_t step;                     /* the step being applied */
    double clip;
    bool commit;
    uint64_t cursor;
    int next;                          /* next block index (model numbering) to update */
    int spill_seq;                     /* spilled blocks of this step updated so far */
    int pending_write;                 /* stage of the block whose write-back is in flight, -1 */
    struct timespec t0;
};

static ps_block *blk(ps_store *s, int b) { return &s->blocks[b - s->first]; }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- learning rate ------------------------------------------------------- */

const ps_opt_config *ps_opt(const ps_store *s) { return &s->c.opt; }

double ps_lr(const ps_opt_config *o, uint64_t step)
{
    if (o->warmup_steps > 0 && step < o->warmup_steps)
        return o->lr * (double)(step + 1) / (double)o->warmup_steps;
    if (o->schedule == PS_SCHED_CONSTANT)
        return o->lr;
    double span = o->total_steps > o->warmup_steps ? (double)(o->total_steps - o->warmup_steps) : 1.0;
    double p = (double)(step - o->warmup_steps) / span;
    if (p > 1.0)
        p = 1.0;
    double f = o->schedule == PS_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return o->min_lr + (o->lr - o->min_lr) * f;
}

/* ---- tensors of a block -------------------------------------------------- */

/* fp32 optimizer-state pointers of tensor i: inside the block, or inside the
 * staging buffer holding a spilled block's extent. */
static float *opt_ptr(const ps_block *pb, void *extent, lb_section sec, int i)
{
    const lb_layout *l = pb->l;
    if (!pb->spilled)
        return lb_tensor_ptr(l, pb->shm.base, sec, i);
    return (float *)((char *)extent + (l->sec_off[sec] - l->opt_off) + l->t[i].offset_f32);
}

/* Master weights of tensor i: W itself with fp32 compute, except that a
 * spilled fp32 block's slot (extent not NULL) carries its own master after
 * m and v, of which W is a copy. */
static float *master_ptr(const ps_block *pb, void *extent, int i)
{
    const lb_layout *l = pb->l;
    if (l->compute == DT_F32 && pb->spilled && extent != NULL)
        return (float *)((char *)extent + l->opt_bytes + l->t[i].offset_f32);
    if (l->compute == DT_F32)
        return lb_tensor_ptr(l, pb->shm.base, LB_SEC_W, i);
    return opt_ptr(pb, extent, LB_SEC_MASTER, i);
}

/* Writes W of tensor i from the master copy. */
static void w_from_master(const ps_block *pb, void *extent, int i)
{
    const lb_layout *l = pb->l;
    float *master = master_ptr(pb, extent, i);
    void *w = lb_tensor_ptr(l, pb->shm.base, LB_SEC_W, i);
    if (l->compute == DT_F32) {
        if (master != w)
            memcpy(w, master, l->t[i].numel * sizeof(float));
        return;
    }
    dt_from_f32(l->compute, master, w, l->t[i].numel);
}

/* ---- spill I/O ------------------------------------------------------------ */

static int stage_wait(ps_store *s, int st, rt_err *err);

/* Spill slot of block b that holds its state at its current version. */
static int cur_slot(ps_store *s, int b)
{
    return (int)(atomic_load(&blk(s, b)->shm.hdr->version) % 2);
}

/* Submits the read (or write) of slot `slot` of block b's extent into (from)
 * stage st. */
static int stage_io(ps_store *s, int st, int b, bool write, int slot, rt_err *err)
{
    ps_block *pb = blk(s, b);
    ps_stage *g = &s->stage[st];
    uint64_t len = pb->slot_bytes, base = pb->spill_off + (uint64_t)slot * pb->slot_bytes;
    bool fault = write && s->fault.kind == PS_FAULT_SPILLWRITE && s->fault.block == b;
    if (fault)
        len = lb_align_up(len / 2, LB_ALIGN_TENSOR); /* half, then die (below) */
    io_req reqs[64];
    int nr = 0;
    g->block = b;
    g->writing = write;
    g->res = 0;
    for (uint64_t off = 0; off < len;) {
        uint64_t n = len - off < PS_IO_CHUNK ? len - off : PS_IO_CHUNK;
        reqs[nr++] = (io_req){.fd = s->spill_fd, .write = write, .buf = (char *)g->buf + off,
                              .len = n, .off = base + off, .user = g};
        off += n;
        if (nr == 64 || off == len) {
            g->outstanding += nr;
            int rc = io_submit(s->io, reqs, nr, err);
            if (rc < 0) {
                g->outstanding -= nr;
                return err_prefix(err, rc, "spill file %s, block %d", s->spill_path, b);
            }
            nr = 0;
        }
    }
    if (fault) {
        log_warn("fault injection: SIGKILL after writing half of block %d's spill slot %d", b,
                 slot);
        stage_wait(s, st, NULL);
        raise(SIGKILL);
    }
    return 0;
}

/* Reaps completions until stage st has nothing in flight. */
static int stage_wait(ps_store *s, int st, rt_err *err)
{
    ps_stage *g = &s->stage[st];
    while (g->outstanding > 0) {
        io_done d[32];
        int n = io_reap(s->io, d, 32, 1);
        for (int k = 0; k < n; k++) {
            ps_stage *h = d[k].user;
            h->outstanding--;
            if (d[k].res < 0 && h->res == 0)
                h->res = d[k].res;
        }
    }
    if (g->res < 0)
        return err_set(err, g->res, "spill file %s: %s of block %d failed: %s", s->spill_path,
                       g->writing ? "write" : "read", g->block, strerror(-g->res));
    return 0;
}

/* Reads block b's current slot into stage st and waits. */
static int spill_read_sync(ps_store *s, int st, int b, rt_err *err)
{
    int rc = stage_io(s, st, b, false, cur_slot(s, b), err);
    return rc < 0 ? rc : stage_wait(s, st, err);
}

static int spill_write_sync(ps_store *s, int st, int b, int slot, rt_err *err)
{
    int rc = stage_io(s, st, b, true, slot, err);
    return rc < 0 ? rc : stage_wait(s, st, err);
}

/* ---- fault injection ------------------------------------------------------------ */

/* Parses PS_ENV_FAULT (ps_store.h) into s->fault. */
static int parse_fault(ps_store *s, rt_err *err)
{
    const char *v = getenv(PS_ENV_FAULT);
    s->fault = (ps_fault){.kind = PS_FAULT_NONE};
    if (v == NULL || v[0] == '\0')
        return 0;
    ps_fault f = {.kind = PS_FAULT_NONE};
    unsigned long long chunks = 0;
    unsigned micro = 0;
    int block = -1, end = 0;
    if (sscanf(v, "accum:%d:%u:%llu%n", &block, &micro, &chunks, &end) == 3 && v[end] == '\0')
        f = (ps_fault){.kind = PS_FAULT_ACCUM, .block = block, .micro = micro, .chunks = chunks};
    else if (end = 0, sscanf(v, "step:%d:%llu%n", &block, &chunks, &end) == 2 && v[end] == '\0')
        f = (ps_fault){.kind = PS_FAULT_STEP, .block = block, .chunks = chunks};
    else if (end = 0, sscanf(v, "spillwrite:%d%n", &block, &end) == 1 && v[end] == '\0')
        f = (ps_fault){.kind = PS_FAULT_SPILLWRITE, .block = block};
    if (f.kind == PS_FAULT_NONE || block < 0)
        return err_set(err, -EINVAL,
                       "%s=\"%s\": expected accum:<block>:<micro>:<chunks>, "
                       "step:<block>:<chunks> or spillwrite:<block>",
                       PS_ENV_FAULT, v);
    s->fault = f;
    log_warn("fault injection armed: %s=%s (SIGKILL inside that operation)", PS_ENV_FAULT, v);
    return 0;
}

/* ---- the undo journal ----------------------------------------------------------- */

static uint64_t journal_bytes(uint32_t cap_threads)
{
    return lb_align_up(PS_JOURNAL_UNDO_OFF + cap_threads * PS_JOURNAL_UNDO_BYTES, LB_ALIGN_BLOCK);
}

/* Undo area of (virtual) thread v: PS_JOURNAL_ARRAYS x ADAMW_CHUNK floats. */
static float *journal_undo(const ps_store *s, int v)
{
    return (float *)((char *)s->jh + PS_JOURNAL_UNDO_OFF + (uint64_t)v * PS_JOURNAL_UNDO_BYTES);
}

static void journal_unmap(ps_store *s)
{
    if (s->jh != NULL)
        munmap(s->jh, s->jh->map_bytes);
    s->jh = NULL;
}

/* Maps the journal at s->journal_path. create: a new object for cap_threads
 * threads (O_EXCL); else the existing one, validated. -ENOENT when there is
 * none to attach. */
static int journal_map(ps_store *s, bool create, uint32_t cap_threads, rt_err *err)
{
    const char *p = s->journal_path;
    int fd = open(p, O_RDWR | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0)
        return errno == ENOENT && !create
                   ? -ENOENT
                   : err_set(err, -errno, "undo journal %s: %s", p, strerror(errno));
    int rc = 0;
    struct stat st;
    uint64_t size = journal_bytes(cap_threads);
    void *m = MAP_FAILED;
    if (create && ftruncate(fd, (off_t)size) < 0) {
        rc = err_set(err, -errno, "undo journal %s: cannot size it to %.1f MiB: %s", p,
                     size / 1048576.0, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        rc = err_set(err, -errno, "undo journal %s: fstat: %s", p, strerror(errno));
        goto out;
    }
    size = (uint64_t)st.st_size;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || size < PS_JOURNAL_UNDO_OFF) {
        rc = err_set(err, -EBADMSG,
                     "undo journal %s is not a regular file of this user of at least %llu "
                     "bytes: not this run's journal",
                     p, (unsigned long long)PS_JOURNAL_UNDO_OFF);
        goto out;
    }
    m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        rc = err_set(err, -errno, "undo journal %s: mapping: %s", p, strerror(errno));
        goto out;
    }
    ps_jhdr *j = m;
    if (create) {
        j->version = PS_JOURNAL_VERSION;
        j->header_bytes = sizeof *j;
        j->chunk = ADAMW_CHUNK;
        j->cap_threads = cap_threads;
        j->map_bytes = size;
        atomic_store_explicit(&j->op, BS_OP_IDLE, memory_order_relaxed);
        atomic_store_explicit((_Atomic uint64_t *)&j->magic, PS_JOURNAL_MAGIC,
                              memory_order_release);
    } else if (j->magic != PS_JOURNAL_MAGIC || j->version != PS_JOURNAL_VERSION ||
               j->header_bytes != sizeof *j || j->chunk != ADAMW_CHUNK ||
               j->cap_threads < 1 || j->cap_threads > ADAMW_MAX_THREADS ||
               j->map_bytes != size || journal_bytes(j->cap_threads) != size) {
        rc = err_set(err, -EBADMSG,
                     "undo journal %s: magic 0x%016llx, version %u, header %u bytes, chunk %u, "
                     "%u threads, %llu bytes: not a journal of this ramtrain (expected magic "
                     "0x%016llx, version %u, header %zu, chunk %u)",
                     p, (unsigned long long)j->magic, j->version, j->header_bytes, j->chunk,
                     j->cap_threads, (unsigned long long)size,
                     (unsigned long long)PS_JOURNAL_MAGIC, PS_JOURNAL_VERSION, sizeof *j,
                     ADAMW_CHUNK);
        goto out;
    }
    s->jh = j;
    m = MAP_FAILED;
out:
    if (m != MAP_FAILED)
        munmap(m, size);
    close(fd);
    if (rc < 0 && create)
        unlink(p);
    return rc;
}

/* Sets s->journal_path: in the directory of the shard's first block. */
static int journal_path(ps_store *s, rt_err *err)
{
    char bp[BS_NAME_LEN];
    snprintf(bp, sizeof bp, "%s", s->blocks[0].shm.path);
    char *slash = strrchr(bp, '/');
    if (slash != NULL)
        *slash = '\0';
    if (snprintf(s->journal_path, sizeof s->journal_path, "%s/ramtrain.%s.%d.journal",
                 slash != NULL ? bp : ".", s->run_id, s->c.shard) >= (int)sizeof s->journal_path)
        return err_set(err, -ENAMETOOLONG, "undo journal path under %s is too long", bp);
    return 0;
}

/* Creates the journal: for a new shard (a journal left without blocks is
 * meaningless and replaced), or anew with room for `threads` undo areas when
 * the one attached has fewer (nothing is recorded in it after recovery). */
static int journal_create(ps_store *s, uint32_t threads, rt_err *err)
{
    journal_unmap(s);
    if (unlink(s->journal_path) < 0 && errno != ENOENT)
        return err_set(err, -errno, "undo journal %s: cannot replace it: %s", s->journal_path,
                       strerror(errno));
    return journal_map(s, true, threads, err);
}

static int journal_fit(ps_store *s, uint32_t threads, rt_err *err)
{
    return s->jh->cap_threads >= threads ? 0 : journal_create(s, threads, err);
}

/* ---- in-place operations, chunk by chunk -------------------------------------------- */

/* One operation on one block, run on the pool by op_thread. */
typedef struct ps_op {
    ps_store *s;
    int op;                            /* BS_OP_ACCUM or BS_OP_STEP */
    int n_t;                           /* tensors */
    uint64_t c0[LB_MAX_TENSORS + 1];   /* first global chunk of each tensor; [n_t]: total */
    uint64_t numel[LB_MAX_TENSORS];
    float *arr[LB_MAX_TENSORS][PS_JOURNAL_ARRAYS]; /* fp32 arrays rewritten: accum (ACCUM);
                                                      master, m, v, accum (STEP) */
    int n_arr;
    const void *g[LB_MAX_TENSORS];     /* ACCUM: the G slot's tensors, in g_dtype */
    dt_type g_dtype;
    adamw_tensor ts[LB_MAX_TENSORS];   /* STEP */
    adamw_hparams hp;
    float scale;
    bool journal;                      /* undo-journal each chunk (else: s->jh unused; a
                                          spilled step, whose accum goes through scratch) */
    int nv;                            /* virtual threads: the journal's records */
    uint64_t kill_after;               /* fault: once this many chunks are done, the next
                                          chunk begun is half-updated and SIGKILL follows;
                                          0: none */
    _Atomic uint64_t chunks;           /* chunks done in this run (fault counting) */
} ps_op;

static void op_layout(ps_op *o, const lb_layout *l)
{
    o->n_t = l->n_tensors;
    o->c0[0] = 0;
    for (int i = 0; i < l->n_tensors; i++) {
        o->numel[i] = l->t[i].numel;
        o->c0[i + 1] = o->c0[i] + (l->t[i].numel + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    }
}

/* The accumulation of G slot `slot` into block pb's accumulator. */
static void op_accum(ps_op *o, ps_store *s, ps_block *pb, uint32_t slot)
{
    const lb_layout *l = pb->l;
    memset(o, 0, sizeof *o);
    o->s = s;
    o->op = BS_OP_ACCUM;
    op_layout(o, l);
    o->n_arr = 1;
    o->g_dtype = l->compute;
    for (int i = 0; i < l->n_tensors; i++) {
        o->arr[i][0] = lb_tensor_ptr(l, pb->shm.base, LB_SEC_ACCUM, i);
        o->g[i] = lb_tensor_ptr(l, pb->shm.base, LB_SEC_G0 + (lb_section)slot, i);
    }
}

/* AdamW of step `step` with clip factor `clip` on block pb; extent: the
 * staging slot of a spilled block, else NULL. */
static void op_step(ps_op *o, ps_store *s, ps_block *pb, void *extent, uint64_t step, double clip)
{
    const lb_layout *l = pb->l;
    memset(o, 0, sizeof *o);
    o->s = s;
    o->op = BS_OP_STEP;
    op_layout(o, l);
    o->n_arr = 4;
    o->hp = (adamw_hparams){.lr = ps_lr(&s->c.opt, step), .beta1 = s->c.opt.beta1,
                            .beta2 = s->c.opt.beta2, .eps = s->c.opt.eps,
                            .weight_decay = s->c.opt.weight_decay, .step = step + 1};
    o->scale = (float)(clip / (double)s->c.opt.micro_batches);
    for (int i = 0; i < l->n_tensors; i++) {
        float *master = master_ptr(pb, extent, i);
        void *w = lb_tensor_ptr(l, pb->shm.base, LB_SEC_W, i);
        o->ts[i] = (adamw_tensor){
            .master = master,
            .m = opt_ptr(pb, extent, LB_SEC_M, i),
            .v = opt_ptr(pb, extent, LB_SEC_V, i),
            .accum = lb_tensor_ptr(l, pb->shm.base, LB_SEC_ACCUM, i),
            .w = (void *)master == w ? NULL : w,
            .w_dtype = l->compute,
            .n = l->t[i].numel,
            .decay = l->t[i].ndim >= 2};
        o->arr[i][0] = o->ts[i].master;
        o->arr[i][1] = o->ts[i].m;
        o->arr[i][2] = o->ts[i].v;
        o->arr[i][3] = o->ts[i].accum;
    }
}

/* Runs global chunk g (the k-th of virtual thread v) on pool thread tid. */
static void op_chunk(ps_op *o, int v, uint64_t g, uint64_t k, int tid)
{
    int i = 0;
    while (g >= o->c0[i + 1])
        i++;
    uint64_t lo = (g - o->c0[i]) * ADAMW_CHUNK;
    uint64_t hi = o->numel[i] - lo < ADAMW_CHUNK ? o->numel[i] : lo + ADAMW_CHUNK;
    ps_jhdr *j = o->s->jh;
    if (o->kill_after != 0 &&
        atomic_load_explicit(&o->chunks, memory_order_relaxed) >= o->kill_after) {
        /* fault: die with this chunk half-updated (below), the kernel's
         * progress count mid-chunk and not on a vector block's boundary */
        uint64_t mid = lo + (hi - lo) / 2 + 3;
        hi = mid < hi ? mid : hi;
    }
    if (o->journal) {
        float *undo = journal_undo(o->s, v);
        uint64_t *saved = &j->th[v].saved;
        __atomic_store_n(saved, 0, __ATOMIC_RELAXED);
        /* release: the count is 0 before the undo area is named (see the file
         * comment); the kernel then saves each old value before rewriting it */
        atomic_store_explicit(&j->th[v].undo, g + 1, memory_order_release);
        if (o->op == BS_OP_ACCUM)
            adamw_accum_range_undo(o->arr[i][0], o->g[i], o->g_dtype, lo, hi, undo, saved);
        else
            adamw_step_range_undo(&o->hp, o->scale, &o->ts[i], lo, hi, undo, undo + ADAMW_CHUNK,
                                  undo + 2 * (size_t)ADAMW_CHUNK, undo + 3 * (size_t)ADAMW_CHUNK,
                                  saved);
    } else if (o->op == BS_OP_ACCUM) {
        adamw_accum_range(o->arr[i][0], o->g[i], o->g_dtype, lo, hi);
    } else {
        /* a spilled block: the accumulator stays intact until the commit; the
         * kernel reads (and zeroes) a copy in this thread's scratch area */
        float *scratch = journal_undo(o->s, tid);
        adamw_tensor t = o->ts[i];
        size_t es = dt_size(t.w_dtype);
        memcpy(scratch, t.accum + lo, (hi - lo) * sizeof(float));
        t.master += lo, t.m += lo, t.v += lo, t.accum = scratch, t.n = hi - lo;
        t.w = t.w != NULL ? (char *)t.w + lo * es : NULL;
        adamw_step_range(&o->hp, o->scale, &t, 0, hi - lo);
    }
    if (o->kill_after != 0 &&
        atomic_load_explicit(&o->chunks, memory_order_relaxed) >= o->kill_after)
        raise(SIGKILL);
    if (o->journal)
        /* release: the chunk's new values are stored before it counts as done */
        atomic_store_explicit(&j->th[v].next, k + 1, memory_order_release);
    if (o->kill_after != 0)
        atomic_fetch_add_explicit(&o->chunks, 1, memory_order_relaxed);
}

static void op_thread(void *ctx, int tid, int nt)
{
    ps_op *o = ctx;
    uint64_t total = o->c0[o->n_t];
    for (int v = tid; v < o->nv; v += nt) {
        uint64_t k = o->journal ? atomic_load_explicit(&o->s->jh->th[v].next,
                                                       memory_order_relaxed)
                                : 0;
        for (uint64_t g = (uint64_t)v + k * (uint64_t)o->nv; g < total; g += (uint64_t)o->nv, k++)
            op_chunk(o, v, g, k, tid);
    }
}

/* Arms the fault for this operation when PS_ENV_FAULT names it. */
static void op_arm(ps_op *o, int block, uint32_t micro)
{
    const ps_fault *f = &o->s->fault;
    bool hit = f->block == block &&
               ((f->kind == PS_FAULT_ACCUM && o->op == BS_OP_ACCUM && f->micro == micro) ||
                (f->kind == PS_FAULT_STEP && o->op == BS_OP_STEP));
    if (!hit)
        return;
    log_warn("fault injection: SIGKILL after %llu chunks of the %s of block %d",
             (unsigned long long)f->chunks, o->op == BS_OP_ACCUM ? "accumulation" : "step", block);
    if (f->chunks == 0)
        raise(SIGKILL);
    o->kill_after = f->chunks;
}

/* Runs o from the start on block `block` (header h). journal: record it in
 * the undo journal as (block, step, micro, slot) first. Then the block's `op`
 * mark is set: a block marked is always named by the journal (or spilled). */
static void op_run(ps_op *o, bs_header *h, bool journal, int block, uint64_t step,
                   uint32_t micro, uint32_t slot)
{
    ps_store *s = o->s;
    o->journal = journal;
    o->nv = adamw_pool_threads(s->pool);
    if (journal) {
        ps_jhdr *j = s->jh;
        j->block = (uint32_t)block;
        j->step = step;
        j->micro = micro;
        j->slot = slot;
        j->n_threads = (uint32_t)o->nv;
        for (int v = 0; v < o->nv; v++) {
            atomic_store_explicit(&j->th[v].next, 0, memory_order_relaxed);
            atomic_store_explicit(&j->th[v].undo, 0, memory_order_relaxed);
        }
        atomic_store_explicit(&j->op, (uint32_t)o->op, memory_order_release);
    }
    atomic_store_explicit(&h->op, (uint32_t)o->op, memory_order_seq_cst);
    op_arm(o, block, micro);
    adamw_pool_run(s->pool, op_thread, o);
    if (o->kill_after != 0)
        raise(SIGKILL); /* fault: fewer chunks than asked; die with the op still marked */
}

/* Marks the journal empty: after the block's header says the op is done. */
static void journal_idle(ps_store *s)
{
    atomic_store_explicit(&s->jh->op, BS_OP_IDLE, memory_order_release);
}

/* Counts micro in pb's header once its accumulation is complete; then the
 * journal is free. */
static void accum_done(ps_store *s, ps_block *pb, uint32_t micro)
{
    bs_header *h = pb->shm.hdr;
    atomic_fetch_or_explicit(&h->accum_micro[micro / 64], 1ull << (micro % 64),
                             memory_order_release);
    atomic_store_explicit(&h->accum_count, micro + 1, memory_order_release);
    atomic_store_explicit(&h->op, BS_OP_IDLE, memory_order_release);
    journal_idle(s);
}

/* Marks block pb's update to version `version` done in its header. A
 * resident block's kernel zeroed the accumulator; a spilled block's is zeroed
 * here, after the version store that commits its new slot. */
static void block_done(ps_store *s, ps_block *pb, uint64_t version)
{
    bs_header *h = pb->shm.hdr;
    /* the version store first: until it, a restart redoes the step and
     * needs the accumulation count (and a spilled block's accumulator) */
    atomic_store_explicit(&h->version, version, memory_order_release);
    atomic_store_explicit(&h->accum_count, 0, memory_order_relaxed);
    if (pb->spilled)
        for (int i = 0; i < pb->l->n_tensors; i++)
            memset(lb_tensor_ptr(pb->l, pb->shm.base, LB_SEC_ACCUM, i), 0,
                   pb->l->t[i].numel * sizeof(float));
    atomic_store_explicit(&h->op, BS_OP_IDLE, memory_order_release);
    if (!pb->spilled)
        journal_idle(s);
}

/* Recovery of the journaled operation o (set up as when it ran): puts back
 * the chunk each crashed thread was in, then runs the chunks it had not done,
 * its records replayed as virtual threads on the current pool. */
static void op_recover(ps_op *o)
{
    ps_store *s = o->s;
    ps_jhdr *j = s->jh;
    uint64_t total = o->c0[o->n_t], todo = 0;
    o->journal = true;
    o->nv = (int)j->n_threads;
    for (int v = 0; v < o->nv; v++) {
        uint64_t k = atomic_load(&j->th[v].next);
        uint64_t g = (uint64_t)v + k * (uint64_t)o->nv;
        if (g >= total)
            continue;
        todo += (total - g + (uint64_t)o->nv - 1) / (uint64_t)o->nv;
        if (atomic_load(&j->th[v].undo) != g + 1)
            continue; /* its chunk g was not touched yet */
        int i = 0;
        while (g >= o->c0[i + 1])
            i++;
        uint64_t lo = (g - o->c0[i]) * ADAMW_CHUNK;
        uint64_t hi = o->numel[i] - lo < ADAMW_CHUNK ? o->numel[i] : lo + ADAMW_CHUNK;
        /* only the saved prefix: past it nothing was rewritten, and the undo
         * area holds garbage (see the file comment) */
        uint64_t n = __atomic_load_n(&j->th[v].saved, __ATOMIC_ACQUIRE);
        n = n < hi - lo ? n : hi - lo;
        const float *undo = journal_undo(s, v);
        for (int a = 0; a < o->n_arr; a++)
            memcpy(o->arr[i][a] + lo, undo + (size_t)a * ADAMW_CHUNK, n * sizeof(float));
        log_info("undo journal: thread %d was in chunk %llu: %llu of its %llu elements put back",
                 v, (unsigned long long)g, (unsigned long long)n, (unsigned long long)(hi - lo));
    }
    log_info("undo journal: block %u: %llu of %llu chunks of the %s left by %u threads to redo",
             j->block, (unsigned long long)todo, (unsigned long long)total,
             o->op == BS_OP_ACCUM ? "accumulation" : "step", j->n_threads);
    adamw_pool_run(s->pool, op_thread, o);
}

/* ---- opening ---------------------------------------------------------------- */

/* Bytes of one spill slot of a block of layout l (see the file comment). */
static uint64_t spill_slot_bytes(const lb_layout *l)
{
    return l->opt_bytes + (l->compute == DT_F32 ? l->f32_bytes : 0);
}

/* Decides which blocks spill: W, G and accum of every block must fit the
 * budget; then whole blocks are kept in block order while they fit, with the
 * staging buffers counted once anything spills. */
static int plan_spill(ps_store *s, const lb_layout *ls, bool *spilled, rt_err *err)
{
    uint64_t budget = s->c.ram_budget, resident = 0, max_opt = 0, total = 0;
    for (int i = 0; i < s->n; i++) {
        resident += ls[i].resident_bytes;
        total += ls[i].total_bytes;
        spilled[i] = false;
    }
    if (budget == 0 || total <= budget)
        return 0;
    if (s->c.spill_dir == NULL)
        return err_set(err, -EINVAL,
                       "ram_budget %.1f MiB is below the training state (%.1f MiB) and no "
                       "spill_dir is set: give a spill directory on NVMe or raise the budget",
                       budget / 1048576.0, total / 1048576.0);
    for (int i = 0; i < s->n; i++)
        if (spill_slot_bytes(&ls[i]) > max_opt)
            max_opt = spill_slot_bytes(&ls[i]);
    uint64_t need = resident + PS_STAGES * max_opt;
    if (need > budget)
        return err_set(err, -EINVAL,
                       "ram_budget %.1f MiB is too small: weights, gradient slots and "
                       "accumulators always stay in RAM and need %.1f MiB with the spill "
                       "staging buffers",
                       budget / 1048576.0, need / 1048576.0);
    uint64_t used = need;
    for (int i = 0; i < s->n; i++) {
        uint64_t extra = ls[i].total_bytes - ls[i].resident_bytes;
        if (used + extra <= budget && !spilled[i]) {
            used += extra;
        } else {
            /* once one block spills, all later ones do: the update order
             * then reads the spill file front to back */
            for (int j = i; j < s->n; j++)
                spilled[j] = true;
            break;
        }
    }
    return 0;
}

static int open_spill_file(ps_store *s, bool create, rt_err *err)
{
    if (snprintf(s->spill_path, sizeof s->spill_path, "%s/ramtrain.%s.%d.spill", s->c.spill_dir,
                 s->run_id, s->c.shard) >= (int)sizeof s->spill_path)
        return err_set(err, -ENAMETOOLONG, "spill_dir %s: path too long", s->c.spill_dir);
    bool direct = false;
    int flags = O_RDWR | (create ? O_CREAT | O_TRUNC : 0);
    int fd = io_open(s->spill_path, flags, true, &direct, err);
    if (fd < 0)
        return fd;
    s->spill_fd = fd;
    if (create && ftruncate(fd, (off_t)s->spill_bytes) < 0)
        return err_set(err, -errno, "spill file %s: cannot size it to %.1f MiB: %s",
                       s->spill_path, s->spill_bytes / 1048576.0, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < s->spill_bytes)
        return err_set(err, -EBADMSG,
                       "spill file %s is %lld bytes but the spilled blocks need %llu: it does "
                       "not belong to this run's blocks (ramtrain clean, or restore a checkpoint)",
                       s->spill_path, (long long)st.st_size, (unsigned long long)s->spill_bytes);
    log_info("spill file %s: %.1f MiB of optimizer state for %d blocks (%s)", s->spill_path,
             s->spill_bytes / 1048576.0, s->n_spilled, direct ? "O_DIRECT" : "buffered");
    return 0;
}

/* Checks that checkpoint tensor t has the shape of the block's tensor lt. */
static int check_shape(const st_tensor *t, const lb_tensor *lt, rt_err *err)
{
    bool same = t->ndim == lt->ndim;
    for (int d = 0; same && d < lt->ndim; d++)
        same = t->shape[d] == lt->shape[d];
    if (!same)
        return err_set(err, -EINVAL, "%s: tensor %s does not have the shape config.json implies "
                       "(%d dims, first %lld; expected %d dims, first %lld)",
                       t->file, lt->name, t->ndim, (long long)t->shape[0], lt->ndim,
                       (long long)lt->shape[0]);
    if (!dt_is_float(t->dtype))
        return err_set(err, -EINVAL, "%s: tensor %s has dtype %s, not a float type", t->file,
                       lt->name, dt_name(t->dtype));
    return 0;
}

/* Reads tensor `name` of set into dst (fp32, n elements), checking its shape. */
static int read_named(const st_set *set, const char *name, const lb_tensor *lt, float *dst,
                      const char *what, rt_err *err)
{
    const st_tensor *t = st_find(set, name);
    if (t == NULL)
        return err_set(err, -ENOENT, "%s: missing tensor %s", what, name);
    int rc = check_shape(t, lt, err);
    return rc < 0 ? rc : st_tensor_read_f32(t, dst, lt->numel, err);
}

typedef struct init_src {
    st_set *model;                     /* HF weights or checkpoint master */
    st_set *optim;                     /* checkpoint optimizer state, or NULL */
    const char *model_name, *optim_name;
    uint64_t seed;
} init_src;

/* Fills master (and W), m and v of a freshly created block that will be at
 * version `version` (a spilled block's state goes to slot version % 2). */
static int init_block(ps_store *s, int b, uint64_t version, const init_src *src, rt_err *err)
{
    ps_block *pb = blk(s, b);
    const lb_layout *l = pb->l;
    void *extent = NULL;
    int rc = 0;
    if (pb->spilled) {
        extent = s->stage[0].buf;
        memset(extent, 0, pb->slot_bytes);
    }
    for (int i = 0; i < l->n_tensors && rc == 0; i++) {
        const lb_tensor *lt = &l->t[i];
        float *master = master_ptr(pb, extent, i);
        if (src->optim != NULL) {
            /* The fp32 master is in optimizer.safetensors when model.safetensors
             * holds the compute dtype, else model.safetensors is the master. */
            char name[LB_NAME_LEN + 32];
            snprintf(name, sizeof name, "%s%s", lt->name, CKPT_SUFFIX_MASTER);
            if (st_find(src->optim, name) != NULL)
                rc = read_named(src->optim, name, lt, master, src->optim_name, err);
            else
                rc = read_named(src->model, lt->name, lt, master, src->model_name, err);
            snprintf(name, sizeof name, "%s%s", lt->name, CKPT_SUFFIX_EXP_AVG);
            if (rc == 0)
                rc = read_named(src->optim, name, lt, opt_ptr(pb, extent, LB_SEC_M, i),
                                src->optim_name, err);
            snprintf(name, sizeof name, "%s%s", lt->name, CKPT_SUFFIX_EXP_AVG_SQ);
            if (rc == 0)
                rc = read_named(src->optim, name, lt, opt_ptr(pb, extent, LB_SEC_V, i),
                                src->optim_name, err);
        } else if (src->model != NULL) {
            rc = read_named(src->model, lt->name, lt, master, src->model_name, err);
        } else {
            rng_init_tensor(lt->name, src->seed, b, i, s->c.model.init_range, master, lt->numel);
        }
        if (rc == 0)
            w_from_master(pb, extent, i);
    }
    if (rc == 0 && pb->spilled)
        rc = spill_write_sync(s, 0, b, (int)(version % 2), err);
    return rc;
}

static int open_init_source(ps_store *s, init_src *src, uint64_t *step, uint64_t *cursor,
                            char *ckpt_dir, size_t ckpt_len, rt_err *err)
{
    memset(src, 0, sizeof *src);
    src->seed = s->c.seed;
    *step = *cursor = 0;
    int rc;
    if (s->c.resume_from != NULL) {
        ckpt_state st;
        uint64_t n;
        if ((rc = ckpt_locate(s->c.resume_from, &n, ckpt_dir, ckpt_len, err)) < 0 ||
            (rc = ckpt_validate(ckpt_dir, &st, err)) < 0)
            return rc;
        uint64_t want = model_config_hash(&s->c.model);
        if (st.config_hash != want)
            return err_set(err, -EINVAL,
                           "%s/" CKPT_STATE_FILE ": config_hash %016llx does not match this "
                           "run's model config (%016llx): the checkpoint is of another model",
                           ckpt_dir, (unsigned long long)st.config_hash,
                           (unsigned long long)want);
        *step = st.step;
        *cursor = st.data_cursor;
        char path[CKPT_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/" CKPT_OPTIM_FILE, ckpt_dir);
        if ((rc = st_open(path, &src->optim, err)) < 0)
            return rc;
        snprintf(path, sizeof path, "%s/" CKPT_MODEL_FILE, ckpt_dir);
        if ((rc = st_open(path, &src->model, err)) < 0)
            return rc;
        src->optim_name = CKPT_OPTIM_FILE;
        src->model_name = CKPT_MODEL_FILE;
        return 0;
    }
    if (s->c.init_from != NULL) {
        if ((rc = st_open(s->c.init_from, &src->model, err)) < 0)
            return rc;
        src->model_name = s->c.init_from;
    }
    return 0;
}

static int create_blocks(ps_store *s, const lb_layout *ls, const bool *spilled, rt_err *err)
{
    init_src src;
    uint64_t step, cursor;
    char ckpt_dir[CKPT_PATH_MAX] = "";
    int rc = open_init_source(s, &src, &step, &cursor, ckpt_dir, sizeof ckpt_dir, err);
    if (rc < 0)
        goto out;
    bs_pages pages = BS_PAGES_SMALL;
    uint64_t ram = 0;
    for (int i = 0; i < s->n; i++) {
        ps_block *pb = &s->blocks[i];
        if ((rc = bs_block_create_placed(s->run_id, s->c.shard, s->n_model_blocks, &ls[i],
                                         spilled[i], s->c.try_huge, s->topo,
                                         s->c.numa != NULL ? s->c.numa : "interleave", &pb->shm,
                                         err)) < 0)
            goto out;
        pb->l = &pb->shm.hdr->layout;
        pb->spilled = spilled[i];
        pages = pb->shm.pages;
        ram += pb->shm.map_bytes;
    }
    log_info("created %d layer blocks: %.1f MiB of shared memory on %s", s->n, ram / 1048576.0,
             bs_pages_name(pages));
    if (s->n_spilled > 0 && (rc = open_spill_file(s, true, err)) < 0)
        goto out;
    for (int i = 0; i < s->n; i++)
        if ((rc = init_block(s, s->first + i, step, &src, err)) < 0)
            goto out;
    for (int i = 0; i < s->n; i++) {
        bs_header *h = s->blocks[i].shm.hdr;
        atomic_store_explicit(&h->version, step, memory_order_relaxed);
        atomic_store_explicit(&h->accum_step, step, memory_order_relaxed);
        atomic_store_explicit(&h->data_cursor, cursor, memory_order_relaxed);
        atomic_store_explicit(&h->steps_committed, step, memory_order_release);
    }
    if (s->c.resume_from != NULL)
        log_info("resumed from %s: step %llu, data cursor %llu", ckpt_dir,
                 (unsigned long long)step, (unsigned long long)cursor);
    else if (s->c.init_from != NULL)
        log_info("weights from %s", s->c.init_from);
    else
        log_info("weights drawn at random (seed %llu)", (unsigned long long)s->c.seed);
out:
    st_close(src.model);
    st_close(src.optim);
    return rc;
}

static int attach_blocks(ps_store *s, const lb_layout *ls, rt_err *err)
{
    uint64_t ram = 0;
    for (int i = 0; i < s->n; i++) {
        ps_block *pb = &s->blocks[i];
        int rc = bs_block_attach_flags(s->run_id, s->c.shard, s->n_model_blocks, &ls[i],
                                       BS_ATTACH_INTERRUPTED, &pb->shm, err);
        if (rc < 0)
            return rc;
        uint32_t op = atomic_load(&pb->shm.hdr->op);
        if (op != BS_OP_IDLE)
            log_warn("layer block %s was interrupted in the middle of %s (version %llu, "
                     "%u micro-batches of step %llu counted): recovering it",
                     pb->shm.path, op == BS_OP_ACCUM ? "accumulating a micro-batch"
                                                     : "an optimizer step",
                     (unsigned long long)atomic_load(&pb->shm.hdr->version),
                     atomic_load(&pb->shm.hdr->accum_count),
                     (unsigned long long)atomic_load(&pb->shm.hdr->accum_step));
        pb->l = &pb->shm.hdr->layout;
        pb->spilled = (pb->shm.hdr->flags & BS_FLAG_SPILLED) != 0;
        ram += pb->shm.map_bytes;
    }
    uint64_t c0 = atomic_load(&s->blocks[0].shm.hdr->steps_committed);
    for (int i = 1; i < s->n; i++) {
        uint64_t c = atomic_load(&s->blocks[i].shm.hdr->steps_committed);
        if (c != c0 && c + 1 != c0 && c != c0 + 1)
            return err_set(err, -EBADMSG,
                           "block %d has %llu steps committed but block %d has %llu: the "
                           "blocks are of different runs; restore from a checkpoint",
                           s->first + i, (unsigned long long)c, s->first,
                           (unsigned long long)c0);
    }
    log_info("attached to %d existing layer blocks (%.1f MiB of shared memory): %llu steps "
             "committed, data cursor %llu",
             s->n, ram / 1048576.0, (unsigned long long)ps_steps_committed(s),
             (unsigned long long)ps_data_cursor(s));
    return 0;
}

/* After a restart: the accumulation the journal describes, on block pb. */
static int finish_interrupted_accum(ps_store *s, ps_block *pb, rt_err *err)
{
    bs_header *h = pb->shm.hdr;
    ps_jhdr *j = s->jh;
    uint32_t micro = j->micro, count = atomic_load(&h->accum_count);
    if (j->step != atomic_load(&h->accum_step) || micro >= s->c.opt.micro_batches ||
        j->slot >= (uint32_t)pb->l->n_gslots)
        return err_set(err, -EBADMSG,
                       "layer block %s: the undo journal %s describes accumulating micro %u of "
                       "step %llu from G slot %u, but the block accumulates step %llu (%u "
                       "micro-batches, %d slots): they disagree; restore from a checkpoint",
                       pb->shm.path, s->journal_path, micro, (unsigned long long)j->step,
                       j->slot, (unsigned long long)atomic_load(&h->accum_step),
                       s->c.opt.micro_batches, pb->l->n_gslots);
    bool counted = (atomic_load(&h->accum_micro[micro / 64]) >> (micro % 64)) & 1;
    if (!counted && count != micro)
        return err_set(err, -EBADMSG,
                       "layer block %s: the undo journal %s describes micro %u but the block "
                       "has %u counted; restore from a checkpoint",
                       pb->shm.path, s->journal_path, micro, count);
    if (!counted) {
        ps_op o;
        op_accum(&o, s, pb, j->slot);
        op_recover(&o);
    }
    accum_done(s, pb, micro);
    log_warn("finished accumulating micro-batch %u of step %llu into block %u after the restart",
             micro, (unsigned long long)j->step, h->block);
    return 0;
}

/* After a restart: the step of resident block pb the journal describes. */
static int finish_interrupted_block_step(ps_store *s, ps_block *pb, rt_err *err)
{
    bs_header *h = pb->shm.hdr;
    ps_jhdr *j = s->jh;
    uint64_t v = atomic_load(&h->version), step = j->step;
    if (v == step + 1) {
        block_done(s, pb, v); /* committed; only the header was left */
        return 0;
    }
    if (v != step || step != atomic_load(&h->steps_committed))
        return err_set(err, -EBADMSG,
                       "layer block %s: the undo journal %s describes step %llu but the block "
                       "holds version %llu with %llu steps committed; restore from a checkpoint",
                       pb->shm.path, s->journal_path, (unsigned long long)step,
                       (unsigned long long)v,
                       (unsigned long long)atomic_load(&h->steps_committed));
    ps_op o;
    op_step(&o, s, pb, NULL, step, h->step_clip);
    op_recover(&o);
    block_done(s, pb, step + 1);
    log_warn("finished the step %llu of block %u after the restart", (unsigned long long)step,
             h->block);
    return 0;
}

/* After a restart: every block whose `op` mark says it was killed inside an
 * in-place update is recovered from the undo journal. A spilled block marked
 * in its step is finished here when its version store (the commit) was
 * reached; otherwise it stays marked for finish_interrupted_step, which redoes
 * it from its old slot. */
static int finish_interrupted_ops(ps_store *s, rt_err *err)
{
    ps_jhdr *j = s->jh;
    for (int i = 0; i < s->n; i++) {
        ps_block *pb = &s->blocks[i];
        bs_header *h = pb->shm.hdr;
        uint32_t op = atomic_load(&h->op);
        if (op == BS_OP_IDLE)
            continue;
        int rc;
        if (op == BS_OP_STEP && pb->spilled) {
            uint64_t v = atomic_load(&h->version), c = atomic_load(&h->steps_committed);
            if (v == c + 1) {
                block_done(s, pb, v);
                log_warn("layer block %u: killed after its step's commit (version %llu in spill "
                         "slot %llu): finished the header after the restart",
                         h->block, (unsigned long long)v, (unsigned long long)(v % 2));
            } else if (v == c) {
                log_warn("layer block %u: killed in its step before the commit: redoing it from "
                         "spill slot %llu (version %llu)",
                         h->block, (unsigned long long)(v % 2), (unsigned long long)v);
            } else {
                return err_set(err, -EBADMSG,
                               "layer block %s: interrupted in a step with version %llu and "
                               "%llu steps committed; restore from a checkpoint",
                               pb->shm.path, (unsigned long long)v, (unsigned long long)c);
            }
            continue;
        }
        if (atomic_load(&j->op) != op || j->block != (uint32_t)(s->first + i))
            return err_set(err, -EUCLEAN,
                           "layer block %s was interrupted in the middle of %s, but the undo "
                           "journal %s describes %s of block %u: the block is half-updated "
                           "and cannot be recovered; restore from a checkpoint",
                           pb->shm.path, op == BS_OP_ACCUM ? "accumulating" : "a step",
                           s->journal_path,
                           atomic_load(&j->op) == BS_OP_IDLE ? "nothing"
                           : atomic_load(&j->op) == BS_OP_ACCUM ? "accumulating" : "a step",
                           j->block);
        if (j->n_threads < 1 || j->n_threads > j->cap_threads)
            return err_set(err, -EBADMSG,
                           "undo journal %s records %u threads but has room for %u: it is "
                           "damaged; restore from a checkpoint",
                           s->journal_path, j->n_threads, j->cap_threads);
        if (op == BS_OP_ACCUM)
            rc = finish_interrupted_accum(s, pb, err);
        else
            rc = finish_interrupted_block_step(s, pb, err);
        if (rc < 0)
            return rc;
    }
    journal_idle(s); /* a journal left naming a block that had finished */
    return 0;
}

/* After a restart: an ApplyStep whose headers say it was under way is
 * finished with the clip factor it recorded; a commit that reached only some
 * blocks is completed. */
static int finish_interrupted_step(ps_store *s, rt_err *err)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < s->n; i++) {
        uint64_t v = atomic_load(&s->blocks[i].shm.hdr->version);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    uint64_t committed = ps_steps_committed(s);
    if (hi > lo + 1 || lo < committed)
        return err_set(err, -EBADMSG, "layer block versions range over %llu..%llu with %llu "
                       "steps committed: the blocks are inconsistent; restore from a checkpoint",
                       (unsigned long long)lo, (unsigned long long)hi,
                       (unsigned long long)committed);
    bool marked = false; /* a spilled block killed before its commit */
    for (int i = 0; i < s->n; i++)
        marked |= atomic_load(&s->blocks[i].shm.hdr->op) == BS_OP_STEP;
    if (hi == lo + 1 || marked) {
        /* Some blocks got step `lo`, the rest did not: finish it. */
        const bs_header *h = s->blocks[0].shm.hdr;
        log_warn("an optimizer step (step %llu) was interrupted: finishing it",
                 (unsigned long long)lo);
        int rc = ps_step_begin(s, lo, h->step_clip, h->step_cursor != UINT64_MAX,
                               h->step_cursor, err);
        int b;
        while (rc == 0)
            rc = ps_step_next(s, &b, err);
        return rc < 0 ? rc : 0;
    }
    if (lo > committed) {
        /* every block updated, commit not recorded everywhere */
        uint64_t cursor = s->blocks[0].shm.hdr->step_cursor;
        if (cursor != UINT64_MAX)
            return ps_commit(s, lo - 1, cursor, err);
    }
    /* a commit that reached some headers only */
    uint64_t top = 0, cursor = 0;
    for (int i = 0; i < s->n; i++) {
        uint64_t c = atomic_load(&s->blocks[i].shm.hdr->steps_committed);
        if (c > top)
            top = c, cursor = atomic_load(&s->blocks[i].shm.hdr->data_cursor);
    }
    if (top != committed)
        return ps_commit(s, top - 1, cursor, err);
    return 0;
}

int ps_store_open(const ps_config *c, ps_store **out, rt_err *err)
{
    *out = NULL;
    ps_store *s = calloc(1, sizeof *s);
    lb_layout *ls = NULL;
    bool *spilled = NULL;
    if (s == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    s->c = *c;
    s->spill_fd = -1;
    s->pending_write = -1;
    for (int k = 0; k < PS_STAGES; k++)
        s->stage[k].block = -1;
    snprintf(s->run_id, sizeof s->run_id, "%s", c->run_id);
    s->n_model_blocks = model_n_blocks(&c->model);
    s->first = c->first_block;
    s->n = c->n_blocks > 0 ? c->n_blocks : s->n_model_blocks - s->first;
    int rc;
    if (s->first < 0 || s->n < 1 || s->first + s->n > s->n_model_blocks) {
        rc = err_set(err, -EINVAL, "blocks %d..%d are not within the model's %d blocks", s->first,
                     s->first + s->n - 1, s->n_model_blocks);
        goto fail;
    }
    if (c->opt.micro_batches < 1 || c->opt.micro_batches > BS_MAX_MICRO) {
        rc = err_set(err, -EINVAL, "micro_batches %u: must be 1..%d", c->opt.micro_batches,
                     BS_MAX_MICRO);
        goto fail;
    }
    s->blocks = calloc((size_t)s->n, sizeof *s->blocks);
    ls = calloc((size_t)s->n, sizeof *ls);
    spilled = calloc((size_t)s->n, sizeof *spilled);
    if (s->blocks == NULL || ls == NULL || spilled == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < s->n; i++)
        if ((rc = model_block_layout(&c->model, s->first + i, c->compute, c->n_gslots, &ls[i],
                                     err)) < 0)
            goto fail;

    const char *numa = c->numa != NULL ? c->numa : "interleave";
    char where[TOPO_REPORT_LEN];
    if ((rc = topo_open(&s->topo, err)) < 0 ||
        (rc = topo_place_describe(s->topo, numa, where, sizeof where, err)) < 0)
        goto fail;
    int cpus[ADAMW_MAX_THREADS];
    int n_cpus = topo_cpus(s->topo, numa, cpus, ADAMW_MAX_THREADS, err);
    if (n_cpus < 0) {
        rc = n_cpus;
        goto fail;
    }
    int threads = c->threads > 0 ? c->threads : n_cpus;
    int pin[ADAMW_MAX_THREADS];
    for (int k = 0; k < threads; k++)
        pin[k] = cpus[k % n_cpus];
    if ((rc = adamw_pool_open(threads, pin, &s->pool, err)) < 0)
        goto fail;
    log_info("topology: %s; optimizer: %s", topo_describe(s->topo), adamw_pool_describe(s->pool));

    bool exists = bs_block_exists(s->run_id, c->shard, s->first);
    if (exists) {
        /* A restarted service is started with its first command line: the
         * blocks hold newer state than the source it names, and win. */
        if (c->resume_from != NULL || c->init_from != NULL)
            log_warn("run %s already has layer blocks in shared memory: continuing from them, "
                     "not from %s (`ramtrain clean --run-id %s` to start over)",
                     s->run_id, c->resume_from ? c->resume_from : c->init_from, s->run_id);
        if ((rc = attach_blocks(s, ls, err)) < 0)
            goto fail;
        for (int i = 0; i < s->n; i++)
            s->n_spilled += s->blocks[i].spilled;
    } else {
        if ((rc = plan_spill(s, ls, spilled, err)) < 0)
            goto fail;
        for (int i = 0; i < s->n; i++)
            s->n_spilled += spilled[i];
    }
    /* spill extents and staging buffers */
    uint64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        bool sp = exists ? s->blocks[i].spilled : spilled[i];
        if (!sp)
            continue;
        s->blocks[i].spill_off = off;
        s->blocks[i].slot_bytes = spill_slot_bytes(&ls[i]);
        off += 2 * s->blocks[i].slot_bytes;
        if (s->blocks[i].slot_bytes > s->stage_bytes)
            s->stage_bytes = s->blocks[i].slot_bytes;
    }
    s->spill_bytes = off;
    void *bufs[PS_STAGES > CKPT_STAGING_COUNT ? PS_STAGES : CKPT_STAGING_COUNT];
    size_t lens[PS_STAGES > CKPT_STAGING_COUNT ? PS_STAGES : CKPT_STAGING_COUNT];
    int n_bufs = 0;
    for (int k = 0; k < PS_STAGES && s->n_spilled > 0; k++) {
        if ((s->stage[k].buf = io_alloc(s->stage_bytes)) == NULL) {
            rc = err_set(err, -ENOMEM, "cannot allocate %.1f MiB of spill staging",
                         s->stage_bytes / 1048576.0);
            goto fail;
        }
        bufs[n_bufs] = s->stage[k].buf;
        lens[n_bufs++] = s->stage_bytes;
    }
    io_opts io = {.kind = c->io, .depth = 32, .n_bufs = n_bufs, .bufs = bufs, .buf_lens = lens};
    if ((rc = io_engine_open(&io, &s->io, err)) < 0)
        goto fail;
    if ((rc = ckpt_staging_init(&s->ckpt_stage, CKPT_STAGING_COUNT, CKPT_STAGING_BYTES, err)) < 0)
        goto fail;
    for (int k = 0; k < s->ckpt_stage.n; k++) {
        bufs[k] = s->ckpt_stage.buf[k];
        lens[k] = s->ckpt_stage.len;
    }
    io.n_bufs = s->ckpt_stage.n;
    if ((rc = io_engine_open(&io, &s->ckpt_io, err)) < 0)
        goto fail;
    log_info("I/O engine: %s", io_engine_describe(s->io));

    if ((rc = parse_fault(s, err)) < 0)
        goto fail;
    if (exists) {
        if (s->n_spilled > 0 && (rc = open_spill_file(s, false, err)) < 0)
            goto fail;
        if ((rc = journal_path(s, err)) < 0)
            goto fail;
        rc = journal_map(s, false, 0, err);
        if (rc == -ENOENT)
            rc = journal_map(s, true, (uint32_t)threads, err);
        if (rc < 0 || (rc = finish_interrupted_ops(s, err)) < 0 ||
            (rc = journal_fit(s, (uint32_t)threads, err)) < 0 ||
            (rc = finish_interrupted_step(s, err)) < 0)
            goto fail;
    } else {
        if ((rc = create_blocks(s, ls, spilled, err)) < 0 || (rc = journal_path(s, err)) < 0 ||
            (rc = journal_create(s, (uint32_t)threads, err)) < 0) {
            /* nothing of value is in blocks we just made: do not leave them */
            for (int i = 0; i < s->n; i++) {
                bs_block_close(&s->blocks[i].shm);
                bs_block_unlink(s->run_id, c->shard, s->first + i, NULL);
            }
            if (s->spill_fd >= 0)
                unlink(s->spill_path);
            goto fail;
        }
    }
    log_info("placement: %s", where);
    if (s->n_spilled > 0)
        log_info("spill: %d of %d blocks keep master/m/v in %s (%.1f MiB), staging %d x %.1f MiB",
                 s->n_spilled, s->n, s->spill_path, s->spill_bytes / 1048576.0, PS_STAGES,
                 s->stage_bytes / 1048576.0);
    free(ls);
    free(spilled);
    *out = s;
    return 0;
fail:
    free(ls);
    free(spilled);
    ps_store_close(s, false);
    return rc;
}

void ps_store_close(ps_store *s, bool remove_state)
{
    if (s == NULL)
        return;
    io_engine_close(s->io);
    io_engine_close(s->ckpt_io);
    journal_unmap(s);
    if (remove_state && s->journal_path[0] != '\0')
        unlink(s->journal_path);
    for (int i = 0; s->blocks != NULL && i < s->n; i++) {
        bs_block_close(&s->blocks[i].shm);
        if (remove_state)
            bs_block_unlink(s->run_id, s->c.shard, s->first + i, NULL);
    }
    if (s->spill_fd >= 0) {
        close(s->spill_fd);
        if (remove_state)
            unlink(s->spill_path);
    }
    for (int k = 0; k < PS_STAGES; k++)
        free(s->stage[k].buf);
    ckpt_staging_free(&s->ckpt_stage);
    adamw_pool_close(s->pool);
    topo_close(s->topo);
    free(s->blocks);
    free(s);
}

/* ---- queries ---------------------------------------------------------------- */

uint64_t ps_steps_committed(const ps_store *s)
{
    uint64_t c = UINT64_MAX;
    for (int i = 0; i < s->n; i++) {
        uint64_t v = atomic_load(&s->blocks[i].shm.hdr->steps_committed);
        c = v < c ? v : c;
    }
    return c;
}

uint64_t ps_data_cursor(const ps_store *s)
{
    return atomic_load(&s->blocks[0].shm.hdr->data_cursor);
}

int ps_first_block(const ps_store *s) { return s->first; }
int ps_n_blocks(const ps_store *s) { return s->n; }

const ps_block *ps_block_get(const ps_store *s, int block)
{
    if (block < s->first || block >= s->first + s->n)
        return NULL;
    return &s->blocks[block - s->first];
}

uint64_t ps_block_version(const ps_store *s, int block)
{
    return atomic_load(&s->blocks[block - s->first].shm.hdr->version);
}

bool ps_stepping(const ps_store *s) { return s->stepping; }

void ps_usage(const ps_store *s, uint64_t *ram_bytes, uint64_t *spill_bytes)
{
    uint64_t r = 0;
    for (int i = 0; i < s->n; i++)
        r += s->blocks[i].shm.map_bytes;
    *ram_bytes = r;
    *spill_bytes = s->spill_bytes;
}

/* Micro-batches of step accumulated in the block of header h. */
static uint32_t accum_count_at(const bs_header *h, uint64_t step)
{
    return atomic_load(&h->accum_step) == step ? atomic_load(&h->accum_count) : 0;
}

void ps_accum_state(const ps_store *s, uint64_t *step, uint32_t *micros)
{
    uint64_t committed = ps_steps_committed(s);
    uint32_t m = UINT32_MAX;
    for (int i = 0; i < s->n; i++) {
        uint32_t c = accum_count_at(s->blocks[i].shm.hdr, committed);
        m = c < m ? c : m;
    }
    *step = committed;
    *micros = m;
}

/* ---- gradients ---------------------------------------------------------------- */


int ps_grad_ready(ps_store *s, int block, uint64_t step, uint32_t micro, uint32_t slot,
                  rt_err *err)
{
    if (block < s->first || block >= s->first + s->n)
        return err_set(err, -EINVAL, "GradReady: block %d is not on this shard (blocks %d..%d)",
                       block, s->first, s->first + s->n - 1);
    ps_block *pb = blk(s, block);
    bs_header *h = pb->shm.hdr;
    uint32_t K = s->c.opt.micro_batches;
    if (slot >= (uint32_t)pb->l->n_gslots)
        return err_set(err, -EINVAL, "GradReady: slot %u, the block has %d gradient slots", slot,
                       pb->l->n_gslots);
    if (micro >= K)
        return err_set(err, -EINVAL, "GradReady: micro %u, a step has %u micro-batches", micro, K);
    uint64_t cur = atomic_load(&h->version);
    if (step < cur)
        return 1; /* that step is applied already: a resend from before a restart */
    /* A block the running optimizer step has already updated (version ==
     * step) takes the next step's gradients; one it has not reached is
     * still at the step before. */
    if (step > cur)
        return err_set(err, -EINVAL,
                       "GradReady: block %d holds the weights of step %llu, got gradients of "
                       "step %llu",
                       block, (unsigned long long)cur, (unsigned long long)step);
    if (atomic_load(&h->accum_step) != step) {
        for (int w = 0; w < BS_MAX_MICRO / 64; w++)
            atomic_store(&h->accum_micro[w], 0);
        atomic_store(&h->accum_count, 0);
        atomic_store(&h->accum_step, step);
    }
    if (atomic_load(&h->accum_micro[micro / 64]) & (1ull << (micro % 64)))
        return 1;
    uint32_t count = atomic_load(&h->accum_count);
    if (micro != count)
        return err_set(err, -EPROTO,
                       "GradReady: block %d step %llu: micro %u arrived before micro %u; "
                       "micro-batches are accumulated in order so results are reproducible",
                       block, (unsigned long long)step, micro, count);
    ps_op o;
    op_accum(&o, s, pb, slot);
    op_run(&o, h, true, block, step, micro, slot);
    accum_done(s, pb, micro);
    return 0;
}

static int check_all_in(ps_store *s, uint64_t step, const char *what, rt_err *err)
{
    uint64_t committed = ps_steps_committed(s);
    if (step != committed)
        return err_set(err, -EINVAL, "%s: step %llu, but the shard is at step %llu", what,
                       (unsigned long long)step, (unsigned long long)committed);
    for (int i = 0; i < s->n; i++) {
        uint32_t n = accum_count_at(s->blocks[i].shm.hdr, step);
        if (n != s->c.opt.micro_batches)
            return err_set(err, -EAGAIN,
                           "%s: step %llu: block %d has %u of its %u micro-batches", what,
                           (unsigned long long)step, s->first + i, n, s->c.opt.micro_batches);
    }
    return 0;
}

int ps_grad_sumsq(ps_store *s, uint64_t step, double *sumsq, rt_err *err)
{
    int rc = check_all_in(s, step, "GradNorm", err);
    if (rc < 0)
        return rc;
    double total = 0;
    for (int i = 0; i < s->n; i++) {
        const lb_layout *l = s->blocks[i].l;
        const float *x[LB_MAX_TENSORS];
        uint64_t len[LB_MAX_TENSORS];
        double part[LB_MAX_TENSORS];
        for (int t = 0; t < l->n_tensors; t++) {
            x[t] = lb_tensor_ptr(l, s->blocks[i].shm.base, LB_SEC_ACCUM, t);
            len[t] = l->t[t].numel;
        }
        adamw_pool_sumsq(s->pool, x, len, l->n_tensors, part);
        for (int t = 0; t < l->n_tensors; t++)
            total += part[t];
    }
    double k = (double)s->c.opt.micro_batches;
    *sumsq = total / (k * k);
    return 0;
}

/* ---- the optimizer step --------------------------------------------------------- */

int ps_step_begin(ps_store *s, uint64_t step, double clip, bool commit, uint64_t data_cursor,
                  rt_err *err)
{
    if (s->stepping)
        return err_set(err, -EBUSY, "ApplyStep: step %llu is already being applied",
                       (unsigned long long)s->step);
    if (!(clip > 0.0) || !isfinite(clip))
        return err_set(err, -EINVAL, "ApplyStep: clip factor %g must be a finite number > 0",
                       clip);
    bool resuming = false;
    for (int i = 0; i < s->n; i++)
        resuming |= atomic_load(&s->blocks[i].shm.hdr->version) > step;
    if (!resuming) {
        int rc = check_all_in(s, step, "ApplyStep", err);
        if (rc < 0)
            return rc;
    }
    for (int i = 0; i < s->n; i++) {
        bs_header *h = s->blocks[i].shm.hdr;
        h->step_clip = clip;
        h->step_cursor = commit ? data_cursor : UINT64_MAX;
    }
    atomic_thread_fence(memory_order_release);
    s->stepping = true;
    s->step = step;
    s->clip = clip;
    s->commit = commit;
    s->cursor = data_cursor;
    s->next = s->first;
    s->spill_seq = 0;
    s->pending_write = -1;
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    return 0;
}


/* Index (among spilled blocks, in order) of the next spilled block at or
 * after model block b that still needs the step, or -1. */
static int next_spilled(ps_store *s, int b)
{
    for (; b < s->first + s->n; b++)
        if (blk(s, b)->spilled && atomic_load(&blk(s, b)->shm.hdr->version) == s->step)
            return b;
    return -1;
}

static int finish_pending_write(ps_store *s, rt_err *err)
{
    if (s->pending_write < 0)
        return 0;
    int st = s->pending_write;
    s->pending_write = -1;
    int rc = stage_wait(s, st, err);
    if (rc < 0)
        return rc;
    block_done(s, blk(s, s->stage[st].block), s->step + 1);
    s->stage[st].block = -1;
    return 0;
}

static int step_spilled(ps_store *s, int b, rt_err *err)
{
    /* Stage k holds the k-th spilled block of this step modulo PS_STAGES: while
     * it is updated, the next one's read and the previous one's write run. */
    int st = -1;
    for (int k = 0; k < PS_STAGES; k++)
        if (s->stage[k].block == b && !s->stage[k].writing)
            st = k;
    int rc;
    if (st < 0) {
        st = s->spill_seq % PS_STAGES;
        if ((rc = stage_io(s, st, b, false, cur_slot(s, b), err)) < 0)
            return rc;
    }
    if ((rc = stage_wait(s, st, err)) < 0)
        return rc;
    int nb = next_spilled(s, b + 1);
    if (nb >= 0) {
        int st2 = (s->spill_seq + 1) % PS_STAGES;
        if (s->pending_write == st2 && (rc = finish_pending_write(s, err)) < 0)
            return rc;
        if ((rc = stage_io(s, st2, nb, false, cur_slot(s, nb), err)) < 0)
            return rc;
    }
    ps_block *pb = blk(s, b);
    ps_op o;
    op_step(&o, s, pb, s->stage[st].buf, s->step, s->clip);
    op_run(&o, pb->shm.hdr, false, b, s->step, 0, 0);
    if ((rc = finish_pending_write(s, err)) < 0)
        return rc;
    /* into the other slot: the current one stays intact until version + 1 */
    if ((rc = stage_io(s, st, b, true, (int)((s->step + 1) % 2), err)) < 0)
        return rc;
    s->pending_write = st;
    s->spill_seq++;
    return 0;
}

int ps_step_next(ps_store *s, int *block, rt_err *err)
{
    if (!s->stepping)
        return err_set(err, -EINVAL, "no optimizer step in progress");
    int rc;
    while (s->next < s->first + s->n &&
           atomic_load(&blk(s, s->next)->shm.hdr->version) > s->step)
        s->next++; /* done by an incarnation that was killed between blocks */
    if (s->next == s->first + s->n) {
        if ((rc = finish_pending_write(s, err)) < 0)
            return rc;
        s->stepping = false;
        if (s->commit && (rc = ps_commit(s, s->step, s->cursor, err)) < 0)
            return rc;
        return 1;
    }
    int b = s->next++;
    ps_block *pb = blk(s, b);
    if (pb->spilled) {
        if ((rc = step_spilled(s, b, err)) < 0) {
            s->stepping = false;
            return rc;
        }
    } else {
        ps_op o;
        op_step(&o, s, pb, NULL, s->step, s->clip);
        op_run(&o, pb->shm.hdr, true, b, s->step, 0, 0);
        block_done(s, pb, s->step + 1);
    }
    *block = b;
    return 0;
}

int ps_commit(ps_store *s, uint64_t step, uint64_t data_cursor, rt_err *err)
{
    for (int i = 0; i < s->n; i++)
        if (atomic_load(&s->blocks[i].shm.hdr->version) != step + 1)
            return err_set(err, -EINVAL, "Commit: step %llu is not applied to block %d",
                           (unsigned long long)step, s->first + i);
    for (int i = 0; i < s->n; i++) {
        bs_header *h = s->blocks[i].shm.hdr;
        atomic_store_explicit(&h->data_cursor, data_cursor, memory_order_relaxed);
        atomic_store_explicit(&h->steps_committed, step + 1, memory_order_release);
    }
    return 0;
}

/* ---- checkpoints ------------------------------------------------------------------ */

typedef struct ckpt_src {
    ps_store *s;
    const ckpt_tensor *mt, *ot;        /* the two files' tensor lists, to index the maps below */
    int n_t;                           /* tensors in model.safetensors */
    int *block;                        /* [4 n_t] model block of each entry (mt, then ot) */
    int *tensor;                       /* [4 n_t] index within the block */
    lb_section *sec;                   /* [4 n_t] LB_SEC_MASTER, LB_SEC_M or LB_SEC_V */
    int loaded_block;                  /* spilled block whose extent is in stage 0, or -1 */
} ckpt_src;

/* Bytes [off, off + len) of a checkpoint tensor, in its file dtype: from the
 * block, or from a spilled block's extent read into staging (once per block:
 * the tensors of a block are consecutive in both files). */
static int ckpt_fill(const ckpt_tensor *t, uint64_t off, void *buf, size_t len, rt_err *err)
{
    ckpt_src *c = t->ctx;
    ps_store *s = c->s;
    int idx = t >= c->mt && t < c->mt + c->n_t ? (int)(t - c->mt) : c->n_t + (int)(t - c->ot);
    ps_block *pb = blk(s, c->block[idx]);
    int i = c->tensor[idx];
    void *extent = NULL;
    if (pb->spilled && (c->sec[idx] != LB_SEC_MASTER || pb->l->compute != DT_F32)) {
        if (c->loaded_block != c->block[idx]) {
            int rc = spill_read_sync(s, 0, c->block[idx], err);
            if (rc < 0)
                return rc;
            c->loaded_block = c->block[idx];
        }
        extent = s->stage[0].buf;
    }
    const float *src = c->sec[idx] == LB_SEC_MASTER ? master_ptr(pb, extent, i)
                                                   : opt_ptr(pb, extent, c->sec[idx], i);
    if (t->dtype == DT_F32) {
        memcpy(buf, (const char *)src + off, len);
        return 0;
    }
    size_t es = dt_size(t->dtype);
    if (off % es != 0 || len % es != 0)
        return err_set(err, -EINVAL, "%s: fill of [%llu, +%zu) not on element boundaries",
                       t->name, (unsigned long long)off, len);
    dt_from_f32(t->dtype, src + off / es, buf, len / es);
    return 0;
}

int ps_checkpoint(ps_store *s, const char *dir, unsigned keep, bool compute_dtype, char *path,
                  size_t path_len, uint64_t *bytes, rt_err *err)
{
    if (s->stepping)
        return err_set(err, -EBUSY, "Checkpoint: an optimizer step is running");
    uint64_t step = ps_steps_committed(s);
    for (int i = 0; i < s->n; i++)
        if (accum_count_at(s->blocks[i].shm.hdr, step) > 0)
            return err_set(err, -EBUSY,
                           "Checkpoint: step %llu has micro-batches accumulated; checkpoints "
                           "are taken at step boundaries",
                           (unsigned long long)step);
    int n_t = 0;
    for (int i = 0; i < s->n; i++)
        n_t += s->blocks[i].l->n_tensors;
    ckpt_tensor *mt = calloc((size_t)n_t, sizeof *mt);
    ckpt_tensor *ot = calloc((size_t)n_t * 3, sizeof *ot);
    char (*names)[LB_NAME_LEN + 32] = calloc((size_t)n_t * 3, sizeof *names);
    ckpt_src src = {.s = s, .mt = mt, .ot = ot, .n_t = n_t, .loaded_block = -1};
    src.block = calloc((size_t)n_t * 4, sizeof *src.block);
    src.tensor = calloc((size_t)n_t * 4, sizeof *src.tensor);
    src.sec = calloc((size_t)n_t * 4, sizeof *src.sec);
    ckpt_txn txn = {0};
    int rc;
    if (mt == NULL || ot == NULL || names == NULL || src.block == NULL || src.tensor == NULL ||
        src.sec == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    /* model.safetensors: the master weights (fp32, or the compute dtype on
     * request); optimizer.safetensors: X.exp_avg, X.exp_avg_sq and, when the
     * model file is not fp32, X.master, block by block. */
    bool conv = compute_dtype && s->c.compute != DT_F32;
    int k = 0, ko = 0;
    for (int i = 0; i < s->n; i++) {
        const lb_layout *l = s->blocks[i].l;
        for (int t = 0; t < l->n_tensors; t++, k++) {
            const lb_tensor *lt = &l->t[t];
            mt[k] = (ckpt_tensor){.name = lt->name, .dtype = conv ? l->compute : DT_F32,
                                  .ndim = lt->ndim, .fill = ckpt_fill, .ctx = &src};
            memcpy(mt[k].shape, lt->shape, sizeof lt->shape);
            src.block[k] = s->first + i, src.tensor[k] = t, src.sec[k] = LB_SEC_MASTER;
            static const char *const suffix[3] = {CKPT_SUFFIX_EXP_AVG, CKPT_SUFFIX_EXP_AVG_SQ,
                                                  CKPT_SUFFIX_MASTER};
            static const lb_section secs[3] = {LB_SEC_M, LB_SEC_V, LB_SEC_MASTER};
            for (int j = 0; j < (conv ? 3 : 2); j++, ko++) {
                snprintf(names[ko], sizeof names[ko], "%s%s", lt->name, suffix[j]);
                ot[ko] = (ckpt_tensor){.name = names[ko], .dtype = DT_F32, .ndim = lt->ndim,
                                       .fill = ckpt_fill, .ctx = &src};
                memcpy(ot[ko].shape, lt->shape, sizeof lt->shape);
                src.block[n_t + ko] = s->first + i, src.tensor[n_t + ko] = t;
                src.sec[n_t + ko] = secs[j];
            }
        }
    }
    double t0 = now_s();
    if ((rc = ckpt_begin(dir, step, &txn, err)) < 0)
        goto out;
    char file[CKPT_PATH_MAX];
    const char *meta[] = {"format", "pt", NULL};
    ckpt_state st = {.step = step, .data_cursor = ps_data_cursor(s),
                     .config_hash = model_config_hash(&s->c.model), .seed = s->c.seed};
    snprintf(st.run_id, sizeof st.run_id, "%s", s->run_id);
    if ((rc = ckpt_txn_path(&txn, CKPT_CONFIG_FILE, file, sizeof file, err)) < 0 ||
        (rc = model_config_save(&s->c.model, file, err)) < 0 ||
        (rc = ckpt_txn_path(&txn, CKPT_MODEL_FILE, file, sizeof file, err)) < 0 ||
        (rc = ckpt_write_safetensors(s->ckpt_io, &s->ckpt_stage, file, mt, n_t, meta, NULL, err)) < 0 ||
        (rc = ckpt_txn_path(&txn, CKPT_OPTIM_FILE, file, sizeof file, err)) < 0 ||
        (rc = ckpt_write_safetensors(s->ckpt_io, &s->ckpt_stage, file, ot, ko, meta, NULL, err)) < 0 ||
        (rc = ckpt_txn_path(&txn, CKPT_STATE_FILE, file, sizeof file, err)) < 0 ||
        (rc = ckpt_state_write(file, &st, err)) < 0 || (rc = ckpt_commit(&txn, err)) < 0)
        goto out;
    snprintf(path, path_len, "%s", txn.dir);
    *bytes = txn.bytes;
    double secs = now_s() - t0;
    log_info("checkpoint %s: %.1f MiB in %.2f s (%.0f MiB/s)", txn.dir, txn.bytes / 1048576.0,
             secs, txn.bytes / 1048576.0 / (secs > 0 ? secs : 1e-9));
    if (keep > 0)
        rc = ckpt_prune(dir, keep, err);
out:
    if (txn.open)
        ckpt_abort(&txn, NULL);
    free(mt);
    free(ot);
    free(names);
    free(src.block);
    free(src.tensor);
    free(src.sec);
    return rc;
}

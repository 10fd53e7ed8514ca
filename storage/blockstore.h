/*
 * blockstore: layer blocks in shared memory (DESIGN.md §3).
 *
 * Each layer block is one shared-memory object, a file named
 * "ramtrain.<run-id>.<shard>.<block>" in /dev/hugepages (hugetlbfs, when it
 * is mounted and has enough free huge pages) or else in /dev/shm (tmpfs,
 * asked for transparent huge pages with MADV_HUGEPAGE), mode 0600, created by
 * the parameter server. The object starts with a bs_header page: magic,
 * format version, layout hash, block index, weight version, committed step,
 * data cursor, the state of the gradient accumulation, and the block's
 * tensor table (an lb_layout). Everything after it is laid out by the
 * layout (storage/layer_block.h).
 *
 * The objects outlive the process: a restarted parameter server attaches to
 * them, validates each header against the layout it expects (and says what
 * disagrees), and continues from the committed step. Objects are removed only
 * by bs_block_unlink (`ramtrain clean`, or the end of a run).
 *
 * A spilled block (its optimizer state on NVMe, see storage/spill.h) is
 * created with only lb_layout.resident_bytes: header, W, G slots and accum.
 *
 * Crash consistency: the header fields a restart reads are written with
 * release stores after the data they describe, so a process killed at any
 * point leaves a header that describes data that is really there. An
 * operation that rewrites data in place (accumulating a gradient, an
 * optimizer step) sets `op` first and clears it when done; a block found with
 * `op` set was interrupted mid-way: bs_block_attach refuses it (its data is
 * half-updated), bs_block_attach_flags with BS_ATTACH_INTERRUPTED maps it for
 * a caller that can finish the operation (the paramserver's undo journal).
 *
 * Threads and processes: the paramserver writes headers from one thread; the
 * worker only reads `version`. Fields read by another process are _Atomic.
 */
#ifndef RAMTRAIN_STORAGE_BLOCKSTORE_H
#define RAMTRAIN_STORAGE_BLOCKSTORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/err.h"
#include "storage/layer_block.h"
#include "storage/topo.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BS_MAGIC 0x4b4c425254524d52ull    /* "RMRTRBLK" little-endian */
#define BS_FORMAT_VERSION 1u
#define BS_RUN_ID_LEN 64
#define BS_MAX_MICRO 1024                 /* micro-batches per step the bitmap can count */
#define BS_NAME_LEN 160
#define BS_DIR_HUGETLB "/dev/hugepages"     /* used when it is hugetlbfs with free 2 MiB pages */
#define BS_DIR_SHM "/dev/shm"               /* tmpfs: everywhere else */
/* Environment variable naming a directory (tmpfs, hugetlbfs or any other
 * file system) that replaces both for new blocks: tests point it at a private
 * directory. Attach, unlink, exists and bs_path look there first, then in
 * BS_DIR_HUGETLB, then in BS_DIR_SHM. Unset or empty: not used. */
#define BS_ENV_DIR "RAMTRAIN_SHM_DIR"

enum bs_flags {
    BS_FLAG_SPILLED = 1u << 0,            /* master/m/v live in the spill file, not here */
};

enum bs_op {
    BS_OP_IDLE = 0,
    BS_OP_ACCUM = 1,                      /* accum += G slot in progress */
    BS_OP_STEP = 2,                       /* optimizer step in progress */
};

typedef struct bs_header {
    uint64_t magic;                       /* BS_MAGIC */
    uint32_t format_version;              /* BS_FORMAT_VERSION */
    uint32_t header_bytes;                /* sizeof(bs_header) */
    uint64_t layout_hash;                 /* lb_layout_hash of layout */
    char run_id[BS_RUN_ID_LEN];
    uint32_t shard;
    uint32_t block;                       /* block index in the model */
    uint32_t n_blocks;                    /* blocks in the model */
    uint32_t flags;                       /* bs_flags */
    uint64_t map_bytes;                   /* size of the object */
    _Atomic uint64_t version;             /* optimizer steps applied to W */
    _Atomic uint64_t steps_committed;     /* steps committed run-wide when last written */
    _Atomic uint64_t data_cursor;         /* next global micro-batch index after them */
    _Atomic uint32_t op;                  /* bs_op: an in-place update in progress */
    _Atomic uint32_t accum_count;         /* micro-batches of accum_step accumulated */
    _Atomic uint64_t accum_step;          /* step whose gradients accum holds */
    double step_clip;                     /* ApplyStep in progress (steps_committed -> +1): */
    uint64_t step_cursor;                 /* its clip factor and data cursor, so a restart
                                             can finish the blocks it had not reached */
    _Atomic uint64_t accum_micro[BS_MAX_MICRO / 64]; /* bit m: micro m counted */
    lb_layout layout;                     /* the tensor table */
} bs_header;

_Static_assert(sizeof(bs_header) <= LB_ALIGN_TENSOR, "bs_header must fit the header page");

typedef enum bs_pages {
    BS_PAGES_SMALL = 0,                   /* 4 KiB pages */
    BS_PAGES_THP,                         /* tmpfs with transparent huge pages */
    BS_PAGES_HUGETLB,                     /* hugetlbfs */
} bs_pages;

typedef struct bs_block {
    bs_header *hdr;                       /* = base */
    void *base;                           /* the mapping, map_bytes long */
    uint64_t map_bytes;
    bs_pages pages;
    char path[BS_NAME_LEN];
} bs_block;

/* FNV-1a hash of the layout's bytes (tensor table, dtypes, offsets). Each
 * field is hashed on its own, so struct padding and the unused table slots
 * do not count: equal layouts hash equal however they were built or copied. */
uint64_t lb_layout_hash(const lb_layout *l);

/* 0 when run_id is 1..63 characters of [A-Za-z0-9_-]; else -EINVAL with a
 * message naming it. */
int bs_run_id_check(const char *run_id, rt_err *err);

/* Writes the object's path for (run_id, shard, block) under dir (NULL: the
 * place it would be created: /dev/hugepages when usable, else /dev/shm).
 * With dir NULL an existing object's own path is written (looked up as attach
 * does); otherwise $RAMTRAIN_SHM_DIR when set, else /dev/hugepages when it is
 * hugetlbfs with a free 2 MiB page, else /dev/shm. 0, -EINVAL (bad run id,
 * shard or block), -ENAMETOOLONG (does not fit len). */
int bs_path(char *buf, size_t len, const char *dir, const char *run_id, int shard, int block);

/* Creates block `l->index` of run run_id: a new object (O_EXCL; -EEXIST when
 * it is there), mode 0600, sized to l->total_bytes or, when spilled, to
 * l->resident_bytes, mapped shared, zero-filled, with the header written
 * (version 0, nothing committed). try_huge asks for huge pages; *out->pages
 * says what was got. Blocks while the kernel zero-fills. */
int bs_block_create(const char *run_id, int shard, int n_blocks, const lb_layout *l,
                    bool spilled, bool try_huge, bs_block *out, rt_err *err);

/* bs_block_create, with the pages placed by topo_place(t, policy) between
 * mapping and zero-filling, so they are first touched where they belong.
 * t NULL: no placement. Every page is allocated before it returns (tmpfs
 * full or huge pages short is an error here, never a SIGBUS later).
 * Returns 0 or: -EINVAL bad arguments; -EEXIST an object for the block
 * exists in one of the places bs_block_attach searches; -ENOSPC / -ENOMEM
 * no room for it; errors of topo_place; other errno of open, mmap. Whatever
 * it created is removed on failure. */
int bs_block_create_placed(const char *run_id, int shard, int n_blocks, const lb_layout *l,
                           bool spilled, bool try_huge, topo *t, const char *policy,
                           bs_block *out, rt_err *err);

/* Maps an existing block and validates its header against the layout the
 * caller expects: magic, format version, run id, shard, block index, block
 * count, layout hash, size, and that no operation was interrupted. Each
 * disagreement is an error that names the object and both values. Returns 0 or:
 *   -EINVAL   bad arguments (run id, shard, block count, layout not finished);
 *   -ENOENT   no object in any of the places searched;
 *   -EBADMSG  not a complete block of this format: smaller than a header, bad
 *             magic (0: its creation was interrupted), format version, header
 *             size, a tensor table that does not match its hash, unknown
 *             flags, a size that disagrees with the header or the layout;
 *   -ESTALE   a valid block, but of another run, shard, block, block count or
 *             layout (the message names the first tensor or field that differs);
 *   -EUCLEAN  an accumulation or optimizer step was interrupted: half-updated;
 *   -EPERM    not a regular file, or owned by another user;
 *   other negative errno of open, fstat, mmap. */
int bs_block_attach(const char *run_id, int shard, int n_blocks, const lb_layout *expect,
                    bs_block *out, rt_err *err);

enum bs_attach_flags {
    BS_ATTACH_INTERRUPTED = 1u << 0,      /* accept a block whose `op` is ACCUM or STEP: the
                                             caller reads hdr->op and recovers it */
};

/* bs_block_attach with flags (bs_attach_flags). With BS_ATTACH_INTERRUPTED an
 * interrupted accumulation or step is not -EUCLEAN: the block is mapped and
 * the caller must finish or undo the operation before using its data. An op
 * value that is none of the known ones is still -EBADMSG. */
int bs_block_attach_flags(const char *run_id, int shard, int n_blocks, const lb_layout *expect,
                          unsigned flags, bs_block *out, rt_err *err);

/* Unmaps (the object stays). Safe on a zeroed bs_block. */
void bs_block_close(bs_block *b);

/* Removes the object of (run_id, shard, block) wherever it is. 0, or
 * -ENOENT when there is none. */
int bs_block_unlink(const char *run_id, int shard, int block, rt_err *err);

/* True when an object for (run_id, shard, block) exists. */
bool bs_block_exists(const char *run_id, int shard, int block);

/* "hugetlbfs 2 MiB pages", "transparent huge pages", "4 KiB pages". */
const char *bs_pages_name(bs_pages p);

#ifdef __cplusplus
}
#endif

#endif

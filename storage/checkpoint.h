/*
 * checkpoint: ramtrain checkpoints on disk (DESIGN.md §2): one directory per
 * step, written atomically, the last K kept, the newest complete one found
 * and validated on resume.
 *
 * Layout of root/step-N/ (N = optimizer steps completed, decimal):
 *   config.json            Hugging Face config (gpu/model.h model_config_save)
 *   model.safetensors      Hugging Face tensor names; fp32 master weights or
 *                          the compute dtype. Carries "__metadata__"
 *                          {"format": "pt"} so Transformers loads it.
 *                          (model.safetensors.index.json + shards also pass
 *                          ckpt_validate, which opens the model through st_open.)
 *   optimizer.safetensors  AdamW state, fp32, named after the model tensor X:
 *                          X.exp_avg (m), X.exp_avg_sq (v), and X.master (fp32
 *                          master weights) for every X the model file holds in
 *                          a dtype other than F32 (optional when it is F32).
 *   trainer_state.json     ckpt_state: step, data cursor, config hash, seed,
 *                          RNG state, run id. The learning-rate schedule
 *                          position is the step.
 *   DONE                   written last: {"step": "N", "files": {name: bytes}}
 *                          for every other file, so a file truncated or
 *                          swapped later is caught by ckpt_validate.
 *
 * Transaction: ckpt_begin makes root/step-N.tmp/; the caller writes the files
 * into it (ckpt_txn_path); ckpt_commit fsyncs every file, writes DONE,
 * fsyncs the directory, renames it to step-N (atomically exchanging it with
 * an existing step-N, which is then removed) and fsyncs root. A crash at any
 * point leaves either the old state or the new complete step-N, plus at most
 * a stale *.tmp directory that ckpt_prune (or the next ckpt_begin of that
 * step) removes. Directories named step-N are only ever complete ones made
 * by a rename, so DONE inside one is the commit record.
 *
 * Large files go through the I/O engine with O_DIRECT: the safetensors header
 * is padded with spaces so the data section starts on a 4 KiB boundary, the
 * byte stream is gathered into a ring of aligned staging buffers (each filled
 * while the others are being written), the last block is written zero-padded
 * and the file is truncated to its exact size.
 *
 * Threads and processes: one writer per root at a time (the parameter
 * server); nothing here locks. Every function blocks on I/O on the caller's
 * thread; fill callbacks run on it too.
 *
 * Rejected: writing through st_writer (buffered write() of caller pointers:
 * no O_DIRECT, and it needs every tensor in memory in the file's dtype, which
 * spilled optimizer state and bf16 exports are not), and a DONE that is only
 * an empty marker (it could not tell a truncated file from a complete one).
 */
#ifndef RAMTRAIN_STORAGE_CHECKPOINT_H
#define RAMTRAIN_STORAGE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/dtype.h"
#include "storage/err.h"
#include "storage/io_engine.h"
#include "storage/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT_CONFIG_FILE "config.json"
#define CKPT_MODEL_FILE "model.safetensors"
#define CKPT_OPTIM_FILE "optimizer.safetensors"
#define CKPT_STATE_FILE "trainer_state.json"
#define CKPT_DONE_FILE "DONE"
#define CKPT_SUFFIX_EXP_AVG ".exp_avg"       /* AdamW first moment m */
#define CKPT_SUFFIX_EXP_AVG_SQ ".exp_avg_sq" /* AdamW second moment v */
#define CKPT_SUFFIX_MASTER ".master"         /* fp32 master weights */

#define CKPT_PATH_MAX 4096
#define CKPT_RUN_ID_MAX 64                   /* bytes, terminating NUL included */
#define CKPT_STAGING_MAX 16                  /* staging buffers at most */
#define CKPT_STAGING_COUNT 4                 /* default: 4 x 8 MiB, enough to keep */
#define CKPT_STAGING_BYTES (8u << 20)        /* an NVMe queue busy while one fills */

/* ---- safetensors through the I/O engine --------------------------------- */

struct ckpt_tensor;

/* Produces bytes [off, off + len) of tensor t, in t->dtype, into buf. off and
 * len are multiples of dt_size(t->dtype); calls for one tensor come in
 * ascending, contiguous order. buf lies inside a staging buffer and is
 * IO_ALIGN-aligned only when the tensor's file offset + off is. Returns 0, or
 * a negative errno with err saying why (the writer adds file and tensor). */
typedef int (*ckpt_fill_fn)(const struct ckpt_tensor *t, uint64_t off, void *buf, size_t len,
                            rt_err *err);

typedef struct ckpt_tensor {
    const char *name;              /* Hugging Face name; borrowed */
    dt_type dtype;                 /* dtype in the file */
    int ndim;                      /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    const void *data;              /* [numel * dt_size(dtype)] bytes in the file's dtype, or NULL: use fill */
    ckpt_fill_fn fill;             /* used when data is NULL */
    void *ctx;                     /* for fill */
} ckpt_tensor;

/* A fill that converts fp32 to t->dtype (F32, BF16, F16 or F64): t->ctx
 * points at the tensor's numel fp32 values. */
int ckpt_fill_from_f32(const ckpt_tensor *t, uint64_t off, void *buf, size_t len, rt_err *err);

typedef struct ckpt_staging {
    int n;                         /* buffers, 1..CKPT_STAGING_MAX */
    size_t len;                    /* bytes of each, a multiple of IO_ALIGN */
    void *buf[CKPT_STAGING_MAX];   /* [len] bytes each, IO_ALIGN-aligned (io_alloc) */
} ckpt_staging;

/* Allocates n buffers of len bytes (n 0 and len 0 mean the defaults). Hand
 * buf/len to io_opts to have them registered with the ring. Owned by s,
 * freed with ckpt_staging_free. Logs nothing; the caller logs the MiB. */
int ckpt_staging_init(ckpt_staging *s, int n, size_t len, rt_err *err);

/* Frees the buffers; s may be NULL or zeroed. */
void ckpt_staging_free(ckpt_staging *s);

/* Writes a safetensors file of t[0..n) (in that order, packed) at path,
 * replacing any file there, with "__metadata__" from meta_kv ({key, value,
 * ..., NULL}; may be NULL). The data section starts at a multiple of
 * IO_ALIGN. Uses stage (NULL: buffers allocated for this call, at most the
 * default) and e, which must have nothing in flight. The file is fsynced, not
 * its directory; on failure it is removed. *bytes (may be NULL) gets the file
 * size. Errors name path and the tensor. Blocks on I/O. */
int ckpt_write_safetensors(io_engine *e, const ckpt_staging *stage, const char *path,
                           const ckpt_tensor *t, int n, const char *const *meta_kv,
                           uint64_t *bytes, rt_err *err);

/* Writes len bytes at path (create or replace, mode 0644 less umask) with
 * write() and fsyncs it: for the small files. Blocks on I/O. */
int ckpt_write_file(const char *path, const void *buf, size_t len, rt_err *err);

/* ---- the step directory transaction ----------------------------------- */

typedef struct ckpt_txn {
    uint64_t step;
    char root[CKPT_PATH_MAX];      /* the checkpoint directory */
    char tmp[CKPT_PATH_MAX];       /* root/step-N.tmp: where files are written */
    char dir[CKPT_PATH_MAX];       /* root/step-N: the result */
    uint64_t bytes;                /* total size of the files, set by ckpt_commit */
    bool open;
} ckpt_txn;

/* Starts writing step: creates root (and its parents) when missing, removes
 * a stale root/step-N.tmp and creates it empty. tx is the caller's. Blocks. */
int ckpt_begin(const char *root, uint64_t step, ckpt_txn *tx, rt_err *err);

/* tx->tmp/name into buf[len]; -ENAMETOOLONG when it does not fit. */
int ckpt_txn_path(const ckpt_txn *tx, const char *name, char *buf, size_t len, rt_err *err);

/* Makes the files in tx->tmp durable and the checkpoint visible as tx->dir
 * (see the transaction above); replaces an existing step-N. Sets tx->bytes.
 * On failure tx->tmp is left for ckpt_abort. Blocks on I/O. */
int ckpt_commit(ckpt_txn *tx, rt_err *err);

/* Removes tx->tmp and everything in it; a closed tx is a no-op. Blocks. */
int ckpt_abort(ckpt_txn *tx, rt_err *err);

/* ---- trainer state ----------------------------------------------------- */

typedef struct ckpt_state {
    uint64_t step;                 /* optimizer steps completed = the next step to run */
    uint64_t data_cursor;          /* the data loader's position of the next batch */
    uint64_t config_hash;          /* of the run's model and training config; resume checks it */
    uint64_t seed;                 /* the run's seed */
    uint64_t rng[4];               /* xoshiro256** state (services/common/rng.h rng_state.s) */
    char run_id[CKPT_RUN_ID_MAX];  /* NUL-terminated */
} ckpt_state;

/* Writes st as JSON at path (every uint64 as a decimal string, so all 64
 * bits survive JSON readers that use doubles) and fsyncs it. Blocks on I/O. */
int ckpt_state_write(const char *path, const ckpt_state *st, rt_err *err);

/* Reads path into *st. Numbers may be decimal strings or JSON integers >= 0.
 * A missing key or a bad value is an error naming the file and the key.
 * Keys it does not know are ignored. Blocks on I/O. */
int ckpt_state_read(const char *path, ckpt_state *st, rt_err *err);

/* ---- finding, pruning, validating ------------------------------------- */

/* Keeps the newest `keep` complete checkpoints in root (0: all) and removes
 * older complete ones and every stale step-*.tmp directory. step-N
 * directories without DONE (not made by ckpt_commit) are left alone. Call
 * with no transaction open on root. Blocks on I/O. */
int ckpt_prune(const char *root, unsigned keep, rt_err *err);

/* The newest complete checkpoint (a directory step-N holding DONE) with
 * N < below (UINT64_MAX: any) in root: *step and its path in dir[len].
 * *.tmp directories are ignored. -ENOENT with err saying so when there is
 * none. Validates nothing. Blocks on I/O. */
int ckpt_latest(const char *root, uint64_t below, uint64_t *step, char *dir, size_t len,
                rt_err *err);

/* Resolves what a user names as "resume from": a step directory (it must
 * hold DONE) or a root holding step directories (its newest complete one).
 * Validates nothing. Blocks on I/O. */
int ckpt_locate(const char *path, uint64_t *step, char *dir, size_t len, rt_err *err);

/* Checks a step directory: DONE present and readable, every file it lists
 * present with its recorded size, config.json a JSON object, the model and
 * optimizer files valid safetensors whose names match (X.exp_avg and
 * X.exp_avg_sq F32 of X's shape for every model tensor X, X.master where X is
 * not F32, nothing else), trainer_state.json readable and its step equal to
 * DONE's. Fills *st (may be NULL) with the state. Errors name the file and
 * the key or tensor. Blocks on I/O. */
int ckpt_validate(const char *dir, ckpt_state *st, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif

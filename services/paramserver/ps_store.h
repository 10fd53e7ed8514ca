/*
 * ps_store: the state of one parameter-server shard and every operation on
 * it, without the messaging (services/paramserver/main.c owns the socket).
 *
 * A shard owns blocks [first, first + count) of the model, each a layer block
 * in shared memory (storage/blockstore.h). It creates them (from a Hugging
 * Face checkpoint, a ramtrain checkpoint or a seeded random init) or attaches
 * to those a previous incarnation left, accumulates the micro-batch gradients
 * the worker lands in the G slots, reports the sum of squares for gradient
 * clipping, runs AdamW block by block (spilling master/m/v of the blocks past
 * the RAM budget to a file under spill_dir), commits steps in the block
 * headers and writes checkpoints.
 *
 * Determinism: micro-batches are accumulated in micro order (a GradReady out
 * of order is refused), every kernel is bitwise reproducible for any thread
 * count (adamw.h), and a spilled block is updated by the same kernel on the
 * same bytes as a resident one. So a run's weights depend only on its inputs,
 * not on restarts, thread counts or the RAM budget.
 *
 * Restarts: everything a restart needs is in the block headers (committed
 * steps, data cursor, accumulation counts, an ApplyStep in progress with its
 * clip factor) and in the shard's undo journal. A shard killed at any point
 * resumes with bitwise the state of an uninterrupted run:
 *  - between operations: from the headers;
 *  - inside an in-place update of a resident block (accumulate, step): the
 *    block's `op` mark names the journal "ramtrain.<run>.<shard>.journal"
 *    (shared memory, next to the blocks, mode 0600). The update runs in
 *    ADAMW_CHUNK-element chunks, each thread saving a chunk's old values to
 *    its undo area before rewriting it and counting the chunks it finished;
 *    the restart puts back the chunk in progress of each thread, redoes the
 *    chunks not counted (with any thread count: the kernels are elementwise)
 *    and completes the header updates;
 *  - inside a spilled block's step: its extent has two slots, the current
 *    one being version % 2; the step reads that slot, writes the other and
 *    stores version + 1 as its commit point, with the accumulator left intact
 *    until then, so a restart redoes the block from the old slot or only
 *    finishes the header.
 *
 * Fault injection (tests): PS_ENV_FAULT, read once by ps_store_open, makes
 * the shard raise SIGKILL on itself inside an operation:
 *   accum:<block>:<micro>:<chunks>  accumulating micro-batch <micro> into
 *                                   <block> (the first time: any step)
 *   step:<block>:<chunks>           <block>'s optimizer step
 *   spillwrite:<block>              after half of <block>'s spill write-back
 * With <chunks>, the kill comes once that many chunks are done, in the middle
 * of the next chunk begun (its first half rewritten); when there is none,
 * after the last, before the operation is marked done.
 * Unset or empty: nothing is armed (one predictable branch per chunk).
 *
 * Threads: one caller thread drives a ps_store; the AdamW pool's threads do
 * the arithmetic inside calls.
 */
#ifndef RAMTRAIN_PARAMSERVER_PS_STORE_H
#define RAMTRAIN_PARAMSERVER_PS_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/model.h"
#include "services/paramserver/adamw.h"
#include "storage/blockstore.h"
#include "storage/err.h"
#include "storage/io_engine.h"

#define PS_ENV_FAULT "RAMTRAIN_FAULT"

typedef enum ps_sched {
    PS_SCHED_CONSTANT = 0,
    PS_SCHED_COSINE,                   /* linear warmup, then cosine decay to min_lr */
    PS_SCHED_LINEAR,                   /* linear warmup, then linear decay to min_lr */
} ps_sched;

typedef struct ps_opt_config {
    double lr, beta1, beta2, eps, weight_decay;
    ps_sched schedule;
    uint64_t warmup_steps;             /* lr rises as (s+1)/warmup over steps s < warmup */
    uint64_t total_steps;              /* decay ends here (cosine, linear) */
    double min_lr;                     /* floor of the decay */
    uint32_t micro_batches;            /* K: micro-batches per step, 1..BS_MAX_MICRO */
} ps_opt_config;

typedef struct ps_config {
    const char *run_id;
    int shard;
    int first_block, n_blocks;         /* n_blocks 0: every block of the model */
    model_config model;
    dt_type compute;                   /* DT_F32 or DT_BF16 */
    int n_gslots;                      /* 1..4 */
    ps_opt_config opt;
    const char *init_from;             /* HF checkpoint (file/dir), or NULL */
    const char *resume_from;           /* ramtrain checkpoint dir (step-N or its parent), or NULL */
    uint64_t seed;                     /* random init when neither is given */
    int threads;                       /* optimizer threads; 0: one per core */
    const char *numa;                  /* "interleave", "gpu:<pci id>", "none" (NULL: interleave) */
    uint64_t ram_budget;               /* bytes of shm + staging allowed; 0: unlimited */
    const char *spill_dir;             /* where spilled optimizer state goes */
    io_kind io;                        /* I/O engine kind */
    bool try_huge;                     /* ask for huge pages */
} ps_config;

typedef struct ps_block {
    bs_block shm;
    lb_layout *l;                      /* = &shm.hdr->layout */
    bool spilled;
    uint64_t spill_off;                /* byte offset of its two-slot extent in the spill file */
    uint64_t slot_bytes;               /* one slot: opt_bytes, + f32_bytes of master with fp32
                                          compute (W is then rewritten from it) */
} ps_block;

typedef struct ps_store ps_store;

/* Opens the shard: attaches to existing blocks (validating them) or creates
 * them, then finishes an accumulation or ApplyStep a previous incarnation
 * left half-done (see Restarts above).
 * Logs what it did (pages, placement, threads, I/O engine, spill). *out is
 * freed with ps_store_close. Errors name the block, file or setting. */
int ps_store_open(const ps_config *c, ps_store **out, rt_err *err);

/* Unmaps everything; remove_state also deletes the blocks, the journal and
 * the spill file. */
void ps_store_close(ps_store *s, bool remove_state);

/* Steps committed (the step being trained now) and the data cursor. */
uint64_t ps_steps_committed(const ps_store *s);
uint64_t ps_data_cursor(const ps_store *s);

/* Number of blocks of this shard, the first's index, and block i (a model
 * block index) or NULL when the shard does not own it. */
int ps_first_block(const ps_store *s);
int ps_n_blocks(const ps_store *s);
const ps_block *ps_block_get(const ps_store *s, int block);

/* Version of W of block (optimizer steps applied to it). */
uint64_t ps_block_version(const ps_store *s, int block);

/* Accumulates G slot `slot` of (block, step, micro) into the block's fp32
 * accumulator. Returns 0 (counted now), 1 (counted before: a resend), or a
 * negative errno with err saying why it cannot be counted (wrong step, micro
 * out of range or out of order, bad slot, a step in progress). */
int ps_grad_ready(ps_store *s, int block, uint64_t step, uint32_t micro, uint32_t slot,
                  rt_err *err);

/* Sum of squares of the mean gradient of step (all micro-batches must be in). */
int ps_grad_sumsq(ps_store *s, uint64_t step, double *sumsq, rt_err *err);

/* Learning rate of step s under the schedule. */
double ps_lr(const ps_opt_config *o, uint64_t step);

/* The shard's optimizer settings. */
const ps_opt_config *ps_opt(const ps_store *s);

/* Starts ApplyStep(step, clip): checks every micro-batch is in and records
 * the step in the headers. Then call ps_step_next until it returns 1. */
int ps_step_begin(ps_store *s, uint64_t step, double clip, bool commit, uint64_t data_cursor,
                  rt_err *err);

/* Updates the next block of the step in progress (in block order). Returns
 * 0 with *block set to the block whose W is now at the new version, 1 when
 * the step is done (and committed if ps_step_begin asked), or -errno. */
int ps_step_next(ps_store *s, int *block, rt_err *err);

/* True while a step is in progress. */
bool ps_stepping(const ps_store *s);

/* Marks step committed with data_cursor (all blocks must hold step+1). */
int ps_commit(ps_store *s, uint64_t step, uint64_t data_cursor, rt_err *err);

/* Writes dir/step-N of the committed step (see storage/checkpoint.h) and keeps
 * the last `keep` (0: all). *path receives the step directory. Blocks on I/O. */
int ps_checkpoint(ps_store *s, const char *dir, unsigned keep, bool compute_dtype,
                  char *path, size_t path_len, uint64_t *bytes, rt_err *err);

/* Shared-memory and spill bytes, for Status. */
void ps_usage(const ps_store *s, uint64_t *ram_bytes, uint64_t *spill_bytes);

/* (step, micro count) of the accumulation in progress (micros counted in
 * every block). */
void ps_accum_state(const ps_store *s, uint64_t *step, uint32_t *micros);

#endif

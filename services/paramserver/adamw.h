/*
 * adamw: the parameter server's optimizer kernels and the pinned thread pool
 * that runs them (DESIGN.md §4 step 5-6, §6, §7).
 *
 * The update is torch.optim.AdamW (single-tensor form) on fp32 master, m and
 * v, with the gradient taken from the fp32 accumulator:
 *   g  = accum * grad_scale           (grad_scale = clip factor / micro-batches)
 *   p *= 1 - lr * weight_decay        (tensors with >= 2 dimensions only)
 *   m  = lerp(m, g, 1 - beta1)
 *   v  = v * beta2 + (1 - beta2) * g * g
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * and, in the same pass over memory, the compute-dtype copy W (bf16 rounded
 * to nearest even as PyTorch rounds, or fp32) is written from p and the
 * accumulator is zeroed: every byte of the block is read once and written once.
 *
 * Determinism: every element is computed by the same sequence of IEEE
 * operations (explicit fused multiply-adds, correctly rounded sqrt and
 * division; the file is built with -ffp-contract=off) whichever vector width
 * (AVX-512, AVX2+FMA or scalar, picked at run time) and whichever thread
 * computes it, so results are bitwise equal for any thread count and ISA.
 * Reductions (adamw_sumsq) use a fixed partition into ADAMW_CHUNK-element
 * chunks, fixed lanes within a chunk and a fixed combination order.
 *
 * Threads: the pool's threads are pinned one per CPU; adamw_pool_run blocks
 * the caller until every thread has finished. A pool is used by one caller
 * thread at a time. The kernels themselves are reentrant.
 */
#ifndef RAMTRAIN_PARAMSERVER_ADAMW_H
#define RAMTRAIN_PARAMSERVER_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/dtype.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ADAMW_CHUNK 16384u            /* elements per work item and per reduction partial */
#define ADAMW_MAX_THREADS 256

typedef struct adamw_hparams {
    double lr;                        /* this step's learning rate (after the schedule) */
    double beta1, beta2, eps, weight_decay;
    uint64_t step;                    /* 1-based step count t of the bias corrections */
} adamw_hparams;

typedef struct adamw_tensor {
    float *master;                    /* fp32 [n], updated in place (W itself when W is fp32) */
    float *m, *v;                     /* fp32 [n] AdamW moments */
    float *accum;                     /* fp32 [n] summed micro-batch gradients; zeroed by the step */
    void *w;                          /* compute-dtype copy [n] written from master; NULL: none */
    dt_type w_dtype;                  /* DT_BF16, DT_F16 or DT_F32 (when w is not NULL) */
    uint64_t n;                       /* elements */
    bool decay;                       /* apply weight decay (tensor has >= 2 dimensions) */
} adamw_tensor;

/* Name of the instruction set the kernels use: "avx512", "avx2" or "scalar". */
const char *adamw_isa(void);

/* Forces an instruction set ("avx512", "avx2", "scalar"; tests and benches).
 * -ENOTSUP when the CPU lacks it. Not thread-safe: call before any kernel. */
int adamw_force_isa(const char *isa, rt_err *err);

/* One AdamW update of elements [lo, hi) of t (see the file comment). Any
 * lo/hi; results do not depend on how a tensor is split. */
void adamw_step_range(const adamw_hparams *hp, float grad_scale, const adamw_tensor *t,
                      uint64_t lo, uint64_t hi);

/* accum[i] += g[i] for i in [lo, hi), with g of dtype g_dtype (F32, BF16 or F16). */
void adamw_accum_range(float *accum, const void *g, dt_type g_dtype, uint64_t lo, uint64_t hi);

/* Undo-saving variants, for in-place updates under a crash journal: as
 * adamw_step_range / adamw_accum_range (the updated arrays are bitwise the
 * same), and in the same pass each element's old master, m, v and accum
 * (accum alone for the accumulation) go to undo_*[i - lo] as they are read;
 * every undo_* holds hi - lo floats, none aliases anything else. The arrays
 * are rewritten in ascending sub-blocks (one vector iteration: 32 elements
 * with AVX-512, 16 with AVX2, 16 in the scalar path); a sub-block's undo
 * stores come before its array stores in program order.
 *
 * saved (may be NULL): progress for a crash-recovery reader. Before a
 * sub-block's array stores, and after its undo stores, *saved is set to the
 * number of elements from lo whose old values are in undo_* (a release fence,
 * the relaxed store of the count, and another release fence: on x86 two
 * compiler barriers and a plain store). So at every instruction boundary of
 * the calling thread, each element that no longer holds its old value lies in
 * [lo, lo + *saved) and its old value is in undo_*; elements from lo + *saved
 * on still hold their old values (undo_* there is garbage). The caller sets
 * *saved = 0 before the call. Ends with *saved = hi - lo (clamped to t->n for
 * the step). A SIGKILLed thread's retired stores all reach memory, so a later
 * process sees exactly a program-order prefix of the thread's stores; the
 * fences keep the compiler (and, on weakly ordered CPUs, the hardware) from
 * reordering the undo, count and array stores across one another. W is not
 * saved: it is a function of the new master, rewritten by a redo. */
void adamw_step_range_undo(const adamw_hparams *hp, float grad_scale, const adamw_tensor *t,
                           uint64_t lo, uint64_t hi, float *undo_master, float *undo_m,
                           float *undo_v, float *undo_accum, uint64_t *saved);
void adamw_accum_range_undo(float *accum, const void *g, dt_type g_dtype, uint64_t lo,
                            uint64_t hi, float *undo_accum, uint64_t *saved);

/* Sum of squares of chunk c (elements [c*ADAMW_CHUNK, min(n, (c+1)*ADAMW_CHUNK)))
 * of x, in double, in a fixed order. */
double adamw_sumsq_chunk(const float *x, uint64_t n, uint64_t c);

/* Converts fp32 to bf16 as PyTorch does (round to nearest even; NaN stays a
 * quiet NaN). */
uint16_t adamw_bf16(float x);

typedef struct adamw_pool adamw_pool;

/* Starts n_threads threads (1..ADAMW_MAX_THREADS), thread i pinned to cpus[i]
 * (cpus may be NULL: the first n_threads CPUs of the process's affinity
 * mask). The calling thread is not one of them. *out is freed with
 * adamw_pool_close. */
int adamw_pool_open(int n_threads, const int *cpus, adamw_pool **out, rt_err *err);

/* Stops and joins the threads. NULL is fine. */
void adamw_pool_close(adamw_pool *p);

int adamw_pool_threads(const adamw_pool *p);

/* "2 threads pinned to CPUs 0,1 (avx512)" style line for the start-up log. Owned by p. */
const char *adamw_pool_describe(const adamw_pool *p);

/* Runs fn(ctx, tid, n_threads) on every pool thread and returns when all
 * have returned. */
typedef void (*adamw_pool_fn)(void *ctx, int tid, int n_threads);
void adamw_pool_run(adamw_pool *p, adamw_pool_fn fn, void *ctx);

/* Whole-tensor helpers on the pool. The chunks of all n tensors together
 * are numbered in tensor order and handed out statically (chunk j to thread
 * j % n_threads), so one pool run covers a whole layer block. */
void adamw_pool_step(adamw_pool *p, const adamw_hparams *hp, float grad_scale,
                     const adamw_tensor *t, int n);

typedef struct adamw_accum_job {
    float *accum;                     /* fp32 [n] */
    const void *g;                    /* [n] of g_dtype: a G slot's tensor */
    dt_type g_dtype;
    uint64_t n;
} adamw_accum_job;
void adamw_pool_accum(adamw_pool *p, const adamw_accum_job *jobs, int n);

/* Sums of squares of x[i][0..len[i]) into out[i] (double): per tensor, the
 * chunk partials (adamw_sumsq_chunk) added in chunk order, so the value does
 * not depend on the thread count or ISA. */
void adamw_pool_sumsq(adamw_pool *p, const float *const *x, const uint64_t *len, int n,
                      double *out);

#ifdef __cplusplus
}
#endif

#endif

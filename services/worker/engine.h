/*
 * engine: the worker's streaming engine (DESIGN.md §4). It runs one
 * micro-batch's forward and backward block by block through a backend while
 * the weights of the next blocks are copied in and the gradients of the
 * finished ones are copied out, then announced to the parameter server.
 *
 * Three paths, one thread each:
 *   compute   the caller's thread: embedding, decoder layers, the chunked LM
 *             head + loss, and backward in reverse, each on a weight buffer
 *             it waits for; the input of every layer is its activation
 *             checkpoint (the backward recomputes from it).
 *   copy in   asks the paramserver for each block (FetchLayer with the
 *             step as min_version, once per block and step), maps its
 *             shared memory, and copies W (bf16 converted to fp32) into a
 *             free weight buffer, working ahead of compute in the order
 *             compute will need the blocks.
 *   copy out  writes each finished block's gradient into a G slot of the
 *             block (in the compute dtype) and sends GradReady, waiting for
 *             the Ack before it reuses anything.
 *
 * Weight buffers: P streaming buffers (compute.prefetch) plus one resident
 * buffer per block the cache keeps (compute.resident). Every buffer is
 * tagged with the (block, version) it holds, so a block needed again at the
 * same version — the last layer right after the head, every resident block
 * in every micro-batch of a step — is not copied again. With P = 1 copy and
 * compute take turns; with P >= 2 the copy of block i+1 runs while block i
 * computes. The head of a model with tied embeddings is one "op" whose
 * buffer holds the head block followed by the embedding.
 *
 * Failures: a paramserver that goes away (its pid gone), or any reply that
 * is an error, fails the micro-batch in hand with a message; the caller
 * reconnects and calls wk_engine_reset, which drops every mapping and tag.
 *
 * Threads: one caller thread drives an engine; the engine's own two threads
 * own their ZeroMQ sockets.
 */
#ifndef RAMTRAIN_WORKER_ENGINE_H
#define RAMTRAIN_WORKER_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/backend.h"
#include "gpu/model.h"
#include "services/worker/trace.h"
#include "storage/dtype.h"
#include "storage/err.h"

#define WK_RESIDENT_AUTO (-1)
#define WK_RESIDENT_ALL (-2)

typedef struct wk_config {
    const model_config *model;
    dt_type compute;               /* DT_F32 or DT_BF16: dtype of W and G in the blocks */
    int B, T;                      /* micro-batch rows and tokens per row */
    int prefetch;                  /* P >= 1 streaming weight buffers */
    int64_t resident;              /* bytes of resident buffers, or WK_RESIDENT_AUTO / _ALL */
    be_backend *be;                /* the backend (the caller owns it) */
    const char *run_id;
    const char *ps_endpoint;       /* the paramserver's ROUTER */
    void *zctx;                    /* ZeroMQ context for the engine's sockets */
    tr_trace *trace;               /* may be NULL */
} wk_config;

/* Where one micro-batch's time went (seconds), added to by wk_engine_micro. */
typedef struct wk_times {
    double compute;                /* backend calls */
    double wait_weights;           /* compute waiting for a weight copy */
    double wait_optimizer;         /* of that wait, the copy path waiting for a new version */
    double copy_in, copy_out;      /* busy time of the copy paths (overlapped) */
    uint64_t bytes_in, bytes_out;  /* copied */
} wk_times;

typedef struct wk_engine wk_engine;

/* Allocates the buffers and starts the two copy threads. */
int wk_engine_create(const wk_config *c, wk_engine **out, rt_err *err);

/* Stops the threads and frees everything (the caller's backend stays). */
void wk_engine_destroy(wk_engine *e);

/* The paramserver's pid, for noticing that it went away (0: unknown). */
void wk_engine_set_ps_pid(wk_engine *e, uint32_t pid);

/* Forward and backward of micro-batch `micro` of `step`: inputs and targets
 * are [B*T] (targets BE_IGNORE_INDEX where no loss is taken). Adds the loss
 * sum to *loss_sum; the gradient of grad_scale * loss_sum lands in G slots
 * and is announced. Returns when compute is done; the last gradients may
 * still be on their way out (wk_engine_drain waits for them). */
int wk_engine_micro(wk_engine *e, uint64_t step, uint32_t micro, const int32_t *inputs,
                    const int32_t *targets, float grad_scale, double *loss_sum, wk_times *t,
                    rt_err *err);

/* Waits until every gradient handed out has been acknowledged. */
int wk_engine_drain(wk_engine *e, rt_err *err);

/* After a failure (or a paramserver restart): waits for the threads to go
 * idle, drops the queues, every buffer tag and every block mapping, and
 * reconnects the threads' sockets. */
void wk_engine_reset(wk_engine *e);

/* Resident buffers chosen, and their bytes (for the log). */
void wk_engine_describe(const wk_engine *e, int *n_resident, uint64_t *resident_bytes,
                        uint64_t *stream_bytes);

/* True while process pid exists and is not a zombie (0: unknown, true). */
bool wk_pid_alive(uint32_t pid);

/* Asks a blocked engine to give up (from another thread): the micro-batch in
 * hand fails with -ECANCELED. */
void wk_engine_cancel(wk_engine *e);

#endif

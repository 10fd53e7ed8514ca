/*
 * backend: the compute interface the worker drives, one layer block at a time.
 *
 * A backend computes; it never owns weights. Every call takes the weights
 * bound for that call (pointers into a layer block, on the host for the CPU
 * backend, on the device for CUDA) and activations, so a block's result is a
 * function of (weights, input) only. A layer's backward recomputes the
 * layer's forward from the saved layer input: the only activation kept
 * between forward and backward is each layer's input. Gradients are
 * accumulated (+=) into the gradient pointers, so micro-batches add up in
 * place; the caller zeroes them at the start of a step.
 *
 * Shapes: a micro-batch is B rows of T tokens, N = B*T; activations are
 * row-major [N, hidden] fp32. Positions restart at 0 in every row.
 *
 * The backend sizes its scratch memory once at creation for at most
 * max_tokens tokens in rows of at most max_seq, and allocates nothing after.
 * Calls on one backend are not thread-safe (a backend uses its own threads),
 * except the memory, queue and event calls, which any thread may make.
 *
 * Where the data lives. Weights are in the backend's weight dtype (wdtype:
 * fp32 for the CPU backend, the run's compute dtype for CUDA); the pointers
 * of the ptr structs are typed float * but point at bf16 elements when
 * wdtype is DT_BF16. Activations, their gradients and the weight gradients
 * are fp32 always. With on_device set every pointer an op takes, except
 * token and target arrays (host memory), loss_sum and head_logits' logits
 * (host memory), is device memory from mem_alloc, and the ops are
 * asynchronous: they are queued on the backend's compute stream in call
 * order, and only head_loss (for its loss), head_logits and queue_sync wait
 * for the device.
 *
 * Copies. The engine moves weights in and gradients out on queues (a CUDA
 * stream each; the CPU backend copies at once), ordered against compute by
 * events: a copy that reads or overwrites what compute uses waits for an
 * event recorded in the compute order (queue NULL), and compute waits for
 * the events of the copies it needs.
 */
#ifndef RAMTRAIN_GPU_BACKEND_H
#define RAMTRAIN_GPU_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/model.h"
#include "storage/dtype.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BE_IGNORE_INDEX (-100) /* a target equal to this adds no loss (PyTorch's ignore_index) */

enum { BE_DISCARD = 0, BE_KEEP_FOR_BACKWARD = 1 }; /* layer_forward's keep */

typedef struct be_backend be_backend;
typedef struct be_queue be_queue; /* a copy queue: a CUDA stream, or nothing on the CPU */
typedef struct be_event be_event; /* a point in the order of a queue or of compute */

typedef struct be_ops {
    const char *name;
    /* Frees the backend and its scratch memory. */
    void (*destroy)(be_backend *be);
    /* x[n, hidden] = embed[tokens[i]]. */
    int (*embed_forward)(be_backend *be, const model_embed_ptrs *w, const int32_t *tokens, int n,
                         float *x);
    /* g->embed[tokens[i]] += dx[i]; rows are added in token order (deterministic). */
    int (*embed_backward)(be_backend *be, const int32_t *tokens, int n, const float *dx,
                          model_embed_ptrs *g);
    /* y[N, hidden] = decoder layer (w) applied to x[N, hidden]. y must not alias x.
     * keep = BE_KEEP_FOR_BACKWARD when the very next layer call will be this
     * layer's backward with the same w, x, B and T (the last layer of a
     * micro-batch): the backend may then keep its intermediates and skip the
     * recompute. Any other call (head and embedding calls excepted)
     * drops what was kept. The result is bitwise the same either way. */
    int (*layer_forward)(be_backend *be, const model_layer_ptrs *w, const float *x, float *y,
                         int B, int T, int keep);
    /* Recomputes the layer's forward from x (unless kept, see layer_forward),
     * then dx[N, hidden] = dL/dx given dy = dL/dy, and adds dL/dW into g.
     * dx may alias dy. */
    int (*layer_backward)(be_backend *be, const model_layer_ptrs *w, const float *x,
                          const float *dy, float *dx, model_layer_ptrs *g, int B, int T);
    /* Final RMSNorm, LM head and cross-entropy over n tokens, computed in
     * vocabulary chunks (the [n, vocab] logits are never whole in memory).
     * Adds the sum of -log p(target) over targets != BE_IGNORE_INDEX to
     * *loss_sum. When dx is not NULL, also writes dx[n, hidden] and adds into
     * g (and g_embed when the head is tied) the gradients of
     * grad_scale * sum(loss). embed is the embedding when tied, else NULL. */
    int (*head_loss)(be_backend *be, const model_head_ptrs *w, const float *embed,
                     const float *x, const int32_t *targets, int n, float grad_scale,
                     double *loss_sum, float *dx, model_head_ptrs *g, float *g_embed);
    /* Final RMSNorm and LM head of n <= max_tokens rows, for inference:
     * logits[n, vocab] (fp32, the caller's buffer) = norm(x[n, hidden]) @ W^T
     * with W = w->lm_head, or embed when the head is tied (w->lm_head NULL).
     * Like head_loss, it keeps a kept layer (see layer_forward). */
    int (*head_logits)(be_backend *be, const model_head_ptrs *w, const float *embed,
                       const float *x, int n, float *logits);

    /* ---- memory, copies and order (thread-safe) ---- */
    /* Memory the ops read and write (device memory on a GPU), 4 KiB aligned;
     * NULL when there is not enough. Set-up only: it may synchronize. */
    void *(*mem_alloc)(be_backend *be, uint64_t bytes);
    void (*mem_free)(be_backend *be, void *p);
    /* Zeroes bytes at p (ops memory) on queue q (NULL: in the compute order). */
    int (*mem_zero)(be_backend *be, be_queue *q, void *p, uint64_t bytes);
    /* Lets the copy engines read and write host memory [p, p + bytes) in
     * place (cudaHostRegister); the CPU backend has nothing to do. */
    int (*host_register)(be_backend *be, void *p, uint64_t bytes);
    void (*host_unregister)(be_backend *be, void *p);
    int (*queue_create)(be_backend *be, be_queue **q);
    void (*queue_destroy)(be_backend *be, be_queue *q);
    /* Host-to-ops-memory and ops-memory-to-host copies, queued on q. */
    int (*copy_in)(be_backend *be, be_queue *q, void *dst, const void *src, uint64_t bytes);
    int (*copy_out)(be_backend *be, be_queue *q, void *dst, const void *src, uint64_t bytes);
    /* dst[n] (ops memory, dtype dt) = src[n] (ops memory, fp32) rounded to
     * nearest even, queued on q. */
    int (*convert)(be_backend *be, be_queue *q, const float *src, void *dst, dt_type dt,
                   uint64_t n);
    /* Waits until everything queued on q (NULL: compute) is done. */
    int (*queue_sync)(be_backend *be, be_queue *q);
    int (*event_create)(be_backend *be, be_event **ev);
    void (*event_destroy)(be_backend *be, be_event *ev);
    /* Marks the current end of q (NULL: compute) with ev. */
    int (*event_record)(be_backend *be, be_queue *q, be_event *ev);
    /* Makes what is queued next on q (NULL: compute) wait for ev, without
     * blocking the caller. */
    int (*event_wait)(be_backend *be, be_queue *q, be_event *ev);
    /* Milliseconds between two recorded events (both done); -1 where the
     * backend does not time (CPU). */
    double (*event_ms)(be_backend *be, be_event *start, be_event *end);
} be_ops;

struct be_backend {
    const be_ops *ops;
    model_config cfg;
    int max_tokens;     /* N bound the scratch was sized for */
    int max_seq;        /* T bound */
    int n_threads;
    uint64_t scratch_bytes; /* memory the backend allocated at creation */
    dt_type wdtype;         /* dtype of the weights the ops read */
    bool on_device;         /* pointers are device memory; ops are asynchronous */
};

/* Creates the CPU backend (OpenBLAS + threads) with n_threads threads (0: one
 * per online core). *out is freed with be->ops->destroy. */
int be_cpu_create(const model_config *cfg, int max_tokens, int max_seq, int n_threads,
                  be_backend **out, rt_err *err);

/* Creates the CUDA backend on device `device` with weights in wdtype
 * (DT_F32, or DT_BF16: matrix products on bf16 operands with fp32
 * accumulation). Returns -ENODEV where there is no such GPU or the backend
 * is not built in. Prints nothing. */
int be_cuda_create(const model_config *cfg, int max_tokens, int max_seq, dt_type wdtype,
                   int device, be_backend **out, rt_err *err);

/* Number of CUDA devices this build can use (0 without the CUDA backend). */
int be_cuda_device_count(void);

#ifdef __cplusplus
}
#endif

#endif

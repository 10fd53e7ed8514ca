/*
 * local_step: forward and backward of one micro-batch over a model whose
 * blocks are all in this process (model_io), block by block through a
 * backend, keeping each layer's input as its activation checkpoint.
 *
 * This is the worker's schedule without the streaming: the single-process
 * commands (grad, demo, the benchmark) use it, and it is the reference the
 * streaming worker is compared with.
 */
#ifndef RAMTRAIN_ORCH_LOCAL_STEP_H
#define RAMTRAIN_ORCH_LOCAL_STEP_H

#include <stdint.h>

#include "gpu/backend.h"
#include "orchestrator/model_io.h"

typedef struct lstep {
    be_backend *be;
    int B, T;
    float *acts;   /* [n_layers + 1, B*T, hidden]: input of each layer, then of the head */
    float *dx;     /* [B*T, hidden] gradient flowing backward */
} lstep;

/* Creates a CPU backend and activation buffers for micro-batches of B rows of T. */
int lstep_init(lstep *s, const model_config *cfg, int B, int T, int n_threads, rt_err *err);

void lstep_free(lstep *s);

/* Adds the loss (summed over targets != BE_IGNORE_INDEX) to *loss_sum and,
 * when grads is not 0, adds grad_scale * d(loss sum)/dW into the model's G0
 * section. inputs and targets are [B*T]. */
int lstep_run(lstep *s, mio_model *m, const int32_t *inputs, const int32_t *targets,
              float grad_scale, int grads, double *loss_sum, rt_err *err);

#endif

/*
 * model_io: a whole model held in layer blocks in this process's memory, as
 * the single-process commands (init, grad, demo) use it; loaded from and
 * saved to Hugging Face checkpoints.
 *
 * Each block is one anonymous mapping laid out by model_block_layout (fp32
 * compute, one G slot): W holds the weights, G0 the gradients, and the
 * optimizer sections exist for commands that train. Pages are committed only
 * when touched, so sections a command never uses cost address space only.
 * The parameter server (a later service) keeps the same layout in shared
 * memory instead.
 */
#ifndef RAMTRAIN_ORCH_MODEL_IO_H
#define RAMTRAIN_ORCH_MODEL_IO_H

#include <stdint.h>

#include "gpu/model.h"
#include "storage/err.h"
#include "storage/layer_block.h"

typedef struct mio_model {
    model_config cfg;
    int n_blocks;
    lb_layout *layouts;         /* [n_blocks] */
    void **blocks;              /* [n_blocks] block regions (mmap) */
    model_embed_ptrs w_embed, g_embed;
    model_layer_ptrs *w_layers; /* [n_layers] weights (W) */
    model_layer_ptrs *g_layers; /* [n_layers] gradients (G0) */
    model_head_ptrs w_head, g_head;
    uint64_t bytes;             /* address space of all blocks */
} mio_model;

/* Lays out and maps every block of a cfg-shaped model (all zero). */
int mio_alloc(mio_model *m, const model_config *cfg, rt_err *err);

/* Unmaps everything; safe on a zeroed or half-built model. */
void mio_free(mio_model *m);

/* Draws the weights as Hugging Face initialises Llama: every Linear and the
 * embedding normal(0, initializer_range), biases 0, norm weights 1. */
void mio_init_weights(mio_model *m, uint64_t seed);

/* Loads W from the checkpoint at path (file, index.json or directory):
 * every tensor must be present, of a float dtype, with the shape config.json
 * implies; errors name the file and the tensor. Blocks on I/O. */
int mio_load(mio_model *m, const char *path, rt_err *err);

/* Writes section sec (LB_SEC_W: the weights; LB_SEC_G0: the gradients) of
 * every block to a safetensors file at path, fp32, Hugging Face names. */
int mio_save(const mio_model *m, lb_section sec, const char *path, rt_err *err);

/* Zeroes section sec of every block. */
void mio_zero(mio_model *m, lb_section sec);

/* Calls fn for every tensor of every block with pointers into the fp32
 * sections given (NULL for a section not asked for); numel is its size. */
typedef void (*mio_tensor_fn)(void *ctx, const lb_tensor *t, float *w, float *g, float *m1,
                              float *m2);
void mio_for_each(mio_model *m, mio_tensor_fn fn, void *ctx);

#endif

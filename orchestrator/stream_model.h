/*
 * stream_model: a Hugging Face model directory run block by block, for the
 * commands that only run the forward pass (eval, generate).
 *
 * sm_open reads config.json and opens the checkpoint (model.safetensors, a
 * sharded index, or a ramtrain step-N/ directory) through the safetensors
 * reader, which maps the files read-only: nothing is converted yet, but
 * every tensor the config implies is checked (present, float dtype, shape)
 * so a broken checkpoint fails before any compute. sm_read_block converts
 * one block's tensors to fp32 into a caller buffer laid out as a layer block
 * (header page + W section, fp32) and binds them to the block's named
 * pointers, as the worker will receive a block from the parameter server.
 *
 * sm_run adds the schedule: one block buffer, a CPU backend and the
 * activations of one micro-batch; sm_run_forward streams the embedding and
 * every decoder layer through the buffer, one block at a time, and leaves
 * the final hidden states and the head bound. The whole model is never
 * resident as fp32: at most the largest block, plus the embedding when the
 * head is tied to it (it is needed at both ends of every forward, so it
 * stays in a buffer of its own, read once).
 *
 * Threads: one thread drives an sm_run; the backend uses its own threads.
 */
#ifndef RAMTRAIN_ORCH_STREAM_MODEL_H
#define RAMTRAIN_ORCH_STREAM_MODEL_H

#include <stdint.h>

#include "gpu/backend.h"
#include "gpu/model.h"
#include "storage/err.h"
#include "storage/layer_block.h"
#include "storage/safetensors.h"

typedef struct sm_model {
    model_config cfg;
    int n_blocks;
    lb_layout *layouts;      /* [n_blocks] fp32 layouts (one unused G slot) */
    st_set *set;             /* the checkpoint, mapped read-only */
    char *path;              /* the model directory, for messages; owned */
} sm_model;

/* Opens the model directory dir (config.json and its checkpoint) and checks
 * every tensor's presence, dtype and shape without converting any. Errors
 * name the file and tensor; -ENOENT when dir or a file is missing, -EINVAL
 * for bad contents. Blocks on I/O. Close with sm_close. */
int sm_open(const char *dir, sm_model *m, rt_err *err);

/* Unmaps and frees; safe on a zeroed or failed model. */
void sm_close(sm_model *m);

/* Bytes a buffer for block b needs: its header page and fp32 W section. */
uint64_t sm_block_bytes(const sm_model *m, int b);

/* Converts block b's tensors to fp32 into buf (sm_block_bytes(m, b) bytes,
 * 64-byte aligned) and points ptrs (model_embed_ptrs, model_layer_ptrs or
 * model_head_ptrs, by the block's kind) at them. Blocks on reads of the
 * mapped checkpoint. */
int sm_read_block(const sm_model *m, int b, void *buf, void *ptrs, rt_err *err);

/* The tokenizer that goes with the model when the user names none:
 * "<dir>/tokenizer.json" (malloc'd into *out, caller frees) when that file
 * exists, else *out = NULL (the built-in byte tokenizer). 0 or -ENOMEM. */
int sm_default_tokenizer(const char *dir, char **out);

typedef struct sm_run {
    sm_model *m;             /* borrowed */
    be_backend *be;
    int max_rows, max_seq;   /* B and T bounds the buffers were sized for */
    void *buf;               /* [max over streamed blocks of sm_block_bytes] */
    void *embed_buf;         /* tied head: block 0, resident; else NULL */
    model_embed_ptrs embed;  /* tied: into embed_buf; else into buf during a forward */
    model_head_ptrs head;    /* into buf after sm_run_forward */
    float *x, *y;            /* [max_rows * max_seq, hidden] activations, ping-pong */
    float *out;              /* x or y: the final hidden states of the last forward */
    uint64_t bytes;          /* host memory of the buffers above, backend excluded */
} sm_run;

/* Sizes everything for micro-batches of at most max_rows rows of max_seq
 * tokens and creates a CPU backend with n_threads threads (0: one per core).
 * Reads the embedding once when the head is tied. Free with sm_run_free. */
int sm_run_init(sm_run *r, sm_model *m, int max_rows, int max_seq, int n_threads, rt_err *err);

void sm_run_free(sm_run *r);

/* Runs tokens[B * T] (B rows of T) through the embedding and every decoder
 * layer, streaming each block through r->buf. On return r->out holds the
 * final hidden states [B * T, hidden] and r->head (with r->embed when tied)
 * the head's weights, ready for the backend's head_loss or head_logits.
 * Token ids must be below the vocabulary size. Blocks. */
int sm_run_forward(sm_run *r, const int32_t *tokens, int B, int T, rt_err *err);

/* The tied embedding for the head calls: r->embed.embed when tied, else NULL. */
static inline const float *sm_run_head_embed(const sm_run *r)
{
    return r->m->cfg.tie_embeddings ? r->embed.embed : NULL;
}

#endif

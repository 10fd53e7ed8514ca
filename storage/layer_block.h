/*
 * layer_block: the byte layout of one layer block (DESIGN.md §3).
 *
 * A layer block is one contiguous region: a 4 KiB header page, then the
 * sections W (weights in the compute dtype), G0..G(n-1) (gradient landing
 * slots, same tensor table as W), and the sections only the parameter server
 * maps: accum (fp32 gradient accumulator) and the optimizer state, last and
 * contiguous so NVMe spill can move it as one extent: master (fp32 copy of W
 * when the compute dtype is not fp32), m and v (AdamW moments, fp32).
 * Every tensor offset is 4 KiB aligned so O_DIRECT and registered buffers
 * need no bounce copy, and the whole block is rounded to 2 MiB so huge pages
 * can back it.
 *
 * This module only computes layouts; it knows nothing about Llama (the model
 * module fills the tensor list) nor about shared memory (the block store maps
 * regions laid out by it). A layout is plain data and can be written into a
 * block header as it is.
 */
#ifndef RAMTRAIN_STORAGE_LAYER_BLOCK_H
#define RAMTRAIN_STORAGE_LAYER_BLOCK_H

#include <stdint.h>

#include "storage/dtype.h"
#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LB_ALIGN_TENSOR 4096u          /* O_DIRECT / registered-buffer granularity */
#define LB_ALIGN_BLOCK (2u << 20)      /* one x86-64 huge page */
#define LB_MAX_TENSORS 16              /* a decoder layer has at most 13 */
#define LB_NAME_LEN 96
#define LB_MAX_DIMS 4

typedef struct lb_tensor {
    char name[LB_NAME_LEN];            /* Hugging Face name, e.g. model.layers.3.mlp.up_proj.weight */
    int ndim;
    int64_t shape[LB_MAX_DIMS];
    uint64_t numel;
    uint64_t offset;                   /* bytes from the start of W or a G slot; 4 KiB aligned */
    uint64_t offset_f32;               /* bytes from the start of an fp32 section; 4 KiB aligned */
} lb_tensor;

typedef enum lb_section {
    LB_SEC_W = 0,
    LB_SEC_MASTER,
    LB_SEC_ACCUM,
    LB_SEC_M,
    LB_SEC_V,
    LB_SEC_G0,                         /* G slot s is LB_SEC_G0 + s */
    LB_SEC_MAX = LB_SEC_G0 + 4
} lb_section;

typedef struct lb_layout {
    int index;                         /* block index in the model */
    dt_type compute;                   /* dtype of W and the G slots */
    int n_gslots;
    int n_tensors;
    lb_tensor t[LB_MAX_TENSORS];
    uint64_t w_bytes;                  /* size of W (and of each G slot), 4 KiB multiple */
    uint64_t f32_bytes;                /* size of one fp32 optimizer section, 4 KiB multiple */
    uint64_t sec_off[LB_SEC_MAX];      /* byte offset of each section; 0 when absent */
    uint64_t opt_off;                  /* start of the optimizer state (master, m, v): one extent */
    uint64_t opt_bytes;                /* its size, 4 KiB multiple */
    uint64_t resident_bytes;           /* the block without that state (what a spilled block
                                          keeps in RAM), 2 MiB multiple */
    uint64_t total_bytes;              /* whole block, header included, 2 MiB multiple */
} lb_layout;

/* Starts an empty layout for block index with n_gslots (1..4) G slots. */
int lb_layout_init(lb_layout *l, int index, dt_type compute, int n_gslots, rt_err *err);

/* Appends a tensor to the table (not yet placed). -E2BIG past LB_MAX_TENSORS. */
int lb_layout_add(lb_layout *l, const char *name, int ndim, const int64_t *shape, rt_err *err);

/* Places every tensor and section: fills offsets, w_bytes, f32_bytes,
 * sec_off and total_bytes. Call once, after the last lb_layout_add. */
void lb_layout_finish(lb_layout *l);

/* Index of the tensor called name, or -1. */
int lb_layout_find(const lb_layout *l, const char *name);

/* Bytes of tensor i in section sec (the compute dtype for W and G, fp32 otherwise). */
uint64_t lb_tensor_bytes(const lb_layout *l, int i, lb_section sec);

/* Address of tensor i of section sec inside the block starting at base. */
void *lb_tensor_ptr(const lb_layout *l, void *base, lb_section sec, int i);

/* Rounds x up to a multiple of a (a power of two). */
static inline uint64_t lb_align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

#ifdef __cplusplus
}
#endif

#endif

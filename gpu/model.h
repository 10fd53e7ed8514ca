/*
 * model: the shapes of a LLaMA-family model (Llama, Mistral, Qwen2) read from
 * a Hugging Face config.json, its division into layer blocks, and the structs
 * of named tensor pointers that kernels take.
 *
 * Blocks: block 0 is the token embedding, blocks 1..L the decoder layers, and
 * block L+1 the head (final norm and, unless the embeddings are tied, the LM
 * head). Tensor names are the Hugging Face ones, so import and export are
 * plain copies.
 *
 * Binding: each block kind has a static table of (name suffix, field offset,
 * shape rule). model_block_bind walks that table once and points each field
 * of the struct at its tensor inside a block region; a static_assert ties the
 * size of every struct to its table, so a field added without a table row (or
 * the reverse) fails to compile.
 */
#ifndef RAMTRAIN_GPU_MODEL_H
#define RAMTRAIN_GPU_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/err.h"
#include "storage/layer_block.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum model_rope_type {
    MODEL_ROPE_DEFAULT = 0,
    MODEL_ROPE_LINEAR,
    MODEL_ROPE_LLAMA3,
} model_rope_type;

typedef struct model_config {
    char model_type[32];          /* "llama", "mistral" or "qwen2" */
    int64_t hidden;               /* hidden_size */
    int64_t intermediate;         /* intermediate_size */
    int64_t n_layers;             /* num_hidden_layers */
    int64_t n_heads;              /* num_attention_heads */
    int64_t n_kv_heads;           /* num_key_value_heads (default n_heads) */
    int64_t head_dim;             /* head_dim (default hidden / n_heads) */
    int64_t vocab;                /* vocab_size */
    int64_t max_pos;              /* max_position_embeddings */
    int64_t sliding_window;       /* Mistral/Qwen2 sliding window; 0 when none */
    double rms_eps;               /* rms_norm_eps */
    double rope_theta;
    model_rope_type rope_type;
    double rope_factor;           /* linear and llama3 */
    double rope_low_freq_factor;  /* llama3 */
    double rope_high_freq_factor; /* llama3 */
    int64_t rope_orig_max_pos;    /* llama3: original_max_position_embeddings */
    bool tie_embeddings;          /* tie_word_embeddings */
    bool qkv_bias;                /* q/k/v projections have biases (Qwen2; Llama attention_bias) */
    bool o_bias;                  /* o_proj has a bias (Llama attention_bias) */
    double init_range;            /* initializer_range */
} model_config;

/* Parses config.json text; name (the file's path) is used in error messages.
 * Unknown architectures, missing required keys and bad values are errors. */
int model_config_parse(const char *json_text, const char *name, model_config *cfg, rt_err *err);

/* Reads and parses a config.json file. Blocks on I/O. */
int model_config_load(const char *path, model_config *cfg, rt_err *err);

/* Writes cfg as a Hugging Face config.json that Transformers and
 * model_config_load both read back to the same cfg. Blocks on I/O. */
int model_config_save(const model_config *cfg, const char *path, rt_err *err);

/* A 64-bit hash of every field of cfg (FNV-1a over a canonical text): the
 * same model gives the same hash whatever config.json spelled. */
uint64_t model_config_hash(const model_config *cfg);

/* The RoPE inverse frequencies after any rope scaling: inv_freq[head_dim/2]. */
void model_rope_inv_freq(const model_config *cfg, double *inv_freq);

typedef enum model_block_kind {
    MODEL_BLOCK_EMBED = 0,
    MODEL_BLOCK_LAYER,
    MODEL_BLOCK_HEAD,
} model_block_kind;

/* Number of layer blocks: n_layers + 2. */
static inline int model_n_blocks(const model_config *cfg) { return (int)cfg->n_layers + 2; }

/* Kind of block b. */
model_block_kind model_block_kind_of(const model_config *cfg, int b);

/* Fills the layout of block b (its tensors under their Hugging Face names,
 * placed as lb_layout_finish places them). */
int model_block_layout(const model_config *cfg, int b, dt_type compute, int n_gslots,
                       lb_layout *out, rt_err *err);

/* Total parameter count of the model. */
uint64_t model_n_params(const model_config *cfg);

/* Named pointers into a block's fp32 tensors. Shapes are row-major, PyTorch
 * nn.Linear convention [out, in]; q = n_heads*head_dim, kv = n_kv_heads*head_dim. */
typedef struct model_embed_ptrs {
    float *embed;                 /* [vocab, hidden] */
} model_embed_ptrs;

typedef struct model_layer_ptrs {
    float *attn_norm;             /* [hidden]  input_layernorm.weight */
    float *q_w;                   /* [q, hidden] */
    float *q_b;                   /* [q] or NULL */
    float *k_w;                   /* [kv, hidden] */
    float *k_b;                   /* [kv] or NULL */
    float *v_w;                   /* [kv, hidden] */
    float *v_b;                   /* [kv] or NULL */
    float *o_w;                   /* [hidden, q] */
    float *o_b;                   /* [hidden] or NULL */
    float *mlp_norm;              /* [hidden]  post_attention_layernorm.weight */
    float *gate_w;                /* [intermediate, hidden] */
    float *up_w;                  /* [intermediate, hidden] */
    float *down_w;                /* [hidden, intermediate] */
} model_layer_ptrs;

typedef struct model_head_ptrs {
    float *norm;                  /* [hidden]  model.norm.weight */
    float *lm_head;               /* [vocab, hidden], or NULL when tied to the embedding */
} model_head_ptrs;

/* Points the fields of ptrs (the struct matching block b's kind) at the
 * tensors of section sec of the block region at base. Fields whose tensor
 * the layout lacks (absent biases, a tied LM head) are set to NULL. The
 * section must hold fp32 (W of an fp32 block, or an optimizer section). */
int model_block_bind(const model_config *cfg, const lb_layout *l, void *base, lb_section sec,
                     void *ptrs, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif

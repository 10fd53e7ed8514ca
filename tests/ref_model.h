/*
 * ref_model: the plain-C reference of a LLaMA-family decoder (Llama,
 * Mistral, Qwen2) in double precision, the yardstick every backend is
 * compared with (STYLE.md, Tests).
 *
 * Written from the Hugging Face definition (modeling_llama.py / qwen2 /
 * mistral: LlamaRMSNorm, apply_rotary_pos_emb with rotate_half, repeat_kv,
 * eager attention with an explicit causal mask, LlamaMLP, CrossEntropyLoss
 * with ignore_index -100), never from a backend: naive loops, no BLAS, every
 * intermediate materialised (attention keeps its [T, T] score matrix) so each
 * line reads against the Python. Speed does not matter; only small shapes go
 * through here.
 *
 * Single-threaded; no state between calls. Scratch is allocated per call and
 * running out of memory aborts (this is test code). Shapes follow backend.h:
 * B rows of T tokens, N = B*T, row-major [N, dim], positions restart at 0 in
 * every row, weights [out, in] as nn.Linear.
 */
#ifndef RAMTRAIN_TESTS_REF_MODEL_H
#define RAMTRAIN_TESTS_REF_MODEL_H

#include <stdint.h>

#include "gpu/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tensors of one decoder layer in double; shapes as model_layer_ptrs.
 * Biases are NULL when the config has none. */
typedef struct ref_layer {
    const double *attn_norm;  /* [hidden] */
    const double *q_w;        /* [q, hidden] */
    const double *q_b;        /* [q] or NULL */
    const double *k_w;        /* [kv, hidden] */
    const double *k_b;        /* [kv] or NULL */
    const double *v_w;        /* [kv, hidden] */
    const double *v_b;        /* [kv] or NULL */
    const double *o_w;        /* [hidden, q] */
    const double *o_b;        /* [hidden] or NULL */
    const double *mlp_norm;   /* [hidden] */
    const double *gate_w;     /* [intermediate, hidden] */
    const double *up_w;       /* [intermediate, hidden] */
    const double *down_w;     /* [hidden, intermediate] */
} ref_layer;

/* calloc that aborts on failure; free with free(). */
void *ref_alloc(int64_t count, int64_t size);

/* y[n, d] = w * x / sqrt(mean(x^2) + eps), row by row. */
void ref_rmsnorm(const double *x, const double *w, double eps, int64_t n, int64_t d, double *y);

/* Given dy[n, d] for y = ref_rmsnorm(x, w): writes dx[n, d], adds into dw[d]. */
void ref_rmsnorm_backward(const double *x, const double *w, double eps, const double *dy,
                          int64_t n, int64_t d, double *dx, double *dw);

/* y[n, out] = x[n, in] @ w[out, in]^T (+ b[out] when b is not NULL). */
void ref_linear(const double *x, const double *w, const double *b, int64_t n, int64_t in,
                int64_t out, double *y);

/* Rotates x[B*T, heads*head_dim] in place: x*cos + rotate_half(x)*sin at
 * position t of each row, frequencies from model_rope_inv_freq. */
void ref_rope(const model_config *c, double *x, int64_t heads, int B, int T);

/* Causal grouped-query attention: out[N, n_heads*head_dim] from q[N, n_heads*head_dim],
 * k, v[N, n_kv_heads*head_dim]; query head h reads kv head h / (n_heads/n_kv_heads);
 * softmax(q k^T / sqrt(head_dim) + causal mask) v. */
void ref_attention(const model_config *c, const double *q, const double *k, const double *v,
                   int B, int T, double *out);

/* y[N, hidden] = the decoder layer w applied to x[N, hidden]. */
void ref_layer_forward(const model_config *c, const ref_layer *w, const double *x, int B, int T,
                       double *y);

/* Final RMSNorm (norm[hidden]), LM head W[vocab, hidden] (the embedding when
 * tied) and cross-entropy over x[n, hidden]: adds sum over targets !=
 * BE_IGNORE_INDEX (-100) of -log softmax(logits)[target] to *loss_sum. When
 * dx is not NULL also writes the gradients of grad_scale * that sum:
 * dx[n, hidden], d_norm[hidden] and dW[vocab, hidden] (softmax - onehot,
 * computed analytically). Logits are formed one token at a time. */
void ref_head(const model_config *c, const double *norm, const double *W, const double *x,
              const int32_t *targets, int n, double grad_scale, double *loss_sum, double *dx,
              double *d_norm, double *dW);

#ifdef __cplusplus
}
#endif

#endif

/*
 * kernels: the CUDA backend's own kernels (everything but the matrix
 * products, which are cuBLAS). Each launcher queues its kernel(s) on
 * `stream` and returns at once; none synchronizes, none allocates. The
 * launchers check their arguments only in debug builds: cuda_backend.cu
 * validates shapes before it calls them. A launch failure is caught by the
 * backend's next cudaCheck.
 *
 * Element types: `kdt` says what a void pointer holds. Weights are in the
 * weight dtype (K_F32 or K_BF16); activations that are operands of a matrix
 * product (the normed inputs, q/k/v, the attention output, the SwiGLU output
 * and the gradients that enter a matrix product) are in the "operand dtype"
 * (the weight dtype: bf16 runs keep matrix operands bf16); the residual
 * stream, its gradient, norms' rstd, log-sum-exps and every weight gradient
 * are fp32. Arithmetic is fp32 throughout (bf16 is only a storage type);
 * bf16 results are rounded to nearest even.
 *
 * Determinism: no kernel uses atomics for a sum. Column sums (norm weight
 * and bias gradients) reduce fixed row chunks into a scratch array and then
 * add the chunks in order; the embedding backward adds the rows of each
 * token in position order (the host sorts); row reductions (norms, softmax,
 * cross-entropy) use a fixed tree. Two runs on the same inputs give the
 * same bits.
 *
 * Shapes: N = B*T rows; positions restart at 0 in every row of T tokens.
 * Row-major everywhere; a [N, heads*hd] tensor holds head h of row r at
 * r*heads*hd + h*hd.
 */
#ifndef RAMTRAIN_GPU_CUDA_KERNELS_H
#define RAMTRAIN_GPU_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kdt { K_F32 = 0, K_BF16 = 1 } kdt;

/* Rows per chunk of the column sums; scratch for a column sum over n rows of
 * d columns is k_colsum_scratch_floats(n, d) floats. */
#define K_COLSUM_ROWS 256
static inline int64_t k_colsum_scratch_floats(int64_t n, int64_t d)
{
    return ((n + K_COLSUM_ROWS - 1) / K_COLSUM_ROWS) * d;
}

/* ---- conversions and elementwise ---- */

/* dst[n] (ddt) = src[n] (sdt). */
void k_convert(cudaStream_t s, const void *src, kdt sdt, void *dst, kdt ddt, int64_t n);

/* y[n, d] (ydt) += b[d] (bdt) on every row. */
void k_add_bias(cudaStream_t s, void *y, kdt ydt, const void *b, kdt bdt, int64_t n, int64_t d);

/* out[d] += sum over rows of a[n, d] (adt), deterministic (see above);
 * scratch: k_colsum_scratch_floats(n, d) floats. */
void k_colsum_acc(cudaStream_t s, const void *a, kdt adt, float *out, float *scratch, int64_t n,
                  int64_t d);

/* ---- RMSNorm ---- */

/* rstd[r] = 1/sqrt(mean(x[r]^2) + eps); y[r] (ydt) = x[r] * rstd[r] * w (wdt).
 * x fp32 [n, d]. */
void k_rmsnorm_fwd(cudaStream_t s, const float *x, const void *w, kdt wdt, void *y, kdt ydt,
                   float *rstd, int64_t n, int64_t d, float eps);

/* Backward of y = rmsnorm(x) * w given dy (fp32 [n, d]):
 *   dx[r] = resid[r] + dy*w*rstd - x * rstd^3 * sum_j(dy_j w_j x_j) / d
 * (resid NULL: no residual term; dx may alias resid, not dy or x), and
 *   dw[d] += sum_r dy * x * rstd   (deterministic; scratch as k_colsum_acc). */
void k_rmsnorm_bwd(cudaStream_t s, const float *x, const void *w, kdt wdt, const float *rstd,
                   const float *dy, const float *resid, float *dx, float *dw, float *scratch,
                   int64_t n, int64_t d);

/* ---- RoPE ---- */

/* In place on x[N, heads*hd] (xdt), as Hugging Face's rotate_half: for
 * i < hd/2, (a, b) = (x[i], x[i + hd/2]) becomes
 *   (a cos - b sin, b cos + a sin)  at the row's position p = r % T,
 * with cos/sin = cos_tab/sin_tab[p * hd/2 + i] (fp32, [max_seq, hd/2]).
 * bias (bdt, [heads*hd]) when not NULL is added before the rotation.
 * inverse = 1 applies the transpose (sin negated), for the backward. */
void k_rope(cudaStream_t s, void *x, kdt xdt, const void *bias, kdt bdt, const float *cos_tab,
            const float *sin_tab, int64_t N, int T, int heads, int hd, int inverse);

/* ---- SwiGLU ---- */

/* a[n] (adt) = silu(g) * u, with g, u fp32; silu(z) = z / (1 + e^-z). */
void k_swiglu_fwd(cudaStream_t s, const float *g, const float *u, void *a, kdt adt, int64_t n);

/* Given da (fp32): dg = da * u * silu'(g), du = da * silu(g), written in ddt. */
void k_swiglu_bwd(cudaStream_t s, const float *g, const float *u, const float *da, void *dg,
                  void *du, kdt ddt, int64_t n);

/* ---- embedding ---- */

/* x[r] (fp32, [n, d]) = table[tokens[r]] (wdt, [vocab, d]); tokens on the device, in range. */
void k_embed_fwd(cudaStream_t s, const void *table, kdt wdt, const int32_t *tokens, float *x,
                 int64_t n, int64_t d);

/* g[tok] += dx[r] for every row r with token tok, the rows of one token added
 * one after another in increasing r (the CPU backend's order, so the sums are
 * bitwise the same). The host groups the rows: order[n] lists row indices
 * sorted by token, stably; seg[n_seg + 1] are the start offsets of each
 * token's run in `order` (seg[n_seg] = n); seg_tok[n_seg] is its token.
 * All on the device. */
void k_embed_bwd(cudaStream_t s, const float *dx, const int32_t *order, const int32_t *seg,
                 const int32_t *seg_tok, int n_seg, float *g, int64_t d);

/* ---- LM head: cross-entropy over one chunk of rows ---- */

/* logits[R, V] fp32 (from the head's matrix product) and targets[R] (device,
 * K_IGNORE = -100 takes no loss). For each row: lse = log sum exp (fp32
 * max-shifted sums reduced in a fixed order, the log in double),
 * row_loss[r] = lse - logits[r, t] (double), 0 for an ignored row. When
 * dlogits is not NULL also writes dlogits[r, :] (ddt) =
 * scale * softmax(logits[r]) - scale * onehot(t), all zero for an ignored
 * row; dlogits may alias logits only when ddt is K_F32. */
#define K_IGNORE (-100)
void k_cross_entropy(cudaStream_t s, const float *logits, const int32_t *targets, int64_t R,
                     int64_t V, float scale, double *row_loss, void *dlogits, kdt ddt);

/* ---- attention ---- */

/* Largest head_dim the attention kernels take. */
#define K_ATTN_MAX_HD 256

/* Causal grouped-query attention forward, flash-attention style (tiles of
 * queries against tiles of keys, online softmax; no [T, T] matrix in device
 * memory). q[N, nh*hd], k and v [N, nkv*hd], o[N, nh*hd], all adt; query
 * head h reads key/value head h / (nh / nkv). lse[N, nh] fp32 (natural log,
 * of the scaled scores) is kept for the backward. scale = 1/sqrt(hd). */
void k_attn_fwd(cudaStream_t s, const void *q, const void *k, const void *v, void *o, float *lse,
                kdt adt, int B, int T, int nh, int nkv, int hd, float scale);

/* Scratch floats k_attn_bwd needs for N rows and nh heads. */
int64_t k_attn_bwd_scratch_floats(int64_t N, int nh, int nkv, int hd);

/* Backward: dq[N, nh*hd], dk and dv [N, nkv*hd] (adt, overwritten) from
 * do_[N, nh*hd] (adt), the forward's q, k, v, o and lse. Deterministic: dK
 * and dV of a key/value head add its group's query heads in head order, dQ is
 * computed per query tile (never accumulated by atomics). */
void k_attn_bwd(cudaStream_t s, const void *q, const void *k, const void *v, const void *o,
                const void *do_, const float *lse, void *dq, void *dk, void *dv, kdt adt,
                float *scratch, int B, int T, int nh, int nkv, int hd, float scale);

#ifdef __cplusplus
}
#endif

#endif

/*
 * cpu_backend: the host implementation of the backend interface (backend.h),
 * fp32, OpenBLAS sgemm for every projection and OpenMP loops for the rest.
 *
 * Threads: one libgomp pool serves both our loops and sgemm (we link the
 * OpenMP build of OpenBLAS). sgemm is always called from outside a parallel
 * region, so it gets the whole pool; our loops never nest.
 *
 * Determinism: every reduction has a fixed order. Column sums (bias and norm
 * weight gradients, embedding rows) split the columns between threads and
 * walk the rows in order; attention's dK/dV are computed per key row by one
 * thread, never accumulated concurrently. Results therefore do not depend on
 * scheduling, only on the thread count OpenBLAS partitions sgemm with.
 *
 * Memory: every scratch buffer is sized in be_cpu_create for max_tokens and
 * max_seq and reused for every call; nothing is allocated afterwards.
 *
 * Choices:
 * - Attention works in tiles of ATT_QB query rows with sgemm for Q K^T and
 *   P V (a first version with per-row dot products ran at SSE2 width and took
 *   a third of the step); only the log-sum-exp of each (token, head) is kept,
 *   and backward recomputes the probabilities from it (as FlashAttention
 *   does). No [T, T] matrix outlives a tile, and no two threads add into the
 *   same row.
 * - The LM head runs over chunks of tokens, each against the whole
 *   vocabulary, rather than chunks of the vocabulary: a chunk's softmax is
 *   then exact in one pass and the head costs three GEMMs, where vocabulary
 *   chunks need the logits twice (once for the log-sum-exp, once for the
 *   gradient). Memory stays bounded by the chunk (HEAD_CHUNK_FLOATS).
 * - The backward recomputes the forward except the down projection, whose
 *   output only feeds the layer output, which backward does not need. The
 *   last layer of a micro-batch skips even that: its forward is kept in the
 *   scratch buffers when the caller says its backward comes next.
 */
#include "gpu/backend.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_CHUNK_FLOATS (8u << 20) /* logits of one head chunk: 32 MiB */
#define COL_BLOCK 64                 /* columns per task in column sums */
#define ATT_QB 64                    /* query rows per attention tile */

typedef struct cpu_backend {
    be_backend base;
    int64_t H, QD, KVD, ID, V, hd, nh, nkv;
    int head_rows;       /* tokens per head chunk */
    /* forward state of one layer (recomputed by backward) */
    float *h;            /* [N, H]  attn_norm(x) */
    float *rstd1;        /* [N]     1/rms of x */
    float *q;            /* [N, QD] after RoPE */
    float *k, *v;        /* [N, KVD] k after RoPE */
    float *att;          /* [N, QD] attention output, before o_proj */
    float *lse;          /* [N, nh] log-sum-exp of each attention row */
    float *x1;           /* [N, H]  x + o_proj(att) */
    float *h2;           /* [N, H]  mlp_norm(x1) */
    float *rstd2;        /* [N] */
    float *g, *u, *a;    /* [N, ID]  gate, up, silu(gate)*up */
    /* backward scratch */
    float *da;           /* [N, ID] */
    float *dh;           /* [N, H] */
    float *dx1;          /* [N, H] */
    float *datt;         /* [N, QD] */
    float *dq;           /* [N, QD] */
    float *dk, *dv;      /* [N, KVD] */
    float *dkh, *dvh;    /* [N, QD] dK, dV per query head, before the group sum */
    float *dsum;         /* [N, nh] rowwise datt . att */
    /* a layer forward kept for the backward that follows it (see layer_forward's keep) */
    int kept;
    model_layer_ptrs kept_w;
    const float *kept_x;
    int kept_B, kept_T;
    /* head: its own buffers, so a kept layer survives the head between forward and backward */
    float *hn, *dhn;     /* [N, H] final-norm output and its gradient */
    float *rstd_head;    /* [N] */
    float *logits;       /* [head_rows, V] */
    double *row_loss;    /* [N] */
    void *arena;         /* every buffer above, one allocation */
    /* tables */
    float *rope_cos;     /* [max_seq, hd/2] */
    float *rope_sin;     /* [max_seq, hd/2] */
    float *att_scratch;  /* [threads, 2, ATT_QB, max_seq] scores/probabilities and their gradient */
} cpu_backend;

/* ---- small kernels ----------------------------------------------------------------- */

/* e^x in fp32, within 2 ulp (Cephes expf: Cody-Waite reduction by ln 2 and a
 * degree-6 polynomial), written so gcc vectorizes it inside omp simd loops:
 * glibc's vector expf is declared only under -ffast-math, and scalar expf
 * calls were 5% of a training step. x is clamped to [-87, 88]: results below
 * e^-87 (1.6e-38) come out as that, not 0, which no caller can tell apart. */
static inline float exp_simd(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f; /* round(x / ln 2) via the 1.5*2^23 trick */
    n -= 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n: n in [-126, 127] after the clamp */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* Row kernels: the elementwise loops of a step, each compiled twice, for
 * baseline x86-64 (SSE2) and for x86-64-v3 (AVX2, FMA); the loader picks one
 * per machine (ifunc), so the binary stays portable and uses 8-wide vectors
 * where it can. Results may differ in the last bits between the two builds,
 * never between runs on one machine. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ROW_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default"), noinline))
#else
#define ROW_KERNEL
#endif

/* a = silu(g) * u */
ROW_KERNEL static void silu_mul_row(const float *restrict g, const float *restrict u,
                                    float *restrict a, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        a[j] = g[j] / (1.0f + exp_simd(-g[j])) * u[j];
}

/* Given da = dL/d(silu(g) * u): g becomes dL/dg and u becomes dL/du, in place. */
ROW_KERNEL static void silu_mul_bwd_row(float *restrict g, float *restrict u,
                                        const float *restrict da, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float sg = 1.0f / (1.0f + exp_simd(-g[j]));
        float silu = g[j] * sg;
        float dgate = da[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
        u[j] = da[j] * silu;
        g[j] = dgate;
    }
}

/* s[0..n) = softmax(s[0..n)); returns the log-sum-exp. */
ROW_KERNEL static float softmax_row(float *restrict s, int64_t n)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = s[j] > m ? s[j] : m;
    float l = 0.0f;
#pragma omp simd reduction(+ : l)
    for (int64_t j = 0; j < n; j++) {
        s[j] = exp_simd(s[j] - m);
        l += s[j];
    }
    float inv = 1.0f / l;
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        s[j] *= inv;
    return m + logf(l);
}

/* Attention backward of one query row: p[j] = exp(s[j] - lse) from the scaled
 * scores s, and dp becomes dS = p * (dp - D) * scale. */
ROW_KERNEL static void attn_bwd_row(float *restrict s, float *restrict dp, int64_t n, float lse,
                                    float D, float scale)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float p = exp_simd(s[j] - lse);
        s[j] = p;
        dp[j] = p * (dp[j] - D) * scale;
    }
}

/* Log-sum-exp of logits l[0..n), the sum accumulated in double. */
ROW_KERNEL static double logsumexp_row(const float *restrict l, int64_t n)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = l[j] > m ? l[j] : m;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++)
        s += (double)exp_simd(l[j] - m);
    return (double)m + log(s);
}

/* l[j] = softmax(l)[j] * scale, given its log-sum-exp. */
ROW_KERNEL static void softmax_scaled_row(float *restrict l, int64_t n, float lse, float scale)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        l[j] = exp_simd(l[j] - lse) * scale;
}

static inline float dotf(const float *restrict a, const float *restrict b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static inline void axpyf(float alpha, const float *restrict x, float *restrict y, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

/* y[n, out] = beta * y + x[n, in] @ w[out, in]^T (+ b[out]); beta 1 adds a residual in place */
static void linear_fwd(const float *x, const float *w, const float *b, float *y, int64_t n,
                       int64_t in, int64_t out, float beta)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x,
                (int)in, w, (int)in, beta, y, (int)out);
    if (b != NULL) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++)
            axpyf(1.0f, b, y + r * out, out);
    }
}

/* dx[n, in] = beta*dx + dy[n, out] @ w[out, in] */
static void linear_bwd_data(const float *dy, const float *w, float *dx, int64_t n, int64_t in,
                            int64_t out, float beta)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0f, dy,
                (int)out, w, (int)in, beta, dx, (int)in);
}

/* out[j] += sum_r a[r, j] * (b ? b[r, j] * (s ? s[r] : 1) : 1), rows in order. */
static void colsum_acc(const float *a, const float *b, const float *s, int64_t n, int64_t d,
                       float *out)
{
    int64_t nblk = (d + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t j0 = blk * COL_BLOCK, j1 = j0 + COL_BLOCK < d ? j0 + COL_BLOCK : d;
        float acc[COL_BLOCK] = {0};
        for (int64_t r = 0; r < n; r++) {
            const float *ar = a + r * d;
            if (b == NULL) {
                for (int64_t j = j0; j < j1; j++)
                    acc[j - j0] += ar[j];
            } else {
                const float *br = b + r * d;
                float sr = s != NULL ? s[r] : 1.0f;
                for (int64_t j = j0; j < j1; j++)
                    acc[j - j0] += ar[j] * br[j] * sr;
            }
        }
        for (int64_t j = j0; j < j1; j++)
            out[j] += acc[j - j0];
    }
}

/* dw[out, in] += dy[n, out]^T @ x[n, in]; db[out] += colsum(dy) */
static void linear_bwd_weight(const float *dy, const float *x, float *dw, float *db, int64_t n,
                              int64_t in, int64_t out)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0f, dy,
                (int)out, x, (int)in, 1.0f, dw, (int)in);
    if (db != NULL)
        colsum_acc(dy, NULL, NULL, n, out, db);
}

/* y = x * rstd * w per row; rstd[r] = 1/sqrt(mean(x^2) + eps) */
static void rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd, int64_t n,
                        int64_t d, double eps)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        float ss = dotf(xr, xr, d);
        float rs = (float)(1.0 / sqrt((double)ss / (double)d + eps));
        rstd[r] = rs;
#pragma omp simd
        for (int64_t j = 0; j < d; j++)
            yr[j] = xr[j] * rs * w[j];
    }
}

/* dx = resid + d/dx of rmsnorm given dy (resid NULL: no residual); dw += sum_r dy * x * rstd.
 * The residual is read in place of a copy: dx may alias resid. */
static void rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy,
                        const float *resid, float *dx, float *dw, int64_t n, int64_t d)
{
    colsum_acc(dy, x, rstd, n, d, dw);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * d, *dyr = dy + r * d;
        float *dxr = dx + r * d;
        float rs = rstd[r];
        float m = 0.0f; /* sum_j dy_j w_j x_j */
#pragma omp simd reduction(+ : m)
        for (int64_t j = 0; j < d; j++)
            m += dyr[j] * w[j] * xr[j];
        float c = m * rs * rs * rs / (float)d;
        if (resid != NULL) {
            const float *rr = resid + r * d;
#pragma omp simd
            for (int64_t j = 0; j < d; j++)
                dxr[j] = rr[j] + (dyr[j] * w[j] * rs - xr[j] * c);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < d; j++)
                dxr[j] = dyr[j] * w[j] * rs - xr[j] * c;
        }
    }
}

/* Rotates each head of x[N, heads*hd] in place, as Hugging Face's
 * apply_rotary_pos_emb (rotate_half); inverse = 1 applies the transpose (backward). */
static void rope_apply(const cpu_backend *cb, float *x, int64_t heads, int B, int T, int inverse)
{
    int64_t half = cb->hd / 2, hd = cb->hd;
    int64_t n = (int64_t)B * T;
    float sgn = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
        int64_t pos = r % T;
        const float *c = cb->rope_cos + pos * half, *s = cb->rope_sin + pos * half;
        for (int64_t h = 0; h < heads; h++) {
            float *x1 = x + r * heads * hd + h * hd, *x2 = x1 + half;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                float a = x1[i], b = x2[i], si = sgn * s[i];
                x1[i] = a * c[i] - b * si;
                x2[i] = b * c[i] + a * si;
            }
        }
    }
}

/* Causal GQA attention forward: att and lse from q, k, v.
 * One task per (row, head, block of ATT_QB queries): S = Q_blk K^T over the
 * keys the block can see, masked softmax row by row, O_blk = P V. The sgemm
 * calls run inside the parallel region, where the OpenMP build of OpenBLAS
 * runs them on the calling thread. */
static void attention_fwd(cpu_backend *cb, int B, int T)
{
    int64_t nh = cb->nh, hd = cb->hd, group = cb->nh / cb->nkv;
    int64_t QD = cb->QD, KVD = cb->KVD, nqb = (T + ATT_QB - 1) / ATT_QB;
    float scale = (float)(1.0 / sqrt((double)hd));
    int64_t total = (int64_t)B * nh * nqb;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t idx = 0; idx < total; idx++) {
        int64_t qb = nqb - 1 - idx % nqb, h = (idx / nqb) % nh, b = idx / (nqb * nh);
        int64_t kvh = h / group, i0 = qb * ATT_QB, i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T;
        int64_t R = i1 - i0, K = i1; /* rows in the block; keys visible to its last row */
        float *S = cb->att_scratch + (int64_t)omp_get_thread_num() * 2 * ATT_QB * cb->base.max_seq;
        const float *Q = cb->q + (b * T + i0) * QD + h * hd;
        const float *Kb = cb->k + b * T * KVD + kvh * hd, *Vb = cb->v + b * T * KVD + kvh * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)K, (int)hd, scale, Q,
                    (int)QD, Kb, (int)KVD, 0.0f, S, (int)K);
        for (int64_t r = 0; r < R; r++) {
            float *sr = S + r * K;
            int64_t n = i0 + r + 1; /* causal: keys 0..i */
            cb->lse[(b * T + i0 + r) * nh + h] = softmax_row(sr, n);
            for (int64_t j = n; j < K; j++)
                sr[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)hd, (int)K, 1.0f, S,
                    (int)K, Vb, (int)KVD, 0.0f, cb->att + (b * T + i0) * QD + h * hd, (int)QD);
    }
}

/* Attention backward: dq, dk, dv from datt (and the saved lse).
 * One task per (row, query head): the probabilities are recomputed block by
 * block from Q K^T and the lse, and dK, dV are accumulated per query head
 * (dkh, dvh, [N, QD]) by the one task that owns it; the heads of a group are
 * then added in head order, so the result does not depend on scheduling. */
static void attention_bwd(cpu_backend *cb, int B, int T)
{
    int64_t nh = cb->nh, nkv = cb->nkv, hd = cb->hd, group = nh / nkv;
    int64_t QD = cb->QD, KVD = cb->KVD, N = (int64_t)B * T, nqb = (T + ATT_QB - 1) / ATT_QB;
    float scale = (float)(1.0 / sqrt((double)hd));

#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++)
        for (int64_t h = 0; h < nh; h++)
            cb->dsum[r * nh + h] = dotf(cb->datt + r * QD + h * hd, cb->att + r * QD + h * hd, hd);

    int64_t total = (int64_t)B * nh;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t idx = 0; idx < total; idx++) {
        int64_t h = idx % nh, b = idx / nh, kvh = h / group;
        float *P = cb->att_scratch + (int64_t)omp_get_thread_num() * 2 * ATT_QB * cb->base.max_seq;
        float *dP = P + ATT_QB * cb->base.max_seq;
        const float *Kb = cb->k + b * T * KVD + kvh * hd, *Vb = cb->v + b * T * KVD + kvh * hd;
        float *dKh = cb->dkh + b * T * QD + h * hd, *dVh = cb->dvh + b * T * QD + h * hd;
        for (int64_t t = 0; t < T; t++) {
            memset(dKh + t * QD, 0, (size_t)hd * sizeof(float));
            memset(dVh + t * QD, 0, (size_t)hd * sizeof(float));
        }
        for (int64_t qb = 0; qb < nqb; qb++) {
            int64_t i0 = qb * ATT_QB, i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T;
            int64_t R = i1 - i0, K = i1;
            const float *Q = cb->q + (b * T + i0) * QD + h * hd;
            const float *dO = cb->datt + (b * T + i0) * QD + h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)K, (int)hd, scale, Q,
                        (int)QD, Kb, (int)KVD, 0.0f, P, (int)K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)K, (int)hd, 1.0f, dO,
                        (int)QD, Vb, (int)KVD, 0.0f, dP, (int)K);
            for (int64_t r = 0; r < R; r++) {
                float *pr = P + r * K, *dpr = dP + r * K;
                int64_t n = i0 + r + 1, row = b * T + i0 + r;
                attn_bwd_row(pr, dpr, n, cb->lse[row * nh + h], cb->dsum[row * nh + h], scale);
                for (int64_t j = n; j < K; j++)
                    pr[j] = dpr[j] = 0.0f;
            }
            /* dV[0:K] += P^T dO ; dK[0:K] += dS^T Q ; dQ_blk = dS K */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)hd, (int)R, 1.0f, P,
                        (int)K, dO, (int)QD, 1.0f, dVh, (int)QD);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)hd, (int)R, 1.0f, dP,
                        (int)K, Q, (int)QD, 1.0f, dKh, (int)QD);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)hd, (int)K, 1.0f,
                        dP, (int)K, Kb, (int)KVD, 0.0f, cb->dq + (b * T + i0) * QD + h * hd,
                        (int)QD);
        }
    }

    /* dK, dV of each key/value head: its group's query heads, in order */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++)
        for (int64_t kvh = 0; kvh < nkv; kvh++) {
            float *dk = cb->dk + r * KVD + kvh * hd, *dv = cb->dv + r * KVD + kvh * hd;
            memcpy(dk, cb->dkh + r * QD + kvh * group * hd, (size_t)hd * sizeof(float));
            memcpy(dv, cb->dvh + r * QD + kvh * group * hd, (size_t)hd * sizeof(float));
            for (int64_t h = kvh * group + 1; h < (kvh + 1) * group; h++) {
                axpyf(1.0f, cb->dkh + r * QD + h * hd, dk, hd);
                axpyf(1.0f, cb->dvh + r * QD + h * hd, dv, hd);
            }
        }
}

/* ---- layer -------------------------------------------------------------------------- */

/* Runs the layer's forward up to (not including) the down projection,
 * leaving every intermediate in the scratch buffers. */
static void layer_core(cpu_backend *cb, const model_layer_ptrs *w, const float *x, int B, int T)
{
    int64_t N = (int64_t)B * T, H = cb->H, ID = cb->ID;
    const model_config *c = &cb->base.cfg;
    rmsnorm_fwd(x, w->attn_norm, cb->h, cb->rstd1, N, H, c->rms_eps);
    linear_fwd(cb->h, w->q_w, w->q_b, cb->q, N, H, cb->QD, 0.0f);
    linear_fwd(cb->h, w->k_w, w->k_b, cb->k, N, H, cb->KVD, 0.0f);
    linear_fwd(cb->h, w->v_w, w->v_b, cb->v, N, H, cb->KVD, 0.0f);
    rope_apply(cb, cb->q, cb->nh, B, T, 0);
    rope_apply(cb, cb->k, cb->nkv, B, T, 0);
    attention_fwd(cb, B, T);
    memcpy(cb->x1, x, (size_t)(N * H) * sizeof *x); /* residual, added by the sgemm (beta 1) */
    linear_fwd(cb->att, w->o_w, w->o_b, cb->x1, N, cb->QD, H, 1.0f);
    rmsnorm_fwd(cb->x1, w->mlp_norm, cb->h2, cb->rstd2, N, H, c->rms_eps);
    linear_fwd(cb->h2, w->gate_w, NULL, cb->g, N, H, ID, 0.0f);
    linear_fwd(cb->h2, w->up_w, NULL, cb->u, N, H, ID, 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        silu_mul_row(cb->g + r * ID, cb->u + r * ID, cb->a + r * ID, ID);
    }
}

static int check_shape(cpu_backend *cb, int B, int T)
{
    if (B <= 0 || T <= 0 || T > cb->base.max_seq || (int64_t)B * T > cb->base.max_tokens)
        return -EINVAL;
    return 0;
}

static int cpu_layer_forward(be_backend *be, const model_layer_ptrs *w, const float *x, float *y,
                             int B, int T, int keep)
{
    cpu_backend *cb = (cpu_backend *)be;
    cb->kept = 0;
    if (check_shape(cb, B, T) < 0)
        return -EINVAL;
    int64_t N = (int64_t)B * T, H = cb->H;
    layer_core(cb, w, x, B, T);
    if (keep == BE_KEEP_FOR_BACKWARD) {
        cb->kept = 1;
        cb->kept_w = *w;
        cb->kept_x = x;
        cb->kept_B = B;
        cb->kept_T = T;
    }
    memcpy(y, cb->x1, (size_t)(N * H) * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)H, (int)cb->ID, 1.0f, cb->a,
                (int)cb->ID, w->down_w, (int)cb->ID, 1.0f, y, (int)H);
    return 0;
}

static int cpu_layer_backward(be_backend *be, const model_layer_ptrs *w, const float *x,
                              const float *dy, float *dx, model_layer_ptrs *g, int B, int T)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (check_shape(cb, B, T) < 0) {
        cb->kept = 0;
        return -EINVAL;
    }
    int64_t N = (int64_t)B * T, H = cb->H, ID = cb->ID, QD = cb->QD, KVD = cb->KVD;
    int reuse = cb->kept && cb->kept_x == x && cb->kept_B == B && cb->kept_T == T &&
                memcmp(&cb->kept_w, w, sizeof *w) == 0;
    cb->kept = 0; /* backward overwrites the intermediates below */
    if (!reuse)
        layer_core(cb, w, x, B, T);

    /* MLP: y = x1 + down(silu(gate) * up) */
    linear_bwd_data(dy, w->down_w, cb->da, N, ID, H, 0.0f);
    linear_bwd_weight(dy, cb->a, g->down_w, NULL, N, ID, H);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        silu_mul_bwd_row(cb->g + r * ID, cb->u + r * ID, cb->da + r * ID, ID); /* g, u become their gradients */
    }
    linear_bwd_weight(cb->g, cb->h2, g->gate_w, NULL, N, H, ID);
    linear_bwd_weight(cb->u, cb->h2, g->up_w, NULL, N, H, ID);
    linear_bwd_data(cb->g, w->gate_w, cb->dh, N, H, ID, 0.0f);
    linear_bwd_data(cb->u, w->up_w, cb->dh, N, H, ID, 1.0f);
    /* dx1 = dy (the residual) + through mlp_norm; dy is not read after this */
    rmsnorm_bwd(cb->x1, w->mlp_norm, cb->rstd2, cb->dh, dy, cb->dx1, g->mlp_norm, N, H);

    /* attention: x1 = x + o_proj(attn(rope(q(h)), rope(k(h)), v(h))) */
    linear_bwd_weight(cb->dx1, cb->att, g->o_w, g->o_b, N, QD, H);
    linear_bwd_data(cb->dx1, w->o_w, cb->datt, N, QD, H, 0.0f);
    attention_bwd(cb, B, T);
    rope_apply(cb, cb->dq, cb->nh, B, T, 1);
    rope_apply(cb, cb->dk, cb->nkv, B, T, 1);
    linear_bwd_weight(cb->dq, cb->h, g->q_w, g->q_b, N, H, QD);
    linear_bwd_weight(cb->dk, cb->h, g->k_w, g->k_b, N, H, KVD);
    linear_bwd_weight(cb->dv, cb->h, g->v_w, g->v_b, N, H, KVD);
    linear_bwd_data(cb->dq, w->q_w, cb->dh, N, H, QD, 0.0f);
    linear_bwd_data(cb->dk, w->k_w, cb->dh, N, H, KVD, 1.0f);
    linear_bwd_data(cb->dv, w->v_w, cb->dh, N, H, KVD, 1.0f);
    /* dx may alias dy: dy was last read by the mlp_norm backward above */
    rmsnorm_bwd(x, w->attn_norm, cb->rstd1, cb->dh, cb->dx1, dx, g->attn_norm, N, H);
    return 0;
}

/* ---- embedding and head ----------------------------------------------------------- */

static int cpu_embed_forward(be_backend *be, const model_embed_ptrs *w, const int32_t *tokens,
                             int n, float *x)
{
    cpu_backend *cb = (cpu_backend *)be;
    int64_t H = cb->H;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cb->V)
            return -EINVAL;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        memcpy(x + (int64_t)i * H, w->embed + (int64_t)tokens[i] * H, (size_t)H * sizeof *x);
    return 0;
}

static int cpu_embed_backward(be_backend *be, const int32_t *tokens, int n, const float *dx,
                              model_embed_ptrs *g)
{
    cpu_backend *cb = (cpu_backend *)be;
    int64_t H = cb->H;
    int64_t nblk = (H + COL_BLOCK - 1) / COL_BLOCK;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cb->V)
            return -EINVAL;
    /* columns split between threads, tokens in order: repeated tokens add deterministically */
#pragma omp parallel for schedule(static)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t j0 = blk * COL_BLOCK, j1 = j0 + COL_BLOCK < H ? j0 + COL_BLOCK : H;
        for (int i = 0; i < n; i++) {
            float *gr = g->embed + (int64_t)tokens[i] * H;
            const float *dr = dx + (int64_t)i * H;
            for (int64_t j = j0; j < j1; j++)
                gr[j] += dr[j];
        }
    }
    return 0;
}

/* logits[R, V] = hn[R, H] @ W[V, H]^T: the LM head's projection. */
static void head_project(const cpu_backend *cb, const float *W, const float *hn, int64_t R,
                         float *logits)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)cb->V, (int)cb->H, 1.0f, hn,
                (int)cb->H, W, (int)cb->H, 0.0f, logits, (int)cb->V);
}

static int cpu_head_loss(be_backend *be, const model_head_ptrs *w, const float *embed,
                         const float *x, const int32_t *targets, int n, float grad_scale,
                         double *loss_sum, float *dx, model_head_ptrs *g, float *g_embed)
{
    cpu_backend *cb = (cpu_backend *)be;
    int64_t H = cb->H, V = cb->V, N = n;
    const float *W = w->lm_head != NULL ? w->lm_head : embed;
    float *dW = NULL;
    if (W == NULL || N <= 0 || N > cb->base.max_tokens)
        return -EINVAL;
    if (dx != NULL) {
        dW = w->lm_head != NULL ? g->lm_head : g_embed;
        if (dW == NULL)
            return -EINVAL;
    }
    for (int64_t r = 0; r < N; r++)
        if (targets[r] != BE_IGNORE_INDEX && (targets[r] < 0 || targets[r] >= V))
            return -EINVAL;

    float *hn = cb->hn, *dhn = cb->dhn;
    rmsnorm_fwd(x, w->norm, hn, cb->rstd_head, N, H, cb->base.cfg.rms_eps);
    for (int64_t r0 = 0; r0 < N; r0 += cb->head_rows) {
        int64_t R = N - r0 < cb->head_rows ? N - r0 : cb->head_rows;
        float *lg = cb->logits;
        head_project(cb, W, hn + r0 * H, R, lg);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            float *lr = lg + r * V;
            int32_t t = targets[r0 + r];
            double lse = logsumexp_row(lr, V);
            cb->row_loss[r0 + r] = t == BE_IGNORE_INDEX ? 0.0 : lse - (double)lr[t];
            if (dx == NULL)
                continue;
            float sc = t == BE_IGNORE_INDEX ? 0.0f : grad_scale;
            softmax_scaled_row(lr, V, (float)lse, sc);
            if (t != BE_IGNORE_INDEX)
                lr[t] -= sc;
        }
        if (dx == NULL)
            continue;
        /* dW[V, H] += dlogits^T @ hn ; dhn[R, H] = dlogits @ W */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)V, (int)H, (int)R, 1.0f, lg,
                    (int)V, hn + r0 * H, (int)H, 1.0f, dW, (int)H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)H, (int)V, 1.0f, lg,
                    (int)V, W, (int)H, 0.0f, dhn + r0 * H, (int)H);
    }
    double total = 0.0;
    for (int64_t r = 0; r < N; r++)
        total += cb->row_loss[r];
    *loss_sum += total;
    if (dx != NULL)
        rmsnorm_bwd(x, w->norm, cb->rstd_head, dhn, NULL, dx, g->norm, N, H);
    return 0;
}

/* The whole [n, V] output is the caller's, so no token chunks are needed. */
static int cpu_head_logits(be_backend *be, const model_head_ptrs *w, const float *embed,
                           const float *x, int n, float *logits)
{
    cpu_backend *cb = (cpu_backend *)be;
    const float *W = w->lm_head != NULL ? w->lm_head : embed;
    if (W == NULL || n <= 0 || n > cb->base.max_tokens)
        return -EINVAL;
    rmsnorm_fwd(x, w->norm, cb->hn, cb->rstd_head, n, cb->H, cb->base.cfg.rms_eps);
    head_project(cb, W, cb->hn, n, logits);
    return 0;
}

/* ---- memory, copies and order: host memory, copies done at once ---------------------- */

static void *cpu_mem_alloc(be_backend *be, uint64_t bytes)
{
    (void)be;
    return aligned_alloc(4096, lb_align_up(bytes > 0 ? bytes : 1, 4096));
}

static void cpu_mem_free(be_backend *be, void *p)
{
    (void)be;
    free(p);
}

static int cpu_mem_zero(be_backend *be, be_queue *q, void *p, uint64_t bytes)
{
    (void)be, (void)q;
    memset(p, 0, bytes);
    return 0;
}

static int cpu_host_register(be_backend *be, void *p, uint64_t bytes)
{
    (void)be, (void)p, (void)bytes;
    return 0;
}

static void cpu_host_unregister(be_backend *be, void *p) { (void)be, (void)p; }

/* Copies happen in the calling thread, so a queue holds nothing: one static
 * object stands for every queue and every event. */
static char cpu_token;

static int cpu_queue_create(be_backend *be, be_queue **q)
{
    (void)be;
    *q = (be_queue *)&cpu_token;
    return 0;
}

static void cpu_queue_destroy(be_backend *be, be_queue *q) { (void)be, (void)q; }

static int cpu_copy(be_backend *be, be_queue *q, void *dst, const void *src, uint64_t bytes)
{
    (void)be, (void)q;
    memcpy(dst, src, bytes);
    return 0;
}

static int cpu_convert(be_backend *be, be_queue *q, const float *src, void *dst, dt_type dt,
                       uint64_t n)
{
    (void)be, (void)q;
    if (dt == DT_F32)
        memcpy(dst, src, n * sizeof(float));
    else
        dt_from_f32(dt, src, dst, n);
    return 0;
}

static int cpu_queue_sync(be_backend *be, be_queue *q)
{
    (void)be, (void)q;
    return 0;
}

static int cpu_event_create(be_backend *be, be_event **ev)
{
    (void)be;
    *ev = (be_event *)&cpu_token;
    return 0;
}

static void cpu_event_destroy(be_backend *be, be_event *ev) { (void)be, (void)ev; }

static int cpu_event_mark(be_backend *be, be_queue *q, be_event *ev)
{
    (void)be, (void)q, (void)ev;
    return 0;
}

static double cpu_event_ms(be_backend *be, be_event *a, be_event *b)
{
    (void)be, (void)a, (void)b;
    return -1.0;
}

/* ---- creation ----------------------------------------------------------------------- */

static void cpu_destroy(be_backend *be)
{
    cpu_backend *cb = (cpu_backend *)be;
    if (cb == NULL)
        return;
    free(cb->arena);
    free(cb);
}

static const be_ops CPU_OPS = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .embed_forward = cpu_embed_forward,
    .embed_backward = cpu_embed_backward,
    .layer_forward = cpu_layer_forward,
    .layer_backward = cpu_layer_backward,
    .head_loss = cpu_head_loss,
    .head_logits = cpu_head_logits,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_zero = cpu_mem_zero,
    .host_register = cpu_host_register,
    .host_unregister = cpu_host_unregister,
    .queue_create = cpu_queue_create,
    .queue_destroy = cpu_queue_destroy,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
    .convert = cpu_convert,
    .queue_sync = cpu_queue_sync,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_mark,
    .event_wait = cpu_event_mark,
    .event_ms = cpu_event_ms,
};

int be_cpu_create(const model_config *cfg, int max_tokens, int max_seq, int n_threads,
                  be_backend **out, rt_err *err)
{
    *out = NULL;
    if (max_tokens <= 0 || max_seq <= 0 || max_seq > max_tokens)
        return err_set(err, -EINVAL, "cpu backend: bad sizes (max_tokens %d, max_seq %d)",
                       max_tokens, max_seq);
    if (cfg->sliding_window > 0 && max_seq > cfg->sliding_window)
        return err_set(err, -EINVAL,
                       "sequence length %d exceeds the model's sliding_window %lld: "
                       "sliding-window attention is not implemented",
                       max_seq, (long long)cfg->sliding_window);
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (cb == NULL)
        return err_set(err, -ENOMEM, "cpu backend: out of memory");
    cb->base.ops = &CPU_OPS;
    cb->base.cfg = *cfg;
    cb->base.max_tokens = max_tokens;
    cb->base.max_seq = max_seq;
    cb->base.wdtype = DT_F32;
    cb->base.on_device = false;
    if (n_threads <= 0)
        n_threads = omp_get_num_procs();
    cb->base.n_threads = n_threads;
    omp_set_num_threads(n_threads);
    openblas_set_num_threads(n_threads);

    int64_t N = max_tokens;
    cb->H = cfg->hidden;
    cb->ID = cfg->intermediate;
    cb->V = cfg->vocab;
    cb->hd = cfg->head_dim;
    cb->nh = cfg->n_heads;
    cb->nkv = cfg->n_kv_heads;
    cb->QD = cb->nh * cb->hd;
    cb->KVD = cb->nkv * cb->hd;
    int64_t rows = (int64_t)(HEAD_CHUNK_FLOATS / (uint64_t)cb->V);
    cb->head_rows = (int)(rows < 1 ? 1 : rows > N ? N : rows);

    /* Every scratch buffer, sized once, carved from one 64-byte aligned arena. */
    int64_t H = cb->H, ID = cb->ID, QD = cb->QD, KVD = cb->KVD, half = cb->hd / 2;
    const struct {
        float **buf;
        int64_t n; /* floats */
    } plan[] = {
        {&cb->h, N * H},          {&cb->rstd1, N},          {&cb->q, N * QD},
        {&cb->k, N * KVD},        {&cb->v, N * KVD},        {&cb->att, N * QD},
        {&cb->lse, N * cb->nh},   {&cb->x1, N * H},         {&cb->h2, N * H},
        {&cb->rstd2, N},          {&cb->g, N * ID},         {&cb->u, N * ID},
        {&cb->a, N * ID},         {&cb->da, N * ID},        {&cb->dh, N * H},
        {&cb->dx1, N * H},        {&cb->datt, N * QD},      {&cb->dq, N * QD},
        {&cb->dk, N * KVD},       {&cb->dv, N * KVD},       {&cb->dsum, N * cb->nh},
        {&cb->dkh, N * QD},       {&cb->dvh, N * QD},       {&cb->hn, N * H},
        {&cb->dhn, N * H},        {&cb->rstd_head, N},
        {&cb->logits, (int64_t)cb->head_rows * cb->V},
        {&cb->rope_cos, (int64_t)max_seq * half},
        {&cb->rope_sin, (int64_t)max_seq * half},
        {&cb->att_scratch, (int64_t)n_threads * 2 * ATT_QB * max_seq},
        {(float **)&cb->row_loss, 2 * N}, /* N doubles */
    };
    uint64_t bytes = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++)
        bytes += lb_align_up((uint64_t)plan[i].n * sizeof(float), 64);
    cb->arena = aligned_alloc(64, bytes);
    if (cb->arena == NULL) {
        cpu_destroy(&cb->base);
        return err_set(err, -ENOMEM, "cpu backend: cannot allocate %.1f MiB of scratch",
                       (double)bytes / (1 << 20));
    }
    char *pos = cb->arena;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        *plan[i].buf = (float *)pos;
        pos += lb_align_up((uint64_t)plan[i].n * sizeof(float), 64);
    }
    cb->base.scratch_bytes = bytes;

    double *inv = malloc((size_t)half * sizeof *inv);
    if (inv == NULL) {
        cpu_destroy(&cb->base);
        return err_set(err, -ENOMEM, "cpu backend: out of memory");
    }
    model_rope_inv_freq(cfg, inv);
    for (int64_t p = 0; p < max_seq; p++)
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)p * inv[i];
            cb->rope_cos[p * half + i] = (float)cos(ang);
            cb->rope_sin[p * half + i] = (float)sin(ang);
        }
    free(inv);
    *out = &cb->base;
    return 0;
}

/*
 * adamw: the parameter server's optimizer kernels (AdamW step, gradient
 * accumulation, sums of squares) and the pinned thread pool that runs them.
 *
 * Numerics: one element of the step is, in fp32 (torch.optim.AdamW's
 * single-tensor CPU path as PyTorch's vectorized kernels compute it; every
 * hyper-parameter is computed in double as Python does and rounded to fp32
 * where PyTorch applies it to a float tensor):
 *   g   = accum * grad_scale
 *   p   = p * fl(1 - lr*wd)                          param.mul_ (1 without decay)
 *   m   = fma(w, g - m, m)                           exp_avg.lerp_(grad, w = fl(1 - beta1)),
 *         (fma(w - 1, g - m, g) when |w| >= 0.5)     ATen's lerp_vec
 *   v   = fma(fl(1 - beta2) * g, g, v * fl(beta2))   mul_ then addcmul_ (gcc contracts
 *                                                    ATen's self + s * t1 * t2 into this)
 *   den = sqrt(v) / fl(sqrt(1 - beta2^t)) + fl(eps)
 *   p   = p + (fl(-lr / (1 - beta1^t)) * m) / den    addcdiv_
 * (PyTorch 2's order. Debian's PyTorch 1.13 computes m = fma(g, fl(1 - beta1),
 * m * fl(beta1)) instead, mul_ then add_: the two differ in the last bit of m
 * for about a third of the elements from the second step on; the rest is
 * bitwise the same.)
 * Each path (AVX-512, AVX2+FMA, scalar with fmaf) issues exactly these IEEE
 * operations per element and the file is built with -ffp-contract=off, so the
 * result does not depend on the ISA, on how [lo, hi) is split or on the thread
 * count. W is then written from p: bf16 rounded to nearest even with NaN ->
 * 0x7FC0 (c10::BFloat16's conversion), f16 by IEEE conversion (F16C, or
 * dt_f32_to_f16 in the scalar path: the same results, NaN payloads included),
 * f32 copied; and accum is set to zero. Every array is read once and written
 * once; W, which the step only writes, is written with non-temporal stores
 * (64-byte lines: the vector loops first align W), which saves the read for
 * ownership of each of its lines. The other arrays are stored normally: their
 * lines are already in the cache from the loads.
 *
 * Sums of squares: a chunk's elements are squared in double (exact for fp32
 * inputs, so fused or not gives the same bits) and element j of the chunk is
 * added into lane j % AW_LANES; the lanes are then folded by halves (lane i +=
 * lane i + h for h = 16, 8, 4, 2, 1), which is what the vector registers do
 * naturally and what the scalar path does explicitly. 32 lanes rather than 16
 * let the vector paths run four (AVX-512) or eight (AVX2) independent
 * accumulator chains.
 *
 * Threads: the pool's threads are pinned one per CPU, block all signals and
 * sleep on a futex between runs (after a short spin, for back-to-back runs of
 * a step). The caller publishes the function, bumps a generation counter and wakes them;
 * the last thread to finish wakes the caller, which sleeps at once: it may
 * share a CPU with a pool thread, and a spinning caller would steal its time.
 * Work is split statically: chunk j of a run goes to thread j % n, so a
 * thread's share is fixed and each thread streams through its own chunks.
 *
 * Rejected: dynamic work stealing (an atomic counter per chunk): the chunks
 * are equal and the threads pinned, so it buys nothing and makes placement
 * vary from run to run. VCVTNEPS2BF16 for bf16: it flushes subnormals, which
 * PyTorch's conversion does not. OpenMP: the service would share libgomp's
 * spinning pool with OpenBLAS in the same process.
 */
#define _GNU_SOURCE /* sched_getaffinity, pthread_attr_setaffinity_np */
#include "services/paramserver/adamw.h"

#include <errno.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AW_LANES 32                  /* double partial sums per sumsq chunk */
#define AW_SUMSQ_WINDOW 65536u       /* chunk partials per sumsq pool run: 512 KiB, 1 Gi elements */
#define AW_SPIN 2000                 /* pause loops (~50-150 cycles each) before a thread sleeps */
#define AW_ALIGN 64                  /* cache line: W is aligned to it for streaming stores */

#define AW_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define AW_AVX2 __attribute__((target("avx2,fma,f16c")))
#define AW_INLINE static inline __attribute__((always_inline))

/* ---- per-call constants ------------------------------------------------------------ */

typedef struct aw_k {
    float gs;     /* gradient scale */
    float dec;    /* fl(1 - lr * weight_decay), 1 for tensors without decay */
    float lw;     /* lerp coefficient: w = fl(1 - beta1), or w - 1 when |w| >= 0.5 */
    int lsmall;   /* |w| < 0.5: m + w (g - m); else g + (w - 1)(g - m) */
    float b2;     /* fl(beta2) */
    float c2;     /* fl(1 - beta2) */
    float bc2s;   /* fl(sqrt(1 - beta2^t)) */
    float eps;    /* fl(eps) */
    float nss;    /* fl(-lr / (1 - beta1^t)): the negated step size */
} aw_k;

static aw_k aw_consts(const adamw_hparams *hp, float grad_scale, bool decay)
{
    double t = (double)hp->step;
    double bc1 = 1.0 - pow(hp->beta1, t);
    double bc2 = 1.0 - pow(hp->beta2, t);
    float w = (float)(1.0 - hp->beta1);
    aw_k k = {
        .gs = grad_scale,
        .dec = decay ? (float)(1.0 - hp->lr * hp->weight_decay) : 1.0f,
        .lsmall = fabsf(w) < 0.5f,
        .b2 = (float)hp->beta2,
        .c2 = (float)(1.0 - hp->beta2),
        .bc2s = (float)sqrt(bc2),
        .eps = (float)hp->eps,
        .nss = (float)(-(hp->lr / bc1)),
    };
    k.lw = k.lsmall ? w : w - 1.0f;
    return k;
}

/* ---- undo saving (the _undo kernels; adamw.h) --------------------------------------- */

#define AW_SUB 16                    /* scalar path: elements per undo sub-block */

/* Where the _undo kernels put the old values of element i: p[i - lo] etc.
 * (fp32 [hi - lo] each); saved: the progress count, NULL for none. */
typedef struct aw_undo {
    float *p, *m, *v, *a;
    uint64_t lo;
    uint64_t *saved;
} aw_undo;

/* Publishes that the old values of [u->lo, end) are saved: called after the
 * undo stores of a sub-block ending at end and before its array stores. The
 * first fence keeps the undo stores before the count, the second the count
 * before the array stores that follow (compiler barriers on x86, whose
 * stores are seen in program order anyway; real fences elsewhere). */
AW_INLINE void aw_saved(const aw_undo *u, uint64_t end)
{
    if (u->saved == NULL)
        return;
    atomic_thread_fence(memory_order_release);
    __atomic_store_n(u->saved, end - u->lo, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
}

/* ---- scalar element operations (inlined into every path) --------------------------- */

static uint32_t aw_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

uint16_t adamw_bf16(float x)
{
    uint32_t u = aw_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return 0x7fc0u; /* c10::BFloat16: every NaN becomes the positive quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* One element of the step (see the file comment); returns the new p. */
AW_INLINE float aw_elem(const aw_k *k, float *p, float *m, float *v, float *a)
{
    float g = *a * k->gs;
    float pp = *p * k->dec;
    float mo = *m;
    float mm = fmaf(k->lw, g - mo, k->lsmall ? mo : g);
    float vv = fmaf(k->c2 * g, g, *v * k->b2);
    float den = sqrtf(vv) / k->bc2s + k->eps;
    pp = pp + (k->nss * mm) / den;
    *p = pp;
    *m = mm;
    *v = vv;
    *a = 0.0f;
    return pp;
}

AW_INLINE void aw_store_w(void *w, dt_type wt, uint64_t i, float x)
{
    if (wt == DT_BF16) {
        uint16_t h = adamw_bf16(x);
        memcpy((uint8_t *)w + 2 * i, &h, sizeof h);
    } else if (wt == DT_F16) {
        uint16_t h = dt_f32_to_f16(x);
        memcpy((uint8_t *)w + 2 * i, &h, sizeof h);
    } else if (wt == DT_F32) {
        memcpy((uint8_t *)w + 4 * i, &x, sizeof x);
    }
}

/* Elements [lo, hi) one at a time: the scalar path, and the AVX2 path's edges. */
AW_INLINE void aw_elems(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    dt_type wt = t->w != NULL ? t->w_dtype : DT_INVALID;
    for (uint64_t i = lo; i < hi; i++) {
        float p = aw_elem(k, t->master + i, t->m + i, t->v + i, t->accum + i);
        aw_store_w(t->w, wt, i, p);
    }
}

/* Elements to process one by one (or masked) before W + i is 64-byte
 * aligned; hi - lo when it never will be (W not aligned to its element). */
static uint64_t aw_head(const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    if (t->w == NULL)
        return 0;
    size_t es = t->w_dtype == DT_F32 ? 4 : 2;
    uintptr_t addr = (uintptr_t)t->w + lo * es;
    if (addr % es != 0)
        return hi - lo;
    uint64_t h = ((AW_ALIGN - addr % AW_ALIGN) % AW_ALIGN) / es;
    return h < hi - lo ? h : hi - lo;
}

static void aw_step_scalar(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    aw_elems(k, t, lo, hi);
}

/* aw_elems saving old values: sub-blocks of AW_SUB, each copied to the undo
 * area (its lines are then in L1 for the update), published, updated. */
AW_INLINE void aw_elems_undo(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi,
                             const aw_undo *u)
{
    for (uint64_t i = lo; i < hi;) {
        uint64_t e = hi - i < AW_SUB ? hi : i + AW_SUB;
        for (uint64_t j = i; j < e; j++) {
            u->p[j - u->lo] = t->master[j];
            u->m[j - u->lo] = t->m[j];
            u->v[j - u->lo] = t->v[j];
            u->a[j - u->lo] = t->accum[j];
        }
        aw_saved(u, e);
        aw_elems(k, t, i, e);
        i = e;
    }
}

static void aw_step_scalar_undo(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi,
                                const aw_undo *u)
{
    aw_elems_undo(k, t, lo, hi, u);
}

static void aw_accum_scalar(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi)
{
    const uint8_t *b = g; /* [n] elements of gt, any alignment */
    if (gt != DT_F32 && gt != DT_BF16 && gt != DT_F16)
        return; /* not a gradient type: every path leaves accum alone */
    for (uint64_t i = lo; i < hi; i++) {
        float x;
        uint16_t h;
        if (gt == DT_F32) {
            memcpy(&x, b + 4 * i, sizeof x);
        } else {
            memcpy(&h, b + 2 * i, sizeof h);
            x = gt == DT_BF16 ? dt_bf16_to_f32(h) : dt_f16_to_f32(h);
        }
        accum[i] += x;
    }
}

/* aw_accum_scalar saving the old accumulator (u->a) in sub-blocks of AW_SUB. */
static void aw_accum_scalar_undo(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi,
                                 const aw_undo *u)
{
    for (uint64_t i = lo; i < hi;) {
        uint64_t e = hi - i < AW_SUB ? hi : i + AW_SUB;
        for (uint64_t j = i; j < e; j++)
            u->a[j - u->lo] = accum[j];
        aw_saved(u, e);
        aw_accum_scalar(accum, g, gt, i, e);
        i = e;
    }
}

/* Folds lanes by halves: lane i += lane i + h for h = 16, 8, 4, 2, 1. */
static double aw_fold(double *lane)
{
    for (int h = AW_LANES / 2; h >= 1; h /= 2)
        for (int i = 0; i < h; i++)
            lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

static double aw_sumsq_scalar(const float *x, uint64_t n)
{
    double lane[AW_LANES] = {0};
    for (uint64_t j = 0; j < n; j++) {
        double d = (double)x[j];
        lane[j % AW_LANES] += d * d;
    }
    return aw_fold(lane);
}

/* ---- AVX2 + FMA + F16C ----------------------------------------------------------- */

typedef struct aw256_c {
    __m256 gs, dec, lw, b2, c2, bc2s, eps, nss;
} aw256_c;

AW_AVX2 AW_INLINE aw256_c aw256_consts(const aw_k *k)
{
    return (aw256_c){_mm256_set1_ps(k->gs), _mm256_set1_ps(k->dec), _mm256_set1_ps(k->lw),
                     _mm256_set1_ps(k->b2), _mm256_set1_ps(k->c2), _mm256_set1_ps(k->bc2s),
                     _mm256_set1_ps(k->eps), _mm256_set1_ps(k->nss)};
}

/* The update of 8 loaded elements: the same operations as aw_elem; p, m, v
 * are replaced by their new values. */
AW_AVX2 AW_INLINE void aw256_math(const aw256_c *c, const int lsmall, __m256 a, __m256 *p,
                                  __m256 *m, __m256 *v)
{
    __m256 g = _mm256_mul_ps(a, c->gs);
    __m256 pp = _mm256_mul_ps(*p, c->dec);
    __m256 mo = *m;
    __m256 mm = _mm256_fmadd_ps(c->lw, _mm256_sub_ps(g, mo), lsmall ? mo : g);
    __m256 vv = _mm256_fmadd_ps(_mm256_mul_ps(c->c2, g), g, _mm256_mul_ps(*v, c->b2));
    __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), c->bc2s), c->eps);
    *p = _mm256_add_ps(pp, _mm256_div_ps(_mm256_mul_ps(c->nss, mm), den));
    *m = mm;
    *v = vv;
}

/* 8 elements at p, m, v, a (fp32 [8] each), updated in place, a zeroed.
 * Returns the new p. */
AW_AVX2 AW_INLINE __m256 aw256_elems(const aw256_c *c, const int lsmall, float *p, float *m,
                                     float *v, float *a)
{
    __m256 pp = _mm256_loadu_ps(p), mm = _mm256_loadu_ps(m), vv = _mm256_loadu_ps(v);
    aw256_math(c, lsmall, _mm256_loadu_ps(a), &pp, &mm, &vv);
    _mm256_storeu_ps(p, pp);
    _mm256_storeu_ps(m, mm);
    _mm256_storeu_ps(v, vv);
    _mm256_storeu_ps(a, _mm256_setzero_ps());
    return pp;
}

/* bf16 patterns of x in the low 16 bits of each 32-bit lane. */
AW_AVX2 AW_INLINE __m256i aw256_bf16(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r),
                                                _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0)), nan));
}

/* Streams W[i .. i + 16) (64-byte aligned) from the new p of 16 elements. */
AW_AVX2 AW_INLINE void aw256_stream_w(const int wt, const adamw_tensor *t, uint64_t i, __m256 x0,
                                      __m256 x1)
{
    if (wt == DT_BF16) {
        __m256i h = _mm256_packus_epi32(aw256_bf16(x0), aw256_bf16(x1)); /* 0-3 8-11 4-7 12-15 */
        h = _mm256_permute4x64_epi64(h, 0xd8);
        _mm256_stream_si256((__m256i *)((uint16_t *)t->w + i), h);
    } else if (wt == DT_F16) {
        __m128i h0 = _mm256_cvtps_ph(x0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m128i h1 = _mm256_cvtps_ph(x1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_stream_si256((__m256i *)((uint16_t *)t->w + i), _mm256_set_m128i(h1, h0));
    } else if (wt == DT_F32) {
        _mm256_stream_ps((float *)t->w + i, x0);
        _mm256_stream_ps((float *)t->w + i + 8, x1);
    }
}

/* Main loop over 16-element blocks from i (W + i 64-byte aligned when wt is
 * set); wt and lsmall are constants at every call, so each case compiles
 * to its own loop. Returns the first element not done. */
AW_AVX2 AW_INLINE uint64_t aw256_main(const aw256_c *c, const int wt, const int lsmall,
                                      const adamw_tensor *t, uint64_t i, uint64_t hi)
{
    float *p = t->master, *m = t->m, *v = t->v, *a = t->accum; /* fp32 [n] */
    for (; i + 16 <= hi; i += 16) {
        __m256 x0 = aw256_elems(c, lsmall, p + i, m + i, v + i, a + i);
        __m256 x1 = aw256_elems(c, lsmall, p + i + 8, m + i + 8, v + i + 8, a + i + 8);
        aw256_stream_w(wt, t, i, x0, x1);
    }
    return i;
}

/* aw256_main saving old values: per 16-element block, loads, undo stores,
 * the count, then the block's new values. */
AW_AVX2 AW_INLINE uint64_t aw256_main_undo(const aw256_c *c, const int wt, const int lsmall,
                                           const adamw_tensor *t, uint64_t i, uint64_t hi,
                                           const aw_undo *u)
{
    float *p = t->master, *m = t->m, *v = t->v, *a = t->accum; /* fp32 [n] */
    for (; i + 16 <= hi; i += 16) {
        uint64_t o = i - u->lo;
        __m256 p0 = _mm256_loadu_ps(p + i), p1 = _mm256_loadu_ps(p + i + 8);
        __m256 m0 = _mm256_loadu_ps(m + i), m1 = _mm256_loadu_ps(m + i + 8);
        __m256 v0 = _mm256_loadu_ps(v + i), v1 = _mm256_loadu_ps(v + i + 8);
        __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8);
        _mm256_storeu_ps(u->p + o, p0);
        _mm256_storeu_ps(u->p + o + 8, p1);
        _mm256_storeu_ps(u->m + o, m0);
        _mm256_storeu_ps(u->m + o + 8, m1);
        _mm256_storeu_ps(u->v + o, v0);
        _mm256_storeu_ps(u->v + o + 8, v1);
        _mm256_storeu_ps(u->a + o, a0);
        _mm256_storeu_ps(u->a + o + 8, a1);
        aw_saved(u, i + 16);
        aw256_math(c, lsmall, a0, &p0, &m0, &v0);
        aw256_math(c, lsmall, a1, &p1, &m1, &v1);
        _mm256_storeu_ps(p + i, p0);
        _mm256_storeu_ps(m + i, m0);
        _mm256_storeu_ps(v + i, v0);
        _mm256_storeu_ps(a + i, _mm256_setzero_ps());
        _mm256_storeu_ps(p + i + 8, p1);
        _mm256_storeu_ps(m + i + 8, m1);
        _mm256_storeu_ps(v + i + 8, v1);
        _mm256_storeu_ps(a + i + 8, _mm256_setzero_ps());
        aw256_stream_w(wt, t, i, p0, p1);
    }
    return i;
}

AW_AVX2 static void aw_step_avx2(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    aw256_c c = aw256_consts(k);
    uint64_t h = aw_head(t, lo, hi);
    aw_elems(k, t, lo, lo + h);
    uint64_t i = lo + h;
    int wt = t->w != NULL ? (int)t->w_dtype : DT_INVALID;
#define AW256_CASE(WT)                                                         \
    i = k->lsmall ? aw256_main(&c, WT, 1, t, i, hi) : aw256_main(&c, WT, 0, t, i, hi)
    switch (wt) {
    case DT_BF16: AW256_CASE(DT_BF16); break;
    case DT_F16: AW256_CASE(DT_F16); break;
    case DT_F32: AW256_CASE(DT_F32); break;
    default: AW256_CASE(DT_INVALID); break;
    }
#undef AW256_CASE
    aw_elems(k, t, i, hi);
    if (wt != DT_INVALID)
        _mm_sfence(); /* streaming stores are weakly ordered: drain before anyone is told */
}

AW_AVX2 static void aw_step_avx2_undo(const aw_k *k, const adamw_tensor *t, uint64_t lo,
                                      uint64_t hi, const aw_undo *u)
{
    aw256_c c = aw256_consts(k);
    uint64_t h = aw_head(t, lo, hi);
    aw_elems_undo(k, t, lo, lo + h, u);
    uint64_t i = lo + h;
    int wt = t->w != NULL ? (int)t->w_dtype : DT_INVALID;
#define AW256_CASE(WT)                                                         \
    i = k->lsmall ? aw256_main_undo(&c, WT, 1, t, i, hi, u) : aw256_main_undo(&c, WT, 0, t, i, hi, u)
    switch (wt) {
    case DT_BF16: AW256_CASE(DT_BF16); break;
    case DT_F16: AW256_CASE(DT_F16); break;
    case DT_F32: AW256_CASE(DT_F32); break;
    default: AW256_CASE(DT_INVALID); break;
    }
#undef AW256_CASE
    aw_elems_undo(k, t, i, hi, u);
    if (wt != DT_INVALID)
        _mm_sfence(); /* streaming stores are weakly ordered: drain before anyone is told */
}

AW_AVX2 static void aw_accum_avx2(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi)
{
    uint64_t i = lo;
    if (gt == DT_F32) {
        const float *s = g; /* fp32 [n] */
        for (; i + 16 <= hi; i += 16) {
            _mm256_storeu_ps(accum + i, _mm256_add_ps(_mm256_loadu_ps(accum + i), _mm256_loadu_ps(s + i)));
            _mm256_storeu_ps(accum + i + 8,
                             _mm256_add_ps(_mm256_loadu_ps(accum + i + 8), _mm256_loadu_ps(s + i + 8)));
        }
    } else if (gt == DT_BF16 || gt == DT_F16) {
        const uint16_t *s = g; /* bf16 / f16 [n] */
        for (; i + 8 <= hi; i += 8) {
            __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
            __m256 x = gt == DT_BF16
                           ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                           : _mm256_cvtph_ps(h);
            _mm256_storeu_ps(accum + i, _mm256_add_ps(_mm256_loadu_ps(accum + i), x));
        }
    }
    aw_accum_scalar(accum, g, gt, i, hi);
}

AW_AVX2 static void aw_accum_avx2_undo(float *accum, const void *g, dt_type gt, uint64_t lo,
                                       uint64_t hi, const aw_undo *u)
{
    uint64_t i = lo;
    if (gt == DT_F32) {
        const float *s = g; /* fp32 [n] */
        for (; i + 16 <= hi; i += 16) {
            __m256 a0 = _mm256_loadu_ps(accum + i), a1 = _mm256_loadu_ps(accum + i + 8);
            _mm256_storeu_ps(u->a + (i - u->lo), a0);
            _mm256_storeu_ps(u->a + (i - u->lo) + 8, a1);
            aw_saved(u, i + 16);
            _mm256_storeu_ps(accum + i, _mm256_add_ps(a0, _mm256_loadu_ps(s + i)));
            _mm256_storeu_ps(accum + i + 8, _mm256_add_ps(a1, _mm256_loadu_ps(s + i + 8)));
        }
    } else if (gt == DT_BF16 || gt == DT_F16) {
        const uint16_t *s = g; /* bf16 / f16 [n] */
        for (; i + 8 <= hi; i += 8) {
            __m256 a0 = _mm256_loadu_ps(accum + i);
            _mm256_storeu_ps(u->a + (i - u->lo), a0);
            aw_saved(u, i + 8);
            __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
            __m256 x = gt == DT_BF16
                           ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                           : _mm256_cvtph_ps(h);
            _mm256_storeu_ps(accum + i, _mm256_add_ps(a0, x));
        }
    }
    aw_accum_scalar_undo(accum, g, gt, i, hi, u);
}

AW_AVX2 static double aw_sumsq_avx2(const float *x, uint64_t n)
{
    __m256d acc[8]; /* acc[q] holds lanes 4q .. 4q+3 */
    for (int q = 0; q < 8; q++)
        acc[q] = _mm256_setzero_pd();
    uint64_t j = 0;
    for (; j + AW_LANES <= n; j += AW_LANES)
        for (int q = 0; q < 8; q++) {
            __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(x + j + 4 * q));
            acc[q] = _mm256_fmadd_pd(d, d, acc[q]);
        }
    if (j < n) {
        float tail[AW_LANES] = {0}; /* zeros add nothing to a lane (lanes are never -0) */
        memcpy(tail, x + j, (size_t)(n - j) * sizeof *tail);
        for (int q = 0; q < 8; q++) {
            __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(tail + 4 * q));
            acc[q] = _mm256_fmadd_pd(d, d, acc[q]);
        }
    }
    for (int q = 0; q < 4; q++) /* h = 16 */
        acc[q] = _mm256_add_pd(acc[q], acc[q + 4]);
    for (int q = 0; q < 2; q++) /* h = 8 */
        acc[q] = _mm256_add_pd(acc[q], acc[q + 2]);
    __m256d s4 = _mm256_add_pd(acc[0], acc[1]); /* h = 4 */
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/* ---- AVX-512 (F, BW, VL) --------------------------------------------------------------- */

typedef struct aw512_c {
    __m512 gs, dec, lw, b2, c2, bc2s, eps, nss;
} aw512_c;

AW_AVX512 AW_INLINE aw512_c aw512_consts(const aw_k *k)
{
    return (aw512_c){_mm512_set1_ps(k->gs), _mm512_set1_ps(k->dec), _mm512_set1_ps(k->lw),
                     _mm512_set1_ps(k->b2), _mm512_set1_ps(k->c2), _mm512_set1_ps(k->bc2s),
                     _mm512_set1_ps(k->eps), _mm512_set1_ps(k->nss)};
}

/* The update of 16 loaded elements; p, m, v are replaced by their new values. */
AW_AVX512 AW_INLINE void aw512_math(const aw512_c *c, const int lsmall, __m512 a, __m512 *p,
                                    __m512 *m, __m512 *v)
{
    __m512 g = _mm512_mul_ps(a, c->gs);
    __m512 pp = _mm512_mul_ps(*p, c->dec);
    __m512 mm = _mm512_fmadd_ps(c->lw, _mm512_sub_ps(g, *m), lsmall ? *m : g);
    __m512 vv = _mm512_fmadd_ps(_mm512_mul_ps(c->c2, g), g, _mm512_mul_ps(*v, c->b2));
    __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), c->bc2s), c->eps);
    *p = _mm512_add_ps(pp, _mm512_div_ps(_mm512_mul_ps(c->nss, mm), den));
    *m = mm;
    *v = vv;
}

AW_AVX512 AW_INLINE __m256i aw512_bf16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
    return _mm512_cvtepi32_epi16(r);
}

AW_AVX512 AW_INLINE void aw512_masked_store(const adamw_tensor *t, int wt, uint64_t i, __mmask16 k,
                                            __m512 pp, __m512 mm, __m512 vv);

/* Up to 16 elements at i under mask k (edges, and all of a W that cannot be aligned). */
AW_AVX512 AW_INLINE void aw512_masked(const aw512_c *c, const int lsmall, const adamw_tensor *t,
                                      int wt, uint64_t i, __mmask16 k)
{
    float *p = t->master + i, *m = t->m + i, *v = t->v + i, *a = t->accum + i; /* fp32 [16] */
    __m512 pp = _mm512_maskz_loadu_ps(k, p), mm = _mm512_maskz_loadu_ps(k, m);
    __m512 vv = _mm512_maskz_loadu_ps(k, v);
    aw512_math(c, lsmall, _mm512_maskz_loadu_ps(k, a), &pp, &mm, &vv);
    aw512_masked_store(t, wt, i, k, pp, mm, vv);
}

/* aw512_masked saving old values: masked loads, undo stores, the count
 * (end: the element after the last of mask k), then the new values. */
AW_AVX512 AW_INLINE void aw512_masked_undo(const aw512_c *c, const int lsmall,
                                           const adamw_tensor *t, int wt, uint64_t i,
                                           __mmask16 k, uint64_t end, const aw_undo *u)
{
    float *p = t->master + i, *m = t->m + i, *v = t->v + i, *a = t->accum + i; /* fp32 [16] */
    uint64_t o = i - u->lo;
    __m512 pp = _mm512_maskz_loadu_ps(k, p), mm = _mm512_maskz_loadu_ps(k, m);
    __m512 vv = _mm512_maskz_loadu_ps(k, v), aa = _mm512_maskz_loadu_ps(k, a);
    _mm512_mask_storeu_ps(u->p + o, k, pp);
    _mm512_mask_storeu_ps(u->m + o, k, mm);
    _mm512_mask_storeu_ps(u->v + o, k, vv);
    _mm512_mask_storeu_ps(u->a + o, k, aa);
    aw_saved(u, end);
    aw512_math(c, lsmall, aa, &pp, &mm, &vv);
    aw512_masked_store(t, wt, i, k, pp, mm, vv);
}

AW_AVX512 AW_INLINE void aw512_masked_range_undo(const aw512_c *c, const int lsmall,
                                                 const adamw_tensor *t, int wt, uint64_t i,
                                                 uint64_t hi, const aw_undo *u)
{
    for (; i < hi; i += 16) {
        uint64_t r = hi - i < 16 ? hi - i : 16;
        aw512_masked_undo(c, lsmall, t, wt, i, _cvtu32_mask16((uint32_t)((1ull << r) - 1)), i + r, u);
    }
}

/* Stores the new values of the elements of mask k at i, W included. */
AW_AVX512 AW_INLINE void aw512_masked_store(const adamw_tensor *t, int wt, uint64_t i, __mmask16 k,
                                            __m512 pp, __m512 mm, __m512 vv)
{
    float *p = t->master + i, *m = t->m + i, *v = t->v + i, *a = t->accum + i; /* fp32 [16] */
    _mm512_mask_storeu_ps(p, k, pp);
    _mm512_mask_storeu_ps(m, k, mm);
    _mm512_mask_storeu_ps(v, k, vv);
    _mm512_mask_storeu_ps(a, k, _mm512_setzero_ps());
    uint8_t *w = (uint8_t *)t->w; /* [n] of wt; here possibly not aligned even to its element */
    if (wt == DT_BF16)
        _mm256_mask_storeu_epi16(w + 2 * i, k, aw512_bf16(pp));
    else if (wt == DT_F16)
        _mm256_mask_storeu_epi16(w + 2 * i, k,
                                 _mm512_cvtps_ph(pp, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    else if (wt == DT_F32)
        _mm512_mask_storeu_ps(w + 4 * i, k, pp);
}

AW_AVX512 AW_INLINE void aw512_masked_range(const aw512_c *c, const int lsmall,
                                            const adamw_tensor *t, int wt, uint64_t i, uint64_t hi)
{
    for (; i < hi; i += 16) {
        uint64_t r = hi - i < 16 ? hi - i : 16;
        aw512_masked(c, lsmall, t, wt, i, _cvtu32_mask16((uint32_t)((1ull << r) - 1)));
    }
}

/* Streams W[i .. i + 32) (64-byte aligned) from the new p of 32 elements. */
AW_AVX512 AW_INLINE void aw512_stream_w(const int wt, const adamw_tensor *t, uint64_t i, __m512 p0,
                                        __m512 p1)
{
    if (wt == DT_BF16) {
        __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(aw512_bf16(p0)), aw512_bf16(p1), 1);
        _mm512_stream_si512((__m512i *)((uint16_t *)t->w + i), h);
    } else if (wt == DT_F16) {
        __m256i h0 = _mm512_cvtps_ph(p0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i h1 = _mm512_cvtps_ph(p1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_stream_si512((__m512i *)((uint16_t *)t->w + i),
                            _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1));
    } else if (wt == DT_F32) {
        _mm512_stream_ps((float *)t->w + i, p0);
        _mm512_stream_ps((float *)t->w + i + 16, p1);
    }
}

/* 32-element blocks from i, W + i 64-byte aligned when wt is set: a block's
 * bf16/f16 W is one whole cache line, streamed. wt and lsmall are constants
 * at every call. Returns the first element not done. */
AW_AVX512 AW_INLINE uint64_t aw512_main(const aw512_c *c, const int wt, const int lsmall,
                                        const adamw_tensor *t, uint64_t i, uint64_t hi)
{
    float *p = t->master, *m = t->m, *v = t->v, *a = t->accum; /* fp32 [n] */
    for (; i + 32 <= hi; i += 32) {
        __m512 p0 = _mm512_loadu_ps(p + i), p1 = _mm512_loadu_ps(p + i + 16);
        __m512 m0 = _mm512_loadu_ps(m + i), m1 = _mm512_loadu_ps(m + i + 16);
        __m512 v0 = _mm512_loadu_ps(v + i), v1 = _mm512_loadu_ps(v + i + 16);
        aw512_math(c, lsmall, _mm512_loadu_ps(a + i), &p0, &m0, &v0);
        aw512_math(c, lsmall, _mm512_loadu_ps(a + i + 16), &p1, &m1, &v1);
        _mm512_storeu_ps(p + i, p0);
        _mm512_storeu_ps(p + i + 16, p1);
        _mm512_storeu_ps(m + i, m0);
        _mm512_storeu_ps(m + i + 16, m1);
        _mm512_storeu_ps(v + i, v0);
        _mm512_storeu_ps(v + i + 16, v1);
        _mm512_storeu_ps(a + i, _mm512_setzero_ps());
        _mm512_storeu_ps(a + i + 16, _mm512_setzero_ps());
        aw512_stream_w(wt, t, i, p0, p1);
    }
    return i;
}

/* aw512_main saving old values: per 32-element block, loads, undo stores,
 * the count, then the block's new values. */
AW_AVX512 AW_INLINE uint64_t aw512_main_undo(const aw512_c *c, const int wt, const int lsmall,
                                             const adamw_tensor *t, uint64_t i, uint64_t hi,
                                             const aw_undo *u)
{
    float *p = t->master, *m = t->m, *v = t->v, *a = t->accum; /* fp32 [n] */
    for (; i + 32 <= hi; i += 32) {
        uint64_t o = i - u->lo;
        __m512 p0 = _mm512_loadu_ps(p + i), p1 = _mm512_loadu_ps(p + i + 16);
        __m512 m0 = _mm512_loadu_ps(m + i), m1 = _mm512_loadu_ps(m + i + 16);
        __m512 v0 = _mm512_loadu_ps(v + i), v1 = _mm512_loadu_ps(v + i + 16);
        __m512 a0 = _mm512_loadu_ps(a + i), a1 = _mm512_loadu_ps(a + i + 16);
        _mm512_storeu_ps(u->p + o, p0);
        _mm512_storeu_ps(u->p + o + 16, p1);
        _mm512_storeu_ps(u->m + o, m0);
        _mm512_storeu_ps(u->m + o + 16, m1);
        _mm512_storeu_ps(u->v + o, v0);
        _mm512_storeu_ps(u->v + o + 16, v1);
        _mm512_storeu_ps(u->a + o, a0);
        _mm512_storeu_ps(u->a + o + 16, a1);
        aw_saved(u, i + 32);
        aw512_math(c, lsmall, a0, &p0, &m0, &v0);
        aw512_math(c, lsmall, a1, &p1, &m1, &v1);
        _mm512_storeu_ps(p + i, p0);
        _mm512_storeu_ps(p + i + 16, p1);
        _mm512_storeu_ps(m + i, m0);
        _mm512_storeu_ps(m + i + 16, m1);
        _mm512_storeu_ps(v + i, v0);
        _mm512_storeu_ps(v + i + 16, v1);
        _mm512_storeu_ps(a + i, _mm512_setzero_ps());
        _mm512_storeu_ps(a + i + 16, _mm512_setzero_ps());
        aw512_stream_w(wt, t, i, p0, p1);
    }
    return i;
}

AW_AVX512 static void aw_step_avx512(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    aw512_c c = aw512_consts(k);
    int wt = t->w != NULL ? (int)t->w_dtype : DT_INVALID;
    uint64_t i = lo + aw_head(t, lo, hi);
    if (k->lsmall)
        aw512_masked_range(&c, 1, t, wt, lo, i);
    else
        aw512_masked_range(&c, 0, t, wt, lo, i);
#define AW512_CASE(WT)                                                         \
    i = k->lsmall ? aw512_main(&c, WT, 1, t, i, hi) : aw512_main(&c, WT, 0, t, i, hi)
    switch (wt) {
    case DT_BF16: AW512_CASE(DT_BF16); break;
    case DT_F16: AW512_CASE(DT_F16); break;
    case DT_F32: AW512_CASE(DT_F32); break;
    default: AW512_CASE(DT_INVALID); break;
    }
#undef AW512_CASE
    if (k->lsmall)
        aw512_masked_range(&c, 1, t, wt, i, hi);
    else
        aw512_masked_range(&c, 0, t, wt, i, hi);
    if (wt != DT_INVALID)
        _mm_sfence(); /* streaming stores are weakly ordered: drain before anyone is told */
}

AW_AVX512 static void aw_step_avx512_undo(const aw_k *k, const adamw_tensor *t, uint64_t lo,
                                        uint64_t hi, const aw_undo *u)
{
    aw512_c c = aw512_consts(k);
    int wt = t->w != NULL ? (int)t->w_dtype : DT_INVALID;
    uint64_t i = lo + aw_head(t, lo, hi);
    if (k->lsmall)
        aw512_masked_range_undo(&c, 1, t, wt, lo, i, u);
    else
        aw512_masked_range_undo(&c, 0, t, wt, lo, i, u);
#define AW512_CASE(WT)                                                         \
    i = k->lsmall ? aw512_main_undo(&c, WT, 1, t, i, hi, u) : aw512_main_undo(&c, WT, 0, t, i, hi, u)
    switch (wt) {
    case DT_BF16: AW512_CASE(DT_BF16); break;
    case DT_F16: AW512_CASE(DT_F16); break;
    case DT_F32: AW512_CASE(DT_F32); break;
    default: AW512_CASE(DT_INVALID); break;
    }
#undef AW512_CASE
    if (k->lsmall)
        aw512_masked_range_undo(&c, 1, t, wt, i, hi, u);
    else
        aw512_masked_range_undo(&c, 0, t, wt, i, hi, u);
    if (wt != DT_INVALID)
        _mm_sfence(); /* streaming stores are weakly ordered: drain before anyone is told */
}

AW_AVX512 static void aw_accum_avx512(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi)
{
    if (gt != DT_F32 && gt != DT_BF16 && gt != DT_F16)
        return;
    for (uint64_t i = lo; i < hi; i += 16) {
        __mmask16 k = _cvtu32_mask16(hi - i >= 16 ? 0xffffu : (uint32_t)((1u << (hi - i)) - 1u));
        __m512 x;
        if (gt == DT_F32) {
            x = _mm512_maskz_loadu_ps(k, (const float *)g + i);
        } else {
            __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)g + i);
            x = gt == DT_BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                              : _mm512_cvtph_ps(h);
        }
        _mm512_mask_storeu_ps(accum + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, accum + i), x));
    }
}

AW_AVX512 static void aw_accum_avx512_undo(float *accum, const void *g, dt_type gt, uint64_t lo,
                                         uint64_t hi, const aw_undo *u)
{
    for (uint64_t i = lo; i < hi; i += 16) {
        uint64_t r = hi - i < 16 ? hi - i : 16;
        __mmask16 k = _cvtu32_mask16(r == 16 ? 0xffffu : (uint32_t)((1u << r) - 1u));
        __m512 a = _mm512_maskz_loadu_ps(k, accum + i);
        _mm512_mask_storeu_ps(u->a + (i - u->lo), k, a);
        aw_saved(u, i + r);
        __m512 x;
        if (gt == DT_F32) {
            x = _mm512_maskz_loadu_ps(k, (const float *)g + i);
        } else {
            __m256i h = _mm256_maskz_loadu_epi16(k, (const uint16_t *)g + i);
            x = gt == DT_BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                              : _mm512_cvtph_ps(h);
        }
        _mm512_mask_storeu_ps(accum + i, k, _mm512_add_ps(a, x));
    }
}

AW_AVX512 AW_INLINE void aw512_sq16(__m512 f, __m512d *lo, __m512d *hi)
{
    __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
    *lo = _mm512_fmadd_pd(d0, d0, *lo);
    *hi = _mm512_fmadd_pd(d1, d1, *hi);
}

AW_AVX512 static double aw_sumsq_avx512(const float *x, uint64_t n)
{
    __m512d acc[4]; /* acc[q] holds lanes 8q .. 8q+7 */
    for (int q = 0; q < 4; q++)
        acc[q] = _mm512_setzero_pd();
    uint64_t j = 0;
    for (; j + AW_LANES <= n; j += AW_LANES) {
        aw512_sq16(_mm512_loadu_ps(x + j), &acc[0], &acc[1]);
        aw512_sq16(_mm512_loadu_ps(x + j + 16), &acc[2], &acc[3]);
    }
    if (j < n) { /* masked-off elements load as zeros, which add nothing (lanes are never -0) */
        uint64_t r = n - j;
        uint32_t k0 = r >= 16 ? 0xffffu : (1u << r) - 1u, k1 = r > 16 ? (1u << (r - 16)) - 1u : 0u;
        aw512_sq16(_mm512_maskz_loadu_ps(_cvtu32_mask16(k0), x + j), &acc[0], &acc[1]);
        aw512_sq16(_mm512_maskz_loadu_ps(_cvtu32_mask16(k1), x + j + 16), &acc[2], &acc[3]);
    }
    __m512d s0 = _mm512_add_pd(acc[0], acc[2]); /* h = 16 */
    __m512d s1 = _mm512_add_pd(acc[1], acc[3]);
    __m512d s8 = _mm512_add_pd(s0, s1);         /* h = 8 */
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

/* ---- dispatch -------------------------------------------------------------------- */

typedef struct aw_ops {
    const char *name;
    void (*step)(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi);
    void (*accum)(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi);
    double (*sumsq)(const float *x, uint64_t n);
    void (*step_undo)(const aw_k *k, const adamw_tensor *t, uint64_t lo, uint64_t hi,
                      const aw_undo *u);
    void (*accum_undo)(float *accum, const void *g, dt_type gt, uint64_t lo, uint64_t hi,
                       const aw_undo *u);
} aw_ops;

static const aw_ops aw_ops_avx512 = {"avx512", aw_step_avx512, aw_accum_avx512, aw_sumsq_avx512,
                                     aw_step_avx512_undo, aw_accum_avx512_undo};
static const aw_ops aw_ops_avx2 = {"avx2", aw_step_avx2, aw_accum_avx2, aw_sumsq_avx2,
                                   aw_step_avx2_undo, aw_accum_avx2_undo};
static const aw_ops aw_ops_scalar = {"scalar", aw_step_scalar, aw_accum_scalar, aw_sumsq_scalar,
                                     aw_step_scalar_undo, aw_accum_scalar_undo};

/* The one piece of process state: the instruction set, a property of the
 * machine. Detection is idempotent, so racing first calls are harmless. */
static _Atomic(const aw_ops *) aw_cur;

static int aw_has(const aw_ops *o)
{
    __builtin_cpu_init();
    if (o == &aw_ops_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    if (o == &aw_ops_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    return 1;
}

static const aw_ops *aw_ops_get(void)
{
    const aw_ops *o = atomic_load_explicit(&aw_cur, memory_order_acquire);
    if (o != NULL)
        return o;
    o = aw_has(&aw_ops_avx512) ? &aw_ops_avx512 : aw_has(&aw_ops_avx2) ? &aw_ops_avx2 : &aw_ops_scalar;
    atomic_store_explicit(&aw_cur, o, memory_order_release);
    return o;
}

const char *adamw_isa(void)
{
    return aw_ops_get()->name;
}

int adamw_force_isa(const char *isa, rt_err *err)
{
    static const aw_ops *const all[] = {&aw_ops_avx512, &aw_ops_avx2, &aw_ops_scalar};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (isa == NULL || strcmp(isa, all[i]->name) != 0)
            continue;
        if (!aw_has(all[i]))
            return err_set(err, -ENOTSUP, "adamw: this CPU lacks the instruction set \"%s\"", isa);
        atomic_store_explicit(&aw_cur, all[i], memory_order_release);
        return 0;
    }
    return err_set(err, -EINVAL, "adamw: unknown instruction set \"%s\" (expected avx512, avx2 or scalar)",
                   isa != NULL ? isa : "(null)");
}

/* ---- kernels on ranges ------------------------------------------------------------- */

void adamw_step_range(const adamw_hparams *hp, float grad_scale, const adamw_tensor *t,
                      uint64_t lo, uint64_t hi)
{
    if (hi > t->n)
        hi = t->n;
    if (lo >= hi)
        return;
    aw_k k = aw_consts(hp, grad_scale, t->decay);
    aw_ops_get()->step(&k, t, lo, hi);
}

void adamw_accum_range(float *accum, const void *g, dt_type g_dtype, uint64_t lo, uint64_t hi)
{
    if (lo < hi)
        aw_ops_get()->accum(accum, g, g_dtype, lo, hi);
}

void adamw_step_range_undo(const adamw_hparams *hp, float grad_scale, const adamw_tensor *t,
                           uint64_t lo, uint64_t hi, float *undo_master, float *undo_m,
                           float *undo_v, float *undo_accum, uint64_t *saved)
{
    if (hi > t->n)
        hi = t->n;
    if (lo >= hi)
        return;
    aw_k k = aw_consts(hp, grad_scale, t->decay);
    aw_undo u = {undo_master, undo_m, undo_v, undo_accum, lo, saved};
    aw_ops_get()->step_undo(&k, t, lo, hi, &u);
}

void adamw_accum_range_undo(float *accum, const void *g, dt_type g_dtype, uint64_t lo,
                            uint64_t hi, float *undo_accum, uint64_t *saved)
{
    if (lo >= hi)
        return;
    aw_undo u = {NULL, NULL, NULL, undo_accum, lo, saved};
    if (g_dtype != DT_F32 && g_dtype != DT_BF16 && g_dtype != DT_F16) {
        /* not a gradient type: accum is left alone (as adamw_accum_range does),
         * and the undo still holds its values */
        memcpy(undo_accum, accum + lo, (size_t)(hi - lo) * sizeof *undo_accum);
        aw_saved(&u, hi);
        return;
    }
    aw_ops_get()->accum_undo(accum, g, g_dtype, lo, hi, &u);
}

double adamw_sumsq_chunk(const float *x, uint64_t n, uint64_t c)
{
    if (c >= (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK)
        return 0.0;
    uint64_t lo = c * ADAMW_CHUNK, hi = n - lo < ADAMW_CHUNK ? n : lo + ADAMW_CHUNK;
    return aw_ops_get()->sumsq(x + lo, hi - lo);
}

/* ---- the pool ------------------------------------------------------------------ */

typedef struct aw_thread {
    adamw_pool *pool;
    int tid;
} aw_thread;

struct adamw_pool {
    /* Futex words, each on its own cache line: gen is read by every idle
     * thread, left written by every finishing one. */
    _Alignas(AW_ALIGN) _Atomic uint32_t gen; /* bumped once per run, and to stop */
    _Alignas(AW_ALIGN) _Atomic uint32_t left; /* threads still in the current run */
    _Alignas(AW_ALIGN) adamw_pool_fn fn;       /* the current run: published by the gen bump */
    void *ctx;
    int stop;
    int n, started;
    int cpu[ADAMW_MAX_THREADS];
    pthread_t th[ADAMW_MAX_THREADS];
    aw_thread arg[ADAMW_MAX_THREADS];
    double *part; /* [AW_SUMSQ_WINDOW] chunk partials of adamw_pool_sumsq */
    char desc[8 * ADAMW_MAX_THREADS + 64];
};

static void aw_futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void aw_futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static void *aw_worker(void *arg)
{
    aw_thread *self = arg;
    adamw_pool *p = self->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spin = 0;
        /* acquire: pairs with the caller's release bump, so fn, ctx and stop are visible */
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (spin++ < AW_SPIN)
                _mm_pause();
            else
                aw_futex_wait(&p->gen, seen);
        }
        seen = g;
        if (p->stop)
            return NULL;
        p->fn(p->ctx, self->tid, p->n);
        /* acq_rel: the caller's acquire load of left == 0 then sees this thread's writes */
        if (atomic_fetch_sub_explicit(&p->left, 1, memory_order_acq_rel) == 1)
            aw_futex_wake(&p->left, 1);
    }
}

/* "0,1,2,3,8" with runs of three or more ascending CPUs written "0-3". */
static void aw_describe(adamw_pool *p)
{
    char *s = p->desc, *end = p->desc + sizeof p->desc;
    s += snprintf(s, (size_t)(end - s), "%d thread%s pinned to CPU%s ", p->n, p->n == 1 ? "" : "s",
                  p->n == 1 ? "" : "s");
    for (int i = 0; i < p->n && s < end;) {
        int j = i;
        while (j + 1 < p->n && p->cpu[j + 1] == p->cpu[j] + 1)
            j++;
        if (j - i >= 2) {
            s += snprintf(s, (size_t)(end - s), "%s%d-%d", i ? "," : "", p->cpu[i], p->cpu[j]);
            i = j + 1;
        } else {
            s += snprintf(s, (size_t)(end - s), "%s%d", i ? "," : "", p->cpu[i]);
            i++;
        }
    }
    if (s < end)
        snprintf(s, (size_t)(end - s), " (%s)", adamw_isa());
}

int adamw_pool_open(int n_threads, const int *cpus, adamw_pool **out, rt_err *err)
{
    int rc;
    pthread_attr_t attr;
    sigset_t all, old;
    int stage = 0; /* 1: attr initialised, 2: and the caller's signals blocked */
    *out = NULL;
    if (n_threads < 1 || n_threads > ADAMW_MAX_THREADS)
        return err_set(err, -EINVAL, "adamw pool: %d threads requested; expected 1 to %d", n_threads,
                       ADAMW_MAX_THREADS);
    adamw_pool *p = aligned_alloc(AW_ALIGN, (sizeof *p + AW_ALIGN - 1) / AW_ALIGN * AW_ALIGN);
    if (p == NULL)
        return err_set(err, -ENOMEM, "adamw pool: out of memory");
    memset(p, 0, sizeof *p);
    p->n = n_threads;
    p->part = malloc(AW_SUMSQ_WINDOW * sizeof *p->part);
    if (p->part == NULL) {
        rc = err_set(err, -ENOMEM, "adamw pool: out of memory for %u sum-of-squares partials",
                     AW_SUMSQ_WINDOW);
        goto fail;
    }
    if (cpus != NULL) {
        for (int i = 0; i < n_threads; i++) {
            if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) {
                rc = err_set(err, -EINVAL, "adamw pool: thread %d: CPU %d out of range 0..%d", i,
                             cpus[i], CPU_SETSIZE - 1);
                goto fail;
            }
            p->cpu[i] = cpus[i];
        }
    } else {
        cpu_set_t mask;
        if (sched_getaffinity(0, sizeof mask, &mask) != 0) {
            rc = err_set(err, -errno, "adamw pool: sched_getaffinity: %s", strerror(errno));
            goto fail;
        }
        int allowed[CPU_SETSIZE], na = 0;
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &mask))
                allowed[na++] = c;
        if (na == 0) {
            rc = err_set(err, -EINVAL, "adamw pool: the process may run on no CPU");
            goto fail;
        }
        for (int i = 0; i < n_threads; i++)
            p->cpu[i] = allowed[i % na]; /* more threads than CPUs: round-robin */
    }
    aw_describe(p);

    if ((rc = -pthread_attr_init(&attr)) < 0) {
        err_set(err, rc, "adamw pool: pthread_attr_init: %s", strerror(-rc));
        goto fail;
    }
    stage = 1;
    /* The threads inherit a mask blocking every signal, so the process's
     * flag-setting handlers run on its own threads and interrupt their waits. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    stage = 2;
    for (int i = 0; i < n_threads; i++) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(p->cpu[i], &one);
        /* pinned from its first instruction: set on the attributes, not after the start */
        if ((rc = -pthread_attr_setaffinity_np(&attr, sizeof one, &one)) < 0) {
            err_set(err, rc, "adamw pool: thread %d: cannot pin to CPU %d: %s", i, p->cpu[i],
                    strerror(-rc));
            goto fail;
        }
        p->arg[i] = (aw_thread){p, i};
        if ((rc = -pthread_create(&p->th[i], &attr, aw_worker, &p->arg[i])) < 0) {
            err_set(err, rc, "adamw pool: thread %d on CPU %d: %s%s", i, p->cpu[i], strerror(-rc),
                    rc == -EINVAL ? " (is the CPU in the process's affinity mask?)" : "");
            goto fail;
        }
        p->started = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    *out = p;
    return 0;

fail:
    if (stage == 2)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (stage >= 1)
        pthread_attr_destroy(&attr);
    adamw_pool_close(p);
    return rc;
}

void adamw_pool_close(adamw_pool *p)
{
    if (p == NULL)
        return;
    p->stop = 1;
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    aw_futex_wake(&p->gen, INT32_MAX);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->th[i], NULL);
    free(p->part);
    free(p);
}

int adamw_pool_threads(const adamw_pool *p)
{
    return p->n;
}

const char *adamw_pool_describe(const adamw_pool *p)
{
    return p->desc;
}

void adamw_pool_run(adamw_pool *p, adamw_pool_fn fn, void *ctx)
{
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->left, (uint32_t)p->n, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    aw_futex_wake(&p->gen, INT32_MAX);
    uint32_t l;
    while ((l = atomic_load_explicit(&p->left, memory_order_acquire)) != 0)
        aw_futex_wait(&p->left, l);
}

/* ---- whole tensors on the pool --------------------------------------------------- */

static uint64_t aw_chunks(uint64_t n)
{
    return (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
}

/* The first chunk c >= 0 of a tensor whose chunk 0 is global chunk base
 * such that base + c is thread tid's (== tid mod nt). */
static uint64_t aw_first(uint64_t base, int tid, int nt)
{
    uint64_t r = base % (uint64_t)nt;
    return ((uint64_t)tid + (uint64_t)nt - r) % (uint64_t)nt;
}

typedef struct aw_step_job {
    const aw_ops *ops;
    aw_k k[2]; /* [0] without decay, [1] with */
    const adamw_tensor *t;
    int n;
} aw_step_job;

static void aw_step_fn(void *ctx, int tid, int nt)
{
    const aw_step_job *j = ctx;
    uint64_t base = 0;
    for (int i = 0; i < j->n; i++) {
        const adamw_tensor *t = &j->t[i];
        uint64_t nc = aw_chunks(t->n);
        for (uint64_t c = aw_first(base, tid, nt); c < nc; c += (uint64_t)nt) {
            uint64_t lo = c * ADAMW_CHUNK, hi = t->n - lo < ADAMW_CHUNK ? t->n : lo + ADAMW_CHUNK;
            j->ops->step(&j->k[t->decay ? 1 : 0], t, lo, hi);
        }
        base += nc;
    }
}

void adamw_pool_step(adamw_pool *p, const adamw_hparams *hp, float grad_scale,
                     const adamw_tensor *t, int n)
{
    aw_step_job j = {aw_ops_get(), {aw_consts(hp, grad_scale, false), aw_consts(hp, grad_scale, true)},
                     t, n};
    adamw_pool_run(p, aw_step_fn, &j);
}

typedef struct aw_accum_ctx {
    const aw_ops *ops;
    const adamw_accum_job *jobs;
    int n;
} aw_accum_ctx;

static void aw_accum_fn(void *ctx, int tid, int nt)
{
    const aw_accum_ctx *j = ctx;
    uint64_t base = 0;
    for (int i = 0; i < j->n; i++) {
        const adamw_accum_job *a = &j->jobs[i];
        uint64_t nc = aw_chunks(a->n);
        for (uint64_t c = aw_first(base, tid, nt); c < nc; c += (uint64_t)nt) {
            uint64_t lo = c * ADAMW_CHUNK, hi = a->n - lo < ADAMW_CHUNK ? a->n : lo + ADAMW_CHUNK;
            j->ops->accum(a->accum, a->g, a->g_dtype, lo, hi);
        }
        base += nc;
    }
}

void adamw_pool_accum(adamw_pool *p, const adamw_accum_job *jobs, int n)
{
    aw_accum_ctx j = {aw_ops_get(), jobs, n};
    adamw_pool_run(p, aw_accum_fn, &j);
}

/* One window of the sums of squares: global chunks [g0, g1) of the tensors,
 * partial of chunk g into part[g - g0]. */
typedef struct aw_sumsq_job {
    const aw_ops *ops;
    const float *const *x;
    const uint64_t *len;
    int n;
    uint64_t g0, g1;
    double *part; /* [g1 - g0] */
} aw_sumsq_job;

static void aw_sumsq_fn(void *ctx, int tid, int nt)
{
    const aw_sumsq_job *j = ctx;
    uint64_t base = 0;
    for (int i = 0; i < j->n && base < j->g1; i++) {
        uint64_t nc = aw_chunks(j->len[i]);
        if (base + nc > j->g0) {
            uint64_t c = j->g0 > base ? j->g0 - base : 0; /* first chunk in the window */
            c += aw_first(base + c, tid, nt);
            for (; c < nc && base + c < j->g1; c += (uint64_t)nt) {
                uint64_t lo = c * ADAMW_CHUNK;
                uint64_t hi = j->len[i] - lo < ADAMW_CHUNK ? j->len[i] : lo + ADAMW_CHUNK;
                j->part[base + c - j->g0] = j->ops->sumsq(j->x[i] + lo, hi - lo);
            }
        }
        base += nc;
    }
}

void adamw_pool_sumsq(adamw_pool *p, const float *const *x, const uint64_t *len, int n,
                      double *out)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        out[i] = 0.0;
        total += aw_chunks(len[i]);
    }
    aw_sumsq_job j = {aw_ops_get(), x, len, n, 0, 0, p->part};
    for (j.g0 = 0; j.g0 < total; j.g0 = j.g1) {
        j.g1 = total - j.g0 < AW_SUMSQ_WINDOW ? total : j.g0 + AW_SUMSQ_WINDOW;
        adamw_pool_run(p, aw_sumsq_fn, &j);
        /* add the window's partials in chunk order into their tensors */
        uint64_t base = 0;
        for (int i = 0; i < n; i++) {
            uint64_t nc = aw_chunks(len[i]);
            uint64_t a = base > j.g0 ? base : j.g0, b = base + nc < j.g1 ? base + nc : j.g1;
            for (uint64_t g = a; g < b; g++)
                out[i] += p->part[g - j.g0];
            base += nc;
        }
    }
}

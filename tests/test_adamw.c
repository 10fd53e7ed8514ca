/*
 * test_adamw: the parameter server's optimizer kernels and thread pool.
 *
 * - The step against a plain double-precision AdamW written here from the
 *   textbook formulas (relative 1e-6), and bit for bit against an fp32
 *   mirror of PyTorch's operation order, for every instruction set the CPU
 *   has, with and without weight decay, fp32/bf16/f16/no W, both forms of
 *   PyTorch's lerp, at several steps of the bias corrections.
 * - Bitwise equality of every output (master, m, v, W, zeroed accumulator)
 *   across instruction sets, splits of [lo, hi) and pools of 1, 2, 3 and 7
 *   threads (more threads than CPUs: pinned round-robin), on sizes that are
 *   not multiples of 16 or of ADAMW_CHUNK and on W not aligned to a line.
 * - bf16 conversion against a reference that rounds by comparing distances
 *   to the two neighbouring bf16 values, in the kernels' vector paths too.
 * - Sums of squares: the documented lane/fold order reimplemented here, equal
 *   for every ISA and thread count, and close to a long double sum.
 * - The undo-saving variants (adamw_step_range_undo, adamw_accum_range_undo):
 *   bitwise the arrays of the plain kernels for every ISA and split, the
 *   undo buffers exactly the old values, the progress count at the end.
 * - Gradient accumulation from f32/bf16/f16, the pool's placement, its
 *   barrier under many runs, and its errors.
 *
 * The instruction set is process state (adamw_force_isa): tests run one at a
 * time, and the fixture restores the one picked at start-up.
 */
#define _GNU_SOURCE /* sched_getcpu, sched_getaffinity */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "services/paramserver/adamw.h"

static const char *const ISAS[] = {"avx512", "avx2", "scalar"};
#define N_ISAS 3
static char default_isa[16];

/* xorshift64*: deterministic test inputs */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* uniform in [-1, 1) */
static float rng_unit(uint64_t *s)
{
    return (float)((double)(rng_next(s) >> 40) * 0x1p-23 - 1.0);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Forces isa; returns 0, or -1 (and says so) when the CPU lacks it. */
static int use_isa(const char *isa)
{
    rt_err err = {{0}};
    int rc = adamw_force_isa(isa, &err);
    if (rc == -ENOTSUP) {
        print_message("  (skipping %s: %s)\n", isa, err.msg);
        return -1;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(adamw_isa(), isa);
    return 0;
}

static int restore_isa(void **state)
{
    (void)state;
    assert_int_equal(adamw_force_isa(default_isa, NULL), 0);
    return 0;
}

static size_t wsize(dt_type t)
{
    return t == DT_F32 ? 4 : 2;
}

/* ---- sets of tensors -------------------------------------------------------------- */

#define MAXT 16

typedef struct tset {
    int n;
    adamw_tensor t[MAXT];
    uint8_t *wbase[MAXT]; /* allocation holding W at byte offset woff */
    size_t woff[MAXT];
} tset;

/* Tensors of the given sizes, W dtypes (DT_INVALID: no W) and W byte offsets
 * from a 64-byte boundary, filled from seed with AdamW-like magnitudes. */
static void tset_init(tset *s, int n, const uint64_t *len, const dt_type *wt, const size_t *woff,
                      uint64_t seed)
{
    assert_true(n <= MAXT);
    memset(s, 0, sizeof *s);
    s->n = n;
    uint64_t r = seed;
    for (int i = 0; i < n; i++) {
        adamw_tensor *t = &s->t[i];
        size_t cnt = len[i] ? len[i] : 1;
        t->n = len[i];
        t->master = malloc(cnt * sizeof(float));
        t->m = malloc(cnt * sizeof(float));
        t->v = malloc(cnt * sizeof(float));
        t->accum = malloc(cnt * sizeof(float));
        assert_non_null(t->master);
        assert_non_null(t->m);
        assert_non_null(t->v);
        assert_non_null(t->accum);
        t->decay = i % 2 == 0;
        t->w_dtype = wt[i];
        if (wt[i] != DT_INVALID) {
            s->woff[i] = woff[i];
            s->wbase[i] = aligned_alloc(64, (cnt * wsize(wt[i]) + woff[i] + 63) / 64 * 64);
            assert_non_null(s->wbase[i]);
            memset(s->wbase[i], 0xee, cnt * wsize(wt[i]) + woff[i]);
            t->w = s->wbase[i] + woff[i];
        }
        for (uint64_t j = 0; j < len[i]; j++) {
            t->master[j] = rng_unit(&r);
            t->m[j] = 1e-3f * rng_unit(&r);
            t->v[j] = 1e-6f * fabsf(rng_unit(&r));
            t->accum[j] = 4e-3f * rng_unit(&r);
            if (j % 97 == 5) /* zeros: first steps and padded rows */
                t->m[j] = t->v[j] = t->accum[j] = 0.0f;
        }
    }
}

static void tset_copy(tset *d, const tset *s)
{
    uint64_t len[MAXT];
    dt_type wt[MAXT];
    for (int i = 0; i < s->n; i++) {
        len[i] = s->t[i].n;
        wt[i] = s->t[i].w_dtype;
    }
    tset_init(d, s->n, len, wt, s->woff, 1);
    for (int i = 0; i < s->n; i++) {
        size_t b = s->t[i].n * sizeof(float);
        memcpy(d->t[i].master, s->t[i].master, b);
        memcpy(d->t[i].m, s->t[i].m, b);
        memcpy(d->t[i].v, s->t[i].v, b);
        memcpy(d->t[i].accum, s->t[i].accum, b);
        d->t[i].decay = s->t[i].decay;
        if (s->t[i].w != NULL)
            memcpy(d->t[i].w, s->t[i].w, s->t[i].n * wsize(s->t[i].w_dtype));
    }
}

static void tset_free(tset *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].master);
        free(s->t[i].m);
        free(s->t[i].v);
        free(s->t[i].accum);
        free(s->wbase[i]);
    }
}

static void assert_same(const void *a, const void *b, size_t bytes, const char *what, int tensor,
                        const char *arr)
{
    if (memcmp(a, b, bytes) == 0)
        return;
    const uint8_t *x = a, *y = b;
    size_t k = 0;
    while (x[k] == y[k])
        k++;
    fail_msg("%s: tensor %d %s differs at byte %zu", what, tensor, arr, k);
}

static void tset_assert_equal(const tset *a, const tset *b, const char *what)
{
    for (int i = 0; i < a->n; i++) {
        size_t bytes = a->t[i].n * sizeof(float);
        assert_same(a->t[i].master, b->t[i].master, bytes, what, i, "master");
        assert_same(a->t[i].m, b->t[i].m, bytes, what, i, "m");
        assert_same(a->t[i].v, b->t[i].v, bytes, what, i, "v");
        assert_same(a->t[i].accum, b->t[i].accum, bytes, what, i, "accum");
        if (a->t[i].w != NULL)
            assert_same(a->t[i].w, b->t[i].w, a->t[i].n * wsize(a->t[i].w_dtype), what, i, "W");
    }
}

static void tset_assert_accum_zero(const tset *s, const char *what)
{
    for (int i = 0; i < s->n; i++)
        for (uint64_t j = 0; j < s->t[i].n; j++)
            if (f32_bits(s->t[i].accum[j]) != 0)
                fail_msg("%s: tensor %d accum[%llu] = %g, not +0", what, i, (unsigned long long)j,
                         (double)s->t[i].accum[j]);
}

static void tset_refill_accum(tset *s, uint64_t seed)
{
    uint64_t r = seed;
    for (int i = 0; i < s->n; i++)
        for (uint64_t j = 0; j < s->t[i].n; j++)
            s->t[i].accum[j] = 4e-3f * rng_unit(&r);
}

/* ---- references --------------------------------------------------------------- */

/* bf16 of finite x by distances: the candidates are x with its low 16 bits
 * cleared (towards zero) and the next pattern away from zero (0x7f80 standing
 * for 2^128 past the largest finite value); the nearer wins, ties the even. */
static uint16_t ref_bf16(float x)
{
    if (isnan(x))
        return 0x7fc0;
    if (isinf(x))
        return x > 0 ? 0x7f80 : 0xff80;
    uint32_t lo = f32_bits(x) >> 16, hi = lo + 1;
    double a = fabs((double)x);
    double vlo = fabs((double)bits_f32(lo << 16));
    double vhi = (hi & 0x7fffu) == 0x7f80u ? ldexp(1.0, 128) : fabs((double)bits_f32(hi << 16));
    double dl = a - vlo, dh = vhi - a;
    return (uint16_t)(dl < dh ? lo : dh < dl ? hi : (lo & 1u) ? hi : lo);
}

/* The step in double from the textbook formulas (Loshchilov & Hutter's
 * AdamW as torch.optim.AdamW defines it). */
typedef struct refout {
    double p, m, v;
    double tol_p, tol_m, tol_v; /* 1e-6 of the magnitudes of the terms */
} refout;

static refout ref_step(const adamw_hparams *hp, double gs, bool decay, double p, double m, double v,
                       double a)
{
    refout r;
    double g = a * gs;
    double t = (double)hp->step;
    double p1 = decay ? p * (1.0 - hp->lr * hp->weight_decay) : p;
    r.m = hp->beta1 * m + (1.0 - hp->beta1) * g;
    r.v = hp->beta2 * v + (1.0 - hp->beta2) * g * g;
    double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
    double den = sqrt(r.v) / sqrt(bc2) + hp->eps;
    double upd = hp->lr / bc1 * r.m / den;
    r.p = p1 - upd;
    r.tol_m = 1e-6 * (hp->beta1 * fabs(m) + (1.0 - hp->beta1) * fabs(g)) + 1e-30;
    r.tol_v = 1e-6 * r.v + 1e-37;
    r.tol_p = 1e-6 * (fabs(p1) + hp->lr / bc1 * r.tol_m / 1e-6 / den) + 1e-30;
    return r;
}

/* PyTorch's fp32 operation order (see adamw.c), written out again. No
 * product here feeds an addition outside fmaf, so whatever -ffp-contract the
 * test is built with, the operations are these. */
static float mirror_step(const adamw_hparams *hp, float gs, bool decay, float *p, float *m, float *v,
                         float a)
{
    double t = (double)hp->step;
    float w = (float)(1.0 - hp->beta1);
    float g = a * gs;
    float pp = *p * (decay ? (float)(1.0 - hp->lr * hp->weight_decay) : 1.0f);
    if (fabsf(w) < 0.5f)
        *m = fmaf(w, g - *m, *m);
    else
        *m = fmaf(w - 1.0f, g - *m, g);
    *v = fmaf((float)(1.0 - hp->beta2) * g, g, *v * (float)hp->beta2);
    float den = sqrtf(*v) / (float)sqrt(1.0 - pow(hp->beta2, t)) + (float)hp->eps;
    *p = pp + ((float)(-(hp->lr / (1.0 - pow(hp->beta1, t)))) * *m) / den;
    return *p;
}

static void check_close(double got, double want, double tol, const char *what, uint64_t step,
                        uint64_t j)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("%s at step %llu element %llu: %.9g, reference %.9g (tolerance %.3g)", what,
                 (unsigned long long)step, (unsigned long long)j, got, want, tol);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_isa(void **state)
{
    (void)state;
    const char *isa = adamw_isa();
    assert_true(strcmp(isa, "avx512") == 0 || strcmp(isa, "avx2") == 0 || strcmp(isa, "scalar") == 0);
    rt_err err = {{0}};
    assert_int_equal(adamw_force_isa("sse9", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "sse9"));
    assert_int_equal(adamw_force_isa(NULL, NULL), -EINVAL);
    assert_string_equal(adamw_isa(), isa);
    int avail = 0;
    for (int k = 0; k < N_ISAS; k++)
        if (use_isa(ISAS[k]) == 0)
            avail++;
    assert_true(avail >= 1);
    assert_int_equal(use_isa("scalar"), 0);
}

static void test_step_vs_reference(void **state)
{
    (void)state;
    static const uint64_t steps[] = {1, 2, 10, 1000, 100000};
    static const dt_type wts[] = {DT_INVALID, DT_F32, DT_BF16, DT_F16};
    static const double beta1s[] = {0.9, 0.3}; /* lerp weight below and above 0.5 */
    const uint64_t n = 1000;
    for (int k = 0; k < N_ISAS; k++) {
        if (use_isa(ISAS[k]) < 0)
            continue;
        for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++)
            for (size_t wi = 0; wi < 4; wi++)
                for (int b = 0; b < 2; b++) {
                    adamw_hparams hp = {.lr = 3e-3, .beta1 = beta1s[b], .beta2 = 0.999, .eps = 1e-8,
                                        .weight_decay = 0.1, .step = steps[si]};
                    float gs = 0.375f;
                    uint64_t len[2] = {n, n};
                    dt_type wt[2] = {wts[wi], wts[wi]};
                    size_t off[2] = {0, 2 * wsize(wts[wi])};
                    tset s, orig;
                    tset_init(&s, 2, len, wt, off, 11 + si * 7 + wi * 3 + (uint64_t)b);
                    tset_copy(&orig, &s);
                    for (int i = 0; i < 2; i++)
                        adamw_step_range(&hp, gs, &s.t[i], 0, n);
                    for (int i = 0; i < 2; i++) {
                        const adamw_tensor *t = &s.t[i], *o = &orig.t[i];
                        for (uint64_t j = 0; j < n; j++) {
                            refout r = ref_step(&hp, gs, t->decay, o->master[j], o->m[j], o->v[j],
                                                o->accum[j]);
                            check_close(t->m[j], r.m, r.tol_m, "m", hp.step, j);
                            check_close(t->v[j], r.v, r.tol_v, "v", hp.step, j);
                            check_close(t->master[j], r.p, r.tol_p, "master", hp.step, j);
                            float mp = o->master[j], mm = o->m[j], mv = o->v[j];
                            mirror_step(&hp, gs, t->decay, &mp, &mm, &mv, o->accum[j]);
                            if (f32_bits(mp) != f32_bits(t->master[j]) || f32_bits(mm) != f32_bits(t->m[j]) ||
                                f32_bits(mv) != f32_bits(t->v[j]))
                                fail_msg("%s step %llu element %llu: (%a %a %a), PyTorch order gives (%a %a %a)",
                                         ISAS[k], (unsigned long long)hp.step, (unsigned long long)j,
                                         (double)t->master[j], (double)t->m[j], (double)t->v[j],
                                         (double)mp, (double)mm, (double)mv);
                            if (wts[wi] == DT_BF16)
                                assert_int_equal(((uint16_t *)t->w)[j], ref_bf16(t->master[j]));
                            else if (wts[wi] == DT_F16)
                                assert_int_equal(((uint16_t *)t->w)[j], dt_f32_to_f16(t->master[j]));
                            else if (wts[wi] == DT_F32)
                                assert_int_equal(f32_bits(((float *)t->w)[j]), f32_bits(t->master[j]));
                        }
                    }
                    tset_assert_accum_zero(&s, ISAS[k]);
                    tset_free(&s);
                    tset_free(&orig);
                }
    }
}

/* Sizes around 16, 32 (the vector blocks) and ADAMW_CHUNK, W misaligned,
 * and one tensor with more chunks than any pool has threads. */
static void make_odd_set(tset *s, uint64_t seed)
{
    const uint64_t C = ADAMW_CHUNK;
    uint64_t len[13] = {1, 15, 17, 33, C - 1, C, C + 1, 3 * C + 77, 0, 100003, 31, 64, 17 * C + 5};
    dt_type wt[13] = {DT_BF16, DT_F32, DT_F16, DT_INVALID, DT_BF16, DT_BF16, DT_F16,
                      DT_BF16, DT_F32, DT_F32, DT_BF16, DT_F16, DT_BF16};
    size_t off[13] = {0, 4, 2, 0, 6, 0, 62, 2, 0, 60, 1, 3, 0}; /* 1, 3: W not even 2-byte aligned */
    tset_init(s, 13, len, wt, off, seed);
}

static void test_step_bitwise(void **state)
{
    (void)state;
    adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    const float gs = 0.7f;
    tset init, ref;
    make_odd_set(&init, 42);
    tset_copy(&ref, &init);
    assert_int_equal(use_isa("scalar"), 0);
    for (uint64_t st = 1; st <= 2; st++) {
        hp.step = st;
        for (int i = 0; i < ref.n; i++)
            adamw_step_range(&hp, gs, &ref.t[i], 0, ref.t[i].n);
        tset_assert_accum_zero(&ref, "scalar");
        tset_refill_accum(&ref, 1000 + st);
    }

    static const int threads[] = {1, 2, 3, 7};
    char what[128];
    for (int k = 0; k < N_ISAS; k++) {
        if (use_isa(ISAS[k]) < 0)
            continue;
        /* (a) [lo, hi) split at pseudo-random points, (b) .. (e) pools */
        for (int mode = 0; mode < 5; mode++) {
            tset s;
            tset_copy(&s, &init);
            adamw_pool *pool = NULL;
            if (mode > 0) {
                rt_err err = {{0}};
                if (adamw_pool_open(threads[mode - 1], NULL, &pool, &err) < 0)
                    fail_msg("adamw_pool_open: %s", err.msg);
            }
            uint64_t r = 99 + (uint64_t)k;
            for (uint64_t st = 1; st <= 2; st++) {
                hp.step = st;
                if (pool != NULL) {
                    adamw_pool_step(pool, &hp, gs, s.t, s.n);
                } else {
                    for (int i = 0; i < s.n; i++)
                        for (uint64_t lo = 0; lo < s.t[i].n;) {
                            uint64_t piece = rng_next(&r) % 3 == 0 ? 1 + rng_next(&r) % 40
                                                                   : 1 + rng_next(&r) % 5000;
                            uint64_t hi = lo + piece < s.t[i].n ? lo + piece : s.t[i].n;
                            adamw_step_range(&hp, gs, &s.t[i], lo, hi);
                            lo = hi;
                        }
                }
                snprintf(what, sizeof what, "%s %s%d step %llu", ISAS[k], mode ? "threads " : "split",
                         mode ? threads[mode - 1] : 0, (unsigned long long)st);
                tset_assert_accum_zero(&s, what);
                tset_refill_accum(&s, 1000 + st);
            }
            tset_assert_equal(&s, &ref, what);
            adamw_pool_close(pool);
            tset_free(&s);
        }
    }
    tset_free(&init);
    tset_free(&ref);
}

/* The old values of [lo, hi) of tensor t, for checking an undo. */
typedef struct undo_snap {
    float *p, *m, *v, *a;
} undo_snap;

static void snap_take(undo_snap *u, const adamw_tensor *t, uint64_t lo, uint64_t hi)
{
    size_t b = (hi - lo) * sizeof(float) + 1;
    u->p = malloc(b), u->m = malloc(b), u->v = malloc(b), u->a = malloc(b);
    assert_true(u->p && u->m && u->v && u->a);
    memcpy(u->p, t->master + lo, b - 1);
    memcpy(u->m, t->m + lo, b - 1);
    memcpy(u->v, t->v + lo, b - 1);
    memcpy(u->a, t->accum + lo, b - 1);
}

static void snap_free(undo_snap *u)
{
    free(u->p), free(u->m), free(u->v), free(u->a);
}

/* undo buffers of n floats with a guard float after them, poisoned */
static float *undo_buf(uint64_t n)
{
    float *b = malloc((n + 1) * sizeof(float));
    assert_non_null(b);
    memset(b, 0xa5, (n + 1) * sizeof(float));
    return b;
}

static void assert_guard(const float *b, uint64_t n, const char *what)
{
    uint32_t g;
    memcpy(&g, b + n, sizeof g);
    if (g != 0xa5a5a5a5u)
        fail_msg("%s: undo buffer written past its %llu elements", what, (unsigned long long)n);
}

static void test_step_undo(void **state)
{
    (void)state;
    adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    const float gs = 0.7f;
    tset init, ref;
    make_odd_set(&init, 43);
    tset_copy(&ref, &init);
    /* the reference: the plain kernel, scalar path (equal to the others: test_step_bitwise);
     * beta1 = 0.3 at step 2 takes the other lerp form */
    assert_int_equal(use_isa("scalar"), 0);
    for (uint64_t st = 1; st <= 3; st++) {
        hp.step = st;
        hp.beta1 = st == 2 ? 0.3 : 0.9;
        for (int i = 0; i < ref.n; i++)
            adamw_step_range(&hp, gs, &ref.t[i], 0, ref.t[i].n);
        tset_refill_accum(&ref, 2000 + st);
    }
    char what[160];
    for (int k = 0; k < N_ISAS; k++) {
        if (use_isa(ISAS[k]) < 0)
            continue;
        for (int mode = 0; mode < 3; mode++) { /* whole tensors, random splits, chunks */
            tset s;
            tset_copy(&s, &init);
            uint64_t r = 7 + (uint64_t)k * 3 + (uint64_t)mode;
            for (uint64_t st = 1; st <= 3; st++) {
                hp.step = st;
                hp.beta1 = st == 2 ? 0.3 : 0.9;
                for (int i = 0; i < s.n; i++) {
                    adamw_tensor *t = &s.t[i];
                    for (uint64_t lo = 0; lo < t->n || (lo == 0 && t->n == 0);) {
                        uint64_t piece = mode == 0   ? t->n + 5 /* hi past n: clamped */
                                         : mode == 2 ? ADAMW_CHUNK
                                         : rng_next(&r) % 3 == 0 ? 1 + rng_next(&r) % 70
                                                                 : 1 + rng_next(&r) % 5000;
                        uint64_t hi = lo + piece, eff = hi < t->n ? hi : t->n;
                        undo_snap old;
                        snap_take(&old, t, lo, eff);
                        uint64_t n = eff > lo ? eff - lo : 0;
                        float *up = undo_buf(n), *um = undo_buf(n), *uv = undo_buf(n), *ua = undo_buf(n);
                        uint64_t saved = 0;
                        bool track = rng_next(&r) % 4 != 0; /* and sometimes no count */
                        adamw_step_range_undo(&hp, gs, t, lo, hi, up, um, uv, ua, track ? &saved : NULL);
                        snprintf(what, sizeof what, "%s mode %d step %llu tensor %d [%llu, %llu)",
                                 ISAS[k], mode, (unsigned long long)st, i, (unsigned long long)lo,
                                 (unsigned long long)hi);
                        assert_same(up, old.p, n * sizeof(float), what, i, "undo master");
                        assert_same(um, old.m, n * sizeof(float), what, i, "undo m");
                        assert_same(uv, old.v, n * sizeof(float), what, i, "undo v");
                        assert_same(ua, old.a, n * sizeof(float), what, i, "undo accum");
                        assert_guard(up, n, what), assert_guard(um, n, what);
                        assert_guard(uv, n, what), assert_guard(ua, n, what);
                        if (track && saved != n)
                            fail_msg("%s: saved = %llu, want %llu", what, (unsigned long long)saved,
                                     (unsigned long long)n);
                        free(up), free(um), free(uv), free(ua);
                        snap_free(&old);
                        if (t->n == 0)
                            break;
                        lo = eff;
                    }
                }
                tset_assert_accum_zero(&s, what);
                tset_refill_accum(&s, 2000 + st);
            }
            snprintf(what, sizeof what, "%s mode %d: undo variant vs plain", ISAS[k], mode);
            tset_assert_equal(&s, &ref, what);
            tset_free(&s);
        }
    }
    tset_free(&init);
    tset_free(&ref);
}

static void test_accum_undo(void **state)
{
    (void)state;
    const uint64_t n = 2 * ADAMW_CHUNK + 45;
    static const dt_type gts[] = {DT_F32, DT_BF16, DT_F16, DT_INVALID};
    float *a0 = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    float *a = malloc(n * sizeof(float));
    uint8_t *gbuf = malloc(n * 4 + 8);
    assert_true(a0 && want && a && gbuf);
    uint64_t r = 5;
    for (uint64_t j = 0; j < n; j++)
        a0[j] = rng_unit(&r);
    char what[128];
    for (int gi = 0; gi < 4; gi++) {
        dt_type gt = gts[gi];
        void *g = gbuf + 2; /* not even 4-byte aligned */
        for (uint64_t j = 0; j < n; j++) {
            float x = rng_unit(&r) * 3.0f;
            if (j % 53 == 0)
                x = 0x1p-20f * rng_unit(&r);
            if (gt == DT_F32 || gt == DT_INVALID)
                memcpy((uint8_t *)g + 4 * j, &x, 4);
            else {
                uint16_t h = gt == DT_BF16 ? dt_f32_to_bf16(x) : dt_f32_to_f16(x);
                memcpy((uint8_t *)g + 2 * j, &h, 2);
            }
        }
        /* want: the plain kernel (scalar) */
        assert_int_equal(use_isa("scalar"), 0);
        memcpy(want, a0, n * sizeof(float));
        adamw_accum_range(want, g, gt, 0, n);
        for (int k = 0; k < N_ISAS; k++) {
            if (use_isa(ISAS[k]) < 0)
                continue;
            memcpy(a, a0, n * sizeof(float));
            uint64_t cuts[] = {0, 1, 2, 9, 17, 40, 1000, 1001, ADAMW_CHUNK + 3, n - 9, n - 8, n};
            for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
                uint64_t lo = cuts[c], hi = cuts[c + 1], m = hi - lo;
                float *old = malloc(m * sizeof(float) + 1), *u = undo_buf(m);
                assert_non_null(old);
                memcpy(old, a + lo, m * sizeof(float));
                uint64_t saved = 0;
                adamw_accum_range_undo(a, g, gt, lo, hi, u, c % 3 == 2 ? NULL : &saved);
                snprintf(what, sizeof what, "%s %s [%llu, %llu)", ISAS[k],
                         gt == DT_INVALID ? "invalid" : dt_name(gt), (unsigned long long)lo,
                         (unsigned long long)hi);
                assert_same(u, old, m * sizeof(float), what, 0, "undo accum");
                assert_guard(u, m, what);
                if (c % 3 != 2 && saved != m)
                    fail_msg("%s: saved = %llu, want %llu", what, (unsigned long long)saved,
                             (unsigned long long)m);
                free(old), free(u);
            }
            snprintf(what, sizeof what, "%s %s", ISAS[k], gt == DT_INVALID ? "invalid" : dt_name(gt));
            assert_same(a, want, n * sizeof(float), what, 0, "accum");
        }
    }
    free(a0);
    free(want);
    free(a);
    free(gbuf);
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    assert_int_equal(adamw_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie, down to even */
    assert_int_equal(adamw_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie, up to even */
    assert_int_equal(adamw_bf16(bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(adamw_bf16(bits_f32(0x3f807fffu)), 0x3f80);
    assert_int_equal(adamw_bf16(-1.0f - 3 * 0x1p-8f), 0xbf82);
    assert_int_equal(adamw_bf16(bits_f32(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(adamw_bf16(bits_f32(0x7f7f8000u)), 0x7f80); /* tie past max: inf */
    assert_int_equal(adamw_bf16(3.4028235e38f), 0x7f80);
    assert_int_equal(adamw_bf16(-3.4028235e38f), 0xff80);
    assert_int_equal(adamw_bf16(INFINITY), 0x7f80);
    assert_int_equal(adamw_bf16(-INFINITY), 0xff80);
    assert_int_equal(adamw_bf16(0.0f), 0x0000);
    assert_int_equal(adamw_bf16(-0.0f), 0x8000);
    assert_int_equal(adamw_bf16(bits_f32(0x00008000u)), 0x0000);
    assert_int_equal(adamw_bf16(bits_f32(0x00018000u)), 0x0002);
    assert_int_equal(adamw_bf16(NAN), 0x7fc0);
    assert_int_equal(adamw_bf16(-NAN), 0x7fc0);
    assert_int_equal(adamw_bf16(bits_f32(0x7f800001u)), 0x7fc0);
    assert_int_equal(adamw_bf16(bits_f32(0xffffffffu)), 0x7fc0);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 1000000; i++) {
        float x = bits_f32((uint32_t)(rng_next(&s) >> 32));
        if (adamw_bf16(x) != ref_bf16(x))
            fail_msg("bf16(%a = 0x%08x) = 0x%04x, reference 0x%04x", (double)x, f32_bits(x),
                     adamw_bf16(x), ref_bf16(x));
    }
    /* every tie and its neighbours, both signs */
    for (uint32_t h = 0; h < 0x7f80u; h += 7) {
        uint32_t mid = (h << 16) | 0x8000u;
        for (uint32_t u = mid - 1; u <= mid + 1; u++) {
            assert_int_equal(adamw_bf16(bits_f32(u)), ref_bf16(bits_f32(u)));
            assert_int_equal(adamw_bf16(bits_f32(u | 0x80000000u)), ref_bf16(bits_f32(u | 0x80000000u)));
        }
    }
}

/* W written by the step kernels from special master values: lr = 0 and
 * zero accumulator and moments leave master as it is (p * 1 + -0 / eps). */
static void test_w_special_values(void **state)
{
    (void)state;
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0xbf818000u,
        0x7f7fffffu, 0xff7fffffu, 0x7f7f7fffu, 0x7f7f8000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
        0xffc00000u, 0x7f800001u, 0x7fa12345u, 0xff812345u, 0x00008000u, 0x00018000u, 0x00008001u,
        0x00000001u, 0x477fe000u, 0x477ff000u, 0x477fefffu, 0x33800000u, 0x33000000u, 0x33000001u,
        0x387fc000u, 0x38800000u, 0xc77ff000u, 0x2f800000u};
    const int ns = sizeof special / sizeof special[0];
    const uint64_t n = 200;
    adamw_hparams hp = {.lr = 0.0, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1,
                        .step = 3};
    static const dt_type wts[] = {DT_BF16, DT_F16, DT_F32};
    for (int k = 0; k < N_ISAS; k++) {
        if (use_isa(ISAS[k]) < 0)
            continue;
        for (int wi = 0; wi < 3; wi++)
            for (size_t off = 0; off <= 3 * wsize(wts[wi]); off += 3 * wsize(wts[wi])) {
                uint64_t len[1] = {n};
                dt_type wt[1] = {wts[wi]};
                size_t woff[1] = {off};
                tset s;
                tset_init(&s, 1, len, wt, woff, 5);
                adamw_tensor *t = &s.t[0];
                for (uint64_t j = 0; j < n; j++) {
                    t->master[j] = bits_f32(special[j % (uint64_t)ns]);
                    t->m[j] = t->v[j] = t->accum[j] = 0.0f;
                }
                adamw_step_range(&hp, 1.0f, t, 0, n);
                for (uint64_t j = 0; j < n; j++) {
                    uint32_t in = special[j % (uint64_t)ns];
                    float x = t->master[j];
                    if (!isnan(x))
                        assert_int_equal(f32_bits(x), in); /* lr = 0: unchanged */
                    else
                        assert_true(isnan(bits_f32(in)));
                    if (wts[wi] == DT_BF16) {
                        uint16_t got = ((uint16_t *)t->w)[j];
                        if (got != ref_bf16(x))
                            fail_msg("%s: W bf16 of 0x%08x = 0x%04x, reference 0x%04x", ISAS[k],
                                     f32_bits(x), got, ref_bf16(x));
                    } else if (wts[wi] == DT_F16) {
                        uint16_t got = ((uint16_t *)t->w)[j];
                        if (got != dt_f32_to_f16(x))
                            fail_msg("%s: W f16 of 0x%08x = 0x%04x, dt_f32_to_f16 0x%04x", ISAS[k],
                                     f32_bits(x), got, dt_f32_to_f16(x));
                    } else {
                        assert_int_equal(f32_bits(((float *)t->w)[j]), f32_bits(x));
                    }
                }
                tset_free(&s);
            }
    }
}

/* The documented order: element j of a chunk into lane j % 32, lanes folded
 * by halves. */
static double doc_sumsq(const float *x, uint64_t n)
{
    double lane[32] = {0};
    for (uint64_t j = 0; j < n; j++)
        lane[j % 32] = lane[j % 32] + (double)x[j] * (double)x[j];
    for (int h = 16; h >= 1; h /= 2)
        for (int i = 0; i < h; i++)
            lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

static void test_sumsq(void **state)
{
    (void)state;
    const uint64_t C = ADAMW_CHUNK;
    const int nt = 9;
    uint64_t len[9] = {1, 31, 33, C, C + 1, 5 * C + 1234, 0, 3 * C, 20 * C + 3};
    float *x[9];
    uint64_t r = 7;
    for (int i = 0; i < nt; i++) {
        x[i] = malloc((len[i] + 1) * sizeof(float));
        assert_non_null(x[i]);
        for (uint64_t j = 0; j < len[i]; j++) /* wide dynamic range: order matters */
            x[i][j] = rng_unit(&r) * ldexpf(1.0f, (int)(rng_next(&r) % 40) - 20);
    }
    /* Tensor 7: chunk partials 1, 2^-53, 2^-53 sum to 1 in chunk order and
     * to 1 + 2^-52 in any order that adds the small ones first. */
    memset(x[7], 0, 3 * C * sizeof(float));
    x[7][5] = 1.0f;
    x[7][C + 3] = x[7][C + 9] = x[7][2 * C] = x[7][2 * C + 1] = 0x1p-27f;
    float *poison[9];
    for (int i = 0; i < nt; i++) {
        poison[i] = malloc((len[i] + 1) * sizeof(float));
        assert_non_null(poison[i]);
        for (uint64_t j = 0; j < len[i]; j++)
            poison[i][j] = 3.0f;
    }
    double want[9];
    for (int i = 0; i < nt; i++) {
        want[i] = 0.0;
        long double ld = 0.0L;
        for (uint64_t c = 0; c * C < len[i]; c++) {
            uint64_t lo = c * C, hi = len[i] - lo < C ? len[i] : lo + C;
            want[i] += doc_sumsq(x[i] + lo, hi - lo);
        }
        for (uint64_t j = 0; j < len[i]; j++)
            ld += (long double)x[i][j] * x[i][j];
        if (!(fabsl((long double)want[i] - ld) <= 1e-12L * ld))
            fail_msg("tensor %d: sum of squares %.17g, long double %.17Lg", i, want[i], ld);
    }
    assert_true(want[7] == 1.0);
    static const int threads[] = {1, 2, 3, 7};
    for (int k = 0; k < N_ISAS; k++) {
        if (use_isa(ISAS[k]) < 0)
            continue;
        for (int i = 0; i < nt; i++) {
            double s = 0.0;
            for (uint64_t c = 0; c * C < len[i]; c++) {
                uint64_t lo = c * C, hi = len[i] - lo < C ? len[i] : lo + C;
                double got = adamw_sumsq_chunk(x[i], len[i], c), ref = doc_sumsq(x[i] + lo, hi - lo);
                if (memcmp(&got, &ref, sizeof got) != 0)
                    fail_msg("%s: tensor %d chunk %llu: %a, documented order %a", ISAS[k], i,
                             (unsigned long long)c, got, ref);
                s += got;
            }
            assert_true(adamw_sumsq_chunk(x[i], len[i], (len[i] + C - 1) / C) == 0.0);
            assert_memory_equal(&s, &want[i], sizeof s);
        }
        for (int ti = 0; ti < 4; ti++) {
            adamw_pool *pool;
            assert_int_equal(adamw_pool_open(threads[ti], NULL, &pool, NULL), 0);
            double out[9];
            /* first the poison: a chunk the real run skipped would keep its partial */
            adamw_pool_sumsq(pool, (const float *const *)poison, len, nt, out);
            assert_true(out[8] == 9.0 * (double)len[8]);
            adamw_pool_sumsq(pool, (const float *const *)x, len, nt, out);
            for (int i = 0; i < nt; i++)
                if (memcmp(&out[i], &want[i], sizeof out[i]) != 0)
                    fail_msg("%s, %d threads: tensor %d: %a, expected %a", ISAS[k], threads[ti], i,
                             out[i], want[i]);
            adamw_pool_close(pool);
        }
    }
    for (int i = 0; i < nt; i++) {
        free(x[i]);
        free(poison[i]);
    }
}

/* More chunks than one pool run of adamw_pool_sumsq takes (65536): 70001
 * one-element tensors, and a long one straddling the windows. */
static void test_sumsq_many_tensors(void **state)
{
    (void)state;
    const int n = 70001;
    const float **x = calloc((size_t)n, sizeof *x);
    uint64_t *len = calloc((size_t)n, sizeof *len);
    double *out = calloc((size_t)n, sizeof *out);
    float *vals = calloc((size_t)n, sizeof *vals);
    float *big = calloc(3 * ADAMW_CHUNK + 5, sizeof *big);
    assert_true(x && len && out && vals && big);
    for (int i = 0; i < n; i++) {
        vals[i] = (float)(i % 1000) * 0.5f - 3.0f;
        x[i] = &vals[i];
        len[i] = 1;
    }
    for (uint64_t j = 0; j < 3 * ADAMW_CHUNK + 5; j++)
        big[j] = (float)(j % 17) - 8.0f;
    x[65534] = big; /* chunks 65534 .. 65537: across the window edge */
    len[65534] = 3 * ADAMW_CHUNK + 5;
    adamw_pool *pool;
    assert_int_equal(adamw_pool_open(3, NULL, &pool, NULL), 0);
    adamw_pool_sumsq(pool, x, len, n, out);
    for (int i = 0; i < n; i++) {
        double want = 0.0;
        for (uint64_t c = 0; c * ADAMW_CHUNK < len[i]; c++)
            want += adamw_sumsq_chunk(x[i], len[i], c);
        if (out[i] != want)
            fail_msg("tensor %d: %.17g, expected %.17g", i, out[i], want);
    }
    assert_true(out[65534] > 0.0 && out[2] == 4.0);
    adamw_pool_close(pool);
    free(x);
    free(len);
    free(out);
    free(vals);
    free(big);
}

static void test_accum(void **state)
{
    (void)state;
    const uint64_t n = 3 * ADAMW_CHUNK + 45;
    static const dt_type gts[] = {DT_F32, DT_BF16, DT_F16};
    float *a0 = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    float *a = malloc(n * sizeof(float));
    uint8_t *gbuf = malloc(n * 4 + 8);
    assert_true(a0 && want && a && gbuf);
    uint64_t r = 3;
    for (uint64_t j = 0; j < n; j++)
        a0[j] = rng_unit(&r);
    for (int gi = 0; gi < 3; gi++) {
        dt_type gt = gts[gi];
        void *g = gbuf + 2; /* g is not even 4-byte aligned */
        for (uint64_t j = 0; j < n; j++) {
            float x = rng_unit(&r) * 3.0f;
            if (j % 53 == 0)
                x = 0x1p-20f * rng_unit(&r); /* f16 subnormals */
            if (gt == DT_F32) {
                memcpy((uint8_t *)g + 4 * j, &x, 4);
                want[j] = a0[j] + x;
            } else {
                uint16_t h = gt == DT_BF16 ? dt_f32_to_bf16(x) : dt_f32_to_f16(x);
                memcpy((uint8_t *)g + 2 * j, &h, 2);
                want[j] = a0[j] + (gt == DT_BF16 ? dt_bf16_to_f32(h) : dt_f16_to_f32(h));
            }
        }
        for (int k = 0; k < N_ISAS; k++) {
            if (use_isa(ISAS[k]) < 0)
                continue;
            memcpy(a, a0, n * sizeof(float));
            uint64_t cuts[] = {0, 1, 2, 17, 40, 1000, ADAMW_CHUNK + 3, n - 9, n};
            for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
                adamw_accum_range(a, g, gt, cuts[c], cuts[c + 1]);
            for (uint64_t j = 0; j < n; j++)
                if (f32_bits(a[j]) != f32_bits(want[j]))
                    fail_msg("%s %s: accum[%llu] = %a, want %a", ISAS[k], dt_name(gt),
                             (unsigned long long)j, (double)a[j], (double)want[j]);
            static const int threads[] = {1, 2, 3, 7};
            for (int ti = 0; ti < 4; ti++) {
                adamw_pool *pool;
                assert_int_equal(adamw_pool_open(threads[ti], NULL, &pool, NULL), 0);
                memcpy(a, a0, n * sizeof(float));
                adamw_accum_job jobs[2] = {{a, g, gt, 1000}, {a + 1000, (uint8_t *)g + 1000 * dt_size(gt), gt, n - 1000}};
                adamw_pool_accum(pool, jobs, 2);
                assert_memory_equal(a, want, n * sizeof(float));
                adamw_pool_close(pool);
            }
        }
    }
    free(a0);
    free(want);
    free(a);
    free(gbuf);
}

typedef struct pool_probe {
    _Atomic int calls[ADAMW_MAX_THREADS];
    int cpu[ADAMW_MAX_THREADS];
    int sig_blocked[ADAMW_MAX_THREADS]; /* SIGTERM and SIGINT blocked in the thread */
    _Atomic int bad_n;
} pool_probe;

static void probe_fn(void *ctx, int tid, int n)
{
    pool_probe *pp = ctx;
    atomic_fetch_add(&pp->calls[tid], 1);
    pp->cpu[tid] = sched_getcpu();
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    pp->sig_blocked[tid] = sigismember(&cur, SIGTERM) == 1 && sigismember(&cur, SIGINT) == 1;
    if (n < 1 || tid >= n)
        atomic_fetch_add(&pp->bad_n, 1);
}

static void test_pool(void **state)
{
    (void)state;
    cpu_set_t mask;
    assert_int_equal(sched_getaffinity(0, sizeof mask, &mask), 0);
    int allowed[CPU_SETSIZE], na = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mask))
            allowed[na++] = c;

    static const int threads[] = {1, 2, 3, 7};
    for (int ti = 0; ti < 4; ti++) {
        int n = threads[ti];
        adamw_pool *pool;
        rt_err err = {{0}};
        if (adamw_pool_open(n, NULL, &pool, &err) < 0)
            fail_msg("adamw_pool_open(%d): %s", n, err.msg);
        assert_int_equal(adamw_pool_threads(pool), n);
        sigset_t cur; /* the caller's own mask is as it was */
        pthread_sigmask(SIG_BLOCK, NULL, &cur);
        assert_int_equal(sigismember(&cur, SIGTERM), 0);
        pool_probe *pp = calloc(1, sizeof *pp);
        assert_non_null(pp);
        const int runs = 2000;
        for (int r = 0; r < runs; r++)
            adamw_pool_run(pool, probe_fn, pp);
        for (int i = 0; i < n; i++) {
            assert_int_equal(atomic_load(&pp->calls[i]), runs);
            assert_int_equal(pp->cpu[i], allowed[i % na]); /* pinned round-robin */
            assert_true(pp->sig_blocked[i]);
        }
        assert_int_equal(atomic_load(&pp->calls[n]), 0);
        assert_int_equal(atomic_load(&pp->bad_n), 0);
        char want[256];
        snprintf(want, sizeof want, "%d thread%s pinned to CPU%s ", n, n == 1 ? "" : "s", n == 1 ? "" : "s");
        const char *d = adamw_pool_describe(pool);
        print_message("  pool: %s\n", d);
        assert_memory_equal(d, want, strlen(want));
        assert_non_null(strstr(d, adamw_isa()));
        adamw_pool_close(pool);
        free(pp);
    }
    if (na >= 2) {
        char want[64];
        snprintf(want, sizeof want, "2 threads pinned to CPUs %d,%d (%s)", allowed[0], allowed[1], adamw_isa());
        adamw_pool *pool;
        assert_int_equal(adamw_pool_open(2, NULL, &pool, NULL), 0);
        assert_string_equal(adamw_pool_describe(pool), want);
        adamw_pool_close(pool);
    }
    /* explicit placement, reversed */
    int cpus[3] = {allowed[na - 1], allowed[0], allowed[na - 1]};
    adamw_pool *pool;
    assert_int_equal(adamw_pool_open(3, cpus, &pool, NULL), 0);
    pool_probe *pp = calloc(1, sizeof *pp);
    assert_non_null(pp);
    adamw_pool_run(pool, probe_fn, pp);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pp->cpu[i], cpus[i]);
    adamw_pool_close(pool);
    free(pp);

    rt_err err = {{0}};
    pool = (adamw_pool *)&err;
    assert_int_equal(adamw_pool_open(0, NULL, &pool, &err), -EINVAL);
    assert_null(pool);
    assert_non_null(strstr(err.msg, "0 threads"));
    assert_int_equal(adamw_pool_open(ADAMW_MAX_THREADS + 1, NULL, &pool, &err), -EINVAL);
    int bad[2] = {allowed[0], -1};
    assert_int_equal(adamw_pool_open(2, bad, &pool, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "CPU -1"));
    /* a CPU outside the affinity mask */
    int outside = -1;
    for (int c = 0; c < CPU_SETSIZE && outside < 0; c++)
        if (!CPU_ISSET(c, &mask))
            outside = c;
    if (outside >= 0) {
        int o[2] = {allowed[0], outside};
        err.msg[0] = '\0';
        assert_true(adamw_pool_open(2, o, &pool, &err) < 0);
        assert_null(pool);
        char cpu[32];
        snprintf(cpu, sizeof cpu, "CPU %d", outside);
        assert_non_null(strstr(err.msg, cpu));
    }
    adamw_pool_close(NULL);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Idle pool threads sleep: 300 ms between runs cost (nearly) no CPU time,
 * where spinning threads would burn 300 ms each. */
static void test_pool_idle_sleeps(void **state)
{
    (void)state;
    adamw_pool *pool;
    assert_int_equal(adamw_pool_open(3, NULL, &pool, NULL), 0);
    pool_probe *pp = calloc(1, sizeof *pp);
    assert_non_null(pp);
    adamw_pool_run(pool, probe_fn, pp);
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL); /* past the spin */
    double c0 = cpu_seconds();
    pause.tv_nsec = 300 * 1000 * 1000;
    nanosleep(&pause, NULL);
    double used = cpu_seconds() - c0;
    print_message("  CPU time of an idle 3-thread pool over 300 ms: %.1f ms\n", used * 1e3);
    assert_true(used < 0.05);
    adamw_pool_run(pool, probe_fn, pp);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&pp->calls[i]), 2);
    adamw_pool_close(pool);
    free(pp);
}

int main(void)
{
    snprintf(default_isa, sizeof default_isa, "%s", adamw_isa());
    print_message("adamw: instruction set %s\n", default_isa);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_isa, restore_isa),
        cmocka_unit_test_teardown(test_step_vs_reference, restore_isa),
        cmocka_unit_test_teardown(test_step_bitwise, restore_isa),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test_teardown(test_w_special_values, restore_isa),
        cmocka_unit_test_teardown(test_sumsq, restore_isa),
        cmocka_unit_test(test_sumsq_many_tensors),
        cmocka_unit_test_teardown(test_accum, restore_isa),
        cmocka_unit_test_teardown(test_step_undo, restore_isa),
        cmocka_unit_test_teardown(test_accum_undo, restore_isa),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_idle_sleeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

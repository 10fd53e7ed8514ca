/*
 * test_cpu_backend: the CPU backend (gpu/cpu/cpu_backend.c) against the
 * double-precision reference in ref_model.c.
 *
 * - layer_forward vs ref_layer_forward over configs parsed from config.json
 *   text: GQA ratios 1, 2, 3 and 4 (one kv head among them), q/k/v/o biases
 *   (Llama attention_bias) and q/k/v biases (Qwen2), head_dim != hidden /
 *   heads, odd sizes, linear and llama3 RoPE scaling, B = 2..3, T = 1, 7, 13,
 *   and rows of several attention tiles (T = 64, 65, 150).
 * - layer_backward vs central finite differences of L = sum(y * R) taken on
 *   the reference in double (so dy = R): dx and every weight and bias
 *   gradient; accumulation into g (+=), dx aliasing dy, bitwise determinism.
 * - head_loss vs the reference loss and finite differences of the mean loss
 *   (tied and untied, ignored targets, loss-only calls), and vs the
 *   reference's analytic gradient at a vocabulary large enough that the
 *   backend splits the tokens into several chunks.
 * - embed_forward / embed_backward with repeated and out-of-range tokens.
 * - Bad shapes and a sliding window shorter than max_seq are errors.
 *
 * Tolerances are relative to the largest magnitude of the reference tensor
 * being compared: fp32 against double. Set RAMTRAIN_TEST_VERBOSE=1 to print
 * the error of every comparison.
 *
 * Rejected: finite differences in fp32 on the backend itself (too noisy to
 * tell a wrong gradient from rounding), and comparing with a second copy of
 * the backend's own algorithm (tiled softmax, recomputation): the reference
 * is the naive Hugging Face formulation so a shared mistake cannot pass.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/backend.h"
#include "gpu/model.h"
#include "ref_model.h"

#define N_THREADS 2
#define FWD_TOL 1e-5  /* layer and head forward, relative to max|ref| */
#define GRAD_TOL 2e-5 /* gradients vs finite differences / analytic reference */
#define FD_STEP 1e-5  /* central-difference step, in double */

/* ---- helpers ------------------------------------------------------------------------ */

static int verbose(void)
{
    const char *v = getenv("RAMTRAIN_TEST_VERBOSE");
    return v != NULL && v[0] != '\0' && v[0] != '0';
}

/* xorshift64*: uniform in [-1, 1). */
static double rng_uniform(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-52 - 1.0;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)((rng_uniform(s) + 1.0) * 0.5 * (double)n) % n;
}

/* dst[n] = offset + scale * uniform, rounded to fp32; dd (if not NULL) gets the same values. */
static void fill(uint64_t *s, float *dst, double *dd, int64_t n, double offset, double scale)
{
    for (int64_t i = 0; i < n; i++) {
        dst[i] = (float)(offset + scale * rng_uniform(s));
        if (dd != NULL)
            dd[i] = dst[i];
    }
}

static float *falloc(int64_t n) { return ref_alloc(n, sizeof(float)); }
static double *dalloc(int64_t n) { return ref_alloc(n, sizeof(double)); }

/* Returns 1 (after printing the worst element) unless |got - want| <= tol * max|want| everywhere. */
static int check_close_d(const char *what, const double *got, const double *want, int64_t n,
                         double tol)
{
    double scale = 0.0, worst = 0.0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (!(e <= worst)) { /* NaN-safe: a NaN becomes the worst */
            worst = e;
            wi = i;
        }
    }
    double rel = scale > 0.0 ? worst / scale : worst;
    int bad = !(worst <= tol * scale);
    if (bad || verbose())
        print_message("%s %s: max|err| / max|ref| = %.3g (tol %.1g; max|ref| %.4g; worst [%lld] "
                      "got %.9g want %.9g; %lld values)\n",
                      bad ? "MISMATCH" : "ok", what, rel, tol, scale, (long long)wi, got[wi],
                      want[wi], (long long)n);
    return bad;
}

static int check_close_f(const char *what, const float *got, const double *want, int64_t n,
                         double tol)
{
    double *g = dalloc(n);
    for (int64_t i = 0; i < n; i++)
        g[i] = got[i];
    int bad = check_close_d(what, g, want, n, tol);
    free(g);
    return bad;
}

/* Writes into idx the entries of an n-element tensor to check: all of them
 * when n <= max, else max of them at random (fixed seed) plus the first and
 * last. Returns the count. */
static int64_t pick_indices(int64_t n, int64_t max, uint64_t *s, int64_t *idx)
{
    if (n <= max) {
        for (int64_t i = 0; i < n; i++)
            idx[i] = i;
        return n;
    }
    idx[0] = 0;
    idx[1] = n - 1;
    for (int64_t k = 2; k < max; k++)
        idx[k] = (int64_t)rng_below(s, (uint64_t)n);
    return max;
}

static be_backend *make_backend(const model_config *c, int max_tokens, int max_seq)
{
    be_backend *be = NULL;
    rt_err err = {{0}};
    int rc = be_cpu_create(c, max_tokens, max_seq, N_THREADS, &be, &err);
    if (rc != 0 || be == NULL)
        fail_msg("be_cpu_create(max_tokens %d, max_seq %d): %d %s", max_tokens, max_seq, rc,
                 err.msg);
    return be;
}

static void parse_config(const char *json, model_config *c)
{
    rt_err err = {{0}};
    int rc = model_config_parse(json, "test config", c, &err);
    if (rc != 0)
        fail_msg("model_config_parse: %s\n%s", err.msg, json);
}

/* ---- configs ------------------------------------------------------------------------ */

/* GQA ratio 1, no biases, linear RoPE scaling */
static const char CFG_LLAMA_MHA[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 32, \"intermediate_size\": 48,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 4,"
    " \"vocab_size\": 50, \"rms_norm_eps\": 1e-5, \"rope_theta\": 100.0,"
    " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}";
/* GQA ratio 2, q/k/v/o biases, odd sizes, head_dim = hidden / heads = 6 */
static const char CFG_LLAMA_BIAS[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 36, \"intermediate_size\": 50,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 6, \"num_key_value_heads\": 3,"
    " \"vocab_size\": 50, \"attention_bias\": true}";
/* GQA ratio 4, Qwen2 q/k/v biases (no o bias), head_dim 10 != 36 / 8 */
static const char CFG_QWEN2[] =
    "{\"model_type\": \"qwen2\", \"hidden_size\": 36, \"intermediate_size\": 50,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"num_key_value_heads\": 2,"
    " \"head_dim\": 10, \"vocab_size\": 50, \"rope_theta\": 1000000.0, \"sliding_window\": 4,"
    " \"use_sliding_window\": false}";
/* one kv head (ratio 4), head_dim 8 != 24 / 4, window longer than any row */
static const char CFG_MISTRAL[] =
    "{\"model_type\": \"mistral\", \"hidden_size\": 24, \"intermediate_size\": 40,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 1,"
    " \"head_dim\": 8, \"vocab_size\": 50, \"sliding_window\": 4096, \"rms_norm_eps\": 1e-5}";
/* GQA ratio 3 onto one kv head; llama3 RoPE scaling with a short original
 * context (64) so that, with head_dim 12, frequencies fall in all three bands
 * (kept, blended, divided by factor) */
static const char CFG_LLAMA3[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 36, \"intermediate_size\": 50,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 3, \"num_key_value_heads\": 1,"
    " \"vocab_size\": 50, \"rope_theta\": 500000.0,"
    " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
    " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}}";
/* tiny configs for full finite-difference checks */
static const char CFG_TINY_BIAS[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 10, \"intermediate_size\": 14,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"head_dim\": 6, \"vocab_size\": 11, \"attention_bias\": true, \"rope_theta\": 100.0}";
static const char CFG_TINY_QWEN2[] =
    "{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 1,"
    " \"head_dim\": 4, \"vocab_size\": 11, \"rope_theta\": 10.0}";

/* ---- layer fixture ------------------------------------------------------------------ */

enum {
    LT_ATTN_NORM, LT_Q_W, LT_Q_B, LT_K_W, LT_K_B, LT_V_W, LT_V_B, LT_O_W, LT_O_B,
    LT_MLP_NORM, LT_GATE_W, LT_UP_W, LT_DOWN_W, LT_COUNT
};

#define LT_ROW(f) {#f, offsetof(model_layer_ptrs, f), offsetof(ref_layer, f)}
static const struct {
    const char *name;
    size_t be_off, ref_off; /* field offsets in model_layer_ptrs and ref_layer */
} LT[LT_COUNT] = {
    [LT_ATTN_NORM] = LT_ROW(attn_norm), [LT_Q_W] = LT_ROW(q_w),         [LT_Q_B] = LT_ROW(q_b),
    [LT_K_W] = LT_ROW(k_w),             [LT_K_B] = LT_ROW(k_b),         [LT_V_W] = LT_ROW(v_w),
    [LT_V_B] = LT_ROW(v_b),             [LT_O_W] = LT_ROW(o_w),         [LT_O_B] = LT_ROW(o_b),
    [LT_MLP_NORM] = LT_ROW(mlp_norm),   [LT_GATE_W] = LT_ROW(gate_w),   [LT_UP_W] = LT_ROW(up_w),
    [LT_DOWN_W] = LT_ROW(down_w),
};
/* a field added to model_layer_ptrs without a row here fails to compile */
static_assert(sizeof(model_layer_ptrs) == LT_COUNT * sizeof(float *), "LT out of date");
static_assert(sizeof(ref_layer) == LT_COUNT * sizeof(double *), "ref_layer out of date");

static int64_t lt_numel(const model_config *c, int t)
{
    int64_t H = c->hidden, I = c->intermediate;
    int64_t Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    switch (t) {
    case LT_ATTN_NORM:
    case LT_MLP_NORM: return H;
    case LT_Q_W: return Q * H;
    case LT_Q_B: return c->qkv_bias ? Q : 0;
    case LT_K_W:
    case LT_V_W: return KV * H;
    case LT_K_B:
    case LT_V_B: return c->qkv_bias ? KV : 0;
    case LT_O_W: return H * Q;
    case LT_O_B: return c->o_bias ? H : 0;
    case LT_GATE_W:
    case LT_UP_W:
    case LT_DOWN_W: return I * H;
    }
    return 0;
}

typedef struct layer_fix {
    model_config cfg;
    int64_t n[LT_COUNT];     /* elements of each tensor; 0 when the config lacks it */
    float *w[LT_COUNT];      /* weights as the backend reads them */
    double *wd[LT_COUNT];    /* the same values in double, for the reference */
    float *g[LT_COUNT];      /* gradient accumulators, zeroed */
    model_layer_ptrs bw, bg; /* backend views of w and g */
    ref_layer rw;            /* reference view of wd */
} layer_fix;

static void layer_fix_init(layer_fix *f, const char *json, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    parse_config(json, &f->cfg);
    uint64_t s = seed;
    for (int t = 0; t < LT_COUNT; t++) {
        f->n[t] = lt_numel(&f->cfg, t);
        if (f->n[t] == 0)
            continue;
        f->w[t] = falloc(f->n[t]);
        f->wd[t] = dalloc(f->n[t]);
        f->g[t] = falloc(f->n[t]);
        if (t == LT_ATTN_NORM || t == LT_MLP_NORM)
            fill(&s, f->w[t], f->wd[t], f->n[t], 1.0, 0.2);
        else if (t == LT_Q_W || t == LT_K_W) /* large enough for peaked attention */
            fill(&s, f->w[t], f->wd[t], f->n[t], 0.0, 0.3);
        else
            fill(&s, f->w[t], f->wd[t], f->n[t], 0.0, 0.1);
        *(float **)((char *)&f->bw + LT[t].be_off) = f->w[t];
        *(float **)((char *)&f->bg + LT[t].be_off) = f->g[t];
        *(const double **)((char *)&f->rw + LT[t].ref_off) = f->wd[t];
    }
}

static void layer_fix_zero_grads(layer_fix *f)
{
    for (int t = 0; t < LT_COUNT; t++)
        if (f->n[t] > 0)
            memset(f->g[t], 0, (size_t)f->n[t] * sizeof(float));
}

static void layer_fix_free(layer_fix *f)
{
    for (int t = 0; t < LT_COUNT; t++) {
        free(f->w[t]);
        free(f->wd[t]);
        free(f->g[t]);
    }
}

/* ---- layer forward ------------------------------------------------------------------ */

/* Every (B, T) of Bs[nb] x Ts[nt], on one backend sized for the largest. */
static int layer_forward_case(const char *name, const char *json, uint64_t seed, const int *Ts,
                              int nt, const int *Bs, int nb)
{
    int maxT = 0, maxB = 0;
    for (int i = 0; i < nt; i++)
        maxT = Ts[i] > maxT ? Ts[i] : maxT;
    for (int i = 0; i < nb; i++)
        maxB = Bs[i] > maxB ? Bs[i] : maxB;
    layer_fix f;
    layer_fix_init(&f, json, seed);
    be_backend *be = make_backend(&f.cfg, maxB * maxT, maxT);
    int64_t H = f.cfg.hidden;
    int bad = 0;
    uint64_t s = seed ^ 0x9E3779B97F4A7C15ULL;
    for (int ti = 0; ti < nt; ti++)
        for (int bi = 0; bi < nb; bi++) {
            int B = Bs[bi], T = Ts[ti];
            int64_t N = (int64_t)B * T;
            float *x = falloc(N * H), *y = falloc(N * H);
            double *xd = dalloc(N * H), *yd = dalloc(N * H);
            fill(&s, x, xd, N * H, 0.0, 1.0);
            int rc = be->ops->layer_forward(be, &f.bw, x, y, B, T, BE_DISCARD);
            assert_int_equal(rc, 0);
            ref_layer_forward(&f.cfg, &f.rw, xd, B, T, yd);
            char what[128];
            snprintf(what, sizeof what, "layer_forward %s B=%d T=%d", name, B, T);
            bad += check_close_f(what, y, yd, N * H, FWD_TOL);
            free(x);
            free(y);
            free(xd);
            free(yd);
        }
    be->ops->destroy(be);
    layer_fix_free(&f);
    return bad;
}

static void test_layer_forward(void **state)
{
    static const int Ts[] = {1, 7, 13}, Bs[] = {2, 3};
    int bad = 0;
    bad += layer_forward_case("llama MHA linear-rope", CFG_LLAMA_MHA, 1, Ts, 3, Bs, 2);
    bad += layer_forward_case("llama GQA2 attention_bias", CFG_LLAMA_BIAS, 2, Ts, 3, Bs, 2);
    bad += layer_forward_case("qwen2 GQA4 head_dim 10", CFG_QWEN2, 3, Ts, 3, Bs, 2);
    bad += layer_forward_case("mistral 1 kv head head_dim 8", CFG_MISTRAL, 4, Ts, 3, Bs, 2);
    bad += layer_forward_case("llama3-rope GQA3 1 kv head", CFG_LLAMA3, 5, Ts, 3, Bs, 2);
    bad += layer_forward_case("tiny llama bias", CFG_TINY_BIAS, 6, Ts, 3, Bs, 2);
    bad += layer_forward_case("tiny qwen2", CFG_TINY_QWEN2, 7, Ts, 3, Bs, 2);
    assert_int_equal(bad, 0);
}

/* Rows longer than one attention tile of the backend (64 query rows today):
 * the tile edges (64, 65) and three tiles with a partial last one (150). */
static void test_layer_forward_long_rows(void **state)
{
    static const int Ts[] = {64, 65, 150}, Bs[] = {2};
    int bad = 0;
    bad += layer_forward_case("llama GQA2 attention_bias", CFG_LLAMA_BIAS, 8, Ts, 3, Bs, 1);
    bad += layer_forward_case("qwen2 GQA4 head_dim 10", CFG_QWEN2, 9, Ts, 3, Bs, 1);
    bad += layer_forward_case("mistral 1 kv head head_dim 8", CFG_MISTRAL, 10, Ts, 3, Bs, 1);
    assert_int_equal(bad, 0);
}

/* Rows are independent and positions restart at 0: two equal rows give equal outputs. */
static void test_layer_rows_independent(void **state)
{
    layer_fix f;
    layer_fix_init(&f, CFG_QWEN2, 11);
    int B = 3, T = 7;
    int64_t H = f.cfg.hidden, R = (int64_t)T * H;
    be_backend *be = make_backend(&f.cfg, B * T, T);
    float *x = falloc(B * R), *y = falloc(B * R);
    uint64_t s = 12;
    fill(&s, x, NULL, R, 0.0, 1.0);
    memcpy(x + 2 * R, x, (size_t)R * sizeof *x);
    fill(&s, x + R, NULL, R, 0.0, 1.0);
    assert_int_equal(be->ops->layer_forward(be, &f.bw, x, y, B, T, BE_DISCARD), 0);
    double *y0 = dalloc(R);
    for (int64_t i = 0; i < R; i++)
        y0[i] = y[i];
    assert_int_equal(check_close_f("rows 0 and 2 equal", y + 2 * R, y0, R, 1e-6), 0);
    free(y0);
    free(x);
    free(y);
    be->ops->destroy(be);
    layer_fix_free(&f);
}

/* ---- layer backward ----------------------------------------------------------------- */

/* L = sum(y * R) of the reference layer. */
static double layer_objective(const layer_fix *f, const double *xd, const double *Rd, int B, int T,
                              double *y)
{
    int64_t n = (int64_t)B * T * f->cfg.hidden;
    ref_layer_forward(&f->cfg, &f->rw, xd, B, T, y);
    double L = 0.0;
    for (int64_t i = 0; i < n; i++)
        L += y[i] * Rd[i];
    return L;
}

/* Central differences of L with respect to p[idx[k]], k < m, into fd[m]. */
static void layer_fd(const layer_fix *f, double *p, const int64_t *idx, int64_t m,
                     const double *xd, const double *Rd, int B, int T, double *y, double *fd)
{
    for (int64_t k = 0; k < m; k++) {
        double v = p[idx[k]];
        p[idx[k]] = v + FD_STEP;
        double lp = layer_objective(f, xd, Rd, B, T, y);
        p[idx[k]] = v - FD_STEP;
        double lm = layer_objective(f, xd, Rd, B, T, y);
        p[idx[k]] = v;
        fd[k] = (lp - lm) / (2.0 * FD_STEP);
    }
}

static int compare_at(const char *what, const float *got, const int64_t *idx, int64_t m,
                      const double *want)
{
    float *g = falloc(m);
    for (int64_t k = 0; k < m; k++)
        g[k] = got[idx[k]];
    int bad = check_close_f(what, g, want, m, GRAD_TOL);
    free(g);
    return bad;
}

static int layer_backward_case(const char *name, const char *json, uint64_t seed, int B, int T,
                               int64_t max_checks)
{
    layer_fix f;
    layer_fix_init(&f, json, seed);
    int64_t N = (int64_t)B * T, H = f.cfg.hidden;
    be_backend *be = make_backend(&f.cfg, (int)N, T);
    uint64_t s = seed * 7 + 1;
    float *x = falloc(N * H), *R = falloc(N * H), *dx = falloc(N * H);
    double *xd = dalloc(N * H), *Rd = dalloc(N * H), *y = dalloc(N * H);
    fill(&s, x, xd, N * H, 0.0, 1.0);
    fill(&s, R, Rd, N * H, 0.0, 1.0);
    for (int64_t i = 0; i < N * H; i++)
        dx[i] = 7.0f; /* dx is written, not added to */
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx, &f.bg, B, T), 0);

    int64_t maxn = N * H;
    for (int t = 0; t < LT_COUNT; t++)
        maxn = f.n[t] > maxn ? f.n[t] : maxn;
    int64_t *idx = ref_alloc(maxn, sizeof *idx);
    double *fd = dalloc(maxn);
    char what[160];
    int bad = 0;

    int64_t m = pick_indices(N * H, max_checks, &s, idx);
    layer_fd(&f, xd, idx, m, xd, Rd, B, T, y, fd);
    snprintf(what, sizeof what, "layer_backward %s B=%d T=%d: dx", name, B, T);
    bad += compare_at(what, dx, idx, m, fd);
    for (int t = 0; t < LT_COUNT; t++) {
        if (f.n[t] == 0)
            continue;
        m = pick_indices(f.n[t], max_checks, &s, idx);
        layer_fd(&f, f.wd[t], idx, m, xd, Rd, B, T, y, fd);
        snprintf(what, sizeof what, "layer_backward %s B=%d T=%d: d%s", name, B, T, LT[t].name);
        bad += compare_at(what, f.g[t], idx, m, fd);
    }
    free(idx);
    free(fd);
    free(x);
    free(R);
    free(dx);
    free(xd);
    free(Rd);
    free(y);
    be->ops->destroy(be);
    layer_fix_free(&f);
    return bad;
}

static void test_layer_backward_fd(void **state)
{
    int bad = 0;
    bad += layer_backward_case("tiny llama attention_bias GQA2", CFG_TINY_BIAS, 21, 2, 5, 1 << 30);
    bad += layer_backward_case("tiny qwen2 1 kv head", CFG_TINY_QWEN2, 22, 2, 6, 1 << 30);
    bad += layer_backward_case("mistral head_dim 8", CFG_MISTRAL, 23, 2, 7, 60);
    bad += layer_backward_case("llama3-rope hidden 36", CFG_LLAMA3, 24, 3, 5, 40);
    bad += layer_backward_case("llama attention_bias hidden 36", CFG_LLAMA_BIAS, 25, 1, 13, 40);
    /* several attention tiles per row */
    bad += layer_backward_case("tiny qwen2 long rows", CFG_TINY_QWEN2, 26, 2, 150, 40);
    bad += layer_backward_case("tiny llama attention_bias long row", CFG_TINY_BIAS, 27, 1, 130, 40);
    assert_int_equal(bad, 0);
}

/* Copies every gradient tensor of f into a new array per tensor. */
static void snapshot_grads(const layer_fix *f, float **out)
{
    for (int t = 0; t < LT_COUNT; t++) {
        out[t] = NULL;
        if (f->n[t] == 0)
            continue;
        out[t] = falloc(f->n[t]);
        memcpy(out[t], f->g[t], (size_t)f->n[t] * sizeof(float));
    }
}

static void free_grads(float **g)
{
    for (int t = 0; t < LT_COUNT; t++)
        free(g[t]);
}

/* Backward twice from a random start G0 gives G0 + 2 * (one call); dx is
 * rewritten each time; dx aliasing dy gives bitwise the same result. */
static void test_layer_backward_accumulate_alias(void **state)
{
    layer_fix f;
    layer_fix_init(&f, CFG_TINY_BIAS, 31);
    int B = 2, T = 7;
    int64_t N = (int64_t)B * T, H = f.cfg.hidden;
    be_backend *be = make_backend(&f.cfg, (int)N, T);
    uint64_t s = 32;
    float *x = falloc(N * H), *R = falloc(N * H), *dx1 = falloc(N * H), *dx = falloc(N * H);
    fill(&s, x, NULL, N * H, 0.0, 1.0);
    fill(&s, R, NULL, N * H, 0.0, 1.0);

    float *g1[LT_COUNT], *g0[LT_COUNT];
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx1, &f.bg, B, T), 0);
    snapshot_grads(&f, g1);

    int bad = 0;
    for (int t = 0; t < LT_COUNT; t++)
        if (f.n[t] > 0)
            fill(&s, f.g[t], NULL, f.n[t], 0.0, 1.0);
    snapshot_grads(&f, g0);
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx, &f.bg, B, T), 0);
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx, &f.bg, B, T), 0);
    assert_memory_equal(dx, dx1, (size_t)(N * H) * sizeof *dx);
    for (int t = 0; t < LT_COUNT; t++) {
        if (f.n[t] == 0)
            continue;
        double *want = dalloc(f.n[t]);
        for (int64_t i = 0; i < f.n[t]; i++)
            want[i] = (double)g0[t][i] + 2.0 * (double)g1[t][i];
        char what[96];
        snprintf(what, sizeof what, "accumulate: g0 + 2 x d%s", LT[t].name);
        bad += check_close_f(what, f.g[t], want, f.n[t], 1e-6);
        free(want);
    }

    /* dx aliasing dy */
    layer_fix_zero_grads(&f);
    memcpy(dx, R, (size_t)(N * H) * sizeof *dx);
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, dx, dx, &f.bg, B, T), 0);
    assert_memory_equal(dx, dx1, (size_t)(N * H) * sizeof *dx);
    for (int t = 0; t < LT_COUNT; t++)
        if (f.n[t] > 0)
            assert_memory_equal(f.g[t], g1[t], (size_t)f.n[t] * sizeof(float));
    assert_int_equal(bad, 0);

    free_grads(g1);
    free_grads(g0);
    free(x);
    free(R);
    free(dx1);
    free(dx);
    be->ops->destroy(be);
    layer_fix_free(&f);
}

/* Two backward runs on the same inputs are bitwise identical. */
static void test_layer_backward_deterministic(void **state)
{
    layer_fix f;
    layer_fix_init(&f, CFG_QWEN2, 41);
    int B = 2, T = 150;
    int64_t N = (int64_t)B * T, H = f.cfg.hidden;
    be_backend *be = make_backend(&f.cfg, (int)N, T);
    uint64_t s = 42;
    float *x = falloc(N * H), *R = falloc(N * H), *dx1 = falloc(N * H), *dx2 = falloc(N * H);
    fill(&s, x, NULL, N * H, 0.0, 1.0);
    fill(&s, R, NULL, N * H, 0.0, 1.0);
    float *g1[LT_COUNT];
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx1, &f.bg, B, T), 0);
    snapshot_grads(&f, g1);
    layer_fix_zero_grads(&f);
    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx2, &f.bg, B, T), 0);
    assert_memory_equal(dx1, dx2, (size_t)(N * H) * sizeof *dx1);
    for (int t = 0; t < LT_COUNT; t++)
        if (f.n[t] > 0)
            assert_memory_equal(f.g[t], g1[t], (size_t)f.n[t] * sizeof(float));
    free_grads(g1);
    free(x);
    free(R);
    free(dx1);
    free(dx2);
    be->ops->destroy(be);
    layer_fix_free(&f);
}

/* A forward kept for backward (BE_KEEP_FOR_BACKWARD) gives bitwise the same
 * backward as a recompute; a layer call in between drops what was kept, and
 * the backward then recomputes (still the same result). */
static void test_layer_keep_for_backward(void **state)
{
    layer_fix f, other;
    layer_fix_init(&f, CFG_LLAMA_BIAS, 51);
    layer_fix_init(&other, CFG_LLAMA_BIAS, 52);
    int B = 2, T = 70;
    int64_t N = (int64_t)B * T, H = f.cfg.hidden;
    be_backend *be = make_backend(&f.cfg, (int)N, T);
    uint64_t s = 53;
    float *x = falloc(N * H), *x2 = falloc(N * H), *y = falloc(N * H), *R = falloc(N * H);
    float *dx_ref = falloc(N * H), *dx = falloc(N * H);
    fill(&s, x, NULL, N * H, 0.0, 1.0);
    fill(&s, x2, NULL, N * H, 0.0, 1.0);
    fill(&s, R, NULL, N * H, 0.0, 1.0);
    float *g_ref[LT_COUNT];

    assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx_ref, &f.bg, B, T), 0);
    snapshot_grads(&f, g_ref);

    for (int intervene = 0; intervene < 2; intervene++) {
        layer_fix_zero_grads(&f);
        assert_int_equal(be->ops->layer_forward(be, &f.bw, x, y, B, T, BE_KEEP_FOR_BACKWARD), 0);
        if (intervene) /* another layer's forward overwrites the scratch */
            assert_int_equal(be->ops->layer_forward(be, &other.bw, x2, y, B, T, BE_DISCARD), 0);
        assert_int_equal(be->ops->layer_backward(be, &f.bw, x, R, dx, &f.bg, B, T), 0);
        assert_memory_equal(dx, dx_ref, (size_t)(N * H) * sizeof *dx);
        for (int t = 0; t < LT_COUNT; t++)
            if (f.n[t] > 0)
                assert_memory_equal(f.g[t], g_ref[t], (size_t)f.n[t] * sizeof(float));
    }
    free_grads(g_ref);
    free(x);
    free(x2);
    free(y);
    free(R);
    free(dx_ref);
    free(dx);
    be->ops->destroy(be);
    layer_fix_free(&f);
    layer_fix_free(&other);
}

/* ---- head --------------------------------------------------------------------------- */

typedef struct head_fix {
    model_config cfg;
    int64_t H, V;
    int n, n_valid;
    float *norm, *W, *x;      /* [H], [V, H] (LM head or tied embedding), [n, H] */
    double *normd, *Wd, *xd;  /* the same in double */
    int32_t *targets;         /* [n] */
    float *gnorm, *gW, *dx;   /* gradients, zeroed */
    model_head_ptrs w, g;     /* backend views */
    const float *embed;       /* W when tied, else NULL */
    float *g_embed;           /* gW when tied, else NULL */
} head_fix;

/* Targets uniform in [0, vocab) except every ignore_every-th (from 1), which is ignored. */
static void head_fix_init(head_fix *f, const char *json, uint64_t seed, int n, int ignore_every,
                          double w_scale)
{
    memset(f, 0, sizeof *f);
    parse_config(json, &f->cfg);
    f->H = f->cfg.hidden;
    f->V = f->cfg.vocab;
    f->n = n;
    uint64_t s = seed;
    f->norm = falloc(f->H);
    f->normd = dalloc(f->H);
    f->W = falloc(f->V * f->H);
    f->Wd = dalloc(f->V * f->H);
    f->x = falloc(n * f->H);
    f->xd = dalloc(n * f->H);
    f->targets = ref_alloc(n, sizeof *f->targets);
    f->gnorm = falloc(f->H);
    f->gW = falloc(f->V * f->H);
    f->dx = falloc(n * f->H);
    fill(&s, f->norm, f->normd, f->H, 1.0, 0.2);
    fill(&s, f->W, f->Wd, f->V * f->H, 0.0, w_scale);
    fill(&s, f->x, f->xd, n * f->H, 0.0, 1.0);
    for (int i = 0; i < n; i++) {
        if (i % ignore_every == 1) {
            f->targets[i] = BE_IGNORE_INDEX;
            continue;
        }
        f->targets[i] = (int32_t)rng_below(&s, (uint64_t)f->V);
        f->n_valid++;
    }
    if (n > 2) {
        if (f->targets[0] != BE_IGNORE_INDEX)
            f->targets[0] = 0;
        if (f->targets[n - 1] != BE_IGNORE_INDEX)
            f->targets[n - 1] = (int32_t)f->V - 1;
    }
    bool tied = f->cfg.tie_embeddings;
    f->w = (model_head_ptrs){.norm = f->norm, .lm_head = tied ? NULL : f->W};
    f->g = (model_head_ptrs){.norm = f->gnorm, .lm_head = tied ? NULL : f->gW};
    f->embed = tied ? f->W : NULL;
    f->g_embed = tied ? f->gW : NULL;
}

static void head_fix_free(head_fix *f)
{
    free(f->norm);
    free(f->normd);
    free(f->W);
    free(f->Wd);
    free(f->x);
    free(f->xd);
    free(f->targets);
    free(f->gnorm);
    free(f->gW);
    free(f->dx);
}

static int head_call(be_backend *be, head_fix *f, double *loss_sum, float *dx)
{
    return be->ops->head_loss(be, &f->w, f->embed, f->x, f->targets, f->n,
                              1.0f / (float)f->n_valid, loss_sum, dx, &f->g, f->g_embed);
}

static double head_mean_loss(const head_fix *f)
{
    double l = 0.0;
    ref_head(&f->cfg, f->normd, f->Wd, f->xd, f->targets, f->n, 0.0, &l, NULL, NULL, NULL);
    return l / f->n_valid;
}

static void head_fd(const head_fix *f, double *p, int64_t n, double *fd)
{
    for (int64_t i = 0; i < n; i++) {
        double v = p[i];
        p[i] = v + FD_STEP;
        double lp = head_mean_loss(f);
        p[i] = v - FD_STEP;
        double lm = head_mean_loss(f);
        p[i] = v;
        fd[i] = (lp - lm) / (2.0 * FD_STEP);
    }
}

/* Loss, loss-only calls, gradients vs finite differences (and the
 * reference's own analytic gradient vs the same differences), accumulation. */
static int head_case(const char *name, const char *json, uint64_t seed)
{
    head_fix f;
    head_fix_init(&f, json, seed, 9, 4, 0.7);
    int64_t H = f.H, V = f.V, n = f.n;
    be_backend *be = make_backend(&f.cfg, 16, 8);
    double scale = 1.0 / f.n_valid;
    char what[128];
    int bad = 0;

    double ref_loss = 0.0;
    double *rdx = dalloc(n * H), *rdnorm = dalloc(H), *rdW = dalloc(V * H);
    ref_head(&f.cfg, f.normd, f.Wd, f.xd, f.targets, (int)n, scale, &ref_loss, rdx, rdnorm, rdW);
    double *fdx = dalloc(n * H), *fdnorm = dalloc(H), *fdW = dalloc(V * H);
    head_fd(&f, f.xd, n * H, fdx);
    head_fd(&f, f.normd, H, fdnorm);
    head_fd(&f, f.Wd, V * H, fdW);
    snprintf(what, sizeof what, "ref_head %s analytic vs fd: dx", name);
    bad += check_close_d(what, rdx, fdx, n * H, 1e-7);
    snprintf(what, sizeof what, "ref_head %s analytic vs fd: d_norm", name);
    bad += check_close_d(what, rdnorm, fdnorm, H, 1e-7);
    snprintf(what, sizeof what, "ref_head %s analytic vs fd: dW", name);
    bad += check_close_d(what, rdW, fdW, V * H, 1e-7);

    /* loss only: adds to loss_sum, leaves g alone */
    fill(&seed, f.gnorm, NULL, H, 0.0, 1.0);
    fill(&seed, f.gW, NULL, V * H, 0.0, 1.0);
    float *g0norm = falloc(H), *g0W = falloc(V * H);
    memcpy(g0norm, f.gnorm, (size_t)H * sizeof(float));
    memcpy(g0W, f.gW, (size_t)(V * H) * sizeof(float));
    double loss = 1.25;
    assert_int_equal(head_call(be, &f, &loss, NULL), 0);
    double got = loss - 1.25;
    snprintf(what, sizeof what, "head_loss %s loss only", name);
    bad += check_close_d(what, &got, &ref_loss, 1, FWD_TOL);
    assert_memory_equal(f.gnorm, g0norm, (size_t)H * sizeof(float));
    assert_memory_equal(f.gW, g0W, (size_t)(V * H) * sizeof(float));

    /* with gradients, into zeroed g; dx is written */
    memset(f.gnorm, 0, (size_t)H * sizeof(float));
    memset(f.gW, 0, (size_t)(V * H) * sizeof(float));
    for (int64_t i = 0; i < n * H; i++)
        f.dx[i] = 7.0f;
    loss = 0.0;
    assert_int_equal(head_call(be, &f, &loss, f.dx), 0);
    snprintf(what, sizeof what, "head_loss %s loss", name);
    bad += check_close_d(what, &loss, &ref_loss, 1, FWD_TOL);
    snprintf(what, sizeof what, "head_loss %s dx vs fd", name);
    bad += check_close_f(what, f.dx, fdx, n * H, GRAD_TOL);
    snprintf(what, sizeof what, "head_loss %s d_norm vs fd", name);
    bad += check_close_f(what, f.gnorm, fdnorm, H, GRAD_TOL);
    snprintf(what, sizeof what, "head_loss %s %s vs fd", name,
             f.cfg.tie_embeddings ? "g_embed" : "d_lm_head");
    bad += check_close_f(what, f.gW, fdW, V * H, GRAD_TOL);

    /* a second call accumulates into g and rewrites dx */
    float *dx1 = falloc(n * H);
    memcpy(dx1, f.dx, (size_t)(n * H) * sizeof(float));
    memcpy(g0norm, f.gnorm, (size_t)H * sizeof(float));
    memcpy(g0W, f.gW, (size_t)(V * H) * sizeof(float));
    assert_int_equal(head_call(be, &f, &loss, f.dx), 0);
    assert_memory_equal(f.dx, dx1, (size_t)(n * H) * sizeof(float));
    for (int64_t i = 0; i < H; i++)
        rdnorm[i] = 2.0 * g0norm[i];
    for (int64_t i = 0; i < V * H; i++)
        rdW[i] = 2.0 * g0W[i];
    snprintf(what, sizeof what, "head_loss %s accumulate d_norm", name);
    bad += check_close_f(what, f.gnorm, rdnorm, H, 1e-6);
    snprintf(what, sizeof what, "head_loss %s accumulate dW", name);
    bad += check_close_f(what, f.gW, rdW, V * H, 1e-6);

    free(dx1);
    free(g0norm);
    free(g0W);
    free(rdx);
    free(rdnorm);
    free(rdW);
    free(fdx);
    free(fdnorm);
    free(fdW);
    be->ops->destroy(be);
    head_fix_free(&f);
    return bad;
}

static const char CFG_HEAD_UNTIED[] =
    "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
    " \"vocab_size\": 11, \"rms_norm_eps\": 1e-5}";
static const char CFG_HEAD_TIED[] =
    "{\"model_type\": \"qwen2\", \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
    " \"vocab_size\": 13, \"tie_word_embeddings\": true}";

static void test_head_loss(void **state)
{
    int bad = 0;
    bad += head_case("untied", CFG_HEAD_UNTIED, 51);
    bad += head_case("tied", CFG_HEAD_TIED, 52);
    assert_int_equal(bad, 0);
}

/* Every target ignored: no loss, dx = 0, g untouched. */
static void test_head_all_ignored(void **state)
{
    head_fix f;
    head_fix_init(&f, CFG_HEAD_UNTIED, 61, 5, 1000, 0.7);
    for (int i = 0; i < f.n; i++)
        f.targets[i] = BE_IGNORE_INDEX;
    f.n_valid = 1; /* grad_scale 1 */
    be_backend *be = make_backend(&f.cfg, 16, 8);
    uint64_t s = 62;
    fill(&s, f.gnorm, NULL, f.H, 0.0, 1.0);
    fill(&s, f.gW, NULL, f.V * f.H, 0.0, 1.0);
    float *g0norm = falloc(f.H), *g0W = falloc(f.V * f.H);
    memcpy(g0norm, f.gnorm, (size_t)f.H * sizeof(float));
    memcpy(g0W, f.gW, (size_t)(f.V * f.H) * sizeof(float));
    for (int64_t i = 0; i < f.n * f.H; i++)
        f.dx[i] = 7.0f;
    double loss = 0.5;
    assert_int_equal(head_call(be, &f, &loss, f.dx), 0);
    assert_true(loss == 0.5);
    for (int64_t i = 0; i < f.n * f.H; i++)
        assert_true(f.dx[i] == 0.0f);
    assert_memory_equal(f.gnorm, g0norm, (size_t)f.H * sizeof(float));
    assert_memory_equal(f.gW, g0W, (size_t)(f.V * f.H) * sizeof(float));
    free(g0norm);
    free(g0W);
    be->ops->destroy(be);
    head_fix_free(&f);
}

/* The backend's head runs over chunks of HEAD_CHUNK_FLOATS = 8M logits, i.e.
 * 8388608 / 100003 = 83 tokens: 200 tokens are 3 chunks (83 + 83 + 34).
 * Compared with the reference's analytic gradient (checked against finite
 * differences in test_head_loss): finite differences would be too slow. */
static void test_head_loss_chunks(void **state)
{
    static const char cfg[] =
        "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 8,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 100003}";
    head_fix f;
    head_fix_init(&f, cfg, 71, 200, 9, 1.0);
    int64_t H = f.H, V = f.V, n = f.n;
    be_backend *be = make_backend(&f.cfg, (int)n, 8);
    double ref_loss = 0.0;
    double *rdx = dalloc(n * H), *rdnorm = dalloc(H), *rdW = dalloc(V * H);
    ref_head(&f.cfg, f.normd, f.Wd, f.xd, f.targets, (int)n, 1.0 / f.n_valid, &ref_loss, rdx,
             rdnorm, rdW);
    double loss = 0.0;
    assert_int_equal(head_call(be, &f, &loss, f.dx), 0);
    int bad = 0;
    bad += check_close_d("head_loss 3 chunks: loss", &loss, &ref_loss, 1, FWD_TOL);
    bad += check_close_f("head_loss 3 chunks: dx", f.dx, rdx, n * H, GRAD_TOL);
    bad += check_close_f("head_loss 3 chunks: d_norm", f.gnorm, rdnorm, H, GRAD_TOL);
    bad += check_close_f("head_loss 3 chunks: d_lm_head", f.gW, rdW, V * H, GRAD_TOL);
    double loss_only = 0.0;
    assert_int_equal(head_call(be, &f, &loss_only, NULL), 0);
    bad += check_close_d("head_loss 3 chunks: loss only", &loss_only, &ref_loss, 1, FWD_TOL);
    assert_int_equal(bad, 0);
    free(rdx);
    free(rdnorm);
    free(rdW);
    be->ops->destroy(be);
    head_fix_free(&f);
}

/* ---- embedding ---------------------------------------------------------------------- */

static void test_embed(void **state)
{
    static const char cfg_json[] =
        "{\"model_type\": \"llama\", \"hidden_size\": 70, \"intermediate_size\": 8,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 7, \"num_key_value_heads\": 7,"
        " \"vocab_size\": 13}";
    static const int32_t tokens[] = {3, 7, 3, 12, 0, 3, 7, 5, 12, 3, 0, 9, 3, 3, 1, 7, 12, 2, 3, 11};
    int n = (int)(sizeof tokens / sizeof tokens[0]);
    model_config c;
    parse_config(cfg_json, &c);
    int64_t H = c.hidden, V = c.vocab;
    be_backend *be = make_backend(&c, 32, 8);
    uint64_t s = 81;
    float *E = falloc(V * H), *x = falloc(n * H), *dx = falloc(n * H), *gE = falloc(V * H);
    fill(&s, E, NULL, V * H, 0.0, 1.0);
    model_embed_ptrs w = {.embed = E}, g = {.embed = gE};

    assert_int_equal(be->ops->embed_forward(be, &w, tokens, n, x), 0);
    for (int i = 0; i < n; i++)
        assert_memory_equal(x + i * H, E + tokens[i] * H, (size_t)H * sizeof(float));

    fill(&s, dx, NULL, n * H, 0.0, 1.0);
    fill(&s, gE, NULL, V * H, 0.0, 1.0);
    double *want = dalloc(V * H);
    for (int64_t i = 0; i < V * H; i++)
        want[i] = gE[i];
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < H; j++)
            want[tokens[i] * H + j] += dx[i * H + j];
    assert_int_equal(be->ops->embed_backward(be, tokens, n, dx, &g), 0);
    assert_int_equal(check_close_f("embed_backward", gE, want, V * H, 1e-6), 0);
    for (int64_t v = 0; v < V; v++) { /* rows of tokens not in the batch are untouched */
        int used = 0;
        for (int i = 0; i < n; i++)
            used |= tokens[i] == v;
        for (int64_t j = 0; j < H && !used; j++)
            assert_true(gE[v * H + j] == (float)want[v * H + j]);
    }

    static const int32_t bad_hi[] = {1, 13, 2}, bad_lo[] = {1, 2, -1};
    assert_true(be->ops->embed_forward(be, &w, bad_hi, 3, x) < 0);
    assert_true(be->ops->embed_forward(be, &w, bad_lo, 3, x) < 0);
    assert_true(be->ops->embed_backward(be, bad_hi, 3, dx, &g) < 0);
    assert_true(be->ops->embed_backward(be, bad_lo, 3, dx, &g) < 0);

    free(want);
    free(E);
    free(x);
    free(dx);
    free(gE);
    be->ops->destroy(be);
}

/* ---- bad shapes and creation --------------------------------------------------------- */

static void test_bad_shapes(void **state)
{
    layer_fix f;
    layer_fix_init(&f, CFG_LLAMA_MHA, 91);
    int64_t H = f.cfg.hidden;
    be_backend *be = make_backend(&f.cfg, 20, 8);
    float *x = falloc(40 * H), *y = falloc(40 * H), *dy = falloc(40 * H), *dx = falloc(40 * H);
    uint64_t s = 92;
    fill(&s, x, NULL, 40 * H, 0.0, 1.0);
    fill(&s, dy, NULL, 40 * H, 0.0, 1.0);
    static const int bad_bt[][2] = {{1, 9}, {3, 7}, {0, 4}, {2, 0}, {-1, 4}};
    for (size_t i = 0; i < sizeof bad_bt / sizeof bad_bt[0]; i++) {
        int B = bad_bt[i][0], T = bad_bt[i][1];
        assert_true(be->ops->layer_forward(be, &f.bw, x, y, B, T, BE_DISCARD) < 0);
        assert_true(be->ops->layer_backward(be, &f.bw, x, dy, dx, &f.bg, B, T) < 0);
    }
    assert_int_equal(be->ops->layer_forward(be, &f.bw, x, y, 2, 8, BE_DISCARD), 0);
    assert_int_equal(be->ops->layer_forward(be, &f.bw, x, y, 20, 1, BE_DISCARD), 0);

    /* head: too many tokens, targets out of range */
    float norm[32], *W = falloc(f.cfg.vocab * H), gnorm[32] = {0}, *gW = falloc(f.cfg.vocab * H);
    fill(&s, norm, NULL, H, 1.0, 0.1);
    fill(&s, W, NULL, f.cfg.vocab * H, 0.0, 0.1);
    model_head_ptrs hw = {.norm = norm, .lm_head = W}, hg = {.norm = gnorm, .lm_head = gW};
    int32_t targets[40] = {0};
    double loss = 0.0;
    assert_true(be->ops->head_loss(be, &hw, NULL, x, targets, 21, 1.0f, &loss, dx, &hg, NULL) < 0);
    assert_true(be->ops->head_loss(be, &hw, NULL, x, targets, 21, 1.0f, &loss, NULL, &hg, NULL) < 0);
    targets[3] = (int32_t)f.cfg.vocab;
    assert_true(be->ops->head_loss(be, &hw, NULL, x, targets, 5, 1.0f, &loss, dx, &hg, NULL) < 0);
    targets[3] = -1;
    assert_true(be->ops->head_loss(be, &hw, NULL, x, targets, 5, 1.0f, &loss, dx, &hg, NULL) < 0);
    targets[3] = BE_IGNORE_INDEX;
    assert_int_equal(be->ops->head_loss(be, &hw, NULL, x, targets, 5, 1.0f, &loss, dx, &hg, NULL),
                     0);

    free(W);
    free(gW);
    free(x);
    free(y);
    free(dy);
    free(dx);
    be->ops->destroy(be);
    layer_fix_free(&f);
}

static void test_create_sliding_window(void **state)
{
    static const char mistral[] =
        "{\"model_type\": \"mistral\", \"hidden_size\": 16, \"intermediate_size\": 24,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 20, \"sliding_window\": 16}";
    static const char qwen2_off[] =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 16, \"intermediate_size\": 24,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 20, \"sliding_window\": 16, \"use_sliding_window\": false}";
    static const char qwen2_on[] =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 16, \"intermediate_size\": 24,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 20, \"sliding_window\": 16, \"use_sliding_window\": true}";
    static be_backend sentinel;
    model_config c;
    be_backend *be = &sentinel; /* must be reset to NULL on failure */
    rt_err err = {{0}};

    parse_config(mistral, &c);
    assert_true(be_cpu_create(&c, 64, 32, N_THREADS, &be, &err) < 0);
    assert_null(be);
    if (strstr(err.msg, "sliding_window") == NULL)
        fail_msg("error does not mention sliding_window: \"%s\"", err.msg);
    assert_int_equal(be_cpu_create(&c, 64, 16, N_THREADS, &be, &err), 0);
    be->ops->destroy(be);

    parse_config(qwen2_on, &c);
    err.msg[0] = '\0';
    assert_true(be_cpu_create(&c, 64, 32, N_THREADS, &be, &err) < 0);
    assert_non_null(strstr(err.msg, "sliding_window"));

    parse_config(qwen2_off, &c); /* Qwen2 ignores the window unless use_sliding_window */
    assert_int_equal(be_cpu_create(&c, 64, 32, N_THREADS, &be, &err), 0);
    be->ops->destroy(be);

    assert_true(be_cpu_create(&c, 8, 16, N_THREADS, &be, &err) < 0); /* max_seq > max_tokens */
    assert_true(be_cpu_create(&c, 0, 0, N_THREADS, &be, &err) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_forward),
        cmocka_unit_test(test_layer_forward_long_rows),
        cmocka_unit_test(test_layer_rows_independent),
        cmocka_unit_test(test_layer_backward_fd),
        cmocka_unit_test(test_layer_backward_accumulate_alias),
        cmocka_unit_test(test_layer_backward_deterministic),
        cmocka_unit_test(test_layer_keep_for_backward),
        cmocka_unit_test(test_head_loss),
        cmocka_unit_test(test_head_all_ignored),
        cmocka_unit_test(test_head_loss_chunks),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_create_sliding_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * bench_adamw: the parameter server's AdamW step against the machine's
 * memory bandwidth, measured in the same run by a STREAM-like triad.
 *
 * For each thread count (--threads, default 1 and every CPU of the affinity
 * mask) one pool is opened and three things are timed, alternating, over
 * --rounds rounds; the best time of each is kept (a VM's bandwidth wanders by
 * +-10% from one second to the next):
 *   triad       a[i] = b[i] + s * c[i] on doubles, a plain compiled loop as
 *               in STREAM, run through the same pool with the same static
 *               chunk split as the step (chunk j to thread j % n); counted as
 *               STREAM counts it, 24 B per element.
 *   adamw fp32  adamw_pool_step with W == master (no separate W): reads
 *               accum, p, m, v and writes p, m, v and the zeroed accum;
 *               counted at 28 B per parameter. ratio = its GB/s / triad GB/s.
 *   pattern     AdamW's loads and stores without its arithmetic (p, m, v +=
 *               accum; accum = 0), a plain compiled loop on the same split:
 *               the bound for a one-pass fp32 kernel on this machine (the
 *               issue measured 0.91 of the triad for it on a 2-core Cascade
 *               Lake, and DeepSpeed's AVX-512 Adam 0.79); 28 B per parameter.
 *               A second line gives adamw fp32 / pattern.
 *   adamw bf16  the full block step: fp32 master, m, v, accum and a bf16 W.
 *               Its one-pass minimum is 34 B per parameter (accum, master, m
 *               and v read and written, W written); "measured" is the step
 *               time times the triad bandwidth over the parameter count (the
 *               bytes the machine could have moved meanwhile), and ratio =
 *               minimum / measured.
 * Each line ends with "ratio <r>". Exit 0 whatever the ratios: a benchmark
 * reports, a test judges.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/paramserver/adamw.h"

#define BENCH_MAX_LIST 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The STREAM kernel, on one chunk: nothing but the compiler's loop. */
static void triad_range(double *restrict a, const double *restrict b, const double *restrict c,
                        double s, uint64_t lo, uint64_t hi)
{
    for (uint64_t i = lo; i < hi; i++)
        a[i] = b[i] + s * c[i];
}

/* AdamW's memory traffic, none of its arithmetic. */
static void pattern_range(float *restrict p, float *restrict m, float *restrict v,
                          float *restrict a, uint64_t lo, uint64_t hi)
{
    for (uint64_t i = lo; i < hi; i++) {
        float g = a[i];
        p[i] += g;
        m[i] += g;
        v[i] += g;
        a[i] = 0.0f;
    }
}

typedef struct bench_arrays {
    uint64_t n;
    double *a, *b, *c;       /* triad [n] */
    float *p, *m, *v, *acc;  /* fp32 [n]: master, moments, accumulator */
    uint16_t *w;             /* bf16 [n] */
} bench_arrays;

static void triad_fn(void *ctx, int tid, int nt)
{
    const bench_arrays *x = ctx;
    uint64_t nc = (x->n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    for (uint64_t c = (uint64_t)tid; c < nc; c += (uint64_t)nt) {
        uint64_t lo = c * ADAMW_CHUNK, hi = x->n - lo < ADAMW_CHUNK ? x->n : lo + ADAMW_CHUNK;
        triad_range(x->a, x->b, x->c, 3.0, lo, hi);
    }
}

static void pattern_fn(void *ctx, int tid, int nt)
{
    const bench_arrays *x = ctx;
    uint64_t nc = (x->n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    for (uint64_t c = (uint64_t)tid; c < nc; c += (uint64_t)nt) {
        uint64_t lo = c * ADAMW_CHUNK, hi = x->n - lo < ADAMW_CHUNK ? x->n : lo + ADAMW_CHUNK;
        pattern_range(x->p, x->m, x->v, x->acc, lo, hi);
    }
}

/* First touch by the thread that will stream each chunk, with the same split. */
static void init_fn(void *ctx, int tid, int nt)
{
    const bench_arrays *x = ctx;
    uint64_t nc = (x->n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    for (uint64_t c = (uint64_t)tid; c < nc; c += (uint64_t)nt) {
        uint64_t lo = c * ADAMW_CHUNK, hi = x->n - lo < ADAMW_CHUNK ? x->n : lo + ADAMW_CHUNK;
        for (uint64_t i = lo; i < hi; i++) {
            x->a[i] = 0.0;
            x->b[i] = 1.0;
            x->c[i] = 2.0;
            x->p[i] = 0.01f * (float)(i % 199) - 1.0f;
            x->m[i] = 0.0f;
            x->v[i] = 0.0f;
            x->acc[i] = 1e-3f * (float)(i % 37) - 0.018f;
            x->w[i] = 0;
        }
    }
}

static void *bench_alloc(size_t bytes)
{
    return aligned_alloc(2u << 20, (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20));
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > ADAMW_MAX_THREADS)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    return n;
}

static uint64_t parse_count(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return 0;
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M')
        v <<= 20, end++;
    else if (*end == 'G')
        v <<= 30, end++;
    if (*end == 'i')
        end++;
    return *end == '\0' ? (uint64_t)v : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_adamw [--params N (default 64Mi; K/M/G suffixes)] [--threads 1,2,...]\n"
               "                   [--rounds R (default 8)] [--isa avx512|avx2|scalar]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"params", required_argument, NULL, 'p'}, {"threads", required_argument, NULL, 't'},
        {"rounds", required_argument, NULL, 'r'}, {"isa", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    uint64_t n = 64ull << 20;
    int rounds = 8, threads[BENCH_MAX_LIST], n_threads = 0;
    const char *isa = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "p:t:r:i:h", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            if ((n = parse_count(optarg)) == 0) {
                fprintf(stderr, "bench_adamw: --params %s: expected a count like 67108864 or 64Mi\n", optarg);
                return 2;
            }
            break;
        case 't':
            if ((n_threads = parse_list(optarg, threads, BENCH_MAX_LIST)) <= 0) {
                fprintf(stderr, "bench_adamw: --threads %s: expected a list like 1,2 (1..%d)\n", optarg,
                        ADAMW_MAX_THREADS);
                return 2;
            }
            break;
        case 'r':
            rounds = atoi(optarg);
            if (rounds < 1) {
                fprintf(stderr, "bench_adamw: --rounds %s: expected a count >= 1\n", optarg);
                return 2;
            }
            break;
        case 'i':
            isa = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    rt_err err = {{0}};
    if (isa != NULL && adamw_force_isa(isa, &err) < 0) {
        fprintf(stderr, "bench_adamw: %s\n", err.msg);
        return 2;
    }
    cpu_set_t mask;
    int n_cpus = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : 1;
    if (n_threads == 0) {
        threads[n_threads++] = 1;
        if (n_cpus > 1)
            threads[n_threads++] = n_cpus;
    }

    bench_arrays x = {.n = n};
    x.a = bench_alloc(n * sizeof(double));
    x.b = bench_alloc(n * sizeof(double));
    x.c = bench_alloc(n * sizeof(double));
    x.p = bench_alloc(n * sizeof(float));
    x.m = bench_alloc(n * sizeof(float));
    x.v = bench_alloc(n * sizeof(float));
    x.acc = bench_alloc(n * sizeof(float));
    x.w = bench_alloc(n * sizeof(uint16_t));
    if (!x.a || !x.b || !x.c || !x.p || !x.m || !x.v || !x.acc || !x.w) {
        fprintf(stderr, "bench_adamw: out of memory for %llu parameters (%.1f GiB)\n",
                (unsigned long long)n, (double)n * 42.0 / (1u << 30));
        return 1;
    }
    printf("bench_adamw: %llu parameters (%.1f GiB of arrays), %d rounds, isa %s, %d CPUs in the affinity mask\n",
           (unsigned long long)n, (double)n * 42.0 / (1u << 30), rounds, adamw_isa(), n_cpus);

    adamw_tensor f32 = {.master = x.p, .m = x.m, .v = x.v, .accum = x.acc, .w = NULL,
                        .w_dtype = DT_F32, .n = n, .decay = true};
    adamw_tensor bf16 = f32;
    bf16.w = x.w;
    bf16.w_dtype = DT_BF16;
    adamw_hparams hp = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};

    for (int ti = 0; ti < n_threads; ti++) {
        adamw_pool *pool;
        if (adamw_pool_open(threads[ti], NULL, &pool, &err) < 0) {
            fprintf(stderr, "bench_adamw: %s\n", err.msg);
            return 1;
        }
        adamw_pool_run(pool, init_fn, &x);
        double best_triad = 1e30, best_pat = 1e30, best_f32 = 1e30, best_bf16 = 1e30;
        for (int r = 0; r <= rounds; r++) { /* round 0 warms up */
            double t0 = now();
            adamw_pool_run(pool, triad_fn, &x);
            double t1 = now();
            hp.step++;
            adamw_pool_step(pool, &hp, 0.5f, &f32, 1);
            double t2 = now();
            hp.step++;
            adamw_pool_step(pool, &hp, 0.5f, &bf16, 1);
            double t3 = now();
            adamw_pool_run(pool, pattern_fn, &x);
            double t4 = now();
            if (r == 0)
                continue;
            best_pat = t4 - t3 < best_pat ? t4 - t3 : best_pat;
            best_triad = t1 - t0 < best_triad ? t1 - t0 : best_triad;
            best_f32 = t2 - t1 < best_f32 ? t2 - t1 : best_f32;
            best_bf16 = t3 - t2 < best_bf16 ? t3 - t2 : best_bf16;
        }
        double P = (double)n;
        double triad_gbs = 24.0 * P / best_triad / 1e9;
        double f32_gbs = 28.0 * P / best_f32 / 1e9;
        double pat_gbs = 28.0 * P / best_pat / 1e9;
        double measured = best_bf16 * triad_gbs * 1e9 / P;
        printf("threads %d: %s\n", threads[ti], adamw_pool_describe(pool));
        printf("  triad       %8.3f ms  %7.2f GB/s (24 B/element)                       ratio 1.000\n",
               best_triad * 1e3, triad_gbs);
        printf("  adamw fp32  %8.3f ms  %7.2f GB/s (28 B/param)  %8.1f Mparam/s       ratio %.3f\n",
               best_f32 * 1e3, f32_gbs, P / best_f32 / 1e6, f32_gbs / triad_gbs);
        printf("  pattern     %8.3f ms  %7.2f GB/s (28 B/param, no arithmetic)                ratio %.3f\n",
               best_pat * 1e3, pat_gbs, pat_gbs / triad_gbs);
        printf("  adamw fp32 / pattern                                                     ratio %.3f\n",
               f32_gbs / pat_gbs);
        printf("  adamw bf16  %8.3f ms  %8.1f Mparam/s  one-pass 34 B/param, measured %.1f B/param  ratio %.3f\n",
               best_bf16 * 1e3, P / best_bf16 / 1e6, measured, 34.0 / measured);
        adamw_pool_close(pool);
    }
    free(x.a);
    free(x.b);
    free(x.c);
    free(x.p);
    free(x.m);
    free(x.v);
    free(x.acc);
    free(x.w);
    return 0;
}

/*
 * test_dedup: exact and near-duplicate detection (services/dataloader/dedup.c):
 * MinHash estimates against the true Jaccard similarity of random sets and of
 * token documents' shingle sets; the LSH shape against datasketch's rule
 * evaluated exactly (rational arithmetic, offline: the table in
 * test_lsh_params); LSH candidates for near-identical documents and none for
 * disjoint ones; verdicts and matches in corpus order; determinism across
 * instances and threads; the 128-bit hash on near-identical inputs; and the
 * option errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/dataloader/dedup.h"

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static dedup *make(dedup_mode mode, double threshold, int num_perm, int ngram, uint64_t seed)
{
    dedup_opts o = {.mode = mode, .threshold = threshold, .num_perm = num_perm, .ngram = ngram, .seed = seed};
    dedup *d = NULL;
    rt_err err = {{0}};
    int rc = dedup_init(&o, &d, &err);
    if (rc != 0)
        fail_msg("dedup_init: %s", err.msg);
    return d;
}

/* A document of n random ids in [lo, lo + range). */
static int32_t *random_doc(uint64_t *s, size_t n, int32_t lo, uint32_t range)
{
    int32_t *d = malloc(n * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = lo + (int32_t)(rnd(s) % range);
    return d;
}

/* A copy of doc[n] with `changes` ids at distinct random places replaced by
 * ids outside [lo, lo + range). */
static int32_t *mutate(uint64_t *s, const int32_t *doc, size_t n, int changes, int32_t marker)
{
    int32_t *d = malloc(n * sizeof *d);
    assert_non_null(d);
    memcpy(d, doc, n * sizeof *d);
    for (int c = 0; c < changes;) {
        size_t i = rnd(s) % n;
        if (d[i] >= marker)
            continue;
        d[i] = marker + c++;
    }
    return d;
}

typedef struct fp {
    uint64_t hash[2];
    uint32_t *sig;
} fp;

static fp fingerprint(const dedup *d, const int32_t *ids, size_t n)
{
    fp f;
    size_t k = dedup_sig_len(d);
    f.sig = calloc(k > 0 ? k : 1, sizeof *f.sig);
    assert_non_null(f.sig);
    dedup_fingerprint(d, ids, n, f.hash, f.sig);
    return f;
}

static int decide(dedup *d, const fp *f, uint64_t *match)
{
    rt_err err = {{0}};
    *match = UINT64_MAX;
    int v = dedup_decide(d, f->hash, f->sig, match, &err);
    if (v < 0)
        fail_msg("dedup_decide: %s", err.msg);
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* True Jaccard similarity of the n-gram shingle sets of a[na] and b[nb]
 * (each shingle as a 64-bit polynomial hash: collisions are negligible at
 * these sizes and would only blur the reference by 1e-15). */
static uint64_t *shingles(const int32_t *a, size_t n, size_t g, size_t *m)
{
    if (g > n)
        g = n;
    *m = n - g + 1;
    uint64_t *v = malloc(*m * sizeof *v);
    assert_non_null(v);
    for (size_t p = 0; p < *m; p++) {
        uint64_t h = 1469598103934665603ull;
        for (size_t j = 0; j < g; j++)
            h = (h ^ (uint32_t)a[p + j]) * 1099511628211ull + (h >> 29);
        v[p] = h;
    }
    qsort(v, *m, sizeof *v, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < *m; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *m = u;
    return v;
}

static double true_jaccard(const int32_t *a, size_t na, const int32_t *b, size_t nb, size_t g)
{
    size_t ma, mb;
    uint64_t *x = shingles(a, na, g, &ma), *y = shingles(b, nb, g, &mb);
    size_t i = 0, j = 0, inter = 0;
    while (i < ma && j < mb) {
        if (x[i] == y[j])
            inter++, i++, j++;
        else if (x[i] < y[j])
            i++;
        else
            j++;
    }
    free(x);
    free(y);
    return (double)inter / (double)(ma + mb - inter);
}

/* ---- tests -------------------------------------------------------------------- */

/* Random sets with known Jaccard similarity J: the estimate's bias and RMS
 * error over 40 pairs match sqrt(J(1 - J)/k) (a family whose permutations
 * were correlated or not min-wise would exceed it); disjoint sets estimate 0
 * and equal sets (in another order, with repeats) exactly 1. */
static void test_jaccard_estimates(void **state)
{
    (void)state;
    const int k = 256;
    dedup *d = make(DEDUP_MODE_NEAR, 0.8, k, 5, 42);
    assert_int_equal(dedup_sig_len(d), (size_t)k);
    uint64_t s = 7;
    static const double targets[] = {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0};
    uint32_t *sa = malloc((size_t)k * 4), *sb = malloc((size_t)k * 4);
    uint64_t *a = malloc(4000 * sizeof *a), *b = malloc(4000 * sizeof *b);
    assert_non_null(sa);
    assert_non_null(sb);
    assert_non_null(a);
    assert_non_null(b);
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        double sum = 0, sum2 = 0, worst = 0;
        const int trials = 40;
        for (int trial = 0; trial < trials; trial++) {
            size_t u = 600 + rnd(&s) % 900; /* |A ∪ B| */
            size_t inter = (size_t)llround(targets[t] * (double)u);
            size_t only = u - inter, only_a = only / 2, only_b = only - only_a;
            size_t na = 0, nb = 0;
            for (size_t i = 0; i < inter; i++) {
                uint64_t e = rnd(&s);
                a[na++] = e;
                b[nb++] = e;
            }
            for (size_t i = 0; i < only_a; i++)
                a[na++] = rnd(&s);
            for (size_t i = 0; i < only_b; i++)
                b[nb++] = rnd(&s);
            if (targets[t] == 1.0) { /* b: the same set reversed, with repeats */
                for (size_t i = 0; i < na; i++)
                    b[i] = a[na - 1 - i];
                for (size_t i = 0; i < 100; i++)
                    b[nb++] = a[i];
            }
            double j = (double)inter / (double)u;
            dedup_minhash(d, a, na, sa);
            dedup_minhash(d, b, nb, sb);
            double est = dedup_jaccard(d, sa, sb), e = est - j;
            if (targets[t] == 0.0 || targets[t] == 1.0)
                assert_true(est == j);
            sum += e;
            sum2 += e * e;
            worst = fabs(e) > worst ? fabs(e) : worst;
        }
        double sigma = sqrt(targets[t] * (1 - targets[t]) / k), bias = sum / trials, rms = sqrt(sum2 / trials);
        if (fabs(bias) > 0.5 * sigma + 0.005 || rms > 1.35 * sigma + 0.005 || worst > 4.5 * sigma + 0.005)
            fail_msg("J %.2f: bias %.4f, rms %.4f, worst %.4f; sigma %.4f", targets[t], bias, rms, worst, sigma);
    }
    /* the empty set: every slot all ones */
    dedup_minhash(d, a, 0, sa);
    for (int i = 0; i < k; i++)
        assert_int_equal(sa[i], UINT32_MAX);
    free(sa);
    free(sb);
    free(a);
    free(b);
    dedup_free(d);
}

/* Documents of token ids: the estimate follows the Jaccard similarity of
 * their n-gram shingle sets (computed here independently) for several n and
 * amounts of change, so a signature of the wrong shingles (not n-grams,
 * windows skipped, ngram ignored) shows. */
static void test_shingle_estimates(void **state)
{
    (void)state;
    uint64_t s = 11;
    static const int ngrams[] = {1, 3, 5, 9};
    static const int changes[] = {0, 5, 40, 150};
    for (size_t g = 0; g < sizeof ngrams / sizeof *ngrams; g++) {
        dedup *d = make(DEDUP_MODE_NEAR, 0.5, 256, ngrams[g], 3);
        for (size_t c = 0; c < sizeof changes / sizeof *changes; c++) {
            for (int trial = 0; trial < 4; trial++) {
                size_t n = 800 + rnd(&s) % 400;
                int32_t *a = random_doc(&s, n, 0, 3000);
                int32_t *b = mutate(&s, a, n, changes[c], 100000);
                double j = true_jaccard(a, n, b, n, (size_t)ngrams[g]);
                fp fa = fingerprint(d, a, n), fb = fingerprint(d, b, n);
                double est = dedup_jaccard(d, fa.sig, fb.sig), sigma = sqrt(j * (1 - j) / 256);
                if (fabs(est - j) > 4.5 * sigma + 0.01)
                    fail_msg("ngram %d, %d changes: estimate %.4f, true Jaccard %.4f", ngrams[g], changes[c], est,
                             j);
                free(fa.sig);
                free(fb.sig);
                free(a);
                free(b);
            }
        }
        dedup_free(d);
    }
}

/* (threshold, num_perm) -> (bands, rows) as datasketch's _optimal_param gives
 * them, computed with the integrals in exact rational arithmetic (the
 * integrand is a polynomial); the nearest other (b, r) is at least 2e-7
 * worse in each case, well above the quadrature's error. */
static void test_lsh_params(void **state)
{
    (void)state;
    static const struct {
        double t;
        int n, b, r;
    } ref[] = {
        {0.8, 128, 9, 13},  {0.5, 128, 25, 5},  {0.9, 128, 5, 25},   {0.7, 256, 25, 10},
        {0.3, 64, 21, 3},   {0.95, 32, 1, 32},  {0.6, 100, 16, 6},   {0.8, 16, 2, 8},
        {0.5, 1, 1, 1},     {1.0, 128, 1, 128}, {0.85, 128, 8, 16},  {0.4, 128, 32, 4},
        {0.1, 128, 64, 2},  {0.75, 512, 36, 14}, {0.99, 128, 1, 128}, {0.01, 64, 64, 1},
    };
    for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) {
        int b = -1, r = -1;
        assert_int_equal(dedup_lsh_params(ref[i].t, ref[i].n, &b, &r), 0);
        if (b != ref[i].b || r != ref[i].r)
            fail_msg("threshold %g, num_perm %d: %d bands of %d rows, expected %d of %d", ref[i].t, ref[i].n, b, r,
                     ref[i].b, ref[i].r);
        assert_true(b * r <= ref[i].n);
    }
    int b, r;
    assert_int_equal(dedup_lsh_params(0.0, 128, &b, &r), -EINVAL);
    assert_int_equal(dedup_lsh_params(-0.5, 128, &b, &r), -EINVAL);
    assert_int_equal(dedup_lsh_params(1.01, 128, &b, &r), -EINVAL);
    assert_int_equal(dedup_lsh_params(NAN, 128, &b, &r), -EINVAL);
    assert_int_equal(dedup_lsh_params(0.8, 0, &b, &r), -EINVAL);
    assert_int_equal(dedup_lsh_params(0.8, DEDUP_MAX_PERM + 1, &b, &r), -EINVAL);

    dedup *d = make(DEDUP_MODE_NEAR, 0.8, 128, 5, 1);
    dedup_lsh_shape(d, &b, &r);
    assert_int_equal(b, 9);
    assert_int_equal(r, 13);
    dedup_free(d);
    d = make(DEDUP_MODE_EXACT, 0.8, 128, 5, 1);
    dedup_lsh_shape(d, &b, &r);
    assert_int_equal(b, 0);
    assert_int_equal(dedup_sig_len(d), 0);
    dedup_free(d);
}

/* LSH candidates: a near-identical document finds its original and only it;
 * disjoint documents find nothing; removed documents are not candidates. */
static void test_candidates(void **state)
{
    (void)state;
    dedup *d = make(DEDUP_MODE_NEAR, 0.8, 128, 5, 5);
    uint64_t s = 99, ids[16], match;
    const size_t n = 2000;
    int32_t *a = random_doc(&s, n, 0, 50000);
    int32_t *a1 = mutate(&s, a, n, 3, 1 << 20);        /* ~0.985 */
    int32_t *b = random_doc(&s, n, 60000, 50000);       /* disjoint from a */
    int32_t *b1 = mutate(&s, b, n, 6, 1 << 21);         /* ~0.97 */
    int32_t *a2 = mutate(&s, a, n, 120, 1 << 22);       /* ~0.55: below the threshold */
    fp fa = fingerprint(d, a, n), fa1 = fingerprint(d, a1, n), fb = fingerprint(d, b, n),
       fb1 = fingerprint(d, b1, n), fa2 = fingerprint(d, a2, n);
    assert_true(dedup_jaccard(d, fa.sig, fa1.sig) >= 0.9);
    assert_true(dedup_jaccard(d, fa.sig, fa2.sig) < 0.7);

    assert_int_equal(dedup_candidates(d, fa.sig, ids, 16), 0); /* nothing kept yet */
    assert_int_equal(decide(d, &fa, &match), DEDUP_KEEP);
    assert_int_equal(dedup_candidates(d, fa1.sig, ids, 16), 1);
    assert_int_equal(ids[0], 0);
    assert_int_equal(dedup_candidates(d, fb.sig, ids, 16), 0);
    assert_int_equal(decide(d, &fa1, &match), DEDUP_NEAR_DUP);
    assert_int_equal(match, 0);
    assert_int_equal(decide(d, &fb, &match), DEDUP_KEEP);
    assert_int_equal(dedup_candidates(d, fb1.sig, ids, 16), 1);
    assert_int_equal(ids[0], 2);
    assert_int_equal(decide(d, &fb1, &match), DEDUP_NEAR_DUP);
    assert_int_equal(match, 2);
    /* below the threshold: kept whether or not it was a candidate */
    assert_int_equal(decide(d, &fa2, &match), DEDUP_KEEP);
    /* a1 was removed: only the kept a (ordinal 0) and a2 (4) are candidates of a */
    int64_t nc = dedup_candidates(d, fa1.sig, ids, 16);
    assert_true(nc >= 1 && nc <= 2);
    assert_int_equal(ids[0], 0);
    if (nc == 2)
        assert_int_equal(ids[1], 4);

    /* 300 random documents: no candidates, all kept */
    dedup *e = make(DEDUP_MODE_NEAR, 0.8, 128, 5, 5);
    for (int i = 0; i < 300; i++) {
        size_t rn = 200 + (size_t)(i % 7);
        int32_t *r = random_doc(&s, rn, 0, 1 << 20);
        fp fr = fingerprint(e, r, rn);
        assert_int_equal(dedup_candidates(e, fr.sig, ids, 16), 0);
        assert_int_equal(decide(e, &fr, &match), DEDUP_KEEP);
        free(fr.sig);
        free(r);
    }
    dedup_free(e);

    free(fa.sig), free(fa1.sig), free(fb.sig), free(fb1.sig), free(fa2.sig);
    free(a), free(a1), free(b), free(b1), free(a2);
    dedup_free(d);
}

/* Exact duplicates: the 128-bit hash separates near-identical inputs, and the
 * first occurrence is kept in every mode. */
static void test_exact(void **state)
{
    (void)state;
    /* inputs that differ little: every hash differs in both halves */
    enum { N = 64 };
    int32_t base[N];
    uint64_t s = 5;
    for (int i = 0; i < N; i++)
        base[i] = 1 + (int32_t)(rnd(&s) % 1000); /* no zeros: [0] would be a prefix */
    size_t cap = 1 + N * 31 + N + 8, nh = 0;
    uint64_t(*h)[2] = malloc(cap * sizeof *h);
    assert_non_null(h);
    dedup_hash128(base, N, h[nh++]);
    for (int i = 0; i < N; i++)
        for (int bit = 0; bit < 31; bit++) {
            int32_t v[N];
            memcpy(v, base, sizeof v);
            v[i] ^= 1 << bit;
            dedup_hash128(v, N, h[nh++]);
        }
    for (int n = 0; n < N; n++) /* prefixes */
        dedup_hash128(base, (size_t)n, h[nh++]);
    static const int32_t zeros[4] = {0, 0, 0, 0};
    for (size_t n = 1; n <= 4; n++) /* [0], [0,0], ...: differ from [] and each other */
        dedup_hash128(zeros, n, h[nh++]);
    int32_t swapped[N];
    memcpy(swapped, base, sizeof swapped);
    swapped[0] = base[1], swapped[1] = base[0];
    if (base[0] != base[1])
        dedup_hash128(swapped, N, h[nh++]);
    for (size_t i = 0; i < nh; i++)
        for (size_t j = i + 1; j < nh; j++)
            if (h[i][0] == h[j][0] || h[i][1] == h[j][1])
                fail_msg("hash %zu and %zu share a half", i, j);
    uint64_t again[2];
    dedup_hash128(base, N, again);
    assert_true(again[0] == h[0][0] && again[1] == h[0][1]);
    free(h);

    /* verdicts: A B A C B A' (A' one id away from A) in each mode */
    const size_t n = 1500;
    int32_t *A = random_doc(&s, n, 0, 30000), *B = random_doc(&s, n, 0, 30000), *C = random_doc(&s, n, 0, 30000);
    int32_t *A1 = mutate(&s, A, n, 1, 1 << 20);
    const int32_t *corpus[] = {A, B, A, C, B, A1, A1};
    static const int want_exact[] = {DEDUP_KEEP, DEDUP_KEEP, DEDUP_EXACT_DUP, DEDUP_KEEP, DEDUP_EXACT_DUP,
                                     DEDUP_KEEP, DEDUP_EXACT_DUP};
    static const uint64_t match_exact[] = {0, 0, 0, 0, 1, 0, 5};
    static const int want_near[] = {DEDUP_KEEP, DEDUP_KEEP, DEDUP_EXACT_DUP, DEDUP_KEEP, DEDUP_EXACT_DUP,
                                    DEDUP_NEAR_DUP, DEDUP_EXACT_DUP};
    static const uint64_t match_near[] = {0, 0, 0, 0, 1, 0, 5}; /* A1 again: same tokens as the removed A1 */
    dedup *dn = make(DEDUP_MODE_NONE, 0, 0, 0, 0), *de = make(DEDUP_MODE_EXACT, 0, 0, 0, 0),
          *dnr = make(DEDUP_MODE_NEAR, 0.8, 128, 5, 9);
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        uint64_t m;
        fp f = fingerprint(dn, corpus[i], n);
        assert_int_equal(decide(dn, &f, &m), DEDUP_KEEP);
        free(f.sig);
        f = fingerprint(de, corpus[i], n);
        int v = decide(de, &f, &m);
        if (v != want_exact[i] || (v != DEDUP_KEEP && m != match_exact[i]))
            fail_msg("exact mode, document %zu: verdict %d match %llu", i, v, (unsigned long long)m);
        free(f.sig);
        f = fingerprint(dnr, corpus[i], n);
        v = decide(dnr, &f, &m);
        if (v != want_near[i] || (v != DEDUP_KEEP && m != match_near[i]))
            fail_msg("near mode, document %zu: verdict %d match %llu", i, v, (unsigned long long)m);
        free(f.sig);
    }
    dedup_free(dn);
    dedup_free(de);
    dedup_free(dnr);
    free(A), free(B), free(C), free(A1);
}

/* Documents shorter than ngram are one shingle; empty documents are exact
 * duplicates of each other and never near duplicates of anything else. */
static void test_short_docs(void **state)
{
    (void)state;
    dedup *d = make(DEDUP_MODE_NEAR, 0.8, 64, 5, 1);
    static const int32_t x[] = {1, 2}, y[] = {1, 3}, z[] = {1, 2, 3, 4, 5, 6};
    fp fx = fingerprint(d, x, 2), fy = fingerprint(d, y, 2), fz = fingerprint(d, z, 6), fe = fingerprint(d, x, 0);
    uint64_t m;
    assert_true(dedup_jaccard(d, fx.sig, fy.sig) == 0.0);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(fe.sig[i], UINT32_MAX);
    assert_int_equal(decide(d, &fx, &m), DEDUP_KEEP);
    assert_int_equal(decide(d, &fy, &m), DEDUP_KEEP);
    assert_int_equal(decide(d, &fx, &m), DEDUP_EXACT_DUP);
    assert_int_equal(m, 0);
    assert_int_equal(decide(d, &fe, &m), DEDUP_KEEP);
    assert_int_equal(decide(d, &fz, &m), DEDUP_KEEP);
    assert_int_equal(decide(d, &fe, &m), DEDUP_EXACT_DUP);
    assert_int_equal(m, 3);
    free(fx.sig), free(fy.sig), free(fz.sig), free(fe.sig);
    dedup_free(d);
}

typedef struct fp_job {
    const dedup *d;
    int32_t **docs;
    size_t *lens;
    size_t begin, end;
    uint64_t (*hash)[2];
    uint32_t *sigs;
} fp_job;

static void *fp_run(void *arg)
{
    fp_job *j = arg;
    size_t k = dedup_sig_len(j->d);
    for (size_t i = j->begin; i < j->end; i++)
        dedup_fingerprint(j->d, j->docs[i], j->lens[i], j->hash[i], j->sigs + i * k);
    return NULL;
}

/* Same options, same results: two instances, one or four threads; another
 * seed gives other signatures but the same clear-cut verdicts. */
static void test_determinism(void **state)
{
    (void)state;
    enum { NDOC = 120, K = 128 };
    uint64_t s = 1234;
    int32_t *docs[NDOC];
    size_t lens[NDOC];
    for (int i = 0; i < NDOC; i++) {
        if (i >= 20 && i % 4 == 0) { /* a near copy of an earlier document */
            int src = (int)(rnd(&s) % 20);
            lens[i] = lens[src];
            docs[i] = mutate(&s, docs[src], lens[i], 2, 1 << 24);
        } else if (i >= 20 && i % 4 == 1) { /* an exact copy */
            int src = (int)(rnd(&s) % 20);
            lens[i] = lens[src];
            docs[i] = malloc(lens[i] * sizeof *docs[i]);
            assert_non_null(docs[i]);
            memcpy(docs[i], docs[src], lens[i] * sizeof *docs[i]);
        } else {
            lens[i] = 700 + rnd(&s) % 800;
            docs[i] = random_doc(&s, lens[i], 0, 1 << 16);
        }
    }
    dedup *d1 = make(DEDUP_MODE_NEAR, 0.8, K, 5, 77), *d2 = make(DEDUP_MODE_NEAR, 0.8, K, 5, 77),
          *d3 = make(DEDUP_MODE_NEAR, 0.8, K, 5, 78);
    uint64_t(*h1)[2] = malloc(NDOC * sizeof *h1), (*h4)[2] = malloc(NDOC * sizeof *h4);
    uint32_t *s1 = malloc((size_t)NDOC * K * 4), *s4 = malloc((size_t)NDOC * K * 4);
    assert_non_null(h1);
    assert_non_null(h4);
    assert_non_null(s1);
    assert_non_null(s4);
    fp_job one = {.d = d1, .docs = docs, .lens = lens, .begin = 0, .end = NDOC, .hash = h1, .sigs = s1};
    fp_run(&one);
    fp_job four[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        four[t] = (fp_job){.d = d2, .docs = docs, .lens = lens, .begin = (size_t)t * NDOC / 4,
                           .end = (size_t)(t + 1) * NDOC / 4, .hash = h4, .sigs = s4};
        assert_int_equal(pthread_create(&th[t], NULL, fp_run, &four[t]), 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    assert_memory_equal(h1, h4, NDOC * sizeof *h1);
    assert_memory_equal(s1, s4, (size_t)NDOC * K * 4);

    int kept = 0, exact = 0, near = 0;
    for (int i = 0; i < NDOC; i++) {
        uint64_t m1, m2, m3;
        rt_err err = {{0}};
        int v1 = dedup_decide(d1, h1[i], s1 + (size_t)i * K, &m1, &err);
        int v2 = dedup_decide(d2, h4[i], s4 + (size_t)i * K, &m2, &err);
        fp f3 = fingerprint(d3, docs[i], lens[i]);
        if (i >= 20 && i % 4 == 0)
            assert_true(memcmp(f3.sig, s1 + (size_t)i * K, K * 4) != 0); /* another family */
        int v3 = decide(d3, &f3, &m3);
        free(f3.sig);
        assert_int_equal(v1, v2);
        assert_int_equal(v1, v3);
        if (v1 != DEDUP_KEEP) {
            assert_int_equal(m1, m2);
            assert_int_equal(m1, m3);
        }
        int want = i >= 20 && i % 4 == 0 ? DEDUP_NEAR_DUP : i >= 20 && i % 4 == 1 ? DEDUP_EXACT_DUP : DEDUP_KEEP;
        assert_int_equal(v1, want);
        kept += v1 == DEDUP_KEEP, exact += v1 == DEDUP_EXACT_DUP, near += v1 == DEDUP_NEAR_DUP;
    }
    assert_int_equal(kept, 70);
    assert_int_equal(exact, 25);
    assert_int_equal(near, 25);
    assert_true(dedup_memory(d1) > 0);
    for (int i = 0; i < NDOC; i++)
        free(docs[i]);
    free(h1), free(h4), free(s1), free(s4);
    dedup_free(d1);
    dedup_free(d2);
    dedup_free(d3);
}

static void init_fails(dedup_opts o, const char *needle)
{
    dedup *d = NULL;
    rt_err err = {{0}};
    assert_int_equal(dedup_init(&o, &d, &err), -EINVAL);
    assert_null(d);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error does not mention \"%s\": %s", needle, err.msg);
}

static void test_bad_opts(void **state)
{
    (void)state;
    dedup_opts ok = {.mode = DEDUP_MODE_NEAR, .threshold = 0.8, .num_perm = 128, .ngram = 5};
    dedup_opts o = ok;
    o.threshold = 0;
    init_fails(o, "threshold 0");
    o.threshold = 1.5;
    init_fails(o, "(0, 1]");
    o = ok;
    o.num_perm = 0;
    init_fails(o, "num_perm 0");
    o.num_perm = DEDUP_MAX_PERM + 1;
    init_fails(o, "num_perm");
    o = ok;
    o.ngram = 0;
    init_fails(o, "ngram 0");
    o = ok;
    o.mode = (dedup_mode)7;
    init_fails(o, "mode 7");
    /* exact and none ignore the near-only options */
    o = (dedup_opts){.mode = DEDUP_MODE_EXACT};
    dedup *d = NULL;
    rt_err err = {{0}};
    assert_int_equal(dedup_init(&o, &d, &err), 0);
    dedup_free(d);
    assert_string_equal(dedup_mode_name(DEDUP_MODE_NEAR), "near");
    assert_string_equal(dedup_mode_name(DEDUP_MODE_EXACT), "exact");
    assert_string_equal(dedup_mode_name(DEDUP_MODE_NONE), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jaccard_estimates),
        cmocka_unit_test(test_shingle_estimates),
        cmocka_unit_test(test_lsh_params),
        cmocka_unit_test(test_candidates),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_short_docs),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_bad_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * dedup: exact and near-duplicate documents (see dedup.h).
 *
 * Exact: a 128-bit hash of the ids (two 64-bit lanes with different
 * multipliers over pairs of ids, the length folded in first, a final
 * avalanche that mixes the lanes) in an open-addressing table of every hash
 * seen; for documents that are not crafted to collide (it is not a
 * cryptographic hash) two different ones share a hash with probability about
 * n²/2^129, so the table does not keep the tokens to compare.
 *
 * Near: shingles are the hashes of every window of ngram consecutive ids
 * (one window of the whole document when it is shorter); permutation i maps a
 * shingle hash x to h_i(x) = fmix32(fold32(x) ^ seed_i), MurmurHash3's 32-bit
 * finalizer keyed by a per-permutation seed drawn from splitmix64(opts.seed).
 * x is already a strong 64-bit hash, so the family only has to behave like
 * independent random functions on random inputs; test_dedup measures the
 * Jaccard estimates it gives. 32-bit lanes let the compiler run 8
 * permutations per AVX2 instruction (the kernel is built for x86-64-v3 and
 * the baseline, picked at load time): signatures are the cost of a prepare.
 *
 * LSH: b bands of r rows (dedup_lsh_params, as datasketch chooses them); a
 * band's key is a 64-bit hash of its r slots and the band index, and one
 * open-addressing multimap holds (key, kept document) for every band of
 * every kept document. A document's candidates are the kept documents that
 * share a key with it in any band; a candidate whose signature agrees in at
 * least ceil(threshold·num_perm) slots (estimated Jaccard >= threshold) makes
 * it a near duplicate. Kept signatures stay in memory (4·num_perm bytes per
 * kept document) to verify against.
 *
 * Rejected: 64-bit signature slots (twice the memory and half the SIMD width
 * for a 2^-32 chance of a false equal slot); datasketch's (a·x + b) mod
 * (2^61 - 1) family (a 128-bit product per permutation and shingle); keeping
 * only band keys without signatures (every band collision would be a
 * duplicate: false positives the threshold is meant to rule out); storing
 * removed documents in the LSH index (a chain of near duplicates, each close
 * to the next, would remove documents far from anything kept).
 */
#include "services/dataloader/dedup.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEDUP_SHINGLE_BLOCK 256 /* shingle hashes per kernel call: a 2 KiB stack buffer */
#define DEDUP_MIN_SLOTS 1024    /* initial table slots */
#define DD_LANES 16             /* permutations per kernel block: two AVX2 vectors of 32-bit lanes */
#define DD_MAX_PADDED ((DEDUP_MAX_PERM + DD_LANES - 1) / DD_LANES * DD_LANES)

/* An exact-table slot: a 128-bit hash and ordinal + 1 (0: empty). */
typedef struct dedup_xslot {
    uint64_t h0, h1;
    uint64_t ord1;
} dedup_xslot;

/* An LSH multimap slot: band key (0: empty) and the kept document's index. */
typedef struct dedup_lslot {
    uint64_t key;
    uint64_t kept;
} dedup_lslot;

struct dedup {
    dedup_opts o;
    int bands, rows;
    uint32_t min_equal;     /* slots that must agree: ceil(threshold·num_perm) */
    uint32_t *seeds;        /* [blocks·DD_LANES] permutation seeds; those past num_perm pad the last block */
    int blocks;             /* kernel blocks: ceil(num_perm / DD_LANES) */
    uint64_t n_docs;        /* documents decided */

    dedup_xslot *xs;        /* [x_cap] exact table */
    size_t x_cap, x_n;

    dedup_lslot *ls;        /* [l_cap] LSH multimap */
    size_t l_cap, l_n;

    uint32_t *sigs;         /* [kept_cap][num_perm] signatures of kept documents */
    uint64_t *kept_ord;     /* [kept_cap] their ordinals */
    size_t kept_n, kept_cap;
};

/* ---- hashing ---------------------------------------------------------------- */

static uint64_t dd_mix64(uint64_t z) /* splitmix64's finalizer */
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t dd_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

#define DD_P1 0x9e3779b185ebca87ull /* xxHash64's primes */
#define DD_P2 0xc2b2ae3d27d4eb4full
#define DD_P3 0x165667b19e3779f9ull
#define DD_P4 0x85ebca77c2b2ae63ull

void dedup_hash128(const int32_t *ids, size_t n, uint64_t out[2])
{
    uint64_t a = 0x6a09e667f3bcc908ull ^ ((uint64_t)n * DD_P1);
    uint64_t b = 0xbb67ae8584caa73bull ^ ((uint64_t)n * DD_P3);
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t w = (uint64_t)(uint32_t)ids[i] | (uint64_t)(uint32_t)ids[i + 1] << 32;
        a = dd_rotl(a ^ (w * DD_P2), 31) * DD_P1;
        b = dd_rotl(b ^ (w * DD_P4), 29) * DD_P3;
    }
    if (i < n) {
        uint64_t w = (uint64_t)(uint32_t)ids[i] | 0x5a5a5a5a00000000ull; /* odd length */
        a = dd_rotl(a ^ (w * DD_P2), 31) * DD_P1;
        b = dd_rotl(b ^ (w * DD_P4), 29) * DD_P3;
    }
    out[0] = dd_mix64(a ^ dd_rotl(b, 23));
    out[1] = dd_mix64(b + dd_mix64(a));
}

/* The hash of the shingle ids[0..g). */
static uint64_t dd_shingle(const int32_t *ids, size_t g)
{
    uint64_t h = 0x736869676c65ull ^ ((uint64_t)g * DD_P3);
    for (size_t j = 0; j < g; j++)
        h = dd_rotl(h ^ ((uint64_t)(uint32_t)ids[j] * DD_P2), 27) * DD_P1;
    return dd_mix64(h);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DD_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default"), noinline))
#else
#define DD_KERNEL
#endif

/* mins[i] = min(mins[i], h_i(x[p])) over p < n, i < DD_LANES·blocks. The
 * hot loop of a prepare: h_i is fmix32 keyed by seeds[i] (file comment), in
 * 32-bit lanes; the fixed inner trip count lets gcc's -O2 cost model
 * vectorize it without an epilogue. Integer only: both builds give the same
 * bits. */
DD_KERNEL static void dd_minhash_kernel(const uint32_t *restrict seeds, int blocks, const uint64_t *restrict x,
                                        size_t n, uint32_t *restrict mins)
{
    for (size_t p = 0; p < n; p++) {
        uint32_t u = (uint32_t)(x[p] ^ (x[p] >> 32));
        for (int b = 0; b < blocks; b++) {
            const uint32_t *sd = seeds + b * DD_LANES;
            uint32_t *mn = mins + b * DD_LANES;
            for (int i = 0; i < DD_LANES; i++) {
                uint32_t v = u ^ sd[i];
                v ^= v >> 16;
                v *= 0x85ebca6bu;
                v ^= v >> 13;
                v *= 0xc2b2ae35u;
                v ^= v >> 16;
                mn[i] = v < mn[i] ? v : mn[i];
            }
        }
    }
}

/* ---- LSH parameters ------------------------------------------------------------ */

typedef struct dd_band_fn {
    double b, r;
    bool neg; /* false: 1 - (1 - s^r)^b (a candidate); true: (1 - s^r)^b (not one) */
} dd_band_fn;

static double dd_band_eval(const dd_band_fn *f, double s)
{
    double q = pow(1.0 - pow(s, f->r), f->b);
    return f->neg ? q : 1.0 - q;
}

static double dd_simpson_rec(const dd_band_fn *f, double a, double b, double fa, double fm, double fb,
                             double whole, double eps, int depth)
{
    double m = 0.5 * (a + b), lm = 0.5 * (a + m), rm = 0.5 * (m + b);
    double flm = dd_band_eval(f, lm), frm = dd_band_eval(f, rm);
    double left = (m - a) / 6 * (fa + 4 * flm + fm), right = (b - m) / 6 * (fm + 4 * frm + fb);
    double delta = left + right - whole;
    if (depth <= 0 || fabs(delta) <= 15 * eps)
        return left + right + delta / 15;
    return dd_simpson_rec(f, a, m, fa, flm, fm, left, eps / 2, depth - 1) +
           dd_simpson_rec(f, m, b, fm, frm, fb, right, eps / 2, depth - 1);
}

/* ∫_a^b f by adaptive Simpson; absolute error about 1e-12, far below the
 * gaps between the errors of neighbouring (b, r) (1e-7 and up). The first
 * split is fixed at 8 panels so a steep step inside one panel is seen. */
static double dd_integrate(const dd_band_fn *f, double a, double b)
{
    if (b <= a)
        return 0;
    double sum = 0, h = (b - a) / 8;
    for (int i = 0; i < 8; i++) {
        double x0 = a + h * i, x1 = i == 7 ? b : x0 + h, xm = 0.5 * (x0 + x1);
        double f0 = dd_band_eval(f, x0), fm = dd_band_eval(f, xm), f1 = dd_band_eval(f, x1);
        double whole = (x1 - x0) / 6 * (f0 + 4 * fm + f1);
        sum += dd_simpson_rec(f, x0, x1, f0, fm, f1, whole, 1e-13, 40);
    }
    return sum;
}

int dedup_lsh_params(double threshold, int num_perm, int *bands, int *rows)
{
    if (!(threshold > 0 && threshold <= 1) || num_perm < 1 || num_perm > DEDUP_MAX_PERM)
        return -EINVAL;
    double best = INFINITY;
    int bb = 0, br = 0;
    for (int b = 1; b <= num_perm; b++)
        for (int r = 1; r <= num_perm / b; r++) {
            dd_band_fn pos = {.b = b, .r = r, .neg = false}, neg = {.b = b, .r = r, .neg = true};
            double e = 0.5 * dd_integrate(&pos, 0, threshold) + 0.5 * dd_integrate(&neg, threshold, 1);
            if (e < best) {
                best = e;
                bb = b;
                br = r;
            }
        }
    *bands = bb;
    *rows = br;
    return 0;
}

/* ---- set-up ---------------------------------------------------------------- */

const char *dedup_mode_name(dedup_mode m)
{
    switch (m) {
    case DEDUP_MODE_NONE: return "none";
    case DEDUP_MODE_EXACT: return "exact";
    case DEDUP_MODE_NEAR: return "near";
    }
    return "?";
}

int dedup_init(const dedup_opts *opts, dedup **out, rt_err *err)
{
    const dedup_opts *o = opts;
    if (o->mode != DEDUP_MODE_NONE && o->mode != DEDUP_MODE_EXACT && o->mode != DEDUP_MODE_NEAR)
        return err_set(err, -EINVAL, "dedup mode %d: expected none, exact or near", (int)o->mode);
    if (o->mode == DEDUP_MODE_NEAR) {
        if (!(o->threshold > 0 && o->threshold <= 1))
            return err_set(err, -EINVAL, "threshold %g: expected a Jaccard similarity in (0, 1]", o->threshold);
        if (o->num_perm < 1 || o->num_perm > DEDUP_MAX_PERM)
            return err_set(err, -EINVAL, "num_perm %d: expected 1 to %d permutations", o->num_perm,
                           DEDUP_MAX_PERM);
        if (o->ngram < 1 || o->ngram > DEDUP_MAX_NGRAM)
            return err_set(err, -EINVAL, "ngram %d: expected 1 to %d tokens per shingle", o->ngram,
                           DEDUP_MAX_NGRAM);
    }
    dedup *d = calloc(1, sizeof *d);
    if (d == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    d->o = *o;
    if (o->mode == DEDUP_MODE_NEAR) {
        dedup_lsh_params(o->threshold, o->num_perm, &d->bands, &d->rows);
        d->min_equal = (uint32_t)ceil(o->threshold * o->num_perm - 1e-9);
        d->blocks = (o->num_perm + DD_LANES - 1) / DD_LANES;
        d->seeds = malloc((size_t)d->blocks * DD_LANES * sizeof *d->seeds);
        if (d->seeds == NULL) {
            dedup_free(d);
            return err_set(err, -ENOMEM, "out of memory");
        }
        uint64_t s = o->seed;
        for (int i = 0; i < d->blocks * DD_LANES; i++) {
            s += 0x9e3779b97f4a7c15ull; /* splitmix64 */
            d->seeds[i] = (uint32_t)(dd_mix64(s) >> 32);
        }
    }
    *out = d;
    return 0;
}

void dedup_free(dedup *d)
{
    if (d == NULL)
        return;
    free(d->seeds);
    free(d->xs);
    free(d->ls);
    free(d->sigs);
    free(d->kept_ord);
    free(d);
}

const dedup_opts *dedup_get_opts(const dedup *d) { return &d->o; }

void dedup_lsh_shape(const dedup *d, int *bands, int *rows)
{
    *bands = d->bands;
    *rows = d->rows;
}

size_t dedup_sig_len(const dedup *d) { return d->o.mode == DEDUP_MODE_NEAR ? (size_t)d->o.num_perm : 0; }

size_t dedup_memory(const dedup *d)
{
    return d->x_cap * sizeof *d->xs + d->l_cap * sizeof *d->ls +
           d->kept_cap * (dedup_sig_len(d) * sizeof *d->sigs + sizeof *d->kept_ord);
}

/* ---- signatures ---------------------------------------------------------------- */

void dedup_minhash(const dedup *d, const uint64_t *elems, size_t n, uint32_t *sig)
{
    size_t k = dedup_sig_len(d);
    if (k == 0)
        return;
    uint32_t mins[DD_MAX_PADDED];
    memset(mins, 0xff, (size_t)d->blocks * DD_LANES * sizeof *mins);
    dd_minhash_kernel(d->seeds, d->blocks, elems, n, mins);
    memcpy(sig, mins, k * sizeof *sig);
}

void dedup_fingerprint(const dedup *d, const int32_t *ids, size_t n, uint64_t hash[2], uint32_t *sig)
{
    dedup_hash128(ids, n, hash);
    size_t k = dedup_sig_len(d);
    if (k == 0)
        return;
    uint32_t mins[DD_MAX_PADDED];
    memset(mins, 0xff, (size_t)d->blocks * DD_LANES * sizeof *mins);
    size_t g = (size_t)d->o.ngram < n ? (size_t)d->o.ngram : n;
    size_t windows = n > 0 ? n - g + 1 : 0;
    uint64_t x[DEDUP_SHINGLE_BLOCK]; /* shingle hashes */
    for (size_t p = 0; p < windows;) {
        size_t m = windows - p < DEDUP_SHINGLE_BLOCK ? windows - p : DEDUP_SHINGLE_BLOCK;
        for (size_t j = 0; j < m; j++)
            x[j] = dd_shingle(ids + p + j, g);
        dd_minhash_kernel(d->seeds, d->blocks, x, m, mins);
        p += m;
    }
    memcpy(sig, mins, k * sizeof *sig);
}

double dedup_jaccard(const dedup *d, const uint32_t *a, const uint32_t *b)
{
    size_t k = dedup_sig_len(d), eq = 0;
    if (k == 0)
        return 0;
    for (size_t i = 0; i < k; i++)
        eq += a[i] == b[i];
    return (double)eq / (double)k;
}

/* ---- tables ---------------------------------------------------------------------- */

static size_t dd_x_find(const dedup *d, uint64_t h0, uint64_t h1)
{
    size_t mask = d->x_cap - 1, i = (size_t)h0 & mask;
    while (d->xs[i].ord1 != 0 && (d->xs[i].h0 != h0 || d->xs[i].h1 != h1))
        i = (i + 1) & mask;
    return i;
}

static int dd_x_grow(dedup *d)
{
    size_t cap = d->x_cap ? d->x_cap * 2 : DEDUP_MIN_SLOTS;
    dedup_xslot *old = d->xs;
    size_t old_cap = d->x_cap;
    d->xs = calloc(cap, sizeof *d->xs);
    if (d->xs == NULL) {
        d->xs = old;
        return -ENOMEM;
    }
    d->x_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].ord1 != 0)
            d->xs[dd_x_find(d, old[i].h0, old[i].h1)] = old[i];
    free(old);
    return 0;
}

/* The key of band j of sig: never 0 (the empty slot). */
static uint64_t dd_band_key(const dedup *d, const uint32_t *sig, int j)
{
    const uint32_t *w = sig + (size_t)j * (size_t)d->rows;
    uint64_t h = dd_mix64(0x62616e64ull + (uint64_t)j * DD_P1);
    int r = 0;
    for (; r + 2 <= d->rows; r += 2)
        h = dd_rotl(h ^ ((w[r] | (uint64_t)w[r + 1] << 32) * DD_P2), 31) * DD_P1;
    if (r < d->rows)
        h = dd_rotl(h ^ (w[r] * DD_P4), 31) * DD_P1;
    h = dd_mix64(h);
    return h != 0 ? h : 1;
}

static void dd_l_put(dedup_lslot *ls, size_t cap, uint64_t key, uint64_t kept)
{
    size_t mask = cap - 1, i = (size_t)key & mask;
    while (ls[i].key != 0)
        i = (i + 1) & mask;
    ls[i] = (dedup_lslot){.key = key, .kept = kept};
}

static int dd_l_reserve(dedup *d, size_t more)
{
    if ((d->l_n + more) * 2 <= d->l_cap)
        return 0;
    size_t cap = d->l_cap ? d->l_cap : DEDUP_MIN_SLOTS;
    while ((d->l_n + more) * 2 > cap)
        cap *= 2;
    dedup_lslot *ls = calloc(cap, sizeof *ls);
    if (ls == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < d->l_cap; i++)
        if (d->ls[i].key != 0)
            dd_l_put(ls, cap, d->ls[i].key, d->ls[i].kept);
    free(d->ls);
    d->ls = ls;
    d->l_cap = cap;
    return 0;
}

static int dd_kept_reserve(dedup *d)
{
    if (d->kept_n < d->kept_cap)
        return 0;
    size_t cap = d->kept_cap ? d->kept_cap * 2 : 1024, k = dedup_sig_len(d);
    uint32_t *sigs = realloc(d->sigs, cap * k * sizeof *sigs);
    if (sigs == NULL)
        return -ENOMEM;
    d->sigs = sigs;
    uint64_t *ord = realloc(d->kept_ord, cap * sizeof *ord);
    if (ord == NULL)
        return -ENOMEM;
    d->kept_ord = ord;
    d->kept_cap = cap;
    return 0;
}

static int dd_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int64_t dedup_candidates(const dedup *d, const uint32_t *sig, uint64_t *ids, size_t cap)
{
    if (d->o.mode != DEDUP_MODE_NEAR || d->l_cap == 0)
        return 0;
    uint64_t *v = NULL;
    size_t n = 0, vcap = 0, mask = d->l_cap - 1;
    for (int j = 0; j < d->bands; j++) {
        uint64_t key = dd_band_key(d, sig, j);
        for (size_t i = (size_t)key & mask; d->ls[i].key != 0; i = (i + 1) & mask) {
            if (d->ls[i].key != key)
                continue;
            if (n == vcap) {
                vcap = vcap ? vcap * 2 : 64;
                uint64_t *nv = realloc(v, vcap * sizeof *nv);
                if (nv == NULL) {
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
            }
            v[n++] = d->ls[i].kept;
        }
    }
    if (n > 0)
        qsort(v, n, sizeof *v, dd_cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    for (size_t i = 0; i < u && i < cap; i++)
        ids[i] = d->kept_ord[v[i]]; /* kept in corpus order: ascending kept index = ascending ordinal */
    free(v);
    return (int64_t)u;
}

int dedup_decide(dedup *d, const uint64_t hash[2], const uint32_t *sig, uint64_t *match, rt_err *err)
{
    uint64_t ord = d->n_docs;
    if (d->o.mode == DEDUP_MODE_NONE) {
        d->n_docs++;
        return DEDUP_KEEP;
    }
    /* room first, so a failure leaves the tables as they were */
    if ((d->x_n + 1) * 2 > d->x_cap && dd_x_grow(d) < 0)
        return err_set(err, -ENOMEM, "out of memory for the table of %zu document hashes", d->x_n + 1);
    if (d->o.mode == DEDUP_MODE_NEAR && (dd_kept_reserve(d) < 0 || dd_l_reserve(d, (size_t)d->bands) < 0))
        return err_set(err, -ENOMEM, "out of memory for the signatures of %zu kept documents", d->kept_n + 1);
    size_t xi = dd_x_find(d, hash[0], hash[1]);
    if (d->xs[xi].ord1 != 0) {
        if (match != NULL)
            *match = d->xs[xi].ord1 - 1;
        d->n_docs++;
        return DEDUP_EXACT_DUP;
    }
    d->xs[xi] = (dedup_xslot){.h0 = hash[0], .h1 = hash[1], .ord1 = ord + 1};
    d->x_n++;
    d->n_docs++;
    if (d->o.mode != DEDUP_MODE_NEAR)
        return DEDUP_KEEP;

    size_t k = dedup_sig_len(d);
    uint64_t keys[DEDUP_MAX_PERM]; /* one per band; bands <= num_perm */
    for (int j = 0; j < d->bands; j++)
        keys[j] = dd_band_key(d, sig, j);
    if (d->l_cap > 0) {
        size_t mask = d->l_cap - 1;
        for (int j = 0; j < d->bands; j++)
            for (size_t i = (size_t)keys[j] & mask; d->ls[i].key != 0; i = (i + 1) & mask) {
                if (d->ls[i].key != keys[j])
                    continue;
                const uint32_t *other = d->sigs + d->ls[i].kept * k;
                uint32_t eq = 0;
                for (size_t s = 0; s < k; s++)
                    eq += other[s] == sig[s];
                if (eq >= d->min_equal) {
                    if (match != NULL)
                        *match = d->kept_ord[d->ls[i].kept];
                    return DEDUP_NEAR_DUP;
                }
            }
    }
    memcpy(d->sigs + d->kept_n * k, sig, k * sizeof *sig);
    d->kept_ord[d->kept_n] = ord;
    for (int j = 0; j < d->bands; j++)
        dd_l_put(d->ls, d->l_cap, keys[j], d->kept_n);
    d->l_n += (size_t)d->bands;
    d->kept_n++;
    return DEDUP_KEEP;
}

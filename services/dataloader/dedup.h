/*
 * dedup: exact and near-duplicate detection of token documents, for
 * `ramtrain data prepare` (issue 4).
 *
 * Exact duplicates: documents with the same 128-bit hash of their token ids.
 * Near duplicates: MinHash signatures of the document's set of shingles
 * (hashed n-grams of token ids; a document shorter than n tokens is one
 * shingle), indexed by LSH banding, candidates verified by the estimated
 * Jaccard similarity. Documents are decided one at a time in corpus order:
 * the first occurrence is kept, a later one is removed when it is an exact
 * duplicate of any earlier document or its estimated Jaccard similarity with
 * an earlier kept document reaches the threshold.
 *
 * Threads: a dedup is built by dedup_init; dedup_fingerprint only reads it
 * and may run on any number of threads at once (the caller owns the output
 * buffers), while dedup_decide changes it and needs one caller at a time,
 * with no dedup_fingerprint or dedup_candidates running.
 */
#ifndef RAMTRAIN_DATALOADER_DEDUP_H
#define RAMTRAIN_DATALOADER_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DEDUP_MAX_PERM 1024   /* MinHash permutations at most */
#define DEDUP_MAX_NGRAM 1024  /* tokens per shingle at most */

typedef enum dedup_mode {
    DEDUP_MODE_NONE = 0, /* keep everything */
    DEDUP_MODE_EXACT,    /* remove exact duplicates */
    DEDUP_MODE_NEAR,     /* remove exact and near duplicates */
} dedup_mode;

typedef struct dedup_opts {
    dedup_mode mode;
    double threshold; /* near: estimated Jaccard similarity in (0, 1] at which a document is a duplicate */
    int num_perm;     /* near: MinHash permutations, 1..DEDUP_MAX_PERM */
    int ngram;        /* near: token ids per shingle, 1..DEDUP_MAX_NGRAM */
    uint64_t seed;    /* near: picks the hash family; a given seed gives the same results everywhere */
} dedup_opts;

/* What dedup_decide made of a document. */
typedef enum dedup_verdict {
    DEDUP_KEEP = 0,
    DEDUP_EXACT_DUP = 1, /* same tokens (128-bit hash) as an earlier document */
    DEDUP_NEAR_DUP = 2,  /* estimated Jaccard >= threshold with an earlier kept document */
} dedup_verdict;

typedef struct dedup dedup;

/* "none", "exact", "near" (static storage). */
const char *dedup_mode_name(dedup_mode m);

/* LSH shape for threshold and num_perm as datasketch's MinHashLSH chooses it
 * (_optimal_param with weights 0.5/0.5): the bands b and rows r, b·r <=
 * num_perm, minimising the mean of the false positive area
 * ∫_0^t 1-(1-s^r)^b ds and the false negative area ∫_t^1 (1-s^r)^b ds, the
 * first minimum in (b, r) order. 0, or -EINVAL for a threshold outside
 * (0, 1] or num_perm outside 1..DEDUP_MAX_PERM. Pure; does not block. */
int dedup_lsh_params(double threshold, int num_perm, int *bands, int *rows);

/* The 128-bit hash of ids[n] that decides exact duplicates: out[0], out[1].
 * Pure; any thread. */
void dedup_hash128(const int32_t *ids, size_t n, uint64_t out[2]);

/* Validates opts (errors name the option and the allowed range), derives the
 * hash family and the LSH shape. *out is freed with dedup_free. 0, -EINVAL or
 * -ENOMEM. */
int dedup_init(const dedup_opts *opts, dedup **out, rt_err *err);

void dedup_free(dedup *d);

/* The options d was made with, and its LSH shape (0 bands unless near). */
const dedup_opts *dedup_get_opts(const dedup *d);
void dedup_lsh_shape(const dedup *d, int *bands, int *rows);

/* Words of a signature: num_perm in near mode, else 0. */
size_t dedup_sig_len(const dedup *d);

/* The MinHash signature sig[dedup_sig_len(d)] of a set given as 64-bit
 * element hashes elems[n] (repeats allowed): slot i is the top 32 bits of the
 * smallest h_i(e), all ones for an empty set. Only reads d; any thread. */
void dedup_minhash(const dedup *d, const uint64_t *elems, size_t n, uint32_t *sig);

/* A document's fingerprint: hash = dedup_hash128(ids, n) and, in near mode,
 * sig[dedup_sig_len(d)] the MinHash signature of its shingles. Only reads d;
 * any thread. */
void dedup_fingerprint(const dedup *d, const int32_t *ids, size_t n, uint64_t hash[2], uint32_t *sig);

/* Estimated Jaccard similarity of two signatures: the fraction of equal slots. */
double dedup_jaccard(const dedup *d, const uint32_t *a, const uint32_t *b);

/* The kept documents (their ordinals, ascending, each once) that share at
 * least one LSH band with sig: the candidates dedup_decide verifies. Writes
 * at most cap of them to ids and returns how many there are (0 unless near
 * mode), or -ENOMEM. Only reads d. */
int64_t dedup_candidates(const dedup *d, const uint32_t *sig, uint64_t *ids, size_t cap);

/* Decides the next document in corpus order (ordinals count the calls from 0)
 * from its fingerprint (sig ignored unless near mode): returns its
 * dedup_verdict and, for a duplicate, the ordinal of the earlier document in
 * *match (may be NULL). Kept documents are remembered for later calls;
 * every hash is. Returns -ENOMEM (message in err) when the tables cannot
 * grow. One caller at a time. */
int dedup_decide(dedup *d, const uint64_t hash[2], const uint32_t *sig, uint64_t *match, rt_err *err);

/* Bytes the tables hold now (for logs). */
size_t dedup_memory(const dedup *d);

#ifdef __cplusplus
}
#endif

#endif

/*
 * rng: a small deterministic random generator (xoshiro256** seeded through
 * splitmix64) with uniform and normal draws. The same seed gives the same
 * stream on every machine; used for weight initialisation and data order.
 * Not thread-safe: one rng_state per user.
 */
#ifndef RAMTRAIN_COMMON_RNG_H
#define RAMTRAIN_COMMON_RNG_H

#include <stdint.h>

typedef struct rng_state {
    uint64_t s[4];
} rng_state;

/* Seeds the generator; every seed (0 included) gives a distinct stream. */
void rng_seed(rng_state *r, uint64_t seed);

/* Next 64 random bits. */
uint64_t rng_next(rng_state *r);

/* Uniform double in [0, 1). */
double rng_uniform(rng_state *r);

/* Fills out[n] with normal(0, std) draws (Box-Muller). */
void rng_normal_fill(rng_state *r, float *out, uint64_t n, double std);

/* Fills out[n] with the initial value of a Llama tensor as Hugging Face
 * initialises it: norm weights 1, biases 0, everything else normal(0, std)
 * from a stream of its own derived from (seed, block, index in the block). */
void rng_init_tensor(const char *name, uint64_t seed, int block, int index, double std,
                     float *out, uint64_t n);

#endif

/*
 * rng: xoshiro256** (Blackman and Vigna), seeded with splitmix64 so that
 * nearby seeds give unrelated streams. Normal draws use Box-Muller on pairs.
 */
#include "services/common/rng.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(rng_state *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(rng_state *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng_state *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

void rng_normal_fill(rng_state *r, float *out, uint64_t n, double std)
{
    for (uint64_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - rng_uniform(r); /* (0, 1]: log is finite */
        double u2 = rng_uniform(r);
        double rad = sqrt(-2.0 * log(u1)) * std;
        out[i] = (float)(rad * cos(2.0 * M_PI * u2));
        if (i + 1 < n)
            out[i + 1] = (float)(rad * sin(2.0 * M_PI * u2));
    }
}

static int is_norm(const char *name)
{
    return strstr(name, "layernorm.weight") != NULL || strcmp(name, "model.norm.weight") == 0;
}

static int is_bias(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".bias") == 0;
}

void rng_init_tensor(const char *name, uint64_t seed, int block, int index, double std,
                     float *out, uint64_t n)
{
    if (is_norm(name)) {
        for (uint64_t j = 0; j < n; j++)
            out[j] = 1.0f;
    } else if (is_bias(name)) {
        memset(out, 0, n * sizeof *out);
    } else {
        /* One stream per tensor, derived from (seed, block, tensor), so a
         * tensor's values do not depend on the shapes of those before it. */
        rng_state r;
        rng_seed(&r, seed * 0x100000001b3ull + (uint64_t)block * 64 + (uint64_t)index);
        rng_normal_fill(&r, out, n, std);
    }
}

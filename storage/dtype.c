/*
 * dtype: sizes and names of the safetensors element types, and software
 * conversion of F32/BF16/F16/F64 to and from fp32.
 *
 * Conversions work on bit patterns with integer arithmetic, so they round the
 * same way on every host (round to nearest, ties to even) and do not depend on
 * F16C, the FPU's rounding mode or the compiler's _Float16 support. Data at
 * rest is little-endian; elements are assembled byte by byte, which compilers
 * turn into plain loads on little-endian hosts and which needs no alignment.
 * Pure functions: safe from any thread.
 *
 * Rejected: lookup tables for f16 -> f32 (a 256 KiB table for a conversion
 * that runs once per checkpoint load is not worth the cache it evicts).
 */
#include "storage/dtype.h"

#include <errno.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size; /* bytes per element */
} dt_info[DT_COUNT] = {
    [DT_INVALID] = {"INVALID", 0},
    [DT_BOOL] = {"BOOL", 1},
    [DT_U8] = {"U8", 1},
    [DT_I8] = {"I8", 1},
    [DT_F8_E4M3] = {"F8_E4M3", 1},
    [DT_F8_E5M2] = {"F8_E5M2", 1},
    [DT_I16] = {"I16", 2},
    [DT_U16] = {"U16", 2},
    [DT_F16] = {"F16", 2},
    [DT_BF16] = {"BF16", 2},
    [DT_I32] = {"I32", 4},
    [DT_U32] = {"U32", 4},
    [DT_F32] = {"F32", 4},
    [DT_I64] = {"I64", 8},
    [DT_U64] = {"U64", 8},
    [DT_F64] = {"F64", 8},
};

size_t dt_size(dt_type t)
{
    if ((int)t <= DT_INVALID || t >= DT_COUNT)
        return 0;
    return dt_info[t].size;
}

const char *dt_name(dt_type t)
{
    if ((int)t <= DT_INVALID || t >= DT_COUNT)
        return "INVALID";
    return dt_info[t].name;
}

dt_type dt_from_name(const char *name)
{
    if (name == NULL)
        return DT_INVALID;
    for (int t = DT_INVALID + 1; t < DT_COUNT; t++)
        if (strcmp(name, dt_info[t].name) == 0)
            return (dt_type)t;
    return DT_INVALID;
}

int dt_is_float(dt_type t)
{
    return t == DT_F32 || t == DT_BF16 || t == DT_F16 || t == DT_F64;
}

static uint32_t dt_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float dt_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t dt_f32_to_bf16(float f)
{
    uint32_t u = dt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u); /* NaN: keep sign and top payload, force quiet */
    /* Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry
     * out of the mantissa bumps the exponent, and past the largest finite
     * value it lands exactly on infinity (0x7f80). */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float dt_bf16_to_f32(uint16_t h)
{
    return dt_bits_f32((uint32_t)h << 16);
}

uint16_t dt_f32_to_f16(float f)
{
    uint32_t u = dt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;

    if (u >= 0x7f800000u) {
        if (u == 0x7f800000u)
            return sign | 0x7c00u;
        return (uint16_t)(sign | 0x7e00u | ((u >> 13) & 0x03ffu)); /* quiet NaN */
    }
    /* 65520 = 0x477ff000 is halfway between 65504 (largest f16, odd
     * mantissa) and 65536; ties to even round it, and all above, to inf. */
    if (u >= 0x477ff000u)
        return sign | 0x7c00u;
    if (u >= 0x38800000u) {
        /* Normal f16: rebias the exponent (127 -> 15) and round 13 bits away. */
        u -= 112u << 23;
        u += 0x0fffu + ((u >> 13) & 1u);
        return (uint16_t)(sign | (u >> 13));
    }
    /* Below 2^-14: subnormal f16, units of 2^-24. Up to 2^-25 (the tie
     * between 0 and the smallest subnormal) everything rounds to zero. */
    if (u <= 0x33000000u)
        return sign;
    uint32_t exp = u >> 23;                      /* 102 .. 112 */
    uint32_t mant = (u & 0x007fffffu) | 0x00800000u;
    uint32_t shift = 126u - exp;                 /* 14 .. 24 */
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u)))
        r++;                                     /* 0x400 here is the smallest normal, as it should be */
    return (uint16_t)(sign | r);
}

float dt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x03ffu;

    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in fp32. */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return dt_bits_f32(sign | 0x7f800000u | (mant << 13));
    return dt_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

static uint16_t dt_load16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t dt_load32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t dt_load64(const uint8_t *p)
{
    return (uint64_t)dt_load32(p) | ((uint64_t)dt_load32(p + 4) << 32);
}

static void dt_store16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void dt_store32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void dt_store64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int dt_to_f32(dt_type t, const void *src, float *dst, size_t n)
{
    const uint8_t *s = src; /* [n * dt_size(t)] little-endian elements */
    switch (t) {
    case DT_F32:
        for (size_t i = 0; i < n; i++)
            dst[i] = dt_bits_f32(dt_load32(s + 4 * i));
        return 0;
    case DT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = dt_bf16_to_f32(dt_load16(s + 2 * i));
        return 0;
    case DT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = dt_f16_to_f32(dt_load16(s + 2 * i));
        return 0;
    case DT_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = dt_load64(s + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return -EINVAL;
    }
}

int dt_from_f32(dt_type t, const float *src, void *dst, size_t n)
{
    uint8_t *d = dst; /* [n * dt_size(t)] little-endian elements */
    switch (t) {
    case DT_F32:
        for (size_t i = 0; i < n; i++)
            dt_store32(d + 4 * i, dt_f32_bits(src[i]));
        return 0;
    case DT_BF16:
        for (size_t i = 0; i < n; i++)
            dt_store16(d + 2 * i, dt_f32_to_bf16(src[i]));
        return 0;
    case DT_F16:
        for (size_t i = 0; i < n; i++)
            dt_store16(d + 2 * i, dt_f32_to_f16(src[i]));
        return 0;
    case DT_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            uint64_t u;
            memcpy(&u, &v, sizeof u);
            dt_store64(d + 8 * i, u);
        }
        return 0;
    default:
        return -EINVAL;
    }
}

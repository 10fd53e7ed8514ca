/*
 * test_dtype: names and sizes of the element types, and the software
 * bf16/f16 conversions checked against an independent reference.
 *
 * The reference rounds by search: positive finite bf16/f16 bit patterns are
 * ordered like their values, so the nearest representable value of x is found
 * by binary search over the patterns (in double, where every bf16, f16 and
 * f32 value is exact), ties going to the even pattern, and values past the
 * largest finite one rounding against the next power of two, which stands
 * for infinity. It shares no code or bit tricks with dtype.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "storage/dtype.h"

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

/* Value of a positive half-precision pattern h with mbits mantissa bits and
 * exponent bias; h one past the largest finite value gives 2^(emax+1). */
static double ref_value(uint32_t h, int mbits, int bias)
{
    uint32_t e = h >> mbits, m = h & ((1u << mbits) - 1u);
    if (e == 0)
        return ldexp((double)m, 1 - bias - mbits);
    return ldexp((double)((1u << mbits) | m), (int)e - bias - mbits);
}

/* Nearest pattern to x (finite f32) for a format with mbits mantissa bits,
 * exponent bias and inf pattern inf; ties to even. */
static uint16_t ref_round(float x, int mbits, int bias, uint32_t inf)
{
    uint16_t sign = signbit(x) ? (uint16_t)(1u << 15) : 0;
    double a = fabs((double)x);
    uint32_t lo = 0, hi = inf; /* value(lo) <= a < value(hi) once settled */
    if (a >= ref_value(inf, mbits, bias))
        return (uint16_t)(sign | inf);
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (ref_value(mid, mbits, bias) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dl = a - ref_value(lo, mbits, bias), dh = ref_value(hi, mbits, bias) - a;
    uint32_t r = dl < dh ? lo : dh < dl ? hi : ((lo & 1u) ? hi : lo);
    return (uint16_t)(sign | r);
}

static uint16_t ref_f16(float x)
{
    return ref_round(x, 10, 15, 0x7c00u);
}

static uint16_t ref_bf16(float x)
{
    return ref_round(x, 7, 127, 0x7f80u);
}

/* xorshift64*: deterministic test inputs */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_names_and_sizes(void **state)
{
    (void)state;
    static const struct {
        dt_type t;
        const char *name;
        size_t size;
    } want[] = {
        {DT_BOOL, "BOOL", 1}, {DT_U8, "U8", 1}, {DT_I8, "I8", 1}, {DT_F8_E4M3, "F8_E4M3", 1},
        {DT_F8_E5M2, "F8_E5M2", 1}, {DT_I16, "I16", 2}, {DT_U16, "U16", 2}, {DT_F16, "F16", 2},
        {DT_BF16, "BF16", 2}, {DT_I32, "I32", 4}, {DT_U32, "U32", 4}, {DT_F32, "F32", 4},
        {DT_I64, "I64", 8}, {DT_U64, "U64", 8}, {DT_F64, "F64", 8},
    };
    assert_int_equal(sizeof want / sizeof want[0], DT_COUNT - 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(dt_size(want[i].t), want[i].size);
        assert_string_equal(dt_name(want[i].t), want[i].name);
        assert_int_equal(dt_from_name(want[i].name), want[i].t);
    }
    assert_int_equal(dt_size(DT_INVALID), 0);
    assert_int_equal(dt_size(DT_COUNT), 0);
    assert_string_equal(dt_name(DT_INVALID), "INVALID");
    assert_string_equal(dt_name((dt_type)999), "INVALID");
    assert_int_equal(dt_from_name("f32"), DT_INVALID);
    assert_int_equal(dt_from_name("F128"), DT_INVALID);
    assert_int_equal(dt_from_name(""), DT_INVALID);
    assert_int_equal(dt_from_name(NULL), DT_INVALID);
    assert_int_equal(dt_from_name("INVALID"), DT_INVALID);
    assert_true(dt_is_float(DT_F32) && dt_is_float(DT_BF16) && dt_is_float(DT_F16) && dt_is_float(DT_F64));
    assert_false(dt_is_float(DT_I32) || dt_is_float(DT_F8_E4M3) || dt_is_float(DT_INVALID));
}

static void test_bf16_all_patterns(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = dt_bf16_to_f32((uint16_t)h);
        assert_int_equal(f32_bits(f), h << 16);
        if (isnan(f))
            assert_true(isnan(dt_bf16_to_f32(dt_f32_to_bf16(f))));
        else
            assert_int_equal(dt_f32_to_bf16(f), h);
    }
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    /* 1 + 2^-8 is halfway between 1 (even) and 1 + 2^-7 (odd): down. */
    assert_int_equal(dt_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up. */
    assert_int_equal(dt_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    /* Just above a tie rounds up. */
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x3f807fffu)), 0x3f80);
    assert_int_equal(dt_f32_to_bf16(-1.0f - 3 * 0x1p-8f), 0xbf82);
    /* Past the largest finite bf16 plus half an ulp: infinity. */
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x7f7f8000u)), 0x7f80);
    assert_int_equal(dt_f32_to_bf16(3.4028235e38f), 0x7f80);
    assert_int_equal(dt_f32_to_bf16(-3.4028235e38f), 0xff80);
    assert_int_equal(dt_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(dt_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(dt_f32_to_bf16(0.0f), 0x0000);
    assert_int_equal(dt_f32_to_bf16(-0.0f), 0x8000);
    /* f32 subnormals round like everything else (bf16 has the same exponent range). */
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x00008000u)), 0x0000);
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x00018000u)), 0x0002);
    assert_int_equal(dt_f32_to_bf16(bits_f32(0x00008001u)), 0x0001);
    /* NaNs stay NaNs, keep their sign, and never turn into infinity. */
    uint16_t n = dt_f32_to_bf16(bits_f32(0x7f800001u));
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x007f) != 0);
    n = dt_f32_to_bf16(bits_f32(0xffc00000u));
    assert_true((n & 0xff80) == 0xff80 && (n & 0x007f) != 0);
    assert_true(isnan(dt_bf16_to_f32(dt_f32_to_bf16(NAN))));
}

static void test_bf16_vs_reference(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2000000; i++) {
        float x = bits_f32((uint32_t)(rng_next(&s) >> 32));
        if (isnan(x))
            continue;
        uint16_t got = dt_f32_to_bf16(x), want = ref_bf16(x);
        if (got != want)
            fail_msg("bf16(%a = 0x%08x) = 0x%04x, reference 0x%04x", (double)x, f32_bits(x), got, want);
    }
}

static void test_f16_all_patterns(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = dt_f16_to_f32((uint16_t)h);
        uint32_t mag = h & 0x7fffu;
        if (mag > 0x7c00u) {
            assert_true(isnan(f));
            assert_true(isnan(dt_f16_to_f32(dt_f32_to_f16(f))));
            continue;
        }
        double want = mag == 0x7c00u ? INFINITY : ref_value(mag, 10, 15);
        if (h & 0x8000u)
            want = -want;
        assert_true((double)f == want);
        assert_int_equal(signbit(f) != 0, (h & 0x8000u) != 0);
        assert_int_equal(dt_f32_to_f16(f), h);
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    assert_int_equal(dt_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(dt_f32_to_f16(-2.0f), 0xc000);
    /* Ties to even in the normal range: 1 + 2^-11 sits between 1 and 1 + 2^-10. */
    assert_int_equal(dt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(dt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(dt_f32_to_f16(nextafterf(1.0f + 0x1p-11f, 2.0f)), 0x3c01);
    /* Largest finite, and the overflow boundary at 65520 (a tie, to even = inf). */
    assert_int_equal(dt_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(dt_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(dt_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(dt_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(dt_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(dt_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(dt_f32_to_f16(-INFINITY), 0xfc00);
    /* Subnormals: 2^-24 is the smallest, 2^-25 ties to zero (even),
     * 3 * 2^-25 ties to 2 * 2^-24 (even). */
    assert_int_equal(dt_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(dt_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(dt_f32_to_f16(-0x1p-25f), 0x8000);
    assert_int_equal(dt_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    assert_int_equal(dt_f32_to_f16(3 * 0x1p-25f), 0x0002);
    assert_int_equal(dt_f32_to_f16(5 * 0x1p-25f), 0x0002);
    assert_int_equal(dt_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(dt_f32_to_f16(bits_f32(0x00000001u)), 0x0000);
    assert_int_equal(dt_f32_to_f16(1023 * 0x1p-24f), 0x03ff);
    /* Halfway between the largest subnormal (odd) and the smallest normal. */
    assert_int_equal(dt_f32_to_f16(1023.5f * 0x1p-24f), 0x0400);
    assert_int_equal(dt_f32_to_f16(0x1p-14f), 0x0400);
    assert_int_equal(dt_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(dt_f32_to_f16(-0.0f), 0x8000);
    assert_true(dt_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(dt_f16_to_f32(0x83ff) == -1023 * 0x1p-24f);
    /* NaN in, NaN out, sign kept. */
    uint16_t n = dt_f32_to_f16(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x03ff) != 0);
    n = dt_f32_to_f16(bits_f32(0xff800001u));
    assert_true((n & 0xfc00) == 0xfc00 && (n & 0x03ff) != 0);
}

static void test_f16_vs_reference(void **state)
{
    (void)state;
    uint64_t s = 0x0123456789abcdefull;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)(rng_next(&s) >> 32);
        /* Half the inputs land in or near f16's range, where rounding is interesting. */
        if (i & 1)
            u = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 23) % 48) << 23);
        float x = bits_f32(u);
        if (isnan(x))
            continue;
        uint16_t got = dt_f32_to_f16(x), want = ref_f16(x);
        if (got != want)
            fail_msg("f16(%a = 0x%08x) = 0x%04x, reference 0x%04x", (double)x, u, got, want);
    }
    /* Every tie and its neighbours between consecutive f16 values. */
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        double mid = (ref_value(h, 10, 15) + ref_value(h + 1, 10, 15)) / 2;
        float m = (float)mid;
        assert_true((double)m == mid);
        float xs[3] = {nextafterf(m, 0.0f), m, nextafterf(m, INFINITY)};
        for (int k = 0; k < 3; k++) {
            uint16_t got = dt_f32_to_f16(xs[k]), want = ref_f16(xs[k]);
            if (got != want)
                fail_msg("f16(%a) = 0x%04x, reference 0x%04x", (double)xs[k], got, want);
            assert_int_equal(dt_f32_to_f16(-xs[k]), want | 0x8000u);
        }
    }
}

static void test_buffers(void **state)
{
    (void)state;
    const float src[6] = {1.0f, -2.5f, 0.0f, 65504.0f, 0x1p-24f, 3.14159265f};
    float back[6];
    uint8_t buf[6 * 8];

    assert_int_equal(dt_from_f32(DT_F32, src, buf, 6), 0);
    static const uint8_t one_le[4] = {0x00, 0x00, 0x80, 0x3f};
    assert_memory_equal(buf, one_le, 4);
    assert_int_equal(dt_to_f32(DT_F32, buf, back, 6), 0);
    assert_memory_equal(back, src, sizeof src);

    assert_int_equal(dt_from_f32(DT_F64, src, buf, 6), 0);
    static const uint8_t one_f64_le[8] = {0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
    assert_memory_equal(buf, one_f64_le, 8);
    assert_int_equal(dt_to_f32(DT_F64, buf, back, 6), 0);
    assert_memory_equal(back, src, sizeof src);

    assert_int_equal(dt_from_f32(DT_F16, src, buf, 6), 0);
    assert_int_equal(buf[0], 0x00);
    assert_int_equal(buf[1], 0x3c);
    assert_int_equal(dt_to_f32(DT_F16, buf, back, 6), 0);
    for (int i = 0; i < 6; i++)
        assert_true(back[i] == dt_f16_to_f32(dt_f32_to_f16(src[i])));
    assert_true(back[3] == 65504.0f && back[4] == 0x1p-24f);
    assert_true(fabsf(back[5] - src[5]) < 2e-3f);

    assert_int_equal(dt_from_f32(DT_BF16, src, buf, 6), 0);
    assert_int_equal(buf[0], 0x80);
    assert_int_equal(buf[1], 0x3f);
    assert_int_equal(dt_to_f32(DT_BF16, buf, back, 6), 0);
    for (int i = 0; i < 6; i++)
        assert_true(back[i] == dt_bf16_to_f32(dt_f32_to_bf16(src[i])));
    assert_true(fabsf(back[5] - src[5]) < 2e-2f);

    /* Unaligned source and destination. */
    uint8_t raw[1 + 6 * 2];
    assert_int_equal(dt_from_f32(DT_BF16, src, raw + 1, 6), 0);
    assert_int_equal(dt_to_f32(DT_BF16, raw + 1, back, 6), 0);
    assert_true(back[0] == 1.0f && back[1] == -2.5f);

    assert_int_equal(dt_to_f32(DT_I32, buf, back, 1), -EINVAL);
    assert_int_equal(dt_from_f32(DT_U8, src, buf, 1), -EINVAL);
    assert_int_equal(dt_to_f32(DT_INVALID, buf, back, 1), -EINVAL);
    assert_int_equal(dt_to_f32(DT_F32, buf, back, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_bf16_vs_reference),
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_f16_vs_reference),
        cmocka_unit_test(test_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * dtype: element types of tensors at rest (safetensors) and in layer blocks,
 * and conversion of the floating ones to and from fp32.
 *
 * bf16 and f16 are converted in software (round to nearest even on the way
 * down), so results do not depend on the host's F16C support.
 */
#ifndef RAMTRAIN_STORAGE_DTYPE_H
#define RAMTRAIN_STORAGE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dt_type {
    DT_INVALID = 0,
    DT_BOOL,
    DT_U8,
    DT_I8,
    DT_F8_E4M3,
    DT_F8_E5M2,
    DT_I16,
    DT_U16,
    DT_F16,
    DT_BF16,
    DT_I32,
    DT_U32,
    DT_F32,
    DT_I64,
    DT_U64,
    DT_F64,
    DT_COUNT
} dt_type;

/* Bytes per element; 0 for DT_INVALID. */
size_t dt_size(dt_type t);

/* The safetensors name ("F32", "BF16", ...); "INVALID" for unknown values. */
const char *dt_name(dt_type t);

/* Parses a safetensors dtype name; DT_INVALID when the name is unknown. */
dt_type dt_from_name(const char *name);

/* 1 when t is F32, BF16, F16 or F64: the types dt_to_f32 converts. */
int dt_is_float(dt_type t);

/* Converts n elements of type t at src (little-endian) to fp32 at dst.
 * Returns 0, or -EINVAL when t is not a float type. */
int dt_to_f32(dt_type t, const void *src, float *dst, size_t n);

/* Converts n fp32 values to type t (F32, BF16, F16 or F64), rounding to nearest even. */
int dt_from_f32(dt_type t, const float *src, void *dst, size_t n);

uint16_t dt_f32_to_bf16(float f);
float dt_bf16_to_f32(uint16_t h);
uint16_t dt_f32_to_f16(float f);
float dt_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif

/*
 * cuda_device: what the CUDA backend can say about the machine's GPUs, and a
 * smoke check that a kernel and cuBLAS actually run on one (DESIGN.md §8).
 *
 * Plain C interface (implemented in cuda_device.cu) so C code, the smoke test
 * among it, needs no CUDA headers. Nothing here aborts: a machine without a
 * GPU or without a driver is a normal case (count 0), and failures are a
 * negative errno with an rt_err line. The check macros of cuda_common.h are
 * for the compute path, not for these probes.
 *
 * Threads: the CUDA runtime is thread-safe; cudev_axpy_check and
 * cudev_cublas_check make device 0 the calling thread's current device.
 */
#ifndef RAMTRAIN_GPU_CUDA_CUDA_DEVICE_H
#define RAMTRAIN_GPU_CUDA_CUDA_DEVICE_H

#include <stddef.h>

#include "storage/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the number of visible CUDA devices; 0 when there is none, no driver,
 * or the driver is older than the runtime. Never aborts; does not block
 * beyond driver initialisation. */
int cudev_count(void);

/* Writes one line describing device dev into buf[len] (NUL-terminated):
 * name, SM version, multiprocessors, memory and copy engines. Returns 0,
 * -ENODEV (dev not visible), -EIO (the runtime failed) or -ENOSPC (buf too
 * short; buf holds the cut line). */
int cudev_describe(int dev, char *buf, size_t len);

#define CUDEV_AXPY_MAX (1 << 26) /* elements: 256 MiB per vector is plenty for a smoke check */

/* Runs y = a*x + y for n elements on device 0 and compares it bitwise with the
 * same computation on the host (both use a fused multiply-add, so the results
 * must be identical). Returns 0, -EINVAL (n outside 1..CUDEV_AXPY_MAX), -ENOMEM,
 * -ENODEV, -EIO (a CUDA call failed) or -EDOM (a result differs; err names
 * the first index). Blocks until the device is done. */
int cudev_axpy_check(int n, float a, rt_err *err);

/* Creates a cuBLAS handle on device 0, stores cuBLAS's version (e.g. 130100
 * for 13.1.0) in *version and destroys the handle. Returns 0, -ENODEV or
 * -EIO. Blocks. */
int cudev_cublas_check(int *version, rt_err *err);

#ifdef __cplusplus
}
#endif

#endif

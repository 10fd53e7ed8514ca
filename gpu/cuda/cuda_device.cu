/*
 * cuda_device: device probes and the axpy/cuBLAS smoke checks (see
 * cuda_device.h).
 *
 * Every probe returns an error instead of exiting: "no GPU" is how CI runs,
 * and the caller (a test that must exit 77, a backend that falls back to the
 * CPU) decides. The axpy check compares bitwise, not with a tolerance: host
 * and device both compute fmaf(a, x, y), one correctly rounded operation,
 * so any difference is a real fault (wrong kernel, wrong copy, bad device).
 *
 * rt_cuda links only the CUDA libraries (the smoke test links it alone), so
 * errors are formatted into rt_err here rather than through storage/err.c.
 * Under C++ a goto may not jump over an initialisation, hence the
 * declarations at the top of each function with a cleanup label.
 */
#include "gpu/cuda/cuda_device.h"
#include "storage/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#define CUDEV_THREADS 256    /* threads per block: a multiple of the warp size */
#define CUDEV_MAX_BLOCKS 1024 /* grid-stride loop beyond this: plenty for a smoke check */

/* On a CUDA failure: fill err, set rc to -EIO and jump to cleanup. */
#define CUDEV_TRY(call)                                                                  \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            rc = err_set(err, -EIO, "%s: %s (%s)", #call, cudaGetErrorString(e_),     \
                            cudaGetErrorName(e_));                                       \
            goto cleanup;                                                                \
        }                                                                                \
    } while (0)

extern "C" int cudev_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        /* cudaErrorNoDevice, cudaErrorInsufficientDriver...: not a fault
         * here. Clear it so the next runtime call does not report it. */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int cudev_describe(int dev, char *buf, size_t len)
{
    cudaDeviceProp p;
    int count = 0, driver = 0, runtime = 0, n = 0;
    cudaError_t e;

    if (buf == NULL || len == 0)
        return -EINVAL;
    buf[0] = '\0';
    count = cudev_count();
    if (dev < 0 || dev >= count) {
        snprintf(buf, len, "device %d: not visible (%d devices)", dev, count);
        return -ENODEV;
    }
    e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) {
        snprintf(buf, len, "device %d: cudaGetDeviceProperties: %s", dev, cudaGetErrorString(e));
        return -EIO;
    }
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    n = snprintf(buf, len,
                 "device %d: %s, sm_%d%d, %d SMs, %zu MiB, %d copy engines, "
                 "PCI %04x:%02x:%02x.0, driver %d.%d, runtime %d.%d",
                 dev, p.name, p.major, p.minor, p.multiProcessorCount,
                 p.totalGlobalMem >> 20, p.asyncEngineCount, (unsigned)p.pciDomainID,
                 (unsigned)p.pciBusID, (unsigned)p.pciDeviceID, driver / 1000,
                 driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    if (n < 0)
        return -EIO;
    return (size_t)n >= len ? -ENOSPC : 0;
}

/* y[i] = a * x[i] + y[i], rounded once. x, y: [n] fp32 in device memory. */
__global__ static void cudev_axpy_kernel(int n, float a, const float *x, float *y)
{
    /* 64-bit index: i + stride must not overflow near n = INT_MAX. */
    int64_t stride = (int64_t)blockDim.x * gridDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = __fmaf_rn(a, x[i], y[i]);
}

/* Deterministic values in [-1, 1) with a full 24-bit mantissa spread, so a
 * product that is rounded before the add would show. */
static float cudev_sample(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u; /* Numerical Recipes LCG */
    return (float)(int32_t)(*state & 0xffffff00u) * (1.0f / 2147483648.0f);
}

static int cudev_use_device0(rt_err *err)
{
    cudaError_t e;
    if (cudev_count() == 0)
        return err_set(err, -ENODEV, "no CUDA device visible");
    e = cudaSetDevice(0);
    if (e != cudaSuccess)
        return err_set(err, -EIO, "cudaSetDevice(0): %s", cudaGetErrorString(e));
    return 0;
}

extern "C" int cudev_axpy_check(int n, float a, rt_err *err)
{
    float *x = NULL, *y = NULL, *ref = NULL; /* host, [n] each */
    float *d_x = NULL, *d_y = NULL;           /* device, [n] each */
    size_t bytes = 0;
    uint32_t state = 12345u;
    int blocks = 0, rc = 0;

    if (n < 1 || n > CUDEV_AXPY_MAX)
        return err_set(err, -EINVAL, "axpy check: n = %d, expected 1..%d", n,
                          CUDEV_AXPY_MAX);
    rc = cudev_use_device0(err);
    if (rc < 0)
        return rc;

    bytes = (size_t)n * sizeof(float);
    x = (float *)malloc(bytes);
    y = (float *)malloc(bytes);
    ref = (float *)malloc(bytes);
    if (x == NULL || y == NULL || ref == NULL) {
        rc = err_set(err, -ENOMEM, "axpy check: cannot allocate 3 x %zu bytes", bytes);
        goto cleanup;
    }
    for (int i = 0; i < n; i++) {
        x[i] = cudev_sample(&state);
        y[i] = cudev_sample(&state);
        ref[i] = fmaf(a, x[i], y[i]);
    }

    CUDEV_TRY(cudaMalloc((void **)&d_x, bytes));
    CUDEV_TRY(cudaMalloc((void **)&d_y, bytes));
    CUDEV_TRY(cudaMemcpy(d_x, x, bytes, cudaMemcpyHostToDevice));
    CUDEV_TRY(cudaMemcpy(d_y, y, bytes, cudaMemcpyHostToDevice));
    blocks = (n + CUDEV_THREADS - 1) / CUDEV_THREADS;
    if (blocks > CUDEV_MAX_BLOCKS)
        blocks = CUDEV_MAX_BLOCKS;
    cudev_axpy_kernel<<<blocks, CUDEV_THREADS>>>(n, a, d_x, d_y);
    CUDEV_TRY(cudaGetLastError());
    CUDEV_TRY(cudaMemcpy(y, d_y, bytes, cudaMemcpyDeviceToHost));

    for (int i = 0; i < n; i++) {
        uint32_t got, want;
        memcpy(&got, &y[i], sizeof got);
        memcpy(&want, &ref[i], sizeof want);
        if (got != want) {
            rc = err_set(err, -EDOM,
                            "axpy check: y[%d] = %.9g (0x%08x) on the device, %.9g (0x%08x) "
                            "on the host (a = %g, x = %.9g)",
                            i, (double)y[i], got, (double)ref[i], want, (double)a,
                            (double)x[i]);
            goto cleanup;
        }
    }

cleanup:
    if (d_x != NULL)
        (void)cudaFree(d_x);
    if (d_y != NULL)
        (void)cudaFree(d_y);
    free(x);
    free(y);
    free(ref);
    return rc;
}

extern "C" int cudev_cublas_check(int *version, rt_err *err)
{
    cublasHandle_t h = NULL;
    cublasStatus_t s;
    int rc = cudev_use_device0(err);
    if (rc < 0)
        return rc;

    s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS)
        return err_set(err, -EIO, "cublasCreate: %s", cublasGetStatusString(s));
    s = cublasGetVersion(h, version);
    if (s != CUBLAS_STATUS_SUCCESS)
        rc = err_set(err, -EIO, "cublasGetVersion: %s", cublasGetStatusString(s));
    s = cublasDestroy(h);
    if (s != CUBLAS_STATUS_SUCCESS && rc == 0)
        rc = err_set(err, -EIO, "cublasDestroy: %s", cublasGetStatusString(s));
    return rc;
}

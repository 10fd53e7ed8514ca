/*
 * cuda_common: the check macros every CUDA source uses, and the exit codes
 * they end a process with (STYLE.md "Errors").
 *
 * cudaCheck(expr) and cublasCheck(expr) are for faults the process cannot
 * recover from: they print the expression, file, line and the library's error
 * string to stderr and exit. The orchestrator reads the exit code:
 *   RT_EXIT_BAD_INPUT (2)  the run's input or config is wrong; restarting
 *                          would fail the same way, so it gives up and says so.
 *   RT_EXIT_FATAL (3)      the device or the process state is broken (lost
 *                          device, ECC error, failed launch); it restarts the
 *                          service with backoff, which resumes from the last
 *                          committed step.
 * Both checks exit with RT_EXIT_FATAL: any CUDA or cuBLAS failure, even out of
 * memory, may be transient (another process on the GPU) and the restart
 * budget bounds a failure that is not. Errors that come from bad input are
 * detected before CUDA is called and returned as a negative errno instead.
 *
 * Functions that can fail on input (cuda_device.h) return a negative errno
 * and do not use these macros. Usable from .cu (C++) and from C compiled with
 * the CUDA include path; the helpers are static inline so no object file
 * owns them.
 */
#ifndef RAMTRAIN_GPU_CUDA_CUDA_COMMON_H
#define RAMTRAIN_GPU_CUDA_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#define RT_EXIT_OK 0
#define RT_EXIT_BAD_INPUT 2 /* bad input or config: the orchestrator gives up */
#define RT_EXIT_FATAL 3     /* fatal device error: the orchestrator restarts the service */

#ifdef __cplusplus
extern "C" {
#endif

static inline void cuda_check_impl(cudaError_t e, const char *expr, const char *file, int line)
{
    if (e == cudaSuccess)
        return;
    fprintf(stderr, "[CUDA ERROR] %s at %s:%d: %s (%s)\n", expr, file, line,
            cudaGetErrorString(e), cudaGetErrorName(e));
    fflush(stderr);
    exit(RT_EXIT_FATAL);
}

static inline void cublas_check_impl(cublasStatus_t s, const char *expr, const char *file,
                                     int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return;
    fprintf(stderr, "[cuBLAS ERROR] %s at %s:%d: %s (status %d)\n", expr, file, line,
            cublasGetStatusString(s), (int)s);
    fflush(stderr);
    exit(RT_EXIT_FATAL);
}

#ifdef __cplusplus
}
#endif

#define cudaCheck(expr) cuda_check_impl((expr), #expr, __FILE__, __LINE__)
#define cublasCheck(expr) cublas_check_impl((expr), #expr, __FILE__, __LINE__)

#endif

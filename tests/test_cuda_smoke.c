/*
 * test_cuda_smoke: the CUDA backend links, sees a GPU, runs a kernel and
 * creates a cuBLAS handle. Exit 0 passed, 1 failed, 77 skipped (no GPU
 * visible: the normal case on CI, DESIGN.md §8).
 *
 * Plain C on purpose: it proves cuda_device.h is usable without CUDA headers
 * and that rt_cuda carries its own link dependencies.
 */
#include <stdio.h>

#include "gpu/cuda/cuda_device.h"

#define EXIT_SKIP 77

int main(void)
{
    char desc[512];
    rt_err err = {{0}};
    int failed = 0, rc, version = 0;

    int n = cudev_count();
    if (n == 0) {
        printf("no GPU visible: skipped\n");
        return EXIT_SKIP;
    }
    printf("%d CUDA device(s)\n", n);

    rc = cudev_describe(0, desc, sizeof desc);
    printf("%s\n", desc);
    if (rc < 0) {
        printf("FAIL cudev_describe(0): %d\n", rc);
        failed++;
    }

    /* Sizes: one element, one partial block, and more than the grid covers
     * in one pass (the kernel's grid-stride loop). */
    const int sizes[] = {1, 1000, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rc = cudev_axpy_check(sizes[i], 1.75f, &err);
        printf("%s axpy n=%d%s%s\n", rc == 0 ? "ok  " : "FAIL", sizes[i], rc == 0 ? "" : ": ",
               rc == 0 ? "" : err.msg);
        failed += rc != 0;
    }

    rc = cudev_axpy_check(0, 1.0f, &err);
    printf("%s axpy n=0 rejected (%d)\n", rc < 0 ? "ok  " : "FAIL", rc);
    failed += rc >= 0;

    rc = cudev_cublas_check(&version, &err);
    if (rc == 0)
        printf("ok   cuBLAS handle, version %d\n", version);
    else
        printf("FAIL cuBLAS: %s\n", err.msg);
    failed += rc != 0;

    printf("%s\n", failed == 0 ? "all passed" : "FAILED");
    return failed == 0 ? 0 : 1;
}

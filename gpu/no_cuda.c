/*
 * no_cuda: the CUDA backend's entry points in a build without it, so callers
 * need no #ifdef: there is no device to use.
 */
#include <errno.h>

#include "gpu/backend.h"

int be_cuda_create(const model_config *cfg, int max_tokens, int max_seq, dt_type wdtype,
                   int device, be_backend **out, rt_err *err)
{
    (void)cfg, (void)max_tokens, (void)max_seq, (void)wdtype, (void)device;
    *out = NULL;
    return err_set(err, -ENODEV,
                   "this build has no CUDA backend (nvcc was not found when it was configured; "
                   "rebuild with -DRAMTRAIN_CUDA=ON on a machine with the CUDA toolkit)");
}

int be_cuda_device_count(void) { return 0; }

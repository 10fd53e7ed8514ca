/* placeholder: written next */
#include "gpu/cuda/kernels.h"

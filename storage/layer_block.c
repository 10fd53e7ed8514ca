/*
 * layer_block: placement of tensors and sections in a layer block (see
 * layer_block.h). Pure arithmetic; no allocation, no I/O.
 */
#include "storage/layer_block.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int lb_layout_init(lb_layout *l, int index, dt_type compute, int n_gslots, rt_err *err)
{
    memset(l, 0, sizeof *l);
    if (n_gslots < 1 || n_gslots > LB_SEC_MAX - LB_SEC_G0)
        return err_set(err, -EINVAL, "layer block %d: %d gradient slots requested, 1..%d allowed",
                       index, n_gslots, LB_SEC_MAX - LB_SEC_G0);
    if (compute != DT_F32 && compute != DT_BF16 && compute != DT_F16)
        return err_set(err, -EINVAL, "layer block %d: compute dtype %s is not F32, BF16 or F16",
                       index, dt_name(compute));
    l->index = index;
    l->compute = compute;
    l->n_gslots = n_gslots;
    return 0;
}

int lb_layout_add(lb_layout *l, const char *name, int ndim, const int64_t *shape, rt_err *err)
{
    if (l->n_tensors == LB_MAX_TENSORS)
        return err_set(err, -E2BIG, "layer block %d: more than %d tensors (adding %s)",
                       l->index, LB_MAX_TENSORS, name);
    if (ndim < 1 || ndim > LB_MAX_DIMS)
        return err_set(err, -EINVAL, "layer block %d: tensor %s has %d dimensions, 1..%d allowed",
                       l->index, name, ndim, LB_MAX_DIMS);
    if (strlen(name) >= LB_NAME_LEN)
        return err_set(err, -ENAMETOOLONG, "layer block %d: tensor name %s longer than %d bytes",
                       l->index, name, LB_NAME_LEN - 1);
    lb_tensor *t = &l->t[l->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0)
            return err_set(err, -EINVAL, "layer block %d: tensor %s has dimension %d of size %lld",
                           l->index, name, d, (long long)shape[d]);
        t->shape[d] = shape[d];
        t->numel *= (uint64_t)shape[d];
    }
    l->n_tensors++;
    return 0;
}

void lb_layout_finish(lb_layout *l)
{
    /* Two tables of offsets: one for the compute dtype (W and the G slots,
     * what travels to the GPU, so no padding beyond 4 KiB alignment) and one
     * for the fp32 optimizer sections. With fp32 compute they coincide. */
    uint64_t off = 0, off32 = 0;
    size_t esize = dt_size(l->compute);
    for (int i = 0; i < l->n_tensors; i++) {
        l->t[i].offset = off;
        l->t[i].offset_f32 = off32;
        off = lb_align_up(off + l->t[i].numel * esize, LB_ALIGN_TENSOR);
        off32 = lb_align_up(off32 + l->t[i].numel * sizeof(float), LB_ALIGN_TENSOR);
    }
    l->w_bytes = off;
    l->f32_bytes = off32;

    uint64_t pos = LB_ALIGN_TENSOR; /* header page */
    memset(l->sec_off, 0, sizeof l->sec_off);
    l->sec_off[LB_SEC_W] = pos;
    pos += l->w_bytes;
    for (int s = 0; s < l->n_gslots; s++) {
        l->sec_off[LB_SEC_G0 + s] = pos;
        pos += l->w_bytes;
    }
    /* The accumulator stays with W and G: it is what GradReady touches. The
     * optimizer state (master, m, v) comes last and in one piece, so NVMe
     * spill moves it as one extent and a spilled block is simply shorter. */
    l->sec_off[LB_SEC_ACCUM] = pos;
    pos += l->f32_bytes;
    l->opt_off = pos;
    if (l->compute != DT_F32) {
        l->sec_off[LB_SEC_MASTER] = pos;
        pos += l->f32_bytes;
    }
    l->sec_off[LB_SEC_M] = pos;
    pos += l->f32_bytes;
    l->sec_off[LB_SEC_V] = pos;
    pos += l->f32_bytes;
    l->opt_bytes = pos - l->opt_off;
    l->resident_bytes = lb_align_up(l->opt_off, LB_ALIGN_BLOCK);
    l->total_bytes = lb_align_up(pos, LB_ALIGN_BLOCK);
}

int lb_layout_find(const lb_layout *l, const char *name)
{
    for (int i = 0; i < l->n_tensors; i++)
        if (strcmp(l->t[i].name, name) == 0)
            return i;
    return -1;
}

uint64_t lb_tensor_bytes(const lb_layout *l, int i, lb_section sec)
{
    int compute = sec == LB_SEC_W || sec >= LB_SEC_G0;
    return l->t[i].numel * (compute ? dt_size(l->compute) : sizeof(float));
}

void *lb_tensor_ptr(const lb_layout *l, void *base, lb_section sec, int i)
{
    int compute = sec == LB_SEC_W || sec >= LB_SEC_G0;
    return (char *)base + l->sec_off[sec] + (compute ? l->t[i].offset : l->t[i].offset_f32);
}

/*
 * model_io: layer blocks of a whole model in process memory (see model_io.h).
 */
#include "orchestrator/model_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "services/common/rng.h"
#include "storage/safetensors.h"

int mio_alloc(mio_model *m, const model_config *cfg, rt_err *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->n_blocks = model_n_blocks(cfg);
    m->layouts = calloc((size_t)m->n_blocks, sizeof *m->layouts);
    m->blocks = calloc((size_t)m->n_blocks, sizeof *m->blocks);
    m->w_layers = calloc((size_t)cfg->n_layers, sizeof *m->w_layers);
    m->g_layers = calloc((size_t)cfg->n_layers, sizeof *m->g_layers);
    int rc;
    if (m->layouts == NULL || m->blocks == NULL || m->w_layers == NULL || m->g_layers == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        if ((rc = model_block_layout(cfg, b, DT_F32, 1, l, err)) < 0)
            goto fail;
        void *p = mmap(NULL, l->total_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) {
            rc = err_set(err, -ENOMEM, "cannot map layer block %d (%.1f MiB)", b,
                         (double)l->total_bytes / (1 << 20));
            goto fail;
        }
        m->blocks[b] = p;
        m->bytes += l->total_bytes;
        void *w, *g;
        switch (model_block_kind_of(cfg, b)) {
        case MODEL_BLOCK_EMBED:
            w = &m->w_embed, g = &m->g_embed;
            break;
        case MODEL_BLOCK_LAYER:
            w = &m->w_layers[b - 1], g = &m->g_layers[b - 1];
            break;
        default:
            w = &m->w_head, g = &m->g_head;
            break;
        }
        if ((rc = model_block_bind(cfg, l, p, LB_SEC_W, w, err)) < 0 ||
            (rc = model_block_bind(cfg, l, p, LB_SEC_G0, g, err)) < 0)
            goto fail;
    }
    return 0;
fail:
    mio_free(m);
    return rc;
}

void mio_free(mio_model *m)
{
    for (int b = 0; m->blocks != NULL && b < m->n_blocks; b++)
        if (m->blocks[b] != NULL)
            munmap(m->blocks[b], m->layouts[b].total_bytes);
    free(m->blocks);
    free(m->layouts);
    free(m->w_layers);
    free(m->g_layers);
    memset(m, 0, sizeof *m);
}

void mio_init_weights(mio_model *m, uint64_t seed)
{
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        for (int i = 0; i < l->n_tensors; i++)
            rng_init_tensor(l->t[i].name, seed, b, i, m->cfg.init_range,
                            lb_tensor_ptr(l, m->blocks[b], LB_SEC_W, i), l->t[i].numel);
    }
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, len - pos, "[");
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (pos < len)
        snprintf(buf + pos, len - pos, "]");
}

int mio_load(mio_model *m, const char *path, rt_err *err)
{
    st_set *set = NULL;
    int rc = st_open(path, &set, err);
    if (rc < 0)
        return rc;
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        for (int i = 0; i < l->n_tensors; i++) {
            const lb_tensor *lt = &l->t[i];
            const st_tensor *t = st_find(set, lt->name);
            if (t == NULL) {
                rc = err_set(err, -ENOENT, "%s: missing tensor %s (required by config.json)", path,
                             lt->name);
                goto out;
            }
            int same = t->ndim == lt->ndim;
            for (int d = 0; same && d < lt->ndim; d++)
                same = t->shape[d] == lt->shape[d];
            if (!same) {
                char have[128], want[128];
                shape_str(t->shape, t->ndim, have, sizeof have);
                shape_str(lt->shape, lt->ndim, want, sizeof want);
                rc = err_set(err, -EINVAL,
                             "%s: tensor %s has shape %s but config.json implies %s", t->file,
                             lt->name, have, want);
                goto out;
            }
            if (!dt_is_float(t->dtype)) {
                rc = err_set(err, -EINVAL,
                             "%s: tensor %s has dtype %s; weights must be F32, BF16, F16 or F64",
                             t->file, lt->name, dt_name(t->dtype));
                goto out;
            }
            float *dst = lb_tensor_ptr(l, m->blocks[b], LB_SEC_W, i);
            if ((rc = st_tensor_read_f32(t, dst, lt->numel, err)) < 0)
                goto out;
        }
    }
    rc = 0;
out:
    st_close(set);
    return rc;
}

int mio_save(const mio_model *m, lb_section sec, const char *path, rt_err *err)
{
    st_writer w;
    st_writer_init(&w);
    int rc = st_writer_meta(&w, "format", "pt", err);
    for (int b = 0; rc == 0 && b < m->n_blocks; b++) {
        const lb_layout *l = &m->layouts[b];
        for (int i = 0; rc == 0 && i < l->n_tensors; i++)
            rc = st_writer_add(&w, l->t[i].name, DT_F32, l->t[i].ndim, l->t[i].shape,
                               lb_tensor_ptr(l, m->blocks[b], sec, i), err);
    }
    if (rc == 0)
        rc = st_writer_write(&w, path, err);
    st_writer_free(&w);
    return rc;
}

void mio_zero(mio_model *m, lb_section sec)
{
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        uint64_t bytes = sec == LB_SEC_W || sec >= LB_SEC_G0 ? l->w_bytes : l->f32_bytes;
        memset((char *)m->blocks[b] + l->sec_off[sec], 0, bytes);
    }
}

void mio_for_each(mio_model *m, mio_tensor_fn fn, void *ctx)
{
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        for (int i = 0; i < l->n_tensors; i++)
            fn(ctx, &l->t[i], lb_tensor_ptr(l, m->blocks[b], LB_SEC_W, i),
               lb_tensor_ptr(l, m->blocks[b], LB_SEC_G0, i),
               lb_tensor_ptr(l, m->blocks[b], LB_SEC_M, i),
               lb_tensor_ptr(l, m->blocks[b], LB_SEC_V, i));
    }
}

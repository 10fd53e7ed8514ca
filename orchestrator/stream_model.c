/*
 * stream_model: a model directory streamed block by block (see stream_model.h).
 *
 * Rejected: pointing the block structs straight into the mapped file when a
 * tensor is stored as F32 (no copy at all). Safetensors data need not be
 * 4-byte aligned (safetensors.c), a bf16 checkpoint needs the conversion
 * anyway, and the copy of one block costs far less than its forward.
 */
#include "orchestrator/stream_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void sm_shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t pos = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (pos < len)
        snprintf(buf + pos, len - pos, "]");
}

/* The checkpoint's tensor for layout tensor lt, checked against it. */
static int sm_check_tensor(const sm_model *m, const lb_tensor *lt, const st_tensor **out,
                           rt_err *err)
{
    const st_tensor *t = st_find(m->set, lt->name);
    if (t == NULL)
        return err_set(err, -EINVAL, "%s: missing tensor %s (required by config.json)", m->path,
                       lt->name);
    int same = t->ndim == lt->ndim;
    for (int d = 0; same && d < lt->ndim; d++)
        same = t->shape[d] == lt->shape[d];
    if (!same) {
        char have[128], want[128];
        sm_shape_str(t->shape, t->ndim, have, sizeof have);
        sm_shape_str(lt->shape, lt->ndim, want, sizeof want);
        return err_set(err, -EINVAL, "%s: tensor %s has shape %s but config.json implies %s",
                       t->file, lt->name, have, want);
    }
    if (!dt_is_float(t->dtype))
        return err_set(err, -EINVAL,
                       "%s: tensor %s has dtype %s; weights must be F32, BF16, F16 or F64", t->file,
                       lt->name, dt_name(t->dtype));
    *out = t;
    return 0;
}

int sm_open(const char *dir, sm_model *m, rt_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(dir, &st) != 0)
        return err_set(err, -ENOENT, "%s: model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set(err, -ENOTDIR,
                       "%s: not a directory: --model wants a directory with config.json and "
                       "model.safetensors",
                       dir);
    int rc;
    if ((m->path = strdup(dir)) == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    size_t plen = strlen(dir) + sizeof "/config.json";
    char *cfg_path = malloc(plen);
    if (cfg_path == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(cfg_path, plen, "%s/config.json", dir);
    rc = model_config_load(cfg_path, &m->cfg, err);
    free(cfg_path);
    if (rc < 0)
        goto fail;
    if ((rc = st_open(dir, &m->set, err)) < 0)
        goto fail;
    m->n_blocks = model_n_blocks(&m->cfg);
    if ((m->layouts = calloc((size_t)m->n_blocks, sizeof *m->layouts)) == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int b = 0; b < m->n_blocks; b++) {
        lb_layout *l = &m->layouts[b];
        if ((rc = model_block_layout(&m->cfg, b, DT_F32, 1, l, err)) < 0)
            goto fail;
        for (int i = 0; i < l->n_tensors; i++) {
            const st_tensor *t;
            if ((rc = sm_check_tensor(m, &l->t[i], &t, err)) < 0)
                goto fail;
        }
    }
    return 0;
fail:
    sm_close(m);
    return rc;
}

void sm_close(sm_model *m)
{
    st_close(m->set);
    free(m->layouts);
    free(m->path);
    memset(m, 0, sizeof *m);
}

uint64_t sm_block_bytes(const sm_model *m, int b)
{
    const lb_layout *l = &m->layouts[b];
    return l->sec_off[LB_SEC_W] + l->w_bytes;
}

int sm_read_block(const sm_model *m, int b, void *buf, void *ptrs, rt_err *err)
{
    const lb_layout *l = &m->layouts[b];
    int rc;
    for (int i = 0; i < l->n_tensors; i++) {
        const st_tensor *t;
        if ((rc = sm_check_tensor(m, &l->t[i], &t, err)) < 0 ||
            (rc = st_tensor_read_f32(t, lb_tensor_ptr(l, buf, LB_SEC_W, i), l->t[i].numel, err)) < 0)
            return rc;
    }
    return model_block_bind(&m->cfg, l, buf, LB_SEC_W, ptrs, err);
}

int sm_default_tokenizer(const char *dir, char **out)
{
    size_t len = strlen(dir) + sizeof "/tokenizer.json";
    *out = NULL;
    char *p = malloc(len);
    if (p == NULL)
        return -ENOMEM;
    snprintf(p, len, "%s/tokenizer.json", dir);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
        *out = p;
    else
        free(p);
    return 0;
}

/* 64-byte aligned allocation of at least bytes (rounded up, as aligned_alloc wants). */
static void *sm_alloc(uint64_t bytes)
{
    return aligned_alloc(64, lb_align_up(bytes, 64));
}

int sm_run_init(sm_run *r, sm_model *m, int max_rows, int max_seq, int n_threads, rt_err *err)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->max_rows = max_rows;
    r->max_seq = max_seq;
    const model_config *c = &m->cfg;
    int tied = c->tie_embeddings;
    uint64_t buf_bytes = 0;
    for (int b = tied ? 1 : 0; b < m->n_blocks; b++) /* tied: block 0 has a buffer of its own */
        if (sm_block_bytes(m, b) > buf_bytes)
            buf_bytes = sm_block_bytes(m, b);
    uint64_t act = (uint64_t)max_rows * (uint64_t)max_seq * (uint64_t)c->hidden * sizeof(float);
    int rc;
    r->buf = sm_alloc(buf_bytes);
    r->x = sm_alloc(act);
    r->y = sm_alloc(act);
    if (tied)
        r->embed_buf = sm_alloc(sm_block_bytes(m, 0));
    r->bytes = buf_bytes + 2 * act + (tied ? sm_block_bytes(m, 0) : 0);
    if (r->buf == NULL || r->x == NULL || r->y == NULL || (tied && r->embed_buf == NULL)) {
        rc = err_set(err, -ENOMEM, "cannot allocate %.1f MiB for a block buffer and activations",
                     (double)r->bytes / (1 << 20));
        goto fail;
    }
    if (tied && (rc = sm_read_block(m, 0, r->embed_buf, &r->embed, err)) < 0)
        goto fail;
    if ((rc = be_cpu_create(c, max_rows * max_seq, max_seq, n_threads, &r->be, err)) < 0)
        goto fail;
    return 0;
fail:
    sm_run_free(r);
    return rc;
}

void sm_run_free(sm_run *r)
{
    if (r->be != NULL)
        r->be->ops->destroy(r->be);
    free(r->buf);
    free(r->embed_buf);
    free(r->x);
    free(r->y);
    memset(r, 0, sizeof *r);
}

int sm_run_forward(sm_run *r, const int32_t *tokens, int B, int T, rt_err *err)
{
    const sm_model *m = r->m;
    be_backend *be = r->be;
    int L = (int)m->cfg.n_layers, N = B * T, rc;
    if (B < 1 || T < 1 || B > r->max_rows || T > r->max_seq)
        return err_set(err, -EINVAL, "forward of %d x %d tokens: sized for at most %d x %d", B, T,
                       r->max_rows, r->max_seq);
    if (!m->cfg.tie_embeddings && (rc = sm_read_block(m, 0, r->buf, &r->embed, err)) < 0)
        return rc;
    if ((rc = be->ops->embed_forward(be, &r->embed, tokens, N, r->x)) < 0)
        return err_set(err, rc, "embedding forward failed (a token id is not below vocab_size %lld)",
                       (long long)m->cfg.vocab);
    float *x = r->x, *y = r->y;
    for (int l = 0; l < L; l++) {
        model_layer_ptrs w;
        if ((rc = sm_read_block(m, l + 1, r->buf, &w, err)) < 0)
            return rc;
        if ((rc = be->ops->layer_forward(be, &w, x, y, B, T, BE_DISCARD)) < 0)
            return err_set(err, rc, "layer %d forward failed", l);
        float *t = x;
        x = y;
        y = t;
    }
    if ((rc = sm_read_block(m, L + 1, r->buf, &r->head, err)) < 0)
        return rc;
    r->out = x;
    return 0;
}

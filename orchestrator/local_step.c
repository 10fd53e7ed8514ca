/*
 * local_step: one micro-batch through every block in process memory (see
 * local_step.h).
 */
#include "orchestrator/local_step.h"

#include <errno.h>
#include <stdlib.h>

int lstep_init(lstep *s, const model_config *cfg, int B, int T, int n_threads, rt_err *err)
{
    s->B = B;
    s->T = T;
    size_t NH = (size_t)B * (size_t)T * (size_t)cfg->hidden;
    s->acts = malloc((size_t)(cfg->n_layers + 1) * NH * sizeof(float));
    s->dx = malloc(NH * sizeof(float));
    s->be = NULL;
    if (s->acts == NULL || s->dx == NULL) {
        lstep_free(s);
        return err_set(err, -ENOMEM, "cannot allocate activations for %d x %d tokens", B, T);
    }
    int rc = be_cpu_create(cfg, B * T, T, n_threads, &s->be, err);
    if (rc < 0)
        lstep_free(s);
    return rc;
}

void lstep_free(lstep *s)
{
    if (s->be != NULL)
        s->be->ops->destroy(s->be);
    free(s->acts);
    free(s->dx);
    s->be = NULL;
    s->acts = s->dx = NULL;
}

int lstep_run(lstep *s, mio_model *m, const int32_t *inputs, const int32_t *targets,
              float grad_scale, int grads, double *loss_sum, rt_err *err)
{
    be_backend *be = s->be;
    const be_ops *ops = be->ops;
    int L = (int)m->cfg.n_layers, N = s->B * s->T;
    size_t NH = (size_t)N * (size_t)m->cfg.hidden;
    int rc;
    if ((rc = ops->embed_forward(be, &m->w_embed, inputs, N, s->acts)) < 0)
        return err_set(err, rc, "embedding forward failed (token id out of range?)");
    for (int l = 0; l < L; l++)
        if ((rc = ops->layer_forward(be, &m->w_layers[l], s->acts + l * NH, s->acts + (l + 1) * NH,
                                     s->B, s->T,
                                     grads && l == L - 1 ? BE_KEEP_FOR_BACKWARD : BE_DISCARD)) < 0)
            return err_set(err, rc, "layer %d forward failed", l);
    const float *embed = m->cfg.tie_embeddings ? m->w_embed.embed : NULL;
    float *g_embed = m->cfg.tie_embeddings ? m->g_embed.embed : NULL;
    if ((rc = ops->head_loss(be, &m->w_head, embed, s->acts + L * NH, targets, N, grad_scale,
                             loss_sum, grads ? s->dx : NULL, &m->g_head, g_embed)) < 0)
        return err_set(err, rc, "head forward failed (target id out of range?)");
    if (!grads)
        return 0;
    for (int l = L - 1; l >= 0; l--)
        if ((rc = ops->layer_backward(be, &m->w_layers[l], s->acts + l * NH, s->dx, s->dx,
                                      &m->g_layers[l], s->B, s->T)) < 0)
            return err_set(err, rc, "layer %d backward failed", l);
    if ((rc = ops->embed_backward(be, inputs, N, s->dx, &m->g_embed)) < 0)
        return err_set(err, rc, "embedding backward failed");
    return 0;
}

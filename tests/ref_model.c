/*
 * ref_model: the double-precision reference decoder (see ref_model.h).
 *
 * Each function follows one piece of the Hugging Face Python and keeps its
 * shape: RoPE builds emb = cat(freqs, freqs) and rotate_half(x) = cat(-x2, x1)
 * literally; attention fills the whole [T, T] score matrix, masks j > i with
 * -inf and takes a max-subtracted softmax. Rejected: sharing any helper with
 * a backend, or writing the layer backward by hand (the tests take the
 * layer's gradients by finite differences of this forward instead, so the
 * reference stays a forward that can be checked by reading). The head is the
 * exception: its analytic gradient (softmax - onehot, then the RMSNorm
 * backward) is here because the head is too large for finite differences at
 * real vocabulary sizes; the tests check it against finite differences first.
 */
#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gpu/backend.h"

void *ref_alloc(int64_t count, int64_t size)
{
    void *p = calloc((size_t)(count > 0 ? count : 1), (size_t)size);
    if (p == NULL) {
        fprintf(stderr, "ref_model: out of memory (%lld x %lld bytes)\n", (long long)count,
                (long long)size);
        abort();
    }
    return p;
}

void ref_rmsnorm(const double *x, const double *w, double eps, int64_t n, int64_t d, double *y)
{
    for (int64_t r = 0; r < n; r++) {
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++)
            ss += x[r * d + j] * x[r * d + j];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t j = 0; j < d; j++)
            y[r * d + j] = w[j] * (x[r * d + j] * inv);
    }
}

/* y_j = w_j x_j s with s = (mean(x^2) + eps)^(-1/2), ds/dx_k = -s^3 x_k / d:
 * dx_k = dy_k w_k s - x_k s^3 / d * sum_j dy_j w_j x_j;  dw_j += dy_j x_j s. */
void ref_rmsnorm_backward(const double *x, const double *w, double eps, const double *dy,
                          int64_t n, int64_t d, double *dx, double *dw)
{
    for (int64_t r = 0; r < n; r++) {
        const double *xr = x + r * d, *dyr = dy + r * d;
        double ss = 0.0, m = 0.0;
        for (int64_t j = 0; j < d; j++) {
            ss += xr[j] * xr[j];
            m += dyr[j] * w[j] * xr[j];
        }
        double s = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t k = 0; k < d; k++) {
            dx[r * d + k] = dyr[k] * w[k] * s - xr[k] * s * s * s / (double)d * m;
            dw[k] += dyr[k] * xr[k] * s;
        }
    }
}

void ref_linear(const double *x, const double *w, const double *b, int64_t n, int64_t in,
                int64_t out, double *y)
{
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b != NULL ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

void ref_rope(const model_config *c, double *x, int64_t heads, int B, int T)
{
    int64_t hd = c->head_dim, half = hd / 2;
    double *inv_freq = ref_alloc(half, sizeof *inv_freq);
    double *cosv = ref_alloc(hd, sizeof *cosv), *sinv = ref_alloc(hd, sizeof *sinv);
    double *rot = ref_alloc(hd, sizeof *rot);
    model_rope_inv_freq(c, inv_freq);
    for (int t = 0; t < T; t++) {
        /* emb = cat(freqs, freqs), freqs = position * inv_freq */
        for (int64_t i = 0; i < hd; i++) {
            double ang = (double)t * inv_freq[i % half];
            cosv[i] = cos(ang);
            sinv[i] = sin(ang);
        }
        for (int b = 0; b < B; b++)
            for (int64_t h = 0; h < heads; h++) {
                double *v = x + (((int64_t)b * T + t) * heads + h) * hd;
                /* rotate_half(v) = cat(-v[half:], v[:half]) */
                for (int64_t i = 0; i < hd; i++)
                    rot[i] = i < half ? -v[i + half] : v[i - half];
                for (int64_t i = 0; i < hd; i++)
                    v[i] = v[i] * cosv[i] + rot[i] * sinv[i];
            }
    }
    free(inv_freq);
    free(cosv);
    free(sinv);
    free(rot);
}

void ref_attention(const model_config *c, const double *q, const double *k, const double *v,
                   int B, int T, double *out)
{
    int64_t hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, n_rep = nh / nkv;
    int64_t qd = nh * hd, kvd = nkv * hd;
    double scale = 1.0 / sqrt((double)hd);
    double *S = ref_alloc((int64_t)T * T, sizeof *S); /* [T, T] scores, then probabilities */
    for (int b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++) {
            int64_t kvh = h / n_rep; /* repeat_kv */
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    if (j > i) {
                        S[i * T + j] = -INFINITY;
                        continue;
                    }
                    const double *qi = q + ((int64_t)b * T + i) * qd + h * hd;
                    const double *kj = k + ((int64_t)b * T + j) * kvd + kvh * hd;
                    double s = 0.0;
                    for (int64_t e = 0; e < hd; e++)
                        s += qi[e] * kj[e];
                    S[i * T + j] = s * scale;
                }
            for (int i = 0; i < T; i++) {
                double m = -INFINITY, z = 0.0;
                for (int j = 0; j < T; j++)
                    m = S[i * T + j] > m ? S[i * T + j] : m;
                for (int j = 0; j < T; j++) {
                    S[i * T + j] = exp(S[i * T + j] - m);
                    z += S[i * T + j];
                }
                for (int j = 0; j < T; j++)
                    S[i * T + j] /= z;
            }
            for (int i = 0; i < T; i++) {
                double *oi = out + ((int64_t)b * T + i) * qd + h * hd;
                for (int64_t e = 0; e < hd; e++) {
                    double s = 0.0;
                    for (int j = 0; j < T; j++)
                        s += S[i * T + j] * v[((int64_t)b * T + j) * kvd + kvh * hd + e];
                    oi[e] = s;
                }
            }
        }
    free(S);
}

void ref_layer_forward(const model_config *c, const ref_layer *w, const double *x, int B, int T,
                       double *y)
{
    int64_t N = (int64_t)B * T, H = c->hidden, I = c->intermediate;
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    double *h = ref_alloc(N * H, sizeof *h);
    double *q = ref_alloc(N * qd, sizeof *q);
    double *k = ref_alloc(N * kvd, sizeof *k), *v = ref_alloc(N * kvd, sizeof *v);
    double *att = ref_alloc(N * qd, sizeof *att);
    double *x1 = ref_alloc(N * H, sizeof *x1);
    double *g = ref_alloc(N * I, sizeof *g), *u = ref_alloc(N * I, sizeof *u);

    /* attention block: x1 = x + o_proj(attn(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))) */
    ref_rmsnorm(x, w->attn_norm, c->rms_eps, N, H, h);
    ref_linear(h, w->q_w, w->q_b, N, H, qd, q);
    ref_linear(h, w->k_w, w->k_b, N, H, kvd, k);
    ref_linear(h, w->v_w, w->v_b, N, H, kvd, v);
    ref_rope(c, q, c->n_heads, B, T);
    ref_rope(c, k, c->n_kv_heads, B, T);
    ref_attention(c, q, k, v, B, T, att);
    ref_linear(att, w->o_w, w->o_b, N, qd, H, x1);
    for (int64_t i = 0; i < N * H; i++)
        x1[i] += x[i];

    /* MLP block: y = x1 + down_proj(silu(gate_proj(h2)) * up_proj(h2)) */
    ref_rmsnorm(x1, w->mlp_norm, c->rms_eps, N, H, h);
    ref_linear(h, w->gate_w, NULL, N, H, I, g);
    ref_linear(h, w->up_w, NULL, N, H, I, u);
    for (int64_t i = 0; i < N * I; i++)
        g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    ref_linear(g, w->down_w, NULL, N, I, H, y);
    for (int64_t i = 0; i < N * H; i++)
        y[i] += x1[i];

    free(h);
    free(q);
    free(k);
    free(v);
    free(att);
    free(x1);
    free(g);
    free(u);
}

void ref_head(const model_config *c, const double *norm, const double *W, const double *x,
              const int32_t *targets, int n, double grad_scale, double *loss_sum, double *dx,
              double *d_norm, double *dW)
{
    int64_t H = c->hidden, V = c->vocab;
    double *hn = ref_alloc((int64_t)n * H, sizeof *hn);   /* final-norm output */
    double *dhn = ref_alloc((int64_t)n * H, sizeof *dhn); /* its gradient */
    double *logit = ref_alloc(V, sizeof *logit);          /* one token's logits */
    ref_rmsnorm(x, norm, c->rms_eps, n, H, hn);
    if (dx != NULL) {
        for (int64_t i = 0; i < H; i++)
            d_norm[i] = 0.0;
        for (int64_t i = 0; i < V * H; i++)
            dW[i] = 0.0;
    }
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        int32_t t = targets[r];
        if (t == BE_IGNORE_INDEX)
            continue; /* no loss, no gradient: dhn row stays 0 */
        const double *hr = hn + (int64_t)r * H;
        double m = -INFINITY, z = 0.0;
        for (int64_t j = 0; j < V; j++) {
            double s = 0.0;
            for (int64_t e = 0; e < H; e++)
                s += hr[e] * W[j * H + e];
            logit[j] = s;
            m = s > m ? s : m;
        }
        for (int64_t j = 0; j < V; j++)
            z += exp(logit[j] - m);
        double lse = m + log(z);
        total += lse - logit[t];
        if (dx == NULL)
            continue;
        double *dhr = dhn + (int64_t)r * H;
        for (int64_t j = 0; j < V; j++) {
            double dl = grad_scale * (exp(logit[j] - lse) - (j == t ? 1.0 : 0.0));
            for (int64_t e = 0; e < H; e++) {
                dW[j * H + e] += dl * hr[e];
                dhr[e] += dl * W[j * H + e];
            }
        }
    }
    *loss_sum += total;
    if (dx != NULL)
        ref_rmsnorm_backward(x, norm, c->rms_eps, dhn, n, H, dx, d_norm);
    free(hn);
    free(dhn);
    free(logit);
}

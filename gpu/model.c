/*
 * model: Hugging Face config.json parsing, the block division of the model
 * and the binding of named pointers (see model.h).
 *
 * Defaults follow the Transformers config classes of each architecture, so a
 * config.json that Transformers accepts means the same model here. Keys that
 * change the model in ways we do not implement (mlp_bias, other activations,
 * other rope types) are errors rather than silently ignored.
 */
#include "gpu/model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- config.json ---------------------------------------------------------- */

static int get_int(json_t *root, const char *key, int required, int64_t dflt, int64_t *out,
                   const char *name, rt_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return err_set(err, -EINVAL, "%s: missing required key \"%s\"", name, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return err_set(err, -EINVAL, "%s: key \"%s\" must be an integer", name, key);
    *out = json_integer_value(v);
    return 0;
}

static int get_num(json_t *root, const char *key, double dflt, double *out, const char *name,
                   rt_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v))
        return err_set(err, -EINVAL, "%s: key \"%s\" must be a number", name, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(json_t *root, const char *key, bool dflt, bool *out, const char *name,
                    rt_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return err_set(err, -EINVAL, "%s: key \"%s\" must be true or false", name, key);
    *out = json_is_true(v);
    return 0;
}

/* Defaults of each Transformers config class. kv_heads 0: num_attention_heads;
 * window: sliding_window when the key is absent (null means none). */
static const struct arch {
    const char *model_type, *architecture;
    double rms_eps, rope_theta;
    int64_t max_pos, kv_heads, window;
} ARCHS[] = {
    {"llama", "LlamaForCausalLM", 1e-6, 10000.0, 2048, 0, 0},
    {"mistral", "MistralForCausalLM", 1e-6, 10000.0, 4096 * 32, 8, 4096},
    {"qwen2", "Qwen2ForCausalLM", 1e-6, 10000.0, 32768, 32, 4096},
};

static const struct arch *find_arch(json_t *root, const char *name, rt_err *err)
{
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    json_t *archs = json_object_get(root, "architectures");
    const char *a0 = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        if (mt != NULL && strcmp(mt, ARCHS[i].model_type) == 0)
            return &ARCHS[i];
        if (mt == NULL && a0 != NULL && strcmp(a0, ARCHS[i].architecture) == 0)
            return &ARCHS[i];
    }
    if (mt == NULL && a0 == NULL)
        err_set(err, -EINVAL, "%s: no \"model_type\" or \"architectures\": cannot tell the architecture",
                name);
    else
        err_set(err, -EINVAL,
                "%s: unsupported architecture \"%s\" (supported model_type: llama, mistral, qwen2)",
                name, mt != NULL ? mt : a0);
    return NULL;
}

/* rope_scaling (older files) or rope_parameters (Transformers 5): one object
 * with the type under "rope_type" or "type". */
static int parse_rope(json_t *root, model_config *c, const char *name, rt_err *err)
{
    json_t *rp = json_object_get(root, "rope_parameters");
    json_t *rs = json_object_get(root, "rope_scaling");
    int rc;
    if (rp != NULL && !json_is_null(rp) && !json_is_object(rp))
        return err_set(err, -EINVAL, "%s: \"rope_parameters\" must be an object", name);
    if (rs != NULL && !json_is_null(rs) && !json_is_object(rs))
        return err_set(err, -EINVAL, "%s: \"rope_scaling\" must be an object or null", name);
    json_t *obj = json_is_object(rp) ? rp : json_is_object(rs) ? rs : NULL;
    const char *which = obj == rp ? "rope_parameters" : "rope_scaling";

    if ((rc = get_num(root, "rope_theta", 10000.0, &c->rope_theta, name, err)) < 0)
        return rc;
    c->rope_type = MODEL_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (obj == NULL)
        return 0;
    if (json_object_get(obj, "rope_theta") != NULL &&
        (rc = get_num(obj, "rope_theta", 10000.0, &c->rope_theta, name, err)) < 0)
        return rc;
    json_t *t = json_object_get(obj, "rope_type");
    if (t == NULL)
        t = json_object_get(obj, "type");
    const char *type = t == NULL ? "default" : json_string_value(t);
    if (type == NULL)
        return err_set(err, -EINVAL, "%s: %s.rope_type must be a string", name, which);
    if (strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "linear") == 0)
        c->rope_type = MODEL_ROPE_LINEAR;
    else if (strcmp(type, "llama3") == 0)
        c->rope_type = MODEL_ROPE_LLAMA3;
    else
        return err_set(err, -EINVAL,
                       "%s: %s type \"%s\" is not supported (supported: default, linear, llama3)",
                       name, which, type);
    json_t *f = json_object_get(obj, "factor");
    if (!json_is_number(f) || json_number_value(f) <= 0)
        return err_set(err, -EINVAL, "%s: %s.factor must be a positive number", name, which);
    c->rope_factor = json_number_value(f);
    if (c->rope_type == MODEL_ROPE_LLAMA3) {
        json_t *lo = json_object_get(obj, "low_freq_factor");
        json_t *hi = json_object_get(obj, "high_freq_factor");
        json_t *om = json_object_get(obj, "original_max_position_embeddings");
        if (!json_is_number(lo) || !json_is_number(hi) || !json_is_integer(om))
            return err_set(err, -EINVAL,
                           "%s: %s of type llama3 needs low_freq_factor, high_freq_factor and "
                           "original_max_position_embeddings", name, which);
        c->rope_low_freq_factor = json_number_value(lo);
        c->rope_high_freq_factor = json_number_value(hi);
        c->rope_orig_max_pos = json_integer_value(om);
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_orig_max_pos <= 0)
            return err_set(err, -EINVAL,
                           "%s: %s: high_freq_factor must exceed low_freq_factor and "
                           "original_max_position_embeddings must be positive", name, which);
    }
    return 0;
}

int model_config_parse(const char *json_text, const char *name, model_config *c, rt_err *err)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    memset(c, 0, sizeof *c);
    if (root == NULL)
        return err_set(err, -EINVAL, "%s: not valid JSON: %s (line %d, column %d)", name, jerr.text,
                       jerr.line, jerr.column);
    if (!json_is_object(root)) {
        rc = err_set(err, -EINVAL, "%s: top level must be a JSON object", name);
        goto out;
    }
    const struct arch *arch = find_arch(root, name, err);
    if (arch == NULL) {
        rc = -EINVAL;
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", arch->model_type);

    if ((rc = get_int(root, "hidden_size", 1, 0, &c->hidden, name, err)) < 0 ||
        (rc = get_int(root, "intermediate_size", 1, 0, &c->intermediate, name, err)) < 0 ||
        (rc = get_int(root, "num_hidden_layers", 1, 0, &c->n_layers, name, err)) < 0 ||
        (rc = get_int(root, "num_attention_heads", 1, 0, &c->n_heads, name, err)) < 0 ||
        (rc = get_int(root, "vocab_size", 1, 0, &c->vocab, name, err)) < 0 ||
        (rc = get_int(root, "num_key_value_heads", 0, arch->kv_heads ? arch->kv_heads : c->n_heads,
                      &c->n_kv_heads, name, err)) < 0 ||
        (rc = get_int(root, "max_position_embeddings", 0, arch->max_pos, &c->max_pos, name, err)) < 0 ||
        (rc = get_num(root, "rms_norm_eps", arch->rms_eps, &c->rms_eps, name, err)) < 0 ||
        (rc = get_num(root, "initializer_range", 0.02, &c->init_range, name, err)) < 0 ||
        (rc = get_bool(root, "tie_word_embeddings", false, &c->tie_embeddings, name, err)) < 0)
        goto out;
    if (c->hidden <= 0 || c->intermediate <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->vocab <= 0 || c->n_kv_heads <= 0 || c->max_pos <= 0) {
        rc = err_set(err, -EINVAL,
                     "%s: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, "
                     "num_key_value_heads, vocab_size and max_position_embeddings must be positive",
                     name);
        goto out;
    }
    if (c->vocab > INT32_MAX || c->hidden > (1 << 20) || c->intermediate > (1 << 22) ||
        c->n_layers > 4096 || c->n_heads > 1024) {
        rc = err_set(err, -EINVAL, "%s: a dimension is implausibly large", name);
        goto out;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        rc = err_set(err, -EINVAL,
                     "%s: num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                     name, (long long)c->n_heads, (long long)c->n_kv_heads);
        goto out;
    }
    json_t *hd = json_object_get(root, "head_dim");
    if (hd == NULL || json_is_null(hd)) {
        if (c->hidden % c->n_heads != 0) {
            rc = err_set(err, -EINVAL,
                         "%s: hidden_size (%lld) is not a multiple of num_attention_heads (%lld) "
                         "and no head_dim is given", name, (long long)c->hidden,
                         (long long)c->n_heads);
            goto out;
        }
        c->head_dim = c->hidden / c->n_heads;
    } else if ((rc = get_int(root, "head_dim", 1, 0, &c->head_dim, name, err)) < 0) {
        goto out;
    }
    if (c->head_dim <= 0 || c->head_dim % 2 != 0) {
        rc = err_set(err, -EINVAL, "%s: head_dim must be a positive even number (got %lld)", name,
                     (long long)c->head_dim);
        goto out;
    }
    if (c->rms_eps <= 0 || c->init_range < 0) {
        rc = err_set(err, -EINVAL, "%s: rms_norm_eps must be positive and initializer_range >= 0",
                     name);
        goto out;
    }
    if ((rc = parse_rope(root, c, name, err)) < 0)
        goto out;
    if (c->rope_theta <= 0) {
        rc = err_set(err, -EINVAL, "%s: rope_theta must be positive", name);
        goto out;
    }

    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (json_object_get(root, "hidden_act") != NULL && (act == NULL || strcmp(act, "silu") != 0)) {
        rc = err_set(err, -EINVAL, "%s: hidden_act must be \"silu\"", name);
        goto out;
    }
    bool mlp_bias;
    if ((rc = get_bool(root, "mlp_bias", false, &mlp_bias, name, err)) < 0)
        goto out;
    if (mlp_bias) {
        rc = err_set(err, -EINVAL, "%s: mlp_bias=true is not supported", name);
        goto out;
    }
    if (strcmp(c->model_type, "qwen2") == 0) {
        c->qkv_bias = true; /* Qwen2 always has q/k/v biases and no o_proj bias */
        c->o_bias = false;
    } else {
        bool ab;
        if ((rc = get_bool(root, "attention_bias", false, &ab, name, err)) < 0)
            goto out;
        c->qkv_bias = c->o_bias = ab;
    }

    /* Sliding-window attention: Mistral's sliding_window, Qwen2's only when
     * use_sliding_window is true; Llama has none. An absent key means the
     * class default (4096), an explicit null means no window. Sequences longer
     * than the window are refused at run time rather than computed with a
     * different mask. */
    bool use_sw = arch->window > 0;
    if (strcmp(c->model_type, "qwen2") == 0 &&
        (rc = get_bool(root, "use_sliding_window", false, &use_sw, name, err)) < 0)
        goto out;
    if (use_sw) {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw == NULL)
            c->sliding_window = arch->window;
        else if (json_is_integer(sw) && json_integer_value(sw) > 0)
            c->sliding_window = json_integer_value(sw);
        else if (!json_is_null(sw)) {
            rc = err_set(err, -EINVAL, "%s: \"sliding_window\" must be a positive integer or null",
                         name);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int model_config_load(const char *path, model_config *cfg, rt_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    int rc;
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = err_set(err, -errno, "%s: cannot seek: %s", path, strerror(errno));
        goto out;
    }
    long n = ftell(f);
    if (n < 0 || n > (16 << 20)) {
        rc = err_set(err, -EINVAL, "%s: not a config.json (size %ld bytes)", path, n);
        goto out;
    }
    rewind(f);
    buf = malloc((size_t)n + 1);
    if (buf == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        rc = err_set(err, -EIO, "%s: short read", path);
        goto out;
    }
    buf[n] = '\0';
    if (strlen(buf) != (size_t)n) {
        rc = err_set(err, -EINVAL, "%s: not valid JSON: contains a NUL byte", path);
        goto out;
    }
    rc = model_config_parse(buf, path, cfg, err);
out:
    free(buf);
    fclose(f);
    return rc;
}

int model_config_save(const model_config *c, const char *path, rt_err *err)
{
    const char *arch = "LlamaForCausalLM";
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].model_type, c->model_type) == 0)
            arch = ARCHS[i].architecture;
    json_t *root = json_object();
    json_object_set_new(root, "architectures", json_pack("[s]", arch));
    json_object_set_new(root, "model_type", json_string(c->model_type));
    json_object_set_new(root, "hidden_size", json_integer(c->hidden));
    json_object_set_new(root, "intermediate_size", json_integer(c->intermediate));
    json_object_set_new(root, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(root, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(root, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(root, "head_dim", json_integer(c->head_dim));
    json_object_set_new(root, "vocab_size", json_integer(c->vocab));
    json_object_set_new(root, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(root, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(root, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(root, "initializer_range", json_real(c->init_range));
    json_object_set_new(root, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(root, "hidden_act", json_string("silu"));
    json_object_set_new(root, "torch_dtype", json_string("float32"));
    if (strcmp(c->model_type, "qwen2") != 0)
        json_object_set_new(root, "attention_bias", json_boolean(c->qkv_bias));
    /* Written explicitly: an absent key would mean the class default window. */
    json_t *window = c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null();
    if (strcmp(c->model_type, "mistral") == 0) {
        json_object_set_new(root, "sliding_window", window);
    } else if (strcmp(c->model_type, "qwen2") == 0) {
        json_object_set_new(root, "use_sliding_window", json_boolean(c->sliding_window > 0));
        json_object_set_new(root, "sliding_window", window);
    } else {
        json_decref(window);
    }
    if (c->rope_type == MODEL_ROPE_LINEAR) {
        json_object_set_new(root, "rope_scaling",
                            json_pack("{s:s, s:f}", "rope_type", "linear", "factor", c->rope_factor));
    } else if (c->rope_type == MODEL_ROPE_LLAMA3) {
        json_object_set_new(root, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:I}", "rope_type", "llama3", "factor",
                                      c->rope_factor, "low_freq_factor", c->rope_low_freq_factor,
                                      "high_freq_factor", c->rope_high_freq_factor,
                                      "original_max_position_embeddings",
                                      (json_int_t)c->rope_orig_max_pos));
    }
    int rc = 0;
    if (json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) != 0)
        rc = err_set(err, -EIO, "%s: cannot write config", path);
    json_decref(root);
    return rc;
}

void model_rope_inv_freq(const model_config *c, double *inv_freq)
{
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim);
        if (c->rope_type == MODEL_ROPE_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_type == MODEL_ROPE_LLAMA3) {
            /* Transformers' _compute_llama3_parameters: long wavelengths are
             * slowed by factor, short ones kept, the band between blended. */
            double old = (double)c->rope_orig_max_pos;
            double low_wavelen = old / c->rope_low_freq_factor;
            double high_wavelen = old / c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f /= c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

/* ---- blocks ------------------------------------------------------------------- */

model_block_kind model_block_kind_of(const model_config *c, int b)
{
    if (b == 0)
        return MODEL_BLOCK_EMBED;
    if (b <= c->n_layers)
        return MODEL_BLOCK_LAYER;
    return MODEL_BLOCK_HEAD;
}

/* Shape rules: each tensor's shape as two dimensions of the config (D_ONE
 * marks a 1-d tensor). */
enum dim { D_ONE, D_HIDDEN, D_Q, D_KV, D_INTER, D_VOCAB };

enum need { NEED_ALWAYS, NEED_QKV_BIAS, NEED_O_BIAS, NEED_UNTIED };

struct tensor_spec {
    const char *suffix;  /* name after "model.layers.{i}." or the full name */
    size_t field;        /* offsetof in the kind's pointer struct */
    enum dim d0, d1;
    enum need need;
};

static const struct tensor_spec EMBED_SPECS[] = {
    {"model.embed_tokens.weight", offsetof(model_embed_ptrs, embed), D_VOCAB, D_HIDDEN, NEED_ALWAYS},
};

static const struct tensor_spec LAYER_SPECS[] = {
    {"input_layernorm.weight", offsetof(model_layer_ptrs, attn_norm), D_HIDDEN, D_ONE, NEED_ALWAYS},
    {"self_attn.q_proj.weight", offsetof(model_layer_ptrs, q_w), D_Q, D_HIDDEN, NEED_ALWAYS},
    {"self_attn.q_proj.bias", offsetof(model_layer_ptrs, q_b), D_Q, D_ONE, NEED_QKV_BIAS},
    {"self_attn.k_proj.weight", offsetof(model_layer_ptrs, k_w), D_KV, D_HIDDEN, NEED_ALWAYS},
    {"self_attn.k_proj.bias", offsetof(model_layer_ptrs, k_b), D_KV, D_ONE, NEED_QKV_BIAS},
    {"self_attn.v_proj.weight", offsetof(model_layer_ptrs, v_w), D_KV, D_HIDDEN, NEED_ALWAYS},
    {"self_attn.v_proj.bias", offsetof(model_layer_ptrs, v_b), D_KV, D_ONE, NEED_QKV_BIAS},
    {"self_attn.o_proj.weight", offsetof(model_layer_ptrs, o_w), D_HIDDEN, D_Q, NEED_ALWAYS},
    {"self_attn.o_proj.bias", offsetof(model_layer_ptrs, o_b), D_HIDDEN, D_ONE, NEED_O_BIAS},
    {"post_attention_layernorm.weight", offsetof(model_layer_ptrs, mlp_norm), D_HIDDEN, D_ONE, NEED_ALWAYS},
    {"mlp.gate_proj.weight", offsetof(model_layer_ptrs, gate_w), D_INTER, D_HIDDEN, NEED_ALWAYS},
    {"mlp.up_proj.weight", offsetof(model_layer_ptrs, up_w), D_INTER, D_HIDDEN, NEED_ALWAYS},
    {"mlp.down_proj.weight", offsetof(model_layer_ptrs, down_w), D_HIDDEN, D_INTER, NEED_ALWAYS},
};

static const struct tensor_spec HEAD_SPECS[] = {
    {"model.norm.weight", offsetof(model_head_ptrs, norm), D_HIDDEN, D_ONE, NEED_ALWAYS},
    {"lm_head.weight", offsetof(model_head_ptrs, lm_head), D_VOCAB, D_HIDDEN, NEED_UNTIED},
};

#define N_SPECS(a) (sizeof(a) / sizeof((a)[0]))
/* Every pointer field has exactly one table row. */
_Static_assert(sizeof(model_embed_ptrs) == N_SPECS(EMBED_SPECS) * sizeof(float *), "embed table");
_Static_assert(sizeof(model_layer_ptrs) == N_SPECS(LAYER_SPECS) * sizeof(float *), "layer table");
_Static_assert(sizeof(model_head_ptrs) == N_SPECS(HEAD_SPECS) * sizeof(float *), "head table");
_Static_assert(N_SPECS(LAYER_SPECS) <= LB_MAX_TENSORS, "layer block tensor table too small");

static const struct tensor_spec *specs_of(model_block_kind kind, size_t *n)
{
    switch (kind) {
    case MODEL_BLOCK_EMBED:
        *n = N_SPECS(EMBED_SPECS);
        return EMBED_SPECS;
    case MODEL_BLOCK_LAYER:
        *n = N_SPECS(LAYER_SPECS);
        return LAYER_SPECS;
    case MODEL_BLOCK_HEAD:
        break;
    }
    *n = N_SPECS(HEAD_SPECS);
    return HEAD_SPECS;
}

static int64_t dim_value(const model_config *c, enum dim d)
{
    switch (d) {
    case D_ONE:
        return 1;
    case D_HIDDEN:
        return c->hidden;
    case D_Q:
        return c->n_heads * c->head_dim;
    case D_KV:
        return c->n_kv_heads * c->head_dim;
    case D_INTER:
        return c->intermediate;
    case D_VOCAB:
        return c->vocab;
    }
    return 0;
}

static int spec_present(const model_config *c, const struct tensor_spec *s)
{
    switch (s->need) {
    case NEED_ALWAYS:
        return 1;
    case NEED_QKV_BIAS:
        return c->qkv_bias;
    case NEED_O_BIAS:
        return c->o_bias;
    case NEED_UNTIED:
        return !c->tie_embeddings;
    }
    return 0;
}

static void spec_name(const struct tensor_spec *s, model_block_kind kind, int b, char *buf,
                      size_t len)
{
    if (kind == MODEL_BLOCK_LAYER)
        snprintf(buf, len, "model.layers.%d.%s", b - 1, s->suffix);
    else
        snprintf(buf, len, "%s", s->suffix);
}

int model_block_layout(const model_config *c, int b, dt_type compute, int n_gslots,
                       lb_layout *out, rt_err *err)
{
    if (b < 0 || b >= model_n_blocks(c))
        return err_set(err, -EINVAL, "block %d out of range (model has %d blocks)", b,
                       model_n_blocks(c));
    int rc = lb_layout_init(out, b, compute, n_gslots, err);
    if (rc < 0)
        return rc;
    model_block_kind kind = model_block_kind_of(c, b);
    size_t n;
    const struct tensor_spec *specs = specs_of(kind, &n);
    for (size_t i = 0; i < n; i++) {
        if (!spec_present(c, &specs[i]))
            continue;
        char name[LB_NAME_LEN];
        spec_name(&specs[i], kind, b, name, sizeof name);
        int64_t shape[2] = {dim_value(c, specs[i].d0), dim_value(c, specs[i].d1)};
        int ndim = specs[i].d1 == D_ONE ? 1 : 2;
        if ((rc = lb_layout_add(out, name, ndim, shape, err)) < 0)
            return rc;
    }
    lb_layout_finish(out);
    return 0;
}

uint64_t model_n_params(const model_config *c)
{
    uint64_t total = 0;
    for (int b = 0; b < model_n_blocks(c); b++) {
        model_block_kind kind = model_block_kind_of(c, b);
        size_t n;
        const struct tensor_spec *specs = specs_of(kind, &n);
        for (size_t i = 0; i < n; i++)
            if (spec_present(c, &specs[i]))
                total += (uint64_t)dim_value(c, specs[i].d0) * (uint64_t)dim_value(c, specs[i].d1);
    }
    return total;
}

int model_block_bind(const model_config *c, const lb_layout *l, void *base, lb_section sec,
                     void *ptrs, rt_err *err)
{
    model_block_kind kind = model_block_kind_of(c, l->index);
    size_t n;
    const struct tensor_spec *specs = specs_of(kind, &n);
    int fp32 = sec == LB_SEC_W || sec >= LB_SEC_G0 ? l->compute == DT_F32 : 1;
    if (!fp32)
        return err_set(err, -EINVAL, "block %d: binding fp32 pointers to a %s section", l->index,
                       dt_name(l->compute));
    for (size_t i = 0; i < n; i++) {
        char name[LB_NAME_LEN];
        spec_name(&specs[i], kind, l->index, name, sizeof name);
        int t = lb_layout_find(l, name);
        float **field = (float **)((char *)ptrs + specs[i].field);
        if (t < 0) {
            if (spec_present(c, &specs[i]))
                return err_set(err, -ENOENT, "block %d: layout lacks tensor %s", l->index, name);
            *field = NULL;
            continue;
        }
        *field = lb_tensor_ptr(l, base, sec, t);
    }
    return 0;
}

uint64_t model_config_hash(const model_config *c)
{
    /* Over a canonical text of every field, so the hash does not depend on
     * struct padding or on how config.json spelled the values. */
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "%s|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%a|%a|%d|%a|%a|%a|%lld|%d|%d|%d",
                     c->model_type, (long long)c->hidden, (long long)c->intermediate,
                     (long long)c->n_layers, (long long)c->n_heads, (long long)c->n_kv_heads,
                     (long long)c->head_dim, (long long)c->vocab, (long long)c->max_pos,
                     (long long)c->sliding_window, c->rms_eps, c->rope_theta, (int)c->rope_type,
                     c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                     (long long)c->rope_orig_max_pos, (int)c->tie_embeddings, (int)c->qkv_bias,
                     (int)c->o_bias);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n && i < (int)sizeof text; i++)
        h = (h ^ (unsigned char)text[i]) * 0x100000001b3ull;
    return h;
}

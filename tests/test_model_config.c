/*
 * test_model_config: config.json parsing (gpu/model.h model_config_parse,
 * model_config_load, model_config_save) and the RoPE inverse frequencies.
 *
 * Defaults are those of the Transformers config classes (LlamaConfig,
 * MistralConfig, Qwen2Config). Inverse frequencies are compared with a
 * reference written here from Transformers' modeling_rope_utils
 * (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
 * _compute_llama3_parameters), phrased as that code is: every candidate
 * computed, then selected with masks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/model.h"

#define NAME "configs/cfg.json"

/* Required keys of a small model: hidden 64, 4 heads -> head_dim 16. */
#define DIMS                                                                               \
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "          \
    "\"num_attention_heads\": 4, \"vocab_size\": 100"

/* head_dim 128 and Llama 3.1's rope: all three llama3 bands are populated. */
/* Mistral and Qwen2 default num_key_value_heads to 8 and 32 (their
 * Transformers classes), which 4 heads cannot hold: give it explicitly. */
#define DIMS_KV DIMS ", \"num_key_value_heads\": 4"

#define DIMS128                                                                            \
    "\"hidden_size\": 512, \"intermediate_size\": 1024, \"num_hidden_layers\": 2, "        \
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 100"

static void parse_or_fail(const char *json, model_config *c)
{
    rt_err err = {{0}};
    int rc = model_config_parse(json, NAME, c, &err);
    if (rc != 0)
        fail_msg("model_config_parse failed (%d): %s\n%s", rc, err.msg, json);
}

static int near(double got, double want, double rel)
{
    return fabs(got - want) <= rel * fabs(want);
}

/* ---- defaults ---------------------------------------------------------------- */

static void test_llama_defaults(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail("{\"model_type\": \"llama\", " DIMS "}", &c);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden, 64);
    assert_int_equal(c.intermediate, 128);
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 4); /* LlamaConfig: num_key_value_heads=None -> heads */
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.vocab, 100);
    assert_int_equal(c.max_pos, 2048);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.rms_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope_type, MODEL_ROPE_DEFAULT);
    assert_true(c.rope_factor == 1.0);
    assert_false(c.tie_embeddings);
    assert_false(c.qkv_bias);
    assert_false(c.o_bias);
    assert_true(c.init_range == 0.02);

    /* From architectures alone. */
    parse_or_fail("{\"architectures\": [\"LlamaForCausalLM\"], " DIMS "}", &c);
    assert_string_equal(c.model_type, "llama");
    /* Explicit values override the defaults. */
    parse_or_fail("{\"model_type\": \"llama\", \"num_key_value_heads\": 2, "
                  "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-5, "
                  "\"rope_theta\": 500000.0, \"initializer_range\": 0.01, "
                  "\"tie_word_embeddings\": true, \"hidden_act\": \"silu\", "
                  "\"mlp_bias\": false, \"attention_bias\": false, " DIMS "}",
                  &c);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.max_pos, 4096);
    assert_true(c.rms_eps == 1e-5);
    assert_true(c.rope_theta == 500000.0);
    assert_true(c.init_range == 0.01);
    assert_true(c.tie_embeddings);
    /* null means absent, as in Transformers' from_dict (None -> default). */
    parse_or_fail("{\"model_type\": \"llama\", \"num_key_value_heads\": null, "
                  "\"rope_scaling\": null, \"head_dim\": null, " DIMS "}",
                  &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.rope_type, MODEL_ROPE_DEFAULT);
}

static void test_mistral_defaults(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail("{\"model_type\": \"mistral\", \"num_key_value_heads\": 2, " DIMS "}", &c);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.max_pos, 4096 * 32);
    assert_true(c.rms_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope_type, MODEL_ROPE_DEFAULT);
    assert_true(c.init_range == 0.02);
    assert_false(c.tie_embeddings);
    assert_false(c.qkv_bias);
    assert_false(c.o_bias);

    /* No model_type: the architecture comes from "architectures". */
    parse_or_fail("{\"architectures\": [\"MistralForCausalLM\"], " DIMS_KV "}", &c);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.max_pos, 4096 * 32);
    assert_false(c.qkv_bias);
}

/* Without num_key_value_heads, Mistral has 8 and Qwen2 32 (Transformers'
 * MistralConfig and Qwen2Config), Llama as many as attention heads. */
static void test_kv_heads_defaults(void **state)
{
    (void)state;
    model_config c;
    const char *dims = "\"hidden_size\": 2048, \"intermediate_size\": 128, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 32, \"vocab_size\": 100";
    char json[512];
    snprintf(json, sizeof json, "{\"model_type\": \"mistral\", %s}", dims);
    parse_or_fail(json, &c);
    assert_int_equal(c.n_kv_heads, 8);
    snprintf(json, sizeof json, "{\"model_type\": \"qwen2\", %s}", dims);
    parse_or_fail(json, &c);
    assert_int_equal(c.n_kv_heads, 32);
    snprintf(json, sizeof json, "{\"model_type\": \"llama\", %s}", dims);
    parse_or_fail(json, &c);
    assert_int_equal(c.n_kv_heads, 32);
}

static void test_qwen2_defaults(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail("{\"model_type\": \"qwen2\", \"num_key_value_heads\": 2, " DIMS "}", &c);
    assert_string_equal(c.model_type, "qwen2");
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.max_pos, 32768);
    assert_true(c.rms_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_true(c.init_range == 0.02);
    assert_false(c.tie_embeddings);
    assert_true(c.qkv_bias);
    assert_false(c.o_bias);
    assert_int_equal(c.sliding_window, 0);

    parse_or_fail("{\"architectures\": [\"Qwen2ForCausalLM\"], " DIMS_KV "}", &c);
    assert_string_equal(c.model_type, "qwen2");
    assert_true(c.qkv_bias);
    assert_false(c.o_bias);
}

static void test_head_dim(void **state)
{
    (void)state;
    model_config c;
    /* head_dim 24 != 64 / 4 */
    parse_or_fail("{\"model_type\": \"llama\", \"head_dim\": 24, " DIMS "}", &c);
    assert_int_equal(c.head_dim, 24);
    assert_int_equal(c.hidden, 64);
    /* hidden not a multiple of heads is fine when head_dim is given */
    parse_or_fail("{\"model_type\": \"mistral\", \"hidden_size\": 60, \"intermediate_size\": 8, "
                  "\"num_hidden_layers\": 1, \"num_attention_heads\": 8, \"head_dim\": 32, "
                  "\"vocab_size\": 10}",
                  &c);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.n_kv_heads, 8);
}

/* ---- rope -------------------------------------------------------------------------- */

enum { REF_DEFAULT, REF_LINEAR, REF_LLAMA3 };

struct bands {
    int low, mid, high; /* llama3: frequencies divided, blended, kept */
};

static void ref_inv_freq(int type, double theta, int64_t dim, double factor, double low_ff,
                         double high_ff, double old_ctx, double *out, struct bands *bands)
{
    memset(bands, 0, sizeof *bands);
    for (int64_t i = 0; i < dim / 2; i++) {
        /* base ** (arange(0, dim, 2) / dim) */
        double inv = 1.0 / pow(theta, (double)(2 * i) / (double)dim);
        if (type == REF_LINEAR) {
            out[i] = inv / factor;
            continue;
        }
        if (type == REF_DEFAULT) {
            out[i] = inv;
            continue;
        }
        double low_freq_wavelen = old_ctx / low_ff;
        double high_freq_wavelen = old_ctx / high_ff;
        double wavelen = 2 * M_PI / inv;
        double inv_llama = wavelen > low_freq_wavelen ? inv / factor : inv;
        double smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff);
        double smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama;
        int is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        out[i] = is_medium ? smoothed : inv_llama;
        if (is_medium)
            bands->mid++;
        else if (wavelen > low_freq_wavelen)
            bands->low++;
        else
            bands->high++;
    }
}

static void expect_inv_freq(const model_config *c, const double *want)
{
    double got[512];
    assert_true(c->head_dim / 2 <= 512);
    model_rope_inv_freq(c, got);
    for (int64_t i = 0; i < c->head_dim / 2; i++)
        if (!near(got[i], want[i], 1e-12))
            fail_msg("inv_freq[%lld] = %.17g, expected %.17g", (long long)i, got[i], want[i]);
}

static void test_rope_default(void **state)
{
    (void)state;
    model_config c;
    double want[256];
    struct bands bd;
    parse_or_fail("{\"model_type\": \"llama\", " DIMS "}", &c);
    ref_inv_freq(REF_DEFAULT, 10000.0, 16, 1, 0, 0, 0, want, &bd);
    expect_inv_freq(&c, want);
    /* Two values by hand: 10000^0 and 10000^(-2/16) = 10^-0.5. */
    double got[8];
    model_rope_inv_freq(&c, got);
    assert_true(got[0] == 1.0);
    assert_true(near(got[1], 0.31622776601683794, 1e-15));

    parse_or_fail("{\"model_type\": \"llama\", \"rope_theta\": 500000.0, " DIMS128 "}", &c);
    assert_int_equal(c.head_dim, 128);
    ref_inv_freq(REF_DEFAULT, 500000.0, 128, 1, 0, 0, 0, want, &bd);
    expect_inv_freq(&c, want);

    /* An explicit default type changes nothing. */
    parse_or_fail("{\"model_type\": \"llama\", \"rope_theta\": 500000.0, "
                  "\"rope_scaling\": {\"rope_type\": \"default\"}, " DIMS128 "}",
                  &c);
    assert_int_equal(c.rope_type, MODEL_ROPE_DEFAULT);
    expect_inv_freq(&c, want);
}

static void test_rope_linear(void **state)
{
    (void)state;
    const char *const jsons[] = {
        "{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}, "
        DIMS128 "}",
        "{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\", "
        "\"factor\": 4}, " DIMS128 "}",
        "{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"linear\", "
        "\"rope_theta\": 10000.0, \"factor\": 4.0}, " DIMS128 "}",
    };
    double want[64];
    struct bands bd;
    ref_inv_freq(REF_LINEAR, 10000.0, 128, 4.0, 0, 0, 0, want, &bd);
    for (size_t k = 0; k < sizeof jsons / sizeof jsons[0]; k++) {
        model_config c;
        parse_or_fail(jsons[k], &c);
        assert_int_equal(c.rope_type, MODEL_ROPE_LINEAR);
        assert_true(c.rope_factor == 4.0);
        assert_true(c.rope_theta == 10000.0);
        expect_inv_freq(&c, want);
    }
}

#define LLAMA31_ROPE                                                                      \
    "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "              \
    "\"original_max_position_embeddings\": 8192"

static void test_rope_llama3(void **state)
{
    (void)state;
    const char *const jsons[] = {
        /* Llama 3.1's config.json */
        "{\"model_type\": \"llama\", \"rope_theta\": 500000.0, \"rope_scaling\": "
        "{\"rope_type\": \"llama3\", " LLAMA31_ROPE "}, " DIMS128 "}",
        /* older spelling of the type key */
        "{\"model_type\": \"llama\", \"rope_theta\": 500000.0, \"rope_scaling\": "
        "{\"type\": \"llama3\", " LLAMA31_ROPE "}, " DIMS128 "}",
        /* Transformers 5: theta inside rope_parameters, none at top level */
        "{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"llama3\", "
        "\"rope_theta\": 500000.0, " LLAMA31_ROPE "}, " DIMS128 "}",
    };
    double want[64];
    struct bands bd;
    ref_inv_freq(REF_LLAMA3, 500000.0, 128, 8.0, 1.0, 4.0, 8192.0, want, &bd);
    assert_true(bd.low > 0 && bd.mid > 0 && bd.high > 0);
    for (size_t k = 0; k < sizeof jsons / sizeof jsons[0]; k++) {
        model_config c;
        parse_or_fail(jsons[k], &c);
        assert_int_equal(c.rope_type, MODEL_ROPE_LLAMA3);
        assert_true(c.rope_theta == 500000.0);
        assert_true(c.rope_factor == 8.0);
        assert_true(c.rope_low_freq_factor == 1.0);
        assert_true(c.rope_high_freq_factor == 4.0);
        assert_int_equal(c.rope_orig_max_pos, 8192);
        expect_inv_freq(&c, want);
    }

    /* Llama 3.2's factors (32, 1, 4, 8192) and a small head. */
    model_config c;
    parse_or_fail("{\"model_type\": \"llama\", \"rope_theta\": 500000.0, \"rope_scaling\": "
                  "{\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, "
                  "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}, "
                  DIMS128 "}",
                  &c);
    ref_inv_freq(REF_LLAMA3, 500000.0, 128, 32.0, 1.0, 4.0, 8192.0, want, &bd);
    expect_inv_freq(&c, want);
    parse_or_fail("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", "
                  "\"factor\": 2.0, \"low_freq_factor\": 2.0, \"high_freq_factor\": 8.0, "
                  "\"original_max_position_embeddings\": 64}, " DIMS "}",
                  &c);
    ref_inv_freq(REF_LLAMA3, 10000.0, 16, 2.0, 2.0, 8.0, 64.0, want, &bd);
    assert_true(bd.low > 0 && bd.mid > 0 && bd.high > 0);
    expect_inv_freq(&c, want);

    /* rope_parameters with the default type only carries theta. */
    parse_or_fail("{\"model_type\": \"qwen2\", \"rope_parameters\": {\"rope_type\": \"default\", "
                  "\"rope_theta\": 1000000.0}, " DIMS_KV "}",
                  &c);
    assert_int_equal(c.rope_type, MODEL_ROPE_DEFAULT);
    assert_true(c.rope_theta == 1000000.0);
    ref_inv_freq(REF_DEFAULT, 1000000.0, 16, 1, 0, 0, 0, want, &bd);
    expect_inv_freq(&c, want);
}

/* ---- sliding window ---------------------------------------------------------------- */

static void test_sliding_window(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail("{\"model_type\": \"mistral\", \"sliding_window\": 4096, " DIMS_KV "}", &c);
    assert_int_equal(c.sliding_window, 4096);
    parse_or_fail("{\"model_type\": \"mistral\", \"sliding_window\": null, " DIMS_KV "}", &c);
    assert_int_equal(c.sliding_window, 0);
    parse_or_fail("{\"model_type\": \"qwen2\", \"sliding_window\": 4096, " DIMS_KV "}", &c);
    assert_int_equal(c.sliding_window, 0);
    parse_or_fail("{\"model_type\": \"qwen2\", \"sliding_window\": 4096, "
                  "\"use_sliding_window\": false, " DIMS_KV "}",
                  &c);
    assert_int_equal(c.sliding_window, 0);
    parse_or_fail("{\"model_type\": \"qwen2\", \"sliding_window\": 4096, "
                  "\"use_sliding_window\": true, " DIMS_KV "}",
                  &c);
    assert_int_equal(c.sliding_window, 4096);
}

/* MistralConfig(sliding_window=4096) and Qwen2Config(sliding_window=4096):
 * a config.json without the key means a 4096-token window in Transformers
 * (for Qwen2 when use_sliding_window is true); only an explicit null means
 * none. gpu/model.c reads an absent key as "no window". */
static void test_sliding_window_absent_is_4096(void **state)
{
    (void)state;
    model_config m, q;
    parse_or_fail("{\"model_type\": \"mistral\", " DIMS_KV "}", &m);
    parse_or_fail("{\"model_type\": \"qwen2\", \"use_sliding_window\": true, " DIMS_KV "}", &q);
    if (m.sliding_window != 4096 || q.sliding_window != 4096)
        fail_msg("absent sliding_window: mistral %lld, qwen2 (use_sliding_window) %lld; "
                 "Transformers uses 4096 for both",
                 (long long)m.sliding_window, (long long)q.sliding_window);
}

/* ---- errors ------------------------------------------------------------------------ */

struct bad {
    const char *json;
    const char *want[2]; /* substrings of the message besides the file name */
};

static void test_errors(void **state)
{
    (void)state;
    const struct bad bad[] = {
        {"{\"model_type\": \"llama\", " DIMS, {"JSON", NULL}},
        {"", {"JSON", NULL}},
        {"[{\"model_type\": \"llama\"}]", {"object", NULL}},
        {"42", {"{", NULL}}, /* jansson refuses a scalar before we see it */
        {"{\"model_type\": \"llama\", \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
         "\"num_attention_heads\": 4, \"vocab_size\": 100}",
         {"hidden_size", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
         {"vocab_size", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100.5}",
         {"vocab_size", "integer"}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": \"100\"}",
         {"vocab_size", "integer"}},
        {"{\"model_type\": \"gpt2\", " DIMS "}", {"gpt2", NULL}},
        {"{\"architectures\": [\"GPT2LMHeadModel\"], " DIMS "}", {"GPT2LMHeadModel", NULL}},
        {"{" DIMS "}", {"model_type", NULL}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\", "
         "\"factor\": 4.0}, " DIMS "}",
         {"yarn", NULL}},
        {"{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"yarn\", "
         "\"rope_theta\": 10000.0, \"factor\": 4.0}, " DIMS "}",
         {"yarn", "rope_parameters"}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", "
         "\"factor\": 8.0, \"high_freq_factor\": 4.0, "
         "\"original_max_position_embeddings\": 8192}, " DIMS "}",
         {"low_freq_factor", NULL}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", "
         "\"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
         "\"original_max_position_embeddings\": 8192}, " DIMS "}",
         {"high_freq_factor", NULL}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\"}, " DIMS "}",
         {"factor", NULL}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\", "
         "\"factor\": 0}, " DIMS "}",
         {"factor", NULL}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": \"linear\", " DIMS "}",
         {"rope_scaling", NULL}},
        {"{\"model_type\": \"llama\", \"rope_theta\": 0, " DIMS "}", {"rope_theta", NULL}},
        {"{\"model_type\": \"llama\", \"rope_theta\": \"big\", " DIMS "}", {"rope_theta", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 6, \"num_key_value_heads\": 4, "
         "\"head_dim\": 16, \"vocab_size\": 100}",
         {"num_attention_heads", "num_key_value_heads"}},
        {"{\"model_type\": \"llama\", \"head_dim\": 15, " DIMS "}", {"head_dim", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 60, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
         {"head_dim", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"vocab_size\": 100}",
         {"num_attention_heads", "head_dim"}},
        {"{\"model_type\": \"llama\", \"head_dim\": -16, " DIMS "}", {"head_dim", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", " DIMS "}", {"hidden_act", NULL}},
        {"{\"model_type\": \"llama\", \"mlp_bias\": true, " DIMS "}", {"mlp_bias", NULL}},
        {"{\"model_type\": \"llama\", \"attention_bias\": 1, " DIMS "}",
         {"attention_bias", NULL}},
        {"{\"model_type\": \"llama\", \"tie_word_embeddings\": \"yes\", " DIMS "}",
         {"tie_word_embeddings", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": -64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
         {"hidden_size", "positive"}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 0, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
         {"intermediate_size", "positive"}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": -2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
         {"num_hidden_layers", "positive"}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": -100}",
         {"vocab_size", "positive"}},
        {"{\"model_type\": \"llama\", \"num_key_value_heads\": -4, " DIMS "}",
         {"num_key_value_heads", "positive"}},
        {"{\"model_type\": \"llama\", \"max_position_embeddings\": -1, " DIMS "}",
         {"max_position_embeddings", "positive"}},
        {"{\"model_type\": \"llama\", \"rms_norm_eps\": -1e-6, " DIMS "}",
         {"rms_norm_eps", NULL}},
        {"{\"model_type\": \"llama\", \"hidden_size\": 64, \"hidden_size\": 64, "
         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
         "\"vocab_size\": 100}",
         {"duplicate", "hidden_size"}},
        {"{\"model_type\": \"llama\", \"model_type\": \"qwen2\", " DIMS "}",
         {"duplicate", "model_type"}},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\", "
         "\"factor\": 2.0, \"factor\": 4.0}, " DIMS "}",
         {"duplicate", "factor"}},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        model_config c;
        rt_err err = {{0}};
        int rc = model_config_parse(bad[k].json, NAME, &c, &err);
        if (rc >= 0)
            fail_msg("case %zu accepted: %s", k, bad[k].json);
        if (rc != -EINVAL)
            fail_msg("case %zu: rc %d, expected -EINVAL", k, rc);
        if (strstr(err.msg, NAME) == NULL)
            fail_msg("case %zu: message does not name the file: %s", k, err.msg);
        for (int w = 0; w < 2; w++)
            if (bad[k].want[w] != NULL && strstr(err.msg, bad[k].want[w]) == NULL)
                fail_msg("case %zu: message lacks \"%s\": %s", k, bad[k].want[w], err.msg);
        if (strchr(err.msg, '\n') != NULL)
            fail_msg("case %zu: message is more than one line: %s", k, err.msg);
        /* A NULL err is allowed and gives the same code. */
        assert_int_equal(model_config_parse(bad[k].json, NAME, &c, NULL), rc);
    }
}

/* ---- save / load -------------------------------------------------------------------- */

static void expect_same(const model_config *a, const model_config *b)
{
#define EQ_I(f)                                                                            \
    if (a->f != b->f)                                                                      \
    fail_msg(#f ": %lld != %lld", (long long)a->f, (long long)b->f)
#define EQ_D(f)                                                                            \
    if (a->f != b->f)                                                                      \
    fail_msg(#f ": %.17g != %.17g", a->f, b->f)
    assert_string_equal(a->model_type, b->model_type);
    EQ_I(hidden);
    EQ_I(intermediate);
    EQ_I(n_layers);
    EQ_I(n_heads);
    EQ_I(n_kv_heads);
    EQ_I(head_dim);
    EQ_I(vocab);
    EQ_I(max_pos);
    EQ_I(sliding_window);
    EQ_D(rms_eps);
    EQ_D(rope_theta);
    EQ_I(rope_type);
    EQ_D(rope_factor);
    EQ_D(rope_low_freq_factor);
    EQ_D(rope_high_freq_factor);
    EQ_I(rope_orig_max_pos);
    EQ_I(tie_embeddings);
    EQ_I(qkv_bias);
    EQ_I(o_bias);
    EQ_D(init_range);
#undef EQ_I
#undef EQ_D
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void round_trip(const char *dir, const char *json, const char *arch)
{
    model_config a, b, c;
    rt_err err = {{0}};
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/config.json", dir);
    snprintf(p2, sizeof p2, "%s/again.json", dir);
    parse_or_fail(json, &a);
    if (model_config_save(&a, p1, &err) != 0)
        fail_msg("save: %s", err.msg);
    if (model_config_load(p1, &b, &err) != 0)
        fail_msg("load: %s", err.msg);
    expect_same(&a, &b);
    /* Saving what was loaded writes the same file. */
    assert_int_equal(model_config_save(&b, p2, &err), 0);
    assert_int_equal(model_config_load(p2, &c, &err), 0);
    expect_same(&a, &c);
    char *t1 = read_all(p1), *t2 = read_all(p2);
    assert_string_equal(t1, t2);
    assert_non_null(strstr(t1, arch));
    /* The inverse frequencies follow. */
    double fa[256], fb[256];
    model_rope_inv_freq(&a, fa);
    model_rope_inv_freq(&b, fb);
    assert_memory_equal(fa, fb, sizeof(double) * (size_t)(a.head_dim / 2));
    free(t1);
    free(t2);
    assert_int_equal(unlink(p1), 0);
    assert_int_equal(unlink(p2), 0);
}

static void test_save_load(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/test_model_config.XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));

    /* Llama 3.1 style, with values that need all 17 digits. */
    round_trip(dir,
               "{\"model_type\": \"llama\", \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-05, "
               "\"initializer_range\": 0.0123456789012345, \"max_position_embeddings\": 131072, "
               "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
               "\"low_freq_factor\": 1.1, \"high_freq_factor\": 4.3, "
               "\"original_max_position_embeddings\": 8192}, " DIMS128 "}",
               "LlamaForCausalLM");
    /* Qwen2, tied, with a sliding window in use and a large theta. */
    round_trip(dir,
               "{\"model_type\": \"qwen2\", \"tie_word_embeddings\": true, "
               "\"rope_theta\": 1000000.0, \"use_sliding_window\": true, "
               "\"sliding_window\": 131072, \"num_key_value_heads\": 2, " DIMS "}",
               "Qwen2ForCausalLM");
    /* Llama with attention biases, linear rope and an explicit head_dim. */
    round_trip(dir,
               "{\"model_type\": \"llama\", \"attention_bias\": true, \"head_dim\": 24, "
               "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.5}, " DIMS "}",
               "LlamaForCausalLM");
    /* Mistral with a window, found by architectures. */
    round_trip(dir,
               "{\"architectures\": [\"MistralForCausalLM\"], \"sliding_window\": 4096, "
               "\"num_key_value_heads\": 1, " DIMS "}",
               "MistralForCausalLM");
    /* Mistral and Qwen2 without a window: saved as null, not dropped (an
     * absent key would read back as the 4096 default). */
    round_trip(dir,
               "{\"model_type\": \"mistral\", \"sliding_window\": null, " DIMS_KV "}",
               "MistralForCausalLM");
    round_trip(dir,
               "{\"model_type\": \"qwen2\", \"use_sliding_window\": false, " DIMS_KV "}",
               "Qwen2ForCausalLM");
    /* Transformers 5 rope_parameters. */
    round_trip(dir,
               "{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"llama3\", "
               "\"rope_theta\": 500000.0, " LLAMA31_ROPE "}, " DIMS128 "}",
               "LlamaForCausalLM");
    assert_int_equal(rmdir(dir), 0);
}

static void test_load_errors(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    model_config c;
    rt_err err = {{0}};
    snprintf(dir, sizeof dir, "%s/test_model_config.XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));

    snprintf(path, sizeof path, "%s/no-such-config.json", dir);
    assert_int_equal(model_config_load(path, &c, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));

    snprintf(path, sizeof path, "%s/broken.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"model_type\": \"llama\",", f);
    fclose(f);
    memset(&err, 0, sizeof err);
    assert_int_equal(model_config_load(path, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "JSON"));

    /* Parse errors from a loaded file name the file too. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"model_type\": \"gpt2\", " DIMS "}", f);
    fclose(f);
    memset(&err, 0, sizeof err);
    assert_int_equal(model_config_load(path, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "gpt2"));
    assert_int_equal(unlink(path), 0);

    /* A directory is not a config file. */
    memset(&err, 0, sizeof err);
    assert_true(model_config_load(dir, &c, &err) < 0);
    assert_non_null(strstr(err.msg, dir));

    /* Saving into a missing directory fails and names the path. */
    snprintf(path, sizeof path, "%s/missing/config.json", dir);
    parse_or_fail("{\"model_type\": \"llama\", " DIMS "}", &c);
    memset(&err, 0, sizeof err);
    assert_true(model_config_save(&c, path, &err) < 0);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_defaults),
        cmocka_unit_test(test_mistral_defaults),
        cmocka_unit_test(test_qwen2_defaults),
        cmocka_unit_test(test_kv_heads_defaults),
        cmocka_unit_test(test_head_dim),
        cmocka_unit_test(test_rope_default),
        cmocka_unit_test(test_rope_linear),
        cmocka_unit_test(test_rope_llama3),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_sliding_window_absent_is_4096),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

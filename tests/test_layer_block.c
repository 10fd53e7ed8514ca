/*
 * test_layer_block: the byte layout of layer blocks (storage/layer_block.h)
 * and the model's division into blocks (gpu/model.h: model_block_layout,
 * model_block_kind_of, model_n_params, model_block_bind).
 *
 * Layout checks are stated as invariants (alignment, no overlap, everything
 * inside its section and the block) and checked for several configurations,
 * dtypes and slot counts, plus a few hand-placed layouts with exact offsets.
 * Tensor names and shapes are compared with a table written here from the
 * Hugging Face modeling code, and parameter counts with published totals
 * (Llama-2-7B, TinyLlama-1.1B, Qwen2-0.5B) and one count done by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/model.h"
#include "storage/layer_block.h"

#define MIB (1024u * 1024u)

/* ---- configurations -------------------------------------------------------- */

/* Small llama: head_dim (24) differs from hidden/heads (16), so q = 96 and
 * kv = 48 are told apart from hidden = 64; vocab 300, intermediate 160. */
#define SMALL_DIMS                                                                          \
    "\"hidden_size\": 64, \"intermediate_size\": 160, \"num_hidden_layers\": 3, "           \
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 24, "             \
    "\"vocab_size\": 300"

static const char *const LLAMA_SMALL = "{\"model_type\": \"llama\", " SMALL_DIMS "}";
static const char *const LLAMA_SMALL_BIAS =
    "{\"model_type\": \"llama\", \"attention_bias\": true, " SMALL_DIMS "}";
static const char *const LLAMA_SMALL_TIED =
    "{\"model_type\": \"llama\", \"tie_word_embeddings\": true, " SMALL_DIMS "}";
static const char *const QWEN2_SMALL = "{\"model_type\": \"qwen2\", " SMALL_DIMS "}";
static const char *const QWEN2_SMALL_TIED =
    "{\"model_type\": \"qwen2\", \"tie_word_embeddings\": true, " SMALL_DIMS "}";
static const char *const MISTRAL_SMALL = "{\"model_type\": \"mistral\", " SMALL_DIMS "}";

/* Published configurations (config.json of the Hugging Face checkpoints). */
static const char *const LLAMA2_7B =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
    "\"hidden_size\": 4096, \"intermediate_size\": 11008, \"num_hidden_layers\": 32, "
    "\"num_attention_heads\": 32, \"num_key_value_heads\": 32, \"vocab_size\": 32000, "
    "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": false}";
static const char *const TINYLLAMA =
    "{\"model_type\": \"llama\", \"hidden_size\": 2048, \"intermediate_size\": 5632, "
    "\"num_hidden_layers\": 22, \"num_attention_heads\": 32, \"num_key_value_heads\": 4, "
    "\"vocab_size\": 32000, \"rms_norm_eps\": 1e-05}";
static const char *const QWEN2_05B =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
    "\"hidden_size\": 896, \"intermediate_size\": 4864, \"num_hidden_layers\": 24, "
    "\"num_attention_heads\": 14, \"num_key_value_heads\": 2, \"vocab_size\": 151936, "
    "\"max_position_embeddings\": 32768, \"rope_theta\": 1000000.0, "
    "\"tie_word_embeddings\": true, \"use_sliding_window\": false, \"sliding_window\": 32768}";

static void parse_or_fail(const char *json, model_config *c)
{
    rt_err err = {{0}};
    int rc = model_config_parse(json, "cfg.json", c, &err);
    if (rc != 0)
        fail_msg("model_config_parse failed (%d): %s", rc, err.msg);
}

/* ---- layout invariants ------------------------------------------------------- */

static int overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static uint64_t esize(dt_type t)
{
    return t == DT_F32 ? 4 : 2; /* F32, BF16, F16 */
}

/* Size of section s in l, 0 when l has no such section. */
static uint64_t section_size(const lb_layout *l, int s)
{
    if (s == LB_SEC_W)
        return l->w_bytes;
    if (s >= LB_SEC_G0)
        return s - LB_SEC_G0 < l->n_gslots ? l->w_bytes : 0;
    if (s == LB_SEC_MASTER)
        return l->compute == DT_F32 ? 0 : l->f32_bytes;
    return l->f32_bytes; /* accum, m, v */
}

static void check_layout(const lb_layout *l)
{
    const uint64_t es = esize(l->compute);
    assert_true(l->n_tensors >= 1 && l->n_tensors <= LB_MAX_TENSORS);
    assert_int_equal(l->w_bytes % LB_ALIGN_TENSOR, 0);
    assert_int_equal(l->f32_bytes % LB_ALIGN_TENSOR, 0);

    for (int i = 0; i < l->n_tensors; i++) {
        const lb_tensor *t = &l->t[i];
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (uint64_t)t->shape[d];
        assert_int_equal(t->numel, numel);
        if (t->offset % LB_ALIGN_TENSOR != 0 || t->offset_f32 % LB_ALIGN_TENSOR != 0)
            fail_msg("block %d tensor %s: offset %llu / offset_f32 %llu not 4 KiB aligned",
                     l->index, t->name, (unsigned long long)t->offset,
                     (unsigned long long)t->offset_f32);
        uint64_t wb = t->numel * es, fb = t->numel * 4;
        assert_int_equal(lb_tensor_bytes(l, i, LB_SEC_W), wb);
        assert_int_equal(lb_tensor_bytes(l, i, LB_SEC_G0), wb);
        assert_int_equal(lb_tensor_bytes(l, i, LB_SEC_ACCUM), fb);
        assert_int_equal(lb_tensor_bytes(l, i, LB_SEC_MASTER), fb);
        if (t->offset + wb > l->w_bytes)
            fail_msg("block %d tensor %s ends at %llu past w_bytes %llu", l->index, t->name,
                     (unsigned long long)(t->offset + wb), (unsigned long long)l->w_bytes);
        if (t->offset_f32 + fb > l->f32_bytes)
            fail_msg("block %d tensor %s ends at %llu past f32_bytes %llu", l->index, t->name,
                     (unsigned long long)(t->offset_f32 + fb), (unsigned long long)l->f32_bytes);
        for (int j = 0; j < i; j++) {
            const lb_tensor *u = &l->t[j];
            if (overlap(t->offset, wb, u->offset, u->numel * es))
                fail_msg("block %d: %s and %s overlap in W", l->index, t->name, u->name);
            if (overlap(t->offset_f32, fb, u->offset_f32, u->numel * 4))
                fail_msg("block %d: %s and %s overlap in fp32 sections", l->index, t->name,
                         u->name);
        }
        if (l->compute == DT_F32)
            assert_int_equal(t->offset, t->offset_f32);
    }

    /* Sections: present ones after the header page, aligned, disjoint, inside
     * the block; absent ones at 0. */
    uint64_t end = LB_ALIGN_TENSOR;
    for (int s = 0; s < LB_SEC_MAX; s++) {
        uint64_t size = section_size(l, s);
        if (size == 0) {
            if (l->sec_off[s] != 0)
                fail_msg("block %d: absent section %d has offset %llu", l->index, s,
                         (unsigned long long)l->sec_off[s]);
            continue;
        }
        if (l->sec_off[s] < LB_ALIGN_TENSOR || l->sec_off[s] % LB_ALIGN_TENSOR != 0)
            fail_msg("block %d: section %d at %llu (header page or misaligned)", l->index, s,
                     (unsigned long long)l->sec_off[s]);
        if (l->sec_off[s] + size > l->total_bytes)
            fail_msg("block %d: section %d ends past total_bytes", l->index, s);
        if (l->sec_off[s] + size > end)
            end = l->sec_off[s] + size;
        for (int r = 0; r < s; r++) {
            uint64_t rsize = section_size(l, r);
            if (rsize != 0 && overlap(l->sec_off[s], size, l->sec_off[r], rsize))
                fail_msg("block %d: sections %d and %d overlap", l->index, r, s);
        }
    }
    assert_int_equal(l->total_bytes % LB_ALIGN_BLOCK, 0);
    assert_true(l->total_bytes >= end);
    assert_true(l->total_bytes - end < LB_ALIGN_BLOCK); /* no wasted huge page */

    if (l->compute == DT_F32) {
        assert_int_equal(l->w_bytes, l->f32_bytes);
        assert_int_equal(l->sec_off[LB_SEC_MASTER], 0);
    } else {
        assert_int_not_equal(l->sec_off[LB_SEC_MASTER], 0);
        /* Each tensor: 2n bytes rounded up vs 4n rounded up, so the two
         * sizes differ by less than one 4 KiB page per tensor. */
        uint64_t half = l->f32_bytes / 2, slack = (uint64_t)l->n_tensors * LB_ALIGN_TENSOR;
        assert_true(l->w_bytes + slack > half && l->w_bytes < half + slack);
    }
}

/* ---- lb_layout ----------------------------------------------------------------- */

static void test_gslots_range(void **state)
{
    (void)state;
    const int64_t shape[2] = {300, 7};
    for (int n = 1; n <= 4; n++) {
        lb_layout l;
        rt_err err = {{0}};
        assert_int_equal(lb_layout_init(&l, 5, DT_BF16, n, &err), 0);
        assert_int_equal(lb_layout_add(&l, "a", 2, shape, &err), 0);
        assert_int_equal(lb_layout_add(&l, "b", 1, shape, &err), 0);
        lb_layout_finish(&l);
        assert_int_equal(l.index, 5);
        assert_int_equal(l.n_gslots, n);
        check_layout(&l);
        for (int s = 0; s < 4; s++)
            assert_int_equal(l.sec_off[LB_SEC_G0 + s] != 0, s < n);
    }
    const int bad[] = {0, 5, -1};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        lb_layout l;
        rt_err err = {{0}};
        assert_int_equal(lb_layout_init(&l, 5, DT_BF16, bad[k], &err), -EINVAL);
        assert_non_null(strstr(err.msg, "gradient slots"));
        assert_non_null(strstr(err.msg, "block 5"));

        model_config c;
        parse_or_fail(LLAMA_SMALL, &c);
        memset(&err, 0, sizeof err);
        assert_int_equal(model_block_layout(&c, 1, DT_F32, bad[k], &l, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "gradient slots"));
    }
}

static void test_bad_dtype(void **state)
{
    (void)state;
    lb_layout l;
    rt_err err = {{0}};
    assert_int_equal(lb_layout_init(&l, 0, DT_I32, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "I32"));
}

static void test_max_tensors(void **state)
{
    (void)state;
    lb_layout l;
    rt_err err = {{0}};
    const int64_t shape[1] = {10};
    assert_int_equal(lb_layout_init(&l, 2, DT_F32, 1, &err), 0);
    for (int i = 0; i < LB_MAX_TENSORS; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        assert_int_equal(lb_layout_add(&l, name, 1, shape, &err), 0);
    }
    assert_int_equal(lb_layout_add(&l, "one.too.many", 1, shape, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "one.too.many"));
    assert_int_equal(l.n_tensors, LB_MAX_TENSORS);
    lb_layout_finish(&l);
    check_layout(&l);
    assert_int_equal(lb_layout_find(&l, "t15"), 15);
    assert_int_equal(lb_layout_find(&l, "one.too.many"), -1);
}

static void test_add_rejects(void **state)
{
    (void)state;
    lb_layout l;
    rt_err err = {{0}};
    const int64_t good[5] = {2, 3, 4, 5, 6};
    const int64_t zero[2] = {4, 0};
    const int64_t neg[2] = {-4, 4};
    char longname[LB_NAME_LEN + 8];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(lb_layout_init(&l, 0, DT_F32, 1, &err), 0);
    assert_int_equal(lb_layout_add(&l, "nodims", 0, good, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "nodims"));
    assert_int_equal(lb_layout_add(&l, "fivedims", 5, good, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "fivedims"));
    assert_int_equal(lb_layout_add(&l, "zero", 2, zero, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "zero"));
    assert_int_equal(lb_layout_add(&l, "neg", 2, neg, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "neg"));
    assert_int_equal(lb_layout_add(&l, longname, 1, good, &err), -ENAMETOOLONG);
    assert_int_equal(l.n_tensors, 0);
    assert_int_equal(lb_layout_add(&l, "fourdims", 4, good, &err), 0);
    assert_int_equal(l.t[0].numel, 2 * 3 * 4 * 5);
}

/* Offsets worked out by hand. */
static void test_hand_placed(void **state)
{
    (void)state;
    lb_layout l;
    rt_err err = {{0}};
    const int64_t s1000[1] = {1000}, s1025[1] = {1025}, s2048[1] = {2048}, s3x5[2] = {3, 5};

    /* fp32: 1000 floats = 4000 B -> next at 4096; 1025 floats = 4100 B ->
     * 8192 B; 2048 floats = 8192 B exactly; 15 floats -> 4096. */
    assert_int_equal(lb_layout_init(&l, 7, DT_F32, 2, &err), 0);
    assert_int_equal(lb_layout_add(&l, "a", 1, s1000, &err), 0);
    assert_int_equal(lb_layout_add(&l, "b", 1, s1025, &err), 0);
    assert_int_equal(lb_layout_add(&l, "c", 1, s2048, &err), 0);
    assert_int_equal(lb_layout_add(&l, "d", 2, s3x5, &err), 0);
    lb_layout_finish(&l);
    check_layout(&l);
    assert_int_equal(l.t[0].offset, 0);
    assert_int_equal(l.t[1].offset, 4096);
    assert_int_equal(l.t[2].offset, 12288);
    assert_int_equal(l.t[3].offset, 20480);
    assert_int_equal(l.w_bytes, 24576);
    assert_int_equal(l.f32_bytes, 24576);
    /* header, W, G0, G1, accum, m, v: 4096 + 6 * 24576 = 151552 -> 2 MiB */
    assert_int_equal(l.sec_off[LB_SEC_W], 4096);
    assert_int_equal(l.sec_off[LB_SEC_G0], 4096 + 24576);
    assert_int_equal(l.sec_off[LB_SEC_G0 + 1], 4096 + 2 * 24576);
    assert_int_equal(l.sec_off[LB_SEC_MASTER], 0);
    assert_int_equal(l.total_bytes, 2 * MIB);

    /* bf16: 1000 -> 2000 B -> 4096; 1025 -> 2050 B -> 4096; 2048 -> 4096
     * exactly; 15 -> 4096. fp32 table as above. */
    assert_int_equal(lb_layout_init(&l, 7, DT_BF16, 1, &err), 0);
    assert_int_equal(lb_layout_add(&l, "a", 1, s1000, &err), 0);
    assert_int_equal(lb_layout_add(&l, "b", 1, s1025, &err), 0);
    assert_int_equal(lb_layout_add(&l, "c", 1, s2048, &err), 0);
    assert_int_equal(lb_layout_add(&l, "d", 2, s3x5, &err), 0);
    lb_layout_finish(&l);
    check_layout(&l);
    assert_int_equal(l.t[1].offset, 4096);
    assert_int_equal(l.t[2].offset, 8192);
    assert_int_equal(l.t[3].offset, 12288);
    assert_int_equal(l.t[3].offset_f32, 20480);
    assert_int_equal(l.w_bytes, 16384);
    assert_int_equal(l.f32_bytes, 24576);

    /* Rounding to 2 MiB: one fp32 tensor, one G slot, so the block is the
     * header page plus five sections (W, G0, accum, m, v) of equal size.
     * The largest whole-page section that fits 2 MiB gives 2 MiB; one page
     * more per section gives 4 MiB. */
    {
        const uint64_t page = LB_ALIGN_TENSOR;
        const uint64_t per = ((2 * MIB - page) / 5) / page * page; /* bytes per section */
        const int64_t n[1] = {(int64_t)(per / 4)};
        assert_int_equal(lb_layout_init(&l, 0, DT_F32, 1, &err), 0);
        assert_int_equal(lb_layout_add(&l, "x", 1, n, &err), 0);
        lb_layout_finish(&l);
        check_layout(&l);
        assert_int_equal(l.total_bytes, 2 * MIB);
        const int64_t n2[1] = {(int64_t)(per / 4) + (int64_t)(page / 4)};
        assert_int_equal(lb_layout_init(&l, 0, DT_F32, 1, &err), 0);
        assert_int_equal(lb_layout_add(&l, "x", 1, n2, &err), 0);
        lb_layout_finish(&l);
        check_layout(&l);
        assert_int_equal(l.total_bytes, 4 * MIB);
    }
}

/* ---- model blocks ------------------------------------------------------------ */

static void test_model_layout_invariants(void **state)
{
    (void)state;
    const char *const cfgs[] = {LLAMA_SMALL, LLAMA_SMALL_BIAS, LLAMA_SMALL_TIED, QWEN2_SMALL,
                                QWEN2_SMALL_TIED, MISTRAL_SMALL, LLAMA2_7B, QWEN2_05B};
    const dt_type dts[] = {DT_F32, DT_BF16, DT_F16};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        model_config c;
        parse_or_fail(cfgs[k], &c);
        assert_int_equal(model_n_blocks(&c), c.n_layers + 2);
        for (int b = 0; b < model_n_blocks(&c); b++)
            for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
                for (int g = 1; g <= 4; g++) {
                    lb_layout l;
                    rt_err err = {{0}};
                    int rc = model_block_layout(&c, b, dts[d], g, &l, &err);
                    if (rc != 0)
                        fail_msg("config %zu block %d: %s", k, b, err.msg);
                    assert_int_equal(l.index, b);
                    assert_int_equal(l.compute, dts[d]);
                    check_layout(&l);
                }
    }
}

static void test_block_range(void **state)
{
    (void)state;
    model_config c;
    lb_layout l;
    rt_err err = {{0}};
    parse_or_fail(LLAMA_SMALL, &c);
    assert_int_equal(model_n_blocks(&c), 5);
    assert_int_equal(model_block_kind_of(&c, 0), MODEL_BLOCK_EMBED);
    for (int b = 1; b <= 3; b++)
        assert_int_equal(model_block_kind_of(&c, b), MODEL_BLOCK_LAYER);
    assert_int_equal(model_block_kind_of(&c, 4), MODEL_BLOCK_HEAD);
    assert_true(model_block_layout(&c, -1, DT_F32, 1, &l, &err) < 0);
    assert_non_null(strstr(err.msg, "-1"));
    memset(&err, 0, sizeof err);
    assert_true(model_block_layout(&c, 5, DT_F32, 1, &l, &err) < 0);
    assert_non_null(strstr(err.msg, "5"));
}

struct want {
    const char *name;
    int ndim;
    int64_t d0, d1;
};

/* l must hold exactly the n tensors of want, in any order. */
static void expect_tensors(const lb_layout *l, const struct want *want, int n)
{
    if (l->n_tensors != n) {
        for (int i = 0; i < l->n_tensors; i++)
            print_message("  block %d has %s\n", l->index, l->t[i].name);
        fail_msg("block %d: %d tensors, expected %d", l->index, l->n_tensors, n);
    }
    for (int i = 0; i < n; i++) {
        int t = lb_layout_find(l, want[i].name);
        if (t < 0)
            fail_msg("block %d lacks %s", l->index, want[i].name);
        const lb_tensor *x = &l->t[t];
        if (x->ndim != want[i].ndim || x->shape[0] != want[i].d0 ||
            (want[i].ndim == 2 && x->shape[1] != want[i].d1))
            fail_msg("block %d %s: shape [%lld, %lld] ndim %d, expected [%lld, %lld] ndim %d",
                     l->index, want[i].name, (long long)x->shape[0], (long long)x->shape[1],
                     x->ndim, (long long)want[i].d0, (long long)want[i].d1, want[i].ndim);
    }
}

/* Expected tensors of block b of c, built from the Hugging Face modeling code
 * (LlamaAttention / Qwen2Attention / LlamaMLP / LlamaRMSNorm). */
static int expected_block(const model_config *c, int b, struct want *w, char names[][LB_NAME_LEN])
{
    const int64_t H = c->hidden, Q = c->n_heads * c->head_dim,
                  KV = c->n_kv_heads * c->head_dim, I = c->intermediate, V = c->vocab;
    int n = 0;
#define ADD(nm, nd, a, bb)                                                   \
    do {                                                                     \
        snprintf(names[n], LB_NAME_LEN, "%s", nm);                           \
        w[n] = (struct want){names[n], nd, a, bb};                           \
        n++;                                                                 \
    } while (0)
#define ADDL(suffix, nd, a, bb)                                              \
    do {                                                                     \
        snprintf(names[n], LB_NAME_LEN, "model.layers.%d.%s", b - 1, suffix); \
        w[n] = (struct want){names[n], nd, a, bb};                           \
        n++;                                                                 \
    } while (0)
    if (b == 0) {
        ADD("model.embed_tokens.weight", 2, V, H);
    } else if (b <= c->n_layers) {
        ADDL("input_layernorm.weight", 1, H, 0);
        ADDL("self_attn.q_proj.weight", 2, Q, H);
        ADDL("self_attn.k_proj.weight", 2, KV, H);
        ADDL("self_attn.v_proj.weight", 2, KV, H);
        ADDL("self_attn.o_proj.weight", 2, H, Q);
        ADDL("post_attention_layernorm.weight", 1, H, 0);
        ADDL("mlp.gate_proj.weight", 2, I, H);
        ADDL("mlp.up_proj.weight", 2, I, H);
        ADDL("mlp.down_proj.weight", 2, H, I);
        if (c->qkv_bias) {
            ADDL("self_attn.q_proj.bias", 1, Q, 0);
            ADDL("self_attn.k_proj.bias", 1, KV, 0);
            ADDL("self_attn.v_proj.bias", 1, KV, 0);
        }
        if (c->o_bias)
            ADDL("self_attn.o_proj.bias", 1, H, 0);
    } else {
        ADD("model.norm.weight", 1, H, 0);
        if (!c->tie_embeddings)
            ADD("lm_head.weight", 2, V, H);
    }
#undef ADD
#undef ADDL
    return n;
}

static void check_names_shapes(const char *json, int want_qkv_bias, int want_o_bias,
                               int want_tied)
{
    model_config c;
    parse_or_fail(json, &c);
    assert_int_equal(c.qkv_bias, want_qkv_bias);
    assert_int_equal(c.o_bias, want_o_bias);
    assert_int_equal(c.tie_embeddings, want_tied);
    for (int b = 0; b < model_n_blocks(&c); b++) {
        struct want w[LB_MAX_TENSORS];
        char names[LB_MAX_TENSORS][LB_NAME_LEN];
        int n = expected_block(&c, b, w, names);
        lb_layout l;
        rt_err err = {{0}};
        assert_int_equal(model_block_layout(&c, b, DT_BF16, 2, &l, &err), 0);
        expect_tensors(&l, w, n);
    }
}

/* Block b of the model json describes, laid out in F32 with one gradient slot. */
static void layout_f32(const char *json, int b, lb_layout *l)
{
    model_config c;
    parse_or_fail(json, &c);
    rt_err err = {{0}};
    int rc = model_block_layout(&c, b, DT_F32, 1, l, &err);
    if (rc != 0)
        fail_msg("model_block_layout of block %d failed (%d): %s", b, rc, err.msg);
}

/* l holds the bias name of shape [d0]. */
static void expect_bias(const lb_layout *l, const char *name, int64_t d0)
{
    int t = lb_layout_find(l, name);
    if (t < 0)
        fail_msg("no tensor %s", name);
    assert_int_equal(l->t[t].ndim, 1);
    assert_int_equal(l->t[t].shape[0], d0);
}

static void test_names_llama(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail(LLAMA_SMALL, &c);
    /* The shapes the table is built from, spelled out once. */
    assert_int_equal(c.head_dim, 24);
    lb_layout l;
    layout_f32(LLAMA_SMALL, 2, &l);
    const struct want layer1[] = {
        {"model.layers.1.input_layernorm.weight", 1, 64, 0},
        {"model.layers.1.self_attn.q_proj.weight", 2, 96, 64},
        {"model.layers.1.self_attn.k_proj.weight", 2, 48, 64},
        {"model.layers.1.self_attn.v_proj.weight", 2, 48, 64},
        {"model.layers.1.self_attn.o_proj.weight", 2, 64, 96},
        {"model.layers.1.post_attention_layernorm.weight", 1, 64, 0},
        {"model.layers.1.mlp.gate_proj.weight", 2, 160, 64},
        {"model.layers.1.mlp.up_proj.weight", 2, 160, 64},
        {"model.layers.1.mlp.down_proj.weight", 2, 64, 160},
    };
    expect_tensors(&l, layer1, 9);
    layout_f32(LLAMA_SMALL, 0, &l);
    const struct want embed[] = {{"model.embed_tokens.weight", 2, 300, 64}};
    expect_tensors(&l, embed, 1);
    layout_f32(LLAMA_SMALL, 4, &l);
    const struct want head[] = {{"model.norm.weight", 1, 64, 0}, {"lm_head.weight", 2, 300, 64}};
    expect_tensors(&l, head, 2);

    check_names_shapes(LLAMA_SMALL, 0, 0, 0);
    check_names_shapes(MISTRAL_SMALL, 0, 0, 0);
    check_names_shapes(LLAMA2_7B, 0, 0, 0);
}

static void test_names_qwen2_biases(void **state)
{
    (void)state;
    lb_layout l;
    layout_f32(QWEN2_SMALL, 3, &l);
    assert_int_equal(l.n_tensors, 12);
    expect_bias(&l, "model.layers.2.self_attn.q_proj.bias", 96);
    expect_bias(&l, "model.layers.2.self_attn.k_proj.bias", 48);
    expect_bias(&l, "model.layers.2.self_attn.v_proj.bias", 48);
    assert_int_equal(lb_layout_find(&l, "model.layers.2.self_attn.o_proj.bias"), -1);
    check_names_shapes(QWEN2_SMALL, 1, 0, 0);
    check_names_shapes(QWEN2_SMALL_TIED, 1, 0, 1);
    check_names_shapes(QWEN2_05B, 1, 0, 1);
}

static void test_names_llama_attention_bias(void **state)
{
    (void)state;
    lb_layout l;
    layout_f32(LLAMA_SMALL_BIAS, 1, &l);
    assert_int_equal(l.n_tensors, 13);
    expect_bias(&l, "model.layers.0.self_attn.o_proj.bias", 64);
    check_names_shapes(LLAMA_SMALL_BIAS, 1, 1, 0);
}

static void test_names_tied(void **state)
{
    (void)state;
    lb_layout l;
    layout_f32(LLAMA_SMALL_TIED, 4, &l);
    const struct want head[] = {{"model.norm.weight", 1, 64, 0}};
    expect_tensors(&l, head, 1);
    assert_int_equal(lb_layout_find(&l, "lm_head.weight"), -1);
    check_names_shapes(LLAMA_SMALL_TIED, 0, 0, 1);
}

/* ---- parameter counts ------------------------------------------------------------ */

static uint64_t sum_numel(const model_config *c)
{
    uint64_t total = 0;
    for (int b = 0; b < model_n_blocks(c); b++) {
        lb_layout l;
        rt_err err = {{0}};
        assert_int_equal(model_block_layout(c, b, DT_F32, 1, &l, &err), 0);
        for (int i = 0; i < l.n_tensors; i++)
            total += l.t[i].numel;
    }
    return total;
}

static void test_n_params(void **state)
{
    (void)state;
    const char *const cfgs[] = {LLAMA_SMALL, LLAMA_SMALL_BIAS, LLAMA_SMALL_TIED, QWEN2_SMALL,
                                QWEN2_SMALL_TIED, MISTRAL_SMALL, LLAMA2_7B, TINYLLAMA, QWEN2_05B};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        model_config c;
        parse_or_fail(cfgs[k], &c);
        assert_int_equal(model_n_params(&c), sum_numel(&c));
    }
    model_config c;
    /* By hand, LLAMA_SMALL: embed 300*64 = 19200; per layer norms 2*64 +
     * q 96*64 + k,v 2*48*64 + o 64*96 + mlp 3*160*64 = 128 + 6144 + 6144 +
     * 6144 + 30720 = 49280, times 3 = 147840; head 64 + 19200 = 19264. */
    parse_or_fail(LLAMA_SMALL, &c);
    assert_int_equal(model_n_params(&c), 19200 + 147840 + 19264);
    /* Biases: q 96 + k 48 + v 48 (+ o 64) per layer. */
    parse_or_fail(QWEN2_SMALL, &c);
    assert_int_equal(model_n_params(&c), 186304 + 3 * 192);
    parse_or_fail(LLAMA_SMALL_BIAS, &c);
    assert_int_equal(model_n_params(&c), 186304 + 3 * 256);
    parse_or_fail(LLAMA_SMALL_TIED, &c);
    assert_int_equal(model_n_params(&c), 186304 - 19200);
    /* Published totals. */
    parse_or_fail(LLAMA2_7B, &c);
    assert_int_equal(model_n_params(&c), UINT64_C(6738415616));
    parse_or_fail(TINYLLAMA, &c);
    assert_int_equal(model_n_params(&c), UINT64_C(1100048384));
    parse_or_fail(QWEN2_05B, &c);
    assert_int_equal(model_n_params(&c), UINT64_C(494032768));
}

/* ---- binding ----------------------------------------------------------------------- */

struct region {
    lb_layout l;
    void *base;
};

static void region_make(struct region *r, const model_config *c, int b, dt_type dt)
{
    rt_err err = {{0}};
    assert_int_equal(model_block_layout(c, b, dt, 2, &r->l, &err), 0);
    r->base = aligned_alloc(LB_ALIGN_TENSOR, r->l.total_bytes);
    assert_non_null(r->base);
    memset(r->base, 0, r->l.total_bytes);
}

/* Value stored in every element of tensor i of section sec. */
static float mark(lb_section sec, int i)
{
    return (float)(1000 * (int)(sec + 1) + i + 1);
}

/* Writes mark(sec, i) into every element of every tensor of fp32 section sec. */
static void fill_section(struct region *r, lb_section sec)
{
    for (int i = 0; i < r->l.n_tensors; i++) {
        float *p = lb_tensor_ptr(&r->l, r->base, sec, i);
        for (uint64_t k = 0; k < r->l.t[i].numel; k++)
            p[k] = mark(sec, i);
    }
}

/* field must point at tensor name of section sec and read back its mark. */
static void expect_field(const struct region *r, lb_section sec, const float *field,
                         const char *name)
{
    int i = lb_layout_find(&r->l, name);
    if (i < 0)
        fail_msg("layout lacks %s", name);
    if (field != lb_tensor_ptr(&r->l, r->base, sec, i))
        fail_msg("field for %s points elsewhere", name);
    uint64_t n = r->l.t[i].numel;
    if (field[0] != mark(sec, i) || field[n - 1] != mark(sec, i))
        fail_msg("field for %s reads %g..%g, wrote %g", name, (double)field[0],
                 (double)field[n - 1], (double)mark(sec, i));
}

static void bind_layer_and_check(const model_config *c, int b, dt_type dt, lb_section sec)
{
    struct region r;
    region_make(&r, c, b, dt);
    fill_section(&r, sec);
    model_layer_ptrs p;
    memset(&p, 0xa5, sizeof p); /* absent fields must be set to NULL, not left */
    rt_err err = {{0}};
    int rc = model_block_bind(c, &r.l, r.base, sec, &p, &err);
    if (rc != 0)
        fail_msg("bind block %d section %d: %s", b, (int)sec, err.msg);
    char name[LB_NAME_LEN];
#define F(field, suffix)                                                          \
    do {                                                                          \
        snprintf(name, sizeof name, "model.layers.%d.%s", b - 1, suffix);         \
        expect_field(&r, sec, p.field, name);                                     \
    } while (0)
    F(attn_norm, "input_layernorm.weight");
    F(q_w, "self_attn.q_proj.weight");
    F(k_w, "self_attn.k_proj.weight");
    F(v_w, "self_attn.v_proj.weight");
    F(o_w, "self_attn.o_proj.weight");
    F(mlp_norm, "post_attention_layernorm.weight");
    F(gate_w, "mlp.gate_proj.weight");
    F(up_w, "mlp.up_proj.weight");
    F(down_w, "mlp.down_proj.weight");
    if (c->qkv_bias) {
        F(q_b, "self_attn.q_proj.bias");
        F(k_b, "self_attn.k_proj.bias");
        F(v_b, "self_attn.v_proj.bias");
    } else {
        assert_null(p.q_b);
        assert_null(p.k_b);
        assert_null(p.v_b);
    }
    if (c->o_bias)
        F(o_b, "self_attn.o_proj.bias");
    else
        assert_null(p.o_b);
#undef F
    free(r.base);
}

static void bind_embed_head_and_check(const model_config *c, dt_type dt, lb_section sec)
{
    struct region r;
    rt_err err = {{0}};

    region_make(&r, c, 0, dt);
    fill_section(&r, sec);
    model_embed_ptrs e;
    memset(&e, 0xa5, sizeof e);
    assert_int_equal(model_block_bind(c, &r.l, r.base, sec, &e, &err), 0);
    expect_field(&r, sec, e.embed, "model.embed_tokens.weight");
    free(r.base);

    region_make(&r, c, model_n_blocks(c) - 1, dt);
    fill_section(&r, sec);
    model_head_ptrs h;
    memset(&h, 0xa5, sizeof h);
    assert_int_equal(model_block_bind(c, &r.l, r.base, sec, &h, &err), 0);
    expect_field(&r, sec, h.norm, "model.norm.weight");
    if (c->tie_embeddings)
        assert_null(h.lm_head);
    else
        expect_field(&r, sec, h.lm_head, "lm_head.weight");
    free(r.base);
}

static void test_bind_f32(void **state)
{
    (void)state;
    const char *const cfgs[] = {LLAMA_SMALL, LLAMA_SMALL_BIAS, QWEN2_SMALL, QWEN2_SMALL_TIED,
                                LLAMA_SMALL_TIED};
    const lb_section secs[] = {LB_SEC_W, LB_SEC_G0, LB_SEC_G0 + 1, LB_SEC_ACCUM, LB_SEC_M,
                               LB_SEC_V};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        model_config c;
        parse_or_fail(cfgs[k], &c);
        for (size_t s = 0; s < sizeof secs / sizeof secs[0]; s++) {
            bind_embed_head_and_check(&c, DT_F32, secs[s]);
            for (int b = 1; b <= c.n_layers; b++)
                bind_layer_and_check(&c, b, DT_F32, secs[s]);
        }
    }
}

static void test_bind_bf16(void **state)
{
    (void)state;
    model_config c;
    parse_or_fail(LLAMA_SMALL_BIAS, &c);
    /* The fp32 optimizer sections of a bf16 block bind. */
    const lb_section ok[] = {LB_SEC_MASTER, LB_SEC_ACCUM, LB_SEC_M, LB_SEC_V};
    for (size_t s = 0; s < sizeof ok / sizeof ok[0]; s++) {
        bind_embed_head_and_check(&c, DT_BF16, ok[s]);
        bind_layer_and_check(&c, 2, DT_BF16, ok[s]);
    }
    /* W and the G slots hold bf16: refused. */
    const lb_section bad[] = {LB_SEC_W, LB_SEC_G0, LB_SEC_G0 + 1};
    for (size_t s = 0; s < sizeof bad / sizeof bad[0]; s++) {
        struct region r;
        region_make(&r, &c, 1, DT_BF16);
        model_layer_ptrs p;
        rt_err err = {{0}};
        assert_int_equal(model_block_bind(&c, &r.l, r.base, bad[s], &p, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "BF16"));
        assert_non_null(strstr(err.msg, "block 1"));
        free(r.base);
    }
}

/* A layout that lacks a tensor the config needs is an error naming it. */
static void test_bind_missing_tensor(void **state)
{
    (void)state;
    model_config tied, untied;
    parse_or_fail(LLAMA_SMALL_TIED, &tied);
    parse_or_fail(LLAMA_SMALL, &untied);
    struct region r;
    region_make(&r, &tied, 4, DT_F32);
    model_head_ptrs h;
    rt_err err = {{0}};
    assert_true(model_block_bind(&untied, &r.l, r.base, LB_SEC_W, &h, &err) < 0);
    assert_non_null(strstr(err.msg, "lm_head.weight"));
    free(r.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gslots_range),
        cmocka_unit_test(test_bad_dtype),
        cmocka_unit_test(test_max_tensors),
        cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_hand_placed),
        cmocka_unit_test(test_model_layout_invariants),
        cmocka_unit_test(test_block_range),
        cmocka_unit_test(test_names_llama),
        cmocka_unit_test(test_names_qwen2_biases),
        cmocka_unit_test(test_names_llama_attention_bias),
        cmocka_unit_test(test_names_tied),
        cmocka_unit_test(test_n_params),
        cmocka_unit_test(test_bind_f32),
        cmocka_unit_test(test_bind_bf16),
        cmocka_unit_test(test_bind_missing_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

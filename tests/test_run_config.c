/*
 * test_run_config: the run configuration of `ramtrain run`
 * (services/common/run_config.c) and the default run's corpus
 * (orchestrator/corpus.c): defaults; every key parsed; --set overrides
 * (replacing a value, adding a key, a section, a flow list or mapping, a key
 * inside an inline model config); every kind of error with its exact
 * message (unknown keys at each level with their line, wrong types, ranges,
 * model.path/model.config mistakes, data.seq_len, bad --set); the inline
 * model config's JSON; rc_write's round trip, byte for byte; the corpus's
 * determinism, size and predictability; and the embedded default run, which
 * must load and give batches within its byte vocabulary.
 *
 * Files live in a mkdtemp directory under /tmp, removed when every test
 * passed and kept (its path printed) when one failed.
 */
#define _GNU_SOURCE /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orchestrator/corpus.h"
#include "services/common/log.h"
#include "services/common/run_config.h"
#include "services/dataloader/data.h"

static char g_dir[] = "/tmp/rt_test_run_config_XXXXXX";
static bool g_test_passed; /* set by the last line of each test */
static bool g_keep;        /* a test failed: keep g_dir */

/* A small model (lines 1-2) and one data source (lines 3-5): the base of
 * most configs below, so added sections start at line 6. */
#define MODEL_YAML                                                                                        \
    "model:\n"                                                                                            \
    "  config: {model_type: llama, vocab_size: 300, hidden_size: 64, intermediate_size: 128, "            \
    "num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256}\n"
#define DATA_YAML "data:\n  sources:\n    - path: a.u32\n"
#define BASE_YAML MODEL_YAML DATA_YAML

#define TRAIN_KEYS "steps, batch_size, seq_len, grad_accum, lr, schedule, warmup, min_lr, weight_decay, beta1, " \
                   "beta2, eps, clip"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    log_init("test_run_config", LOG_LEVEL_WARN);
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_keep) {
        fprintf(stderr, "test_run_config: a test failed; files kept in %s\n", g_dir);
        return 0;
    }
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int test_setup(void **state)
{
    (void)state;
    g_test_passed = false;
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    if (!g_test_passed)
        g_keep = true;
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *tpath(const char *fmt, ...)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, sizeof bufs[0], "%s/", g_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void mkdir_ok(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", path, strerror(errno));
}

/* Loads YAML text as "run.yaml" in g_dir; fails the test on an error. */
static run_config *load_ok(const char *yaml, char **sets, int n_sets)
{
    run_config *c = NULL;
    rt_err err = {{0}};
    if (rc_load_text(yaml, strlen(yaml), "run.yaml", g_dir, sets, n_sets, &c, &err) < 0)
        fail_msg("unexpected error: %s\n--- config:\n%s", err.msg, yaml);
    assert_non_null(c);
    return c;
}

/* Loading must fail with exactly want (or, with exact false, a message
 * holding want). */
static void load_err(const char *yaml, char **sets, int n_sets, const char *want, bool exact)
{
    run_config *c = NULL;
    rt_err err = {{0}};
    int rc = rc_load_text(yaml, strlen(yaml), "run.yaml", g_dir, sets, n_sets, &c, &err);
    if (rc >= 0) {
        rc_free(c);
        fail_msg("loaded, expected the error: %s\n--- config:\n%s", want, yaml);
    }
    assert_null(c);
    if (exact ? strcmp(err.msg, want) != 0 : strstr(err.msg, want) == NULL)
        fail_msg("wrong error\n  got:  %s\n  want: %s%s", err.msg, exact ? "" : "... ", want);
}

#define SETS(...) ((char *[]){__VA_ARGS__}), (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *))

/* ---- tests ------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    run_config *c = load_ok(BASE_YAML, NULL, 0);
    assert_string_equal(c->origin, "run.yaml");
    assert_null(c->model_path);
    assert_null(c->model_config_path);
    assert_non_null(c->model_config_json);
    assert_int_equal(c->model.vocab, 300);
    assert_int_equal(c->model.hidden, 64);
    assert_int_equal(c->model.n_kv_heads, 2);
    assert_int_equal(c->model_seed, 0);
    assert_int_equal(c->steps, 100);
    assert_int_equal(c->batch_size, 8);
    assert_int_equal(c->seq_len, 128);
    assert_int_equal(c->grad_accum, 1);
    assert_true(c->lr == 3e-4);
    assert_int_equal(c->schedule, RC_SCHED_COSINE);
    assert_int_equal(c->warmup, 0);
    assert_true(c->min_lr == 0);
    assert_true(c->weight_decay == 0.1);
    assert_true(c->beta1 == 0.9);
    assert_true(c->beta2 == 0.95);
    assert_true(c->eps == 1e-8);
    assert_true(c->clip == 1.0);
    assert_int_equal(c->device, RC_DEV_AUTO);
    assert_false(c->bf16);
    assert_int_equal(c->prefetch, 2);
    assert_int_equal(c->threads, 0);
    assert_int_equal(c->resident, RC_RESIDENT_AUTO);
    assert_int_equal(c->ram_budget, 0);
    assert_null(c->spill_dir);
    assert_int_equal(c->ps_threads, 0);
    assert_int_equal(c->ckpt_every, 0);
    assert_int_equal(c->ckpt_keep, 3);
    /* the data mapping: data.c's defaults, seq_len and rows from train.* */
    const data_config *d = c->data;
    assert_non_null(d);
    assert_int_equal(d->seq_len, 128);
    assert_int_equal(d->batch_rows, 8);
    assert_true(d->shuffle);
    assert_int_equal(d->seed, 0);
    assert_true(d->add_eos);
    assert_false(d->add_bos);
    assert_int_equal(d->eos_id, -1);
    assert_null(d->tokenizer);
    assert_int_equal(d->n_sources, 1);
    assert_string_equal(d->sources[0].path, tpath("a.u32"));
    assert_string_equal(d->base_dir, g_dir);
    assert_string_equal(rc_schedule_name(c->schedule), "cosine");
    assert_string_equal(rc_device_name(c->device), "auto");
    rc_free(c);

    /* train.* reach the data config; a relative base directory becomes absolute */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    const char *yaml = BASE_YAML "train:\n  seq_len: 64\n  batch_size: 3\n";
    rt_err err = {{0}};
    int rc = rc_load_text(yaml, strlen(yaml), "run.yaml", ".", NULL, 0, &c, &err);
    assert_int_equal(chdir(cwd), 0);
    if (rc < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c->data->seq_len, 64);
    assert_int_equal(c->data->batch_rows, 3);
    assert_string_equal(c->data->sources[0].path, tpath("a.u32"));
    rc_free(c);
    g_test_passed = true;
}

static const char *const EVERY_KEY_YAML =
    "# every key\n"
    "model:\n"
    "  config: cfg/config.json\n"
    "  seed: 7\n"
    "data:\n"
    "  tokenizer: tok/tokenizer.json\n"
    "  seed: 11\n"
    "  shuffle: false\n"
    "  mask_doc_attention: true\n"
    "  on_bad_line: skip\n"
    "  add_bos: true\n"
    "  add_eos: false\n"
    "  eos_token: \"</s>\"\n"
    "  eos_id: 2\n"
    "  cache_dir: ./cache\n"
    "  sources:\n"
    "    - {path: \"a/*.txt\", format: text, split: blank_lines, weight: 2}\n"
    "    - {path: b.jsonl, format: jsonl, text_field: body, weight: 1}\n"
    "    - {path: /abs/c.jsonl, format: messages, chat_format: chatml, weight: 0.5}\n"
    "    - {path: d.u32, format: u32, weight: 1.25}\n"
    "train:\n"
    "  steps: 1000\n"
    "  batch_size: 4\n"
    "  seq_len: 64\n"
    "  grad_accum: 8\n"
    "  lr: 0.002\n"
    "  schedule: linear\n"
    "  warmup: 50\n"
    "  min_lr: 1e-4\n"
    "  weight_decay: 0.05\n"
    "  beta1: 0.8\n"
    "  beta2: 0.99\n"
    "  eps: 1e-6\n"
    "  clip: 0.5\n"
    "compute:\n"
    "  device: cpu\n"
    "  dtype: bf16\n"
    "  prefetch: 3\n"
    "  threads: 2\n"
    "  resident: 512M\n"
    "paramserver:\n"
    "  ram_budget: 64G\n"
    "  spill_dir: spill\n"
    "  threads: 3\n"
    "checkpoint:\n"
    "  every: 25\n"
    "  keep: 0\n";

static const char *const CONFIG_JSON =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"vocab_size\": 320,\n"
    "  \"hidden_size\": 64,\n  \"intermediate_size\": 160,\n  \"num_hidden_layers\": 3,\n"
    "  \"num_attention_heads\": 4,\n  \"num_key_value_heads\": 4,\n  \"max_position_embeddings\": 512,\n"
    "  \"rms_norm_eps\": 1e-06,\n  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": false,\n"
    "  \"rope_scaling\": null,\n  \"torch_dtype\": \"float32\"\n}\n";

static void write_model_files(void)
{
    mkdir_ok(tpath("cfg"));
    write_text(tpath("cfg/config.json"), CONFIG_JSON);
    mkdir_ok(tpath("hf"));
    write_text(tpath("hf/config.json"), CONFIG_JSON);
}

static void test_every_key(void **state)
{
    (void)state;
    write_model_files();
    run_config *c = load_ok(EVERY_KEY_YAML, NULL, 0);
    assert_null(c->model_path);
    assert_string_equal(c->model_config_path, tpath("cfg/config.json"));
    assert_string_equal(c->model_config_json, CONFIG_JSON);
    assert_int_equal(c->model.vocab, 320);
    assert_int_equal(c->model.n_layers, 3);
    assert_int_equal(c->model.max_pos, 512);
    assert_int_equal(c->model_seed, 7);
    assert_int_equal(c->steps, 1000);
    assert_int_equal(c->batch_size, 4);
    assert_int_equal(c->seq_len, 64);
    assert_int_equal(c->grad_accum, 8);
    assert_true(c->lr == 0.002);
    assert_int_equal(c->schedule, RC_SCHED_LINEAR);
    assert_int_equal(c->warmup, 50);
    assert_true(c->min_lr == 1e-4);
    assert_true(c->weight_decay == 0.05);
    assert_true(c->beta1 == 0.8);
    assert_true(c->beta2 == 0.99);
    assert_true(c->eps == 1e-6);
    assert_true(c->clip == 0.5);
    assert_int_equal(c->device, RC_DEV_CPU);
    assert_true(c->bf16);
    assert_int_equal(c->prefetch, 3);
    assert_int_equal(c->threads, 2);
    assert_int_equal(c->resident, 512ll << 20);
    assert_int_equal(c->ram_budget, 64ull << 30);
    assert_string_equal(c->spill_dir, tpath("spill"));
    assert_int_equal(c->ps_threads, 3);
    assert_int_equal(c->ckpt_every, 25);
    assert_int_equal(c->ckpt_keep, 0);
    const data_config *d = c->data;
    assert_string_equal(d->tokenizer, tpath("tok/tokenizer.json"));
    assert_string_equal(d->cache_dir, tpath("cache"));
    assert_int_equal(d->seed, 11);
    assert_false(d->shuffle);
    assert_true(d->mask_doc_attention);
    assert_true(d->skip_bad_lines);
    assert_true(d->add_bos);
    assert_false(d->add_eos);
    assert_string_equal(d->eos_token, "</s>");
    assert_int_equal(d->eos_id, 2);
    assert_int_equal(d->seq_len, 64);
    assert_int_equal(d->batch_rows, 4);
    assert_int_equal(d->n_sources, 4);
    assert_string_equal(d->sources[0].path, tpath("a/*.txt"));
    assert_int_equal(d->sources[0].format, DATA_FMT_TEXT);
    assert_int_equal(d->sources[0].split, DATA_SPLIT_BLANK_LINES);
    assert_true(d->sources[0].weight == 2);
    assert_string_equal(d->sources[1].path, tpath("b.jsonl"));
    assert_string_equal(d->sources[1].text_field, "body");
    assert_string_equal(d->sources[2].path, "/abs/c.jsonl");
    assert_int_equal(d->sources[2].format, DATA_FMT_MESSAGES);
    assert_int_equal(d->sources[2].chat_format, DATA_CHAT_CHATML);
    assert_true(d->sources[2].weight == 0.5);
    assert_int_equal(d->sources[3].format, DATA_FMT_U32);
    rc_free(c);

    /* the other spellings of sizes and resident */
    const char *yaml = BASE_YAML "compute:\n  resident: all\nparamserver:\n  ram_budget: 1536KiB\n";
    c = load_ok(yaml, NULL, 0);
    assert_int_equal(c->resident, RC_RESIDENT_ALL);
    assert_int_equal(c->ram_budget, 1536ull << 10);
    rc_free(c);
    c = load_ok(BASE_YAML "compute:\n  resident: none\n  device: cuda\nparamserver:\n  ram_budget: 123456789\n", NULL,
                0);
    assert_int_equal(c->resident, 0);
    assert_int_equal(c->device, RC_DEV_CUDA);
    assert_int_equal(c->ram_budget, 123456789);
    rc_free(c);
    c = load_ok(BASE_YAML "compute:\n  resident: 3GB\n  dtype: fp32\ntrain:\n  schedule: constant\n", NULL, 0);
    assert_int_equal(c->resident, 3ll << 30);
    assert_int_equal(c->schedule, RC_SCHED_CONSTANT);
    rc_free(c);
    /* a model directory's config.json; model.config may name a directory too */
    c = load_ok("model:\n  path: hf\n" DATA_YAML, NULL, 0);
    assert_string_equal(c->model_path, tpath("hf"));
    assert_null(c->model_config_path);
    assert_string_equal(c->model_config_json, CONFIG_JSON);
    assert_int_equal(c->model.vocab, 320);
    rc_free(c);
    c = load_ok("model:\n  config: cfg\n" DATA_YAML, NULL, 0);
    assert_string_equal(c->model_config_path, tpath("cfg/config.json"));
    rc_free(c);
    g_test_passed = true;
}

static void test_overrides(void **state)
{
    (void)state;
    /* replace a value: applied before validation, so a bad value can be mended */
    run_config *c = load_ok(BASE_YAML "train:\n  lr: fast\n  steps: 5\n", SETS("train.lr=0.01"));
    assert_true(c->lr == 0.01);
    assert_int_equal(c->steps, 5);
    rc_free(c);
    /* add a key to a section; the later of two overrides wins */
    c = load_ok(BASE_YAML "train:\n  steps: 5\n", SETS("train.warmup=3", "train.steps=6", "train.steps=7"));
    assert_int_equal(c->warmup, 3);
    assert_int_equal(c->steps, 7);
    rc_free(c);
    /* add sections; a null section becomes a mapping */
    c = load_ok(BASE_YAML "checkpoint:\n",
                SETS("compute.threads=4", "paramserver.spill_dir=sp", "checkpoint.keep=9", "compute.dtype=bf16"));
    assert_int_equal(c->threads, 4);
    assert_true(c->bf16);
    assert_string_equal(c->spill_dir, tpath("sp"));
    assert_int_equal(c->ckpt_keep, 9);
    rc_free(c);
    /* a flow list replaces the sources */
    c = load_ok(BASE_YAML, SETS("data.sources=[{path: x.u32, format: u32, weight: 1}, {path: y.txt, weight: 3}]"));
    assert_int_equal(c->data->n_sources, 2);
    assert_string_equal(c->data->sources[0].path, tpath("x.u32"));
    assert_int_equal(c->data->sources[0].format, DATA_FMT_U32);
    assert_string_equal(c->data->sources[1].path, tpath("y.txt"));
    assert_true(c->data->sources[1].weight == 3);
    rc_free(c);
    /* a new key inside the data mapping, and a quoted value */
    c = load_ok(BASE_YAML, SETS("data.tokenizer=\"t/tok.json\"", "data.shuffle=false", "data.seed=5"));
    assert_string_equal(c->data->tokenizer, tpath("t/tok.json"));
    assert_false(c->data->shuffle);
    assert_int_equal(c->data->seed, 5);
    rc_free(c);
    /* a flow mapping replaces the model config; a key inside an inline config */
    c = load_ok(BASE_YAML, SETS("model.config={model_type: llama, vocab_size: 500, hidden_size: 32, "
                                "intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, "
                                "max_position_embeddings: 128}"));
    assert_int_equal(c->model.vocab, 500);
    assert_int_equal(c->model.n_layers, 1);
    rc_free(c);
    c = load_ok(BASE_YAML, SETS("model.config.vocab_size=1000", "model.config.rope_theta=500000.0"));
    assert_int_equal(c->model.vocab, 1000);
    assert_true(c->model.rope_theta == 500000.0);
    assert_non_null(strstr(c->model_config_json, "\"vocab_size\": 1000"));
    assert_non_null(strstr(c->model_config_json, "\"rope_theta\": 500000.0"));
    rc_free(c);
    /* an empty file and overrides that give everything */
    c = load_ok("", SETS("model.config={model_type: llama, vocab_size: 64, hidden_size: 32, intermediate_size: 64, "
                         "num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 128}",
                         "data.sources=[{path: /data/a.u32}]", "train.seq_len=100"));
    assert_int_equal(c->model.vocab, 64);
    assert_string_equal(c->data->sources[0].path, "/data/a.u32");
    assert_int_equal(c->data->seq_len, 100);
    rc_free(c);
    /* model.path given on the command line replaces model.config's path */
    write_model_files();
    c = load_ok("model:\n  path: nowhere\n" DATA_YAML, SETS("model.path=hf"));
    assert_string_equal(c->model_path, tpath("hf"));
    rc_free(c);
    /* an empty value is null: it takes an inline model.config out */
    c = load_ok(BASE_YAML, SETS("model.path=hf", "model.config="));
    assert_string_equal(c->model_path, tpath("hf"));
    assert_int_equal(c->model.vocab, 320);
    rc_free(c);
    g_test_passed = true;
}

static void test_errors(void **state)
{
    (void)state;
    write_model_files();
    mkdir_ok(tpath("emptymodel"));
    char want[2048];

    /* unknown keys, each level, with the line and the keys expected */
    load_err(BASE_YAML "trian:\n  steps: 5\n", NULL, 0,
             "run.yaml:6: trian: unknown key; expected one of model, data, train, compute, paramserver, checkpoint",
             true);
    load_err(BASE_YAML "train:\n  steps: 5\n  lrr: 0.1\n", NULL, 0,
             "run.yaml:8: train.lrr: unknown key; expected one of " TRAIN_KEYS, true);
    load_err("model:\n  cofnig: x\n" DATA_YAML, NULL, 0,
             "run.yaml:2: model.cofnig: unknown key; expected one of path, config, seed", true);
    load_err(BASE_YAML "compute:\n  devcie: cpu\n", NULL, 0,
             "run.yaml:7: compute.devcie: unknown key; expected one of device, dtype, prefetch, threads, resident",
             true);
    load_err(BASE_YAML "paramserver:\n  ram: 1\n", NULL, 0,
             "run.yaml:7: paramserver.ram: unknown key; expected one of ram_budget, spill_dir, threads", true);
    load_err(BASE_YAML "checkpoint:\n  every: 1\n  kept: 1\n", NULL, 0,
             "run.yaml:8: checkpoint.kept: unknown key; expected one of every, keep", true);
    load_err(MODEL_YAML "data:\n  shufle: true\n  sources: [{path: a.u32}]\n", NULL, 0,
             "run.yaml:4: data.shufle: unknown key; expected one of tokenizer, seed, shuffle, mask_doc_attention, "
             "on_bad_line, add_bos, add_eos, eos_token, eos_id, cache_dir, sources", true);
    load_err(MODEL_YAML "data:\n  sources:\n    - path: a.u32\n      fromat: u32\n", NULL, 0,
             "run.yaml:6: data.sources[0].fromat: unknown key; expected one of path, format, text_field, "
             "chat_format, split, weight", true);
    load_err(BASE_YAML "train:\n  steps: 5\n  steps: 6\n", NULL, 0, "run.yaml:8: train.steps: given twice", true);

    /* wrong types */
    load_err(BASE_YAML "train:\n  lr: fast\n", NULL, 0, "run.yaml:7: train.lr: \"fast\" is not a number", true);
    load_err(BASE_YAML "train:\n  lr: [1]\n", NULL, 0, "run.yaml:7: train.lr: is a list, expected a number", true);
    load_err(BASE_YAML "train:\n  steps: 1.5\n", NULL, 0, "run.yaml:7: train.steps: \"1.5\" is not an integer", true);
    load_err(BASE_YAML "train:\n  schedule: exp\n", NULL, 0,
             "run.yaml:7: train.schedule: \"exp\" is not one of constant, cosine, linear", true);
    load_err(BASE_YAML "compute:\n  dtype: fp16\n", NULL, 0,
             "run.yaml:7: compute.dtype: \"fp16\" is not one of fp32, bf16", true);
    load_err(BASE_YAML "compute:\n  resident: lots\n", NULL, 0,
             "run.yaml:7: compute.resident: \"lots\" is not auto, none, all or a size", false);
    load_err(BASE_YAML "paramserver:\n  ram_budget: 64X\n", NULL, 0,
             "run.yaml:7: paramserver.ram_budget: \"64X\" is not a size", false);
    load_err(BASE_YAML "paramserver:\n  ram_budget: 99999999999T\n", NULL, 0,
             "run.yaml:7: paramserver.ram_budget: 99999999999T is too large", false);
    load_err(BASE_YAML "train: [1, 2]\n", NULL, 0, "run.yaml:6: train: is a list, expected a mapping with keys steps",
             false);
    load_err(BASE_YAML "data:\n  shuffle: maybe\n", NULL, 0, "data: given twice", false);
    load_err(MODEL_YAML "data:\n  shuffle: maybe\n  sources: [{path: a.u32}]\n", NULL, 0,
             "run.yaml:4: data.shuffle: \"maybe\" is not true or false", true);
    load_err("- 1\n- 2\n", NULL, 0, "run.yaml:1: the run config is a list, expected a mapping with keys model", false);

    /* out of range */
    load_err(BASE_YAML "train:\n  grad_accum: 65\n", NULL, 0,
             "run.yaml:7: train.grad_accum: 65 is out of range, expected 1 to 64", true);
    load_err(BASE_YAML "train:\n  beta2: 1\n", NULL, 0,
             "run.yaml:7: train.beta2: 1 is out of range, expected 0 <= beta2 < 1", true);
    load_err(BASE_YAML "train:\n  beta1: -0.1\n", NULL, 0,
             "run.yaml:7: train.beta1: -0.1 is out of range, expected 0 <= beta1 < 1", true);
    load_err(BASE_YAML "train:\n  steps: 0\n", NULL, 0,
             "run.yaml:7: train.steps: 0 is out of range, expected 1 to 1099511627776", true);
    load_err(BASE_YAML "train:\n  batch_size: -2\n", NULL, 0,
             "run.yaml:7: train.batch_size: -2 is out of range, expected 1 to 1048576", true);
    load_err(BASE_YAML "train:\n  lr: -1\n", NULL, 0, "run.yaml:7: train.lr: -1 is out of range, expected a number > 0",
             true);
    load_err(BASE_YAML "train:\n  eps: 0\n", NULL, 0, "run.yaml:7: train.eps: 0 is out of range, expected a number > 0",
             true);
    load_err(BASE_YAML "train:\n  clip: -1\n", NULL, 0,
             "run.yaml:7: train.clip: -1 is out of range, expected a number >= 0 (0: no clipping)", true);
    load_err(BASE_YAML "compute:\n  prefetch: 0\n", NULL, 0,
             "run.yaml:7: compute.prefetch: 0 is out of range, expected 1 to 64", true);
    load_err(BASE_YAML "compute:\n  threads: 5000\n", NULL, 0,
             "run.yaml:7: compute.threads: 5000 is out of range, expected 0 to 1024", true);
    load_err(BASE_YAML "train:\n  seq_len: 512\n", NULL, 0,
             "run.yaml:7: train.seq_len: 512 is more than the model's max_position_embeddings 256", true);
    load_err(BASE_YAML "train:\n  lr: 0.001\n  min_lr: 0.01\n", NULL, 0,
             "run.yaml:8: train.min_lr: 0.01 is more than train.lr 0.001: the cosine schedule decays from lr to "
             "min_lr", true);

    /* the model */
    snprintf(want, sizeof want, "run.yaml:2: model.path: %s: No such file or directory, expected a Hugging Face "
                                "model directory (with config.json)", tpath("nope"));
    load_err("model:\n  path: nope\n" DATA_YAML, NULL, 0, want, true);
    snprintf(want, sizeof want, "run.yaml:2: model.path: %s: not a directory", tpath("cfg/config.json"));
    load_err("model:\n  path: cfg/config.json\n" DATA_YAML, NULL, 0, want, false);
    snprintf(want, sizeof want, "run.yaml:2: model.path: %s: cannot read: No such file or directory",
             tpath("emptymodel/config.json"));
    load_err("model:\n  path: emptymodel\n" DATA_YAML, NULL, 0, want, true);
    load_err("model:\n  path: hf\n  config: hf/config.json\n" DATA_YAML, NULL, 0,
             "run.yaml:3: model.config: model.path is given too: give one of them", false);
    load_err("model:\n  seed: 1\n" DATA_YAML, NULL, 0,
             "run.yaml:2: model: give model.path (a Hugging Face model directory) or model.config (a config.json "
             "path, or an inline mapping of its keys)", true);
    load_err(DATA_YAML, NULL, 0, "run.yaml: model: give model.path", false);
    load_err("model:\n  config: [1]\n" DATA_YAML, NULL, 0,
             "run.yaml:2: model.config: is a list, expected a config.json path or a mapping of its keys", true);
    load_err("model:\n  config: {model_type: llama, vocab_size: 300}\n" DATA_YAML, NULL, 0,
             "run.yaml:2: model.config: ", false);
    load_err("model:\n  config: {model_type: gpt2, vocab_size: 300}\n" DATA_YAML, NULL, 0,
             "run.yaml:2: model.config: unsupported architecture \"gpt2\"", false);
    write_text(tpath("bad.json"), "{\"model_type\": ");
    snprintf(want, sizeof want, "run.yaml:2: model.config: %s: not valid JSON", tpath("bad.json"));
    load_err("model:\n  config: bad.json\n" DATA_YAML, NULL, 0, want, false);

    /* the data mapping */
    load_err(MODEL_YAML "data:\n  seq_len: 64\n  sources: [{path: a.u32}]\n", NULL, 0,
             "run.yaml:4: data.seq_len: is set by train.seq_len in a run config; give it there", true);
    load_err(MODEL_YAML "data:\n  sources: [{path: a.u32}]\n  batch_rows: 4\n", NULL, 0,
             "run.yaml:5: data.batch_rows: is set by train.batch_size in a run config; give it there", true);
    load_err(MODEL_YAML "data:\n  shuffle: false\n", NULL, 0,
             "run.yaml:4: data.sources: missing: a list of {path, format, weight}", true);
    load_err(MODEL_YAML, NULL, 0, "run.yaml: data: missing: a mapping with sources (and tokenizer, seed,", false);
    load_err(MODEL_YAML "data: [1]\n", NULL, 0, "run.yaml:3: data: is a list, expected a mapping with keys", false);
    load_err(MODEL_YAML "data:\n  sources:\n    - {path: a.txt, format: csv}\n", NULL, 0,
             "run.yaml:5: data.sources[0].format: \"csv\" is not one of text, jsonl, alpaca, sharegpt, messages, "
             "llmc, u32", true);

    /* the text */
    load_err("model: [\n", NULL, 0, "YAML syntax error", false);
    load_err("", NULL, 0,
             "run.yaml: empty, expected a mapping with model, data and train (and compute, paramserver, checkpoint)",
             true);

    /* --set: the override is named instead of a line */
    load_err(BASE_YAML, SETS("train.lr=fast"), "--set train.lr=fast: train.lr: \"fast\" is not a number", true);
    load_err(BASE_YAML "train:\n  lr: 0.1\n", SETS("train.steps=10", "train.lr=fast"),
             "--set train.lr=fast: train.lr: \"fast\" is not a number", true);
    load_err(BASE_YAML, SETS("train.foo=1"), "--set train.foo=1: train.foo: unknown key; expected one of " TRAIN_KEYS,
             true);
    load_err(BASE_YAML, SETS("bogus.x=1"),
             "--set bogus.x=1: bogus: unknown key; expected one of model, data, train, compute, paramserver, "
             "checkpoint", true);
    load_err(BASE_YAML, SETS("train.grad_accum=100"),
             "--set train.grad_accum=100: train.grad_accum: 100 is out of range, expected 1 to 64", true);
    load_err(BASE_YAML, SETS("trainlr"), "--set trainlr: expected key=value, e.g. --set train.lr=1e-3", true);
    load_err(BASE_YAML, SETS("=5"), "--set =5: expected key=value, e.g. --set train.lr=1e-3", true);
    load_err(BASE_YAML, SETS("train..lr=1"), "--set train..lr=1: \"train..lr\" is not a key path like train.lr",
             true);
    load_err(BASE_YAML "train:\n  lr: 0.1\n", SETS("train.lr.x=1"),
             "--set train.lr.x=1: train.lr: is a scalar, there is no key x in it", true);
    load_err(BASE_YAML, SETS("data.sources.path=x"),
             "--set data.sources.path=x: data.sources: is a list, there is no key path in it (replace the whole "
             "list: --set 'key=[...]')", true);
    load_err(BASE_YAML, SETS("train.lr=[1,"), "--set train.lr=[1,: the value is not valid YAML: ", false);
    load_err(BASE_YAML, SETS("data.seq_len=64"),
             "--set data.seq_len=64: data.seq_len: is set by train.seq_len in a run config; give it there", true);
    load_err(BASE_YAML, SETS("data.sources=[{path: x.u32, format: csv}]"),
             "--set data.sources=[{path: x.u32, format: csv}]: data.sources[0].format: \"csv\" is not one of text, "
             "jsonl, alpaca, sharegpt, messages, llmc, u32", true);
    load_err(BASE_YAML, SETS("data.shuffle=perhaps"),
             "--set data.shuffle=perhaps: data.shuffle: \"perhaps\" is not true or false", true);
    load_err(BASE_YAML, SETS("model.path=hf"), "run.yaml:2: model.config: does not describe the model of model.path",
             false);
    snprintf(want, sizeof want, "--set model.path=nope: model.path: %s: No such file", tpath("nope"));
    load_err("model:\n  seed: 1\n" DATA_YAML, SETS("model.path=nope"), want, false);
    load_err(BASE_YAML, SETS("model.config={model_type: llama}"), "--set model.config={model_type: llama}: model.config: ",
             false);
    g_test_passed = true;
}

static void test_inline_model_config(void **state)
{
    (void)state;
    const char *yaml = "model:\n"
                       "  config:\n"
                       "    architectures: [LlamaForCausalLM]\n"
                       "    model_type: llama\n"
                       "    vocab_size: 300\n"
                       "    hidden_size: 64\n"
                       "    intermediate_size: 128\n"
                       "    num_hidden_layers: 2\n"
                       "    num_attention_heads: 4\n"
                       "    num_key_value_heads: 2\n"
                       "    max_position_embeddings: 256\n"
                       "    rms_norm_eps: 1e-5\n"
                       "    rope_theta: 500000.0\n"
                       "    initializer_range: .02\n"
                       "    tie_word_embeddings: true\n"
                       "    attention_bias: False\n"
                       "    torch_dtype: \"123\"\n"
                       "    note: 'it''s \"quoted\"'\n"
                       "    bos_token_id: ~\n"
                       "    eos_token_id: [1, 2]\n"
                       "    rope_scaling: {rope_type: llama3, factor: 8.0, low_freq_factor: 1, high_freq_factor: 4,\n"
                       "                   original_max_position_embeddings: 128}\n" DATA_YAML;
    run_config *c = load_ok(yaml, NULL, 0);
    assert_string_equal(c->model_config_json,
                        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 300, "
                        "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                        "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"max_position_embeddings\": 256, "
                        "\"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, \"initializer_range\": 0.02, "
                        "\"tie_word_embeddings\": true, \"attention_bias\": false, \"torch_dtype\": \"123\", "
                        "\"note\": \"it's \\\"quoted\\\"\", \"bos_token_id\": null, \"eos_token_id\": [1, 2], "
                        "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1, "
                        "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 128}}");
    assert_int_equal(c->model.vocab, 300);
    assert_int_equal(c->model.n_kv_heads, 2);
    assert_true(c->model.rms_eps == 1e-5);
    assert_true(c->model.rope_theta == 500000.0);
    assert_true(c->model.init_range == 0.02);
    assert_true(c->model.tie_embeddings);
    assert_false(c->model.qkv_bias);
    assert_int_equal(c->model.rope_type, MODEL_ROPE_LLAMA3);
    assert_true(c->model.rope_factor == 8.0);
    assert_int_equal(c->model.rope_orig_max_pos, 128);
    /* the same model as parsed from the JSON text itself */
    model_config m;
    rt_err err = {{0}};
    assert_int_equal(model_config_parse(c->model_config_json, "json", &m, &err), 0);
    assert_true(model_config_hash(&m) == model_config_hash(&c->model));
    rc_free(c);
    /* a quoted number is a string, which the model parser refuses */
    load_err("model:\n  config: {model_type: llama, vocab_size: \"300\", hidden_size: 64, intermediate_size: 128, "
             "num_hidden_layers: 2, num_attention_heads: 4}\n" DATA_YAML,
             NULL, 0, "run.yaml:2: model.config: ", false);
    g_test_passed = true;
}

/* rc_write, rc_load_file, rc_write again: the same bytes. Returns the first
 * text (malloc'd). */
static char *round_trip(const run_config *c, const char *name)
{
    rt_err err = {{0}};
    char *p1 = strdup(tpath("%s.1.yaml", name)), *p2 = strdup(tpath("%s.2.yaml", name));
    if (rc_write(c, p1, &err) < 0)
        fail_msg("rc_write: %s", err.msg);
    run_config *back = NULL;
    if (rc_load_file(p1, NULL, 0, &back, &err) < 0)
        fail_msg("reloading %s: %s", p1, err.msg);
    if (rc_write(back, p2, &err) < 0)
        fail_msg("rc_write: %s", err.msg);
    size_t n1, n2;
    char *t1 = read_text(p1, &n1), *t2 = read_text(p2, &n2);
    if (n1 != n2 || memcmp(t1, t2, n1) != 0)
        fail_msg("round trip differs:\n--- first\n%s--- second\n%s", t1, t2);
    /* the reloaded config equals the original */
    assert_true(model_config_hash(&back->model) == model_config_hash(&c->model));
    assert_int_equal(back->steps, c->steps);
    assert_true(back->lr == c->lr && back->min_lr == c->min_lr && back->eps == c->eps && back->beta2 == c->beta2);
    assert_int_equal(back->resident, c->resident);
    assert_int_equal(back->ram_budget, c->ram_budget);
    assert_int_equal(back->data->n_sources, c->data->n_sources);
    for (int i = 0; i < c->data->n_sources; i++) {
        assert_string_equal(back->data->sources[i].path, c->data->sources[i].path);
        assert_int_equal(back->data->sources[i].format, c->data->sources[i].format);
        assert_true(back->data->sources[i].weight == c->data->sources[i].weight);
    }
    assert_int_equal(back->data->eos_id, c->data->eos_id);
    assert_int_equal(back->data->seq_len, c->data->seq_len);
    /* rc_to_yaml gives the file's text */
    char *text;
    size_t len;
    assert_int_equal(rc_to_yaml(back, &text, &len, &err), 0);
    assert_int_equal(len, n1);
    assert_memory_equal(text, t1, n1);
    free(text);
    rc_free(back);
    free(t2);
    free(p1);
    free(p2);
    return t1;
}

static void test_write_round_trip(void **state)
{
    (void)state;
    write_model_files();
    /* every key, written from another directory: the paths stay absolute */
    run_config *c = load_ok(EVERY_KEY_YAML, SETS("compute.resident=1536K"));
    mkdir_ok(tpath("elsewhere"));
    char *t = round_trip(c, "elsewhere/every");
    char want[4200];
    snprintf(want, sizeof want, "    - path: \"%s\"\n      format: text\n      split: blank_lines\n      weight: 2\n",
             tpath("a/*.txt"));
    assert_non_null(strstr(t, want));
    assert_non_null(strstr(t, "  lr: 0.002\n"));
    assert_non_null(strstr(t, "  min_lr: 0.0001\n"));
    assert_non_null(strstr(t, "  resident: 1536K\n"));
    assert_non_null(strstr(t, "  ram_budget: 64G\n"));
    assert_non_null(strstr(t, "  config: {\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\""));
    assert_null(strstr(t, "seq_len: 64\n  sources")); /* train.seq_len only */
    assert_null(strstr(t, "batch_rows"));
    free(t);
    rc_free(c);

    /* defaults */
    c = load_ok(BASE_YAML, NULL, 0);
    t = round_trip(c, "defaults");
    assert_non_null(strstr(t, "  resident: auto\n"));
    assert_non_null(strstr(t, "  spill_dir: null\n"));
    assert_non_null(strstr(t, "  tokenizer: null\n"));
    assert_null(strstr(t, "eos_id"));
    free(t);
    rc_free(c);

    /* a model directory: model.path kept, its config inline too */
    c = load_ok("model:\n  path: hf\n" DATA_YAML, SETS("compute.resident=none"));
    t = round_trip(c, "hf");
    snprintf(want, sizeof want, "model:\n  path: \"%s\"\n  config: {", tpath("hf"));
    assert_non_null(strstr(t, want));
    /* an inline config that no longer matches the directory is refused */
    char *edited = strdup(t);
    char *v = strstr(edited, "\"vocab_size\": 320");
    assert_non_null(v);
    memcpy(v, "\"vocab_size\": 321", 17);
    snprintf(want, sizeof want, "run.yaml:4: model.config: does not describe the model of model.path (%s/config.json); "
                                "give only one of them", tpath("hf"));
    load_err(edited, NULL, 0, want, true);
    free(edited);
    free(t);
    rc_free(c);

    /* strings that need quoting: quotes, backslashes, a tab, UTF-8, a colon */
    const char *yaml = MODEL_YAML "data:\n"
                       "  eos_token: \"<|end|> \\u00e9: #x\"\n"
                       "  sources:\n"
                       "    - path: \"we\\\"ird\\\\dir/na\\u00efve\\tfile.txt\"\n"
                       "      format: text\n"
                       "    - path: '/x/: [y]'\n";
    c = load_ok(yaml, SETS("model.config.note=\"line\\nbreak \\u2028 \\x85\""));
    assert_string_equal(c->data->eos_token, "<|end|> \xc3\xa9: #x");
    assert_string_equal(c->data->sources[0].path, tpath("we\"ird\\dir/na\xc3\xafve\tfile.txt"));
    assert_string_equal(c->data->sources[1].path, "/x/: [y]");
    t = round_trip(c, "quoting");
    assert_non_null(strstr(t, "\"note\": \"line\\nbreak \\u2028 \\u0085\""));
    free(t);
    rc_free(c);

    /* a path that is not UTF-8 cannot be written */
    c = load_ok(BASE_YAML, NULL, 0);
    free(c->data->sources[0].path);
    c->data->sources[0].path = strdup("/x/\xff.txt");
    rt_err err = {{0}};
    assert_int_equal(rc_write(c, tpath("bad.yaml"), &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not valid UTF-8"));
    assert_int_equal(access(tpath("bad.yaml"), F_OK), -1);
    rc_free(c);
    g_test_passed = true;
}

/* Plug-in entropies (bits per byte) of text[n]: of single bytes, and of a
 * byte given the `order` bytes before it. */
static void entropies(const unsigned char *text, size_t n, int order, double *h0, double *hk)
{
    size_t count[256] = {0};
    for (size_t i = 0; i < n; i++)
        count[text[i]]++;
    *h0 = 0;
    for (int b = 0; b < 256; b++)
        if (count[b])
            *h0 -= (double)count[b] / (double)n * log2((double)count[b] / (double)n);
    /* contexts hashed into a table of (context, next byte) counts */
    enum { TBITS = 22 };
    uint32_t *ctx = calloc((size_t)1 << TBITS, sizeof *ctx); /* counts per context hash */
    uint32_t *pair = calloc((size_t)1 << TBITS, sizeof *pair); /* counts per (context, byte) hash */
    assert_true(ctx != NULL && pair != NULL);
    for (size_t i = (size_t)order; i < n; i++) {
        uint64_t h = 1469598103934665603ull;
        for (int k = 1; k <= order; k++)
            h = (h ^ text[i - (size_t)k]) * 1099511628211ull;
        ctx[h >> (64 - TBITS)]++;
        pair[((h ^ text[i]) * 1099511628211ull) >> (64 - TBITS)]++;
    }
    double sum = 0;
    for (size_t i = (size_t)order; i < n; i++) {
        uint64_t h = 1469598103934665603ull;
        for (int k = 1; k <= order; k++)
            h = (h ^ text[i - (size_t)k]) * 1099511628211ull;
        sum -= log2((double)pair[((h ^ text[i]) * 1099511628211ull) >> (64 - TBITS)] /
                    (double)ctx[h >> (64 - TBITS)]);
    }
    *hk = sum / (double)(n - (size_t)order);
    free(ctx);
    free(pair);
}

static void test_corpus(void **state)
{
    (void)state;
    rt_err err = {{0}};
    const size_t bytes = 1u << 20;
    if (corpus_write(tpath("c1.txt"), bytes, 1, &err) < 0 || corpus_write(tpath("c2.txt"), bytes, 1, &err) < 0 ||
        corpus_write(tpath("c3.txt"), bytes, 2, &err) < 0)
        fail_msg("corpus_write: %s", err.msg);
    size_t n1, n2, n3;
    char *a = read_text(tpath("c1.txt"), &n1), *b = read_text(tpath("c2.txt"), &n2), *d = read_text(tpath("c3.txt"), &n3);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    assert_true(n1 <= bytes && n1 > bytes - CORPUS_MAX_STORY);
    assert_true(n3 <= bytes && n3 > bytes - CORPUS_MAX_STORY);
    assert_true(n1 != n3 || memcmp(a, d, n1) != 0);
    /* corpus_fill gives the same bytes */
    char *mem = malloc(bytes);
    assert_non_null(mem);
    assert_int_equal(corpus_fill(mem, bytes, 1), n1);
    assert_memory_equal(mem, a, n1);
    free(mem);
    /* the shape of the text: printable ASCII, one story per line, stories
     * apart by one blank line, no slot left unfilled, "an" before vowels */
    assert_true(n1 > 0 && a[0] >= 'A' && a[0] <= 'Z');
    assert_true(a[n1 - 1] == '\n' && a[n1 - 2] != '\n');
    size_t stories = 0;
    for (size_t i = 0; i < n1; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch == '\n') {
            if (i + 1 < n1) {
                assert_int_equal(a[i + 1], '\n'); /* one story per line, then a blank line */
                assert_true(a[i + 2] >= 'A' && a[i + 2] <= 'Z');
                i++;
            }
            stories++;
            continue;
        }
        if (ch < 0x20 || ch > 0x7e || ch == '{' || ch == '}')
            fail_msg("byte %zu: unexpected character 0x%02x", i, ch);
    }
    assert_true(stories > 1000);
    for (const char *v = "aeiou"; *v; v++) {
        char bad[5] = {' ', 'a', ' ', *v, 0};
        assert_null(strstr(a, bad));
    }
    assert_non_null(strstr(a, " an "));
    assert_null(strstr(a, "  "));
    assert_null(strstr(a, " ?"));
    /* far more predictable than its byte frequencies */
    double h0, h3;
    entropies((const unsigned char *)a, n1, 3, &h0, &h3);
    print_message("corpus: %zu stories, %zu bytes, unigram %.2f bits/byte, order-3 %.2f bits/byte\n", stories, n1, h0,
                  h3);
    assert_true(h0 > 3.5);
    assert_true(h3 < 0.5 * h0);
    /* too small */
    assert_int_equal(corpus_write(tpath("c4.txt"), 100, 1, &err), -EINVAL);
    assert_int_equal(access(tpath("c4.txt"), F_OK), -1);
    free(a);
    free(b);
    free(d);
    g_test_passed = true;
}

static void test_default_run(void **state)
{
    (void)state;
    rt_err err = {{0}};
    mkdir_ok(tpath("run"));
    char *corpus = strdup(tpath("run/corpus \"1\".txt"));
    if (corpus_write(corpus, 256u << 10, 0, &err) < 0)
        fail_msg("corpus_write: %s", err.msg);
    char buf[8192];
    int n = rc_default_yaml(corpus, buf, sizeof buf);
    assert_true(n > 0 && (size_t)n == strlen(buf));
    assert_int_equal(rc_default_yaml(corpus, buf, 64), -ENAMETOOLONG);
    n = rc_default_yaml(corpus, buf, sizeof buf);
    run_config *c = NULL;
    if (rc_load_text(buf, (size_t)n, "<default>", tpath("run"), NULL, 0, &c, &err) < 0)
        fail_msg("the default run: %s\n%s", err.msg, buf);
    assert_string_equal(c->origin, "<default>");
    assert_int_equal(c->model.vocab, 256);
    assert_int_equal(c->model.hidden, 256);
    assert_int_equal(c->model.n_layers, 4);
    assert_int_equal(c->model.intermediate, 688);
    assert_int_equal(c->model.n_heads, 8);
    assert_int_equal(c->model.n_kv_heads, 4);
    assert_int_equal(c->model.max_pos, 512);
    assert_true(c->model.tie_embeddings);
    uint64_t params = model_n_params(&c->model);
    assert_true(params > 2000000 && params < 5000000);
    assert_int_equal(c->steps, 300);
    assert_int_equal(c->batch_size, 8);
    assert_int_equal(c->seq_len, 128);
    assert_true(c->lr == 1e-3);
    assert_int_equal(c->schedule, RC_SCHED_COSINE);
    assert_int_equal(c->warmup, 20);
    assert_true(c->min_lr == 1e-4);
    assert_true(c->clip == 1.0);
    assert_int_equal(c->ckpt_every, 100);
    assert_int_equal(c->ckpt_keep, 2);
    const data_config *d = c->data;
    assert_int_equal(d->n_sources, 1);
    assert_string_equal(d->sources[0].path, corpus);
    assert_int_equal(d->sources[0].format, DATA_FMT_TEXT);
    assert_int_equal(d->sources[0].split, DATA_SPLIT_BLANK_LINES);
    assert_null(d->tokenizer);
    assert_true(d->shuffle);
    assert_int_equal(d->eos_id, 10);
    /* overrides apply to it as to a file */
    run_config *c2 = NULL;
    if (rc_load_text(buf, (size_t)n, "<default>", tpath("run"), SETS("train.steps=50"), &c2, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c2->steps, 50);
    rc_free(c2);
    /* its data, with the model's vocabulary: every id is a byte, stories end with "\n" */
    data_pipeline *p = NULL;
    data_open_opts opts = {.threads = 2, .vocab_size = c->model.vocab};
    if (data_open(d, NULL, &opts, &p, &err) < 0)
        fail_msg("data_open: %s", err.msg);
    const data_stats *st = data_get_stats(p);
    assert_true(st->documents > 300);
    assert_true(st->max_id < 256);
    int32_t *tokens = malloc(sizeof(int32_t) * 8 * 129);
    uint8_t *mask = malloc(8 * 128);
    assert_true(tokens != NULL && mask != NULL);
    data_batch_buf bb = {.tokens = tokens, .loss_mask = mask};
    int newlines = 0;
    for (uint64_t k = 0; k < 4; k++) {
        if (data_batch(p, k, &bb, &err) < 0)
            fail_msg("data_batch: %s", err.msg);
        for (int i = 0; i < 8 * 129; i++) {
            assert_true(tokens[i] >= 0 && tokens[i] < 256);
            newlines += tokens[i] == '\n';
        }
    }
    assert_true(newlines > 0);
    free(tokens);
    free(mask);
    data_close(p);
    /* and it round-trips like any config */
    free(round_trip(c, "run/default"));
    rc_free(c);
    free(corpus);
    g_test_passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_every_key, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_overrides, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_inline_model_config, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_write_round_trip, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_corpus, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_default_run, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

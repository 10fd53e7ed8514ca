/*
 * test_data: the data pipeline (services/dataloader/data.c) end to end, with
 * the built-in byte tokenizer: config parsing and its errors; the exact
 * no-shuffle rule on a u32 file; determinism across pipelines, thread
 * counts, chunk sizes, call order and concurrent callers; index reuse,
 * rebuild on touch and the read-only fallback; mixture proportions (a
 * chi-square test that fails when weights are ignored) and per-epoch
 * permutations; loss masks of every chat template on every input shape,
 * decoded span by span; document indices; llm.c .bin (uint16, uint32),
 * .u32 and .zst inputs; documents in corpus order (data_docs_foreach); and
 * every bad-input error with its message.
 *
 * Files live in a mkdtemp directory under /tmp, removed when every test
 * passed and kept (its path printed) when one failed.
 */
#define _GNU_SOURCE /* nftw, setenv */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>
#include <zstd.h>

#include "services/common/log.h"
#include "services/dataloader/data.h"
#include "services/dataloader/tokenizer.h"

static char g_dir[] = "/tmp/rt_test_data_XXXXXX";
static bool g_test_passed; /* set by the last line of each test */
static bool g_keep;        /* a test failed: keep g_dir */

#define BYTE_EOS 257
#define BYTE_BOS 256

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (flag == FTW_DP)
        chmod(path, 0755);
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    log_init("test_data", LOG_LEVEL_WARN);
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_keep) {
        fprintf(stderr, "test_data: a test failed; files kept in %s\n", g_dir);
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

/* g_dir/name (a per-test directory is just a name with a slash). */
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

static void mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", buf, strerror(errno));
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Compresses as the zstd command does: level 3, with the content checksum. */
static void write_zst(const char *path, const void *data, size_t len)
{
    size_t cap = ZSTD_compressBound(len);
    void *z = malloc(cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_non_null(z);
    assert_non_null(cc);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3)));
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)));
    size_t n = ZSTD_compress2(cc, z, cap, data, len);
    assert_false(ZSTD_isError(n));
    write_bytes(path, z, n);
    ZSTD_freeCCtx(cc);
    free(z);
}

static void write_u32(const char *path, const uint32_t *ids, size_t n) { write_bytes(path, ids, n * 4); }

/* An llm.c shard: header magic/version/count, then n ids of width bytes. */
static void write_llmc(const char *path, int32_t magic, int32_t version, int32_t count, const uint32_t *ids, size_t n,
                       int width, bool zst)
{
    size_t len = 1024 + n * (size_t)width;
    uint8_t *buf = calloc(1, len);
    assert_non_null(buf);
    int32_t hdr[3] = {magic, version, count};
    memcpy(buf, hdr, sizeof hdr);
    for (size_t i = 0; i < n; i++) {
        if (width == 2) {
            uint16_t v = (uint16_t)ids[i];
            memcpy(buf + 1024 + 2 * i, &v, 2);
        } else {
            memcpy(buf + 1024 + 4 * i, &ids[i], 4);
        }
    }
    if (zst)
        write_zst(path, buf, len);
    else
        write_bytes(path, buf, len);
    free(buf);
}

static void expect_msg(const rt_err *err, const char *n1, const char *n2)
{
    if (n1 && strstr(err->msg, n1) == NULL)
        fail_msg("error does not mention \"%s\": %s", n1, err->msg);
    if (n2 && strstr(err->msg, n2) == NULL)
        fail_msg("error does not mention \"%s\": %s", n2, err->msg);
}

static data_config *cfg_parse(const char *dir, const char *yaml)
{
    data_config *cfg = NULL;
    rt_err err = {{0}};
    int rc = data_config_from_string(yaml, strlen(yaml), "data.yaml", dir, &cfg, &err);
    if (rc != 0)
        fail_msg("config: %s\n%s", err.msg, yaml);
    return cfg;
}

/* Opens a pipeline from YAML text; fails the test on error. */
static data_pipeline *open_yaml(const char *dir, const char *yaml, const data_open_opts *opts)
{
    data_config *cfg = cfg_parse(dir, yaml);
    data_pipeline *p = NULL;
    rt_err err = {{0}};
    int rc = data_open(cfg, NULL, opts, &p, &err);
    data_config_free(cfg);
    if (rc != 0)
        fail_msg("data_open: %s\n%s", err.msg, yaml);
    return p;
}

/* Expects data_open of yaml to fail with an error mentioning n1 and n2. */
static void open_fails(const char *dir, const char *yaml, const data_open_opts *opts, const char *n1, const char *n2)
{
    data_config *cfg = cfg_parse(dir, yaml);
    data_pipeline *p = NULL;
    rt_err err = {{0}};
    int rc = data_open(cfg, NULL, opts, &p, &err);
    data_config_free(cfg);
    if (rc == 0) {
        data_close(p);
        fail_msg("data_open succeeded, expected an error mentioning \"%s\"\n%s", n1, yaml);
    }
    assert_true(rc < 0);
    assert_null(p);
    expect_msg(&err, n1, n2);
}

static void parse_fails(const char *yaml, const char *n1, const char *n2)
{
    data_config *cfg = NULL;
    rt_err err = {{0}};
    int rc = data_config_from_string(yaml, strlen(yaml), "data.yaml", g_dir, &cfg, &err);
    if (rc == 0) {
        data_config_free(cfg);
        fail_msg("config parsed, expected an error mentioning \"%s\"\n%s", n1, yaml);
    }
    assert_null(cfg);
    expect_msg(&err, n1, n2);
}

typedef struct batch {
    int64_t B, T;
    int32_t *tokens;
    uint8_t *mask;
    uint32_t *doc, *source;
    data_batch_buf buf;
} batch;

static void batch_alloc(batch *b, const data_pipeline *p)
{
    const data_stats *st = data_get_stats(p);
    b->B = st->batch_rows;
    b->T = st->seq_len;
    size_t n1 = (size_t)(b->B * (b->T + 1)), n0 = (size_t)(b->B * b->T);
    b->tokens = malloc(n1 * sizeof *b->tokens);
    b->mask = malloc(n0);
    b->doc = malloc(n1 * sizeof *b->doc);
    b->source = malloc((size_t)b->B * sizeof *b->source);
    assert_non_null(b->tokens);
    assert_non_null(b->mask);
    assert_non_null(b->doc);
    assert_non_null(b->source);
    /* poison: every element must be written */
    memset(b->tokens, 0xa5, n1 * sizeof *b->tokens);
    memset(b->mask, 0xa5, n0);
    memset(b->doc, 0xa5, n1 * sizeof *b->doc);
    b->buf = (data_batch_buf){.tokens = b->tokens, .loss_mask = b->mask, .doc = b->doc, .source = b->source};
}

static void batch_free(batch *b)
{
    free(b->tokens);
    free(b->mask);
    free(b->doc);
    free(b->source);
}

static void get_batch(const data_pipeline *p, uint64_t k, batch *b)
{
    rt_err err = {{0}};
    int rc = data_batch(p, k, &b->buf, &err);
    if (rc != 0)
        fail_msg("data_batch(%llu): %s", (unsigned long long)k, err.msg);
}

static bool batch_equal(const batch *a, const batch *b)
{
    size_t n1 = (size_t)(a->B * (a->T + 1)), n0 = (size_t)(a->B * a->T);
    return a->B == b->B && a->T == b->T && memcmp(a->tokens, b->tokens, n1 * 4) == 0 &&
           memcmp(a->mask, b->mask, n0) == 0 && memcmp(a->doc, b->doc, n1 * 4) == 0 &&
           memcmp(a->source, b->source, (size_t)a->B * 4) == 0;
}

/* Byte-tokenizer ids as text: bytes as themselves, 256/257/258 by name. */
static void decode(const int32_t *ids, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[16];
        const char *s = tmp;
        if (ids[i] >= 0 && ids[i] < 256) {
            tmp[0] = (char)ids[i];
            tmp[1] = '\0';
        } else if (ids[i] == BYTE_BOS) {
            s = "<|bos|>";
        } else if (ids[i] == BYTE_EOS) {
            s = "<|eos|>";
        } else {
            snprintf(tmp, sizeof tmp, "<#%d>", ids[i]);
        }
        size_t l = strlen(s);
        assert_true(k + l < cap);
        memcpy(out + k, s, l);
        k += l;
    }
    out[k] = '\0';
}

static uint64_t g_count;
static char g_found[4096];
static int count_idx(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".idx") == 0) {
        g_count++;
        snprintf(g_found, sizeof g_found, "%s", path);
    }
    if (flag == FTW_F && strstr(path, ".idx.") != NULL)
        fail_msg("temporary index file left behind: %s", path);
    return 0;
}

/* Number of index files under dir (the last one found in g_found). */
static uint64_t count_index_files(const char *dir)
{
    g_count = 0;
    g_found[0] = '\0';
    nftw(dir, count_idx, 16, FTW_PHYS);
    return g_count;
}

/* ---- config ------------------------------------------------------------------- */

static void test_config_parse(void **state)
{
    (void)state;
    const char *yaml = "# a data config\n"
                       "tokenizer: null\n"
                       "seq_len: 128\n"
                       "batch_rows: 4\n"
                       "seed: 18446744073709551615\n"
                       "shuffle: false\n"
                       "mask_doc_attention: yes\n"
                       "on_bad_line: skip\n"
                       "add_bos: true\n"
                       "add_eos: false\n"
                       "eos_id: 7\n"
                       "cache_dir: cache\n"
                       "sources:\n"
                       "  - path: a/*.jsonl\n"
                       "    text_field: body\n"
                       "    weight: 0.25\n"
                       "  - {path: chats, format: sharegpt, chat_format: chatml, weight: 3}\n"
                       "  - path: books\n"
                       "    format: text\n"
                       "    split: blank_lines\n"
                       "    weight: 1e-3\n";
    data_config *cfg = cfg_parse("/base", yaml);
    assert_null(cfg->tokenizer);
    assert_int_equal(cfg->seq_len, 128);
    assert_int_equal(cfg->batch_rows, 4);
    assert_true(cfg->seed == UINT64_MAX);
    assert_false(cfg->shuffle);
    assert_true(cfg->mask_doc_attention);
    assert_true(cfg->skip_bad_lines);
    assert_true(cfg->add_bos);
    assert_false(cfg->add_eos);
    assert_int_equal(cfg->eos_id, 7);
    assert_string_equal(cfg->cache_dir, "cache");
    assert_string_equal(cfg->base_dir, "/base");
    assert_int_equal(cfg->n_sources, 3);
    assert_string_equal(cfg->sources[0].path, "a/*.jsonl");
    assert_int_equal(cfg->sources[0].format, DATA_FMT_AUTO);
    assert_string_equal(cfg->sources[0].text_field, "body");
    assert_true(cfg->sources[0].weight == 0.25);
    assert_int_equal(cfg->sources[0].line, 14);
    assert_int_equal(cfg->sources[1].format, DATA_FMT_SHAREGPT);
    assert_int_equal(cfg->sources[1].chat_format, DATA_CHAT_CHATML);
    assert_true(cfg->sources[1].weight == 3);
    assert_int_equal(cfg->sources[2].format, DATA_FMT_TEXT);
    assert_int_equal(cfg->sources[2].split, DATA_SPLIT_BLANK_LINES);
    data_config_free(cfg);

    /* defaults */
    cfg = cfg_parse(g_dir, "seq_len: 8\nbatch_rows: 2\nsources: [{path: x.txt}]\n");
    assert_true(cfg->shuffle);
    assert_true(cfg->add_eos);
    assert_false(cfg->add_bos);
    assert_false(cfg->skip_bad_lines);
    assert_false(cfg->mask_doc_attention);
    assert_int_equal(cfg->eos_id, -1);
    assert_true(cfg->sources[0].weight == 0);
    data_config_free(cfg);

    /* from a file: relative paths against its directory, messages name it */
    mkdirs(tpath("cfg"));
    write_text(tpath("cfg/data.yaml"), "seq_len: 8\nbatch_rows: 2\nsources:\n  - path: x.txt\n");
    rt_err err = {{0}};
    assert_int_equal(data_config_load(tpath("cfg/data.yaml"), &cfg, &err), 0);
    assert_string_equal(cfg->base_dir, tpath("cfg"));
    assert_string_equal(cfg->origin, tpath("cfg/data.yaml"));
    data_config_free(cfg);
    write_text(tpath("cfg/bad.yaml"), "seq_len: 8\nbatch_rows: 2\nsources:\n  - path: x.txt\n    format: csv\n");
    assert_int_equal(data_config_load(tpath("cfg/bad.yaml"), &cfg, &err), -EINVAL);
    expect_msg(&err, "cfg/bad.yaml:5: sources[0].format: \"csv\" is not one of text, jsonl, alpaca, sharegpt, "
                     "messages, llmc, u32", NULL);
    assert_int_equal(data_config_load(tpath("cfg/none.yaml"), &cfg, &err), -ENOENT);
    expect_msg(&err, "cfg/none.yaml", "cannot open");

    /* embedded in a larger document: key prefix in messages */
    const char *run = "model: x\n"
                      "data:\n"
                      "  seq_len: 16\n"
                      "  batch_rows: 2\n"
                      "  sources:\n"
                      "    - path: a.txt\n"
                      "    - path: b.txt\n"
                      "      format: csv\n";
    yaml_parser_t parser;
    yaml_document_t doc;
    assert_true(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)run, strlen(run));
    assert_true(yaml_parser_load(&parser, &doc));
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *data = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++)
        if (strcmp((char *)yaml_document_get_node(&doc, pr->key)->data.scalar.value, "data") == 0)
            data = yaml_document_get_node(&doc, pr->value);
    assert_non_null(data);
    assert_int_equal(data_config_from_yaml_node(&doc, data, "run.yaml", "/r", "data", &cfg, &err), -EINVAL);
    expect_msg(&err, "run.yaml:8: data.sources[1].format: \"csv\" is not one of text, jsonl", NULL);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);

    /* errors: each names the file, line and key */
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n  - path: b\n    format: csv\n",
                "data.yaml:6: sources[1].format: \"csv\" is not one of text, jsonl, alpaca, sharegpt, messages, "
                "llmc, u32", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nshufle: true\nsources: [{path: a}]\n", "data.yaml:3: shufle: unknown key",
                "shuffle");
    parse_fails("batch_rows: 2\nsources: [{path: a}]\n", "seq_len: missing", NULL);
    parse_fails("seq_len: 8\nsources: [{path: a}]\n", "batch_rows: missing", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\n", "sources: missing", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources: []\n", "data.yaml:3: sources: is empty", NULL);
    parse_fails("seq_len: 0\nbatch_rows: 2\nsources: [{path: a}]\n", "data.yaml:1: seq_len: 0 is out of range", NULL);
    parse_fails("seq_len: 8x\nbatch_rows: 2\nsources: [{path: a}]\n", "seq_len: \"8x\" is not an integer", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nshuffle: maybe\nsources: [{path: a}]\n",
                "data.yaml:3: shuffle: \"maybe\" is not true or false", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\non_bad_line: ignore\nsources: [{path: a}]\n",
                "on_bad_line: \"ignore\" is not one of skip, fail", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    weight: 2\n  - path: b\n",
                "sources[1].weight: missing (line 6)", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    weight: -1\n",
                "data.yaml:5: sources[0].weight: -1 is not positive", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - format: text\n", "data.yaml:4: sources[0]: has no path",
                NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    text_field: t\n    format: u32\n",
                "sources[0].text_field: only applies to format jsonl", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    format: jsonl\n    chat_format: llama3\n",
                "sources[0].chat_format: only applies to formats alpaca, sharegpt and messages", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    chat_format: vicuna\n",
                "sources[0].chat_format: \"vicuna\" is not one of llama3, chatml, alpaca", NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n    pth: b\n",
                "data.yaml:5: sources[0].pth: unknown key", NULL);
    parse_fails("seq_len: 8\nseq_len: 9\nbatch_rows: 2\nsources: [{path: a}]\n", "data.yaml:2: seq_len: given twice",
                NULL);
    parse_fails("seq_len: [8]\nbatch_rows: 2\nsources: [{path: a}]\n", "seq_len: is a list, expected an integer",
                NULL);
    parse_fails("seq_len: 8\nbatch_rows: 2\nsources:\n  - path: a\n   bad: indent\n", "data.yaml:5: YAML syntax error",
                NULL);
    parse_fails("", "empty document", NULL);
    parse_fails("- 1\n- 2\n", "data.yaml:1: is a list, expected a mapping", NULL);
    g_test_passed = true;
}

/* ---- the exact rule ------------------------------------------------------------- */

static uint32_t u32_id(uint64_t i) { return (uint32_t)((i * 7919 + 13) % 65521); }

static void test_u32_exact_rule(void **state)
{
    (void)state;
    mkdirs(tpath("exact"));
    enum { N = 5003, T = 16, B = 4 };
    uint32_t *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    for (uint64_t i = 0; i < N; i++)
        ids[i] = u32_id(i);
    write_u32(tpath("exact/tokens.u32"), ids, N);
    data_open_opts o = {.vocab_size = 65536};
    data_pipeline *p = open_yaml(tpath("exact"),
                                 "seq_len: 16\nbatch_rows: 4\nshuffle: false\nsources:\n  - path: tokens.u32\n", &o);
    const data_stats *st = data_get_stats(p);
    uint64_t rows = (N - 2) / T + 1; /* ceil((N - 1) / T): the last row is padded */
    assert_int_equal(st->rows, rows);
    assert_int_equal(st->tokens, N);
    assert_int_equal(st->n_sources, 1);
    assert_int_equal(st->sources[0].rows, rows);
    assert_true(st->sources[0].share == 1.0);
    assert_int_equal(st->eos_id, BYTE_EOS);
    batch b;
    batch_alloc(&b, p);
    uint64_t n_batches = rows / B + 3; /* into the second epoch */
    for (uint64_t k = 0; k < n_batches; k++) {
        get_batch(p, k, &b);
        for (uint64_t r = 0; r < B; r++) {
            uint64_t g = k * B + r, row = g % rows;
            assert_int_equal(b.source[r], 0);
            for (uint64_t t = 0; t <= T; t++) {
                uint64_t pos = row * T + t;
                int32_t want = pos < N ? (int32_t)ids[pos] : BYTE_EOS;
                if (b.tokens[r * (T + 1) + t] != want)
                    fail_msg("batch %llu row %llu token %llu: %d, expected %d (stream position %llu)",
                             (unsigned long long)k, (unsigned long long)r, (unsigned long long)t,
                             b.tokens[r * (T + 1) + t], want, (unsigned long long)pos);
                if (t < T)
                    assert_int_equal(b.mask[r * T + t], pos + 1 < N ? 1 : 0);
                /* no EOS in the data: one document, padding its own */
                assert_int_equal(b.doc[r * (T + 1) + t], pos < N ? 0 : 1);
            }
        }
    }
    /* the rule itself, on the first batches, as the issue states it */
    get_batch(p, 3, &b);
    for (uint64_t r = 0; r < B; r++)
        assert_memory_equal(b.tokens + r * (T + 1), ids + (3 * B + r) * T, (T + 1) * 4);
    uint32_t s;
    uint64_t row, ep;
    data_row_locate(p, rows + 5, &s, &row, &ep);
    assert_int_equal(s, 0);
    assert_int_equal(row, 5);
    assert_int_equal(ep, 1);
    batch_free(&b);
    data_close(p);

    /* raw ids: documents end at eos_id */
    uint32_t small[10] = {5, 6, 99, 7, 8, 9, 99, 99, 10, 11};
    write_u32(tpath("exact/docs.u32"), small, 10);
    p = open_yaml(tpath("exact"), "seq_len: 9\nbatch_rows: 1\nshuffle: false\neos_id: 99\nsources: [{path: docs.u32}]\n",
                  &o);
    assert_int_equal(data_get_stats(p)->documents, 4);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    static const uint32_t want_doc[10] = {0, 0, 0, 1, 1, 1, 1, 2, 3, 3};
    assert_memory_equal(b.doc, want_doc, sizeof want_doc);
    for (int t = 0; t < 9; t++)
        assert_int_equal(b.mask[t], 1);
    batch_free(&b);
    data_close(p);
    free(ids);
    g_test_passed = true;
}

/* ---- determinism ------------------------------------------------------------------ */

/* A jsonl file of n documents of pseudo-random lengths and bytes. */
static void write_corpus(const char *path, int n, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int len = 1 + (int)((x >> 33) % 200);
        fputs("{\"id\": ", f);
        fprintf(f, "%d, \"text\": \"", i);
        for (int j = 0; j < len; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int c = 'a' + (int)((x >> 40) % 26);
            if ((x >> 20) % 11 == 0)
                fputs("\\n", f);
            else if ((x >> 24) % 13 == 0)
                fputs("\\u00e9", f);
            else
                fputc(c, f);
        }
        fputs("\"}\n", f);
        if (i % 97 == 0)
            fputs("\n", f); /* blank lines are ignored */
    }
    fclose(f);
}

static void test_determinism(void **state)
{
    (void)state;
    mkdirs(tpath("det"));
    write_corpus(tpath("det/a.jsonl"), 3000, 1);
    write_corpus(tpath("det/b.jsonl"), 1000, 2);
    const char *fmt = "seq_len: 64\nbatch_rows: 3\nseed: 1234\ncache_dir: %s\nsources:\n"
                      "  - {path: a.jsonl, weight: 2}\n  - {path: b.jsonl, weight: 1}\n";
    char yaml[1024];
    snprintf(yaml, sizeof yaml, fmt, "cache1");
    data_open_opts o1 = {.threads = 1, .build_chunk_bytes = 1 << 20};
    data_pipeline *p1 = open_yaml(tpath("det"), yaml, &o1);
    assert_int_equal(data_get_stats(p1)->files_indexed, 2);
    snprintf(yaml, sizeof yaml, fmt, "cache4");
    data_open_opts o4 = {.threads = 4, .build_chunk_bytes = 3000}; /* many chunks, each split 4 ways */
    data_pipeline *p4 = open_yaml(tpath("det"), yaml, &o4);
    assert_int_equal(data_get_stats(p4)->files_indexed, 2);
    assert_int_equal(data_get_stats(p1)->tokens, data_get_stats(p4)->tokens);
    assert_int_equal(data_get_stats(p1)->documents, 4000);
    assert_int_equal(data_get_stats(p4)->documents, 4000);

    /* the index files are the same bytes */
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", i ? "b" : "a");
        char c1[4096], c4[4096];
        assert_int_equal(count_index_files(tpath("det/cache1")), 2);
        /* cache_dir/<directory hash>/<name>.<options hash>.idx */
        DIR *d;
        struct dirent *e;
        c1[0] = c4[0] = '\0';
        for (int which = 0; which < 2; which++) {
            const char *root = tpath(which ? "det/cache4" : "det/cache1");
            d = opendir(root);
            assert_non_null(d);
            char sub[4096] = "";
            while ((e = readdir(d)) != NULL)
                if (e->d_name[0] != '.')
                    snprintf(sub, sizeof sub, "%s/%s", root, e->d_name);
            closedir(d);
            d = opendir(sub);
            assert_non_null(d);
            while ((e = readdir(d)) != NULL)
                if (strncmp(e->d_name, name, strlen(name)) == 0)
                    snprintf(which ? c4 : c1, 4096, "%s/%s", sub, e->d_name);
            closedir(d);
        }
        assert_true(c1[0] && c4[0]);
        size_t l1, l4;
        uint8_t *b1 = read_all(c1, &l1), *b4 = read_all(c4, &l4);
        assert_int_equal(l1, l4);
        assert_memory_equal(b1, b4, l1);
        free(b1);
        free(b4);
    }

    /* batch k: the same across pipelines, in any order, and differs across k */
    batch a, b;
    batch_alloc(&a, p1);
    batch_alloc(&b, p4);
    get_batch(p1, 5, &a);
    get_batch(p1, 2, &a); /* random order: 5 before 2 */
    get_batch(p4, 2, &b);
    assert_true(batch_equal(&a, &b));
    get_batch(p1, 5, &a);
    get_batch(p4, 5, &b);
    assert_true(batch_equal(&a, &b));
    get_batch(p4, 6, &b);
    assert_false(batch_equal(&a, &b));
    for (uint64_t k = 0; k < 200; k += 7) {
        get_batch(p1, k, &a);
        get_batch(p4, k, &b);
        if (!batch_equal(&a, &b))
            fail_msg("batch %llu differs between the two pipelines", (unsigned long long)k);
    }
    /* a reopened pipeline (from the cache) agrees too */
    data_pipeline *p1b = open_yaml(tpath("det"), yaml, &o4);
    assert_int_equal(data_get_stats(p1b)->files_indexed, 0);
    get_batch(p1b, 123456789, &a);
    get_batch(p1, 123456789, &b);
    assert_true(batch_equal(&a, &b));
    data_close(p1b);

    /* another seed gives another order */
    snprintf(yaml, sizeof yaml, "seq_len: 64\nbatch_rows: 3\nseed: 1235\ncache_dir: cache1\nsources:\n"
                                "  - {path: a.jsonl, weight: 2}\n  - {path: b.jsonl, weight: 1}\n");
    data_pipeline *p2 = open_yaml(tpath("det"), yaml, &o1);
    assert_int_equal(data_get_stats(p2)->files_indexed, 0); /* the seed does not touch the index */
    get_batch(p2, 0, &a);
    get_batch(p1, 0, &b);
    assert_false(batch_equal(&a, &b));
    data_close(p2);
    batch_free(&a);
    batch_free(&b);
    data_close(p1);
    data_close(p4);
    g_test_passed = true;
}

typedef struct conc_arg {
    const data_pipeline *p;
    uint64_t k0;
    int rc;
    uint8_t *digest; /* per batch: tokens, masks and docs concatenated */
    size_t per;
} conc_arg;

static void *conc_run(void *v)
{
    conc_arg *a = v;
    batch b;
    const data_stats *st = data_get_stats(a->p);
    size_t n1 = (size_t)(st->batch_rows * (st->seq_len + 1)), n0 = (size_t)(st->batch_rows * st->seq_len);
    b.tokens = malloc(n1 * 4);
    b.mask = malloc(n0);
    b.doc = malloc(n1 * 4);
    b.buf = (data_batch_buf){.tokens = b.tokens, .loss_mask = b.mask, .doc = b.doc};
    for (uint64_t i = 0; i < 20 && a->rc == 0; i++) {
        rt_err err;
        a->rc = data_batch(a->p, a->k0 + i, &b.buf, &err);
        uint8_t *d = a->digest + i * a->per;
        memcpy(d, b.tokens, n1 * 4);
        memcpy(d + n1 * 4, b.mask, n0);
        memcpy(d + n1 * 4 + n0, b.doc, n1 * 4);
    }
    free(b.tokens);
    free(b.mask);
    free(b.doc);
    return NULL;
}

static void test_concurrent_batches(void **state)
{
    (void)state;
    mkdirs(tpath("conc"));
    write_corpus(tpath("conc/c.jsonl"), 500, 3);
    data_pipeline *p = open_yaml(tpath("conc"), "seq_len: 32\nbatch_rows: 2\nsources: [{path: c.jsonl}]\n", NULL);
    const data_stats *st = data_get_stats(p);
    size_t per = (size_t)(st->batch_rows * (st->seq_len + 1)) * 8 + (size_t)(st->batch_rows * st->seq_len);
    enum { NT = 4 };
    conc_arg args[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (conc_arg){.p = p, .k0 = 100, .per = per, .digest = malloc(per * 20)};
        assert_int_equal(pthread_create(&th[i], NULL, conc_run, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) {
        assert_int_equal(args[i].rc, 0);
        assert_memory_equal(args[i].digest, args[0].digest, per * 20);
    }
    for (int i = 0; i < NT; i++)
        free(args[i].digest);
    data_close(p);
    g_test_passed = true;
}

/* ---- index files ----------------------------------------------------------------- */

static void test_cache_reuse(void **state)
{
    (void)state;
    mkdirs(tpath("cache/data"));
    write_corpus(tpath("cache/data/x.jsonl"), 200, 4);
    write_text(tpath("cache/data/y.txt"), "plain text document\n");
    uint32_t raw[100];
    for (int i = 0; i < 100; i++)
        raw[i] = (uint32_t)i;
    write_u32(tpath("cache/data/z.u32"), raw, 100);
    const char *yaml = "seq_len: 16\nbatch_rows: 2\nsources:\n  - path: data\n";
    data_open_opts o = {.vocab_size = 300};
    data_pipeline *p = open_yaml(tpath("cache"), yaml, &o);
    const data_stats *st = data_get_stats(p);
    assert_int_equal(st->files, 3);
    assert_int_equal(st->files_indexed, 3);
    assert_int_equal(count_index_files(tpath("cache/data/.ramtrain-cache")), 3);
    batch b0, b1;
    batch_alloc(&b0, p);
    batch_alloc(&b1, p);
    get_batch(p, 1, &b0);
    data_close(p);

    /* the second open rebuilds nothing and gives the same batches */
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 0);
    get_batch(p, 1, &b1);
    assert_true(batch_equal(&b0, &b1));
    data_close(p);

    /* touching a file rebuilds its index only */
    struct timespec ts[2] = {{.tv_sec = 1700000000, .tv_nsec = 0}, {.tv_sec = 1700000000, .tv_nsec = 0}};
    assert_int_equal(utimensat(AT_FDCWD, tpath("cache/data/x.jsonl"), ts, 0), 0);
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    assert_int_equal(data_get_stats(p)->sources[0].files_indexed, 1);
    get_batch(p, 1, &b1);
    assert_true(batch_equal(&b0, &b1)); /* same content, same stream */
    data_close(p);
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 0);
    data_close(p);

    /* changed content (same size, new mtime): rebuilt, and the batch follows it */
    write_text(tpath("cache/data/y.txt"), "PLAIN TEXT DOCUMENT\n");
    p = open_yaml(tpath("cache"), "seq_len: 16\nbatch_rows: 2\nshuffle: false\nsources:\n  - path: data/y.txt\n", &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    get_batch(p, 0, &b1);
    assert_int_equal(b1.tokens[0], 'P');
    assert_int_equal(b1.tokens[1], 'L');
    data_close(p);

    /* a size change with the mtime put back: rebuilt (a raw file's index too) */
    struct stat zst;
    assert_int_equal(stat(tpath("cache/data/z.u32"), &zst), 0);
    raw[99] = 7;
    write_u32(tpath("cache/data/z.u32"), raw, 99);
    struct timespec back[2] = {zst.st_atim, zst.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, tpath("cache/data/z.u32"), back, 0), 0);
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    data_close(p);

    /* a corrupt index (truncated) is rebuilt, not trusted */
    uint64_t n = count_index_files(tpath("cache/data/.ramtrain-cache"));
    assert_true(n >= 3);
    char victim[4096] = "";
    DIR *d = opendir(tpath("cache/data/.ramtrain-cache"));
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "x.jsonl.", 8) == 0)
            snprintf(victim, sizeof victim, "%s/%s", tpath("cache/data/.ramtrain-cache"), e->d_name);
    closedir(d);
    assert_true(victim[0] != '\0');
    assert_int_equal(truncate(victim, 5000), 0);
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    get_batch(p, 1, &b1);
    data_close(p);
    /* a flipped header byte too */
    int fd = open(victim, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, 60), 1);
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, 60), 1);
    close(fd);
    p = open_yaml(tpath("cache"), yaml, &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    data_close(p);

    /* other format options: another index beside the first */
    p = open_yaml(tpath("cache"), "seq_len: 16\nbatch_rows: 2\nadd_bos: true\nsources:\n  - path: data/x.jsonl\n", &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    data_close(p);
    p = open_yaml(tpath("cache"), "seq_len: 16\nbatch_rows: 2\nadd_bos: true\nsources:\n  - path: data/x.jsonl\n", &o);
    assert_int_equal(data_get_stats(p)->files_indexed, 0);
    data_close(p);
    batch_free(&b0);
    batch_free(&b1);
    g_test_passed = true;
}

static void test_cache_fallback(void **state)
{
    (void)state;
    mkdirs(tpath("ro/data"));
    mkdirs(tpath("ro/xdg"));
    write_text(tpath("ro/data/doc.txt"), "some text to index\n");
    /* the data directory cannot hold .ramtrain-cache: a file is in the way
     * (works as root too, unlike a read-only mode) */
    write_text(tpath("ro/data/.ramtrain-cache"), "not a directory");
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    assert_int_equal(setenv("XDG_CACHE_HOME", tpath("ro/xdg"), 1), 0);
    const char *yaml = "seq_len: 8\nbatch_rows: 1\nsources: [{path: data/doc.txt}]\n";
    data_pipeline *p = open_yaml(tpath("ro"), yaml, NULL);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    data_close(p);
    assert_int_equal(count_index_files(tpath("ro/xdg/ramtrain/data")), 1);
    p = open_yaml(tpath("ro"), yaml, NULL);
    assert_int_equal(data_get_stats(p)->files_indexed, 0);
    data_close(p);

    /* a read-only directory (when permissions apply to us) */
    mkdirs(tpath("ro/rodata"));
    write_text(tpath("ro/rodata/doc.txt"), "read-only text\n");
    assert_int_equal(chmod(tpath("ro/rodata"), 0555), 0);
    bool enforced = access(tpath("ro/rodata"), W_OK) != 0;
    p = open_yaml(tpath("ro"), "seq_len: 8\nbatch_rows: 1\nsources: [{path: rodata/doc.txt}]\n", NULL);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    data_close(p);
    if (enforced)
        assert_int_equal(count_index_files(tpath("ro/xdg/ramtrain/data")), 2);
    else
        fprintf(stderr, "test_data: running as root: the read-only directory case is covered by the blocked one\n");
    assert_int_equal(chmod(tpath("ro/rodata"), 0755), 0);
    if (old) {
        setenv("XDG_CACHE_HOME", old, 1);
        free(old);
    } else {
        unsetenv("XDG_CACHE_HOME");
    }
    g_test_passed = true;
}

/* ---- mixture ------------------------------------------------------------------------ */

static double chi_square(const uint64_t *count, const double *p, int n, uint64_t total)
{
    double x2 = 0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * (double)total;
        x2 += ((double)count[i] - e) * ((double)count[i] - e) / e;
    }
    return x2;
}

static void test_mixture(void **state)
{
    (void)state;
    mkdirs(tpath("mix"));
    /* three sources with very different sizes: weights must override size */
    uint32_t *ids = malloc(200000 * sizeof *ids);
    for (int i = 0; i < 200000; i++)
        ids[i] = (uint32_t)(i % 250);
    write_u32(tpath("mix/big.u32"), ids, 200000);
    write_u32(tpath("mix/mid.u32"), ids, 20000);
    write_u32(tpath("mix/small.u32"), ids, 3000);
    data_open_opts o = {.vocab_size = 300};
    const double w[3] = {0.2, 0.5, 0.3};
    uint8_t order[2][10000]; /* source of each global row, without and with shuffle */
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 "seq_len: 32\nbatch_rows: 10\nseed: 99\nshuffle: %s\nsources:\n"
                 "  - {path: big.u32, weight: 2}\n  - {path: mid.u32, weight: 5}\n  - {path: small.u32, weight: 3}\n",
                 shuffle ? "true" : "false");
        data_pipeline *p = open_yaml(tpath("mix"), yaml, &o);
        const data_stats *st = data_get_stats(p);
        for (int s = 0; s < 3; s++)
            assert_true(fabs(st->sources[s].share - w[s]) < 1e-4);
        batch b;
        batch_alloc(&b, p);
        uint64_t count[3] = {0}, n = 0;
        uint64_t *seen[3];
        uint64_t rows[3];
        for (int s = 0; s < 3; s++) {
            rows[s] = st->sources[s].rows;
            seen[s] = calloc(rows[s], sizeof *seen[s]);
        }
        uint64_t draws[3] = {0};
        for (uint64_t k = 0; k < 1000; k++) { /* 10,000 rows */
            get_batch(p, k, &b);
            for (int r = 0; r < 10; r++, n++) {
                uint32_t s;
                uint64_t row, ep;
                data_row_locate(p, n, &s, &row, &ep);
                assert_int_equal(s, b.source[r]);
                order[shuffle][n] = (uint8_t)s;
                count[s]++;
                /* a source's draws go epoch after epoch, each row once per epoch */
                assert_int_equal(ep, draws[s] / rows[s]);
                if (ep == 0) {
                    assert_int_equal(seen[s][row], 0);
                    seen[s][row] = 1;
                }
                if (!shuffle)
                    assert_int_equal(row, draws[s] % rows[s]); /* in order without shuffle */
                draws[s]++;
                /* the row's tokens are the source's stream at row·T */
                assert_int_equal(b.tokens[r * 33], (int32_t)((row * 32) % 250));
            }
        }
        double x2 = chi_square(count, w, 3, n);
        const double uniform[3] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
        const double by_size[3] = {200000.0 / 223000, 20000.0 / 223000, 3000.0 / 223000};
        /* 13.82: chi-square, 2 degrees of freedom, p = 0.001 */
        if (x2 > 13.82)
            fail_msg("shuffle %d: counts %llu %llu %llu do not fit weights 0.2 0.5 0.3 (chi-square %.2f)", shuffle,
                     (unsigned long long)count[0], (unsigned long long)count[1], (unsigned long long)count[2], x2);
        /* the same test rejects what ignoring the weights would give */
        assert_true(chi_square(count, uniform, 3, n) > 100);
        assert_true(chi_square(count, by_size, 3, n) > 100);
        if (!shuffle) /* round robin: every prefix within a row or two per source */
            for (int s = 0; s < 3; s++)
                assert_true(fabs((double)count[s] - w[s] * (double)n) <= 2);
        /* epoch 0 of the small source (94 rows) was read completely: a permutation */
        uint64_t covered = 0;
        for (uint64_t i = 0; i < rows[2]; i++)
            covered += seen[2][i];
        assert_int_equal(covered, rows[2]);
        for (int s = 0; s < 3; s++)
            free(seen[s]);
        batch_free(&b);
        data_close(p);
    }
    /* shuffled, the sources come in a seeded random order, not the round robin's: runs of one source are
     * as long as chance makes them (with p = 0.5 a run of 8 happens in 10,000 draws), and another seed
     * gives another order */
    uint64_t differ = 0, longest[2] = {0};
    for (int v = 0; v < 2; v++)
        for (uint64_t i = 0, run = 0; i < 10000; i++) {
            run = i > 0 && order[v][i] == order[v][i - 1] ? run + 1 : 1;
            if (run > longest[v])
                longest[v] = run;
        }
    for (uint64_t i = 0; i < 10000; i++)
        differ += order[0][i] != order[1][i];
    assert_true(differ > 3000);
    assert_true(longest[0] <= 2);
    assert_true(longest[1] >= 6);
    data_pipeline *ps = open_yaml(tpath("mix"), "seq_len: 32\nbatch_rows: 10\nseed: 100\nsources:\n"
                                                "  - {path: big.u32, weight: 2}\n  - {path: mid.u32, weight: 5}\n"
                                                "  - {path: small.u32, weight: 3}\n", &o);
    differ = 0;
    for (uint64_t i = 0; i < 10000; i++) {
        uint32_t s;
        uint64_t row, ep;
        data_row_locate(ps, i, &s, &row, &ep);
        differ += s != order[1][i];
    }
    assert_true(differ > 3000);
    data_close(ps);

    /* without weights: shares follow the sources' sizes */
    data_pipeline *p = open_yaml(tpath("mix"), "seq_len: 32\nbatch_rows: 10\nsources:\n  - {path: big.u32}\n"
                                               "  - {path: small.u32}\n", &o);
    const data_stats *st = data_get_stats(p);
    double r0 = (double)st->sources[0].rows, r1 = (double)st->sources[1].rows;
    assert_true(fabs(st->sources[0].share - r0 / (r0 + r1)) < 1e-4);
    data_close(p);

    /* one source, shuffled: each epoch a permutation, a different one each epoch */
    p = open_yaml(tpath("mix"), "seq_len: 32\nbatch_rows: 1\nseed: 5\nsources: [{path: small.u32}]\n", &o);
    uint64_t rows = data_get_stats(p)->rows;
    uint64_t *perm0 = calloc(rows, sizeof *perm0), *perm1 = calloc(rows, sizeof *perm1);
    uint8_t *hit = calloc(rows, 1);
    for (int e = 0; e < 2; e++) {
        memset(hit, 0, rows);
        for (uint64_t i = 0; i < rows; i++) {
            uint32_t s;
            uint64_t row, ep;
            data_row_locate(p, (uint64_t)e * rows + i, &s, &row, &ep);
            assert_int_equal(ep, e);
            assert_true(row < rows);
            assert_int_equal(hit[row], 0);
            hit[row] = 1;
            (e ? perm1 : perm0)[i] = row;
        }
    }
    assert_memory_not_equal(perm0, perm1, rows * sizeof *perm0);
    uint64_t fixed = 0;
    for (uint64_t i = 0; i < rows; i++)
        fixed += perm0[i] == i;
    assert_true(fixed < rows / 4); /* shuffled, not the identity */
    free(perm0);
    free(perm1);
    free(hit);
    data_close(p);
    free(ids);
    g_test_passed = true;
}

/* ---- chat templates and loss masks ----------------------------------------------------- */

typedef struct chat_case {
    const char *shape, *chat;
    const char *full[2];     /* rendered documents, separators included */
    const char *spans[2][3]; /* their trained spans, in order */
} chat_case;

static const char k_sharegpt[] =
    "{\"conversations\": [{\"from\": \"system\", \"value\": \"Be brief.\"}, {\"from\": \"human\", \"value\": \"Hi\"}, "
    "{\"from\": \"gpt\", \"value\": \"Hello!\"}, {\"from\": \"human\", \"value\": \"2+2?\"}, "
    "{\"from\": \"gpt\", \"value\": \" 4 \"}]}\n";
static const char k_messages[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
    "{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"Hel\"}, {\"type\": \"text\", \"text\": "
    "\"lo!\"}]}, {\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \" 4 \"}]}\n";
static const char k_alpaca[] = "{\"instruction\": \"Add\", \"input\": \"2+2\", \"output\": \"4\"}\n"
                               "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\n";

#define L3H(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"
#define ALP_IN                                                                                                 \
    "Below is an instruction that describes a task, paired with an input that provides further context. Write " \
    "a response that appropriately completes the request.\n\n"
#define ALP "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"

static const chat_case k_chat_cases[] = {
    {"sharegpt", "llama3",
     {"<|begin_of_text|>" L3H("system") "Be brief.<|eot_id|>" L3H("user") "Hi<|eot_id|>" L3H(
          "assistant") "Hello!<|eot_id|>" L3H("user") "2+2?<|eot_id|>" L3H("assistant") "4<|eot_id|><|eos|>"},
     {{"Hello!<|eot_id|>", "4<|eot_id|>"}}},
    {"sharegpt", "chatml",
     {"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>"
      "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n 4 <|im_end|>\n<|eos|>"},
     {{"Hello!<|im_end|>", " 4 <|im_end|>"}}},
    {"sharegpt", "alpaca",
     {"Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!<|eos|>\n\n### Instruction:\n2+2?\n\n### Response:\n 4 "
      "<|eos|>"},
     {{"Hello!<|eos|>", " 4 <|eos|>"}}},
    {"messages", "llama3",
     {"<|begin_of_text|>" L3H("system") "Be brief.<|eot_id|>" L3H("user") "Hi<|eot_id|>" L3H(
          "assistant") "Hello!<|eot_id|>" L3H("user") "2+2?<|eot_id|>" L3H("assistant") "4<|eot_id|><|eos|>"},
     {{"Hello!<|eot_id|>", "4<|eot_id|>"}}},
    {"messages", "chatml",
     {"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>"
      "\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n 4 <|im_end|>\n<|eos|>"},
     {{"Hello!<|im_end|>", " 4 <|im_end|>"}}},
    {"messages", "alpaca",
     {"Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!<|eos|>\n\n### Instruction:\n2+2?\n\n### Response:\n 4 "
      "<|eos|>"},
     {{"Hello!<|eos|>", " 4 <|eos|>"}}},
    {"alpaca", "alpaca",
     {ALP_IN "### Instruction:\nAdd\n\n### Input:\n2+2\n\n### Response:\n4<|eos|>",
      ALP "### Instruction:\nSay hi\n\n### Response:\nhi<|eos|>"},
     {{"4<|eos|>"}, {"hi<|eos|>"}}},
    {"alpaca", "llama3",
     {"<|begin_of_text|>" L3H("user") "Add\n\n2+2<|eot_id|>" L3H("assistant") "4<|eot_id|><|eos|>",
      "<|begin_of_text|>" L3H("user") "Say hi<|eot_id|>" L3H("assistant") "hi<|eot_id|><|eos|>"},
     {{"4<|eot_id|>"}, {"hi<|eot_id|>"}}},
    {"alpaca", "chatml",
     {"<|im_start|>user\nAdd\n\n2+2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|eos|>",
      "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n<|eos|>"},
     {{"4<|im_end|>"}, {"hi<|im_end|>"}}},
};

static void test_chat_masks(void **state)
{
    (void)state;
    mkdirs(tpath("chat"));
    write_text(tpath("chat/sharegpt.jsonl"), k_sharegpt);
    write_text(tpath("chat/messages.jsonl"), k_messages);
    write_text(tpath("chat/alpaca.jsonl"), k_alpaca);
    for (size_t c = 0; c < sizeof k_chat_cases / sizeof *k_chat_cases; c++) {
        const chat_case *cc = &k_chat_cases[c];
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 "seq_len: 1024\nbatch_rows: 1\nshuffle: false\nsources:\n"
                 "  - {path: %s.jsonl, format: %s, chat_format: %s}\n", cc->shape, cc->shape, cc->chat);
        data_pipeline *p = open_yaml(tpath("chat"), yaml, NULL);
        int want_docs = cc->full[1] ? 2 : 1;
        assert_int_equal(data_get_stats(p)->documents, want_docs);
        batch b;
        batch_alloc(&b, p);
        get_batch(p, 0, &b);
        int64_t T = b.T;
        for (int d = 0; d < want_docs; d++) {
            /* the document's tokens, and its trained (target) tokens as spans */
            int64_t first = -1, last = -1;
            for (int64_t u = 0; u <= T; u++)
                if (b.doc[u] == (uint32_t)d) {
                    if (first < 0)
                        first = u;
                    last = u;
                }
            assert_true(first >= 0);
            char text[4096];
            decode(b.tokens + first, (size_t)(last - first + 1), text, sizeof text);
            if (strcmp(text, cc->full[d]) != 0)
                fail_msg("%s + %s, document %d:\n got  \"%s\"\n want \"%s\"", cc->shape, cc->chat, d, text,
                         cc->full[d]);
            int n_spans = 0;
            for (int64_t u = first > 0 ? first : 1; u <= last;) {
                if (!b.mask[u - 1]) {
                    u++;
                    continue;
                }
                int64_t v = u;
                while (v <= last && b.mask[v - 1])
                    v++;
                decode(b.tokens + u, (size_t)(v - u), text, sizeof text);
                if (n_spans >= 3 || cc->spans[d][n_spans] == NULL)
                    fail_msg("%s + %s: unexpected trained span \"%s\"", cc->shape, cc->chat, text);
                if (strcmp(text, cc->spans[d][n_spans]) != 0)
                    fail_msg("%s + %s: trained span %d is \"%s\", expected \"%s\"", cc->shape, cc->chat, n_spans, text,
                             cc->spans[d][n_spans]);
                n_spans++;
                u = v;
            }
            if (n_spans < 3 && cc->spans[d][n_spans] != NULL)
                fail_msg("%s + %s: trained span \"%s\" missing", cc->shape, cc->chat, cc->spans[d][n_spans]);
        }
        /* padding after the stream: never trained */
        for (int64_t u = 1; u <= T; u++)
            if (b.doc[u] >= (uint32_t)want_docs)
                assert_int_equal(b.mask[u - 1], 0);
        batch_free(&b);
        data_close(p);
    }
    g_test_passed = true;
}

/* ---- a real tokenizer: special ids ------------------------------------------------------ */

/* A small byte-level BPE tokenizer.json (GPT-2's byte-to-unicode alphabet,
 * three merges) with ChatML special tokens, the Llama-3 ones when llama3,
 * and one more merge when extra: the same ids, another tokenization. */
static void write_tokenizer(const char *path, bool llama3, bool extra)
{
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    int n = 0;
    char sym[256][8];
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        int cp = keep ? b : 256 + n++;
        if (cp < 0x80) {
            sym[b][0] = (char)cp;
            sym[b][1] = '\0';
        } else {
            sym[b][0] = (char)(0xc0 | (cp >> 6));
            sym[b][1] = (char)(0x80 | (cp & 0x3f));
            sym[b][2] = '\0';
        }
        json_object_set_new(vocab, sym[b], json_integer(b));
    }
    int id = 256;
    const char *pairs[4][2] = {{"H", "e"}, {"l", "l"}, {"ll", "o"}, {"He", "llo"}};
    for (int i = 0; i < 4; i++) {
        char m[16], joined[16];
        snprintf(m, sizeof m, "%s %s", pairs[i][0], pairs[i][1]);
        snprintf(joined, sizeof joined, "%s%s", pairs[i][0], pairs[i][1]);
        if (i < 3 || extra)
            json_array_append_new(merges, json_string(m));
        json_object_set_new(vocab, joined, json_integer(id++));
    }
    const char *specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
                              "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    for (int i = 0; i < (llama3 ? 7 : 3); i++) {
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content",
                                               specials[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                               "normalized", 0, "special", 1));
        json_object_set_new(vocab, specials[i], json_integer(id++));
    }
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                           "use_regex", 1);
    json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:O, s:o, s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:o, s:o}}",
                             "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
                             "pre_tokenizer", bl, "decoder", bl, "model", "type", "BPE", "dropout", "unk_token",
                             "continuing_subword_prefix", "", "end_of_word_suffix", "", "fuse_unk", 0,
                             "byte_fallback", 0, "vocab", vocab, "merges", merges);
    assert_non_null(root);
    assert_int_equal(json_dump_file(root, path, JSON_INDENT(1)), 0);
    json_decref(root);
}

static void test_tokenizer_specials(void **state)
{
    (void)state;
    mkdirs(tpath("tokjs"));
    write_tokenizer(tpath("tokjs/tokenizer.json"), true, false);
    write_tokenizer(tpath("tokjs/chatml-only.json"), false, false);
    write_text(tpath("tokjs/chat.jsonl"), k_sharegpt);
    write_text(tpath("tokjs/text.jsonl"), "{\"text\": \"Hello <|im_end|> Hello\"}\n");
    tok *t = NULL;
    rt_err err = {{0}};
    if (tok_open(tpath("tokjs/tokenizer.json"), &t, &err) != 0)
        fail_msg("tok_open: %s", err.msg);
    int32_t im_start = tok_id(t, "<|im_start|>"), im_end = tok_id(t, "<|im_end|>"), eos = tok_eos(t);
    int32_t bot = tok_id(t, "<|begin_of_text|>"), eot = tok_id(t, "<|eot_id|>");
    assert_true(im_start > 255 && im_end > 255 && bot > 255 && eot > 255 && eos > 255);
    char *eos_text = NULL;
    size_t len;
    assert_int_equal(tok_decode(t, &eos, 1, false, &eos_text, &len, &err), 0);

    static const char *const chats[] = {"chatml", "llama3", NULL};
    for (int c = 0; c < 3; c++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml, "tokenizer: tokenizer.json\nseq_len: 512\nbatch_rows: 1\nshuffle: false\n"
                                    "sources: [{path: chat.jsonl, format: sharegpt%s%s}]\n",
                 chats[c] ? ", chat_format: " : "", chats[c] ? chats[c] : "");
        data_pipeline *p = open_yaml(tpath("tokjs"), yaml, NULL);
        batch b;
        batch_alloc(&b, p);
        get_batch(p, 0, &b);
        int64_t n = 0;
        while (n <= b.T && b.doc[n] == 0)
            n++;
        /* every template token is its special id; the text is the template */
        const chat_case *cc = &k_chat_cases[c == 0 ? 1 : 0];
        char *text = NULL;
        assert_int_equal(tok_decode(t, b.tokens, (size_t)n, false, &text, &len, &err), 0);
        char want[2048];
        snprintf(want, sizeof want, "%.*s%s", (int)(strlen(cc->full[0]) - 7), cc->full[0], eos_text);
        if (strcmp(text, want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", chats[c] ? chats[c] : "auto", text, want);
        free(text);
        int specials = 0, expect_specials = c == 0 ? 5 * 2 : 1 + 5 * 3;
        for (int64_t u = 0; u < n - 1; u++) { /* the last is the EOS separator */
            int32_t id = b.tokens[u];
            specials += id == im_start || id == im_end || id >= bot;
        }
        assert_int_equal(specials, expect_specials);
        assert_int_equal(b.tokens[0], c == 0 ? im_start : bot);
        /* trained: exactly the assistant contents and their end tokens */
        int spans = 0;
        for (int64_t u = 1; u < n;) {
            if (!b.mask[u - 1]) {
                u++;
                continue;
            }
            int64_t v = u;
            while (v < n && b.mask[v - 1])
                v++;
            assert_int_equal(b.tokens[v - 1], c == 0 ? im_end : eot);
            assert_int_equal(tok_decode(t, b.tokens + u, (size_t)(v - u), false, &text, &len, &err), 0);
            assert_string_equal(text, cc->spans[0][spans]);
            free(text);
            spans++;
            u = v;
        }
        assert_int_equal(spans, 2);
        batch_free(&b);
        data_close(p);
    }

    /* plain text: special tokens written in the text are what Hugging Face makes of them */
    data_pipeline *p = open_yaml(tpath("tokjs"), "tokenizer: tokenizer.json\nseq_len: 64\nbatch_rows: 1\n"
                                                 "shuffle: false\nsources: [{path: text.jsonl}]\n", NULL);
    batch b;
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    const char *txt = "Hello <|im_end|> Hello";
    assert_int_equal(tok_encode(t, txt, strlen(txt), false, &ids, &n, &cap, &err), 0);
    assert_memory_equal(b.tokens, ids, n * sizeof *ids);
    assert_int_equal(b.tokens[n], eos);
    free(ids);
    batch_free(&b);
    data_close(p);

    /* a template token the tokenizer lacks is an error, not text */
    open_fails(tpath("tokjs"), "tokenizer: chatml-only.json\nseq_len: 64\nbatch_rows: 1\n"
                               "sources: [{path: chat.jsonl, format: sharegpt, chat_format: llama3}]\n", NULL,
               "chat_format llama3 needs the special token <|begin_of_text|>", "does not have");
    /* without chat_format: ChatML, the one the tokenizer has */
    p = open_yaml(tpath("tokjs"), "tokenizer: chatml-only.json\nseq_len: 64\nbatch_rows: 1\nshuffle: false\n"
                                  "sources: [{path: chat.jsonl, format: sharegpt}]\n", NULL);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    tok *t2 = NULL;
    assert_int_equal(tok_open(tpath("tokjs/chatml-only.json"), &t2, &err), 0);
    assert_int_equal(b.tokens[0], tok_id(t2, "<|im_start|>"));
    tok_close(t2);
    batch_free(&b);
    data_close(p);

    /* a changed tokenizer file rebuilds the index */
    const char *yaml = "tokenizer: tokenizer.json\nseq_len: 64\nbatch_rows: 1\nsources: [{path: text.jsonl}]\n";
    p = open_yaml(tpath("tokjs"), yaml, NULL);
    assert_int_equal(data_get_stats(p)->files_indexed, 0);
    data_close(p);
    write_tokenizer(tpath("tokjs/tokenizer.json"), true, true);
    p = open_yaml(tpath("tokjs"), yaml, NULL);
    assert_int_equal(data_get_stats(p)->files_indexed, 1);
    assert_int_equal(data_get_stats(p)->tokens, n + 1 - 2); /* "Hello" twice: one token now, not two */
    data_close(p);
    open_fails(tpath("tokjs"), "tokenizer: nope.json\nseq_len: 64\nbatch_rows: 1\nsources: [{path: text.jsonl}]\n",
               NULL, "data.yaml: tokenizer", "nope.json");
    free(eos_text);
    tok_close(t);
    g_test_passed = true;
}

/* ---- text documents and document indices ------------------------------------------------ */

static void test_text_documents(void **state)
{
    (void)state;
    mkdirs(tpath("text/dir/sub"));
    /* blank-line separated documents, a BOM and CRLF */
    write_text(tpath("text/paras.txt"), "\xef\xbb\xbf\n\naa\r\nb\r\n\r\n  \nccc\n\n\nd");
    data_pipeline *p = open_yaml(tpath("text"), "seq_len: 15\nbatch_rows: 1\nshuffle: false\nsources:\n"
                                                "  - {path: paras.txt, split: blank_lines}\n", NULL);
    assert_int_equal(data_get_stats(p)->documents, 3);
    batch b;
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    char text[256];
    decode(b.tokens, 12, text, sizeof text);
    assert_string_equal(text, "aa\r\nb<|eos|>ccc<|eos|>d<|eos|>");
    static const uint32_t want_doc[16] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3};
    assert_memory_equal(b.doc, want_doc, sizeof want_doc);
    for (int t = 0; t < 15; t++)
        assert_int_equal(b.mask[t], t + 1 < 12 ? 1 : 0); /* the 12 stream tokens; then padding */
    batch_free(&b);
    data_close(p);

    /* a directory of files, one document each, walked recursively in name order;
     * add_bos; the custom text field of jsonl */
    write_text(tpath("text/dir/b.txt"), "BB");
    write_text(tpath("text/dir/a.md"), "A");
    write_text(tpath("text/dir/sub/c.txt"), "C\n");
    write_text(tpath("text/dir/.hidden.txt"), "hidden");
    write_text(tpath("text/body.jsonl"), "{\"body\": \"xy\", \"text\": \"no\"}\n{\"body\": \"z\"}\n");
    p = open_yaml(tpath("text"), "seq_len: 20\nbatch_rows: 1\nshuffle: false\nadd_bos: true\nsources:\n"
                                 "  - {path: dir}\n", NULL);
    assert_int_equal(data_get_stats(p)->sources[0].files, 3);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    decode(b.tokens, 11, text, sizeof text);
    assert_string_equal(text, "<|bos|>A<|eos|><|bos|>BB<|eos|><|bos|>C\n<|eos|>");
    batch_free(&b);
    data_close(p);
    p = open_yaml(tpath("text"), "seq_len: 8\nbatch_rows: 1\nshuffle: false\nsources:\n"
                                 "  - {path: body.jsonl, text_field: body}\n", NULL);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    decode(b.tokens, 5, text, sizeof text);
    assert_string_equal(text, "xy<|eos|>z<|eos|>");
    batch_free(&b);
    data_close(p);

    /* add_eos: false and an eos_token chosen by name */
    p = open_yaml(tpath("text"), "seq_len: 8\nbatch_rows: 1\nshuffle: false\nadd_eos: false\nsources:\n"
                                 "  - {path: body.jsonl, text_field: body}\n", NULL);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    decode(b.tokens, 3, text, sizeof text);
    assert_string_equal(text, "xyz");
    assert_int_equal(b.doc[2], 1); /* still two documents */
    batch_free(&b);
    data_close(p);
    p = open_yaml(tpath("text"), "seq_len: 8\nbatch_rows: 1\nshuffle: false\neos_token: \"<|pad|>\"\nsources:\n"
                                 "  - {path: body.jsonl, text_field: body}\n", NULL);
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    assert_int_equal(b.tokens[2], 258);
    assert_int_equal(data_get_stats(p)->eos_id, 258);
    batch_free(&b);
    data_close(p);
    open_fails(tpath("text"), "seq_len: 8\nbatch_rows: 1\neos_token: \"<|nope|>\"\nsources: [{path: body.jsonl}]\n",
               NULL, "eos_token: \"<|nope|>\" is not a token", NULL);

    /* many files, more than are kept open: the same batches */
    mkdirs(tpath("text/many"));
    for (int i = 0; i < 40; i++) {
        char name[64], body[64];
        snprintf(name, sizeof name, "text/many/%03d.txt", i);
        snprintf(body, sizeof body, "file %d says hello", i);
        write_text(tpath("%s", name), body);
    }
    const char *yaml = "seq_len: 8\nbatch_rows: 4\nsources: [{path: many}]\n";
    data_open_opts one = {.max_open_files = 1};
    data_pipeline *pa = open_yaml(tpath("text"), yaml, NULL), *pb = open_yaml(tpath("text"), yaml, &one);
    batch ba, bb;
    batch_alloc(&ba, pa);
    batch_alloc(&bb, pb);
    for (uint64_t k = 0; k < 30; k++) {
        get_batch(pa, k, &ba);
        get_batch(pb, k, &bb);
        assert_true(batch_equal(&ba, &bb));
    }
    batch_free(&ba);
    batch_free(&bb);
    data_close(pa);
    data_close(pb);
    g_test_passed = true;
}

/* ---- pre-tokenized shards and zstd ------------------------------------------------------ */

static void check_stream(const char *dir, const char *path, const char *extra, const uint32_t *ids, size_t n,
                         int64_t vocab)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml, "seq_len: 10\nbatch_rows: 2\nshuffle: false\n%ssources: [{path: %s}]\n",
             extra ? extra : "", path);
    data_open_opts o = {.vocab_size = vocab};
    data_pipeline *p = open_yaml(dir, yaml, &o);
    const data_stats *st = data_get_stats(p);
    if (st->tokens != n)
        fail_msg("%s: %llu tokens, expected %zu", path, (unsigned long long)st->tokens, n);
    batch b;
    batch_alloc(&b, p);
    for (uint64_t k = 0; k * 2 < st->rows; k++) {
        get_batch(p, k, &b);
        for (uint64_t r = 0; r < 2; r++) {
            uint64_t row = (k * 2 + r) % st->rows;
            for (uint64_t t = 0; t <= 10; t++) {
                uint64_t pos = row * 10 + t;
                int32_t want = pos < n ? (int32_t)ids[pos] : st->eos_id;
                if (b.tokens[r * 11 + t] != want)
                    fail_msg("%s: row %llu token %llu is %d, expected %d", path, (unsigned long long)row,
                             (unsigned long long)t, b.tokens[r * 11 + t], want);
            }
        }
    }
    batch_free(&b);
    data_close(p);
}

static void test_shards_and_zstd(void **state)
{
    (void)state;
    mkdirs(tpath("shard"));
    enum { N = 1234 };
    uint32_t ids16[N], ids32[N];
    for (int i = 0; i < N; i++) {
        ids16[i] = (uint32_t)((i * 31 + 7) % 50257);
        ids32[i] = (uint32_t)((i * 977 + 11) % 128256);
    }
    write_llmc(tpath("shard/gpt2.bin"), 20240520, 1, N, ids16, N, 2, false);
    write_llmc(tpath("shard/llama.bin"), 20240801, 7, N, ids32, N, 4, false);
    write_llmc(tpath("shard/gpt2z.bin.zst"), 20240520, 1, N, ids16, N, 2, true);
    write_llmc(tpath("shard/llamaz.bin.zst"), 20240801, 7, N, ids32, N, 4, true);
    write_u32(tpath("shard/raw.u32"), ids32, N);
    write_zst(tpath("shard/rawz.u32.zst"), ids32, N * 4);
    check_stream(tpath("shard"), "gpt2.bin", NULL, ids16, N, 50257);
    check_stream(tpath("shard"), "llama.bin", NULL, ids32, N, 128256);
    check_stream(tpath("shard"), "gpt2z.bin.zst", NULL, ids16, N, 50257);
    check_stream(tpath("shard"), "llamaz.bin.zst", NULL, ids32, N, 128256);
    check_stream(tpath("shard"), "raw.u32", NULL, ids32, N, 128256);
    check_stream(tpath("shard"), "rawz.u32.zst", NULL, ids32, N, 128256);
    /* a source mixing shard kinds: one stream, file after file */
    mkdirs(tpath("shard/mixed"));
    write_llmc(tpath("shard/mixed/0.bin"), 20240520, 1, 600, ids32, 600, 2, false);
    write_zst(tpath("shard/mixed/1.u32.zst"), ids32 + 600, (N - 600) * 4);
    uint32_t both[N];
    for (int i = 0; i < N; i++)
        both[i] = i < 600 ? (uint16_t)ids32[i] : ids32[i];
    check_stream(tpath("shard"), "mixed", NULL, both, N, 128256);

    /* documents of raw ids end at eos_id, compressed or not */
    uint32_t docs[N];
    for (int i = 0; i < N; i++)
        docs[i] = i % 17 == 16 || i % 101 == 0 ? 9 : (uint32_t)(i % 200);
    write_u32(tpath("shard/docs.u32"), docs, N);
    write_zst(tpath("shard/docsz.u32.zst"), docs, N * 4);
    const char *dy = "seq_len: 10\nbatch_rows: 4\neos_id: 9\nsources: [{path: %s}]\n";
    char yr[256], yz[256];
    snprintf(yr, sizeof yr, dy, "docs.u32");
    snprintf(yz, sizeof yz, dy, "docsz.u32.zst");
    data_open_opts ov = {.vocab_size = 256};
    data_pipeline *pr = open_yaml(tpath("shard"), yr, &ov), *pz = open_yaml(tpath("shard"), yz, &ov);
    assert_int_equal(data_get_stats(pr)->documents, data_get_stats(pz)->documents);
    assert_true(data_get_stats(pr)->documents > 80);
    batch br, bz;
    batch_alloc(&br, pr);
    batch_alloc(&bz, pz);
    uint64_t boundaries = 0;
    for (uint64_t k = 0; k < 40; k++) {
        get_batch(pr, k, &br);
        get_batch(pz, k, &bz);
        assert_true(batch_equal(&br, &bz));
        for (int r = 0; r < 4; r++)
            for (int t = 1; t <= 10; t++)
                if (br.doc[r * 11 + t] != br.doc[r * 11 + t - 1] && br.mask[r * 10 + t - 1]) {
                    assert_int_equal(br.tokens[r * 11 + t - 1], 9); /* a document starts after EOS */
                    boundaries++;
                } else if (br.mask[r * 10 + t - 1]) {
                    assert_int_not_equal(br.tokens[r * 11 + t - 1], 9);
                }
    }
    assert_true(boundaries > 10);
    batch_free(&br);
    batch_free(&bz);
    data_close(pr);
    data_close(pz);

    /* compressed text is the same stream as plain text */
    char corpus[4096];
    snprintf(corpus, sizeof corpus, "{\"text\": \"first document\"}\n{\"text\": \"second one\"}\n"
                                    "{\"text\": \"and a third\"}\n");
    write_text(tpath("shard/plain.jsonl"), corpus);
    write_zst(tpath("shard/packed.jsonl.zst"), corpus, strlen(corpus));
    write_zst(tpath("shard/noext"), corpus, strlen(corpus)); /* found by its magic */
    data_pipeline *pa = open_yaml(tpath("shard"), "seq_len: 8\nbatch_rows: 3\nsources: [{path: plain.jsonl}]\n", NULL);
    data_pipeline *pb =
        open_yaml(tpath("shard"), "seq_len: 8\nbatch_rows: 3\nsources: [{path: packed.jsonl.zst}]\n", NULL);
    data_pipeline *pc =
        open_yaml(tpath("shard"), "seq_len: 8\nbatch_rows: 3\nsources: [{path: noext, format: jsonl}]\n", NULL);
    batch a, b, c;
    batch_alloc(&a, pa);
    batch_alloc(&b, pb);
    batch_alloc(&c, pc);
    for (uint64_t k = 0; k < 5; k++) {
        get_batch(pa, k, &a);
        get_batch(pb, k, &b);
        get_batch(pc, k, &c);
        assert_true(batch_equal(&a, &b));
        assert_true(batch_equal(&a, &c));
    }
    batch_free(&a);
    batch_free(&b);
    batch_free(&c);
    data_close(pa);
    data_close(pb);
    data_close(pc);
    g_test_passed = true;
}

/* ---- documents in corpus order ------------------------------------------------------------ */

typedef struct docs_seen {
    int n;
    uint32_t source[16];
    bool eos[16];
    char text[16][256]; /* decoded ids */
    int32_t stream[4096];   /* ids, with EOS where the document had it */
    uint8_t trained[4096];  /* per stream token; EOS: 2 (not reported) */
    size_t stream_n;
    int stop_at;            /* return -ECANCELED at this document, or -1 */
} docs_seen;

static int docs_collect(const data_doc_view *v, void *user, rt_err *err)
{
    docs_seen *s = user;
    if (s->n == s->stop_at)
        return err_set(err, -ECANCELED, "stopped at document %llu", (unsigned long long)v->index);
    assert_true(s->n < 16);
    assert_int_equal(v->index, (uint64_t)s->n);
    s->source[s->n] = v->source;
    s->eos[s->n] = v->eos;
    decode(v->ids, v->n, s->text[s->n], sizeof s->text[0]);
    assert_true(s->stream_n + v->n + 1 <= 4096);
    for (size_t i = 0; i < v->n; i++) {
        assert_true(v->trained[i] <= 1);
        s->stream[s->stream_n] = v->ids[i];
        s->trained[s->stream_n++] = v->trained[i];
    }
    if (v->eos) {
        s->stream[s->stream_n] = BYTE_EOS;
        s->trained[s->stream_n++] = 2;
    }
    s->n++;
    return 0;
}

/* data_docs_foreach: every source's documents in order, EOS removed and
 * flagged, chat masks as data_batch has them, llm.c documents split after
 * each EOS (an empty one between two EOS), and a callback that stops. */
static void test_docs_foreach(void **state)
{
    (void)state;
    mkdirs(tpath("docs"));
    write_text(tpath("docs/a.txt"), "aa\n\nbb b\n\n\ncc\n");
    write_text(tpath("docs/b.jsonl"), "{\"text\": \"x1\"}\n{\"text\": \"y2\"}\n");
    write_text(tpath("docs/c.jsonl"), "{\"instruction\": \"Add\", \"output\": \"4\"}\n");
    static const uint32_t raw[] = {1, 2, BYTE_EOS, 3, BYTE_EOS, BYTE_EOS, 4};
    write_llmc(tpath("docs/d.bin"), 20240520, 1, 7, raw, 7, 2, false);
    data_pipeline *p = open_yaml(tpath("docs"), "seq_len: 4\nbatch_rows: 1\nshuffle: false\nsources:\n"
                                                "  - {path: a.txt, split: blank_lines}\n"
                                                "  - {path: b.jsonl}\n"
                                                "  - {path: c.jsonl, format: alpaca}\n"
                                                "  - {path: d.bin}\n", NULL);
    assert_int_equal(data_get_stats(p)->max_id, BYTE_EOS);
    docs_seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->stop_at = -1;
    rt_err err = {{0}};
    assert_int_equal(data_docs_foreach(p, docs_collect, s, &err), 0);
    assert_int_equal(s->n, 10);
    assert_int_equal((uint64_t)s->n, data_get_stats(p)->documents);
    static const char *const want[] = {"aa", "bb b", "cc", "x1", "y2", NULL, "\x01\x02", "\x03", "", "\x04"};
    static const uint32_t want_src[] = {0, 0, 0, 1, 1, 2, 3, 3, 3, 3};
    static const bool want_eos[] = {true, true, true, true, true, true, true, true, true, false};
    for (int i = 0; i < 10; i++) {
        if (want[i] != NULL)
            assert_string_equal(s->text[i], want[i]);
        assert_int_equal(s->source[i], want_src[i]);
        assert_int_equal(s->eos[i], want_eos[i]);
    }
    assert_non_null(strstr(s->text[5], "### Response:"));
    assert_true(strlen(s->text[5]) > 20 && s->text[5][strlen(s->text[5]) - 1] == '4');
    data_close(p);

    /* the chat source alone: ids and masks are data_batch's stream */
    p = open_yaml(tpath("docs"), "seq_len: 400\nbatch_rows: 1\nshuffle: false\nsources:\n"
                                 "  - {path: c.jsonl, format: alpaca}\n", NULL);
    memset(s, 0, sizeof *s);
    s->stop_at = -1;
    assert_int_equal(data_docs_foreach(p, docs_collect, s, &err), 0);
    assert_int_equal(s->n, 1);
    batch b;
    batch_alloc(&b, p);
    get_batch(p, 0, &b);
    assert_true(s->stream_n > 20 && s->stream_n < 400);
    int zeros = 0, ones = 0;
    for (size_t u = 0; u < s->stream_n; u++) {
        assert_int_equal(b.tokens[u], s->stream[u]);
        if (u > 0 && s->trained[u] != 2) {
            assert_int_equal(b.mask[u - 1], s->trained[u]);
            zeros += s->trained[u] == 0;
            ones += s->trained[u] == 1;
        }
    }
    assert_true(zeros > 10 && ones >= 1); /* the prompt is not trained, the response is */
    batch_free(&b);

    /* a callback that stops: its code and message come back */
    memset(s, 0, sizeof *s);
    s->stop_at = 0;
    assert_int_equal(data_docs_foreach(p, docs_collect, s, &err), -ECANCELED);
    expect_msg(&err, "stopped at document 0", NULL);
    data_close(p);
    free(s);
    g_test_passed = true;
}

/* ---- bad input ----------------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tpath("bad"));
    mkdirs(dir);
    /* an invalid JSON line: fatal by default, skipped and counted on request */
    write_text(tpath("bad/broken.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"oops\n{\"text\": \"fine\"}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: broken.jsonl}]\n", NULL, "broken.jsonl:2: invalid JSON",
               NULL);
    assert_int_equal(count_index_files(tpath("bad")), 0); /* nothing half-built left behind */
    data_pipeline *p = open_yaml(dir, "seq_len: 4\nbatch_rows: 1\non_bad_line: skip\nsources: [{path: broken.jsonl}]\n",
                                 NULL);
    const data_stats *st = data_get_stats(p);
    assert_int_equal(st->lines_skipped, 1);
    assert_int_equal(st->documents, 2);
    assert_non_null(strstr(st->sources[0].first_skipped, "broken.jsonl:2: invalid JSON"));
    data_close(p);
    /* the same failure with threads and small chunks: still the first bad line */
    write_corpus(tpath("bad/big.jsonl"), 400, 5);
    FILE *f = fopen(tpath("bad/big.jsonl"), "ab");
    fputs("{\"text\": 1}\n{\"nope\": \"x\"}\n", f);
    fclose(f);
    data_open_opts o = {.threads = 3, .build_chunk_bytes = 2048};
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: big.jsonl}]\n", &o,
               "big.jsonl:", "field \"text\" is a JSON integer, expected a string");

    /* a missing field names the field and the line */
    write_text(tpath("bad/nofield.jsonl"), "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: nofield.jsonl}]\n", NULL,
               "nofield.jsonl:3: missing field \"text\"", NULL);
    write_text(tpath("bad/conv.jsonl"), "{\"conversations\": [{\"value\": \"hi\"}]}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: conv.jsonl, format: sharegpt, chat_format: chatml}]\n",
               NULL, "conv.jsonl:1: conversations[0]: missing field \"from\"", NULL);
    write_text(tpath("bad/role.jsonl"), "{\"conversations\": [{\"from\": \"bing\", \"value\": \"hi\"}]}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: role.jsonl, format: sharegpt, chat_format: chatml}]\n",
               NULL, "role.jsonl:1: conversations[0].from: \"bing\" is not one of human, gpt, system", NULL);
    write_text(tpath("bad/msg.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: msg.jsonl, format: messages, chat_format: llama3}]\n",
               NULL, "msg.jsonl:1: messages[0].content[0]", "only text parts");
    write_text(tpath("bad/alp.jsonl"), "{\"instruction\": \"x\"}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: alp.jsonl, format: alpaca}]\n", NULL,
               "alp.jsonl:1: missing field \"output\"", NULL);
    write_text(tpath("bad/arr.jsonl"), "[1, 2]\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: arr.jsonl}]\n", NULL,
               "arr.jsonl:1: a JSON array, expected an object", NULL);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: conv.jsonl, format: sharegpt}]\n", NULL,
               "chat_format not given", "llama3, chatml, alpaca");

    /* unknown formats */
    parse_fails("seq_len: 4\nbatch_rows: 1\nsources:\n  - path: a.csv\n    format: csv\n",
                "data.yaml:5: sources[0].format: \"csv\" is not one of", NULL);
    write_text(tpath("bad/table.csv"), "a,b\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: table.csv}]\n", NULL, "sources[0] (table.csv)",
               "cannot tell the format");

    /* empty datasets */
    write_text(tpath("bad/empty.txt"), "");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: empty.txt}]\n", NULL, "sources[0] (empty.txt): no data",
               NULL);
    write_text(tpath("bad/allbad.jsonl"), "nope\n{\"x\": 1}\n");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\non_bad_line: skip\nsources: [{path: allbad.jsonl}]\n", NULL,
               "no data", "2 bad lines skipped (first: ");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: nothere/*.jsonl}]\n", NULL, "no file matches", NULL);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: missing.txt}]\n", NULL, "missing.txt",
               "No such file");

    /* shards with bad headers */
    uint32_t ids[100];
    for (int i = 0; i < 100; i++)
        ids[i] = (uint32_t)i;
    write_llmc(tpath("bad/magic.bin"), 12345, 1, 100, ids, 100, 2, false);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: magic.bin}]\n", NULL, "magic.bin: bad magic 12345",
               "20240520");
    write_llmc(tpath("bad/version.bin"), 20240520, 3, 100, ids, 100, 2, false);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: version.bin}]\n", NULL,
               "version.bin: llm.c header version 3 does not go with magic 20240520", NULL);
    write_llmc(tpath("bad/size.bin"), 20240520, 1, 150, ids, 100, 2, false);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: size.bin}]\n", NULL,
               "size.bin: llm.c header says 150 tokens", "has 200 bytes");
    write_text(tpath("bad/short.bin"), "tiny");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: short.bin}]\n", NULL,
               "short.bin: 4 bytes is shorter than the 1024-byte llm.c header", NULL);
    write_llmc(tpath("bad/sizez.bin.zst"), 20240801, 7, 150, ids, 100, 4, true);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: sizez.bin.zst}]\n", NULL,
               "sizez.bin.zst: llm.c header says 150 tokens but the stream holds 100", NULL);
    write_bytes(tpath("bad/odd.u32"), ids, 399);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: odd.u32}]\n", NULL,
               "odd.u32: 399 bytes is not a whole number of uint32 ids", NULL);

    /* ids beyond the model's vocabulary: file and position */
    ids[37] = 70000;
    write_u32(tpath("bad/vocab.u32"), ids, 100);
    data_open_opts ov = {.vocab_size = 50000};
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: vocab.u32}]\n", &ov,
               "vocab.u32: token id 70000 at position 37 is not below the model's vocabulary size 50000", NULL);
    write_llmc(tpath("bad/vocab.bin"), 20240520, 1, 100, ids, 100, 2, false); /* 70000 wraps to 4464 in uint16 */
    ov.vocab_size = 4000;
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: vocab.bin}]\n", &ov,
               "vocab.bin: token id 4464 at position 37", NULL);
    mkdirs(tpath("bad/vdir"));
    write_bytes(tpath("bad/vdir/a.u32"), "", 0); /* no tokens: leaves the stream */
    write_u32(tpath("bad/vdir/b.u32"), ids, 100);
    ov.vocab_size = 50000;
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: vdir}]\n", &ov, "b.u32: token id 70000", NULL);
    write_text(tpath("bad/text.txt"), "bytes up to 255: \xff");
    ov.vocab_size = 200; /* the byte tokenizer's ids against a smaller model */
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\neos_id: 10\nsources: [{path: text.txt}]\n", &ov,
               "text.txt: token id 255 at position 17", "does not match the model");

    /* unreadable and corrupt zstd */
    write_text(tpath("bad/garbage.txt.zst"), "this is not zstd at all, just text");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: garbage.txt.zst}]\n", NULL,
               "garbage.txt.zst: corrupt zstd stream", NULL);
    char big[20000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    write_zst(tpath("bad/full.txt.zst"), big, sizeof big);
    size_t zlen;
    uint8_t *z = read_all(tpath("bad/full.txt.zst"), &zlen);
    write_bytes(tpath("bad/cut.txt.zst"), z, zlen / 2);
    z[zlen / 2] ^= 0x55;
    z[zlen / 2 + 1] ^= 0xaa;
    write_bytes(tpath("bad/flipped.txt.zst"), z, zlen);
    free(z);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: cut.txt.zst}]\n", NULL,
               "cut.txt.zst: truncated zstd stream", NULL);
    data_config *cfg = cfg_parse(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: flipped.txt.zst}]\n");
    rt_err err = {{0}};
    data_pipeline *pf = NULL;
    int rc = data_open(cfg, NULL, NULL, &pf, &err);
    data_config_free(cfg);
    if (rc == 0) { /* a flip in a literal is caught by the frame's checksum */
        data_close(pf);
        fail_msg("a corrupted zstd frame was accepted");
    }
    expect_msg(&err, "flipped.txt.zst", "zstd");
    write_bytes(tpath("bad/zero.txt.zst"), "", 0);
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: zero.txt.zst}]\n", NULL,
               "zero.txt.zst: truncated zstd stream", NULL);

    /* options that do not fit the file */
    write_text(tpath("bad/t.txt"), "text");
    open_fails(dir, "seq_len: 4\nbatch_rows: 1\nsources: [{path: t.txt, text_field: body}]\n", NULL,
               "text_field only applies to jsonl", "t.txt is text");
    /* indexes exist only for files that were read through: broken (skip), allbad, empty, vocab.u32, vocab.bin,
     * vdir's two and text.txt; none half-written (count_index_files fails on temporaries) */
    assert_int_equal(count_index_files(tpath("bad")), 8);
    g_test_passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_parse, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_u32_exact_rule, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_determinism, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_batches, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cache_reuse, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cache_fallback, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_mixture, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_chat_masks, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_tokenizer_specials, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_text_documents, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_shards_and_zstd, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_docs_foreach, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

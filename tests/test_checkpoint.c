/*
 * test_checkpoint: safetensors written through the I/O engine (io_uring and
 * pread/pwrite, several staging layouts) against each other, against the
 * independent st_writer and against the expected bytes; the step-directory
 * transaction, pruning, finding the newest checkpoint, validation errors, and
 * the trainer state round trip.
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
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/checkpoint.h"
#include "storage/safetensors.h"

static char g_dir[] = "/tmp/rt_test_ckpt_XXXXXX";
static bool g_test_passed; /* set by the last line of each test */
static bool g_keep;        /* a test failed: keep g_dir */

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
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_keep) {
        fprintf(stderr, "test_checkpoint: a test failed; files kept in %s\n", g_dir);
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

static const char *tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
    return buf;
}

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
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static void expect_msg(const rt_err *err, const char *n1, const char *n2)
{
    if (n1 && strstr(err->msg, n1) == NULL)
        fail_msg("error does not mention \"%s\": %s", n1, err->msg);
    if (n2 && strstr(err->msg, n2) == NULL)
        fail_msg("error does not mention \"%s\": %s", n2, err->msg);
}

static uint64_t header_len(const uint8_t *file)
{
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = (h << 8) | file[i];
    return h;
}

/* ---- the tensors of the write tests ------------------------------------ */

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 0x9E3779B97F4A7C15ull) >> 56);
}

/* A fill producing pat(off..) that checks the writer's promises. */
struct pat_ctx {
    uint64_t nbytes;   /* of the tensor */
    uint64_t next;     /* where the next call must start */
    uint64_t fail_at;  /* 0, or fail a call reaching past this byte */
    int calls, splits, bad;
};

static int pat_fill(const ckpt_tensor *t, uint64_t off, void *buf, size_t len, rt_err *err)
{
    struct pat_ctx *c = t->ctx;
    size_t es = dt_size(t->dtype);
    if (off != c->next || off % es != 0 || len % es != 0 || len == 0 || off + len > c->nbytes)
        c->bad++;
    if (c->fail_at && off + len > c->fail_at)
        return err_set(err, -EIO, "disk on fire at byte %llu", (unsigned long long)c->fail_at);
    uint8_t *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = pat(off + i);
    c->next = off + len;
    c->calls++;
    if (len == es)
        c->splits++;
    return 0;
}

#define N_T 10

struct tset {
    ckpt_tensor t[N_T];
    uint8_t *want[N_T];       /* [nbytes] expected bytes of each */
    uint64_t nbytes[N_T];
    float *conv_src, *f16_src; /* fp32 sources of the converted tensors */
    struct pat_ctx big;
    uint64_t data_len;
};

static void tset_add(struct tset *s, int i, const char *name, dt_type dt, int ndim, const int64_t *shape)
{
    ckpt_tensor *t = &s->t[i];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dt;
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        numel *= (uint64_t)shape[d];
    }
    s->nbytes[i] = numel * dt_size(dt);
    s->want[i] = malloc(s->nbytes[i] + 1);
    assert_non_null(s->want[i]);
    s->data_len += s->nbytes[i];
}

/* Odd sizes, so later tensors start at odd offsets and fills must split
 * elements across staging buffers; one multi-MiB fill, one multi-MiB data. */
static void tset_init(struct tset *s)
{
    memset(s, 0, sizeof *s);
    tset_add(s, 0, "model.embed_tokens.weight", DT_F32, 2, (int64_t[]){3, 5});
    for (uint64_t i = 0; i < s->nbytes[0]; i++)
        s->want[0][i] = (uint8_t)(i * 7 + 1);
    s->t[0].data = s->want[0];

    tset_add(s, 1, "odd.u8", DT_U8, 1, (int64_t[]){3});
    memcpy(s->want[1], "\x01\x02\x03", 3);
    s->t[1].data = s->want[1];

    tset_add(s, 2, "conv.bf16", DT_BF16, 2, (int64_t[]){7, 3});
    s->conv_src = malloc(21 * sizeof(float));
    assert_non_null(s->conv_src);
    for (int i = 0; i < 21; i++)
        s->conv_src[i] = (float)i * 0.3f - 2.0f;
    assert_int_equal(dt_from_f32(DT_BF16, s->conv_src, s->want[2], 21), 0);
    s->t[2].fill = ckpt_fill_from_f32;
    s->t[2].ctx = s->conv_src;

    tset_add(s, 3, "empty", DT_F32, 2, (int64_t[]){0, 4});
    s->t[3].fill = pat_fill; /* must never be called */
    s->t[3].ctx = &s->big;

    tset_add(s, 4, "scalar", DT_F32, 0, NULL);
    float sc = 6.5f;
    memcpy(s->want[4], &sc, 4);
    s->t[4].data = s->want[4];

    tset_add(s, 5, "model.layers.0.mlp.up_proj.weight", DT_F32, 2, (int64_t[]){5, 1000003});
    for (uint64_t i = 0; i < s->nbytes[5]; i++)
        s->want[5][i] = pat(i);
    s->big.nbytes = s->nbytes[5];
    s->t[5].fill = pat_fill;
    s->t[5].ctx = &s->big;

    tset_add(s, 6, "mid.bf16", DT_BF16, 1, (int64_t[]){2097153});
    for (uint64_t i = 0; i < s->nbytes[6]; i++)
        s->want[6][i] = (uint8_t)(i ^ (i >> 9));
    s->t[6].data = s->want[6];

    tset_add(s, 7, "f16.fill", DT_F16, 2, (int64_t[]){1234567, 1});
    s->f16_src = malloc(1234567 * sizeof(float));
    assert_non_null(s->f16_src);
    for (int i = 0; i < 1234567; i++)
        s->f16_src[i] = (float)(i % 977) * 0.125f - 50.0f;
    assert_int_equal(dt_from_f32(DT_F16, s->f16_src, s->want[7], 1234567), 0);
    s->t[7].fill = ckpt_fill_from_f32;
    s->t[7].ctx = s->f16_src;

    tset_add(s, 8, "tail.i64", DT_I64, 1, (int64_t[]){3});
    int64_t tail[3] = {-1, INT64_MAX, 42};
    memcpy(s->want[8], tail, sizeof tail);
    s->t[8].data = s->want[8];

    tset_add(s, 9, "z.empty_at_end", DT_BF16, 1, (int64_t[]){0});
    s->t[9].data = NULL;
    s->t[9].fill = ckpt_fill_from_f32;
}

static void tset_free(struct tset *s)
{
    for (int i = 0; i < N_T; i++)
        free(s->want[i]);
    free(s->conv_src);
    free(s->f16_src);
}

static const char *const g_meta[] = {"format", "pt", "step", "42", NULL};

/* Writes s through e with stage; checks the fill's promises. */
static void write_tset(io_engine *e, const ckpt_staging *stage, struct tset *s, const char *path)
{
    rt_err err = {{0}};
    s->big.next = 0;
    s->big.calls = s->big.splits = s->big.bad = 0;
    uint64_t bytes = 0;
    int rc = ckpt_write_safetensors(e, stage, path, s->t, N_T, g_meta, &bytes, &err);
    if (rc != 0)
        fail_msg("ckpt_write_safetensors(%s): %d: %s", path, rc, err.msg);
    assert_int_equal(io_pending(e), 0);
    assert_int_equal(s->big.bad, 0);
    assert_int_equal(s->big.next, s->big.nbytes);
    assert_true(s->big.calls >= 1);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, bytes);
}

/* The file at path holds exactly s: header padded to IO_ALIGN, size exact,
 * st_open accepts it and every tensor's bytes match. */
static void check_tset_file(const struct tset *s, const char *path)
{
    rt_err err = {{0}};
    size_t len;
    uint8_t *file = read_all(path, &len);
    uint64_t hlen = header_len(file);
    assert_int_equal((8 + hlen) % IO_ALIGN, 0);
    assert_int_equal(len, 8 + hlen + s->data_len);
    assert_int_equal(file[8], '{');
    size_t j = 8 + hlen;
    while (file[j - 1] == ' ')
        j--;
    assert_int_equal(file[j - 1], '}');
    assert_true(8 + hlen - j < IO_ALIGN);
    uint64_t off = 8 + hlen;
    for (int i = 0; i < N_T; i++) {
        if (memcmp(file + off, s->want[i], s->nbytes[i]) != 0)
            fail_msg("%s: bytes of tensor %s differ", path, s->t[i].name);
        off += s->nbytes[i];
    }
    free(file);

    st_set *set = NULL;
    if (st_open(path, &set, &err) != 0)
        fail_msg("st_open(%s): %s", path, err.msg);
    assert_int_equal(set->n_tensors, N_T);
    assert_string_equal(st_meta_get(set, "format"), "pt");
    assert_string_equal(st_meta_get(set, "step"), "42");
    for (int i = 0; i < N_T; i++) {
        const st_tensor *t = st_find(set, s->t[i].name);
        if (t == NULL)
            fail_msg("%s: no tensor %s", path, s->t[i].name);
        assert_int_equal(t->dtype, s->t[i].dtype);
        assert_int_equal(t->ndim, s->t[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], s->t[i].shape[d]);
        assert_int_equal(t->nbytes, s->nbytes[i]);
        if (s->nbytes[i] > 0)
            assert_memory_equal(t->data, s->want[i], s->nbytes[i]);
    }
    st_close(set);
}

static void expect_same_file(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = read_all(a, &la), *y = read_all(b, &lb);
    assert_int_equal(la, lb);
    if (memcmp(x, y, la) != 0)
        fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

static io_engine *open_engine(io_kind kind, const ckpt_staging *reg)
{
    rt_err err = {{0}};
    size_t lens[CKPT_STAGING_MAX];
    io_opts o = {.kind = kind};
    if (reg != NULL) {
        for (int i = 0; i < reg->n; i++)
            lens[i] = reg->len;
        o.n_bufs = reg->n;
        o.bufs = reg->buf;
        o.buf_lens = lens;
    }
    io_engine *e = NULL;
    if (io_engine_open(&o, &e, &err) != 0)
        fail_msg("io_engine_open(kind %d): %s", (int)kind, err.msg);
    assert_non_null(e);
    return e;
}

/* ---- writing safetensors ----------------------------------------------- */

static void test_write_engines_agree(void **state)
{
    (void)state;
    char pa[512], pb[512], pc[512], pd[512], pw[512];
    rt_err err = {{0}};
    struct tset s;
    io_stats ios;
    tset_init(&s);

    /* io_uring (when the kernel allows it) with per-call default staging. */
    io_engine *eu = open_engine(IO_KIND_AUTO, NULL);
    print_message("engine A: %s\n", io_engine_describe(eu));
    write_tset(eu, NULL, &s, tpath(pa, sizeof pa, "a.safetensors"));
    io_engine_close(eu);
    check_tset_file(&s, pa);

    /* pread/pwrite with three 64 KiB buffers: hundreds of writes, the ring
     * wraps, and f32/f16 elements straddle buffer ends. */
    ckpt_staging small;
    assert_int_equal(ckpt_staging_init(&small, 3, 64 << 10, &err), 0);
    io_engine *es = open_engine(IO_KIND_SYNC, NULL);
    assert_int_equal(io_engine_kind(es), IO_KIND_SYNC);
    write_tset(es, &small, &s, tpath(pb, sizeof pb, "b.safetensors"));
    assert_true(s.big.splits > 0);
    struct stat sb;
    assert_int_equal(stat(pb, &sb), 0);
    io_engine_stats(es, &ios);
    assert_int_equal(ios.reqs, ((uint64_t)sb.st_size + (64 << 10) - 1) / (64 << 10)); /* one per buffer */
    assert_int_equal(ios.failed, 0);
    io_engine_close(es);
    ckpt_staging_free(&small);
    check_tset_file(&s, pb);
    expect_same_file(pa, pb);

    /* Staging registered with the ring (WRITE_FIXED), two 1 MiB buffers. */
    ckpt_staging reg;
    assert_int_equal(ckpt_staging_init(&reg, 2, 1 << 20, &err), 0);
    io_engine *er = open_engine(IO_KIND_AUTO, &reg);
    print_message("engine C: %s\n", io_engine_describe(er));
    write_tset(er, &reg, &s, tpath(pc, sizeof pc, "c.safetensors"));
    assert_true(s.big.splits > 0);
    io_engine_stats(er, &ios);
    assert_int_equal(ios.failed, 0);
    if (io_engine_kind(er) == IO_KIND_URING && strstr(io_engine_describe(er), "2 registered") != NULL)
        assert_int_equal(ios.fixed, ios.ios); /* every write came from the registered staging */
    /* The same engine and staging again, over the existing file. */
    write_tset(er, &reg, &s, pc);
    io_engine_close(er);
    ckpt_staging_free(&reg);
    check_tset_file(&s, pc);
    expect_same_file(pa, pc);

    /* One 4 KiB buffer: every write waits for the previous one. */
    ckpt_staging one;
    assert_int_equal(ckpt_staging_init(&one, 1, IO_ALIGN, &err), 0);
    io_engine *e1 = open_engine(IO_KIND_AUTO, NULL);
    write_tset(e1, &one, &s, tpath(pd, sizeof pd, "d.safetensors"));
    io_engine_close(e1);
    ckpt_staging_free(&one);
    expect_same_file(pa, pd);

    /* The data section equals what the independent st_writer lays out. */
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < N_T; i++)
        assert_int_equal(st_writer_add(&w, s.t[i].name, s.t[i].dtype, s.t[i].ndim, s.t[i].shape, s.want[i],
                                       &err), 0);
    assert_int_equal(st_writer_write(&w, tpath(pw, sizeof pw, "w.safetensors"), &err), 0);
    st_writer_free(&w);
    size_t la, lw;
    uint8_t *a = read_all(pa, &la), *b = read_all(pw, &lw);
    uint64_t ha = header_len(a), hw = header_len(b);
    assert_int_equal(la - 8 - ha, lw - 8 - hw);
    assert_memory_equal(a + 8 + ha, b + 8 + hw, la - 8 - ha);
    free(a);
    free(b);
    tset_free(&s);
    g_test_passed = true;
}

static void test_write_small_and_empty(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    io_engine *e = open_engine(IO_KIND_AUTO, NULL);
    uint64_t bytes = 0;
    /* No tensors at all: a header alone, exactly one block. */
    assert_int_equal(ckpt_write_safetensors(e, NULL, tpath(p, sizeof p, "none.safetensors"), NULL, 0, NULL, &bytes,
                                            &err), 0);
    assert_int_equal(bytes, IO_ALIGN);
    st_set *set = NULL;
    if (st_open(p, &set, &err) != 0)
        fail_msg("st_open: %s", err.msg);
    assert_int_equal(set->n_tensors, 0);
    assert_int_equal(set->n_meta, 0);
    st_close(set);

    /* A header longer than one block: data starts at the next 4 KiB. */
    enum { N = 200 };
    ckpt_tensor t[N];
    char names[N][48];
    uint16_t vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%d.input_layernorm.weight", i);
        vals[i] = (uint16_t)(i * 3);
        t[i] = (ckpt_tensor){.name = names[i], .dtype = DT_BF16, .ndim = 1, .shape = {1}, .data = &vals[i]};
    }
    assert_int_equal(ckpt_write_safetensors(e, NULL, tpath(p, sizeof p, "many.safetensors"), t, N, NULL, &bytes,
                                            &err), 0);
    size_t len;
    uint8_t *f = read_all(p, &len);
    uint64_t h = header_len(f);
    assert_true(8 + h > IO_ALIGN);
    assert_int_equal((8 + h) % IO_ALIGN, 0);
    assert_int_equal(len, 8 + h + 2 * N);
    assert_int_equal(bytes, len);
    free(f);
    if (st_open(p, &set, &err) != 0)
        fail_msg("st_open: %s", err.msg);
    assert_int_equal(set->n_tensors, N);
    for (int i = 0; i < N; i++)
        assert_memory_equal(st_find(set, names[i])->data, &vals[i], 2);
    st_close(set);
    io_engine_close(e);
    g_test_passed = true;
}

static void test_write_errors(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    io_engine *e = open_engine(IO_KIND_AUTO, NULL);
    float v[4] = {1, 2, 3, 4};
    struct pat_ctx pc = {.nbytes = 4u << 20, .fail_at = 3u << 20};
    ckpt_tensor t[3] = {
        {.name = "a", .dtype = DT_F32, .ndim = 1, .shape = {4}, .data = v},
        {.name = "spilled.exp_avg", .dtype = DT_F32, .ndim = 1, .shape = {1 << 20}, .fill = pat_fill, .ctx = &pc},
        {.name = "c", .dtype = DT_F32, .ndim = 1, .shape = {4}, .data = v},
    };

    /* A failing fill: the error names file, tensor and the fill's reason,
     * and no partial file is left. */
    tpath(p, sizeof p, "fail.safetensors");
    int rc = ckpt_write_safetensors(e, NULL, p, t, 3, NULL, NULL, &err);
    assert_int_equal(rc, -EIO);
    expect_msg(&err, "fail.safetensors", "spilled.exp_avg");
    expect_msg(&err, "disk on fire", NULL);
    assert_false(exists(p));
    assert_int_equal(io_pending(e), 0);

    /* Same, with small staging so writes are in flight when the fill fails. */
    ckpt_staging st;
    assert_int_equal(ckpt_staging_init(&st, 4, 64 << 10, &err), 0);
    pc.next = 0;
    assert_int_equal(ckpt_write_safetensors(e, &st, p, t, 3, NULL, NULL, &err), -EIO);
    assert_false(exists(p));
    assert_int_equal(io_pending(e), 0);
    ckpt_staging_free(&st);

    /* A name twice. */
    ckpt_tensor dup[2] = {t[0], t[0]};
    assert_int_equal(ckpt_write_safetensors(e, NULL, p, dup, 2, NULL, NULL, &err), -EEXIST);
    expect_msg(&err, "twice", "fail.safetensors");

    /* Neither data nor fill. */
    ckpt_tensor nod = {.name = "nodata", .dtype = DT_F32, .ndim = 1, .shape = {4}};
    assert_int_equal(ckpt_write_safetensors(e, NULL, p, &nod, 1, NULL, NULL, &err), -EINVAL);
    expect_msg(&err, "nodata", "fill");

    /* A metadata key without a value, and a bad dtype. */
    const char *const odd[] = {"format", NULL};
    assert_int_equal(ckpt_write_safetensors(e, NULL, p, t, 1, odd, NULL, &err), -EINVAL);
    expect_msg(&err, "format", NULL);
    ckpt_tensor bad = {.name = "bad", .dtype = DT_INVALID, .ndim = 0, .data = v};
    assert_int_equal(ckpt_write_safetensors(e, NULL, p, &bad, 1, NULL, NULL, &err), -EINVAL);
    expect_msg(&err, "bad", "dtype");
    assert_false(exists(p));

    /* A directory that does not exist. */
    rc = ckpt_write_safetensors(e, NULL, tpath(p, sizeof p, "no/such/dir/x.safetensors"), t, 1, NULL, NULL, &err);
    assert_int_equal(rc, -ENOENT);
    expect_msg(&err, "no/such/dir/x.safetensors", NULL);

    /* Conversion from fp32 refuses a non-float dtype. */
    ckpt_tensor it = {.name = "i", .dtype = DT_I32, .ndim = 1, .shape = {1}, .fill = ckpt_fill_from_f32, .ctx = v};
    tpath(p, sizeof p, "conv.safetensors");
    assert_int_equal(ckpt_write_safetensors(e, NULL, p, &it, 1, NULL, NULL, &err), -EINVAL);
    assert_false(exists(p));
    expect_msg(&err, "I32", "tensor i");
    io_engine_close(e);
    g_test_passed = true;
}

/* ---- the transaction ---------------------------------------------------- */

static const char *g_config = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                              "\"hidden_size\": 8, \"num_hidden_layers\": 1}\n";

enum { V_OK, V_NO_EXP_AVG_SQ, V_STATE_TEXT };

/* Writes a complete checkpoint of a two-tensor model (one bf16 tensor, so
 * the optimizer holds its master) at root/step-<step>. variant breaks one
 * thing before the commit; state_text replaces trainer_state.json. */
static void make_ckpt(io_engine *e, const char *root, uint64_t step, uint64_t cursor, int variant,
                      const char *state_text, ckpt_txn *tx_out)
{
    rt_err err = {{0}};
    char p[CKPT_PATH_MAX];
    ckpt_txn tx;
    if (ckpt_begin(root, step, &tx, &err) != 0)
        fail_msg("ckpt_begin: %s", err.msg);
    assert_true(tx.open);
    assert_true(exists(tx.tmp));

    assert_int_equal(ckpt_txn_path(&tx, CKPT_CONFIG_FILE, p, sizeof p, &err), 0);
    assert_int_equal(ckpt_write_file(p, g_config, strlen(g_config), &err), 0);

    float norm[8], emb[32], m[32], v[32];
    for (int i = 0; i < 32; i++) {
        emb[i] = (float)i / 8.0f;
        m[i] = (float)i * 1e-3f;
        v[i] = (float)i * 1e-6f;
    }
    for (int i = 0; i < 8; i++)
        norm[i] = 1.0f + (float)i;
    ckpt_tensor mt[2] = {
        {.name = "model.norm.weight", .dtype = DT_F32, .ndim = 1, .shape = {8}, .data = norm},
        {.name = "model.embed_tokens.weight", .dtype = DT_BF16, .ndim = 2, .shape = {4, 8},
         .fill = ckpt_fill_from_f32, .ctx = emb},
    };
    assert_int_equal(ckpt_txn_path(&tx, CKPT_MODEL_FILE, p, sizeof p, &err), 0);
    const char *const meta[] = {"format", "pt", NULL};
    if (ckpt_write_safetensors(e, NULL, p, mt, 2, meta, NULL, &err) != 0)
        fail_msg("model: %s", err.msg);

    ckpt_tensor ot[5] = {
        {.name = "model.embed_tokens.weight.exp_avg", .dtype = DT_F32, .ndim = 2, .shape = {4, 8}, .data = m},
        {.name = "model.embed_tokens.weight.exp_avg_sq", .dtype = DT_F32, .ndim = 2, .shape = {4, 8}, .data = v},
        {.name = "model.embed_tokens.weight.master", .dtype = DT_F32, .ndim = 2, .shape = {4, 8}, .data = emb},
        {.name = "model.norm.weight.exp_avg", .dtype = DT_F32, .ndim = 1, .shape = {8}, .data = m},
        {.name = "model.norm.weight.exp_avg_sq", .dtype = DT_F32, .ndim = 1, .shape = {8}, .data = v},
    };
    assert_int_equal(ckpt_txn_path(&tx, CKPT_OPTIM_FILE, p, sizeof p, &err), 0);
    if (ckpt_write_safetensors(e, NULL, p, ot, variant == V_NO_EXP_AVG_SQ ? 4 : 5, NULL, NULL, &err) != 0)
        fail_msg("optimizer: %s", err.msg);

    assert_int_equal(ckpt_txn_path(&tx, CKPT_STATE_FILE, p, sizeof p, &err), 0);
    if (variant == V_STATE_TEXT) {
        write_text(p, state_text);
    } else {
        ckpt_state st = {.step = step, .data_cursor = cursor, .config_hash = 0xfeedfacecafebeefull, .seed = 7,
                         .rng = {1, 2, 3, UINT64_MAX}};
        snprintf(st.run_id, sizeof st.run_id, "run-%llu", (unsigned long long)step);
        assert_int_equal(ckpt_state_write(p, &st, &err), 0);
    }
    if (ckpt_commit(&tx, &err) != 0)
        fail_msg("ckpt_commit: %s", err.msg);
    assert_false(tx.open);
    assert_false(exists(tx.tmp));
    if (tx_out)
        *tx_out = tx;
}

static int count_tmp_dirs(const char *root)
{
    int n = 0;
    char cmd[CKPT_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp$'", root);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static void test_transaction(void **state)
{
    (void)state;
    char root[512], p[CKPT_PATH_MAX];
    rt_err err = {{0}};
    io_engine *e = open_engine(IO_KIND_AUTO, NULL);
    tpath(root, sizeof root, "runs/r1/ckpt"); /* parents created by ckpt_begin */

    ckpt_txn tx;
    make_ckpt(e, root, 10, 111, V_OK, NULL, &tx);
    snprintf(p, sizeof p, "%s/step-10", root);
    assert_string_equal(tx.dir, p);
    assert_true(exists(p));
    snprintf(p, sizeof p, "%s/step-10/DONE", root);
    assert_true(exists(p));
    assert_int_equal(count_tmp_dirs(root), 0);

    /* DONE lists every file with its size; tx.bytes is their sum. */
    size_t len;
    char *done = (char *)read_all(p, &len);
    uint64_t sum = 0;
    const char *files[] = {CKPT_CONFIG_FILE, CKPT_MODEL_FILE, CKPT_OPTIM_FILE, CKPT_STATE_FILE};
    for (int i = 0; i < 4; i++) {
        char f[CKPT_PATH_MAX], key[128];
        struct stat sb;
        snprintf(f, sizeof f, "%s/step-10/%s", root, files[i]);
        assert_int_equal(stat(f, &sb), 0);
        snprintf(key, sizeof key, "\"%s\": %lld", files[i], (long long)sb.st_size);
        if (strstr(done, key) == NULL)
            fail_msg("DONE lacks %s: %s", key, done);
        sum += (uint64_t)sb.st_size;
    }
    assert_non_null(strstr(done, "\"step\": \"10\""));
    assert_int_equal(tx.bytes, sum);
    free(done);

    ckpt_state st;
    snprintf(p, sizeof p, "%s/step-10", root);
    if (ckpt_validate(p, &st, &err) != 0)
        fail_msg("ckpt_validate: %s", err.msg);
    assert_int_equal(st.step, 10);
    assert_int_equal(st.data_cursor, 111);
    assert_int_equal(st.rng[3], UINT64_MAX);
    assert_string_equal(st.run_id, "run-10");

    /* Model and optimizer read back through st_open. */
    st_set *set = NULL;
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_string_equal(st_meta_get(set, "format"), "pt");
    const st_tensor *emb = st_find(set, "model.embed_tokens.weight");
    assert_non_null(emb);
    assert_int_equal(emb->dtype, DT_BF16);
    float back[32];
    assert_int_equal(st_tensor_read_f32(emb, back, 32, &err), 0);
    for (int i = 0; i < 32; i++)
        assert_true(back[i] == (float)i / 8.0f); /* exact in bf16 */
    st_close(set);

    uint64_t step = 0;
    char dir[CKPT_PATH_MAX];
    assert_int_equal(ckpt_latest(root, UINT64_MAX, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 10);
    assert_string_equal(dir, p);

    /* The same step again (a run resumed from before it): replaced whole. */
    make_ckpt(e, root, 10, 222, V_OK, NULL, NULL);
    assert_int_equal(ckpt_validate(p, &st, &err), 0);
    assert_int_equal(st.data_cursor, 222);
    assert_int_equal(count_tmp_dirs(root), 0);

    /* A stale tmp of the step being begun is cleared; abort removes it. */
    snprintf(p, sizeof p, "%s/step-11.tmp", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/step-11.tmp/junk", root);
    write_text(p, "junk");
    assert_int_equal(ckpt_begin(root, 11, &tx, &err), 0);
    assert_false(exists(p));
    assert_int_equal(ckpt_txn_path(&tx, "x", p, sizeof p, &err), 0);
    write_text(p, "partial");
    assert_int_equal(ckpt_abort(&tx, &err), 0);
    assert_false(exists(tx.tmp));
    assert_false(exists(tx.dir));
    assert_int_equal(ckpt_abort(&tx, &err), 0);
    assert_int_equal(ckpt_commit(&tx, &err), -EINVAL);
    assert_int_equal(ckpt_latest(root, UINT64_MAX, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 10);

    /* A commit that cannot list its files leaves the tmp for abort. */
    assert_int_equal(ckpt_begin(root, 12, &tx, &err), 0);
    assert_int_equal(ckpt_txn_path(&tx, "subdir", p, sizeof p, &err), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_true(ckpt_commit(&tx, &err) < 0);
    expect_msg(&err, "subdir", "regular file");
    assert_true(tx.open);
    assert_false(exists(tx.dir));
    assert_int_equal(ckpt_abort(&tx, &err), 0);
    assert_false(exists(tx.tmp));
    io_engine_close(e);
    g_test_passed = true;
}

/* A minimal committed step (prune and latest do not look inside). */
static void commit_tiny(const char *root, uint64_t step)
{
    rt_err err = {{0}};
    ckpt_txn tx;
    char p[CKPT_PATH_MAX];
    assert_int_equal(ckpt_begin(root, step, &tx, &err), 0);
    assert_int_equal(ckpt_txn_path(&tx, "note", p, sizeof p, &err), 0);
    assert_int_equal(ckpt_write_file(p, "x", 1, &err), 0);
    if (ckpt_commit(&tx, &err) != 0)
        fail_msg("commit: %s", err.msg);
}

static bool rexists(const char *root, const char *name)
{
    char p[CKPT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, name);
    return exists(p);
}

static void rmkdir(const char *root, const char *name, bool with_done)
{
    char p[CKPT_PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, name);
    assert_int_equal(mkdir(p, 0755), 0);
    if (with_done) {
        snprintf(p, sizeof p, "%s/%s/DONE", root, name);
        write_text(p, "{\"step\": \"0\", \"files\": {}}\n");
    }
}

static void test_prune(void **state)
{
    (void)state;
    char root[512];
    rt_err err = {{0}};
    tpath(root, sizeof root, "prune");
    for (uint64_t s = 1; s <= 5; s++)
        commit_tiny(root, s);
    rmkdir(root, "step-6", false);        /* not ours: left alone */
    rmkdir(root, "step-7.tmp", true);     /* a writer died: removed */
    rmkdir(root, "step-2.old.tmp", true); /* a removal died: removed */
    rmkdir(root, "other", true);

    assert_int_equal(ckpt_prune(root, 0, &err), 0); /* keep all; clears tmps */
    for (uint64_t s = 1; s <= 5; s++) {
        char n[32];
        snprintf(n, sizeof n, "step-%llu", (unsigned long long)s);
        assert_true(rexists(root, n));
    }
    assert_false(rexists(root, "step-7.tmp"));
    assert_false(rexists(root, "step-2.old.tmp"));

    rmkdir(root, "step-8.tmp", true);
    assert_int_equal(ckpt_prune(root, 2, &err), 0);
    assert_false(rexists(root, "step-1"));
    assert_false(rexists(root, "step-2"));
    assert_false(rexists(root, "step-3"));
    assert_true(rexists(root, "step-4"));
    assert_true(rexists(root, "step-5"));
    assert_true(rexists(root, "step-6"));
    assert_false(rexists(root, "step-8.tmp"));
    assert_true(rexists(root, "other"));
    assert_int_equal(count_tmp_dirs(root), 0);

    /* Numeric, not lexical, order: step-10 is newer than step-9. */
    commit_tiny(root, 9);
    commit_tiny(root, 10);
    assert_int_equal(ckpt_prune(root, 1, &err), 0);
    assert_true(rexists(root, "step-10"));
    assert_false(rexists(root, "step-9"));
    assert_false(rexists(root, "step-5"));
    assert_true(rexists(root, "step-6"));

    assert_true(ckpt_prune(tpath(root, sizeof root, "nonexistent"), 1, &err) < 0);
    expect_msg(&err, "nonexistent", NULL);
    g_test_passed = true;
}

static void test_latest(void **state)
{
    (void)state;
    char root[512], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX];
    rt_err err = {{0}};
    uint64_t step = 0;
    tpath(root, sizeof root, "latest");
    assert_int_equal(mkdir(root, 0755), 0);

    assert_int_equal(ckpt_latest(root, UINT64_MAX, &step, dir, sizeof dir, &err), -ENOENT);
    expect_msg(&err, "no complete checkpoint", "latest");

    commit_tiny(root, 3);
    commit_tiny(root, 9);
    commit_tiny(root, 10);
    rmkdir(root, "step-11", false);       /* no DONE */
    rmkdir(root, "step-12.tmp", true);    /* tmp, even with DONE */
    rmkdir(root, "step-13x", true);
    rmkdir(root, "step-abc", true);
    rmkdir(root, "step-99999999999999999999", true); /* past 64 bits */
    snprintf(p, sizeof p, "%s/step-20", root);
    write_text(p, "a file, not a directory");
    rmkdir(root, "step-30", false);       /* DONE is a directory */
    rmkdir(root, "step-30/DONE", false);

    assert_int_equal(ckpt_latest(root, UINT64_MAX, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 10);
    snprintf(p, sizeof p, "%s/step-10", root);
    assert_string_equal(dir, p);
    assert_int_equal(ckpt_latest(root, 10, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 9);
    assert_int_equal(ckpt_latest(root, 3, &step, dir, sizeof dir, &err), -ENOENT);
    expect_msg(&err, "before step 3", NULL);
    char tiny[8];
    assert_int_equal(ckpt_latest(root, UINT64_MAX, &step, tiny, sizeof tiny, &err), -ENAMETOOLONG);

    /* locate: the root, a step dir (with a trailing slash), an unfinished one. */
    step = 0;
    assert_int_equal(ckpt_locate(root, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 10);
    snprintf(p, sizeof p, "%s/step-9/", root);
    assert_int_equal(ckpt_locate(p, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 9);
    snprintf(p, sizeof p, "%s/step-9", root);
    assert_string_equal(dir, p);
    snprintf(p, sizeof p, "%s/step-11", root);
    assert_int_equal(ckpt_locate(p, &step, dir, sizeof dir, &err), -ENOENT);
    expect_msg(&err, "no DONE marker", "step-11");
    g_test_passed = true;
}

static void test_locate(void **state)
{
    (void)state;
    char root[512], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX];
    rt_err err = {{0}};
    uint64_t step = 0;
    io_engine *e = open_engine(IO_KIND_AUTO, NULL);
    tpath(root, sizeof root, "locate");
    make_ckpt(e, root, 5, 1, V_OK, NULL, NULL);
    make_ckpt(e, root, 6, 1, V_OK, NULL, NULL);
    rmkdir(root, "step-7", false);

    assert_int_equal(ckpt_locate(root, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 6);
    snprintf(p, sizeof p, "%s/step-6", root);
    assert_string_equal(dir, p);

    snprintf(p, sizeof p, "%s/step-5/", root);
    assert_int_equal(ckpt_locate(p, &step, dir, sizeof dir, &err), 0);
    assert_int_equal(step, 5);
    snprintf(p, sizeof p, "%s/step-5", root);
    assert_string_equal(dir, p);

    snprintf(p, sizeof p, "%s/step-7", root);
    assert_int_equal(ckpt_locate(p, &step, dir, sizeof dir, &err), -ENOENT);
    expect_msg(&err, "no DONE marker", "step-7");

    assert_true(ckpt_locate(tpath(p, sizeof p, "locate-missing"), &step, dir, sizeof dir, &err) < 0);
    expect_msg(&err, "locate-missing", NULL);
    io_engine_close(e);
    g_test_passed = true;
}

/* ---- validation -------------------------------------------------------- */

/* A fresh valid checkpoint at g_dir/<name>/step-7; its path in dir. */
static void fresh(io_engine *e, const char *name, char *dir, size_t len, int variant, const char *state_text)
{
    char root[512];
    tpath(root, sizeof root, name);
    make_ckpt(e, root, 7, 70, variant, state_text, NULL);
    snprintf(dir, len, "%s/step-7", root);
}

static void expect_invalid(const char *dir, const char *n1, const char *n2)
{
    rt_err err = {{0}};
    ckpt_state st = {.step = 12345};
    int rc = ckpt_validate(dir, &st, &err);
    if (rc >= 0)
        fail_msg("ckpt_validate(%s) passed, expected an error mentioning %s", dir, n1);
    assert_int_equal(st.step, 12345); /* untouched on failure */
    expect_msg(&err, n1, n2);
}

static const char *state_with(const char *step, const char *cursor, const char *rng)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"version\": 1, \"run_id\": \"r\", \"step\": %s, \"data_cursor\": %s, "
             "\"config_hash\": \"5\", \"seed\": \"1\", \"rng\": %s}\n",
             step, cursor, rng);
    return buf;
}

static void test_validate_errors(void **state)
{
    (void)state;
    char dir[1024], p[CKPT_PATH_MAX];
    rt_err err = {{0}};
    io_engine *e = open_engine(IO_KIND_AUTO, NULL);

    /* Control: a good one passes, with state given as JSON numbers too. */
    fresh(e, "v-ok", dir, sizeof dir, V_STATE_TEXT, state_with("7", "70", "[\"1\", 2, \"3\", 4]"));
    ckpt_state st;
    if (ckpt_validate(dir, &st, &err) != 0)
        fail_msg("ckpt_validate: %s", err.msg);
    assert_int_equal(st.rng[1], 2);
    assert_int_equal(st.data_cursor, 70);

    fresh(e, "v-done", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/DONE", dir);
    assert_int_equal(unlink(p), 0);
    expect_invalid(dir, "no DONE marker", "not finished");

    fresh(e, "v-trunc", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size - 50), 0);
    expect_invalid(dir, "model.safetensors", "truncated");

    fresh(e, "v-grown", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size + 1), 0);
    expect_invalid(dir, "optimizer.safetensors", "changed");

    /* Same size, corrupt header: st_open's message, naming the file. */
    fresh(e, "v-header", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 8), 1);
    close(fd);
    expect_invalid(dir, "model.safetensors", "JSON");

    fresh(e, "v-missing", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    assert_int_equal(unlink(p), 0);
    expect_invalid(dir, "trainer_state.json", "missing");

    fresh(e, "v-json", dir, sizeof dir, V_STATE_TEXT, "{\"version\": 1, \"step\": \"7\",");
    expect_invalid(dir, "trainer_state.json", "not valid JSON");

    fresh(e, "v-key", dir, sizeof dir, V_STATE_TEXT, state_with("\"7\"", "\"x12\"", "[1, 2, 3, 4]"));
    expect_invalid(dir, "trainer_state.json", "\"data_cursor\"");

    fresh(e, "v-rng", dir, sizeof dir, V_STATE_TEXT, state_with("7", "1", "[1, 2, 3]"));
    expect_invalid(dir, "trainer_state.json", "\"rng\"");

    fresh(e, "v-step", dir, sizeof dir, V_STATE_TEXT, state_with("6", "1", "[1, 2, 3, 4]"));
    expect_invalid(dir, "\"step\" is 6", "DONE says 7");

    fresh(e, "v-optim", dir, sizeof dir, V_NO_EXP_AVG_SQ, NULL);
    expect_invalid(dir, "optimizer.safetensors", "model.norm.weight.exp_avg_sq");

    /* config.json rewritten with the same size but broken. */
    fresh(e, "v-config", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/config.json", dir);
    fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "[", 1, 0), 1);
    close(fd);
    expect_invalid(dir, "config.json", "not valid JSON");

    /* DONE that is not JSON. */
    fresh(e, "v-donejson", dir, sizeof dir, V_OK, NULL);
    snprintf(p, sizeof p, "%s/DONE", dir);
    write_text(p, "done\n");
    expect_invalid(dir, "DONE", "not valid JSON");

    expect_invalid(tpath(p, sizeof p, "v-nowhere"), "v-nowhere", NULL);
    io_engine_close(e);
    g_test_passed = true;
}

/* ---- trainer state ------------------------------------------------------ */

static void test_state_roundtrip(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    ckpt_state a = {.step = UINT64_MAX, .data_cursor = UINT64_MAX, .config_hash = UINT64_MAX,
                    .seed = UINT64_MAX, .rng = {UINT64_MAX, 0x8000000000000001ull, (1ull << 53) + 1, 0}};
    snprintf(a.run_id, sizeof a.run_id, "run \"q\" \\ \xc3\xa9");
    tpath(p, sizeof p, "state.json");
    assert_int_equal(ckpt_state_write(p, &a, &err), 0);
    size_t len;
    char *text = (char *)read_all(p, &len);
    assert_non_null(strstr(text, "\"config_hash\": \"18446744073709551615\""));
    free(text);
    ckpt_state b;
    memset(&b, 0x55, sizeof b);
    if (ckpt_state_read(p, &b, &err) != 0)
        fail_msg("ckpt_state_read: %s", err.msg);
    assert_true(b.step == UINT64_MAX);
    assert_true(b.data_cursor == UINT64_MAX);
    assert_true(b.config_hash == UINT64_MAX);
    assert_true(b.seed == UINT64_MAX);
    for (int i = 0; i < 4; i++)
        assert_true(b.rng[i] == a.rng[i]);
    assert_string_equal(b.run_id, a.run_id);

    /* Bad values name their key. */
    struct {
        const char *text, *n1, *n2;
    } bad[] = {
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": \"-1\", \"data_cursor\": \"0\", \"config_hash\": \"0\", "
         "\"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"step\"", "digits"},
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": \"18446744073709551616\", \"data_cursor\": \"0\", "
         "\"config_hash\": \"0\", \"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"step\"", "64 bits"},
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": -3, \"data_cursor\": \"0\", \"config_hash\": \"0\", "
         "\"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"step\"", "non-negative"},
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": \"1\", \"data_cursor\": \"0\", \"config_hash\": \"0\", "
         "\"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"seed\"", "missing"},
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": \"1\", \"data_cursor\": \"0\", \"config_hash\": 1.5, "
         "\"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"config_hash\"", "real"},
        {"{\"version\": 1, \"run_id\": \"r\", \"step\": \"1\", \"data_cursor\": \"0\", \"config_hash\": \"0\", "
         "\"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \" 1\"]}", "\"rng[3]\"", NULL},
        {"{\"version\": 2, \"run_id\": \"r\", \"step\": \"1\", \"data_cursor\": \"0\", \"config_hash\": \"0\", "
         "\"seed\": \"0\", \"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"version\"", NULL},
        {"{\"version\": 1, \"run_id\": \"0123456789012345678901234567890123456789012345678901234567890123\", "
         "\"step\": \"1\", \"data_cursor\": \"0\", \"config_hash\": \"0\", \"seed\": \"0\", "
         "\"rng\": [\"0\", \"0\", \"0\", \"0\"]}", "\"run_id\"", NULL},
        {"[1, 2]", "state.json", "expected an object"},
        {"{\"version\": 1, \"version\": 1}", "state.json", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(p, bad[i].text);
        b.step = 99;
        if (ckpt_state_read(p, &b, &err) >= 0)
            fail_msg("case %zu read fine, expected an error mentioning %s", i, bad[i].n1);
        assert_int_equal(b.step, 99);
        expect_msg(&err, bad[i].n1, bad[i].n2);
        expect_msg(&err, "state.json", NULL);
    }
    assert_int_equal(ckpt_state_read(tpath(p, sizeof p, "no-state.json"), &b, &err), -ENOENT);
    expect_msg(&err, "no-state.json", "missing");

    /* A run_id that fills the array without a NUL is refused on write. */
    memset(a.run_id, 'x', sizeof a.run_id);
    assert_int_equal(ckpt_state_write(p, &a, &err), -EINVAL);
    expect_msg(&err, "run_id", NULL);
    g_test_passed = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_engines_agree, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_write_small_and_empty, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_transaction, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_prune, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_latest, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_locate, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_validate_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * test_safetensors: write -> read round trips (single file and sharded), the
 * exact header bytes the writer produces, atomic replacement, and one test per
 * kind of malformed file, each built byte by byte here so the reader is never
 * checked only against our own writer.
 *
 * Every failure test checks the return is negative and that the message names
 * the file and, where there is one, the tensor or key at fault. Files live in
 * a mkdtemp directory removed by the group teardown.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/safetensors.h"

static char g_dir[] = "/tmp/rt_test_st_XXXXXX";

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
    return nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* g_dir/name into buf (static storage per call site is the caller's). */
static const char *tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
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

/* A safetensors file with header length hlen (the JSON's length when
 * UINT64_MAX), the JSON header text, then data_len bytes 0, 1, 2, ... */
static void write_st_len(const char *path, uint64_t hlen, const char *json, size_t data_len)
{
    size_t jlen = strlen(json);
    if (hlen == UINT64_MAX)
        hlen = jlen;
    uint8_t *buf = malloc(8 + jlen + data_len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, json, jlen);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + jlen + i] = (uint8_t)i;
    write_bytes(path, buf, 8 + jlen + data_len);
    free(buf);
}

static void write_st(const char *path, const char *json, size_t data_len)
{
    write_st_len(path, UINT64_MAX, json, data_len);
}

/* st_open(path) must fail, naming the file (its last component) and each
 * non-NULL needle. */
static void expect_open_fail(const char *path, const char *needle1, const char *needle2)
{
    rt_err err = {{0}};
    st_set *set = (st_set *)&err;
    int rc = st_open(path, &set, &err);
    if (rc >= 0)
        fail_msg("st_open(%s) succeeded, expected an error mentioning %s", path, needle1 ? needle1 : "the file");
    assert_null(set);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (strstr(err.msg, base) == NULL)
        fail_msg("error does not name the file %s: %s", base, err.msg);
    if (needle1 && strstr(err.msg, needle1) == NULL)
        fail_msg("error does not mention \"%s\": %s", needle1, err.msg);
    if (needle2 && strstr(err.msg, needle2) == NULL)
        fail_msg("error does not mention \"%s\": %s", needle2, err.msg);
}

/* One malformed header with a data section of data_len bytes; must fail
 * naming the file and needles. */
static void bad_header(const char *file, const char *json, size_t data_len, const char *n1, const char *n2)
{
    char p[512];
    write_st(tpath(p, sizeof p, file), json, data_len);
    expect_open_fail(p, n1, n2);
}

#define TN "model.layers.0.mlp.up_proj.weight"
#define ENTRY(dtype, shape, b, e) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

/* ---- round trips ------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t bf16[4], f16[4];
    const float small[4] = {1.0f, -0.5f, 1024.0f, 3.0f}; /* exact in bf16 and f16 */
    for (int i = 0; i < 4; i++) {
        bf16[i] = dt_f32_to_bf16(small[i]);
        f16[i] = dt_f32_to_f16(small[i]);
    }
    int64_t i64[3] = {-1, INT64_MAX, 42};
    uint8_t u8[5] = {1, 2, 3, 4, 5};
    double scalar = 2.25;
    uint8_t flag = 1;
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "w.f32", DT_F32, 2, (int64_t[]){2, 3}, f32, &err), 0);
    assert_int_equal(st_writer_add(&w, "a.u8", DT_U8, 1, (int64_t[]){5}, u8, &err), 0);
    assert_int_equal(st_writer_add(&w, "b.bf16", DT_BF16, 3, (int64_t[]){1, 2, 2}, bf16, &err), 0);
    assert_int_equal(st_writer_add(&w, "c.f16", DT_F16, 1, (int64_t[]){4}, f16, &err), 0);
    assert_int_equal(st_writer_add(&w, "d.i64", DT_I64, 1, (int64_t[]){3}, i64, &err), 0);
    assert_int_equal(st_writer_add(&w, "e.scalar", DT_F64, 0, NULL, &scalar, &err), 0);
    assert_int_equal(st_writer_add(&w, "f.flag", DT_BOOL, 0, NULL, &flag, &err), 0);
    assert_int_equal(st_writer_add(&w, "g.empty", DT_I32, 2, (int64_t[]){0, 4}, NULL, &err), 0);
    assert_int_equal(st_writer_meta(&w, "format", "pt", &err), 0);
    assert_int_equal(st_writer_meta(&w, "step", "1", &err), 0);
    assert_int_equal(st_writer_meta(&w, "step", "1000", &err), 0);
    assert_int_equal(w.n_meta, 2);
    assert_int_equal(st_writer_write(&w, tpath(p, sizeof p, "rt.safetensors"), &err), 0);
    st_writer_free(&w);

    st_set *set = NULL;
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 8);
    assert_int_equal(set->n_files, 1);
    for (int i = 1; i < set->n_tensors; i++)
        assert_true(strcmp(set->tensors[i - 1].name, set->tensors[i].name) < 0);
    assert_string_equal(st_meta_get(set, "format"), "pt");
    assert_string_equal(st_meta_get(set, "step"), "1000");
    assert_null(st_meta_get(set, "nope"));
    assert_null(st_find(set, "nope"));
    assert_null(st_find(set, "w"));

    const st_tensor *t = st_find(set, "w.f32");
    assert_non_null(t);
    assert_int_equal(t->dtype, DT_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(st_numel(t), 6);
    assert_memory_equal(t->data, f32, sizeof f32);
    assert_string_equal(t->file, p);
    float out[6];
    assert_int_equal(st_tensor_read_f32(t, out, 6, &err), 0);
    assert_memory_equal(out, f32, sizeof f32);
    assert_true(st_tensor_read_f32(t, out, 5, &err) < 0);
    assert_non_null(strstr(err.msg, "w.f32"));
    assert_non_null(strstr(err.msg, "rt.safetensors"));

    t = st_find(set, "a.u8");
    assert_non_null(t);
    assert_int_equal(t->dtype, DT_U8);
    assert_memory_equal(t->data, u8, sizeof u8);
    assert_true(st_tensor_read_f32(t, out, 5, &err) < 0);
    assert_non_null(strstr(err.msg, "a.u8"));
    assert_non_null(strstr(err.msg, "U8"));

    t = st_find(set, "b.bf16");
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->nbytes, 8);
    assert_int_equal(st_tensor_read_f32(t, out, 4, &err), 0);
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == small[i]);

    t = st_find(set, "c.f16");
    assert_non_null(t);
    assert_int_equal(st_tensor_read_f32(t, out, 4, &err), 0);
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == small[i]);

    t = st_find(set, "d.i64");
    assert_non_null(t);
    assert_int_equal(t->dtype, DT_I64);
    assert_memory_equal(t->data, i64, sizeof i64);

    t = st_find(set, "e.scalar");
    assert_non_null(t);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(st_numel(t), 1);
    assert_int_equal(t->nbytes, 8);
    assert_int_equal(st_tensor_read_f32(t, out, 1, &err), 0);
    assert_true(out[0] == 2.25f);

    t = st_find(set, "f.flag");
    assert_non_null(t);
    assert_int_equal(t->dtype, DT_BOOL);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(*(const uint8_t *)t->data, 1);

    t = st_find(set, "g.empty");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(st_numel(t), 0);
    assert_int_equal(t->nbytes, 0);
    assert_non_null(t->data);
    st_close(set);
    st_close(NULL);
}

/* The header bytes are what the reference implementation writes:
 * "__metadata__" first, tensors by offset (= order added), compact JSON,
 * padded with spaces to a multiple of 8. */
static void test_header_bytes(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    float z[2] = {1, 2};
    uint8_t a[3] = {7, 8, 9};
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "z", DT_F32, 1, (int64_t[]){2}, z, &err), 0);
    assert_int_equal(st_writer_add(&w, "a", DT_U8, 2, (int64_t[]){1, 3}, a, &err), 0);
    assert_int_equal(st_writer_meta(&w, "format", "pt", &err), 0);
    assert_int_equal(st_writer_write(&w, tpath(p, sizeof p, "hdr.safetensors"), &err), 0);
    st_writer_free(&w);

    size_t len;
    uint8_t *buf = read_all(p, &len);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[8,11]}}";
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    assert_int_equal(hlen % 8, 0);
    assert_true(hlen >= strlen(want) && hlen < strlen(want) + 8);
    assert_int_equal(len, 8 + hlen + 11);
    assert_memory_equal(buf + 8, want, strlen(want));
    for (size_t i = strlen(want); i < hlen; i++)
        assert_int_equal(buf[8 + i], ' ');
    assert_memory_equal(buf + 8 + hlen, z, 8);
    assert_memory_equal(buf + 8 + hlen + 8, a, 3);
    free(buf);

    /* No metadata: no "__metadata__" key at all. */
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "z", DT_F32, 1, (int64_t[]){2}, z, &err), 0);
    assert_int_equal(st_writer_write(&w, p, &err), 0);
    st_writer_free(&w);
    buf = read_all(p, &len);
    const char *want2 = "{\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    assert_memory_equal(buf + 8, want2, strlen(want2));
    free(buf);
}

static void test_empty_files(void **state)
{
    (void)state;
    char p[512];
    rt_err err = {{0}};
    st_set *set = NULL;
    st_writer w;

    /* A writer with no tensors: "{}" and a zero-length data section. */
    st_writer_init(&w);
    assert_int_equal(st_writer_write(&w, tpath(p, sizeof p, "none.safetensors"), &err), 0);
    st_writer_free(&w);
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 0);
    assert_null(st_find(set, "x"));
    st_close(set);

    /* Only empty tensors: zero-length data section too. */
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "e1", DT_F32, 1, (int64_t[]){0}, NULL, &err), 0);
    assert_int_equal(st_writer_add(&w, "e0", DT_BF16, 3, (int64_t[]){4, 0, 2}, NULL, &err), 0);
    assert_int_equal(st_writer_write(&w, tpath(p, sizeof p, "empties.safetensors"), &err), 0);
    st_writer_free(&w);
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 2);
    assert_string_equal(set->tensors[0].name, "e0");
    assert_int_equal(set->tensors[0].nbytes, 0);
    float dummy;
    assert_int_equal(st_tensor_read_f32(&set->tensors[0], &dummy, 0, &err), 0);
    st_close(set);

    /* Hand-made minimal file: "{}" with nothing after it. */
    write_st(tpath(p, sizeof p, "min.safetensors"), "{}", 0);
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 0);
    assert_int_equal(set->n_meta, 0);
    st_close(set);

    /* Hand-made: padding spaces, empty tensor sharing an offset with a real one. */
    write_st(tpath(p, sizeof p, "pad.safetensors"),
             "{\"b\":" ENTRY("U8", "[2]", 0, 2) ",\"a\":" ENTRY("U8", "[0]", 0, 0) ",\"c\":"
             ENTRY("U8", "[0]", 2, 2) "}      ", 2);
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 3);
    assert_int_equal(((const uint8_t *)st_find(set, "b")->data)[1], 1);
    st_close(set);
}

static void test_writer_errors(void **state)
{
    (void)state;
    rt_err err = {{0}};
    float x[4] = {0};
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "x", DT_F32, 1, (int64_t[]){4}, x, &err), 0);
    assert_int_equal(st_writer_add(&w, "x", DT_F32, 1, (int64_t[]){4}, x, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "x"));
    assert_true(st_writer_add(&w, "bad", DT_INVALID, 1, (int64_t[]){4}, x, &err) < 0);
    assert_non_null(strstr(err.msg, "bad"));
    assert_true(st_writer_add(&w, "neg", DT_F32, 1, (int64_t[]){-1}, x, &err) < 0);
    assert_non_null(strstr(err.msg, "neg"));
    assert_true(st_writer_add(&w, "deep", DT_F32, ST_MAX_DIMS + 1,
                              (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x, &err) < 0);
    assert_non_null(strstr(err.msg, "deep"));
    assert_true(st_writer_add(&w, "huge", DT_F32, 2, (int64_t[]){INT64_MAX, 4}, x, &err) < 0);
    assert_non_null(strstr(err.msg, "huge"));
    assert_true(st_writer_add(&w, "nodata", DT_F32, 1, (int64_t[]){4}, NULL, &err) < 0);
    assert_true(st_writer_add(&w, "__metadata__", DT_F32, 1, (int64_t[]){4}, x, &err) < 0);
    assert_true(st_writer_add(&w, "", DT_F32, 1, (int64_t[]){4}, x, &err) < 0);
    assert_int_equal(w.n, 1);
    st_writer_free(&w);
    st_writer_free(&w);
}

/* Many tensors: the reader's sort and bsearch over more than a handful. */
static void test_many_tensors(void **state)
{
    (void)state;
    char p[512], name[32];
    rt_err err = {{0}};
    static int32_t vals[300];
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < 300; i++) {
        vals[i] = i * 7;
        snprintf(name, sizeof name, "t.%d", (i * 37) % 300);
        assert_int_equal(st_writer_add(&w, name, DT_I32, 0, NULL, &vals[i], &err), 0);
    }
    assert_int_equal(st_writer_write(&w, tpath(p, sizeof p, "many.safetensors"), &err), 0);
    st_writer_free(&w);
    st_set *set = NULL;
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_int_equal(set->n_tensors, 300);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "t.%d", (i * 37) % 300);
        const st_tensor *t = st_find(set, name);
        assert_non_null(t);
        int32_t v;
        memcpy(&v, t->data, 4);
        assert_int_equal(v, i * 7);
    }
    st_close(set);
}

/* ---- atomic writes ------------------------------------------------------ */

static void write_one(const char *path, const char *name, const float *v, int n, int want_rc)
{
    rt_err err = {{0}};
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, name, DT_F32, 1, (int64_t[]){n}, v, &err), 0);
    int rc = st_writer_write(&w, path, &err);
    st_writer_free(&w);
    if (want_rc == 0 && rc != 0)
        fail_msg("write %s: %s", path, err.msg);
    if (want_rc < 0) {
        assert_true(rc < 0);
        if (strstr(err.msg, path) == NULL)
            fail_msg("error does not name %s: %s", path, err.msg);
    }
}

static void test_write_into_missing_dir(void **state)
{
    (void)state;
    char p[512];
    float v[2] = {1, 2};
    write_one(tpath(p, sizeof p, "no/such/dir/x.safetensors"), "x", v, 2, -1);
}

static void test_replace_is_atomic(void **state)
{
    (void)state;
    char p[512], tmp[520];
    rt_err err = {{0}};
    float a[4] = {1, 2, 3, 4}, b[2] = {9, 8};
    tpath(p, sizeof p, "atomic.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);

    write_one(p, "a", a, 4, 0);
    st_set *old = NULL;
    assert_int_equal(st_open(p, &old, &err), 0);

    write_one(p, "b", b, 2, 0);
    assert_int_equal(access(tmp, F_OK), -1);
    /* The old set maps the old file, which rename left intact. */
    assert_non_null(st_find(old, "a"));
    assert_memory_equal(st_find(old, "a")->data, a, sizeof a);
    st_close(old);

    st_set *set = NULL;
    assert_int_equal(st_open(p, &set, &err), 0);
    assert_null(st_find(set, "a"));
    assert_memory_equal(st_find(set, "b")->data, b, sizeof b);
    st_close(set);
}

static void test_failed_write_keeps_old_file(void **state)
{
    (void)state;
    char p[512], tmp[520];
    float a[4] = {1, 2, 3, 4}, b[2] = {9, 8};
    tpath(p, sizeof p, "keep.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    write_one(p, "a", a, 4, 0);
    size_t len0, len1;
    uint8_t *before = read_all(p, &len0);

    /* The tmp file cannot be created (a directory is in the way). */
    assert_int_equal(mkdir(tmp, 0755), 0);
    write_one(p, "b", b, 2, -1);
    assert_int_equal(rmdir(tmp), 0);
    uint8_t *after = read_all(p, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(after);
    free(before);
}

static void test_failed_write_midway_removes_tmp(void **state)
{
    (void)state;
    char p[512], tmp[520];
    rt_err err = {{0}};
    float a[4] = {1, 2, 3, 4};
    tpath(p, sizeof p, "midway.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    write_one(p, "a", a, 4, 0);
    size_t len0, len1;
    uint8_t *before = read_all(p, &len0);

    /* RLIMIT_FSIZE makes the data write fail with EFBIG after the header. */
    static float big[16384];
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    st_writer w;
    st_writer_init(&w);
    assert_int_equal(st_writer_add(&w, "big", DT_F32, 1, (int64_t[]){16384}, big, &err), 0);
    int rc = st_writer_write(&w, p, &err);
    st_writer_free(&w);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    assert_int_equal(rc, -EFBIG);
    assert_non_null(strstr(err.msg, "midway.safetensors"));
    assert_non_null(strstr(err.msg, "big"));
    assert_int_equal(access(tmp, F_OK), -1);
    uint8_t *after = read_all(p, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(after);
    free(before);
}

/* ---- sharded checkpoints ----------------------------------------------- */

static void make_dir(char *p, size_t len, const char *name)
{
    tpath(p, len, name);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void shard_writer(st_writer *w, float (*vals)[16], float *big)
{
    rt_err err = {{0}};
    char name[64];
    st_writer_init(w);
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 16; k++)
            vals[i][k] = (float)(i * 100 + k);
        snprintf(name, sizeof name, "model.layers.%d.weight", 5 - i);
        assert_int_equal(st_writer_add(w, name, DT_F32, 2, (int64_t[]){4, 4}, vals[i], &err), 0);
    }
    for (int k = 0; k < 100; k++)
        big[k] = -(float)k;
    assert_int_equal(st_writer_add(w, "lm_head.weight", DT_F32, 1, (int64_t[]){100}, big, &err), 0);
    assert_int_equal(st_writer_add(w, "model.norm.weight", DT_F32, 0, NULL, &big[1], &err), 0);
    assert_int_equal(st_writer_meta(w, "format", "pt", &err), 0);
}

static void test_sharded_roundtrip(void **state)
{
    (void)state;
    char dir[512], p[600];
    rt_err err = {{0}};
    float vals[6][16], big[100];
    st_writer w;
    shard_writer(&w, vals, big);
    make_dir(dir, sizeof dir, "sharded");
    /* 64-byte tensors, 150-byte shards: 2+2+2, then the 400-byte one alone,
     * then the scalar: 5 shards. */
    assert_int_equal(st_writer_write_sharded(&w, dir, 150, &err), 0);
    st_writer_free(&w);

    for (int s = 1; s <= 5; s++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-00005.safetensors", dir, s);
        assert_int_equal(access(p, F_OK), 0);
    }
    snprintf(p, sizeof p, "%s/model-00006-of-00006.safetensors", dir);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(access(p, F_OK), -1);

    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    size_t len;
    char *idx = (char *)read_all(p, &len);
    assert_non_null(strstr(idx, "\"total_size\": 788"));
    assert_non_null(strstr(idx, "\"lm_head.weight\": \"model-00004-of-00005.safetensors\""));
    assert_non_null(strstr(idx, "\"model.layers.5.weight\": \"model-00001-of-00005.safetensors\""));
    assert_non_null(strstr(idx, "\"model.layers.0.weight\": \"model-00003-of-00005.safetensors\""));
    assert_true(strstr(idx, "\"lm_head.weight\"") < strstr(idx, "\"model.layers.0.weight\""));
    free(idx);

    const char *opens[2] = {dir, p};
    for (int o = 0; o < 2; o++) {
        st_set *set = NULL;
        if (st_open(opens[o], &set, &err) != 0)
            fail_msg("st_open(%s): %s", opens[o], err.msg);
        assert_int_equal(set->n_files, 5);
        assert_int_equal(set->n_tensors, 8);
        for (int i = 1; i < set->n_tensors; i++)
            assert_true(strcmp(set->tensors[i - 1].name, set->tensors[i].name) < 0);
        for (int i = 0; i < 6; i++) {
            char name[64];
            snprintf(name, sizeof name, "model.layers.%d.weight", 5 - i);
            const st_tensor *t = st_find(set, name);
            assert_non_null(t);
            assert_memory_equal(t->data, vals[i], sizeof vals[i]);
            char shard[64];
            snprintf(shard, sizeof shard, "model-%05d-of-00005.safetensors", i / 2 + 1);
            assert_non_null(strstr(t->file, shard));
        }
        const st_tensor *t = st_find(set, "lm_head.weight");
        assert_non_null(t);
        assert_memory_equal(t->data, big, sizeof big);
        assert_non_null(strstr(t->file, "model-00004-of-00005"));
        t = st_find(set, "model.norm.weight");
        assert_non_null(t);
        assert_int_equal(t->ndim, 0);
        assert_true(*(const float *)t->data == big[1]);
        assert_string_equal(st_meta_get(set, "format"), "pt");
        st_close(set);
    }
}

static void test_sharded_single_and_back(void **state)
{
    (void)state;
    char dir[512], p[600];
    rt_err err = {{0}};
    float vals[6][16], big[100];
    st_writer w;
    shard_writer(&w, vals, big);
    make_dir(dir, sizeof dir, "onefile");
    /* Everything fits: model.safetensors alone. */
    assert_int_equal(st_writer_write_sharded(&w, dir, 1u << 20, &err), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_int_equal(access(p, F_OK), -1);
    st_set *set = NULL;
    assert_int_equal(st_open(dir, &set, &err), 0);
    assert_int_equal(set->n_files, 1);
    assert_int_equal(set->n_tensors, 8);
    st_close(set);

    /* Then sharded into the same directory: the stale single file goes. */
    assert_int_equal(st_writer_write_sharded(&w, dir, 300, &err), 0);
    st_writer_free(&w);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(st_open(dir, &set, &err), 0);
    assert_true(set->n_files > 1);
    assert_int_equal(set->n_tensors, 8);
    st_close(set);
}

static void write_index(const char *dir, const char *json)
{
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_bytes(p, json, strlen(json));
}

static void test_index_missing_shard(void **state)
{
    (void)state;
    char dir[512], p[600];
    rt_err err = {{0}};
    float vals[6][16], big[100];
    st_writer w;
    shard_writer(&w, vals, big);
    make_dir(dir, sizeof dir, "missing_shard");
    assert_int_equal(st_writer_write_sharded(&w, dir, 150, &err), 0);
    st_writer_free(&w);
    snprintf(p, sizeof p, "%s/model-00002-of-00005.safetensors", dir);
    assert_int_equal(unlink(p), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    expect_open_fail(p, "model-00002-of-00005.safetensors", NULL);
    expect_open_fail(dir, "model.safetensors.index.json", "model-00002-of-00005.safetensors");
}

static void test_index_name_not_in_shard(void **state)
{
    (void)state;
    char dir[512], p[600];
    make_dir(dir, sizeof dir, "ghost");
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_st(p, "{\"x\":" ENTRY("U8", "[2]", 0, 2) "}", 2);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    write_st(p, "{\"y\":" ENTRY("U8", "[1]", 0, 1) "}", 1);
    write_index(dir, "{\"metadata\":{\"total_size\":3},\"weight_map\":{\"x\":\"a.safetensors\","
                     "\"y\":\"b.safetensors\",\"" TN "\":\"a.safetensors\"}}");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    expect_open_fail(p, TN, "a.safetensors");

    /* Named in a shard that exists but holds it elsewhere. */
    write_index(dir, "{\"weight_map\":{\"x\":\"b.safetensors\",\"y\":\"b.safetensors\"}}");
    expect_open_fail(p, "tensor x", "b.safetensors");

    /* Tensors in a shard but absent from weight_map are still part of the set. */
    write_index(dir, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    st_set *set = NULL;
    rt_err err = {{0}};
    assert_int_equal(st_open(dir, &set, &err), 0);
    assert_int_equal(set->n_tensors, 2);
    st_close(set);
}

static void test_index_tensor_in_two_shards(void **state)
{
    (void)state;
    char dir[512], p[600];
    make_dir(dir, sizeof dir, "dup_shards");
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_st(p, "{\"" TN "\":" ENTRY("U8", "[2]", 0, 2) "}", 2);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    write_st(p, "{\"y\":" ENTRY("U8", "[1]", 0, 1) ",\"" TN "\":" ENTRY("U8", "[1]", 1, 2) "}", 2);
    write_index(dir, "{\"weight_map\":{\"" TN "\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    expect_open_fail(p, TN, "b.safetensors");
}

static void test_index_malformed(void **state)
{
    (void)state;
    char dir[512], p[600];
    make_dir(dir, sizeof dir, "bad_index");
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_st(p, "{\"x\":" ENTRY("U8", "[2]", 0, 2) "}", 2);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);

    write_index(dir, "{\"metadata\":{}}");
    expect_open_fail(p, "weight_map", NULL);
    write_index(dir, "{\"weight_map\":[\"a.safetensors\"]}");
    expect_open_fail(p, "weight_map", NULL);
    write_index(dir, "{\"weight_map\":{}}");
    expect_open_fail(p, "weight_map", NULL);
    write_index(dir, "{\"weight_map\":{\"x\":3}}");
    expect_open_fail(p, "tensor x", NULL);
    write_index(dir, "{\"weight_map\":{\"x\":\"/etc/a.safetensors\"}}");
    expect_open_fail(p, "tensor x", "/etc/a.safetensors");
    write_index(dir, "{\"weight_map\":{\"x\":\"../bad_index/a.safetensors\"}}");
    expect_open_fail(p, "tensor x", "..");
    write_index(dir, "{\"weight_map\":{\"x\":\"a.safetensors\",\"x\":\"a.safetensors\"}}");
    expect_open_fail(p, "duplicate", NULL);
    write_index(dir, "{\"weight_map\":{\"x\":\"a.safetensors\"},\"metadata\":7}");
    expect_open_fail(p, "metadata", NULL);
    write_index(dir, "[]");
    expect_open_fail(p, "object", NULL);
    write_index(dir, "{\"weight_map\":");
    expect_open_fail(p, "JSON", NULL);
}

static void test_open_missing(void **state)
{
    (void)state;
    char dir[512], p[600];
    make_dir(dir, sizeof dir, "emptydir");
    expect_open_fail(dir, "model.safetensors", NULL);
    snprintf(p, sizeof p, "%s/nothere.safetensors", dir);
    expect_open_fail(p, NULL, NULL);
}

/* ---- malformed files, one per check ------------------------------------ */

static void test_bad_short_file(void **state)
{
    (void)state;
    char p[512];
    write_bytes(tpath(p, sizeof p, "short.safetensors"), "\x02\0\0\0", 4);
    expect_open_fail(p, "8-byte", NULL);
    write_bytes(tpath(p, sizeof p, "zero.safetensors"), "", 0);
    expect_open_fail(p, "8-byte", NULL);
}

static void test_bad_header_len_zero(void **state)
{
    (void)state;
    char p[512];
    write_st_len(tpath(p, sizeof p, "hlen0.safetensors"), 0, "{}", 0);
    expect_open_fail(p, "header length is 0", NULL);
}

static void test_bad_header_len_too_big(void **state)
{
    (void)state;
    char p[512];
    write_st_len(tpath(p, sizeof p, "hlenbig.safetensors"), (uint64_t)ST_MAX_HEADER + 1, "{}", 0);
    expect_open_fail(p, "header length 104857601", NULL);
    write_st_len(p, UINT64_MAX - 1, "{}", 0);
    expect_open_fail(p, "header length", NULL);
}

static void test_bad_header_len_past_eof(void **state)
{
    (void)state;
    char p[512];
    write_st_len(tpath(p, sizeof p, "hlenpast.safetensors"), 100, "{}", 20);
    expect_open_fail(p, "runs past the end of the file (30 bytes)", NULL);
}

static void test_bad_json(void **state)
{
    (void)state;
    bad_header("badjson.safetensors", "{\"" TN "\": ", 0, "not valid JSON", NULL);
    bad_header("badjson2.safetensors", "{} trailing", 0, "not valid JSON", NULL);
    bad_header("badjson3.safetensors", "{\"a\":\xff}", 0, "not valid JSON", NULL);
}

static void test_bad_not_object(void **state)
{
    (void)state;
    bad_header("array.safetensors", "[1, 2]", 0, "array", "expected an object");
    bad_header("string.safetensors", "\"x\"", 0, "string", "expected an object");
}

static void test_bad_duplicate_key(void **state)
{
    (void)state;
    bad_header("dupkey.safetensors",
               "{\"" TN "\":" ENTRY("U8", "[1]", 0, 1) ",\"" TN "\":" ENTRY("U8", "[1]", 1, 2) "}", 2,
               "duplicate key " TN, NULL);
    bad_header("dupkey2.safetensors",
               "{\"a\\\"b\":" ENTRY("U8", "[1]", 0, 1) ",  \"a\\\"b\" :" ENTRY("U8", "[1]", 1, 2) "}", 2,
               "duplicate key a\"b", NULL);
    bad_header("dupkey3.safetensors", "{\"" TN "\":{\"dtype\":\"U8\",\"dtype\":\"U8\"}}", 0,
               "duplicate key dtype", NULL);
}

static void test_bad_entry_not_object(void **state)
{
    (void)state;
    bad_header("entry.safetensors", "{\"" TN "\": [0, 4]}", 4, "tensor " TN, "expected an object");
}

static void test_bad_unknown_dtype(void **state)
{
    (void)state;
    bad_header("dtype.safetensors", "{\"" TN "\":" ENTRY("F128", "[1]", 0, 16) "}", 16, "tensor " TN, "F128");
}

static void test_bad_dtype_missing_or_typed(void **state)
{
    (void)state;
    bad_header("nodtype.safetensors", "{\"" TN "\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor " TN, "missing \"dtype\"");
    bad_header("numdtype.safetensors", "{\"" TN "\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor " TN, "\"dtype\" is a JSON integer");
}

static void test_bad_shape_missing_or_typed(void **state)
{
    (void)state;
    bad_header("noshape.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
               "tensor " TN, "missing \"shape\"");
    bad_header("objshape.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
               "tensor " TN, "\"shape\" is a JSON object");
    bad_header("strdim.safetensors", "{\"" TN "\":" ENTRY("F32", "[\"1\"]", 0, 4) "}", 4,
               "tensor " TN, "shape[0] is a JSON string");
}

static void test_bad_shape_negative(void **state)
{
    (void)state;
    bad_header("negdim.safetensors", "{\"" TN "\":" ENTRY("F32", "[2, -1]", 0, 4) "}", 4,
               "tensor " TN, "shape[1] is -1");
}

static void test_bad_shape_not_integer(void **state)
{
    (void)state;
    bad_header("realdim.safetensors", "{\"" TN "\":" ENTRY("F32", "[2.5]", 0, 4) "}", 4,
               "tensor " TN, "shape[0] is a JSON real");
    bad_header("realdim2.safetensors", "{\"" TN "\":" ENTRY("F32", "[1.0]", 0, 4) "}", 4,
               "tensor " TN, "shape[0] is a JSON real");
}

static void test_bad_too_many_dims(void **state)
{
    (void)state;
    bad_header("deep.safetensors", "{\"" TN "\":" ENTRY("F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4,
               "tensor " TN, "9 dimensions");
}

static void test_bad_offsets_missing_or_typed(void **state)
{
    (void)state;
    bad_header("nooffs.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
               "tensor " TN, "missing \"data_offsets\"");
    bad_header("offs3.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,2,4]}}", 4,
               "tensor " TN, "data_offsets");
    bad_header("offsstr.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 4,
               "tensor " TN, "data_offsets");
    bad_header("offsreal.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}",
               4, "tensor " TN, "data_offsets[1] is a JSON real");
    bad_header("offsneg.safetensors", "{\"" TN "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               "tensor " TN, "data_offsets[0] is -4");
}

static void test_bad_begin_after_end(void **state)
{
    (void)state;
    bad_header("backwards.safetensors", "{\"" TN "\":" ENTRY("U8", "[0]", 4, 0) "}", 4,
               "tensor " TN, "[4, 0]");
}

static void test_bad_nbytes_mismatch(void **state)
{
    (void)state;
    bad_header("nbytes.safetensors", "{\"" TN "\":" ENTRY("F32", "[2, 3]", 0, 20) "}", 20,
               "tensor " TN, "needs 24 bytes but data_offsets [0, 20] hold 20");
    bad_header("nbytes16.safetensors", "{\"" TN "\":" ENTRY("BF16", "[3]", 0, 3) "}", 3,
               "tensor " TN, "needs 6 bytes");
}

static void test_bad_nbytes_overflow(void **state)
{
    (void)state;
    bad_header("overflow.safetensors",
               "{\"" TN "\":" ENTRY("F32", "[4611686018427387904, 4611686018427387904]", 0, 0) "}", 0,
               "tensor " TN, "64 bits");
    bad_header("overflow2.safetensors", "{\"" TN "\":" ENTRY("F64", "[4611686018427387904]", 0, 0) "}", 0,
               "tensor " TN, "64 bits");
}

static void test_bad_past_data_end(void **state)
{
    (void)state;
    bad_header("pastend.safetensors",
               "{\"a\":" ENTRY("U8", "[100]", 0, 100) ",\"" TN "\":" ENTRY("F32", "[16]", 100, 164) "}", 120,
               "tensor " TN ": data_offsets [100, 164] run past the end of the data section (120 bytes)", NULL);
}

static void test_bad_overlap(void **state)
{
    (void)state;
    bad_header("overlap.safetensors",
               "{\"a\":" ENTRY("U8", "[8]", 0, 8) ",\"" TN "\":" ENTRY("U8", "[8]", 4, 12) "}", 12,
               "tensor " TN, "overlap tensor a");
    bad_header("overlap2.safetensors",
               "{\"" TN "\":" ENTRY("U8", "[4]", 0, 4) ",\"b\":" ENTRY("U8", "[4]", 0, 4) "}", 4,
               "overlap", TN);
    bad_header("overlap3.safetensors",
               "{\"" TN "\":" ENTRY("U8", "[0]", 2, 2) ",\"b\":" ENTRY("U8", "[4]", 0, 4) "}", 4,
               "tensor " TN, "overlap tensor b");
}

static void test_bad_hole_between(void **state)
{
    (void)state;
    bad_header("hole.safetensors",
               "{\"a\":" ENTRY("U8", "[4]", 0, 4) ",\"" TN "\":" ENTRY("U8", "[4]", 8, 12) "}", 12,
               "tensor " TN, "bytes [4, 8)");
    bad_header("holestart.safetensors", "{\"" TN "\":" ENTRY("U8", "[4]", 4, 8) "}", 8,
               "tensor " TN, "bytes [0, 4)");
}

static void test_bad_hole_at_end(void **state)
{
    (void)state;
    bad_header("holeend.safetensors", "{\"" TN "\":" ENTRY("U8", "[4]", 0, 4) "}", 6,
               "bytes [4, 6) at the end", TN);
    bad_header("notensors.safetensors", "{}", 6, "6 bytes", "no tensors");
    bad_header("onlymeta.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}", 1, "1 bytes", "no tensors");
}

static void test_bad_metadata(void **state)
{
    (void)state;
    bad_header("metaarr.safetensors", "{\"__metadata__\":[\"pt\"],\"" TN "\":" ENTRY("U8", "[1]", 0, 1) "}", 1,
               "__metadata__", "array");
    bad_header("metastr.safetensors", "{\"__metadata__\":\"pt\",\"" TN "\":" ENTRY("U8", "[1]", 0, 1) "}", 1,
               "__metadata__", "expected an object");
    bad_header("metaval.safetensors",
               "{\"__metadata__\":{\"format\":\"pt\",\"step\":100},\"" TN "\":" ENTRY("U8", "[1]", 0, 1) "}", 1,
               "__metadata__\" key step", "integer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_header_bytes),
        cmocka_unit_test(test_empty_files),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_write_into_missing_dir),
        cmocka_unit_test(test_replace_is_atomic),
        cmocka_unit_test(test_failed_write_keeps_old_file),
        cmocka_unit_test(test_failed_write_midway_removes_tmp),
        cmocka_unit_test(test_sharded_roundtrip),
        cmocka_unit_test(test_sharded_single_and_back),
        cmocka_unit_test(test_index_missing_shard),
        cmocka_unit_test(test_index_name_not_in_shard),
        cmocka_unit_test(test_index_tensor_in_two_shards),
        cmocka_unit_test(test_index_malformed),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_bad_short_file),
        cmocka_unit_test(test_bad_header_len_zero),
        cmocka_unit_test(test_bad_header_len_too_big),
        cmocka_unit_test(test_bad_header_len_past_eof),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_not_object),
        cmocka_unit_test(test_bad_duplicate_key),
        cmocka_unit_test(test_bad_entry_not_object),
        cmocka_unit_test(test_bad_unknown_dtype),
        cmocka_unit_test(test_bad_dtype_missing_or_typed),
        cmocka_unit_test(test_bad_shape_missing_or_typed),
        cmocka_unit_test(test_bad_shape_negative),
        cmocka_unit_test(test_bad_shape_not_integer),
        cmocka_unit_test(test_bad_too_many_dims),
        cmocka_unit_test(test_bad_offsets_missing_or_typed),
        cmocka_unit_test(test_bad_begin_after_end),
        cmocka_unit_test(test_bad_nbytes_mismatch),
        cmocka_unit_test(test_bad_nbytes_overflow),
        cmocka_unit_test(test_bad_past_data_end),
        cmocka_unit_test(test_bad_overlap),
        cmocka_unit_test(test_bad_hole_between),
        cmocka_unit_test(test_bad_hole_at_end),
        cmocka_unit_test(test_bad_metadata),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * test_io_engine: both engines (io_uring and pread/pwrite) against the same
 * data, and every rule of io_engine.h one test at a time: O_DIRECT with
 * registered and unregistered buffers, requests refused before anything is
 * queued, end of file, short reads (a pipe fed in pieces, a read spanning
 * end of file, and the max_io_bytes hook), -EAGAIN (the fault hook),
 * io_reap/io_pending accounting, io_run beside io_submit, the fallbacks
 * (io_uring forbidden by seccomp, buffer registration refused, RAMTRAIN_IO),
 * io_open on tmpfs and procfs, and close waiting for writes in flight.
 *
 * Data is checked byte for byte with plain read(2), not with the engine that
 * wrote it. Files live in a mkdtemp directory under /tmp, removed when every
 * test passed and kept (and printed) when one failed. Tests that fork check
 * in the child without cmocka and send back the first failure as text.
 * Where io_uring is unavailable the io_uring halves are skipped, not passed.
 */
#define _GNU_SOURCE /* O_DIRECT, nftw, pipe2 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage/io_engine.h"

static char g_dir[] = "/tmp/rt_test_io_XXXXXX";
static bool g_have_uring; /* io_uring works on this machine */

static const io_kind KINDS[2] = {IO_KIND_URING, IO_KIND_SYNC};

static const char *kind_name(io_kind k)
{
    return k == IO_KIND_URING ? "io_uring" : "pread/pwrite";
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
    return buf;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_random(void *buf, size_t len, uint64_t seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(splitmix(&seed) >> 56);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* An engine of kind k, or NULL (after a note) when k is io_uring and the
 * machine has none: the caller skips that half. */
static io_engine *open_kind(io_kind k, io_opts o)
{
    if (k == IO_KIND_URING && !g_have_uring) {
        print_message("io_uring unavailable here: skipping the io_uring half\n");
        return NULL;
    }
    rt_err err = {{0}};
    io_engine *e = NULL;
    o.kind = k;
    int rc = io_engine_open(&o, &e, &err);
    if (rc < 0)
        fail_msg("io_engine_open(%s): %d: %s", kind_name(k), rc, err.msg);
    assert_int_equal(io_engine_kind(e), k);
    return e;
}

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

#define assert_has(s, needle)                                                              \
    do {                                                                                   \
        if (!has((s), (needle)))                                                           \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (needle));                     \
    } while (0)

/* ---- same bytes from both engines ------------------------------------------ */

#define MIX_N 150

/* Reaps up to 16 of write_mixed's requests (at least min_wait), checks each
 * succeeded and counts it in seen[request]; returns how many. */
static int reap_mixed(io_engine *e, int min_wait, int seen[MIX_N])
{
    io_done done[16];
    int k = io_reap(e, done, 16, min_wait);
    assert_true(k >= min_wait && k <= 16);
    for (int i = 0; i < k; i++) {
        intptr_t j = (intptr_t)done[i].user - 1;
        assert_true(j >= 0 && j < MIX_N);
        assert_int_equal(done[i].res, 0);
        seen[j]++;
    }
    return k;
}

/* Writes src through e as the requests in order[], reaping as it goes and
 * checking each completion comes back once with res 0 and that io_pending
 * always equals submitted - reaped. */
static void write_mixed(io_engine *e, int fd, const uint8_t *src, const size_t *offs, const size_t *lens,
                        const int *order)
{
    rt_err err = {{0}};
    int seen[MIX_N] = {0};
    int submitted = 0, reaped = 0;
    io_done done[16];
    for (int b = 0; b < MIX_N; b += 10) {
        io_req reqs[10];
        int n = MIX_N - b < 10 ? MIX_N - b : 10;
        for (int i = 0; i < n; i++) {
            int j = order[b + i];
            reqs[i] = (io_req){.fd = fd, .write = true, .buf = (void *)(src + offs[j]), .len = lens[j],
                               .off = offs[j], .user = (void *)(intptr_t)(j + 1)};
        }
        if (io_submit(e, reqs, n, &err) != 0)
            fail_msg("io_submit: %s", err.msg);
        submitted += n;
        assert_int_equal(io_pending(e), submitted - reaped);
        reaped += reap_mixed(e, 0, seen);
        assert_int_equal(io_pending(e), submitted - reaped);
    }
    while (reaped < submitted) {
        reaped += reap_mixed(e, 1, seen);
        assert_int_equal(io_pending(e), submitted - reaped);
    }
    for (int j = 0; j < MIX_N; j++)
        assert_int_equal(seen[j], 1);
    assert_int_equal(io_reap(e, done, 16, 1), 0);
}

static void test_same_bytes_both_kinds(void **state)
{
    (void)state;
    size_t offs[MIX_N], lens[MIX_N];
    int order[MIX_N];
    uint64_t seed = 42;
    size_t total = 0;
    for (int i = 0; i < MIX_N; i++) {
        offs[i] = total;
        lens[i] = 1 + splitmix(&seed) % 200000; /* 1 byte .. ~195 KiB */
        total += lens[i];
        order[i] = i;
    }
    for (int i = MIX_N - 1; i > 0; i--) { /* shuffled: writes land out of order */
        int j = (int)(splitmix(&seed) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint8_t *src = malloc(total);
    assert_non_null(src);
    fill_random(src, total, 7);
    char paths[2][512];
    int ran = 0;
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 8});
        if (e == NULL)
            continue;
        rt_err err = {{0}};
        char name[32];
        snprintf(name, sizeof name, "mixed.%d", k);
        tpath(paths[k], sizeof paths[k], name);
        int fd = io_open(paths[k], O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        write_mixed(e, fd, src, offs, lens, order);
        io_stats st;
        io_engine_stats(e, &st);
        assert_int_equal(st.reqs, MIX_N);
        assert_int_equal(st.failed, 0);
        assert_int_equal(st.bytes, total);

        size_t got_len;
        uint8_t *got = read_all(paths[k], &got_len);
        assert_int_equal(got_len, total);
        assert_memory_equal(got, src, total);
        free(got);

        uint8_t *back = calloc(1, total);
        assert_non_null(back);
        io_req reqs[MIX_N];
        for (int i = 0; i < MIX_N; i++)
            reqs[i] = (io_req){.fd = fd, .buf = back + offs[i], .len = lens[i], .off = offs[i]};
        if (io_run(e, reqs, MIX_N, &err) != 0)
            fail_msg("io_run read back (%s): %s", kind_name(KINDS[k]), err.msg);
        assert_memory_equal(back, src, total);
        assert_int_equal(io_pending(e), 0);
        free(back);
        close(fd);
        io_engine_close(e);
        ran |= 1 << k;
    }
    if (ran == 3) {
        size_t la, lb;
        uint8_t *a = read_all(paths[0], &la), *b = read_all(paths[1], &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
    }
    free(src);
}

/* ---- O_DIRECT ------------------------------------------------------------- */

#define DIO_REQ (256u * 1024u)
#define DIO_N 16

/* Writes DIO_N requests from wbuf and reads them into rbuf through e on a
 * fresh O_DIRECT file; returns false (after a note) when the filesystem
 * refuses O_DIRECT. */
static bool direct_roundtrip(io_engine *e, const char *name, uint8_t *wbuf, uint8_t *rbuf)
{
    char p[512];
    rt_err err = {{0}};
    bool direct = false;
    int fd = io_open(tpath(p, sizeof p, name), O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
    assert_true(fd >= 0);
    if (!direct) {
        print_message("%s refuses O_DIRECT: skipping\n", g_dir);
        close(fd);
        return false;
    }
    assert_true(fcntl(fd, F_GETFL) & O_DIRECT);
    fill_random(wbuf, (size_t)DIO_N * DIO_REQ, 99);
    memset(rbuf, 0, (size_t)DIO_N * DIO_REQ);
    io_req w[DIO_N], r[DIO_N];
    for (int i = 0; i < DIO_N; i++) {
        int at = (i * 7) % DIO_N; /* out of order */
        w[i] = (io_req){.fd = fd, .write = true, .buf = wbuf + (size_t)at * DIO_REQ, .len = DIO_REQ,
                        .off = (uint64_t)at * DIO_REQ};
        r[i] = (io_req){.fd = fd, .buf = rbuf + (size_t)at * DIO_REQ, .len = DIO_REQ,
                        .off = (uint64_t)at * DIO_REQ};
    }
    if (io_run(e, w, DIO_N, &err) != 0)
        fail_msg("O_DIRECT write: %s", err.msg);
    if (io_run(e, r, DIO_N, &err) != 0)
        fail_msg("O_DIRECT read: %s", err.msg);
    assert_memory_equal(rbuf, wbuf, (size_t)DIO_N * DIO_REQ);
    size_t len;
    uint8_t *disk = read_all(p, &len);
    assert_int_equal(len, (size_t)DIO_N * DIO_REQ);
    assert_memory_equal(disk, wbuf, len);
    free(disk);
    close(fd);
    return true;
}

static void test_direct_registered(void **state)
{
    (void)state;
    size_t half = (size_t)DIO_N * DIO_REQ;
    uint8_t *buf = io_alloc(2 * half); /* [0, half): write source; [half, 2 half): read target */
    assert_non_null(buf);
    assert_int_equal((uintptr_t)buf % IO_ALIGN, 0);
    void *bufs[1] = {buf};
    size_t lens[1] = {2 * half};
    io_engine *e = open_kind(IO_KIND_URING, (io_opts){.depth = 4, .n_bufs = 1, .bufs = bufs, .buf_lens = lens});
    if (e == NULL) {
        free(buf);
        skip();
    }
    assert_has(io_engine_describe(e), "depth 4, 1 registered buffer (8.0 MiB)");
    if (direct_roundtrip(e, "direct.reg", buf, buf + half)) {
        io_stats st;
        io_engine_stats(e, &st);
        assert_int_equal(st.ios, 2 * DIO_N);
        assert_int_equal(st.fixed, st.ios);
    }
    io_engine_close(e);
    free(buf);
}

static void test_direct_unregistered(void **state)
{
    (void)state;
    size_t half = (size_t)DIO_N * DIO_REQ;
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 4});
        if (e == NULL)
            continue;
        if (KINDS[k] == IO_KIND_URING)
            assert_has(io_engine_describe(e), "no registered buffers");
        uint8_t *w = io_alloc(half), *r = io_alloc(half);
        assert_non_null(w);
        assert_non_null(r);
        if (direct_roundtrip(e, "direct.unreg", w, r)) {
            io_stats st;
            io_engine_stats(e, &st);
            assert_int_equal(st.ios, 2 * DIO_N);
            assert_int_equal(st.fixed, 0);
        }
        io_engine_close(e);
        free(w);
        free(r);
    }
}

/* A request goes out fixed only when its whole range lies in a registered
 * buffer: one inside, one from another allocation, one running past the end. */
static void test_fixed_only_inside_registered(void **state)
{
    (void)state;
    uint8_t *reg = io_alloc(64 * 1024), *other = io_alloc(64 * 1024);
    assert_non_null(reg);
    assert_non_null(other);
    void *bufs[1] = {reg};
    size_t lens[1] = {32 * 1024}; /* only the first half of reg is registered */
    io_engine *e = open_kind(IO_KIND_URING, (io_opts){.n_bufs = 1, .bufs = bufs, .buf_lens = lens});
    if (e == NULL) {
        free(reg);
        free(other);
        skip();
    }
    char p[512];
    rt_err err = {{0}};
    int fd = io_open(tpath(p, sizeof p, "fixed"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
    assert_true(fd >= 0);
    struct {
        uint8_t *buf;
        size_t len;
        uint64_t fixed;
    } cases[] = {
        {reg, 32 * 1024, 1},          /* exactly the registered range */
        {reg + 4096, 100, 1},         /* inside */
        {other, 4096, 0},             /* another buffer */
        {reg + 16 * 1024, 32 * 1024, 0}, /* starts inside, ends past the registered end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        io_stats before, after;
        io_engine_stats(e, &before);
        fill_random(cases[i].buf, cases[i].len, i);
        io_req r = {.fd = fd, .write = true, .buf = cases[i].buf, .len = cases[i].len, .off = 0};
        assert_int_equal(io_run(e, &r, 1, &err), 0);
        io_engine_stats(e, &after);
        assert_int_equal(after.ios - before.ios, 1);
        if (after.fixed - before.fixed != cases[i].fixed)
            fail_msg("case %zu: %llu fixed, expected %llu", i, (unsigned long long)(after.fixed - before.fixed),
                     (unsigned long long)cases[i].fixed);
        uint8_t *back = malloc(cases[i].len);
        assert_non_null(back);
        assert_int_equal(pread(fd, back, cases[i].len, 0), (ssize_t)cases[i].len);
        assert_memory_equal(back, cases[i].buf, cases[i].len);
        free(back);
    }
    close(fd);
    io_engine_close(e);
    free(reg);
    free(other);
}

/* A buffer over IO_MAX_CHUNK is registered in pieces: a request inside the
 * second piece goes fixed, one across the seam does not. */
static void test_large_registered_buffer(void **state)
{
    (void)state;
    size_t len = (size_t)IO_MAX_CHUNK + 8u * 1024 * 1024;
    uint8_t *big = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (big == MAP_FAILED) {
        print_message("no %zu bytes to map: skipping\n", len);
        skip();
    }
    void *bufs[1] = {big};
    size_t lens[1] = {len};
    io_engine *e = open_kind(IO_KIND_URING, (io_opts){.kind = IO_KIND_URING, .n_bufs = 1, .bufs = bufs,
                                                      .buf_lens = lens});
    if (e == NULL) {
        munmap(big, len);
        skip();
    }
    assert_has(io_engine_describe(e), "1 registered buffer (1032.0 MiB)");
    char p[512];
    rt_err err = {{0}};
    int fd = io_open(tpath(p, sizeof p, "big"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
    assert_true(fd >= 0);
    uint8_t *second = big + IO_MAX_CHUNK + 4096, *seam = big + IO_MAX_CHUNK - 4096;
    fill_random(second, 8192, 1);
    fill_random(seam, 8192, 2);
    io_stats a, b, c;
    io_engine_stats(e, &a);
    io_req r = {.fd = fd, .write = true, .buf = second, .len = 8192, .off = 0};
    assert_int_equal(io_run(e, &r, 1, &err), 0);
    io_engine_stats(e, &b);
    assert_int_equal(b.fixed - a.fixed, 1);
    r = (io_req){.fd = fd, .write = true, .buf = seam, .len = 8192, .off = 8192};
    assert_int_equal(io_run(e, &r, 1, &err), 0);
    io_engine_stats(e, &c);
    assert_int_equal(c.fixed - b.fixed, 0);
    uint8_t back[16384];
    assert_int_equal(pread(fd, back, sizeof back, 0), (ssize_t)sizeof back);
    assert_memory_equal(back, second, 8192);
    assert_memory_equal(back + 8192, seam, 8192);
    close(fd);
    io_engine_close(e);
    munmap(big, len);
}

/* ---- requests refused ------------------------------------------------------ */

static void test_misaligned_direct_rejected(void **state)
{
    (void)state;
    uint8_t *buf = io_alloc(64 * 1024);
    assert_non_null(buf);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 2});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        bool direct = false;
        int fd = io_open(tpath(p, sizeof p, "misaligned"), O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
        assert_true(fd >= 0);
        if (!direct) {
            print_message("%s refuses O_DIRECT: skipping\n", g_dir);
            close(fd);
            io_engine_close(e);
            continue;
        }
        struct {
            size_t buf_off, len;
            uint64_t off;
        } bad[] = {{512, 4096, 0}, {0, 4096 + 512, 0}, {0, 4096, 512}};
        for (size_t b = 0; b < 3; b++) {
            io_req reqs[4];
            for (int i = 0; i < 3; i++) /* three good ones first */
                reqs[i] = (io_req){.fd = fd, .write = true, .buf = buf, .len = 4096, .off = (uint64_t)i * 4096};
            reqs[3] = (io_req){.fd = fd, .write = true, .buf = buf + bad[b].buf_off, .len = bad[b].len,
                               .off = bad[b].off};
            err.msg[0] = '\0';
            assert_int_equal(io_submit(e, reqs, 4, &err), -EINVAL);
            assert_has(err.msg, "request 3");
            assert_has(err.msg, "O_DIRECT");
            assert_has(err.msg, "misaligned");
            assert_int_equal(io_pending(e), 0);
            err.msg[0] = '\0';
            assert_int_equal(io_run(e, reqs, 4, &err), -EINVAL);
            assert_has(err.msg, "request 3");
            assert_int_equal(file_size(p), 0); /* not one of the good writes ran */
        }
        close(fd);

        /* The same misaligned request on a buffered descriptor is fine. */
        fd = io_open(p, O_RDWR, false, &direct, &err);
        assert_true(fd >= 0);
        assert_false(direct);
        fill_random(buf, 8192, 5);
        io_req r = {.fd = fd, .write = true, .buf = buf + 512, .len = 4096 + 512, .off = 512};
        if (io_run(e, &r, 1, &err) != 0)
            fail_msg("buffered misaligned write: %s", err.msg);
        assert_int_equal(file_size(p), 4096 + 1024);
        close(fd);
        io_engine_close(e);
    }
    free(buf);
}

static void test_zero_length_rejected(void **state)
{
    (void)state;
    uint8_t buf[4096] = {1};
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){0});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        int fd = io_open(tpath(p, sizeof p, "zero"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        io_req reqs[2] = {
            {.fd = fd, .write = true, .buf = buf, .len = sizeof buf, .off = 0},
            {.fd = fd, .write = true, .buf = buf, .len = 0, .off = 4096},
        };
        assert_int_equal(io_submit(e, reqs, 2, &err), -EINVAL);
        assert_has(err.msg, "request 1");
        assert_has(err.msg, "zero length");
        assert_has(err.msg, "/zero, offset 4096"); /* the file and offset */
        assert_int_equal(io_pending(e), 0);
        err.msg[0] = '\0';
        assert_int_equal(io_run(e, reqs, 2, &err), -EINVAL);
        assert_has(err.msg, "zero length");
        reqs[1].buf = NULL;
        reqs[1].len = 10;
        assert_int_equal(io_submit(e, reqs, 2, &err), -EINVAL);
        assert_has(err.msg, "NULL buffer");
        reqs[1].buf = buf;
        reqs[1].off = UINT64_MAX - 5;
        assert_int_equal(io_submit(e, reqs, 2, &err), -EINVAL);
        assert_has(err.msg, "largest file offset");
        assert_int_equal(io_submit(e, reqs, -1, &err), -EINVAL);
        assert_int_equal(io_submit(e, reqs, 0, &err), 0);
        assert_int_equal(io_pending(e), 0);
        assert_int_equal(file_size(p), 0);
        close(fd);
        io_engine_close(e);
    }
}

/* ---- end of file and short reads ------------------------------------------ */

static void test_read_past_eof(void **state)
{
    (void)state;
    uint8_t data[5000];
    fill_random(data, sizeof data, 3);
    char p[512], pd[512];
    write_file(tpath(p, sizeof p, "eof"), data, sizeof data);
    uint8_t *dio = io_alloc(8192);
    assert_non_null(dio);
    fill_random(dio, 8192, 4);
    write_file(tpath(pd, sizeof pd, "eof.direct"), dio, 6000); /* not a multiple of IO_ALIGN */
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){0});
        if (e == NULL)
            continue;
        rt_err err = {{0}};
        int fd = io_open(p, O_RDONLY, false, NULL, &err);
        assert_true(fd >= 0);
        uint8_t buf[8192];
        memset(buf, 0, sizeof buf);

        /* Spanning the end: a short read, then 0 for the rest. */
        io_stats before, after;
        io_engine_stats(e, &before);
        io_req r = {.fd = fd, .buf = buf, .len = sizeof buf, .off = 0};
        assert_int_equal(io_run(e, &r, 1, &err), -ENODATA);
        assert_has(err.msg, "/eof");
        assert_has(err.msg, "offset 0");
        assert_has(err.msg, "end of file after 5000 bytes");
        assert_memory_equal(buf, data, sizeof data);
        io_engine_stats(e, &after);
        assert_int_equal(after.short_io - before.short_io, 1);
        assert_int_equal(after.ios - before.ios, 2);
        assert_int_equal(after.failed - before.failed, 1);

        /* Wholly past the end, through io_submit/io_reap. */
        io_req past = {.fd = fd, .buf = buf, .len = 100, .off = 6000, .user = buf};
        assert_int_equal(io_submit(e, &past, 1, &err), 0);
        io_done d;
        assert_int_equal(io_reap(e, &d, 1, 1), 1);
        assert_ptr_equal(d.user, buf);
        assert_int_equal(d.res, -ENODATA);

        /* Up to the end exactly is fine. */
        r.len = sizeof data;
        assert_int_equal(io_run(e, &r, 1, &err), 0);
        close(fd);

        bool direct;
        fd = io_open(pd, O_RDONLY, true, &direct, &err);
        assert_true(fd >= 0);
        if (direct) {
            uint8_t *rb = io_alloc(8192);
            assert_non_null(rb);
            r = (io_req){.fd = fd, .buf = rb, .len = 8192, .off = 0};
            assert_int_equal(io_run(e, &r, 1, &err), -ENODATA);
            assert_has(err.msg, "end of file after 6000 bytes");
            assert_memory_equal(rb, dio, 6000);
            r.len = 4096;
            assert_int_equal(io_run(e, &r, 1, &err), 0);
            free(rb);
        }
        close(fd);
        io_engine_close(e);
    }
    free(dio);
}

/* max_io_bytes splits every request into a chain of partial reads/writes,
 * rounded to IO_ALIGN on O_DIRECT files. */
static void test_split_requests(void **state)
{
    (void)state;
    uint8_t *src = io_alloc(16384), *dst = io_alloc(16384);
    assert_non_null(src);
    assert_non_null(dst);
    fill_random(src, 16384, 11);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.max_io_bytes = 1000});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        int fd = io_open(tpath(p, sizeof p, "split"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        io_req w = {.fd = fd, .write = true, .buf = src, .len = 10000, .off = 3};
        assert_int_equal(io_run(e, &w, 1, &err), 0);
        io_stats st;
        io_engine_stats(e, &st);
        assert_int_equal(st.ios, 10);
        assert_int_equal(st.bytes, 10000);
        memset(dst, 0, 16384);
        io_req r = {.fd = fd, .buf = dst, .len = 9999, .off = 4};
        assert_int_equal(io_run(e, &r, 1, &err), 0);
        assert_memory_equal(dst, src + 1, 9999);
        io_engine_stats(e, &st);
        assert_int_equal(st.ios, 20);
        size_t len;
        uint8_t *disk = read_all(p, &len);
        assert_int_equal(len, 10003);
        assert_memory_equal(disk + 3, src, 10000);
        free(disk);
        close(fd);
        io_engine_close(e);

        e = open_kind(KINDS[k], (io_opts){.max_io_bytes = 5000});
        bool direct;
        fd = io_open(tpath(p, sizeof p, "split.direct"), O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
        assert_true(fd >= 0);
        if (direct) {
            w = (io_req){.fd = fd, .write = true, .buf = src, .len = 16384, .off = 0};
            assert_int_equal(io_run(e, &w, 1, &err), 0);
            memset(dst, 0, 16384);
            r = (io_req){.fd = fd, .buf = dst, .len = 16384, .off = 0};
            assert_int_equal(io_run(e, &r, 1, &err), 0);
            assert_memory_equal(dst, src, 16384);
            io_engine_stats(e, &st);
            assert_int_equal(st.ios, 8); /* 4096-byte pieces: 5000 rounded down */
        }
        close(fd);
        io_engine_close(e);
    }
    free(src);
    free(dst);
}

struct feeder {
    int fd;
    const uint8_t *data;
    size_t piece, n_pieces;
};

static void *feed_pipe(void *arg)
{
    struct feeder *f = arg;
    for (size_t i = 0; i < f->n_pieces; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (write(f->fd, f->data + i * f->piece, f->piece) != (ssize_t)f->piece)
            break;
    }
    close(f->fd);
    return NULL;
}

/* A pipe fed in pieces answers a large read short, piece by piece: the
 * kernel's own short reads, each resubmitted for the rest. Then end of
 * file. (pread/pwrite cannot address a pipe: -ESPIPE, reported.) */
static void test_short_reads_from_pipe(void **state)
{
    (void)state;
    uint8_t data[9000], got[9000];
    fill_random(data, sizeof data, 21);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){0});
        if (e == NULL)
            continue;
        int p[2];
        assert_int_equal(pipe(p), 0);
        rt_err err = {{0}};
        memset(got, 0, sizeof got);
        io_req r = {.fd = p[0], .buf = got, .len = sizeof got, .off = 0};
        if (KINDS[k] == IO_KIND_SYNC) {
            assert_int_equal(io_run(e, &r, 1, &err), -ESPIPE);
            assert_has(err.msg, "pipe:");
            close(p[0]);
            close(p[1]);
            io_engine_close(e);
            continue;
        }
        struct feeder f = {.fd = p[1], .data = data, .piece = 3000, .n_pieces = 3};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, feed_pipe, &f), 0);
        int rc = io_run(e, &r, 1, &err);
        io_stats st;
        io_engine_stats(e, &st);
        if (rc != 0)
            fail_msg("read from the pipe: %s", err.msg);
        assert_memory_equal(got, data, sizeof data);
        assert_true(st.short_io >= 1);
        r.len = 10;
        assert_int_equal(io_run(e, &r, 1, &err), -ENODATA); /* writer closed */
        assert_int_equal(pthread_join(t, NULL), 0);
        close(p[0]);
        io_engine_close(e);
    }
}

/* io_reap waits for min_wait completions: three reads from a pipe that a
 * thread feeds one piece at a time, 20 ms apart, all come back in one call. */
static void test_reap_waits_for_min(void **state)
{
    (void)state;
    if (!g_have_uring)
        skip();
    io_engine *e = open_kind(IO_KIND_URING, (io_opts){0});
    uint8_t data[300], got[3][100];
    fill_random(data, sizeof data, 23);
    int p[2];
    assert_int_equal(pipe(p), 0);
    rt_err err = {{0}};
    io_req r[3];
    for (int i = 0; i < 3; i++)
        r[i] = (io_req){.fd = p[0], .buf = got[i], .len = 100, .user = got[i]};
    assert_int_equal(io_submit(e, r, 3, &err), 0);
    io_done d[3];
    assert_int_equal(io_reap(e, d, 3, 0), 0); /* nothing written yet */
    struct feeder f = {.fd = p[1], .data = data, .piece = 100, .n_pieces = 3};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, feed_pipe, &f), 0);
    assert_int_equal(io_reap(e, d, 3, 3), 3);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(io_pending(e), 0);
    bool seen[3] = {false};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d[i].res, 0);
        int j = (int)(((uint8_t(*)[100])d[i].user) - got);
        assert_true(j >= 0 && j < 3 && !seen[j]);
        seen[j] = true;
    }
    /* Each read took one whole piece, in some order: together they are the data. */
    int matched = 0;
    for (int piece = 0; piece < 3; piece++)
        for (int j = 0; j < 3; j++)
            matched += memcmp(got[j], data + piece * 100, 100) == 0;
    assert_int_equal(matched, 3);
    close(p[0]);
    io_engine_close(e);
}

/* fault_again_every = 3: every third answer that moved bytes comes back as
 * -EAGAIN and is issued again, so 20 one-piece writes take 29 answers (the
 * 3rd, 6th, ... 27th faulted) and 20 reads after them 30 more (the 30th,
 * ... 57th faulted: 19 in all). */
static void test_eagain_resubmitted(void **state)
{
    (void)state;
    enum { N = 20, LEN = 64 * 1024 };
    uint8_t *src = malloc((size_t)N * LEN), *dst = malloc((size_t)N * LEN);
    assert_non_null(src);
    assert_non_null(dst);
    fill_random(src, (size_t)N * LEN, 31);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 4, .fault_again_every = 3});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        int fd = io_open(tpath(p, sizeof p, "again"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        io_req w[N], r[N];
        for (int i = 0; i < N; i++) {
            w[i] = (io_req){.fd = fd, .write = true, .buf = src + (size_t)i * LEN, .len = LEN,
                            .off = (uint64_t)i * LEN};
            r[i] = (io_req){.fd = fd, .buf = dst + (size_t)i * LEN, .len = LEN, .off = (uint64_t)i * LEN};
        }
        assert_int_equal(io_run(e, w, N, &err), 0);
        io_stats st;
        io_engine_stats(e, &st);
        assert_int_equal(st.again, 9);
        assert_int_equal(st.ios, 29);
        assert_int_equal(st.reqs, N);
        memset(dst, 0, (size_t)N * LEN);
        assert_int_equal(io_run(e, r, N, &err), 0);
        assert_memory_equal(dst, src, (size_t)N * LEN);
        io_engine_stats(e, &st);
        assert_int_equal(st.again, 19);
        assert_int_equal(st.ios, 59);
        size_t len;
        uint8_t *disk = read_all(p, &len);
        assert_int_equal(len, (size_t)N * LEN);
        assert_memory_equal(disk, src, len);
        free(disk);
        close(fd);
        io_engine_close(e);
    }
    free(src);
    free(dst);
}

/* ---- accounting -------------------------------------------------------------- */

static void test_reap_accounting(void **state)
{
    (void)state;
    enum { N = 20 };
    uint8_t buf[N][4096];
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 4});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        int fd = io_open(tpath(p, sizeof p, "reap"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        io_done d[N + 5];
        assert_int_equal(io_reap(e, d, N, 1), 0); /* nothing in flight: no wait */
        io_req reqs[N];
        for (int i = 0; i < N; i++) {
            memset(buf[i], i + 1, sizeof buf[i]);
            reqs[i] = (io_req){.fd = fd, .write = true, .buf = buf[i], .len = sizeof buf[i],
                               .off = (uint64_t)i * 4096, .user = buf[i]};
        }
        assert_int_equal(io_submit(e, reqs, N, &err), 0); /* blocks while 4 are in flight */
        assert_int_equal(io_pending(e), N);
        assert_int_equal(io_reap(e, d, 0, 1), 0);
        assert_int_equal(io_pending(e), N);
        int got = io_reap(e, d, 5, 5);
        assert_int_equal(got, 5);
        assert_int_equal(io_pending(e), N - 5);
        got += io_reap(e, d + 5, N, N + 5); /* min_wait above what exists: waits for all, no more */
        assert_int_equal(got, N);
        assert_int_equal(io_pending(e), 0);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            assert_int_equal(d[i].res, 0);
            intptr_t j = ((uint8_t(*)[4096])d[i].user) - buf;
            assert_true(j >= 0 && j < N);
            seen[j]++;
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(seen[i], 1);
        assert_int_equal(io_reap(e, d, N, 1), 0);
        size_t len;
        uint8_t *disk = read_all(p, &len);
        assert_int_equal(len, sizeof buf);
        assert_memory_equal(disk, buf, len);
        free(disk);
        close(fd);
        io_engine_close(e);
    }
}

/* io_run waits for its own requests and leaves io_submit's for io_reap. */
static void test_run_leaves_submitted(void **state)
{
    (void)state;
    enum { NS = 6, NR = 10 };
    uint8_t sbuf[NS][8192], rbuf[NR][4096], data[NR * 4096];
    fill_random(data, sizeof data, 41);
    char p[512], q[512];
    write_file(tpath(q, sizeof q, "run.src"), data, sizeof data);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 3});
        if (e == NULL)
            continue;
        rt_err err = {{0}};
        int wfd = io_open(tpath(p, sizeof p, "run.dst"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        int rfd = io_open(q, O_RDONLY, false, NULL, &err);
        assert_true(wfd >= 0 && rfd >= 0);
        io_req s[NS], r[NR];
        for (int i = 0; i < NS; i++) {
            memset(sbuf[i], 'a' + i, sizeof sbuf[i]);
            s[i] = (io_req){.fd = wfd, .write = true, .buf = sbuf[i], .len = sizeof sbuf[i],
                            .off = (uint64_t)i * 8192, .user = sbuf[i]};
        }
        for (int i = 0; i < NR; i++)
            r[i] = (io_req){.fd = rfd, .buf = rbuf[i], .len = 4096, .off = (uint64_t)i * 4096, .user = rbuf[i]};
        assert_int_equal(io_submit(e, s, NS, &err), 0);
        if (io_run(e, r, NR, &err) != 0)
            fail_msg("io_run: %s", err.msg);
        assert_memory_equal(rbuf, data, sizeof data);
        assert_int_equal(io_pending(e), NS);
        io_done d[NS + NR];
        int got = io_reap(e, d, NS + NR, NS + NR);
        assert_int_equal(got, NS);
        for (int i = 0; i < got; i++) {
            assert_int_equal(d[i].res, 0);
            assert_true((uint8_t *)d[i].user >= &sbuf[0][0] && (uint8_t *)d[i].user <= &sbuf[NS - 1][0]);
        }
        assert_int_equal(io_pending(e), 0);
        close(wfd);
        close(rfd);
        io_engine_close(e);
    }
}

/* Closing with writes in flight waits for them: the file is whole after. */
static void test_close_waits(void **state)
{
    (void)state;
    enum { N = 64, LEN = 64 * 1024 };
    uint8_t *src = malloc((size_t)N * LEN);
    assert_non_null(src);
    fill_random(src, (size_t)N * LEN, 51);
    for (int k = 0; k < 2; k++) {
        io_engine *e = open_kind(KINDS[k], (io_opts){.depth = 16});
        if (e == NULL)
            continue;
        char p[512];
        rt_err err = {{0}};
        int fd = io_open(tpath(p, sizeof p, "close"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
        assert_true(fd >= 0);
        io_req w[N];
        for (int i = 0; i < N; i++)
            w[i] = (io_req){.fd = fd, .write = true, .buf = src + (size_t)i * LEN, .len = LEN,
                            .off = (uint64_t)i * LEN};
        assert_int_equal(io_submit(e, w, N, &err), 0);
        io_engine_close(e);
        size_t len;
        uint8_t *disk = read_all(p, &len);
        assert_int_equal(len, (size_t)N * LEN);
        assert_memory_equal(disk, src, len);
        free(disk);
        close(fd);
    }
    free(src);
}

struct handoff {
    io_engine *e;
    int fd;            /* O_DIRECT file */
    uint8_t *buf;      /* [8][1 MiB] */
    int gate;          /* read end of a pipe the thread then blocks on */
    int rc;
};

static void *submit_then_sleep(void *arg)
{
    struct handoff *h = arg;
    io_req w[8];
    for (int i = 0; i < 8; i++)
        w[i] = (io_req){.fd = h->fd, .write = true, .buf = h->buf + ((size_t)i << 20), .len = 1u << 20,
                        .off = (uint64_t)i << 20, .user = h->buf + ((size_t)i << 20)};
    h->rc = io_submit(h->e, w, 8, NULL);
    char c;
    if (read(h->gate, &c, 1) != 1) /* asleep while the main thread reaps */
        h->rc = -EIO;
    return NULL;
}

/* An engine opened on one thread, fed by a second and reaped by the first
 * while the second sleeps: "one thread at a time", not "one thread for
 * life" (a ring set up with SINGLE_ISSUER would refuse the second thread's
 * submits, one with DEFER_TASKRUN the first thread's waits). */
static void test_reap_from_other_thread(void **state)
{
    (void)state;
    if (!g_have_uring)
        skip();
    char p[512];
    rt_err err = {{0}};
    bool direct = false;
    int fd = io_open(tpath(p, sizeof p, "handoff"), O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
    assert_true(fd >= 0);
    uint8_t *buf = io_alloc(8u << 20);
    assert_non_null(buf);
    fill_random(buf, 8u << 20, 81);
    io_engine *e = open_kind(IO_KIND_URING, (io_opts){.depth = 8});
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    struct handoff h = {.e = e, .fd = fd, .buf = buf, .gate = gate[0], .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, submit_then_sleep, &h), 0);
    while (__atomic_load_n(&h.rc, __ATOMIC_ACQUIRE) == 1) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 20 * 1000 * 1000}; /* let the thread fall asleep */
    nanosleep(&ts, NULL);
    io_done d[8];
    int got = 0;
    while (got < 8) {
        int k = io_reap(e, d + got, 8 - got, 8 - got);
        assert_true(k > 0);
        got += k;
    }
    for (int i = 0; i < 8; i++)
        assert_int_equal(d[i].res, 0);
    assert_int_equal(write(gate[1], "x", 1), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.rc, 0);
    size_t len;
    uint8_t *disk = read_all(p, &len);
    assert_int_equal(len, 8u << 20);
    assert_memory_equal(disk, buf, len);
    free(disk);
    close(gate[0]);
    close(gate[1]);
    close(fd);
    io_engine_close(e);
    free(buf);
}

/* ---- open, fallbacks, environment ------------------------------------------- */

static void test_open_errors(void **state)
{
    (void)state;
    rt_err err = {{0}};
    io_engine *e = (io_engine *)&err;
    assert_int_equal(io_engine_open(&(io_opts){.depth = IO_MAX_DEPTH + 1}, &e, &err), -EINVAL);
    assert_null(e);
    assert_has(err.msg, "IO_MAX_DEPTH");
    assert_int_equal(io_engine_open(&(io_opts){.n_bufs = IO_MAX_REG_BUFS + 1}, &e, &err), -EINVAL);
    assert_has(err.msg, "65 buffers");
    assert_int_equal(io_engine_open(&(io_opts){.n_bufs = 1}, &e, &err), -EINVAL);
    void *bufs[1] = {&err};
    size_t lens[1] = {0};
    assert_int_equal(io_engine_open(&(io_opts){.n_bufs = 1, .bufs = bufs, .buf_lens = lens}, &e, &err), -EINVAL);
    assert_has(err.msg, "buffer 0");
    assert_int_equal(io_engine_open(&(io_opts){.kind = (io_kind)7}, &e, &err), -EINVAL);
    assert_has(err.msg, "kind 7");

    assert_int_equal(io_engine_open(NULL, &e, &err), 0);
    if (io_engine_kind(e) == IO_KIND_URING)
        assert_string_equal(io_engine_describe(e), "io_uring, depth 32, no registered buffers");
    else
        assert_has(io_engine_describe(e), "pread/pwrite (io_uring unavailable");
    io_engine_close(e);
    io_engine_close(NULL);
    assert_int_equal(io_engine_open(&(io_opts){.kind = IO_KIND_SYNC}, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_SYNC);
    assert_string_equal(io_engine_describe(e), "pread/pwrite (IO_KIND_SYNC)");
    io_engine_close(e);

    uint8_t *b[4];
    size_t bl[4];
    for (int i = 0; i < 4; i++) {
        b[i] = io_alloc(16u << 20);
        assert_non_null(b[i]);
        bl[i] = 16u << 20;
    }
    e = open_kind(IO_KIND_URING, (io_opts){.n_bufs = 4, .bufs = (void *const *)b, .buf_lens = bl});
    if (e != NULL) {
        assert_string_equal(io_engine_describe(e), "io_uring, depth 32, 4 registered buffers (64.0 MiB)");
        io_engine_close(e);
    }
    for (int i = 0; i < 4; i++)
        free(b[i]);

}

/* io_alloc: aligned, zeroed, rounded up; from IO_HUGE_BYTES on 2 MiB
 * boundaries (whether the kernel grants huge pages is its policy: printed,
 * not checked). */
static void test_io_alloc(void **state)
{
    (void)state;
    uint8_t *a = io_alloc(1);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % IO_ALIGN, 0);
    for (int i = 0; i < (int)IO_ALIGN; i++) /* rounded up to IO_ALIGN and zeroed */
        assert_int_equal(a[i], 0);
    free(a);
    size_t sizes[3] = {IO_HUGE_BYTES, 3u << 20, 33u << 20};
    for (int k = 0; k < 3; k++) {
        a = io_alloc(sizes[k]);
        assert_non_null(a);
        assert_int_equal((uintptr_t)a % IO_HUGE_BYTES, 0);
        size_t rounded = (sizes[k] + IO_HUGE_BYTES - 1) / IO_HUGE_BYTES * IO_HUGE_BYTES;
        for (size_t i = 0; i < rounded; i += 4093)
            assert_int_equal(a[i], 0);
        assert_int_equal(a[rounded - 1], 0);
        memset(a, 0xab, rounded); /* the rounded tail is ours too (ASan checks) */
        free(a);
    }
    a = io_alloc(IO_HUGE_BYTES - IO_ALIGN);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % IO_ALIGN, 0);
    free(a);
    assert_null(io_alloc(SIZE_MAX));
    assert_null(io_alloc(SIZE_MAX - IO_ALIGN));
}

/* Runs fn in a child; fn returns NULL or the first failure, which comes back
 * through a pipe. Returns 77 when fn asked to skip (by returning "skip: ..."). */
static int run_in_child(const char *(*fn)(void *), void *arg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        const char *msg = fn(arg);
        if (msg != NULL && write(p[1], msg, strlen(msg)) < 0)
            _exit(3);
        _exit(msg == NULL ? 0 : strncmp(msg, "skip:", 5) == 0 ? 77 : 1);
    }
    close(p[1]);
    char msg[1200];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof msg - 1 && (n = read(p[0], msg + got, sizeof msg - 1 - got)) > 0)
        got += (size_t)n;
    msg[got] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("child died: status %d", status);
    if (WEXITSTATUS(status) == 77) {
        print_message("%s\n", msg);
        return 77;
    }
    if (WEXITSTATUS(status) != 0)
        fail_msg("in the child: %s", msg);
    return 0;
}

static char g_child_msg[1100];

static const char *child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *child_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_child_msg, sizeof g_child_msg, fmt, ap);
    va_end(ap);
    return g_child_msg;
}

/* A write and read back of one block through e, in a child (no cmocka). */
static const char *child_roundtrip(io_engine *e, const char *name)
{
    char p[512];
    rt_err err = {{0}};
    uint8_t w[5000], r[5000];
    fill_random(w, sizeof w, 61);
    int fd = io_open(tpath(p, sizeof p, name), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
    if (fd < 0)
        return child_fail("io_open: %s", err.msg);
    io_req q = {.fd = fd, .write = true, .buf = w, .len = sizeof w, .off = 0};
    if (io_run(e, &q, 1, &err) != 0)
        return child_fail("write: %s", err.msg);
    q = (io_req){.fd = fd, .buf = r, .len = sizeof r, .off = 0};
    if (io_run(e, &q, 1, &err) != 0)
        return child_fail("read: %s", err.msg);
    close(fd);
    if (memcmp(w, r, sizeof w) != 0)
        return child_fail("read back differs from what was written");
    return NULL;
}

/* io_uring_setup forbidden by a seccomp filter answering errno *arg: AUTO
 * falls back to pread/pwrite and says why, URING fails. */
static const char *child_no_uring(void *arg)
{
    int code = *(int *)arg;
#ifndef __x86_64__
    return child_fail("skip: the seccomp filter here is written for x86-64 (errno %d)", code);
#endif
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)code & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return child_fail("skip: cannot install a seccomp filter: %s", strerror(errno));
    rt_err err = {{0}};
    io_engine *e = NULL;
    int rc = io_engine_open(&(io_opts){.kind = IO_KIND_AUTO}, &e, &err);
    if (rc != 0)
        return child_fail("AUTO open failed: %d %s", rc, err.msg);
    if (io_engine_kind(e) != IO_KIND_SYNC)
        return child_fail("AUTO gave %s, expected pread/pwrite", io_engine_describe(e));
    char want[256];
    snprintf(want, sizeof want, "pread/pwrite (io_uring unavailable: io_uring_queue_init: %s)", strerror(code));
    if (strcmp(io_engine_describe(e), want) != 0)
        return child_fail("describe says \"%s\", expected \"%s\"", io_engine_describe(e), want);
    const char *msg = child_roundtrip(e, "nouring");
    io_engine_close(e);
    if (msg != NULL)
        return msg;
    rc = io_engine_open(&(io_opts){.kind = IO_KIND_URING}, &e, &err);
    if (rc != -code || e != NULL)
        return child_fail("URING open gave %d, expected %d", rc, -code);
    if (!has(err.msg, "io_uring_queue_init"))
        return child_fail("URING error does not name io_uring_queue_init: %s", err.msg);
    setenv(IO_ENV, "uring", 1);
    rc = io_engine_open(NULL, &e, &err);
    if (rc != -code || !has(err.msg, "RAMTRAIN_IO=uring"))
        return child_fail("AUTO with RAMTRAIN_IO=uring gave %d (%s), expected %d naming the variable", rc,
                          err.msg, -code);
    return NULL;
}

static void test_fallback_when_uring_forbidden(void **state)
{
    (void)state;
    int codes[3] = {ENOSYS, EPERM, EACCES};
    for (int i = 0; i < 3; i++)
        if (run_in_child(child_no_uring, &codes[i]) == 77)
            skip();
}

/* Buffer registration refused: a read-only mapping cannot be pinned for
 * writing (EFAULT). AUTO goes on unregistered and says so; URING fails. */
static void test_register_failure(void **state)
{
    (void)state;
    if (!g_have_uring)
        skip();
    size_t len = 1 << 20;
    uint8_t *ro = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(ro != MAP_FAILED);
    void *bufs[1] = {ro};
    size_t lens[1] = {len};
    rt_err err = {{0}};
    io_engine *e = NULL;
    assert_int_equal(io_engine_open(&(io_opts){.n_bufs = 1, .bufs = bufs, .buf_lens = lens}, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_URING);
    assert_has(io_engine_describe(e), "io_uring, depth 32, unregistered buffers (io_uring_register_buffers of 1, "
                                      "1.0 MiB: ");
    char p[512];
    int fd = io_open(tpath(p, sizeof p, "regfail"), O_RDWR | O_CREAT | O_TRUNC, false, NULL, &err);
    assert_true(fd >= 0);
    io_req w = {.fd = fd, .write = true, .buf = ro, .len = 4096, .off = 0}; /* from the mapping: plain WRITE */
    assert_int_equal(io_run(e, &w, 1, &err), 0);
    io_stats st;
    io_engine_stats(e, &st);
    assert_int_equal(st.fixed, 0);
    assert_int_equal(st.ios, 1);
    assert_int_equal(file_size(p), 4096);
    close(fd);
    io_engine_close(e);
    err.msg[0] = '\0';
    assert_true(io_engine_open(&(io_opts){.kind = IO_KIND_URING, .n_bufs = 1, .bufs = bufs, .buf_lens = lens},
                               &e, &err) < 0);
    assert_null(e);
    assert_has(err.msg, "io_uring_register_buffers");
    munmap(ro, len);
}

/* The realistic case: RLIMIT_MEMLOCK below the buffers, no CAP_IPC_LOCK. */
static const char *child_memlock(void *arg)
{
    (void)arg;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return child_fail("skip: capget: %s", strerror(errno));
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    data[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
    if (syscall(SYS_capset, &hdr, data) != 0)
        return child_fail("skip: capset: %s", strerror(errno));
    struct rlimit rl = {.rlim_cur = 64 * 1024, .rlim_max = 64 * 1024};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return child_fail("skip: setrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
    size_t len = 4u << 20;
    uint8_t *buf = io_alloc(len);
    if (buf == NULL)
        return child_fail("io_alloc failed");
    void *bufs[1] = {buf};
    size_t lens[1] = {len};
    rt_err err = {{0}};
    io_engine *e = NULL;
    int rc = io_engine_open(&(io_opts){.n_bufs = 1, .bufs = bufs, .buf_lens = lens}, &e, &err);
    if (rc != 0)
        return child_fail("AUTO open failed: %s", err.msg);
    if (io_engine_kind(e) != IO_KIND_URING)
        return child_fail("AUTO gave %s", io_engine_describe(e));
    if (!has(io_engine_describe(e), "unregistered buffers") || !has(io_engine_describe(e), "RLIMIT_MEMLOCK 64 KiB"))
        return child_fail("describe does not say registration failed on RLIMIT_MEMLOCK: %s", io_engine_describe(e));
    const char *msg = child_roundtrip(e, "memlock");
    io_engine_close(e);
    if (msg != NULL)
        return msg;
    rc = io_engine_open(&(io_opts){.kind = IO_KIND_URING, .n_bufs = 1, .bufs = bufs, .buf_lens = lens}, &e, &err);
    if (rc != -ENOMEM || !has(err.msg, "RLIMIT_MEMLOCK"))
        return child_fail("URING open gave %d (%s), expected -ENOMEM naming RLIMIT_MEMLOCK", rc, err.msg);
    free(buf);
    return NULL;
}

static void test_register_failure_memlock(void **state)
{
    (void)state;
    if (!g_have_uring)
        skip();
    if (run_in_child(child_memlock, NULL) == 77)
        skip();
}

static int unset_env(void **state)
{
    (void)state;
    unsetenv(IO_ENV);
    return 0;
}

static void test_env_override(void **state)
{
    (void)state;
    rt_err err = {{0}};
    io_engine *e = NULL;
    setenv(IO_ENV, "sync", 1);
    assert_int_equal(io_engine_open(NULL, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_SYNC);
    assert_string_equal(io_engine_describe(e), "pread/pwrite (RAMTRAIN_IO=sync)");
    io_engine_close(e);

    setenv(IO_ENV, "bogus", 1);
    assert_int_equal(io_engine_open(NULL, &e, &err), -EINVAL);
    assert_null(e);
    assert_has(err.msg, "RAMTRAIN_IO=\"bogus\"");
    assert_has(err.msg, "expected uring, sync or auto");
    assert_int_equal(io_engine_open(&(io_opts){.kind = IO_KIND_SYNC}, &e, &err), 0); /* only AUTO reads it */
    io_engine_close(e);

    if (!g_have_uring)
        return;
    setenv(IO_ENV, "sync", 1);
    assert_int_equal(io_engine_open(&(io_opts){.kind = IO_KIND_URING}, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_URING);
    io_engine_close(e);
    setenv(IO_ENV, "uring", 1);
    assert_int_equal(io_engine_open(&(io_opts){.depth = 8}, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_URING);
    assert_string_equal(io_engine_describe(e), "io_uring (RAMTRAIN_IO=uring), depth 8, no registered buffers");
    io_engine_close(e);
    setenv(IO_ENV, "auto", 1);
    assert_int_equal(io_engine_open(NULL, &e, &err), 0);
    assert_int_equal(io_engine_kind(e), IO_KIND_URING);
    io_engine_close(e);
}

/* io_open: *direct always tells the truth; tmpfs may or may not take
 * O_DIRECT (Linux >= 6.6 does), procfs never does. */
static void test_io_open(void **state)
{
    (void)state;
    rt_err err = {{0}};
    bool direct = true;
    char p[512];
    snprintf(p, sizeof p, "/dev/shm/rt_test_io_%d", (int)getpid());
    int fd = io_open(p, O_RDWR | O_CREAT | O_TRUNC, true, &direct, &err);
    if (fd < 0)
        fail_msg("io_open(%s): %s", p, err.msg);
    unlink(p);
    assert_int_equal(direct, (fcntl(fd, F_GETFL) & O_DIRECT) != 0);
    print_message("/dev/shm: O_DIRECT %s\n", direct ? "granted" : "refused, buffered instead");
    io_engine *e = NULL;
    assert_int_equal(io_engine_open(NULL, &e, &err), 0);
    uint8_t *buf = io_alloc(8192);
    assert_non_null(buf);
    fill_random(buf, 8192, 71);
    io_req r = {.fd = fd, .write = true, .buf = buf + 512, .len = 4096, .off = 0};
    assert_int_equal(io_run(e, &r, 1, &err), direct ? -EINVAL : 0);
    r.buf = buf;
    assert_int_equal(io_run(e, &r, 1, &err), 0);
    uint8_t back[4096];
    assert_int_equal(pread(fd, back, sizeof back, 0), (ssize_t)sizeof back);
    assert_memory_equal(back, buf, sizeof back);
    close(fd);
    io_engine_close(e);
    free(buf);

    direct = true;
    fd = io_open("/proc/self/status", O_RDONLY, true, &direct, &err);
    assert_true(fd >= 0);
    assert_false(direct);
    assert_int_equal(fcntl(fd, F_GETFL) & O_DIRECT, 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);

    fd = io_open(tpath(p, sizeof p, "plain"), O_RDWR | O_CREAT | O_EXCL, false, &direct, &err);
    assert_true(fd >= 0);
    assert_false(direct);
    close(fd);
    assert_int_equal(io_open(p, O_RDWR | O_CREAT | O_EXCL, true, &direct, &err), -EEXIST);
    assert_has(err.msg, p);
    fd = io_open(p, O_RDWR, true, NULL, &err);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(io_open("/nonexistent-rt-dir/x", O_RDONLY, true, &direct, &err), -ENOENT);
    assert_has(err.msg, "/nonexistent-rt-dir/x");
}

/* A hang (a completion never reported) fails the run with the directory
 * named instead of waiting for ctest's timeout. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_io_engine: no progress for 120 s, giving up; files kept in ";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0 || write(STDERR_FILENO, g_dir, strlen(g_dir)) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0)
        _exit(1);
    _exit(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_both_kinds),
        cmocka_unit_test(test_direct_registered),
        cmocka_unit_test(test_direct_unregistered),
        cmocka_unit_test(test_fixed_only_inside_registered),
        cmocka_unit_test(test_large_registered_buffer),
        cmocka_unit_test(test_misaligned_direct_rejected),
        cmocka_unit_test(test_zero_length_rejected),
        cmocka_unit_test(test_read_past_eof),
        cmocka_unit_test(test_split_requests),
        cmocka_unit_test(test_short_reads_from_pipe),
        cmocka_unit_test(test_reap_waits_for_min),
        cmocka_unit_test(test_eagain_resubmitted),
        cmocka_unit_test(test_reap_accounting),
        cmocka_unit_test(test_run_leaves_submitted),
        cmocka_unit_test(test_close_waits),
        cmocka_unit_test(test_reap_from_other_thread),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_io_alloc),
        cmocka_unit_test(test_fallback_when_uring_forbidden),
        cmocka_unit_test(test_register_failure),
        cmocka_unit_test(test_register_failure_memlock),
        cmocka_unit_test_teardown(test_env_override, unset_env),
        cmocka_unit_test(test_io_open),
    };
    unsetenv(IO_ENV); /* the tests choose engines themselves */
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    io_engine *e = NULL;
    g_have_uring = io_engine_open(&(io_opts){.kind = IO_KIND_URING}, &e, NULL) == 0;
    io_engine_close(e);
    if (!g_have_uring)
        fprintf(stderr, "test_io_engine: io_uring unavailable, its halves are skipped\n");
    signal(SIGALRM, on_alarm);
    alarm(120);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    alarm(0);
    if (failed == 0)
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "test_io_engine: %d failed; files kept in %s\n", failed, g_dir);
    return failed == 0 ? 0 : 1;
}

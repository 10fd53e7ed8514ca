/*
 * test_blockstore: layer blocks in shared memory (storage/blockstore.h) and
 * the NUMA topology module (storage/topo.h).
 *
 * Blocks are created in a private directory under /dev/shm (through
 * $RAMTRAIN_SHM_DIR), removed at the end. Sharing is checked across a real
 * fork: the child attaches by name, reads what the parent wrote and writes
 * back. Each header check corrupts one field of a valid block through a
 * separate mapping of the file and expects attach to name the object, the
 * field and both values. Layouts are built by hand with odd shapes, so
 * padding and alignment are exercised, in F32 and BF16.
 *
 * topo is checked against what the kernel says (sched_getaffinity,
 * /sys/bus/pci) on this machine, and against hwloc synthetic machines with
 * two NUMA nodes and two PUs per core, where the answers are known exactly.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_* */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/blockstore.h"
#include "storage/topo.h"

#define N_BLOCKS 4
#define BLOCK_INDEX 2
#define UP_NAME "model.layers.1.mlp.up_proj.weight"
#define BIG_ROWS 20000 /* up_proj rows that make the optimizer state span 2 MiB pages */

static char g_dir[64]; /* private $RAMTRAIN_SHM_DIR */

/* ---- fixtures ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/dev/shm/ramtrain-test-bs-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", g_dir, strerror(errno));
        return -1;
    }
    return setenv(BS_ENV_DIR, g_dir, 1);
}

static int group_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[512];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    return rmdir(g_dir);
}

/* A unique run id per test: tests in one binary never share an object. */
static void run_id(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "t%d-%s", (int)getpid(), tag);
}

/* Three tensors of odd shapes; up_rows varies the middle one. */
static void make_layout(lb_layout *l, dt_type dt, int64_t up_rows, int extra)
{
    rt_err err = {{0}};
    const int64_t norm[1] = {37}, up[2] = {up_rows, 33}, k[2] = {19, 33}, bias[1] = {19};
    assert_int_equal(lb_layout_init(l, BLOCK_INDEX, dt, 2, &err), 0);
    assert_int_equal(lb_layout_add(l, "model.layers.1.input_layernorm.weight", 1, norm, &err), 0);
    assert_int_equal(lb_layout_add(l, UP_NAME, 2, up, &err), 0);
    assert_int_equal(lb_layout_add(l, "model.layers.1.self_attn.k_proj.weight", 2, k, &err), 0);
    if (extra)
        assert_int_equal(lb_layout_add(l, "model.layers.1.self_attn.k_proj.bias", 1, bias, &err),
                         0);
    lb_layout_finish(l);
}

static void create_or_fail(const char *id, const lb_layout *l, bool spilled, bs_block *b)
{
    rt_err err = {{0}};
    int rc = bs_block_create(id, 0, N_BLOCKS, l, spilled, true, b, &err);
    if (rc != 0)
        fail_msg("bs_block_create %s: %d %s", id, rc, err.msg);
}

static void attach_or_fail(const char *id, const lb_layout *l, bs_block *b)
{
    rt_err err = {{0}};
    int rc = bs_block_attach(id, 0, N_BLOCKS, l, b, &err);
    if (rc != 0)
        fail_msg("bs_block_attach %s: %d %s", id, rc, err.msg);
}

static void expect_msg(const rt_err *err, const char *want)
{
    if (strstr(err->msg, want) == NULL)
        fail_msg("error message lacks \"%s\": %s", want, err->msg);
}

/* The pages a tmpfs object gets on this machine, when it can be told without
 * re-implementing the module: shmem_enabled "never"/"deny" and no huge=
 * option on /dev/shm give 4 KiB pages. -1: cannot tell. */
static int expected_tmpfs_pages(void)
{
    char line[4096];
    int plain = -1;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    if (f == NULL)
        return BS_PAGES_SMALL; /* no THP in this kernel */
    if (fgets(line, sizeof line, f) != NULL && (strstr(line, "[never]") || strstr(line, "[deny]")))
        plain = 1;
    fclose(f);
    if (plain != 1)
        return -1;
    f = fopen("/proc/self/mountinfo", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, " /dev/shm ") != NULL && strstr(line, "huge=") != NULL &&
            strstr(line, "huge=never") == NULL)
            plain = 0;
    fclose(f);
    return plain == 1 ? BS_PAGES_SMALL : -1;
}

/* ---- lb_layout_hash ------------------------------------------------------------- */

static void test_layout_hash(void **state)
{
    (void)state;
    lb_layout a, b, c;
    make_layout(&a, DT_BF16, 40, 0);
    make_layout(&b, DT_BF16, 40, 0);
    assert_int_equal(lb_layout_hash(&a), lb_layout_hash(&b));

    /* Bytes that are not fields (an unused table slot, the rest of a name
     * after its NUL, struct padding) do not count. */
    memset(&b.t[LB_MAX_TENSORS - 1], 0x5a, sizeof b.t[0]);
    memset(b.t[0].name + strlen(b.t[0].name) + 1, 0x77, 8);
    size_t pad = offsetof(lb_tensor, shape) - (offsetof(lb_tensor, ndim) + sizeof(int));
    memset((char *)&b.t[1] + offsetof(lb_tensor, ndim) + sizeof(int), 0x33, pad);
    assert_int_equal(lb_layout_hash(&a), lb_layout_hash(&b));

    /* Each kind of field counts. */
    make_layout(&c, DT_BF16, 41, 0);
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
    make_layout(&c, DT_F32, 40, 0);
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
    make_layout(&c, DT_BF16, 40, 1);
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
    c = a;
    c.t[2].name[3] = 'X';
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
    c = a;
    c.index++;
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
    c = a;
    c.sec_off[LB_SEC_V] += 4096;
    assert_int_not_equal(lb_layout_hash(&a), lb_layout_hash(&c));
}

/* ---- create, attach, share ------------------------------------------------------- */

static uint16_t pattern(uint64_t k)
{
    return (uint16_t)(k * 2654435761u >> 7);
}

/* In a forked child: cmocka's asserts would longjmp into the child's copy of
 * the test runner, so failures are exit codes. */
static int child_check(const char *id, const lb_layout *l, dt_type dt)
{
    bs_block b;
    rt_err err = {{0}};
    int rc = bs_block_attach(id, 0, N_BLOCKS, l, &b, &err);
    if (rc != 0) {
        fprintf(stderr, "child attach: %d %s\n", rc, err.msg);
        return 10;
    }
    if (atomic_load(&b.hdr->version) != 7)
        return 11;
    int i = lb_layout_find(l, UP_NAME);
    size_t n = lb_tensor_bytes(l, i, LB_SEC_W) / 2;
    const uint16_t *w = lb_tensor_ptr(l, b.base, LB_SEC_W, i);
    for (size_t k = 0; k < n; k++)
        if (w[k] != pattern(k))
            return 12;
    /* Reply through G0 of the last tensor and the header. */
    int last = l->n_tensors - 1;
    uint16_t *g = lb_tensor_ptr(l, b.base, LB_SEC_G0, last);
    size_t ng = lb_tensor_bytes(l, last, LB_SEC_G0) / 2;
    for (size_t k = 0; k < ng; k++)
        g[k] = (uint16_t)~pattern(k);
    atomic_store(&b.hdr->data_cursor, 42);
    (void)dt;
    bs_block_close(&b);
    return 0;
}

static void check_share(dt_type dt, const char *tag)
{
    char id[64];
    run_id(id, sizeof id, tag);
    lb_layout l;
    make_layout(&l, dt, 40, 0);
    bs_block b;
    create_or_fail(id, &l, false, &b);

    /* The header as created. */
    bs_header *h = b.hdr;
    assert_ptr_equal(h, b.base);
    assert_true(h->magic == BS_MAGIC);
    assert_int_equal(h->format_version, BS_FORMAT_VERSION);
    assert_int_equal(h->header_bytes, sizeof(bs_header));
    assert_true(h->layout_hash == lb_layout_hash(&l));
    assert_string_equal(h->run_id, id);
    assert_int_equal(h->shard, 0);
    assert_int_equal(h->block, BLOCK_INDEX);
    assert_int_equal(h->n_blocks, N_BLOCKS);
    assert_int_equal(h->flags, 0);
    assert_int_equal(h->map_bytes, l.total_bytes);
    assert_int_equal(b.map_bytes, l.total_bytes);
    assert_int_equal(atomic_load(&h->version), 0);
    assert_int_equal(atomic_load(&h->steps_committed), 0);
    assert_int_equal(atomic_load(&h->op), BS_OP_IDLE);
    assert_memory_equal(&h->layout, &l, sizeof l);
    int want_pages = expected_tmpfs_pages();
    if (want_pages >= 0)
        assert_int_equal(b.pages, want_pages);
    assert_true(b.pages == BS_PAGES_SMALL || b.pages == BS_PAGES_THP);

    char path[BS_NAME_LEN];
    assert_int_equal(bs_path(path, sizeof path, g_dir, id, 0, BLOCK_INDEX), 0);
    assert_string_equal(b.path, path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, l.total_bytes);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Every page is allocated by create, not at first touch. */
    if ((uint64_t)st.st_blocks * 512 < l.total_bytes)
        fail_msg("%s: %llu bytes allocated of %llu", path,
                 (unsigned long long)st.st_blocks * 512, (unsigned long long)l.total_bytes);
    /* Zero-filled past the header. */
    const unsigned char *data = (const unsigned char *)b.base + LB_ALIGN_TENSOR;
    for (uint64_t k = 0; k < l.total_bytes - LB_ALIGN_TENSOR; k += 4093)
        assert_int_equal(data[k], 0);

    int i = lb_layout_find(&l, UP_NAME);
    uint16_t *w = lb_tensor_ptr(&l, b.base, LB_SEC_W, i);
    size_t n = lb_tensor_bytes(&l, i, LB_SEC_W) / 2;
    for (size_t k = 0; k < n; k++)
        w[k] = pattern(k);
    atomic_store(&h->version, 7);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_check(id, &l, dt));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child exited with %d (10 attach, 11 version, 12 data)", WEXITSTATUS(status));

    /* What the child wrote is in the parent's mapping. */
    assert_int_equal(atomic_load(&h->data_cursor), 42);
    int last = l.n_tensors - 1;
    const uint16_t *g = lb_tensor_ptr(&l, b.base, LB_SEC_G0, last);
    for (size_t k = 0; k < lb_tensor_bytes(&l, last, LB_SEC_G0) / 2; k++) {
        uint16_t want = (uint16_t)~pattern(k);
        if (g[k] != want)
            fail_msg("G0[%zu] = %u, the child wrote %u", k, g[k], want);
    }

    bs_block_close(&b);
    assert_null(b.base);
    bs_block_close(&b); /* safe twice */
    rt_err err = {{0}};
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
}

static void test_share_f32(void **state)
{
    (void)state;
    check_share(DT_F32, "share-f32");
}

static void test_share_bf16(void **state)
{
    (void)state;
    check_share(DT_BF16, "share-bf16");
}

static void test_mode_ignores_umask(void **state)
{
    (void)state;
    const mode_t masks[] = {0, 0277, 0077};
    for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
        char id[64];
        snprintf(id, sizeof id, "t%d-umask%zu", (int)getpid(), m);
        lb_layout l;
        make_layout(&l, DT_F32, 40, 0);
        mode_t old = umask(masks[m]);
        bs_block b;
        rt_err err = {{0}};
        int rc = bs_block_create(id, 0, N_BLOCKS, &l, false, false, &b, &err);
        umask(old);
        if (rc != 0)
            fail_msg("create with umask %03o: %s", (unsigned)masks[m], err.msg);
        struct stat st;
        assert_int_equal(stat(b.path, &st), 0);
        if ((st.st_mode & 07777) != 0600)
            fail_msg("umask %03o: mode %03o, want 0600", (unsigned)masks[m],
                     (unsigned)(st.st_mode & 07777));
        assert_int_equal(st.st_uid, geteuid());
        bs_block_close(&b);
        assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
    }
}

static void test_double_create(void **state)
{
    (void)state;
    char id[64];
    run_id(id, sizeof id, "twice");
    lb_layout l;
    make_layout(&l, DT_BF16, 40, 0);
    bs_block a, b;
    create_or_fail(id, &l, false, &a);
    memset((char *)a.base + LB_ALIGN_TENSOR, 0xab, 64);
    rt_err err = {{0}};
    assert_int_equal(bs_block_create(id, 0, N_BLOCKS, &l, false, true, &b, &err), -EEXIST);
    expect_msg(&err, a.path);
    expect_msg(&err, "already exists");
    assert_null(b.base);
    bs_block_close(&a);

    /* An object of the same name in another place attach searches (here
     * the real /dev/shm, behind the override) also blocks creation: a new
     * block beside it would leave two candidates for one name. */
    char id2[64], other[BS_NAME_LEN];
    run_id(id2, sizeof id2, "twice-elsewhere");
    assert_int_equal(bs_path(other, sizeof other, BS_DIR_SHM, id2, 0, BLOCK_INDEX), 0);
    int fd = open(other, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    int rc = bs_block_create(id2, 0, N_BLOCKS, &l, false, true, &b, &err);
    unlink(other);
    assert_int_equal(rc, -EEXIST);
    expect_msg(&err, other);

    /* The failed create left the first block alone. */
    attach_or_fail(id, &l, &a);
    assert_int_equal(((unsigned char *)a.base)[LB_ALIGN_TENSOR + 63], 0xab);
    bs_block_close(&a);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
}

static void test_spilled(void **state)
{
    (void)state;
    char id[64];
    run_id(id, sizeof id, "spilled");
    lb_layout l;
    make_layout(&l, DT_BF16, BIG_ROWS, 0);
    assert_true(l.resident_bytes < l.total_bytes);
    bs_block b;
    create_or_fail(id, &l, true, &b);
    assert_int_equal(b.map_bytes, l.resident_bytes);
    assert_int_equal(b.hdr->map_bytes, l.resident_bytes);
    assert_int_equal(b.hdr->flags, BS_FLAG_SPILLED);
    struct stat st;
    assert_int_equal(stat(b.path, &st), 0);
    assert_int_equal(st.st_size, l.resident_bytes);
    bs_block_close(&b);
    attach_or_fail(id, &l, &b);
    assert_int_equal(b.map_bytes, l.resident_bytes);
    assert_int_equal(b.hdr->flags, BS_FLAG_SPILLED);
    bs_block_close(&b);
    rt_err err = {{0}};
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
}

/* ---- attach refuses damaged or foreign blocks -------------------------------------- */

typedef void (*corrupt_fn)(bs_header *h, int fd);

static void c_magic(bs_header *h, int fd) { (void)fd; h->magic = 0x1234; }
static void c_magic0(bs_header *h, int fd) { (void)fd; h->magic = 0; }
static void c_version(bs_header *h, int fd) { (void)fd; h->format_version = 2; }
static void c_hdrbytes(bs_header *h, int fd) { (void)fd; h->header_bytes = 4000; }
static void c_runid(bs_header *h, int fd)
{
    (void)fd;
    snprintf(h->run_id, sizeof h->run_id, "other-run");
}
static void c_shard(bs_header *h, int fd) { (void)fd; h->shard = 5; }
static void c_block(bs_header *h, int fd) { (void)fd; h->block = 3; }
static void c_nblocks(bs_header *h, int fd) { (void)fd; h->n_blocks = 9; }
static void c_hash(bs_header *h, int fd) { (void)fd; h->layout_hash ^= 1; }
static void c_flags(bs_header *h, int fd) { (void)fd; h->flags = 0x80; }
static void c_spillflag(bs_header *h, int fd) { (void)fd; h->flags = BS_FLAG_SPILLED; }
static void c_mapbytes(bs_header *h, int fd) { (void)fd; h->map_bytes += 4096; }
static void c_op_accum(bs_header *h, int fd)
{
    (void)fd;
    atomic_store(&h->accum_step, 3);
    atomic_store(&h->accum_count, 2);
    atomic_store(&h->op, BS_OP_ACCUM);
}
static void c_op_step(bs_header *h, int fd) { (void)fd; atomic_store(&h->op, BS_OP_STEP); }
static void c_op_bad(bs_header *h, int fd) { (void)fd; atomic_store(&h->op, 9); }
/* A consistent header (hash recomputed) with another shape: another config's block. */
static void c_table(bs_header *h, int fd)
{
    (void)fd;
    h->layout.t[1].shape[0] = 64;
    h->layout_hash = lb_layout_hash(&h->layout);
}
static void c_truncate(bs_header *h, int fd)
{
    (void)h;
    assert_int_equal(ftruncate(fd, (off_t)(h->map_bytes - LB_ALIGN_BLOCK)), 0);
}
static void c_tiny(bs_header *h, int fd)
{
    (void)h;
    assert_int_equal(ftruncate(fd, 100), 0);
}

struct corruption {
    const char *name;
    corrupt_fn fn;
    int rc;
    const char *msg[3]; /* substrings the message must hold */
    int64_t up_rows;    /* 0: 40; big enough for resident < total where it matters */
};

/* Opens the object's file and applies fn through a mapping of its own. */
static void corrupt_file(const char *path, corrupt_fn fn)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    void *p = mmap(NULL, LB_ALIGN_TENSOR, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    fn(p, fd);
    munmap(p, LB_ALIGN_TENSOR);
    close(fd);
}

static void test_attach_corrupt(void **state)
{
    (void)state;
    const struct corruption cases[] = {
        {"magic", c_magic, -EBADMSG, {"not a ramtrain layer block", "0x0000000000001234", NULL}, 0},
        {"magic0", c_magic0, -EBADMSG, {"magic 0", "creation was interrupted", NULL}, 0},
        {"version", c_version, -EBADMSG, {"format version 2", "reads version 1", NULL}, 0},
        {"hdrbytes", c_hdrbytes, -EBADMSG, {"4000-byte header", NULL, NULL}, 0},
        {"runid", c_runid, -ESTALE, {"belongs to run \"other-run\"", "ramtrain clean", NULL}, 0},
        {"shard", c_shard, -ESTALE, {"shard 5, not 0", NULL, NULL}, 0},
        {"block", c_block, -ESTALE, {"holds block 3, not 2", NULL, NULL}, 0},
        {"nblocks", c_nblocks, -ESTALE, {"one of 9 blocks", "config makes 4", NULL}, 0},
        {"hash", c_hash, -EBADMSG,
         {"does not match its layout hash", "damaged", "agrees with the config's field by field"},
         0},
        {"table", c_table, -ESTALE,
         {"tensor " UP_NAME " has shape [64, 33] in the block but [40, 33] in the config",
          "layout hash", NULL}, 0},
        {"flags", c_flags, -EBADMSG, {"unknown bits 0x80", NULL, NULL}, 0},
        {"spillflag", c_spillflag, -EBADMSG, {"spilled block", "resident_bytes", NULL}, BIG_ROWS},
        {"mapbytes", c_mapbytes, -EBADMSG, {"header says", "truncated or resized", NULL}, 0},
        {"truncate", c_truncate, -EBADMSG, {"truncated or resized", "its header says", NULL},
         BIG_ROWS},
        {"tiny", c_tiny, -EBADMSG, {"is 100 bytes", "smaller than a block header", NULL}, 0},
        {"opaccum", c_op_accum, -EUCLEAN,
         {"interrupted in the middle of accumulating", "step 3", "restore from a checkpoint"}, 0},
        {"opstep", c_op_step, -EUCLEAN,
         {"interrupted in the middle of an optimizer step", "restore from a checkpoint", NULL}, 0},
        {"opbad", c_op_bad, -EBADMSG, {"operation 9", NULL, NULL}, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char id[64];
        snprintf(id, sizeof id, "t%d-bad-%s", (int)getpid(), cases[c].name);
        lb_layout l;
        make_layout(&l, c % 2 ? DT_F32 : DT_BF16, cases[c].up_rows ? cases[c].up_rows : 40, 0);
        bs_block b;
        create_or_fail(id, &l, false, &b);
        char path[BS_NAME_LEN];
        snprintf(path, sizeof path, "%s", b.path);
        bs_block_close(&b);
        attach_or_fail(id, &l, &b); /* valid before the damage */
        bs_block_close(&b);

        corrupt_file(path, cases[c].fn);
        rt_err err = {{0}};
        int rc = bs_block_attach(id, 0, N_BLOCKS, &l, &b, &err);
        if (rc != cases[c].rc)
            fail_msg("case %s: attach returned %d, want %d (%s)", cases[c].name, rc, cases[c].rc,
                     err.msg);
        assert_null(b.base);
        expect_msg(&err, path);
        for (int k = 0; k < 3 && cases[c].msg[k] != NULL; k++)
            expect_msg(&err, cases[c].msg[k]);
        assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
    }
}

/* Attaching with a layout other than the block's says what differs. */
static void test_attach_other_config(void **state)
{
    (void)state;
    char id[64];
    run_id(id, sizeof id, "config");
    lb_layout l, other;
    make_layout(&l, DT_BF16, 40, 0);
    bs_block b;
    create_or_fail(id, &l, false, &b);
    bs_block_close(&b);

    struct {
        dt_type dt;
        int64_t up;
        int extra;
        const char *msg;
    } cases[] = {
        {DT_BF16, 41, 0,
         "tensor " UP_NAME " has shape [40, 33] in the block but [41, 33] in the config"},
        {DT_F32, 40, 0, "compute dtype is BF16 in the block but F32 in the config"},
        {DT_BF16, 40, 1,
         "the block has 3 tensors but the config 4 (model.layers.1.self_attn.k_proj.bias only "
         "in the config)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        make_layout(&other, cases[c].dt, cases[c].up, cases[c].extra);
        rt_err err = {{0}};
        assert_int_equal(bs_block_attach(id, 0, N_BLOCKS, &other, &b, &err), -ESTALE);
        expect_msg(&err, cases[c].msg);
        expect_msg(&err, "ramtrain clean");
    }
    /* Another shard is another object: none there. */
    make_layout(&other, DT_BF16, 40, 0);
    rt_err err = {{0}};
    assert_int_equal(bs_block_attach(id, 1, N_BLOCKS, &other, &b, &err), -ENOENT);
    expect_msg(&err, "ramtrain.");
    expect_msg(&err, g_dir);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
}

/* A process killed between creating the file and writing the header leaves
 * a zero-filled object of the right size: refused, not taken for a block. */
static void test_half_created(void **state)
{
    (void)state;
    char id[64], path[BS_NAME_LEN];
    run_id(id, sizeof id, "half");
    lb_layout l;
    make_layout(&l, DT_F32, 40, 0);
    assert_int_equal(bs_path(path, sizeof path, g_dir, id, 0, BLOCK_INDEX), 0);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)l.total_bytes), 0);
    close(fd);
    assert_true(bs_block_exists(id, 0, BLOCK_INDEX));
    bs_block b;
    rt_err err = {{0}};
    assert_int_equal(bs_block_attach(id, 0, N_BLOCKS, &l, &b, &err), -EBADMSG);
    expect_msg(&err, "creation was interrupted");
    expect_msg(&err, path);
    /* And create does not overwrite it. */
    assert_int_equal(bs_block_create(id, 0, N_BLOCKS, &l, false, false, &b, &err), -EEXIST);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
}

static void test_unlink_exists(void **state)
{
    (void)state;
    char id[64], path[BS_NAME_LEN], found[BS_NAME_LEN];
    run_id(id, sizeof id, "unlink");
    lb_layout l;
    make_layout(&l, DT_BF16, 40, 0);
    assert_false(bs_block_exists(id, 0, BLOCK_INDEX));
    bs_block b;
    create_or_fail(id, &l, false, &b);
    bs_block_close(&b);
    assert_true(bs_block_exists(id, 0, BLOCK_INDEX));
    assert_false(bs_block_exists(id, 0, BLOCK_INDEX + 1));
    assert_false(bs_block_exists(id, 1, BLOCK_INDEX));
    /* dir NULL: where it is. */
    assert_int_equal(bs_path(path, sizeof path, g_dir, id, 0, BLOCK_INDEX), 0);
    assert_int_equal(bs_path(found, sizeof found, NULL, id, 0, BLOCK_INDEX), 0);
    assert_string_equal(found, path);
    char want[BS_NAME_LEN];
    snprintf(want, sizeof want, "%s/ramtrain.%s.0.%d", g_dir, id, BLOCK_INDEX);
    assert_string_equal(path, want);
    char tiny[8];
    assert_int_equal(bs_path(tiny, sizeof tiny, g_dir, id, 0, BLOCK_INDEX), -ENAMETOOLONG);

    rt_err err = {{0}};
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
    assert_false(bs_block_exists(id, 0, BLOCK_INDEX));
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), -ENOENT);
    expect_msg(&err, id);
    assert_int_equal(bs_block_attach(id, 0, N_BLOCKS, &l, &b, &err), -ENOENT);
    expect_msg(&err, g_dir);
    expect_msg(&err, "/dev/shm");
}

static void test_bad_run_id(void **state)
{
    (void)state;
    char long_id[80];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    const char *bad[] = {"", "a.b", "a/b", "../x", "run id", "r\xc3\xa9", long_id};
    const char *why[] = {"run id is empty", "'.' at position 1", "'/' at position 1",
                         "'.' at position 0", "' ' at position 3", "byte 0xc3 at position 1",
                         "longer than 63 characters"};
    lb_layout l;
    make_layout(&l, DT_F32, 40, 0);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rt_err err = {{0}};
        bs_block b;
        assert_int_equal(bs_run_id_check(bad[k], &err), -EINVAL);
        expect_msg(&err, "run id");
        memset(&err, 0, sizeof err);
        assert_int_equal(bs_block_create(bad[k], 0, N_BLOCKS, &l, false, false, &b, &err),
                         -EINVAL);
        expect_msg(&err, "run id");
        expect_msg(&err, why[k]);
        if (k >= 1 && k <= 4)
            expect_msg(&err, bad[k]);
        assert_int_equal(bs_block_attach(bad[k], 0, N_BLOCKS, &l, &b, &err), -EINVAL);
        char p[BS_NAME_LEN];
        assert_int_equal(bs_path(p, sizeof p, g_dir, bad[k], 0, 0), -EINVAL);
        assert_false(bs_block_exists(bad[k], 0, 0));
    }
    rt_err err = {{0}};
    assert_int_equal(bs_run_id_check(NULL, &err), -EINVAL);
    long_id[63] = '\0';
    assert_int_equal(bs_run_id_check(long_id, &err), 0);
    assert_int_equal(bs_run_id_check("Run_2-b", &err), 0);
}

static void test_bad_args(void **state)
{
    (void)state;
    char id[64];
    run_id(id, sizeof id, "args");
    lb_layout l;
    rt_err err = {{0}};
    bs_block b;
    const int64_t shape[1] = {10};
    assert_int_equal(lb_layout_init(&l, 1, DT_F32, 1, &err), 0);
    assert_int_equal(lb_layout_add(&l, "x", 1, shape, &err), 0);
    assert_int_equal(bs_block_create(id, 0, N_BLOCKS, &l, false, false, &b, &err), -EINVAL);
    expect_msg(&err, "not finished");
    lb_layout_finish(&l);
    assert_int_equal(bs_block_create(id, 0, 1, &l, false, false, &b, &err), -EINVAL);
    expect_msg(&err, "outside a model of 1 blocks");
    assert_int_equal(bs_block_create(id, -1, N_BLOCKS, &l, false, false, &b, &err), -EINVAL);
    expect_msg(&err, "shard -1");
    assert_false(bs_block_exists(id, 0, 1));

    /* An override directory that is not there: the error names it. */
    const char *missing = "/dev/shm/ramtrain-test-no-such-dir";
    assert_int_equal(setenv(BS_ENV_DIR, missing, 1), 0);
    int rc = bs_block_create(id, 0, N_BLOCKS, &l, false, false, &b, &err);
    assert_int_equal(setenv(BS_ENV_DIR, g_dir, 1), 0);
    assert_int_equal(rc, -ENOENT);
    expect_msg(&err, missing);
}

static void test_pages_name(void **state)
{
    (void)state;
    assert_string_equal(bs_pages_name(BS_PAGES_SMALL), "4 KiB pages");
    assert_string_equal(bs_pages_name(BS_PAGES_THP), "transparent huge pages");
    assert_string_equal(bs_pages_name(BS_PAGES_HUGETLB), "hugetlbfs 2 MiB pages");
}

/* ---- topo ------------------------------------------------------------------------ */

static topo *open_or_fail(void)
{
    topo *t = NULL;
    rt_err err = {{0}};
    int rc = topo_open(&t, &err);
    if (rc != 0)
        fail_msg("topo_open: %d %s", rc, err.msg);
    assert_non_null(t);
    return t;
}

static void test_topo_describe(void **state)
{
    (void)state;
    topo *t = open_or_fail();
    const char *d = topo_describe(t);
    int nodes = 0, cores = 0, pus = 0;
    if (sscanf(d, "%d NUMA %*s %d %*s %d", &nodes, &cores, &pus) != 3)
        fail_msg("topo_describe: \"%s\" is not \"N NUMA nodes, C cores, P PUs\"", d);
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(pus, CPU_COUNT(&set));
    assert_true(cores >= 1 && cores <= pus);
    assert_int_equal(nodes, topo_n_numa(t));
    assert_true(nodes >= 1);
    assert_non_null(strstr(d, nodes == 1 ? "1 NUMA node," : "NUMA nodes,"));
    topo_close(t);
    topo_close(NULL);
}

static void test_topo_cpus(void **state)
{
    (void)state;
    topo *t = open_or_fail();
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpus[CPU_SETSIZE];
    rt_err err = {{0}};
    int n = topo_cpus(t, "none", cpus, CPU_SETSIZE, &err);
    if (n < 1)
        fail_msg("topo_cpus: %d %s", n, err.msg);
    assert_true(n <= CPU_COUNT(&set));
    for (int i = 0; i < n; i++) {
        assert_true(CPU_ISSET(cpus[i], &set));
        for (int j = 0; j < i; j++)
            assert_int_not_equal(cpus[i], cpus[j]);
    }
    assert_int_equal(topo_cpus(t, "interleave", cpus, CPU_SETSIZE, &err), n);
    assert_int_equal(topo_cpus(t, "none", cpus, 1, &err), 1);
    assert_int_equal(topo_cpus(t, "none", cpus, 0, &err), -EINVAL);
    assert_int_equal(topo_cpus(t, "bogus", cpus, 4, &err), -EINVAL);
    expect_msg(&err, "bogus");

    /* Narrow this thread's affinity to one CPU: exactly that one comes back. */
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            last = c;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    n = topo_cpus(t, "none", cpus, CPU_SETSIZE, &err);
    assert_int_equal(sched_setaffinity(0, sizeof set, &set), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cpus[0], last);
    topo_close(t);
}

/* The first PCI device the kernel lists, "" when none is visible. */
static void first_pci_device(char *out, size_t len)
{
    out[0] = '\0';
    DIR *d = opendir("/sys/bus/pci/devices");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strlen(e->d_name) < len &&
            (out[0] == '\0' || strcmp(e->d_name, out) < 0))
            memcpy(out, e->d_name, strlen(e->d_name) + 1);
    closedir(d);
}

static void test_topo_place(void **state)
{
    (void)state;
    topo *t = open_or_fail();
    size_t len = 4u << 20;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    rt_err err = {{0}};
    char report[TOPO_REPORT_LEN];
    int multi = topo_n_numa(t) > 1;

    int rc = topo_place(t, p, len, "interleave", &err);
    if (rc != 0)
        fail_msg("topo_place interleave: %d %s", rc, err.msg);
    assert_int_equal(topo_place(t, p, len, "none", &err), 0);
    assert_int_equal(topo_place_describe(t, "interleave", report, sizeof report, &err), 0);
    if (multi) {
        char want[64];
        snprintf(want, sizeof want, "blocks interleaved over %d NUMA nodes", topo_n_numa(t));
        assert_string_equal(report, want);
    } else {
        assert_string_equal(report, "1 NUMA node: no placement");
    }
    assert_int_equal(topo_place_describe(t, "none", report, sizeof report, &err), 0);
    assert_non_null(strstr(report, "none"));
    memset(p, 1, len); /* the memory is usable after placement */

    /* A PCI device that is not there is named. */
    memset(&err, 0, sizeof err);
    assert_int_equal(topo_place(t, p, len, "gpu:0000:ff:1f.7", &err), -ENODEV);
    expect_msg(&err, "0000:ff:1f.7");
    assert_int_equal(topo_place_describe(t, "gpu:0000:ff:1f.7", NULL, 0, &err), -ENODEV);
    assert_int_equal(topo_cpus(t, "gpu:0000:ff:1f.7", (int[4]){0}, 4, &err), -ENODEV);
    expect_msg(&err, "0000:ff:1f.7");

    /* A real one resolves (this machine's first PCI device stands in for a GPU). */
    char dev[64], policy[80];
    first_pci_device(dev, sizeof dev);
    if (dev[0] != '\0') {
        snprintf(policy, sizeof policy, "gpu:%s", dev);
        rc = topo_place_describe(t, policy, report, sizeof report, &err);
        if (rc != 0)
            fail_msg("%s: %d %s", policy, rc, err.msg);
        if (!multi)
            assert_non_null(strstr(report, "1 NUMA node: no placement"));
        assert_non_null(strstr(report, dev));
        assert_int_equal(topo_place(t, p, len, policy, &err), 0);
        int cpus[CPU_SETSIZE];
        assert_true(topo_cpus(t, policy, cpus, CPU_SETSIZE, &err) >= 1);
        /* Upper-case hex and an 8-digit domain (nvidia-smi's form) name it too. */
        char upper[80];
        snprintf(upper, sizeof upper, "gpu:0000%s", dev);
        for (char *q = upper; *q; q++)
            if (*q >= 'a' && *q <= 'f')
                *q = (char)(*q - 'a' + 'A');
        assert_int_equal(topo_place_describe(t, upper, NULL, 0, &err), 0);
    } else {
        fprintf(stderr, "no PCI devices visible: gpu:<bus id> resolution not checked\n");
    }

    /* Malformed policies. */
    const char *bad[] = {"gpu:", "gpu:zz", "gpu:0000:65:00", "gpu:0000::00.0", "gpu:65.00.0",
                         "gpu:0000:65:00.8", "gpu:0000:65:20.0", "gpu:0x00:65:00.0",
                         "gpu:0000:65:00.0:1", "gpu: 0000:65:00.0"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(topo_place(t, p, len, bad[k], &err), -EINVAL);
        expect_msg(&err, bad[k]);
        expect_msg(&err, "not a PCI bus id");
    }
    const char *unknown[] = {"numa0", "Interleave", "", "gpu"};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        memset(&err, 0, sizeof err);
        assert_int_equal(topo_place(t, p, len, unknown[k], &err), -EINVAL);
        char quoted[32];
        snprintf(quoted, sizeof quoted, "\"%s\"", unknown[k]);
        expect_msg(&err, quoted);
        expect_msg(&err, "interleave");
    }
    assert_int_equal(topo_place(t, p, len, NULL, &err), -EINVAL);
    munmap(p, len);
    topo_close(t);
}

/* Two NUMA nodes, two cores of two PUs each per node: the answers are known. */
static void test_topo_synthetic(void **state)
{
    (void)state;
    topo *t = NULL;
    rt_err err = {{0}};
    int rc = topo_open_synthetic("pack:2 numa:1 core:2 pu:2", &t, &err);
    if (rc != 0)
        fail_msg("topo_open_synthetic: %d %s", rc, err.msg);
    assert_string_equal(topo_describe(t), "2 NUMA nodes, 4 cores, 8 PUs");
    assert_int_equal(topo_n_numa(t), 2);
    char report[TOPO_REPORT_LEN];
    assert_int_equal(topo_place_describe(t, "interleave", report, sizeof report, &err), 0);
    assert_string_equal(report, "blocks interleaved over 2 NUMA nodes");
    int cpus[16];
    assert_int_equal(topo_cpus(t, "interleave", cpus, 16, &err), 4);
    const int want[4] = {0, 2, 4, 6}; /* one PU per core */
    for (int i = 0; i < 4; i++)
        assert_int_equal(cpus[i], want[i]);
    assert_int_equal(topo_cpus(t, "none", cpus, 3, &err), 3);
    void *p = mmap(NULL, 1u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(topo_place(t, p, 1u << 20, "interleave", &err), 0);
    assert_int_equal(topo_place(t, (char *)p + 1, 4096, "interleave", &err), -EINVAL);
    expect_msg(&err, "page aligned");
    munmap(p, 1u << 20);
    assert_int_equal(topo_place(t, NULL, 0, "gpu:0000:65:00.0", &err), -ENODEV);
    expect_msg(&err, "no PCI devices at all");
    topo_close(t);

    rc = topo_open_synthetic("pack:2 numa:1 core:3 pu:1", &t, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(topo_describe(t), "2 NUMA nodes, 6 cores, 6 PUs");
    topo_close(t);
    assert_int_equal(topo_open_synthetic("flux:capacitor", &t, &err), -EINVAL);
    expect_msg(&err, "flux:capacitor");
    assert_null(t);
}

/* Placement happens inside create; a policy that fails leaves no object. */
static void test_create_placed(void **state)
{
    (void)state;
    topo *t = open_or_fail();
    char id[64];
    run_id(id, sizeof id, "placed");
    lb_layout l;
    make_layout(&l, DT_BF16, 40, 0);
    bs_block b;
    rt_err err = {{0}};
    int rc = bs_block_create_placed(id, 0, N_BLOCKS, &l, false, true, t, "interleave", &b, &err);
    if (rc != 0)
        fail_msg("create_placed interleave: %d %s", rc, err.msg);
    assert_true(b.hdr->magic == BS_MAGIC);
    bs_block_close(&b);
    attach_or_fail(id, &l, &b);
    bs_block_close(&b);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);

    rc = bs_block_create_placed(id, 0, N_BLOCKS, &l, false, true, t, "gpu:0000:ff:1f.7", &b, &err);
    assert_int_equal(rc, -ENODEV);
    expect_msg(&err, "0000:ff:1f.7");
    expect_msg(&err, g_dir);
    assert_null(b.base);
    assert_false(bs_block_exists(id, 0, BLOCK_INDEX));
    topo_close(t);
}

/* Free, unreserved 2 MiB huge pages when /dev/hugepages is a 2 MiB
 * hugetlbfs; -1 when it is not. */
static long hugetlb_free_pages(void)
{
    struct statfs sf;
    if (statfs(BS_DIR_HUGETLB, &sf) != 0 || (unsigned long)sf.f_type != HUGETLBFS_MAGIC ||
        (unsigned long)sf.f_bsize != LB_ALIGN_BLOCK)
        return -1;
    long v[2] = {0, 0};
    const char *files[2] = {"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
                            "/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "r");
        if (f == NULL || fscanf(f, "%ld", &v[i]) != 1)
            v[i] = 0;
        if (f != NULL)
            fclose(f);
    }
    return v[0] - v[1];
}

/* Without $RAMTRAIN_SHM_DIR: hugetlbfs when asked for and there is room,
 * tmpfs when not asked for, and tmpfs when the pool is too small. Runs only
 * where /dev/hugepages has free 2 MiB pages; runs last, as it unsets the
 * override (and a failure here may leave objects in the real directories). */
static void test_hugetlb(void **state)
{
    (void)state;
    long free_pages = hugetlb_free_pages();
    if (free_pages < 1 || free_pages > 256) {
        fprintf(stderr, "/dev/hugepages: %ld free 2 MiB pages (1..256 needed): hugetlbfs path "
                        "not checked\n", free_pages);
        skip();
    }
    assert_int_equal(unsetenv(BS_ENV_DIR), 0);
    char id[64];
    run_id(id, sizeof id, "huge");
    lb_layout l;
    make_layout(&l, DT_BF16, 40, 0);
    assert_int_equal(l.total_bytes, LB_ALIGN_BLOCK); /* one huge page */
    rt_err err = {{0}};
    bs_block b;
    int rc = bs_block_create(id, 0, N_BLOCKS, &l, false, true, &b, &err);
    if (rc != 0)
        fail_msg("create on hugetlbfs: %d %s", rc, err.msg);
    assert_int_equal(b.pages, BS_PAGES_HUGETLB);
    assert_int_equal(strncmp(b.path, BS_DIR_HUGETLB "/", strlen(BS_DIR_HUGETLB) + 1), 0);
    memset((char *)b.base + LB_ALIGN_TENSOR, 0x5c, 100);
    bs_block_close(&b);
    attach_or_fail(id, &l, &b);
    assert_int_equal(b.pages, BS_PAGES_HUGETLB);
    assert_int_equal(((unsigned char *)b.base)[LB_ALIGN_TENSOR + 99], 0x5c);
    bs_block_close(&b);
    char path[BS_NAME_LEN];
    assert_int_equal(bs_path(path, sizeof path, NULL, id, 0, BLOCK_INDEX), 0);
    assert_int_equal(strncmp(path, BS_DIR_HUGETLB "/", strlen(BS_DIR_HUGETLB) + 1), 0);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
    assert_int_equal(hugetlb_free_pages(), free_pages); /* the page went back */

    /* Not asked for: tmpfs. */
    assert_int_equal(bs_block_create(id, 0, N_BLOCKS, &l, false, false, &b, &err), 0);
    assert_int_not_equal(b.pages, BS_PAGES_HUGETLB);
    assert_int_equal(strncmp(b.path, BS_DIR_SHM "/", strlen(BS_DIR_SHM) + 1), 0);
    bs_block_close(&b);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);

    /* Larger than the pool: tmpfs, silently. F32 with two G slots has six
     * fp32-sized sections. */
    int64_t numel = (free_pages + 1) * (int64_t)LB_ALIGN_BLOCK / 24 + 1;
    make_layout(&l, DT_F32, numel / 33 + 1, 0);
    assert_true(l.total_bytes > (uint64_t)free_pages * LB_ALIGN_BLOCK);
    rc = bs_block_create(id, 0, N_BLOCKS, &l, false, true, &b, &err);
    if (rc != 0)
        fail_msg("create larger than the huge page pool: %d %s", rc, err.msg);
    assert_int_not_equal(b.pages, BS_PAGES_HUGETLB);
    assert_int_equal(strncmp(b.path, BS_DIR_SHM "/", strlen(BS_DIR_SHM) + 1), 0);
    bs_block_close(&b);
    assert_int_equal(bs_block_unlink(id, 0, BLOCK_INDEX, &err), 0);
    assert_int_equal(setenv(BS_ENV_DIR, g_dir, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_hash),
        cmocka_unit_test(test_share_f32),
        cmocka_unit_test(test_share_bf16),
        cmocka_unit_test(test_mode_ignores_umask),
        cmocka_unit_test(test_double_create),
        cmocka_unit_test(test_spilled),
        cmocka_unit_test(test_attach_corrupt),
        cmocka_unit_test(test_attach_other_config),
        cmocka_unit_test(test_half_created),
        cmocka_unit_test(test_unlink_exists),
        cmocka_unit_test(test_bad_run_id),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_pages_name),
        cmocka_unit_test(test_topo_describe),
        cmocka_unit_test(test_topo_cpus),
        cmocka_unit_test(test_topo_place),
        cmocka_unit_test(test_topo_synthetic),
        cmocka_unit_test(test_create_placed),
        cmocka_unit_test(test_hugetlb), /* last: it unsets $RAMTRAIN_SHM_DIR */
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

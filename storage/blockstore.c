/*
 * blockstore: layer blocks as shared-memory files (see blockstore.h).
 *
 * An object is a plain file in a memory file system, opened with open(2):
 * on Linux shm_open is exactly open() under /dev/shm, and open() also reaches
 * hugetlbfs and the test directory of $RAMTRAIN_SHM_DIR with the same code.
 * O_EXCL|O_NOFOLLOW on create and O_NOFOLLOW plus an owner check on attach:
 * /dev/shm is writable by everyone, so a name there may have been planted.
 *
 * Creation order: create, size, map, place (topo_place, before any page is
 * touched), allocate every page (MADV_POPULATE_WRITE, or fallocate on older
 * kernels: a full tmpfs or a short huge-page pool is then an error here
 * rather than a SIGBUS in the middle of a step), write the header, and last
 * the magic with a release store. A reader that acquires the magic sees the
 * whole header; a process killed before that leaves magic 0, which attach
 * refuses as an interrupted creation. Any failure removes the object.
 *
 * Huge pages: hugetlbfs (/dev/hugepages) is tried first when asked for and it
 * has enough free 2 MiB pages; the mapping reserves them, and when the pool
 * runs short anyway (another process took pages between check and map) the
 * block falls back to tmpfs. On tmpfs, MADV_HUGEPAGE asks for transparent
 * huge pages; whether the kernel gives them depends on shmem_enabled and the
 * mount's huge= option, which is what bs_block.pages reports.
 *
 * Rejected: validating by checksum of the data. A layer block is rewritten
 * every step; a checksum would cost a full pass over it each time. The
 * header's `op` marker catches the failure that matters (a process killed in
 * the middle of an in-place update) at no cost.
 */
#include "storage/blockstore.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define BS_MAX_DIRS 3

static const char CLEAN_HINT[] = "run with a fresh run id or `ramtrain clean`";

typedef enum bs_fs { FS_OTHER = 0, FS_TMPFS, FS_HUGETLB } bs_fs;

/* ---- layout hash ------------------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Integers go in as 8 little-endian bytes whatever their C type. */
static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return fnv_bytes(h, b, sizeof b);
}

uint64_t lb_layout_hash(const lb_layout *l)
{
    uint64_t h = FNV_OFFSET;
    h = fnv_u64(h, (uint64_t)(int64_t)l->index);
    h = fnv_u64(h, (uint64_t)l->compute);
    h = fnv_u64(h, (uint64_t)(int64_t)l->n_gslots);
    h = fnv_u64(h, (uint64_t)(int64_t)l->n_tensors);
    /* A damaged table (from a header) may claim any count: hash what fits. */
    int n = l->n_tensors < 0 ? 0 : l->n_tensors > LB_MAX_TENSORS ? LB_MAX_TENSORS : l->n_tensors;
    for (int i = 0; i < n; i++) {
        const lb_tensor *t = &l->t[i];
        h = fnv_bytes(h, t->name, strnlen(t->name, LB_NAME_LEN));
        h = fnv_u64(h, 0); /* end of name */
        h = fnv_u64(h, (uint64_t)(int64_t)t->ndim);
        for (int d = 0; d < LB_MAX_DIMS && d < t->ndim; d++)
            h = fnv_u64(h, (uint64_t)t->shape[d]);
        h = fnv_u64(h, t->numel);
        h = fnv_u64(h, t->offset);
        h = fnv_u64(h, t->offset_f32);
    }
    h = fnv_u64(h, l->w_bytes);
    h = fnv_u64(h, l->f32_bytes);
    for (int s = 0; s < LB_SEC_MAX; s++)
        h = fnv_u64(h, l->sec_off[s]);
    h = fnv_u64(h, l->opt_off);
    h = fnv_u64(h, l->opt_bytes);
    h = fnv_u64(h, l->resident_bytes);
    h = fnv_u64(h, l->total_bytes);
    return h;
}

/* ---- names and places ---------------------------------------------------------- */

/* A header string for a message: printable ASCII, others as '?'. */
static void printable(char *out, size_t len, const char *s, size_t max)
{
    size_t n = strnlen(s, max), j = 0;
    for (size_t i = 0; i < n && j + 1 < len; i++)
        out[j++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[j] = '\0';
}

int bs_run_id_check(const char *run_id, rt_err *err)
{
    if (run_id == NULL || run_id[0] == '\0')
        return err_set(err, -EINVAL, "run id is empty: 1..%d characters of [A-Za-z0-9_-] needed",
                       BS_RUN_ID_LEN - 1);
    size_t n = strnlen(run_id, BS_RUN_ID_LEN);
    char shown[BS_RUN_ID_LEN];
    printable(shown, sizeof shown, run_id, BS_RUN_ID_LEN - 1);
    if (n >= BS_RUN_ID_LEN)
        return err_set(err, -EINVAL, "run id \"%s...\" is longer than %d characters", shown,
                       BS_RUN_ID_LEN - 1);
    size_t ok = strspn(run_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    if (ok != n) {
        char what[16];
        unsigned char c = (unsigned char)run_id[ok];
        if (c >= 0x20 && c < 0x7f)
            snprintf(what, sizeof what, "'%c'", c);
        else
            snprintf(what, sizeof what, "byte 0x%02x", c);
        return err_set(err, -EINVAL,
                       "run id \"%s\" has %s at position %zu: only A-Z, a-z, 0-9, '_' and '-' "
                       "are allowed (it becomes part of shared-memory file names)",
                       shown, what, ok);
    }
    return 0;
}

static const char *env_dir(void)
{
    const char *d = getenv(BS_ENV_DIR);
    return d != NULL && d[0] != '\0' ? d : NULL;
}

/* The directories attach searches, in order; returns how many. */
static int search_dirs(const char *dirs[BS_MAX_DIRS])
{
    int n = 0;
    const char *e = env_dir();
    if (e != NULL)
        dirs[n++] = e;
    dirs[n++] = BS_DIR_HUGETLB;
    dirs[n++] = BS_DIR_SHM;
    return n;
}

/* "$RAMTRAIN_SHM_DIR (/x), /dev/hugepages and /dev/shm" for messages. */
static const char *searched(char *buf, size_t len)
{
    const char *e = env_dir();
    if (e != NULL)
        snprintf(buf, len, "%s ($" BS_ENV_DIR "), " BS_DIR_HUGETLB " and " BS_DIR_SHM, e);
    else
        snprintf(buf, len, BS_DIR_HUGETLB " and " BS_DIR_SHM);
    return buf;
}

static int fmt_path(char *buf, size_t len, const char *dir, const char *run_id, int shard,
                    int block)
{
    int n = snprintf(buf, len, "%s/ramtrain.%s.%d.%d", dir, run_id, shard, block);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The kind of file system dir is on, and its block size (the huge page size
 * on hugetlbfs). -errno when dir cannot be examined. */
static int fs_kind(const char *dir, bs_fs *kind, uint64_t *bsize)
{
    struct statfs sf;
    *kind = FS_OTHER;
    *bsize = 0;
    if (statfs(dir, &sf) != 0)
        return -errno;
    *bsize = (uint64_t)sf.f_bsize;
    if ((unsigned long)sf.f_type == (unsigned long)HUGETLBFS_MAGIC)
        *kind = FS_HUGETLB;
    else if ((unsigned long)sf.f_type == (unsigned long)TMPFS_MAGIC)
        *kind = FS_TMPFS;
    else
        *kind = FS_OTHER;
    return 0;
}

/* Reads one unsigned number from a sysfs file; -1 when it cannot. */
static long long read_sysfs_num(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    long long v;
    int ok = fscanf(f, "%lld", &v) == 1;
    fclose(f);
    return ok ? v : -1;
}

/* True when /dev/hugepages is hugetlbfs with 2 MiB pages and at least
 * `bytes` of them free and unreserved (bytes 0: at least one). Only a
 * first guess: creation still falls back when the mapping fails. */
static bool hugetlb_fits(uint64_t bytes)
{
    bs_fs kind;
    uint64_t bsize = 0;
    if (fs_kind(BS_DIR_HUGETLB, &kind, &bsize) != 0 || kind != FS_HUGETLB ||
        bsize != LB_ALIGN_BLOCK || bytes % LB_ALIGN_BLOCK != 0)
        return false;
    long long free_p = read_sysfs_num("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    long long resv_p = read_sysfs_num("/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages");
    if (free_p < 0)
        return true; /* cannot tell: try */
    long long avail = free_p - (resv_p > 0 ? resv_p : 0);
    long long need = bytes == 0 ? 1 : (long long)(bytes / LB_ALIGN_BLOCK);
    return avail >= need;
}

/* The bracketed choice of a sysfs selector like "always [never] deny". */
static bool sysfs_selected(const char *path, char *out, size_t len)
{
    char line[256];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    if (got == NULL)
        return false;
    char *a = strchr(line, '['), *b = a != NULL ? strchr(a, ']') : NULL;
    if (b == NULL)
        return false;
    snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
    return true;
}

/* The huge= option of the tmpfs mount holding dir ("never" when absent):
 * the mount whose mount point is the longest prefix of dir's real path. */
static void tmpfs_huge_option(const char *dir, char *out, size_t len)
{
    char real[PATH_MAX], line[4096];
    snprintf(out, len, "never");
    if (realpath(dir, real) == NULL)
        return;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return;
    size_t best = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char mnt[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            continue;
        size_t ml = strlen(mnt);
        bool prefix = strncmp(real, mnt, ml) == 0 &&
                      (real[ml] == '\0' || real[ml] == '/' || (ml == 1 && mnt[0] == '/'));
        const char *sep = strstr(line, " - ");
        if (!prefix || ml < best || sep == NULL)
            continue;
        best = ml;
        char fstype[64], super[1024];
        snprintf(out, len, "never");
        if (sscanf(sep + 3, "%63s %*s %1023s", fstype, super) != 2)
            continue;
        const char *h = strstr(super, "huge=");
        if (h != NULL) {
            size_t hl = strcspn(h + 5, ",\n");
            snprintf(out, len, "%.*s", (int)hl, h + 5);
        }
    }
    fclose(f);
}

/* Whether a tmpfs file in dir gets transparent huge pages: shmem_enabled
 * "force" gives them on every mount and "deny" on none; otherwise the mount's
 * huge= option decides (always, within_size; advise when the mapping was
 * advised MADV_HUGEPAGE). shmem_enabled's other choices govern only the
 * kernel's internal mount (SysV shm, memfd), not /dev/shm. */
static bool tmpfs_thp(const char *dir, bool advised)
{
    char sel[32], opt[32];
    if (sysfs_selected("/sys/kernel/mm/transparent_hugepage/shmem_enabled", sel, sizeof sel)) {
        if (strcmp(sel, "force") == 0)
            return true;
        if (strcmp(sel, "deny") == 0)
            return false;
    } else {
        return false; /* no THP support in this kernel */
    }
    tmpfs_huge_option(dir, opt, sizeof opt);
    return strcmp(opt, "always") == 0 || strcmp(opt, "within_size") == 0 ||
           (advised && strcmp(opt, "advise") == 0);
}

static int check_ids(const char *what, const char *run_id, int shard, int block, rt_err *err)
{
    int rc = bs_run_id_check(run_id, err);
    if (rc != 0)
        return err_prefix(err, rc, "%s", what);
    if (shard < 0 || block < 0)
        return err_set(err, -EINVAL, "%s: shard %d, block %d: both must be >= 0", what, shard,
                       block);
    return 0;
}

/* The path of an existing object for (run_id, shard, block) in the search
 * order: 0, -ENOENT when none, -ENAMETOOLONG. */
static int find_existing(char *buf, size_t len, const char *run_id, int shard, int block)
{
    const char *dirs[BS_MAX_DIRS];
    int nd = search_dirs(dirs);
    for (int i = 0; i < nd; i++) {
        char p[BS_NAME_LEN];
        struct stat st;
        if (fmt_path(p, sizeof p, dirs[i], run_id, shard, block) != 0)
            continue;
        if (lstat(p, &st) == 0) {
            if (strlen(p) >= len)
                return -ENAMETOOLONG;
            memcpy(buf, p, strlen(p) + 1);
            return 0;
        }
    }
    return -ENOENT;
}

int bs_path(char *buf, size_t len, const char *dir, const char *run_id, int shard, int block)
{
    if (bs_run_id_check(run_id, NULL) != 0 || shard < 0 || block < 0)
        return -EINVAL;
    if (dir == NULL) {
        int rc = find_existing(buf, len, run_id, shard, block);
        if (rc != -ENOENT)
            return rc;
        dir = env_dir();
        if (dir == NULL)
            dir = hugetlb_fits(0) ? BS_DIR_HUGETLB : BS_DIR_SHM;
    }
    return fmt_path(buf, len, dir, run_id, shard, block);
}

bool bs_block_exists(const char *run_id, int shard, int block)
{
    char p[BS_NAME_LEN];
    if (check_ids("layer block", run_id, shard, block, NULL) != 0)
        return false;
    return find_existing(p, sizeof p, run_id, shard, block) == 0;
}

int bs_block_unlink(const char *run_id, int shard, int block, rt_err *err)
{
    int rc = check_ids("removing layer block", run_id, shard, block, err);
    if (rc != 0)
        return rc;
    const char *dirs[BS_MAX_DIRS];
    int nd = search_dirs(dirs), removed = 0;
    for (int i = 0; i < nd; i++) {
        char p[BS_NAME_LEN];
        if (fmt_path(p, sizeof p, dirs[i], run_id, shard, block) != 0)
            return err_set(err, -ENAMETOOLONG, "layer block path under %s is longer than %d bytes",
                           dirs[i], BS_NAME_LEN - 1);
        if (unlink(p) == 0)
            removed++;
        else if (errno != ENOENT)
            return err_set(err, -errno, "removing layer block %s: %s", p, strerror(errno));
    }
    char where[PATH_MAX];
    if (removed == 0)
        return err_set(err, -ENOENT, "no layer block ramtrain.%s.%d.%d to remove (looked in %s)",
                       run_id, shard, block, searched(where, sizeof where));
    return 0;
}

const char *bs_pages_name(bs_pages p)
{
    switch (p) {
    case BS_PAGES_SMALL:
        return "4 KiB pages";
    case BS_PAGES_THP:
        return "transparent huge pages";
    case BS_PAGES_HUGETLB:
        return "hugetlbfs 2 MiB pages";
    }
    return "unknown pages";
}

void bs_block_close(bs_block *b)
{
    if (b == NULL)
        return;
    if (b->base != NULL && b->map_bytes > 0)
        munmap(b->base, b->map_bytes);
    memset(b, 0, sizeof *b);
}

/* The pages a mapping of an object in dir gets. On tmpfs, advise asks for
 * transparent huge pages first (advice only: with THP off the kernel ignores
 * it, and so do we). */
static bs_pages map_pages(bs_fs kind, const char *dir, void *base, uint64_t bytes, bool advise)
{
    if (kind == FS_HUGETLB)
        return BS_PAGES_HUGETLB;
    if (kind != FS_TMPFS)
        return BS_PAGES_SMALL;
    if (advise)
        (void)madvise(base, bytes, MADV_HUGEPAGE);
    return tmpfs_thp(dir, advise) ? BS_PAGES_THP : BS_PAGES_SMALL;
}

/* Hands the mapping base[bytes] of the object at path to the caller. */
static void fill_out(bs_block *out, void *base, uint64_t bytes, bs_pages pages, const char *path)
{
    *out = (bs_block){.hdr = base, .base = base, .map_bytes = bytes, .pages = pages};
    memcpy(out->path, path, strlen(path) + 1);
}

/* ---- create ------------------------------------------------------------------------ */

/* Allocates every page of the mapping, after placement: MADV_POPULATE_WRITE
 * (Linux 5.14) faults them in through the mapping, so they follow its memory
 * policy, and fails with an errno where a touch would raise SIGBUS. Older
 * kernels: fallocate on tmpfs (which follows the object's shared policy);
 * on hugetlbfs the mapping's reservation already guarantees the pages. */
static int populate(void *base, uint64_t bytes, int fd, bs_fs kind)
{
    if (madvise(base, bytes, MADV_POPULATE_WRITE) == 0)
        return 0;
    /* EFAULT: a fault that would have been SIGBUS: no page to be had. */
    if (errno == EFAULT)
        return kind == FS_HUGETLB ? -ENOMEM : -ENOSPC;
    if (errno != EINVAL)
        return -errno;
    if (kind == FS_HUGETLB)
        return 0;
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL)
        return 0;
    return -rc;
}

/* Creates the object under dir. *fallback is set when dir is hugetlbfs and
 * it ran short of huge pages: the caller may try tmpfs instead. */
static int create_in(const char *dir, const char *run_id, int shard, int n_blocks,
                     const lb_layout *l, bool spilled, bool try_huge, topo *t, const char *policy,
                     bs_block *out, bool *fallback, rt_err *err)
{
    int rc = 0, fd = -1;
    bool created = false;
    void *base = MAP_FAILED;
    uint64_t bytes = spilled ? l->resident_bytes : l->total_bytes;
    char path[BS_NAME_LEN];
    bs_fs kind = FS_OTHER;
    uint64_t bsize = 0;

    *fallback = false;
    if (fmt_path(path, sizeof path, dir, run_id, shard, l->index) != 0)
        return err_set(err, -ENAMETOOLONG, "layer block path under %s is longer than %d bytes",
                       dir, BS_NAME_LEN - 1);
    rc = fs_kind(dir, &kind, &bsize);
    if (rc != 0)
        return err_set(err, rc, "layer block %s: directory %s: %s", path, dir, strerror(-rc));
    if (kind == FS_HUGETLB && bytes % bsize != 0)
        return err_set(err, -EINVAL,
                       "layer block %s: %s is hugetlbfs with %llu KiB pages; blocks are %.1f MiB, "
                       "a multiple of 2 MiB pages only (mount it with pagesize=2M)",
                       path, dir, (unsigned long long)(bsize / 1024), bytes / MIB);

    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        if (rc == -EEXIST)
            err_set(err, rc, "layer block %s already exists: attach to it, or %s", path,
                    CLEAN_HINT);
        else
            err_set(err, rc, "creating layer block %s: %s", path, strerror(-rc));
        goto cleanup;
    }
    created = true;
    /* The umask may have taken bits off 0600; the mode is part of the contract. */
    if (fchmod(fd, 0600) != 0) {
        rc = err_set(err, -errno, "layer block %s: chmod 0600: %s", path, strerror(errno));
        goto cleanup;
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        rc = -errno;
        *fallback = kind == FS_HUGETLB;
        err_set(err, rc, "layer block %s: sizing to %.1f MiB: %s", path, bytes / MIB,
                strerror(-rc));
        goto cleanup;
    }
    base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = -errno;
        *fallback = kind == FS_HUGETLB; /* ENOMEM: too few huge pages to reserve */
        err_set(err, rc, "layer block %s: mapping %.1f MiB: %s", path, bytes / MIB,
                strerror(-rc));
        goto cleanup;
    }

    bs_pages pages = map_pages(kind, dir, base, bytes, try_huge);

    if (t != NULL) {
        rc = topo_place(t, base, bytes, policy, err);
        if (rc != 0) {
            err_prefix(err, rc, "layer block %s", path);
            goto cleanup;
        }
    }
    rc = populate(base, bytes, fd, kind);
    if (rc != 0) {
        *fallback = kind == FS_HUGETLB;
        if (kind == FS_HUGETLB)
            err_set(err, rc, "layer block %s: %.1f MiB of huge pages not available: %s", path,
                    bytes / MIB, strerror(-rc));
        else
            err_set(err, rc,
                    "layer block %s: allocating %.1f MiB failed (%s): %s is full or memory "
                    "is short; see `df %s` and the size= option of its mount",
                    path, bytes / MIB, strerror(-rc), dir, dir);
        goto cleanup;
    }

    /* The data is zero; the header's fields follow, the magic last. */
    bs_header *h = base;
    h->format_version = BS_FORMAT_VERSION;
    h->header_bytes = (uint32_t)sizeof(bs_header);
    h->layout = *l;
    h->layout_hash = lb_layout_hash(l);
    memset(h->run_id, 0, sizeof h->run_id);
    memcpy(h->run_id, run_id, strlen(run_id));
    h->shard = (uint32_t)shard;
    h->block = (uint32_t)l->index;
    h->n_blocks = (uint32_t)n_blocks;
    h->flags = spilled ? BS_FLAG_SPILLED : 0;
    h->map_bytes = bytes;
    atomic_store_explicit(&h->version, 0, memory_order_relaxed);
    atomic_store_explicit(&h->steps_committed, 0, memory_order_relaxed);
    atomic_store_explicit(&h->data_cursor, 0, memory_order_relaxed);
    atomic_store_explicit(&h->op, BS_OP_IDLE, memory_order_relaxed);
    atomic_store_explicit(&h->accum_step, 0, memory_order_relaxed);
    atomic_store_explicit(&h->accum_count, 0, memory_order_relaxed);
    for (int i = 0; i < BS_MAX_MICRO / 64; i++)
        atomic_store_explicit(&h->accum_micro[i], 0, memory_order_relaxed);
    /* Release: whoever acquires the magic (another process attaching) sees
     * every header byte above. */
    __atomic_store_n(&h->magic, BS_MAGIC, __ATOMIC_RELEASE);

    fill_out(out, base, bytes, pages, path);
    base = MAP_FAILED;
    created = false;
cleanup:
    if (base != MAP_FAILED)
        munmap(base, bytes);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(path);
    return rc;
}

static int check_layout_arg(const char *what, int n_blocks, const lb_layout *l, rt_err *err)
{
    if (l == NULL)
        return err_set(err, -EINVAL, "%s: no layout given", what);
    if (n_blocks < 1 || l->index < 0 || l->index >= n_blocks)
        return err_set(err, -EINVAL, "%s: block index %d outside a model of %d blocks", what,
                       l->index, n_blocks);
    if (l->total_bytes == 0 || l->total_bytes % LB_ALIGN_BLOCK != 0 ||
        l->resident_bytes == 0 || l->resident_bytes % LB_ALIGN_BLOCK != 0 ||
        l->resident_bytes > l->total_bytes)
        return err_set(err, -EINVAL,
                       "%s: layout of block %d is not finished (total %llu, resident %llu "
                       "bytes; call lb_layout_finish)",
                       what, l->index, (unsigned long long)l->total_bytes,
                       (unsigned long long)l->resident_bytes);
    return 0;
}

int bs_block_create_placed(const char *run_id, int shard, int n_blocks, const lb_layout *l,
                           bool spilled, bool try_huge, topo *t, const char *policy,
                           bs_block *out, rt_err *err)
{
    int rc;
    if (out == NULL)
        return err_set(err, -EINVAL, "creating layer block: no bs_block to fill");
    memset(out, 0, sizeof *out);
    rc = check_layout_arg("creating layer block", n_blocks, l, err);
    if (rc != 0)
        return rc;
    rc = check_ids("creating layer block", run_id, shard, l->index, err);
    if (rc != 0)
        return rc;

    char existing[BS_NAME_LEN];
    if (find_existing(existing, sizeof existing, run_id, shard, l->index) == 0)
        return err_set(err, -EEXIST, "layer block %s already exists: attach to it, or %s",
                       existing, CLEAN_HINT);

    uint64_t bytes = spilled ? l->resident_bytes : l->total_bytes;
    const char *dir = env_dir();
    bool fallback = false;
    if (dir != NULL)
        return create_in(dir, run_id, shard, n_blocks, l, spilled, try_huge, t, policy, out,
                         &fallback, err);
    if (try_huge && hugetlb_fits(bytes)) {
        rc = create_in(BS_DIR_HUGETLB, run_id, shard, n_blocks, l, spilled, try_huge, t, policy,
                       out, &fallback, err);
        if (rc == 0 || !fallback)
            return rc;
    }
    rc = create_in(BS_DIR_SHM, run_id, shard, n_blocks, l, spilled, try_huge, t, policy, out,
                   &fallback, err);
    if (rc == 0 && err != NULL)
        err->msg[0] = '\0'; /* the huge-page attempt's message: nothing failed */
    return rc;
}

int bs_block_create(const char *run_id, int shard, int n_blocks, const lb_layout *l,
                    bool spilled, bool try_huge, bs_block *out, rt_err *err)
{
    return bs_block_create_placed(run_id, shard, n_blocks, l, spilled, try_huge, NULL, NULL, out,
                                  err);
}

/* ---- attach -------------------------------------------------------------------------- */

static void shape_str(char *out, size_t len, const lb_tensor *t)
{
    size_t pos = 0;
    int nd = t->ndim < 0 ? 0 : t->ndim > LB_MAX_DIMS ? LB_MAX_DIMS : t->ndim;
    pos += (size_t)snprintf(out + pos, len - pos, "[");
    for (int d = 0; d < nd && pos < len; d++)
        pos += (size_t)snprintf(out + pos, len - pos, "%s%lld", d ? ", " : "",
                                (long long)t->shape[d]);
    if (pos < len)
        snprintf(out + pos, len - pos, "]");
}

static bool same_shape(const lb_tensor *a, const lb_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim && d < LB_MAX_DIMS; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

/* Says where the block's layout `have` first differs from the config's `want`. */
static void layout_diff(const lb_layout *have, const lb_layout *want, char *out, size_t len)
{
    char a[LB_NAME_LEN], b[LB_NAME_LEN], sa[96], sb[96];
    if (have->n_tensors < 0 || have->n_tensors > LB_MAX_TENSORS) {
        snprintf(out, len, "the block's tensor table claims %d tensors", have->n_tensors);
        return;
    }
    if (have->compute != want->compute) {
        snprintf(out, len, "the compute dtype is %s in the block but %s in the config",
                 dt_name(have->compute), dt_name(want->compute));
        return;
    }
    if (have->n_gslots != want->n_gslots) {
        snprintf(out, len, "the block has %d gradient slots but the config %d", have->n_gslots,
                 want->n_gslots);
        return;
    }
    int n = have->n_tensors < want->n_tensors ? have->n_tensors : want->n_tensors;
    for (int i = 0; i < n; i++) {
        const lb_tensor *h = &have->t[i], *w = &want->t[i];
        printable(a, sizeof a, h->name, LB_NAME_LEN);
        printable(b, sizeof b, w->name, LB_NAME_LEN);
        if (strcmp(a, b) != 0) {
            snprintf(out, len, "tensor %d is %s in the block but %s in the config", i, a, b);
            return;
        }
        if (!same_shape(h, w)) {
            shape_str(sa, sizeof sa, h);
            shape_str(sb, sizeof sb, w);
            snprintf(out, len, "tensor %s has shape %s in the block but %s in the config", b, sa,
                     sb);
            return;
        }
        if (h->offset != w->offset || h->offset_f32 != w->offset_f32 || h->numel != w->numel) {
            snprintf(out, len,
                     "tensor %s is placed at offset %llu (fp32 %llu) in the block but %llu "
                     "(fp32 %llu) in the config",
                     b, (unsigned long long)h->offset, (unsigned long long)h->offset_f32,
                     (unsigned long long)w->offset, (unsigned long long)w->offset_f32);
            return;
        }
    }
    if (have->n_tensors != want->n_tensors) {
        bool more = have->n_tensors > want->n_tensors;
        const lb_tensor *x = more ? &have->t[n] : &want->t[n];
        printable(a, sizeof a, x->name, LB_NAME_LEN);
        snprintf(out, len, "the block has %d tensors but the config %d (%s only in the %s)",
                 have->n_tensors, want->n_tensors, a, more ? "block" : "config");
        return;
    }
    if (have->index != want->index) {
        snprintf(out, len, "the tensor table is for block %d, the config's for block %d",
                 have->index, want->index);
        return;
    }
    if (have->w_bytes == want->w_bytes && have->f32_bytes == want->f32_bytes &&
        memcmp(have->sec_off, want->sec_off, sizeof have->sec_off) == 0 &&
        have->opt_off == want->opt_off && have->opt_bytes == want->opt_bytes &&
        have->resident_bytes == want->resident_bytes && have->total_bytes == want->total_bytes) {
        snprintf(out, len, "the block's table agrees with the config's field by field");
        return;
    }
    snprintf(out, len,
             "the sections are placed differently (block %llu bytes, W %llu, fp32 %llu in the "
             "block; %llu, %llu, %llu in the config)",
             (unsigned long long)have->total_bytes, (unsigned long long)have->w_bytes,
             (unsigned long long)have->f32_bytes, (unsigned long long)want->total_bytes,
             (unsigned long long)want->w_bytes, (unsigned long long)want->f32_bytes);
}

/* Checks the mapped header h of size bytes against what the caller expects. */
static int validate(const char *path, const bs_header *h, uint64_t size, const char *run_id,
                    int shard, int n_blocks, const lb_layout *expect, unsigned flags, rt_err *err)
{
    if (size < sizeof(bs_header))
        return err_set(err, -EBADMSG,
                       "layer block %s is %llu bytes, smaller than a block header (%zu bytes): "
                       "not a ramtrain layer block, or truncated; %s",
                       path, (unsigned long long)size, sizeof(bs_header), CLEAN_HINT);
    uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    if (magic == 0)
        return err_set(err, -EBADMSG,
                       "layer block %s has magic 0: its creation was interrupted before the "
                       "header was complete; %s",
                       path, CLEAN_HINT);
    if (magic != BS_MAGIC)
        return err_set(err, -EBADMSG,
                       "layer block %s has magic 0x%016llx, expected 0x%016llx: not a ramtrain "
                       "layer block; %s",
                       path, (unsigned long long)magic, (unsigned long long)BS_MAGIC, CLEAN_HINT);
    if (h->format_version != BS_FORMAT_VERSION)
        return err_set(err, -EBADMSG,
                       "layer block %s has format version %u, this ramtrain reads version %u: "
                       "written by another ramtrain release; use that release, or %s",
                       path, h->format_version, BS_FORMAT_VERSION, CLEAN_HINT);
    if (h->header_bytes != sizeof(bs_header))
        return err_set(err, -EBADMSG,
                       "layer block %s has a %u-byte header, this ramtrain's is %zu bytes: "
                       "written by another build; %s",
                       path, h->header_bytes, sizeof(bs_header), CLEAN_HINT);
    char got[BS_RUN_ID_LEN + 1];
    printable(got, sizeof got, h->run_id, BS_RUN_ID_LEN);
    if (strnlen(h->run_id, BS_RUN_ID_LEN) == BS_RUN_ID_LEN || strcmp(h->run_id, run_id) != 0)
        return err_set(err, -ESTALE,
                       "layer block %s belongs to run \"%s\", not \"%s\": it was renamed or "
                       "copied; %s",
                       path, got, run_id, CLEAN_HINT);
    if (h->shard != (uint32_t)shard)
        return err_set(err, -ESTALE,
                       "layer block %s belongs to shard %u, not %d: it was renamed or copied; %s",
                       path, h->shard, shard, CLEAN_HINT);
    if (h->block != (uint32_t)expect->index)
        return err_set(err, -ESTALE,
                       "layer block %s holds block %u, not %d: it was renamed or copied; %s",
                       path, h->block, expect->index, CLEAN_HINT);
    if (h->n_blocks != (uint32_t)n_blocks)
        return err_set(err, -ESTALE,
                       "layer block %s is one of %u blocks, but the config makes %d: the model "
                       "config changed since the run started; use the run's config, or %s",
                       path, h->n_blocks, n_blocks, CLEAN_HINT);

    char diff[512];
    uint64_t stored = lb_layout_hash(&h->layout), want = lb_layout_hash(expect);
    if (stored != h->layout_hash) {
        layout_diff(&h->layout, expect, diff, sizeof diff);
        return err_set(err, -EBADMSG,
                       "layer block %s: its tensor table does not match its layout hash "
                       "(0x%016llx stored, 0x%016llx computed): the header is damaged "
                       "(compared with the config, %s); restore from a checkpoint",
                       path, (unsigned long long)h->layout_hash, (unsigned long long)stored,
                       diff);
    }
    if (h->layout_hash != want) {
        layout_diff(&h->layout, expect, diff, sizeof diff);
        return err_set(err, -ESTALE,
                       "layer block %s has layout hash 0x%016llx, the config gives 0x%016llx: "
                       "%s; use the config the run started with, or %s",
                       path, (unsigned long long)h->layout_hash, (unsigned long long)want, diff,
                       CLEAN_HINT);
    }

    if ((h->flags & ~(uint32_t)BS_FLAG_SPILLED) != 0)
        return err_set(err, -EBADMSG, "layer block %s has flags 0x%x: unknown bits 0x%x; %s", path,
                       h->flags, h->flags & ~(uint32_t)BS_FLAG_SPILLED, CLEAN_HINT);
    bool spilled = (h->flags & BS_FLAG_SPILLED) != 0;
    uint64_t need = spilled ? expect->resident_bytes : expect->total_bytes;
    if (h->map_bytes != size || size != need)
        return err_set(err, -EBADMSG,
                       "layer block %s is %llu bytes, its header says %llu, and a %s block of "
                       "this layout is %llu bytes (%s): the object was truncated or resized; "
                       "restore from a checkpoint, or %s",
                       path, (unsigned long long)size, (unsigned long long)h->map_bytes,
                       spilled ? "spilled" : "resident", (unsigned long long)need,
                       spilled ? "resident_bytes" : "total_bytes", CLEAN_HINT);

    uint32_t op = atomic_load_explicit(&h->op, memory_order_acquire);
    if ((op == BS_OP_ACCUM || op == BS_OP_STEP) && (flags & BS_ATTACH_INTERRUPTED))
        return 0;
    if (op == BS_OP_ACCUM)
        return err_set(err, -EUCLEAN,
                       "layer block %s was interrupted in the middle of accumulating a "
                       "micro-batch of step %llu (%u micro-batches already counted): its gradient "
                       "accumulator is half-updated; restore from a checkpoint",
                       path, (unsigned long long)atomic_load(&h->accum_step),
                       atomic_load(&h->accum_count));
    if (op == BS_OP_STEP)
        return err_set(err, -EUCLEAN,
                       "layer block %s was interrupted in the middle of an optimizer step "
                       "(weights at version %llu): its weights and optimizer state are "
                       "half-updated; restore from a checkpoint",
                       path, (unsigned long long)atomic_load(&h->version));
    if (op != BS_OP_IDLE)
        return err_set(err, -EBADMSG,
                       "layer block %s has operation %u in progress, which is none of idle (0), "
                       "accumulate (1), step (2): the header is damaged; restore from a "
                       "checkpoint",
                       path, op);
    return 0;
}

int bs_block_attach(const char *run_id, int shard, int n_blocks, const lb_layout *expect,
                    bs_block *out, rt_err *err)
{
    return bs_block_attach_flags(run_id, shard, n_blocks, expect, 0, out, err);
}

int bs_block_attach_flags(const char *run_id, int shard, int n_blocks, const lb_layout *expect,
                          unsigned flags, bs_block *out, rt_err *err)
{
    int rc, fd = -1;
    void *base = MAP_FAILED;
    uint64_t size = 0;
    char path[BS_NAME_LEN];

    if (out == NULL)
        return err_set(err, -EINVAL, "attaching layer block: no bs_block to fill");
    memset(out, 0, sizeof *out);
    rc = check_layout_arg("attaching layer block", n_blocks, expect, err);
    if (rc != 0)
        return rc;
    rc = check_ids("attaching layer block", run_id, shard, expect->index, err);
    if (rc != 0)
        return rc;

    const char *dirs[BS_MAX_DIRS];
    int nd = search_dirs(dirs), at = -1;
    for (int i = 0; i < nd && fd < 0; i++) {
        if (fmt_path(path, sizeof path, dirs[i], run_id, shard, expect->index) != 0)
            continue;
        fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            at = i;
        } else if (errno != ENOENT) {
            rc = -errno;
            if (rc == -ELOOP)
                err_set(err, -EPERM, "layer block %s is a symbolic link: refusing it; %s", path,
                        CLEAN_HINT);
            else
                err_set(err, rc, "opening layer block %s: %s", path, strerror(-rc));
            return rc == -ELOOP ? -EPERM : rc;
        }
    }
    if (fd < 0) {
        char where[PATH_MAX];
        return err_set(err, -ENOENT,
                       "no layer block ramtrain.%s.%d.%d (looked in %s): the run was never "
                       "started on this host, or it was cleaned",
                       run_id, shard, expect->index, searched(where, sizeof where));
    }

    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = err_set(err, -errno, "layer block %s: fstat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = err_set(err, -EPERM, "layer block %s is not a regular file; %s", path, CLEAN_HINT);
        goto cleanup;
    }
    if (st.st_uid != geteuid()) {
        rc = err_set(err, -EPERM,
                     "layer block %s is owned by uid %u, not this user (uid %u): it is not this "
                     "run's; remove it as its owner, or run with a fresh run id",
                     path, (unsigned)st.st_uid, (unsigned)geteuid());
        goto cleanup;
    }
    size = (uint64_t)st.st_size;
    if (size < sizeof(bs_header)) {
        rc = validate(path, NULL, size, run_id, shard, n_blocks, expect, flags, err);
        goto cleanup;
    }
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = err_set(err, -errno, "layer block %s: mapping %.1f MiB: %s", path, size / MIB,
                     strerror(errno));
        goto cleanup;
    }
    rc = validate(path, base, size, run_id, shard, n_blocks, expect, flags, err);
    if (rc != 0)
        goto cleanup;

    bs_fs kind;
    uint64_t bsize;
    (void)fs_kind(dirs[at], &kind, &bsize); /* FS_OTHER when it cannot tell */
    /* The pages are there already; the advice is for this mapping's page
     * tables (PMD mappings where the pages are huge). */
    fill_out(out, base, size, map_pages(kind, dirs[at], base, size, true), path);
    base = MAP_FAILED;
cleanup:
    if (base != MAP_FAILED)
        munmap(base, size);
    if (fd >= 0)
        close(fd);
    return rc;
}

/*
 * checkpoint: step directories written atomically, safetensors through the
 * I/O engine, the trainer state as JSON (see checkpoint.h for the layout).
 *
 * Writing a safetensors file: the header JSON is built first (every tensor's
 * offsets follow from the shapes), padded with spaces so 8 + header is a
 * multiple of IO_ALIGN. The file is then one byte stream, header then tensors
 * back to back, cut into staging-buffer-sized writes at offsets k * len. The
 * buffers are used round-robin: buffer k is gathered (memcpy, or the fill
 * callback) while buffers k-1, k-2, ... are in flight, and is reaped before
 * it is reused. Only the final write can be short; it is zero-padded to
 * IO_ALIGN and the file truncated to its size afterwards. A fill callback is
 * only ever asked for whole elements: an element that straddles two staging
 * buffers is produced into a 16-byte carry and split by us.
 *
 * Commit protocol: fsync every file of step-N.tmp (files written by others,
 * e.g. model_config_save, are not fsynced by their writers), write DONE with
 * each file's size, fsync DONE and the directory, rename to step-N, fsync
 * root. Replacing an existing step-N uses renameat2(RENAME_EXCHANGE), so
 * there is never a moment without a complete step-N; where the filesystem
 * lacks it, the old one is first renamed aside to step-N.old.tmp.
 *
 * Removal (prune, abort, a replaced step) renames a complete directory to a
 * *.tmp name before deleting its files, so a crash mid-delete never leaves a
 * step-N that looks complete but is missing files.
 *
 * Threads: no shared state; one writer per root (the caller's promise).
 *
 * Rejected: nftw for recursive removal (its callback has no context pointer,
 * so errors could not name what failed without globals), and JSON numbers
 * for uint64 fields (readers that parse numbers as doubles lose bits above
 * 2^53: a config hash or RNG word would not survive a round trip).
 */
#define _GNU_SOURCE /* renameat2, RENAME_EXCHANGE */
#include "storage/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_JSON_MAX (16u << 20) /* bytes; a larger DONE or state file is corrupt */
#define CKPT_STATE_VERSION 1

static const char *ckpt_required[] = {CKPT_CONFIG_FILE, CKPT_MODEL_FILE, CKPT_OPTIM_FILE, CKPT_STATE_FILE};

/* ---- small helpers ------------------------------------------------------ */

static int ckpt_join(char *buf, size_t len, const char *dir, const char *name, rt_err *err)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len)
        return err_set(err, -ENAMETOOLONG, "%s/%s: path longer than %zu bytes", dir, name, len - 1);
    return 0;
}

static uint64_t ckpt_round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static const char *ckpt_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "value";
}

static int ckpt_fsync_dir(const char *dir, rt_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the directory to fsync it: %s", dir, strerror(e));
    }
    int rc = 0;
    if (fsync(fd) < 0) {
        int e = errno;
        rc = err_set(err, -e, "%s: fsync of the directory: %s", dir, strerror(e));
    }
    close(fd);
    return rc;
}

/* mkdir -p path (mode 0755 less umask). */
static int ckpt_mkdirs(const char *path, rt_err *err)
{
    char buf[CKPT_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return err_set(err, -ENAMETOOLONG, "checkpoint directory \"%s\": expected a path of 1 to %zu bytes",
                       path, sizeof buf - 1);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            return err_set(err, -e, "%s: cannot create directory %s: %s", path, buf, strerror(e));
        }
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat sb;
    if (stat(path, &sb) < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISDIR(sb.st_mode))
        return err_set(err, -ENOTDIR, "%s: not a directory (expected the checkpoint directory)", path);
    return 0;
}

/* Removes path and, for a directory, everything under it. Symlinks are
 * removed, never followed. A missing path is fine. */
static int ckpt_rm_tree(const char *path, rt_err *err)
{
    struct stat sb;
    if (lstat(path, &sb) < 0) {
        int e = errno;
        return e == ENOENT ? 0 : err_set(err, -e, "%s: cannot stat to remove it: %s", path, strerror(e));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT) {
            int e = errno;
            return err_set(err, -e, "%s: cannot remove: %s", path, strerror(e));
        }
        return 0;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the directory to remove it: %s", path, strerror(e));
    }
    int rc = 0;
    char child[CKPT_PATH_MAX];
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = ckpt_join(child, sizeof child, path, de->d_name, err);
        if (rc == 0)
            rc = ckpt_rm_tree(child, err);
    }
    closedir(d);
    if (rc == 0 && rmdir(path) < 0 && errno != ENOENT) {
        int e = errno;
        rc = err_set(err, -e, "%s: cannot remove the directory: %s", path, strerror(e));
    }
    return rc;
}

/* 1 when name is exactly "step-<decimal>" followed by suffix; *step gets the
 * number. Numbers past 64 bits do not match. */
static int ckpt_parse_step(const char *name, const char *suffix, uint64_t *step)
{
    if (strncmp(name, "step-", 5) != 0)
        return 0;
    const char *p = name + 5;
    if (*p < '0' || *p > '9')
        return 0;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (strcmp(p, suffix) != 0)
        return 0;
    *step = v;
    return 1;
}

/* 1 for the name of a directory a writer or a removal left behind. */
static int ckpt_is_tmp_name(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, "step-", 5) == 0 && n > 9 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Strict decimal: digits only, at most 64 bits. */
static int ckpt_parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A uint64 from a decimal string or a non-negative JSON integer; what names
 * the key in errors ("step", "rng[2]"). */
static int ckpt_json_u64(const char *path, const char *what, const json_t *v, uint64_t *out, rt_err *err)
{
    if (v == NULL)
        return err_set(err, -EINVAL, "%s: key \"%s\" is missing (expected a decimal string of at most 64 bits)",
                       path, what);
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return err_set(err, -EINVAL, "%s: key \"%s\" is %lld, expected a non-negative number",
                           path, what, (long long)x);
        *out = (uint64_t)x;
        return 0;
    }
    if (!json_is_string(v))
        return err_set(err, -EINVAL, "%s: key \"%s\" is a JSON %s, expected a decimal string of at most 64 bits",
                       path, what, ckpt_json_kind(v));
    int rc = ckpt_parse_u64(json_string_value(v), out);
    if (rc < 0)
        return err_set(err, -EINVAL, "%s: key \"%s\" is \"%s\", expected a decimal string %s",
                       path, what, json_string_value(v),
                       rc == -ERANGE ? "of at most 64 bits (18446744073709551615)" : "of digits only");
    return 0;
}

/* Reads path (at most CKPT_JSON_MAX bytes) as a JSON object into *out,
 * which the caller json_decrefs. */
static int ckpt_load_json(const char *path, json_t **out, rt_err *err)
{
    int rc = 0;
    char *text = NULL;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return err_set(err, -e, "%s: missing", path);
        return err_set(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        rc = err_set(err, -e, "%s: cannot stat: %s", path, strerror(e));
        goto cleanup;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > CKPT_JSON_MAX) {
        rc = err_set(err, -EINVAL, "%s: expected a JSON file of at most %u bytes", path, CKPT_JSON_MAX);
        goto cleanup;
    }
    size_t len = (size_t)sb.st_size, got = 0;
    text = malloc(len + 1);
    if (text == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    while (got < len) {
        ssize_t r = read(fd, text + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            rc = err_set(err, -e, "%s: read: %s", path, r < 0 ? strerror(e) : "file shrank while being read");
            goto cleanup;
        }
        got += (size_t)r;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = err_set(err, -EINVAL, "%s: not valid JSON: %s (line %d, column %d)",
                     path, jerr.text, jerr.line, jerr.column);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        rc = err_set(err, -EINVAL, "%s: is a JSON %s, expected an object", path, ckpt_json_kind(root));
        json_decref(root);
        goto cleanup;
    }
    *out = root;

cleanup:
    free(text);
    close(fd);
    return rc;
}

/* Dumps root (indented, sorted keys, a final newline) to path and fsyncs it. */
static int ckpt_dump_json(const char *path, const json_t *root, rt_err *err)
{
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text == NULL)
        return err_set(err, -ENOMEM, "%s: cannot encode JSON (out of memory, or a string that is not UTF-8)",
                       path);
    size_t len = strlen(text);
    char *nl = realloc(text, len + 2);
    if (nl == NULL) {
        free(text);
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    memcpy(nl + len, "\n", 2);
    int rc = ckpt_write_file(path, nl, len + 1, err);
    free(nl);
    return rc;
}

/* ---- safetensors through the I/O engine --------------------------------- */

int ckpt_fill_from_f32(const ckpt_tensor *t, uint64_t off, void *buf, size_t len, rt_err *err)
{
    size_t es = dt_size(t->dtype);
    if (!dt_is_float(t->dtype) || off % es != 0 || len % es != 0 || t->ctx == NULL)
        return err_set(err, -EINVAL,
                       "conversion from fp32 to %s of bytes [%llu, %llu): expected a float dtype, whole elements "
                       "and the fp32 source in ctx",
                       dt_name(t->dtype), (unsigned long long)off, (unsigned long long)(off + len));
    const float *src = t->ctx; /* [numel] fp32 values of the tensor */
    return dt_from_f32(t->dtype, src + off / es, buf, len / es);
}

int ckpt_staging_init(ckpt_staging *s, int n, size_t len, rt_err *err)
{
    memset(s, 0, sizeof *s);
    if (n == 0)
        n = CKPT_STAGING_COUNT;
    if (len == 0)
        len = CKPT_STAGING_BYTES;
    if (n < 1 || n > CKPT_STAGING_MAX)
        return err_set(err, -EINVAL, "checkpoint staging: %d buffers, expected 1 to %d", n, CKPT_STAGING_MAX);
    if (len % IO_ALIGN != 0)
        return err_set(err, -EINVAL, "checkpoint staging: buffers of %zu bytes, expected a multiple of %u",
                       len, IO_ALIGN);
    for (int i = 0; i < n; i++) {
        s->buf[i] = io_alloc(len);
        if (s->buf[i] == NULL) {
            ckpt_staging_free(s);
            return err_set(err, -ENOMEM, "checkpoint staging: out of memory for %d buffers of %zu bytes", n, len);
        }
        s->n = i + 1;
    }
    s->len = len;
    return 0;
}

void ckpt_staging_free(ckpt_staging *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n && i < CKPT_STAGING_MAX; i++)
        free(s->buf[i]);
    memset(s, 0, sizeof *s);
}

static int ckpt_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks every tensor and describes each in ents[n] for the header. */
static int ckpt_check_tensors(const char *path, const ckpt_tensor *t, int n, st_entry *ents, rt_err *err)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *x = &t[i];
        if (x->name == NULL || x->name[0] == '\0' || strcmp(x->name, "__metadata__") == 0)
            return err_set(err, -EINVAL, "%s: tensor %d: name \"%s\", expected a non-empty name other than "
                           "__metadata__", path, i, x->name ? x->name : "(null)");
        if (dt_size(x->dtype) == 0)
            return err_set(err, -EINVAL, "%s: tensor %s: invalid dtype %d", path, x->name, (int)x->dtype);
        if (x->ndim < 0 || x->ndim > ST_MAX_DIMS)
            return err_set(err, -EINVAL, "%s: tensor %s: %d dimensions, expected 0 to %d",
                           path, x->name, x->ndim, ST_MAX_DIMS);
        for (int d = 0; d < x->ndim; d++)
            if (x->shape[d] < 0)
                return err_set(err, -EINVAL, "%s: tensor %s: shape[%d] is %lld, expected a non-negative size",
                               path, x->name, d, (long long)x->shape[d]);
        ents[i] = (st_entry){.name = x->name, .dtype = x->dtype, .ndim = x->ndim, .shape = x->shape};
        if (st_shape_bytes(x->shape, x->ndim, x->dtype, &ents[i].nbytes) < 0 ||
            ents[i].nbytes > (uint64_t)INT64_MAX - total)
            return err_set(err, -EFBIG, "%s: tensor %s: the data section would exceed 2^63 bytes", path, x->name);
        total += ents[i].nbytes;
        if (ents[i].nbytes > 0 && x->data == NULL && x->fill == NULL)
            return err_set(err, -EINVAL, "%s: tensor %s: neither data nor a fill callback for %llu bytes",
                           path, x->name, (unsigned long long)ents[i].nbytes);
    }
    if (n < 2)
        return 0;
    const char **names = malloc((size_t)n * sizeof *names);
    if (names == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++)
        names[i] = t[i].name;
    qsort(names, (size_t)n, sizeof *names, ckpt_str_cmp);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = err_set(err, -EEXIST, "%s: tensor %s: given twice, expected each name once", path, names[i]);
    free(names);
    return rc;
}

static int ckpt_jset(json_t *obj, const char *key, json_t *v)
{
    return v == NULL || json_object_set_new(obj, key, v) < 0 ? -ENOMEM : 0;
}

/* Where the byte stream stands: the header, then tensor after tensor. */
struct ckpt_src {
    const char *path;
    const ckpt_tensor *t;
    const st_entry *ents;    /* [n] t's names, shapes and bytes */
    int n;
    const uint8_t *head;     /* [head_len] */
    size_t head_len;
    int seg;                 /* -1: the header; else the tensor being copied */
    uint64_t off;            /* bytes of seg produced so far */
    uint8_t carry[16];       /* one element split across two staging buffers */
    size_t carry_pos, carry_len;
};

/* Calls t's fill for [off, off + len) and names file and tensor on failure. */
static int ckpt_call_fill(const struct ckpt_src *s, const ckpt_tensor *x, uint64_t off, void *buf, size_t len,
                          rt_err *err)
{
    if (err != NULL)
        err->msg[0] = '\0';
    int rc = x->fill(x, off, buf, len, err);
    if (rc == 0)
        return 0;
    if (rc > 0)
        rc = -EIO;
    if (err != NULL && err->msg[0] == '\0')
        return err_set(err, rc, "%s: tensor %s: fill of bytes [%llu, %llu) failed: %s", s->path, x->name,
                       (unsigned long long)off, (unsigned long long)(off + len), strerror(-rc));
    return err_prefix(err, rc, "%s: tensor %s: bytes [%llu, %llu)", s->path, x->name,
                      (unsigned long long)off, (unsigned long long)(off + len));
}

/* Produces the next want bytes of the stream into dst. */
static int ckpt_gather(struct ckpt_src *s, uint8_t *dst, size_t want, rt_err *err)
{
    size_t got = 0;
    if (s->carry_len > 0) {
        size_t c = s->carry_len < want ? s->carry_len : want;
        memcpy(dst, s->carry + s->carry_pos, c);
        s->carry_pos += c;
        s->carry_len -= c;
        got = c;
    }
    while (got < want) {
        if (s->seg < 0) {
            size_t c = s->head_len - (size_t)s->off;
            if (c > want - got)
                c = want - got;
            memcpy(dst + got, s->head + s->off, c);
            got += c;
            s->off += c;
            if (s->off == s->head_len) {
                s->seg = 0;
                s->off = 0;
            }
            continue;
        }
        if (s->seg >= s->n)
            return err_set(err, -EIO, "%s: internal error: the stream ran out of tensors", s->path);
        const ckpt_tensor *x = &s->t[s->seg];
        uint64_t left = s->ents[s->seg].nbytes - s->off;
        if (left == 0) {
            s->seg++;
            s->off = 0;
            continue;
        }
        size_t c = left < want - got ? (size_t)left : want - got;
        if (x->data != NULL) {
            memcpy(dst + got, (const uint8_t *)x->data + s->off, c);
            got += c;
            s->off += c;
            continue;
        }
        size_t es = dt_size(x->dtype);
        size_t whole = c - c % es;
        if (whole > 0) {
            int rc = ckpt_call_fill(s, x, s->off, dst + got, whole, err);
            if (rc < 0)
                return rc;
            got += whole;
            s->off += whole;
        }
        if (whole < c) {
            /* c < left here: the buffer ends inside this element. */
            size_t part = c - whole;
            int rc = ckpt_call_fill(s, x, s->off, s->carry, es, err);
            if (rc < 0)
                return rc;
            memcpy(dst + got, s->carry, part);
            s->carry_pos = part;
            s->carry_len = es - part;
            got += part;
            s->off += es;
        }
    }
    return 0;
}

struct ckpt_slot {
    uint8_t *buf;   /* [stage len] bytes */
    uint64_t off;   /* file offset of its write in flight */
    size_t len;     /* bytes of that write */
    bool busy;
};

struct ckpt_wr {
    io_engine *e;
    const char *path;
    struct ckpt_slot slot[CKPT_STAGING_MAX];
    int in_flight;
    int rc;         /* the first failed write */
};

/* Reaps at least one completion and frees its slot. err is set for the
 * first failure only, and only when err is not NULL. */
static void ckpt_wr_reap(struct ckpt_wr *w, rt_err *err)
{
    io_done done[CKPT_STAGING_MAX];
    int k = io_reap(w->e, done, CKPT_STAGING_MAX, 1);
    if (k <= 0) {
        /* Nothing came back although writes are in flight: give up on them
         * rather than wait forever on an engine that lost track. */
        if (w->rc == 0)
            w->rc = err_set(err, -EIO, "%s: the I/O engine returned no completion for %d writes in flight",
                            w->path, w->in_flight);
        w->in_flight = 0;
        for (int i = 0; i < CKPT_STAGING_MAX; i++)
            w->slot[i].busy = false;
        return;
    }
    for (int i = 0; i < k; i++) {
        struct ckpt_slot *s = done[i].user;
        s->busy = false;
        w->in_flight--;
        if (done[i].res < 0 && w->rc == 0)
            w->rc = err_set(err, done[i].res, "%s: write of %zu bytes at offset %llu: %s", w->path, s->len,
                            (unsigned long long)s->off, strerror(-done[i].res));
    }
}

int ckpt_write_safetensors(io_engine *e, const ckpt_staging *stage, const char *path,
                           const ckpt_tensor *t, int n, const char *const *meta_kv,
                           uint64_t *bytes, rt_err *err)
{
    int rc = 0, fd = -1;
    bool created = false;
    st_entry *ents = NULL;   /* [n] each tensor as the header describes it */
    uint8_t *head = NULL;    /* [head_len] length + padded header JSON */
    size_t head_len = 0;
    ckpt_staging own = {0};
    struct ckpt_wr w = {.e = e, .path = path};

    if (e == NULL || path == NULL || n < 0 || (n > 0 && t == NULL))
        return err_set(err, -EINVAL, "%s: expected an engine and %d tensors", path ? path : "(null)", n);
    if (io_pending(e) != 0)
        return err_set(err, -EBUSY, "%s: the I/O engine has %d requests in flight; it must be idle", path,
                       io_pending(e));
    ents = calloc((size_t)n + 1, sizeof *ents);
    if (ents == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    rc = ckpt_check_tensors(path, t, n, ents, err);
    if (rc < 0)
        goto cleanup;
    rc = st_header_encode(path, ents, n, meta_kv, IO_ALIGN, &head, &head_len, err);
    if (rc < 0)
        goto cleanup;
    uint64_t total = head_len;
    for (int i = 0; i < n; i++)
        total += ents[i].nbytes;

    if (stage == NULL) {
        uint64_t len = ckpt_round_up(total, IO_ALIGN);
        if (len > CKPT_STAGING_BYTES)
            len = CKPT_STAGING_BYTES;
        uint64_t cnt = (total + len - 1) / len;
        rc = ckpt_staging_init(&own, cnt < CKPT_STAGING_COUNT ? (int)cnt : CKPT_STAGING_COUNT, (size_t)len, err);
        if (rc < 0) {
            rc = err_prefix(err, rc, "%s", path);
            goto cleanup;
        }
        stage = &own;
    }
    if (stage->n < 1 || stage->n > CKPT_STAGING_MAX || stage->len == 0 || stage->len % IO_ALIGN != 0) {
        rc = err_set(err, -EINVAL, "%s: staging of %d buffers of %zu bytes, expected 1 to %d of a multiple of %u",
                     path, stage->n, stage->len, CKPT_STAGING_MAX, IO_ALIGN);
        goto cleanup;
    }
    for (int i = 0; i < stage->n; i++)
        w.slot[i].buf = stage->buf[i];

    /* Created by open() so the mode honours the umask (io_open uses 0600),
     * then reopened through the engine's O_DIRECT path. */
    int cfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (cfd < 0) {
        int en = errno;
        rc = err_set(err, -en, "%s: cannot create: %s", path, strerror(en));
        goto cleanup;
    }
    close(cfd);
    created = true;
    fd = io_open(path, O_WRONLY | O_CLOEXEC, true, NULL, err);
    if (fd < 0) {
        rc = fd;
        goto cleanup;
    }

    struct ckpt_src src = {.path = path, .t = t, .ents = ents, .n = n, .head = head,
                           .head_len = head_len, .seg = -1};
    uint64_t pos = 0; /* file offset of the next write */
    for (int k = 0; pos < total; k = (k + 1) % stage->n) {
        struct ckpt_slot *s = &w.slot[k];
        while (s->busy && w.rc == 0)
            ckpt_wr_reap(&w, err);
        if (w.rc < 0)
            break;
        size_t want = total - pos < stage->len ? (size_t)(total - pos) : stage->len;
        rc = ckpt_gather(&src, s->buf, want, err);
        if (rc < 0)
            break;
        size_t wlen = (size_t)ckpt_round_up(want, IO_ALIGN);
        memset(s->buf + want, 0, wlen - want);
        io_req rq = {.fd = fd, .write = true, .buf = s->buf, .len = wlen, .off = pos, .user = s};
        s->off = pos;
        s->len = wlen;
        rc = io_submit(e, &rq, 1, err);
        if (rc < 0) {
            rc = err_prefix(err, rc, "%s", path);
            break;
        }
        s->busy = true;
        w.in_flight++;
        pos += want;
    }
    while (w.in_flight > 0)
        ckpt_wr_reap(&w, rc == 0 ? err : NULL);
    if (rc == 0)
        rc = w.rc;
    if (rc < 0)
        goto cleanup;

    if (ftruncate(fd, (off_t)total) < 0) {
        int en = errno;
        rc = err_set(err, -en, "%s: cannot truncate to %llu bytes: %s", path, (unsigned long long)total,
                     strerror(en));
        goto cleanup;
    }
    if (fsync(fd) < 0) {
        int en = errno;
        rc = err_set(err, -en, "%s: fsync: %s", path, strerror(en));
        goto cleanup;
    }
    int xfd = fd;
    fd = -1;
    if (close(xfd) < 0) {
        int en = errno;
        rc = err_set(err, -en, "%s: close: %s", path, strerror(en));
        goto cleanup;
    }
    if (bytes != NULL)
        *bytes = total;

cleanup:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && created)
        unlink(path);
    ckpt_staging_free(&own);
    free(head);
    free(ents);
    return rc;
}

int ckpt_write_file(const char *path, const void *buf, size_t len, rt_err *err)
{
    int rc = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot create: %s", path, strerror(e));
    }
    const uint8_t *p = buf; /* [len] bytes */
    size_t left = len;
    while (left > 0) {
        ssize_t r = write(fd, p, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            rc = err_set(err, -e, "%s: write: %s", path, strerror(e));
            goto cleanup;
        }
        p += r;
        left -= (size_t)r;
    }
    if (fsync(fd) < 0) {
        int e = errno;
        rc = err_set(err, -e, "%s: fsync: %s", path, strerror(e));
        goto cleanup;
    }
    int xfd = fd;
    fd = -1;
    if (close(xfd) < 0) {
        int e = errno;
        rc = err_set(err, -e, "%s: close: %s", path, strerror(e));
    }

cleanup:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(path);
    return rc;
}

/* ---- the step directory transaction ----------------------------------- */

int ckpt_begin(const char *root, uint64_t step, ckpt_txn *tx, rt_err *err)
{
    memset(tx, 0, sizeof *tx);
    size_t rl = root ? strlen(root) : 0;
    if (rl == 0 || rl >= sizeof tx->root)
        return err_set(err, -EINVAL, "checkpoint directory \"%s\": expected a path of 1 to %zu bytes",
                       root ? root : "(null)", sizeof tx->root - 1);
    memcpy(tx->root, root, rl + 1);
    int a = snprintf(tx->tmp, sizeof tx->tmp, "%s/step-%" PRIu64 ".tmp", root, step);
    int b = snprintf(tx->dir, sizeof tx->dir, "%s/step-%" PRIu64, root, step);
    if (a < 0 || b < 0 || (size_t)a >= sizeof tx->tmp || (size_t)b >= sizeof tx->dir)
        return err_set(err, -ENAMETOOLONG, "%s: step directory path longer than %zu bytes", root,
                       sizeof tx->tmp - 1);
    int rc = ckpt_mkdirs(root, err);
    if (rc < 0)
        return rc;
    rc = ckpt_rm_tree(tx->tmp, err);
    if (rc < 0)
        return err_prefix(err, rc, "removing a stale unfinished checkpoint");
    if (mkdir(tx->tmp, 0755) < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot create: %s", tx->tmp, strerror(e));
    }
    tx->step = step;
    tx->open = true;
    return 0;
}

int ckpt_txn_path(const ckpt_txn *tx, const char *name, char *buf, size_t len, rt_err *err)
{
    return ckpt_join(buf, len, tx->tmp, name, err);
}

/* fsyncs each regular file of dir (DONE excluded) and records its size in
 * files; *total gets the sum. */
static int ckpt_sync_files(const char *dir, json_t *files, uint64_t *total, rt_err *err)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open: %s", dir, strerror(e));
    }
    int rc = 0;
    *total = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, CKPT_DONE_FILE) == 0)
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            int e = errno;
            rc = err_set(err, -e, "%s/%s: cannot stat: %s", dir, name, strerror(e));
            break;
        }
        if (!S_ISREG(sb.st_mode)) {
            rc = err_set(err, -EINVAL, "%s/%s: not a regular file (a checkpoint holds plain files only)", dir, name);
            break;
        }
        int fd = openat(dirfd(d), name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            rc = err_set(err, -e, "%s/%s: cannot open to fsync it: %s", dir, name, strerror(e));
            break;
        }
        if (fsync(fd) < 0) {
            int e = errno;
            rc = err_set(err, -e, "%s/%s: fsync: %s", dir, name, strerror(e));
        }
        close(fd);
        if (rc == 0 && ckpt_jset(files, name, json_integer((json_int_t)sb.st_size)) < 0)
            rc = err_set(err, -ENOMEM, "%s/%s: out of memory (or a name that is not UTF-8)", dir, name);
        *total += (uint64_t)sb.st_size;
    }
    closedir(d);
    return rc;
}

int ckpt_commit(ckpt_txn *tx, rt_err *err)
{
    int rc = 0;
    char done[CKPT_PATH_MAX], old[CKPT_PATH_MAX];
    bool replaced = false;
    if (!tx->open)
        return err_set(err, -EINVAL, "%s: no checkpoint transaction is open", tx->dir);

    json_t *root = json_object();
    json_t *files = json_object();
    if (root == NULL || files == NULL) {
        json_decref(files);
        rc = err_set(err, -ENOMEM, "%s: out of memory", tx->tmp);
        goto cleanup;
    }
    char step[24];
    snprintf(step, sizeof step, "%" PRIu64, tx->step);
    if (ckpt_jset(root, "step", json_string(step)) < 0 || ckpt_jset(root, "files", files) < 0) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", tx->tmp);
        goto cleanup;
    }
    uint64_t total = 0;
    rc = ckpt_sync_files(tx->tmp, files, &total, err);
    if (rc == 0)
        rc = ckpt_join(done, sizeof done, tx->tmp, CKPT_DONE_FILE, err);
    if (rc == 0)
        rc = ckpt_dump_json(done, root, err);
    if (rc == 0)
        rc = ckpt_fsync_dir(tx->tmp, err);
    if (rc < 0)
        goto cleanup;

    if (rename(tx->tmp, tx->dir) < 0) {
        int e = errno;
        if (e != EEXIST && e != ENOTEMPTY) {
            rc = err_set(err, -e, "%s: cannot rename to %s: %s", tx->tmp, tx->dir, strerror(e));
            goto cleanup;
        }
        /* An older step-N is in the way (a run resumed from before it). */
        if (renameat2(AT_FDCWD, tx->tmp, AT_FDCWD, tx->dir, RENAME_EXCHANGE) == 0) {
            snprintf(old, sizeof old, "%s", tx->tmp);
        } else if (errno == EINVAL || errno == ENOSYS) {
            if (snprintf(old, sizeof old, "%s/step-%" PRIu64 ".old.tmp", tx->root, tx->step) >= (int)sizeof old) {
                rc = err_set(err, -ENAMETOOLONG, "%s: path too long", tx->root);
                goto cleanup;
            }
            rc = ckpt_rm_tree(old, err);
            if (rc < 0)
                goto cleanup;
            if (rename(tx->dir, old) < 0) {
                e = errno;
                rc = err_set(err, -e, "%s: cannot move the existing %s aside: %s", tx->tmp, tx->dir, strerror(e));
                goto cleanup;
            }
            if (rename(tx->tmp, tx->dir) < 0) {
                e = errno;
                rename(old, tx->dir); /* put the old one back: better than none */
                rc = err_set(err, -e, "%s: cannot rename to %s: %s", tx->tmp, tx->dir, strerror(e));
                goto cleanup;
            }
        } else {
            e = errno;
            rc = err_set(err, -e, "%s: cannot exchange with the existing %s: %s", tx->tmp, tx->dir, strerror(e));
            goto cleanup;
        }
        replaced = true;
    }
    tx->open = false;
    tx->bytes = total;
    rc = ckpt_fsync_dir(tx->root, err);
    if (rc == 0 && replaced)
        rc = ckpt_rm_tree(old, err);

cleanup:
    json_decref(root);
    return rc;
}

int ckpt_abort(ckpt_txn *tx, rt_err *err)
{
    if (!tx->open)
        return 0;
    tx->open = false;
    return ckpt_rm_tree(tx->tmp, err);
}

/* ---- trainer state ----------------------------------------------------- */

int ckpt_state_write(const char *path, const ckpt_state *st, rt_err *err)
{
    char v[8][24];
    const uint64_t x[8] = {st->step, st->data_cursor, st->config_hash, st->seed,
                           st->rng[0], st->rng[1], st->rng[2], st->rng[3]};
    for (int i = 0; i < 8; i++)
        snprintf(v[i], sizeof v[i], "%" PRIu64, x[i]);
    if (strnlen(st->run_id, sizeof st->run_id) == sizeof st->run_id)
        return err_set(err, -EINVAL, "%s: run_id is not NUL-terminated within %d bytes", path, CKPT_RUN_ID_MAX);
    json_t *root = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:[s, s, s, s]}",
                             "version", CKPT_STATE_VERSION, "run_id", st->run_id, "step", v[0],
                             "data_cursor", v[1], "config_hash", v[2], "seed", v[3],
                             "rng", v[4], v[5], v[6], v[7]);
    if (root == NULL)
        return err_set(err, -EINVAL, "%s: cannot encode the trainer state (run_id \"%s\" not UTF-8?)",
                       path, st->run_id);
    int rc = ckpt_dump_json(path, root, err);
    json_decref(root);
    return rc;
}

int ckpt_state_read(const char *path, ckpt_state *st, rt_err *err)
{
    json_t *root = NULL;
    ckpt_state s;
    memset(&s, 0, sizeof s);
    int rc = ckpt_load_json(path, &root, err);
    if (rc < 0)
        return rc;

    const json_t *ver = json_object_get(root, "version");
    if (ver == NULL || !json_is_integer(ver)) {
        rc = err_set(err, -EINVAL, "%s: key \"version\" is %s, expected the integer %d", path,
                     ver ? ckpt_json_kind(ver) : "missing", CKPT_STATE_VERSION);
        goto cleanup;
    }
    if (json_integer_value(ver) != CKPT_STATE_VERSION) {
        rc = err_set(err, -EINVAL, "%s: key \"version\" is %lld, this ramtrain reads version %d (written by "
                     "another version?)", path, (long long)json_integer_value(ver), CKPT_STATE_VERSION);
        goto cleanup;
    }
    const json_t *rid = json_object_get(root, "run_id");
    if (rid == NULL || !json_is_string(rid) || json_string_length(rid) >= CKPT_RUN_ID_MAX ||
        strlen(json_string_value(rid)) != json_string_length(rid)) {
        rc = err_set(err, -EINVAL, "%s: key \"run_id\" is %s, expected a string of at most %d bytes", path,
                     rid ? ckpt_json_kind(rid) : "missing", CKPT_RUN_ID_MAX - 1);
        goto cleanup;
    }
    memcpy(s.run_id, json_string_value(rid), json_string_length(rid) + 1);

    static const char *keys[] = {"step", "data_cursor", "config_hash", "seed"};
    uint64_t *dst[] = {&s.step, &s.data_cursor, &s.config_hash, &s.seed};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        rc = ckpt_json_u64(path, keys[i], json_object_get(root, keys[i]), dst[i], err);
        if (rc < 0)
            goto cleanup;
    }
    const json_t *rng = json_object_get(root, "rng");
    if (rng == NULL || !json_is_array(rng) || json_array_size(rng) != 4) {
        rc = err_set(err, -EINVAL, "%s: key \"rng\" is %s%s, expected an array of 4 decimal strings", path,
                     rng ? "a JSON " : "missing", rng ? ckpt_json_kind(rng) : "");
        goto cleanup;
    }
    for (size_t i = 0; i < 4; i++) {
        char what[16];
        snprintf(what, sizeof what, "rng[%zu]", i);
        rc = ckpt_json_u64(path, what, json_array_get(rng, i), &s.rng[i], err);
        if (rc < 0)
            goto cleanup;
    }
    *st = s;

cleanup:
    json_decref(root);
    return rc;
}

/* ---- finding, pruning, validating ------------------------------------- */

/* 1 when root/name is a directory holding a regular file DONE. */
static int ckpt_has_done(int root_fd, const char *name)
{
    struct stat sb;
    char rel[NAME_MAX + 8];
    if (fstatat(root_fd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(sb.st_mode))
        return 0;
    if (snprintf(rel, sizeof rel, "%s/%s", name, CKPT_DONE_FILE) >= (int)sizeof rel)
        return 0;
    return fstatat(root_fd, rel, &sb, 0) == 0 && S_ISREG(sb.st_mode);
}

static int ckpt_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt_prune(const char *root, unsigned keep, rt_err *err)
{
    int rc = 0, n = 0, cap = 0;
    uint64_t *steps = NULL; /* [n] complete steps */
    char path[CKPT_PATH_MAX], aside[CKPT_PATH_MAX];
    DIR *d = opendir(root);
    if (d == NULL) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the checkpoint directory: %s", root, strerror(e));
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint64_t step;
        struct stat sb;
        if (ckpt_is_tmp_name(de->d_name)) {
            if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode)) {
                rc = ckpt_join(path, sizeof path, root, de->d_name, err);
                if (rc == 0)
                    rc = ckpt_rm_tree(path, err);
            }
            continue;
        }
        if (!ckpt_parse_step(de->d_name, "", &step) || !ckpt_has_done(dirfd(d), de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *p = realloc(steps, (size_t)cap * sizeof *p);
            if (p == NULL) {
                rc = err_set(err, -ENOMEM, "%s: out of memory", root);
                break;
            }
            steps = p;
        }
        steps[n++] = step;
    }
    closedir(d);
    if (rc < 0)
        goto cleanup;

    qsort(steps, (size_t)n, sizeof *steps, ckpt_u64_desc);
    for (int i = (int)keep; keep > 0 && i < n && rc == 0; i++) {
        int a = snprintf(path, sizeof path, "%s/step-%" PRIu64, root, steps[i]);
        int b = snprintf(aside, sizeof aside, "%s/step-%" PRIu64 ".old.tmp", root, steps[i]);
        if (a < 0 || b < 0 || (size_t)a >= sizeof path || (size_t)b >= sizeof aside) {
            rc = err_set(err, -ENAMETOOLONG, "%s: path too long", root);
            break;
        }
        if (rename(path, aside) < 0) {
            int e = errno;
            rc = err_set(err, -e, "%s: cannot rename to %s before removing it: %s", path, aside, strerror(e));
            break;
        }
        rc = ckpt_rm_tree(aside, err);
    }
    if (rc == 0)
        rc = ckpt_fsync_dir(root, err);

cleanup:
    free(steps);
    return rc;
}

int ckpt_latest(const char *root, uint64_t below, uint64_t *step, char *dir, size_t len, rt_err *err)
{
    DIR *d = opendir(root);
    if (d == NULL) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the checkpoint directory: %s", root, strerror(e));
    }
    bool found = false;
    uint64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t s;
        if (!ckpt_parse_step(de->d_name, "", &s) || s >= below || (found && s <= best))
            continue;
        if (!ckpt_has_done(dirfd(d), de->d_name))
            continue;
        best = s;
        found = true;
    }
    closedir(d);
    if (!found) {
        if (below == UINT64_MAX)
            return err_set(err, -ENOENT, "%s: no complete checkpoint (a step-N directory holding DONE)", root);
        return err_set(err, -ENOENT, "%s: no complete checkpoint (a step-N directory holding DONE) before step %"
                       PRIu64, root, below);
    }
    int n = snprintf(dir, len, "%s/step-%" PRIu64, root, best);
    if (n < 0 || (size_t)n >= len)
        return err_set(err, -ENAMETOOLONG, "%s/step-%" PRIu64 ": path longer than %zu bytes", root, best,
                       len ? len - 1 : 0);
    *step = best;
    return 0;
}

/* Reads dir/DONE: its step and (when files is not NULL) the file table, a
 * new reference the caller json_decrefs. */
static int ckpt_read_done(const char *dir, uint64_t *step, json_t **files, rt_err *err)
{
    char path[CKPT_PATH_MAX];
    json_t *root = NULL;
    int rc = ckpt_join(path, sizeof path, dir, CKPT_DONE_FILE, err);
    if (rc == 0)
        rc = ckpt_load_json(path, &root, err);
    if (rc == -ENOENT)
        return err_set(err, -ENOENT, "%s: no DONE marker: the checkpoint was not finished (written by a run that "
                       "died?); resume from an older one", dir);
    if (rc < 0)
        return rc;
    rc = ckpt_json_u64(path, "step", json_object_get(root, "step"), step, err);
    if (rc == 0 && files != NULL) {
        json_t *f = json_object_get(root, "files");
        if (f == NULL || !json_is_object(f)) {
            rc = err_set(err, -EINVAL, "%s: key \"files\" is %s%s, expected an object of file sizes", path,
                         f ? "a JSON " : "missing", f ? ckpt_json_kind(f) : "");
        } else {
            *files = json_incref(f);
        }
    }
    json_decref(root);
    return rc;
}

int ckpt_locate(const char *path, uint64_t *step, char *dir, size_t len, rt_err *err)
{
    char base[CKPT_PATH_MAX];
    struct stat sb;
    if (stat(path, &sb) < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the checkpoint: %s", path, strerror(e));
    }
    if (!S_ISDIR(sb.st_mode))
        return err_set(err, -ENOTDIR, "%s: not a directory (expected a step-N checkpoint or the directory "
                       "holding them)", path);
    int n = snprintf(base, sizeof base, "%s", path);
    if (n < 0 || (size_t)n >= sizeof base)
        return err_set(err, -ENAMETOOLONG, "%s: path too long", path);
    while (n > 1 && base[n - 1] == '/')
        base[--n] = '\0';
    const char *slash = strrchr(base, '/');
    const char *name = slash ? slash + 1 : base;

    uint64_t s;
    bool step_dir = ckpt_parse_step(name, "", &s) || ckpt_is_tmp_name(name);
    int rc = ckpt_read_done(base, step, NULL, err);
    if (rc == -ENOENT && !step_dir)
        return ckpt_latest(base, UINT64_MAX, step, dir, len, err); /* a root holding step directories */
    if (rc < 0)
        return rc;
    if ((size_t)snprintf(dir, len, "%s", base) >= len)
        return err_set(err, -ENAMETOOLONG, "%s: path longer than %zu bytes", base, len ? len - 1 : 0);
    return 0;
}

static int ckpt_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int ckpt_same_shape(const st_tensor *a, const st_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* dir/name into path[len], or for a .safetensors name its index
 * dir/name.index.json (a sharded file) when only that exists. A name DONE
 * lists (in listed) is taken as it is: the size check stats it. -ENOENT when
 * neither exists. */
static int ckpt_find_file(const char *dir, const char *name, const json_t *listed, char *path, size_t len,
                          rt_err *err)
{
    struct stat sb;
    char alt[CKPT_PATH_MAX];
    int rc = ckpt_join(path, len, dir, name, err);
    if (rc < 0 || json_object_get(listed, name) != NULL || stat(path, &sb) == 0)
        return rc;
    if (ckpt_ends_with(name, ".safetensors") && (size_t)snprintf(alt, sizeof alt, "%s.index.json", path) < len &&
        stat(alt, &sb) == 0) {
        memcpy(path, alt, strlen(alt) + 1);
        return 0;
    }
    return err_set(err, -ENOENT, "%s: missing (a checkpoint holds %s, %s, %s and %s)", path, CKPT_CONFIG_FILE,
                   CKPT_MODEL_FILE, CKPT_OPTIM_FILE, CKPT_STATE_FILE);
}

/* Checks that opt holds exactly the AdamW state of the tensors of model. */
static int ckpt_check_optim(const st_set *model, const st_set *opt, const char *opt_path, rt_err *err)
{
    static const char *sfx[] = {CKPT_SUFFIX_EXP_AVG_SQ, CKPT_SUFFIX_EXP_AVG, CKPT_SUFFIX_MASTER};
    char name[1024];
    for (int i = 0; i < opt->n_tensors; i++) {
        const st_tensor *o = &opt->tensors[i];
        size_t k = 0;
        while (k < 3 && !ckpt_ends_with(o->name, sfx[k]))
            k++;
        if (k == 3)
            return err_set(err, -EINVAL, "%s: tensor %s: expected a name <model tensor>%s, %s or %s",
                           opt_path, o->name, CKPT_SUFFIX_EXP_AVG, CKPT_SUFFIX_EXP_AVG_SQ, CKPT_SUFFIX_MASTER);
        size_t bl = strlen(o->name) - strlen(sfx[k]);
        if (bl >= sizeof name)
            return err_set(err, -EINVAL, "%s: tensor %s: name too long", opt_path, o->name);
        memcpy(name, o->name, bl);
        name[bl] = '\0';
        const st_tensor *m = st_find(model, name);
        if (m == NULL)
            return err_set(err, -EINVAL, "%s: tensor %s: the model has no tensor %s", opt_path, o->name, name);
        if (o->dtype != DT_F32)
            return err_set(err, -EINVAL, "%s: tensor %s: dtype %s, expected F32", opt_path, o->name,
                           dt_name(o->dtype));
        if (!ckpt_same_shape(o, m))
            return err_set(err, -EINVAL, "%s: tensor %s: shape differs from model tensor %s", opt_path, o->name,
                           name);
    }
    for (int i = 0; i < model->n_tensors; i++) {
        const st_tensor *m = &model->tensors[i];
        for (size_t k = 0; k < 3; k++) {
            if (k == 2 && m->dtype == DT_F32)
                continue;
            if ((size_t)snprintf(name, sizeof name, "%s%s", m->name, sfx[k]) >= sizeof name)
                return err_set(err, -EINVAL, "%s: tensor %s: name too long", m->file, m->name);
            if (st_find(opt, name) == NULL)
                return err_set(err, -EINVAL, "%s: no tensor %s (the %s of model tensor %s%s)", opt_path, name,
                               k == 0 ? "AdamW second moment" : k == 1 ? "AdamW first moment" : "fp32 master",
                               m->name, k == 2 ? ", which the model file holds in a lower precision" : "");
        }
    }
    return 0;
}

int ckpt_validate(const char *dir, ckpt_state *st_out, rt_err *err)
{
    int rc = 0;
    json_t *files = NULL, *cfg = NULL;
    st_set *model = NULL, *opt = NULL;
    ckpt_state st;
    char path[CKPT_PATH_MAX], model_path[CKPT_PATH_MAX], opt_path[CKPT_PATH_MAX];
    struct stat sb;

    if (stat(dir, &sb) < 0) {
        int e = errno;
        return err_set(err, -e, "%s: cannot open the checkpoint: %s", dir, strerror(e));
    }
    if (!S_ISDIR(sb.st_mode))
        return err_set(err, -ENOTDIR, "%s: not a directory (expected a step-N checkpoint)", dir);
    uint64_t step;
    rc = ckpt_read_done(dir, &step, &files, err);
    if (rc < 0)
        return rc;

    char *found[] = {path, model_path, opt_path, path}; /* where each of ckpt_required is */
    for (size_t i = 0; i < sizeof ckpt_required / sizeof ckpt_required[0]; i++) {
        rc = ckpt_find_file(dir, ckpt_required[i], files, found[i], CKPT_PATH_MAX, err);
        if (rc < 0)
            goto cleanup;
    }

    const char *fname;
    json_t *fsize;
    json_object_foreach(files, fname, fsize) {
        if (!json_is_integer(fsize) || json_integer_value(fsize) < 0 || strchr(fname, '/') != NULL) {
            rc = err_set(err, -EINVAL, "%s/%s: key \"files\": entry %s is not a file name with a byte count",
                         dir, CKPT_DONE_FILE, fname);
            goto cleanup;
        }
        rc = ckpt_join(path, sizeof path, dir, fname, err);
        if (rc < 0)
            goto cleanup;
        if (stat(path, &sb) < 0) {
            int e = errno;
            rc = err_set(err, -e, "%s: %s (DONE lists it with %lld bytes)", path,
                         e == ENOENT ? "missing" : strerror(e), (long long)json_integer_value(fsize));
            goto cleanup;
        }
        if ((uint64_t)sb.st_size != (uint64_t)json_integer_value(fsize)) {
            rc = err_set(err, -EINVAL, "%s: %lld bytes, but DONE records %lld: the file was %s after the "
                         "checkpoint was written", path, (long long)sb.st_size,
                         (long long)json_integer_value(fsize),
                         (uint64_t)sb.st_size < (uint64_t)json_integer_value(fsize) ? "truncated" : "changed");
            goto cleanup;
        }
    }

    rc = ckpt_join(path, sizeof path, dir, CKPT_CONFIG_FILE, err);
    if (rc == 0)
        rc = ckpt_load_json(path, &cfg, err);
    if (rc < 0)
        goto cleanup;

    rc = ckpt_join(path, sizeof path, dir, CKPT_STATE_FILE, err);
    if (rc == 0)
        rc = ckpt_state_read(path, &st, err);
    if (rc < 0)
        goto cleanup;
    if (st.step != step) {
        rc = err_set(err, -EINVAL, "%s: key \"step\" is %" PRIu64 " but DONE says %" PRIu64, path, st.step, step);
        goto cleanup;
    }
    const char *slash = strrchr(dir, '/');
    uint64_t named;
    if (ckpt_parse_step(slash ? slash + 1 : dir, "", &named) && named != step) {
        rc = err_set(err, -EINVAL, "%s: directory name says step %" PRIu64 " but DONE says %" PRIu64, dir, named,
                     step);
        goto cleanup;
    }

    rc = st_open(model_path, &model, err);
    if (rc < 0)
        goto cleanup;
    rc = st_open(opt_path, &opt, err);
    if (rc < 0)
        goto cleanup;
    rc = ckpt_check_optim(model, opt, opt_path, err);
    if (rc < 0)
        goto cleanup;
    if (st_out != NULL)
        *st_out = st;

cleanup:
    st_close(opt);
    st_close(model);
    json_decref(cfg);
    json_decref(files);
    return rc;
}

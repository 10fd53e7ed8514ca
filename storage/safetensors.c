/*
 * safetensors: reader and writer of Hugging Face's safetensors checkpoints
 * (see safetensors.h for the format).
 *
 * Reading maps each file whole (PROT_READ, MAP_PRIVATE) and checks the header
 * before handing out a single pointer: every entry's dtype, shape and offsets,
 * and that the tensors tile the data section exactly (no overlap, no hole, no
 * byte past the end), as the format's reference implementation demands. The
 * JSON is parsed by jansson with JSON_REJECT_DUPLICATES, so a name given twice
 * is an error instead of "last one wins". A sharded checkpoint is the union
 * of the files its index names; a tensor held by two shards, or a weight_map
 * entry pointing at a shard that lacks the tensor, is an error. Shard names
 * in the index must be relative and free of ".." so an index cannot make us
 * map files outside its directory.
 *
 * Writing lays the tensors out in the order they were added, with a header
 * whose keys come "__metadata__" first and then by data offset (what the
 * reference writer produces) padded with spaces to a multiple of 8 bytes.
 * Files go to "<path>.tmp", are fsynced, renamed over <path>, and the
 * directory is fsynced; on failure the tmp file is removed and <path> is
 * untouched. A sharded write puts the index last, so an index never names a
 * shard that is not complete on disk, and then removes a stale
 * model.safetensors from the directory, which st_open would otherwise prefer.
 *
 * Threads: an open set is immutable; a writer belongs to one thread.
 *
 * Rejected: reading with pread into heap buffers (doubles the memory of a
 * checkpoint load and the mapping is what layer blocks copy from anyway), and
 * sorting tensors by alignment on write as the Python writer does (callers
 * choose the order, so a tensor's data may be unaligned for its type: readers
 * convert with st_tensor_read_f32 or memcpy instead of casting the pointer).
 */
#include "storage/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_mapped {
    char *path;          /* as opened; owned */
    void *map;           /* the whole file, read-only; NULL until mapped */
    size_t map_len;      /* bytes */
    const uint8_t *data; /* data section: map + 8 + header length */
    uint64_t data_len;   /* bytes */
};

struct st_wentry {
    char *name; /* owned */
    dt_type dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data; /* [nbytes], borrowed from the caller */
};

/* One tensor's byte range while a file's layout is checked. */
struct st_span {
    uint64_t begin, end; /* bytes into the data section */
    int tensor;          /* index into set->tensors */
};

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
#define ST_DTYPES "BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, I64, U64 or F64"

static const char *st_json_kind(const json_t *v)
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

static void st_fmt_shape(char *buf, size_t len, const int64_t *shape, int ndim)
{
    size_t off = 0;
    int n = snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n >= 0; i++) {
        off += (size_t)n;
        if (off >= len)
            return;
        n = snprintf(buf + off, len - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (n < 0)
        return;
    off += (size_t)n;
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

int st_shape_bytes(const int64_t *shape, int ndim, dt_type dtype, uint64_t *out)
{
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) {
            *out = 0;
            return 0;
        }
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (numel > UINT64_MAX / d)
            return -EOVERFLOW;
        numel *= d;
    }
    uint64_t size = dt_size(dtype);
    if (numel > UINT64_MAX / size)
        return -EOVERFLOW;
    *out = numel * size;
    return 0;
}

static char *st_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* The directory part of path ("." when there is none); caller frees. */
static char *st_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int st_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- reading ----------------------------------------------------------- */

/* Reports a jansson parse failure of text[0..len) from path. jansson names a
 * duplicate key only when it is short, so the key is recovered here: it is
 * the JSON string that ends where the parser stopped. */
static int st_json_fail(rt_err *err, const char *path, const char *what, const char *text, size_t len,
                        const json_error_t *jerr)
{
    size_t end = jerr->position > 0 ? (size_t)jerr->position : 0;
    if (json_error_code(jerr) == json_error_duplicate_key && end >= 2 && end <= len && text[end - 1] == '"') {
        size_t q = end - 1;
        while (q > 0) {
            q--;
            size_t bs = 0;
            while (bs < q && text[q - 1 - bs] == '\\')
                bs++;
            if (text[q] == '"' && bs % 2 == 0)
                break;
        }
        json_t *key = json_loadb(text + q, end - q, JSON_DECODE_ANY, NULL);
        if (json_is_string(key)) {
            int rc = err_set(err, -EINVAL, "%s: %s: duplicate key %s (line %d, column %d), expected each name once",
                             path, what, json_string_value(key), jerr->line, jerr->column);
            json_decref(key);
            return rc;
        }
        json_decref(key);
    }
    return err_set(err, -EINVAL, "%s: %s is not valid JSON: %s (line %d, column %d)",
                   path, what, jerr->text, jerr->line, jerr->column);
}

static int st_parse_int(const char *path, const char *name, const char *field, size_t i,
                        const json_t *v, int64_t *out, rt_err *err)
{
    if (!json_is_integer(v))
        return err_set(err, -EINVAL, "%s: tensor %s: %s[%zu] is a JSON %s, expected a non-negative integer",
                       path, name, field, i, st_json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return err_set(err, -EINVAL, "%s: tensor %s: %s[%zu] is %lld, expected a non-negative integer",
                       path, name, field, i, (long long)x);
    *out = (int64_t)x;
    return 0;
}

/* Checks one header entry and fills t (all but name, data and file) and sp. */
static int st_parse_entry(const char *path, const char *name, const json_t *v, uint64_t data_len,
                          st_tensor *t, struct st_span *sp, rt_err *err)
{
    if (!json_is_object(v))
        return err_set(err, -EINVAL,
                       "%s: tensor %s: entry is a JSON %s, expected an object with dtype, shape and data_offsets",
                       path, name, st_json_kind(v));

    const json_t *jd = json_object_get(v, "dtype");
    if (jd == NULL)
        return err_set(err, -EINVAL, "%s: tensor %s: missing \"dtype\" (expected a string: %s)",
                       path, name, ST_DTYPES);
    if (!json_is_string(jd))
        return err_set(err, -EINVAL, "%s: tensor %s: \"dtype\" is a JSON %s, expected a string: %s",
                       path, name, st_json_kind(jd), ST_DTYPES);
    t->dtype = dt_from_name(json_string_value(jd));
    if (t->dtype == DT_INVALID)
        return err_set(err, -EINVAL, "%s: tensor %s: unknown dtype \"%s\" (expected %s)",
                       path, name, json_string_value(jd), ST_DTYPES);

    const json_t *js = json_object_get(v, "shape");
    if (js == NULL)
        return err_set(err, -EINVAL, "%s: tensor %s: missing \"shape\" (expected an array of dimensions)",
                       path, name);
    if (!json_is_array(js))
        return err_set(err, -EINVAL, "%s: tensor %s: \"shape\" is a JSON %s, expected an array of dimensions",
                       path, name, st_json_kind(js));
    if (json_array_size(js) > ST_MAX_DIMS)
        return err_set(err, -EINVAL, "%s: tensor %s: shape has %zu dimensions, at most %d are supported",
                       path, name, json_array_size(js), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    for (int i = 0; i < t->ndim; i++) {
        int rc = st_parse_int(path, name, "shape", (size_t)i, json_array_get(js, (size_t)i), &t->shape[i], err);
        if (rc < 0)
            return rc;
    }

    const json_t *jo = json_object_get(v, "data_offsets");
    if (jo == NULL)
        return err_set(err, -EINVAL, "%s: tensor %s: missing \"data_offsets\" (expected [begin, end])",
                       path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return err_set(err, -EINVAL, "%s: tensor %s: \"data_offsets\" is a JSON %s%s, expected [begin, end]",
                       path, name, st_json_kind(jo), json_is_array(jo) ? " of the wrong length" : "");
    int64_t off[2];
    for (size_t i = 0; i < 2; i++) {
        int rc = st_parse_int(path, name, "data_offsets", i, json_array_get(jo, i), &off[i], err);
        if (rc < 0)
            return rc;
    }
    sp->begin = (uint64_t)off[0];
    sp->end = (uint64_t)off[1];
    if (sp->begin > sp->end)
        return err_set(err, -EINVAL, "%s: tensor %s: data_offsets [%llu, %llu]: begin is after end",
                       path, name, (unsigned long long)sp->begin, (unsigned long long)sp->end);
    if (sp->end > data_len)
        return err_set(err, -EINVAL,
                       "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the data section (%llu bytes)",
                       path, name, (unsigned long long)sp->begin, (unsigned long long)sp->end,
                       (unsigned long long)data_len);

    char shape[256];
    st_fmt_shape(shape, sizeof shape, t->shape, t->ndim);
    if (st_shape_bytes(t->shape, t->ndim, t->dtype, &t->nbytes) < 0)
        return err_set(err, -EINVAL, "%s: tensor %s: shape %s of %s has more bytes than fit in 64 bits",
                       path, name, shape, dt_name(t->dtype));
    if (t->nbytes != sp->end - sp->begin)
        return err_set(err, -EINVAL,
                       "%s: tensor %s: shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                       path, name, shape, dt_name(t->dtype), (unsigned long long)t->nbytes,
                       (unsigned long long)sp->begin, (unsigned long long)sp->end,
                       (unsigned long long)(sp->end - sp->begin));
    return 0;
}

static int st_parse_meta(st_set *set, const char *path, const json_t *v, int keep, rt_err *err)
{
    const char *key;
    json_t *val;

    if (!json_is_object(v))
        return err_set(err, -EINVAL, "%s: \"__metadata__\" is a JSON %s, expected an object of string values",
                       path, st_json_kind(v));
    json_object_foreach((json_t *)v, key, val) {
        if (!json_is_string(val))
            return err_set(err, -EINVAL, "%s: \"__metadata__\" key %s is a JSON %s, expected a string",
                           path, key, st_json_kind(val));
    }
    if (!keep || json_object_size(v) == 0)
        return 0;
    set->meta = calloc(json_object_size(v), sizeof *set->meta);
    if (set->meta == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory for metadata", path);
    json_object_foreach((json_t *)v, key, val) {
        st_meta *m = &set->meta[set->n_meta];
        m->key = strdup(key);
        m->value = strdup(json_string_value(val));
        set->n_meta++;
        if (m->key == NULL || m->value == NULL)
            return err_set(err, -ENOMEM, "%s: out of memory for metadata", path);
    }
    return 0;
}

static int st_span_cmp(const void *a, const void *b)
{
    const struct st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks that the spans tile [0, data_len) exactly; sorts spans. */
static int st_check_layout(const st_set *set, const char *path, struct st_span *spans, int n,
                           uint64_t data_len, rt_err *err)
{
    qsort(spans, (size_t)n, sizeof *spans, st_span_cmp);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const char *name = set->tensors[spans[i].tensor].name;
        if (spans[i].begin < pos) {
            const struct st_span *p = &spans[i - 1];
            return err_set(err, -EINVAL, "%s: tensor %s: data_offsets [%llu, %llu] overlap tensor %s [%llu, %llu]",
                           path, name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                           set->tensors[p->tensor].name, (unsigned long long)p->begin,
                           (unsigned long long)p->end);
        }
        if (spans[i].begin > pos)
            return err_set(err, -EINVAL,
                           "%s: tensor %s: bytes [%llu, %llu) of the data section before it belong to no tensor "
                           "(the data section must be fully indexed)",
                           path, name, (unsigned long long)pos, (unsigned long long)spans[i].begin);
        pos = spans[i].end;
    }
    if (pos != data_len) {
        if (n == 0)
            return err_set(err, -EINVAL, "%s: the data section holds %llu bytes but the header lists no tensors",
                           path, (unsigned long long)data_len);
        return err_set(err, -EINVAL,
                       "%s: bytes [%llu, %llu) at the end of the data section, after tensor %s, belong to no tensor "
                       "(the data section must be fully indexed)",
                       path, (unsigned long long)pos, (unsigned long long)data_len,
                       set->tensors[spans[n - 1].tensor].name);
    }
    return 0;
}

/* Maps one .safetensors file, validates it and appends its tensors to set
 * (unsorted). Keeps its "__metadata__" when keep_meta. */
static int st_load_file(st_set *set, const char *path, int keep_meta, rt_err *err)
{
    int rc = 0, fd = -1;
    json_t *root = NULL;
    struct st_span *spans = NULL;
    struct st_mapped *files = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *files);
    if (files == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    set->files = files;
    struct st_mapped *f = &files[set->n_files];
    memset(f, 0, sizeof *f);
    set->n_files++;
    f->path = strdup(path);
    if (f->path == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    struct stat stb;
    if (fstat(fd, &stb) < 0) {
        rc = err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(stb.st_mode)) {
        rc = err_set(err, -EINVAL, "%s: not a regular file (expected a .safetensors file)", path);
        goto cleanup;
    }
    uint64_t size = (uint64_t)stb.st_size;
    if (size < 8) {
        rc = err_set(err, -EINVAL,
                     "%s: file is %llu bytes, shorter than the 8-byte header length that starts a safetensors file",
                     path, (unsigned long long)size);
        goto cleanup;
    }
    if (size > SIZE_MAX) {
        rc = err_set(err, -EFBIG, "%s: file of %llu bytes does not fit in the address space",
                     path, (unsigned long long)size);
        goto cleanup;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = err_set(err, -errno, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size, strerror(errno));
        goto cleanup;
    }
    f->map = map;
    f->map_len = (size_t)size;

    const uint8_t *base = map; /* [size] bytes of the file */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | base[i];
    if (hlen == 0) {
        rc = err_set(err, -EINVAL, "%s: header length is 0, expected the length of a JSON object", path);
        goto cleanup;
    }
    if (hlen > ST_MAX_HEADER) {
        rc = err_set(err, -EINVAL, "%s: header length %llu is larger than the %u bytes allowed (corrupt file?)",
                     path, (unsigned long long)hlen, ST_MAX_HEADER);
        goto cleanup;
    }
    if (hlen > size - 8) {
        rc = err_set(err, -EINVAL, "%s: header length %llu runs past the end of the file (%llu bytes)",
                     path, (unsigned long long)hlen, (unsigned long long)size);
        goto cleanup;
    }
    f->data = base + 8 + hlen;
    f->data_len = size - 8 - hlen;

    json_error_t jerr;
    root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        rc = st_json_fail(err, path, "header", (const char *)base + 8, (size_t)hlen, &jerr);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        rc = err_set(err, -EINVAL,
                     "%s: header is a JSON %s, expected an object mapping tensor names to {dtype, shape, data_offsets}",
                     path, st_json_kind(root));
        goto cleanup;
    }

    size_t count = json_object_size(root);
    if (count > (size_t)(INT32_MAX - set->n_tensors)) {
        rc = err_set(err, -E2BIG, "%s: header lists %zu tensors, too many", path, count);
        goto cleanup;
    }
    st_tensor *tensors = realloc(set->tensors, (set->n_tensors + count + 1) * sizeof *tensors);
    spans = calloc(count + 1, sizeof *spans);
    if (tensors != NULL)
        set->tensors = tensors;
    if (tensors == NULL || spans == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory for %zu tensors", path, count);
        goto cleanup;
    }

    int n_spans = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            rc = st_parse_meta(set, path, val, keep_meta, err);
            if (rc < 0)
                goto cleanup;
            continue;
        }
        st_tensor *t = &set->tensors[set->n_tensors];
        memset(t, 0, sizeof *t);
        rc = st_parse_entry(path, key, val, f->data_len, t, &spans[n_spans], err);
        if (rc < 0)
            goto cleanup;
        t->name = strdup(key);
        if (t->name == NULL) {
            rc = err_set(err, -ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        t->file = f->path;
        /* Empty tensors point at the start of the mapping, which is always
         * readable, rather than possibly one past its end. */
        t->data = t->nbytes ? (const void *)(f->data + spans[n_spans].begin) : (const void *)base;
        spans[n_spans].tensor = set->n_tensors;
        set->n_tensors++;
        n_spans++;
    }
    rc = st_check_layout(set, path, spans, n_spans, f->data_len, err);

cleanup:
    free(spans);
    json_decref(root);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Reads a whole small file (an index) into a NUL-terminated heap buffer. */
static int st_read_small(const char *path, char **out, size_t *out_len, rt_err *err)
{
    int rc = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat stb;
    if (fstat(fd, &stb) < 0) {
        rc = err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(stb.st_mode) || (uint64_t)stb.st_size > ST_MAX_HEADER) {
        rc = err_set(err, -EINVAL, "%s: expected a regular file of at most %u bytes", path, ST_MAX_HEADER);
        goto cleanup;
    }
    size_t len = (size_t)stb.st_size, got = 0;
    buf = malloc(len + 1);
    if (buf == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = err_set(err, -errno, "%s: read failed: %s", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    buf = NULL;

cleanup:
    free(buf);
    close(fd);
    return rc;
}

static int st_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_safe_relpath(const char *p)
{
    if (p[0] == '\0' || p[0] == '/')
        return 0;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return 0;
        s += n;
        if (*s == '/')
            s++;
    }
    return 1;
}

static int st_tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts the set's tensors by name; a name held twice (two shards) is an error. */
static int st_sort_tensors(st_set *set, const char *path, rt_err *err)
{
    if (set->n_tensors > 1)
        qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, st_tensor_cmp);
    for (int i = 1; i < set->n_tensors; i++)
        if (strcmp(set->tensors[i - 1].name, set->tensors[i].name) == 0)
            return err_set(err, -EINVAL, "%s: tensor %s is in both %s and %s, expected it in one shard",
                           path, set->tensors[i].name, set->tensors[i - 1].file, set->tensors[i].file);
    return 0;
}

static int st_open_index(st_set *set, const char *path, rt_err *err)
{
    int rc = 0;
    char *text = NULL, *dir = NULL, *full = NULL;
    const char **files = NULL; /* [n_files] distinct shard names, borrowed from root */
    size_t len = 0, n_files = 0;
    json_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *val;

    rc = st_read_small(path, &text, &len, err);
    if (rc < 0)
        goto cleanup;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        rc = st_json_fail(err, path, "index", text, len, &jerr);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        rc = err_set(err, -EINVAL, "%s: index is a JSON %s, expected an object with \"weight_map\"",
                     path, st_json_kind(root));
        goto cleanup;
    }
    json_t *meta = json_object_get(root, "metadata");
    if (meta != NULL && !json_is_object(meta)) {
        rc = err_set(err, -EINVAL, "%s: \"metadata\" is a JSON %s, expected an object", path, st_json_kind(meta));
        goto cleanup;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (wm == NULL || !json_is_object(wm)) {
        rc = err_set(err, -EINVAL, "%s: \"weight_map\" is %s%s, expected an object mapping tensor names to shard files",
                     path, wm ? "a JSON " : "", wm ? st_json_kind(wm) : "missing");
        goto cleanup;
    }
    if (json_object_size(wm) == 0) {
        rc = err_set(err, -EINVAL, "%s: \"weight_map\" is empty, expected at least one tensor", path);
        goto cleanup;
    }

    files = calloc(json_object_size(wm), sizeof *files);
    if (files == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            rc = err_set(err, -EINVAL, "%s: weight_map: tensor %s: shard is a JSON %s, expected a file name",
                         path, key, st_json_kind(val));
            goto cleanup;
        }
        if (!st_safe_relpath(json_string_value(val))) {
            rc = err_set(err, -EINVAL,
                         "%s: weight_map: tensor %s: shard \"%s\" must be a path relative to the index's "
                         "directory without \"..\"",
                         path, key, json_string_value(val));
            goto cleanup;
        }
        files[n_files++] = json_string_value(val);
    }
    qsort(files, n_files, sizeof *files, st_str_cmp);
    size_t n_distinct = 0;
    for (size_t i = 0; i < n_files; i++)
        if (n_distinct == 0 || strcmp(files[n_distinct - 1], files[i]) != 0)
            files[n_distinct++] = files[i];

    dir = st_dirname(path);
    if (dir == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (size_t i = 0; i < n_distinct; i++) {
        full = st_join(dir, files[i]);
        if (full == NULL) {
            rc = err_set(err, -ENOMEM, "%s: out of memory", path);
            goto cleanup;
        }
        rc = st_load_file(set, full, i == 0, err);
        free(full);
        full = NULL;
        if (rc < 0) {
            err_prefix(err, rc, "%s", path);
            goto cleanup;
        }
    }
    rc = st_sort_tensors(set, path, err);
    if (rc < 0)
        goto cleanup;

    /* Shard i of files[] is set->files[i]: loaded in that order. */
    json_object_foreach(wm, key, val) {
        const char *shard = json_string_value(val);
        const char **fp = bsearch(&shard, files, n_distinct, sizeof *files, st_str_cmp);
        const char *want = set->files[fp - files].path;
        const st_tensor *t = st_find(set, key);
        if (t == NULL) {
            rc = err_set(err, -EINVAL, "%s: weight_map puts tensor %s in %s, but that file does not hold it",
                         path, key, want);
            goto cleanup;
        }
        if (t->file != want) {
            rc = err_set(err, -EINVAL, "%s: weight_map puts tensor %s in %s, but it is in %s",
                         path, key, want, t->file);
            goto cleanup;
        }
    }

cleanup:
    free(full);
    free(dir);
    free(files);
    json_decref(root);
    free(text);
    return rc;
}

int st_open(const char *path, st_set **out, rt_err *err)
{
    int rc = 0;
    char *found = NULL;
    st_set *set = NULL;
    struct stat stb;

    *out = NULL;
    if (stat(path, &stb) < 0)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(stb.st_mode)) {
        found = st_join(path, ST_SINGLE_NAME);
        if (found == NULL)
            return err_set(err, -ENOMEM, "%s: out of memory", path);
        if (stat(found, &stb) < 0) {
            free(found);
            found = st_join(path, ST_INDEX_NAME);
            if (found == NULL)
                return err_set(err, -ENOMEM, "%s: out of memory", path);
            if (stat(found, &stb) < 0) {
                free(found);
                return err_set(err, -ENOENT, "%s: directory holds neither %s nor %s",
                               path, ST_SINGLE_NAME, ST_INDEX_NAME);
            }
        }
        path = found;
    }

    set = calloc(1, sizeof *set);
    if (set == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (st_ends_with(path, ".json")) {
        rc = st_open_index(set, path, err);
    } else {
        rc = st_load_file(set, path, 1, err);
        if (rc == 0)
            rc = st_sort_tensors(set, path, err);
    }
    if (rc == 0) {
        *out = set;
        set = NULL;
    }

cleanup:
    st_close(set);
    free(found);
    return rc;
}

void st_close(st_set *set)
{
    if (set == NULL)
        return;
    for (int i = 0; i < set->n_tensors; i++)
        free(set->tensors[i].name);
    free(set->tensors);
    for (int i = 0; i < set->n_meta; i++) {
        free(set->meta[i].key);
        free(set->meta[i].value);
    }
    free(set->meta);
    for (int i = 0; i < set->n_files; i++) {
        if (set->files[i].map != NULL)
            munmap(set->files[i].map, set->files[i].map_len);
        free(set->files[i].path);
    }
    free(set->files);
    free(set);
}

const st_tensor *st_find(const st_set *set, const char *name)
{
    if (set == NULL || name == NULL || set->n_tensors == 0)
        return NULL;
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, st_tensor_cmp);
}

const char *st_meta_get(const st_set *set, const char *key)
{
    if (set == NULL || key == NULL)
        return NULL;
    for (int i = 0; i < set->n_meta; i++)
        if (strcmp(set->meta[i].key, key) == 0)
            return set->meta[i].value;
    return NULL;
}

uint64_t st_numel(const st_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

int st_tensor_read_f32(const st_tensor *t, float *dst, uint64_t n, rt_err *err)
{
    if (!dt_is_float(t->dtype))
        return err_set(err, -EINVAL, "%s: tensor %s: dtype %s is not a float type (expected F32, BF16, F16 or F64)",
                       t->file, t->name, dt_name(t->dtype));
    uint64_t numel = st_numel(t);
    if (n != numel)
        return err_set(err, -EINVAL, "%s: tensor %s: holds %llu elements, the buffer %llu",
                       t->file, t->name, (unsigned long long)numel, (unsigned long long)n);
    if (n > SIZE_MAX)
        return err_set(err, -EFBIG, "%s: tensor %s: %llu elements do not fit in the address space",
                       t->file, t->name, (unsigned long long)n);
    return dt_to_f32(t->dtype, t->data, dst, (size_t)n);
}

/* ---- writing ----------------------------------------------------------- */

void st_writer_init(st_writer *w)
{
    memset(w, 0, sizeof *w);
}

void st_writer_free(st_writer *w)
{
    if (w == NULL)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->entries[i].name);
    free(w->entries);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    st_writer_init(w);
}

int st_writer_add(st_writer *w, const char *name, dt_type dtype, int ndim,
                  const int64_t *shape, const void *data, rt_err *err)
{
    if (name == NULL || name[0] == '\0' || strcmp(name, "__metadata__") == 0)
        return err_set(err, -EINVAL, "tensor \"%s\": expected a non-empty name other than __metadata__",
                       name ? name : "(null)");
    if (dt_size(dtype) == 0)
        return err_set(err, -EINVAL, "tensor %s: invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && shape == NULL))
        return err_set(err, -EINVAL, "tensor %s: %d dimensions, expected 0 to %d", name, ndim, ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return err_set(err, -EINVAL, "tensor %s: shape[%d] is %lld, expected a non-negative size",
                           name, i, (long long)shape[i]);
    uint64_t nbytes;
    if (st_shape_bytes(shape, ndim, dtype, &nbytes) < 0)
        return err_set(err, -EOVERFLOW, "tensor %s: byte count does not fit in 64 bits", name);
    if (nbytes > 0 && data == NULL)
        return err_set(err, -EINVAL, "tensor %s: data is NULL for %llu bytes", name, (unsigned long long)nbytes);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return err_set(err, -EEXIST, "tensor %s: already added to this writer", name);

    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        struct st_wentry *e = realloc(w->entries, (size_t)cap * sizeof *e);
        if (e == NULL)
            return err_set(err, -ENOMEM, "tensor %s: out of memory", name);
        w->entries = e;
        w->cap = cap;
    }
    struct st_wentry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (e->name == NULL)
        return err_set(err, -ENOMEM, "tensor %s: out of memory", name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->nbytes = nbytes;
    e->data = data;
    w->n++;
    return 0;
}

int st_writer_meta(st_writer *w, const char *key, const char *value, rt_err *err)
{
    if (key == NULL || value == NULL)
        return err_set(err, -EINVAL, "metadata: key and value must not be NULL");
    char *v = strdup(value);
    if (v == NULL)
        return err_set(err, -ENOMEM, "metadata %s: out of memory", key);
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        st_meta *m = realloc(w->meta, (size_t)cap * sizeof *m);
        if (m == NULL) {
            free(v);
            return err_set(err, -ENOMEM, "metadata %s: out of memory", key);
        }
        w->meta = m;
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (k == NULL) {
        free(v);
        return err_set(err, -ENOMEM, "metadata %s: out of memory", key);
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return 0;
}

static int st_write_all(int fd, const void *buf, uint64_t len)
{
    const uint8_t *p = buf; /* [len] bytes */
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t r = write(fd, p, chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        p += r;
        len -= (uint64_t)r;
    }
    return 0;
}

/* Writes head and then the data of ents[0..n) to path atomically: tmp file,
 * fsync, rename, fsync of the directory. Removes the tmp file on failure. */
static int st_write_atomic(const char *path, const void *head, size_t head_len,
                           const struct st_wentry *ents, int n, rt_err *err)
{
    int rc = 0, fd = -1, created = 0;
    char *dir = NULL;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (tmp == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = err_set(err, -errno, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    created = 1;
    rc = st_write_all(fd, head, head_len);
    for (int i = 0; i < n && rc == 0; i++) {
        rc = st_write_all(fd, ents[i].data, ents[i].nbytes);
        if (rc < 0) {
            rc = err_set(err, rc, "%s: writing tensor %s to %s: %s", path, ents[i].name, tmp, strerror(-rc));
            goto cleanup;
        }
    }
    if (rc < 0) {
        rc = err_set(err, rc, "%s: writing the header to %s: %s", path, tmp, strerror(-rc));
        goto cleanup;
    }
    if (fsync(fd) < 0) {
        rc = err_set(err, -errno, "%s: fsync of %s: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) {
        rc = err_set(err, -errno, "%s: close of %s: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) < 0) {
        rc = err_set(err, -errno, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    created = 0;

    dir = st_dirname(path);
    if (dir == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = err_set(err, -errno, "%s: cannot open directory %s to fsync it: %s", path, dir, strerror(errno));
        goto cleanup;
    }
    if (fsync(dfd) < 0)
        rc = err_set(err, -errno, "%s: fsync of directory %s: %s", path, dir, strerror(errno));
    close(dfd);

cleanup:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(dir);
    free(tmp);
    return rc;
}

/* Fails the JSON build when v could not be made or set. */
static int st_jset(json_t *obj, const char *key, json_t *v)
{
    return v == NULL || json_object_set_new(obj, key, v) < 0 ? -ENOMEM : 0;
}

int st_header_encode(const char *path, const st_entry *ents, int n, const char *const *meta_kv, size_t align,
                     uint8_t **head, size_t *head_len, rt_err *err)
{
    int rc = 0;
    char *json = NULL;
    *head = NULL;
    json_t *root = json_object();
    if (root == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", path);

    if (meta_kv != NULL && meta_kv[0] != NULL) {
        json_t *meta = json_object();
        rc = st_jset(root, "__metadata__", meta);
        for (int i = 0; rc == 0 && meta_kv[i] != NULL; i += 2) {
            if (meta_kv[i + 1] == NULL) {
                rc = err_set(err, -EINVAL, "%s: metadata key %s has no value (meta_kv ends after a key)",
                             path, meta_kv[i]);
                goto cleanup;
            }
            rc = st_jset(meta, meta_kv[i], json_string(meta_kv[i + 1]));
            if (rc < 0) {
                rc = err_set(err, rc, "%s: metadata key %s: cannot encode (out of memory or not UTF-8)", path,
                             meta_kv[i]);
                goto cleanup;
            }
        }
        if (rc < 0) {
            rc = err_set(err, rc, "%s: out of memory", path);
            goto cleanup;
        }
    }
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const st_entry *e = &ents[i];
        if (e->nbytes > (uint64_t)INT64_MAX - pos) {
            rc = err_set(err, -EFBIG, "%s: tensor %s: data section exceeds 2^63 bytes", path, e->name);
            goto cleanup;
        }
        json_t *ent = json_object();
        json_t *shape = json_array();
        json_t *offs = json_array();
        rc = st_jset(root, e->name, ent);
        if (rc == 0)
            rc = st_jset(ent, "dtype", json_string(dt_name(e->dtype)));
        if (rc == 0)
            rc = st_jset(ent, "shape", shape);
        else
            json_decref(shape);
        if (rc == 0)
            rc = st_jset(ent, "data_offsets", offs);
        else
            json_decref(offs);
        for (int d = 0; d < e->ndim && rc == 0; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) < 0)
                rc = -ENOMEM;
        if (rc == 0 && (json_array_append_new(offs, json_integer((json_int_t)pos)) < 0 ||
                        json_array_append_new(offs, json_integer((json_int_t)(pos + e->nbytes))) < 0))
            rc = -ENOMEM;
        if (rc < 0) {
            rc = err_set(err, rc, "%s: tensor %s: cannot encode the header entry (out of memory or name not UTF-8)",
                         path, e->name);
            goto cleanup;
        }
        pos += e->nbytes;
    }

    json = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (json == NULL) {
        rc = err_set(err, -ENOMEM, "%s: cannot encode the header", path);
        goto cleanup;
    }
    size_t jlen = strlen(json);
    size_t hlen = ((8 + jlen + align - 1) & ~(align - 1)) - 8; /* align: a power of two */
    if (hlen > ST_MAX_HEADER) {
        rc = err_set(err, -EFBIG, "%s: header of %zu bytes exceeds the %u safetensors readers accept", path, hlen,
                     ST_MAX_HEADER);
        goto cleanup;
    }
    *head = malloc(8 + hlen);
    if (*head == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < 8; i++)
        (*head)[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(*head + 8, json, jlen);
    memset(*head + 8 + jlen, ' ', hlen - jlen);
    *head_len = 8 + hlen;

cleanup:
    free(json);
    json_decref(root);
    return rc;
}

/* Writes ents[0..n) with the writer's metadata as one file at path. */
static int st_write_file(const st_writer *w, const struct st_wentry *ents, int n, const char *path, rt_err *err)
{
    int rc = 0;
    uint8_t *head = NULL;                 /* [head_len] length + padded header JSON */
    size_t head_len = 0;
    st_entry *hent = malloc(((size_t)n + 1) * sizeof *hent);
    const char **meta_kv = malloc(((size_t)w->n_meta * 2 + 1) * sizeof *meta_kv); /* {key, value, ..., NULL} */
    if (hent == NULL || meta_kv == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < n; i++)
        hent[i] = (st_entry){.name = ents[i].name, .dtype = ents[i].dtype, .ndim = ents[i].ndim,
                             .shape = ents[i].shape, .nbytes = ents[i].nbytes};
    for (int i = 0; i < w->n_meta; i++) {
        meta_kv[2 * i] = w->meta[i].key;
        meta_kv[2 * i + 1] = w->meta[i].value;
    }
    meta_kv[2 * w->n_meta] = NULL;
    rc = st_header_encode(path, hent, n, meta_kv, 8, &head, &head_len, err);
    if (rc == 0)
        rc = st_write_atomic(path, head, head_len, ents, n, err);

cleanup:
    free(head);
    free(meta_kv);
    free(hent);
    return rc;
}

int st_writer_write(const st_writer *w, const char *path, rt_err *err)
{
    return st_write_file(w, w->entries, w->n, path, err);
}

int st_writer_write_sharded(const st_writer *w, const char *dir,
                            uint64_t max_shard_bytes, rt_err *err)
{
    int rc = 0, n_shards = 1;
    int *start = NULL; /* [n_shards + 1] first entry of each shard */
    char *path = NULL, *json = NULL;
    json_t *root = NULL;
    uint64_t cur = 0, total = 0;

    for (int i = 0, in_shard = 0; i < w->n; i++) {
        uint64_t nb = w->entries[i].nbytes;
        if (in_shard > 0 && nb > 0 && cur + nb > max_shard_bytes) {
            n_shards++;
            cur = 0;
            in_shard = 0;
        }
        cur += nb;
        total += nb;
        in_shard++;
    }
    if (n_shards == 1) {
        path = st_join(dir, ST_SINGLE_NAME);
        if (path == NULL)
            return err_set(err, -ENOMEM, "%s: out of memory", dir);
        rc = st_write_file(w, w->entries, w->n, path, err);
        free(path);
        return rc;
    }
    if (n_shards > 99999)
        return err_set(err, -EINVAL, "%s: %d shards of at most %llu bytes, more than the 99999 file names allow",
                       dir, n_shards, (unsigned long long)max_shard_bytes);

    start = calloc((size_t)n_shards + 1, sizeof *start);
    if (start == NULL)
        return err_set(err, -ENOMEM, "%s: out of memory", dir);
    int s = 0;
    cur = 0;
    for (int i = 0, in_shard = 0; i < w->n; i++) {
        uint64_t nb = w->entries[i].nbytes;
        if (in_shard > 0 && nb > 0 && cur + nb > max_shard_bytes) {
            start[++s] = i;
            cur = 0;
            in_shard = 0;
        }
        cur += nb;
        in_shard++;
    }
    start[n_shards] = w->n;

    root = json_object();
    json_t *meta = json_object();
    json_t *wm = json_object();
    if (root == NULL) {
        json_decref(meta);
        json_decref(wm);
        rc = err_set(err, -ENOMEM, "%s: out of memory", dir);
        goto cleanup;
    }
    rc = st_jset(root, "metadata", meta);
    if (rc == 0)
        rc = st_jset(meta, "total_size", json_integer((json_int_t)total));
    if (rc == 0)
        rc = st_jset(root, "weight_map", wm);
    else
        json_decref(wm);
    if (rc < 0) {
        rc = err_set(err, rc, "%s: out of memory", dir);
        goto cleanup;
    }

    char shard[64];
    for (s = 0; s < n_shards; s++) {
        snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        path = st_join(dir, shard);
        if (path == NULL) {
            rc = err_set(err, -ENOMEM, "%s: out of memory", dir);
            goto cleanup;
        }
        rc = st_write_file(w, w->entries + start[s], start[s + 1] - start[s], path, err);
        free(path);
        path = NULL;
        if (rc < 0)
            goto cleanup;
        for (int i = start[s]; i < start[s + 1]; i++) {
            rc = st_jset(wm, w->entries[i].name, json_string(shard));
            if (rc < 0) {
                rc = err_set(err, rc, "%s: tensor %s: out of memory", dir, w->entries[i].name);
                goto cleanup;
            }
        }
    }

    json = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    path = st_join(dir, ST_INDEX_NAME);
    if (json == NULL || path == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory encoding the index", dir);
        goto cleanup;
    }
    size_t jlen = strlen(json);
    char *nl = realloc(json, jlen + 2);
    if (nl == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", dir);
        goto cleanup;
    }
    json = nl;
    memcpy(json + jlen, "\n", 2);
    rc = st_write_atomic(path, json, jlen + 1, NULL, 0, err);
    if (rc < 0)
        goto cleanup;

    free(path);
    path = st_join(dir, ST_SINGLE_NAME);
    if (path == NULL) {
        rc = err_set(err, -ENOMEM, "%s: out of memory", dir);
        goto cleanup;
    }
    if (unlink(path) < 0 && errno != ENOENT)
        rc = err_set(err, -errno, "%s: cannot remove the stale single-file checkpoint: %s", path, strerror(errno));

cleanup:
    json_decref(root);
    free(json);
    free(path);
    free(start);
    return rc;
}

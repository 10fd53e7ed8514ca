/*
 * run_config: the run configuration of `ramtrain run` (see run_config.h).
 *
 * The YAML text is loaded into one libyaml document. Each `--set a.b=value`
 * is applied to that document before anything is validated: its value is
 * parsed as a small YAML document of its own and its nodes are copied in,
 * replacing the value of an existing key or adding the key (and any missing
 * mappings on the way). Every node an override adds carries the mark line
 * RC_SET_MARK + i, so an error found at it later names "--set <override i>"
 * instead of a line of the file — including errors the data config parser
 * (data.c) reports, whose "origin:line:" prefix is rewritten when the line
 * is such a mark. Validation then walks the document once: unknown keys
 * anywhere are errors, every value is checked for type and range, the
 * model's config.json is read and parsed, and the data mapping, with
 * seq_len and batch_rows added from train.*, goes to
 * data_config_from_yaml_node. Paths are made absolute against the config
 * file's directory, so services started elsewhere read the same files.
 *
 * rc_write puts out every key, defaults filled in, the model config inline
 * as one line of canonical JSON (JSON is YAML flow syntax), strings
 * double-quoted with escapes valid in both JSON and YAML. Loading that text
 * and writing it again gives the same bytes.
 *
 * Threads: none; plain data owned by the caller.
 *
 * Rejected: merging overrides into the parsed struct after validation (an
 * override could then not add a data source, and every key would need a
 * second setter); keeping --set values as strings patched into the text
 * (indentation and flow values make that fragile).
 */
#include "services/common/run_config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "storage/blockstore.h"

#define RC_SET_MARK ((size_t)1 << 40) /* mark line of nodes added by --set i: RC_SET_MARK + i */
#define RC_MAX_FILE (16u << 20)       /* bytes: a run config or config.json larger is a mistake */
#define RC_MAX_DEPTH 64               /* nesting of --set values and inline model configs */
#define RC_MAX_STEPS (1ull << 40)
#define RC_MAX_GRAD_ACCUM 64
#define RC_MAX_PREFETCH 64
#define RC_MAX_THREADS 1024
#define RC_MAX_KEEP 1000000
_Static_assert(RC_MAX_GRAD_ACCUM <= BS_MAX_MICRO, "grad_accum must fit the block store's micro bitmap");

/* ---- growable text ------------------------------------------------------------ */

typedef struct rc_buf {
    char *p;
    size_t n, cap;
    bool oom; /* an append failed; the text is incomplete */
} rc_buf;

static void rb_add(rc_buf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void rb_adds(rc_buf *b, const char *s) { rb_add(b, s, strlen(s)); }

static void rb_printf(rc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rb_printf(rc_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* only short numbers and names go through here */
        return;
    }
    rb_add(b, tmp, (size_t)n);
}

/* Next code point of the UTF-8 text at *s (advanced), or -1 when invalid. */
static long rc_utf8_next(const unsigned char **s)
{
    const unsigned char *p = *s;
    long cp;
    int extra;
    if (p[0] < 0x80) {
        *s = p + 1;
        return p[0];
    }
    if ((p[0] & 0xe0) == 0xc0)
        cp = p[0] & 0x1f, extra = 1;
    else if ((p[0] & 0xf0) == 0xe0)
        cp = p[0] & 0x0f, extra = 2;
    else if ((p[0] & 0xf8) == 0xf0)
        cp = p[0] & 0x07, extra = 3;
    else
        return -1;
    for (int i = 1; i <= extra; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const long min[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *s = p + extra + 1;
    return cp;
}

/* Appends s double-quoted, valid as a JSON string and as a YAML
 * double-quoted scalar: quote and backslash escaped, \n \t \r, and every
 * code point YAML does not print or folds as a line break (C0/C1 controls,
 * DEL, U+0085, U+2028/9, U+FEFF, U+FFFE/F) as \uXXXX. -EILSEQ when s is not
 * UTF-8 (neither format can carry such bytes). */
static int rb_quote(rc_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    rb_add(b, "\"", 1);
    while (*p) {
        const unsigned char *start = p;
        long cp = rc_utf8_next(&p);
        if (cp < 0)
            return -EILSEQ;
        if (cp == '"')
            rb_add(b, "\\\"", 2);
        else if (cp == '\\')
            rb_add(b, "\\\\", 2);
        else if (cp == '\n')
            rb_add(b, "\\n", 2);
        else if (cp == '\t')
            rb_add(b, "\\t", 2);
        else if (cp == '\r')
            rb_add(b, "\\r", 2);
        else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
                 cp == 0xfffe || cp == 0xffff)
            rb_printf(b, "\\u%04lX", cp);
        else
            rb_add(b, (const char *)start, (size_t)(p - start));
    }
    rb_add(b, "\"", 1);
    return 0;
}

/* The shortest "%g" text that reads back as v, without an exponent for
 * integral values below 1e16 ("500000", not "5e+05"). */
static void rc_fmt_double(double v, char *buf, size_t cap)
{
    int first = 1;
    for (double a = fabs(v); a >= 10 && a < 1e16 && first < 17; a /= 10)
        first++;
    for (int prec = first; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* As rc_fmt_double, always with a '.' or an exponent (a JSON real stays real). */
static void rc_fmt_real(double v, char *buf, size_t cap)
{
    rc_fmt_double(v, buf, cap);
    if (strpbrk(buf, ".eEni") == NULL && strlen(buf) + 3 <= cap)
        strcat(buf, ".0");
}

/* ---- files and paths -------------------------------------------------------------- */

/* Reads path into a malloc'd NUL-terminated *text; -errno, or -EFBIG past max. */
static int rc_read_file(const char *path, size_t max, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -errno;
    int rc = 0;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            rc = -EFBIG;
            break;
        }
        if (got == 0) {
            if (ferror(f))
                rc = -EIO;
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* base/p (p unchanged when absolute; leading "./" dropped), malloc'd. */
static char *rc_abs(const char *base, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    if (p[0] == '\0' || strcmp(p, ".") == 0)
        return strdup(base);
    size_t a = strlen(base), b = strlen(p);
    bool slash = a > 0 && base[a - 1] == '/';
    char *out = malloc(a + b + 2);
    if (out == NULL)
        return NULL;
    memcpy(out, base, a);
    if (!slash)
        out[a++] = '/';
    memcpy(out + a, p, b + 1);
    return out;
}

/* In place: "" or the absolute form of *p (freed and replaced). */
static int rc_absolutize(const char *base, char **p)
{
    if (*p == NULL)
        return 0;
    char *a = rc_abs(base, *p);
    if (a == NULL)
        return -ENOMEM;
    free(*p);
    *p = a;
    return 0;
}

/* ---- YAML access and messages ----------------------------------------------------- */

typedef struct rc_ctx {
    yaml_document_t *doc;
    const char *origin;   /* the file's name in messages */
    const char *base_dir; /* absolute */
    char *const *sets;    /* the overrides, [n_sets] */
    int n_sets;
    rt_err *err;
} rc_ctx;

static yaml_node_t *rc_node(const rc_ctx *c, int id)
{
    return id > 0 ? yaml_document_get_node(c->doc, id) : NULL;
}

/* "origin:line", "--set a.b=v" for a node an override added, or "origin". */
static void rc_where(const rc_ctx *c, const yaml_node_t *n, char *buf, size_t cap)
{
    if (n == NULL)
        snprintf(buf, cap, "%s", c->origin);
    else if (n->start_mark.line >= RC_SET_MARK && n->start_mark.line - RC_SET_MARK < (size_t)c->n_sets)
        snprintf(buf, cap, "--set %s", c->sets[n->start_mark.line - RC_SET_MARK]);
    else
        snprintf(buf, cap, "%s:%zu", c->origin, n->start_mark.line + 1);
}

static int rc_err(const rc_ctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "where: key: message" (or "where: message" without a key); -EINVAL. */
static int rc_err(const rc_ctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char where[400], msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rc_where(c, n, where, sizeof where);
    if (key != NULL)
        return err_set(c->err, -EINVAL, "%s: %s: %s", where, key, msg);
    return err_set(c->err, -EINVAL, "%s: %s", where, msg);
}

/* data.c's messages start "origin:line:"; when the line is an override's
 * mark, name the override instead. */
static void rc_fix_set_where(const rc_ctx *c)
{
    char *m = c->err ? c->err->msg : NULL;
    size_t ol = strlen(c->origin);
    if (m == NULL || strncmp(m, c->origin, ol) != 0 || m[ol] != ':')
        return;
    char *end;
    unsigned long long line = strtoull(m + ol + 1, &end, 10);
    if (end == m + ol + 1 || *end != ':' || line == 0 || line - 1 < RC_SET_MARK ||
        line - 1 - RC_SET_MARK >= (unsigned long long)c->n_sets)
        return;
    char out[sizeof c->err->msg];
    int h = snprintf(out, sizeof out, "--set %s:", c->sets[line - 1 - RC_SET_MARK]);
    if (h < 0 || (size_t)h >= sizeof out)
        return;
    size_t rl = strlen(end + 1);
    if (rl > sizeof out - 1 - (size_t)h)
        rl = sizeof out - 1 - (size_t)h;
    memcpy(out + h, end + 1, rl);
    out[(size_t)h + rl] = '\0';
    memcpy(m, out, sizeof out);
}

static const char *rc_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "scalar";
    case YAML_SEQUENCE_NODE: return "list";
    case YAML_MAPPING_NODE: return "mapping";
    default: return "empty node";
    }
}

static bool rc_is_null(const yaml_node_t *n)
{
    if (n == NULL)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static const char *rc_scalar(const rc_ctx *c, const yaml_node_t *n, const char *key, const char *expected)
{
    if (n->type != YAML_SCALAR_NODE) {
        rc_err(c, n, key, "is a %s, expected %s", rc_kind(n), expected);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static int rc_get_u64(const rc_ctx *c, const yaml_node_t *n, const char *key, uint64_t lo, uint64_t hi,
                      uint64_t *out)
{
    const char *s = rc_scalar(c, n, key, "an integer");
    if (s == NULL)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE) {
        if (s[0] == '-' && end != s && *end == '\0')
            return rc_err(c, n, key, "%s is out of range, expected %llu to %llu", s, (unsigned long long)lo,
                          (unsigned long long)hi);
        return rc_err(c, n, key, "\"%s\" is not an integer", s);
    }
    if (v < lo || v > hi)
        return rc_err(c, n, key, "%llu is out of range, expected %llu to %llu", v, (unsigned long long)lo,
                      (unsigned long long)hi);
    *out = v;
    return 0;
}

static int rc_get_u32(const rc_ctx *c, const yaml_node_t *n, const char *key, uint32_t lo, uint32_t hi,
                      uint32_t *out)
{
    uint64_t v;
    int rc = rc_get_u64(c, n, key, lo, hi, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

static int rc_get_double(const rc_ctx *c, const yaml_node_t *n, const char *key, double *out)
{
    const char *s = rc_scalar(c, n, key, "a number");
    if (s == NULL)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || strpbrk(s, "xXnN") != NULL)
        return rc_err(c, n, key, "\"%s\" is not a number", s);
    *out = v;
    return 0;
}

/* A number in a range: lo < v (or lo <= v with lo_incl), v < hi (v <= hi
 * with hi_incl); expected says it in words for the message. */
static int rc_get_range(const rc_ctx *c, const yaml_node_t *n, const char *key, double lo, bool lo_incl, double hi,
                        bool hi_incl, const char *expected, double *out)
{
    double v = 0;
    int rc = rc_get_double(c, n, key, &v);
    if (rc < 0)
        return rc;
    if (lo_incl ? v < lo : v <= lo)
        return rc_err(c, n, key, "%s is out of range, expected %s", (const char *)n->data.scalar.value, expected);
    if (hi_incl ? v > hi : v >= hi)
        return rc_err(c, n, key, "%s is out of range, expected %s", (const char *)n->data.scalar.value, expected);
    *out = v;
    return 0;
}

static int rc_get_enum(const rc_ctx *c, const yaml_node_t *n, const char *key, const char *const *names, int count,
                       int *out)
{
    const char *s = rc_scalar(c, n, key, "a name");
    if (s == NULL)
        return -EINVAL;
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char list[256] = "";
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    return rc_err(c, n, key, "\"%s\" is not one of %s", s, list);
}

/* Bytes: a plain integer, or one with a binary K, M, G or T suffix
 * (optionally followed by "iB" or "B": 64G, 64GiB, 64GB are all 64 << 30). */
static int rc_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case '\0': break;
    default: return -EINVAL;
    }
    if (shift > 0) {
        end++;
        if (strcmp(end, "iB") != 0 && strcmp(end, "B") != 0 && end[0] != '\0')
            return -EINVAL;
        if (v > (UINT64_MAX >> shift))
            return -ERANGE;
        v <<= shift;
    }
    *out = v;
    return 0;
}

static int rc_get_size(const rc_ctx *c, const yaml_node_t *n, const char *key, uint64_t max, uint64_t *out)
{
    const char *s = rc_scalar(c, n, key, "a size");
    if (s == NULL)
        return -EINVAL;
    uint64_t v;
    int rc = rc_parse_size(s, &v);
    if (rc == -ERANGE || (rc == 0 && v > max))
        return rc_err(c, n, key, "%s is too large, expected at most %llu bytes", s, (unsigned long long)max);
    if (rc < 0)
        return rc_err(c, n, key, "\"%s\" is not a size, expected bytes as a number, or with K, M, G or T "
                                 "(binary: \"64G\")", s);
    *out = v;
    return 0;
}

/* A non-empty string; a YAML null gives NULL when allow_null. */
static int rc_get_str(const rc_ctx *c, const yaml_node_t *n, const char *key, bool allow_null, char **out)
{
    if (allow_null && rc_is_null(n)) {
        free(*out);
        *out = NULL;
        return 0;
    }
    const char *s = rc_scalar(c, n, key, "a string");
    if (s == NULL)
        return -EINVAL;
    if (s[0] == '\0')
        return rc_err(c, n, key, "is empty, expected a non-empty string");
    char *d = strdup(s);
    if (d == NULL)
        return err_set(c->err, -ENOMEM, "out of memory");
    free(*out);
    *out = d;
    return 0;
}

/* ---- sections ----------------------------------------------------------------------- */

enum { RC_S_MODEL, RC_S_DATA, RC_S_TRAIN, RC_S_COMPUTE, RC_S_PS, RC_S_CKPT, RC_N_SECTIONS };
static const char *const rc_top_keys[] = {"model", "data", "train", "compute", "paramserver", "checkpoint"};

enum { RC_M_PATH, RC_M_CONFIG, RC_M_SEED, RC_M_N };
static const char *const rc_model_keys[] = {"path", "config", "seed"};

enum {
    RC_T_STEPS, RC_T_BATCH, RC_T_SEQ, RC_T_ACCUM, RC_T_LR, RC_T_SCHED, RC_T_WARMUP, RC_T_MIN_LR, RC_T_WD,
    RC_T_BETA1, RC_T_BETA2, RC_T_EPS, RC_T_CLIP, RC_T_N
};
static const char *const rc_train_keys[] = {"steps", "batch_size", "seq_len", "grad_accum", "lr", "schedule",
                                            "warmup", "min_lr", "weight_decay", "beta1", "beta2", "eps", "clip"};

enum { RC_C_DEVICE, RC_C_DTYPE, RC_C_PREFETCH, RC_C_THREADS, RC_C_RESIDENT, RC_C_N };
static const char *const rc_compute_keys[] = {"device", "dtype", "prefetch", "threads", "resident"};

enum { RC_P_BUDGET, RC_P_SPILL, RC_P_THREADS, RC_P_N };
static const char *const rc_ps_keys[] = {"ram_budget", "spill_dir", "threads"};

enum { RC_K_EVERY, RC_K_KEEP, RC_K_N };
static const char *const rc_ckpt_keys[] = {"every", "keep"};

/* The data mapping's keys as the run config takes them: data.c's, without
 * seq_len and batch_rows (those come from train.*). rc_write writes them all. */
static const char *const rc_data_keys[] = {"tokenizer", "seed", "shuffle", "mask_doc_attention", "on_bad_line",
                                           "add_bos", "add_eos", "eos_token", "eos_id", "cache_dir", "sources"};

static const char *const rc_sched_names[] = {"constant", "cosine", "linear"};
static const char *const rc_device_names[] = {"auto", "cpu", "cuda"};
static const char *const rc_dtype_names[] = {"fp32", "bf16"};

const char *rc_schedule_name(rc_schedule s)
{
    return (unsigned)s < 3 ? rc_sched_names[s] : "?";
}

const char *rc_device_name(rc_device d)
{
    return (unsigned)d < 3 ? rc_device_names[d] : "?";
}

static void rc_key_list(const char *const *keys, int n, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? ", " : "", keys[i]);
}

/* Finds the value node id of each of keys[n] in the mapping map_id of
 * section sect (NULL: the top level) into vals[n] (0: not given). A missing
 * or null section has no keys; unknown and repeated keys are errors. */
static int rc_collect(const rc_ctx *c, int map_id, const char *sect, const char *const *keys, int n, int *vals)
{
    char list[512], dotted[256];
    rc_key_list(keys, n, list, sizeof list);
    for (int i = 0; i < n; i++)
        vals[i] = 0;
    yaml_node_t *m = rc_node(c, map_id);
    if (m == NULL || rc_is_null(m))
        return 0;
    if (m->type != YAML_MAPPING_NODE) {
        if (sect == NULL)
            return rc_err(c, m, NULL, "the run config is a %s, expected a mapping with keys %s", rc_kind(m), list);
        return rc_err(c, m, sect, "is a %s, expected a mapping with keys %s", rc_kind(m), list);
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = rc_node(c, p->key);
        if (kn == NULL || rc_node(c, p->value) == NULL)
            return rc_err(c, m, sect, "malformed mapping");
        if (kn->type != YAML_SCALAR_NODE)
            return rc_err(c, kn, sect, "a key is a %s, expected one of %s", rc_kind(kn), list);
        const char *k = (const char *)kn->data.scalar.value;
        snprintf(dotted, sizeof dotted, "%s%s%s", sect ? sect : "", sect ? "." : "", k);
        int ki = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(k, keys[i]) == 0)
                ki = i;
        if (ki < 0)
            return rc_err(c, kn, dotted, "unknown key; expected one of %s", list);
        if (vals[ki] != 0)
            return rc_err(c, kn, dotted, "given twice");
        vals[ki] = p->value;
    }
    return 0;
}

/* ---- --set overrides ------------------------------------------------------------------ */

/* Copies node id of src (and everything under it) into dst: the new id, or
 * a negative errno. */
static int rc_copy_node(yaml_document_t *dst, yaml_document_t *src, int id, int depth)
{
    yaml_node_t *n = yaml_document_get_node(src, id);
    if (n == NULL)
        return -EINVAL;
    if (depth > RC_MAX_DEPTH)
        return -ELOOP;
    int out, k, v;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        out = yaml_document_add_scalar(dst, n->tag, n->data.scalar.value, (int)n->data.scalar.length,
                                       n->data.scalar.style);
        return out > 0 ? out : -ENOMEM;
    case YAML_SEQUENCE_NODE:
        if ((out = yaml_document_add_sequence(dst, n->tag, n->data.sequence.style)) <= 0)
            return -ENOMEM;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            if ((v = rc_copy_node(dst, src, *it, depth + 1)) < 0)
                return v;
            if (!yaml_document_append_sequence_item(dst, out, v))
                return -ENOMEM;
        }
        return out;
    case YAML_MAPPING_NODE:
        if ((out = yaml_document_add_mapping(dst, n->tag, n->data.mapping.style)) <= 0)
            return -ENOMEM;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            if ((k = rc_copy_node(dst, src, p->key, depth + 1)) < 0)
                return k;
            if ((v = rc_copy_node(dst, src, p->value, depth + 1)) < 0)
                return v;
            if (!yaml_document_append_mapping_pair(dst, out, k, v))
                return -ENOMEM;
        }
        return out;
    default:
        return -EINVAL;
    }
}

/* The pair of mapping map whose key is the scalar name, or NULL. */
static yaml_node_pair_t *rc_find_pair(yaml_document_t *doc, int map, const char *name)
{
    yaml_node_t *m = yaml_document_get_node(doc, map);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, name) == 0)
            return p;
    }
    return NULL;
}

/* Adds the pair name: value_id to mapping map; 0 or -ENOMEM. */
static int rc_add_pair(yaml_document_t *doc, int map, const char *name, int value_id)
{
    int k = yaml_document_add_scalar(doc, NULL, (yaml_char_t *)name, -1, YAML_PLAIN_SCALAR_STYLE);
    if (k <= 0 || !yaml_document_append_mapping_pair(doc, map, k, value_id))
        return -ENOMEM;
    return 0;
}

static bool rc_key_path_ok(const char *key)
{
    if (key[0] == '\0' || key[0] == '.')
        return false;
    for (const char *p = key; *p; p++) {
        bool word = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                    *p == '-';
        if (!word && !(*p == '.' && p[1] != '.' && p[1] != '\0'))
            return false;
    }
    return true;
}

/* Applies override idx "a.b.c=value" to doc (see the file comment). */
static int rc_apply_set(yaml_document_t *doc, char *const *sets, int idx, rt_err *err)
{
    const char *ov = sets[idx];
    const char *eq = strchr(ov, '=');
    if (eq == NULL || eq == ov)
        return err_set(err, -EINVAL, "--set %s: expected key=value, e.g. --set train.lr=1e-3", ov);
    char key[256];
    if ((size_t)(eq - ov) >= sizeof key)
        return err_set(err, -EINVAL, "--set %s: the key is too long", ov);
    memcpy(key, ov, (size_t)(eq - ov));
    key[eq - ov] = '\0';
    if (!rc_key_path_ok(key))
        return err_set(err, -EINVAL, "--set %s: \"%s\" is not a key path like train.lr", ov, key);

    yaml_parser_t vp;
    yaml_document_t vdoc;
    if (!yaml_parser_initialize(&vp))
        return err_set(err, -ENOMEM, "out of memory");
    yaml_parser_set_input_string(&vp, (const unsigned char *)(eq + 1), strlen(eq + 1));
    if (!yaml_parser_load(&vp, &vdoc)) {
        int rc = err_set(err, -EINVAL, "--set %s: the value is not valid YAML: %s%s%s", ov,
                         vp.problem ? vp.problem : "unknown problem", vp.context ? " " : "",
                         vp.context ? vp.context : "");
        yaml_parser_delete(&vp);
        return rc;
    }
    yaml_parser_delete(&vp);

    int rc = 0;
    size_t before = (size_t)(doc->nodes.top - doc->nodes.start);
    if (before == 0 && yaml_document_add_mapping(doc, NULL, YAML_BLOCK_MAPPING_STYLE) <= 0) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    yaml_node_t *root = yaml_document_get_node(doc, 1);
    if (root->type != YAML_MAPPING_NODE) {
        rc = err_set(err, -EINVAL, "--set %s: the run config is a %s, not a mapping of keys", ov,
                     root->type == YAML_SEQUENCE_NODE ? "list" : "scalar");
        goto out;
    }
    int cur = 1;
    char *seg = key;
    for (char *dot; (dot = strchr(seg, '.')) != NULL; seg = dot + 1) {
        *dot = '\0';
        yaml_node_pair_t *p = rc_find_pair(doc, cur, seg);
        yaml_node_t *v = p ? yaml_document_get_node(doc, p->value) : NULL;
        if (v != NULL && v->type == YAML_MAPPING_NODE) {
            cur = p->value;
        } else if (p != NULL && !rc_is_null(v)) {
            rc = err_set(err, -EINVAL, "--set %s: %s: is a %s, there is no key %s in it%s", ov, key,
                         v->type == YAML_SEQUENCE_NODE ? "list" : "scalar", dot + 1,
                         v->type == YAML_SEQUENCE_NODE ? " (replace the whole list: --set 'key=[...]')" : "");
            goto out;
        } else {
            int m = yaml_document_add_mapping(doc, NULL, YAML_BLOCK_MAPPING_STYLE);
            if (m <= 0) {
                rc = err_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            if (p != NULL) /* a null value: becomes the mapping (p stays valid: cur's pairs did not move) */
                p->value = m;
            else if ((rc = rc_add_pair(doc, cur, seg, m)) < 0) {
                err_set(err, rc, "out of memory");
                goto out;
            }
            cur = m;
        }
        *dot = '.';
    }
    yaml_node_t *vroot = yaml_document_get_root_node(&vdoc);
    int vid = vroot ? rc_copy_node(doc, &vdoc, 1, 0)
                    : yaml_document_add_scalar(doc, NULL, (yaml_char_t *)"", 0, YAML_PLAIN_SCALAR_STYLE);
    if (vid <= 0) {
        rc = err_set(err, vid == -ELOOP ? -EINVAL : -ENOMEM, "--set %s: %s", ov,
                     vid == -ELOOP ? "the value is nested too deeply" : "out of memory");
        goto out;
    }
    yaml_node_pair_t *p = rc_find_pair(doc, cur, seg);
    if (p != NULL)
        p->value = vid;
    else if ((rc = rc_add_pair(doc, cur, seg, vid)) < 0) {
        err_set(err, rc, "out of memory");
        goto out;
    }
    for (yaml_node_t *n = doc->nodes.start + before; n < doc->nodes.top; n++) {
        n->start_mark.line = n->end_mark.line = RC_SET_MARK + (size_t)idx;
        n->start_mark.column = n->end_mark.column = 0;
    }
out:
    yaml_document_delete(&vdoc);
    return rc;
}

/* ---- model ---------------------------------------------------------------------------- */

static bool rc_all_digits(const char *s)
{
    if (*s < '0' || *s > '9')
        return false;
    while (*s >= '0' && *s <= '9')
        s++;
    return *s == '\0';
}

/* A plain scalar that looks like a JSON-able number: [-+]digits, or
 * [-+](digits[.digits]|.digits)([eE][-+]digits). */
static int rc_number_kind(const char *s)
{
    const char *p = s + (*s == '-' || *s == '+');
    const char *d0 = p;
    while (*p >= '0' && *p <= '9')
        p++;
    bool int_digits = p > d0, frac = false;
    if (*p == '.') {
        p++;
        const char *f0 = p;
        while (*p >= '0' && *p <= '9')
            p++;
        frac = true;
        if (!int_digits && p == f0)
            return 0;
    } else if (!int_digits) {
        return 0;
    }
    bool expo = false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!rc_all_digits(p))
            return 0;
        while (*p)
            p++;
        expo = true;
    }
    if (*p != '\0')
        return 0;
    return frac || expo ? 2 : 1; /* 1: integer, 2: real */
}

/* Appends the JSON form of the YAML node n (the inline model.config). */
static int rc_yaml_json(const rc_ctx *c, const yaml_node_t *n, const char *key, int depth, rc_buf *b)
{
    if (depth > RC_MAX_DEPTH)
        return rc_err(c, n, key, "is nested too deeply");
    if (n->type == YAML_MAPPING_NODE) {
        rb_add(b, "{", 1);
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = rc_node(c, p->key), *vn = rc_node(c, p->value);
            if (kn == NULL || vn == NULL)
                return rc_err(c, n, key, "malformed mapping");
            if (kn->type != YAML_SCALAR_NODE)
                return rc_err(c, kn, key, "a key is a %s, expected a name", rc_kind(kn));
            if (p > n->data.mapping.pairs.start)
                rb_add(b, ", ", 2);
            if (rb_quote(b, (const char *)kn->data.scalar.value) < 0)
                return rc_err(c, kn, key, "a key is not valid UTF-8");
            rb_add(b, ": ", 2);
            int rc = rc_yaml_json(c, vn, key, depth + 1, b);
            if (rc < 0)
                return rc;
        }
        rb_add(b, "}", 1);
        return 0;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        rb_add(b, "[", 1);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            yaml_node_t *vn = rc_node(c, *it);
            if (vn == NULL)
                return rc_err(c, n, key, "malformed list");
            if (it > n->data.sequence.items.start)
                rb_add(b, ", ", 2);
            int rc = rc_yaml_json(c, vn, key, depth + 1, b);
            if (rc < 0)
                return rc;
        }
        rb_add(b, "]", 1);
        return 0;
    }
    if (n->type != YAML_SCALAR_NODE)
        return rc_err(c, n, key, "holds an empty node");
    const char *s = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (rc_is_null(n)) {
            rb_adds(b, "null");
            return 0;
        }
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
            rb_adds(b, "true");
            return 0;
        }
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
            rb_adds(b, "false");
            return 0;
        }
        int kind = rc_number_kind(s);
        char num[64];
        if (kind == 1) {
            errno = 0;
            long long v = strtoll(s, NULL, 10);
            if (errno != ERANGE) {
                rb_printf(b, "%lld", v);
                return 0;
            }
            kind = 2;
        }
        if (kind == 2) {
            double v = strtod(s, NULL);
            if (!isfinite(v))
                return rc_err(c, n, key, "%s is not a finite number", s);
            rc_fmt_real(v, num, sizeof num);
            rb_adds(b, num);
            return 0;
        }
    }
    if (rb_quote(b, s) < 0)
        return rc_err(c, n, key, "a string is not valid UTF-8");
    return 0;
}

/* Reads and parses the config.json at path (absolute); errors "where: key: ...". */
static int rc_model_file(const rc_ctx *c, const yaml_node_t *n, const char *key, const char *path, char **json,
                         model_config *mc)
{
    size_t len;
    int rc = rc_read_file(path, RC_MAX_FILE, json, &len);
    if (rc == -EFBIG)
        return rc_err(c, n, key, "%s: larger than %u bytes, not a config.json", path, RC_MAX_FILE);
    if (rc < 0) {
        char where[400];
        rc_where(c, n, where, sizeof where);
        return err_set(c->err, rc == -ENOENT ? -EINVAL : rc, "%s: %s: %s: cannot read: %s", where, key, path,
                       strerror(-rc));
    }
    if (strlen(*json) != len)
        return rc_err(c, n, key, "%s: holds a NUL byte, not a config.json", path);
    if ((rc = model_config_parse(*json, path, mc, c->err)) < 0) {
        char where[400];
        rc_where(c, n, where, sizeof where);
        return err_prefix(c->err, rc, "%s: %s", where, key);
    }
    return 0;
}

static int rc_parse_model(const rc_ctx *c, int model_id, const int *mv, run_config *r)
{
    yaml_node_t *mn = rc_node(c, model_id);
    yaml_node_t *pn = rc_node(c, mv[RC_M_PATH]), *cn = rc_node(c, mv[RC_M_CONFIG]);
    bool have_path = pn != NULL && !rc_is_null(pn), have_config = cn != NULL && !rc_is_null(cn);
    int rc;
    if (mv[RC_M_SEED] && (rc = rc_get_u64(c, rc_node(c, mv[RC_M_SEED]), "model.seed", 0, UINT64_MAX,
                                          &r->model_seed)) < 0)
        return rc;
    if (!have_path && !have_config)
        return rc_err(c, mn, "model", "give model.path (a Hugging Face model directory) or model.config "
                                      "(a config.json path, or an inline mapping of its keys)");
    char *json = NULL;
    if (have_path) {
        char *given = NULL;
        if ((rc = rc_get_str(c, pn, "model.path", false, &given)) < 0)
            return rc;
        char *joined = rc_abs(c->base_dir, given);
        free(given);
        if (joined == NULL)
            return err_set(c->err, -ENOMEM, "out of memory");
        r->model_path = realpath(joined, NULL);
        struct stat st;
        if (r->model_path == NULL || stat(r->model_path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = rc_err(c, pn, "model.path", "%s: %s, expected a Hugging Face model directory (with config.json)",
                        joined, r->model_path == NULL ? strerror(errno) : "not a directory");
            free(joined);
            return rc;
        }
        free(joined);
        char *cfg_path = rc_abs(r->model_path, "config.json");
        if (cfg_path == NULL)
            return err_set(c->err, -ENOMEM, "out of memory");
        rc = rc_model_file(c, pn, "model.path", cfg_path, &r->model_config_json, &r->model);
        free(cfg_path);
        if (rc < 0)
            return rc;
    }
    if (have_config && cn->type == YAML_MAPPING_NODE) {
        rc_buf b = {0};
        model_config inline_cfg;
        if ((rc = rc_yaml_json(c, cn, "model.config", 0, &b)) < 0) {
            free(b.p);
            return rc;
        }
        if (b.oom) {
            free(b.p);
            return err_set(c->err, -ENOMEM, "out of memory");
        }
        json = b.p;
        if ((rc = model_config_parse(json, "model.config", &inline_cfg, c->err)) < 0) {
            char where[400];
            rc_where(c, cn, where, sizeof where);
            free(json);
            return err_prefix(c->err, rc, "%s", where);
        }
        if (have_path) {
            /* a resolved config written by rc_write: the inline copy must still
             * describe the directory's model */
            free(json);
            if (model_config_hash(&inline_cfg) != model_config_hash(&r->model))
                return rc_err(c, cn, "model.config", "does not describe the model of model.path (%s/config.json); "
                                                     "give only one of them", r->model_path);
            return 0;
        }
        r->model_config_json = json;
        r->model = inline_cfg;
        return 0;
    }
    if (have_config) {
        if (cn->type != YAML_SCALAR_NODE)
            return rc_err(c, cn, "model.config", "is a %s, expected a config.json path or a mapping of its keys",
                          rc_kind(cn));
        if (have_path)
            return rc_err(c, cn, "model.config", "model.path is given too: give one of them (model.path reads "
                                                 "the directory's config.json)");
        char *given = NULL;
        if ((rc = rc_get_str(c, cn, "model.config", false, &given)) < 0)
            return rc;
        char *joined = rc_abs(c->base_dir, given);
        free(given);
        if (joined == NULL)
            return err_set(c->err, -ENOMEM, "out of memory");
        char *real = realpath(joined, NULL);
        struct stat st;
        if (real == NULL || stat(real, &st) != 0) {
            rc = rc_err(c, cn, "model.config", "%s: %s, expected a config.json file", joined, strerror(errno));
            free(joined);
            free(real);
            return rc;
        }
        free(joined);
        if (S_ISDIR(st.st_mode)) {
            r->model_config_path = rc_abs(real, "config.json");
            free(real);
            if (r->model_config_path == NULL)
                return err_set(c->err, -ENOMEM, "out of memory");
        } else {
            r->model_config_path = real;
        }
        return rc_model_file(c, cn, "model.config", r->model_config_path, &r->model_config_json, &r->model);
    }
    return 0;
}

/* ---- the other sections ---------------------------------------------------------------- */

static int rc_parse_train(const rc_ctx *c, const int *tv, run_config *r)
{
    int rc = 0, v;
    for (int i = 0; i < RC_T_N && rc == 0; i++) {
        yaml_node_t *n = rc_node(c, tv[i]);
        if (n == NULL)
            continue;
        char key[64];
        snprintf(key, sizeof key, "train.%s", rc_train_keys[i]);
        uint64_t u;
        switch (i) {
        case RC_T_STEPS: rc = rc_get_u64(c, n, key, 1, RC_MAX_STEPS, &r->steps); break;
        case RC_T_BATCH:
            if ((rc = rc_get_u64(c, n, key, 1, 1 << 20, &u)) == 0)
                r->batch_size = (int64_t)u;
            break;
        case RC_T_SEQ:
            if ((rc = rc_get_u64(c, n, key, 1, 1 << 24, &u)) == 0)
                r->seq_len = (int64_t)u;
            break;
        case RC_T_ACCUM: rc = rc_get_u32(c, n, key, 1, RC_MAX_GRAD_ACCUM, &r->grad_accum); break;
        case RC_T_LR: rc = rc_get_range(c, n, key, 0, false, INFINITY, false, "a number > 0", &r->lr); break;
        case RC_T_SCHED:
            if ((rc = rc_get_enum(c, n, key, rc_sched_names, 3, &v)) == 0)
                r->schedule = (rc_schedule)v;
            break;
        case RC_T_WARMUP: rc = rc_get_u64(c, n, key, 0, RC_MAX_STEPS, &r->warmup); break;
        case RC_T_MIN_LR: rc = rc_get_range(c, n, key, 0, true, INFINITY, false, "a number >= 0", &r->min_lr); break;
        case RC_T_WD:
            rc = rc_get_range(c, n, key, 0, true, INFINITY, false, "a number >= 0", &r->weight_decay);
            break;
        case RC_T_BETA1: rc = rc_get_range(c, n, key, 0, true, 1, false, "0 <= beta1 < 1", &r->beta1); break;
        case RC_T_BETA2: rc = rc_get_range(c, n, key, 0, true, 1, false, "0 <= beta2 < 1", &r->beta2); break;
        case RC_T_EPS: rc = rc_get_range(c, n, key, 0, false, INFINITY, false, "a number > 0", &r->eps); break;
        case RC_T_CLIP:
            rc = rc_get_range(c, n, key, 0, true, INFINITY, false, "a number >= 0 (0: no clipping)", &r->clip);
            break;
        }
    }
    if (rc == 0 && r->schedule != RC_SCHED_CONSTANT && r->min_lr > r->lr) {
        char a[32], b[32];
        rc_fmt_double(r->min_lr, a, sizeof a);
        rc_fmt_double(r->lr, b, sizeof b);
        yaml_node_t *n = rc_node(c, tv[RC_T_MIN_LR]) ? rc_node(c, tv[RC_T_MIN_LR]) : rc_node(c, tv[RC_T_LR]);
        rc = rc_err(c, n, "train.min_lr", "%s is more than train.lr %s: the %s schedule decays from lr to min_lr",
                    a, b, rc_sched_names[r->schedule]);
    }
    return rc;
}

static int rc_parse_compute(const rc_ctx *c, const int *cv, run_config *r)
{
    int rc = 0, v;
    for (int i = 0; i < RC_C_N && rc == 0; i++) {
        yaml_node_t *n = rc_node(c, cv[i]);
        if (n == NULL)
            continue;
        char key[64];
        snprintf(key, sizeof key, "compute.%s", rc_compute_keys[i]);
        switch (i) {
        case RC_C_DEVICE:
            if ((rc = rc_get_enum(c, n, key, rc_device_names, 3, &v)) == 0)
                r->device = (rc_device)v;
            break;
        case RC_C_DTYPE:
            if ((rc = rc_get_enum(c, n, key, rc_dtype_names, 2, &v)) == 0)
                r->bf16 = v == 1;
            break;
        case RC_C_PREFETCH: rc = rc_get_u32(c, n, key, 1, RC_MAX_PREFETCH, &r->prefetch); break;
        case RC_C_THREADS: rc = rc_get_u32(c, n, key, 0, RC_MAX_THREADS, &r->threads); break;
        case RC_C_RESIDENT: {
            const char *s = rc_scalar(c, n, key, "auto, none, all or a size");
            uint64_t bytes;
            if (s == NULL)
                rc = -EINVAL;
            else if (strcmp(s, "auto") == 0)
                r->resident = RC_RESIDENT_AUTO;
            else if (strcmp(s, "all") == 0)
                r->resident = RC_RESIDENT_ALL;
            else if (strcmp(s, "none") == 0)
                r->resident = 0;
            else if (rc_parse_size(s, &bytes) == 0 && bytes <= INT64_MAX)
                r->resident = (int64_t)bytes;
            else
                rc = rc_err(c, n, key, "\"%s\" is not auto, none, all or a size (bytes, or with K, M, G or T: "
                                       "\"8G\")", s);
            break;
        }
        }
    }
    return rc;
}

static int rc_parse_ps(const rc_ctx *c, const int *pv, run_config *r)
{
    int rc = 0;
    yaml_node_t *n;
    if ((n = rc_node(c, pv[RC_P_BUDGET])) && (rc = rc_get_size(c, n, "paramserver.ram_budget", INT64_MAX,
                                                               &r->ram_budget)) < 0)
        return rc;
    if ((n = rc_node(c, pv[RC_P_SPILL])) &&
        ((rc = rc_get_str(c, n, "paramserver.spill_dir", true, &r->spill_dir)) < 0 ||
         (rc = rc_absolutize(c->base_dir, &r->spill_dir)) < 0))
        return rc == -ENOMEM ? err_set(c->err, rc, "out of memory") : rc;
    if ((n = rc_node(c, pv[RC_P_THREADS])) &&
        (rc = rc_get_u32(c, n, "paramserver.threads", 0, RC_MAX_THREADS, &r->ps_threads)) < 0)
        return rc;
    return 0;
}

static int rc_parse_ckpt(const rc_ctx *c, const int *kv, run_config *r)
{
    int rc;
    yaml_node_t *n;
    if ((n = rc_node(c, kv[RC_K_EVERY])) && (rc = rc_get_u64(c, n, "checkpoint.every", 0, RC_MAX_STEPS,
                                                             &r->ckpt_every)) < 0)
        return rc;
    if ((n = rc_node(c, kv[RC_K_KEEP])) && (rc = rc_get_u32(c, n, "checkpoint.keep", 0, RC_MAX_KEEP,
                                                            &r->ckpt_keep)) < 0)
        return rc;
    return 0;
}

/* The data mapping: checked for keys the run config does not take, given
 * seq_len and batch_rows from train.*, parsed by data.c, paths made absolute. */
static int rc_parse_data(const rc_ctx *c, int data_id, run_config *r)
{
    yaml_node_t *dn = rc_node(c, data_id);
    char list[512];
    rc_key_list(rc_data_keys, (int)(sizeof rc_data_keys / sizeof *rc_data_keys), list, sizeof list);
    if (dn == NULL || rc_is_null(dn))
        return rc_err(c, dn, "data", "missing: a mapping with sources (and %s)", list);
    if (dn->type != YAML_MAPPING_NODE)
        return rc_err(c, dn, "data", "is a %s, expected a mapping with keys %s", rc_kind(dn), list);
    for (yaml_node_pair_t *p = dn->data.mapping.pairs.start; p < dn->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = rc_node(c, p->key);
        if (kn == NULL || kn->type != YAML_SCALAR_NODE)
            continue; /* data.c reports it */
        const char *k = (const char *)kn->data.scalar.value;
        char dotted[256];
        snprintf(dotted, sizeof dotted, "data.%s", k);
        if (strcmp(k, "seq_len") == 0)
            return rc_err(c, kn, dotted, "is set by train.seq_len in a run config; give it there");
        if (strcmp(k, "batch_rows") == 0)
            return rc_err(c, kn, dotted, "is set by train.batch_size in a run config; give it there");
        bool known = false;
        for (size_t i = 0; i < sizeof rc_data_keys / sizeof *rc_data_keys; i++)
            known |= strcmp(k, rc_data_keys[i]) == 0;
        if (!known)
            return rc_err(c, kn, dotted, "unknown key; expected one of %s", list);
    }
    char seq[32], rows[32];
    snprintf(seq, sizeof seq, "%lld", (long long)r->seq_len);
    snprintf(rows, sizeof rows, "%lld", (long long)r->batch_size);
    int sv = yaml_document_add_scalar(c->doc, NULL, (yaml_char_t *)seq, -1, YAML_PLAIN_SCALAR_STYLE);
    int rv = yaml_document_add_scalar(c->doc, NULL, (yaml_char_t *)rows, -1, YAML_PLAIN_SCALAR_STYLE);
    if (sv <= 0 || rv <= 0 || rc_add_pair(c->doc, data_id, "seq_len", sv) < 0 ||
        rc_add_pair(c->doc, data_id, "batch_rows", rv) < 0)
        return err_set(c->err, -ENOMEM, "out of memory");
    dn = rc_node(c, data_id); /* the nodes may have moved */
    int rc = data_config_from_yaml_node(c->doc, dn, c->origin, c->base_dir, "data", &r->data, c->err);
    if (rc < 0) {
        rc_fix_set_where(c);
        return rc;
    }
    data_config *d = r->data;
    if ((rc = rc_absolutize(c->base_dir, &d->tokenizer)) < 0 || (rc = rc_absolutize(c->base_dir, &d->cache_dir)) < 0)
        return err_set(c->err, rc, "out of memory");
    for (int i = 0; i < d->n_sources; i++)
        if ((rc = rc_absolutize(c->base_dir, &d->sources[i].path)) < 0)
            return err_set(c->err, rc, "out of memory");
    char *base = strdup(c->base_dir);
    if (base == NULL)
        return err_set(c->err, -ENOMEM, "out of memory");
    free(d->base_dir);
    d->base_dir = base;
    return 0;
}

/* ---- loading ---------------------------------------------------------------------------- */

static void rc_defaults(run_config *r)
{
    r->steps = 100;
    r->batch_size = 8;
    r->seq_len = 128;
    r->grad_accum = 1;
    r->lr = 3e-4;
    r->schedule = RC_SCHED_COSINE;
    r->warmup = 0;
    r->min_lr = 0;
    r->weight_decay = 0.1;
    r->beta1 = 0.9;
    r->beta2 = 0.95;
    r->eps = 1e-8;
    r->clip = 1.0;
    r->device = RC_DEV_AUTO;
    r->bf16 = false;
    r->prefetch = 2;
    r->threads = 0;
    r->resident = RC_RESIDENT_AUTO;
    r->ram_budget = 0;
    r->spill_dir = NULL;
    r->ps_threads = 0;
    r->ckpt_every = 0;
    r->ckpt_keep = 3;
    r->model_seed = 0;
}

void rc_free(run_config *c)
{
    if (c == NULL)
        return;
    free(c->origin);
    free(c->model_path);
    free(c->model_config_path);
    free(c->model_config_json);
    data_config_free(c->data);
    free(c->spill_dir);
    free(c);
}

static int rc_validate(const rc_ctx *c, run_config *r)
{
    int top[RC_N_SECTIONS], mv[RC_M_N], tv[RC_T_N], cv[RC_C_N], pv[RC_P_N], kv[RC_K_N];
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (root == NULL)
        return rc_err(c, NULL, NULL, "empty, expected a mapping with model, data and train (and compute, "
                                     "paramserver, checkpoint)");
    int rc;
    if ((rc = rc_collect(c, 1, NULL, rc_top_keys, RC_N_SECTIONS, top)) < 0 ||
        (rc = rc_collect(c, top[RC_S_MODEL], "model", rc_model_keys, RC_M_N, mv)) < 0 ||
        (rc = rc_collect(c, top[RC_S_TRAIN], "train", rc_train_keys, RC_T_N, tv)) < 0 ||
        (rc = rc_collect(c, top[RC_S_COMPUTE], "compute", rc_compute_keys, RC_C_N, cv)) < 0 ||
        (rc = rc_collect(c, top[RC_S_PS], "paramserver", rc_ps_keys, RC_P_N, pv)) < 0 ||
        (rc = rc_collect(c, top[RC_S_CKPT], "checkpoint", rc_ckpt_keys, RC_K_N, kv)) < 0)
        return rc;
    rc_defaults(r);
    if ((rc = rc_parse_train(c, tv, r)) < 0 || (rc = rc_parse_model(c, top[RC_S_MODEL], mv, r)) < 0)
        return rc;
    if (r->seq_len > r->model.max_pos) {
        yaml_node_t *n = rc_node(c, tv[RC_T_SEQ]);
        return rc_err(c, n, "train.seq_len", "%lld is more than the model's max_position_embeddings %lld%s",
                      (long long)r->seq_len, (long long)r->model.max_pos, n ? "" : " (128 when not given)");
    }
    if ((rc = rc_parse_compute(c, cv, r)) < 0 || (rc = rc_parse_ps(c, pv, r)) < 0 ||
        (rc = rc_parse_ckpt(c, kv, r)) < 0 || (rc = rc_parse_data(c, top[RC_S_DATA], r)) < 0)
        return rc;
    return 0;
}

int rc_load_text(const char *text, size_t len, const char *origin, const char *base_dir, char *const *overrides,
                 int n_overrides, run_config **out, rt_err *err)
{
    if (origin == NULL)
        origin = "<string>";
    if (n_overrides < 0 || (n_overrides > 0 && overrides == NULL))
        return err_set(err, -EINVAL, "rc_load_text: bad override list");
    char *base = realpath(base_dir ? base_dir : ".", NULL);
    if (base == NULL)
        return err_set(err, -errno, "%s: the config's directory %s: %s", origin, base_dir ? base_dir : ".",
                       strerror(errno));
    run_config *r = calloc(1, sizeof *r);
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_parser = false, have_doc = false;
    int rc = 0;
    if (r == NULL || (r->origin = strdup(origin)) == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (!yaml_parser_initialize(&parser)) {
        rc = err_set(err, -ENOMEM, "%s: cannot initialise the YAML parser", origin);
        goto cleanup;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = err_set(err, -EINVAL, "%s:%zu: YAML syntax error: %s%s%s", origin, parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "unknown problem", parser.context ? " " : "",
                     parser.context ? parser.context : "");
        goto cleanup;
    }
    have_doc = true;
    for (int i = 0; i < n_overrides; i++)
        if ((rc = rc_apply_set(&doc, overrides, i, err)) < 0)
            goto cleanup;
    rc_ctx c = {.doc = &doc, .origin = origin, .base_dir = base, .sets = overrides, .n_sets = n_overrides,
                .err = err};
    rc = rc_validate(&c, r);
cleanup:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    free(base);
    if (rc < 0) {
        rc_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int rc_load_file(const char *path, char *const *overrides, int n_overrides, run_config **out, rt_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = rc_read_file(path, RC_MAX_FILE, &text, &len);
    if (rc == -EFBIG)
        return err_set(err, -EINVAL, "%s: larger than %u bytes, not a run config", path, RC_MAX_FILE);
    if (rc < 0)
        return err_set(err, rc, "%s: cannot read the run config: %s", path, strerror(-rc));
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        rc = err_set(err, -ENOMEM, "out of memory");
    else
        rc = rc_load_text(text, len, path, dir, overrides, n_overrides, out, err);
    free(dir);
    free(text);
    return rc;
}

/* ---- writing --------------------------------------------------------------------------- */

/* Canonical one-line JSON of j (object order kept, reals shortest). */
static int rc_json_emit(rc_buf *b, json_t *j, int depth)
{
    if (depth > RC_MAX_DEPTH)
        return -ELOOP;
    char num[64];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        bool first = true;
        rb_add(b, "{", 1);
        json_object_foreach(j, k, v) {
            if (!first)
                rb_add(b, ", ", 2);
            first = false;
            if (rb_quote(b, k) < 0)
                return -EILSEQ;
            rb_add(b, ": ", 2);
            int rc = rc_json_emit(b, v, depth + 1);
            if (rc < 0)
                return rc;
        }
        rb_add(b, "}", 1);
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        rb_add(b, "[", 1);
        json_array_foreach(j, i, v) {
            if (i > 0)
                rb_add(b, ", ", 2);
            int rc = rc_json_emit(b, v, depth + 1);
            if (rc < 0)
                return rc;
        }
        rb_add(b, "]", 1);
        return 0;
    }
    case JSON_STRING: return rb_quote(b, json_string_value(j));
    case JSON_INTEGER: rb_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(j)); return 0;
    case JSON_REAL:
        rc_fmt_real(json_real_value(j), num, sizeof num);
        rb_adds(b, num);
        return 0;
    case JSON_TRUE: rb_adds(b, "true"); return 0;
    case JSON_FALSE: rb_adds(b, "false"); return 0;
    default: rb_adds(b, "null"); return 0;
    }
}

static void rb_double(rc_buf *b, double v)
{
    char num[64];
    rc_fmt_double(v, num, sizeof num);
    rb_adds(b, num);
}

/* A size with the largest binary suffix that divides it ("64G"). */
static void rb_size(rc_buf *b, uint64_t v)
{
    static const char suffix[] = "KMGT";
    int s = -1;
    while (v != 0 && s < 3 && (v & 1023) == 0) {
        v >>= 10;
        s++;
    }
    if (s >= 0)
        rb_printf(b, "%llu%c", (unsigned long long)v, suffix[s]);
    else
        rb_printf(b, "%llu", (unsigned long long)v);
}

/* "key: "quoted"\n" or "key: null\n"; -EILSEQ for a string that is not UTF-8. */
static int rb_str_line(rc_buf *b, const char *indent, const char *key, const char *s)
{
    rb_printf(b, "%s%s: ", indent, key);
    if (s == NULL)
        rb_adds(b, "null");
    else if (rb_quote(b, s) < 0)
        return -EILSEQ;
    rb_add(b, "\n", 1);
    return 0;
}

int rc_to_yaml(const run_config *c, char **text, size_t *len, rt_err *err)
{
    rc_buf b = {0};
    int rc = 0;
    json_error_t jerr;
    json_t *mj = c->model_config_json ? json_loads(c->model_config_json, 0, &jerr) : NULL;
    const data_config *d = c->data;
    if (mj == NULL || d == NULL) {
        json_decref(mj);
        if (d == NULL || c->model_config_json == NULL)
            return err_set(err, -EINVAL, "rc_write: the config has no %s",
                           d == NULL ? "data config" : "model config");
        return err_set(err, -EINVAL, "rc_write: model_config_json: not valid JSON: %s (line %d)", jerr.text,
                       jerr.line);
    }
    rb_adds(&b, "# ramtrain run configuration, resolved: every key with its value, paths absolute\n");
    rb_adds(&b, "model:\n");
    if (c->model_path && (rc = rb_str_line(&b, "  ", "path", c->model_path)) < 0)
        goto out;
    rb_adds(&b, "  config: ");
    if ((rc = rc_json_emit(&b, mj, 0)) < 0)
        goto out;
    rb_printf(&b, "\n  seed: %llu\n", (unsigned long long)c->model_seed);

    rb_adds(&b, "data:\n");
    if ((rc = rb_str_line(&b, "  ", "tokenizer", d->tokenizer)) < 0)
        goto out;
    rb_printf(&b, "  seed: %llu\n", (unsigned long long)d->seed);
    rb_printf(&b, "  shuffle: %s\n", d->shuffle ? "true" : "false");
    rb_printf(&b, "  mask_doc_attention: %s\n", d->mask_doc_attention ? "true" : "false");
    rb_printf(&b, "  on_bad_line: %s\n", d->skip_bad_lines ? "skip" : "fail");
    rb_printf(&b, "  add_bos: %s\n", d->add_bos ? "true" : "false");
    rb_printf(&b, "  add_eos: %s\n", d->add_eos ? "true" : "false");
    if ((rc = rb_str_line(&b, "  ", "eos_token", d->eos_token)) < 0)
        goto out;
    if (d->eos_id >= 0) /* data.c takes no null here: absent means "not given" */
        rb_printf(&b, "  eos_id: %lld\n", (long long)d->eos_id);
    if ((rc = rb_str_line(&b, "  ", "cache_dir", d->cache_dir)) < 0)
        goto out;
    rb_adds(&b, "  sources:\n");
    for (int i = 0; i < d->n_sources; i++) {
        const data_source_config *s = &d->sources[i];
        if ((rc = rb_str_line(&b, "    - ", "path", s->path)) < 0)
            goto out;
        /* data.c takes neither "auto" nor null for format and chat_format:
         * absent means auto; split applies to text (and auto) sources only */
        if (s->format != DATA_FMT_AUTO)
            rb_printf(&b, "      format: %s\n", data_format_name(s->format));
        if (s->text_field && (rc = rb_str_line(&b, "      ", "text_field", s->text_field)) < 0)
            goto out;
        if (s->chat_format != DATA_CHAT_AUTO)
            rb_printf(&b, "      chat_format: %s\n", data_chat_format_name(s->chat_format));
        if (s->format == DATA_FMT_AUTO || s->format == DATA_FMT_TEXT)
            rb_printf(&b, "      split: %s\n", s->split == DATA_SPLIT_BLANK_LINES ? "blank_lines" : "file");
        if (s->weight > 0) {
            rb_adds(&b, "      weight: ");
            rb_double(&b, s->weight);
            rb_add(&b, "\n", 1);
        }
    }

    rb_adds(&b, "train:\n");
    rb_printf(&b, "  steps: %llu\n", (unsigned long long)c->steps);
    rb_printf(&b, "  batch_size: %lld\n", (long long)c->batch_size);
    rb_printf(&b, "  seq_len: %lld\n", (long long)c->seq_len);
    rb_printf(&b, "  grad_accum: %u\n", c->grad_accum);
    rb_adds(&b, "  lr: ");
    rb_double(&b, c->lr);
    rb_printf(&b, "\n  schedule: %s\n", rc_schedule_name(c->schedule));
    rb_printf(&b, "  warmup: %llu\n", (unsigned long long)c->warmup);
    const struct { const char *k; double v; } nums[] = {
        {"min_lr", c->min_lr}, {"weight_decay", c->weight_decay}, {"beta1", c->beta1},
        {"beta2", c->beta2},   {"eps", c->eps},                   {"clip", c->clip},
    };
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        rb_printf(&b, "  %s: ", nums[i].k);
        rb_double(&b, nums[i].v);
        rb_add(&b, "\n", 1);
    }

    rb_adds(&b, "compute:\n");
    rb_printf(&b, "  device: %s\n", rc_device_name(c->device));
    rb_printf(&b, "  dtype: %s\n", c->bf16 ? "bf16" : "fp32");
    rb_printf(&b, "  prefetch: %u\n", c->prefetch);
    rb_printf(&b, "  threads: %u\n", c->threads);
    rb_adds(&b, "  resident: ");
    if (c->resident == RC_RESIDENT_AUTO)
        rb_adds(&b, "auto");
    else if (c->resident == RC_RESIDENT_ALL)
        rb_adds(&b, "all");
    else if (c->resident == 0)
        rb_adds(&b, "none");
    else
        rb_size(&b, (uint64_t)c->resident);
    rb_adds(&b, "\nparamserver:\n  ram_budget: ");
    rb_size(&b, c->ram_budget);
    rb_add(&b, "\n", 1);
    if ((rc = rb_str_line(&b, "  ", "spill_dir", c->spill_dir)) < 0)
        goto out;
    rb_printf(&b, "  threads: %u\n", c->ps_threads);
    rb_printf(&b, "checkpoint:\n  every: %llu\n  keep: %u\n", (unsigned long long)c->ckpt_every, c->ckpt_keep);
out:
    json_decref(mj);
    if (rc == -EILSEQ || rc == -ELOOP)
        rc = err_set(err, -EINVAL, "rc_write: a string is not valid UTF-8 (or the model config is nested too "
                                   "deeply): YAML cannot hold it");
    else if (rc == 0 && b.oom)
        rc = err_set(err, -ENOMEM, "out of memory");
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    *text = b.p;
    *len = b.n;
    return 0;
}

int rc_write(const run_config *c, const char *path, rt_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = rc_to_yaml(c, &text, &len, err);
    if (rc < 0)
        return rc;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (tmp == NULL) {
        free(text);
        return err_set(err, -ENOMEM, "out of memory");
    }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        rc = err_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    bool ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        rc = err_set(err, -e, "%s: cannot write: %s", tmp, strerror(e));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = err_set(err, -errno, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    free(text);
    return rc;
}

/* ---- the embedded default run ------------------------------------------------------------ */

/* A byte-level Llama of about 3M parameters on the generated story corpus
 * (orchestrator/corpus.c). The byte tokenizer's own EOS is 257, outside a
 * 256-entry vocabulary; documents end with "\n" (eos_id 10) instead, so the
 * token stream is the corpus text with its blank lines removed. */
static const char rc_default_fmt[] =
    "# ramtrain's default run: a small byte-level Llama learning the stories of a\n"
    "# generated corpus. Override any key with --set, e.g. --set train.steps=50.\n"
    "model:\n"
    "  config:\n"
    "    architectures: [LlamaForCausalLM]\n"
    "    model_type: llama\n"
    "    vocab_size: 256\n"
    "    hidden_size: 256\n"
    "    intermediate_size: 688\n"
    "    num_hidden_layers: 4\n"
    "    num_attention_heads: 8\n"
    "    num_key_value_heads: 4\n"
    "    max_position_embeddings: 512\n"
    "    rms_norm_eps: 1.0e-5\n"
    "    rope_theta: 10000.0\n"
    "    initializer_range: 0.02\n"
    "    tie_word_embeddings: true\n"
    "    hidden_act: silu\n"
    "  seed: 0\n"
    "data:\n"
    "  sources:\n"
    "    - {path: %s, format: text, split: blank_lines}\n"
    "  eos_id: 10\n"
    "  shuffle: true\n"
    "  seed: 0\n"
    "train:\n"
    "  steps: 300\n"
    "  batch_size: 8\n"
    "  seq_len: 128\n"
    "  grad_accum: 1\n"
    "  lr: 1.0e-3\n"
    "  schedule: cosine\n"
    "  warmup: 20\n"
    "  min_lr: 1.0e-4\n"
    "  clip: 1.0\n"
    "checkpoint:\n"
    "  every: 100\n"
    "  keep: 2\n";

int rc_default_yaml(const char *corpus_path, char *buf, size_t cap)
{
    rc_buf q = {0};
    if (rb_quote(&q, corpus_path) < 0) {
        free(q.p);
        return -EILSEQ;
    }
    if (q.oom)
        return -ENOMEM;
    int n = snprintf(buf, cap, rc_default_fmt, q.p);
    free(q.p);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return n;
}

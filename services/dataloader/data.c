/*
 * data: data config, index files and packed batches (see data.h).
 *
 * Streams. Each source is a sorted list of files; each file contributes a
 * token stream and the source's stream is their concatenation. Every token
 * carries two bits besides its id: "trained" (the token is a target the loss
 * counts) and "document start". Text-like formats (text, jsonl, alpaca,
 * sharegpt, messages) are tokenized once into an index file holding the
 * stream as packed uint32 entries: id in bits 0..29, trained in bit 30,
 * document start in bit 31 (no tokenizer comes near 2^30 ids). Raw formats
 * (llm.c .bin, .u32) are read in place; their documents end at the EOS id,
 * every token is trained, and their index file holds only counts (tokens,
 * documents, largest id) so that opening validates ids without a scan. A
 * compressed raw file is decompressed once into a packed index.
 *
 * Index files. "<dir>/.ramtrain-cache/<name>.<opts>.idx", where opts is a
 * hash of everything the stream depends on (index version, format and its
 * options, EOS/BOS handling, the tokenizer: its file's bytes, description,
 * special ids and the ids of a probe text). A 4 KiB header (magic, version,
 * the data file's size and mtime in ns, opts hash, counts, a hash of the
 * header itself) is followed by the entries. An index whose header, size,
 * mtime, opts hash or length disagrees is stale and rebuilt; it is written to
 * a temporary name, fsynced and renamed, so readers never see a partial one.
 * When the data directory is not writable, the index goes to
 * $XDG_CACHE_HOME/ramtrain/data/<hash of the directory>/ (cache_dir in the
 * config replaces both). Building reads a file in chunks (32 MiB), cuts each
 * chunk at a document boundary, tokenizes contiguous document ranges on
 * several threads and appends their outputs in order: the index is the same
 * bytes for any thread count.
 *
 * Rows. A source of n tokens has ceil((n - 1) / T) rows; row j is its tokens
 * [jT, jT + T], padded past the end with EOS ids that are never trained and
 * form a document of their own.
 *
 * Mixture and order: global row g = k·B + r maps to (source, row) in O(1).
 * Each source s gets an integer quota q_s of every 65536 consecutive global
 * rows (weights scaled by 65536, largest remainder, at least 1 each; without
 * weights, proportional to the sources' rows). One table of 65536 slots says
 * which source each slot of a block draws from: the sources interleaved by
 * smooth weighted round robin (every prefix within about one row per source
 * of its quota), and with shuffle that arrangement permuted by a seeded
 * Fisher-Yates. Slot i of block b is the (b·q_s + j)-th row drawn from s,
 * where j counts the slots of s before i: the ordinal t of a source's draws
 * grows with g, so each source is read epoch after epoch. Epoch e = t / n_s
 * of a source reads its rows in the order perm_{seed,s,e}(t mod n_s): a
 * Feistel network over the next even power of two (six rounds, splitmix
 * round function), cycle-walked into [0, n_s), a bijection, so every row
 * is read exactly once per epoch, in a fresh order each epoch. Without
 * shuffle the order is the identity, so with one source row g is the
 * stream's tokens [gT, gT + T]. Proportions: exact per block of 65536 rows
 * (up to the 1/65536 rounding); over a prefix, within the round robin's
 * bound, or hypergeometric around the weights when shuffled.
 *
 * Chat data is rendered piece by piece as torchtune does: template text,
 * each message's content and each special token are encoded separately, so
 * the mask follows the pieces exactly; special tokens are the tokenizer's
 * special ids (tok_id). Only the built-in byte tokenizer, which has none of
 * them, spells them as text.
 *
 * Threads: data_open builds on a pool of opts->threads threads; an open
 * pipeline is immutable and data_batch reads it with pread, from any number
 * of threads.
 *
 * Rejected: memory-mapping the streams (a data file truncated under a
 * running loader would be SIGBUS instead of an error); shuffling documents
 * before packing (a per-epoch document order cannot be indexed in O(1) per
 * row without rewriting the stream each epoch; rows are shuffled instead);
 * one index per directory (simpler per file, and a changed file rebuilds
 * only its own index); encoding a whole rendered conversation at once and
 * recovering the mask from offsets (the tokenizer API has no offsets, and
 * piecewise encoding is what the common trainers do).
 */
#include "services/dataloader/data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#include <zstd.h>

#include "services/common/log.h"
#include "services/common/rng.h"
#include "services/dataloader/text_util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "data.c reads little-endian token files and index files in place"
#endif

#define DATA_IDX_MAGIC "RTDATIDX"
#define DATA_IDX_VERSION 1u
#define DATA_IDX_PAYLOAD 4096u     /* bytes: header page; entries start here */
#define DATA_CACHE_SUBDIR ".ramtrain-cache"

#define DATA_ID_MASK 0x3fffffffu   /* packed entry: token id */
#define DATA_TRAIN_BIT 0x40000000u /* packed entry: target is trained */
#define DATA_START_BIT 0x80000000u /* packed entry: first token of a document */

#define DATA_SLOTS 65536u          /* global rows per mixture block */
#define DATA_MAX_SOURCES 1024      /* a source is a glob: plenty; keeps the table build O(65536·S) cheap */
#define DATA_FEISTEL_ROUNDS 6

#define DATA_LLMC_HEADER 1024u     /* bytes: 256 x int32 */
#define DATA_LLMC_MAGIC16 20240520 /* llm.c dev/data/data_common.py, "gpt-2": uint16 ids */
#define DATA_LLMC_VERSION16 1
#define DATA_LLMC_MAGIC32 20240801 /* "llama-3": uint32 ids */
#define DATA_LLMC_VERSION32 7

#define DATA_DEFAULT_CHUNK (32u << 20)  /* bytes of text per tokenizing round */
#define DATA_DEFAULT_OPEN_FILES 256
#define DATA_IO_BUF (1u << 20)          /* bytes: write buffer, raw scan buffer */
#define DATA_WALK_DEPTH 32

enum data_kind {
    DATA_KIND_PACKED = 1, /* entries in the index file */
    DATA_KIND_RAW = 2,    /* ids in the data file; index holds counts only */
};

/* The index file's header; the first DATA_IDX_PAYLOAD bytes of the file hold
 * it, zero-padded. Little-endian, fixed-width fields. */
typedef struct data_idx_hdr {
    char magic[8];         /* DATA_IDX_MAGIC */
    uint32_t version;      /* DATA_IDX_VERSION */
    uint32_t kind;         /* enum data_kind */
    uint64_t src_size;     /* bytes of the data file when indexed */
    int64_t src_mtime_ns;  /* its st_mtim */
    uint64_t opts_hash;    /* tokenizer and format options (file comment) */
    uint64_t n_tokens;     /* entries (packed) or ids (raw) */
    uint64_t n_docs;
    uint64_t n_skipped;    /* bad lines skipped */
    uint32_t max_id;       /* largest id in the stream */
    uint32_t raw_width;    /* raw: bytes per id (2 or 4); packed: 4 */
    uint64_t raw_offset;   /* raw: bytes before the first id in the data file */
    char first_skip[256];  /* "line N: why" of the first skipped line, or "" */
    uint64_t reserved[8];
    uint64_t hdr_hash;     /* data_hash of every byte above */
} data_idx_hdr;
_Static_assert(sizeof(data_idx_hdr) <= DATA_IDX_PAYLOAD, "index header must fit its page");

/* Special tokens of the chat templates. */
enum data_special {
    DATA_SP_BEGIN_OF_TEXT,
    DATA_SP_START_HEADER,
    DATA_SP_END_HEADER,
    DATA_SP_EOT,
    DATA_SP_IM_START,
    DATA_SP_IM_END,
    DATA_SP_N
};
static const char *const data_special_text[DATA_SP_N] = {
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>",        "<|im_start|>",        "<|im_end|>",
};

/* Stanford Alpaca's prompts (tatsu-lab/stanford_alpaca, train.py). */
#define DATA_ALPACA_PREAMBLE_INPUT                                                          \
    "Below is an instruction that describes a task, paired with an input that provides " \
    "further context. Write a response that appropriately completes the request."
#define DATA_ALPACA_PREAMBLE                                                                \
    "Below is an instruction that describes a task. Write a response that appropriately " \
    "completes the request."

/* What one file's stream depends on besides its bytes. */
typedef struct data_fmt {
    data_format format;     /* resolved: never AUTO */
    data_chat_format chat;  /* resolved for chat formats */
    data_split split;
    const char *text_field; /* borrowed from the pipeline */
    bool zst;               /* the file is zstd-compressed */
    bool add_bos, add_eos, skip_bad;
    int32_t bos_id, eos_id; /* -1 when the tokenizer has none */
    int32_t sp[DATA_SP_N];  /* special ids, -1: spelled as text */
} data_fmt;

typedef struct data_file {
    char *path;            /* the data file */
    char *idx_path;        /* its index file (chosen location) */
    data_fmt fmt;
    int kind;              /* enum data_kind */
    int fd;                /* kept open for data_batch, or -1: opened per read */
    uint32_t width;        /* bytes per id read: 4 packed/u32, 2 or 4 llmc */
    uint64_t offset;       /* bytes before the first id in the file read */
    uint64_t n_tokens;
    uint64_t first;        /* position of its first token in the source stream */
    uint64_t n_docs, n_skipped;
    uint32_t max_id;
    char first_skip[256];
    struct stat st;        /* of the data file at data_open */
    uint64_t opts_hash;
    bool built;            /* built by this data_open */
} data_file;

typedef struct data_src {
    data_file *files;      /* [n_files], sorted by path */
    uint32_t n_files;
    uint64_t n_tokens, n_rows;
    uint32_t quota;        /* slots of each DATA_SLOTS block */
} data_src;

struct data_pipeline {
    int64_t T, B;
    uint64_t seed;
    bool shuffle;
    int32_t eos_id, pad_id;
    uint32_t n_src;
    data_src *src;             /* [n_src] */
    uint32_t *slots;           /* [DATA_SLOTS]: source << 16 | ordinal in the block */
    data_stats stats;
    data_source_stats *sstats; /* [n_src] */
    char **paths;              /* [n_src]: configured paths */
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t data_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A 64-bit hash of p[n] chained from h: cache keys, not cryptography. */
static uint64_t data_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t w, len = n;
    for (; n >= 8; b += 8, n -= 8) {
        memcpy(&w, b, 8);
        h = data_mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
    }
    w = 0;
    if (n > 0)
        memcpy(&w, b, n);
    return data_mix64(h ^ w ^ (len << 3)) + 0x632be59bd9b4e019ull;
}

static uint64_t data_hash_str(uint64_t h, const char *s)
{
    return s == NULL ? data_hash(h, "\xff(null)", 7) : data_hash(h, s, strlen(s));
}

static uint64_t data_hash_u64(uint64_t h, uint64_t v) { return data_hash(h, &v, sizeof v); }

static bool data_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *data_join(const char *dir, const char *name)
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

static char *data_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *data_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int64_t data_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int data_read_full(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

/* Entry i of a buffer of w-byte (2 or 4) little-endian token entries. */
static inline uint32_t data_entry_at(const uint8_t *buf, uint32_t w, uint64_t i)
{
    if (w == 2) {
        uint16_t h;
        memcpy(&h, buf + 2 * i, 2);
        return h;
    }
    uint32_t v;
    memcpy(&v, buf + 4 * i, 4);
    return v;
}

/* Growable byte buffer. */
typedef struct data_sbuf {
    char *p;
    size_t n, cap;
} data_sbuf;

static int sbuf_add(data_sbuf *b, const char *s, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
    return 0;
}

static int sbuf_adds(data_sbuf *b, const char *s) { return sbuf_add(b, s, strlen(s)); }

/* Growable array of owned strings. */
typedef struct data_strv {
    char **v;
    size_t n, cap;
} data_strv;

static int strv_push(data_strv *sv, char *s)
{
    if (s == NULL)
        return -ENOMEM;
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (v == NULL) {
            free(s);
            return -ENOMEM;
        }
        sv->v = v;
        sv->cap = cap;
    }
    sv->v[sv->n++] = s;
    return 0;
}

static void strv_free(data_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}

static int data_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- names -------------------------------------------------------------- */

static const char *const data_format_names[] = {
    "auto", "text", "jsonl", "alpaca", "sharegpt", "messages", "llmc", "u32",
};
#define DATA_FORMAT_LIST "text, jsonl, alpaca, sharegpt, messages, llmc, u32"

static const char *const data_chat_names[] = {"auto", "llama3", "chatml", "alpaca"};
#define DATA_CHAT_LIST "llama3, chatml, alpaca"

static const char *const data_split_names[] = {"file", "blank_lines"};

const char *data_format_name(data_format f)
{
    return (unsigned)f < sizeof data_format_names / sizeof *data_format_names ? data_format_names[f] : "?";
}

const char *data_chat_format_name(data_chat_format f)
{
    return (unsigned)f < sizeof data_chat_names / sizeof *data_chat_names ? data_chat_names[f] : "?";
}

static bool data_is_chat(data_format f)
{
    return f == DATA_FMT_ALPACA || f == DATA_FMT_SHAREGPT || f == DATA_FMT_MESSAGES;
}

static bool data_is_raw(data_format f) { return f == DATA_FMT_LLMC || f == DATA_FMT_U32; }

/* Format from a file name: text .txt .text .md, jsonl .jsonl, llmc .bin,
 * u32 .u32, each optionally followed by .zst; AUTO when unknown. */
static data_format data_format_from_name(const char *path)
{
    const char *base = data_basename(path);
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".zst") == 0)
        n -= 4;
    static const struct { const char *ext; data_format f; } map[] = {
        {".txt", DATA_FMT_TEXT}, {".text", DATA_FMT_TEXT}, {".md", DATA_FMT_TEXT},
        {".jsonl", DATA_FMT_JSONL}, {".bin", DATA_FMT_LLMC}, {".u32", DATA_FMT_U32},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        size_t e = strlen(map[i].ext);
        if (n > e && strncmp(base + n - e, map[i].ext, e) == 0)
            return map[i].f;
    }
    return DATA_FMT_AUTO;
}

/* ---- config ------------------------------------------------------------- */

/* Parsing state: where messages point. */
typedef struct data_yctx {
    yaml_document_t *doc;
    const char *origin;
    const char *prefix; /* "" or "data." */
    rt_err *err;
} data_yctx;

static int data_yerr(const data_yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "origin:line: prefixkey: message"; -EINVAL. */
static int data_yerr(const data_yctx *y, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[256];
    if (n != NULL)
        snprintf(where, sizeof where, "%s:%zu", y->origin, n->start_mark.line + 1);
    else
        snprintf(where, sizeof where, "%s", y->origin);
    if (key != NULL && key[0] != '\0')
        return err_set(y->err, -EINVAL, "%s: %s%s: %s", where, y->prefix, key, msg);
    if (y->prefix[0] != '\0') {
        /* the data mapping itself: name it without the trailing dot */
        return err_set(y->err, -EINVAL, "%s: %.*s: %s", where, (int)strlen(y->prefix) - 1, y->prefix, msg);
    }
    return err_set(y->err, -EINVAL, "%s: %s", where, msg);
}

static const char *data_ykind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "scalar";
    case YAML_SEQUENCE_NODE: return "list";
    case YAML_MAPPING_NODE: return "mapping";
    default: return "empty node";
    }
}

/* The scalar's text, or NULL (with an error) when n is not a scalar. */
static const char *data_yscalar(const data_yctx *y, const yaml_node_t *n, const char *key, const char *expected)
{
    if (n->type != YAML_SCALAR_NODE) {
        data_yerr(y, n, key, "is a %s, expected %s", data_ykind(n), expected);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static bool data_ynull(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static int data_yint(const data_yctx *y, const yaml_node_t *n, const char *key, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *s = data_yscalar(y, n, key, "an integer");
    if (s == NULL)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE)
        return data_yerr(y, n, key, "\"%s\" is not an integer", s);
    if (v < min || v > max)
        return data_yerr(y, n, key, "%lld is out of range, expected %lld to %lld", v, (long long)min,
                         (long long)max);
    *out = v;
    return 0;
}

static int data_yu64(const data_yctx *y, const yaml_node_t *n, const char *key, uint64_t *out)
{
    const char *s = data_yscalar(y, n, key, "a non-negative integer");
    if (s == NULL)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || s[0] == '-')
        return data_yerr(y, n, key, "\"%s\" is not a non-negative 64-bit integer", s);
    *out = v;
    return 0;
}

static int data_ybool(const data_yctx *y, const yaml_node_t *n, const char *key, bool *out)
{
    const char *s = data_yscalar(y, n, key, "true or false");
    if (s == NULL)
        return -EINVAL;
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return data_yerr(y, n, key, "\"%s\" is not true or false", s);
}

static int data_ydouble(const data_yctx *y, const yaml_node_t *n, const char *key, double *out)
{
    const char *s = data_yscalar(y, n, key, "a number");
    if (s == NULL)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return data_yerr(y, n, key, "\"%s\" is not a finite number", s);
    *out = v;
    return 0;
}

/* A string value; a YAML null gives NULL when allow_null. */
static int data_ystr(const data_yctx *y, const yaml_node_t *n, const char *key, bool allow_null, char **out)
{
    if (allow_null && data_ynull(n)) {
        free(*out);
        *out = NULL;
        return 0;
    }
    const char *s = data_yscalar(y, n, key, "a string");
    if (s == NULL)
        return -EINVAL;
    if (s[0] == '\0')
        return data_yerr(y, n, key, "is empty, expected a non-empty string");
    char *d = strdup(s);
    if (d == NULL)
        return err_set(y->err, -ENOMEM, "out of memory");
    free(*out);
    *out = d;
    return 0;
}

static int data_yenum(const data_yctx *y, const yaml_node_t *n, const char *key, const char *const *names,
                      int first, int count, const char *list, int *out)
{
    const char *s = data_yscalar(y, n, key, "a string");
    if (s == NULL)
        return -EINVAL;
    for (int i = first; i < count; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return data_yerr(y, n, key, "\"%s\" is not one of %s", s, list);
}

static int data_parse_source(const data_yctx *y, yaml_node_t *n, int idx, data_source_config *src)
{
    char key[96], sub[128];
    snprintf(key, sizeof key, "sources[%d]", idx);
    if (n->type != YAML_MAPPING_NODE)
        return data_yerr(y, n, key, "is a %s, expected a mapping with path, format, weight, ...", data_ykind(n));
    src->line = (int)n->start_mark.line + 1;
    bool have_path = false;
    int rc = 0;
    uint32_t seen = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(y->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(y->doc, p->value);
        if (kn == NULL || vn == NULL)
            return data_yerr(y, n, key, "malformed mapping");
        const char *k = data_yscalar(y, kn, key, "a key name");
        if (k == NULL)
            return -EINVAL;
        static const char *const keys[] = {"path", "format", "text_field", "chat_format", "split", "weight"};
        int ki = -1;
        for (int i = 0; i < 6; i++)
            if (strcmp(k, keys[i]) == 0)
                ki = i;
        snprintf(sub, sizeof sub, "%s.%s", key, k);
        if (ki < 0)
            return data_yerr(y, kn, sub, "unknown key; expected one of path, format, text_field, chat_format, "
                                         "split, weight");
        if (seen & (1u << ki))
            return data_yerr(y, kn, sub, "given twice");
        seen |= 1u << ki;
        int v = 0;
        switch (ki) {
        case 0:
            rc = data_ystr(y, vn, sub, false, &src->path);
            have_path = rc == 0;
            break;
        case 1:
            rc = data_yenum(y, vn, sub, data_format_names, 1, 8, DATA_FORMAT_LIST, &v);
            src->format = (data_format)v;
            break;
        case 2: rc = data_ystr(y, vn, sub, false, &src->text_field); break;
        case 3:
            rc = data_yenum(y, vn, sub, data_chat_names, 1, 4, DATA_CHAT_LIST, &v);
            src->chat_format = (data_chat_format)v;
            break;
        case 4:
            rc = data_yenum(y, vn, sub, data_split_names, 0, 2, "file, blank_lines", &v);
            src->split = (data_split)v;
            break;
        case 5:
            rc = data_ydouble(y, vn, sub, &src->weight);
            if (rc == 0 && !(src->weight > 0))
                rc = data_yerr(y, vn, sub, "%g is not positive", src->weight);
            break;
        }
        if (rc < 0)
            return rc;
    }
    if (!have_path)
        return data_yerr(y, n, key, "has no path");
    if (src->text_field && src->format != DATA_FMT_AUTO && src->format != DATA_FMT_JSONL) {
        snprintf(sub, sizeof sub, "%s.text_field", key);
        return data_yerr(y, n, sub, "only applies to format jsonl, not %s", data_format_name(src->format));
    }
    if (src->chat_format != DATA_CHAT_AUTO && src->format != DATA_FMT_AUTO && !data_is_chat(src->format)) {
        snprintf(sub, sizeof sub, "%s.chat_format", key);
        return data_yerr(y, n, sub, "only applies to formats alpaca, sharegpt and messages, not %s",
                         data_format_name(src->format));
    }
    if ((seen & (1u << 4)) && src->format != DATA_FMT_AUTO && src->format != DATA_FMT_TEXT) {
        snprintf(sub, sizeof sub, "%s.split", key);
        return data_yerr(y, n, sub, "only applies to format text, not %s", data_format_name(src->format));
    }
    return 0;
}

void data_config_free(data_config *cfg)
{
    if (cfg == NULL)
        return;
    for (int i = 0; i < cfg->n_sources; i++) {
        free(cfg->sources[i].path);
        free(cfg->sources[i].text_field);
    }
    free(cfg->sources);
    free(cfg->origin);
    free(cfg->key_prefix);
    free(cfg->base_dir);
    free(cfg->tokenizer);
    free(cfg->cache_dir);
    free(cfg->eos_token);
    free(cfg);
}

int data_config_from_yaml_node(struct yaml_document_s *doc, struct yaml_node_s *node, const char *origin,
                               const char *base_dir, const char *key_prefix, data_config **out,
                               rt_err *err)
{
    int rc = 0;
    data_config *cfg = calloc(1, sizeof *cfg);
    char prefix[128] = "";
    if (key_prefix != NULL && key_prefix[0] != '\0')
        snprintf(prefix, sizeof prefix, "%s.", key_prefix);
    data_yctx y = {.doc = doc, .origin = origin ? origin : "<string>", .prefix = prefix, .err = err};
    if (cfg == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    cfg->origin = strdup(y.origin);
    cfg->key_prefix = strdup(prefix);
    cfg->base_dir = strdup(base_dir ? base_dir : ".");
    cfg->shuffle = true;
    cfg->add_eos = true;
    cfg->eos_id = -1;
    if (cfg->origin == NULL || cfg->key_prefix == NULL || cfg->base_dir == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (node == NULL || node->type != YAML_MAPPING_NODE) {
        rc = data_yerr(&y, node, NULL, "is %s %s, expected a mapping with seq_len, batch_rows and sources",
                       node ? "a" : "an", node ? data_ykind(node) : "empty document");
        goto cleanup;
    }
    static const char *const keys[] = {
        "tokenizer", "seq_len", "batch_rows", "seed", "shuffle", "mask_doc_attention", "on_bad_line",
        "add_bos", "add_eos", "eos_token", "eos_id", "cache_dir", "sources",
    };
    enum { NKEYS = sizeof keys / sizeof *keys };
    const char *key_list = "tokenizer, seq_len, batch_rows, seed, shuffle, mask_doc_attention, on_bad_line, "
                           "add_bos, add_eos, eos_token, eos_id, cache_dir, sources";
    uint32_t seen = 0;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (kn == NULL || vn == NULL) {
            rc = data_yerr(&y, node, NULL, "malformed mapping");
            goto cleanup;
        }
        const char *k = data_yscalar(&y, kn, NULL, "a key name");
        if (k == NULL) {
            rc = -EINVAL;
            goto cleanup;
        }
        int ki = -1;
        for (int i = 0; i < NKEYS; i++)
            if (strcmp(k, keys[i]) == 0)
                ki = i;
        if (ki < 0) {
            rc = data_yerr(&y, kn, k, "unknown key; expected one of %s", key_list);
            goto cleanup;
        }
        if (seen & (1u << ki)) {
            rc = data_yerr(&y, kn, k, "given twice");
            goto cleanup;
        }
        seen |= 1u << ki;
        int v = 0;
        switch (ki) {
        case 0: rc = data_ystr(&y, vn, k, true, &cfg->tokenizer); break;
        case 1: rc = data_yint(&y, vn, k, 1, 1 << 24, &cfg->seq_len); break;
        case 2: rc = data_yint(&y, vn, k, 1, 1 << 20, &cfg->batch_rows); break;
        case 3: rc = data_yu64(&y, vn, k, &cfg->seed); break;
        case 4: rc = data_ybool(&y, vn, k, &cfg->shuffle); break;
        case 5: rc = data_ybool(&y, vn, k, &cfg->mask_doc_attention); break;
        case 6:
            rc = data_yenum(&y, vn, k, (const char *const[]){"fail", "skip"}, 0, 2, "skip, fail", &v);
            cfg->skip_bad_lines = v == 1;
            break;
        case 7: rc = data_ybool(&y, vn, k, &cfg->add_bos); break;
        case 8: rc = data_ybool(&y, vn, k, &cfg->add_eos); break;
        case 9: rc = data_ystr(&y, vn, k, true, &cfg->eos_token); break;
        case 10: rc = data_yint(&y, vn, k, 0, DATA_ID_MASK, &cfg->eos_id); break;
        case 11: rc = data_ystr(&y, vn, k, true, &cfg->cache_dir); break;
        case 12:
            if (vn->type != YAML_SEQUENCE_NODE) {
                rc = data_yerr(&y, vn, k, "is a %s, expected a list of sources", data_ykind(vn));
                break;
            }
            {
                int n = (int)(vn->data.sequence.items.top - vn->data.sequence.items.start);
                if (n == 0) {
                    rc = data_yerr(&y, vn, k, "is empty, expected at least one source");
                    break;
                }
                if (n > DATA_MAX_SOURCES) {
                    rc = data_yerr(&y, vn, k, "has %d entries, at most %d are supported", n, DATA_MAX_SOURCES);
                    break;
                }
                cfg->sources = calloc((size_t)n, sizeof *cfg->sources);
                if (cfg->sources == NULL) {
                    rc = err_set(err, -ENOMEM, "out of memory");
                    break;
                }
                cfg->n_sources = n;
                for (int i = 0; i < n && rc == 0; i++) {
                    yaml_node_t *item = yaml_document_get_node(doc, vn->data.sequence.items.start[i]);
                    if (item == NULL)
                        rc = data_yerr(&y, vn, k, "malformed list");
                    else
                        rc = data_parse_source(&y, item, i, &cfg->sources[i]);
                }
            }
            break;
        }
        if (rc < 0)
            goto cleanup;
    }
    if (!(seen & (1u << 1))) {
        rc = data_yerr(&y, node, "seq_len", "missing: tokens per row, e.g. seq_len: 2048");
        goto cleanup;
    }
    if (!(seen & (1u << 2))) {
        rc = data_yerr(&y, node, "batch_rows", "missing: rows per micro-batch, e.g. batch_rows: 8");
        goto cleanup;
    }
    if (!(seen & (1u << 12))) {
        rc = data_yerr(&y, node, "sources", "missing: a list of {path, format, weight}");
        goto cleanup;
    }
    int weighted = 0;
    for (int i = 0; i < cfg->n_sources; i++)
        weighted += cfg->sources[i].weight > 0;
    if (weighted != 0 && weighted != cfg->n_sources) {
        for (int i = 0; i < cfg->n_sources; i++)
            if (!(cfg->sources[i].weight > 0)) {
                char key[64];
                snprintf(key, sizeof key, "sources[%d].weight", i);
                rc = data_yerr(&y, NULL, key, "missing (line %d): give every source a weight, or none "
                                              "(shares proportional to size)", cfg->sources[i].line);
                goto cleanup;
            }
    }
cleanup:
    if (rc < 0) {
        data_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int data_config_from_string(const char *text, size_t len, const char *origin, const char *base_dir,
                            data_config **out, rt_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_doc = false;
    int rc = 0;
    if (origin == NULL)
        origin = "<string>";
    if (!yaml_parser_initialize(&parser))
        return err_set(err, -ENOMEM, "%s: cannot initialise the YAML parser", origin);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = err_set(err, -EINVAL, "%s:%zu: YAML syntax error: %s%s%s", origin, parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "unknown problem", parser.context ? " " : "",
                     parser.context ? parser.context : "");
        goto cleanup;
    }
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    rc = data_config_from_yaml_node(&doc, root, origin, base_dir, NULL, out, err);
cleanup:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int data_config_load(const char *path, data_config **out, rt_err *err)
{
    int rc = 0;
    char *text = NULL, *dir = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, -errno, "%s: cannot open the data config: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = err_set(err, -errno, "%s: cannot read: %s", path, strerror(errno));
        goto cleanup;
    }
    long n = ftell(f);
    if (n < 0 || n > (64l << 20)) {
        rc = err_set(err, -EINVAL, "%s: %ld bytes is not a plausible data config (at most 64 MiB)", path, n);
        goto cleanup;
    }
    rewind(f);
    text = malloc((size_t)n + 1);
    dir = data_dirname(path);
    if (text == NULL || dir == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        rc = err_set(err, -EIO, "%s: short read", path);
        goto cleanup;
    }
    text[n] = '\0';
    rc = data_config_from_string(text, (size_t)n, path, dir, out, err);
cleanup:
    fclose(f);
    free(text);
    free(dir);
    return rc;
}

/* ---- finding a source's files -------------------------------------------- */

static int data_walk(const char *dir, int depth, data_strv *out, rt_err *err)
{
    if (depth > DATA_WALK_DEPTH)
        return err_set(err, -ELOOP, "%s: directories nested deeper than %d (a symlink loop?)", dir,
                       DATA_WALK_DEPTH);
    DIR *d = opendir(dir);
    if (d == NULL)
        return err_set(err, -errno, "%s: cannot list the directory: %s", dir, strerror(errno));
    int rc = 0;
    data_strv names = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') /* hidden entries, our .ramtrain-cache, . and .. */
            continue;
        rc = strv_push(&names, data_join(dir, e->d_name));
        if (rc < 0) {
            rc = err_set(err, rc, "out of memory");
            goto cleanup;
        }
    }
    qsort(names.v, names.n, sizeof *names.v, data_cmp_str);
    for (size_t i = 0; i < names.n; i++) {
        struct stat st;
        if (stat(names.v[i], &st) != 0) {
            rc = err_set(err, -errno, "%s: %s", names.v[i], strerror(errno));
            goto cleanup;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = data_walk(names.v[i], depth + 1, out, err);
        } else if (S_ISREG(st.st_mode)) {
            rc = strv_push(out, names.v[i]);
            names.v[i] = NULL;
            if (rc < 0)
                rc = err_set(err, rc, "out of memory");
        }
        if (rc < 0)
            goto cleanup;
    }
cleanup:
    strv_free(&names);
    closedir(d);
    return rc;
}

/* Every regular file the source's path names, sorted, without duplicates. */
static int data_expand(const char *base_dir, const char *path, const char *what, data_strv *out, rt_err *err)
{
    int rc = 0;
    char *full = path[0] == '/' ? strdup(path) : data_join(base_dir, path);
    glob_t g = {0};
    bool have_glob = false;
    if (full == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    data_strv tops = {0};
    if (strpbrk(path, "*?[") != NULL) {
        int grc = glob(full, 0, NULL, &g);
        have_glob = true;
        if (grc == GLOB_NOMATCH) {
            rc = err_set(err, -ENOENT, "%s: no file matches %s", what, full);
            goto cleanup;
        }
        if (grc != 0) {
            rc = err_set(err, -EIO, "%s: cannot expand %s (glob error %d)", what, full, grc);
            goto cleanup;
        }
        for (size_t i = 0; i < g.gl_pathc; i++)
            if ((rc = strv_push(&tops, strdup(g.gl_pathv[i]))) < 0) {
                rc = err_set(err, rc, "out of memory");
                goto cleanup;
            }
    } else if ((rc = strv_push(&tops, full)) < 0) {
        full = NULL;
        rc = err_set(err, rc, "out of memory");
        goto cleanup;
    } else {
        full = NULL;
    }
    for (size_t i = 0; i < tops.n; i++) {
        struct stat st;
        if (stat(tops.v[i], &st) != 0) {
            rc = err_set(err, -errno, "%s: %s: %s", what, tops.v[i], strerror(errno));
            goto cleanup;
        }
        if (S_ISDIR(st.st_mode)) {
            size_t before = out->n;
            if ((rc = data_walk(tops.v[i], 0, out, err)) < 0) {
                err_prefix(err, rc, "%s", what);
                goto cleanup;
            }
            if (out->n == before && !have_glob) {
                rc = err_set(err, -ENOENT, "%s: directory %s holds no files", what, tops.v[i]);
                goto cleanup;
            }
        } else if (S_ISREG(st.st_mode)) {
            if ((rc = strv_push(out, tops.v[i])) < 0) {
                tops.v[i] = NULL;
                rc = err_set(err, rc, "out of memory");
                goto cleanup;
            }
            tops.v[i] = NULL;
        } else if (!have_glob) {
            rc = err_set(err, -EINVAL, "%s: %s is not a regular file or directory", what, tops.v[i]);
            goto cleanup;
        }
    }
    if (out->n == 0) {
        rc = err_set(err, -ENOENT, "%s: no files found under %s", what, path);
        goto cleanup;
    }
    qsort(out->v, out->n, sizeof *out->v, data_cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (w > 0 && strcmp(out->v[w - 1], out->v[i]) == 0)
            free(out->v[i]);
        else
            out->v[w++] = out->v[i];
    }
    out->n = w;
cleanup:
    if (have_glob)
        globfree(&g);
    strv_free(&tops);
    free(full);
    return rc;
}

/* ---- reading data files, plain or zstd ------------------------------------ */

typedef struct data_reader {
    const char *path;  /* borrowed */
    int fd;
    ZSTD_DCtx *z;      /* NULL: plain file */
    uint8_t *zin;      /* [zin_cap] compressed bytes read ahead */
    size_t zin_cap, zin_len, zin_pos;
    bool in_eof;
    size_t last_ret;   /* last ZSTD_decompressStream return that made progress: 0 at a frame end */
    uint64_t out_total;/* bytes handed out */
} data_reader;

static const uint8_t data_zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

static void rd_close(data_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    ZSTD_freeDCtx(r->z);
    free(r->zin);
    r->fd = -1;
    r->z = NULL;
    r->zin = NULL;
}

static int rd_open(data_reader *r, const char *path, bool zst, rt_err *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->last_ret = 1;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    if (!zst)
        return 0;
    r->z = ZSTD_createDCtx();
    r->zin_cap = ZSTD_DStreamInSize();
    r->zin = malloc(r->zin_cap);
    if (r->z == NULL || r->zin == NULL) {
        rd_close(r);
        return err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* Reads up to cap bytes of the (decompressed) file into dst; *got 0 at the
 * end. A corrupt or truncated zstd stream is -EINVAL naming the file. */
static int rd_read(data_reader *r, void *dst, size_t cap, size_t *got, rt_err *err)
{
    size_t produced = 0;
    if (r->z == NULL) {
        while (produced < cap) {
            ssize_t n = read(r->fd, (char *)dst + produced, cap - produced);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return err_set(err, -errno, "%s: read failed: %s", r->path, strerror(errno));
            }
            if (n == 0)
                break;
            produced += (size_t)n;
        }
        r->out_total += produced;
        *got = produced;
        return 0;
    }
    while (produced < cap) {
        if (r->zin_pos == r->zin_len && !r->in_eof) {
            ssize_t n;
            do
                n = read(r->fd, r->zin, r->zin_cap);
            while (n < 0 && errno == EINTR);
            if (n < 0)
                return err_set(err, -errno, "%s: read failed: %s", r->path, strerror(errno));
            r->zin_len = (size_t)n;
            r->zin_pos = 0;
            r->in_eof = n == 0;
        }
        ZSTD_inBuffer in = {r->zin, r->zin_len, r->zin_pos};
        ZSTD_outBuffer out = {(char *)dst + produced, cap - produced, 0};
        size_t ret = ZSTD_decompressStream(r->z, &out, &in);
        if (ZSTD_isError(ret))
            return err_set(err, -EINVAL, "%s: corrupt zstd stream (after %llu decompressed bytes): %s", r->path,
                           (unsigned long long)(r->out_total + produced), ZSTD_getErrorName(ret));
        bool progress = out.pos > 0 || in.pos > r->zin_pos;
        r->zin_pos = in.pos;
        produced += out.pos;
        if (progress)
            r->last_ret = ret;
        if (!progress && r->in_eof && r->zin_pos == r->zin_len) {
            if (r->last_ret != 0)
                return err_set(err, -EINVAL, "%s: truncated zstd stream (ends after %llu decompressed bytes)",
                               r->path, (unsigned long long)(r->out_total + produced));
            break;
        }
    }
    r->out_total += produced;
    *got = produced;
    return 0;
}

/* Reads exactly len bytes unless the stream ends first (*got says). */
static int rd_read_full(data_reader *r, void *dst, size_t len, size_t *got, rt_err *err)
{
    size_t done = 0;
    while (done < len) {
        size_t n;
        int rc = rd_read(r, (char *)dst + done, len - done, &n, err);
        if (rc < 0)
            return rc;
        if (n == 0)
            break;
        done += n;
    }
    *got = done;
    return 0;
}

/* Whether path holds a zstd stream: by name (.zst) or by its magic number. */
static bool data_sniff_zst(const char *path)
{
    if (data_ends_with(path, ".zst"))
        return true;
    uint8_t m[4];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    int rc = data_read_full(fd, m, 4, 0, &got);
    close(fd);
    return rc == 0 && got == 4 && memcmp(m, data_zstd_magic, 4) == 0;
}

/* ---- raw token files ------------------------------------------------------- */

/* Validates an llm.c header (hdr: its 256 int32) of a file whose token
 * bytes are body_bytes (UINT64_MAX: unknown yet); sets width and count. */
static int data_llmc_header(const char *path, const int32_t *hdr, uint64_t body_bytes, uint32_t *width,
                            uint64_t *count, rt_err *err)
{
    if (hdr[0] == DATA_LLMC_MAGIC16) {
        if (hdr[1] != DATA_LLMC_VERSION16)
            return err_set(err, -EINVAL, "%s: llm.c header version %d does not go with magic %d (uint16 ids): "
                                         "expected %d", path, hdr[1], hdr[0], DATA_LLMC_VERSION16);
        *width = 2;
    } else if (hdr[0] == DATA_LLMC_MAGIC32) {
        if (hdr[1] != DATA_LLMC_VERSION32)
            return err_set(err, -EINVAL, "%s: llm.c header version %d does not go with magic %d (uint32 ids): "
                                         "expected %d", path, hdr[1], hdr[0], DATA_LLMC_VERSION32);
        *width = 4;
    } else {
        return err_set(err, -EINVAL, "%s: bad magic %d in the llm.c header: expected %d (uint16 ids) or %d "
                                     "(uint32 ids); is this an llm.c .bin shard?", path, hdr[0],
                       DATA_LLMC_MAGIC16, DATA_LLMC_MAGIC32);
    }
    if (hdr[2] < 0)
        return err_set(err, -EINVAL, "%s: llm.c header gives %d tokens", path, hdr[2]);
    *count = (uint64_t)hdr[2];
    if (body_bytes != UINT64_MAX && body_bytes != *count * *width)
        return err_set(err, -EINVAL, "%s: llm.c header says %llu tokens (%llu bytes after the %u-byte header) "
                                     "but the file has %llu bytes there: truncated or not an llm.c shard",
                       path, (unsigned long long)*count, (unsigned long long)(*count * *width), DATA_LLMC_HEADER,
                       (unsigned long long)body_bytes);
    return 0;
}

/* Layout of an uncompressed raw file: bytes per id, offset of the first id,
 * number of ids; validates the header and size. */
static int data_raw_layout(const char *path, data_format fmt, const struct stat *st, uint32_t *width,
                           uint64_t *offset, uint64_t *count, rt_err *err)
{
    uint64_t size = (uint64_t)st->st_size;
    if (fmt == DATA_FMT_U32) {
        if (size % 4 != 0)
            return err_set(err, -EINVAL, "%s: %llu bytes is not a whole number of uint32 ids", path,
                           (unsigned long long)size);
        *width = 4;
        *offset = 0;
        *count = size / 4;
        return 0;
    }
    if (size < DATA_LLMC_HEADER)
        return err_set(err, -EINVAL, "%s: %llu bytes is shorter than the %u-byte llm.c header", path,
                       (unsigned long long)size, DATA_LLMC_HEADER);
    int32_t hdr[DATA_LLMC_HEADER / 4];
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    int rc = data_read_full(fd, hdr, sizeof hdr, 0, &got);
    close(fd);
    if (rc < 0)
        return err_set(err, rc, "%s: read failed: %s", path, strerror(-rc));
    if (got != sizeof hdr)
        return err_set(err, -EIO, "%s: short read of the llm.c header", path);
    *offset = DATA_LLMC_HEADER;
    return data_llmc_header(path, hdr, size - DATA_LLMC_HEADER, width, count, err);
}

/* ---- index files --------------------------------------------------------- */

static uint64_t data_hdr_hash(const data_idx_hdr *h)
{
    return data_hash(0x72616d74ull, h, offsetof(data_idx_hdr, hdr_hash));
}

/* 0 when the index at idx_path is current for the data file (st) and opts
 * hash; its header in *h. -ESTALE (or another negative errno) otherwise. */
static int data_idx_check(const char *idx_path, const struct stat *st, uint64_t opts_hash, int kind,
                          data_idx_hdr *h)
{
    int fd = open(idx_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat ist;
    size_t got = 0;
    int rc = fstat(fd, &ist) == 0 ? data_read_full(fd, h, sizeof *h, 0, &got) : -errno;
    close(fd);
    if (rc < 0)
        return rc;
    if (got != sizeof *h || memcmp(h->magic, DATA_IDX_MAGIC, 8) != 0 || h->version != DATA_IDX_VERSION ||
        h->hdr_hash != data_hdr_hash(h) || h->kind != (uint32_t)kind)
        return -ESTALE;
    if (h->src_size != (uint64_t)st->st_size || h->src_mtime_ns != data_mtime_ns(st) || h->opts_hash != opts_hash)
        return -ESTALE;
    uint64_t want = DATA_IDX_PAYLOAD + (kind == DATA_KIND_PACKED ? h->n_tokens * 4 : 0);
    if ((uint64_t)ist.st_size != want || h->first_skip[sizeof h->first_skip - 1] != '\0')
        return -ESTALE;
    return 0;
}

static int data_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(buf, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Index file locations for data file path: primary (beside the data, or
 * under cfg's cache_dir) and fallback (per-user cache; "" when none). */
static int data_idx_paths(const data_config *cfg, const char *path, uint64_t opts_hash, char *primary,
                          char *fallback, size_t len)
{
    char *dir = data_dirname(path);
    if (dir == NULL)
        return -ENOMEM;
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL)
        snprintf(real, sizeof real, "%s", dir);
    uint64_t dh = data_hash_str(0x64697273ull, real);
    const char *base = data_basename(path);
    char name[NAME_MAX + 1];
    if (strlen(base) > 200) /* room for ".<16 hex>.idx" and the temporary suffix */
        snprintf(name, sizeof name, "%.100s~%016llx.%016llx.idx", base,
                 (unsigned long long)data_hash_str(0, base), (unsigned long long)opts_hash);
    else
        snprintf(name, sizeof name, "%s.%016llx.idx", base, (unsigned long long)opts_hash);
    int n1, n2 = 0;
    fallback[0] = '\0';
    if (cfg->cache_dir != NULL) {
        char *cd = cfg->cache_dir[0] == '/' ? strdup(cfg->cache_dir) : data_join(cfg->base_dir, cfg->cache_dir);
        if (cd == NULL) {
            free(dir);
            return -ENOMEM;
        }
        n1 = snprintf(primary, len, "%s/%016llx/%s", cd, (unsigned long long)dh, name);
        free(cd);
    } else {
        n1 = snprintf(primary, len, "%s/%s/%s", dir, DATA_CACHE_SUBDIR, name);
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg != NULL && xdg[0] == '/')
            n2 = snprintf(fallback, len, "%s/ramtrain/data/%016llx/%s", xdg, (unsigned long long)dh, name);
        else if (home != NULL && home[0] == '/')
            n2 = snprintf(fallback, len, "%s/.cache/ramtrain/data/%016llx/%s", home, (unsigned long long)dh, name);
    }
    free(dir);
    if (n1 < 0 || (size_t)n1 >= len || n2 < 0 || (size_t)n2 >= len)
        return -ENAMETOOLONG;
    return 0;
}

/* A buffered writer of one index file, under a temporary name until
 * data_w_commit renames it. */
typedef struct data_writer {
    int fd;
    char *tmp;        /* temporary path; owned */
    bool created;     /* tmp exists and is ours to remove */
    uint8_t *buf;     /* [DATA_IO_BUF] */
    size_t n;         /* bytes buffered */
} data_writer;

static int data_w_open(data_writer *w, const char *idx_path)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    char *dir = data_dirname(idx_path);
    if (dir == NULL)
        return -ENOMEM;
    int rc = data_mkdir_p(dir);
    free(dir);
    if (rc < 0)
        return rc;
    size_t n = strlen(idx_path);
    w->tmp = malloc(n + 8);
    w->buf = malloc(DATA_IO_BUF);
    if (w->tmp == NULL || w->buf == NULL)
        return -ENOMEM;
    memcpy(w->tmp, idx_path, n);
    memcpy(w->tmp + n, ".XXXXXX", 8);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0)
        return -errno;
    w->created = true;
    uint8_t zero[DATA_IDX_PAYLOAD] = {0};
    return tu_write_all(w->fd, zero, sizeof zero);
}

static int data_w_flush(data_writer *w)
{
    int rc = tu_write_all(w->fd, w->buf, w->n);
    w->n = 0;
    return rc;
}

static int data_w_write(data_writer *w, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len > 0) {
        if (w->n == DATA_IO_BUF) {
            int rc = data_w_flush(w);
            if (rc < 0)
                return rc;
        }
        size_t k = DATA_IO_BUF - w->n < len ? DATA_IO_BUF - w->n : len;
        memcpy(w->buf + w->n, b, k);
        w->n += k;
        b += k;
        len -= k;
    }
    return 0;
}

/* Writes the header, fsyncs and renames the file to idx_path. */
static int data_w_commit(data_writer *w, data_idx_hdr *h, const char *idx_path)
{
    int rc = data_w_flush(w);
    if (rc < 0)
        return rc;
    memcpy(h->magic, DATA_IDX_MAGIC, 8);
    h->version = DATA_IDX_VERSION;
    h->hdr_hash = data_hdr_hash(h);
    ssize_t wr = pwrite(w->fd, h, sizeof *h, 0);
    if (wr != (ssize_t)sizeof *h)
        return wr < 0 ? -errno : -EIO;
    if (fsync(w->fd) != 0)
        return -errno;
    rc = close(w->fd);
    w->fd = -1;
    if (rc != 0)
        return -errno;
    if (rename(w->tmp, idx_path) != 0)
        return -errno;
    w->created = false;
    return 0;
}

/* Frees the writer; removes the temporary file unless it was committed. */
static void data_w_close(data_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->created)
        unlink(w->tmp);
    free(w->tmp);
    free(w->buf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

/* ---- tokenizing documents --------------------------------------------------- */

/* One document (or JSONL record) of a chunk. */
typedef struct data_doc {
    size_t off, len; /* bytes into the chunk */
    uint64_t line;   /* 1-based line in the file; 0 for text documents */
} data_doc;

typedef struct data_docv {
    data_doc *v;
    size_t n, cap;
} data_docv;

enum { DATA_ROLE_SYSTEM, DATA_ROLE_USER, DATA_ROLE_ASSISTANT, DATA_ROLE_OTHER };

/* One chat message; text points into the JSON or, when NULL, at off in the
 * thread's arena (resolved once the record is parsed). */
typedef struct data_msg {
    int role;
    const char *role_name;
    size_t role_len;
    const char *text;
    size_t off, len;
} data_msg;

/* One tokenizing thread: a contiguous range of a chunk's documents, tokenized
 * into its own packed entries, appended to the index in range order. */
typedef struct data_tk {
    const tok *t;
    const data_fmt *f;
    const char *path;       /* data file, for messages */
    const char *buf;        /* the chunk */
    const data_doc *docs;   /* [n_in] */
    size_t n_in;
    tok_scratch *scratch;   /* the tokenizer's per-thread state */
    int32_t *ids;           /* encoded ids [ids_cap] */
    size_t ids_cap;
    data_sbuf text;         /* template text being assembled */
    data_sbuf arena;        /* message texts built from several JSON strings */
    data_msg *msgs;         /* [msgs_cap] */
    size_t msgs_cap;
    uint32_t *out;          /* packed entries [out_cap], n_out used */
    size_t n_out, out_cap;
    size_t doc_begin;       /* out index of the current document's first entry */
    uint64_t n_docs, n_skipped; /* this chunk */
    uint32_t max_id;
    char first_skip[256];   /* this chunk: "line: why" */
    int rc;
    rt_err err;
} data_tk;

static void tk_free(data_tk *k)
{
    tok_scratch_free(k->scratch);
    free(k->ids);
    free(k->text.p);
    free(k->arena.p);
    free(k->msgs);
    free(k->out);
}

static int tk_push(data_tk *k, uint32_t e)
{
    if (k->n_out == k->out_cap) {
        size_t cap = k->out_cap ? k->out_cap * 2 : 4096;
        uint32_t *p = realloc(k->out, cap * sizeof *p);
        if (p == NULL)
            return err_set(&k->err, -ENOMEM, "out of memory");
        k->out = p;
        k->out_cap = cap;
    }
    k->out[k->n_out++] = e;
    return 0;
}

static int tk_emit_id(data_tk *k, int32_t id, bool trained)
{
    if (id < 0 || (uint32_t)id > DATA_ID_MASK)
        return err_set(&k->err, -EINVAL, "%s: the tokenizer produced id %d, outside 0..2^30", k->path, id);
    if ((uint32_t)id > k->max_id)
        k->max_id = (uint32_t)id;
    return tk_push(k, (uint32_t)id | (trained ? DATA_TRAIN_BIT : 0));
}

static int tk_emit_text(data_tk *k, const char *s, size_t len, bool trained)
{
    if (len == 0)
        return 0;
    size_t n = 0;
    int rc = tok_encode_with(k->t, k->scratch, s, len, false, &k->ids, &n, &k->ids_cap, &k->err);
    if (rc < 0)
        return err_prefix(&k->err, rc, "%s", k->path);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = tk_emit_id(k, k->ids[i], trained);
    return rc;
}

static int tk_emit_special(data_tk *k, int sp, bool trained)
{
    if (k->f->sp[sp] >= 0)
        return tk_emit_id(k, k->f->sp[sp], trained);
    return tk_emit_text(k, data_special_text[sp], strlen(data_special_text[sp]), trained);
}

/* A bad record: skipped (returns 1) or fatal (negative, message in k->err). */
static int tk_bad(data_tk *k, uint64_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int tk_bad(data_tk *k, uint64_t line, const char *fmt, ...)
{
    char msg[224];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    k->n_out = k->doc_begin;
    if (k->f->skip_bad) {
        if (k->n_skipped++ == 0)
            snprintf(k->first_skip, sizeof k->first_skip, "%llu: %s", (unsigned long long)line, msg);
        return 1;
    }
    return err_set(&k->err, -EINVAL, "%s:%llu: %s", k->path, (unsigned long long)line, msg);
}

/* Ends the current document: the EOS separator unless it already ends in
 * EOS (trained for plain text, not for chat data), and the start bit. */
static int tk_doc_end(data_tk *k, bool chat)
{
    if (k->n_out == k->doc_begin)
        return 0;
    int32_t eos = k->f->eos_id;
    if (k->f->add_eos && (int32_t)(k->out[k->n_out - 1] & DATA_ID_MASK) != eos) {
        int rc = tk_emit_id(k, eos, !chat);
        if (rc < 0)
            return rc;
    }
    k->out[k->doc_begin] |= DATA_START_BIT;
    k->n_docs++;
    return 0;
}

/* obj[name] as a string: 0 and *s, *len; 2 when absent (or null) and
 * optional; else tk_bad's result. where prefixes the field in messages. */
static int tk_jstr(data_tk *k, uint64_t line, const json_t *obj, const char *where, const char *name,
                   bool optional, const char **s, size_t *len)
{
    json_t *v = json_object_get(obj, name);
    if (v == NULL || (optional && json_is_null(v))) {
        if (optional)
            return 2;
        return tk_bad(k, line, "%s%smissing field \"%s\"", where, where[0] ? ": " : "", name);
    }
    if (!json_is_string(v))
        return tk_bad(k, line, "%s%sfield \"%s\" is a JSON %s, expected a string", where, where[0] ? ": " : "",
                      name, tu_json_kind(v));
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int tk_msg_add(data_tk *k, size_t n, int role, const char *role_name, const char *text, size_t len)
{
    if (n == k->msgs_cap) {
        size_t cap = k->msgs_cap ? k->msgs_cap * 2 : 16;
        data_msg *m = realloc(k->msgs, cap * sizeof *m);
        if (m == NULL)
            return err_set(&k->err, -ENOMEM, "out of memory");
        k->msgs = m;
        k->msgs_cap = cap;
    }
    k->msgs[n] = (data_msg){.role = role, .role_name = role_name, .role_len = strlen(role_name),
                            .text = text, .len = len};
    return 0;
}

static bool data_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int tk_sb(data_tk *k, int rc)
{
    return rc < 0 ? err_set(&k->err, rc, "out of memory") : 0;
}

/* Renders messages m[n] with the file's chat template. */
static int tk_render_chat(data_tk *k, uint64_t line, const data_msg *m, size_t n)
{
    int rc = 0;
    switch (k->f->chat) {
    case DATA_CHAT_LLAMA3:
        /* bos + for each: <|start_header_id|>role<|end_header_id|>\n\n trim(content) <|eot_id|> */
        if ((rc = tk_emit_special(k, DATA_SP_BEGIN_OF_TEXT, false)) < 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            bool tr = m[i].role == DATA_ROLE_ASSISTANT;
            const char *s = m[i].text;
            size_t len = m[i].len;
            while (len > 0 && data_space(s[0]))
                s++, len--;
            while (len > 0 && data_space(s[len - 1]))
                len--;
            if ((rc = tk_emit_special(k, DATA_SP_START_HEADER, false)) < 0 ||
                (rc = tk_emit_text(k, m[i].role_name, m[i].role_len, false)) < 0 ||
                (rc = tk_emit_special(k, DATA_SP_END_HEADER, false)) < 0 ||
                (rc = tk_emit_text(k, "\n\n", 2, false)) < 0 || (rc = tk_emit_text(k, s, len, tr)) < 0 ||
                (rc = tk_emit_special(k, DATA_SP_EOT, tr)) < 0)
                return rc;
        }
        return 0;
    case DATA_CHAT_CHATML:
        /* for each: <|im_start|>role\ncontent<|im_end|>\n */
        for (size_t i = 0; i < n; i++) {
            bool tr = m[i].role == DATA_ROLE_ASSISTANT;
            k->text.n = 0;
            if ((rc = tk_sb(k, sbuf_add(&k->text, m[i].role_name, m[i].role_len))) < 0 ||
                (rc = tk_sb(k, sbuf_add(&k->text, "\n", 1))) < 0)
                return rc;
            if ((rc = tk_emit_special(k, DATA_SP_IM_START, false)) < 0 ||
                (rc = tk_emit_text(k, k->text.p, k->text.n, false)) < 0 ||
                (rc = tk_emit_text(k, m[i].text, m[i].len, tr)) < 0 ||
                (rc = tk_emit_special(k, DATA_SP_IM_END, tr)) < 0 || (rc = tk_emit_text(k, "\n", 1, false)) < 0)
                return rc;
        }
        return 0;
    case DATA_CHAT_ALPACA: {
        /* preamble (or the system message), then per exchange
         * "### Instruction:\n{user}\n\n### Response:\n" {assistant} EOS */
        size_t i = 0;
        k->text.n = 0;
        if (n > 0 && m[0].role == DATA_ROLE_SYSTEM) {
            rc = sbuf_add(&k->text, m[0].text, m[0].len);
            i = 1;
        } else {
            rc = sbuf_adds(&k->text, DATA_ALPACA_PREAMBLE);
        }
        if ((rc = tk_sb(k, rc)) < 0 || (rc = tk_sb(k, sbuf_adds(&k->text, "\n\n"))) < 0)
            return rc;
        bool first = true;
        for (; i < n; i++) {
            if (m[i].role == DATA_ROLE_SYSTEM)
                return tk_bad(k, line, "message %zu: a system message after the first has no place in the "
                                       "alpaca format", i);
            if (m[i].role == DATA_ROLE_OTHER)
                return tk_bad(k, line, "message %zu: role \"%.*s\": the alpaca format knows system, user "
                                       "and assistant", i, (int)m[i].role_len, m[i].role_name);
            if (m[i].role == DATA_ROLE_USER) {
                if ((rc = tk_sb(k, sbuf_adds(&k->text, first ? "### Instruction:\n" : "\n\n### Instruction:\n"))) <
                        0 ||
                    (rc = tk_sb(k, sbuf_add(&k->text, m[i].text, m[i].len))) < 0 ||
                    (rc = tk_sb(k, sbuf_adds(&k->text, "\n\n### Response:\n"))) < 0)
                    return rc;
            } else {
                if ((rc = tk_emit_text(k, k->text.p, k->text.n, false)) < 0 ||
                    (rc = tk_emit_text(k, m[i].text, m[i].len, true)) < 0 ||
                    (rc = tk_emit_id(k, k->f->eos_id, true)) < 0)
                    return rc;
                k->text.n = 0;
            }
            first = false;
        }
        return tk_emit_text(k, k->text.p, k->text.n, false);
    }
    case DATA_CHAT_AUTO: break;
    }
    return err_set(&k->err, -EINVAL, "%s: chat format not resolved", k->path);
}

/* An Alpaca record {instruction, input?, output, system?}. */
static int tk_alpaca(data_tk *k, uint64_t line, const json_t *root)
{
    const char *ins, *inp = "", *outp, *sys = NULL;
    size_t ins_n, inp_n = 0, out_n, sys_n = 0;
    int rc;
    if ((rc = tk_jstr(k, line, root, "", "instruction", false, &ins, &ins_n)) != 0 ||
        (rc = tk_jstr(k, line, root, "", "input", true, &inp, &inp_n)) == 1 || rc < 0 ||
        (rc = tk_jstr(k, line, root, "", "output", false, &outp, &out_n)) != 0 ||
        (rc = tk_jstr(k, line, root, "", "system", true, &sys, &sys_n)) == 1 || rc < 0)
        return rc;
    if (k->f->chat == DATA_CHAT_ALPACA) {
        /* Stanford Alpaca's PROMPT_DICT, the output, then EOS */
        k->text.n = 0;
        if (sys != NULL && sys_n > 0)
            rc = sbuf_add(&k->text, sys, sys_n);
        else
            rc = sbuf_adds(&k->text, inp_n > 0 ? DATA_ALPACA_PREAMBLE_INPUT : DATA_ALPACA_PREAMBLE);
        if ((rc = tk_sb(k, rc)) < 0 || (rc = tk_sb(k, sbuf_adds(&k->text, "\n\n### Instruction:\n"))) < 0 ||
            (rc = tk_sb(k, sbuf_add(&k->text, ins, ins_n))) < 0)
            return rc;
        if (inp_n > 0 && ((rc = tk_sb(k, sbuf_adds(&k->text, "\n\n### Input:\n"))) < 0 ||
                          (rc = tk_sb(k, sbuf_add(&k->text, inp, inp_n))) < 0))
            return rc;
        if ((rc = tk_sb(k, sbuf_adds(&k->text, "\n\n### Response:\n"))) < 0 ||
            (rc = tk_emit_text(k, k->text.p, k->text.n, false)) < 0 || (rc = tk_emit_text(k, outp, out_n, true)) < 0)
            return rc;
        return tk_emit_id(k, k->f->eos_id, true);
    }
    /* as a conversation: [system], user: instruction (+ "\n\n" input), assistant: output */
    size_t n = 0;
    k->arena.n = 0;
    if ((rc = tk_sb(k, sbuf_add(&k->arena, ins, ins_n))) < 0)
        return rc;
    if (inp_n > 0 && ((rc = tk_sb(k, sbuf_add(&k->arena, "\n\n", 2))) < 0 ||
                      (rc = tk_sb(k, sbuf_add(&k->arena, inp, inp_n))) < 0))
        return rc;
    if (sys != NULL && sys_n > 0 && (rc = tk_msg_add(k, n++, DATA_ROLE_SYSTEM, "system", sys, sys_n)) < 0)
        return rc;
    if ((rc = tk_msg_add(k, n++, DATA_ROLE_USER, "user", k->arena.p, k->arena.n)) < 0 ||
        (rc = tk_msg_add(k, n++, DATA_ROLE_ASSISTANT, "assistant", outp, out_n)) < 0)
        return rc;
    return tk_render_chat(k, line, k->msgs, n);
}

/* A ShareGPT record {conversations: [{from, value}]}. */
static int tk_sharegpt(data_tk *k, uint64_t line, const json_t *root)
{
    json_t *conv = json_object_get(root, "conversations");
    if (conv == NULL)
        return tk_bad(k, line, "missing field \"conversations\"");
    if (!json_is_array(conv))
        return tk_bad(k, line, "field \"conversations\" is a JSON %s, expected an array", tu_json_kind(conv));
    size_t n = json_array_size(conv);
    if (n == 0)
        return tk_bad(k, line, "\"conversations\" is empty");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(conv, i);
        char where[48];
        snprintf(where, sizeof where, "conversations[%zu]", i);
        if (!json_is_object(m))
            return tk_bad(k, line, "%s is a JSON %s, expected an object {from, value}", where, tu_json_kind(m));
        const char *from, *value;
        size_t from_n, value_n;
        int rc;
        if ((rc = tk_jstr(k, line, m, where, "from", false, &from, &from_n)) != 0 ||
            (rc = tk_jstr(k, line, m, where, "value", false, &value, &value_n)) != 0)
            return rc;
        int role;
        const char *name;
        if (strcmp(from, "human") == 0 || strcmp(from, "user") == 0)
            role = DATA_ROLE_USER, name = "user";
        else if (strcmp(from, "gpt") == 0 || strcmp(from, "assistant") == 0)
            role = DATA_ROLE_ASSISTANT, name = "assistant";
        else if (strcmp(from, "system") == 0)
            role = DATA_ROLE_SYSTEM, name = "system";
        else
            return tk_bad(k, line, "%s.from: \"%.40s\" is not one of human, gpt, system", where, from);
        if ((rc = tk_msg_add(k, i, role, name, value, value_n)) < 0)
            return rc;
    }
    return tk_render_chat(k, line, k->msgs, n);
}

/* An OpenAI-style record {messages: [{role, content}]}; content is a string
 * or a list of {type: "text", text} parts. */
static int tk_messages(data_tk *k, uint64_t line, const json_t *root)
{
    json_t *arr = json_object_get(root, "messages");
    if (arr == NULL)
        return tk_bad(k, line, "missing field \"messages\"");
    if (!json_is_array(arr))
        return tk_bad(k, line, "field \"messages\" is a JSON %s, expected an array", tu_json_kind(arr));
    size_t n = json_array_size(arr);
    if (n == 0)
        return tk_bad(k, line, "\"messages\" is empty");
    k->arena.n = 0;
    int rc;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        char where[48];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if (!json_is_object(m))
            return tk_bad(k, line, "%s is a JSON %s, expected an object {role, content}", where, tu_json_kind(m));
        const char *role_s;
        size_t role_n;
        if ((rc = tk_jstr(k, line, m, where, "role", false, &role_s, &role_n)) != 0)
            return rc;
        int role = strcmp(role_s, "system") == 0      ? DATA_ROLE_SYSTEM
                   : strcmp(role_s, "user") == 0      ? DATA_ROLE_USER
                   : strcmp(role_s, "assistant") == 0 ? DATA_ROLE_ASSISTANT
                                                      : DATA_ROLE_OTHER;
        json_t *c = json_object_get(m, "content");
        if (c == NULL)
            return tk_bad(k, line, "%s: missing field \"content\"", where);
        if ((rc = tk_msg_add(k, i, role, role_s, NULL, 0)) < 0)
            return rc;
        if (json_is_string(c)) {
            k->msgs[i].text = json_string_value(c);
            k->msgs[i].len = json_string_length(c);
            continue;
        }
        if (!json_is_array(c))
            return tk_bad(k, line, "%s: field \"content\" is a JSON %s, expected a string or a list of text parts",
                          where, tu_json_kind(c));
        k->msgs[i].off = k->arena.n;
        for (size_t j = 0; j < json_array_size(c); j++) {
            json_t *part = json_array_get(c, j);
            json_t *type = json_object_get(part, "type");
            json_t *text = json_object_get(part, "text");
            if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
                !json_is_string(text))
                return tk_bad(k, line, "%s.content[%zu]: expected {\"type\": \"text\", \"text\": \"...\"} (only "
                                       "text parts are supported)", where, j);
            if ((rc = tk_sb(k, sbuf_add(&k->arena, json_string_value(text), json_string_length(text)))) < 0)
                return rc;
        }
        k->msgs[i].len = k->arena.n - k->msgs[i].off;
    }
    for (size_t i = 0; i < n; i++)
        if (k->msgs[i].text == NULL)
            k->msgs[i].text = k->arena.p ? k->arena.p + k->msgs[i].off : "";
    return tk_render_chat(k, line, k->msgs, n);
}

/* Tokenizes one document or record into k->out. */
static int tk_doc(data_tk *k, const data_doc *d)
{
    const char *s = k->buf + d->off;
    k->doc_begin = k->n_out;
    int rc = 0;
    if (k->f->format == DATA_FMT_TEXT) {
        if (d->len == 0)
            return 0;
        if (k->f->add_bos && (rc = tk_emit_id(k, k->f->bos_id, true)) < 0)
            return rc;
        if ((rc = tk_emit_text(k, s, d->len, true)) < 0)
            return rc;
        return tk_doc_end(k, false);
    }
    json_error_t je;
    json_t *root = json_loadb(s, d->len, JSON_ALLOW_NUL, &je);
    if (root == NULL) {
        rc = tk_bad(k, d->line, "invalid JSON: %s (column %d)", je.text, je.column);
        return rc > 0 ? 0 : rc;
    }
    if (!json_is_object(root)) {
        rc = tk_bad(k, d->line, "a JSON %s, expected an object", tu_json_kind(root));
        goto cleanup;
    }
    switch (k->f->format) {
    case DATA_FMT_JSONL: {
        const char *text;
        size_t len;
        const char *field = k->f->text_field ? k->f->text_field : "text";
        if ((rc = tk_jstr(k, d->line, root, "", field, false, &text, &len)) != 0)
            break;
        if (len == 0)
            break;
        if (k->f->add_bos && (rc = tk_emit_id(k, k->f->bos_id, true)) < 0)
            break;
        if ((rc = tk_emit_text(k, text, len, true)) < 0)
            break;
        rc = tk_doc_end(k, false);
        break;
    }
    case DATA_FMT_ALPACA: rc = tk_alpaca(k, d->line, root); goto chat_end;
    case DATA_FMT_SHAREGPT: rc = tk_sharegpt(k, d->line, root); goto chat_end;
    case DATA_FMT_MESSAGES: rc = tk_messages(k, d->line, root); goto chat_end;
    default: rc = err_set(&k->err, -EINVAL, "%s: not a text format", k->path); break;
    }
    goto cleanup;
chat_end:
    if (rc == 0)
        rc = tk_doc_end(k, true);
cleanup:
    json_decref(root);
    return rc > 0 ? 0 : rc;
}

static void *tk_run(void *arg)
{
    data_tk *k = arg;
    for (size_t i = 0; i < k->n_in && k->rc == 0; i++)
        k->rc = tk_doc(k, &k->docs[i]);
    return NULL;
}

/* ---- cutting chunks into documents ----------------------------------------- */

static int docv_push(data_docv *dv, size_t off, size_t len, uint64_t line)
{
    if (dv->n == dv->cap) {
        size_t cap = dv->cap ? dv->cap * 2 : 1024;
        data_doc *v = realloc(dv->v, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        dv->v = v;
        dv->cap = cap;
    }
    dv->v[dv->n++] = (data_doc){.off = off, .len = len, .line = line};
    return 0;
}

/* Appends the complete documents of buf[len] to dv; *consumed is where the
 * first incomplete one starts (len at eof), *lines the newlines before it. */
static int data_split_docs(const data_fmt *f, const char *buf, size_t len, bool eof, uint64_t line0, data_docv *dv,
                      size_t *consumed, uint64_t *lines)
{
    int rc = 0;
    *lines = 0;
    if (f->format == DATA_FMT_TEXT && f->split == DATA_SPLIT_FILE) {
        *consumed = 0;
        if (eof) {
            if (len > 0)
                rc = docv_push(dv, 0, len, 0);
            *consumed = len;
        }
        return rc;
    }
    bool blank_mode = f->format == DATA_FMT_TEXT;
    size_t pos = 0, used = 0, dstart = 0, dend = 0;
    bool open = false;
    uint64_t line = line0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end, next;
        if (nl != NULL)
            end = (size_t)(nl - buf), next = end + 1;
        else if (eof)
            end = next = len;
        else
            break;
        size_t e = end;
        if (e > pos && buf[e - 1] == '\r')
            e--;
        bool blank = true;
        for (size_t j = pos; j < e && blank; j++)
            blank = buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r' || buf[j] == '\f' || buf[j] == '\v';
        if (blank_mode) {
            if (blank) {
                if (open)
                    rc = docv_push(dv, dstart, dend - dstart, 0);
                open = false;
                used = next;
            } else {
                if (!open)
                    dstart = pos;
                open = true;
                dend = e;
            }
        } else {
            if (!blank)
                rc = docv_push(dv, pos, e - pos, line);
            used = next;
        }
        line++;
        pos = next;
    }
    if (blank_mode) {
        if (eof) {
            if (open && rc == 0)
                rc = docv_push(dv, dstart, dend - dstart, 0);
            used = len;
        } else if (open) {
            used = dstart;
        }
    }
    *consumed = used;
    *lines = line - line0;
    return rc;
}

/* ---- building index files ------------------------------------------------------ */

/* Tokenizes a text-like file into w: chunk by chunk, each chunk's documents
 * split into contiguous ranges on `threads` threads, outputs in order. */
static int data_build_text(const data_file *df, const tok *t, int threads, size_t chunk, data_writer *w,
                           data_idx_hdr *h, rt_err *err)
{
    data_reader rd;
    int rc = rd_open(&rd, df->path, df->fmt.zst, err);
    if (rc < 0)
        return rc;
    size_t cap = chunk, len = 0;
    if (!df->fmt.zst && (uint64_t)df->st.st_size + 64 < cap) /* small files: a small buffer */
        cap = (size_t)df->st.st_size + 64;
    char *buf = malloc(cap);
    data_tk *tks = calloc((size_t)threads, sizeof *tks);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    data_docv dv = {0};
    uint64_t line0 = 1;
    bool eof = false, first = true;
    if (buf == NULL || tks == NULL || th == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    for (int j = 0; j < threads; j++) {
        tks[j] = (data_tk){.t = t, .f = &df->fmt, .path = df->path};
        if ((rc = tok_scratch_init(t, &tks[j].scratch, err)) < 0)
            goto cleanup;
    }
    for (;;) {
        while (len < cap && !eof) {
            size_t got;
            if ((rc = rd_read(&rd, buf + len, cap - len, &got, err)) < 0)
                goto cleanup;
            eof = got == 0;
            len += got;
        }
        if (first && len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) { /* UTF-8 byte order mark */
            memmove(buf, buf + 3, len - 3);
            len -= 3;
            first = false;
            if (!eof)
                continue;
        }
        first = false;
        size_t used;
        uint64_t lines;
        dv.n = 0;
        if ((rc = data_split_docs(&df->fmt, buf, len, eof, line0, &dv, &used, &lines)) < 0) {
            rc = err_set(err, rc, "out of memory");
            goto cleanup;
        }
        if (used == 0 && !eof) { /* one document larger than the buffer */
            if (cap > SIZE_MAX / 2) {
                rc = err_set(err, -EFBIG, "%s: a document larger than memory", df->path);
                goto cleanup;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = err_set(err, -ENOMEM, "%s: out of memory for a %zu-byte document", df->path, cap);
                goto cleanup;
            }
            buf = nb;
            cap *= 2;
            continue;
        }
        /* contiguous ranges of about equal bytes, one per thread */
        int jobs = dv.n < (size_t)threads ? (int)dv.n : threads;
        size_t total = 0, acc = 0, d = 0;
        for (size_t i = 0; i < dv.n; i++)
            total += dv.v[i].len + 1;
        for (int j = 0; j < jobs; j++) {
            size_t target = total * (size_t)(j + 1) / (size_t)jobs, begin = d;
            while (d < dv.n && (j == jobs - 1 || acc < target || d == begin))
                acc += dv.v[d++].len + 1;
            data_tk *k = &tks[j];
            k->buf = buf;
            k->docs = dv.v + begin;
            k->n_in = d - begin;
            k->n_out = 0;
            k->n_docs = k->n_skipped = 0;
            k->first_skip[0] = '\0';
            k->rc = 0;
        }
        int started = 0;
        for (int j = 1; j < jobs; j++, started++)
            if (pthread_create(&th[j], NULL, tk_run, &tks[j]) != 0) {
                tks[j].rc = err_set(&tks[j].err, -EAGAIN, "cannot start a tokenizing thread");
                break;
            }
        if (jobs > 0)
            tk_run(&tks[0]);
        for (int j = 1; j <= started; j++)
            pthread_join(th[j], NULL);
        for (int j = 0; j < jobs; j++) {
            data_tk *k = &tks[j];
            if (k->rc < 0) {
                rc = k->rc;
                if (err != NULL)
                    *err = k->err;
                goto cleanup;
            }
            if ((rc = data_w_write(w, k->out, k->n_out * sizeof *k->out)) < 0) {
                rc = err_set(err, rc, "%s: cannot write its index: %s", df->path, strerror(-rc));
                goto cleanup;
            }
            h->n_tokens += k->n_out;
            h->n_docs += k->n_docs;
            if (k->n_skipped > 0 && h->n_skipped == 0)
                snprintf(h->first_skip, sizeof h->first_skip, "%s", k->first_skip);
            h->n_skipped += k->n_skipped;
            if (k->max_id > h->max_id)
                h->max_id = k->max_id;
        }
        memmove(buf, buf + used, len - used);
        len -= used;
        line0 += lines;
        if (eof)
            break;
    }
    h->kind = DATA_KIND_PACKED;
    h->raw_width = 4;
cleanup:
    for (int j = 0; tks != NULL && j < threads; j++)
        tk_free(&tks[j]);
    free(tks);
    free(th);
    free(dv.v);
    free(buf);
    rd_close(&rd);
    return rc;
}

/* Counts documents and the largest id of an uncompressed raw file. */
static int data_build_raw_stats(const data_file *df, data_idx_hdr *h, rt_err *err)
{
    int rc = 0;
    uint8_t *buf = malloc(DATA_IO_BUF);
    int fd = open(df->path, O_RDONLY | O_CLOEXEC);
    if (buf == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (fd < 0) {
        rc = err_set(err, -errno, "%s: cannot open: %s", df->path, strerror(errno));
        goto cleanup;
    }
    uint32_t w = df->width, max_id = 0;
    uint64_t n = df->n_tokens, docs = n > 0, per = DATA_IO_BUF / w;
    int64_t eos = df->fmt.eos_id;
    for (uint64_t pos = 0; pos < n; pos += per) {
        uint64_t k = n - pos < per ? n - pos : per;
        size_t got;
        if ((rc = data_read_full(fd, buf, k * w, df->offset + pos * w, &got)) < 0) {
            rc = err_set(err, rc, "%s: read failed: %s", df->path, strerror(-rc));
            goto cleanup;
        }
        if (got != k * w) {
            rc = err_set(err, -EIO, "%s: shorter than its %llu ids (changed while reading?)", df->path,
                         (unsigned long long)n);
            goto cleanup;
        }
        for (uint64_t i = 0; i < k; i++) {
            uint32_t id = data_entry_at(buf, w, i);
            if (id > max_id)
                max_id = id;
            docs += (int64_t)id == eos && pos + i + 1 < n;
        }
    }
    h->kind = DATA_KIND_RAW;
    h->n_tokens = n;
    h->n_docs = docs;
    h->max_id = max_id;
    h->raw_width = w;
    h->raw_offset = df->offset;
cleanup:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* Decompresses a raw file (.bin.zst, .u32.zst) into packed entries. */
static int data_build_raw_zst(const data_file *df, data_writer *w, data_idx_hdr *h, rt_err *err)
{
    data_reader rd;
    int rc = rd_open(&rd, df->path, true, err);
    if (rc < 0)
        return rc;
    uint8_t *buf = malloc(DATA_IO_BUF + 4);
    uint32_t *outb = malloc((DATA_IO_BUF + 4) / 2 * sizeof *outb); /* room for 2-byte ids */
    uint32_t width = 4, max_id = 0, prev = 0;
    uint64_t expect = UINT64_MAX, n = 0, docs = 0;
    size_t carry = 0;
    int64_t eos = df->fmt.eos_id;
    if (buf == NULL || outb == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (df->fmt.format == DATA_FMT_LLMC) {
        int32_t hdr[DATA_LLMC_HEADER / 4];
        size_t got;
        if ((rc = rd_read_full(&rd, hdr, sizeof hdr, &got, err)) < 0)
            goto cleanup;
        if (got != sizeof hdr) {
            rc = err_set(err, -EINVAL, "%s: %zu decompressed bytes is shorter than the %u-byte llm.c header",
                         df->path, got, DATA_LLMC_HEADER);
            goto cleanup;
        }
        if ((rc = data_llmc_header(df->path, hdr, UINT64_MAX, &width, &expect, err)) < 0)
            goto cleanup;
    }
    for (;;) {
        size_t got;
        if ((rc = rd_read(&rd, buf + carry, DATA_IO_BUF, &got, err)) < 0)
            goto cleanup;
        if (got == 0)
            break;
        size_t have = carry + got, k = have / width, o = 0;
        for (size_t i = 0; i < k; i++, n++) {
            uint32_t id;
            if (width == 2) {
                uint16_t v;
                memcpy(&v, buf + i * 2, 2);
                id = v;
            } else {
                memcpy(&id, buf + i * 4, 4);
            }
            if (id > DATA_ID_MASK) {
                rc = err_set(err, -EINVAL, "%s: id %u at position %llu is not a token id (at least 2^30)", df->path,
                             id, (unsigned long long)n);
                goto cleanup;
            }
            bool start = n == 0 || (int64_t)prev == eos;
            docs += start;
            if (id > max_id)
                max_id = id;
            prev = id;
            outb[o++] = id | DATA_TRAIN_BIT | (start ? DATA_START_BIT : 0);
        }
        if ((rc = data_w_write(w, outb, o * 4)) < 0) {
            rc = err_set(err, rc, "%s: cannot write its index: %s", df->path, strerror(-rc));
            goto cleanup;
        }
        carry = have - k * width;
        memmove(buf, buf + k * width, carry);
    }
    if (carry != 0) {
        rc = err_set(err, -EINVAL, "%s: the decompressed data ends inside a %u-byte id", df->path, width);
        goto cleanup;
    }
    if (expect != UINT64_MAX && expect != n) {
        rc = err_set(err, -EINVAL, "%s: llm.c header says %llu tokens but the stream holds %llu: truncated or "
                                   "not an llm.c shard", df->path, (unsigned long long)expect, (unsigned long long)n);
        goto cleanup;
    }
    h->kind = DATA_KIND_PACKED;
    h->n_tokens = n;
    h->n_docs = docs;
    h->max_id = max_id;
    h->raw_width = 4;
cleanup:
    free(buf);
    free(outb);
    rd_close(&rd);
    return rc;
}

/* Builds df's index at path. */
static int data_build_at(data_file *df, const char *path, const tok *t, int threads, size_t chunk, rt_err *err,
                         int *werr)
{
    data_writer w;
    data_idx_hdr h;
    memset(&h, 0, sizeof h);
    h.src_size = (uint64_t)df->st.st_size;
    h.src_mtime_ns = data_mtime_ns(&df->st);
    h.opts_hash = df->opts_hash;
    int rc = data_w_open(&w, path);
    if (rc < 0) {
        *werr = rc;
        data_w_close(&w);
        return rc;
    }
    if (df->kind == DATA_KIND_RAW)
        rc = data_build_raw_stats(df, &h, err);
    else if (data_is_raw(df->fmt.format))
        rc = data_build_raw_zst(df, &w, &h, err);
    else
        rc = data_build_text(df, t, threads, chunk, &w, &h, err);
    if (rc == 0) {
        rc = data_w_commit(&w, &h, path);
        if (rc < 0)
            err_set(err, rc, "%s: cannot write its index %s: %s", df->path, path, strerror(-rc));
    }
    data_w_close(&w);
    return rc;
}

typedef struct data_build_job {
    data_file *f;
    char primary[PATH_MAX], fallback[PATH_MAX];
    int rc;
    rt_err err;
} data_build_job;

typedef struct data_pool {
    data_build_job *jobs; /* [n] */
    size_t n;
    atomic_size_t next;
    const tok *t;
    int inner;            /* tokenizing threads per file */
    size_t chunk;
} data_pool;

static void data_build_one(data_pool *pool, data_build_job *j)
{
    data_file *df = j->f;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    log_info("data: indexing %s (%s, %.1f MiB)", df->path, data_format_name(df->fmt.format),
             (double)df->st.st_size / (1 << 20));
    int werr = 0;
    const char *where = j->primary;
    j->rc = data_build_at(df, where, pool->t, pool->inner, pool->chunk, &j->err, &werr);
    if (j->rc < 0 && werr < 0 && j->fallback[0] != '\0') {
        log_info("data: cannot write an index beside %s (%s); using %s", df->path, strerror(-werr), j->fallback);
        int werr2 = 0;
        where = j->fallback;
        j->rc = data_build_at(df, where, pool->t, pool->inner, pool->chunk, &j->err, &werr2);
        if (werr2 < 0)
            err_set(&j->err, werr2, "%s: cannot write its index: %s: %s; %s: %s", df->path, j->primary,
                    strerror(-werr), j->fallback, strerror(-werr2));
    } else if (j->rc < 0 && werr < 0) {
        err_set(&j->err, werr, "%s: cannot write its index %s: %s", df->path, j->primary, strerror(-werr));
    }
    if (j->rc < 0)
        return;
    free(df->idx_path);
    df->idx_path = strdup(where);
    if (df->idx_path == NULL) {
        j->rc = err_set(&j->err, -ENOMEM, "out of memory");
        return;
    }
    df->built = true;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    log_info("data: indexed %s in %.2f s", df->path,
             (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
}

static void *data_pool_run(void *arg)
{
    data_pool *pool = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&pool->next, 1);
        if (i >= pool->n)
            return NULL;
        data_build_one(pool, &pool->jobs[i]);
    }
}

/* ---- opening the pipeline ---------------------------------------------------- */

/* A fingerprint of the tokenizer: what its ids depend on. */
static uint64_t data_tok_fingerprint(const data_config *cfg, const tok *t)
{
    uint64_t h = data_hash_str(0x746f6b656eull, tok_describe(t));
    h = data_hash_u64(h, (uint64_t)tok_vocab_size(t));
    h = data_hash_u64(h, (uint64_t)(int64_t)tok_bos(t));
    h = data_hash_u64(h, (uint64_t)(int64_t)tok_eos(t));
    static const char probe[] = "Hello, world! The quick brown fox 1234567 \n\n\t  x\xc3\xa9\xe4\xb8\xad<|eot_id|>"
                                "<|im_start|></s><s>\xff\xfe end";
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (tok_encode(t, probe, sizeof probe - 1, false, &ids, &n, &cap, NULL) == 0)
        h = data_hash(h, ids, n * sizeof *ids);
    free(ids);
    if (cfg->tokenizer != NULL) {
        char *p = cfg->tokenizer[0] == '/' ? strdup(cfg->tokenizer) : data_join(cfg->base_dir, cfg->tokenizer);
        struct stat st;
        if (p != NULL && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            char *q = data_join(p, "tokenizer.json");
            free(p);
            p = q;
        }
        FILE *f = p ? fopen(p, "rb") : NULL;
        if (f != NULL) {
            char *buf = malloc(DATA_IO_BUF);
            size_t got;
            while (buf != NULL && (got = fread(buf, 1, DATA_IO_BUF, f)) > 0)
                h = data_hash(h, buf, got);
            free(buf);
            fclose(f);
        }
        free(p);
    }
    return h;
}

static uint64_t data_opts_hash(const data_fmt *f, uint64_t tok_fp, int kind)
{
    uint64_t h = data_hash_u64(0x6f707473ull, DATA_IDX_VERSION);
    h = data_hash_u64(h, (uint64_t)kind);
    h = data_hash_u64(h, (uint64_t)f->format);
    h = data_hash_u64(h, f->zst);
    h = data_hash_u64(h, (uint64_t)(int64_t)f->eos_id);
    if (data_is_raw(f->format))
        return h; /* ids as stored: the tokenizer does not matter */
    h = data_hash_u64(h, tok_fp);
    h = data_hash_u64(h, (uint64_t)f->chat);
    h = data_hash_u64(h, (uint64_t)f->split);
    h = data_hash_str(h, f->format == DATA_FMT_JSONL ? (f->text_field ? f->text_field : "text") : "");
    h = data_hash_u64(h, (uint64_t)f->add_bos << 2 | (uint64_t)f->add_eos << 1 | f->skip_bad);
    h = data_hash_u64(h, (uint64_t)(int64_t)f->bos_id);
    return data_hash(h, f->sp, sizeof f->sp);
}

/* Which special tokens a chat template uses. */
static bool data_chat_uses(data_chat_format c, int sp)
{
    if (c == DATA_CHAT_LLAMA3)
        return sp <= DATA_SP_EOT;
    if (c == DATA_CHAT_CHATML)
        return sp == DATA_SP_IM_START || sp == DATA_SP_IM_END;
    return false;
}

/* Resolves one file's format options; what names the source in messages. */
static int data_file_resolve(const data_config *cfg, const data_source_config *sc, const char *what, const tok *t,
                             int32_t bos, int32_t eos, data_file *df, rt_err *err)
{
    data_fmt *f = &df->fmt;
    memset(f, 0, sizeof *f);
    f->format = sc->format != DATA_FMT_AUTO ? sc->format : data_format_from_name(df->path);
    if (f->format == DATA_FMT_AUTO)
        return err_set(err, -EINVAL, "%s: cannot tell the format of %s from its name (.txt .md .jsonl .bin .u32, "
                                     "optionally .zst): set its format to one of " DATA_FORMAT_LIST, what, df->path);
    if (sc->text_field != NULL && f->format != DATA_FMT_JSONL)
        return err_set(err, -EINVAL, "%s: text_field only applies to jsonl, but %s is %s", what, df->path,
                       data_format_name(f->format));
    if (sc->chat_format != DATA_CHAT_AUTO && !data_is_chat(f->format))
        return err_set(err, -EINVAL, "%s: chat_format only applies to alpaca, sharegpt and messages, but %s is %s",
                       what, df->path, data_format_name(f->format));
    if (sc->split != DATA_SPLIT_FILE && f->format != DATA_FMT_TEXT)
        return err_set(err, -EINVAL, "%s: split only applies to text, but %s is %s", what, df->path,
                       data_format_name(f->format));
    f->split = sc->split;
    f->text_field = sc->text_field;
    f->add_bos = cfg->add_bos;
    f->add_eos = cfg->add_eos;
    f->skip_bad = cfg->skip_bad_lines;
    f->bos_id = bos;
    f->eos_id = eos;
    f->zst = data_sniff_zst(df->path);
    for (int i = 0; i < DATA_SP_N; i++)
        f->sp[i] = -1;
    if (data_is_raw(f->format))
        return 0;
    if (cfg->add_eos && eos < 0)
        return err_set(err, -EINVAL, "%s: the tokenizer (%s) has no EOS token to end documents with: set eos_token "
                                     "or eos_id, or add_eos: false", what, tok_describe(t));
    if (cfg->add_bos && bos < 0)
        return err_set(err, -EINVAL, "%s: add_bos is set but the tokenizer (%s) has no BOS token", what,
                       tok_describe(t));
    if (!data_is_chat(f->format))
        return 0;
    f->chat = sc->chat_format;
    if (f->chat == DATA_CHAT_AUTO) {
        if (f->format == DATA_FMT_ALPACA)
            f->chat = DATA_CHAT_ALPACA;
        else if (tok_id(t, "<|start_header_id|>") >= 0)
            f->chat = DATA_CHAT_LLAMA3;
        else if (tok_id(t, "<|im_start|>") >= 0)
            f->chat = DATA_CHAT_CHATML;
        else
            return err_set(err, -EINVAL, "%s: chat_format not given and the tokenizer (%s) has neither Llama-3 nor "
                                         "ChatML special tokens: set chat_format to one of " DATA_CHAT_LIST,
                           what, tok_describe(t));
    }
    if (f->chat == DATA_CHAT_ALPACA && eos < 0)
        return err_set(err, -EINVAL, "%s: the alpaca chat format ends each response with EOS, but the tokenizer "
                                     "(%s) has none: set eos_token or eos_id", what, tok_describe(t));
    for (int i = 0; i < DATA_SP_N; i++) {
        if (!data_chat_uses(f->chat, i))
            continue;
        f->sp[i] = tok_id(t, data_special_text[i]);
        /* only the built-in byte tokenizer may spell them as text */
        if (f->sp[i] < 0 && cfg->tokenizer != NULL)
            return err_set(err, -EINVAL, "%s: chat_format %s needs the special token %s, which the tokenizer (%s) "
                                         "does not have", what, data_chat_format_name(f->chat), data_special_text[i],
                           tok_describe(t));
    }
    return 0;
}

/* The file f's entries are read from: its index when packed, else the data file. */
static const char *data_file_src_path(const data_file *f)
{
    return f->kind == DATA_KIND_PACKED ? f->idx_path : f->path;
}

static void data_file_adopt(data_file *df, const data_idx_hdr *h)
{
    df->n_tokens = h->n_tokens;
    df->n_docs = h->n_docs;
    df->n_skipped = h->n_skipped;
    df->max_id = h->max_id;
    snprintf(df->first_skip, sizeof df->first_skip, "%s", h->first_skip);
    if (df->kind == DATA_KIND_PACKED) {
        df->width = 4;
        df->offset = DATA_IDX_PAYLOAD;
    }
}

/* Finds the first id >= vocab in df (for the message), or returns -ENOENT. */
static int data_find_big_id(const data_file *df, uint64_t vocab, uint64_t *pos, uint32_t *id)
{
    int fd = open(data_file_src_path(df), O_RDONLY | O_CLOEXEC), rc = -ENOENT;
    uint8_t *buf = malloc(DATA_IO_BUF);
    uint64_t per = DATA_IO_BUF / df->width;
    for (uint64_t p = 0; fd >= 0 && buf != NULL && p < df->n_tokens && rc == -ENOENT; p += per) {
        uint64_t k = df->n_tokens - p < per ? df->n_tokens - p : per;
        size_t got;
        if (data_read_full(fd, buf, k * df->width, df->offset + p * df->width, &got) < 0 || got != k * df->width)
            break;
        for (uint64_t i = 0; i < k; i++) {
            uint32_t v = data_entry_at(buf, df->width, i);
            if (df->kind == DATA_KIND_PACKED)
                v &= DATA_ID_MASK;
            if (v >= vocab) {
                *pos = p + i;
                *id = v;
                rc = 0;
                break;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* Integer quotas per DATA_SLOTS from weights w[n] (largest remainder, at
 * least 1 each). */
static int data_quotas(const double *w, uint32_t n, uint32_t *q)
{
    double sum = 0;
    for (uint32_t s = 0; s < n; s++)
        sum += w[s];
    double *frac = malloc(n * sizeof *frac);
    if (frac == NULL)
        return -ENOMEM;
    uint64_t total = 0;
    for (uint32_t s = 0; s < n; s++) {
        double x = w[s] / sum * DATA_SLOTS;
        q[s] = (uint32_t)floor(x);
        frac[s] = x - floor(x);
        if (q[s] == 0) {
            q[s] = 1;
            frac[s] = -1;
        }
        total += q[s];
    }
    while (total < DATA_SLOTS) {
        uint32_t best = 0;
        for (uint32_t s = 1; s < n; s++)
            if (frac[s] > frac[best] || (frac[best] < 0 && frac[s] == frac[best] && w[s] > w[best]))
                best = s;
        q[best]++;
        frac[best] = -1;
        total++;
    }
    while (total > DATA_SLOTS) {
        uint32_t best = 0;
        for (uint32_t s = 1; s < n; s++)
            if (q[s] > q[best])
                best = s;
        q[best]--;
        total--;
    }
    free(frac);
    return 0;
}

/* The slot table: sources interleaved by smooth weighted round robin,
 * shuffled when asked, each slot tagged with its ordinal in its source. */
static int data_slots_build(data_pipeline *p)
{
    uint32_t n = p->n_src;
    int64_t *cur = calloc(n, sizeof *cur);
    uint32_t *cnt = calloc(n, sizeof *cnt);
    uint16_t *arr = malloc(DATA_SLOTS * sizeof *arr);
    p->slots = malloc(DATA_SLOTS * sizeof *p->slots);
    int rc = 0;
    if (cur == NULL || cnt == NULL || arr == NULL || p->slots == NULL) {
        rc = -ENOMEM;
        goto cleanup;
    }
    for (uint32_t i = 0; i < DATA_SLOTS; i++) {
        uint32_t best = 0;
        for (uint32_t s = 0; s < n; s++) {
            cur[s] += p->src[s].quota;
            if (cur[s] > cur[best])
                best = s;
        }
        cur[best] -= DATA_SLOTS;
        arr[i] = (uint16_t)best;
    }
    if (p->shuffle) {
        rng_state r;
        rng_seed(&r, data_mix64(p->seed ^ 0x736c6f7473ull));
        for (uint32_t i = DATA_SLOTS - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(rng_next(&r) % (i + 1));
            uint16_t tmp = arr[i];
            arr[i] = arr[j];
            arr[j] = tmp;
        }
    }
    for (uint32_t i = 0; i < DATA_SLOTS; i++)
        p->slots[i] = (uint32_t)arr[i] << 16 | cnt[arr[i]]++;
cleanup:
    free(cur);
    free(cnt);
    free(arr);
    return rc;
}

void data_close(data_pipeline *p)
{
    if (p == NULL)
        return;
    for (uint32_t s = 0; s < p->n_src; s++) {
        for (uint32_t i = 0; i < p->src[s].n_files; i++) {
            data_file *f = &p->src[s].files[i];
            if (f->fd >= 0)
                close(f->fd);
            free(f->path);
            free(f->idx_path);
        }
        free(p->src[s].files);
        if (p->paths)
            free(p->paths[s]);
    }
    free(p->paths);
    free(p->src);
    free(p->sstats);
    free(p->slots);
    free(p);
}

const data_stats *data_get_stats(const data_pipeline *p) { return &p->stats; }

int data_open(const data_config *cfg, const tok *t_in, const data_open_opts *opts, data_pipeline **out,
              rt_err *err)
{
    int rc = 0;
    data_open_opts o = opts ? *opts : (data_open_opts){0};
    tok *owned = NULL;
    const tok *t = t_in;
    data_pipeline *p = calloc(1, sizeof *p);
    data_pool pool = {0};
    pthread_t *th = NULL;
    double *weights = NULL;
    uint32_t *quotas = NULL;
    char what[320];
    if (p == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    if (o.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
    }
    if (o.max_open_files <= 0)
        o.max_open_files = DATA_DEFAULT_OPEN_FILES;
    if (o.build_chunk_bytes == 0)
        o.build_chunk_bytes = DATA_DEFAULT_CHUNK;
    if (o.build_chunk_bytes < 64)
        o.build_chunk_bytes = 64;
    if (cfg->seq_len < 1 || cfg->batch_rows < 1 || cfg->n_sources < 1 || cfg->n_sources > DATA_MAX_SOURCES) {
        rc = err_set(err, -EINVAL, "%s: %sseq_len %lld, %sbatch_rows %lld and %d sources: expected positive "
                                   "sizes and 1 to %d sources", cfg->origin, cfg->key_prefix, (long long)cfg->seq_len,
                     cfg->key_prefix, (long long)cfg->batch_rows, cfg->n_sources, DATA_MAX_SOURCES);
        goto cleanup;
    }
    p->T = cfg->seq_len;
    p->B = cfg->batch_rows;
    p->seed = cfg->seed;
    p->shuffle = cfg->shuffle;
    p->n_src = (uint32_t)cfg->n_sources;
    p->src = calloc(p->n_src, sizeof *p->src);
    p->sstats = calloc(p->n_src, sizeof *p->sstats);
    p->paths = calloc(p->n_src, sizeof *p->paths);
    if (p->src == NULL || p->sstats == NULL || p->paths == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    if (t == NULL) {
        char *tp = NULL;
        if (cfg->tokenizer != NULL) {
            tp = cfg->tokenizer[0] == '/' ? strdup(cfg->tokenizer) : data_join(cfg->base_dir, cfg->tokenizer);
            if (tp == NULL) {
                rc = err_set(err, -ENOMEM, "out of memory");
                goto cleanup;
            }
        }
        rc = tok_open(tp, &owned, err);
        free(tp);
        if (rc < 0) {
            err_prefix(err, rc, "%s: %stokenizer", cfg->origin, cfg->key_prefix);
            goto cleanup;
        }
        t = owned;
    }
    int64_t vocab_tok = tok_vocab_size(t);
    if (vocab_tok > (int64_t)DATA_ID_MASK + 1) {
        rc = err_set(err, -EINVAL, "the tokenizer (%s) has %lld ids; at most 2^30 are supported", tok_describe(t),
                     (long long)vocab_tok);
        goto cleanup;
    }
    int32_t eos = tok_eos(t), bos = tok_bos(t);
    if (cfg->eos_id >= 0) {
        eos = (int32_t)cfg->eos_id;
    } else if (cfg->eos_token != NULL) {
        eos = tok_id(t, cfg->eos_token);
        if (eos < 0) {
            rc = err_set(err, -EINVAL, "%s: %seos_token: \"%s\" is not a token of the tokenizer (%s)", cfg->origin,
                         cfg->key_prefix, cfg->eos_token, tok_describe(t));
            goto cleanup;
        }
    }
    p->eos_id = eos;
    p->pad_id = eos >= 0 ? eos : 0;
    if (o.vocab_size > 0 && eos >= 0 && eos >= o.vocab_size) {
        rc = err_set(err, -EINVAL, "the EOS id %d is not below the model's vocabulary size %lld", eos,
                     (long long)o.vocab_size);
        goto cleanup;
    }
    bool have_fp = false;
    uint64_t tok_fp = 0;
    size_t n_files_total = 0;

    /* files, formats, index locations */
    for (uint32_t s = 0; s < p->n_src; s++) {
        const data_source_config *sc = &cfg->sources[s];
        data_src *src = &p->src[s];
        snprintf(what, sizeof what, "%s: %ssources[%u] (%s)", cfg->origin, cfg->key_prefix, s,
                 sc->path ? sc->path : "?");
        if (sc->path == NULL) {
            rc = err_set(err, -EINVAL, "%s: no path", what);
            goto cleanup;
        }
        p->paths[s] = strdup(sc->path);
        if (p->paths[s] == NULL) {
            rc = err_set(err, -ENOMEM, "out of memory");
            goto cleanup;
        }
        data_strv files = {0};
        if ((rc = data_expand(cfg->base_dir, sc->path, what, &files, err)) < 0) {
            strv_free(&files);
            goto cleanup;
        }
        src->files = calloc(files.n, sizeof *src->files);
        if (src->files == NULL) {
            strv_free(&files);
            rc = err_set(err, -ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < files.n; i++) {
            src->files[i].path = files.v[i];
            src->files[i].fd = -1;
            files.v[i] = NULL;
        }
        src->n_files = (uint32_t)files.n;
        strv_free(&files);
        n_files_total += src->n_files;
        for (uint32_t i = 0; i < src->n_files; i++) {
            data_file *df = &src->files[i];
            if ((rc = data_file_resolve(cfg, sc, what, t, bos, eos, df, err)) < 0)
                goto cleanup;
            if (stat(df->path, &df->st) != 0) {
                rc = err_set(err, -errno, "%s: %s", df->path, strerror(errno));
                goto cleanup;
            }
            df->kind = data_is_raw(df->fmt.format) && !df->fmt.zst ? DATA_KIND_RAW : DATA_KIND_PACKED;
            if (df->kind == DATA_KIND_RAW &&
                (rc = data_raw_layout(df->path, df->fmt.format, &df->st, &df->width, &df->offset, &df->n_tokens,
                                      err)) < 0)
                goto cleanup;
            if (!data_is_raw(df->fmt.format) && !have_fp) {
                tok_fp = data_tok_fingerprint(cfg, t);
                have_fp = true;
            }
            df->opts_hash = data_opts_hash(&df->fmt, tok_fp, df->kind);
        }
    }

    /* valid index files, or the list to build */
    pool.jobs = calloc(n_files_total, sizeof *pool.jobs);
    if (pool.jobs == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    for (uint32_t s = 0; s < p->n_src; s++) {
        for (uint32_t i = 0; i < p->src[s].n_files; i++) {
            data_file *df = &p->src[s].files[i];
            data_build_job *j = &pool.jobs[pool.n];
            if ((rc = data_idx_paths(cfg, df->path, df->opts_hash, j->primary, j->fallback, PATH_MAX)) < 0) {
                rc = err_set(err, rc, "%s: index file name: %s", df->path, strerror(-rc));
                goto cleanup;
            }
            data_idx_hdr h;
            const char *found = NULL;
            if (data_idx_check(j->primary, &df->st, df->opts_hash, df->kind, &h) == 0)
                found = j->primary;
            else if (j->fallback[0] != '\0' &&
                     data_idx_check(j->fallback, &df->st, df->opts_hash, df->kind, &h) == 0)
                found = j->fallback;
            if (found != NULL) {
                df->idx_path = strdup(found);
                if (df->idx_path == NULL) {
                    rc = err_set(err, -ENOMEM, "out of memory");
                    goto cleanup;
                }
                continue;
            }
            j->f = df;
            pool.n++;
        }
    }
    if (pool.n > 0) {
        int outer = pool.n < (size_t)o.threads ? (int)pool.n : o.threads;
        pool.inner = o.threads / outer > 0 ? o.threads / outer : 1;
        pool.t = t;
        /* files built side by side share the memory one would use */
        pool.chunk = o.build_chunk_bytes / (size_t)outer;
        if (pool.chunk < (o.build_chunk_bytes < (1u << 20) ? o.build_chunk_bytes : (1u << 20)))
            pool.chunk = o.build_chunk_bytes < (1u << 20) ? o.build_chunk_bytes : (1u << 20);
        atomic_init(&pool.next, 0);
        th = calloc((size_t)outer, sizeof *th);
        if (th == NULL) {
            rc = err_set(err, -ENOMEM, "out of memory");
            goto cleanup;
        }
        int started = 0;
        for (int i = 1; i < outer; i++, started++)
            if (pthread_create(&th[i], NULL, data_pool_run, &pool) != 0)
                break;
        data_pool_run(&pool);
        for (int i = 1; i <= started; i++)
            pthread_join(th[i], NULL);
        for (size_t i = 0; i < pool.n; i++)
            if (pool.jobs[i].rc < 0) {
                rc = pool.jobs[i].rc;
                if (err != NULL)
                    *err = pool.jobs[i].err;
                goto cleanup;
            }
    }

    /* counts, vocabulary, streams */
    for (uint32_t s = 0; s < p->n_src; s++) {
        data_src *src = &p->src[s];
        data_source_stats *ss = &p->sstats[s];
        snprintf(what, sizeof what, "%s: %ssources[%u] (%s)", cfg->origin, cfg->key_prefix, s, cfg->sources[s].path);
        ss->path = p->paths[s];
        ss->files = src->n_files;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < src->n_files; i++) {
            data_file *df = &src->files[i];
            data_idx_hdr h;
            uint64_t raw_count = df->n_tokens;
            if ((rc = data_idx_check(df->idx_path, &df->st, df->opts_hash, df->kind, &h)) < 0) {
                rc = err_set(err, -EIO, "%s: its index %s changed while opening (%s): another process rebuilding it?",
                             df->path, df->idx_path, strerror(-rc));
                goto cleanup;
            }
            data_file_adopt(df, &h);
            if (df->kind == DATA_KIND_RAW && df->n_tokens != raw_count) {
                rc = err_set(err, -EIO, "%s: %llu ids, but its index says %llu", df->path,
                             (unsigned long long)raw_count, (unsigned long long)df->n_tokens);
                goto cleanup;
            }
            ss->files_indexed += df->built;
            ss->documents += df->n_docs;
            ss->lines_skipped += df->n_skipped;
            if (df->n_skipped > 0 && ss->first_skipped[0] == '\0')
                snprintf(ss->first_skipped, sizeof ss->first_skipped, "%s:%s", df->path, df->first_skip);
            if (df->n_skipped > 0)
                log_warn("data: %s: skipped %llu bad lines; first: %s:%s", df->path,
                         (unsigned long long)df->n_skipped, df->path, df->first_skip);
            int64_t limit = o.vocab_size > 0 ? o.vocab_size : (data_is_raw(df->fmt.format) ? 0 : vocab_tok);
            if (limit > 0 && df->n_tokens > 0 && df->max_id >= (uint64_t)limit) {
                uint64_t pos = 0;
                uint32_t id = df->max_id;
                data_find_big_id(df, (uint64_t)limit, &pos, &id);
                if (data_is_raw(df->fmt.format))
                    rc = err_set(err, -EINVAL, "%s: token id %u at position %llu is not below the model's "
                                               "vocabulary size %lld", df->path, id, (unsigned long long)pos,
                                 (long long)limit);
                else
                    rc = err_set(err, -EINVAL, "%s: token id %u at position %llu of its token stream is not below "
                                               "the vocabulary size %lld: the tokenizer (%s, %lld ids) does not "
                                               "match the model", df->path, id, (unsigned long long)pos,
                                 (long long)limit, tok_describe(t), (long long)vocab_tok);
                goto cleanup;
            }
            df->first = src->n_tokens;
            src->n_tokens += df->n_tokens;
        }
        for (uint32_t i = 0; i < src->n_files; i++) { /* files without tokens leave the stream */
            data_file *df = &src->files[i];
            if (df->n_tokens == 0) {
                free(df->path);
                free(df->idx_path);
            } else {
                src->files[kept++] = *df;
            }
        }
        src->n_files = kept;
        ss->tokens = src->n_tokens;
        src->n_rows = src->n_tokens >= 2 ? (src->n_tokens - 2) / (uint64_t)p->T + 1 : 0;
        ss->rows = src->n_rows;
        if (src->n_rows == 0) {
            rc = err_set(err, -ENODATA, "%s: no data: %u files, %llu tokens, %llu bad lines skipped%s%s%s", what,
                         ss->files, (unsigned long long)src->n_tokens, (unsigned long long)ss->lines_skipped,
                         ss->first_skipped[0] ? " (first: " : "", ss->first_skipped, ss->first_skipped[0] ? ")" : "");
            goto cleanup;
        }
        if (src->n_rows >= (1ull << 62)) {
            rc = err_set(err, -EFBIG, "%s: %llu rows is more than supported", what, (unsigned long long)src->n_rows);
            goto cleanup;
        }
    }

    /* files kept open for data_batch */
    int open_files = 0;
    for (uint32_t s = 0; s < p->n_src; s++)
        for (uint32_t i = 0; i < p->src[s].n_files && open_files < o.max_open_files; i++) {
            data_file *df = &p->src[s].files[i];
            const char *path = data_file_src_path(df);
            df->fd = open(path, O_RDONLY | O_CLOEXEC);
            if (df->fd < 0) {
                rc = err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
                goto cleanup;
            }
            open_files++;
        }

    /* mixture */
    weights = calloc(p->n_src, sizeof *weights);
    quotas = calloc(p->n_src, sizeof *quotas);
    if (weights == NULL || quotas == NULL) {
        rc = err_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    for (uint32_t s = 0; s < p->n_src; s++)
        weights[s] = cfg->sources[s].weight > 0 ? cfg->sources[s].weight : (double)p->src[s].n_rows;
    if ((rc = data_quotas(weights, p->n_src, quotas)) < 0) {
        rc = err_set(err, rc, "out of memory");
        goto cleanup;
    }
    for (uint32_t s = 0; s < p->n_src; s++)
        p->src[s].quota = quotas[s];
    if ((rc = data_slots_build(p)) < 0) {
        rc = err_set(err, rc, "out of memory");
        goto cleanup;
    }

    /* stats */
    data_stats *st = &p->stats;
    st->seq_len = p->T;
    st->batch_rows = p->B;
    st->shuffle = p->shuffle;
    st->mask_doc_attention = cfg->mask_doc_attention;
    st->eos_id = p->eos_id;
    st->n_sources = p->n_src;
    st->sources = p->sstats;
    for (uint32_t s = 0; s < p->n_src; s++) {
        data_source_stats *ss = &p->sstats[s];
        ss->share = (double)p->src[s].quota / DATA_SLOTS;
        st->files += ss->files;
        st->files_indexed += ss->files_indexed;
        st->documents += ss->documents;
        st->tokens += ss->tokens;
        st->rows += ss->rows;
        st->lines_skipped += ss->lines_skipped;
        for (uint32_t i = 0; i < p->src[s].n_files; i++)
            if (p->src[s].files[i].max_id > st->max_id)
                st->max_id = p->src[s].files[i].max_id;
        log_info("data: sources[%u] %s: %u files (%u indexed now), %llu documents, %llu tokens, %llu rows, "
                 "share %.4f", s, ss->path, ss->files, ss->files_indexed, (unsigned long long)ss->documents,
                 (unsigned long long)ss->tokens, (unsigned long long)ss->rows, ss->share);
    }
cleanup:
    free(weights);
    free(quotas);
    free(th);
    free(pool.jobs);
    tok_close(owned);
    if (rc < 0) {
        data_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- batches -------------------------------------------------------------------- */

/* A bijection of [0, n): Feistel network over the next even power of two,
 * cycle-walked back into range (expected < 4 walks: the domain is < 4n). */
static uint64_t data_perm(uint64_t n, uint64_t key, uint64_t x)
{
    if (n <= 1)
        return 0;
    int bits = 64 - __builtin_clzll(n - 1);
    if (bits < 2)
        bits = 2;
    bits += bits & 1;
    int half = bits / 2;
    uint64_t mask = (1ull << half) - 1;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (int i = 0; i < DATA_FEISTEL_ROUNDS; i++) {
            uint64_t f = data_mix64(key ^ (r + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull)) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = l << half | r;
    } while (x >= n);
    return x;
}

void data_row_locate(const data_pipeline *p, uint64_t g, uint32_t *source, uint64_t *row, uint64_t *epoch)
{
    uint64_t block = g / DATA_SLOTS;
    uint32_t e = p->slots[g % DATA_SLOTS];
    uint32_t s = e >> 16;
    const data_src *src = &p->src[s];
    uint64_t t = block * src->quota + (e & 0xffffu);
    uint64_t ep = t / src->n_rows, w = t % src->n_rows;
    if (p->shuffle) {
        uint64_t key[3] = {p->seed, s, ep};
        w = data_perm(src->n_rows, data_hash(0x726f7773ull, key, sizeof key), w);
    }
    *source = s;
    *row = w;
    *epoch = ep;
}

/* A descriptor to read f's entries through: the one data_open kept, or a
 * new one the caller closes (when f->fd < 0). */
static int data_file_fd(const data_file *f, rt_err *err)
{
    if (f->fd >= 0)
        return f->fd;
    const char *path = data_file_src_path(f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, -EIO, "%s: cannot open: %s", path, strerror(errno));
    return fd;
}

/* Reads f's entries [pos, pos + k) (f->width bytes each) through fd into
 * dst; fails when the file is shorter than it was at data_open. */
static int data_file_pread(const data_file *f, int fd, uint8_t *dst, uint64_t pos, uint64_t k, rt_err *err)
{
    const char *path = data_file_src_path(f);
    size_t got = 0, len = k * f->width;
    uint64_t off = f->offset + pos * f->width;
    int rc = data_read_full(fd, dst, len, off, &got);
    if (rc < 0)
        return err_set(err, -EIO, "%s: read failed: %s", path, strerror(-rc));
    if (got != len)
        return err_set(err, -EIO, "%s: %zu of %llu bytes at offset %llu: the file shrank since data_open", path, got,
                       (unsigned long long)len, (unsigned long long)off);
    return 0;
}

/* Fills one row: tokens [T + 1], mask [T], doc [T + 1] (or NULL). */
static int data_read_row(const data_pipeline *p, const data_src *src, uint64_t row, int32_t *tokens, uint8_t *mask,
                         uint32_t *doc, rt_err *err)
{
    uint64_t T = (uint64_t)p->T, pos = row * T, need = T + 1, u = 0;
    uint32_t cur = 0;
    uint8_t *bytes = (uint8_t *)tokens;
    while (u < need && pos < src->n_tokens) {
        uint32_t lo = 0, hi = src->n_files; /* last file with first <= pos */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (src->files[mid].first <= pos)
                lo = mid;
            else
                hi = mid;
        }
        const data_file *f = &src->files[lo];
        uint64_t local = pos - f->first;
        uint64_t k = f->n_tokens - local < need - u ? f->n_tokens - local : need - u;
        uint32_t w = f->width;
        /* ids land at the end of their int32 slots and widen front to back in
         * place: element i is read before slot i overwrites it, and never
         * overwrites an element after it (4(i + 1) <= 2k + 2(i + 1) for i < k) */
        uint8_t *dst = bytes + u * 4 + (4 - w) * k;
        int fd = data_file_fd(f, err);
        if (fd < 0)
            return fd;
        int rc = data_file_pread(f, fd, dst, local, k, err);
        if (f->fd < 0)
            close(fd);
        if (rc < 0)
            return rc;
        for (uint64_t i = 0; i < k; i++, u++) {
            uint32_t v = data_entry_at(dst, w, i), id = v;
            bool start, trained = true;
            if (f->kind == DATA_KIND_PACKED) {
                id = v & DATA_ID_MASK;
                trained = (v & DATA_TRAIN_BIT) != 0;
                start = (v & DATA_START_BIT) != 0;
            } else {
                start = local + i == 0 || (u > 0 && tokens[u - 1] == p->eos_id);
            }
            tokens[u] = (int32_t)id;
            if (u > 0) {
                cur += start;
                mask[u - 1] = trained;
            }
            if (doc != NULL)
                doc[u] = cur;
        }
        pos += k;
    }
    for (bool first = true; u < need; u++, first = false) { /* past the source's end */
        tokens[u] = p->pad_id;
        if (u > 0) {
            cur += first;
            mask[u - 1] = 0;
        }
        if (doc != NULL)
            doc[u] = cur;
    }
    return 0;
}

int data_batch(const data_pipeline *p, uint64_t k, const data_batch_buf *buf, rt_err *err)
{
    if (buf == NULL || buf->tokens == NULL || buf->loss_mask == NULL)
        return err_set(err, -EINVAL, "data_batch: tokens and loss_mask buffers are required");
    uint64_t B = (uint64_t)p->B, T = (uint64_t)p->T;
    if (k > (UINT64_MAX - B) / B)
        return err_set(err, -EOVERFLOW, "data_batch: batch %llu is out of range", (unsigned long long)k);
    for (uint64_t r = 0; r < B; r++) {
        uint32_t s;
        uint64_t row, epoch;
        data_row_locate(p, k * B + r, &s, &row, &epoch);
        int rc = data_read_row(p, &p->src[s], row, buf->tokens + r * (T + 1), buf->loss_mask + r * T,
                               buf->doc ? buf->doc + r * (T + 1) : NULL, err);
        if (rc < 0)
            return err_prefix(err, rc, "batch %llu row %llu (sources[%u] row %llu)", (unsigned long long)k,
                              (unsigned long long)r, s, (unsigned long long)row);
        if (buf->source != NULL)
            buf->source[r] = s;
    }
    return 0;
}

/* ---- documents in corpus order ---------------------------------------------------- */

/* The document being assembled by data_docs_foreach. */
typedef struct data_docbuf {
    int32_t *ids;     /* [cap] */
    uint8_t *trained; /* [cap] */
    size_t n, cap;
} data_docbuf;

static int docbuf_push(data_docbuf *b, int32_t id, bool trained)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        int32_t *ids = realloc(b->ids, cap * sizeof *ids);
        if (ids == NULL)
            return -ENOMEM;
        b->ids = ids;
        uint8_t *tr = realloc(b->trained, cap);
        if (tr == NULL)
            return -ENOMEM;
        b->trained = tr;
        b->cap = cap;
    }
    b->ids[b->n] = id;
    b->trained[b->n] = trained;
    b->n++;
    return 0;
}

/* Hands the assembled document to fn and empties b. */
static int docbuf_emit(const data_pipeline *p, data_docbuf *b, uint32_t s, const char *path, uint64_t *index,
                       data_doc_fn fn, void *user, rt_err *err)
{
    data_doc_view v = {.index = *index, .source = s, .path = path, .ids = b->ids, .trained = b->trained, .n = b->n};
    if (v.n > 0 && p->eos_id >= 0 && b->ids[v.n - 1] == p->eos_id) {
        v.eos = true;
        v.n--;
    }
    b->n = 0;
    (*index)++;
    return fn(&v, user, err);
}

int data_docs_foreach(const data_pipeline *p, data_doc_fn fn, void *user, rt_err *err)
{
    int rc = 0;
    uint8_t *buf = malloc(DATA_IO_BUF); /* ids as stored: width bytes each */
    data_docbuf doc = {0};
    uint64_t index = 0;
    if (buf == NULL)
        return err_set(err, -ENOMEM, "out of memory");
    for (uint32_t s = 0; s < p->n_src && rc == 0; s++) {
        const data_src *src = &p->src[s];
        for (uint32_t fi = 0; fi < src->n_files && rc == 0; fi++) {
            const data_file *f = &src->files[fi];
            int fd = data_file_fd(f, err);
            if (fd < 0) {
                rc = fd;
                break;
            }
            uint32_t w = f->width, prev = 0;
            uint64_t per = DATA_IO_BUF / w;
            for (uint64_t pos = 0; pos < f->n_tokens && rc == 0; pos += per) {
                uint64_t k = f->n_tokens - pos < per ? f->n_tokens - pos : per;
                if ((rc = data_file_pread(f, fd, buf, pos, k, err)) < 0)
                    break;
                for (uint64_t i = 0; i < k && rc == 0; i++) {
                    uint32_t v = data_entry_at(buf, w, i), id = v;
                    bool start, trained = true;
                    if (f->kind == DATA_KIND_PACKED) {
                        id = v & DATA_ID_MASK;
                        trained = (v & DATA_TRAIN_BIT) != 0;
                        start = (v & DATA_START_BIT) != 0;
                    } else {
                        start = p->eos_id >= 0 && prev == (uint32_t)p->eos_id;
                    }
                    bool first = pos + i == 0;
                    if (start && !first && doc.n > 0)
                        rc = docbuf_emit(p, &doc, s, f->path, &index, fn, user, err);
                    if (rc == 0 && docbuf_push(&doc, (int32_t)id, trained) < 0)
                        rc = err_set(err, -ENOMEM, "out of memory for a document of %s", f->path);
                    prev = id;
                }
            }
            if (rc == 0 && doc.n > 0) /* documents end with their file */
                rc = docbuf_emit(p, &doc, s, f->path, &index, fn, user, err);
            doc.n = 0;
            if (f->fd < 0)
                close(fd);
        }
    }
    free(buf);
    free(doc.ids);
    free(doc.trained);
    return rc;
}
